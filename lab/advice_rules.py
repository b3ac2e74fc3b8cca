"""The deployment guide's "CPU or AIPU?" rules, one small function each.

Why one function per rule: each rule is tested on its own, and the answer lists every rule that
spoke with its reason in words and the evidence it used, so a user can check (and disagree with)
each step instead of trusting one opaque score. A rule returns a `Contribution` or None when it has
nothing to say (its input is unknown or the option was not given). Rules never read files, the
store or devices: `lab/advisor.py` gathers the facts into an `AdviceInput` first.

Directions: `cpu`, `aipu`, `gpu`, or `neutral` (informative). `weight` is how strongly the rule
leans (0..3); a `blocking` contribution is a hard constraint (a budget only one side meets, a chip
with no accelerator) and decides the verdict by itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from . import tradeoffs
from .records import cold_start_ms
from .tradeoffs import BreakEven

SMALL_MODEL_MS = 10.0  # the guide: a model that runs under ~10 ms on the CPU does not pay for an NPU
SMALL_MODEL_MACS = 50e6  # unmeasured proxy: < 50 M MACs runs in a few ms on a phone big core
DENSE_SHARE_PAYS = 0.7  # conv/matmul share of MACs above which the NPU's MAC arrays do the work
SPEEDUP_MARGIN = 1.15  # measured steady speedup below this (either way) is "either"
INT8_ONLY_NPUS = frozenset({"rockchip_npu", "verisilicon_timvx"})  # run fully int8-quantised models only
ACCURACY_DROP = 0.02  # top-1 lost between sides beyond which accuracy leans the verdict
ASSUMED_UTILISATION = 0.3  # share of rated TOPS a real model reaches (estimate only, low confidence)


@dataclass(frozen=True)
class Contribution:
    rule: str
    direction: str  # cpu | aipu | gpu | neutral
    weight: float
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    blocking: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "direction": self.direction, "weight": round(self.weight, 2),
                "blocking": self.blocking, "text": self.text, "evidence": self.evidence}


@dataclass(frozen=True)
class Side:
    """Measured figures of one processor class (cpu | aipu | gpu) for the model on the device."""

    processor: str
    backend: str
    precision: str | None
    p50_ms: float | None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    energy_mj_per_inf: float | None = None
    power_w: float | None = None
    peak_rss_mb: float | None = None
    source: str = "lab"
    job_id: str = ""
    campaign: str = ""
    candidates: int = 1  # ok configurations of this processor class the fastest was chosen from
    # output correctness of this row (lab/agreement.py); False: fast but wrong
    agree_ok: bool | None = None
    agree_cosine_min: float | None = None
    agree_top1: float | None = None
    accuracy_top1: float | None = None

    @property
    def imported(self) -> bool:
        return self.source != "lab"

    @property
    def selection(self) -> str:
        """Which row speaks for this processor, in words (job/campaign, best of N, imported)."""
        where = f"job {self.job_id or '?'} of campaign {self.campaign or '?'}"
        if self.imported:
            where += f", imported ({self.source}; no model hash)"
        if self.candidates > 1:
            where += f"; fastest of {self.candidates} {self.processor.upper()} configurations"
        return where

    @property
    def start_ms(self) -> float | None:
        """Load + first inference: the guide's "load to first prediction"."""
        return cold_start_ms(self.load_ms, self.first_ms)

    @property
    def has_ci(self) -> bool:
        return self.ci_low_ms is not None and self.ci_high_ms is not None


@dataclass(frozen=True)
class ModelFacts:
    """What the static analysis says about the model (None = unknown)."""

    model: str
    macs: int | None = None
    params: int | None = None
    dense_share: float | None = None  # share of MACs in conv/matmul
    dense_share_note: str = ""
    dynamic_dims: tuple[str, ...] = ()  # "input[axis]" for dynamic dims other than batch
    sequence_ops: tuple[str, ...] = ()
    data_dependent_ops: tuple[str, ...] = ()
    quantized: bool | None = None
    quant_note: str = ""
    domain: str | None = None  # zoo tag (nlp, vision, ...)
    analysed: bool = True  # False when only measured rows exist (model file not available)


