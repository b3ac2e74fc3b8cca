"""Charts of the report as SVG `data:` URIs: bars, stacked bars and Pareto scatters written directly
(lab.report.svgbars), the rarer charts drawn with matplotlib's SVG backend.

Why `<img src="data:image/svg+xml;base64,...">` rather than inline `<svg>`: a chart built from
user-supplied names (devices, models) can then never run script or fetch anything - browsers do
neither for SVG loaded as an image - and the page stays one self-contained file. Text is kept as
text (`svg.fonttype=none`): smaller files, sharp in print. Labels are drawn with maths parsing off,
so a `$` in a model name is shown, not interpreted.

Every function returns None when there is nothing to draw; the template then says why. The chip
criteria heatmap is an HTML table with coloured cells instead (render.heat_class): 8 criteria x
dozens of chips x several profiles of text cells cost seconds in matplotlib and nothing in HTML, and
the numbers stay selectable text.
"""
from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from lab.report.svgbars import bars_svg, scatter_svg

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "hwlab",  # deterministic ids: the same data gives the same bytes
    "text.parse_math": False,
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}

MAX_BARS = 30  # per chart; tables always list every row, the caption says what was left out

CPU_COLOR, GPU_COLOR, AIPU_COLOR, OTHER_COLOR = "#4c72b0", "#55a868", "#c44e52", "#8c8c8c"
PROCESSOR_COLORS = {"cpu": CPU_COLOR, "gpu": GPU_COLOR, "aipu": AIPU_COLOR}


@dataclass
class Bar:
    label: str
    value: float
    low: float | None = None  # CI bounds; None when unknown
    high: float | None = None
    processor: str | None = None
    flag: str = ""  # appended to the label, e.g. "not converged"


@dataclass
class Chart:
    uri: str
    alt: str
    caption: str = ""


_NUM_ATTR = re.compile(r'\b(d|x|y|x1|x2|y1|y2|width|height|transform|points)="([^"]*)"')
_LONG_NUM = re.compile(r"(-?\d+\.\d)\d+")


def _minify(svg: str) -> str:
    """Coordinates to 0.1 pt and no indentation: about half the bytes, same picture.

    Only geometry attributes are touched; label text (which may contain digits) is left alone.
    """
    def attr(m: re.Match) -> str:
        value = " ".join(_LONG_NUM.sub(r"\1", m.group(2)).split())
        return f'{m.group(1)}="{value}"'

    svg = _NUM_ATTR.sub(attr, svg)
    return re.sub(r">\s+<", "><", svg)


def _mpl():
    """matplotlib, imported on first use: the common charts (bars, stacked bars, Pareto) are
    written as SVG directly (lab.report.svgbars) and a report without the others never pays for it."""
    import matplotlib
    import matplotlib.figure  # the submodules used here
    return matplotlib


def _svg_uri(fig: Figure) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    buf = io.BytesIO()
    FigureCanvasSVG(fig)
    with _mpl().rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return _data_uri(_minify(buf.getvalue().decode("utf-8")))


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _new_figure(width: float, height: float, labels: Sequence[str] = (), *, top: float = 0.45,
                bottom: float = 0.5) -> Figure:
    """A figure with margins computed from the label lengths (inches), instead of a tight-bbox pass:
    `bbox_inches="tight"` draws every figure twice, the cost that dominated large reports."""
    with _mpl().rc_context(_RC):
        fig = _mpl().figure.Figure(figsize=(width, height))
    left = 0.35 + 0.058 * max((len(t) for t in labels), default=4)  # ~8 pt DejaVu Sans per char
    fig.subplots_adjust(left=min(0.6, left / width), right=1 - 1.1 / width,  # legend sits right of the axes
                        top=1 - top / height, bottom=bottom / height)
    return fig


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def bar_chart(title: str, bars: Sequence[Bar], xlabel: str, *, alt: str) -> Chart | None:
    """Horizontal bars with CI error bars (asymmetric; missing CI -> no whisker)."""
    bars = [b for b in bars if b.value is not None and math.isfinite(b.value)]
    if not bars:
        return None
    shown = sorted(bars, key=lambda b: b.value)[:MAX_BARS]
    caption = ""
    if len(bars) > len(shown):
        caption = f"{len(shown)} fastest of {len(bars)} configurations drawn; the table lists all."
    labels = [_clip(b.label + (f"  [{b.flag}]" if b.flag else "")) for b in shown]
    left = 0.35 + 0.058 * max((len(t) for t in labels), default=4)  # as _new_figure
    procs = sorted({b.processor for b in shown}, key=lambda p: p or "~")
    svg = bars_svg(_clip(title, 90), labels,
                   [[(b.value, PROCESSOR_COLORS.get(b.processor or "", OTHER_COLOR))] for b in shown],
                   [(b.low, b.high) for b in shown], xlabel,
                   [(p or "unknown", PROCESSOR_COLORS.get(p or "", OTHER_COLOR)) for p in procs], left_in=left,
                   legend_title="processor")
    return Chart(_data_uri(svg), alt, caption)


