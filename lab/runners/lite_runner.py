#!/usr/bin/env python3
"""Paddle Lite runner: one trial of one `.nb` model through the paddlelite Python API.

For ARM Linux boards that have paddlelite built for their Python (`--with_python=ON`): there is no
aarch64 wheel and no CPython 3.11 wheel on PyPI (shared/reference/paddle.md §2.6), so on this lab's
host the import fails and the runner reports that cleanly (ok=false, exit 3). Phones use
benchmark_bin instead (lab/runtimes/paddle_lite.py).

Travels alone: standard library + numpy + paddlelite (both imported lazily), Python 3.7+.
Writes the same JSON as pi_runner (schema ``hwlab.runner/1``, docs/architecture.md) to ``--out``
(or as the last stdout line with ``--out -``). Timing follows pi_runner: load_ms = MobileConfig
setup + create_paddle_predictor; first_ms = inputs in + run() + outputs out; warm-up by count AND
time; steady samples = perf_counter around run() until min iters, min seconds and the target
relative CI of the median are met, or max seconds (converged=false).
"""
from __future__ import print_function

import argparse
import hashlib
import json
import math
import os
import platform
import signal
import socket
import sys
import time

SCHEMA = "hwlab.runner/1"
RUNNER = "lite_runner"
RUNNER_VERSION = "1.0.0"
EXIT_FAILED = 3
POWER_MODES = {"big": "LITE_POWER_HIGH", "little": "LITE_POWER_LOW", "all": "LITE_POWER_FULL",
               "no-bind": "LITE_POWER_NO_BIND"}
DTYPES = ("float32", "int64", "int32")


class RunnerFailure(Exception):
    """Reported as ok=false with this one-line message."""


def median_ci(samples, confidence=0.95):
    """(median, rel half-width of the order-statistic CI or None) - same rule as pi_runner."""
    s = sorted(samples)
    n = len(s)
    if n == 0:
        return None, None
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    alpha_half = (1.0 - confidence) / 2.0
    cdf, k, lgn = 0.0, 0, math.lgamma(n + 1)
    while k <= n // 2:
        pk = math.exp(lgn - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2.0))
        if cdf + pk > alpha_half:
            break
        cdf += pk
        k += 1
    if k < 1 or k - 1 >= n - k:
        return med, None
    lo, hi = s[k - 1], s[n - k]
    return med, ((hi - lo) / 2.0 / med if med > 0 else None)


def _one_line(exc):
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    if isinstance(exc, RunnerFailure):
        return (first or type(exc).__name__)[:500]
    return ((type(exc).__name__ + ": " + first) if first else type(exc).__name__)[:500]


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def peak_rss_mb():
    text = _read("/proc/self/status") or ""
    for line in text.splitlines():
        if line.startswith("VmHWM:") and len(line.split()) >= 2 and line.split()[1].isdigit():
            return int(line.split()[1]) / 1024.0, "VmHWM"
    return None, None


# ------------------------------------------------------------------------------- busy-host probe
# The same probe as pi_runner.py (runners travel alone, so each carries its copy).
# Why: a benchmark on a host where other processes compete for the CPU measures the competition.
# Share of the CPU time taken by OTHER processes during a window, from /proc:
#   others = (busy jiffies of the CPUs this process may run on, from /proc/stat 'cpuN' lines)
#            - (this process's utime + stime, all its threads, from /proc/self/stat)
#   share  = others / (all jiffies of those CPUs, idle included), clamped to [0, 1].
# busy = user+nice+system+irq+softirq+steal (guest is inside user); idle and iowait are not busy.
# The lab's own telemetry sampler runs beside the runner and counts as "other" (a few % of a core).
# Where /proc/stat or /proc/self/stat is missing the share is None with a note, never 0.

