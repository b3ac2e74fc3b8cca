"""What a trace says about heat during a job: the SoC zones' temperatures, and whether it throttled.

Why apart from power: temperature and clocks answer a different question ("was this run slowed by
heat?") from different columns (thermal zones, trip points, CPU/NPU frequencies, NVML
clocks-event reasons), with their own rules (docs/telemetry.md, "Throttling"). Battery and charger
zones are left out everywhere: they follow charging and the room and lag the SoC by minutes.

Pure: a Trace and (start, end) spans on the sampler clock in, figures out. The cooldown between
jobs, which reads the zones live, is lab/telemetry/cooldown.py.
"""
from __future__ import annotations

from typing import Sequence

from lab.telemetry.trace import Column, Trace, float_or_none

NVML_THROTTLE_BITS = {0x4: "SwPowerCap", 0x8: "HwSlowdown", 0x20: "SwThermalSlowdown",
                      0x40: "HwThermalSlowdown", 0x80: "HwPowerBrakeSlowdown"}
NVML_THROTTLE_MASK = sum(NVML_THROTTLE_BITS)


def is_soc_zone(zone_type: str) -> bool:
    """A thermal zone that follows the chip's load: battery and charger zones are excluded (they
    follow charging and the room, and lag the SoC by minutes)."""
    low = zone_type.lower()
    return "bat" not in low and "charger" not in low


def temp_columns(tr: Trace) -> list[tuple[str, float]]:
    """(column, scale to °C) of SoC-ish temperature columns (battery zones excluded)."""
    out = []
    for c in tr.columns:
        if c.name.startswith("temp.") and c.unit == "mC":
            if not is_soc_zone(tr.info.get(f"{c.name}.type", "")):
                continue
            out.append((c.name, 1e-3))
        elif c.name.startswith("nvml.") and c.name.endswith(".temp"):
            out.append((c.name, 1.0))
    return out


def zone_temperatures(tr: Trace, a: float, b: float) -> dict[str, dict[str, float]]:
    """Per temperature column with a reading in [a, b]: {"start", "end", "max"} in °C. "start" is
    the last reading at or before `a` (the first inside when there is none)."""
    temps = {}
    for name, scale in temp_columns(tr):
        vals = [(t, v * scale) for t, v in zip(tr.t, tr.values[name]) if isinstance(v, float)]
        inside = [v for t, v in vals if a <= t <= b]
        if not inside:
            continue
        before = [v for t, v in vals if t <= a]
        start = before[-1] if before else inside[0]
        temps[name] = {"start": start, "end": inside[-1], "max": max(inside)}
    return temps


def throttle_reasons(tr: Trace, spans: Sequence[tuple[float, float]]) -> tuple[list[str], bool | None]:
    """(reasons, throttled) for the samples inside `spans`; throttled is None when no column could
    tell (no NVML reasons, no readable zone, no clock with a known max).

    Rules (docs/telemetry.md): NVML reason bits 0x4/0x8/0x20/0x40/0x80 in the window; a thermal
    zone at/above a passive/hot/critical trip point; a CPU cluster or NPU that reached >= 95% of
    its max frequency in the window and then sat below 90% of it for more than a quarter of the
    rest of the window (pinned governors: any sample below 95%)."""
    reasons: list[str] = []
    known = False

    def inside(name):
        t, v = tr.series(name)
        return [x for ti, x in zip(t, v) if isinstance(x, float)
                and any(a <= ti <= b for a, b in spans)]

    for c in tr.columns:
        if c.name.startswith("nvml.") and c.name.endswith(".reasons"):
            known = True
            reasons += _nvml_reasons(inside(c.name))
        elif c.name.startswith("temp.") and c.unit == "mC":
            vals = inside(c.name)
            known = known or bool(vals)
            reasons += _trip_reasons(tr, c, vals)
        elif (c.name.startswith("cpu.") and c.unit == "kHz") or c.name.startswith("npu."):
            key = "cpuinfo_max_freq" if c.name.startswith("cpu.") else "max_freq"
            mx = float_or_none(tr.info.get(f"{c.name}.{key}", ""))
            vals = inside(c.name)
            if not mx or not vals:
                continue
            known = True
            reasons += _clock_reasons(c.name, tr.info.get(f"{c.name}.governor", ""), mx, vals)
    return reasons, True if reasons else (False if known else None)


def _nvml_reasons(values: list[float]) -> list[str]:
    bits = 0
    for x in values:
        bits |= int(x)
    hit = bits & NVML_THROTTLE_MASK
    if not hit:
        return []
    names = [n for b, n in NVML_THROTTLE_BITS.items() if hit & b]
    return [f"NVML clocks-event reasons 0x{hit:x} ({', '.join(names)})"]


def _trip_reasons(tr: Trace, c: Column, vals: list[float]) -> list[str]:
    """A zone that reached one of its passive/hot/critical trip points."""
    out = []
    trips = [(k, v) for k, v in tr.info.items() if k.startswith(c.name + ".trip_point_")]
    for key, spec in trips:
        parts = spec.split()
        limit = float_or_none(parts[0]) if parts else None
        kind = parts[1] if len(parts) > 1 else "unknown"
        if limit and kind in ("passive", "hot", "critical") and vals and max(vals) >= limit:
            out.append(f"{c.name} reached trip {key.rsplit('.', 1)[-1]} "
                       f"({limit / 1000:g} °C, {kind})")
    return out


def _clock_reasons(name: str, gov: str, mx: float, vals: list[float]) -> list[str]:
    """A clock pinned at max that fell under load, or one that reached max and then sagged."""
    if gov in ("performance", "userspace"):
        low = [v for v in vals if v < 0.95 * mx]
        return [f"{name} ({gov}) fell to {min(low) / mx:.0%} of max {mx:g} under load"] if low else []
    first = next((i for i, v in enumerate(vals) if v >= 0.95 * mx), None)
    if first is None:
        return []
    rest = vals[first:]
    low = [v for v in rest if v < 0.9 * mx]
    if len(rest) >= 4 and len(low) > len(rest) / 4:
        return [f"{name} reached max {mx:g} then ran below 90% of it in "
                f"{len(low)}/{len(rest)} samples under load"]
    return []
