"""Score chips against a selection profile: the deployment guide's seven criteria + measurements.

Why this shape: chip selection mixes brochure figures of uneven quality with what the lab
measured. Each criterion is one small function returning a score in [0, 1] *or None with a
reason*: unknown is never scored 0. Nor may a chip gain rank through what is unknown about it:
an unknown criterion counts at the conservative prior UNKNOWN_PRIOR (worse than a typical chip),
and the stability draws sample it over [0, 2 x prior] so its uncertainty shows; `coverage` says how
much of the profile's weight was actually known. Hard constraints exclude
chips with a reason. Robustness (seeded +-20% weight Monte Carlo) and a Pareto front over
latency, energy and price tell the user how much to trust the ranking. Rules: docs/scoring.md.
Analysis only: reads the catalog, the profile and store rows; never touches devices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from lab.devices.catalog import TOPS_PRECISIONS, Catalog, Chip, Figure, Price, tops
from lab.core.errors import ConfigError
from lab.core.records import ResultRow
from lab.decide.tradeoffs import pareto_front
from lab.core.yamlio import LineDict, expect_keys, load_yaml

DEFAULT_PROFILES = Path(__file__).parent / "data" / "profiles.yaml"
CRITERIA = ("domain", "supply", "tops", "frequency", "memory", "video_isp", "price", "measured")
METRICS = ("power_w", "memory_gb", "decode_1080p30", "encode_1080p30", "isp_mp", "tops",
           "process_nm", "price_usd", "accelerator", "nnadapter", "domain")
PURCHASE_BASES = ("unit", "module", "board", "stick", "phone", "card")

# Unknown criteria (docs/scoring.md "Unknowns"): scored at this conservative prior, never at 0 and
# never above a known figure's typical score; the stability draws sample U(0, 2 x prior).
UNKNOWN_PRIOR = 0.25

# supply criterion (criterion 2): penalties subtracted from 1.0, documented in docs/scoring.md
ADVANCED_NODE_NM = 14.0
NODE_PENALTY = 0.3
FLAG_PENALTY = {"production-stopped": 0.5, "export-control": 0.4, "single-source": 0.2, "other": 0.2}


# ---------------------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # min | max | in | present
    value: Any
    on_unknown: str = "exclude"  # exclude | keep
    any_of: tuple["Constraint", ...] = ()  # when set, the others are unused

    def describe(self) -> str:
        if self.any_of:
            return " or ".join(c.describe() for c in self.any_of)
        sym = {"min": ">=", "max": "<=", "in": "in", "present": "present"}[self.op]
        val = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.metric} {sym} {val}" if self.op != "present" else f"{self.metric} present"


@dataclass(frozen=True)
class Profile:
    id: str
    description: str
    domain: tuple[str, ...]
    precision: str
    weights: dict[str, float]
    targets: dict[str, Any]
    measured: dict[str, float]  # latency | energy | throughput -> sub-weight
    reference_models: tuple[str, ...]
    price_bases: tuple[str, ...]
    amortisation: dict[str, float]
    min_coverage: float
    constraints: tuple[Constraint, ...]
    currency_to_usd: dict[str, float]
    hours_per_year: float = 8760.0
    source: str = ""


@dataclass
class Criterion:
    name: str
    weight: float
    score: float | None  # [0, 1]; None = unknown (never 0)
    value: Any
    reason: str


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


@dataclass
class ChipScore:
    chip: str
    name: str
    score: float | None  # 0..100 over the known criteria; None when nothing is known
    coverage: float  # known weight / total weight
    criteria: dict[str, Criterion]
    excluded: bool = False
    reason: str | None = None
    rank: int | None = None
    stability: float | None = None  # share of weight draws where the chip keeps its rank
    first_share: float | None = None  # share of draws where it ranks first
    pareto: bool | None = None
    measures: dict[str, ModelMeasure] = field(default_factory=dict)
    price_usd: float | None = None  # amortised cost used by `price` and Pareto
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "chip": self.chip, "name": self.name, "rank": self.rank,
            "score": None if self.score is None else round(self.score, 2),
            "coverage": round(self.coverage, 3),
            "criteria": {k: (None if c.score is None else round(c.score, 4)) for k, c in self.criteria.items()},
            "criteria_detail": {k: {"score": None if c.score is None else round(c.score, 4),
                                    "weight": c.weight, "value": _jsonable(c.value), "reason": c.reason}
                                for k, c in self.criteria.items()},
            "excluded": self.excluded, "reason": self.reason,
            "stability": None if self.stability is None else round(self.stability, 3),
            "first_share": None if self.first_share is None else round(self.first_share, 3),
            "pareto": self.pareto,
            "price_usd_amortised": None if self.price_usd is None else round(self.price_usd, 2),
            "measured": {m: {k: _jsonable(v) for k, v in vars(mm).items()} for m, mm in self.measures.items()},
            "notes": self.notes,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------------------- normalisation

def _clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def log_up(x: float, lo: float, hi: float) -> float:
    """0 at <= lo, 1 at >= hi, logarithmic between (figures spanning decades, e.g. TOPS)."""
    if x <= 0:
        return 0.0
    return _clamp(math.log(x / lo) / math.log(hi / lo))


def log_down(x: float, lo: float, hi: float) -> float:
    """1 at <= lo, 0 at >= hi, logarithmic between (lower is better: price, latency, energy)."""
    if x <= 0:
        return 1.0
    return _clamp(math.log(hi / x) / math.log(hi / lo))


def lin_up(x: float, lo: float, hi: float) -> float:
    return _clamp((x - lo) / (hi - lo))


def cap_ratio(x: float, target: float) -> float:
    return _clamp(x / target)


def _fig(f: Figure | None) -> str:
    if f is None:
        return "not in catalog"
    if f.value is not None and not isinstance(f.value, (int, float)):
        return f"{f.value} [{f.tag()}]"
    if f.low is not None and f.high is not None:
        return f"{f.low:g}-{f.high:g} {f.unit or ''} [{f.tag()}]".replace("  ", " ")
    t = f.typical
    return ("n/a" if t is None else f"{t:g} {f.unit or ''}".strip()) + f" [{f.tag()}]"


# ------------------------------------------------------------------------------ criterion scorers

def score_domain(chip: Chip, p: Profile) -> Criterion:
    """Share of the profile's domain tags the chip carries."""
    hit = [t for t in p.domain if t in chip.domain]
    s = len(hit) / len(p.domain)
    return Criterion("domain", p.weights["domain"], s, hit,
                     f"matches {len(hit)}/{len(p.domain)} tags ({', '.join(hit) or 'none'}) of "
                     f"{', '.join(p.domain)}; chip: {', '.join(chip.domain)}")


