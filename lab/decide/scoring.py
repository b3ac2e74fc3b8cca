"""Rank chips for a selection profile: criteria combined, hard constraints, robustness, Pareto.

Why this shape: each criterion (`lab.decide.criteria`, and the measured one in
`lab.decide.measures`) is scored on its own with a reason; this module combines them without
letting a chip gain rank through what is unknown about it: an unknown criterion counts at the
conservative prior UNKNOWN_PRIOR (worse than a typical chip), and the stability draws sample it
over [0, 2 x prior] so its uncertainty shows; `coverage` says how much of the profile's weight was
actually known. Hard constraints exclude chips with a reason. Robustness (seeded +-20% weight Monte
Carlo) and a Pareto front over latency, energy and price (`lab.decide.tradeoffs`) tell the user
how much to trust the ranking. Rules: docs/scoring.md.
Analysis only: reads the catalog, the profile and store rows; never touches devices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from lab.core.errors import ConfigError
from lab.core.records import ResultRow
from lab.decide.criteria import (SCORERS, UNKNOWN_PRIOR, Criterion, amortised_usd, effective_tops,
                                 fig_text, video_parts)
from lab.decide.measures import ModelMeasure, measures_for, score_measured, unrepresentative
from lab.decide.profiles import CRITERIA, METRICS, Constraint, Profile
from lab.decide.tradeoffs import pareto_front
from lab.devices.catalog import Catalog, Chip, Figure
from lab.results.quality import LeftOut


@dataclass
class ChipScore:
    """One chip's place for one profile: score, coverage, criteria, exclusion, robustness."""

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
    # rows of this chip left out of `measured` as not its figures (lab.results.quality.LeftOut)
    left_out: LeftOut | None = None

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
            "left_out": None if self.left_out is None else self.left_out.to_json(),
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------------------------- constraints

def metric_value(chip: Chip, p: Profile, metric: str) -> tuple[Any, str]:
    """(value, description) of a constraint metric; value None = unknown. Numbers are Figures."""
    if metric == "power_w":
        return chip.power_w if chip.power_w and chip.power_w.known else None, "typical power W"
    if metric == "memory_gb":
        f = chip.memory.size_gb
        return f if f and f.known else None, "memory GB"
    if metric in ("decode_1080p30", "encode_1080p30", "isp_mp"):
        f = video_parts(chip)[metric]
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
        shown = fig_text(v)
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
    rows = rows if isinstance(rows, (list, tuple)) else list(rows)
    if measures is None:
        measures = measures_for(chip, p, rows, flops or {})
    crit = {name: fn(chip, p) for name, fn in SCORERS.items()}
    crit["measured"] = score_measured(chip, p, measures, compare_on, context)
    crit = {k: crit[k] for k in CRITERIA}
    score, coverage = combine(crit, in_play)
    cs = ChipScore(chip=chip.id, name=chip.name, score=score, coverage=coverage, criteria=crit,
                   measures=measures, price_usd=crit["price"].value)
    lo = unrepresentative(chip, p, rows)
    if lo.total:
        cs.left_out = lo
        crit["measured"].reason += f"; {lo.text()}: not this chip's measured performance"
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
    chips = list(catalog)
    by_chip: dict[str, list[ResultRow]] = {}
    for r in rows:  # grouped once: each chip reads only its rows (a scan per chip grew with the store)
        by_chip.setdefault(r.chip, []).append(r)
    measures = {c.id: measures_for(c, profile, by_chip.get(c.id, []), flops or {}) for c in chips}
    scores = [score_chip(c, profile, by_chip.get(c.id, []), flops, measures=measures[c.id]) for c in chips]
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


def _dims(c: ChipScore) -> dict[str, float]:
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
    dims = [_dims(c) for c in ranked]
    for c, d, on_front in zip(ranked, dims, pareto_front(dims)):
        c.pareto = on_front if d else None
