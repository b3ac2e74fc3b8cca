"""Benchmark: scheduling overhead per job, Ray engine vs the local thread engine.

Both engines drive the same SYNTHETIC fixed-duration executor (`lab.measure.ray_engine.SyntheticExecutor`:
it sleeps `--duration` seconds per job and runs no inference), the same devices (local transport,
one work dir each) and a real SQLite store, so the difference is the engine: for Ray, a task
submission per job, placement on the node advertising the device, the result's trip back and
`ray.wait` polling; for local, a thread per device. Devices run in parallel, jobs on one device in
series, so the ideal wall time is jobs_per_device x duration and

    overhead per job = (wall - jobs_per_device * duration) / jobs_per_device

The Ray cluster is local (`ray.cluster_utils.Cluster`, head + `--nodes - 1` workers, devices spread
round-robin over the nodes). "cold" includes connecting the driver and shipping the lab code to the
nodes (first run); "warm" is a second run on the same connection. Prints a JSON line and a markdown
table row per engine.

    .venv/bin/python bench/ray_overhead.py [--devices 2] [--jobs 20] [--duration 0.05] [--nodes 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.measure.ray_engine import SyntheticExecutor, device_resource, run_with_ray  # noqa: E402
from lab.core.records import Device, Job  # noqa: E402
from lab.measure.scheduler import Scheduler, SchedulerOptions  # noqa: E402
from lab.results.store import Store  # noqa: E402


def make_jobs(devices: list[Device], per_device: int, tag: str) -> list[Job]:
    return [Job(job_id=f"{tag}-{d.id}-{i}", campaign=tag, device=d.id, chip=d.chip, model="none",
                model_sha256="0" * 64, backend="paddle-inference-cpu", processor="cpu", precision="fp32",
                threads=1) for d in devices for i in range(per_device)]


def timed(fn, store: Store, jobs: list[Job]) -> float:
    store.plan_jobs(jobs)
    t0 = time.perf_counter()
    summary = fn(jobs)
    wall = time.perf_counter() - t0
    assert summary.ok == len(jobs), summary
    return wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=20, help="jobs per device")
    ap.add_argument("--duration", type=float, default=0.05, help="synthetic job duration, seconds")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    devices = [Device(id=f"bench{i}", chip="generic-x86-cpu", transport="local", workdir=str(tmp / f"d{i}"))
               for i in range(args.devices)]
    store = Store(tmp / "bench.sqlite")
    opts = SchedulerOptions(progress=False, max_parallel=args.devices)
    exe = SyntheticExecutor(args.duration)
    ideal = args.jobs * args.duration

    def per_job(wall: float) -> float:
        return (wall - ideal) / args.jobs * 1000.0

    local = [per_job(timed(lambda js: Scheduler(store, devices, opts, executor=exe).run(js), store,
                           make_jobs(devices, args.jobs, f"local{r}"))) for r in range(args.repeat)]

    node_res = [dict() for _ in range(args.nodes)]
    for i, d in enumerate(devices):
        node_res[i % args.nodes][device_resource(d.id)] = 1
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=1, object_store_memory=100_000_000, include_dashboard=False, resources=node_res[0]))
    for res in node_res[1:]:
        cluster.add_node(num_cpus=1, object_store_memory=100_000_000, resources=res)
    cluster_start = time.perf_counter() - t0
    try:
        from lab.measure.ray_engine import connect
        t0 = time.perf_counter()
        connect(cluster.address)  # the driver stays connected: run_with_ray reuses it
        connect_s = time.perf_counter() - t0
        run = lambda js: run_with_ray(store, devices, js, opts, node_executor=exe, push_models=False)  # noqa: E731
        cold = per_job(timed(run, store, make_jobs(devices, args.jobs, "raycold")))
        warm = [per_job(timed(run, store, make_jobs(devices, args.jobs, f"ray{r}"))) for r in range(args.repeat)]
    finally:
        ray.shutdown()
        cluster.shutdown()
    out = {"synthetic": True, "devices": args.devices, "jobs_per_device": args.jobs, "duration_s": args.duration,
           "nodes": args.nodes, "local_ms_per_job": [round(x, 2) for x in local],
           "ray_cold_ms_per_job": round(cold, 2), "ray_warm_ms_per_job": [round(x, 2) for x in warm],
           "ray_cluster_start_s": round(cluster_start, 1), "ray_connect_s": round(connect_s, 2)}
    print(json.dumps(out))
    print("| engine | overhead ms/job (median of runs) | runs |")
    print("|---|---|---|")
    print(f"| local threads | {statistics.median(local):.1f} | {', '.join(f'{x:.1f}' for x in local)} |")
    print(f"| ray (warm) | {statistics.median(warm):.1f} | {', '.join(f'{x:.1f}' for x in warm)} |")
    print(f"| ray (cold: first run, ships code) | {cold:.1f} | 1 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
