"""Size limits that keep each module one job and each function readable without scrolling.

Outside lab/runners/ (files that travel to devices alone and must be self-contained), no module is
over MAX_MODULE_LINES lines and no function over MAX_FUNCTION_LINES (from its `def` line to its last
line, docstring and comments included; a nested function counts in its parent too). The only
exceptions are the table-driven parsers in LONG_PARSERS (at most MAX_EXCEPTIONS), each with the
reason it stays in one piece; an exception that is no longer needed fails too, so the list only
shrinks.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_EXCEPTIONS = 3
TRAVELLING = "lab/runners"

# (module path, function qualname) -> why it stays one function over MAX_FUNCTION_LINES lines.
# Empty: the long parsers were split by section/field (benchmark_bin.parse_output into one
# function per `==== X Info ====` block, scoring's profile reader into lab/decide/profiles.py).
# A table-driven parser that reads better whole may be named here, with its reason.
LONG_PARSERS: dict[tuple[str, str], str] = {}


def lab_modules(root: Path = ROOT) -> list[Path]:
    """Every .py under lab/ except the travelling runners."""
    return [p for p in sorted((root / "lab").rglob("*.py"))
            if not p.relative_to(root).as_posix().startswith(TRAVELLING + "/")]


def functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method, nested ones included."""
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                out.append((name, child.end_lineno - child.lineno + 1))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)
    visit(tree, "")
    return out


def long_functions(root: Path = ROOT) -> dict[tuple[str, str], int]:
    out = {}
    for path in lab_modules(root):
        rel = path.relative_to(root).as_posix()
        for name, lines in functions(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if lines > MAX_FUNCTION_LINES:
                out[(rel, name)] = lines
    return out


def test_no_module_over_the_limit():
    big = {p.relative_to(ROOT).as_posix(): n for p in lab_modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by job): " + ", ".join(
        f"{p} ({n})" for p, n in sorted(big.items()))


def test_no_function_over_the_limit_but_the_named_parsers():
    long = long_functions()
    bad = {k: n for k, n in long.items() if k not in LONG_PARSERS}
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(
        f"{p}:{f} ({n})" for (p, f), n in sorted(bad.items()))


def test_each_exception_is_still_needed_and_few():
    assert len(LONG_PARSERS) <= MAX_EXCEPTIONS
    long = long_functions()
    stale = [f"{p}:{f}" for p, f in LONG_PARSERS if (p, f) not in long]
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines (or moved): drop from LONG_PARSERS: {stale}"
    assert all(len(why) > 40 for why in LONG_PARSERS.values())


def test_the_counter_sees_nested_functions_and_methods():
    tree = ast.parse("def a():\n    def b():\n        pass\n    return b\n\n\nclass C:\n    def m(self):\n"
                     "        x = 1\n        return x\n")
    assert functions(tree) == [("a", 4), ("a.b", 2), ("C.m", 3)]
