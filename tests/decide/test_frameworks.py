"""lab.decide.frameworks: Paddle and ONNX Runtime side by side (the report's table, the claim line, the
advisor's note), and the planning rules of the onnxruntime backends."""
from __future__ import annotations

import numpy as np
import pytest

from lab.decide import advisor
from lab.decide import frameworks
from lab.measure.campaign import applicable
from lab.core.records import Device, ResultRow


def row(job, backend, p50, precision="fp32", threads=1, device="local", model="m", processor="cpu",
        **figures):
    return ResultRow(job_id=job, campaign="c", device=device, chip="generic-x86-cpu", model=model,
                     backend=backend, processor=processor, precision=precision, threads=threads,
                     batch=1, status="ok", p50_ms=p50, ci_low_ms=p50 * 0.95, ci_high_ms=p50 * 1.05,
                     **figures)


def trials(p50, seed):
    rng = np.random.default_rng(seed)
    return [list(p50 * (1 + 0.02 * rng.standard_normal(60))) for _ in range(2)]


def test_table_ratio_ci_agreement_and_claim():
    rows = [row("pi", "paddle-inference-cpu", 10.0), row("ort", "onnxruntime-cpu", 6.0),
            row("pi2", "paddle-inference-cpu", 6.0, threads=2), row("ort2", "onnxruntime-cpu", 6.0, threads=2),
            row("q8", "onnxruntime-cpu", 3.0, precision="int8", agree_cosine_min=0.95,
                agree_top1=0.5, agree_ok=False)]
    samples = {r.job_id: trials(r.p50_ms, i) for i, r in enumerate(rows)}
    prov = {"ort": {"model_agreement": {"cosine": 0.99999, "top1": 1.0}}}
    comp = frameworks.compare_frameworks(rows, samples, prov)
    by = {(fr.threads, fr.precision): fr for fr in comp.rows}
    t1 = {c.row.job_id: c for c in by[(1, "fp32")].cells}
    assert t1["pi"].verdict == "baseline" and t1["pi"].agreement.source == "reference"
    c = t1["ort"]
    assert c.verdict == "faster" and c.ratio == pytest.approx(0.6, rel=0.03)
    assert c.ratio_ci[0] < c.ratio < c.ratio_ci[1] < 1 and c.agreement.source == "build"
    assert {c.row.job_id: c.verdict for c in by[(2, "fp32")].cells}["ort2"] == "same"
    q8 = by[(1, "int8")].cells[0]  # no Paddle int8 row: against Paddle fp32, out of the tally
    assert q8.verdict == "faster (vs paddle-inference-cpu fp32)" and q8.agreement.source == "job"
    assert q8.agreement.passed is False
    assert "contradicts it wherever a difference was measurable" in comp.claim_line
    assert "faster than the fastest Paddle runtime at the same precision and threads in 1 of 2" \
        in comp.claim_line and "slower in 0" in comp.claim_line and "includes 1) in 1 (" in comp.claim_line


def test_claim_line_says_when_paddle_wins():
    rows = [row("pi", "paddle-inference-cpu", 5.0), row("ort", "onnxruntime-cpu", 9.0)]
    comp = frameworks.compare_frameworks(rows, {r.job_id: trials(r.p50_ms, 1) for r in rows})
    assert "this campaign supports it wherever a difference was measurable" in comp.claim_line and comp.faster_other == []
    assert frameworks.faster_runtime_note(rows, {r.job_id: trials(r.p50_ms, 1) for r in rows},
                                          "local", "m") is None


def test_no_table_without_both_runtimes():
    rows = [row("pi", "paddle-inference-cpu", 5.0)]
    assert frameworks.compare_frameworks(rows, {"pi": trials(5.0, 0)}) is None


def test_advisor_sides_ignore_other_runtimes_and_note_says_it():
    rows = [row("pi", "paddle-inference-cpu", 10.0), row("ort", "onnxruntime-cpu", 4.0)]
    chosen = advisor.measured_rows(rows, "local", "m")
    assert chosen["cpu"][0].backend == "paddle-inference-cpu" and chosen["cpu"][1] == 1
    note = frameworks.faster_runtime_note(rows, {r.job_id: trials(r.p50_ms, 2) for r in rows},
                                          "local", "m")
    assert note.startswith("information: ONNX Runtime (onnxruntime-cpu, fp32, t1) ran m")
    assert "0.400\u00d7 the latency of paddle-inference-cpu fp32" in note  # 3 significant digits (fmt_num)
    assert "the fastest Paddle configuration here is paddle-inference-cpu fp32 t1 at 10.0 ms" in note
    assert "The verdict compares processors, not runtimes." in note


