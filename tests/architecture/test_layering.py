"""The arrows that must never exist (DESIGN.md), by any path, computed from the source.

The module graph is read with `ast` from every file under lab/: module-level and function-level
imports, relative imports resolved, `importlib.import_module("lab...")` with a literal name. A
module that imports `a.b.c` also runs the packages `a` and `a.b` (their __init__), so reachability
follows those implicit arrows too; cycles are computed on the written imports only (a package
importing its own submodules, which import each other through the package, is how Python packages
work, not a cycle); `from a.b import c` is an arrow to a.b as well as to a.b.c, so a package init
that imports a submodule which leads back to a module importing from that package is a cycle (as
../shared/tools/check_layering.py counts it). Nothing is whitelisted: a known violation fails here
until it is removed.
"""
from __future__ import annotations

import ast
import textwrap
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (source modules, forbidden targets, why): a source reaching a target by any path is a violation.
DECISIONS = ("lab.report", "lab.decide.scoring", "lab.decide.advisor", "lab.decide.advice_rules", "lab.results.stats", "lab.models.analysis")
RULES = [
    (DECISIONS, ("lab.measure.scheduler", "lab.transport", "lab.commands", "lab.measure.ray_engine"),
     "decisions and reports are made from the store alone (`lab advise --measure` orchestrates first)"),
    (("lab.transport",), ("lab.measure.scheduler", "lab.results.store", "lab.report", "lab.commands"),
     "a transport is a device connection, below everything that plans or stores"),
]
CLI_FLOOR = ("lab.cli", "lab.commands")  # the only modules that may import lab.commands
# lab/runners/ files that never travel (host-side adapters and the package's own __init__)
HOST_SIDE_RUNNERS = ("lab.runners", "lab.runtimes.benchmark_bin")
# the one module a travelling runner may import: its companion, pushed next to it (push_runner)
RUNNER_CORE = "runner_core"


