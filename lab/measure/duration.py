"""How long jobs take on the device, from the measurement protocol's bounds (no history needed).

Why: `--dry-run` should say what a campaign costs before it starts, and the live view should say
when it ends. The runner stops each trial's steady phase between `min_seconds` (converged early)
and `max_seconds` (its bound), after a warm-up of at least `warmup_seconds`, so per job:

    low  = trials x (warmup_seconds + min_seconds)                                + cooldown_s
    high = trials x (START_ALLOWANCE_S + warmup_seconds + max_seconds)            + cooldown_s

A serving job is not trials: it makes LoadGen runs, one per scenario, and a sweep makes a
SingleStream run, an Offline run and up to 7 Server runs, each between LoadGen's min and max
duration (`lab.runtimes.serving.time_bounds`, which `job_time_bounds` asks for such jobs).

START_ALLOWANCE_S covers what the protocol does not bound: starting the runner process, loading
the model and the first inference (measured: ~1-3 s for the zoo CNNs with Paddle Inference on a
laptop-class CPU; an NPU graph build can take longer, so `high` is an estimate, not a guarantee).
A campaign runs each device's jobs in series and devices in parallel (at most `max_parallel` at
once), so its time is the longest device queue (greedy packing when devices > max_parallel).
"""
from __future__ import annotations

from typing import Iterable

START_ALLOWANCE_S = 5.0  # runner start + model load + first inference, per trial


def job_bounds(protocol) -> tuple[float, float]:
    """(low, high) seconds of one job with this MeasurementProtocol."""
    p = protocol
    low = p.trials * (p.warmup_seconds + p.min_seconds) + p.cooldown_s
    high = p.trials * (START_ALLOWANCE_S + p.warmup_seconds + p.max_seconds) + p.cooldown_s
    return low, high


def job_time_bounds(job) -> tuple[float, float]:
    """(low, high) seconds of one Job: a serving job by every LoadGen run its scenario can make,
    any other by its protocol's trials (`job_bounds`)."""
    from lab.devices.backends import BACKENDS
    backend = BACKENDS.get(job.backend)
    if backend is not None and backend.runtime == "serving":
        from lab.runtimes.serving import time_bounds
        return time_bounds(job, START_ALLOWANCE_S)
    return job_bounds(job.protocol)


def plan_bounds(jobs: Iterable, max_parallel: int = 8) -> tuple[float, float]:
    """(low, high) seconds of a plan: per-device queues in series, devices in parallel."""
    per_dev: dict[str, list[float]] = {}
    for j in jobs:
        lo, hi = job_time_bounds(j)
        acc = per_dev.setdefault(j.device, [0.0, 0.0])
        acc[0] += lo
        acc[1] += hi
    out = []
    for k in (0, 1):
        slots = [0.0] * max(1, min(max_parallel, len(per_dev) or 1))
        for t in sorted((v[k] for v in per_dev.values()), reverse=True):
            i = slots.index(min(slots))
            slots[i] += t
        out.append(max(slots))
    return out[0], out[1]


def fmt_s(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"
