#!/usr/bin/env python3
"""Coordinated omission: the same stalling endpoint under open-loop LoadGen and closed-loop hey/wrk.

    .venv/bin/python bench/coordinated_omission.py [--stall-ms 200] [--stall-every 1000] [--seconds 20]

The serving runner in --noop mode stalls its whole event loop for --stall-ms on every
--stall-every-th request (a stop-the-world pause, like a GC). LoadGen's Server scenario issues
Poisson arrivals at --qps regardless of the server: every request that arrives during a stall
waits for it, and LoadGen times each from its scheduled issue, so the stalls reach p99. hey keeps
--connections requests in flight and sends the next only when one returns: during a stall it sends
nothing, only those few requests see the stall, and its percentiles stay near the no-stall figure.
wrk (4.1, Debian) is closed loop too but corrects its histogram for coordinated omission
(stats_correct: it adds the requests a steady sender would have sent during a long response), so it
shows the stalls, roughly. The commands are printed exactly as run. Needs Debian's hey and wrk
(scripts/install-test-deps.sh).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

from lab.serving.endpoint import LocalServer, ServerSpec  # noqa: E402
from lab.serving.loadgen import LoadSettings, run_scenario  # noqa: E402
from lab.serving.protocol import request_body  # noqa: E402

_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def hey_percentiles(text: str) -> dict[str, float]:
    """'Latency distribution' of hey -> {"50%": ms, ...}, plus Requests/sec and the slowest."""
    out = {f"{p}%": float(v) * 1e3 for p, v in re.findall(r"^\s+(\d+)% in ([\d.]+) secs", text, re.M)}
    for key, pat in (("rps", r"Requests/sec:\s+([\d.]+)"), ("max", r"Slowest:\s+([\d.]+) secs")):
        m = re.search(pat, text)
        if m:
            out[key] = float(m.group(1)) * (1e3 if key == "max" else 1)
    return out


def wrk_percentiles(text: str) -> dict[str, float]:
    """'Latency Distribution' lines of `wrk --latency` -> {"50%": ms, ...}, plus Requests/sec."""
    out = {}
    for pct, val, unit in re.findall(r"^\s+(\d+%)\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out[pct] = float(val) * _UNIT[unit]
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stall-ms", type=float, default=200.0)
    ap.add_argument("--stall-every", type=int, default=1000)
    ap.add_argument("--qps", type=float, default=200.0, help="LoadGen Server rate")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--connections", type=int, default=4, help="wrk connections (closed loop)")
    args = ap.parse_args()
    wrk, hey = shutil.which("wrk"), shutil.which("hey")
    if not wrk or not hey:
        print("hey or wrk not installed (bash scripts/install-test-deps.sh)", file=sys.stderr)
        return 2
    x = {"x": np.zeros((1, 4), "float32")}
    spec = ServerSpec(name="stall", noop=True, inject_stall_ms=args.stall_ms, stall_every=args.stall_every,
                      max_seconds=4 * args.seconds + 60)
    with tempfile.TemporaryDirectory() as tmp:
        with LocalServer(spec, Path(tmp) / "a") as srv:
            lg = run_scenario(srv.url, "stall", [x], LoadSettings(
                "Server", target_qps=args.qps, latency_bound_ms=args.stall_ms / 2, percentile=0.99,
                min_duration_s=args.seconds, max_duration_s=2 * args.seconds), out_dir=Path(tmp) / "lg", server=srv)
        body = request_body("v2", x).decode()
        with LocalServer(spec, Path(tmp) / "b") as srv:  # a fresh server: same stall phase
            hey_cmd = [hey, "-z", f"{int(args.seconds)}s", "-c", str(args.connections), "-m", "POST",
                       "-T", "application/json", "-d", body, f"{srv.url}/v2/models/stall/infer"]
            h = hey_percentiles(subprocess.run(hey_cmd, capture_output=True, text=True,
                                               timeout=args.seconds + 30).stdout)
        with LocalServer(spec, Path(tmp) / "c") as srv:
            script = Path(tmp) / "post.lua"
            script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                              f"wrk.body = {json.dumps(body)}\n")
            cmd = [wrk, "-t1", f"-c{args.connections}", f"-d{int(args.seconds)}s", "--latency", "-s", str(script),
                   f"{srv.url}/v2/models/stall/infer"]
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 30).stdout
        w = wrk_percentiles(text)
    print(f"endpoint: no-op, {args.stall_ms:.0f} ms stall every {args.stall_every} requests")
    print(f"LoadGen Server {args.qps:.0f} QPS (open loop): p50 {lg.p50_ms:.1f} ms  p90 {lg.p90_ms:.1f} ms  "
          f"p99 {lg.p99_ms:.1f} ms  max {lg.max_ms:.1f} ms  ({lg.queries} queries)")
    nan = float("nan")
    print(f"hey -c{args.connections} (closed loop, {h.get('rps', 0):.0f} req/s): p50 {h.get('50%', nan):.1f} ms  "
          f"p90 {h.get('90%', nan):.1f} ms  p99 {h.get('99%', nan):.1f} ms  max {h.get('max', nan):.1f} ms")
    print(f"wrk -c{args.connections} (closed loop + CO correction, {w.get('rps', 0):.0f} req/s): "
          f"p50 {w.get('50%', nan):.1f} ms  p90 {w.get('90%', nan):.1f} ms  p99 {w.get('99%', nan):.1f} ms")
    print("hey command: hey " + " ".join(hey_cmd[1:-3]) + " -d BODY URL")
    print("wrk command: wrk " + " ".join(cmd[1:-3]) + " -s post.lua URL   (post.lua: POST of the same v2 body)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