def score_supply(chip: Chip, p: Profile) -> Criterion:
    """1.0 minus penalties: node <= 14 nm (supply attention) and each vendor/export supply flag."""
    s, why = 1.0, []
    node = chip.process_nm.typical if chip.process_nm else None
    if node is not None and node <= ADVANCED_NODE_NM:
        s -= NODE_PENALTY
        why.append(f"-{NODE_PENALTY:g}: {node:g} nm <= {ADVANCED_NODE_NM:g} nm needs supply attention "
                   f"[{chip.process_nm.tag()}]")
    elif node is not None:
        why.append(f"{node:g} nm > {ADVANCED_NODE_NM:g} nm: mature node")
    for flag in chip.supply:
        pen = FLAG_PENALTY.get(flag.kind, 0.2)
        s -= pen
        why.append(f"-{pen:g}: {flag.kind}: {flag.note} [{flag.confidence}]")
    if node is None and not chip.supply:
        note = chip.process_nm.note if chip.process_nm and chip.process_nm.note else "not in catalog"
        return Criterion("supply", p.weights["supply"], None, None,
                         f"unknown: process node unknown ({note}) and no supply flags")
    if node is None:
        why.insert(0, "process node unknown (not penalised)")
    return Criterion("supply", p.weights["supply"], max(0.0, s), node, "; ".join(why))


def effective_tops(chip: Chip, precision: str) -> tuple[float | None, str]:
    """Rated dense TOPS at exactly `precision` and how it was obtained (docs/scoring.md).

    Only that precision is read. If only a 2:4-sparse figure is stated, half of it is used and
    the reason says so (structured sparsity doubles peak throughput by definition).
    """
    acc = chip.accelerator
    if acc.kind == "none":
        return None, "no accelerator: no rated TOPS (judge it by measurements)"
    if precision in acc.unsupported:
        return 0.0, f"{acc.name or acc.kind} cannot run {precision} ({acc.note or 'catalog'})"
    f = tops(chip, precision)
    if f is not None and f.value is not None:
        return float(f.value), f"{f.value:g} {precision} dense [{f.tag()}]"
    if f is not None:
        return None, f"{precision}: {f.note}"
    sp = acc.tops_sparse.get(precision)
    if sp is not None and sp.value is not None:
        return float(sp.value) / 2.0, (f"{sp.value:g} {precision} 2:4-sparse [{sp.tag()}] / 2 = "
                                       f"{sp.value / 2:g} dense-equivalent (dense not stated)")
    stated = sorted(set(acc.tops) | set(acc.tops_sparse))
    return None, (f"no {precision} rating stated (stated: {', '.join(stated) or 'none'}); "
                  "not derived from another precision")


