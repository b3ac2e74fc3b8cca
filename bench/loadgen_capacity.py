#!/usr/bin/env python3
"""Can the load generator outrun the models it measures? LoadGen + the HTTP pool vs a no-op endpoint.

    .venv/bin/python bench/loadgen_capacity.py [--qps 2000] [--seconds 10] [--connections 16]

Starts the serving runner in --noop mode on 127.0.0.1 (a 1-row zero tensor per request, answered in
the event loop), runs an Offline LoadGen test (max throughput of client + server together) and a
Server test at --qps (Poisson) with a p99 bound of --bound-ms, and prints both. Both processes share
this machine's cores, so the achieved rate is a floor for the load generator alone; the CPU time
per request of each side (this process: LoadGen + HTTP pool; the server process) says which side
costs what, and 1e6 / client-us is the rate one free core gives the load generator.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

from lab.serving.endpoint import LocalServer, ServerSpec  # noqa: E402
from lab.serving.loadgen import LoadSettings, run_scenario  # noqa: E402


def _cpu_s(pid: int | None = None) -> float:
    if pid is None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime
    f = Path(f"/proc/{pid}/stat").read_text().split()
    return (int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qps", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--bound-ms", type=float, default=50.0)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    x = [{"x": np.zeros((1, 4), "float32")}]
    with tempfile.TemporaryDirectory() as tmp, \
            LocalServer(ServerSpec(name="noop", noop=True, max_seconds=4 * args.seconds + 60), tmp) as srv:
        c0, s0 = _cpu_s(), _cpu_s(srv.proc.pid)
        off = run_scenario(srv.url, "noop", x, LoadSettings("Offline", target_qps=args.qps, min_duration_s=args.seconds,
                                                             max_duration_s=3 * args.seconds,
                                                             connections=args.connections),
                           out_dir=Path(tmp) / "offline", server=srv)
        n = off.qps * off.wall_s
        client_us, server_us = 1e6 * (_cpu_s() - c0) / n, 1e6 * (_cpu_s(srv.proc.pid) - s0) / n
        srv_run = run_scenario(srv.url, "noop", x, LoadSettings("Server", target_qps=args.qps,
                                                                 latency_bound_ms=args.bound_ms, percentile=0.99,
                                                                 min_duration_s=args.seconds,
                                                                 max_duration_s=3 * args.seconds,
                                                                 connections=args.connections),
                               out_dir=Path(tmp) / "server", server=srv)
    print(f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f}  connections {args.connections}")
    print(f"Offline: {off.qps:.0f} samples/s; CPU per request: load generator {client_us:.0f} us "
          f"(= {1e6 / client_us:.0f} QPS per free core), server {server_us:.0f} us")
    print(f"Server at {args.qps:.0f} QPS: scheduled {srv_run.qps:.0f}, completed {srv_run.completed_qps:.0f} QPS, "
          f"p50 {srv_run.p50_ms:.2f} ms, p99 {srv_run.p99_ms:.2f} ms, bound {args.bound_ms:.0f} ms, "
          f"LoadGen: {'VALID' if srv_run.valid else 'INVALID'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
