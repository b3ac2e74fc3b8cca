"""docs/architecture.md's package map is the tree: every module is listed once, every row exists.

The map ("## Package map") has one `### `lab/<package>/`` heading per package (lab/cli.py for the
top floor), in the package order of tests/architecture/test_layering.py (bottom to top, lab/runners/
last: it stands apart), each followed by one table row per module: `| `lab/pkg/module.py` | what it
owns |`. Modules are the .py files under lab/ (package `__init__` files are the heading's line, not
rows) and the travelling .sh and .js files of lab/runners/ (node_modules left out).
"""
from __future__ import annotations

import re
from pathlib import Path

from test_layering import ORDER, RUNNERS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Package map"
HEADING = re.compile(r"^### `lab/(?:(?P<pkg>[a-z_]+)/|(?P<cli>cli|api)\.py)`\s*$")  # top modules: cli, api
ROW = re.compile(r"^\| `(?P<path>lab/[^`]+)` \| (?P<owns>.*\S) \|\s*$")


def tree_modules(root: Path = ROOT) -> set[str]:
    lab = root / "lab"
    out = set()
    for p in lab.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or {"node_modules", "__pycache__"} & set(rel.parts):
            continue
        travelling = rel.parts[1] == RUNNERS and p.suffix in (".sh", ".js")
        if (p.suffix == ".py" and p.name != "__init__.py") or travelling:
            out.add(rel.as_posix())
    return out


def package_map(text: str) -> tuple[list[str], list[tuple[str, str, str]]]:
    """(package headings in order, rows as (heading's package, path, what it owns))."""
    lines = text.splitlines()
    start = lines.index(SECTION)
    headings: list[str] = []
    rows: list[tuple[str, str, str]] = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        m = HEADING.match(line)
        if m:
            headings.append(m["pkg"] or m["cli"])
            continue
        r = ROW.match(line)
        if r:
            assert headings, f"a row before any package heading: {line}"
            rows.append((headings[-1], r["path"], r["owns"]))
        elif line.startswith("| `"):
            raise AssertionError(f"a row the map cannot read (| `lab/...` | what it owns |): {line}")
    return headings, rows


def package_of(path: str) -> str:
    parts = path.split("/")
    return {"lab/cli.py": "cli", "lab/api.py": "api"}.get(path, parts[1])


def test_every_module_is_listed_once_and_every_row_exists():
    _, rows = package_map(DOC.read_text(encoding="utf-8"))
    listed = [path for _, path, _ in rows]
    twice = sorted({p for p in listed if listed.count(p) > 1})
    assert not twice, f"listed more than once in docs/architecture.md: {twice}"
    modules = tree_modules()
    missing = sorted(modules - set(listed))
    gone = sorted(p for p in listed if not (ROOT / p).is_file())
    assert not (missing or gone), (f"modules missing from docs/architecture.md's package map: {missing}; "
                                   f"listed there but not in the tree: {gone}")
    assert not sorted(set(listed) - modules), "rows that are not modules (an __init__, a data file)"


def test_rows_sit_under_their_package_in_the_package_order():
    headings, rows = package_map(DOC.read_text(encoding="utf-8"))
    assert headings == [name for name, _ in ORDER] + [RUNNERS], headings
    misplaced = [f"{path} under {pkg}" for pkg, path, _ in rows if package_of(path) != pkg]
    assert not misplaced, misplaced
    assert all(len(owns) > 10 for _, _, owns in rows)


def test_the_parser_sees_a_bad_map():
    text = ("intro\n## Package map\n### `lab/core/`\nthe floor\n\n| module | owns |\n|---|---|\n"
            "| `lab/core/errors.py` | error classes of the lab |\n### `lab/cli.py`\n"
            "| `lab/cli.py` | the top floor |\n## Next\n| `lab/x.py` | not in the map |\n")
    headings, rows = package_map(text)
    assert headings == ["core", "cli"]
    assert rows == [("core", "lab/core/errors.py", "error classes of the lab"), ("cli", "lab/cli.py", "the top floor")]
    assert {"lab/cli.py", "lab/runners/sampler.sh", "lab/runners/web/runner.js"} <= tree_modules()
    assert not any(p.endswith("__init__.py") or "node_modules" in p for p in tree_modules())
