"""Names rendered as text: no terminal control sequences, no rich markup, no spreadsheet formulas.

Why: device, model and campaign names come from files users import (results CSVs, stores made
elsewhere). Printed raw, an ESC sequence rewrites the terminal and `[/]` crashes rich's markup
parser; exported raw, `=cmd|...` runs as a formula when the CSV is opened in a spreadsheet.
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


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string starting with = + - @ (or tab/CR) gets a
    leading apostrophe (OWASP CSV injection advice). Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_LEAD):
        return "'" + value
    return value