def parse_proc_stat(text, cpus=None):
    """(busy, total) jiffies summed over 'cpuN' lines for N in cpus, or the 'cpu' line when cpus
    is None or no listed CPU has a line. None when the text has no usable line."""
    lines = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("cpu"):
            try:
                lines[parts[0]] = [int(x) for x in parts[1:9]]
            except ValueError:
                continue
    rows = [lines["cpu%d" % c] for c in (cpus or ()) if "cpu%d" % c in lines]
    if not rows and "cpu" in lines:
        rows = [lines["cpu"]]
    if not rows:
        return None
    busy = total = 0
    for v in rows:
        v = (v + [0] * 8)[:8]
        total += sum(v)
        busy += sum(v) - v[3] - v[4]
    return busy, total


def parse_self_stat(text):
    """utime + stime (jiffies) of a /proc/PID/stat line; None when malformed."""
    try:
        fields = text.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), after pid and comm
    except (IndexError, ValueError):
        return None


def affinity_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def busy_snapshot(cpus=None):
    """(busy, total, self) jiffies now, or a string saying why they cannot be read."""
    stat, own = _read("/proc/stat"), _read("/proc/self/stat")
    if stat is None or own is None:
        return "no /proc/stat or /proc/self/stat on this device"
    bt = parse_proc_stat(stat, cpus)
    me = parse_self_stat(own)
    if bt is None or me is None:
        return "cannot parse /proc/stat or /proc/self/stat"
    return bt[0], bt[1], me


def busy_share(a, b):
    """Other processes' share of the CPU time between two snapshots: (share, detail) or (None, why)."""
    if isinstance(a, str) or isinstance(b, str):
        return None, (a if isinstance(a, str) else b)
    d_busy, d_total, d_self = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    if d_total <= 0:
        return None, "no CPU time elapsed in /proc/stat during the window"
    share = min(1.0, max(0.0, float(d_busy - d_self) / d_total))
    return share, {"others_jiffies": d_busy - d_self, "self_jiffies": d_self, "total_jiffies": d_total}


def record_busy(doc, a, b, cpus):
    share, detail = busy_share(a, b)
    doc["env"]["host_busy_share"] = share
    if share is None:
        doc["env"]["host_busy_note"] = detail
    else:
        detail["cpus"] = cpus
        detail["method"] = "/proc/stat busy jiffies of the allowed CPUs minus /proc/self/stat utime+stime"
        doc["env"]["host_busy"] = detail



def utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse_input(text):
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise RunnerFailure("bad --input %r: expected name:1x3x224x224:float32" % text)
    name, shape_s, dtype = parts
    try:
        shape = [int(d) for d in shape_s.lower().split("x")]
    except ValueError:
        raise RunnerFailure("bad --input %r: shape must be integers joined by 'x'" % text)
    if not shape or any(d <= 0 for d in shape):
        raise RunnerFailure("bad --input %r: every dimension must be a positive integer" % text)
    if dtype not in DTYPES:
        raise RunnerFailure("bad --input %r: dtype %r not in %s" % (text, dtype, ", ".join(DTYPES)))
    return name, shape, dtype


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RunnerFailure("bad arguments: " + message)


def build_parser():
    p = _Parser(prog="lite_runner.py", description="one Paddle Lite trial (paddlelite Python API)")
    p.add_argument("--model-file", required=True, help="the .nb made by paddle_lite_opt")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--power-mode", choices=sorted(POWER_MODES), default="no-bind")
    p.add_argument("--nnadapter-device", default=None, help="e.g. rockchip_npu, verisilicon_timvx")
    p.add_argument("--nnadapter-context", default=None)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--min-iters", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--target-rel-ci", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="-")
    return p


