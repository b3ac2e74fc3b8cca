"""A PowerSeries over a job's steady windows -> power, energy per inference, net of idle, ± how much.

Why apart from power.py: power.py decides what a sensor says (which one, which unit, which sign);
this module decides what that means for a job: joules inside each window (counter difference or
trapezoid over the real timestamps), the idle baseline subtracted for the net energy, and an
uncertainty from the sensor's accuracy, its update period against the window, and the sampling
spread. Each caveat is a note on the figures (docs/telemetry.md, "Uncertainty model").

Pure: series and (start, end) spans on the sampler clock in, an EnergyFigures record out.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Sequence

from lab.telemetry.power import PowerSeries

MIN_PERIODS = 10  # a window shorter than this many sensor periods is flagged
# Accuracy of the sensor itself, relative (1 sigma-ish); [E] = estimate, see docs/telemetry.md.
SENSOR_ACCURACY = {"nvml": 0.05, "rapl": 0.05, "ina2xx": 0.02, "battery": 0.05, "meter": 0.02}


@dataclass
class EnergyFigures:
    """What one power series says about a job's steady windows: the power fields of
    lab.telemetry.figures.TelemetryResult. None = not measured, and `power_note` says why."""

    power_source: str
    power_note: str | None = None
    power_w: float | None = None
    idle_w: float | None = None
    energy_mj_per_inf: float | None = None
    energy_net_mj_per_inf: float | None = None
    sensor_period_s: float | None = None
    uncertainty_rel: float | None = None
    uncertainty_model: str = ""
    notes: list[str] = field(default_factory=list)


def energy_figures(s: PowerSeries, spans: Sequence[tuple[float, float]], iterations: int,
                   idle: tuple[float, float] | None, idle_s_wanted: float) -> EnergyFigures:
    """Figures of the (start, end) `spans` (one per trial, each end > start) that ran `iterations`
    inferences in all; `idle` is the baseline window before the job."""
    fig = EnergyFigures(f"{s.source} ({'counter' if s.kind == 'counter' else 'sampled, trapezoid'})",
                        notes=list(s.notes))
    energies = [energy_between(s, a, b) for a, b in spans]
    if any(e is None for e in energies):
        fig.power_note = (f"power unavailable: the {s.source} samples do not cover the job window "
                          "(sampler started late or stopped early)")
        return fig
    e_total = sum(energies)
    dur = sum(b - a for a, b in spans)
    if not dur or not math.isfinite(dur) or dur <= 0 or not math.isfinite(e_total):
        fig.power_note = "power unavailable: the job window has no duration"
        return fig
    fig.power_w = e_total / dur
    fig.sensor_period_s = s.period_s or None
    if iterations > 0:
        fig.energy_mj_per_inf = e_total * 1000 / iterations
    else:
        fig.notes.append("no iteration count: energy per inference unavailable")
    _subtract_idle(fig, s, idle, idle_s_wanted, e_total, dur, iterations)
    period = s.period_s or dur
    short = [b - a for a, b in spans if (b - a) < MIN_PERIODS * period]
    if short:
        fig.notes.append(f"window {min(short):.2f} s is shorter than "
                         f"{MIN_PERIODS} sensor periods ({period:g} s): only the window-average "
                         "energy / N is meaningful, and it is doubtful")
    _uncertainty(fig, s, spans, period, dur)
    return fig


def _subtract_idle(fig: EnergyFigures, s: PowerSeries, idle: tuple[float, float] | None,
                   idle_s_wanted: float, e_total: float, dur: float, iterations: int) -> None:
    """idle_w from the baseline window, and the net energy per inference over it."""
    if idle and idle[1] > idle[0]:
        e_idle = energy_between(s, idle[0], idle[1])
        if e_idle is not None:
            fig.idle_w = e_idle / (idle[1] - idle[0])
            if idle[1] - idle[0] < idle_s_wanted - 0.5:
                fig.notes.append(f"idle baseline only {idle[1] - idle[0]:.1f} s "
                                 f"(< {idle_s_wanted:g} s asked)")
    if fig.idle_w is None:
        fig.notes.append("no idle baseline: net energy unavailable")
    elif fig.energy_mj_per_inf is not None:
        fig.energy_net_mj_per_inf = (e_total - fig.idle_w * dur) * 1000 / iterations


def _uncertainty(fig: EnergyFigures, s: PowerSeries, spans: Sequence[tuple[float, float]],
                 period: float, dur: float) -> None:
    """Quadrature of sensor accuracy, edges and sampling: see docs/telemetry.md, "Uncertainty model"."""
    acc = SENSOR_ACCURACY.get(s.family, 0.05)
    edge = 2 * period / dur if dur else 1.0  # one sensor period unknown at each window edge
    powers = [p for a, b in spans for p in _powers_in(s, a, b)]
    stat = 0.0
    if s.kind == "sampled" and len(powers) >= 2 and fig.power_w:
        stat = statistics.stdev(powers) / math.sqrt(len(powers)) / abs(fig.power_w)
    fig.uncertainty_rel = math.sqrt(acc ** 2 + edge ** 2 + stat ** 2)
    fig.uncertainty_model = (f"quadrature of sensor accuracy {acc:.0%} [E], edge {edge:.1%} "
                             f"(2 x {period:g} s / {dur:.2f} s), sampling {stat:.1%} "
                             "(std/sqrt(n) of sampled power)")
    fig.notes.append(f"uncertainty ±{fig.uncertainty_rel:.1%} ({fig.uncertainty_model})")


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
