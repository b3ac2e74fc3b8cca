"""The package order and the arrows that must never exist (DESIGN.md), by any path, from the source.

The module graph is read with `ast` from every file under lab/: module-level and function-level
imports, relative imports resolved, `importlib.import_module("lab...")` with a literal name. A
module that imports `a.b.c` also runs the packages `a` and `a.b` (their __init__), so reachability
follows those implicit arrows too; cycles are computed on the written imports only (a package
importing its own submodules, which import each other through the package, is how Python packages
work, not a cycle); `from a.b import c` is an arrow to a.b as well as to a.b.c, so a package init
that imports a submodule which leads back to a module importing from that package is a cycle (as
../shared/tools/check_layering.py counts it).

Three checks, each failure one line with the import chain that breaks it:
- ORDER: the packages bottom to top; a module may reach (by any path) only modules of its own
  package or of packages below it. DESIGN.md orders them partially; the pairs it leaves open are
  decided here and recorded in docs/architecture.md ("Package order").
- NEVER: DESIGN.md's arrows that must never exist, kept as rules of their own (each with its
  reason) so that they stand even if the order is changed.
- runners travel alone: nothing in lab/runners imports lab outside it, and a travelling runner
  imports its companion runner_core only.
Plus: no import cycle between modules or between packages. Nothing is whitelisted.
"""
from __future__ import annotations

import ast
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top: a package may reach only the packages listed before it. `cli` is the module
# lab/cli.py. Why each package sits where it does:
ORDER: tuple[tuple[str, str], ...] = (
    ("core", "errors, records, bounded readers and writers: everything stands on it, it stands on nothing"),
    ("transport", "a connection to a device (run, push, pull, forward): knows nothing of what runs over it"),
    ("devices", "what a device is (inventory, catalog, backends); its probes talk over a transport"),
    ("models", "model artifacts built and analysed on the host; needs no device (DESIGN.md leaves "
               "transport/devices vs models open: nothing there imports models, and models nothing of them)"),
    ("convert", "conversions of a model (Lite .nb, ONNX, Paddle.js); ort_probe checks a device over a transport"),
    ("telemetry", "trace maths and the sampler session on a device: below the runtimes that start it"),
    ("results", "the store and what is read from it; ids and backends from devices"),
    ("serving", "the serving client, LoadGen and sweeps: transport-agnostic, called by the serving runtime"),
    ("web", "Paddle.js pages (CDP, page, remote host) on the web build that convert makes"),
    ("runtimes", "one job on one device: uses transport, models, convert, telemetry, results, serving, web"),
    ("measure", "campaigns, orchestration, scheduling: many jobs through the runtimes"),
    ("decide", "decisions from result records alone (placed above measure so neither may import the other)"),
    ("report", "HTML from result records and the decisions"),
    ("api", "the module lab/api.py: results as DataFrames, score and advise for notebooks, from the "
            "store and the decisions; the commands reuse its row selection"),
    ("commands", "the CLI's commands: parse args, call the API, print"),
    ("cli", "the top floor: global options and dispatch to the commands"),
)
RUNNERS = "runners"  # apart: files that travel to devices alone; the host reads their constants/paths
RUNNER_CORE = "runner_core"  # the one module a travelling runner may import: its companion


@dataclass(frozen=True)
class Never:
    """An arrow that must never exist, by any path: a module in `sources` (packages; "*" = every
    package but those in `exempt`) reaching a module in `targets`."""
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    why: str
    exempt: tuple[str, ...] = ()


NEVER: tuple[Never, ...] = (
    Never(("transport",), ("measure", "results", "report", "decide"),
          "a transport is a device connection, below everything that plans, stores or decides"),
    Never(("report", "decide", "results"), ("measure", "runtimes", "transport", "commands"),
          "decisions and reports are made from result records alone (`lab advise --measure` orchestrates "
          "first, in lab.commands)"),
    Never(("*",), ("commands",), "the CLI is the top floor: only lab.cli imports lab.commands",
          exempt=("cli", "commands")),
)


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


def _is_import_module(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and bool(node.args) and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                 or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))))


def _imported_names(mod: str, path: Path, mods: dict[str, Path]) -> list[str]:
    """Every dotted name the file imports, relative imports resolved (function bodies included)."""
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
        elif _is_import_module(node):
            names.append(node.args[0].value)
    return names


