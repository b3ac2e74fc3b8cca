"""The parsed chip catalog kept on disk as JSON between processes (`~/.cache/hwlab/catalog/`).

Why: parsing and validating chips.yaml (~1,000 lines of YAML) was the largest single part of a
`lab advise` answer; decoding the validated catalog from JSON costs a few milliseconds. The key is
the sha256 of the YAML's bytes, its path and the catalog code's bytes, so an edited catalog or a
changed loader never reads a stale entry. Why JSON, not pickle: a damaged or foreign cache file can
only fail to decode, never run code; each entry carries the sha256 of its text, and a file that
does not match is ignored (the YAML is parsed as before) and replaced. A catalog is written only if it reads back equal, so the cache can never change a figure.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEEP = 16  # cached catalogs kept (one per catalog file version)


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/hwlab/catalog, default ~/.cache/hwlab/catalog."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hwlab" / "catalog"


def load(path: str, parse: Callable[[str], Any], code: Path, classes: tuple[type, ...]) -> Any:
    """The catalog at `path` from the cache when this exact file was parsed before by this code
    (`code`: the loader's source file), else `parse(path)`, then cached. `classes`: the
    dataclasses a catalog is made of, the only ones an entry may name."""
    by_name = {c.__name__: c for c in classes}
    try:
        key = cache_key(path, Path(path).read_bytes(), code.read_bytes())
    except OSError:
        return parse(path)  # unreadable: the parser names the file and the problem
    catalog = read(key, by_name)
    if not isinstance(catalog, classes[-1]):
        catalog = parse(path)
        write(key, catalog, by_name)
    return catalog


def cache_key(path: str, data: bytes, code: bytes) -> str:
    """What the parsed catalog depends on: the file (path and bytes), the loader's code, Python."""
    h = hashlib.sha256()
    for part in (path.encode(), data, code, sys.version.encode()):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()


def _enc(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {"c": type(v).__name__, "f": {f.name: _enc(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    if isinstance(v, tuple):
        return {"t": [_enc(x) for x in v]}
    if isinstance(v, dict):
        return {"d": {k: _enc(x) for k, x in v.items()}}  # a non-text key fails the JSON encoder
    if isinstance(v, list):
        return [_enc(x) for x in v]
    return v  # text, numbers, booleans, None; anything else fails the JSON encoder: not cached


def _dec(v: Any, classes: dict[str, type]) -> Any:
    if isinstance(v, list):
        return [_dec(x, classes) for x in v]
    if not isinstance(v, dict):
        return v
    if "t" in v:
        return tuple(_dec(x, classes) for x in v["t"])
    if "d" in v:
        return {k: _dec(x, classes) for k, x in v["d"].items()}
    return classes[v["c"]](**{k: _dec(x, classes) for k, x in v["f"].items()})


def read(key: str, classes: dict[str, type]) -> Any | None:
    """The cached catalog for `key`, or None: absent, unreadable or damaged (never an error)."""
    try:
        digest, _, text = (cache_dir() / f"{key}.json").read_text(encoding="utf-8").partition("\n")
        if digest != hashlib.sha256(text.encode()).hexdigest():
            return None  # damaged (or cut short): even a decodable shape is not trusted
        return _dec(json.loads(text), classes)
    except Exception:  # noqa: BLE001 - any damage means "not cached": the YAML is parsed instead
        return None


def write(key: str, catalog: Any, classes: dict[str, type]) -> None:
    """Store `catalog` under `key` (atomically; the oldest beyond KEEP removed) if it reads back equal.
    An unwritable cache folder is not an error: the next command parses the YAML again."""
    try:
        text = json.dumps(_enc(catalog), separators=(",", ":"), allow_nan=False)
        if _dec(json.loads(text), classes) != catalog:
            return
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(hashlib.sha256(text.encode()).hexdigest() + "\n" + text, encoding="utf-8")
        os.replace(tmp, d / f"{key}.json")
        entries = sorted(d.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:  # edited catalogs leave entries behind: keep the newest few
            old.unlink(missing_ok=True)
    except (OSError, TypeError, ValueError, KeyError):
        return
