"""Data quality of one measurement: the one classification the run summary, the advisor's
confidence and the report share.

Why one function: "4 ok" under a busy host, with every job stopped at max_seconds and CIs like
18-32 ms, read as clean data in three places that each judged quality their own way (issue 17).
`classify` reads the figures a `records.Measurement` and a `records.ResultRow` both carry (same
names), so the scheduler can count a job's quality the moment it finishes and the read side can
judge a stored row the same way.

Flags (each with a reason in words):
- `not_converged`: the steady phase hit its max time/iterations before the target CI
  (`converged` False; None, as for imports and benchmark_bin, is unknown and not flagged);
- `wide_ci`: the 95 % CI of the median is wider than +-WIDE_CI_REL of the median (half-width /
  median > 0.10). Campaign targets are 2-3 %; 10 % is where "CPU or AIPU?" answers near the
  SPEEDUP_MARGIN (1.15x) stop being trustworthy;
- `throttled`: the device throttled during the job;
- `busy_host`: other processes used the CPU during the steady window (`busy_host` True; None is
  unknown, not flagged);
- `agreement_uninformative`: the outputs were checked (`agree_reference` set) and passed, but
  against a reference whose null passes too (a wrong answer scores as well: lab/models/agreement.py
  `null_scores`), so `agree_ok` was left None, never True (lab.runtimes.checks.apply writes it so;
  `agree_reference` then ends with the sentence that gives the null's figures). The row's speed
  stands; its correctness is unproven.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDE_CI_REL = 0.10  # CI half-width / median above which a CI is "wide"

FLAGS = ("not_converged", "wide_ci", "throttled", "busy_host", "agreement_uninformative")
LABELS = {"not_converged": "not converged", "wide_ci": "wide CI", "throttled": "throttled",
          "busy_host": "busy host", "agreement_uninformative": "agreement uninformative"}


@dataclass(frozen=True)
class Quality:
    """Flags raised on one measurement (empty = clean) and why, in words."""

    flags: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.flags

    def text(self) -> str:
        return "; ".join(self.reasons)


def classify(m: Any) -> Quality:
    """Quality flags of a Measurement or ResultRow (anything with its figure names)."""
    flags: list[str] = []
    reasons: list[str] = []
    if getattr(m, "converged", None) is False:
        flags.append("not_converged")
        reasons.append("not converged (steady phase stopped at its time bound before the target CI)")
    p50 = getattr(m, "p50_ms", None)
    lo, hi = getattr(m, "ci_low_ms", None), getattr(m, "ci_high_ms", None)
    if p50 and lo is not None and hi is not None and p50 > 0:
        rel = (hi - lo) / 2.0 / p50
        if rel > WIDE_CI_REL:
            flags.append("wide_ci")
            reasons.append(f"wide CI ({lo:.3g}-{hi:.3g} ms, ±{rel:.0%} of the median > "
                           f"±{WIDE_CI_REL:.0%})")
    if getattr(m, "throttled", None) is True:
        flags.append("throttled")
        reasons.append("the device throttled during the job")
    if getattr(m, "busy_host", None) is True:
        share = getattr(m, "host_busy_share", None)
        flags.append("busy_host")
        reasons.append("busy host (other processes used the CPU"
                       + (f": {share:.0%} of its time" if isinstance(share, (int, float)) else "")
                       + ")")
    if agreement_uninformative(m):
        flags.append("agreement_uninformative")
        reasons.append(f"outputs checked against {m.agree_reference}")
    return Quality(tuple(flags), tuple(reasons))


def agreement_uninformative(m: Any) -> bool:
    """Checked and passed, but the check could not have failed (the module docstring says how a
    row records it)."""
    return getattr(m, "agree_ok", None) is None and bool(getattr(m, "agree_reference", None))


def summarize(qualities: list[Quality]) -> str:
    """'(3 not converged, 1 busy host)' for a list of ok jobs; '' when all are clean."""
    counts = {f: sum(1 for q in qualities if f in q.flags) for f in FLAGS}
    parts = [f"{n} {LABELS[f]}" for f, n in counts.items() if n]
    return f" ({', '.join(parts)})" if parts else ""
