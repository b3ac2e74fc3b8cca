"""Terminal tables that never cut the answer: ids, chips, models and figures are shown whole.

Why: rich shrinks columns to the terminal and ends them with "…", so at 100 columns RK3588 and
RK3399Pro both read `rk3…` (issue 17). Here every column says what it may do when space is short:
a key column (ids, names, figures) is never wrapped or cut; a text column wraps at spaces (never
inside a word); a minor column is dropped, lowest priority first, and a note names what was left
out and that `--wide` shows everything; a column holding one value on every row then moves to an
"all rows:" line above the table. If even the key columns do not fit, the table is printed
at the width it needs (the terminal then wraps lines; nothing is hidden). Output that is not a
terminal is printed wide. Cells are rich `Text`, so names are never read as markup.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, Any, Sequence


@dataclass(frozen=True)
class Col:
    header: str
    drop: int = 0  # 0: never dropped; otherwise dropped when narrow, highest number first
    wrap: bool = False  # long text: may wrap at spaces (min width = its longest word)
    justify: str = "left"


def _words(s: str) -> int:
    return max((len(w) for w in s.split()), default=0)


def _need(col: Col, cells: list[str]) -> tuple[int, int]:
    """(minimum width, natural width) of a column: headers wrap at spaces, key cells never do."""
    head = _words(col.header)
    if col.wrap:
        return max([head] + [_words(c) for c in cells]), max([len(col.header)] + [len(c) for c in cells])
    widest = max([len(c) for c in cells], default=0)
    return max(head, widest), max(len(col.header), widest)


def terminal_width(stream: IO[str] | None = None) -> int | None:
    """The terminal's width, or None when the output is not a terminal (then: print wide)."""
    stream = stream or sys.stdout
    if not getattr(stream, "isatty", lambda: False)():
        return None
    import shutil
    return shutil.get_terminal_size((80, 24)).columns


def print_table(cols: Sequence[Col], rows: Sequence[Sequence[Any]], *, title: str | None = None,
                wide: bool = False, width: int | None = None, file: IO[str] | None = None,
                boxed: bool = False) -> list[str]:
    """Print rows (cells as strings) under `cols`; returns the headers left out (for callers'
    notes; the note itself is printed here). `width` None: the terminal's (wide when not one)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    file = file or sys.stdout
    from lab.core.textsafe import one_line  # control characters shown escaped, never sent to the terminal
    cells = [[("" if c is None else one_line(c)) for c in r] for r in rows]
    title = None if title is None else one_line(title)
    if width is None:
        width = terminal_width(file)
    pad = 3 if boxed else 2
    needs = [_need(col, [r[i] for r in cells]) for i, col in enumerate(cols)]
    keep = list(range(len(cols)))
    dropped: list[str] = []
    def total(idx: list[int]) -> int:
        return sum(needs[i][0] + pad for i in idx) + (1 if boxed else 0)

    if not wide and width is not None:
        for i in sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: -cols[i].drop):
            if total(keep) <= width:
                break
            keep.remove(i)
            dropped.append(cols[i].header)
    hoisted: list[str] = []
    if not wide and width is not None and len(cells) > 1 and total(keep) > width:
        # still too wide: a column with one value on every row becomes a line above the table
        for i in list(keep):
            values = {r[i] for r in cells}
            if len(values) == 1 and total(keep) > width:
                keep.remove(i)
                hoisted.append(f"{cols[i].header}: {values.pop()}")
    natural = sum(needs[i][1] + pad for i in keep) + (1 if boxed else 0)
    minimum = sum(needs[i][0] + pad for i in keep) + (1 if boxed else 0)
    render_w = natural if (wide or width is None) else max(min(width, natural), minimum)
    t = Table(title=title, title_justify="left", box=box.SQUARE if boxed else None,
              show_lines=False, header_style="bold", pad_edge=boxed,
              padding=(0, 1) if boxed else (0, 2, 0, 0))
    # exact widths, so rich never has to squeeze: minimums first, the room left towards natural
    extra = max(0, render_w - minimum)
    for i in keep:
        col = cols[i]
        add = min(extra, needs[i][1] - needs[i][0])
        extra -= add
        t.add_column(Text(col.header), justify=col.justify, width=needs[i][0] + add,
                     overflow="fold")
    for r in cells:
        t.add_row(*[Text(r[i]) for i in keep])
    con = Console(file=file, width=max(render_w, 20), highlight=False, soft_wrap=False,
                  force_terminal=False, color_system=None if not getattr(file, "isatty",
                                                                         lambda: False)() else "auto")
    if hoisted:
        con.print(Text("all rows: " + "; ".join(hoisted)))
    con.print(t)
    if dropped:
        con.print(Text(f"(left out at {width} columns: {', '.join(dropped)}; --wide shows all)"))
    return dropped
