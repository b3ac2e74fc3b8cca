"""Figures for people, the one formatter of every number the advisor prints (text, reasons, notes)
and the report's advisor cells: three significant digits.

Why one module: a latency printed as 0.000199 ms, 1.53e+03 ms or 41.23456 ms reads as more (or
less) than the measurement knows; the advisor's rules, its text, the frameworks note and the
break-even reason all print through these functions, so each figure looks the same everywhere.
"""
from __future__ import annotations

import math


def fmt_num(v: float | None) -> str:
    """A figure for people: 3 significant digits below 1000, whole with thousands separators above.

    Why: `f"{v:.3g}"` prints 1530 as "1.53e+03", which reads badly in a verdict.
    """
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if v == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    text = f"{v:.{digits}f}"
    if abs(float(text)) >= 1000:
        return f"{v:,.0f}"
    return text


def fmt_ms(ms: float | None) -> str:
    """A latency for people: `fmt_num` + " ms", or n/a."""
    return "n/a" if ms is None else f"{fmt_num(ms)} ms"


def fmt_pct(share: float) -> str:
    """A share for people: whole percent from 0.5 % on ("42 %"), one decimal below ("0.3 %")."""
    return f"{100 * share:.0f} %" if share >= 0.005 else f"{100 * share:.1f} %"


def fmt_macs(macs: float) -> str:
    """A MAC count for people: "9,500 MACs" below a million, else "570 M MACs" (`fmt_num`)."""
    return f"{macs:,.0f} MACs" if macs < 1e6 else f"{fmt_num(macs / 1e6)} M MACs"
