"""Issue 13 phase 2, fast parts: int8 planning, the check comparison in the job path, the
advisor's output-correctness rule. (Real runs: tests/test_quant_campaign.py, test_lite_exec.py.)"""
from __future__ import annotations

import textwrap
from types import SimpleNamespace

import numpy as np

from lab.decide import advice_records as A
from lab.decide import advice_rules as R
from lab.models import agreement
from lab.measure.campaign import load_campaign, plan_jobs
from lab.core.records import Device, Job, Measurement, MeasurementProtocol
from lab.runners import runner_core
from lab.runtimes import checks

DEVICES = [Device(id="local", chip="generic-x86-cpu", transport="local"),
           Device(id="gpu-box", chip="nvidia-a100", transport="ssh", host="h")]


def plan(tmp_path, body):
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(body))
    asked: list[str] = []

    def sha(art_id):
        asked.append(art_id)
        return "sha-" + art_id
    jobs, excluded = plan_jobs(load_campaign(p), DEVICES, sha)
    return jobs, excluded, asked


def test_int8_jobs_run_the_int8_model_and_backends_that_cannot_are_refused(tmp_path):
    jobs, excluded, asked = plan(tmp_path, """
        name: q
        devices: [local]
        models: [m]
        backends: [paddle-inference-cpu, paddle-inference-gpu]
        precisions: [fp32, int8]
        options: {accuracy: true}
        """)
    by = {(j.backend, j.precision): j for j in jobs}
    assert set(by) == {("paddle-inference-cpu", "fp32"), ("paddle-inference-cpu", "int8")}
    assert by[("paddle-inference-cpu", "int8")].model == "m"  # same model, side by side
    assert by[("paddle-inference-cpu", "int8")].model_sha256 == "sha-m-int8"
    assert by[("paddle-inference-cpu", "fp32")].model_sha256 == "sha-m"
    assert sorted(asked) == ["m", "m-int8"] and all(j.option("accuracy") for j in jobs)
    reasons = [e.reason for e in excluded]
    assert any("paddle-inference-gpu cannot run int8" in r and "paddle-inference-trt" in r for r in reasons)
    assert any("no NVIDIA GPU" in r for r in reasons)  # GPU backends refused without a GPU


def test_int8_planning_rules(tmp_path):
    jobs, excluded, asked = plan(tmp_path, """
        name: q
        devices: [local, gpu-box]
        models: [m-int8]
        backends: [paddle-inference-cpu, paddle-inference-trt]
        precisions: [fp32, int8, fp16]
        options: {onednn: [true, false]}
        """)
    got = {(j.device, j.backend, j.precision, j.option("onednn")) for j in jobs}
    assert got == {("local", "paddle-inference-cpu", "int8", True),
                   ("gpu-box", "paddle-inference-cpu", "int8", True),
                   ("gpu-box", "paddle-inference-trt", "int8", True),
                   ("gpu-box", "paddle-inference-trt", "int8", False)}
    assert asked == ["m-int8"]  # already the int8 model: not m-int8-int8
    reasons = " | ".join(e.reason for e in excluded)
    assert "m-int8 is a quantised model: run it at precision int8" in reasons
    assert "not with option onednn: false" in reasons
    assert "paddle-inference-cpu cannot run fp16" in reasons


# ------------------------------------------------------------------------- checks.apply
def _ref(n=4, classes=10):
    rng = np.random.RandomState(1)
    outs = [rng.randn(n, 1, classes).astype("float32")]
    meta = {"model_id": "m", "model_sha256": "a" * 64, "n": n, "runtime": "test fp32", "n_outputs": 1}
    return {"outputs": outs, "compact": agreement.compact_all(outs), "meta": meta}, outs


def _ctx(precision="int8", accuracy=False):
    opts = (("accuracy", True),) if accuracy else ()
    job = Job(job_id="j", campaign="c", device="local", chip="x", model="m", model_sha256="s",
              backend="paddle-inference-cpu", processor="cpu", precision=precision, threads=1,
              options=opts, protocol=MeasurementProtocol())
    return SimpleNamespace(job=job, artifact=SimpleNamespace(id="m"))


