"""Decision maths over measured figures: the CPU/AIPU break-even and the Pareto front.

Why a module of its own: the advisor, the report and scoring each need these, and when each had its
own copy they disagreed on the same page (issue 12). Pure Python on purpose: `lab advise` must stay
well under 300 ms, so nothing here may pull in numpy (the bootstrap lives in `lab.results.stats`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from lab.decide.figures import fmt_ms


@dataclass(frozen=True)
class BreakEven:
    """Where the CPU and the AIPU cross in total time for n inferences in one process.

    total(n) = load + first inference + (n - 1) x steady p50, for n >= 1.
    `inferences`: the smallest n from which the side that is behind at inference #1 is ahead or
    level, and stays so (steady latencies are constant, so the two lines cross at most once).
    None when no crossing exists: one side is ahead (or both level) at every count, or a figure is
    missing; `reason` says which.
    `ahead_first`/`ahead_after`: "cpu" | "aipu" | None (level or unknown) at #1 and from
    `inferences` on (with no crossing, `ahead_after` is the side ahead at every count).
    """

    inferences: int | None
    ahead_first: str | None
    ahead_after: str | None
    reason: str

    def to_dict(self) -> dict:
        return {"inferences": self.inferences, "ahead_first": self.ahead_first,
                "ahead_after": self.ahead_after, "reason": self.reason}


def break_even(*, cpu_start_ms: float | None, cpu_p50_ms: float | None,
               aipu_start_ms: float | None, aipu_p50_ms: float | None,
               accel: str = "aipu") -> BreakEven:
    """The one break-even of the lab (`lab advise`, the report's CPU-vs-AIPU table), see BreakEven.

    start = load + first inference (the guide's "load to first prediction"); p50 = steady median.
    `accel`: what the accelerator side is called (`aipu`, or `gpu` on a device whose accelerator
    is a GPU); it names the side in `ahead_*` and in the reason.
    """
    acc = accel.upper()
    figs = {"CPU load+first": cpu_start_ms, "CPU p50": cpu_p50_ms,
            f"{acc} load+first": aipu_start_ms, f"{acc} p50": aipu_p50_ms}
    missing = [k for k, v in figs.items() if v is None or not math.isfinite(v)]
    if missing:
        return BreakEven(None, None, None, "break-even n/a: " + ", ".join(missing) + " not measured")
    c0, cp, a0, ap = float(cpu_start_ms), float(cpu_p50_ms), float(aipu_start_ms), float(aipu_p50_ms)
    first = accel if a0 < c0 else "cpu" if c0 < a0 else None
    steady = accel if ap < cp else "cpu" if cp < ap else None
    if steady is None or first is None or first == steady:
        # no crossing: the side that starts no slower also runs no slower
        lead = first or steady
        if lead is None:
            return BreakEven(None, None, None, "same load+first and steady latency: level at every count")
        other = "cpu" if lead == accel else accel
        how = ("starts and runs faster" if first and steady else
               "runs faster from the same start" if steady else "starts faster at the same steady latency")
        return BreakEven(None, first, lead, f"{lead.upper()} ahead at every count ({how} than the "
                         f"{other.upper()})")
    # first != steady: the steady-faster side catches up once its steady gain covers the start gap
    late0, latep, early0, earlyp = (a0, ap, c0, cp) if steady == accel else (c0, cp, a0, ap)

    def caught_up(k: int) -> bool:
        return late0 + (k - 1) * latep <= early0 + (k - 1) * earlyp

    n = max(2, math.ceil((late0 - early0) / (earlyp - latep)) + 1)
    while not caught_up(n):  # float guards: the definition itself decides the boundary
        n += 1
    while n > 2 and caught_up(n - 1):
        n -= 1
    late, early = steady.upper(), first.upper()
    return BreakEven(n, first, steady,
                     f"{late} ahead from inference #{n:,} ({early} starts faster: "
                     f"{fmt_ms(min(a0, c0))} vs {fmt_ms(max(a0, c0))} load+first; {late} runs faster: "
                     f"{fmt_ms(min(ap, cp))} vs {fmt_ms(max(ap, cp))})")


def dominates(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """a dominates b (every axis minimised): a knows every axis b knows, is <= on all of them and
    < on one. Axes a point does not know are not compared (a chip without a price is not worse)."""
    if not b or not set(b) <= set(a):
        return False
    return all(a[k] <= b[k] for k in b) and any(a[k] < b[k] for k in b)


def pareto_front(points: Sequence[Mapping[str, float] | Sequence[float]]) -> list[bool]:
    """Non-dominated flags, every axis minimised: the one Pareto front of the lab (report plots,
    chip scoring). A point is a mapping axis -> value, or a sequence of values on fixed axes."""
    dims = [p if isinstance(p, Mapping) else dict(enumerate(p)) for p in points]
    return [not any(dominates(o, d) for j, o in enumerate(dims) if j != i) for i, d in enumerate(dims)]
