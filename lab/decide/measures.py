"""The measured criterion: what the lab's result rows say about a chip on the reference models.

Why a module of its own: the other criteria read the catalog, this one reads `ResultRow`s, and
choosing the row that speaks for a model (ok, outputs agree, batch 1 and the profile's precision
preferred, then the fastest) is a rule of its own, shared with the serving report's cost per
request. Each reference model is scored like with like; a model a chip has not measured counts at
UNKNOWN_PRIOR. Rules: docs/scoring.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lab.core import jsonio
from lab.core.errors import ConfigError
from lab.core.records import ResultRow
from lab.decide.criteria import UNKNOWN_PRIOR, Criterion, effective_tops, log_down, log_up
from lab.decide.profiles import Profile
from lab.devices.catalog import TOPS_PRECISIONS, Chip
from lab.results.quality import LeftOut, left_out, representative


@dataclass
class ModelMeasure:
    """Best ok row of one reference model on one chip (chosen per docs/scoring.md)."""

    model: str
    latency_ms: float | None
    energy_mj: float | None
    throughput_ips: float | None
    precision: str | None
    backend: str | None
    processor: str | None
    batch: int
    utilisation: float | None
    utilisation_note: str
    serving_qps: float | None = None  # max QPS held under the latency bound (a serving sweep)
    requests_per_usd: float | None = None  # serving_qps x 3600 / cloud USD per hour
    agree_ok: bool | None = None  # output check of that row (rows that failed it never count)
    accuracy_top1: float | None = None


def score_measured(chip: Chip, p: Profile, measures: dict[str, ModelMeasure],
                   compare_on: tuple[str, ...] | None = None, context: str = "") -> Criterion:
    """Weighted mean of latency / energy / throughput sub-scores over the profile's reference models.

    Every chip is scored on every reference model, model by model (like with like): a model the
    chip has not measured, or a figure it lacks, counts at UNKNOWN_PRIOR, so a chip never gains by
    having measured only its easiest model, and a true measurement better than the prior can only
    raise it. `compare_on` and `context` are kept for callers; the per-model prior replaces them.
    Unknown (None) when the chip has no ok row of any reference model, or none of the sub-scores'
    figures is known for any model.
    """
    w = p.weights["measured"]
    if not measures:
        return Criterion("measured", w, None, None,
                         f"unknown: no ok measurement of {', '.join(p.reference_models) or '(none)'} "
                         "on this chip")
    models = [m for m in p.reference_models] or list(measures)
    missing = [m for m in models if m not in measures]
    subs, why = {}, []
    spec = {"latency": ("latency_ms", log_down), "energy": ("energy_mj", log_down),
            "throughput": ("throughput_ips", log_up), "serving": ("requests_per_usd", log_up)}
    for sub, sw in p.measured.items():
        if sw <= 0:
            continue
        attr, fn = spec[sub]
        lo, hi = p.targets[attr]
        vals = [(m, getattr(measures[m], attr)) for m in models
                if m in measures and getattr(measures[m], attr) is not None]
        if not vals:
            why.append(f"{sub} unknown")
            continue
        known = dict(vals)
        subs[sub] = sum(fn(known[m], lo, hi) if m in known else UNKNOWN_PRIOR
                        for m in models) / len(models)
        why.append(f"{sub}: " + ", ".join(f"{m} {v:.4g}" for m, v in vals) + f" ({attr}, log {lo:g}..{hi:g})"
                   + (f"; {', '.join(m for m in models if m not in known)} at the prior "
                      f"{UNKNOWN_PRIOR:g}" if len(known) < len(models) else ""))
    if not subs:
        return Criterion("measured", w, None, None, "unknown: " + "; ".join(why))
    if missing:
        why.append(f"not measured here: {', '.join(missing)}")
    tot = sum(p.measured[k] for k in subs)
    s = sum(p.measured[k] * v for k, v in subs.items()) / tot
    return Criterion("measured", w, s, {k: round(v, 4) for k, v in subs.items()}, "; ".join(why))


def load_model_flops(models_dir: str | Path = "models") -> dict[str, float]:
    """MACs per model from models/<id>/meta.json field `flops` (paddle.flops); missing -> absent."""
    out: dict[str, float] = {}
    root = Path(models_dir)
    if not root.is_dir():
        return out
    for meta in root.glob("*/meta.json"):
        try:  # bounded and strict: meta.json is input like any other file
            doc = jsonio.load_file(meta, what="model meta", max_bytes=64 * 1024 * 1024)
            v = doc.get("flops") if isinstance(doc, dict) else None
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e30:
                out[meta.parent.name] = float(v)
        except ConfigError:
            continue  # unreadable meta: utilisation for that model stays unknown
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) and v > 0 else None


def measures_for(chip: Chip, p: Profile, rows: Iterable[ResultRow], flops: dict[str, float]) -> dict[str, ModelMeasure]:
    """Per reference model, the row used for latency: ok, batch 1 preferred, the profile's
    precision preferred, then the fastest. Throughput is the best over all its ok rows. Rows not
    representative of the chip (emulated, identity mismatch, simulated) never count
    (`unrepresentative` says which were left out)."""
    out: dict[str, ModelMeasure] = {}
    by_model: dict[str, list[ResultRow]] = {}

    def lat(r: ResultRow) -> float | None:  # 0 is not a latency: falls through to the mean
        return _num(r.p50_ms) or _num(r.mean_ms)

    def batch(r: ResultRow) -> int:
        return r.batch if isinstance(r.batch, int) and r.batch > 0 else 1

    serving: dict[str, float] = {}
    for r in rows:
        if r.chip != chip.id or not r.ok or r.model not in p.reference_models:
            continue
        if r.agree_ok is False:  # outputs failed the agreement check: fast but wrong, never a figure
            continue
        if not representative(r):  # not the chip's figure (lab.results.quality)
            continue
        if r.scenario is not None:  # a serving job: its latency is under load, not batch-1
            if r.scenario == "sweep" and r.valid and _num(r.qps):
                serving[r.model] = max(serving.get(r.model, 0.0), float(r.qps))
            continue
        if lat(r):
            by_model.setdefault(r.model, []).append(r)
    usd_h, _ = hourly_usd(chip)
    for model, rs in by_model.items():
        best = min(rs, key=lambda r: (batch(r) != 1, r.precision != p.precision, lat(r)))
        thr = max(batch(r) * 1000.0 / lat(r) for r in rs)
        e = _num(best.energy_net_mj_per_inf) or _num(best.energy_mj_per_inf)
        util, note = _utilisation(chip, best, lat(best), batch(best), flops.get(model))
        out[model] = ModelMeasure(model=model, latency_ms=lat(best), energy_mj=e, throughput_ips=thr,
                                  precision=best.precision, backend=best.backend,
                                  processor=best.processor, batch=batch(best),
                                  utilisation=util, utilisation_note=note, agree_ok=best.agree_ok,
                                  accuracy_top1=best.accuracy_top1)
    for model, qps in serving.items():
        m = out.get(model) or ModelMeasure(model, None, None, None, None, "serving-http", None, 1, None, "")
        m.serving_qps = qps
        m.requests_per_usd = qps * 3600.0 / usd_h if usd_h else None
        out[model] = m
    return out


def unrepresentative(chip: Chip, p: Profile, rows: Iterable[ResultRow]) -> LeftOut:
    """The ok rows of the profile's reference models on this chip that `measures_for` left out as
    not representative of it, counted with their reasons (for `lab score`'s output)."""
    return left_out(r for r in rows if r.chip == chip.id and r.ok and r.model in p.reference_models
                    and not representative(r))


def hourly_usd(chip: Chip) -> tuple[float | None, str]:
    """The chip's cloud price per hour in USD (typical of the catalog's range), or None and why."""
    pr = next((x for x in chip.prices if x.basis == "cloud-hourly"), None)
    if pr is None or pr.typical is None:
        return None, "no cloud-hourly price in the catalog"
    if pr.currency != "USD":
        return None, f"cloud-hourly price in {pr.currency}, not USD"
    return pr.typical, f"{pr.typical:g} USD/h [{pr.confidence}{', estimate' if pr.estimate else ''}]"


def cost_per_million(qps: float | None, usd_per_hour: float | None) -> float | None:
    """USD per million requests at `qps` sustained on a chip rented at `usd_per_hour`."""
    if not qps or not usd_per_hour or qps <= 0:
        return None
    return usd_per_hour / (qps * 3600.0) * 1e6


def _utilisation(chip: Chip, row: ResultRow, lat_ms: float, batch: int, macs: float | None) -> tuple[float | None, str]:
    """achieved / rated = (MACs x 2 x batch / latency) / rated TOPS at the row's precision."""
    if macs is None:
        return None, "model FLOPs unknown (no models/<id>/meta.json 'flops')"
    prec = row.precision
    acc = chip.accelerator
    if acc.kind == "none" or row.processor != acc.processor:
        if acc.kind == "none":
            return None, "chip has no rated accelerator TOPS"
        return None, f"ran on {row.processor}; the rated TOPS are the {acc.kind}'s ({acc.processor})"
    rated, why = effective_tops(chip, prec) if prec in TOPS_PRECISIONS else (None, f"precision {prec!r}")
    if not rated:
        return None, f"rated TOPS at {prec} unknown: {why}"
    achieved = macs * 2 * batch / (lat_ms / 1000.0) / 1e12
    return achieved / rated, f"{achieved:.4g} achieved / {rated:g} rated TOPS at {prec}"