def stacked_chart(title: str, labels: Sequence[str], parts: Sequence[tuple[str, Sequence[float | None]]],
                  xlabel: str, *, alt: str) -> Chart | None:
    """Stacked horizontal bars (e.g. load + first inference). Rows with an unknown part are drawn
    with that part missing and marked "(part n/a)" so no unknown is shown as zero."""
    rows = []
    for i, label in enumerate(labels):
        vals = [p[1][i] for p in parts]
        if all(v is None for v in vals):
            continue
        missing = [p[0] for p, v in zip(parts, vals) if v is None]
        rows.append((label + (f"  [{', '.join(missing)} n/a]" if missing else ""), vals))
    if not rows:
        return None
    rows.sort(key=lambda r: sum(v for v in r[1] if v is not None))
    caption = ""
    if len(rows) > MAX_BARS:
        caption = f"{MAX_BARS} fastest of {len(rows)} configurations drawn; the table lists all."
        rows = rows[:MAX_BARS]
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    labels = [_clip(r[0]) for r in rows]
    segs = [[(v if v is not None else 0.0, palette[k % len(palette)]) for k, v in enumerate(r[1])] for r in rows]
    svg = bars_svg(_clip(title, 90), labels, segs, [(None, None)] * len(rows), xlabel,
                   [(name, palette[k % len(palette)]) for k, (name, _) in enumerate(parts)],
                   left_in=0.35 + 0.058 * max((len(t) for t in labels), default=4))
    return Chart(_data_uri(svg), alt, caption)


def pareto_chart(title: str, points: Sequence[tuple[str, float, float, bool, str | None]],
                 xlabel: str, ylabel: str, *, alt: str) -> Chart | None:
    """Scatter of (label, x, y, on_front, processor); the front is joined and labelled."""
    pts = [p for p in points if p[1] is not None and p[2] is not None]
    if len(pts) < 2:
        return None
    front = sorted((p for p in pts if p[3]), key=lambda p: p[1])
    color = {p[4]: PROCESSOR_COLORS.get(p[4] or "", OTHER_COLOR) for p in pts}
    svg = scatter_svg(_clip(title, 90), [(p[1], p[2], color[p[4]], p[3]) for p in pts],
                      [(p[1], p[2]) for p in front], [(_clip(p[0], 40), p[1], p[2]) for p in front[:12]],
                      xlabel, ylabel, [(p or "unknown", color[p]) for p in sorted(color, key=lambda p: p or "~")])
    caption = "Black outline: on the Pareto front (no other configuration is better on both axes)."
    if len(front) > 12:
        caption += f" {len(front)} front points, first 12 labelled."
    return Chart(_data_uri(svg), alt, caption)


def _processor_legend(ax, processors) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=PROCESSOR_COLORS.get(p, OTHER_COLOR), label=p or "unknown")
               for p in sorted(processors, key=lambda p: p or "~")]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="processor")


def curve_chart(title: str, series: Sequence[tuple[str, Sequence[tuple[float, float, bool]]]], xlabel: str,
                ylabel: str, *, hline: float | None = None, hline_label: str = "", alt: str) -> Chart | None:
    """Lines of (x, y, ok) points, one per series (the serving sweep's QPS against p99); points
    that failed their test (LoadGen INVALID) are drawn hollow."""
    series = [(lab, sorted(p for p in pts if p[0] is not None and p[1] is not None)) for lab, pts in series]
    series = [(lab, pts) for lab, pts in series if pts]
    if not series:
        return None
    with _mpl().rc_context(_RC):
        fig = _new_figure(6.5, 4.0, ["0000000"], bottom=0.55)
        ax = fig.add_subplot()
        for i, (label, pts) in enumerate(series[:12]):
            color = f"C{i % 10}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, lw=1.0, label=_clip(label, 40))
            for ok in (True, False):
                sel = [p for p in pts if p[2] == ok]
                if sel:
                    ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=22, zorder=3,
                               facecolors=color if ok else "none", edgecolors=color)
        if hline is not None:
            ax.axhline(hline, color="black", lw=0.7, ls="--")
            ax.annotate(hline_label, (0, hline), xycoords=("axes fraction", "data"), xytext=(2, 3),
                        textcoords="offset points", fontsize=6.5)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(_clip(title, 90), loc="left", y=1.0)  # fixed y: no auto-placement pass
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        caption = "Filled: LoadGen VALID at that rate (the bound held, early stopping included); hollow: INVALID."
        if len(series) > 12:
            caption += f" {len(series)} series, first 12 drawn."
        return Chart(_svg_uri(fig), alt, caption)


