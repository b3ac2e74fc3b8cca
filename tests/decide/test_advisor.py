"""Unit tests of the advisor's rules, verdict, break-even and NPU partitioning (no files, no store)."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from lab.decide import advice_records as A
from lab.decide import advice_rules as R
from lab.decide.npu_partition import load_npu_ops, partition

ROCKCHIP = ("rockchip_npu",)
KIRIN = ("huawei_kirin_npu",)


def side(proc, p50, *, lo=None, hi=None, load=None, first=None, energy=None, power=None,
         source="lab", job="j-" + "x"):
    return A.Side(processor=proc, backend=f"b-{proc}", precision="fp32", p50_ms=p50, ci_low_ms=lo,
                  ci_high_ms=hi, load_ms=load, first_ms=first, energy_mj_per_inf=energy,
                  power_w=power, source=source, job_id=f"{job}-{proc}")


def inp(**kw):
    model = kw.pop("model", A.ModelFacts(model="m"))
    base = dict(model=model, device="d", chip="rk1808", has_aipu=True, aipu_name="NPU",
                options=A.Options(), nnadapter_devices=KIRIN)
    base.update(kw)
    return A.AdviceInput(**base)


# ------------------------------------------------------------------------------ each rule
def test_rule_no_accelerator_blocks_cpu_and_defers_to_gpu_chips():
    c = R.rule_no_accelerator(inp(has_aipu=False, chip="generic-x86-cpu"))
    assert c.direction == "cpu" and c.blocking
    g = R.rule_no_accelerator(inp(has_aipu=False, has_gpu=True, chip="nvidia-t4"))
    assert g.direction == "neutral" and not g.blocking
    assert R.rule_no_accelerator(inp()) is None


def test_rule_model_too_small_measured_and_from_macs():
    c = R.rule_model_too_small(inp(cpu=side("cpu", 3.0)))
    assert c.direction == "cpu" and c.blocking and c.evidence["p50_ms"] == 3.0
    assert R.rule_model_too_small(inp(cpu=side("cpu", 30.0))) is None
    small = R.rule_model_too_small(inp(model=A.ModelFacts("m", macs=10_000)))
    assert small.direction == "cpu" and small.evidence["measured"] is False and small.blocking
    # a measurement showing the AIPU faster end to end: it only leans
    lean = R.rule_model_too_small(inp(cpu=side("cpu", 3.0), aipu=side("aipu", 1.0)))
    assert lean.direction == "cpu" and not lean.blocking and "faster" in lean.text
    assert R.rule_model_too_small(inp(model=A.ModelFacts("m", macs=500_000_000))) is None


def test_rule_variable_shapes():
    c = R.rule_variable_shapes(inp(model=A.ModelFacts("m", dynamic_dims=("tokens[1]",),
                                                       sequence_ops=("rnn",))))
    assert c.direction == "cpu" and "tokens[1]" in c.text and "rnn" in c.text
    nlp = R.rule_variable_shapes(inp(model=A.ModelFacts("m", domain="nlp")))
    assert nlp.direction == "cpu" and nlp.weight < c.weight
    assert R.rule_variable_shapes(inp()) is None


def test_rule_data_dependent_output():
    c = R.rule_data_dependent_output(inp(model=A.ModelFacts("m", data_dependent_ops=("nonzero",))))
    assert c.direction == "cpu" and c.evidence["ops"] == ["nonzero"]
    assert R.rule_data_dependent_output(inp()) is None


def test_rule_first_inference_budget_without_preload_compares_load_plus_first():
    opts = A.Options(first_inference_budget_ms=200, no_preload=True)
    x = inp(options=opts, cpu=side("cpu", 30, load=80, first=40),
            aipu=side("aipu", 5, load=1500, first=20))
    c = R.rule_first_inference_budget(x)
    assert c.direction == "cpu" and c.blocking
    assert c.evidence["cpu_ms"] == 120 and c.evidence["aipu_ms"] == 1520
    # with the model preloaded only the first inference counts: both meet -> neutral
    pre = R.rule_first_inference_budget(replace(x, options=A.Options(first_inference_budget_ms=200)))
    assert pre.direction == "neutral" and pre.evidence["aipu_ms"] == 20
    # reversed: only the AIPU meets it
    rev = R.rule_first_inference_budget(replace(x, cpu=side("cpu", 30, load=500, first=300),
                                                aipu=side("aipu", 5, load=50, first=20)))
    assert rev.direction == "aipu" and rev.blocking


def test_rule_first_inference_budget_unmeasured():
    c = R.rule_first_inference_budget(inp(options=A.Options(first_inference_budget_ms=100,
                                                            no_preload=True)))
    assert c.direction == "cpu" and not c.blocking and "not measured" in c.text
    pre = R.rule_first_inference_budget(inp(options=A.Options(first_inference_budget_ms=100)))
    assert pre.direction == "neutral"
    assert R.rule_first_inference_budget(inp()) is None


def test_rule_dense_compute():
    big = A.ModelFacts("m", macs=570_000_000, dense_share=0.97)
    assert R.rule_dense_compute(inp(model=big)).direction == "aipu"
    tiny = A.ModelFacts("m", macs=10_000, dense_share=0.97)
    assert R.rule_dense_compute(inp(model=tiny)).direction == "neutral"
    low = A.ModelFacts("m", macs=570_000_000, dense_share=0.1)
    assert R.rule_dense_compute(inp(model=low)).direction == "neutral"
    assert R.rule_dense_compute(inp()) is None


def test_rule_quantized():
    q = R.rule_quantized(inp(model=A.ModelFacts("m", quantized=True)))
    assert q.direction == "aipu"
    rk = R.rule_quantized(inp(model=A.ModelFacts("m", quantized=False), nnadapter_devices=ROCKCHIP))
    assert rk.direction == "cpu" and rk.evidence["npu_needs_int8"] is True
    assert "cannot run on this NPU until quantised with PaddleSlim" in rk.text
    assert rk.blocking and rk.weight == 3.0  # nothing to offload until the model is int8
    # a measured AIPU row outranks the rule: still toward the CPU, no longer blocking
    rk_m = R.rule_quantized(inp(model=A.ModelFacts("m", quantized=False), nnadapter_devices=ROCKCHIP,
                                aipu=side("aipu", 5.0)))
    assert rk_m.direction == "cpu" and not rk_m.blocking
    assert R.rule_quantized(inp(model=A.ModelFacts("m", quantized=False))) is None  # Kirin: fp32 ok
    assert R.rule_quantized(inp()) is None  # unknown


def test_rule_power_budget_and_energy():
    x = inp(options=A.Options(power_budget_w=2.0), cpu=side("cpu", 20, power=3.5, energy=70),
            aipu=side("aipu", 5, power=1.5, energy=7.5))
    c = R.rule_power(x)
    assert c.direction == "aipu" and c.blocking
    e = R.rule_power(replace(x, options=A.Options()))
    assert e.direction == "aipu" and not e.blocking and e.evidence["cpu_energy_mj_per_inf"] == 70
    worse = R.rule_power(replace(x, options=A.Options(), aipu=side("aipu", 5, energy=200)))
    assert worse.direction == "cpu"
    guide = R.rule_power(inp(options=A.Options(power_budget_w=1.0)))
    assert guide.direction == "aipu" and guide.weight == 1.0
    assert R.rule_power(inp()) is None


def test_rule_busy_cpu():
    assert R.rule_busy_cpu(inp(options=A.Options(busy_cpu=True))).direction == "aipu"
    none = R.rule_busy_cpu(inp(options=A.Options(busy_cpu=True), has_aipu=False))
    assert none.direction == "neutral" and "no accelerator" in none.text  # the flag still speaks
    assert R.rule_busy_cpu(inp()) is None


def _fb(fallback=None, subgraphs=1, supported=20, cpu_segments=0):
    return A.Fallback("rockchip_npu", supported, fallback or {}, subgraphs, cpu_segments)


def test_rule_op_fallback():
    assert R.rule_op_fallback(inp(fallback=_fb())).direction == "aipu"
    many = R.rule_op_fallback(inp(fallback=_fb({"rnn": 1, "stack": 2}, subgraphs=4,
                                                 cpu_segments=3)))
    assert many.direction == "cpu" and many.evidence["subgraphs"] == 4
    assert "approximation" in many.evidence
    none = R.rule_op_fallback(inp(fallback=_fb({"rnn": 3}, subgraphs=0, supported=0,
                                                 cpu_segments=1)))
    assert none.direction == "cpu" and none.blocking
    assert R.rule_op_fallback(inp()) is None


def test_rule_latency_budget_uses_upper_ci_bound():
    x = inp(options=A.Options(latency_budget_ms=10), cpu=side("cpu", 9.5, lo=9, hi=11),
            aipu=side("aipu", 4, lo=3.8, hi=4.2))
    c = R.rule_latency_budget(x)
    assert c.direction == "aipu" and c.blocking and c.evidence["cpu_ms"] == 11
    both = R.rule_latency_budget(replace(x, options=A.Options(latency_budget_ms=20)))
    assert both.direction == "neutral"
    assert R.rule_latency_budget(inp()) is None


def test_rule_measured_speed_needs_separated_cis():
    fast = R.rule_measured_speed(inp(cpu=side("cpu", 30, lo=29, hi=31),
                                     aipu=side("aipu", 10, lo=9.5, hi=10.5)))
    assert fast.direction == "aipu" and fast.weight == 3.0 and fast.evidence["speedup"] == 3.0
    overlap = R.rule_measured_speed(inp(cpu=side("cpu", 10, lo=8, hi=12),
                                        aipu=side("aipu", 9, lo=7, hi=11)))
    assert overlap.direction == "neutral" and overlap.evidence["ci_overlap"]
    slower = R.rule_measured_speed(inp(cpu=side("cpu", 10), aipu=side("aipu", 25)))
    assert slower.direction == "cpu"


def test_rule_gpu_and_estimate():
    g = R.rule_gpu(inp(cpu=side("cpu", 40), gpu=side("gpu", 2)))
    assert g.direction == "gpu"
    est = A.Estimate(aipu_ms=2.0, precision="int8", tops=3.0, utilisation=0.3, note="n")
    e = R.rule_estimate(inp(estimate=est, cpu=side("cpu", 40)))
    assert e.direction == "aipu" and e.evidence["confidence"] == "low"
    assert R.rule_estimate(inp(estimate=est, aipu=side("aipu", 3))) is None  # measured wins


# --------------------------------------------------------------------- break-even and verdict
def test_break_even_examples():
    cpu = side("cpu", 20, load=100, first=30)  # start 130
    aipu = side("aipu", 5, load=1000, first=45)  # start 1045; gains 15 per inference
    # 1045 + (n-1)*5 <= 130 + (n-1)*20  <=>  n-1 >= 61  <=> n = 62
    be = R.break_even(cpu, aipu)
    assert (be.inferences, be.ahead_first, be.ahead_after) == (62, "cpu", "aipu")
    assert "AIPU ahead from inference #62" in be.reason
    never = R.break_even(cpu, side("aipu", 25, load=1000, first=45))  # slower start and steady
    assert (never.inferences, never.ahead_after) == (None, "cpu") and "every count" in never.reason
    # starts faster (15 vs 130) but runs slower (25 vs 20): the CPU is level at n = 24
    # (15 + 23*25 = 590 = 130 + 23*20) and ahead after; not "1", not "never"
    late = R.break_even(cpu, side("aipu", 25, load=10, first=5))
    assert (late.inferences, late.ahead_first, late.ahead_after) == (24, "aipu", "cpu")
    both = R.break_even(cpu, side("aipu", 5, load=10, first=5))  # faster start and steady
    assert (both.inferences, both.ahead_first, both.ahead_after) == (None, "aipu", "aipu")
    unknown = R.break_even(cpu, side("aipu", 5))  # load unknown
    assert unknown.inferences is None and "AIPU load+first not measured" in unknown.reason
    level = R.break_even(cpu, side("aipu", 20, load=100, first=30))
    assert (level.inferences, level.ahead_after) == (None, None) and "level" in level.reason


@given(st.floats(1, 5000), st.floats(0, 500), st.floats(0.1, 100), st.floats(1, 5000),
       st.floats(0, 500), st.floats(0.1, 100))
def test_break_even_is_where_the_lead_changes(cl, cf, cp, al, af, ap):
    cpu, aipu = side("cpu", cp, load=cl, first=cf), side("aipu", ap, load=al, first=af)
    be = R.break_even(cpu, aipu)
    total = {"cpu": lambda k: cl + cf + (k - 1) * cp, "aipu": lambda k: al + af + (k - 1) * ap}
    if be.inferences is None:  # no crossing: whoever leads (or ties) at #1 still does at #10^6
        lead = be.ahead_after
        if lead is not None:
            other = "cpu" if lead == "aipu" else "aipu"
            for k in (1, 2, 1000, 10**6):
                assert total[lead](k) <= total[other](k)
    else:  # behind at #1, ahead or level from #n, not at #n-1
        late, early = be.ahead_after, be.ahead_first
        assert late != early and early is not None
        n = be.inferences
        assert n >= 2 and total[late](1) > total[early](1)
        assert total[late](n) <= total[early](n) and total[late](n - 1) > total[early](n - 1)


def test_decide_blocking_wins_and_conflicts_give_either():
    x = inp()
    a = A.Contribution("x", "aipu", 3, "", {})
    b = A.Contribution("y", "cpu", 3, "", {}, blocking=True)
    assert R.decide([a, a, b], x)[0] == "cpu"
    b2 = A.Contribution("z", "aipu", 3, "", {}, blocking=True)
    assert R.decide([b, b2], x)[0] == "either"
    assert R.decide([A.Contribution("s", "cpu", 0.5, "", {})], x)[0] == "either"
    assert R.decide([a], x)[0] == "aipu"


# ------------------------------------------------------------------------------- partition
def test_normalise_legacy_and_pir_names():
    t = load_npu_ops()
    assert t.normalise("pd_op.relu_") == "relu"
    assert t.normalise("1.add") == "elementwise_add"
    assert t.normalise("pd_op.matmul") == "matmul_v2"
    assert t.normalise("1.batch_norm_") == "batch_norm"
    assert t.normalise("1.flatten") == "flatten_contiguous_range"
    assert t.normalise("elementwise_add") == "elementwise_add"  # legacy names are not aliased
    assert t.normalise("matmul") == "matmul"
    for structural in ("p", "0.combine", "builtin.parameter", "1.data", "feed", "1.fetch",
                       "1.full_int_array"):
        assert t.normalise(structural) is None


def test_partition_fuses_and_counts_transitions():
    pir = ["1.data", "p", "1.conv2d", "1.batch_norm_", "1.relu", "1.depthwise_conv2d",
           "1.batch_norm_", "1.relu", "1.pool2d", "1.flatten", "1.matmul", "1.add", "1.softmax",
           "1.fetch"]
    legacy = ["feed", "conv2d", "batch_norm", "relu", "depthwise_conv2d", "batch_norm", "relu",
              "pool2d", "flatten_contiguous_range", "matmul_v2", "elementwise_add", "softmax",
              "fetch"]
    for seq in (pir, legacy):
        f = partition(seq, "rockchip_npu")
        # batch_norm fused into conv; matmul_v2 + add -> fc (rockchip has fc but not matmul_v2)
        assert f.fallback_ops == {} and f.subgraphs == 1, f
        assert sum(f.fused.values()) == 3
    mixed = partition(["conv2d", "rnn", "conv2d", "stack", "stack", "relu"], "rockchip_npu")
    assert mixed.fallback_ops == {"rnn": 1, "stack": 2}
    assert mixed.subgraphs == 3 and mixed.cpu_segments == 2
    none = partition(["rnn", "lookup_table_v2"], "rockchip_npu")
    assert none.subgraphs == 0 and none.cpu_segments == 1
    kirin = partition(["lookup_table_v2", "rnn", "matmul_v2"], "huawei_kirin_npu")
    assert kirin.fallback_ops == {"rnn": 1} and kirin.subgraphs == 2


def test_npu_ops_yaml_records_sources_per_list():
    t = load_npu_ops()
    assert {"huawei_kirin_npu", "rockchip_npu", "verisilicon_timvx"} <= set(t.devices)
    for d in t.devices.values():
        assert re.search(r"PaddlePaddle/Paddle-Lite/.+@[0-9a-f]{40}$", d.source), d.source
        assert d.ops and all(re.fullmatch(r"[a-z0-9_]+", op) for op in d.ops)
    assert t.devices["rockchip_npu"].needs_quantized
    assert not t.devices["huawei_kirin_npu"].needs_quantized
    assert "matmul_v2" not in t.devices["rockchip_npu"].ops  # as published: fc yes, matmul_v2 no
    with pytest.raises(Exception):
        partition(["conv2d"], "no_such_npu")


# ------------------------------------------------------------- review fixes: numbers, estimate
@pytest.mark.parametrize("v,text", [(1530.4, "1,530"), (12345.6, "12,346"), (999.7, "1,000"),
                                    (30.0, "30.0"), (6.0, "6.00"), (0.0523, "0.0523"),
                                    (0.00005, "0.0000500"), (0, "0"), (None, "n/a")])
def test_fmt_num_no_exponents(v, text):
    assert R.fmt_num(v) == text
    assert R.fmt_ms(1530.4) == "1,530 ms"


def test_estimate_for_an_fp32_model_on_an_int8_npu_is_informative_only():
    est = A.Estimate(aipu_ms=2.0, precision="int8", tops=3.0, utilisation=0.3, note="n",
                     assumes_quantized=True)
    x = inp(model=A.ModelFacts("m", quantized=False), nnadapter_devices=ROCKCHIP, estimate=est,
            cpu=side("cpu", 40.0))
    c = R.rule_estimate(x)
    assert c.direction == "neutral" and c.weight == 0.0
    assert "assumes an int8-quantised model (it is not)" in c.text
    # the same figure for a quantised model does vote
    q = R.rule_estimate(replace(x, model=A.ModelFacts("m", quantized=True),
                                estimate=replace(est, assumes_quantized=False)))
    assert q.direction == "aipu"
    lb = R.rule_latency_budget(replace(x, cpu=None, options=A.Options(latency_budget_ms=5)))
    assert "if the model were int8-quantised (it is not)" in lb.text


def test_side_selection_names_job_campaign_and_best_of_n():
    s = replace(side("cpu", 3.0), campaign="c1", candidates=3)
    assert "of campaign c1" in s.selection and "fastest of 3 CPU configurations" in s.selection
    imp = replace(side("cpu", 3.0, source="import:v.csv"), campaign="vendor")
    assert "imported (import:v.csv" in imp.selection and "fastest of" not in imp.selection
    assert R._side_ev(s)["candidates"] == 3
