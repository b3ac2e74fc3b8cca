"""One job's telemetry figures: a trace and the job's windows -> TelemetryResult.

Why this module exists: it is the one place that turns what the device's sensors recorded into the
power/thermal fields of a Measurement (`power_fields`), so every figure leaves with its source,
unit, caveats and an uncertainty, and a figure the device cannot give is None with a reason, never 0.
It composes the single-purpose parts: lab/telemetry/trace.py (the sampler text), power.py (which
sensor), energy.py (joules, idle, uncertainty), thermal.py (temperatures, throttling); plus the GPU
memory NVML saw, and per-window figures of a sustained run (`window_telemetry`).

Pure: no transport, no processes, no module state; the device side (starting samplers, marks,
collecting) is lab/telemetry/session.py, so this maths is tested on text alone. See docs/telemetry.md.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, make_dataclass
from dataclasses import fields as dataclass_fields
from typing import Sequence

from lab.core.records import Measurement
from lab.telemetry.energy import EnergyFigures, energy_between, energy_figures
from lab.telemetry.power import PowerSeries, pick_power
from lab.telemetry.thermal import temp_columns, throttle_reasons, zone_temperatures
from lab.telemetry.trace import Trace

DEFAULT_IDLE_S = 10.0
# what nvml_sampler.py writes when proc_mem is not limited to the runner's pid(s)
ALL_PROCS_MARK = "proc_mem sums all compute processes"
POWER_FIELDS = ("power_w", "idle_w", "energy_mj_per_inf", "energy_net_mj_per_inf", "power_source",
                "power_note", "temp_start_c", "temp_max_c", "throttled", "gpu_mem_mb")


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
        fig = energy_figures(series, [(w.start, w.end) for w in windows], iters, idle, idle_s_wanted)
        _take_energy(res, fig)
        notes += fig.notes
    if windows:
        _thermal(res, tr, windows, idle)
        res.throttle_reasons, res.throttled = throttle_reasons(tr, [(w.start, w.end) for w in windows])
        _gpu_mem(res, tr, windows, idle, notes, gpu_pids_note)
    extra = [n for n in notes if n and n not in (res.power_note or "")]
    if res.power_note and extra:
        res.power_note = res.power_note + "; " + "; ".join(extra)
    elif extra:
        res.power_note = "; ".join(extra)
    res.notes = notes
    return res


def _take_energy(res: TelemetryResult, fig: EnergyFigures) -> None:
    """The energy figures onto the result (same names; the notes go with the job's notes)."""
    res.power_source, res.power_note, res.power_w = fig.power_source, fig.power_note, fig.power_w
    res.idle_w, res.energy_mj_per_inf = fig.idle_w, fig.energy_mj_per_inf
    res.energy_net_mj_per_inf, res.sensor_period_s = fig.energy_net_mj_per_inf, fig.sensor_period_s
    res.uncertainty_rel, res.uncertainty_model = fig.uncertainty_rel, fig.uncertainty_model


def _thermal(res: TelemetryResult, tr: Trace, windows: Sequence[Window],
             idle: tuple[float, float] | None) -> None:
    """Zone temperatures from the end of the idle baseline (or the first window) to the last
    window's end; the job's start/end/max are those of the hottest zone."""
    a = windows[0].start if not idle else idle[1]
    res.temps = zone_temperatures(tr, a, windows[-1].end)
    hottest = list(res.temps.values())
    if hottest:
        res.temp_start_c = max(z["start"] for z in hottest)
        res.temp_end_c = max(z["end"] for z in hottest)
        res.temp_max_c = max(z["max"] for z in hottest)


def _gpu_mem(res, tr: Trace, windows, idle, notes, pids_note):
    """Peak GPU memory in the windows: the runner's own (NVML per-process), else the device's
    used memory over the idle baseline; the note says which."""
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
    temps = temp_columns(tr)
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
