"""The deployment guide's "CPU or AIPU?" rules, one small function each.

Why one function per rule: each rule is tested on its own, and the answer lists every rule that
spoke with its reason in words and the evidence it used, so a user can check (and disagree with)
each step instead of trusting one opaque score. A rule returns a `Contribution` or None when it has
nothing to say (its input is unknown or the option was not given). Rules never read files, the
store or devices: `lab/decide/advisor.py` gathers the facts into an `AdviceInput` first (the
records are `lab.decide.advice_records`).

Directions: `cpu`, `aipu`, `gpu`, or `neutral` (informative). `weight` is how strongly the rule
leans (0..3); a `blocking` contribution is a hard constraint (a budget only one side meets, a chip
with no accelerator) and decides the verdict by itself.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from lab.decide import tradeoffs
from lab.decide.advice_records import AdviceInput, Contribution, Fallback, MeasuredFallback, Side
from lab.decide.figures import fmt_macs, fmt_ms, fmt_num, fmt_pct
from lab.decide.tradeoffs import BreakEven

SMALL_MODEL_MS = 10.0  # the guide: a model that runs under ~10 ms on the CPU does not pay for an NPU
SMALL_MODEL_MACS = 50e6  # unmeasured proxy: < 50 M MACs runs in a few ms on a phone big core
DENSE_SHARE_PAYS = 0.7  # conv/matmul share of MACs above which the NPU's MAC arrays do the work
SPEEDUP_MARGIN = 1.15  # measured steady speedup below this (either way) is "either"
INT8_ONLY_NPUS = frozenset({"rockchip_npu", "verisilicon_timvx"})  # run fully int8-quantised models only
ACCURACY_DROP = 0.02  # top-1 lost between sides beyond which accuracy leans the verdict
ASSUMED_UTILISATION = 0.3  # share of rated TOPS a real model reaches (estimate only, low confidence)
# CPU fallback ops that together take less than this share of a measured AIPU run (its op profile,
# job option `profile: ops`) are minor: the copies and CPU work they cost are within the noise
MINOR_FALLBACK_SHARE = 0.05

ACCEL_NAME = {"aipu": "AIPU", "gpu": "GPU", None: "accelerator"}
OVERHEAD = {"aipu": "NPU transfer and scheduling overhead",
            "gpu": "host<->GPU copies and kernel-launch overhead",
            None: "offload overhead"}


# ------------------------------------------------------------------------------------ helpers
def break_even(cpu: Side | None, aipu: Side | None, accel: str = "aipu") -> BreakEven:
    """`lab.decide.tradeoffs.break_even` (the lab's one definition) for two measured sides; `accel`
    names the accelerator side (`gpu` on a device whose accelerator is a GPU)."""
    return tradeoffs.break_even(
        cpu_start_ms=cpu.start_ms if cpu else None, cpu_p50_ms=cpu.p50_ms if cpu else None,
        aipu_start_ms=aipu.start_ms if aipu else None, aipu_p50_ms=aipu.p50_ms if aipu else None,
        accel=accel)


def _side_ev(s: Side) -> dict[str, Any]:
    return {"backend": s.backend, "p50_ms": s.p50_ms, "ci_low_ms": s.ci_low_ms,
            "ci_high_ms": s.ci_high_ms, "job_id": s.job_id, "campaign": s.campaign,
            "source": s.source, "candidates": s.candidates, "selection": s.selection}


# -------------------------------------------------------------------------------------- rules
def rule_no_accelerator(x: AdviceInput) -> Contribution | None:
    if x.has_aipu is False and x.aipu is None and (x.has_gpu or x.gpu is not None):
        return Contribution("no_accelerator", "neutral", 0.0,
                            f"chip {x.chip!r} has no NPU/AIPU; its accelerator is a GPU, so the "
                            "question is CPU or GPU", {"chip": x.chip})
    if x.has_aipu is False and x.aipu is None:
        return Contribution("no_accelerator", "cpu", 3.0,
                            f"chip {x.chip!r} has no NPU/AIPU in the catalog: there is nothing to "
                            "offload to", {"chip": x.chip}, blocking=True)
    return None


def rule_model_too_small(x: AdviceInput) -> Contribution | None:
    """The guide: under ~10 ms on the CPU a model stays on the CPU. Decides on its own (blocking)
    unless a measurement shows the accelerator faster end to end (its measured steady latency,
    copies included, beats the CPU's by SPEEDUP_MARGIN); then it only leans."""
    acc, name = x.acc, ACCEL_NAME[x.accel]
    faster = (acc is not None and acc.p50_ms is not None and x.cpu is not None
              and x.cpu.p50_ms is not None and acc.p50_ms * SPEEDUP_MARGIN < x.cpu.p50_ms)
    why = OVERHEAD[x.accel]
    if x.cpu is not None and x.cpu.p50_ms is not None:
        if x.cpu.p50_ms >= SMALL_MODEL_MS:
            return None
        ev = {**_side_ev(x.cpu), "threshold_ms": SMALL_MODEL_MS, "measured": True}
        if faster:
            ev["accelerator_p50_ms"] = acc.p50_ms
            return Contribution("model_too_small", "cpu", 1.0,
                                f"the CPU already runs it in {fmt_ms(x.cpu.p50_ms)} (< "
                                f"{SMALL_MODEL_MS:g} ms), but the {name} measured faster end to end "
                                f"({fmt_ms(acc.p50_ms)}), so this does not decide alone", ev)
        return Contribution("model_too_small", "cpu", 3.0,
                            f"the CPU already runs it in {fmt_ms(x.cpu.p50_ms)} (< "
                            f"{SMALL_MODEL_MS:g} ms): {why} eats any gain, and no measurement "
                            f"shows the {name} faster", ev, blocking=True)
    macs = x.model.macs
    if macs is not None and macs < SMALL_MODEL_MACS:
        ev = {"macs": macs, "threshold_macs": SMALL_MODEL_MACS, "measured": False,
              "threshold_ms": SMALL_MODEL_MS}
        return Contribution("model_too_small", "cpu", 3.0,
                            f"only {fmt_macs(macs)} (< {SMALL_MODEL_MACS / 1e6:g} M): "
                            f"estimated under {SMALL_MODEL_MS:g} ms on a CPU (not measured), where "
                            f"{why} eats any gain", ev, blocking=True)
    return None


def rule_variable_shapes(x: AdviceInput) -> Contribution | None:
    m = x.model
    if not (m.dynamic_dims or m.sequence_ops):
        if m.domain == "nlp":
            return Contribution("variable_shapes", "cpu", 1.0,
                                "an NLP model: inputs usually vary in length, and NPUs compile "
                                "for fixed shapes", {"domain": m.domain})
        return None
    parts = []
    if m.dynamic_dims:
        parts.append(f"dynamic dimension(s) other than batch ({', '.join(m.dynamic_dims)})")
    if m.sequence_ops:
        parts.append(f"sequence ops ({', '.join(m.sequence_ops)})")
    return Contribution("variable_shapes", "cpu", 2.0,
                        " and ".join(parts) + ": an NPU graph is built for fixed shapes, so each "
                        "new length means a rebuild or padding to the longest",
                        {"dynamic_dims": list(m.dynamic_dims), "sequence_ops": list(m.sequence_ops),
                         "domain": m.domain})


def rule_data_dependent_output(x: AdviceInput) -> Contribution | None:
    ops = x.model.data_dependent_ops
    if not ops:
        return None
    return Contribution("data_dependent_output", "cpu", 1.5,
                        f"output size depends on the content ({', '.join(ops)}, as in detection "
                        "post-processing): NPUs need static output shapes, so these run on the CPU",
                        {"ops": list(ops)})


def rule_first_inference_budget(x: AdviceInput) -> Contribution | None:
    budget = x.options.first_inference_budget_ms
    if budget is None:
        return None
    preload = not x.options.no_preload
    acc, name = x.accel, ACCEL_NAME[x.accel]

    def cost(s: Side | None) -> float | None:
        if s is None:
            return None
        return s.first_ms if preload else s.start_ms

    what = "first inference (model preloaded)" if preload else "load + first inference"
    c, a = cost(x.cpu), cost(x.acc)
    ev = {"budget_ms": budget, "preload": preload, "cpu_ms": c, "aipu_ms": a, "accelerator": acc}
    if c is not None and a is not None:
        if a > budget >= c:
            return Contribution("first_inference_budget", "cpu", 3.0,
                                f"{what}: {name} {fmt_ms(a)} misses the {fmt_ms(budget)} budget, CPU "
                                f"{fmt_ms(c)} meets it", ev, blocking=True)
        if c > budget >= a:
            return Contribution("first_inference_budget", acc, 3.0,
                                f"{what}: CPU {fmt_ms(c)} misses the {fmt_ms(budget)} budget, {name} "
                                f"{fmt_ms(a)} meets it", ev, blocking=True)
        met = "both meet" if max(a, c) <= budget else "neither meets"
        return Contribution("first_inference_budget", "neutral", 0.0,
                            f"{what}: CPU {fmt_ms(c)}, {name} {fmt_ms(a)}; {met} the {fmt_ms(budget)} budget",
                            ev)
    if acc is None:
        state = ("not measured" if c is None else
                 f"the CPU {'meets' if c <= budget else 'misses'} it ({fmt_ms(c)})")
        return Contribution("first_inference_budget", "neutral", 0.0,
                            f"{what} budget {fmt_ms(budget)}: {state}; there is no accelerator to "
                            "compare", ev)
    if preload:
        return Contribution("first_inference_budget", "neutral", 0.0,
                            f"first-inference budget {fmt_ms(budget)} with the model preloaded: the "
                            f"{name} graph build happens before; not measured here", ev)
    build = ("an NPU builds/compiles its graph at load (often seconds)" if acc == "aipu" else
             "a GPU initialises its context and kernels at load (often seconds)")
    return Contribution("first_inference_budget", "cpu", 1.5,
                        f"strict load-to-first-prediction budget ({fmt_ms(budget)}) without "
                        f"preloading: {build}, the CPU does not (not measured: run with --measure)",
                        ev)


def rule_preload(x: AdviceInput) -> Contribution | None:
    """--no-preload without a first-inference budget: the load counts toward the first answer."""
    if not x.options.no_preload or x.options.first_inference_budget_ms is not None:
        return None
    c, a, name = x.cpu, x.acc, ACCEL_NAME[x.accel]
    cs, as_ = (c.start_ms if c else None), (a.start_ms if a else None)
    ev = {"no_preload": True, "cpu_load_plus_first_ms": cs, "accelerator_load_plus_first_ms": as_}
    if cs is not None and as_ is not None:
        side = "cpu" if cs < as_ else x.accel
        return Contribution("preload", side if abs(cs - as_) > 0 else "neutral", 1.0,
                            f"loaded on demand (--no-preload): load + first inference is CPU "
                            f"{fmt_ms(cs)}, {name} {fmt_ms(as_)}", ev)
    if x.accel is None:
        return Contribution("preload", "neutral", 0.0,
                            "loaded on demand (--no-preload): load time counts toward the first "
                            f"prediction (CPU load + first: {fmt_ms(cs)})", ev)
    return Contribution("preload", "cpu", 0.5,
                        "loaded on demand (--no-preload): the accelerator's graph build/initialisation "
                        f"counts toward the first prediction (not measured: CPU {fmt_ms(cs)}, {name} "
                        f"{fmt_ms(as_)})", ev)


def rule_dense_compute(x: AdviceInput) -> Contribution | None:
    share = x.model.dense_share
    if share is None:
        return None
    ev = {"conv_matmul_share": round(share, 3), "threshold": DENSE_SHARE_PAYS,
          "note": x.model.dense_share_note}
    macs = x.model.macs
    unit = {"aipu": "the NPU", "gpu": "the GPU", None: "an accelerator"}[x.accel]
    if share >= DENSE_SHARE_PAYS and macs is not None and macs < SMALL_MODEL_MACS:
        ev["macs"] = macs
        return Contribution("dense_compute", "neutral", 0.0,
                            f"{share:.0%} of the compute is dense Conv2D/MatMul, but only "
                            f"{fmt_macs(macs)}: too little work for {unit} to pay", ev)
    if share >= DENSE_SHARE_PAYS and x.accel is not None:
        built = ("what NPU MAC arrays are built for" if x.accel == "aipu" else
                 "what GPU tensor cores and wide SIMD are built for")
        return Contribution("dense_compute", x.accel, 2.0,
                            f"{share:.0%} of the compute is dense Conv2D/MatMul: {built} "
                            "(ResNet/MobileNet-like)", ev)
    if share >= DENSE_SHARE_PAYS:
        return Contribution("dense_compute", "neutral", 0.0,
                            f"{share:.0%} of the compute is dense Conv2D/MatMul, but the chip has no "
                            "accelerator to run it on", ev)
    return Contribution("dense_compute", "neutral", 0.0,
                        f"only {share:.0%} of the compute is dense Conv2D/MatMul", ev)


def rule_quantized(x: AdviceInput) -> Contribution | None:
    q = x.model.quantized
    needs = bool(x.fallback and x.fallback.needs_quantized) or any(
        d in INT8_ONLY_NPUS for d in x.nnadapter_devices)
    if q is None:
        return None
    ev = {"quantized": q, "note": x.model.quant_note, "npu_needs_int8": needs,
          "nnadapter_devices": list(x.nnadapter_devices)}
    if q and x.accel == "aipu":
        return Contribution("quantized", "aipu", 1.5,
                            "the model is int8-quantised: NPUs run int8 at their highest rated "
                            "TOPS", ev)
    if q:
        return Contribution("quantized", "neutral", 0.0,
                            "the model is int8-quantised" + (
                                ": a GPU runs int8 only through TensorRT int8 kernels"
                                if x.accel == "gpu" else ""), ev)
    if needs and x.has_aipu:
        npu = ", ".join(x.nnadapter_devices) or "this NPU"
        text = (f"the model is not quantised (fp32), and {npu} runs only fully int8-quantised "
                "models: it cannot run on this NPU until quantised with PaddleSlim")
        if x.aipu is not None:  # a measurement outranks the rule: say what it must have been
            ev["aipu_measured"] = _side_ev(x.aipu)
            return Contribution("quantized", "cpu", 3.0, text + f" (the measured AIPU row, "
                                f"{x.aipu.backend} {x.aipu.precision or ''}, cannot be of this "
                                "fp32 model as built)", ev)
        return Contribution("quantized", "cpu", 3.0, text, ev, blocking=True)
    return None


def rule_power(x: AdviceInput) -> Contribution | None:
    budget = x.options.power_budget_w
    c, a, acc, name = x.cpu, x.acc, x.accel, ACCEL_NAME[x.accel]
    ce = c.energy_mj_per_inf if c else None
    ae = a.energy_mj_per_inf if a else None
    cw = c.power_w if c else None
    aw = a.power_w if a else None
    ev = {"power_budget_w": budget, "cpu_power_w": cw, "aipu_power_w": aw,
          "cpu_energy_mj_per_inf": ce, "aipu_energy_mj_per_inf": ae, "accelerator": acc}
    if budget is not None and cw is not None and aw is not None:
        if cw > budget >= aw:
            return Contribution("power", acc, 3.0, f"CPU draws {fmt_num(cw)} W, over the {budget:g} W "
                                f"budget; {name} {fmt_num(aw)} W fits", ev, blocking=True)
        if aw > budget >= cw:
            return Contribution("power", "cpu", 3.0, f"{name} draws {fmt_num(aw)} W, over the {budget:g} W "
                                f"budget; CPU {fmt_num(cw)} W fits", ev, blocking=True)
    head = f"power budget {budget:g} W: " if budget is not None else ""
    if budget is not None and cw is not None and aw is not None:
        met = "both fit" if max(cw, aw) <= budget else "neither fits"
        head = f"power budget {budget:g} W: CPU {fmt_num(cw)} W, {name} {fmt_num(aw)} W ({met}); "
    if ce is not None and ae is not None and ce > 0 and ae > 0 and acc is not None:
        ratio = ce / ae
        if ratio >= SPEEDUP_MARGIN or ratio <= 1 / SPEEDUP_MARGIN:
            side = acc if ratio > 1 else "cpu"
            w = 2.0 if budget is not None else 1.0
            return Contribution("power", side, w,
                                f"{head}energy per inference: CPU {fmt_num(ce)} mJ, {name} "
                                f"{fmt_num(ae)} mJ ({fmt_num(max(ratio, 1 / ratio))}x less on the "
                                f"{side.upper()})", ev)
        return Contribution("power", "neutral", 0.0, f"{head}energy per inference similar: CPU "
                            f"{fmt_num(ce)} mJ, {name} {fmt_num(ae)} mJ", ev)
    if budget is None:
        return None
    if head.count(";"):
        return Contribution("power", "neutral", 0.0, head.rstrip("; "), ev)
    if acc == "aipu":
        return Contribution("power", "aipu", 1.0,
                            f"low-power use ({budget:g} W budget): NPUs do more inferences per "
                            "joule than CPUs on dense models (no power measured here)", ev)
    if acc == "gpu":
        return Contribution("power", "neutral", 0.0,
                            f"power budget {budget:g} W: no power measured for this model on this "
                            "device (a GPU card draws tens to hundreds of W under load; measure "
                            "with telemetry to decide)", ev)
    return Contribution("power", "neutral", 0.0,
                        f"power budget {budget:g} W: the CPU is the only processor here"
                        + (f" (measured {fmt_num(cw)} W: {'fits' if cw <= budget else 'over budget'})"
                           if cw is not None else " (no power measured)"), ev)


def rule_busy_cpu(x: AdviceInput) -> Contribution | None:
    if not x.options.busy_cpu:
        return None
    if x.accel is None:
        return Contribution("busy_cpu", "neutral", 0.0,
                            "the CPU is busy with other work, but this chip has no accelerator to "
                            "offload to: expect slower, noisier CPU inference", {"busy_cpu": True})
    return Contribution("busy_cpu", x.accel, 1.5,
                        "the CPU is busy with other work (game, video, camera): offloading to the "
                        f"{ACCEL_NAME[x.accel]} keeps inference from competing for its cores",
                        {"busy_cpu": True})


def rule_op_fallback(x: AdviceInput) -> Contribution | None:
    if x.measured_fallback is not None:
        return _measured_op_fallback(x.measured_fallback, x.fallback)
    f = x.fallback
    if f is None:
        return None
    ev = {"nnadapter_device": f.nnadapter_device, "fallback_ops": dict(f.fallback_ops),
          "supported_ops": f.supported_ops, "subgraphs": f.subgraphs, "cpu_segments": f.cpu_segments,
          "fused_by_opt": dict(f.fused), "source": f.source,
          "approximation": "subgraph boundary at each supported/unsupported transition in program "
                           "order; NNAdapter's real partitioner works on the data-flow graph"}
    if not f.fallback_ops:
        return Contribution("op_fallback", "aipu", 0.5,
                            f"every op maps to {f.nnadapter_device}: one NPU subgraph, no CPU "
                            "fallback", ev)
    n_fb = sum(f.fallback_ops.values())
    share = n_fb / max(1, f.total_ops)
    ops = ", ".join(f"{k} x{v}" for k, v in sorted(f.fallback_ops.items()))
    if f.subgraphs == 0:
        return Contribution("op_fallback", "cpu", 3.0,
                            f"no op of this model maps to {f.nnadapter_device}: it would run "
                            f"entirely on the CPU ({ops})", ev, blocking=True)
    weight = min(3.0, 0.75 * (f.subgraphs - 1) + 2.0 * share)
    direction = "cpu" if weight >= 0.5 else "neutral"
    return Contribution("op_fallback", direction, weight,
                        f"{n_fb} of {f.total_ops} ops fall back to the CPU on {f.nnadapter_device} "
                        f"({ops}), leaving {f.subgraphs} NPU subgraph(s) and {f.cpu_segments} CPU "
                        "segment(s), with a CPU<->NPU copy at each boundary", ev)


def _measured_op_fallback(m: MeasuredFallback, f: Fallback | None) -> Contribution:
    """Fallback weighed by measured time: an op that takes 40 % of the AIPU run matters, one that
    takes 1 % does not (under MINOR_FALLBACK_SHARE together: minor, no lean)."""
    ev: dict[str, Any] = {"job_id": m.job_id, "cpu_time_share": round(m.cpu_share, 4),
                          "cpu_ops_share": {k: round(v, 4) for k, v in m.cpu_ops.items()},
                          "iterations": m.iterations, "source": m.source,
                          "minor_below": MINOR_FALLBACK_SHARE}
    if f is not None:
        ev["static_fallback_ops"] = dict(f.fallback_ops)
    where = f"in the measured AIPU run (op profile of job {m.job_id[:12]})"
    if not m.cpu_ops:
        return Contribution("op_fallback", "aipu", 0.5, f"no op ran on the CPU {where}", ev)
    ops = ", ".join(f"{k} takes {fmt_pct(v)}" for k, v in m.cpu_ops.items())
    if m.cpu_share < MINOR_FALLBACK_SHARE:
        return Contribution("op_fallback", "neutral", 0.0,
                            f"CPU fallback: {ops} of the time {where}: minor (under "
                            f"{100 * MINOR_FALLBACK_SHARE:.0f} % together)", ev)
    weight = min(3.0, 5.0 * m.cpu_share)
    return Contribution("op_fallback", "cpu", weight,
                        f"CPU fallback: {ops} of the time {where}; that part runs no faster than "
                        "on the CPU alone, plus a CPU<->NPU copy at each boundary", ev)


def rule_latency_budget(x: AdviceInput) -> Contribution | None:
    budget = x.options.latency_budget_ms
    if budget is None:
        return None
    sides = [s for s in (x.cpu, x.aipu, x.gpu) if s is not None and s.p50_ms is not None]
    est = x.estimate.aipu_ms if (x.estimate and x.aipu is None) else None
    est_note = (" if the model were int8-quantised (it is not)"
                if x.estimate is not None and x.estimate.assumes_quantized else "")
    ev: dict[str, Any] = {"budget_ms": budget}
    meets = []
    for s in sides:
        v = s.ci_high_ms if s.ci_high_ms is not None else s.p50_ms
        ev[f"{s.processor}_ms"] = v
        if v <= budget:
            meets.append(s.processor)
    if not sides:
        if est is not None:
            ev["aipu_estimate_ms"] = est
            return Contribution("latency_budget", "neutral", 0.0,
                                f"latency budget {fmt_ms(budget)}: nothing measured; the AIPU "
                                f"estimate is {fmt_ms(est)}{est_note} (low confidence)", ev)
        return Contribution("latency_budget", "neutral", 0.0,
                            f"latency budget {fmt_ms(budget)}: nothing measured for this model on this "
                            "device, so whether it is met is unknown (run `lab advise ... --measure`)",
                            ev)
    if len(meets) == 1:
        p = meets[0]
        return Contribution("latency_budget", p, 3.0,
                            f"only the {p.upper()} meets the {fmt_ms(budget)} latency budget "
                            f"(upper CI bound or p50: {fmt_ms(ev[f'{p}_ms'])})", ev, blocking=True)
    if not meets:
        return Contribution("latency_budget", "neutral", 0.0,
                            f"no measured processor meets the {fmt_ms(budget)} latency budget", ev)
    return Contribution("latency_budget", "neutral", 0.0,
                        f"{', '.join(m.upper() for m in meets)} all meet the {fmt_ms(budget)} budget",
                        ev)


def rule_measured_speed(x: AdviceInput) -> Contribution | None:
    c, a, acc, name = x.cpu, x.acc, x.accel, ACCEL_NAME[x.accel]
    if c is None or a is None or c.p50_ms is None or a.p50_ms is None or a.p50_ms <= 0:
        return None
    speedup = c.p50_ms / a.p50_ms
    overlap = (c.has_ci and a.has_ci and c.ci_low_ms <= a.ci_high_ms and a.ci_low_ms <= c.ci_high_ms)
    ev = {"cpu": _side_ev(c), acc: _side_ev(a), "speedup": round(speedup, 3),
          "ci_overlap": bool(overlap)}
    if overlap or 1 / SPEEDUP_MARGIN < speedup < SPEEDUP_MARGIN:
        return Contribution("measured_speed", "neutral", 0.0,
                            f"steady latency about the same: CPU {fmt_ms(c.p50_ms)}, {name} "
                            f"{fmt_ms(a.p50_ms)}" + (" (CIs overlap)" if overlap else ""), ev)
    side = acc if speedup > 1 else "cpu"
    factor = speedup if speedup > 1 else 1 / speedup
    weight = 3.0 if factor >= 2 else 2.0
    return Contribution("measured_speed", side, weight,
                        f"measured steady latency: CPU {fmt_ms(c.p50_ms)}, {name} {fmt_ms(a.p50_ms)} "
                        f"({fmt_num(factor)}x faster on the {side.upper()})", ev)


def rule_start_cost(x: AdviceInput) -> Contribution | None:
    """Informative: where CPU and accelerator cross in total time (load + first + steady runs)."""
    c, a, acc, name = x.cpu, x.acc, x.accel, ACCEL_NAME[x.accel]
    if c is None or a is None or c.start_ms is None or a.start_ms is None:
        return None
    be = break_even(c, a, acc)
    n = be.inferences
    ev = {"cpu_load_ms": c.load_ms, "cpu_first_ms": c.first_ms, f"{acc}_load_ms": a.load_ms,
          f"{acc}_first_ms": a.first_ms, "break_even_inferences": n, "break_even": be.to_dict()}
    starts = f"load+first {fmt_ms(a.start_ms)} vs CPU {fmt_ms(c.start_ms)}"
    if n is not None and be.ahead_after == acc:
        text = f"the {name} starts slower ({starts}) but runs faster: it is ahead from inference #{n} on"
    elif n is not None:
        text = (f"the {name} starts faster ({starts}) but runs slower: the CPU is ahead from "
                f"inference #{n} on")
    elif a.start_ms <= c.start_ms:
        text = f"the {name} is also not slower to start ({starts}); {be.reason}"
    else:
        text = f"the {name} starts slower ({starts}) and does not run faster: it never catches up"
    return Contribution("start_cost", "neutral", 0.0, text, ev)


def rule_gpu(x: AdviceInput) -> Contribution | None:
    """A GPU next to an NPU (the GPU-only case is CPU-vs-GPU in the rules above)."""
    g = x.gpu
    if g is None or g.p50_ms is None or x.accel != "aipu":
        return None
    best = min((s for s in (x.cpu, x.aipu) if s is not None and s.p50_ms is not None),
               key=lambda s: s.p50_ms, default=None)
    ev = {"gpu": _side_ev(g), "best_other": _side_ev(best) if best else None}
    if best is None or g.p50_ms * SPEEDUP_MARGIN < best.p50_ms:
        w = 3.0 if best is None or best.p50_ms / g.p50_ms >= 2 else 2.0
        return Contribution("gpu", "gpu", w, f"the GPU runs it in {fmt_ms(g.p50_ms)}" +
                            (f", faster than the {best.processor.upper()} ({fmt_ms(best.p50_ms)})"
                             if best else ""), ev)
    return Contribution("gpu", "neutral", 0.0, f"the GPU ({fmt_ms(g.p50_ms)}) is not faster than "
                        f"the {best.processor.upper()} ({fmt_ms(best.p50_ms)})", ev)


def rule_estimate(x: AdviceInput) -> Contribution | None:
    e = x.estimate
    if e is None or x.aipu is not None or x.accel != "aipu":
        return None
    ev = {"aipu_estimate_ms": e.aipu_ms, "precision": e.precision, "tops": e.tops,
          "assumed_utilisation": e.utilisation, "note": e.note, "confidence": "low"}
    if e.aipu_ms is None:
        return Contribution("estimate", "neutral", 0.0, f"no AIPU estimate: {e.note}", ev)
    text = (f"estimated AIPU steady latency {fmt_ms(e.aipu_ms)} from {e.tops:g} {e.precision.upper()} "
            f"TOPS at an assumed {e.utilisation:.0%} utilisation (low confidence)")
    if e.assumes_quantized:
        # an INT8-TOPS figure for a model that is not int8: informative only, never a vote
        ev["assumes_quantized"] = True
        if x.cpu is not None and x.cpu.p50_ms is not None:
            ev["cpu_p50_ms"] = x.cpu.p50_ms
        not_q = " (it is not)" if x.model.quantized is False else ""
        return Contribution("estimate", "neutral", 0.0,
                            f"this estimate assumes an int8-quantised model{not_q} and does not "
                            "apply to the model as it is: once quantised, " + text, ev)
    if x.cpu is not None and x.cpu.p50_ms is not None:
        ratio = x.cpu.p50_ms / e.aipu_ms if e.aipu_ms > 0 else None
        ev["cpu_p50_ms"] = x.cpu.p50_ms
        if ratio is not None and ratio >= 2:
            return Contribution("estimate", "aipu", 1.0, text + f"; the CPU measured {fmt_ms(x.cpu.p50_ms)}",
                                ev)
        if ratio is not None and ratio < 1:
            return Contribution("estimate", "cpu", 1.0, text + f"; the CPU measured {fmt_ms(x.cpu.p50_ms)}",
                                ev)
    return Contribution("estimate", "neutral", 0.0, text, ev)


def rule_output_correctness(x: AdviceInput) -> Contribution | None:
    """A side whose outputs failed the agreement check is never recommended (blocking, with the
    numbers); where both sides measured accuracy, a drop beyond ACCURACY_DROP is evidence."""
    sides = {p: s for p, s in (("cpu", x.cpu), ("aipu", x.aipu), ("gpu", x.gpu)) if s is not None}
    wrong = [p for p, s in sides.items() if s.agree_ok is False]
    if wrong:
        good = [p for p, s in sides.items() if s.agree_ok is not False]
        ev = {f"{p}_{k}": getattr(sides[p], k) for p in wrong
              for k in ("agree_cosine_min", "agree_top1", "accuracy_top1", "backend", "precision", "job_id")}
        nums = "; ".join(f"{p.upper()} ({sides[p].backend} {sides[p].precision}) cosine_min "
                         f"{fmt_num(sides[p].agree_cosine_min)}, top1 agreement "
                         f"{fmt_num(sides[p].agree_top1)}" for p in wrong)
        return Contribution("output_correctness", good[0] if len(good) == 1 else "neutral", 3.0,
                            f"fast but wrong: outputs failed the agreement check with the fp32 "
                            f"reference ({nums}); never recommended", ev, blocking=True)
    acc = {p: s.accuracy_top1 for p, s in sides.items() if s.accuracy_top1 is not None}
    if len(acc) >= 2:
        best = max(acc, key=acc.get)
        drop = acc[best] - min(acc.values())
        ev = {f"{p}_accuracy_top1": a for p, a in acc.items()}
        if drop > ACCURACY_DROP:
            return Contribution("output_correctness", best, 1.0, f"accuracy top-1 drops by "
                                f"{fmt_num(drop)} off the {best.upper()} ({', '.join(f'{p.upper()} {fmt_num(a)}' for p, a in acc.items())})", ev)
        return Contribution("output_correctness", "neutral", 0.0, "accuracy top-1 within "
                            f"{ACCURACY_DROP} across sides ({', '.join(f'{p.upper()} {fmt_num(a)}' for p, a in acc.items())})", ev)
    return None


RULES: tuple[Callable[[AdviceInput], Contribution | None], ...] = (
    rule_output_correctness, rule_no_accelerator, rule_model_too_small, rule_variable_shapes,
    rule_data_dependent_output, rule_first_inference_budget, rule_preload, rule_dense_compute,
    rule_quantized, rule_power, rule_busy_cpu,
    rule_op_fallback, rule_latency_budget, rule_measured_speed, rule_start_cost, rule_gpu,
    rule_estimate,
)


def evaluate(x: AdviceInput) -> list[Contribution]:
    return [c for c in (rule(x) for rule in RULES) if c is not None]


def decide(contribs: list[Contribution], x: AdviceInput) -> tuple[str, float]:
    """Verdict from contributions: a blocking one decides; else the weighted balance.

    Returns (verdict, margin). `either` when the balance is within 1.0 (no rule set clearly
    prefers one side) or when blocking rules contradict each other.
    """
    allowed = x.verdicts  # the verdict set follows the device: never `aipu` without an NPU
    if allowed == ("cpu",):
        return "cpu", math.inf
    blocks = {c.direction for c in contribs if c.blocking and c.direction in allowed}
    if len(blocks) == 1:
        return blocks.pop(), math.inf
    if len(blocks) > 1:
        return "either", 0.0
    score: dict[str, float] = {d: 0.0 for d in allowed if d != "either"}
    for c in contribs:
        if c.direction in score:
            score[c.direction] += c.weight
    ranked = sorted(score.items(), key=lambda kv: kv[1], reverse=True)
    (top, s1), (_, s2) = ranked[0], ranked[1]
    if s1 - s2 < 1.0:
        return "either", s1 - s2
    return top, s1 - s2
