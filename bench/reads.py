"""Reads that scale (issue 23, issue 24): `lab results`, `lab advise`, `lab --version` and `lab report`
on big stores, the tree before the change and this one side by side, wall time and peak memory.

Stores (built here through the real Store API, one transaction per chunk):
- rows: 100,000 finished jobs over 4 campaigns, 200 devices, 20 models and 5 backends, each with
  every figure a real job has (CI, cold start, memory, power on a third, agreement on all, accuracy
  on a tenth, options) and `--samples-per-row` raw samples (default 10: 1,000,000 samples), plus
  failed jobs with errors;
- report: 2,000 jobs and 100,000 samples (`bench/report_scale.py`'s fill, reused).

Each command runs as its own process (`python -m lab.cli ...`) with PYTHONPATH set to the tree, from
a neutral folder; trees alternate and swap order every round, so a slow spell on the shared box hits
both. Per run: wall seconds, the child's CPU seconds (user + sys) and peak RSS (`os.wait4`, that
child alone). Each tree's modules are byte-compiled first into their own cache folder, as an
installed package's are (`bytecode_env`). Outputs go to a file (their size is reported; the trees' bytes differ where the newer
tree has more fields: tests/commands/test_results_stream.py checks the streamed bytes against the
list writer).

    .venv/bin/python bench/reads.py --old /tmp/reads-base [--runs 3] [--rows 100000] [--json out.json]

The old tree is a worktree of the commit before the change: `git worktree add --detach
/tmp/reads-base HEAD` (before the change is committed). Without --old only this tree is timed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests")]

BACKENDS = [("paddle-inference-cpu", "cpu", "fp32"), ("paddle-lite-arm", "cpu", "fp32"),
            ("paddle-lite-opencl", "gpu", "fp16"), ("paddle-lite-kirin-npu", "aipu", "int8"),
            ("onnxruntime-cpu", "cpu", "fp32")]
CHIPS = ["kirin990", "kirin9000", "rk1808", "rv1109", "rk3588", "x86_64-host", "jetson-orin-nano", "a100"]


def _measurement(rng: random.Random, job_id: str, proc: str, n_samples: int):
    from lab.core.records import Measurement
    base = rng.uniform(2, 80) / (3 if proc == "aipu" else 1)
    trials = [[round(base * (1 + rng.gauss(0, 0.03)), 4) for _ in range(max(1, n_samples // 3))]
              for _ in range(3 if n_samples >= 3 else 1)]
    flat = sorted(x for t in trials for x in t)
    p50 = flat[len(flat) // 2]
    powered = rng.random() < 0.33
    return Measurement(
        job_id=job_id, p50_ms=p50, ci_low_ms=p50 * 0.98, ci_high_ms=p50 * 1.02, p90_ms=flat[int(len(flat) * 0.9)],
        p99_ms=flat[-1], mean_ms=sum(flat) / len(flat), std_ms=0.03 * p50, min_ms=flat[0], max_ms=flat[-1],
        load_ms=rng.uniform(50, 2000), first_ms=p50 * rng.uniform(1.5, 6), peak_rss_mb=rng.uniform(80, 900),
        n_samples=len(flat), converged=rng.random() > 0.05, power_w=rng.uniform(1, 9) if powered else None,
        energy_mj_per_inf=p50 * 3 if powered else None, power_source="battery" if powered else None,
        power_note=None if powered else "no power source readable on this device",
        temp_start_c=rng.uniform(30, 45), temp_max_c=rng.uniform(45, 80), throttled=rng.random() < 0.02,
        agree_cosine_min=rng.uniform(0.995, 1.0), agree_max_abs=rng.uniform(0, 0.01), agree_top1=1.0,
        agree_reference="fp32 host reference", agree_ok=True,
        accuracy_top1=rng.uniform(0.7, 0.99) if rng.random() < 0.1 else None, samples=trials,
        provenance={"runner": "pi_runner", "runner_version": "1.0.0"})


def build_rows_store(path: Path, n_rows: int = 100_000, samples_per_row: int = 10, seed: int = 0,
                     chunk: int = 5000) -> None:
    """`n_rows` jobs (1 % failed with an error, the rest ok) through Store.import_rows/finish_job."""
    from lab.core.records import Job
    from lab.results.store import Store
    rng = random.Random(seed)
    store = Store(path)
    try:
        pending, failed = [], []
        for i in range(n_rows):
            campaign = f"farm-{i % 4}"
            dev = i // 4 % 200
            b = i // 800 % 5
            if b == 4 and dev % 4 != 3:  # ONNX Runtime rows on a quarter of the devices only
                b = 0
            backend, proc, prec = BACKENDS[b]
            job = Job(job_id=hashlib.sha256(str(i).encode()).hexdigest()[:16], campaign=campaign,
                      device=f"dev{dev:03d}", chip=CHIPS[dev % len(CHIPS)], model=f"model_{i // 4000 % 20:02d}",
                      model_sha256="cd" * 32, backend=backend, processor=proc, precision=prec,
                      threads=1 + i // 4000 % 4, options=(("onednn", True),) if proc == "cpu" else ())
            if i % 100 == 99:
                failed.append(job)
                continue
            pending.append((job, _measurement(rng, job.job_id, proc, samples_per_row)))
            if len(pending) >= chunk:
                store.import_rows(campaign, pending)
                pending = []
        if pending:
            store.import_rows(pending[0][0].campaign, pending)
        store.plan_jobs(failed)
        for job in failed:
            store.finish_job(job.job_id, "failed", error="runner exited 1: Segmentation fault (core dumped)")
        for c in range(4):
            store.save_campaign(f"farm-{c}", {"name": f"farm-{c}"})
    finally:
        store.close()


def build_report_store(path: Path, jobs: int = 2000, samples: int = 100_000) -> None:
    from report_scale import fill

    from lab.results.store import Store
    store = Store(path)
    try:
        fill(store, jobs, samples)
        store.save_campaign("scale", {"name": "scale"})
    finally:
        store.close()


def build_advise_model(models: Path) -> str:
    """The advise model: the tests' CNN (analysis cached in meta.json), named as stored rows are."""
    from advisor_fixtures import CNN_OPS, make_model
    make_model(models, "model_07", CNN_OPS, macs=570_000_000, share=0.97)
    return "model_07"


