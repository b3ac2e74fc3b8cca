#!/usr/bin/env python3
"""Parallel efficiency of the scheduler over 8 real SSH hosts (network namespaces), and push caching.

SYNTHETIC RUNNER: each job pushes the real runner + a real model through the SSH transport (so the
push cache is exercised), then runs `sleep D` on the device instead of a Paddle inference: two
cores cannot run 8 real inferences side by side, and a fixed-duration job makes the ideal
campaign wall time known (jobs_per_device x D). Everything else is real: OpenSSH servers in 8
namespaces, paramiko connections, the Scheduler with one thread per device, the SQLite store.

Figures:
  (1) campaign wall time over 8 hosts / the slowest single device's wall time (target <= 1.3x);
  (2) model + runner bytes pushed by a second run of the same campaign (target 0).

Usage (root, needs `ip netns`):  .venv/bin/python bench/ssh_parallel.py [--hosts 8] [--jobs 3] [--seconds 2]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def outer(args) -> dict:
    from sshd_fleet import NetnsFleet, keygen, netns_missing_reason, run_inner, write_inventory
    reason = netns_missing_reason()
    if reason:
        raise SystemExit(f"ssh_parallel: {reason}")
    from lab.models.build import build
    build(args.model, out_root=REPO / "models")
    with tempfile.TemporaryDirectory(prefix="hwlab-bench-") as tmp:
        tmp = Path(tmp)
        key = keygen(tmp / "id_ed25519")
        with NetnsFleet(args.hosts, tmp, Path(str(key) + ".pub")) as fleet:
            kh = fleet.known_hosts(tmp / "known_hosts")
            inv = write_inventory(tmp / "devices.yaml", [
                dict(id=h.id, host=h.addr, port=22, user="root", key_file=str(key), known_hosts=str(kh),
                     workdir=str(h.sshd.workdir), python=sys.executable) for h in fleet.hosts])
            cmd = fleet.client_cmd([sys.executable, __file__, "--inner", "--inventory", str(inv),
                                    "--jobs", str(args.jobs), "--seconds", str(args.seconds),
                                    "--model", args.model, "--tmp", str(tmp)])
            return run_inner(cmd)


def inner(args) -> dict:
    from lab.core.runner_files import RUNNER_CORE, RUNNERS_DIR
    from lab.devices.inventory import load_devices
    from lab.models.artifact import load_artifact
    from lab.core.records import Job, Measurement, MeasurementProtocol
    from lab.measure.scheduler import Scheduler, SchedulerOptions
    from lab.results.store import Store
    from lab.transport.base import remote_join

    devices = load_devices(args.inventory)
    artifact = load_artifact(args.model, root=str(REPO / "models"))
    files = [Path(artifact.json_path), Path(artifact.pdiparams_path)]
    pushed = {"bytes": 0, "files": 0, "skipped": 0, "push_s": 0.0, "run_s": 0.0, "connect_s": 0.0}
    lock = threading.Lock()

    def synthetic_executor(job, device, transport):
        """Push runner + model for real, then a fixed-duration `sleep` as the 'runner'."""
        t0 = time.monotonic()
        # what push_runner pushes (the runner and its companion), with each push's figures kept
        results = [transport.push(RUNNERS_DIR / name, remote_join(transport.workdir, "runners", name))
                   for name in (RUNNER_CORE, "pi_runner.py")]
        for f in files:
            remote = remote_join(transport.workdir, "models", f"{artifact.id}-{artifact.sha256[:12]}", f.name)
            results.append(transport.push(f, remote))
        with lock:
            for r in results:
                pushed["bytes"] += r.bytes_sent
                pushed["files"] += 1
                pushed["skipped"] += r.skipped
        t1 = time.monotonic()
        res = transport.run(["sleep", str(args.seconds)], timeout=args.seconds + 60)
        with lock:
            pushed["push_s"] += t1 - t0
            pushed["run_s"] += time.monotonic() - t1
        if res.rc != 0:
            raise RuntimeError(res.err)
        return Measurement(job_id=job.job_id, p50_ms=args.seconds * 1000.0, n_samples=1,
                           samples=[[args.seconds * 1000.0]], source="synthetic-sleep")

    def campaign(name, devs):
        jobs = [Job(job_id=f"{name}-{d.id}-{k}", campaign=name, device=d.id, chip=d.chip, model=args.model,
                    model_sha256=artifact.sha256, backend="paddle-inference-cpu", processor="cpu",
                    precision="fp32", threads=k + 1, protocol=MeasurementProtocol(trials=1))
                for d in devs for k in range(args.jobs)]
        store = Store(Path(args.tmp) / f"{name}.sqlite")
        store.plan_jobs(jobs)
        with lock:
            pushed.update(bytes=0, files=0, skipped=0, push_s=0.0, run_s=0.0, connect_s=0.0)

        def factory(device):
            t0 = time.monotonic()
            from lab.transport.registry import open_transport
            tr = open_transport(device)
            with lock:
                pushed["connect_s"] += time.monotonic() - t0
            return tr
        start = time.monotonic()
        summary = Scheduler(store, devs, SchedulerOptions(max_parallel=len(devs), progress=False),
                            executor=synthetic_executor, transport_factory=factory).run(jobs)
        wall = time.monotonic() - start
        store.close()
        if summary.ok != len(jobs):
            raise RuntimeError(f"{name}: {summary.failed} failed")
        out = dict(pushed)
        for k in ("push_s", "run_s"):
            out[k] = round(out[k] / len(jobs), 3)
        out["connect_s"] = round(out["connect_s"] / len(devs), 3)
        return wall, out

    first_wall, first_push = campaign("run1", devices)
    second_wall, second_push = campaign("run2", devices)
    single_runs = {d.id: campaign(f"single-{d.id}", [d]) for d in devices}
    singles = {k: v[0] for k, v in single_runs.items()}
    slow_id = max(singles, key=singles.get)
    slowest = max(singles.values())
    return {
        "hosts": len(devices), "jobs_per_device": args.jobs, "job_seconds": args.seconds,
        "ideal_s": args.jobs * args.seconds, "campaign_first_run_s": round(first_wall, 3),
        "campaign_second_run_s": round(second_wall, 3),
        "single_device_s": {k: round(v, 3) for k, v in singles.items()}, "slowest_single_s": round(slowest, 3),
        "ratio_second_run_vs_slowest_single": round(second_wall / slowest, 3),
        "ratio_first_run_vs_slowest_single": round(first_wall / slowest, 3),
        "first_run_pushed_bytes": first_push["bytes"], "first_run_files": first_push["files"],
        "second_run_pushed_bytes": second_push["bytes"], "second_run_skipped_files": second_push["skipped"],
        "model": args.model,
        "per_job_mean_s": {"campaign_second_run": {k: second_push[k] for k in ("connect_s", "push_s", "run_s")},
                           "slowest_single": {k: single_runs[slow_id][1][k] for k in ("connect_s", "push_s", "run_s")}},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--jobs", type=int, default=3, help="jobs per device")
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each synthetic job")
    p.add_argument("--model", default="tiny_mlp", help="zoo model whose files are pushed")
    from sshd_fleet import bench_args
    args = bench_args(p, inner)
    if args is None:
        return
    result = outer(args)
    print(json.dumps(result, indent=1))
    ok = result["ratio_second_run_vs_slowest_single"] <= 1.3 and result["second_run_pushed_bytes"] == 0
    print(f"parallel efficiency: campaign {result['campaign_second_run_s']} s vs slowest single device "
          f"{result['slowest_single_s']} s = {result['ratio_second_run_vs_slowest_single']}x (target <= 1.3x); "
          f"second run pushed {result['second_run_pushed_bytes']} bytes (first run "
          f"{result['first_run_pushed_bytes']}) -> {'PASS' if ok else 'MISS'}", file=sys.stderr)


if __name__ == "__main__":
    main()
