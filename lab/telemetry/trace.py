"""Sampler text -> a Trace: the columns, header facts and samples on the sampler's clock.

Why a module of its own: `lab/runners/sampler.sh` and `lab/runners/nvml_sampler.py` write one line
format (`# key ...` header lines, then `clock value...` samples), and every figure the lab makes
from a device's sensors starts from it. Parsing is kept apart from what the figures mean
(power.py, energy.py, thermal.py, figures.py) so a format change touches one place.

Pure: text in, records out; malformed sample lines are skipped and counted, never raised.
See docs/telemetry.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


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
                tr.rate_hz = float_or_none(rest[0])
            elif key == "period_s" and rest:
                tr.period_s = float_or_none(rest[0])
            elif key == "col" and len(rest) >= 2:
                tr.columns.append(Column(rest[0], rest[1], " ".join(rest[2:])))
            elif key == "info" and rest:
                tr.info[rest[0]] = " ".join(rest[1:])
            elif key == "unavailable" and rest:
                tr.unavailable.append((rest[0], " ".join(rest[1:])))
            elif key == "note":
                tr.notes.append(" ".join(rest))
            elif key == "wall_ref" and len(rest) >= 2:
                a, b = float_or_none(rest[0]), float_or_none(rest[1])
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
        t = float_or_none(parts[0])
        if t is None or (tr.t and t < tr.t[-1]):
            bad += 1
            continue
        tr.t.append(t)
        for name, val in zip(fields, parts[1:]):
            tr.values[name].append(_num(val))
    if bad:
        tr.notes.append(f"{bad} malformed sample line(s) skipped")
    return tr


def float_or_none(text):
    """A finite float, or None (absent, '-', not a number, inf/nan)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
