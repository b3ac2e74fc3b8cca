"""JSON in and out, strict: bounded size and nesting on the way in, no NaN/Infinity either way.

Why: Python's json accepts `NaN`/`Infinity` and writes them (invalid JSON for every other
parser); a 1,000-deep document raises RecursionError in the lab's walkers. Model files,
meta.json and stored JSON cells are input like any other file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError

MAX_DEPTH = 200  # real PIR programs nest about 12 levels; 200 leaves room, bounds the walkers
MAX_BYTES = 512 * 1024 * 1024


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text[:30]} is out of range")
    return v


def depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed document (iterative; stops counting past `limit`)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def loads(text: str | bytes, *, path: str = "<json>", what: str = "JSON",
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse strict JSON (no NaN/Infinity), at most `max_depth` deep; errors -> ConfigError."""
    try:
        doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ConfigError(f"{what} nests too deep (limit {max_depth})", path=path) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} is not valid JSON: {str(exc)[:120]}", path=path) from None
    if depth(doc, max_depth) > max_depth:
        raise ConfigError(f"{what} nests too deep (limit {max_depth})", path=path)
    return doc


def load_file(path: str | Path, *, what: str = "JSON file", max_bytes: int = MAX_BYTES,
              max_depth: int = MAX_DEPTH) -> Any:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{what} is {size} bytes, over the {max_bytes} byte limit", path=str(p))
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path=str(p)) from None
    return loads(data, path=str(p), what=what, max_depth=max_depth)


def finite(obj: Any) -> Any:
    """A copy with every NaN/Infinity float replaced by None (unknown), for strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs) -> str:
    """Strict JSON text: non-finite numbers become null, and allow_nan=False guards the rest."""
    kwargs.setdefault("default", str)
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