def written_imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of the package that `mod` imports anywhere in its file."""
    top = mod.split(".")[0]
    out = set()
    for name in _imported_names(mod, path, mods):
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


def package_of(mod: str) -> str | None:
    """lab.results.store -> results, lab.cli -> cli, lab -> None."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def path_to(graph: dict[str, set[str]], source: str, hit) -> list[str] | None:
    """Shortest import chain from `source` to a module for which `hit(module)` is true, or None.
    `hit` may also be a tuple of module prefixes. Among equally short chains the one ending in the
    deepest module is shown (the module written in the import, not the package it runs first)."""
    if isinstance(hit, tuple):
        prefixes = hit
        hit = lambda m: any(m == t or m.startswith(t + ".") for t in prefixes)  # noqa: E731
    prev: dict[str, str | None] = {source: None}
    todo = deque([source])
    while todo:
        v = todo.popleft()
        for w in sorted(graph.get(v, ()), key=lambda n: (-n.count("."), n)):
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


def strong_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in graph:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
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
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Module import cycles, leaving out a package and its own submodules (lab.report ->
    lab.report.render -> `from . import`): how packages work, not a cycle. One outside module in
    the loop makes it an import-time cycle."""
    return [c for c in strong_components(graph) if not _package_and_children(c)]


def _package_and_children(comp: list[str]) -> bool:
    return all(a.startswith(b + ".") or b.startswith(a + ".") or a == b for a in comp for b in comp)


def loop_through(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One import loop inside a strongly connected component, from its first member back to it."""
    start, members = comp[0], set(comp)
    inner = {m: graph[m] & members for m in comp}
    for first in sorted(inner[start], key=lambda n: (-n.count("."), n)):
        back = [start] if first == start else path_to(inner, first, lambda t: t == start)
        if back:
            return [start] + back
    return comp + [start]