def new_doc(argv):
    return {
        "schema": SCHEMA, "runner": RUNNER, "runner_version": RUNNER_VERSION, "ok": False,
        "error": None, "command": [sys.executable or "python3"] + list(argv),
        "model": {"path": None, "format": "nb", "sha256": None},
        "config": {"threads": None, "device": "cpu", "precision": None, "batch": None,
                   "power_mode": None, "nnadapter_device": None, "inputs": []},
        "protocol": {},
        "env": {"python": platform.python_version(), "paddlelite": None, "numpy": None,
                "hostname": socket.gethostname(), "machine": platform.machine(),
                "cpu_count": os.cpu_count(), "pid": os.getpid(), "host_busy_share": None},
        "timings": {"load_ms": None, "first_ms": None, "warmup_iters": 0, "warmup_ms_total": None,
                    "samples_ms": [], "steady_seconds": None, "converged": False,
                    "stop_reason": None, "rel_ci": None,
                    "clock": "time.perf_counter around predictor.run()"},
        "memory": {"peak_rss_mb": None, "rss_source": None, "gpu_mem_mb": None,
                   "gpu_mem_note": "not measured by lite_runner"},
        "telemetry": {"nvml": None}, "started_at": utc_now(), "finished_at": None,
    }


def measure(args, doc):
    doc["model"]["path"] = args.model_file
    doc["config"].update({"threads": args.threads, "power_mode": args.power_mode,
                          "nnadapter_device": args.nnadapter_device,
                          "device": "aipu" if args.nnadapter_device else "cpu"})
    doc["protocol"] = {"warmup": args.warmup, "warmup_seconds": args.warmup_seconds,
                       "min_iters": args.min_iters, "min_seconds": args.min_seconds,
                       "max_seconds": args.max_seconds, "target_rel_ci": args.target_rel_ci}
    if args.threads < 1 or args.min_iters < 1 or args.max_seconds <= 0:
        raise RunnerFailure("threads and min-iters must be >= 1 and max-seconds > 0")
    if not args.input:
        raise RunnerFailure("at least one --input NAME:SHAPE:DTYPE is required")
    specs = [parse_input(t) for t in args.input]
    doc["config"]["inputs"] = [{"name": n, "shape": s, "dtype": d} for n, s, d in specs]
    doc["config"]["batch"] = specs[0][1][0]
    if not os.path.isfile(args.model_file):
        raise RunnerFailure("model file not found: %s" % args.model_file)
    h = hashlib.sha256()
    with open(args.model_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    doc["model"]["sha256"] = h.hexdigest()

    try:
        import numpy as np
        doc["env"]["numpy"] = np.__version__
    except ImportError:
        raise RunnerFailure("numpy is not installed on this device")
    try:
        import paddlelite
        from paddlelite import lite
    except ImportError as exc:
        raise RunnerFailure("paddlelite is not importable on this device (%s): PyPI has wheels only "
                            "for x86_64 CPython 3.7-3.10; on ARM boards build Paddle Lite with "
                            "--with_python=ON" % _one_line(exc))
    doc["env"]["paddlelite"] = getattr(paddlelite, "__version__", None)

    t = doc["timings"]
    t0 = time.perf_counter()
    config = lite.MobileConfig()
    config.set_model_from_file(args.model_file)
    # x86 builds of the API (the PyPI wheel) have neither setter: record that the request was not
    # applied rather than pretend it was
    applied = []
    if hasattr(config, "set_threads"):
        config.set_threads(args.threads)
        applied.append("threads")
    if hasattr(config, "set_power_mode") and hasattr(lite, "PowerMode"):
        config.set_power_mode(getattr(lite.PowerMode, POWER_MODES[args.power_mode]))
        applied.append("power_mode")
    doc["config"]["applied"] = applied
    if "threads" not in applied:
        doc["config"]["threads_note"] = ("this paddlelite build has no MobileConfig.set_threads: "
                                         "it ran with its own default thread count")
    if args.nnadapter_device:
        config.set_nnadapter_device_names([args.nnadapter_device])
        if args.nnadapter_context:
            config.set_nnadapter_context_properties(args.nnadapter_context)
    predictor = lite.create_paddle_predictor(config)
    t["load_ms"] = (time.perf_counter() - t0) * 1e3

    names = list(predictor.get_input_names())
    given = [s[0] for s in specs]
    if sorted(names) != sorted(given):
        raise RunnerFailure("inputs do not match the model: model wants [%s], got [%s]"
                            % (", ".join(names), ", ".join(given)))
    rng = np.random.RandomState(args.seed)
    arrays = {}
    for name, shape, dtype in specs:
        arrays[name] = (rng.randint(0, 1000, size=shape).astype(dtype) if dtype != "float32"
                        else rng.random_sample(size=shape).astype("float32"))
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        predictor.get_input(i).from_numpy(arrays[name])
    predictor.run()
    outs = [predictor.get_output(i).numpy() for i in range(len(predictor.get_output_names()))]
    t["first_ms"] = (time.perf_counter() - t0) * 1e3
    doc["outputs"] = [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype),
                       "mean": float(o.mean()) if o.size else None}
                      for n, o in zip(predictor.get_output_names(), outs)]

    clock, run = time.perf_counter, predictor.run
    w_iters, w_total, w_start = 0, 0.0, clock()
    while w_iters < args.warmup or clock() - w_start < args.warmup_seconds:
        s = clock()
        run()
        w_total += clock() - s
        w_iters += 1
    t["warmup_iters"], t["warmup_ms_total"] = w_iters, w_total * 1e3
    samples = t["samples_ms"]
    cpus = affinity_cpus()
    busy_start = busy_snapshot(cpus)
    up_start = read_uptime()  # the sampler's clock: telemetry cuts power to exactly this window
    start, converged, reason = clock(), False, "max_seconds"
    next_check = 10
    while True:
        s = clock()
        run()
        samples.append((clock() - s) * 1e3)
        elapsed = clock() - start
        if len(samples) >= next_check or elapsed >= args.max_seconds:
            next_check = len(samples) + max(10, len(samples) // 50)
            if len(samples) >= args.min_iters and elapsed >= args.min_seconds:
                rel = median_ci(samples)[1]
                if rel is not None and rel <= args.target_rel_ci:
                    converged, reason = True, "converged"
                    break
            if elapsed >= args.max_seconds:
                break
    t["steady_seconds"] = clock() - start
    up_end = read_uptime()
    if up_start is not None and up_end is not None:
        doc["clock"] = {"name": "uptime", "steady_start": up_start, "steady_end": up_end}
    t["converged"], t["stop_reason"], t["rel_ci"] = converged, reason, median_ci(samples)[1]
    record_busy(doc, busy_start, busy_snapshot(cpus), cpus)


def read_uptime():
    """Seconds since boot from /proc/uptime (None where there is no procfs); as pi_runner."""
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _out_from_argv(argv):
    """--out even when the other arguments are bad, so the host still finds a result there."""
    for i, a in enumerate(argv):
        if a == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--out="):
            return a.split("=", 1)[1]
    return "-"


def _terminate(signum, frame):
    raise RunnerFailure("terminated by signal %d" % signum)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    doc = new_doc([sys.argv[0] if sys.argv and sys.argv[0] else "lite_runner.py"] + argv)
    out, code = _out_from_argv(argv), 0
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            try:
                signal.signal(sig, _terminate)
            except (ValueError, OSError):
                pass
    try:
        args = build_parser().parse_args(argv)
        out = args.out
        measure(args, doc)
        doc["ok"] = True
    except BaseException as exc:
        if isinstance(exc, SystemExit) and not exc.code:  # --help
            return 0
        doc["ok"], doc["error"], code = False, _one_line(exc), EXIT_FAILED
        sys.stderr.write("lite_runner: " + doc["error"] + "\n")
    mb, source = peak_rss_mb()
    doc["memory"]["peak_rss_mb"], doc["memory"]["rss_source"] = mb, source
    doc["finished_at"] = utc_now()
    text = json.dumps(doc, allow_nan=False)
    try:
        if out == "-":
            sys.stdout.write("\n" + text + "\n")
            sys.stdout.flush()
        else:
            with open(out + ".tmp", "w") as f:
                f.write(text + "\n")
            os.replace(out + ".tmp", out)
    except Exception as exc:
        sys.stderr.write("lite_runner: could not write result: " + _one_line(exc) + "\n")
        code = EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
