"""Benchmark: a 1,000-device farm on a 4-node Ray cluster, 10,000 jobs, then the readers at 100k rows.

The devices are SIMULATED, said plainly: the `simulated` plug-in runtime (bench/hwlab_sim, entry
point `hwlab.runtimes`) replays the latency distribution of a real stored job (mobilenet_v1 on this
machine's CPU, bench/hwlab_sim/hwlab_sim/data/) scaled per chip, through the runner protocol, and
sleeps the replayed time (load, warm-up, steady samples), so a device is busy as long as a real one
would be. Everything else is the product: inventory and campaign files, planning, the CLI's run
policy, the scheduler, the Ray node agents on 1 head + 3 worker nodes (`ray start` processes, 250
devices each), the SQLite store, `lab results` and `lab report`.

Figures (one JSON line, then markdown rows for docs/benchmarks.md):
- planning: inventory + campaign files read and 10,000 jobs planned (`prepare` minus model builds),
  and the plan stored (`Store.plan_jobs`);
- orchestration overhead per job: for each device, (its last job's end - the run's start - the
  device time of its jobs) / its job count, averaged; device time = `provenance.trials_seconds`, the
  time the runner ran, measured on the node. As a share: overhead / mean device time per job;
- store write rate: the campaign's commits per second while it ran (bounded by the devices' pace),
  and the store's capacity: the 90,000 jobs that fill the store to 100k rows written through
  `finish_job` (one commit per job, samples included) as fast as one writer goes;
- peak memory of the orchestrator (this process, ru_maxrss) and its CPU time per job;
- `lab results --format json|csv` and `lab report` on the 100k-row store (subprocesses, as a user runs them).

    .venv/bin/python bench/scale.py [--devices 1000] [--jobs-per-device 10] [--rows 100000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench" / "hwlab_sim"))

from hwlab_sim.farm import Farm, inventory

from lab.core.isotime import iso_to_epoch
from lab.core.records import MEASUREMENT_FIGURES, Job, Measurement
from lab.measure.campaign import load_campaign, plan_jobs
from lab.measure.orchestrate import prepare, run_prepared
from lab.measure.scheduler import SchedulerOptions
from lab.results.store import Store

LAB = str(Path(sys.executable).with_name("lab"))


def setup(tmp: Path, args) -> tuple[Path, Path]:
    models = tmp / "models"
    if (REPO / "models" / "tiny_mlp" / "meta.json").is_file():
        shutil.copytree(REPO / "models" / "tiny_mlp", models / "tiny_mlp")
    inv = tmp / "devices.yaml"
    inv.write_text(inventory(args.devices)[0])
    camp = tmp / "scale.yaml"
    ids = ", ".join(f"sim-{i:04d}" for i in range(args.devices))
    camp.write_text(f"name: scale\ndevices: [{ids}]\nmodels: [tiny_mlp]\nbackends: [sim-cpu]\n"
                    f"threads: {list(range(1, args.jobs_per_device + 1))}\n"
                    f"protocol: {{warmup: 5, warmup_seconds: {args.warmup_seconds}, min_iters: {args.min_iters}, "
                    f"min_seconds: 0.2, max_seconds: 30, target_rel_ci: 0.5, trials: 1, timeout_s: 120}}\n")
    return inv, camp


def planning(inv: Path, camp: Path, models: Path, store_path: Path) -> tuple[dict, object]:
    prepare(camp, inv, models)  # builds / references the model once (not planning)
    from lab.devices.inventory import load_devices
    t0 = time.perf_counter()
    devices = load_devices(inv)
    spec = load_campaign(camp)
    from lab.models.artifact import load_artifact
    sha = load_artifact("tiny_mlp", root=str(models)).sha256
    jobs, _ = plan_jobs(spec, devices, lambda _m: sha)
    plan_s = time.perf_counter() - t0
    prep = prepare(camp, inv, models)
    store = Store(store_path)
    t0 = time.perf_counter()
    store.plan_jobs(prep.jobs)
    store_plan_s = time.perf_counter() - t0
    store.close()
    return {"jobs_planned": len(jobs), "planning_s": round(plan_s, 3),
            "plan_stored_s": round(store_plan_s, 3)}, prep


def campaign(prep, store_path: Path, address: str, n_devices: int, models: Path) -> dict:
    opts = SchedulerOptions(max_parallel=n_devices, retries=1, models_root=str(models), progress=False)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    out = run_prepared(prep, store_path, opts, mode="resume", engine="ray", address=address)
    wall = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    s = out.summary
    figures = {"jobs_ok": s.ok, "jobs_failed": s.failed, "jobs_skipped": s.skipped, "wall_s": round(wall, 1),
               "driver_cpu_ms_per_job": round(cpu / max(1, s.planned) * 1000, 2),
               "driver_peak_rss_mb": round(ru1.ru_maxrss / 1024, 1)}
    figures.update(overhead(store_path, t0))
    return figures


def overhead(store_path: Path, t0: float) -> dict:
    db = sqlite3.connect(str(store_path))
    per_dev: dict[str, list[tuple[float, float]]] = {}
    ends = []
    for dev, fin, prov in db.execute("SELECT j.device, j.finished_at, m.provenance_json FROM jobs j "
                                     "JOIN measurements m USING (job_id) WHERE j.status = 'ok'"):
        end = iso_to_epoch(fin)
        ends.append(end)
        per_dev.setdefault(dev, []).append((end, float(json.loads(prov)["trials_seconds"])))
    db.close()
    over, busy, n = 0.0, 0.0, 0
    for jobs in per_dev.values():
        last = max(e for e, _ in jobs)
        dev_time = sum(d for _, d in jobs)
        over += (last - t0) - dev_time
        busy += dev_time
        n += len(jobs)
    ends.sort()
    return {"device_s_per_job": round(busy / n, 3), "overhead_ms_per_job": round(over / n * 1000, 1),
            "overhead_share": round(over / busy, 4),
            "campaign_commits_per_s": round(len(ends) / max(1e-9, ends[-1] - ends[0]), 1)}


def fill(store_path: Path, rows: int) -> dict:
    """Copies of the campaign's measured jobs (same figures and samples, new ids, the same
    campaign: `lab report --campaign scale` reads them all) through the store's own write path
    until the store holds `rows` rows."""
    store = Store(store_path)
    base = [r for r in store.results("scale") if r.status == "ok"]
    samples = store.all_samples([r.job_id for r in base])
    have = len(base)
    t0 = time.perf_counter()
    k = 0
    while have < rows:
        k += 1
        batch = base[: rows - have]
        jobs = [Job(job_id=f"{r.job_id}-c{k}", campaign="scale", device=r.device, chip=r.chip,
                    model=r.model, model_sha256=r.model_sha256, backend=r.backend, processor=r.processor,
                    precision=r.precision, threads=r.threads) for r in batch]
        store.plan_jobs(jobs)
        for job, r in zip(jobs, batch):
            m = Measurement(job_id=job.job_id, **{f: getattr(r, f) for f in MEASUREMENT_FIGURES if hasattr(r, f)})
            m.samples = samples.get(r.job_id, [])
            m.source = "simulated"
            store.finish_job(job.job_id, "ok", measurement=m)
        have += len(batch)
    secs = time.perf_counter() - t0
    store.close()
    return {"rows": have, "store_commits_per_s": round((have - len(base)) / max(1e-9, secs), 1)}


def reads(store_path: Path, tmp: Path, limit_s: float) -> dict:
    """The readers as a user runs them, each bounded by `limit_s` (a reader past it is killed and
    reported as such, never waited for)."""
    out: dict = {}
    for name, argv in (("results_json_s", ["results", "--format", "json"]),
                       ("results_csv_s", ["results", "--format", "csv"]),
                       ("report_s", ["report", "--campaign", "scale", "-o", str(tmp / "report" / "index.html")])):
        t0 = time.perf_counter()
        try:
            res = subprocess.run([LAB, "--store", str(store_path), *argv], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, timeout=limit_s, check=False)
        except subprocess.TimeoutExpired:
            out[name] = f"> {limit_s:g} (killed)"
            continue
        out[name] = round(time.perf_counter() - t0, 2)
        if res.returncode != 0:
            out[name.replace("_s", "_exit")] = f"{res.returncode}: {res.stderr.strip()[-300:]}"
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--jobs-per-device", type=int, default=10)
    ap.add_argument("--warmup-seconds", type=float, default=4.0, help="replayed warm-up per job (device time)")
    ap.add_argument("--min-iters", type=int, default=30, help="samples kept per job")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--read-limit-s", type=float, default=300.0, help="each reader is killed after this")
    ap.add_argument("--keep", help="work directory to keep (default: a temporary one, removed)")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hwlab-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        inv, camp = setup(tmp, args)
        store_path = tmp / "scale.sqlite"
        fig, prep = planning(inv, camp, tmp / "models", store_path)
        with Farm([f"sim-{i:04d}" for i in range(args.devices)], workers=3) as farm:
            fig.update(campaign(prep, store_path, farm.address, args.devices, tmp / "models"))
        fig.update(fill(store_path, args.rows))
        fig.update(reads(store_path, tmp, args.read_limit_s))
        fig.update(devices=args.devices, nodes=4)
        print(json.dumps(fig))
        for k, v in fig.items():
            print(f"| {k} | {v} |")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
