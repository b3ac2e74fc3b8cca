"""The arrows that must never exist (DESIGN.md): checked on the import statements of the source."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1] / "lab"


def lab_imports(path: Path) -> set[str]:
    """Modules of the `lab` package a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(LAB.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "lab"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "lab":
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def files(sub: str) -> list[Path]:
    p = LAB / sub
    return sorted(p.rglob("*.py")) if p.is_dir() else [p.with_suffix(".py")]


RULES = [  # (files, forbidden module prefixes, why)
    ("transport", ["lab.scheduler", "lab.store", "lab.report"], "transport -> scheduler|store|report"),
    ("report", ["lab.transport", "lab.scheduler", "lab.execute"], "a report is made from the store alone"),
    ("stats", ["lab.transport"], "analysis never touches devices"),
    ("scoring", ["lab.transport"], "analysis never touches devices"),
    ("advisor", ["lab.transport"], "analysis never touches devices (--measure goes through the scheduler)"),
    ("advice_rules", ["lab.transport", "lab.scheduler"], "analysis never touches devices"),
]


@pytest.mark.parametrize("sub,forbidden,why", RULES, ids=[r[0] for r in RULES])
def test_forbidden_arrows(sub, forbidden, why):
    for path in files(sub):
        bad = sorted(m for m in lab_imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        assert not bad, f"{path.relative_to(LAB.parent)} imports {bad}: {why}"


def test_travelling_runners_import_no_lab_module():
    for path in sorted((LAB / "runners").glob("*.py")):
        if path.name in ("__init__.py", "benchmark_bin.py"):  # host-side adapters live here too
            continue
        assert not lab_imports(path), f"{path.name} travels to devices alone and must not import lab.*"