# -- the graph ----------------------------------------------------------------------------------
def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root/package."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _deepest(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def written_imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that `mod` imports anywhere in its file (function bodies included)."""
    top = mod.split(".")[0]
    is_pkg = path.name == "__init__.py"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            # `from pkg import sub` imports the submodule AND runs pkg (its __init__); `from mod
            # import name` the module
            names += [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.append(node.args[0].value)
    out = set()
    for name in names:
        if name.split(".")[0] != top:
            continue
        target = _deepest(name, mods)
        if target and target != mod and target != top:  # the top package's init: a version string
            out.add(target)
    return out


def import_graph(root: Path, package: str = "lab") -> dict[str, set[str]]:
    mods = modules(root, package)
    return {m: written_imports(m, p, mods) for m, p in mods.items()}


def with_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Add the implicit arrows: importing a.b.c runs a.b (and a) first."""
    out = {m: set(ts) for m, ts in graph.items()}
    for m, targets in graph.items():
        for t in targets:
            parts = t.split(".")
            for i in range(2, len(parts)):  # the top package (lab/__init__: a version string) is left out
                parent = ".".join(parts[:i])
                if parent in graph and parent != m:
                    out[m].add(parent)
    return out


def path_to(graph: dict[str, set[str]], source: str, targets: tuple[str, ...]) -> list[str] | None:
    """Shortest import chain from `source` to a module under one of `targets`, or None."""
    def hit(m: str) -> bool:
        return any(m == t or m.startswith(t + ".") for t in targets)
    prev: dict[str, str | None] = {source: None}
    todo = deque([source])
    while todo:
        v = todo.popleft()
        for w in sorted(graph.get(v, ())):
            if w in prev:
                continue
            prev[w] = v
            if hit(w):
                chain = [w]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])
                return chain[::-1]
            todo.append(w)
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 and not _package_and_children(comp):
                        out.append(sorted(comp))
    return sorted(out)


def _package_and_children(comp: list[str]) -> bool:
    """A package and its own submodules only (lab.report -> lab.report.render -> `from . import`):
    how packages work, not a cycle. One outside module in the loop makes it an import-time cycle."""
    return all(a.startswith(b + ".") or b.startswith(a + ".") or a == b for a in comp for b in comp)


def violations(root: Path, package: str = "lab", rules=None, floor=None,
               travelling: tuple[str, str] | None = None) -> list[str]:
    """Every broken rule, one line each with the import chain that breaks it."""
    rules = RULES if rules is None else rules
    floor = CLI_FLOOR if floor is None else floor
    graph = import_graph(root, package)
    full = with_packages(graph)
    bad = [f"import cycle: {' -> '.join(c)} (and back)" for c in cycles(graph)]
    commands = f"{package}.commands"
    for m, targets in sorted(graph.items()):
        if any(m == f or m.startswith(f + ".") for f in floor):
            continue
        for t in sorted(targets):
            if t == commands or t.startswith(commands + "."):
                bad.append(f"{m} imports {t}: only the CLI imports {commands}")
    for sources, forbidden, why in rules:
        for m in sorted(graph):
            if not any(m == s or m.startswith(s + ".") for s in sources):
                continue
            if any(m == f or m.startswith(f + ".") for f in forbidden):
                continue  # a module inside a forbidden area is not its own violation
            chain = path_to(full, m, forbidden)
            if chain:
                bad.append(f"{' -> '.join(chain)}: {why}")
    if travelling:
        runners_pkg, host_side = travelling
        for m, targets in sorted(graph.items()):
            extra = targets - {f"{runners_pkg}.{RUNNER_CORE}", runners_pkg}  # `from . import runner_core`
            if m.startswith(runners_pkg + ".") and m not in host_side and extra:
                bad.append(f"{m} imports {sorted(extra)}: runners travel to devices with {RUNNER_CORE}.py only")
    return bad


# -- the real tree ------------------------------------------------------------------------------
def test_lab_has_no_forbidden_arrow_and_no_cycle():
    bad = violations(ROOT, travelling=("lab.runners", HOST_SIDE_RUNNERS))
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_the_graph_sees_the_real_tree():
    """Guards the checker itself: arrows known to be there are found (function-level included)."""
    graph = import_graph(ROOT)
    assert len(graph) > 30
    assert "lab.transport.base" in graph["lab.transport.ssh"]  # relative, module level
    assert "lab.transport.local" in graph["lab.transport"]  # function level, `from .local import`
    assert "lab.transport" in graph["lab.devices.probe"]  # function level, `from .transport import ...`


def test_travelling_runners_import_no_lab_module():
    graph = import_graph(ROOT)
    for m in sorted(graph):
        if m.startswith("lab.runners.") and m not in HOST_SIDE_RUNNERS:
            allowed = set() if m == f"lab.runners.{RUNNER_CORE}" else {f"lab.runners.{RUNNER_CORE}", "lab.runners"}
            assert graph[m] <= allowed, f"{m} travels to devices with {RUNNER_CORE}.py only: {graph[m]}"
    assert f"lab.runners.{RUNNER_CORE}" in graph["lab.runners.pi_runner"]  # the checker sees the companion


# -- the checker can fail: a small package with every kind of violation --------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


@pytest.fixture
def bad_pkg(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/report/__init__.py": "from .render import render\n",
        # report reaches the scheduler only through two hops, one of them inside a function
        "pkg/report/render.py": "from .. import advisor\n\ndef render():\n    return advisor\n",
        "pkg/advisor.py": "def measure():\n    from pkg.helpers import run_all\n    return run_all()\n",
        "pkg/helpers.py": "import importlib\n\ndef run_all():\n"
                          "    return importlib.import_module('pkg.scheduler')\n",
        "pkg/scheduler.py": "from .transport import base\n",
        "pkg/transport/__init__.py": "",
        "pkg/transport/base.py": "X = 1\n",
        # a cycle of three through a relative and an absolute import
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "import pkg.c\n",
        "pkg/c.py": "def f():\n    from .a import thing\n",
        # below the CLI floor
        "pkg/commands/__init__.py": "",
        "pkg/commands/run.py": "from ..scheduler import *\n",
        "pkg/stats.py": "from pkg.commands.run import go\n",
        "pkg/cli.py": "from .commands import run\n",
        "pkg/runners/__init__.py": "",
        "pkg/runners/pi_runner.py": "from pkg import helpers\n",
        "pkg/runners/lite_runner.py": "from . import runner_core\n",  # its companion: allowed
        "pkg/runners/runner_core.py": "import os\n",
        "pkg/clean.py": "import os\nfrom .transport.base import X\n",
        # a cycle only through a package init: importing pkg.orch runs pkg.rt, which imports impl,
        # which imports pkg.orch (half initialised)
        "pkg/orch.py": "from pkg.rt import base\n",
        "pkg/rt/__init__.py": "from .impl import X\n",
        "pkg/rt/impl.py": "from ..orch import y\n",
        "pkg/rt/base.py": "",
    })
    return tmp_path


def test_checker_finds_cycles_transitive_arrows_and_cli_imports(bad_pkg):
    rules = [(("pkg.report", "pkg.stats", "pkg.advisor"), ("pkg.scheduler", "pkg.transport", "pkg.commands"),
              "store alone"),
             (("pkg.transport",), ("pkg.scheduler",), "below")]
    bad = violations(bad_pkg, "pkg", rules=rules, floor=("pkg.cli", "pkg.commands"),
                     travelling=("pkg.runners", ("pkg.runners",)))
    text = "\n".join(bad)
    assert "import cycle: pkg.a -> pkg.b -> pkg.c (and back)" in bad
    assert "import cycle: pkg.orch -> pkg.rt -> pkg.rt.impl (and back)" in bad
    assert "pkg.report.render -> pkg.advisor -> pkg.helpers -> pkg.scheduler: store alone" in bad
    assert "pkg.report -> pkg.report.render -> pkg.advisor -> pkg.helpers -> pkg.scheduler: store alone" in bad
    assert "pkg.advisor -> pkg.helpers -> pkg.scheduler: store alone" in bad
    assert "pkg.stats imports pkg.commands.run: only the CLI imports pkg.commands" in bad
    assert "pkg.stats -> pkg.commands: store alone" in bad
    assert ("pkg.runners.pi_runner imports ['pkg.helpers']: runners travel to devices with runner_core.py only"
            in bad)
    assert "pkg.cli" not in text and "pkg.clean" not in text and "pkg.transport" not in text
    assert "lite_runner" not in text and "pkg.runners.runner_core" not in text
    assert len(bad) == 8, text
    # the package parent executes: reaching pkg.transport.base means reaching pkg.transport
    assert path_to(with_packages(import_graph(bad_pkg, "pkg")), "pkg.clean", ("pkg.transport",)) == \
        ["pkg.clean", "pkg.transport"]


def test_checker_passes_a_clean_package(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/store.py": "import json\n",
                      "pkg/report/__init__.py": "from .render import go\n",
                      "pkg/report/render.py": "from . import plots\nfrom ..store import load\n",
                      "pkg/report/plots.py": "from .. import store\n"})
    assert violations(tmp_path, "pkg", rules=[(("pkg.report",), ("pkg.scheduler",), "x")], floor=("pkg.cli",)) == []
    assert cycles(import_graph(tmp_path, "pkg")) == []