def describe_cycle(kind: str, graph: dict[str, set[str]], comp: list[str]) -> str:
    loop = loop_through(graph, comp)
    knot = f" (one knot of {len(comp)}: {', '.join(comp)})" if len(comp) > len(loop) - 1 else ""
    return f"{kind} cycle: {' -> '.join(loop)}{knot}"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package -> the packages its modules import (the top package's own init left out)."""
    out: dict[str, set[str]] = {}
    for m, targets in graph.items():
        src = package_of(m)
        if src is None:
            continue
        out.setdefault(src, set()).update(p for p in map(package_of, targets) if p not in (None, src))
    return out


# -- the checks ---------------------------------------------------------------------------------
def order_violations(graph: dict[str, set[str]], full: dict[str, set[str]], package: str,
                     order=ORDER, apart: str = RUNNERS) -> list[str]:
    """A module reaching, by any path, a module of a package above its own; a package not placed."""
    rank = {name: i for i, (name, _) in enumerate(order)}
    why = dict(order)
    bad = [f"{package}.{p}: package {p!r} is not in the package order (tests/architecture/test_layering.py "
           f"ORDER): place it" for p in sorted({package_of(m) for m in graph} - set(rank) - {None, apart})]
    for m in sorted(graph):
        src = package_of(m)
        if src not in rank:
            continue
        chain = path_to(full, m, lambda t: rank.get(package_of(t), -1) > rank[src])
        if chain:
            dst = package_of(chain[-1])
            bad.append(f"{' -> '.join(chain)}: {src} is below {dst} in the package order "
                       f"({src}: {why[src]}; {dst}: {why[dst]})")
    return bad


def never_violations(full: dict[str, set[str]], package: str, never=NEVER) -> list[str]:
    bad = []
    for rule in never:
        for m in sorted(full):
            src = package_of(m)
            if src is None or src in rule.targets or src in rule.exempt:
                continue  # a module inside a forbidden area is not its own violation
            if rule.sources != ("*",) and src not in rule.sources:
                continue
            chain = path_to(full, m, tuple(f"{package}.{t}" for t in rule.targets))
            if chain:
                bad.append(f"{' -> '.join(chain)}: never {src} -> {package_of(chain[-1])}: {rule.why}")
    return bad


def runner_violations(graph: dict[str, set[str]], full: dict[str, set[str]], package: str,
                      runners: str = RUNNERS) -> list[str]:
    """lab/runners/ travels to devices: nothing there imports the lab (by any path), and a
    travelling runner imports its companion only (`from . import runner_core` on the host)."""
    pkg = f"{package}.{runners}"
    core = f"{pkg}.{RUNNER_CORE}"
    bad = []
    for m in sorted(graph):
        if not (m == pkg or m.startswith(pkg + ".")):
            continue
        chain = path_to(full, m, lambda t: not (t == pkg or t.startswith(pkg + ".")))
        if chain:
            bad.append(f"{' -> '.join(chain)}: never {runners} -> {package}.*: runners travel to devices alone")
        allowed = set() if m in (pkg, core) else {core, pkg}
        extra = graph[m] - allowed
        if m != pkg and extra and not chain:
            bad.append(f"{m} imports {sorted(extra)}: runners travel to devices with {RUNNER_CORE}.py only")
    return bad


def violations(root: Path, package: str = "lab", order=ORDER, never=NEVER) -> list[str]:
    """Every broken rule, one line each with the import chain that breaks it."""
    graph = import_graph(root, package)
    full = with_packages(graph)
    packages = package_graph(graph)
    bad = [describe_cycle("import", graph, c) for c in cycles(graph)]
    bad += [describe_cycle("package", packages, c) for c in strong_components(packages)]
    bad += order_violations(graph, full, package, order)
    bad += never_violations(full, package, never)
    bad += runner_violations(graph, full, package)
    return bad


# -- the real tree ------------------------------------------------------------------------------
def test_lab_follows_the_package_order_and_has_no_forbidden_arrow_and_no_cycle():
    bad = violations(ROOT)
    assert not bad, f"{len(bad)} layering violations:\n" + "\n".join(bad)


def test_the_order_holds_every_package_and_design_md_partial_order():
    """ORDER names each package once, and agrees with DESIGN.md's partial order (a < b there)."""
    names = [name for name, _ in ORDER]
    assert len(names) == len(set(names))
    on_disk = {p.name for p in (ROOT / "lab").iterdir() if (p / "__init__.py").is_file()} - {RUNNERS}
    assert on_disk <= set(names), on_disk - set(names)
    design = [("core", "transport"), ("transport", "devices"), ("core", "models"), ("models", "convert"),
              ("telemetry", "runtimes"), ("results", "runtimes"), ("serving", "runtimes"), ("web", "runtimes"),
              ("convert", "runtimes"), ("runtimes", "measure"), ("results", "decide"), ("decide", "report"),
              ("report", "commands"), ("commands", "cli")]
    for lower, upper in design:
        assert names.index(lower) < names.index(upper), (lower, upper)


def test_package_inits_hold_only_a_docstring():
    """A package init that imports its modules makes every module a cycle with it, and costs each
    importer the whole package: each says what the package owns, and imports nothing."""
    inits = sorted((ROOT / "lab").glob("*/__init__.py"))
    assert len(inits) >= len(ORDER) - 2  # every package but cli and api (modules)
    for init in inits:
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and ast.get_docstring(ast.Module(body=body, type_ignores=[])), \
            f"{init.relative_to(ROOT)}: only a docstring saying what the package owns"


def test_the_graph_sees_the_real_tree():
    """Guards the checker itself: arrows known to be there are found."""
    graph = import_graph(ROOT)
    assert len(graph) > 30
    assert "lab.commands" in graph["lab.cli"]  # module level
    assert "lab.core.textsafe" in graph["lab.cli"]  # only inside functions
    assert f"lab.runners.{RUNNER_CORE}" in graph["lab.runners.pi_runner"]  # relative: `from . import`
    assert {"commands", "core"} <= package_graph(graph)["cli"]


# -- the checker can fail: a small package with every kind of violation --------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


TOY_ORDER = (("core", "bottom"), ("transport", "link"), ("measure", "runs"), ("decide", "records alone"),
             ("report", "html"), ("commands", "cli cmds"), ("cli", "top"))
TOY_NEVER = (Never(("report", "decide"), ("measure", "transport", "commands"), "store alone"),
             Never(("*",), ("commands",), "top floor", exempt=("cli", "commands")))


@pytest.fixture
def bad_pkg(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/core/__init__.py": "",
        "pkg/core/errors.py": "X = 1\n",
        "pkg/core/util.py": "from pkg.core import errors\n",  # inside its package: fine
        # report reaches measure only through two hops, one of them inside a function, one by importlib
        "pkg/report/__init__.py": "",
        "pkg/report/render.py": "from ..decide import advisor\n\ndef render():\n    return advisor\n",
        "pkg/decide/__init__.py": "",
        "pkg/decide/advisor.py": "def measure():\n    from pkg.decide.helpers import run_all\n    return run_all()\n",
        "pkg/decide/helpers.py": "import importlib\n\ndef run_all():\n"
                                 "    return importlib.import_module('pkg.measure.scheduler')\n",
        "pkg/measure/__init__.py": "",
        "pkg/measure/scheduler.py": "import pkg.transport.base\n",
        # transport reaches up to measure: the order (no NEVER rule for it in the toy)
        "pkg/transport/__init__.py": "",
        "pkg/transport/base.py": "X = 1\n",
        "pkg/transport/ssh.py": "def f():\n    import pkg.measure.scheduler\n",
        # a module cycle of three, through a relative and an absolute import, inside one package
        "pkg/measure/a.py": "from . import b\n",
        "pkg/measure/b.py": "import pkg.measure.c\n",
        "pkg/measure/c.py": "def f():\n    from .a import thing\n",
        # below the CLI floor
        "pkg/commands/__init__.py": "",
        "pkg/commands/run.py": "from ..measure.scheduler import *\n",
        "pkg/measure/stats.py": "from pkg.commands.run import go\n",
        "pkg/cli.py": "from .commands import run\nfrom .core import errors\n",
        # runners: one imports the lab, one its companion only (allowed)
        "pkg/runners/__init__.py": "",
        "pkg/runners/pi_runner.py": "from pkg.core import util\n",
        "pkg/runners/lite_runner.py": "from . import runner_core\n",
        "pkg/runners/runner_core.py": "import os\n",
        # a package nobody placed
        "pkg/extra/__init__.py": "",
        "pkg/extra/thing.py": "from pkg.core.errors import X\n",
    })
    return tmp_path