def score_tops(chip: Chip, p: Profile) -> Criterion:
    """log_up(TOPS at the profile precision, targets.tops)."""
    lo, hi = p.targets["tops"]
    v, why = effective_tops(chip, p.precision)
    if v is None:
        return Criterion("tops", p.weights["tops"], None, None, "unknown: " + why)
    return Criterion("tops", p.weights["tops"], log_up(v, lo, hi), v, f"{why}; log scale {lo:g}..{hi:g}")


def score_frequency(chip: Chip, p: Profile) -> Criterion:
    """lin_up(max clock of the accelerator or the CPU, targets.frequency.mhz)."""
    spec = p.targets["frequency"]
    lo, hi = spec["mhz"]
    if spec["of"] == "cpu":
        f, what = chip.cpu.max_clock_mhz, "CPU max clock"
    else:
        f, what = chip.accelerator.max_clock_mhz, f"{chip.accelerator.kind.upper()} max clock"
        if chip.accelerator.kind == "none":
            return Criterion("frequency", p.weights["frequency"], None, None,
                             "unknown: no accelerator clock (no accelerator)")
    v = f.typical if f else None
    if v is None:
        return Criterion("frequency", p.weights["frequency"], None, None,
                         f"unknown: {what} {f.note if f and f.note else 'not in catalog'}")
    return Criterion("frequency", p.weights["frequency"], lin_up(v, lo, hi), v,
                     f"{what} {_fig(f)}; linear {lo:g}..{hi:g} MHz")


def score_memory(chip: Chip, p: Profile) -> Criterion:
    """Mean of log_up(capacity GB) and, when the profile asks, log_up(bandwidth GB/s)."""
    parts, why = [], []

    def log_part(fig, key: str, label: str, unit: str, scope: str = "") -> float | None:
        lo, hi = p.targets[key]
        value = fig.typical if fig else None
        if value is None:
            why.append(f"{label} unknown")
        else:
            parts.append(log_up(value, lo, hi))
            why.append(f"{label} {_fig(fig)}{scope}, log {lo:g}..{hi:g} {unit}")
        return value

    cap = log_part(chip.memory.size_gb, "memory_gb", "capacity", "GB", f" ({chip.memory.scope or '?'})")
    if "bandwidth_gbs" in p.targets:
        log_part(chip.memory.bandwidth_gbs, "bandwidth_gbs", "bandwidth", "GB/s")
    if not parts:
        return Criterion("memory", p.weights["memory"], None, None, "unknown: " + "; ".join(why))
    return Criterion("memory", p.weights["memory"], sum(parts) / len(parts), cap, "; ".join(why))


def _video_parts(chip: Chip) -> dict[str, Figure | None]:
    return {"decode_1080p30": chip.video.decode.channels_1080p30,
            "encode_1080p30": chip.video.encode.channels_1080p30,
            "isp_mp": chip.isp_mp, "av1_decode": chip.video.decode.av1}


def score_video_isp(chip: Chip, p: Profile) -> Criterion:
    """Mean over the profile's video targets of min(1, value / target); AV1 is 1/0."""
    targets = p.targets.get("video") or {}
    w = p.weights["video_isp"]
    if not targets:
        return Criterion("video_isp", w, None, None, "profile sets no video/ISP targets")
    figs = _video_parts(chip)
    parts, why = [], []
    for key, target in targets.items():
        f = figs[key]
        if f is None or not f.known:
            why.append(f"{key} unknown ({f.note if f is not None and f.note else 'not in catalog'})")
            continue
        if key == "av1_decode":
            parts.append(1.0 if (f.value is True) == bool(target) else 0.0)
        else:
            parts.append(cap_ratio(f.typical, float(target)))
        why.append(f"{key} {_fig(f)} vs {target}")
    if not parts:
        return Criterion("video_isp", w, None, None, "unknown: " + "; ".join(why))
    return Criterion("video_isp", w, sum(parts) / len(parts), len(parts), "; ".join(why))


def amortised_usd(chip: Chip, p: Profile) -> tuple[float | None, str, Price | None]:
    """Cost of one unit over the profile's horizon in USD (rule in docs/scoring.md).

    cloud-hourly: hourly x hours_per_year x years x utilisation (energy is in the price).
    purchase bases: typical price (+ energy: typical W x hours x utilisation x USD/kWh when the
    power is known; otherwise stated as not included).
    """
    if not chip.prices:
        return None, f"unknown: {chip.price_note or 'no price in catalog'}", None
    by_basis = {}
    for pr in chip.prices:
        by_basis.setdefault(pr.basis, pr)
    pr = next((by_basis[b] for b in p.price_bases if b in by_basis), None)
    if pr is None:
        return None, (f"unknown: no price on an accepted basis ({', '.join(p.price_bases)}); "
                      f"catalog has {', '.join(by_basis)}"), None
    rate = p.currency_to_usd.get(pr.currency)
    if rate is None:
        return None, f"unknown: no exchange rate for {pr.currency} in profiles assumptions", pr
    years = p.amortisation["years"]
    util = p.amortisation["utilisation"]
    hours = p.hours_per_year * years * util
    typ = pr.typical * rate
    tag = f"[{pr.confidence}{', estimate' if pr.estimate else ''}]"
    if pr.basis == "cloud-hourly":
        return typ * hours, (f"cloud {typ:g} USD/h x {hours:g} h ({years:g} y x {util:g} utilisation) "
                             f"{tag}"), pr
    why = f"{pr.basis} {typ:,.0f} USD {tag}"
    watts = chip.power_w.typical if chip.power_w else None
    if watts is None:
        return typ, why + "; energy not included (power unknown)", pr
    energy = watts * hours / 1000.0 * p.amortisation["usd_per_kwh"]
    return typ + energy, why + (f" + energy {watts:g} W x {hours:g} h x "
                                f"{p.amortisation['usd_per_kwh']:g} USD/kWh = {energy:,.0f} USD"), pr


