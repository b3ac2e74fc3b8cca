"""Sustained runs: per-window figures, throttle onset and the sustained/burst ratio (pure maths).

Why: a phone or a passively cooled board is fast for ten seconds and slower after ten minutes.
A sustained job (protocol `sustained_s` > 0) runs the model continuously in the runner, which
reports every `window_s` window (iterations, p50/p90, start/end on the device's uptime clock, other
processes' CPU share); the telemetry session adds temperature, clocks and power per window
(lab/telemetry/figures.py `window_telemetry`). This module turns those into the job's summary figures.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from lab.core.records import SustainedWindow

# Throttle onset: the first window whose p50 is more than this fraction slower than the first
# window's p50. 20 %: above the window-to-window drift of a device with some background activity
# (a few % on a quiet board; ~25 % over 30 s, once 31 % over 90 s, was measured on this lab's
# shared CI VM with the runner boosted and no busy host), below what thermal throttling does on
# phones and passive boards (sustained speed 50-80 % of burst) or what one competing busy process
# does. A campaign sets its own with protocol `throttle_slowdown` (the default is this one).
THROTTLE_SLOWDOWN = 0.20


def windows_from_doc(doc: dict[str, Any], trial: int) -> list[SustainedWindow]:
    """The runner's `sustained.windows` of one trial as typed windows (empty if not sustained)."""
    out = []
    for w in (doc.get("sustained") or {}).get("windows") or []:
        out.append(SustainedWindow(
            trial=trial, idx=int(w["idx"]), t_start_s=float(w["t_start_s"]), t_end_s=float(w["t_end_s"]),
            n=int(w["n"]), p50_ms=_num(w.get("p50_ms")), p90_ms=_num(w.get("p90_ms")),
            host_busy_share=_num(w.get("host_busy_share")), clock_start=_num(w.get("clock_start")),
            clock_end=_num(w.get("clock_end"))))
    return out


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summary(windows: Iterable[SustainedWindow], slowdown: float = THROTTLE_SLOWDOWN
            ) -> tuple[float | None, float | None, list[str]]:
    """(throttle onset s, sustained ratio, notes) from the FIRST trial's windows.

    onset: t_start_s of the first window (after the first) with p50 > first p50 x (1 + slowdown)
    (protocol `throttle_slowdown`: a noisy host drifts more than a quiet board);
    ratio: last-window p50 / first-window p50 (> 1 means slower at the end of the run).
    """
    wins = sorted((w for w in windows if w.trial == 0 and w.p50_ms), key=lambda w: w.idx)
    if len(wins) < 2:
        return None, None, ["sustained run: fewer than two windows, no onset or ratio"]
    first = wins[0].p50_ms
    ratio = wins[-1].p50_ms / first
    onset = next((w for w in wins[1:] if w.p50_ms > first * (1 + slowdown)), None)
    span = wins[-1].t_end_s
    if onset is None:
        note = (f"sustained {span:.0f} s in {len(wins)} windows: no window more than "
                f"{slowdown:.0%} slower than the first; last/first p50 {ratio:.2f}")
        return None, ratio, [note]
    note = (f"sustained {span:.0f} s in {len(wins)} windows: slowdown onset at {onset.t_start_s:.0f} s "
            f"(window {onset.idx}: p50 {onset.p50_ms:.3g} ms vs {first:.3g} ms in the first, > "
            f"{slowdown:.0%}); last/first p50 {ratio:.2f}")
    return onset.t_start_s, ratio, [note]


def merge_window_telemetry(windows: list[SustainedWindow], per_trial: dict[str, list[dict]]
                           ) -> list[SustainedWindow]:
    """Fill each window's temperature, clocks and power from the session's `_per_window`
    ({'t<trial>': [WindowTelemetry as dict, by window index]})."""
    out = []
    for w in windows:
        tel = per_trial.get(f"t{w.trial}") or []
        d = tel[w.idx] if w.idx < len(tel) else {}
        out.append(replace(w, **{k: d.get(k) for k in ("temp_c", "cpu_mhz", "accel_mhz", "power_w")}))
    return out


def ranks(values: dict[str, float | None]) -> dict[str, int]:
    """1-based ranks of the known values (lower is better); unknown values get no rank."""
    known = sorted((v, k) for k, v in values.items() if v is not None)
    return {k: i + 1 for i, (_, k) in enumerate(known)}