def window_chart(title: str, series: Sequence[tuple[str, str | None, Sequence[tuple[float, float]]]],
                 ylabel: str, *, alt: str) -> Chart | None:
    """Sustained runs: one line per configuration, p50 per window against the window's mid time (s)."""
    series = [(label, proc, [(x, y) for x, y in pts if y is not None and math.isfinite(y)])
              for label, proc, pts in series]
    series = [s for s in series if s[2]]
    if not series:
        return None
    with _mpl().rc_context(_RC):
        fig = _new_figure(8.0, 3.0)
        ax = fig.add_subplot()
        for label, proc, pts in series[:MAX_BARS]:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=2.5, linewidth=1,
                    label=_clip(label, 40), color=PROCESSOR_COLORS.get(proc or "") if len(series) == 1 else None)
        ax.set_xlabel("seconds into the sustained run")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(_clip(title, 90), loc="left", y=1.0)  # fixed y: no auto-placement pass
        ax.legend(fontsize=6, loc="best")
        return Chart(_svg_uri(fig), alt)


OP_TOP_N = 10  # op types per panel of the op-profile charts


def op_profile_chart(title: str, panels: Sequence[tuple[str, Sequence[tuple[str, float, str | None]]]],
                     *, alt: str) -> Chart | None:
    """Per-operator time share, one panel per job side by side (CPU, then AIPU, then GPU runs).

    Each panel lists (op type, share 0..1, processor the op ran on); bars are coloured by that
    processor, so a CPU fallback op inside an AIPU run shows in the CPU colour. Top OP_TOP_N per
    panel; the rest is summed into one "other" bar so the shares still add up.
    """
    panels = [(t, [o for o in ops if o[1] is not None and math.isfinite(o[1])]) for t, ops in panels]
    panels = [(t, ops) for t, ops in panels if ops]
    if not panels:
        return None
    shown = []
    for t, ops in panels:
        top = sorted(ops, key=lambda o: -o[1])[:OP_TOP_N]
        rest = sum(o[1] for o in ops) - sum(o[1] for o in top)
        if len(ops) > len(top):
            top.append((f"other ({len(ops) - len(top)} op types)", rest, None))
        shown.append((t, top))
    n_bars = max(len(ops) for _, ops in shown)
    labels = [_clip(o[0], 40) for _, ops in shown for o in ops]
    procs = {o[2] for _, ops in shown for o in ops}
    with _mpl().rc_context(_RC):
        width = min(16.0, 1.0 + 4.2 * len(shown))
        fig = _mpl().figure.Figure(figsize=(width, 1.2 + 0.24 * n_bars))
        height = 1.2 + 0.24 * n_bars
        label_in = 0.35 + 0.058 * max(len(t) for t in labels)  # ~8 pt per char, as _new_figure
        fig.subplots_adjust(left=min(0.5, label_in / width), right=1 - 1.1 / width,
                            top=1 - 0.6 / height, bottom=0.45 / height,
                            wspace=min(1.5, label_in / (width / len(shown))) + 0.1)
        axes = fig.subplots(1, len(shown), squeeze=False)[0]
        for ax, (t, ops) in zip(axes, shown):
            ys = list(range(len(ops)))[::-1]
            ax.barh(ys, [100 * o[1] for o in ops], height=0.7,
                    color=[PROCESSOR_COLORS.get(o[2] or "", OTHER_COLOR) for o in ops])
            ax.set_yticks(ys, [_clip(o[0], 40) for o in ops])
            ax.set_xlabel("% of op time")
            ax.set_xlim(0, 100)
            ax.set_title(_clip(t, 48), loc="left", y=1.0)
        fig.suptitle(_clip(title, 110), x=0.01, ha="left", fontsize=9)
        _processor_legend(axes[-1], procs)
        return Chart(_svg_uri(fig), alt)