def score_price(chip: Chip, p: Profile) -> Criterion:
    """log_down(amortised USD, targets.price_usd)."""
    usd, why, _ = amortised_usd(chip, p)
    if usd is None:
        return Criterion("price", p.weights["price"], None, None, why)
    lo, hi = p.targets["price_usd"]
    return Criterion("price", p.weights["price"], log_down(usd, lo, hi), usd,
                     f"{usd:,.0f} USD over {p.amortisation['years']:g} y: {why}; log {lo:g}..{hi:g}")


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


SCORERS: dict[str, Callable[[Chip, Profile], Criterion]] = {
    "domain": score_domain, "supply": score_supply, "tops": score_tops,
    "frequency": score_frequency, "memory": score_memory, "video_isp": score_video_isp,
    "price": score_price,
}


# --------------------------------------------------------------------------------- measurements

def load_model_flops(models_dir: str | Path = "models") -> dict[str, float]:
    """MACs per model from models/<id>/meta.json field `flops` (paddle.flops); missing -> absent."""
    out: dict[str, float] = {}
    root = Path(models_dir)
    if not root.is_dir():
        return out
    for meta in root.glob("*/meta.json"):
        try:
            from lab.core import jsonio  # bounded and strict: meta.json is input like any other file
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
    precision preferred, then the fastest. Throughput is the best over all its ok rows."""
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


# ---------------------------------------------------------------------------------- constraints

def metric_value(chip: Chip, p: Profile, metric: str) -> tuple[Any, str]:
    """(value, description) of a constraint metric; value None = unknown. Numbers are Figures."""
    if metric == "power_w":
        return chip.power_w if chip.power_w and chip.power_w.known else None, "typical power W"
    if metric == "memory_gb":
        f = chip.memory.size_gb
        return f if f and f.known else None, "memory GB"
    if metric in ("decode_1080p30", "encode_1080p30", "isp_mp"):
        f = _video_parts(chip)[metric]
        return f if f and f.known else None, metric
    if metric == "process_nm":
        return chip.process_nm if chip.process_nm and chip.process_nm.known else None, "process nm"
    if metric == "tops":
        v, why = effective_tops(chip, p.precision)
        return v, f"{p.precision} TOPS ({why})"
    if metric == "price_usd":
        v, why, _ = amortised_usd(chip, p)
        return v, f"amortised USD ({why})"
    if metric == "accelerator":
        return chip.accelerator.kind, "accelerator kind"
    if metric == "nnadapter":
        return list(chip.nnadapter), "Paddle Lite NNAdapter devices"
    if metric == "domain":
        return list(chip.domain), "domain tags"
    raise ConfigError(f"unknown constraint metric {metric!r}", fix="use one of " + ", ".join(METRICS))


def check(chip: Chip, p: Profile, c: Constraint) -> tuple[bool | None, str]:
    """True pass / False fail / None unknown, with the reason."""
    if c.any_of:
        results = [check(chip, p, x) for x in c.any_of]
        if any(r is True for r, _ in results):
            return True, "; ".join(w for r, w in results if r)
        if all(r is False for r, _ in results):
            return False, "none of: " + "; ".join(w for _, w in results)
        return None, "cannot verify any of: " + "; ".join(w for _, w in results)
    v, what = metric_value(chip, p, c.metric)
    if c.op == "present":
        ok = bool(v)
        return ok == bool(c.value), f"{what}: {', '.join(v) if isinstance(v, list) and v else 'none'}"
    if c.op == "in":
        if isinstance(v, list):
            ok = any(x in c.value for x in v)
        else:
            ok = v in c.value
        return ok, f"{what} {v} {'in' if ok else 'not in'} {list(c.value)}"
    if v is None:
        return None, f"{what} unknown"
    if isinstance(v, Figure):
        num = v.best_high if c.op == "min" else v.best_low
        shown = _fig(v)
    else:
        num, shown = float(v), f"{float(v):g}"
    if num is None:
        return None, f"{what} unknown"
    ok = num >= c.value if c.op == "min" else num <= c.value
    sym = ">=" if c.op == "min" else "<="
    return ok, f"{what} {shown} {sym if ok else 'not ' + sym} {c.value:g}"


# -------------------------------------------------------------------------------------- scoring

def combine(criteria: dict[str, Criterion], in_play: Iterable[str] | None = None
            ) -> tuple[float | None, float]:
    """(score 0..100, coverage). Known criteria count at their score, unknown ones at
    UNKNOWN_PRIOR; `in_play`: the criteria that count (default every weighted one; `score_chips`
    leaves out those unknown for every chip, which shifts all chips alike). None when nothing is
    known about the chip."""
    play = set(CRITERIA if in_play is None else in_play)
    total = sum(c.weight for k, c in criteria.items() if c.weight > 0)
    known = [c for c in criteria.values() if c.weight > 0 and c.score is not None]
    kw = sum(c.weight for c in known)
    if total <= 0 or kw <= 0:
        return None, 0.0
    counted = [c for k, c in criteria.items() if c.weight > 0 and (k in play or c.score is not None)]
    den = sum(c.weight for c in counted)
    num = sum(c.weight * (c.score if c.score is not None else UNKNOWN_PRIOR) for c in counted)
    return 100.0 * num / den, kw / total


def score_chip(chip: Chip, p: Profile, rows: Iterable[ResultRow] = (), flops: dict[str, float] | None = None,
               *, measures: dict[str, ModelMeasure] | None = None,
               compare_on: tuple[str, ...] | None = None, context: str = "",
               in_play: Iterable[str] | None = None) -> ChipScore:
    """All criteria + constraints for one chip (no rank/stability/Pareto: those need the field)."""
    if measures is None:
        measures = measures_for(chip, p, rows, flops or {})
    crit = {name: fn(chip, p) for name, fn in SCORERS.items()}
    crit["measured"] = score_measured(chip, p, measures, compare_on, context)
    crit = {k: crit[k] for k in CRITERIA}
    score, coverage = combine(crit, in_play)
    cs = ChipScore(chip=chip.id, name=chip.name, score=score, coverage=coverage, criteria=crit,
                   measures=measures, price_usd=crit["price"].value)
    fails = []
    for c in p.constraints:
        ok, why = check(chip, p, c)
        if ok is False:
            fails.append(f"fails {c.describe()}: {why}")
        elif ok is None:
            if c.on_unknown == "exclude":
                fails.append(f"cannot verify {c.describe()}: {why}")
            else:
                cs.notes.append(f"kept although unverified: {c.describe()}: {why}")
    if not fails and coverage < p.min_coverage:
        fails.append(f"only {coverage:.0%} of the profile's weight is known (min_coverage "
                     f"{p.min_coverage:.0%})")
    if fails:
        cs.excluded, cs.reason = True, "; ".join(fails)
    return cs


def score_chips(catalog: Catalog | Iterable[Chip], profile: Profile, rows: Iterable[ResultRow] = (), *,
                flops: dict[str, float] | None = None, draws: int = 1000, seed: int = 0,
                spread: float = 0.2) -> list[ChipScore]:
    """Rank every catalog chip for `profile`: included chips by score, then excluded ones.

    rows: result records (`Store.results()`), flops: model id -> MACs (`load_model_flops`).
    """
    rows = list(rows)
    chips = list(catalog)
    measures = {c.id: measures_for(c, profile, rows, flops or {}) for c in chips}
    scores = [score_chip(c, profile, rows, flops, measures=measures[c.id]) for c in chips]
    # criteria unknown for every chip cannot tell chips apart: leave them out of every score
    in_play = {k for k in CRITERIA if any(s.criteria[k].score is not None for s in scores)}
    for s in scores:
        s.score, _ = combine(s.criteria, in_play)
    inc = sorted((s for s in scores if not s.excluded and s.score is not None),
                 key=lambda s: (-round(s.score, 9), s.chip))
    for i, s in enumerate(inc, 1):
        s.rank = i
    stability(inc, profile, draws=draws, seed=seed, spread=spread)
    pareto(inc)
    rest = sorted((s for s in scores if s.rank is None), key=lambda s: s.chip)
    for s in rest:
        if not s.excluded:  # nothing known at all
            s.excluded, s.reason = True, "no criterion known"
    return inc + rest


def stability(ranked: list[ChipScore], p: Profile, *, draws: int = 1000, seed: int = 0,
              spread: float = 0.2) -> None:
    """Seeded Monte Carlo: every weight x U(1-spread, 1+spread); share of draws in which each chip
    keeps its rank (`stability`) and ranks first (`first_share`)."""
    if not ranked:
        return
    import numpy as np

    names = [k for k in CRITERIA if p.weights[k] > 0
             and any(c.criteria[k].score is not None for c in ranked)]
    w = np.array([p.weights[k] for k in names])
    s = np.array([[c.criteria[k].score if c.criteria[k].score is not None else 0.0 for k in names]
                  for c in ranked])
    known = np.array([[c.criteria[k].score is not None for k in names] for c in ranked], dtype=float)
    rng = np.random.default_rng(seed)
    wd = w[None, :] * rng.uniform(1 - spread, 1 + spread, size=(draws, len(names)))
    # an unknown criterion: a fresh U(0, 2 x prior) per draw and chip (its uncertainty, not 0)
    prior = rng.uniform(0.0, 2 * UNKNOWN_PRIOR, size=(draws, len(ranked), len(names)))
    filled = s[None, :, :] * known[None, :, :] + prior * (1 - known[None, :, :])
    num = np.einsum("dk,dck->dc", wd, filled)
    den = wd.sum(axis=1)[:, None]
    tot = num / den
    # ties broken by nominal order (index), as the nominal ranking does by chip id
    order = np.lexsort((np.broadcast_to(np.arange(len(ranked)), tot.shape), -np.round(tot, 9)), axis=1)
    ranks = np.empty_like(order)
    rows_idx = np.arange(draws)[:, None]
    ranks[rows_idx, order] = np.arange(len(ranked))[None, :]
    for i, c in enumerate(ranked):
        c.stability = float(np.mean(ranks[:, i] == i))
        c.first_share = float(np.mean(ranks[:, i] == 0))


def _dims(c: ChipScore, p_models: Iterable[str]) -> dict[str, float]:
    d = {}
    for m, mm in c.measures.items():
        if mm.latency_ms is not None:
            d[f"latency:{m}"] = mm.latency_ms
        if mm.energy_mj is not None:
            d[f"energy:{m}"] = mm.energy_mj
    if c.price_usd is not None:
        d["price"] = c.price_usd
    return d


def pareto(ranked: list[ChipScore]) -> None:
    """Pareto membership over latency and energy per reference model and amortised price
    (all minimised); None when a chip has none of these figures."""
    dims = [_dims(c, ()) for c in ranked]
    for c, d, on_front in zip(ranked, dims, pareto_front(dims)):
        c.pareto = on_front if d else None


# -------------------------------------------------------------------------------------- profiles

_PROFILE_KEYS = {"id", "description", "domain", "precision", "weights", "targets", "measured",
                 "reference_models", "price_bases", "amortisation", "min_coverage", "constraints"}
_TARGET_KEYS = {"tops", "frequency", "memory_gb", "bandwidth_gbs", "video", "price_usd",
                "latency_ms", "energy_mj", "throughput_ips", "requests_per_usd"}
_VIDEO_KEYS = {"decode_1080p30", "encode_1080p30", "isp_mp", "av1_decode"}


def _perr(path: str, line: int, msg: str, fix: str | None = None) -> ConfigError:
    return ConfigError(msg, path=path, line=line, fix=fix)


def _pos_num(v: Any, path: str, line: int, what: str, *, zero_ok: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not zero_ok):
        raise _perr(path, line, f"{what} must be a {'non-negative' if zero_ok else 'positive'} number, got {v!r}")
    return float(v)


def _range(v: Any, path: str, line: int, what: str) -> tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2):
        raise _perr(path, line, f"{what} must be [low, high]", fix="e.g. [1, 100]")
    lo, hi = (_pos_num(x, path, line, what, zero_ok=False) for x in v)
    if lo >= hi:
        raise _perr(path, line, f"{what}: low {lo:g} must be below high {hi:g}")
    return lo, hi


def _constraint(raw: Any, path: str, line: int) -> Constraint:
    if not isinstance(raw, dict):
        raise _perr(path, line, "a constraint must be a mapping", fix="e.g. {metric: power_w, max: 10}")
    ln = raw.line if isinstance(raw, LineDict) else line
    if "any_of" in raw:
        expect_keys(raw, path=path, what="constraint", required={"any_of"}, allowed={"any_of"})
        subs = raw["any_of"]
        if not isinstance(subs, list) or not subs:
            raise _perr(path, ln, "any_of must list constraints")
        return Constraint(metric="any_of", op="any_of", value=None,
                          any_of=tuple(_constraint(x, path, ln) for x in subs))
    expect_keys(raw, path=path, what="constraint", required={"metric"},
                allowed={"metric", "min", "max", "in", "present", "on_unknown"})
    metric = raw["metric"]
    if metric not in METRICS:
        raise _perr(path, ln, f"unknown constraint metric {metric!r}", fix="use one of " + ", ".join(METRICS))
    ops = [k for k in ("min", "max", "in", "present") if k in raw]
    if len(ops) != 1:
        raise _perr(path, ln, f"constraint on {metric} needs exactly one of min, max, in, present")
    op = ops[0]
    val = raw[op]
    if op in ("min", "max"):
        if metric in ("accelerator", "nnadapter", "domain"):
            raise _perr(path, ln, f"{metric} takes 'in' or 'present', not {op}")
        val = _pos_num(val, path, ln, f"{metric} {op}")
    elif op == "in":
        if not isinstance(val, list) or not val:
            raise _perr(path, ln, f"{metric} in: must be a non-empty list")
        val = tuple(val)
    elif not isinstance(val, bool):
        raise _perr(path, ln, f"{metric} present: must be true/false")
    on_unknown = raw.get("on_unknown", "exclude")
    if on_unknown not in ("exclude", "keep"):
        raise _perr(path, ln, f"on_unknown must be exclude or keep, got {on_unknown!r}")
    return Constraint(metric=metric, op=op, value=val, on_unknown=on_unknown)


def _profile(m: Any, path: str, assumptions: dict) -> Profile:
    if not isinstance(m, LineDict):
        raise _perr(path, 1, "each profile must be a mapping")
    pid = m.get("id")
    what = f"profile {pid!r}" if pid else "profile"
    expect_keys(m, path=path, what=what, required={"id", "domain", "precision", "weights", "targets"},
                allowed=_PROFILE_KEYS)
    if not isinstance(pid, str) or not pid:
        raise _perr(path, m.line_of("id"), "profile id must be a string")
    if m["precision"] not in TOPS_PRECISIONS:
        raise _perr(path, m.line_of("precision"), f"{what}: unknown precision {m['precision']!r}",
                    fix="use one of " + ", ".join(TOPS_PRECISIONS))
    dom = m["domain"]
    if not isinstance(dom, list) or not dom or not all(isinstance(x, str) for x in dom):
        raise _perr(path, m.line_of("domain"), f"{what}: domain must be a non-empty list of tags")
    wts = m["weights"]
    if not isinstance(wts, dict):
        raise _perr(path, m.line_of("weights"), f"{what}: weights must be a mapping")
    expect_keys(wts, path=path, what=f"{what} weights", required=set(CRITERIA), allowed=set(CRITERIA))
    weights = {k: _pos_num(wts[k], path, wts.line_of(k), f"weight {k}") for k in CRITERIA}
    if sum(weights.values()) <= 0:
        raise _perr(path, m.line_of("weights"), f"{what}: all weights are 0")
    tg = m["targets"]
    if not isinstance(tg, dict):
        raise _perr(path, m.line_of("targets"), f"{what}: targets must be a mapping")
    measured_raw = m.get("measured") or LineDict.of({"latency": 1}, m.line_of("measured"))
    if not isinstance(measured_raw, dict):
        raise _perr(path, m.line_of("measured"), f"{what}: measured must map latency/energy/throughput to weights")
    measured = {}
    need = {"tops", "frequency", "memory_gb", "price_usd"}
    for k, v in measured_raw.items():
        if k not in ("latency", "energy", "throughput", "serving"):
            raise _perr(path, measured_raw.line_of(k), f"{what}: measured key {k!r}",
                        fix="use latency, energy, throughput, serving")
        measured[k] = _pos_num(v, path, measured_raw.line_of(k), f"measured {k}")
        if measured[k] > 0:
            need.add({"latency": "latency_ms", "energy": "energy_mj", "throughput": "throughput_ips",
                      "serving": "requests_per_usd"}[k])
    expect_keys(tg, path=path, what=f"{what} targets", required=need, allowed=_TARGET_KEYS)
    targets: dict[str, Any] = {}
    for k, v in tg.items():
        ln = tg.line_of(k)
        if k == "frequency":
            if not isinstance(v, dict):
                raise _perr(path, ln, "targets.frequency must be {of: cpu|accelerator, mhz: [lo, hi]}")
            expect_keys(v, path=path, what="targets.frequency", required={"of", "mhz"}, allowed={"of", "mhz"})
            if v["of"] not in ("cpu", "accelerator"):
                raise _perr(path, ln, "targets.frequency.of must be cpu or accelerator")
            targets[k] = {"of": v["of"], "mhz": _range(v["mhz"], path, ln, "targets.frequency.mhz")}
        elif k == "video":
            if not isinstance(v, dict):
                raise _perr(path, ln, "targets.video must be a mapping")
            expect_keys(v, path=path, what="targets.video", required=set(), allowed=_VIDEO_KEYS)
            targets[k] = {vk: (bool(vv) if vk == "av1_decode" else _pos_num(vv, path, ln, f"video {vk}", zero_ok=False))
                          for vk, vv in v.items()}
        else:
            targets[k] = _range(v, path, ln, f"targets.{k}")
    refs = m.get("reference_models") or []
    if not isinstance(refs, list) or not all(isinstance(x, str) for x in refs):
        raise _perr(path, m.line_of("reference_models"), f"{what}: reference_models must be a list of model ids")
    bases = m.get("price_bases") or list(PURCHASE_BASES) + ["cloud-hourly"]
    from lab.devices.catalog import PRICE_BASES
    for b in bases:
        if b not in PRICE_BASES:
            raise _perr(path, m.line_of("price_bases"), f"{what}: unknown price basis {b!r}",
                        fix="use " + ", ".join(PRICE_BASES))
    am = m.get("amortisation") or {}
    if not isinstance(am, dict):
        raise _perr(path, m.line_of("amortisation"), f"{what}: amortisation must be a mapping")
    expect_keys(am, path=path, what=f"{what} amortisation", required=set(),
                allowed={"years", "utilisation", "usd_per_kwh"}) if am else None
    amort = {"years": _pos_num(am.get("years", 3), path, m.line_of("amortisation"), "years", zero_ok=False),
             "utilisation": _pos_num(am.get("utilisation", 1.0), path, m.line_of("amortisation"), "utilisation", zero_ok=False),
             "usd_per_kwh": _pos_num(am.get("usd_per_kwh", 0.12), path, m.line_of("amortisation"), "usd_per_kwh")}
    if amort["utilisation"] > 1:
        raise _perr(path, m.line_of("amortisation"), f"{what}: utilisation must be in (0, 1]")
    mc = _pos_num(m.get("min_coverage", 0.0), path, m.line_of("min_coverage"), "min_coverage")
    if mc > 1:
        raise _perr(path, m.line_of("min_coverage"), f"{what}: min_coverage must be in [0, 1]")
    cons = m.get("constraints") or []
    if not isinstance(cons, list):
        raise _perr(path, m.line_of("constraints"), f"{what}: constraints must be a list")
    return Profile(id=pid, description=str(m.get("description") or ""), domain=tuple(dom),
                   precision=m["precision"], weights=weights, targets=targets, measured=measured,
                   reference_models=tuple(refs), price_bases=tuple(bases), amortisation=amort,
                   min_coverage=mc,
                   constraints=tuple(_constraint(c, path, m.line_of("constraints")) for c in cons),
                   currency_to_usd=assumptions["currency_to_usd"],
                   hours_per_year=assumptions["hours_per_year"], source=path)


def _load_profile_file(path: str, base_assumptions: dict | None) -> dict[str, Profile]:
    doc = load_yaml(path, what="profiles file")
    if not isinstance(doc, LineDict):
        raise ConfigError("profiles file must be a mapping with 'profiles:'", path=path, line=1)
    expect_keys(doc, path=path, what="profiles file", required={"profiles"},
                allowed={"schema", "assumptions", "profiles"})
    assumptions = dict(base_assumptions or {"currency_to_usd": {"USD": 1.0}, "hours_per_year": 8760.0})
    a = doc.get("assumptions")
    if a is not None:
        if not isinstance(a, LineDict):
            raise ConfigError("assumptions must be a mapping", path=path, line=doc.line_of("assumptions"))
        expect_keys(a, path=path, what="assumptions", required=set(), allowed={"currency_to_usd", "hours_per_year"})
        if "currency_to_usd" in a:
            rates = a["currency_to_usd"]
            if not isinstance(rates, dict):
                raise ConfigError("currency_to_usd must map currency codes to rates", path=path, line=a.line_of("currency_to_usd"))
            assumptions["currency_to_usd"] = {**assumptions["currency_to_usd"], **{
                str(k): _pos_num(v, path, rates.line_of(k), f"rate {k}", zero_ok=False) for k, v in rates.items()}}
        if "hours_per_year" in a:
            assumptions["hours_per_year"] = _pos_num(a["hours_per_year"], path, a.line_of("hours_per_year"),
                                                     "hours_per_year", zero_ok=False)
    items = doc["profiles"]
    if not isinstance(items, list):
        raise ConfigError("'profiles' must be a list", path=path, line=doc.line_of("profiles"))
    out: dict[str, Profile] = {}
    for it in items:
        prof = _profile(it, path, assumptions)
        if prof.id in out:
            raise ConfigError(f"duplicate profile id {prof.id!r}", path=path, line=it.line_of("id"))
        out[prof.id] = prof
    out["__assumptions__"] = assumptions  # type: ignore[assignment]
    return out


def load_profiles(path: str | Path | None = None) -> dict[str, Profile]:
    """Built-in profiles, plus (and overridden by) the profiles of `path` when given."""
    base = _load_profile_file(str(DEFAULT_PROFILES), None)
    assumptions = base.pop("__assumptions__")
    if path is None:
        return base
    user = _load_profile_file(str(path), assumptions)  # type: ignore[arg-type]
    user.pop("__assumptions__")
    return {**base, **user}
