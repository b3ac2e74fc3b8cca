"""Horizontal bar charts with CI whiskers written as SVG text directly, without matplotlib.

Why: the latency charts are a report's most numerous figures (one per model), and matplotlib's
artist and text-layout machinery cost ~0.1 s of CPU per chart, most of a big report's chart time;
a bar chart is a few rectangles, lines and labels. Same look as lab.report.plots (DejaVu Sans 8 pt,
left and bottom spines, processor legend on the right); text stays text and is escaped, so names
are shown, never interpreted.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PT = 72.0  # points per inch: sizes are given in inches as for matplotlib figures


def _nice_ticks(xmax: float) -> list[float]:
    """0 and round steps (1, 2, 2.5, 5 x 10^k) covering [0, xmax], about five of them."""
    if xmax <= 0 or not math.isfinite(xmax):
        return [0.0, 1.0]
    raw = xmax / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(xmax / step - 1e-9) + 1)]


def _head(w: float, h: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.1f}pt" height="{h:.1f}pt" '
            f'viewBox="0 0 {w:.1f} {h:.1f}" font-family="DejaVu Sans, Bitstream Vera Sans, sans-serif" '
            'font-size="8"><rect width="100%" height="100%" fill="#fff"/>')


def _fmt_tick(t: float) -> str:
    return f"{t:.6g}"


def bars_svg(title: str, labels: Sequence[str], segments: Sequence[Sequence[tuple[float, str]]],
             whiskers: Sequence[tuple[float | None, float | None]], xlabel: str,
             legend: Sequence[tuple[str, str]], *, left_in: float, legend_title: str = "") -> str:
    """The chart as SVG text: bars top to bottom in the given order, each made of (width, colour)
    segments laid end to end (one for a plain bar, several for a stacked one); whiskers (low, high)
    where a CI is known."""
    n = len(labels)
    w, h = 8.0 * PT, (1.0 + 0.22 * n) * PT
    x0, x1 = min(0.6 * 8.0, left_in) * PT, w - 1.1 * PT
    y0, y1 = 0.45 * PT, h - 0.5 * PT
    ends = [sum(v for v, _ in seg) for seg in segments] + [hi for _, hi in whiskers if hi is not None]
    ticks = _nice_ticks(max(ends))
    xmax = ticks[-1]

    def sx(v: float) -> float:
        return x0 + (x1 - x0) * max(0.0, v) / xmax

    slot = (y1 - y0) / n
    out = [_head(w, h), f'<text x="{x0:.1f}" y="{y0 - 6:.1f}" font-size="9">{escape(title)}</text>']
    for i, (label, seg, (lo, hi)) in enumerate(zip(labels, segments, whiskers)):
        yc, start = y0 + (i + 0.5) * slot, 0.0
        for v, c in seg:
            out.append(f'<rect x="{sx(start):.1f}" y="{yc - 0.35 * slot:.1f}" width="{sx(start + v) - sx(start):.1f}" '
                       f'height="{0.7 * slot:.1f}" fill="{c}"/>')
            start += v
        out.append(f'<text x="{x0 - 3.5:.1f}" y="{yc + 2.8:.1f}" text-anchor="end">{escape(label)}</text>')
        if lo is not None or hi is not None:
            a, b = sx(lo if lo is not None else start), sx(hi if hi is not None else start)
            out.append(f'<path d="M{a:.1f} {yc:.1f}H{b:.1f}M{a:.1f} {yc - 2:.1f}V{yc + 2:.1f}'
                       f'M{b:.1f} {yc - 2:.1f}V{yc + 2:.1f}" stroke="#000" stroke-width="0.8"/>')
    out.append(f'<path d="M{x0:.1f} {y0:.1f}V{y1:.1f}H{x1:.1f}" fill="none" stroke="#000" stroke-width="0.8"/>')
    for t in ticks:
        out.append(f'<path d="M{sx(t):.1f} {y1:.1f}v3.5" stroke="#000" stroke-width="0.8"/>'
                   f'<text x="{sx(t):.1f}" y="{y1 + 12:.1f}" text-anchor="middle">{_fmt_tick(t)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y1 + 25:.1f}" text-anchor="middle">{escape(xlabel)}</text>')
    lx, ly = x1 + 0.01 * (x1 - x0), y0 + 2
    if legend and legend_title:
        out.append(f'<text x="{lx:.1f}" y="{y0 + 9:.1f}">{escape(legend_title)}</text>')
        ly += 12
    for k, (name, c) in enumerate(legend):
        out.append(f'<rect x="{lx:.1f}" y="{ly + 12 * k:.1f}" width="14" height="7" fill="{c}"/>'
                   f'<text x="{lx + 18:.1f}" y="{ly + 12 * k + 6.5:.1f}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _range_ticks(lo: float, hi: float) -> list[float]:
    """Round steps inside [lo, hi], about five of them."""
    step = _nice_ticks(hi - lo)[1] if hi > lo else 1.0
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def scatter_svg(title: str, points: Sequence[tuple[float, float, str, bool]], front: Sequence[tuple[float, float]],
                notes: Sequence[tuple[str, float, float]], xlabel: str, ylabel: str,
                legend: Sequence[tuple[str, str]]) -> str:
    """Points (x, y, colour, on_front: outlined), the front joined by a line, `notes` labels beside
    their points; axes span the data plus 12 % either side, as matplotlib's margins."""
    w, h = 6.5 * PT, 4.2 * PT
    x0, x1, y0, y1 = (0.35 + 0.058 * 7) * PT, w - 1.1 * PT, 0.45 * PT, h - 0.55 * PT
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    (xa, xb), (ya, yb) = [(lo - 0.12 * ((hi - lo) or abs(lo) or 1), hi + 0.12 * ((hi - lo) or abs(hi) or 1))
                          for lo, hi in ((min(xs), max(xs)), (min(ys), max(ys)))]

    def sx(v: float) -> float:
        return x0 + (x1 - x0) * (v - xa) / (xb - xa)

    def sy(v: float) -> float:
        return y1 - (y1 - y0) * (v - ya) / (yb - ya)

    out = [_head(w, h), f'<text x="{x0:.1f}" y="{y0 - 6:.1f}" font-size="9">{escape(title)}</text>']
    for on_front in (False, True):  # the front on top
        for x, y, c, f in points:
            if f == on_front:
                out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{3.3 if f else 2.8}" fill="{c}"'
                           + (' stroke="#000" stroke-width="0.8"/>' if f else ' fill-opacity="0.6"/>'))
    if len(front) > 1:
        out.append('<path d="M' + "L".join(f"{sx(x):.1f} {sy(y):.1f}" for x, y in front)
                   + '" fill="none" stroke="#000" stroke-width="0.8"/>')
    for label, x, y in notes:
        out.append(f'<text x="{sx(x) + 4:.1f}" y="{sy(y) - 4:.1f}" font-size="6.5">{escape(label)}</text>')
    out.append(f'<path d="M{x0:.1f} {y0:.1f}V{y1:.1f}H{x1:.1f}" fill="none" stroke="#000" stroke-width="0.8"/>')
    for t in _range_ticks(xa, xb):
        out.append(f'<path d="M{sx(t):.1f} {y1:.1f}v3.5" stroke="#000" stroke-width="0.8"/>'
                   f'<text x="{sx(t):.1f}" y="{y1 + 12:.1f}" text-anchor="middle">{_fmt_tick(t)}</text>')
    for t in _range_ticks(ya, yb):
        out.append(f'<path d="M{x0:.1f} {sy(t):.1f}h-3.5" stroke="#000" stroke-width="0.8"/>'
                   f'<text x="{x0 - 5:.1f}" y="{sy(t) + 2.8:.1f}" text-anchor="end">{_fmt_tick(t)}</text>')
    out.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y1 + 25:.1f}" text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate({x0 - 0.62 * PT:.1f} {(y0 + y1) / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle">{escape(ylabel)}</text>')
    lx = x1 + 0.01 * (x1 - x0)
    out.append(f'<text x="{lx:.1f}" y="{y0 + 9:.1f}">processor</text>')
    for k, (name, c) in enumerate(legend):
        out.append(f'<rect x="{lx:.1f}" y="{y0 + 14 + 12 * k:.1f}" width="14" height="7" fill="{c}"/>'
                   f'<text x="{lx + 18:.1f}" y="{y0 + 20.5 + 12 * k:.1f}">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
