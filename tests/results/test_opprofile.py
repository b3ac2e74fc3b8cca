"""Per-operator profiles (`profile: ops`): parsers on real profiler output, the one shape, the store,
`lab results ops`, and mobilenet_v1 profiled on `local` with real Paddle Inference."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest_adb import adb_env, adb_key, kirin  # noqa: F401 - fixtures for the ADB tests below
from helpers import lab_cli as lab, local_campaign, local_workspace
from lab.results.opprofile import OpProfile, from_lite, from_paddle_inference, lite_processor, processor_shares
from lab.core.records import Job, Measurement
from lab.runtimes.benchmark_bin import BenchSpec, build_args, parse_op_profile, parse_output
from lab.runners.pi_runner import parse_profile_table
from lab.results.store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
LITE = DATA / "benchmark_bin"
PI = DATA / "paddle_inference"


# ------------------------------------------------------------------ Paddle Inference table
def test_paddle_inference_table_real_output():
    """Paddle 3.3.1 enable_profile, mobilenet_v1 + oneDNN, profiler reset after warm-up, 20 runs."""
    d = parse_profile_table((PI / "enable_profile_mobilenet_v1_onednn.txt").read_text())
    assert d["place"] == "CPU" and d["time_unit"] == "ms" and d["nested_skipped"] == 1
    names = [e["event"] for e in d["events"]]
    assert names == ["onednn_op.fused_conv2d", "onednn_op.fc", "onednn_op.pool2d", "onednn_op.flatten",
                     "pd_op.onednn_to_paddle_layout"]
    conv = d["events"][0]
    assert conv["calls"] == 540 and conv["total_ms"] == pytest.approx(442.325)  # 27 convs x 20 runs
    # the events add up to the report's own "Total time: 467.493" (nested infermeta not counted)
    assert sum(e["total_ms"] for e in d["events"]) == pytest.approx(467.493, abs=0.01)


def test_paddle_inference_table_takes_the_merged_report_only():
    """Without a reset the report also has per-thread tables (thread0::...) and nested events: only
    the first, merged table counts."""
    text = (PI / "enable_profile_mobilenet_v1_onednn.txt").read_text()
    d = parse_profile_table(text + text.replace("onednn_op.", "thread0::onednn_op."))
    assert len(d["events"]) == 5 and not any("thread0" in e["event"] for e in d["events"])


@pytest.mark.parametrize("text", ["", "W1129 Profiler is activated\n", "Event  Calls  Total\nx y z\n"])
def test_paddle_inference_no_table_is_an_error_not_zero(text):
    d = parse_profile_table(text)
    assert "error" in d and "no event table" in d["error"]


def test_paddle_inference_normalised():
    d = parse_profile_table((PI / "enable_profile_mobilenet_v1_onednn.txt").read_text())
    d["iterations"] = 20
    prof = from_paddle_inference(d, "cpu")
    assert prof.available and prof.iterations == 20 and prof.total_ms == pytest.approx(467.493, abs=0.01)
    top = prof.rows[0]
    assert top.op_type == "onednn_op.fused_conv2d" and top.processor == "cpu" and top.calls == 540
    assert top.share == pytest.approx(442.325 / 467.493, rel=1e-4)
    assert top.per_inference_ms == pytest.approx(442.325 / 20)
    assert sum(r.share for r in prof.rows) == pytest.approx(1.0)
    failed = from_paddle_inference({"error": "the profiler printed no event table"})
    assert not failed.available and "no event table" in failed.reason


# ------------------------------------------------------------------ Paddle Lite profiler
def test_lite_concise_dispatch_real_arm_sample():
    """Paddle-Lite docs/user_guides/profiler.md: Android ARM CPU, mobilenet_v1, 100 runs."""
    prof = parse_op_profile((LITE / "profile_v2_10_arm_mobilenet_v1.txt").read_text())
    assert prof.kind == "concise" and prof.timing_cycles == 100 and prof.excluded == 10
    assert prof.iterations == 90
    assert [(ln.op_type, ln.avg_ms, ln.called) for ln in prof.lines[:2]] == [
        ("conv2d", 25.381, 13), ("conv2d", 0.727, 1)]
    # the Dispatch summary, not the Create one printed just before it (0.015 ms for the same row)
    assert sum(ln.avg_ms for ln in prof.lines) == pytest.approx(28.267)
    op = from_lite(prof)
    conv = op.rows[0]
    assert conv.op_type == "conv2d" and conv.processor == "cpu" and conv.calls == 14 * 90
    assert conv.total_ms == pytest.approx((25.381 + 0.727) * 90)
    assert conv.share == pytest.approx((25.381 + 0.727) / 28.267, rel=1e-4)  # 92.4 %: Lite's 89.79 + 2.57
    assert [r.op_type for r in op.rows] == ["conv2d", "depthwise_conv2d", "fc", "pool2d", "softmax"]


def test_lite_detailed_only_is_per_inference():
    text = (LITE / "profile_v2_10_arm_mobilenet_v1.txt").read_text()
    prof = parse_op_profile(text[:text.index("[I 10/13")])
    assert prof.kind == "detailed" and prof.iterations is None and len(prof.lines) == 30
    op = from_lite(prof)
    assert op.iterations == 1 and "per inference" in op.notes[0]
    dw = next(r for r in op.rows if r.op_type == "depthwise_conv2d")
    assert dw.calls == 13 and dw.total_ms == pytest.approx(
        0.318 + 0.299 + 0.297 + 0.120 + 0.151 + 0.071 + 5 * 0.103 + 0.048 + 0.060)


def test_lite_opencl_real_sample_places():
    """Paddle-Lite docs/user_guides/debug.md: OpenCL, the clAvg columns; softmax stays on the ARM CPU."""
    prof = parse_op_profile((LITE / "profile_opencl_mobilenet_v1.txt").read_text())
    assert prof.kind == "concise" and prof.iterations == 1 and len(prof.lines) == 10
    assert prof.lines[0].avg_ms == 22.540 and prof.lines[0].called == 14  # Avg(ms), not clAvg(ms)
    op = from_lite(prof)
    assert {r.op_type: r.processor for r in op.rows}["softmax"] == "cpu"
    assert {r.op_type: r.processor for r in op.rows}["conv2d"] == "gpu"
    assert processor_shares(op.rows, "cpu") == {"softmax": pytest.approx(0.057 / 50.236, rel=1e-3)}


def test_lite_nnadapter_fallback_share():
    op = from_lite(parse_op_profile((LITE / "profile_nnadapter_handmade.txt").read_text()))
    assert [(r.op_type, r.processor) for r in op.rows] == [("subgraph", "aipu"), ("softmax", "cpu")]
    assert processor_shares(op.rows, "cpu")["softmax"] == pytest.approx(2.8 / 6.59)


@pytest.mark.parametrize("name", ["v2_12_android_arm.txt", "v2_12_memory_profile.txt", "v2_9_old_result.txt",
                                  "usage_missing_model.txt"])
def test_lite_outputs_without_profiler_tables(name):
    assert parse_op_profile((LITE / name).read_text()) is None


def test_lite_profile_tables_do_not_disturb_the_perf_parse():
    text = (LITE / "v2_12_android_arm.txt").read_text() + "\n" + (LITE / "profile_opencl_mobilenet_v1.txt").read_text()
    plain = parse_output((LITE / "v2_12_android_arm.txt").read_text())
    both = parse_output(text)
    assert both.ok and (both.avg_ms, both.init_ms, both.first_ms) == (plain.avg_ms, plain.init_ms, plain.first_ms)


def test_lite_places_to_processors_and_flag():
    assert [lite_processor(p) for p in ("arm/float/NCHW", "host/any/any", "opencl/any/any",
                                        "nnadapter/any/NCHW", "fpga/float/NCHW", "")] == \
        ["cpu", "cpu", "gpu", "aipu", None, None]
    spec = BenchSpec(binary="/b", input_shapes=[[1, 3, 224, 224]], backend="arm", optimized_model_file="/m.nb",
                     enable_op_time_profile=True)
    assert "--enable_op_time_profile=true" in build_args(spec)
    assert not any("op_time" in a for a in build_args(BenchSpec(binary="/b", input_shapes=[[1, 3]],
                                                                backend="arm", optimized_model_file="/m")))


# ------------------------------------------------------------------ store and `lab results ops`
def _job(job_id: str, **kw) -> Job:
    base = dict(job_id=job_id, campaign="c", device="local", chip="generic-x86-cpu", model="m",
                model_sha256="s", backend="paddle-inference-cpu", processor="cpu", precision="fp32",
                threads=1, options=(("profile", "ops"),))
    base.update(kw)
    return Job(**base)


def _stored(tmp_path: Path) -> Path:
    path = tmp_path / "s.sqlite"
    st = Store(path)
    lite = from_lite(parse_op_profile((LITE / "profile_nnadapter_handmade.txt").read_text()))
    j1, j2 = _job("aaaa1111"), _job("aaaa2222", backend="paddle-lite-kirin-npu", processor="aipu")
    j3 = _job("bbbb3333", options=())
    st.plan_jobs([j1, j2, j3])
    d = parse_profile_table((PI / "enable_profile_mobilenet_v1_onednn.txt").read_text())
    d["iterations"] = 20
    st.finish_job(j1.job_id, "ok", measurement=Measurement(job_id=j1.job_id, mean_ms=23.6, p50_ms=23.5,
                                                             op_profile=from_paddle_inference(d)))
    st.finish_job(j2.job_id, "ok", measurement=Measurement(job_id=j2.job_id, mean_ms=6.6, op_profile=lite))
    st.finish_job(j3.job_id, "ok", measurement=Measurement(
        job_id=j3.job_id, mean_ms=5.0, notes=["op profile unavailable: runtime x cannot profile per operator"]))
    st.close()
    return path


def test_store_roundtrip_and_rerun_replaces(tmp_path):
    path = _stored(tmp_path)
    st = Store(path)
    rows = st.op_profile("aaaa2222")
    assert [(r.op_type, r.processor, r.calls, r.iterations) for r in rows] == [
        ("subgraph", "aipu", 50, 50), ("softmax", "cpu", 50, 50)]
    assert rows[0].total_ms == pytest.approx(3.79 * 50) and rows[1].share == pytest.approx(2.8 / 6.59)
    assert st.op_profile("bbbb3333") == [] and set(st.op_profiles()) == {"aaaa1111", "aaaa2222"}
    st.finish_job("aaaa2222", "failed", error="boom")  # a re-run that fails leaves no stale profile
    assert st.op_profile("aaaa2222") == []
    assert st.find_job("aaaa1").job_id == "aaaa1111"
    st.close()


def test_cli_results_ops(tmp_path):
    path = _stored(tmp_path)
    res = lab("--store", path, "results", "ops", "aaaa1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "profile: 467 ms over 20 inference(s) = 23.4 ms per inference; timed trials: mean 23.6 ms" in lines[1]
    assert lines[3].split()[:3] == ["onednn_op.fused_conv2d", "cpu", "540"] and lines[3].endswith("94.6 %")
    res = lab("--store", path, "results", "ops", "aaaa2222", "--format", "json", "--top", "1", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert doc["iterations"] == 50 and [o["op_type"] for o in doc["ops"]] == ["subgraph"]
    assert doc["total_ms"] == pytest.approx(6.59 * 50)


@pytest.mark.parametrize("job,needle", [
    ("zzzz", "no job 'zzzz'"), ("aaaa", "ambiguous (aaaa1111, aaaa2222)"),
    ("bbbb", "has no op profile: runtime x cannot profile per operator"),
])
def test_cli_results_ops_errors(tmp_path, job, needle):
    res = lab("--store", _stored(tmp_path), "results", "ops", job, cwd=tmp_path)
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_unavailable_profile_is_not_stored(tmp_path):
    st = Store(tmp_path / "s.sqlite")
    j = _job("cccc")
    st.plan_jobs([j])
    st.finish_job(j.job_id, "ok", measurement=Measurement(job_id=j.job_id, op_profile=OpProfile.unavailable("x")))
    assert st.op_profile("cccc") == []
    st.close()


# ------------------------------------------------------------------ real Paddle Inference on local
@pytest.mark.slow
def test_mobilenet_v1_op_profile_on_local(tmp_path):
    """The profile's total is within 15 % of the timed trials' mean x the profiled inferences, and
    the convolution takes most of the time."""
    local_workspace(tmp_path, "mobilenet_v1", local_campaign(
        "ops", "mobilenet_v1", options="{profile: [ops]}",
        protocol="{warmup: 3, warmup_seconds: 0.2, min_iters: 20, min_seconds: 0.5, max_seconds: 3.0, "
                 "target_rel_ci: 0.05, trials: 1, timeout_s: 300}"))
    for attempt in range(2):  # a shared host's load can move between the timed and the profiled run:
        # one fresh re-run is allowed before the comparison counts (CI runs on a quiet machine)
        res = lab("--devices", "devices.yaml", "--store", "s.sqlite", "run", "c.yaml", "--models-root", "models",
                  "--no-progress", *(["--fresh"] if attempt else []), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        rows = json.loads(lab("--store", "s.sqlite", "results", "--format", "json", cwd=tmp_path).stdout)
        assert len(rows) == 1 and rows[0]["status"] == "ok"
        res = lab("--store", "s.sqlite", "results", "ops", rows[0]["job_id"][:8], "--format", "json",
                  cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc["iterations"] == 20 and doc["source"] == "paddle-inference enable_profile"
        expected = doc["mean_ms"] * doc["iterations"]
        if abs(doc["total_ms"] - expected) <= 0.15 * expected:
            break
        print(f"\nattempt {attempt + 1}: profile {doc['total_ms']:.1f} ms vs {expected:.1f} ms (busy host?)")
    assert abs(doc["total_ms"] - expected) <= 0.15 * expected, (doc["total_ms"], expected)
    top = doc["ops"][0]
    assert "conv2d" in top["op_type"] and top["processor"] == "cpu" and top["share"] > 0.5
    assert abs(sum(o["share"] for o in doc["ops"]) - 1.0) < 1e-6
    print(f"\nmobilenet_v1 op profile: {doc['total_ms']:.1f} ms over {doc['iterations']} inferences vs "
          f"mean {doc['mean_ms']:.2f} ms x {doc['iterations']} = {expected:.1f} ms "
          f"({100 * (doc['total_ms'] / expected - 1):+.1f} %); top {top['op_type']} {100 * top['share']:.1f} %")


# ------------------------------------------------------------------ Paddle Lite over ADB (stand-in)


def test_lite_npu_job_profile_over_adb(kirin, tmp_path):
    """benchmark_bin stand-in (acting as a --with_profile build) on the adbd double: the extra run
    yields the AIPU subgraph and the CPU fallback op with their shares; timed trials are untouched."""
    from lite_doubles import job, kirin_npu_setup, run_lite_job
    from lab.transport.adb import ADBTransport
    art, dev = kirin_npu_setup(kirin, tmp_path)
    t = ADBTransport(dev)
    try:
        m = run_lite_job(job("paddle-lite-kirin-npu", trials=1, profile="ops"), dev, t, art, telemetry=False)
        plain = run_lite_job(job("paddle-lite-kirin-npu", trials=1), dev, t, art, telemetry=False)
    finally:
        t.close()
    prof = m.op_profile
    assert prof.available and prof.iterations == 5  # repeats = min_iters; warm-up raised to 10
    assert [(r.op_type, r.processor) for r in prof.rows] == [("subgraph", "aipu"), ("softmax", "cpu")]
    assert processor_shares(prof.rows, "cpu")["softmax"] == pytest.approx(0.2, abs=0.002)
    assert not any("--enable_op_time_profile" in c for c in m.provenance["commands"])
    assert any(n.startswith("op profile: 2 op type(s) over 5 inference(s)") for n in m.notes)
    assert plain.op_profile is None


def test_lite_build_without_profiler_is_a_note_not_a_failure(kirin, tmp_path):
    from lite_doubles import job, kirin_npu_setup, run_lite_job
    from lab.transport.adb import ADBTransport
    art, dev = kirin_npu_setup(kirin, tmp_path, ('    if flags["enable_op_time_profile"] == "true":\n',
                                                 '    if False:\n'))
    t = ADBTransport(dev)
    try:
        m = run_lite_job(job("paddle-lite-kirin-npu", trials=1, profile="ops"), dev, t, art, telemetry=False)
    finally:
        t.close()
    assert m.mean_ms is not None and not m.op_profile.available
    assert any("op profile unavailable: benchmark_bin printed no profiler table" in n and "--with_profile=ON" in n
               for n in m.notes)


# ------------------------------------------------------------------ advisor: fallback by measured time
def _mf(cpu_ops):
    from lab.decide import advice_records as A
    return A.MeasuredFallback(job_id="job-aipu-123", cpu_ops=cpu_ops, iterations=50, source="s")


def _rule(mf, fallback=None):
    from lab.decide import advice_records as A
    from lab.decide import advice_rules as R
    x = A.AdviceInput(model=A.ModelFacts(model="m"), device="d", chip="kirin990", has_aipu=True,
                      aipu_name="NPU", options=A.Options(), measured_fallback=mf, fallback=fallback)
    return R.rule_op_fallback(x)


def test_rule_weighs_fallback_by_measured_time_share():
    from lab.decide import advice_records as A
    from lab.decide import advice_rules as R
    static = A.Fallback("huawei_kirin_npu", 20, {"softmax": 1}, 1, 1)
    big = _rule(_mf({"softmax": 0.40}), static)
    assert big.direction == "cpu" and big.weight == pytest.approx(2.0)
    assert "CPU fallback: softmax takes 40 % of the time in the measured AIPU run" in big.text
    assert big.evidence["static_fallback_ops"] == {"softmax": 1} and big.evidence["job_id"] == "job-aipu-123"
    small = _rule(_mf({"softmax": 0.01}), static)  # the same op, 1 % of the time: minor
    assert small.direction == "neutral" and small.weight == 0.0 and "minor (under 5 % together)" in small.text
    assert "softmax takes 1 %" in small.text
    two = _rule(_mf({"softmax": 0.03, "argmax": 0.03}))  # 6 % together: not minor any more
    assert two.direction == "cpu" and two.weight == pytest.approx(0.3)
    none = _rule(_mf({}))
    assert none.direction == "aipu" and "no op ran on the CPU" in none.text
    assert R.MINOR_FALLBACK_SHARE == 0.05


def test_advise_reads_the_aipu_jobs_op_profile(tmp_path):
    from lab.decide import advisor
    from lab.core.records import ResultRow
    common = dict(campaign="c", device="phone", chip="kirin990", model="m", precision="fp32", threads=1,
                  batch=1, status="ok", n_samples=10, source="lab")
    rows = [ResultRow(job_id="cpu-job", backend="paddle-lite-arm", processor="cpu", p50_ms=30.0, **common),
            ResultRow(job_id="npu-job", backend="paddle-lite-kirin-npu", processor="aipu", p50_ms=6.6, **common)]
    prof = from_lite(parse_op_profile((LITE / "profile_nnadapter_handmade.txt").read_text()))
    a = advisor.advise("m", "phone", rows=rows, devices=[], models_root=tmp_path,
                       op_profiles={"npu-job": prof.rows})
    assert a.measured_fallback is not None and a.measured_fallback.job_id == "npu-job"
    reason = next(c for c in a.reasons if c.rule == "op_fallback")
    assert reason.direction == "cpu" and "softmax takes 42 % of the time" in reason.text
    d = a.to_dict()
    assert d["npu_fallback_measured"]["cpu_ops_share"] == {"softmax": pytest.approx(0.4249, abs=1e-4)}
    assert "CPU time in the AIPU run (op profile, job npu-job): softmax 42.5 %" in advisor.render_text(a)
    plain = advisor.advise("m", "phone", rows=rows, devices=[], models_root=tmp_path, op_profiles={})
    assert plain.measured_fallback is None and d["verdict"] in ("cpu", "aipu", "either")


# ------------------------------------------------------------------ report
def test_report_op_profile_chart_cpu_and_aipu_side_by_side(tmp_path):
    import base64
    from lab.report.render import build_report, render_html
    st = Store(tmp_path / "s.sqlite")
    cpu = _job("cpu-job-1", device="phone", chip="kirin990", model="mnv1", backend="paddle-lite-arm")
    npu = _job("npu-job-1", device="phone", chip="kirin990", model="mnv1", backend="paddle-lite-kirin-npu",
               processor="aipu")
    other = _job("noprof-1", device="phone", chip="kirin990", model="other", options=())
    st.plan_jobs([cpu, npu, other])
    arm = from_lite(parse_op_profile((LITE / "profile_v2_10_arm_mobilenet_v1.txt").read_text()))
    weird = OpProfile(rows=[r if r.op_type != "softmax" else type(r)(**{**r.__dict__, "op_type": "<b>soft&max</b>"})
                            for r in from_lite(parse_op_profile(
                                (LITE / "profile_nnadapter_handmade.txt").read_text())).rows])
    for j, ms, prof in ((cpu, 28.3, arm), (npu, 6.6, weird), (other, 3.0, None)):
        st.finish_job(j.job_id, "ok", measurement=Measurement(
            job_id=j.job_id, p50_ms=ms, mean_ms=ms, ci_low_ms=ms * 0.98, ci_high_ms=ms * 1.02, n_samples=30,
            samples=[[ms] * 10] * 3, op_profile=prof))
    page = render_html(build_report(st, ["c"]))
    st.close()
    sec = page[page.index('<section id="op-profiles">'):page.index('<section id="advisor">')]
    assert "<h3>mnv1</h3>" in sec and "<h3>other</h3>" not in sec
    assert "&lt;b&gt;soft&amp;max&lt;/b&gt;" in sec and "<b>soft" not in sec  # names rendered as text
    assert sec.index("conv2d") < sec.index("subgraph")  # the CPU job first, then the AIPU job
    uri = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', sec).group(1)
    svg = base64.b64decode(uri).decode()
    assert "<script" not in svg and "conv2d" in svg and "&lt;b&gt;soft&amp;max&lt;/b&gt;" in svg
    assert svg.count("% of op time") == 2  # two panels side by side
    adv = page[page.index('<section id="advisor">'):]
    assert "CPU fallback: &lt;b&gt;soft&amp;max&lt;/b&gt; takes 42 % of the time in the measured AIPU run" in adv


def test_report_without_profiles_says_why(tmp_path):
    from lab.report.render import build_report, render_html
    st = Store(tmp_path / "s.sqlite")
    j = _job("x1", options=())
    st.plan_jobs([j])
    st.finish_job(j.job_id, "ok", measurement=Measurement(job_id=j.job_id, p50_ms=3.0, mean_ms=3.0, n_samples=3,
                                                           samples=[[3.0] * 3]))
    page = render_html(build_report(st, ["c"]))
    st.close()
    assert "no job of these campaigns has an op profile" in page
