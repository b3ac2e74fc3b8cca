"""Busy-host detection, host side: the runners' per-trial share of other processes' CPU time
(`env.host_busy_share`, measured from /proc over the steady window; see pi_runner.py
"busy-host probe") -> the job's `host_busy_share`, `busy_host` flag and note.

Why a module of its own: the threshold is one fact, used by the job path (the flag), the run
summary, the advisor (lower confidence) and the comparability check (lab/results/comparability.py).
"""
from __future__ import annotations

from typing import Any, Iterable

# A job is measured on a busy host when other processes took more than this share of the CPU time
# of the CPUs the runner may use, during its steady window (worst trial). 10 %: the lab's own
# sampler and an idle OS stay well below it (a few %), one competing busy thread on an 8-core
# board is 12.5 %, and on a 2-core box 50 %.
BUSY_HOST_SHARE = 0.10


def is_busy(share: float | None) -> bool | None:
    """The flag for a share (None: not measured)."""
    return None if share is None else share > BUSY_HOST_SHARE


def host_busy_figures(envs: Iterable[dict[str, Any] | None]) -> tuple[float | None, bool | None, list[str]]:
    """Each trial's runner `env` -> (share, busy flag, notes).

    The job's share is the MAX over its trials (the worst trial: one disturbed trial is enough to
    bias the pooled median). Trials that could not measure it are skipped; none measured -> None
    with the runner's reason.
    """
    shares: list[float] = []
    reasons: list[str] = []
    for env in envs:
        env = env or {}
        v = env.get("host_busy_share")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            shares.append(float(v))
        elif env.get("host_busy_note"):
            reasons.append(str(env["host_busy_note"]))
    if not shares:
        why = reasons[0] if reasons else "the runner did not report it"
        return None, None, [f"host busy share unavailable: {why}"]
    share = max(shares)
    notes = []
    if is_busy(share):
        notes.append(f"busy host: other processes took {share:.0%} of the CPU time during the steady "
                     f"window (worst of {len(shares)} trial(s); threshold {BUSY_HOST_SHARE:.0%}): the "
                     "latency is likely inflated; rerun on a quiet device")
    return share, is_busy(share), notes