def test_checker_finds_order_never_cycles_runners_and_unplaced(bad_pkg):
    bad = violations(bad_pkg, "pkg", order=TOY_ORDER, never=TOY_NEVER)
    text = "\n".join(bad)
    assert len(bad) == 10, text
    assert "import cycle: pkg.measure.a -> pkg.measure.b -> pkg.measure.c -> pkg.measure.a" in bad
    assert ("package cycle: commands -> measure -> commands (one knot of 3: commands, measure, transport)"
            in bad)
    assert ("pkg.transport.ssh -> pkg.measure.scheduler: transport is below measure in the package order "
            "(transport: link; measure: runs)") in bad
    assert ("pkg.measure.stats -> pkg.commands.run: measure is below commands in the package order "
            "(measure: runs; commands: cli cmds)") in bad
    assert "pkg.report.render -> pkg.decide.advisor -> pkg.decide.helpers -> pkg.measure.scheduler: " \
           "never report -> measure: store alone" in bad
    assert "pkg.decide.advisor -> pkg.decide.helpers -> pkg.measure.scheduler: never decide -> measure: " \
           "store alone" in bad
    assert "pkg.measure.stats -> pkg.commands.run: never measure -> commands: top floor" in bad
    assert "pkg.runners.pi_runner -> pkg.core.util: never runners -> pkg.*: runners travel to devices alone" in bad
    assert ("pkg.extra: package 'extra' is not in the package order (tests/architecture/test_layering.py "
            "ORDER): place it") in bad
    for clean in ("pkg.cli", "pkg.core.util ->", "lite_runner", "pkg.runners.runner_core", "pkg.report.render ->"
                  " pkg.decide.advisor:"):
        assert clean not in text, clean
    # decide sits above measure in TOY_ORDER: only the NEVER rule forbids decide -> measure
    assert "pkg.decide.helpers -> pkg.measure.scheduler: never decide -> measure: store alone" in bad
    assert "decide is below" not in text
    # the package parent executes: importing pkg.transport.base runs pkg.transport
    graph = import_graph(bad_pkg, "pkg")
    assert "pkg.transport" not in graph["pkg.measure.scheduler"]
    assert "pkg.transport" in with_packages(graph)["pkg.measure.scheduler"]


def test_checker_passes_a_clean_package(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/core/__init__.py": "", "pkg/core/store.py": "import json\n",
                      "pkg/report/__init__.py": "",
                      "pkg/report/render.py": "from . import plots\nfrom ..core.store import load\n",
                      "pkg/report/plots.py": "from pkg.core import store\n",
                      "pkg/cli.py": "from pkg.report import render\n"})
    assert violations(tmp_path, "pkg", order=TOY_ORDER, never=TOY_NEVER) == []
    assert cycles(import_graph(tmp_path, "pkg")) == []
