"""Cooldown between jobs: read the device's thermal zones, decide when it has cooled, or give up.

Why: heat from one job (leakage power rises with temperature, clocks throttle) must not leak into
the next job's figures, but a device that never cools (a warm room, a phone in a case) must not stall
a campaign. So the wait is bounded, the target is the device's own baseline plus a margin, and what
was waited is recorded with the next job (`Cooldown`).

The decisions only: lab/telemetry/session.py reads the zones over the transport and
lab/measure/scheduler.py sleeps; here clock, sleep and the reading are passed in, so the rules are
tested without a device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from lab.telemetry.thermal import is_soc_zone
from lab.telemetry.trace import float_or_none

COOLDOWN_MARGIN_C = 2.0
"""A device counts as cooled when its hottest SoC zone is within this many °C of its baseline (the
hottest zone before its first job). Why 2 °C: many SoC zones step in whole degrees and an idle
device's hottest zone wanders about ±1 °C over minutes, so a tighter margin waits for noise; a looser
one lets the previous job's heat (leakage power rises with temperature) into the next job."""
COOLDOWN_POLL_S = 2.0  # one `cat` of the zones per poll: negligible load, and zones update ~1 Hz
ZONE_RANGE_C = (-40.0, 150.0)  # outside: a broken or disabled zone (e.g. -273 °C), ignored

COOLED, BOUND, FIXED, INTERRUPTED = "cooled", "bound", "fixed", "interrupted"


def parse_thermal_zones(text: str) -> dict[str, float]:
    """`ZONE MILLIDEGREES TYPE...` lines (lab/telemetry/session.py reads them) -> {zone: °C} of the
    SoC zones. Battery/charger zones, unreadable and implausible readings are dropped."""
    zones: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 2:
            continue
        raw = float_or_none(parts[1])
        if raw is None or not is_soc_zone(parts[2] if len(parts) > 2 else ""):
            continue
        celsius = raw / 1000.0
        if ZONE_RANGE_C[0] <= celsius <= ZONE_RANGE_C[1]:
            zones[parts[0]] = celsius
    return zones


def hottest_c(zones: dict[str, float]) -> float | None:
    return max(zones.values()) if zones else None


@dataclass(frozen=True)
class Cooldown:
    """What was waited between two jobs on one device; stored in the next job's
    Measurement.provenance['cooldown'] (and its note, when the target was not reached)."""

    outcome: str  # cooled | bound | fixed (no usable sensor) | interrupted
    waited_s: float
    bound_s: float
    baseline_c: float | None = None
    margin_c: float = COOLDOWN_MARGIN_C
    start_c: float | None = None
    end_c: float | None = None
    reason: str = ""  # why the wait was a fixed sleep

    @property
    def target_c(self) -> float | None:
        return None if self.baseline_c is None else self.baseline_c + self.margin_c

    def note(self) -> str:
        if self.outcome == FIXED:
            return f"cooldown: {self.reason}: fixed sleep of {self.waited_s:.1f} s"
        temps = (f"hottest zone {self.start_c:.1f} -> {self.end_c:.1f} °C"
                 if self.start_c is not None and self.end_c is not None else "no reading")
        if self.outcome == COOLED:
            return (f"cooldown: {self.waited_s:.1f} s, {temps}, within {self.margin_c:g} °C of "
                    f"the baseline {self.baseline_c:.1f} °C")
        if self.outcome == BOUND:
            return (f"cooldown: bound of {self.bound_s:g} s hit, {temps}, still above the target "
                    f"{self.target_c:.1f} °C (baseline {self.baseline_c:.1f} + {self.margin_c:g})")
        return f"cooldown interrupted after {self.waited_s:.1f} s ({temps})"

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "waited_s": round(self.waited_s, 3),
                "bound_s": self.bound_s, "baseline_c": self.baseline_c, "margin_c": self.margin_c,
                "target_c": self.target_c, "start_c": self.start_c, "end_c": self.end_c,
                "reason": self.reason, "note": self.note()}


def cooldown_step(temp_c: float, target_c: float, waited_s: float, bound_s: float) -> str:
    """One poll's decision: 'cooled' at or below the target, else 'bound' once the bound is spent,
    else 'wait'."""
    if temp_c <= target_c:
        return COOLED
    if waited_s >= bound_s:
        return BOUND
    return "wait"


def wait_for_cooldown(read_temp_c: Callable[[], float | None], baseline_c: float | None,
                      bound_s: float, *, sleep: Callable[[float], object],
                      clock: Callable[[], float], margin_c: float = COOLDOWN_MARGIN_C,
                      poll_s: float = COOLDOWN_POLL_S) -> Cooldown:
    """Wait until the hottest zone is within `margin_c` of `baseline_c`, at most `bound_s`.

    Bounded so a device that never cools (a warm room, a phone in a case) slows a campaign by at
    most bound_s per job. Without a baseline or a reading the wait is the fixed sleep of bound_s the
    lab did before (recorded as 'fixed' with the reason). `sleep(s)` returns truthy when the wait
    was cut short (threading.Event.wait does), which ends the cooldown as 'interrupted'."""
    t0 = clock()

    def fixed(reason: str, start: float | None = None, last: float | None = None) -> Cooldown:
        cut = sleep(max(0.0, bound_s - (clock() - t0)))
        return Cooldown(INTERRUPTED if cut else FIXED, clock() - t0, bound_s, baseline_c,
                        margin_c, start, last, reason)

    if baseline_c is None:
        return fixed("no thermal zone was readable before the device's first job")
    temp = read_temp_c()
    if temp is None:
        return fixed("no thermal zone readable now")
    start = temp
    target = baseline_c + margin_c
    while True:
        waited = clock() - t0
        decision = cooldown_step(temp, target, waited, bound_s)
        if decision != "wait":
            return Cooldown(decision, waited, bound_s, baseline_c, margin_c, start, temp)
        if sleep(min(poll_s, bound_s - waited)):
            return Cooldown(INTERRUPTED, clock() - t0, bound_s, baseline_c, margin_c, start, temp)
        reading = read_temp_c()
        if reading is None:
            return fixed(f"thermal zones unreadable after {clock() - t0:.1f} s", start, temp)
        temp = reading
