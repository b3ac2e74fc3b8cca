"""argparse types for numbers: finite, in range, one line when wrong.

Why: `float("nan")` and `float("inf")` parse, and ints parse at any size; `--timeout nan`,
`--draws 10**12` or `--retries -1` must be refused at the command line (exit 2, one line), not
deep in a job. Every numeric flag of the CLI uses one of these.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable


def _parse_float(text: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text[:40]!r}")
    return v


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           what: str = "a number") -> Callable[[str], float]:
    """A finite float in [low, high] ((low, high] with low_open)."""
    def parse(text: str) -> float:
        v = _parse_float(text)
        if low is not None and (v < low or (low_open and v == low)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}")
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(f"expected {what} (at most {high:g}), got {text[:40]!r}")
        return v
    parse.__name__ = "number"  # argparse names the type in "invalid number value"
    return parse


def integer(low: int | None = None, high: int | None = None, *, what: str = "an integer"
            ) -> Callable[[str], int]:
    """An int in [low, high], written in decimal (no 1e3, no 10**12)."""
    def parse(text: str) -> int:
        t = str(text).strip()
        if len(t) > 20 or not t.lstrip("+-").isdigit():
            raise argparse.ArgumentTypeError(f"expected {what}, got {text[:40]!r}")
        v = int(t)
        if (low is not None and v < low) or (high is not None and v > high):
            rng = f"between {low} and {high}" if low is not None and high is not None else (
                f">= {low}" if low is not None else f"<= {high}")
            raise argparse.ArgumentTypeError(f"expected {what} {rng}, got {text[:40]!r}")
        return v
    parse.__name__ = "integer"
    return parse


positive = number(0, None, low_open=True, what="a positive number")
DAY_S = 86400.0
seconds = number(0, 7 * DAY_S, low_open=True, what="a positive number of seconds")