@dataclass(frozen=True)
class Fallback:
    """NPU op coverage on one NNAdapter device (approximation of NNAdapter's partitioning)."""

    nnadapter_device: str
    supported_ops: int
    fallback_ops: dict[str, int]  # op -> count running on the CPU
    subgraphs: int  # NPU subgraphs (runs of supported ops in program order)
    cpu_segments: int  # runs of unsupported ops
    fused: dict[str, int] = field(default_factory=dict)  # op -> count absorbed by opt fusions
    needs_quantized: bool = False
    source: str = ""

    @property
    def total_ops(self) -> int:
        return self.supported_ops + sum(self.fallback_ops.values())


@dataclass(frozen=True)
class Estimate:
    """AIPU steady latency from rated TOPS and model MACs: low confidence by construction."""

    aipu_ms: float | None
    precision: str | None
    tops: float | None
    utilisation: float
    note: str
    assumes_quantized: bool = False  # int8 TOPS used for a model that is not int8-quantised


@dataclass(frozen=True)
class Options:
    latency_budget_ms: float | None = None
    first_inference_budget_ms: float | None = None
    no_preload: bool = False
    busy_cpu: bool = False
    power_budget_w: float | None = None


@dataclass(frozen=True)
class AdviceInput:
    model: ModelFacts
    device: str
    chip: str | None
    has_aipu: bool | None  # None: chip not in the catalog
    aipu_name: str | None
    options: Options
    has_gpu: bool = False
    cpu: Side | None = None
    aipu: Side | None = None
    gpu: Side | None = None
    fallback: Fallback | None = None
    estimate: Estimate | None = None
    nnadapter_devices: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------ helpers
def break_even(cpu: Side | None, aipu: Side | None) -> BreakEven:
    """`lab.tradeoffs.break_even` (the lab's one definition) for two measured sides."""
    return tradeoffs.break_even(
        cpu_start_ms=cpu.start_ms if cpu else None, cpu_p50_ms=cpu.p50_ms if cpu else None,
        aipu_start_ms=aipu.start_ms if aipu else None, aipu_p50_ms=aipu.p50_ms if aipu else None)


def fmt_num(v: float | None) -> str:
    """A figure for people: 3 significant digits below 1000, whole with thousands separators above.

    Why: `f"{v:.3g}"` prints 1530 as "1.53e+03", which reads badly in a verdict.
    """
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if v == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    if abs(float(text)) >= 1000:
        return f"{v:,.0f}"
    return text


