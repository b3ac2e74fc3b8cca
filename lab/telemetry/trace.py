"""Sampler traces -> power, energy per inference, thermal and throttle figures.

Why this module exists: a device's sensors differ in kind (cumulative counters vs sampled power),
unit (battery µA vs mA), sign convention and update period. Everything that decides how much to
trust a power figure lives here, so every figure leaves with its source, unit, caveats and an
uncertainty, and a figure the device cannot give is None with a reason, never 0.

Inputs: the text written by `lab/runners/sampler.sh` or `lab/runners/nvml_sampler.py` (same line
format), job windows on the sampler's clock, and iteration counts. See docs/telemetry.md.
Pure: no transport, no processes, no module state; the device side (starting samplers, marks,
collecting) is lab/telemetry/session.py, so this maths is tested on text alone.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field, make_dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime, timezone
from typing import Callable, Sequence

from lab.core.records import Measurement

DEFAULT_IDLE_S = 10.0
MIN_PERIODS = 10  # a window shorter than this many sensor periods is flagged
NVML_THROTTLE_BITS = {0x4: "SwPowerCap", 0x8: "HwSlowdown", 0x20: "SwThermalSlowdown",
                      0x40: "HwThermalSlowdown", 0x80: "HwPowerBrakeSlowdown"}
NVML_THROTTLE_MASK = sum(NVML_THROTTLE_BITS)
# Accuracy of the sensor itself, relative (1 sigma-ish); [E] = estimate, see docs/telemetry.md.
SENSOR_ACCURACY = {"nvml": 0.05, "rapl": 0.05, "ina2xx": 0.02, "battery": 0.05, "meter": 0.02}
# Nominal update periods where the trace cannot reveal them (seconds).
NOMINAL_PERIOD = {"nvml-energy": 0.1, "nvml-power": 1.0, "rapl": 0.001, "ina2xx": 0.002,
                  "battery": 0.25, "meter": 1.0}
# what nvml_sampler.py writes when proc_mem is not limited to the runner's pid(s)
ALL_PROCS_MARK = "proc_mem sums all compute processes"
POWER_FIELDS = ("power_w", "idle_w", "energy_mj_per_inf", "energy_net_mj_per_inf", "power_source",
                "power_note", "temp_start_c", "temp_max_c", "throttled", "gpu_mem_mb")


# --------------------------------------------------------------------------------------------
# parsing

@dataclass(frozen=True)
class Column:
    name: str
    unit: str
    path: str


@dataclass
class Trace:
    """One sampler file, parsed. `values[name]` is aligned with `t`; None = unreadable sample."""

    clock: str = "uptime"
    rate_hz: float | None = None
    period_s: float | None = None
    columns: list[Column] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_refs: list[tuple[float, float]] = field(default_factory=list)  # (clock, epoch)
    t: list[float] = field(default_factory=list)
    values: dict[str, list] = field(default_factory=dict)
    end_reason: str | None = None
    extra: dict[str, tuple[list[float], list]] = field(default_factory=dict)  # merged columns

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def merge(self, other: "Trace") -> "Trace":
        """Columns of both traces on one time base (other's values resampled by nearest-before)."""
        if other.clock != self.clock:
            raise ValueError(f"cannot merge traces on clocks {self.clock} and {other.clock}")
        out = Trace(self.clock, self.rate_hz, self.period_s, list(self.columns), dict(self.info),
                    list(self.unavailable), list(self.notes), list(self.wall_refs), list(self.t),
                    dict(self.values), self.end_reason, dict(self.extra))
        out.columns += other.columns
        out.info.update(other.info)
        out.unavailable += other.unavailable
        out.notes += other.notes
        for c in other.columns:  # keep other's own time base for its columns
            out.extra[c.name] = (other.t, other.values[c.name])
            out.values[c.name] = _resample(other.t, other.values[c.name], self.t)
        return out

    def series(self, name: str) -> tuple[list[float], list]:
        """(times, values) of a column on its own time base."""
        if name in self.extra:
            return self.extra[name]
        return self.t, self.values[name]


def _resample(t_src, v_src, t_dst):
    out, j = [], 0
    for t in t_dst:
        while j + 1 < len(t_src) and t_src[j + 1] <= t:
            j += 1
        out.append(v_src[j] if t_src and t_src[j] <= t else None)
    return out


def _num(text: str):
    if text in ("-", ""):
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else None


def parse_trace(text: str) -> Trace:
    """Parse sampler output. Malformed data lines are skipped and counted in `notes`."""
    tr = Trace()
    fields: list[str] | None = None
    bad = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line[1:].strip().split(" ")
            key, rest = parts[0], parts[1:]
            if key == "clock" and rest:
                tr.clock = rest[0]
            elif key == "rate_hz" and rest:
                tr.rate_hz = _float_or_none(rest[0])
            elif key == "period_s" and rest:
                tr.period_s = _float_or_none(rest[0])
            elif key == "col" and len(rest) >= 2:
                tr.columns.append(Column(rest[0], rest[1], " ".join(rest[2:])))
            elif key == "info" and rest:
                tr.info[rest[0]] = " ".join(rest[1:])
            elif key == "unavailable" and rest:
                tr.unavailable.append((rest[0], " ".join(rest[1:])))
            elif key == "note":
                tr.notes.append(" ".join(rest))
            elif key == "wall_ref" and len(rest) >= 2:
                a, b = _float_or_none(rest[0]), _float_or_none(rest[1])
                if a is not None and b is not None:
                    tr.wall_refs.append((a, b))
            elif key == "fields":
                fields = rest[1:]
                tr.values = {f: [] for f in fields}
            elif key == "end" and len(rest) >= 2:
                tr.end_reason = rest[1]
            continue
        parts = line.split()
        if fields is None or len(parts) != len(fields) + 1:
            bad += 1
            continue
        t = _float_or_none(parts[0])
        if t is None or (tr.t and t < tr.t[-1]):
            bad += 1
            continue
        tr.t.append(t)
        for name, val in zip(fields, parts[1:]):
            tr.values[name].append(_num(val))
    if bad:
        tr.notes.append(f"{bad} malformed sample line(s) skipped")
    return tr


def _float_or_none(text):
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# power sources

@dataclass
class PowerSeries:
    """Power over time from one source. kind 'counter': `energy_j` is cumulative (wraps
    resolved); kind 'sampled': `power_w` is instantaneous (or sensor-averaged) power."""

    kind: str  # counter | sampled
    source: str  # e.g. "rapl:intel-rapl:0", "battery:Battery", "nvml:gpu0", "meter:x.csv"
    family: str  # key of SENSOR_ACCURACY
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
            interval = _float_or_none(tr.info.get(f"ina.{hn}.update_interval_ms", ""))
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
        mx = _float_or_none(tr.info.get(f"rapl.{zone}.max_energy_range_uj", ""))
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


# --------------------------------------------------------------------------------------------
# integration

def energy_between(s: PowerSeries, a: float, b: float) -> float | None:
    """Joules in [a, b]: counter difference (interpolated at the edges) or trapezoid of sampled
    power over the real timestamps. None when the series does not cover the window."""
    if b <= a:
        return None
    if s.kind == "counter":
        pts = [(t, e) for t, e in zip(s.t, s.energy_j) if e is not None]
        ea, eb = _interp(pts, a), _interp(pts, b)
        return None if ea is None or eb is None else eb - ea
    pts = [(t, p) for t, p in zip(s.t, s.power_w) if p is not None]
    if _interp(pts, a) is None or _interp(pts, b) is None:
        return None
    inner = [(a, _interp(pts, a))] + [(t, p) for t, p in pts if a < t < b] + [(b, _interp(pts, b))]
    return sum((t2 - t1) * (p1 + p2) / 2 for (t1, p1), (t2, p2) in zip(inner, inner[1:]))


def _interp(pts: Sequence[tuple[float, float]], x: float) -> float | None:
    if not pts or x < pts[0][0] or x > pts[-1][0]:
        return None
    for (t1, v1), (t2, v2) in zip(pts, pts[1:]):
        if t1 <= x <= t2:
            return v1 if t2 == t1 else v1 + (v2 - v1) * (x - t1) / (t2 - t1)
    return pts[-1][1] if x == pts[-1][0] else None


def _powers_in(s: PowerSeries, a: float, b: float) -> list[float]:
    if s.kind == "sampled":
        return [p for t, p in zip(s.t, s.power_w) if p is not None and a <= t <= b]
    pts = [(t, e) for t, e in zip(s.t, s.energy_j) if e is not None and a <= t <= b]
    return [(e2 - e1) / (t2 - t1) for (t1, e1), (t2, e2) in zip(pts, pts[1:]) if t2 > t1]


# --------------------------------------------------------------------------------------------
# results

@dataclass(frozen=True)
class Window:
    """A steady-state window on the sampler clock with the inferences run inside it."""

    start: float
    end: float
    iterations: int
    label: str = ""
    note: str = ""  # how the window was placed (e.g. approximate)


# The figures a job's Measurement carries (POWER_FIELDS), declared once there: same names and types,
# all unknown (None) until measured.
_MeasuredFields = make_dataclass("_MeasuredFields", [
    (f.name, f.type, field(default=None)) for f in dataclass_fields(Measurement) if f.name in POWER_FIELDS])


@dataclass
class TelemetryResult(_MeasuredFields):
    """The power/thermal fields of Measurement (inherited) and what only the telemetry detail keeps."""

    temp_end_c: float | None = None
    gpu_mem_scope: str | None = None  # runner process | all compute processes | device delta over idle
    uncertainty_rel: float | None = None
    uncertainty_model: str = ""
    window_s: float | None = None
    sensor_period_s: float | None = None
    iterations: int = 0
    throttle_reasons: list[str] = field(default_factory=list)
    temps: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    trace_file: str | None = None

    windows: list[Window] = field(default_factory=list)
    per_window: dict[str, list["WindowTelemetry"]] = field(default_factory=dict)  # sustained runs

    def fields(self) -> dict:
        return power_fields(self)

    def measurement_fields(self) -> dict:
        """power_fields() plus '_detail' for Measurement.provenance['telemetry']."""
        out = power_fields(self)
        out["_detail"] = {
            "uncertainty_rel": self.uncertainty_rel, "uncertainty_model": self.uncertainty_model,
            "window_s": self.window_s, "sensor_period_s": self.sensor_period_s,
            "iterations": self.iterations, "temp_end_c": self.temp_end_c,
            "gpu_mem_scope": self.gpu_mem_scope,
            "throttle_reasons": self.throttle_reasons, "temps": self.temps, "notes": self.notes,
            "trace_file": self.trace_file,
            "windows": [[w.start, w.end, w.iterations, w.note] for w in self.windows]}
        if self.per_window:
            out["_per_window"] = {k: [asdict(w) for w in v] for k, v in self.per_window.items()}
        return out


def power_fields(result: TelemetryResult | None = None, *, unavailable: str | None = None) -> dict:
    """Exactly the Measurement power/thermal fields. Unknown -> None, and power_note says why."""
    if result is None:
        out = {k: None for k in POWER_FIELDS}
        out["power_note"] = unavailable or "power unavailable: no telemetry was collected"
        return out
    out = {k: getattr(result, k) for k in POWER_FIELDS}
    if out["power_w"] is None and not out["power_note"]:
        out["power_note"] = "power unavailable: no reason recorded"
    return out


def analyze(tr: Trace, windows: Sequence[Window], idle: tuple[float, float] | None = None, *,
            idle_s_wanted: float = DEFAULT_IDLE_S, power: PowerSeries | None = None,
            gpu_pids_note: str | None = None) -> TelemetryResult:
    """All figures for one job: `windows` are its steady windows (one per trial), `idle` the
    baseline window before the job. `power` overrides the trace's own source (external meter)."""
    res = TelemetryResult()
    notes: list[str] = list(tr.notes)
    series, reason = (power, "") if power is not None else pick_power(tr)
    windows = [w for w in windows if w.end > w.start]
    notes += [w.note for w in windows if w.note]
    iters = sum(w.iterations for w in windows)
    res.iterations = iters
    res.window_s = sum(w.end - w.start for w in windows) if windows else None
    if series is None:
        res.power_note = reason
    elif not windows:
        res.power_note = "power unavailable: no job window on the sampler clock"
    else:
        _power_figures(res, series, windows, idle, idle_s_wanted, notes)
    if windows:
        _thermal(res, tr, windows, idle)
        _throttle(res, tr, windows)
        _gpu_mem(res, tr, windows, idle, notes, gpu_pids_note)
    extra = [n for n in notes if n and n not in (res.power_note or "")]
    if res.power_note and extra:
        res.power_note = res.power_note + "; " + "; ".join(extra)
    elif extra:
        res.power_note = "; ".join(extra)
    res.notes = notes
    return res


def _power_figures(res, s: PowerSeries, windows, idle, idle_s_wanted, notes):
    res.power_source = f"{s.source} ({'counter' if s.kind == 'counter' else 'sampled, trapezoid'})"
    notes += s.notes
    energies = [energy_between(s, w.start, w.end) for w in windows]
    if any(e is None for e in energies):
        res.power_note = (f"power unavailable: the {s.source} samples do not cover the job window "
                          "(sampler started late or stopped early)")
        return
    e_total = sum(energies)
    dur = res.window_s
    if not dur or not math.isfinite(dur) or dur <= 0 or not math.isfinite(e_total):
        res.power_note = "power unavailable: the job window has no duration"
        return
    res.power_w = e_total / dur
    res.sensor_period_s = s.period_s or None
    if res.iterations > 0:
        res.energy_mj_per_inf = e_total * 1000 / res.iterations
    else:
        notes.append("no iteration count: energy per inference unavailable")
    # idle baseline
    if idle and idle[1] > idle[0]:
        e_idle = energy_between(s, idle[0], idle[1])
        if e_idle is not None:
            res.idle_w = e_idle / (idle[1] - idle[0])
            if idle[1] - idle[0] < idle_s_wanted - 0.5:
                notes.append(f"idle baseline only {idle[1] - idle[0]:.1f} s "
                             f"(< {idle_s_wanted:g} s asked)")
    if res.idle_w is None:
        notes.append("no idle baseline: net energy unavailable")
    elif res.energy_mj_per_inf is not None:
        res.energy_net_mj_per_inf = (e_total - res.idle_w * dur) * 1000 / res.iterations
    # window vs sensor period
    period = s.period_s or (res.window_s or 0)
    short = [w for w in windows if (w.end - w.start) < MIN_PERIODS * period]
    if short:
        notes.append(f"window {min(w.end - w.start for w in short):.2f} s is shorter than "
                     f"{MIN_PERIODS} sensor periods ({period:g} s): only the window-average "
                     "energy / N is meaningful, and it is doubtful")
    # uncertainty: see docs/telemetry.md, "Uncertainty model"
    acc = SENSOR_ACCURACY.get(s.family, 0.05)
    edge = 2 * period / dur if dur else 1.0  # one sensor period unknown at each window edge
    powers = [p for w in windows for p in _powers_in(s, w.start, w.end)]
    stat = 0.0
    if s.kind == "sampled" and len(powers) >= 2 and res.power_w:
        stat = statistics.stdev(powers) / math.sqrt(len(powers)) / abs(res.power_w)
    res.uncertainty_rel = math.sqrt(acc ** 2 + edge ** 2 + stat ** 2)
    res.uncertainty_model = (f"quadrature of sensor accuracy {acc:.0%} [E], edge {edge:.1%} "
                             f"(2 x {period:g} s / {dur:.2f} s), sampling {stat:.1%} "
                             "(std/sqrt(n) of sampled power)")
    notes.append(f"uncertainty ±{res.uncertainty_rel:.1%} ({res.uncertainty_model})")


# --------------------------------------------------------------------------------------------
# per-window figures of a sustained run (issue 18)

@dataclass(frozen=True)
class WindowTelemetry:
    """What the trace says about one window of a sustained run; None = not measured there."""

    temp_c: float | None = None  # hottest SoC zone (or GPU), max in the window
    cpu_mhz: float | None = None  # fastest CPU cluster, mean in the window
    accel_mhz: float | None = None  # NPU devfreq or NVML SM clock, mean in the window (fastest)
    power_w: float | None = None  # the job's power source, energy in the window / its length


def window_telemetry(tr: Trace, spans: Sequence[tuple[float, float]],
                     power: PowerSeries | None = None) -> list[WindowTelemetry]:
    """Temperature, clocks and power for each (start, end) span on the sampler clock."""
    temps = _temp_columns(tr)
    cpu = [(c.name, 1e-3) for c in tr.columns if c.name.startswith("cpu.") and c.unit == "kHz"]
    accel = ([(c.name, 1e-6) for c in tr.columns if c.name.startswith("npu.") and c.unit == "Hz"]
             + [(c.name, 1.0) for c in tr.columns if c.name.endswith(".sm_clock") and c.unit == "MHz"])
    series = power if power is not None else pick_power(tr)[0]

    def values(name, scale, a, b):
        t, v = tr.series(name)
        return [x * scale for ti, x in zip(t, v) if isinstance(x, float) and a <= ti <= b]

    def fastest_mean(cols, a, b):
        means = [statistics.fmean(v) for name, sc in cols for v in [values(name, sc, a, b)] if v]
        return max(means) if means else None

    out = []
    for a, b in spans:
        hottest = [max(v) for name, sc in temps for v in [values(name, sc, a, b)] if v]
        watts = None
        if series is not None and b > a:
            e = energy_between(series, a, b)
            watts = None if e is None else e / (b - a)
        out.append(WindowTelemetry(temp_c=max(hottest) if hottest else None,
                                   cpu_mhz=fastest_mean(cpu, a, b), accel_mhz=fastest_mean(accel, a, b),
                                   power_w=watts))
    return out


def is_soc_zone(zone_type: str) -> bool:
    """A thermal zone that follows the chip's load: battery and charger zones are excluded (they
    follow charging and the room, and lag the SoC by minutes)."""
    low = zone_type.lower()
    return "bat" not in low and "charger" not in low


def _temp_columns(tr: Trace) -> list[tuple[str, float]]:
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


def _thermal(res, tr: Trace, windows, idle):
    cols = _temp_columns(tr)
    if not cols:
        return
    a = windows[0].start if not idle else idle[1]
    b = windows[-1].end
    hottest = []
    for name, scale in cols:
        vals = [(t, v * scale) for t, v in zip(tr.t, tr.values[name]) if isinstance(v, float)]
        inside = [v for t, v in vals if a <= t <= b]
        if not inside:
            continue
        before = [v for t, v in vals if t <= a]
        start = before[-1] if before else inside[0]
        res.temps[name] = {"start": start, "end": inside[-1], "max": max(inside)}
        hottest.append(res.temps[name])
    if hottest:
        res.temp_start_c = max(z["start"] for z in hottest)
        res.temp_end_c = max(z["end"] for z in hottest)
        res.temp_max_c = max(z["max"] for z in hottest)


def _throttle(res, tr: Trace, windows):
    """Throttle rules (docs/telemetry.md): NVML reason bits 0x4/0x8/0x20/0x40/0x80 in the window;
    a thermal zone at/above a passive/hot/critical trip point; a CPU cluster or NPU that reached
    >= 95% of its max frequency in the window and then sat below 90% of it for more than a
    quarter of the rest of the window (pinned governors: any sample below 95%)."""
    reasons: list[str] = []
    known = False

    def inside(name):
        t, v = tr.series(name)
        return [x for ti, x in zip(t, v) if isinstance(x, float)
                and any(w.start <= ti <= w.end for w in windows)]

    for c in tr.columns:
        if c.name.startswith("nvml.") and c.name.endswith(".reasons"):
            known = True
            bits = 0
            for x in inside(c.name):
                bits |= int(x)
            hit = bits & NVML_THROTTLE_MASK
            if hit:
                names = [n for b, n in NVML_THROTTLE_BITS.items() if hit & b]
                reasons.append(f"NVML clocks-event reasons 0x{hit:x} ({', '.join(names)})")
        elif c.name.startswith("temp.") and c.unit == "mC":
            trips = [(k, v) for k, v in tr.info.items() if k.startswith(c.name + ".trip_point_")]
            vals = inside(c.name)
            if vals:
                known = True
            for key, spec in trips:
                parts = spec.split()
                limit = _float_or_none(parts[0]) if parts else None
                kind = parts[1] if len(parts) > 1 else "unknown"
                if limit and kind in ("passive", "hot", "critical") and vals and max(vals) >= limit:
                    reasons.append(f"{c.name} reached trip {key.rsplit('.', 1)[-1]} "
                                   f"({limit / 1000:g} °C, {kind})")
        elif (c.name.startswith("cpu.") and c.unit == "kHz") or c.name.startswith("npu."):
            key = "cpuinfo_max_freq" if c.name.startswith("cpu.") else "max_freq"
            mx = _float_or_none(tr.info.get(f"{c.name}.{key}", ""))
            vals = inside(c.name)
            if not mx or not vals:
                continue
            known = True
            gov = tr.info.get(f"{c.name}.governor", "")
            if gov in ("performance", "userspace"):
                low = [v for v in vals if v < 0.95 * mx]
                if low:
                    reasons.append(f"{c.name} ({gov}) fell to {min(low) / mx:.0%} of max "
                                   f"{mx:g} under load")
                continue
            first = next((i for i, v in enumerate(vals) if v >= 0.95 * mx), None)
            if first is None:
                continue
            rest = vals[first:]
            low = [v for v in rest if v < 0.9 * mx]
            if len(rest) >= 4 and len(low) > len(rest) / 4:
                reasons.append(f"{c.name} reached max {mx:g} then ran below 90% of it in "
                               f"{len(low)}/{len(rest)} samples under load")
    res.throttle_reasons = reasons
    res.throttled = True if reasons else (False if known else None)


def _gpu_mem(res, tr: Trace, windows, idle, notes, pids_note):
    proc = next((c.name for c in tr.columns if c.name.startswith("nvml.") and
                 c.name.endswith(".proc_mem")), None)
    used = next((c.name for c in tr.columns if c.name.startswith("nvml.") and
                 c.name.endswith(".mem_used")), None)

    def vals(name, a, b):
        t, v = tr.series(name)
        return [x for ti, x in zip(t, v) if isinstance(x, float) and a <= ti <= b]

    a, b = windows[0].start, windows[-1].end
    if proc:
        pv = [x for x in vals(proc, a, b) if x > 0]
        if pv:
            res.gpu_mem_mb = max(pv)
            if any(ALL_PROCS_MARK in n for n in tr.notes):
                res.gpu_mem_scope = "all compute processes"
                notes.append("gpu_mem_mb not attributed to the runner: NVML memory summed over all "
                             "compute processes on the GPU (the sampler had no runner pid), so on "
                             "a shared GPU it includes other processes")
            else:
                res.gpu_mem_scope = "runner process"
            return
    if used:
        uv = vals(used, a, b)
        base = vals(used, idle[0], idle[1]) if idle else []
        if uv and base:
            res.gpu_mem_mb = max(uv) - min(base)
            res.gpu_mem_scope = "device delta over idle"
            notes.append("gpu_mem_mb is the device memory delta over the idle baseline "
                         "(per-process memory unavailable" + (f": {pids_note}" if pids_note else
                                                              ", e.g. container PIDs") + ")")
        elif uv:
            notes.append("gpu memory: no idle baseline for a device-memory delta")




# --------------------------------------------------------------------------------------------
# cooldown between jobs: the decisions only (lab/measure/scheduler.py reads the device and sleeps)

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
        raw = _float_or_none(parts[1])
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


# --------------------------------------------------------------------------------------------
# clocks

def iso_epoch(text) -> tuple[float, bool] | None:
    """(epoch seconds, has sub-second digits) of an ISO-8601 UTC stamp, or None."""
    if not isinstance(text, str) or not text:
        return None
    s = text.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp(), "." in s.split("T")[-1]
