"""The highest QPS an endpoint holds under a latency bound, by bisection over LoadGen Server runs.

Why bisection on LoadGen's verdict: "holds the bound" is exactly what LoadGen's Server scenario
judges (the percentile latency under the bound, with early stopping, over a Poisson arrival
process), and validity is monotone enough in the rate for bisection: below capacity the tail is
short, past it the queue grows without limit. The bracket: `lo` must hold (checked first, halved up
to `max_halvings` times if not), `hi` is an upper bound such as the Offline throughput (it is tried
once; if it holds, it is the answer). Bounded: at most `max_points` runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from lab.serving.loadgen import LoadResult


@dataclass(frozen=True)
class SweepPoint:
    target_qps: float
    qps: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    valid: bool
    summary_path: str


@dataclass
class SweepResult:
    """`max_qps`: the highest target rate that held the bound (None: none did, see `note`)."""

    max_qps: float | None
    latency_bound_ms: float | None
    percentile: float
    points: list[SweepPoint] = field(default_factory=list)
    best: LoadResult | None = None
    converged: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _point(r: LoadResult) -> SweepPoint:
    return SweepPoint(r.target_qps or 0.0, r.qps, r.p50_ms, r.p90_ms, r.p99_ms, held(r), r.summary_path)


KEEP_UP = 0.9  # a rate is held only if the endpoint completed at least this share of it


def held(r: LoadResult) -> bool:
    """LoadGen's VALID, and the endpoint completed what was scheduled: a short run above capacity
    can pass the latency percentile while its queue is still building (seen here: VALID at 22.7 QPS
    on an endpoint that completes 14.5/s over a longer run)."""
    if not r.valid:
        return False
    if r.completed_qps is None or not r.qps:
        return True
    return r.completed_qps >= KEEP_UP * r.qps


def sweep(measure: Callable[[float], LoadResult], lo: float, hi: float, *, rel_tol: float = 0.05,
          max_points: int = 10, max_halvings: int = 3, max_growths: int = 2,
          ceiling: float | None = None) -> SweepResult:
    """Bisect [lo, hi] with `measure(qps) -> LoadResult` (a Server run at that rate).

    Stops when (hi - lo) / hi <= rel_tol or after max_points runs (converged=False then).
    `ceiling`: the highest rate the upper end may grow to (the batch-1 sanity bound: a short run
    above what the instances can serve may still look VALID while its queue builds).
    """
    if not 0 < lo < hi:
        raise ValueError(f"sweep needs 0 < lo < hi (got {lo}, {hi})")
    if ceiling is not None and lo < ceiling < hi:
        hi = ceiling  # a guess above what the instances can serve is not a rate to try
    points: list[SweepPoint] = []
    best: LoadResult | None = None
    first: LoadResult | None = None

    def run(q: float) -> LoadResult:
        nonlocal first
        r = measure(q)
        first = first or r
        points.append(_point(r))
        return r

    def result(max_qps, converged, note=""):
        ref = best or first
        return SweepResult(max_qps, ref.latency_bound_ms if ref else None, ref.percentile if ref else 0.99,
                           sorted(points, key=lambda p: p.target_qps), best, converged, note)

    for _ in range(max_halvings + 1):
        r = run(lo)
        if held(r):
            best = r
            break
        hi, lo = lo, lo / 2.0
        if len(points) >= max_points:
            break
    if best is None:
        return result(None, False, f"no rate down to {hi:.3g} QPS held the bound")
    halved = len(points) > 1  # then hi is a rate that already failed: not run again
    if not halved:
        # the upper end is a guess (Offline throughput x 1.1): while it holds, double it (bounded),
        # so the answer is a rate that held next to one that did not, never just the guess
        for _ in range(max_growths + 1):
            if len(points) >= max_points:
                break
            r = run(hi)
            if not held(r):
                break
            lo, best = hi, r
            if ceiling is not None and hi >= ceiling:
                if len(points) == 2 and len(points) < max_points:
                    run((points[0].target_qps + hi) / 2.0)  # one more point: a curve, not two ends
                return result(lo, False, f"held the bound up to the ceiling {ceiling:.3g} QPS (no rate "
                                         "above it can be sustained; a longer run would fail it)")
            hi = hi * 2.0 if ceiling is None else min(hi * 2.0, ceiling)
        else:
            return result(lo, False, f"every rate up to {lo:.3g} QPS held the bound (growth limit)")
    while len(points) < max_points and (hi - lo) / hi > rel_tol:
        mid = (lo + hi) / 2.0
        r = run(mid)
        if held(r):
            lo, best = mid, r
        else:
            hi = mid
    converged = (hi - lo) / hi <= rel_tol
    return result(lo, converged, "" if converged else f"stopped after {max_points} runs")


def sweep_points(provenance: dict[str, Any]) -> list[SweepPoint]:
    """The sweep's points of a stored serving job, typed (empty when the job was not a sweep).

    Where they live: `provenance["serving"]["sweep"]["points"]` (lab.runtimes.serving)."""
    sw = ((provenance or {}).get("serving") or {}).get("sweep") or {}
    names = SweepPoint.__dataclass_fields__
    return [SweepPoint(**{k: v for k, v in p.items() if k in names}) for p in sw.get("points") or []]