def _fmt(ms: float | None) -> str:
    return "n/a" if ms is None else f"{fmt_num(ms)} ms"


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
    if x.cpu is not None and x.cpu.p50_ms is not None:
        if x.cpu.p50_ms < SMALL_MODEL_MS:
            return Contribution("model_too_small", "cpu", 2.0,
                                f"the CPU already runs it in {_fmt(x.cpu.p50_ms)} (< "
                                f"{SMALL_MODEL_MS:g} ms): NPU transfer and scheduling overhead "
                                "eats any gain", {**_side_ev(x.cpu), "threshold_ms": SMALL_MODEL_MS})
        return None
    macs = x.model.macs
    if macs is not None and macs < SMALL_MODEL_MACS:
        return Contribution("model_too_small", "cpu", 1.0,
                            f"only {macs / 1e6:.2g} M MACs (< {SMALL_MODEL_MACS / 1e6:g} M): likely "
                            f"under {SMALL_MODEL_MS:g} ms on a CPU (not measured)",
                            {"macs": macs, "threshold_macs": SMALL_MODEL_MACS, "measured": False})
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

    def cost(s: Side | None) -> float | None:
        if s is None:
            return None
        return s.first_ms if preload else s.start_ms

    what = "first inference (model preloaded)" if preload else "load + first inference"
    c, a = cost(x.cpu), cost(x.aipu)
    ev = {"budget_ms": budget, "preload": preload, "cpu_ms": c, "aipu_ms": a}
    if c is not None and a is not None:
        if a > budget >= c:
            return Contribution("first_inference_budget", "cpu", 3.0,
                                f"{what}: AIPU {_fmt(a)} misses the {_fmt(budget)} budget, CPU "
                                f"{_fmt(c)} meets it", ev, blocking=True)
        if c > budget >= a:
            return Contribution("first_inference_budget", "aipu", 3.0,
                                f"{what}: CPU {_fmt(c)} misses the {_fmt(budget)} budget, AIPU "
                                f"{_fmt(a)} meets it", ev, blocking=True)
        met = "both meet" if max(a, c) <= budget else "neither meets"
        return Contribution("first_inference_budget", "neutral", 0.0,
                            f"{what}: CPU {_fmt(c)}, AIPU {_fmt(a)}; {met} the {_fmt(budget)} budget",
                            ev)
    if preload:
        return Contribution("first_inference_budget", "neutral", 0.0,
                            f"first-inference budget {_fmt(budget)} with the model preloaded: the "
                            "NPU graph build happens before; not measured here", ev)
    return Contribution("first_inference_budget", "cpu", 1.5,
                        f"strict load-to-first-prediction budget ({_fmt(budget)}) without "
                        "preloading: an NPU builds/compiles its graph at load (often seconds), "
                        "the CPU does not (not measured: run with --measure)", ev)


def rule_dense_compute(x: AdviceInput) -> Contribution | None:
    share = x.model.dense_share
    if share is None:
        return None
    ev = {"conv_matmul_share": round(share, 3), "threshold": DENSE_SHARE_PAYS,
          "note": x.model.dense_share_note}
    macs = x.model.macs
    if share >= DENSE_SHARE_PAYS and macs is not None and macs < SMALL_MODEL_MACS:
        ev["macs"] = macs
        return Contribution("dense_compute", "neutral", 0.0,
                            f"{share:.0%} of the compute is dense Conv2D/MatMul, but only "
                            f"{macs / 1e6:.2g} M MACs: too little work for the NPU to pay", ev)
    if share >= DENSE_SHARE_PAYS:
        return Contribution("dense_compute", "aipu", 2.0,
                            f"{share:.0%} of the compute is dense Conv2D/MatMul: what NPU MAC "
                            "arrays are built for (ResNet/MobileNet-like)", ev)
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
    if q:
        return Contribution("quantized", "aipu", 1.5,
                            "the model is int8-quantised: NPUs run int8 at their highest rated "
                            "TOPS", ev)
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
    c, a = x.cpu, x.aipu
    ce = c.energy_mj_per_inf if c else None
    ae = a.energy_mj_per_inf if a else None
    cw = c.power_w if c else None
    aw = a.power_w if a else None
    ev = {"power_budget_w": budget, "cpu_power_w": cw, "aipu_power_w": aw,
          "cpu_energy_mj_per_inf": ce, "aipu_energy_mj_per_inf": ae}
    if budget is not None and cw is not None and aw is not None:
        if cw > budget >= aw:
            return Contribution("power", "aipu", 3.0, f"CPU draws {cw:.2f} W, over the {budget:g} W "
                                f"budget; AIPU {aw:.2f} W fits", ev, blocking=True)
        if aw > budget >= cw:
            return Contribution("power", "cpu", 3.0, f"AIPU draws {aw:.2f} W, over the {budget:g} W "
                                f"budget; CPU {cw:.2f} W fits", ev, blocking=True)
    if ce is not None and ae is not None and ce > 0 and ae > 0:
        ratio = ce / ae
        if ratio >= SPEEDUP_MARGIN or ratio <= 1 / SPEEDUP_MARGIN:
            side = "aipu" if ratio > 1 else "cpu"
            w = 2.0 if budget is not None else 1.0
            return Contribution("power", side, w,
                                f"energy per inference: CPU {fmt_num(ce)} mJ, AIPU {fmt_num(ae)} mJ "
                                f"({max(ratio, 1 / ratio):.2f}x less on the {side.upper()})", ev)
        return Contribution("power", "neutral", 0.0, f"energy per inference similar: CPU {fmt_num(ce)} "
                            f"mJ, AIPU {fmt_num(ae)} mJ", ev)
    if budget is not None and x.has_aipu:
        return Contribution("power", "aipu", 1.0,
                            f"low-power use ({budget:g} W budget): NPUs do more inferences per "
                            "joule than CPUs on dense models (no power measured here)", ev)
    return None


