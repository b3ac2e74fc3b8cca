"""Power sources in a trace -> one PowerSeries, with its source, unit, sign and update period.

Why this module exists: a device's sensors differ in kind (cumulative counters vs sampled power),
unit (battery µA vs mA), sign convention and update period. Every decision about which sensor to
trust and how to read it lives here, and each one is written into the series' `notes`, so a power
figure leaves with its source and caveats; a device with no usable source gets a reason, never 0 W.

Pure: a Trace in (lab/telemetry/trace.py), a PowerSeries out; integrating it over a job's windows
is lab/telemetry/energy.py. See docs/telemetry.md.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence

from lab.telemetry.trace import Trace, float_or_none

# Nominal update periods where the trace cannot reveal them (seconds).
NOMINAL_PERIOD = {"nvml-energy": 0.1, "nvml-power": 1.0, "rapl": 0.001, "ina2xx": 0.002,
                  "battery": 0.25, "meter": 1.0}


@dataclass
class PowerSeries:
    """Power over time from one source. kind 'counter': `energy_j` is cumulative (wraps
    resolved); kind 'sampled': `power_w` is instantaneous (or sensor-averaged) power."""

    kind: str  # counter | sampled
    source: str  # e.g. "rapl:intel-rapl:0", "battery:Battery", "nvml:gpu0", "meter:x.csv"
    family: str  # key of energy.SENSOR_ACCURACY
    t: list[float]
    power_w: list[float | None] = field(default_factory=list)
    energy_j: list[float | None] = field(default_factory=list)
    period_s: float = 0.0  # sensor update period (estimated from the trace where possible)
    notes: list[str] = field(default_factory=list)
    wraps: int = 0


def counter_series(t: Sequence[float], raw: Sequence, scale_j: float, max_range: float | None,
                   *, source: str, family: str, nominal_period: float) -> PowerSeries:
    """Cumulative energy from a counter; a decrease is a wrap when max_range is known.

    delta = e2 + max_range - e1 when e2 < e1 (powercap ABI)."""
    ts, energy, notes = [], [], []
    total, prev, wraps = 0.0, None, 0
    for ti, v in zip(t, raw):
        if not isinstance(v, (int, float)):
            continue
        if prev is not None:
            d = v - prev
            if d < 0:
                if max_range:
                    d += max_range
                    wraps += 1
                else:
                    notes.append(f"{source}: counter went backwards with no wrap range known; "
                                 "that step is skipped")
                    d = 0.0
            total += d
        prev = v
        ts.append(ti)
        energy.append(total * scale_j)
    s = PowerSeries("counter", source, family, ts, energy_j=energy, notes=notes, wraps=wraps)
    s.period_s = max(nominal_period, change_period(ts, energy))
    if wraps:
        s.notes.append(f"{source}: {wraps} counter wraparound(s) resolved with "
                       f"max_energy_range={max_range:g}")
    return s


def change_period(t: Sequence[float], v: Sequence) -> float:
    """Median time between value changes: how often the sensor really updates."""
    times = [t[i] for i in range(1, len(v)) if v[i] is not None and v[i] != v[i - 1]]
    if len(times) < 3:
        return 0.0
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(gaps) if gaps else 0.0


def battery_series(tr: Trace) -> PowerSeries | None:
    """Battery power with unit (µA vs mA) and sign detection, recorded in `notes`."""
    node = tr.info.get("bat.node", "battery")
    status = _status(tr)
    if "bat.power" in tr.values and tr.column("bat.power"):
        raw = [v if isinstance(v, float) else None for v in tr.values["bat.power"]]
        good = [v for v in raw if v is not None]
        if not good:
            return None
        # power_now's sign differs by driver like current_now's: the majority sign is discharge
        neg = sum(1 for v in good if v < 0)
        nonzero = sum(1 for v in good if v != 0)
        discharge_sign = -1.0 if neg > nonzero / 2 else 1.0
        conv = ("negative = discharging" if discharge_sign < 0
                else "positive = discharging")
        notes = [f"battery {node}: power_now in µW; sign {conv}"
                 + (f"; status {status}" if status else "")]
        charging = _battery_status_check(node, status, notes)
        if charging is not None:
            return charging
        p = [discharge_sign * v * 1e-6 if v is not None else None for v in raw]
        if any(x is not None and x < 0 for x in p):
            notes.append(f"battery {node}: power flowed into the battery in some samples "
                         "(kept as negative power)")
        s = PowerSeries("sampled", f"battery:{node}", "battery", list(tr.t), power_w=p, notes=notes)
    elif "bat.current" in tr.values and "bat.voltage" in tr.values:
        cur = [v if isinstance(v, float) else None for v in tr.values["bat.current"]]
        vol = [v if isinstance(v, float) else None for v in tr.values["bat.voltage"]]
        good = [(c, v) for c, v in zip(cur, vol) if c is not None and v is not None]
        if not good:
            return None
        med_i = statistics.median(abs(c) for c, _ in good)
        med_v = statistics.median(v for _, v in good)
        v_scale = 1e-6 if med_v > 1e5 else 1e-3  # µV per ABI; some vendors give mV
        i_scale, why = detect_current_unit(med_i, med_v * v_scale)
        signs = [c for c, _ in good if c != 0]
        neg = sum(1 for c in signs if c < 0)
        discharge_sign = -1.0 if neg > len(signs) / 2 else 1.0
        conv = ("negative = discharging (kernel ABI)" if discharge_sign < 0
                else "positive = discharging (vendor convention)")
        notes = [f"battery {node}: current unit {'µA' if i_scale == 1e-6 else 'mA'} ({why}); "
                 f"voltage unit {'µV' if v_scale == 1e-6 else 'mV'}; sign {conv}"
                 + (f"; status {status}" if status else "")]
        charging = _battery_status_check(node, status, notes)
        if charging is not None:
            return charging
        p = [(discharge_sign * c * i_scale) * (v * v_scale) if c is not None and v is not None
             else None for c, v in zip(cur, vol)]
        if any(x is not None and x < 0 for x in p):
            notes.append(f"battery {node}: current flowed into the battery in some samples "
                         "(kept as negative power)")
        s = PowerSeries("sampled", f"battery:{node}", "battery", list(tr.t), power_w=p, notes=notes)
    else:
        return None
    s.period_s = max(NOMINAL_PERIOD["battery"], change_period(s.t, s.power_w))
    return s


def _battery_status_check(node: str, status: str | None, notes: list[str]) -> PowerSeries | None:
    """Charging -> an empty series (power unavailable, with the reason); Not charging / Full ->
    a note (the charger may carry part of the load). Shared by the power_now and I x V paths."""
    if status and status.lower().startswith("charging"):
        return PowerSeries("sampled", f"battery:{node}", "battery", [], notes=notes + [
            f"battery {node} is charging: battery current is not device power "
            "(unplug USB / use input_suspend or an external meter)"])
    if status and status.lower().replace("_", " ") in ("not charging", "full"):
        notes.append(f"battery {node} status {status}: the charger may carry part of the "
                     "load, battery power under-reads")
    return None


def detect_current_unit(median_abs_current: float, volts: float) -> tuple[float, str]:
    """µA or mA for a battery current_now reading.

    Rule (telemetry.md: Matrix BatteryCanary guesses µA when |I| > 1000 under load): pick the unit
    that gives a phone-plausible power of 0.05-30 W at the measured voltage; when both or neither
    do, fall back to |I| > 1000 -> µA."""
    p_ua, p_ma = median_abs_current * 1e-6 * volts, median_abs_current * 1e-3 * volts
    ok_ua, ok_ma = 0.05 <= p_ua <= 30, 0.05 <= p_ma <= 30
    if ok_ua and not ok_ma:
        return 1e-6, f"median |I|={median_abs_current:g} gives {p_ua:.3g} W as µA"
    if ok_ma and not ok_ua:
        return 1e-3, f"median |I|={median_abs_current:g} gives {p_ma:.3g} W as mA"
    if median_abs_current > 1000:
        return 1e-6, f"median |I|={median_abs_current:g} > 1000"
    return 1e-3, f"median |I|={median_abs_current:g} <= 1000"


def _status(tr: Trace) -> str | None:
    vals = [v for v in tr.values.get("bat.status", []) if isinstance(v, str)]
    return statistics.mode(vals) if vals else None


def ina_series(tr: Trace) -> PowerSeries | None:
    for c in tr.columns:
        if c.name.startswith("ina.") and c.unit == "uW":
            hn = c.name.split(".")[1]
            chip = tr.info.get(f"ina.{hn}.chip", "ina2xx")
            p = [v * 1e-6 if isinstance(v, float) else None for v in tr.values[c.name]]
            s = PowerSeries("sampled", f"{chip}:{hn}:{c.name.split('.')[-1]}", "ina2xx",
                            list(tr.t), power_w=p, notes=[f"{chip} {hn}: power_input in µW"])
            interval = float_or_none(tr.info.get(f"ina.{hn}.update_interval_ms", ""))
            nominal = interval / 1000 if interval else NOMINAL_PERIOD["ina2xx"]
            s.period_s = max(nominal, change_period(s.t, p))
            return s
    # no power_input: current (mA) x bus voltage (mV)
    cur = next((c for c in tr.columns if c.name.startswith("ina.") and c.unit == "mA"), None)
    if cur:
        hn = cur.name.split(".")[1]
        vol = next((c for c in tr.columns if c.name.startswith(f"ina.{hn}.") and c.unit == "mV"),
                   None)
        if vol:
            p = [a * 1e-3 * b * 1e-3 if isinstance(a, float) and isinstance(b, float) else None
                 for a, b in zip(tr.values[cur.name], tr.values[vol.name])]
            s = PowerSeries("sampled", f"ina2xx:{hn}", "ina2xx", list(tr.t), power_w=p,
                            notes=[f"{hn}: power = curr (mA) x in (mV)"])
            s.period_s = max(NOMINAL_PERIOD["ina2xx"], change_period(s.t, p))
            return s
    return None


def rapl_series(tr: Trace) -> PowerSeries | None:
    """Sum of the top-level package zones (intel-rapl:N), wraps resolved per zone."""
    zones = [c for c in tr.columns if c.name.startswith("rapl.") and c.name.count(":") == 1]
    if not zones:
        return None
    parts = []
    for c in zones:
        zone = c.name[len("rapl."):]
        mx = float_or_none(tr.info.get(f"rapl.{zone}.max_energy_range_uj", ""))
        parts.append(counter_series(tr.t, tr.values[c.name], 1e-6, mx, source=f"rapl:{zone}",
                                    family="rapl", nominal_period=NOMINAL_PERIOD["rapl"]))
    if len(parts) == 1:
        return parts[0]
    # align on common times (all zones are read in the same sample line)
    common = sorted(set.intersection(*(set(p.t) for p in parts)))
    energy = [sum(p.energy_j[p.t.index(ti)] for p in parts) for ti in common]
    s = PowerSeries("counter", "rapl:" + "+".join(p.source.split(":", 1)[1] for p in parts),
                    "rapl", common, energy_j=energy, wraps=sum(p.wraps for p in parts))
    s.notes = [n for p in parts for n in p.notes]
    s.period_s = max(p.period_s for p in parts)
    return s


def nvml_series(tr: Trace) -> PowerSeries | None:
    """NVML: energy counter (mJ, Volta+) preferred; sampled power (mW) otherwise."""
    for c in tr.columns:
        if c.name.startswith("nvml.") and c.name.endswith(".energy"):
            gpu = c.name.split(".")[1]
            t, v = tr.series(c.name)
            if sum(1 for x in v if isinstance(x, float)) >= 2:
                return counter_series(t, v, 1e-3, None, source=f"nvml:{gpu}", family="nvml",
                                      nominal_period=NOMINAL_PERIOD["nvml-energy"])
    for c in tr.columns:
        if c.name.startswith("nvml.") and c.name.endswith(".power"):
            gpu = c.name.split(".")[1]
            t, v = tr.series(c.name)
            p = [x * 1e-3 if isinstance(x, float) else None for x in v]
            s = PowerSeries("sampled", f"nvml:{gpu}:power", "nvml", list(t), power_w=p,
                            notes=["NVML power usage is a 1 s average on Ampere+ (not GA100)"])
            s.period_s = max(NOMINAL_PERIOD["nvml-power"], change_period(t, p))
            return s
    return None


def pick_power(tr: Trace) -> tuple[PowerSeries | None, str]:
    """The best power source in the trace, or (None, reason)."""
    for fn in (nvml_series, rapl_series, ina_series, battery_series):
        s = fn(tr)
        if s is not None:
            if not s.t:  # present but unusable (e.g. charging)
                return None, "; ".join(s.notes)
            return s, ""
    return None, unavailable_reason(tr)


def unavailable_reason(tr: Trace) -> str:
    reasons = [f"{what}: {why}" for what, why in tr.unavailable
               if what.startswith(("power", "rapl", "bat", "ina", "nvml"))]
    reasons += [n for n in tr.notes if n.startswith("unavailable")]
    if not reasons:
        root = tr.info.get("root", "")
        reasons.append("no battery node, INA2xx hwmon, readable RAPL powercap zone or NVML GPU "
                       f"found on the device{(' under ' + root) if root else ''}")
    return "power unavailable: " + "; ".join(reasons)
