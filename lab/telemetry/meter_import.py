"""External power meter CSV -> energy per inference of stored jobs, aligned by timestamp.

Why: boards such as the RK1808 stick have no power sensor (telemetry.md §2.1); a USB power meter
or a lab supply logs `timestamp,W` or `timestamp,V,A` on the host. Its rows are aligned to each
job's trials by wall-clock time (the runner's `finished_at` and the steady samples), integrated
with the trapezoid rule over the real timestamps, and stored with source `meter:<file>`.
The host and the device clocks must agree (NTP); the note says so.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError
from lab.core.isotime import iso_to_epoch
from lab.telemetry.figures import TelemetryResult, Window, analyze, power_fields
from lab.telemetry.power import NOMINAL_PERIOD, PowerSeries, change_period
from lab.telemetry.trace import Trace

TIME_NAMES = {"timestamp", "time", "t", "ts", "epoch", "datetime", "date"}
WATT_NAMES = {"w", "watt", "watts", "power", "power_w", "p"}
VOLT_NAMES = {"v", "volt", "volts", "voltage", "voltage_v", "u"}
AMP_NAMES = {"a", "amp", "amps", "current", "current_a", "i"}
MAX_BYTES = 256 * 1024 * 1024  # a day at 100 Hz is ~300 MB; split longer logs
MAX_FIELD = 64  # characters in one cell: a timestamp or a number, never more
MAX_W = 100_000.0  # 100 kW: above any bench supply; larger is a unit or parse mistake
EPOCH_RANGE = (0.0, 4_102_444_800.0)  # 1970 .. 2100


def parse_time(text: str) -> float:
    """Epoch seconds from epoch seconds or ISO-8601 (naive ISO = UTC)."""
    text = text.strip()
    if len(text) > MAX_FIELD:
        raise ValueError("timestamp too long")
    try:
        value = float(text)
    except ValueError:
        value = iso_to_epoch(text)
    if not (math.isfinite(value) and EPOCH_RANGE[0] <= value <= EPOCH_RANGE[1]):
        raise ValueError(f"timestamp {text!r} is not between 1970 and 2100")
    return value


def _watts(*cells: str) -> float:
    """W, or V x A, as a finite non-negative number below MAX_W (ValueError otherwise)."""
    values = []
    for c in cells:
        if len(c.strip()) > MAX_FIELD:
            raise ValueError("cell too long")
        values.append(float(c))
    w = values[0] if len(values) == 1 else values[0] * values[1]
    if not math.isfinite(w) or not all(math.isfinite(v) and v >= 0 for v in values) or w > MAX_W:
        raise ValueError(f"power {w!r} W is not a finite number between 0 and {MAX_W:g}")
    return w


def read_meter_csv(path: str | Path) -> PowerSeries:
    """`timestamp,W` or `timestamp,V,A`, with or without a header; ConfigError names file:line."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"meter CSV is over {MAX_BYTES} bytes", path=str(path),
                              fix="split the log per campaign")
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read meter CSV: {str(exc)[:160]}", path=str(path)) from None
    except csv.Error as exc:  # a field over csv's 128 KiB limit, a NUL byte
        raise ConfigError(f"not a meter CSV: {exc}", path=str(path),
                          fix="use 'timestamp,W' or 'timestamp,V,A' rows") from None
    rows = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if not rows:
        raise ConfigError("meter CSV is empty", path=str(path))
    first = [c.strip().lower() for c in rows[0][1]]
    cols: tuple[int, ...]
    try:
        float(first[1]) if len(first) > 1 else None
        has_header = False
    except ValueError:
        has_header = True
    if has_header:
        names = [c.split("(")[0].strip().replace(" ", "_") for c in first]
        ti = next((i for i, n in enumerate(names) if n in TIME_NAMES), None)
        wi = next((i for i, n in enumerate(names) if n in WATT_NAMES), None)
        vi = next((i for i, n in enumerate(names) if n in VOLT_NAMES), None)
        ai = next((i for i, n in enumerate(names) if n in AMP_NAMES), None)
        if ti is None or (wi is None and (vi is None or ai is None)):
            raise ConfigError(f"header {','.join(rows[0][1])[:120]!r} has no timestamp plus W or V,A "
                              "columns", path=str(path), line=rows[0][0],
                              fix="use 'timestamp,W' or 'timestamp,V,A'")
        cols = (ti, wi) if wi is not None else (ti, vi, ai)
        rows = rows[1:]
    else:
        width = len(rows[0][1])
        if width not in (2, 3):
            raise ConfigError(f"{width} columns without a header", path=str(path),
                              line=rows[0][0], fix="use 'timestamp,W' or 'timestamp,V,A'")
        cols = (0, 1) if width == 2 else (0, 1, 2)
    t, p = [], []
    for line, r in rows:
        try:
            ts = parse_time(r[cols[0]])
            w = _watts(*(r[c] for c in cols[1:]))
        except (ValueError, IndexError, OverflowError) as exc:
            raise ConfigError(f"bad row {','.join(r)[:120]!r} ({str(exc)[:80]})", path=str(path),
                              line=line, fix="timestamps as epoch seconds (1970-2100) or ISO-8601, "
                              "non-negative finite numbers for W / V / A") from None
        if t and ts <= t[-1]:
            raise ConfigError(f"timestamp {r[cols[0]][:40]!r} is not after the previous row",
                              path=str(path), line=line, fix="sort the meter log by time")
        t.append(ts)
        p.append(w)
    if len(t) < 2:
        raise ConfigError("meter CSV needs at least two rows", path=str(path))
    s = PowerSeries("sampled", f"meter:{path.name}", "meter", t, power_w=p,
                    notes=[f"external meter {path.name} ({'W' if len(cols) == 2 else 'V x A'}), "
                           "aligned by wall clock: host and device clocks must agree (NTP)"])
    gaps = sorted(b - a for a, b in zip(t, t[1:]))
    s.period_s = max(gaps[len(gaps) // 2], change_period(t, p), 0.0) or NOMINAL_PERIOD["meter"]
    return s


def job_windows(trials: list[dict[str, Any]], samples: list[list[float]]) -> tuple[list[Window],
                                                                                   float | None]:
    """Steady windows in epoch seconds: [finished_at - sum(steady samples), finished_at] per
    trial, and the start of the first trial (for the idle baseline before it)."""
    windows, first = [], None
    for i, tr in enumerate(trials if isinstance(trials, list) else []):
        if not isinstance(tr, dict):
            continue  # a damaged provenance record: this trial has no window
        fin, start = _time_or_none(tr.get("finished_at")), _time_or_none(tr.get("started_at"))
        if start is not None:
            first = start if first is None else min(first, start)
        if fin is None or i >= len(samples) or not samples[i]:
            continue
        end = fin
        steady_s = sum(samples[i]) / 1000.0
        if not (math.isfinite(steady_s) and 0 < steady_s < 86400 * 7):
            continue  # no steady time (or a damaged sample list): no window
        windows.append(Window(end - steady_s, end, len(samples[i]), f"trial{i}",
                              "steady window = the trial's steady samples ending at its "
                              "finished_at (wall clock)"))
    return windows, first


def _time_or_none(value: Any) -> float | None:
    """parse_time() of a stored time; absent or damaged -> None (no window from it)."""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
        return None
    try:
        return parse_time(str(value))
    except (ValueError, OverflowError):
        return None


def idle_window(first: float, idle_s: float, ends: list[tuple[float, str]],
                job_id: str) -> tuple[tuple[float, float] | None, str | None]:
    """[first - idle_s, first], clipped to start after the previous job on the same device ended
    (with cooldown 0 the window would otherwise average the last job's load into 'idle').
    Less than idle_s / 2 left -> no idle figure, and a note says why."""
    start = first - idle_s
    prev = [(t, j) for t, j in ends if j != job_id and start < t <= first]
    if not prev:
        return (start, first), None
    t_prev, j_prev = max(prev)
    left = first - t_prev
    if left < idle_s / 2:
        return None, (f"idle baseline dropped: the previous job {j_prev} on this device ended "
                      f"{left:.1f} s before this one started (< {idle_s / 2:g} s, half the "
                      f"{idle_s:g} s idle window); idle_w and net energy unavailable")
    return (t_prev, first), (f"idle baseline clipped to {left:.1f} s: it starts after the previous "
                             f"job {j_prev} on this device ended")


def apply_meter(store, series: PowerSeries, device: str, campaign: str | None = None, *,
                idle_s: float = 10.0, write: bool = True) -> list[tuple[dict, TelemetryResult]]:
    """Figures for every ok job of `device` whose steady windows the meter covers."""
    if not (math.isfinite(idle_s) and 0 <= idle_s <= 86400):
        raise ConfigError(f"idle window {idle_s!r} s is not between 0 and 86400 s",
                          fix="e.g. --idle-s 10")
    out = []
    # every job that ran on the device, any campaign or status: each one's load ends the idle
    ends = [(t, r["job_id"]) for r in store.results_rows(None)
            if r["device"] == device and (t := _time_or_none(r.get("finished_at"))) is not None]
    for row in store.results_rows(campaign):
        if row["device"] != device or row["status"] != "ok":
            continue
        prov = store.provenance(row["job_id"])
        windows, first = job_windows(prov.get("trials") or [], store.samples(row["job_id"]))
        if not windows or windows[0].start < series.t[0] or windows[-1].end > series.t[-1]:
            continue
        idle, idle_note = None, None
        if first is not None and first - idle_s >= series.t[0]:
            idle, idle_note = idle_window(first, idle_s, ends, row["job_id"])
        res = analyze(Trace(), windows, idle, idle_s_wanted=idle_s, power=series)
        if idle_note:
            res.notes.append(idle_note)
            res.power_note = f"{res.power_note}; {idle_note}" if res.power_note else idle_note
        # keep the thermal figures the on-device sampler measured
        res.temp_start_c, res.temp_max_c = row.get("temp_start_c"), row.get("temp_max_c")
        res.throttled, res.gpu_mem_mb = row.get("throttled"), row.get("gpu_mem_mb")
        if write:
            update_power(store, row["job_id"], power_fields(res))
        out.append((row, res))
    return out


def update_power(store, job_id: str, fields: dict) -> None:
    """Overwrite the power fields of one stored measurement."""
    if hasattr(store, "update_power"):
        store.update_power(job_id, fields)
        return
    keys = ["power_w", "idle_w", "energy_mj_per_inf", "energy_net_mj_per_inf", "power_source",
            "power_note"]
    with store._tx() as db:  # noqa: SLF001 - until Store grows update_power()
        db.execute(f"UPDATE measurements SET {', '.join(k + '=?' for k in keys)} WHERE job_id=?",
                   [fields[k] for k in keys] + [job_id])