def rule_busy_cpu(x: AdviceInput) -> Contribution | None:
    if not x.options.busy_cpu or not x.has_aipu:
        return None
    return Contribution("busy_cpu", "aipu", 1.5,
                        "the CPU is busy with other work (game, video, camera): offloading keeps "
                        "inference from competing for its cores", {"busy_cpu": True})


def rule_op_fallback(x: AdviceInput) -> Contribution | None:
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
                                f"latency budget {_fmt(budget)}: nothing measured; the AIPU "
                                f"estimate is {_fmt(est)}{est_note} (low confidence)", ev)
        return None
    if len(meets) == 1:
        p = meets[0]
        return Contribution("latency_budget", p, 3.0,
                            f"only the {p.upper()} meets the {_fmt(budget)} latency budget "
                            f"(upper CI bound or p50: {_fmt(ev[f'{p}_ms'])})", ev, blocking=True)
    if not meets:
        return Contribution("latency_budget", "neutral", 0.0,
                            f"no measured processor meets the {_fmt(budget)} latency budget", ev)
    return Contribution("latency_budget", "neutral", 0.0,
                        f"{', '.join(m.upper() for m in meets)} all meet the {_fmt(budget)} budget",
                        ev)


def rule_measured_speed(x: AdviceInput) -> Contribution | None:
    c, a = x.cpu, x.aipu
    if c is None or a is None or c.p50_ms is None or a.p50_ms is None or a.p50_ms <= 0:
        return None
    speedup = c.p50_ms / a.p50_ms
    overlap = (c.has_ci and a.has_ci and c.ci_low_ms <= a.ci_high_ms and a.ci_low_ms <= c.ci_high_ms)
    ev = {"cpu": _side_ev(c), "aipu": _side_ev(a), "speedup": round(speedup, 3),
          "ci_overlap": bool(overlap)}
    if overlap or 1 / SPEEDUP_MARGIN < speedup < SPEEDUP_MARGIN:
        return Contribution("measured_speed", "neutral", 0.0,
                            f"steady latency about the same: CPU {_fmt(c.p50_ms)}, AIPU "
                            f"{_fmt(a.p50_ms)}" + (" (CIs overlap)" if overlap else ""), ev)
    side = "aipu" if speedup > 1 else "cpu"
    factor = speedup if speedup > 1 else 1 / speedup
    weight = 3.0 if factor >= 2 else 2.0
    return Contribution("measured_speed", side, weight,
                        f"measured steady latency: CPU {_fmt(c.p50_ms)}, AIPU {_fmt(a.p50_ms)} "
                        f"({factor:.2f}x faster on the {side.upper()})", ev)


def rule_start_cost(x: AdviceInput) -> Contribution | None:
    """Informative: where CPU and AIPU cross in total time (load + first + steady runs)."""
    c, a = x.cpu, x.aipu
    if c is None or a is None or c.start_ms is None or a.start_ms is None:
        return None
    be = break_even(c, a)
    n = be.inferences
    ev = {"cpu_load_ms": c.load_ms, "cpu_first_ms": c.first_ms, "aipu_load_ms": a.load_ms,
          "aipu_first_ms": a.first_ms, "break_even_inferences": n, "break_even": be.to_dict()}
    starts = f"load+first {_fmt(a.start_ms)} vs CPU {_fmt(c.start_ms)}"
    if n is not None and be.ahead_after == "aipu":
        text = f"the AIPU starts slower ({starts}) but runs faster: it is ahead from inference #{n} on"
    elif n is not None:
        text = (f"the AIPU starts faster ({starts}) but runs slower: the CPU is ahead from "
                f"inference #{n} on")
    elif a.start_ms <= c.start_ms:
        text = f"the AIPU is also not slower to start ({starts}); {be.reason}"
    else:
        text = f"the AIPU starts slower ({starts}) and does not run faster: it never catches up"
    return Contribution("start_cost", "neutral", 0.0, text, ev)


