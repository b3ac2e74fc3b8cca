"""Comparability: the one check (pure), `lab results compare`, and the report's baseline section,
on real runs on `local`: a quiet campaign, the same under a CPU hog, and one with another thread
count and model build."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from helpers import lab_cli, repo_env
from lab.results.comparability import (FIELDS, START_TEMP_MARGIN_C, RunContext, check_allowed, context_of, differences,
                               pair_rows, verdict_text)
from lab.core.errors import ConfigError
from lab.core.records import ResultRow

REPO = Path(__file__).resolve().parents[2]


def ctx(**over) -> RunContext:
    base = dict(job_id="j", campaign="c", label="c/j", runtime_version="paddle 3.3.1",
                runner_version="pi_runner 1.0.0", model_sha256="a" * 64, threads=2, power_mode=None,
                governor="performance", temp_start_c=40.0, host_busy_share=0.02, busy_host=False)
    base.update(over)
    return RunContext(**base)


@pytest.mark.parametrize("field,over,text", [
    ("runtime_version", {"runtime_version": "paddle 3.2.0"}, "runtime_version: paddle 3.3.1 vs paddle 3.2.0"),
    ("runner_version", {"runner_version": "pi_runner 1.1.0"}, "runner_version: pi_runner 1.0.0 vs pi_runner 1.1.0"),
    ("model_sha256", {"model_sha256": "b" * 64}, "model_sha256: aaaaaaaaaaaa vs bbbbbbbbbbbb"),
    ("threads", {"threads": 4}, "threads: 2 vs 4"),
    ("power_mode", {"power_mode": "big"}, "power_mode: unknown vs big"),
    ("governor", {"governor": "schedutil"}, "governor: performance vs schedutil"),
    ("start_temp", {"temp_start_c": 40.0 + START_TEMP_MARGIN_C + 0.5}, "start_temp: 40.0 °C vs 45.5 °C"),
    ("host_busy", {"host_busy_share": 0.6, "busy_host": True}, "host_busy: quiet (2% other CPU) vs busy (60% other CPU)"),
])
def test_each_field_makes_a_pair_not_comparable_unless_allowed(field, over, text):
    d = differences(ctx(), ctx(**over))
    assert [x.field for x in d] == [field] and str(d[0]).startswith(text)
    assert verdict_text(d).startswith("not comparable: " + text)
    assert differences(ctx(), ctx(**over), allow=(field,)) == []


def test_within_margin_and_unknown_temperature_are_comparable():
    assert differences(ctx(), ctx(temp_start_c=40.0 + START_TEMP_MARGIN_C)) == []
    assert differences(ctx(), ctx(temp_start_c=None)) == []
    assert verdict_text([]) == "comparable"
    # both busy is still not a fair comparison
    both = differences(ctx(busy_host=True, host_busy_share=0.5), ctx(busy_host=True, host_busy_share=0.5))
    assert [x.field for x in both] == ["host_busy"]


def test_allow_different_names_are_checked():
    assert check_allowed(["threads", "host_busy"]) == ("threads", "host_busy")
    with pytest.raises(ConfigError) as e:
        check_allowed(["thread"])
    assert "thread" in str(e.value) and ", ".join(FIELDS) in str(e.value)


def _row(job_id, threads=2, **over):
    d = dict(job_id=job_id, campaign="c", device="local", chip="x", model="m", backend="paddle-inference-cpu",
             processor="cpu", precision="fp32", threads=threads, batch=1, status="ok", p50_ms=1.0,
             options=over.pop("options", {}))
    d.update(over)
    return ResultRow(**d)


def test_pairing_prefers_equal_threads_and_ignores_checked_options():
    a = [_row("a1", 1), _row("a2", 2), _row("a3", 2, model="other")]
    b = [_row("b2", 2, options={"model_format": "pdmodel"}), _row("b1", 1)]
    pairs, only_a, only_b = pair_rows(a, b)
    assert [(x.job_id, y.job_id) for x, y in pairs] == [("a1", "b1"), ("a2", "b2")]
    assert [r.job_id for r in only_a] == ["a3"] and only_b == []


def test_context_reads_row_and_provenance():
    row = _row("j", options={"power_mode": "big"}, model_sha256="c" * 64, temp_start_c=33.0, host_busy_share=0.5)
    c = context_of(row, {"runner": "pi_runner", "runner_version": "1.0.0", "env": {"paddle": "3.3.1", "governor": None}})
    assert (c.runtime_version, c.runner_version, c.power_mode, c.governor) == ("paddle 3.3.1", "pi_runner 1.0.0", "big", None)
    assert c.busy_host is True  # from the share when the flag was not stored (older rows)


# ------------------------------------------------------------------------------ real campaigns
def _lab(*args, cwd):
    return lab_cli(*args, cwd=cwd, env=repo_env())


def _campaign(ws, name, threads, fmt):
    (ws / f"{name}.yaml").write_text(textwrap.dedent(f"""
        name: {name}
        devices: [local]
        models: [tiny_mlp]
        backends: [paddle-inference-cpu]
        threads: [{threads}]
        options: {{model_format: [{fmt}]}}
        protocol: {{warmup: 3, warmup_seconds: 0.1, min_iters: 50, min_seconds: 1.0, max_seconds: 2.0,
                   target_rel_ci: 0.5, trials: 2, timeout_s: 180, idle_baseline_s: 0}}
        """))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    from hog import cpu_hog
    ws = tmp_path_factory.mktemp("compare")
    (ws / "devices.yaml").write_text(f"devices:\n  - {{id: local, chip: generic-x86-cpu, transport: local,"
                                     f" workdir: {ws / 'device'}}}\n")
    res = _lab("models", "--root", ws / "models", "build", "tiny_mlp", cwd=ws)
    assert res.returncode == 0, res.stderr
    for name, threads, fmt in (("quiet", 2, "json"), ("busy", 2, "json"), ("other", 1, "pdmodel")):
        _campaign(ws, name, threads, fmt)
    run = ["--devices", "devices.yaml", "--store", "s.sqlite", "run"]
    assert _lab(*run, "quiet.yaml", "--models-root", "models", "--no-progress", cwd=ws).returncode == 0
    assert _lab(*run, "other.yaml", "--models-root", "models", "--no-progress", cwd=ws).returncode == 0
    # the busy campaign: a hog on every CPU from before the runner starts to the end
    with cpu_hog(per_cpu=2, seconds=300, nice=0):  # at nice 0: the runner still loads in time
        res = _lab(*run, "busy.yaml", "--models-root", "models", "--no-progress", cwd=ws)
    assert res.returncode == 0, res.stderr
    return ws


def _compare(ws, a, b, *allow):
    res = _lab("--store", "s.sqlite", "results", "compare", a, b, "--format", "json",
               *[x for f in allow for x in ("--allow-different", f)], cwd=ws)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.slow
def test_busy_campaign_is_flagged_and_left_out(ws):
    from lab.results.store import Store
    s = Store(ws / "s.sqlite")
    busy, quiet = s.results("busy")[0], s.results("quiet")[0]
    s.close()
    assert busy.busy_host is True and busy.host_busy_share > quiet.host_busy_share, (busy, quiet)
    out = _compare(ws, "quiet", "busy")
    (pair,) = out["pairs"]
    assert pair["outcome"] == "not comparable" and [d["field"] for d in pair["differences"]] == ["host_busy"]
    assert pair["differences"][0]["b"].startswith("busy (") and out["counts"]["not comparable"] == 1
    assert out["counts"]["faster"] + out["counts"]["slower"] == 0  # left out of wins/losses
    text = _lab("--store", "s.sqlite", "results", "compare", "quiet", "busy", cwd=ws).stdout
    assert "not comparable: host_busy: " in text and "B faster in 0, slower in 0" in text
    # allowed: compared with lab.results.stats.compare. Not which way: tiny_mlp's 0.04 ms inferences fit in
    # one time slice, so a hog moves its tail more than its p50 (CI once saw B 0.88x A)
    out = _compare(ws, "quiet", "busy", "host_busy")
    pair = out["pairs"][0]
    assert pair["comparable"] and pair["ratio_b_over_a"] > 0 and pair["outcome"] in ("faster", "slower", "no significant difference"), pair
    assert out["counts"]["not comparable"] == 0
    # by job id too
    out = _compare(ws, quiet.job_id, busy.job_id)
    assert out["pairs"][0]["differences"][0]["field"] == "host_busy"


@pytest.mark.slow
def test_other_threads_and_model_build_are_named(ws):
    out = _compare(ws, "quiet", "other")
    (pair,) = out["pairs"]
    fields = [d["field"] for d in pair["differences"]]
    assert "threads" in fields and "model_sha256" in fields, pair
    assert "threads: 2 vs 1" in pair["verdict"] and "model_sha256: " in pair["verdict"]
    allow = ["threads", "model_sha256", "host_busy", "start_temp"]
    out = _compare(ws, "quiet", "other", *allow)
    assert out["pairs"][0]["comparable"] and out["pairs"][0]["outcome"] != "not comparable"
    res = _lab("--store", "s.sqlite", "results", "compare", "quiet", "other", "--allow-different", "thread", cwd=ws)
    assert res.returncode == 2 and "not a compared field" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_report_baseline_marks_the_busy_pair(ws):
    from lab.report.sections import baseline_section
    from lab.results.store import Store
    s = Store(ws / "s.sqlite")
    try:
        sec = baseline_section(s, s.results("busy"), s.results("quiet"))
        (d,) = sec["deltas"]
        assert d.status == "not comparable" and "host_busy" in d.method
        assert sec["counts"].get("regression", 0) + sec["counts"].get("improvement", 0) == 0
        sec = baseline_section(s, s.results("busy"), s.results("quiet"), ("host_busy",))
        assert sec["deltas"][0].status != "not comparable"
    finally:
        s.close()
