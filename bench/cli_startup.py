"""CLI start-up time, old tree vs new tree, side by side in one run: `lab --version` and `lab advise`.

Why: moving the code into one package per concept (issue 21) must not make the CLI slower to start.
Every command builds the full parser first (lab.cli imports each lab/commands module), so
`lab --version` is the start-up floor, and `lab advise` is the command whose answer time the lab
promises (< 300 ms after start, docs/benchmarks.md "Advisor").

How: both trees run with this interpreter (`python -m lab.cli ...`) from a neutral working
directory, with PYTHONPATH set to the tree, so `import lab` resolves to that tree before the
venv's editable install (checked once per tree). Runs alternate old/new and swap which goes first
every round, so a slow spell on a shared box hits both. Per run: wall time of the child process
and its CPU time (user + sys, from the kernel's child accounting). The advise store is built
once with the tests' own helpers (tests/advisor_fixtures.py: the CNN on a Kirin 990 of
tests/commands/test_advise_cli.py) and used by both trees; both must print the same answer.

    .venv/bin/python bench/cli_startup.py --old /tmp/oldmain [--new .] [--runs 15]

The old tree is a worktree of the commit before the change, e.g.
`git worktree add --detach /tmp/oldmain d6ef7ac`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

DEVICES = ("devices:\n"
           "  - {id: mate30, chip: kirin990, transport: adb, serial: '10.0.0.5:5555', abi: arm64-v8a,\n"
           "     benchmark_bin: /x/benchmark_bin, nnadapter_libs: {huawei_kirin_npu: /x/kirin}}\n")


def build_lab(root: Path) -> dict[str, Path]:
    """A small advise setup: one built-looking CNN (analysis cached in meta.json), two measured
    rows (Kirin CPU and NPU), one device; made with the tests' helpers from this checkout."""
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from advisor_fixtures import CNN_OPS, finish, job, make_model
    from lab.results.store import Store
    models = root / "models"
    make_model(models, "cnn", CNN_OPS, macs=570_000_000, share=0.97)
    store_path = root / "lab.sqlite"
    store = Store(store_path)
    finish(store, job("phone", "mate30", "kirin990", "cnn", "paddle-lite-arm", "cpu"), p50_ms=30.0,
           ci_low_ms=29.5, ci_high_ms=30.6, load_ms=60.0, first_ms=45.0, energy_mj_per_inf=90.0, power_w=3.0)
    finish(store, job("phone", "mate30", "kirin990", "cnn", "paddle-lite-kirin-npu", "aipu"), p50_ms=6.0,
           ci_low_ms=5.9, ci_high_ms=6.2, load_ms=1800.0, first_ms=60.0, energy_mj_per_inf=12.0, power_w=2.0)
    store.close()
    devices = root / "devices.yaml"
    devices.write_text(DEVICES)
    return {"models": models, "store": store_path, "devices": devices}


def commands(lab: dict[str, Path]) -> dict[str, list[str]]:
    return {"version": ["--version"],
            "advise": ["--devices", str(lab["devices"]), "--store", str(lab["store"]), "advise",
                       "--models-root", str(lab["models"]), "--model", "cnn", "--device", "mate30",
                       "--format", "json"]}


def run_once(tree: Path, argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall ms, child CPU ms, stdout) of `python -m lab.cli ARGV` with `tree` first on sys.path."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lab.cli", *argv], cwd=cwd, env=env, capture_output=True,
                       text=True)
    wall = (time.perf_counter() - t0) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{tree}: lab {' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3
    return wall, cpu, r.stdout


def check_tree(tree: Path, cwd: Path) -> None:
    """The child imports lab from `tree`, not from the venv's editable install."""
    r = subprocess.run([sys.executable, "-c", "import lab; print(lab.__file__)"], cwd=cwd,
                       env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True, check=True)
    got, want = Path(r.stdout.strip()).resolve(), (tree / "lab" / "__init__.py").resolve()
    if got != want:
        raise SystemExit(f"PYTHONPATH={tree} imports {got}, not {want}")


def modules_at_start(tree: Path, cwd: Path) -> dict[str, int]:
    """How many modules (all, and of lab) one process has imported once the parser is built:
    what every command pays before it runs."""
    code = ("import sys; from lab.cli import build_parser; build_parser(); "
            "print(len(sys.modules), sum(m == 'lab' or m.startswith('lab.') for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=dict(os.environ, PYTHONPATH=str(tree)),
                       capture_output=True, text=True, check=True)
    total, lab = map(int, r.stdout.split())
    return {"all": total, "lab": lab}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="the tree before the change (a worktree)")
    ap.add_argument("--new", type=Path, default=REPO, help="the tree after it (default: this checkout)")
    ap.add_argument("--runs", type=int, default=15, help="runs per tree and command (default 15)")
    a = ap.parse_args()
    trees = {"old": a.old.resolve(), "new": a.new.resolve()}
    work = Path(tempfile.mkdtemp(prefix="cli-startup-"))
    try:
        return measure(trees, work, a.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(trees: dict[str, Path], work: Path, runs: int) -> int:
    for tree in trees.values():
        check_tree(tree, work)
    cmds = commands(build_lab(work))
    figures: dict[str, dict[str, dict[str, list[float]]]] = {
        c: {t: {"wall": [], "cpu": []} for t in trees} for c in cmds}
    answers: dict[str, set[str]] = {c: set() for c in cmds}
    for name, argv in cmds.items():
        for tree in trees.values():
            run_once(tree, argv, work)  # warm the page cache and __pycache__ of both trees first
        for i in range(runs):
            order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
            for label, tree in order:
                wall, cpu, out = run_once(tree, argv, work)
                figures[name][label]["wall"].append(wall)
                figures[name][label]["cpu"].append(cpu)
                answers[name].add(out)
    med = statistics.median
    report = {"python": sys.version.split()[0], "runs": runs, "cores": os.cpu_count(),
              "load_average_1min_end": round(os.getloadavg()[0], 2),
              "trees": {k: str(v) for k, v in trees.items()},
              "modules_after_build_parser": {k: modules_at_start(v, work) for k, v in trees.items()},
              "commands": {}}
    for name, per in figures.items():
        row = {f"{t}_{k}_ms_median": round(med(v), 1) for t in trees for k, v in per[t].items()}
        row.update({f"{t}_{k}_ms_min": round(min(v), 1) for t in trees for k, v in per[t].items()})
        row["wall_ratio_new_old"] = round(row["new_wall_ms_median"] / row["old_wall_ms_median"], 3)
        row["cpu_ratio_new_old"] = round(row["new_cpu_ms_median"] / row["old_cpu_ms_median"], 3)
        row["same_output_old_new"] = len(answers[name]) == 1
        report["commands"][name] = row
    print(json.dumps(report, indent=2))
    return 0 if all(r["same_output_old_new"] for r in report["commands"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
