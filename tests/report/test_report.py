"""Report content: sections, n/a handling, escaping, baseline significance, CLI exit codes."""
from __future__ import annotations

import html
import json
import re

import pytest

from lab.cli import main
from lab.core.records import Job, Measurement
from lab.report.render import build_report, decode_embedded, render_html
from lab.results import stats
from lab.report.sections import cpu_vs_aipu
from lab.results.store import Store
from lab.decide.tradeoffs import pareto_front
from report_fixtures import XSS_DEVICE, XSS_MODEL, make_job, measurement, fill  # noqa: F401









@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "lab.sqlite")
    fill(s, "demo", [
        (dict(device="local", model="mobilenet_v1"), 10.0, {}),
        (dict(device="local", model="mobilenet_v1", threads=2), 6.0, {"converged": False}),
        (dict(device="local", model="mobilenet_v2"), 8.0, {"power_w": 4.2, "energy_mj_per_inf": 33.6,
                                                         "power_source": "rapl", "power_note": None,
                                                         "throttled": True}),
        (dict(device="phone", model="mobilenet_v1", backend="paddle-lite-arm", chip="kirin990"), 30.0, {}),
        (dict(device="phone", model="mobilenet_v1", backend="paddle-lite-kirin-npu", processor="aipu",
              precision="int8", chip="kirin990"), 5.0, {"load_ms": 900.0}),
        (dict(device="local", model="resnet50"), None, {}),
    ])
    yield s
    s.close()


def test_sections_and_flags(store):
    page = render_html(build_report(store, ["demo"]))
    for anchor in ("summary", "ranking", "latency", "cpu-aipu", "cold", "energy", "memory", "thermal",
                   "heatmap", "pareto", "advisor", "provenance", "data"):
        assert f'id="{anchor}"' in page
    assert "not converged" in page and "throttled" in page and "failed" in page
    assert "predictor creation failed: &lt;boom&gt;" in page  # error text shown, escaped
    assert "pi_runner 1.0.0" in page and "python3 pi_runner.py --model m.json --out -" in page
    assert page.count('src="data:image/svg+xml;base64,') >= 4  # latency x3 models with data, cold, memory, pareto


def test_unknown_power_is_na_with_reason_never_zero(store):
    page = render_html(build_report(store, ["demo"]))
    energy = page.split('id="energy"')[1].split("</section>")[0]
    assert "n/a: telemetry: no power source on this host" in energy
    assert "rapl" in energy and "33.60" in energy
    assert not re.search(r">0(\.0+)?<", energy)  # nothing unknown rendered as 0