def test_advisor_note_never_quotes_configurations_that_failed_agreement():
    """Regression (the demo): the note quoted ONNX Runtime int8 (cosine -0.91) against Paddle int8
    (0.94) as "the fastest Paddle configuration", while the verdict had left both out as fast but
    wrong. A configuration whose outputs failed the check is no one's speed figure."""
    rows = [row("pi32", "paddle-inference-cpu", 16.0), row("ort32", "onnxruntime-cpu", 13.0),
            row("pi8", "paddle-inference-cpu", 10.0, precision="int8", agree_ok=False),
            row("ort8", "onnxruntime-cpu", 4.7, precision="int8", agree_ok=False)]
    note = frameworks.faster_runtime_note(rows, {r.job_id: trials(r.p50_ms, 3) for r in rows},
                                          "local", "m")
    assert note.startswith("information: ONNX Runtime (onnxruntime-cpu, fp32, t1) ran m"), note
    assert "int8" not in note and "the fastest Paddle configuration here is paddle-inference-cpu fp32" in note
    # the claim line counts only configurations where neither side was wrong: fp32 here, 1 of 1
    comp = frameworks.compare_frameworks(rows, {r.job_id: trials(r.p50_ms, 3) for r in rows})
    assert "same precision and threads in 1 of 1 configurations" in comp.claim_line, comp.claim_line
    wrong_only = [r for r in rows if r.precision == "int8"]
    assert frameworks.faster_runtime_note(wrong_only, {r.job_id: trials(r.p50_ms, 3) for r in wrong_only},
                                          "local", "m") is None


@pytest.mark.parametrize("backend, precision, chip, needle", [
    ("onnxruntime-cpu", "fp16", "generic-x86-cpu", "onnxruntime-cpu cannot run fp16: ONNX Runtime runs fp32"),
    ("onnxruntime-gpu", "fp32", "generic-x86-cpu", "has no NVIDIA GPU for onnxruntime-gpu"),
])
def test_planning_refusals(backend, precision, chip, needle):
    dev = Device(id="local", chip=chip, transport="local")
    assert needle in applicable(dev, backend, precision)


def test_local_with_the_labs_python_is_checked_at_planning(monkeypatch):
    import importlib.util
    import sys
    dev = Device(id="local", chip="generic-x86-cpu", transport="local")
    assert applicable(dev, "onnxruntime-cpu", "int8") is None
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    why = applicable(dev, "onnxruntime-cpu", "fp32")
    assert "needs the Python package 'onnxruntime', which is not installed" in why and \
        f"{sys.executable} -m pip install 'onnxruntime>=" in why


def test_comparison_budget_keeps_whole_configurations_in_order_and_says_what_was_left():
    """A farm's report would run 20,000 bootstraps: `max_comparisons` stops at whole configurations
    and the claim line counts what was not compared; within the budget nothing changes."""
    rows = [row("pi", "paddle-inference-cpu", 10.0), row("ort", "onnxruntime-cpu", 6.0),
            row("pi2", "paddle-inference-cpu", 6.0, threads=2), row("ort2", "onnxruntime-cpu", 6.0, threads=2),
            row("lite2", "paddle-lite-arm", 7.0, threads=2)]
    samples = {r.job_id: trials(r.p50_ms, i) for i, r in enumerate(rows)}
    full = frameworks.compare_frameworks(rows, samples)
    same = frameworks.compare_frameworks(rows, samples, max_comparisons=3)  # 1 + 2 comparisons: all fit
    assert same.left_out is None and same.claim_line == full.claim_line
    assert [[c.ratio for c in fr.cells] for fr in same.rows] == [[c.ratio for c in fr.cells] for fr in full.rows]
    cut = frameworks.compare_frameworks(rows, samples, max_comparisons=2)  # threads 2 needs 2 more
    assert [(fr.threads, len(fr.cells)) for fr in cut.rows] == [(1, 2)]
    assert cut.left_out == (1, 2)
    assert "faster than the fastest Paddle runtime at the same precision and threads in 1 of 1" in cut.claim_line
    assert "the first 1 of 2 configurations" in cut.claim_line and "2 more left out" in cut.claim_line