def rule_gpu(x: AdviceInput) -> Contribution | None:
    g = x.gpu
    if g is None or g.p50_ms is None:
        return None
    best = min((s for s in (x.cpu, x.aipu) if s is not None and s.p50_ms is not None),
               key=lambda s: s.p50_ms, default=None)
    ev = {"gpu": _side_ev(g), "best_other": _side_ev(best) if best else None}
    if best is None or g.p50_ms * SPEEDUP_MARGIN < best.p50_ms:
        w = 3.0 if best is None or best.p50_ms / g.p50_ms >= 2 else 2.0
        return Contribution("gpu", "gpu", w, f"the GPU runs it in {_fmt(g.p50_ms)}" +
                            (f", faster than the {best.processor.upper()} ({_fmt(best.p50_ms)})"
                             if best else ""), ev)
    return Contribution("gpu", "neutral", 0.0, f"the GPU ({_fmt(g.p50_ms)}) is not faster than "
                        f"the {best.processor.upper()} ({_fmt(best.p50_ms)})", ev)


def rule_estimate(x: AdviceInput) -> Contribution | None:
    e = x.estimate
    if e is None or x.aipu is not None:
        return None
    ev = {"aipu_estimate_ms": e.aipu_ms, "precision": e.precision, "tops": e.tops,
          "assumed_utilisation": e.utilisation, "note": e.note, "confidence": "low"}
    if e.aipu_ms is None:
        return Contribution("estimate", "neutral", 0.0, f"no AIPU estimate: {e.note}", ev)
    text = (f"estimated AIPU steady latency {_fmt(e.aipu_ms)} from {e.tops:g} {e.precision.upper()} "
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
            return Contribution("estimate", "aipu", 1.0, text + f"; the CPU measured {_fmt(x.cpu.p50_ms)}",
                                ev)
        if ratio is not None and ratio < 1:
            return Contribution("estimate", "cpu", 1.0, text + f"; the CPU measured {_fmt(x.cpu.p50_ms)}",
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
                                f"{drop:.3f} off the {best.upper()} ({', '.join(f'{p.upper()} {a:.3f}' for p, a in acc.items())})", ev)
        return Contribution("output_correctness", "neutral", 0.0, "accuracy top-1 within "
                            f"{ACCURACY_DROP} across sides ({', '.join(f'{p.upper()} {a:.3f}' for p, a in acc.items())})", ev)
    return None


RULES: tuple[Callable[[AdviceInput], Contribution | None], ...] = (
    rule_output_correctness, rule_no_accelerator, rule_model_too_small, rule_variable_shapes, rule_data_dependent_output,
    rule_first_inference_budget, rule_dense_compute, rule_quantized, rule_power, rule_busy_cpu,
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
    blocks = {c.direction for c in contribs if c.blocking and c.direction != "neutral"}
    if len(blocks) == 1:
        return blocks.pop(), math.inf
    if len(blocks) > 1:
        return "either", 0.0
    score: dict[str, float] = {"cpu": 0.0, "aipu": 0.0, "gpu": 0.0}
    for c in contribs:
        if c.direction in score:
            score[c.direction] += c.weight
    ranked = sorted(score.items(), key=lambda kv: kv[1], reverse=True)
    (top, s1), (_, s2) = ranked[0], ranked[1]
    if s1 - s2 < 1.0:
        return "either", s1 - s2
    return top, s1 - s2