RT = SimpleNamespace(name="test-runtime")


def test_apply_stores_agreement_and_accuracy():
    ref, outs = _ref()
    ci = checks.CheckInputs(reference_file=None, reference=ref, eval_file=object(),
                            eval_labels=np.array([1, 2, 3, 4]), eval_source="test set")
    near = [[runner_core.compact_output(np, o[i] + 1e-4)] for i in range(4) for o in outs]
    m = Measurement(job_id="j")
    checks.apply(m, _ctx(accuracy=True), RT, ci, checks.CheckOutputs(outputs=near, seconds=0.01,
                                                                     eval_argmax=[1, 2, 0, 4]))
    assert m.agree_ok is True and m.agree_cosine_min > 0.9999 and m.agree_top1 == 1.0
    assert m.agree_max_abs < 1e-3 and m.agree_reference.startswith("m@aaaaaaaaaaaa")
    assert m.accuracy_top1 == 0.75
    assert m.provenance["checks"]["seconds"] == 0.01


def test_apply_fails_wrong_outputs_and_says_why_when_nothing_came_back():
    ref, outs = _ref()
    ci = checks.CheckInputs(reference_file=None, reference=ref)
    wrong = [[runner_core.compact_output(np, -o[i])] for i in range(4) for o in outs]
    m = Measurement(job_id="j")
    checks.apply(m, _ctx(), RT, ci, checks.CheckOutputs(outputs=wrong))
    assert m.agree_ok is False and m.agree_cosine_min < 0 and any("FAILED" in n for n in m.notes)
    m = Measurement(job_id="j")
    checks.apply(m, _ctx(), RT, ci, None)
    assert m.agree_ok is None and any("returned no reference outputs" in n for n in m.notes)
    m = Measurement(job_id="j")
    checks.apply(m, _ctx(), RT, None, None)  # a runtime that has not adopted the hook
    assert m.agree_ok is None and any("does not run the reference set" in n for n in m.notes)


def test_weak_check_compares_mean_and_std():
    ref, outs = _ref()
    good = [[(float(o[i].mean()), float(o[i].std(ddof=1)))] for i in range(2) for o in outs]
    bad = [[(float(o[i].mean()) + 1.0, float(o[i].std(ddof=1)))] for i in range(2) for o in outs]
    assert agreement.compare_stats(outs, good, "fp32", "r").passed
    a = agreement.compare_stats(outs, bad, "int8", "r")
    assert not a.passed and a.agree_cosine_min is None and "weak" in a.reference


# ------------------------------------------------------------------------- the advisor rule
def _side(proc, p50, ok, acc=None):
    return A.Side(processor=proc, backend=f"b-{proc}", precision="int8", p50_ms=p50, agree_ok=ok,
                  agree_cosine_min=0.03 if ok is False else 0.999, agree_top1=0.1 if ok is False else 1.0,
                  accuracy_top1=acc, job_id=f"j-{proc}")


def _x(cpu, aipu):
    return A.AdviceInput(model=A.ModelFacts(model="m"), device="d", chip="c", has_aipu=True,
                         aipu_name="npu", options=A.Options(), cpu=cpu, aipu=aipu)


def test_fast_but_wrong_aipu_is_never_recommended():
    x = _x(_side("cpu", 20.0, True), _side("aipu", 2.0, False))
    c = R.rule_output_correctness(x)
    assert c.blocking and c.direction == "cpu" and "fast but wrong" in c.text and "0.03" in c.text
    assert R.decide(R.evaluate(x), x)[0] == "cpu"  # 10x faster, but wrong


def test_accuracy_drop_is_evidence():
    c = R.rule_output_correctness(_x(_side("cpu", 20.0, True, 0.95), _side("aipu", 5.0, True, 0.80)))
    assert not c.blocking and c.direction == "cpu" and "0.150" in c.text
    c = R.rule_output_correctness(_x(_side("cpu", 20.0, True, 0.95), _side("aipu", 5.0, True, 0.94)))
    assert c.direction == "neutral" and c.weight == 0.0