def bytecode_env(tree: Path, work: Path) -> dict[str, str]:
    """The environment of a tree's commands: its modules compiled once beforehand into their own
    cache folder, as an installed package is (a dev shell's PYTHONDONTWRITEBYTECODE=1 would make
    every command compile the lab's sources again: ~50 ms of `lab advise` alone)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=str(tree), COLUMNS="120", PYTHONPYCACHEPREFIX=str(work / "pyc" / tree.name))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "lab")], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return env


def run_once(tree: Path, argv: list[str], cwd: Path, out: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of `python -m lab.cli ARGV` from `tree`, stdout to `out`."""
    with open(out, "wb") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "lab.cli", *argv], cwd=cwd, env=env, stdout=fh,
                             stderr=subprocess.PIPE)
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{tree}: lab {' '.join(argv)} exited {p.returncode}: {err.decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def commands(work: Path, model: str) -> dict[str, list[str]]:
    rows, rep = str(work / "rows.sqlite"), str(work / "report.sqlite")
    return {
        "version": ["--version"],
        "results_json": ["--store", rows, "results", "--format", "json"],
        "results_csv": ["--store", rows, "results", "--format", "csv"],
        # dev004: Paddle rows only; dev007 also has ONNX Runtime rows, so the advisor computes the
        # frameworks note (bootstrap CIs of the ratios: numpy) on top of reading
        **{f"advise_{dev}": ["--store", rows, "--devices", str(work / "none.yaml"), "advise", "--models-root",
                             str(work / "models"), "--model", model, "--device", dev, "--format", "json"]
           for dev in ("dev004", "dev007")},
        "report_2k": ["--store", rep, "report", "--campaign", "scale", "-o", str(work / "out" / "r2k.html")],
        "report_100k": ["--store", rows, "report", "--campaign", "farm-0", "--campaign", "farm-1",
                        "--campaign", "farm-2", "--campaign", "farm-3", "-o", str(work / "out" / "r100k.html")],
    }


def measure(trees: dict[str, Path], work: Path, runs: int, only: list[str] | None) -> dict:
    model = build_advise_model(work / "models")
    cmds = {k: v for k, v in commands(work, model).items() if not only or k in only}
    (work / "out").mkdir(exist_ok=True)
    figs = {c: {t: {"wall_s": [], "cpu_s": [], "peak_rss_mb": []} for t in trees} for c in cmds}
    envs = {label: bytecode_env(tree, work) for label, tree in trees.items()}
    for name, argv in cmds.items():
        for i in range(runs):
            order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
            for label, tree in order:
                out = work / "out" / f"{name}-{label}.txt"
                wall, cpu, rss = run_once(tree, argv, work, out, envs[label])
                figs[name][label]["wall_s"].append(round(wall, 3))
                figs[name][label]["cpu_s"].append(round(cpu, 3))
                figs[name][label]["peak_rss_mb"].append(round(rss, 1))
                figs[name][label]["output_bytes"] = out.stat().st_size
        for label in trees:
            f = figs[name][label]
            f["median_wall_s"] = round(statistics.median(f["wall_s"]), 3)
            f["median_cpu_s"] = round(statistics.median(f["cpu_s"]), 3)
            f["max_peak_rss_mb"] = max(f["peak_rss_mb"])
        print(json.dumps({name: figs[name]}), flush=True)
    return {"figures": figs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, help="the tree before the change (a git worktree)")
    ap.add_argument("--runs", type=int, default=3, help="runs per tree and command (default 3)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--samples-per-row", type=int, default=10)
    ap.add_argument("--only", action="append", help="only this command (repeatable)")
    ap.add_argument("--keep", type=Path, help="build the stores here and keep them (reused when present)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    a = ap.parse_args()
    trees = {"new": REPO} | ({"old": a.old.resolve()} if a.old else {})
    work = a.keep or Path(tempfile.mkdtemp(prefix="hwlab-reads-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if not (work / "rows.sqlite").exists():
            build_rows_store(work / "rows.sqlite", a.rows, a.samples_per_row)
        if not (work / "report.sqlite").exists():
            build_report_store(work / "report.sqlite")
        built = time.perf_counter() - t0
        shutil.rmtree(work / "models", ignore_errors=True)
        report = {"python": sys.version.split()[0], "cores": os.cpu_count(), "rows": a.rows,
                  "samples_per_row": a.samples_per_row, "build_s": round(built, 1),
                  "load_average_1min_start": round(os.getloadavg()[0], 2),
                  **measure(trees, work, a.runs, a.only),
                  "load_average_1min_end": round(os.getloadavg()[0], 2)}
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
