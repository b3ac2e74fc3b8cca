"""YAML loading that remembers line numbers and refuses duplicate keys.

Why: every config error must name the file and line, and PyYAML silently keeps the last of two
duplicate keys, which hides mistakes in hand-edited inventories.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class LineDict(dict):
    """A mapping that knows the line it starts on and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list


def _construct(node: yaml.Node, path: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, path)
            if not isinstance(key, (str, int, float, bool)):
                raise ConfigError("mapping keys must be plain scalars", path=path,
                                  line=key_node.start_mark.line + 1)
            if key in out:
                raise ConfigError(f"duplicate key {key!r}", path=path,
                                  line=key_node.start_mark.line + 1,
                                  fix=f"first defined on line {out.key_lines[key]}; keep one")
            out[key] = _construct(value_node, path)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LineList(_construct(v, path) for v in node.value)
        seq.line = node.start_mark.line + 1
        seq.item_lines = [v.start_mark.line + 1 for v in node.value]
        return seq
    return _scalar(node)  # scalars: the safe constructor resolves int, float, bool, null, str


_RESOLVER_LOADER = yaml.SafeLoader("")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.ScalarNode) -> Any:
    return _RESOLVER_LOADER.construct_object(node, deep=True)


def load_yaml(path: str | Path, *, what: str = "file") -> Any:
    """Load a YAML file into plain values + LineDict/LineList; errors -> ConfigError with line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found", path=str(path),
                          fix="check the path or pass the right one on the command line")
    text = p.read_text(encoding="utf-8", errors="replace")
    return loads_yaml(text, str(path))


def loads_yaml(text: str, path: str = "<string>") -> Any:
    try:
        node = yaml.compose(text, Loader=_LOADER)  # libyaml when present: 8x faster, same marks
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"not valid YAML: {problem}", path=path,
                          line=(mark.line + 1) if mark else None,
                          fix="check indentation and quoting") from None
    if node is None:
        return None
    return _construct(node, path)


def expect_keys(mapping: LineDict, *, path: str, what: str, required: set[str], allowed: set[str]) -> None:
    """Reject unknown keys (with a close-match hint) and missing ones, naming the line."""
    import difflib

    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(sorted(allowed))
            raise ConfigError(f"{what}: unknown key {key!r}", path=path, line=mapping.line_of(key),
                              fix=hint)
    for key in sorted(required):
        if key not in mapping:
            raise ConfigError(f"{what}: missing required key {key!r}", path=path, line=mapping.line,
                              fix=f"add '{key}:'")


def expect_type(value: Any, types: type | tuple, *, path: str, line: int, what: str, hint: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        raise ConfigError(f"{what} must be {hint}, got {type(value).__name__} {value!r}", path=path,
                          line=line, fix=f"write {what} as {hint}")
    return value
