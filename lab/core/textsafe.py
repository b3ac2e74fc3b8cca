"""Names rendered as text: no terminal control sequences, no rich markup, no spreadsheet formulas.

Why: device, model and campaign names come from files users import (results CSVs, stores made
elsewhere). Printed raw, an ESC sequence rewrites the terminal and `[/]` crashes rich's markup
parser; exported raw, `=cmd|...` runs as a formula when the CSV is opened in a spreadsheet. Echoed
whole, a 100,000-character device id made a 100 KB error line: `clip` quotes an excerpt instead.
"""
from __future__ import annotations

import re
from typing import Any

# C0 controls except tab and newline, DEL, C1 controls, and the Unicode bidi overrides/isolates
# (which reorder what a terminal shows: "Trojan Source")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _visible(m: re.Match) -> str:
    ch = m.group(0)
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def clean(text: Any) -> str:
    """Text safe for a terminal: control characters (ESC, CR, BEL, bidi overrides) shown escaped
    as \\x1b etc.; newlines and tabs kept (for multi-line blocks)."""
    return _CONTROL.sub(_visible, str(text))


def one_line(text: Any) -> str:
    """Like clean(), and newlines too are escaped: for error messages and table cells."""
    return _CONTROL_LINE.sub(_visible, str(text))


QUOTE_LIMIT = 200  # characters of any one input value an error message quotes
LINE_LIMIT = 2000  # a whole error line, whatever it holds
_N = f"{{{QUOTE_LIMIT + 1},}}"  # more than QUOTE_LIMIT: {201,}
_QUOTED = re.compile(f"'([^'\n]{_N})'|\"([^\"\n]{_N})\"")
_RUN = re.compile(rf"\S{_N}")


def excerpt_value(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to at most `limit` characters: its head and tail around how much was left out."""
    if len(text) <= limit:
        return text
    gap = f"…[{len(text):,} chars]…"
    keep = max(limit - len(gap), 8)
    head = keep * 3 // 4
    return text[:head] + gap + text[len(text) - (keep - head):]


def clip(message: Any) -> str:
    """An error message that quotes at most QUOTE_LIMIT characters of any value it echoes (a quoted
    value or an unbroken run: an id, a path, a number) and is at most LINE_LIMIT long.

    Why in one place: error messages echo what the user gave (device ids, paths, CSV cells, YAML
    values), dozens of sites; every lab error and every CLI error line passes through here, so no
    site can echo a whole 100 KB value back. Idempotent: a clipped message stays as it is."""
    text = str(message)
    if len(text) <= QUOTE_LIMIT:
        return text
    text = _QUOTED.sub(lambda m: m.group(0)[0] + excerpt_value(m.group(1) or m.group(2)) + m.group(0)[-1], text)
    text = _RUN.sub(lambda m: excerpt_value(m.group(0)), text)
    return excerpt_value(text, LINE_LIMIT)


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string starting with = + - @ (or tab/CR) gets a
    leading apostrophe (OWASP CSV injection advice). Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_LEAD):
        return "'" + value
    return value
