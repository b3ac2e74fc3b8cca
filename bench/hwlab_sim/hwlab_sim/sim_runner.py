"""Simulated device runner: replays a recorded latency distribution, writes the runner JSON.

Travels alone (stdlib only, Python 3.7+), like the lab's real runners, and speaks their protocol
(docs/architecture.md "Runner JSON", schema hwlab.runner/1): one document per trial, `ok: false`
and exit 3 on failure. Nothing is inferred: each sample is drawn (seeded) from the profile's
recorded samples and multiplied by `--scale` (the simulated chip's factor); the runner sleeps the
drawn time so the simulated device is busy as long as the real one was. Telemetry is unavailable:
a simulated device has no sensors. `--fault fail|hang` makes the device fail or hang (farm tests).
"""
import argparse
import json
import os
import random
import socket
import statistics
import sys
import time

SCHEMA = "hwlab.runner/1"
VERSION = "0.1.0"
NO_SENSORS = "simulated device: no sensors (latencies replayed from a recorded job)"


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _args(argv):
    ap = argparse.ArgumentParser(description="replay a recorded latency distribution")
    ap.add_argument("--profile", required=True, help="hwlab-sim.profile/1 JSON file")
    ap.add_argument("--scale", type=float, default=1.0, help="simulated chip factor on every time")
    ap.add_argument("--sha", required=True, help="sha256 the job's model has (reported back)")
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--warmup-seconds", type=float, default=0.0)
    ap.add_argument("--min-iters", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-seed", default="", help="device id: each device draws its own samples")
    ap.add_argument("--fault", choices=["none", "fail", "hang"], default="none")
    ap.add_argument("--hang-s", type=float, default=30.0, help="how long a hanging device sleeps")
    ap.add_argument("--out", required=True, help="result path, or - for stdout")
    return ap.parse_args(argv)


def _warmup(rng, recorded, args):
    """Warm-up as the real runners do it: at least `warmup` iterations and `warmup_seconds`, timed
    by the device but not kept; returns (iterations, seconds)."""
    n, total_s = 0, 0.0
    while n < args.warmup or total_s < args.warmup_seconds:
        total_s += rng.choice(recorded) * args.scale / 1000.0
        n += 1
        if total_s > args.max_seconds:
            break
    return n, total_s


def _draw(rng, recorded, args):
    """The trial's samples: drawn until min_iters and min_seconds are met, bounded by max_seconds."""
    samples, total_s = [], 0.0
    while len(samples) < args.min_iters or total_s < args.min_seconds:
        ms = rng.choice(recorded) * args.scale
        if total_s + ms / 1000.0 > args.max_seconds and len(samples) >= 1:
            return samples, total_s, "max_seconds"
        samples.append(ms)
        total_s += ms / 1000.0
    return samples, total_s, "converged"


def _doc(args, profile):
    return {"schema": SCHEMA, "runner": "sim_runner", "runner_version": VERSION, "ok": True, "error": None,
            "command": ["sim_runner.py"] + list(sys.argv[1:]),
            "model": {"path": None, "format": "simulated", "sha256": args.sha},
            "config": {"threads": None, "device": "simulated", "scale": args.scale,
                       "profile_from": profile.get("from")},
            "protocol": {"warmup": args.warmup, "min_iters": args.min_iters, "min_seconds": args.min_seconds,
                         "max_seconds": args.max_seconds},
            "env": {"python": sys.version.split()[0], "hostname": socket.gethostname(), "pid": os.getpid(),
                    "machine": "simulated", "governor": None, "host_busy_note": NO_SENSORS},
            "memory": {"peak_rss_mb": None, "rss_note": NO_SENSORS, "gpu_mem_mb": None, "gpu_mem_note": NO_SENSORS},
            "telemetry": {"nvml": None, "note": NO_SENSORS}, "started_at": _now()}


def _write(doc, out):
    text = json.dumps(doc)
    if out == "-":
        print(text)
        return
    tmp = out + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, out)


def main(argv=None):
    args = _args(argv)
    with open(args.profile) as fh:
        profile = json.load(fh)
    doc = _doc(args, profile)
    if args.fault == "hang":
        time.sleep(args.hang_s)  # the lab's deadline ends it first
    if args.fault != "none":
        doc.update(ok=False, error="simulated device fault: the device stopped answering",
                   finished_at=_now(), timings={"samples_ms": []})
        _write(doc, args.out)
        return 3
    load_ms = (profile.get("load_ms") or 0.0) * args.scale
    first_ms = (profile.get("first_ms") or 0.0) * args.scale
    rng = random.Random(f"{args.device_seed}/{args.seed}/{args.sha}")
    recorded = [float(x) for x in profile["samples_ms"]]
    warm_n, warm_s = _warmup(rng, recorded, args)
    samples, steady_s, reason = _draw(rng, recorded, args)
    time.sleep((load_ms + first_ms) / 1000.0 + warm_s + steady_s)
    med = statistics.median(samples)
    doc["timings"] = {"load_ms": load_ms, "first_ms": first_ms, "warmup_iters": warm_n,
                      "warmup_ms_total": warm_s * 1000.0, "samples_ms": samples,
                      "steady_seconds": steady_s, "converged": reason == "converged", "stop_reason": reason,
                      "rel_ci": None, "clock": "replayed (time.sleep of each drawn sample)", "median_ms": med}
    doc["finished_at"] = _now()
    _write(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