def test_cpu_vs_aipu_break_even(store):
    pairs = cpu_vs_aipu(store.results(["demo"]))
    (p,) = pairs
    assert p.device == "phone" and p.model == "mobilenet_v1"
    assert p.speedup == pytest.approx(p.cpu.p50_ms / p.aipu.p50_ms)
    # AIPU: 900 + 15 cold, CPU: 120 + 90 cold; caught up after (915-210)/(cpu-aipu) steady runs
    expected = 1 + -(-(p.cold_aipu_ms - p.cold_cpu_ms) // (p.cpu.p50_ms - p.aipu.p50_ms))
    assert p.break_even == int(expected) and p.verdict.startswith(f"AIPU ahead from inference #{expected:,.0f}")
    total = lambda cold, per, n: cold + (n - 1) * per  # noqa: E731
    n = p.break_even
    assert total(p.cold_aipu_ms, p.aipu.p50_ms, n) <= total(p.cold_cpu_ms, p.cpu.p50_ms, n)
    assert total(p.cold_aipu_ms, p.aipu.p50_ms, n - 1) > total(p.cold_cpu_ms, p.cpu.p50_ms, n - 1)


def test_cpu_only_campaign_says_why_no_aipu(tmp_path):
    s = Store(tmp_path / "s.sqlite")
    fill(s, "c", [(dict(device="local", model="m"), 5.0, {})])
    page = render_html(build_report(s, ["c"]))
    assert "needs ok measurements of both a CPU and an AIPU backend" in page
    assert "processor classes measured here: cpu" in page


def test_pareto_front():
    assert pareto_front([(1, 5), (2, 2), (3, 3), (5, 1)]) == [True, True, False, True]
    assert pareto_front([(1, 1), (1, 1)]) == [True, True]


def test_xss_names_are_text(tmp_path):
    s = Store(tmp_path / "x.sqlite")
    fill(s, "x", [(dict(device=XSS_DEVICE, model=XSS_MODEL), 5.0, {}),
                  (dict(device=XSS_DEVICE, model=XSS_MODEL, threads=2), 4.0, {})])
    page = render_html(build_report(s, ["x"]))
    assert "<script>alert(1)</script>" not in page
    assert "<img onerror" not in page
    assert html.escape(XSS_DEVICE) in page
    assert "&#34;&gt;&lt;img onerror=alert(1) src=x&gt;" in page
    # the embedded data (base64) cannot close its <script> element, and decodes to the real names
    data = page.split('data-encoding="base64 gzip json">')[1].split("</script>")[0]
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", data)
    assert decode_embedded(data)["rows"][0][2] == XSS_DEVICE


def test_baseline_flags_a_regression(tmp_path):
    s = Store(tmp_path / "b.sqlite")
    fill(s, "base", [(dict(device="local", model="a"), 10.0, {}), (dict(device="local", model="b"), 10.0, {})])
    fill(s, "new", [(dict(device="local", model="a"), 12.0, {}), (dict(device="local", model="b"), 10.0, {})],
         seed=2)
    rep = build_report(s, ["new"], baseline="base")
    deltas = {d.row.model: d for d in rep.sections["baseline"]["deltas"]}
    assert deltas["a"].status == "regression" and deltas["a"].ratio == pytest.approx(1.2, rel=0.03)
    assert deltas["b"].status == "unchanged" and deltas["b"].significant is False
    page = render_html(rep)
    assert '<tr class="regression">' in page


def test_baseline_change_is_stats_compare_of_the_raw_samples(tmp_path):
    """The page's ratio, CI and verdict are lab.results.stats.compare(baseline, current), nothing else."""
    s = Store(tmp_path / "b.sqlite")
    base_jobs = fill(s, "base", [(dict(device="local", model="a"), 10.0, {})])
    new_jobs = fill(s, "new", [(dict(device="local", model="a"), 12.0, {})], seed=2)
    (d,) = build_report(s, ["new"], baseline="base").sections["baseline"]["deltas"]
    c = stats.compare(s.samples(base_jobs[0].job_id), s.samples(new_jobs[0].job_id))
    assert (d.ratio, d.ci_low, d.ci_high, d.significant) == (c.ratio, c.ratio_ci_low, c.ratio_ci_high, True)
    assert d.ci_low > 1.0 and d.status == "regression" and d.method == "lab.results.stats.compare: " + c.method


def test_cli_writes_default_path_and_rejects_unknown_campaign(store, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--store", str(store.path), "report", "--campaign", "demo"]) == 0
    assert (tmp_path / "reports" / "demo" / "index.html").stat().st_size > 10_000
    assert main(["--store", str(store.path), "report", "--campaign", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no campaign named 'nope'" in err and "Traceback" not in err
    assert main(["--store", str(tmp_path / "missing.sqlite"), "report", "--campaign", "demo"]) == 2
    assert main(["--store", str(store.path), "report", "--campaign", "demo", "--baseline", "demo"]) == 2


def test_no_external_references(store):
    page = render_html(build_report(store, ["demo"]))
    assert not re.search(r"""(src|href|action|poster|data)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    assert "default-src &#39;none&#39;" in page  # the CSP meta (attribute-escaped quotes)


def test_scale_bench_runs_small(tmp_path):
    """bench/report_scale.py itself works (full size is a benchmark, see docs/benchmarks.md)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(root / "bench" / "report_scale.py"), "--jobs", "40", "--samples", "1200",
                          "--keep", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["jobs"] == 40 and res["samples"] == 1200 and res["ok"] is True
    assert (tmp_path / "index.html").stat().st_size > 50_000


# ------------------------------------------------------------------- review fixes: imported rows
@pytest.fixture
def imported_store(tmp_path):
    s = Store(tmp_path / "imp.sqlite")
    rows = []
    for i, (proc, threads, p50) in enumerate([("cpu", 0, 120.0), ("aipu", None, 15.0)]):
        j = Job(job_id=f"imp{i}", campaign="vendor", device="rv1109-board", chip="rv1109",
                model="mobilenet_v1", model_sha256="", backend=f"external-{proc}", processor=proc,
                precision="int8", threads=threads)
        rows.append((j, Measurement(job_id=j.job_id, p50_ms=p50, source="import:v.csv")))
    s.import_rows("vendor", rows)
    yield s
    s.close()


def test_imported_only_summary_says_convergence_is_unknown_not_clean(imported_store):
    page = render_html(build_report(imported_store, ["vendor"]))
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert "converged to its target CI" not in summary and "flag good" not in summary
    assert "no convergence information" in summary and "2 ok row(s)" in summary
    assert "imported: no raw samples" in summary


def test_imported_rows_show_threads_na_not_t0(imported_store):
    page = render_html(build_report(imported_store, ["vendor"]))
    assert not re.search(r"· t(0|None)\b", page)
    assert "threads n/a" in page
    latency = page.split('id="latency"')[1].split("</section>")[0]
    # the threads cell follows the precision cell: n/a for both rows, never 0
    assert latency.count('<td>int8</td><td class="n na">n/a</td>') == 2
    assert "<td>int8</td><td class=n>0</td>" not in latency


def test_output_under_a_file_is_one_line_exit_2(store, tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("not a folder")
    rc = main(["--store", str(store.path), "report", "--campaign", "demo", "-o", str(f / "index.html")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{f} is a file, not a directory" in err
    rc = main(["--store", str(store.path), "report", "--campaign", "demo", "-o", str(f / "sub" / "i.html")])
    assert rc == 2 and "is a file" in capsys.readouterr().err


def test_summary_flags_wide_ci_and_busy_host_via_lab_quality(tmp_path):
    """Issue 17: the report judges quality with lab.results.quality.classify, like the run summary."""
    s = Store(tmp_path / "q.sqlite")
    fill(s, "q", [(dict(device="local", model="mobilenet_v1"), 10.0,
                   {"ci_low_ms": 7.0, "ci_high_ms": 13.0}),
                  (dict(device="local", model="mobilenet_v2"), 10.0, {"busy_host": True,
                                                                      "host_busy_share": 0.5})])
    page = render_html(build_report(s, ["q"]))
    s.close()
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert "wide CI" in summary and "±30% of the median" in summary
    assert "busy host" in summary and "clean" not in summary.split("wide CI")[0][-200:]


def test_samples_over_the_page_budget_are_left_out_and_the_page_says_how_to_get_them(store, monkeypatch):
    """A farm's million samples would blow the page's size budget: whole jobs are embedded up to
    SAMPLES_EMBEDDED_MAX samples, and the page names what is missing and where it is."""
    from lab.report import render
    rows = store.results(["demo"])
    with_samples = [r for r in rows if r.n_samples]
    assert len(with_samples) >= 3
    full = decode_embedded(build_report(store, ["demo"]).sections["data_json"])
    assert set(full["samples"]) == {r.job_id for r in with_samples}  # under budget: every sample
    budget = with_samples[0].n_samples + with_samples[1].n_samples
    monkeypatch.setattr(render, "SAMPLES_EMBEDDED_MAX", budget)
    rep = build_report(store, ["demo"])
    data = decode_embedded(rep.sections["data_json"])
    embedded = sum(len(x) for trials in data["samples"].values() for x in trials)
    left = rep.sections["samples_left"]
    assert embedded <= budget and set(data["samples"]) < set(full["samples"])
    assert embedded + left["samples"] == sum(r.n_samples or 0 for r in rows)
    assert len(data["rows"]) == len(rows)  # every results row is still embedded
    page = render_html(rep)
    data_sec = page.split('id="data"')[1].split("</section>")[0]
    assert f"{left['samples']} samples of {left['jobs']} jobs are not embedded" in data_sec
    assert "lab.api.samples(" in data_sec and "every raw steady-state" not in data_sec
