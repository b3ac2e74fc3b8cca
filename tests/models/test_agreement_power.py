"""The agreement check proves its own power: wrong answers fed through the REAL check must fail.

Why: a check that a runtime ignoring its input would pass says nothing (issue 26: the old seeded
zoo's outputs barely depended on the input, so "input 0's output for every input" scored cosine
0.998 against mobilenet_v1's reference). Each reference here gets mutated candidates: shuffled
inputs (outputs permuted across samples), constant outputs (input 0's, the mean), a dropped
channel, and a broken int8 scale. Each must fail `agreement.judge` (the comparison with the null)
and the job path (`checks.apply`: agree_ok False). A degenerate reference must be marked
uninformative, so that nothing it judges is ever "ok".
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lab.core.records import Job, Measurement, MeasurementProtocol
from lab.decide import advice_records as A
from lab.decide.verdict import confidence
from lab.models import agreement
from lab.results.quality import classify
from lab.runtimes import checks

N = agreement.REFERENCE_SET_SIZE


# ----------------------------------------------------------------------------- references
def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def synthetic_references() -> dict[str, list[np.ndarray]]:
    """Informative references shaped like the zoo's outputs: stacked [N, ...] per output."""
    rng = np.random.RandomState(26)
    return {
        "logits": [rng.randn(N, 1, 10).astype("float32") * 3],
        "probabilities": [_softmax(rng.randn(N, 1000).astype("float32") * 4)],
        "conv_features": [rng.randn(N, 16, 4, 4).astype("float32")],
        "two_outputs": [rng.randn(N, 10).astype("float32"), rng.randn(N, 8, 6, 6).astype("float32")],
    }


def degenerate_reference() -> list[np.ndarray]:
    """Like the old mobilenet_v1: every input gives nearly the same output."""
    rng = np.random.RandomState(1)
    base = rng.randn(1, 1000).astype("float32")
    return [(base + 1e-3 * rng.randn(N, 1000)).astype("float32") * 1e-16]


def reference_dict(outputs: list[np.ndarray], model_id: str = "m") -> dict:
    meta = {"model_id": model_id, "model_sha256": "a" * 64, "n": len(outputs[0]),
            "runtime": "test fp32", "n_outputs": len(outputs)}
    return {"outputs": outputs, "compact": agreement.compact_all(outputs), "meta": meta,
            "null": agreement.null_scores(outputs)}


# ------------------------------------------------------------------------------- mutations
def _channel_axis(o: np.ndarray) -> int:
    return 1 if o.ndim == 4 else o.ndim - 1


def _drop_channel(o: np.ndarray) -> np.ndarray:
    """A lost channel: for a feature map [N, C, H, W], zero the channel that carries the most;
    for logits, zero each sample's top element (the one its answer rests on). Why not any one
    logit: one non-top logit of 1000 zeroed moves cosine less than int8 noise does (the informative
    mobilenet_v1 scores 0.9955 > 0.99 with its strongest logit zeroed), so it is not a wrong answer
    the int8 check is meant to catch; the input-channel test below drops a channel for real."""
    out = o.copy()
    if o.ndim == 4:
        strongest = int(np.abs(o).mean(axis=(0, 2, 3)).argmax())
        out[:, strongest] = 0
        return out
    flat = out.reshape(len(o), -1)
    flat[np.arange(len(o)), flat.argmax(axis=1)] = 0
    return out


def _broken_scale(o: np.ndarray) -> np.ndarray:
    """Requantise to int8 with the right scale, dequantise half the channels with twice it (a
    wrong per-channel scale in an int8 model)."""
    ax = _channel_axis(o)
    scale = float(np.abs(o).max()) / 127 or 1.0
    deq = np.clip(np.round(o / scale), -127, 127) * scale
    half = o.shape[ax] // 2
    np.moveaxis(deq, ax, 0)[:half] *= 2.0
    return deq.astype(o.dtype)


