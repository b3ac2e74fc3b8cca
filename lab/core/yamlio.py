"""YAML loading that remembers line numbers and refuses duplicate keys.

Why: every config error must name the file and line, and PyYAML silently keeps the last of two
duplicate keys, which hides mistakes in hand-edited inventories.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from lab.core.errors import ConfigError


class LineDict(dict):
    """A mapping that knows the line it starts on and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    @classmethod
    def of(cls, mapping: dict, line: int = 0) -> "LineDict":
        """A LineDict for a default written in code (every key reported at `line`)."""
        out = cls(mapping)
        out.line, out.key_lines = line, {}
        return out


class LineList(list):
    line: int = 0
    item_lines: list


MAX_DEPTH = 64  # nesting levels: the lab's files use fewer than 10
MAX_NODES = 200_000  # values after alias expansion (the chip catalog has ~5,000): a "billion
# laughs" document stops here
MAX_BYTES = 16 * 1024 * 1024
MAX_INT = 2 ** 63 - 1  # what SQLite and every counter of the lab can hold
_STD_TAGS = {"tag:yaml.org,2002:" + t for t in
             ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


class _Budget:
    def __init__(self, path: str):
        self.path, self.nodes = path, 0

    def visit(self, node: yaml.Node, depth: int) -> None:
        self.nodes += 1
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels (or an alias that contains "
                              "itself)", path=self.path, line=line, fix="flatten the document")
        if self.nodes > MAX_NODES:
            raise ConfigError(f"more than {MAX_NODES} values after expanding aliases",
                              path=self.path, line=line,
                              fix="write the values out; aliases of aliases multiply")
        if node.tag not in _STD_TAGS:
            raise ConfigError(f"unsupported YAML tag {node.tag[:60]!r}", path=self.path, line=line,
                              fix="remove the tag: plain strings, numbers, lists and mappings only")


def _expanded_size(node: yaml.Node, path: str, memo: dict, depth: int = 1) -> int:
    """Values the document holds once aliases are expanded, counted on the node graph without
    expanding it (a shared node is counted once per use, computed once): a billion-laughs
    document is refused in microseconds, a self-containing alias by the depth limit."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels (or an alias that contains "
                          "itself)", path=path, line=node.start_mark.line + 1,
                          fix="flatten the document")
    key = id(node)
    if key in memo:
        return memo[key]
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, path, memo, depth + 1) + _expanded_size(v, path, memo, depth + 1)
                       for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, path, memo, depth + 1) for v in node.value)
    else:
        size = 1
    if size > MAX_NODES:
        raise ConfigError(f"more than {MAX_NODES} values after expanding aliases",
                          path=path, line=node.start_mark.line + 1,
                          fix="write the values out; aliases of aliases multiply")
    memo[key] = size
    return size


def _construct(node: yaml.Node, path: str, budget: _Budget | None = None, depth: int = 1) -> Any:
    if budget is None:
        _expanded_size(node, path, {})
        budget = _Budget(path)
    budget.visit(node, depth)
    if isinstance(node, yaml.MappingNode):
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, path, budget, depth + 1)
            if not isinstance(key, (str, int, float, bool)):
                raise ConfigError("mapping keys must be plain scalars", path=path,
                                  line=key_node.start_mark.line + 1)
            if key in out:
                raise ConfigError(f"duplicate key {key!r}", path=path,
                                  line=key_node.start_mark.line + 1,
                                  fix=f"first defined on line {out.key_lines[key]}; keep one")
            out[key] = _construct(value_node, path, budget, depth + 1)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LineList(_construct(v, path, budget, depth + 1) for v in node.value)
        seq.line = node.start_mark.line + 1
        seq.item_lines = [v.start_mark.line + 1 for v in node.value]
        return seq
    return _scalar(node, path)  # scalars: the safe constructor resolves int, float, bool, null, str


_RESOLVER_LOADER = yaml.SafeLoader("")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _scalar(node: yaml.ScalarNode, path: str = "<string>") -> Any:
    line = node.start_mark.line + 1
    if node.tag.endswith(":int") and len(node.value) > 40:  # int("9"*5000) costs, then fails
        raise ConfigError(f"integer {node.value[:20]}... is too large", path=path, line=line)
    try:
        value = _RESOLVER_LOADER.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, LookupError, AttributeError) as exc:
        # PyYAML's constructors fail on an explicit tag that does not fit the text in their own
        # ways: `!!bool foo` KeyError, `!!int` IndexError, `!!timestamp abc` AttributeError
        kind = node.tag.rsplit(':', 1)[-1]
        why = (str(exc).splitlines() or [""])[0][:80] if isinstance(exc, (yaml.YAMLError, ValueError)) \
            else f"not a {kind} as written"
        raise ConfigError(f"bad {kind} value {node.value[:40]!r} ({why})", path=path, line=line,
                          fix="quote it to make it a string, or write a plain number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{node.value[:40]!r} is not a finite number", path=path, line=line,
                          fix="write a plain finite number (no .nan, .inf, 1e999)")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ConfigError(f"integer {node.value[:40]} is too large", path=path, line=line,
                          fix=f"use a value below {MAX_INT}")
    return value


def load_yaml(path: str | Path, *, what: str = "file") -> Any:
    """Load a YAML file into plain values + LineDict/LineList; errors -> ConfigError with line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} not found", path=str(path),
                          fix="check the path or pass the right one on the command line")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{what} is {size} bytes, over the {MAX_BYTES} byte limit",
                              path=str(path), fix="a hand-written configuration is far smaller")
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", path=str(path)) from None
    return loads_yaml(text, str(path))


def loads_yaml(text: str, path: str = "<string>") -> Any:
    try:
        node = yaml.compose(text, Loader=_LOADER)  # libyaml when present: 8x faster, same marks
    except RecursionError:
        raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels", path=path,
                          fix="flatten the document") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = " ".join((getattr(exc, "problem", None) or str(exc)).split())[:200]
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
