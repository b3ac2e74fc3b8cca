"""The answer of `lab advise`: the verdict the rules' contributions add up to, how far to trust it,
and the `Advice` record that carries both with every number behind them.

Why a module of its own: the rules (`lab.decide.advice_rules`) each speak for themselves; turning
what they said into one verdict, a confidence with its reasons (both sides measured with CIs, data
quality, an estimate standing in for a measurement) and a speedup is one job, and `Advice` is the
one shape the CLI text, the JSON schema (ADVICE_SCHEMA) and the report all read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lab.decide.advice_records import (AdviceInput, Contribution, Estimate, Fallback,
                                       MeasuredFallback, Options, Side)
from lab.decide.advice_rules import ACCEL_NAME, break_even, decide, evaluate
from lab.decide.tradeoffs import BreakEven

ADVICE_SCHEMA = "hwlab.advice/1"


@dataclass
class Advice:
    """The answer for one model on one device, with the reasons and numbers behind it."""

    model: str
    device: str
    chip: str | None
    device_status: str
    verdict: str  # cpu | aipu | gpu | either (the set follows the device: `accelerator`)
    confidence: str  # high | medium | low
    reasons: list[Contribution]
    speedup: float | None  # cpu p50 / aipu p50 (> 1: AIPU faster)
    speedup_source: str | None  # measured | estimate
    break_even: BreakEven | None  # lab.decide.tradeoffs: where CPU and AIPU cross in total time
    run_ids: list[str]
    numbers: dict[str, Any]
    fallback: Fallback | None
    fallback_all: list[Fallback]
    estimate: Estimate | None
    options: Options
    notes: list[str] = field(default_factory=list)
    measured_fallback: MeasuredFallback | None = None  # the AIPU job's op profile, where it has one
    accelerator: str | None = "aipu"  # aipu | gpu | None (CPU only): what the question compares
    confidence_reasons: list[str] = field(default_factory=list)  # why confidence is not higher
    left_out: dict[str, Any] | None = None  # rows not representative of the chip (LeftOut.to_json)

    @property
    def verdicts(self) -> tuple[str, ...]:
        acc = self.accelerator
        if acc is None:
            return ("cpu",)
        extra = ("gpu",) if acc == "aipu" and self.numbers.get("gpu") else ()
        return ("cpu", acc, *extra, "either")

    @property
    def break_even_inferences(self) -> int | None:
        return None if self.break_even is None else self.break_even.inferences

    def to_dict(self) -> dict[str, Any]:
        def fb(f: Fallback | None) -> dict[str, Any] | None:
            if f is None:
                return None
            return {"nnadapter_device": f.nnadapter_device, "supported_ops": f.supported_ops,
                    "fallback_ops": dict(f.fallback_ops), "subgraphs": f.subgraphs,
                    "cpu_segments": f.cpu_segments, "fused_by_opt": dict(f.fused),
                    "removed_at_inference": dict(f.removed), "source": f.source}
        est = None
        if self.estimate is not None:
            e = self.estimate
            est = {"aipu_ms": _r(e.aipu_ms), "precision": e.precision, "tops": e.tops,
                   "assumed_utilisation": e.utilisation, "note": e.note, "confidence": "low",
                   "assumes_quantized": e.assumes_quantized,
                   "per_call_floor_ms": e.per_call_floor_ms, "below_floor": e.below_floor}
        return {
            "schema": ADVICE_SCHEMA, "model": self.model, "device": self.device, "chip": self.chip,
            "device_status": self.device_status, "verdict": self.verdict,
            "confidence": self.confidence, "confidence_reasons": list(self.confidence_reasons),
            "accelerator": self.accelerator, "verdicts": list(self.verdicts), "reasons": [c.to_dict() for c in self.reasons],
            "speedup": _r(self.speedup), "speedup_source": self.speedup_source,
            "break_even_inferences": self.break_even_inferences,
            "break_even": None if self.break_even is None else self.break_even.to_dict(),
            "run_ids": list(self.run_ids),
            "numbers": self.numbers, "npu_fallback": fb(self.fallback),
            "npu_fallback_all": [fb(f) for f in self.fallback_all], "estimate": est,
            "options": {"latency_budget_ms": self.options.latency_budget_ms,
                        "first_inference_budget_ms": self.options.first_inference_budget_ms,
                        "no_preload": self.options.no_preload, "busy_cpu": self.options.busy_cpu,
                        "power_budget_w": self.options.power_budget_w},
            "notes": list(self.notes), "left_out": self.left_out,
            "npu_fallback_measured": None if self.measured_fallback is None else {
                "job_id": self.measured_fallback.job_id, "cpu_time_share": _r(self.measured_fallback.cpu_share),
                "cpu_ops_share": {k: _r(v) for k, v in self.measured_fallback.cpu_ops.items()},
                "iterations": self.measured_fallback.iterations, "source": self.measured_fallback.source},
        }


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(v, nd)


def _side_numbers(s: Side | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"backend": s.backend, "precision": s.precision, "p50_ms": s.p50_ms,
            "ci_low_ms": s.ci_low_ms, "ci_high_ms": s.ci_high_ms, "load_ms": s.load_ms,
            "first_ms": s.first_ms, "load_plus_first_ms": s.start_ms,
            "energy_mj_per_inf": s.energy_mj_per_inf, "power_w": s.power_w,
            "peak_rss_mb": s.peak_rss_mb, "source": s.source, "job_id": s.job_id,
            "campaign": s.campaign, "candidates": s.candidates, "selection": s.selection,
            "agree_ok": s.agree_ok, "agree_cosine_min": s.agree_cosine_min,
            "accuracy_top1": s.accuracy_top1, "quality": list(s.quality)}


LEVELS = ("low", "medium", "high")


def confidence(contribs: list[Contribution], x: AdviceInput,
               margin: float) -> tuple[str, list[str]]:
    """How far to trust the verdict, and why it is not higher.

    Base: `high` when CPU and accelerator were both measured by the lab with CIs (or the chip has
    nothing to offload to), `medium` with imports or without CIs, or with one side measured and a
    clear margin, else `low`. Data quality lowers it one step (lab.results.quality.classify: not
    converged, wide CI, throttled, busy host) and names each row's problem; so do rows left out as
    not representative of the chip (emulated, identity mismatch, simulated: the chip's own figure
    is missing); a verdict resting on the rated-TOPS estimate alone is `low`.
    """
    sides = {p: s for p, s in (("cpu", x.cpu), ("aipu", x.aipu), ("gpu", x.gpu)) if s is not None}
    why: list[str] = []
    if x.accel is None or any(c.blocking and c.rule == "no_accelerator" for c in contribs):
        return "high", why
    cpu, other = x.cpu, x.acc
    if cpu is not None and other is not None:
        level = "high" if (cpu.has_ci and other.has_ci and not cpu.imported
                           and not other.imported) else "medium"
        if level == "medium":
            why.append("a side is imported or has no CI")
    elif sides and margin >= 2.0:
        level = "medium"
        why.append(f"only {', '.join(p.upper() for p in sides)} measured")
    else:
        level = "low"
        why.append("nothing measured for both CPU and " + ACCEL_NAME[x.accel])
    if other is None and x.estimate is not None and x.estimate.aipu_ms is not None \
            and any(c.rule == "estimate" and c.direction != "neutral" for c in contribs):
        level = "low"
        why.append(f"the {ACCEL_NAME[x.accel]} side is an estimate from rated TOPS, not a "
                   "measurement")
    flagged = [(p, s.quality) for p, s in sides.items() if s.quality]
    if flagged:
        level = LEVELS[max(0, LEVELS.index(level) - 1)]
        why += [f"{p.upper()} row {sides[p].job_id or '?'}: {'; '.join(q)}" for p, q in flagged]
    if x.left_out is not None:
        level = LEVELS[max(0, LEVELS.index(level) - 1)]
        why.append(f"{x.left_out.short()}: not the figures of chip {x.chip or '(unknown)'} (see "
                   "the notes)")
    return level, why


def speedup(x: AdviceInput) -> tuple[float | None, str | None]:
    """CPU p50 / accelerator p50 (> 1: the accelerator is faster), measured where both sides were,
    else from the AIPU estimate (never one that assumes a quantisation the model does not have)."""
    cpu, acc, est = x.cpu, x.acc, x.estimate
    if cpu and acc and cpu.p50_ms and acc.p50_ms:
        return cpu.p50_ms / acc.p50_ms, "measured"
    if x.accel == "aipu" and cpu and cpu.p50_ms and est and est.aipu_ms and not est.assumes_quantized:
        return cpu.p50_ms / est.aipu_ms, "estimate"
    return None, None


def answer(x: AdviceInput, *, device_status: str, fallbacks: list[Fallback],
           notes: list[str]) -> Advice:
    """Run the rules on `x` and weigh what they said into the `Advice`."""
    contribs = evaluate(x)
    verdict, margin = decide(contribs, x)
    level, level_why = confidence(contribs, x, margin)
    ratio, ratio_src = speedup(x)
    sides = {p: s for p, s in (("cpu", x.cpu), ("aipu", x.aipu), ("gpu", x.gpu)) if s is not None}
    cpu, acc = x.cpu, x.acc
    return Advice(model=x.model.model, device=x.device, chip=x.chip, device_status=device_status,
                  verdict=verdict, confidence=level, confidence_reasons=level_why,
                  accelerator=x.accel,
                  reasons=contribs, speedup=ratio, speedup_source=ratio_src,
                  break_even=break_even(cpu, acc, x.accel) if cpu and acc else None,
                  run_ids=sorted({s.job_id for s in sides.values() if s.job_id}),
                  numbers={p: _side_numbers(sides.get(p)) for p in ("cpu", "aipu", "gpu")},
                  fallback=x.fallback, fallback_all=fallbacks, estimate=x.estimate,
                  options=x.options, notes=notes, measured_fallback=x.measured_fallback,
                  left_out=None if x.left_out is None else x.left_out.to_json())