def mutants(outputs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Wrong candidates (stacked outputs) built from the reference's own outputs."""
    reverse = np.arange(N)[::-1]  # a derangement for even N: no sample keeps its own output
    return {
        "shuffled (cyclic shift)": [np.roll(o, 1, axis=0) for o in outputs],
        "shuffled (reversed)": [o[reverse] for o in outputs],
        "constant (input 0's output)": [np.repeat(o[:1], N, axis=0) for o in outputs],
        "constant (mean output)": [np.repeat(o.mean(axis=0, keepdims=True), N, axis=0)
                                   for o in outputs],
        "dropped channel": [_drop_channel(outputs[0])] + list(outputs[1:]),
        "broken int8 scale": [_broken_scale(outputs[0])] + list(outputs[1:]),
    }


def _ctx(precision: str):
    job = Job(job_id="j", campaign="c", device="local", chip="x", model="m", model_sha256="s",
              backend="paddle-inference-cpu", processor="cpu", precision=precision, threads=1,
              options=(), protocol=MeasurementProtocol())
    return SimpleNamespace(job=job, artifact=SimpleNamespace(id="m"))


RT = SimpleNamespace(name="test-runtime")


def apply_job(ref: dict, candidate: list[np.ndarray], precision: str) -> Measurement:
    m = Measurement(job_id="j")
    checks.apply(m, _ctx(precision), RT, checks.CheckInputs(reference_file=None, reference=ref),
                 checks.CheckOutputs(outputs=agreement.compact_all(candidate)))
    return m


def assert_mutants_fail(ref: dict, name: str) -> None:
    """Every mutant fails the real check at every precision, in the maths and in the job path."""
    for label, cand in mutants(ref["outputs"]).items():
        for precision in agreement.THRESHOLDS:
            a = agreement.judge(ref, agreement.compact_all(cand), precision)
            assert not a.passed and a.ok is False and a.informative, (name, label, precision, a)
        m = apply_job(ref, cand, "int8")  # the most lenient precision the job path checks
        assert m.agree_ok is False and any("FAILED" in n for n in m.notes), (name, label, m)


# ---------------------------------------------------------------------------- fast tests
@pytest.mark.parametrize("name", sorted(synthetic_references()))
def test_informative_reference_fails_every_mutant(name):
    ref = reference_dict(synthetic_references()[name])
    for precision in agreement.THRESHOLDS:
        informative, worst = agreement.power(ref["null"], precision)
        assert informative and not worst.passes(precision), (name, precision, worst)
    right = agreement.judge(ref, ref["compact"], "int8")
    assert right.ok is True and right.status == "PASS" and right.informative is True
    assert_mutants_fail(ref, name)


def test_null_covers_shifts_constants_and_the_mean():
    ref = reference_dict(synthetic_references()["logits"])
    labels = [s.label for s in ref["null"]]
    assert len(labels) == 2 * N and labels[0] == "another input's output (shift 1)"
    assert "a constant output (input 0's)" in labels and labels[-1] == "a constant output (the mean output)"
    const0 = ref["null"][labels.index("a constant output (input 0's)")]
    assert const0.top1 >= 1 / N  # input 0 itself agrees with its own output
    assert agreement.null_scores([o[:1] for o in ref["outputs"]]) == []  # no other input


def test_degenerate_reference_is_uninformative_and_never_ok():
    ref = reference_dict(degenerate_reference())
    informative, worst = agreement.power(ref["null"], "int8")
    assert informative is False and worst.cosine_min > 0.99 and worst.top1 == 1.0
    a = agreement.judge(ref, ref["compact"], "int8")  # even the reference itself
    assert a.passed and a.ok is None and a.status == "UNINFORMATIVE" and a.informative is False
    assert a.reason.startswith("agreement uninformative: a constant output") and "0.99" in a.reason
    assert a.null["cosine_min"] == worst.cosine_min
    assert agreement.summary(a).startswith("UNINFORMATIVE (int8)")
    # a constant output "passes" too: the check cannot fail it, so it never says ok
    const = agreement.judge(ref, agreement.compact_all(mutants(ref["outputs"])[
        "constant (input 0's output)"]), "int8")
    assert const.ok is None
    # a grossly wrong answer still fails: a failure is informative even here
    assert agreement.judge(ref, agreement.compact_all([-o for o in ref["outputs"]]), "int8").ok is False


def test_uninformative_row_in_the_job_path_quality_and_advisor():
    ref = reference_dict(degenerate_reference(), "mobilenet_v1")
    m = apply_job(ref, ref["outputs"], "int8")
    assert m.agree_ok is None and m.agree_cosine_min is not None
    note = [n for n in m.notes if n.startswith("agreement uninformative: a constant output")]
    assert note and "scores cosine" in note[0], m.notes
    assert m.agree_reference.startswith("mobilenet_v1@") and note[0] in m.agree_reference
    assert m.provenance["checks"]["agreement"]["informative"] is False
    q = classify(m)
    assert "agreement_uninformative" in q.flags and "agreement uninformative" in q.text()
    # the advisor: the row's quality lowers the confidence and names why
    side = A.Side(processor="cpu", backend="b", precision="int8", p50_ms=2.0, ci_low_ms=1.9,
                  ci_high_ms=2.1, job_id="j-cpu", agree_cosine_min=m.agree_cosine_min,
                  quality=q.reasons)
    other = A.Side(processor="aipu", backend="n", precision="int8", p50_ms=1.0, ci_low_ms=0.9,
                   ci_high_ms=1.1, job_id="j-npu")
    x = A.AdviceInput(model=A.ModelFacts(model="m"), device="d", chip="c", has_aipu=True,
                      aipu_name="npu", options=A.Options(), cpu=side, aipu=other)
    level, why = confidence([], x, 2.0)
    assert level == "medium" and any("agreement uninformative" in w for w in why), why
    # an informative pass is not flagged
    good = reference_dict(synthetic_references()["logits"])
    assert classify(apply_job(good, good["outputs"], "int8")).clean


def _stats(outputs):
    return [[(float(o[i].mean()), float(o[i].std(ddof=1))) for o in outputs]
            for i in range(len(outputs[0]))]


@pytest.mark.parametrize("name", sorted(synthetic_references()))
def test_weak_check_fails_shuffled_and_constant_outputs(name):
    """benchmark_bin's mean/std check: another input's or a constant output must fail it too."""
    outs = synthetic_references()[name]
    right = agreement.compare_stats(outs, _stats(outs), "int8", "r")
    assert right.ok is True and right.informative is True
    for label, cand in mutants(outs).items():
        if label.startswith(("shuffled", "constant")):
            a = agreement.compare_stats(outs, _stats(cand), "int8", "r")
            assert a.ok is False, (name, label, a)


def test_weak_check_of_a_degenerate_reference_is_uninformative():
    outs = degenerate_reference()
    a = agreement.compare_stats(outs, _stats(outs), "int8", "m")
    assert a.passed and a.ok is None and a.informative is False and "weak" in a.reference
    assert a.reason.startswith("agreement uninformative: a constant output") and a.null["stats_gap"] < 0.1
    m = Measurement(job_id="j")
    checks.apply(m, _ctx("int8"), RT, checks.CheckInputs(reference_file=None,
                                                         reference=reference_dict(outs)),
                 checks.CheckOutputs(stats=_stats(outs)))
    assert m.agree_ok is None and "agreement_uninformative" in classify(m).flags, m.notes


def test_subset_of_samples_gets_its_own_null():
    """A runtime that checked fewer samples is judged with the null of those samples."""
    ref = reference_dict(synthetic_references()["logits"])
    few = agreement.compact_all([o[:3] for o in ref["outputs"]])
    assert agreement.judge(ref, few, "int8").ok is True
    one = agreement.judge(ref, few[:1], "int8")
    assert one.passed and one.informative is None and one.ok is True  # one sample: no null


def test_reference_cached_before_the_null_gets_it(tmp_path):
    """An old reference.npz (no null in its meta) is read with a computed null."""
    import json
    outs = synthetic_references()["logits"]
    art = SimpleNamespace(dir=str(tmp_path), sha256="b" * 64, id="m", parent=None,
                          inputs=[SimpleNamespace(name="x", run_shape=[2], dtype="float32")])
    meta = {"model_id": "m", "model_sha256": art.sha256, "n": N, "source": "t",
            "runtime": agreement.REFERENCE_RUNTIME, "n_outputs": 1}
    np.savez(tmp_path / agreement.REFERENCE_FILE, meta=np.array(json.dumps(meta)),
             **{"in:x": np.zeros((N, 2), "float32"), "out:0": outs[0]})
    ref = agreement.cached_reference(art)
    assert ref["null"] == agreement.null_scores(outs)
    stored = agreement.load_reference(art)  # stores the null with the outputs, no inference
    with np.load(Path(stored["path"]), allow_pickle=False) as z:
        assert len(json.loads(str(z["meta"]))["null"]) == 2 * N
    assert agreement.cached_reference(art)["null"] == ref["null"]


# ---------------------------------------------------------------------------- slow: real models
def _built_reference(model_id: str, root: Path) -> tuple[object, dict]:
    from lab.models.artifact import load_artifact
    from lab.models.build import build
    build(model_id, root)
    art = load_artifact(model_id, root)
    return art, agreement.load_reference(art)


@pytest.mark.slow
def test_digits_cnn_reference_fails_every_mutant(tmp_path_factory):
    _, ref = _built_reference("digits_cnn", tmp_path_factory.getbasetemp() / "hwlab-power")
    assert agreement.power(ref["null"], "int8")[0] is True
    assert_mutants_fail(ref, "digits_cnn")


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["mobilenet_v1", "mobilenet_v2", "resnet18"])
def test_vision_zoo_reference_fails_every_mutant(model_id, tmp_path_factory):
    """Built fresh: the null is below every threshold, every mutant fails, and so does the model
    run with one input channel zeroed (a dropped channel before inference)."""
    from lab.models.host_infer import predict
    art, ref = _built_reference(model_id, tmp_path_factory.getbasetemp() / "hwlab-power")
    for precision in agreement.THRESHOLDS:
        assert agreement.power(ref["null"], precision)[0] is True, (model_id, precision)
    assert_mutants_fail(ref, model_id)
    name, x = next(iter(ref["inputs"].items()))
    dropped = dict(ref["inputs"], **{name: np.where(np.arange(x.shape[1])[None, :, None, None] == 0,
                                                    0, x).astype(x.dtype)})
    model, params = (art.pdmodel_path, art.legacy_pdiparams_path) if art.pdmodel_path else (
        art.model_path, art.params_path)
    outs = predict(model, params, dropped, mode="fp32-ref")
    a = agreement.judge(ref, agreement.compact_all(outs), "int8")
    assert not a.passed and a.ok is False, (model_id, a)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["resnet50", "text_lstm", "tiny_mlp", "tiny_detector"])
def test_rest_of_the_zoo_never_reads_ok_for_a_wrong_answer(model_id, tmp_path_factory):
    """The zoo models the vision tests above do not cover: a shuffled or constant answer either
    fails the check or the check calls itself uninformative (ok None) - never "ok"."""
    _, ref = _built_reference(model_id, tmp_path_factory.getbasetemp() / "hwlab-power")
    outs = ref["outputs"]
    if any(isinstance(o, list) for o in outs):  # a detector's boxes: one array per sample
        wrong = {"shuffled (cyclic shift)": [[o[(i + 1) % N] for i in range(N)] for o in outs],
                 "shuffled (reversed)": [[o[N - 1 - i] for i in range(N)] for o in outs],
                 "constant (input 0's output)": [[o[0]] * N for o in outs]}
    else:
        wrong = {k: v for k, v in mutants(outs).items() if k.startswith(("shuffled", "constant"))}
    for label, cand in wrong.items():
        for precision in agreement.THRESHOLDS:
            a = agreement.judge(ref, agreement.compact_all(cand), precision)
            informative, _ = agreement.power(ref["null"], precision)
            assert a.ok is not True, (model_id, label, precision, a)
            assert not (informative and a.passed), (model_id, label, precision, a)
