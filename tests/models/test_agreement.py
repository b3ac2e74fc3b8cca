"""Agreement maths (pure) and the opt output parser: written before the code that uses them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab.models import agreement
from lab.convert.lite_opt_output import parse
from lab.runners import runner_core

DATA = Path(__file__).resolve().parents[1] / "data" / "lite_opt"


def _compact(outputs):
    return agreement.compact_all([np.asarray(o) for o in outputs])


def test_identical_outputs_pass_every_precision():
    out = np.random.RandomState(0).randn(8, 1, 10).astype("float32")
    for p in agreement.THRESHOLDS:
        a = agreement.compare(_compact([out]), _compact([out]), p, "ref")
        assert a.passed and a.agree_cosine_min == 1.0 and a.agree_top1 == 1.0
        assert a.agree_max_abs == 0.0 and a.n == 8 and a.reference == "ref"


def test_small_noise_passes_int8_fails_fp32():
    rng = np.random.RandomState(1)
    out = rng.randn(8, 1, 10).astype("float32")
    noisy = out + 0.02 * rng.randn(*out.shape).astype("float32")
    assert agreement.compare(_compact([out]), _compact([noisy]), "int8").passed
    strict = agreement.compare(_compact([out]), _compact([noisy]), "fp32")
    assert not strict.passed and "cosine_min" in strict.reason


def test_wrong_outputs_fail_with_numbers():
    rng = np.random.RandomState(2)
    out = rng.randn(8, 1, 10).astype("float32")
    wrong = rng.randn(8, 1, 10).astype("float32")  # another model entirely
    a = agreement.compare(_compact([out]), _compact([wrong]), "int8")
    assert not a.passed and a.agree_cosine_min < 0.9 and a.agree_top1 < 0.75


def test_top1_counts_argmax_flips():
    out = np.zeros((4, 1, 3), "float32")
    out[:, 0, 0] = 1.0
    flipped = out.copy()
    flipped[0, 0] = [0.9, 1.0, 0.0]  # sample 0: argmax 1 instead of 0
    a = agreement.compare(_compact([out]), _compact([flipped]), "int8")
    assert a.agree_top1 == 0.75


def test_nonfinite_and_shape_mismatch_fail():
    out = np.ones((2, 1, 4), "float32")
    bad = out.copy()
    bad[1, 0, 2] = np.nan
    a = agreement.compare(_compact([out]), _compact([bad]), "int8")
    assert not a.passed and a.agree_max_abs is None
    b = agreement.compare(_compact([out]), _compact([np.ones((2, 1, 5), "float32")]), "int8")
    assert not b.passed and "shape" in b.reason
    c = agreement.compare(_compact([out]), _compact([out[:1]]), "int8")
    assert not c.passed and "samples" in c.reason


def test_large_outputs_travel_as_a_fixed_sample():
    big = np.arange(runner_core.WHOLE_MAX * 3, dtype="float32")
    c = runner_core.compact_output(np, big)
    assert "values" not in c and len(c["sample"]) == runner_core.SAMPLE_SIZE
    assert c["argmax"] == big.size - 1 and c["topk"][0][0] == big.size - 1
    assert c["sample"][1] == float((1 * big.size) // runner_core.SAMPLE_SIZE)
    small = runner_core.compact_output(np, np.arange(6, dtype="float32").reshape(2, 3))
    assert small["values"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] and small["shape"] == [2, 3]


def test_cosine_edge_cases():
    assert agreement.cosine([0.0, 0.0], [0.0, 0.0]) == 1.0
    assert agreement.cosine([1.0, 0.0], [0.0, 0.0]) == 0.0
    assert agreement.cosine([1.0, None], [1.0, 1.0]) == 0.0
    assert agreement.cosine([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)


def test_thresholds_are_ordered_by_precision():
    th = agreement.THRESHOLDS
    assert th["fp32"]["cosine"] > th["fp16"]["cosine"] > th["int8"]["cosine"]
    with pytest.raises(ValueError):
        agreement.thresholds_for("int4")


def test_opt_output_rockchip_partition():
    """Real paddle_lite_opt 2.13rc0 output for mobilenet_v1 int8 -> rockchip_npu,arm."""
    r = parse((DATA / "rockchip_npu_mobilenet_v1_int8.txt").read_text())
    assert r.npu_subgraphs == 2
    assert r.cpu_ops == {"matmul_v2": 1}
    assert r.npu_ops["conv2d"] == 14 and r.npu_ops["depthwise_conv2d"] == 13
    assert "feed" not in r.npu_ops and "feed" not in r.cpu_ops
    assert r.saved.endswith("out_rockchip_npu.nb")


def test_opt_output_arm_has_no_partition():
    r = parse((DATA / "arm_mobilenet_v1_int8.txt").read_text())
    assert r.npu_subgraphs is None and r.cpu_ops is None and r.saved.endswith(".nb")


def test_agreement_recorded_before_the_null_still_reads():
    """meta.json agreements written before `informative`/`null` existed load and keep their verdict."""
    old = {"agree_cosine_min": 0.999, "agree_max_abs": 0.01, "agree_top1": 1.0, "n": 8,
           "precision": "int8", "passed": True, "reason": "", "reference": "m@abc",
           "thresholds": agreement.THRESHOLDS["int8"]}
    a = agreement.Agreement(**old)
    assert a.informative is None and a.ok is True and agreement.summary(a).startswith("PASS (int8)")
    assert agreement.Agreement(**dict(old, passed=False, reason="x")).status == "FAIL"
