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

Representative of its chip (issues 22 and 24): three flags say a row's figures are not the chip's,
and `representative` is the one test every reader calls (the run summary counts them, the report
marks them, `lab score` leaves them out of a chip's measured score, `lab advise` never quotes
them and lowers its confidence, `lab results compare` calls them not comparable with rows from
real devices; docs/architecture.md "Quality and representativeness"):
- `emulated`: the device's identity check found emulation or virtualisation (`identity ==
  "emulated"`: qemu-user, a VM, a software GPU renderer such as SwiftShader);
- `identity_mismatch`: the hardware found is not the chip the inventory names (`identity ==
  "mismatch"`: another architecture, core count, CPU part or memory);
- `simulated`: a simulated runtime replayed the latencies (`source == "simulated"`): never a
  measurement of anything, never mixed with measured rows.
Each reason carries the row's `identity_note`. `identity == "skipped"` (devices.yaml `identity:
skip`, the user vouches for the device) stays representative, but `identity_skipped` gives the
recorded reason so readers can show it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDE_CI_REL = 0.10  # CI half-width / median above which a CI is "wide"

# the flags that make a row not the chip's figure (see the module docstring)
NOT_REPRESENTATIVE = ("emulated", "identity_mismatch", "simulated")
FLAGS = (*NOT_REPRESENTATIVE, "not_converged", "wide_ci", "throttled", "busy_host",
         "agreement_uninformative")
# `identity` values (written by lab.devices.identity) that are not the chip: flag, default reason
IDENTITY_FLAGS = {"emulated": ("emulated", "the device is emulated or virtualised"),
                  "mismatch": ("identity_mismatch", "the hardware found is not the chip named")}
LABELS = {"emulated": "emulated", "identity_mismatch": "identity mismatch", "simulated": "simulated",
          "not_converged": "not converged", "wide_ci": "wide CI", "throttled": "throttled",
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


def identity_quality(m: Any) -> Quality:
    """Only the flags that make a row not representative of its chip, with their reasons."""
    flags: list[str] = []
    reasons: list[str] = []
    note = getattr(m, "identity_note", None)
    ident = getattr(m, "identity", None)
    if getattr(m, "source", None) == "simulated":
        flags.append("simulated")
        reasons.append("simulated: latencies replayed by a simulated runtime, not measured on any "
                       "device")
    if ident in IDENTITY_FLAGS:
        flag, default = IDENTITY_FLAGS[ident]
        flags.append(flag)
        reasons.append(f"{LABELS[flag]}: " + (note or default))
    return Quality(tuple(flags), tuple(reasons))


def representative(m: Any) -> bool:
    """True when the row's figures may stand for its chip: not emulated, not on a device that failed
    its identity check, not simulated. Unchecked (None) and skipped identities are representative.
    (`identity_quality` without building its reasons: every reader calls this once per row.)"""
    return (getattr(m, "source", None) != "simulated"
            and getattr(m, "identity", None) not in IDENTITY_FLAGS)


def identity_skipped(m: Any) -> str | None:
    """'identity check skipped: <reason>' for a row whose device is declared `identity: skip`."""
    if getattr(m, "identity", None) != "skipped":
        return None
    return "identity check skipped: " + (getattr(m, "identity_note", None) or "no reason recorded")


def device_kind(m: Any) -> str:
    """What produced the row, in one word: simulated | emulated | mismatched | device (a real device,
    checked or not). Rows of different kinds are not comparable (lab.results.comparability)."""
    q = identity_quality(m).flags
    return ("simulated" if "simulated" in q else "emulated" if "emulated" in q
            else "mismatched" if "identity_mismatch" in q else "device")


@dataclass(frozen=True)
class LeftOut:
    """Rows left out of a chip's figures because they are not representative, counted by flag."""

    counts: dict[str, int]
    reasons: tuple[str, ...]  # distinct reasons, at most MAX_REASONS

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def short(self) -> str:
        """'3 rows left out: 2 emulated, 1 simulated' or '' (the counts without the reasons)."""
        if not self.total:
            return ""
        parts = [f"{n} {LABELS[f]}" for f, n in self.counts.items() if n]
        return f"{self.total} row{'s' if self.total != 1 else ''} left out: {', '.join(parts)}"

    def text(self) -> str:
        """`short()` with the distinct reasons: '... 2 emulated (emulated: qemu-user ...)' or ''."""
        why = "; ".join(self.reasons)
        return self.short() + (f" ({why})" if why and self.total else "")

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.total, "by_flag": {f: n for f, n in self.counts.items() if n},
                "reasons": list(self.reasons)}


MAX_REASONS = 5  # distinct reasons kept: a farm of emulated boards repeats the same few


def left_out(rows: Any) -> LeftOut:
    """Count the non-representative rows among `rows` (each under its first flag)."""
    counts = {f: 0 for f in NOT_REPRESENTATIVE}
    reasons: list[str] = []
    for r in rows:
        q = identity_quality(r)
        if not q.flags:
            continue
        counts[q.flags[0]] += 1
        for why in q.reasons:
            if why not in reasons and len(reasons) < MAX_REASONS:
                reasons.append(why)
    return LeftOut(counts, tuple(reasons))


def classify(m: Any) -> Quality:
    """Quality flags of a Measurement or ResultRow (anything with its figure names)."""
    ident = identity_quality(m)
    flags: list[str] = list(ident.flags)
    reasons: list[str] = list(ident.reasons)
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
    """'(3 not converged, 1 busy host)' for a list of ok jobs; '' when all are clean. Rows that are
    not representative of their chip are counted first and said so."""
    counts = {f: sum(1 for q in qualities if f in q.flags) for f in FLAGS}
    parts = [f"{n} {LABELS[f]}" for f, n in counts.items() if n]
    off = sum(1 for q in qualities if any(f in NOT_REPRESENTATIVE for f in q.flags))
    if off:
        parts.append(f"{off} not representative of their chip")
    return f" ({', '.join(parts)})" if parts else ""
