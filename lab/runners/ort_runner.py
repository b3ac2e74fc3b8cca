#!/usr/bin/env python3
"""ONNX Runtime runner: one trial of one .onnx model, in its own process, on the device.

Why standalone: copied alone to devices (Python 3.7+), so it imports only the standard library,
numpy and onnxruntime (lazily: the host imports it for its constants without onnxruntime). It writes
the same JSON document as pi_runner.py, schema ``hwlab.runner/1`` (docs/architecture.md), with
``runner: ort_runner``, ``model.format: onnx`` and ``env.onnxruntime`` / ``config.providers``.

Same protocol as pi_runner.py (warm-up by count AND time, adaptive steady state on the
order-statistic CI of the median, raw samples, VmHWM), so a Paddle Inference row and an ONNX
Runtime row of the same job differ only in the runtime:
  load_ms   ``SessionOptions`` + ``InferenceSession(...)`` (model load + graph optimisation).
  first_ms  binding every input (numpy -> OrtValue) + ``run_with_iobinding`` + copying every
            output to numpy.
  samples   ``time.perf_counter()`` around ``session.run_with_iobinding(binding)`` alone: inputs
            stay bound, outputs stay in ONNX Runtime's memory (pi_runner times ``predictor.run()``
            with the inputs copied in once and the outputs not copied out: the same work).
Threads: intra-op = ``--threads``, inter-op = 1, ``ORT_SEQUENTIAL``, ``ORT_ENABLE_ALL`` graph
optimisations; pi_runner's ``set_cpu_math_library_num_threads`` is the counterpart.
Providers: ``--device cpu`` -> CPUExecutionProvider; ``--device gpu`` -> CUDAExecutionProvider
(onnxruntime-gpu; refused when the installed onnxruntime has no CUDA provider). ONNX Runtime's CUDA
provider synchronises its stream at the end of each run (unverified here: no GPU in this lab's CI).

Output check (``--reference-inputs FILE.npz``) and eval set (``--eval-inputs FILE.npz``): as in
pi_runner.py, after timing, each sample is fed (``session.run``, outside the timed loop) and the
compact outputs go into ``outputs_check`` (argmax per sample into ``eval_check``); the host compares
them with the model's fp32 Paddle Inference reference (lab/agreement.py).

The block marked MIRROR below is a verbatim copy of pi_runner.py's protocol functions (runners
travel alone, so they cannot import each other); tests/test_ort_runner.py checks that the copies
stay identical.

Any exception (and SIGTERM) ends in ok=false, a one-line error, exit code 3, and a JSON document
with whatever was measured so far.
"""
from __future__ import print_function

import argparse
import glob
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
RUNNER = "ort_runner"
RUNNER_VERSION = "1.0.0"
EXIT_FAILED = 3

OUTPUTS_CHECK_SCHEMA = "hwlab.outputs_check/1"
EVAL_CHECK_SCHEMA = "hwlab.eval_check/1"
WHOLE_MAX = 4096    # outputs up to this many elements travel whole
SAMPLE_SIZE = 1024  # larger ones: elements at flat indices (k * numel) // SAMPLE_SIZE
TOPK = 5

# ================================================================== MIRROR of pi_runner.py (begin)
SUPPORTED_DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint8", "int8", "bool")


class RunnerFailure(Exception):
    """A problem the runner reports as ok=false with this one-line message."""


# ---------------------------------------------------------------- order-statistic CI of the median

_CI_INDEX_CACHE = {}


def median_ci_indices(n, confidence=0.95):
    """0-based (lo, hi) indices into the sorted samples bounding the median's CI, or None.

    Exact binomial bounds (computed in log space with math.lgamma, no scipy): lo is the largest k
    with P(B <= k-1) <= alpha/2 for B ~ Binomial(n, 1/2), and hi = n - 1 - lo by symmetry.
    Coverage is then >= confidence. Returns None when n is too small for any interval (n < 6 at
    95%).
    """
    key = (n, confidence)
    if key in _CI_INDEX_CACHE:
        return _CI_INDEX_CACHE[key]
    alpha_half = (1.0 - confidence) / 2.0
    result = None
    if n >= 1:
        log_norm = n * math.log(2.0)
        lgn = math.lgamma(n + 1)
        cdf = 0.0
        # Start 6 sigma below the mean (sigma = sqrt(n)/2): the mass below is < 1e-8, negligible
        # next to alpha/2, and the walk is O(sqrt(n)) instead of O(n).
        k = max(0, int(n / 2.0 - 3.0 * math.sqrt(n)))  # cdf holds P(B <= k - 1)
        # Walk up while adding P(B = k) keeps the lower tail within alpha/2.
        while k <= n // 2:
            pk = math.exp(lgn - math.lgamma(k + 1) - math.lgamma(n - k + 1) - log_norm)
            if cdf + pk > alpha_half:
                break
            cdf += pk
            k += 1
        # Now P(B <= k - 1) <= alpha/2 < P(B <= k): x_(k) in 1-based terms is the lower bound.
        if k >= 1:
            lo = k - 1  # 0-based index of the k-th order statistic
            hi = n - 1 - lo
            if lo < hi:
                result = (lo, hi)
    _CI_INDEX_CACHE[key] = result
    return result


def median_of_sorted(s):
    n = len(s)
    if n == 0:
        return None
    mid = n // 2
    if n % 2:
        return s[mid]
    return 0.5 * (s[mid - 1] + s[mid])


def median_ci(samples, confidence=0.95, presorted=False):
    """(median, lo, hi, rel_halfwidth) for the samples; lo/hi/rel are None when n is too small."""
    s = samples if presorted else sorted(samples)
    med = median_of_sorted(s)
    idx = median_ci_indices(len(s), confidence)
    if med is None or idx is None:
        return med, None, None, None
    lo, hi = s[idx[0]], s[idx[1]]
    rel = (hi - lo) / 2.0 / med if med > 0 else None
    return med, lo, hi, rel


# ------------------------------------------------------------------------------ environment probes

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return None


def cpu_model():
    text = _read("/proc/cpuinfo")
    if text:
        keys = ("model name", "Hardware", "Processor", "cpu model", "uarch")
        found = {}
        for line in text.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                k, v = k.strip(), v.strip()
                if k in keys and v and k not in found:
                    found[k] = v
        for k in keys:
            if k in found:
                return found[k]
        parts = [line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("CPU part")]
        if parts:
            return "CPU part " + ",".join(sorted(set(parts)))
    return platform.processor() or None


def _cpu_dirs():
    dirs = glob.glob("/sys/devices/system/cpu/cpu[0-9]*")
    return sorted(dirs, key=lambda d: int(os.path.basename(d)[3:]))


def cpu_freqs_khz():
    """{cpuN: scaling_cur_freq kHz} or None where cpufreq is absent (VMs, containers)."""
    out = {}
    for d in _cpu_dirs():
        v = _read(os.path.join(d, "cpufreq", "scaling_cur_freq"))
        if v and v.strip().isdigit():
            out[os.path.basename(d)] = int(v.strip())
    return out or None


def cpu_governor():
    """The scaling governor, 'a,b' when cores differ, None where cpufreq is absent."""
    govs = set()
    for d in _cpu_dirs():
        v = _read(os.path.join(d, "cpufreq", "scaling_governor"))
        if v and v.strip():
            govs.add(v.strip())
    return ",".join(sorted(govs)) if govs else None


def thermal_temps_c():
    """{'zoneN:type': degC} from /sys/class/thermal (millidegrees), None where absent."""
    out = {}
    zones = glob.glob("/sys/class/thermal/thermal_zone[0-9]*")
    for z in sorted(zones, key=lambda p: int(p.rsplit("thermal_zone", 1)[1])):
        raw = _read(os.path.join(z, "temp"))
        if raw is None:
            continue
        try:
            value = int(raw.strip())
        except ValueError:
            continue
        kind = (_read(os.path.join(z, "type")) or "").strip() or "unknown"
        name = "zone" + z.rsplit("thermal_zone", 1)[1] + ":" + kind
        out[name] = value / 1000.0
    return out or None


def peak_rss():
    """(peak RSS in MB, source, note). VmHWM first; ru_maxrss as a fallback; else None."""
    text = _read("/proc/self/status")
    if text:
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    return int(parts[1]) / 1024.0, "VmHWM", None
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports kB, macOS bytes.
        mb = rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0
        return mb, "ru_maxrss", "/proc/self/status has no VmHWM"
    except Exception as exc:  # pragma: no cover - platform specific
        return None, None, "peak RSS unavailable: " + _one_line(exc)


def utc_now():
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % int((now % 1) * 1000)


def read_uptime():
    """Seconds since boot from /proc/uptime (None where there is no procfs)."""
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _one_line(exc):
    text = str(exc).strip().splitlines()
    first = ""
    for line in text:
        if line.strip():
            first = line.strip()
            break
    name = type(exc).__name__
    if isinstance(exc, RunnerFailure):
        msg = first or name
    else:
        msg = (name + ": " + first) if first else name
    return msg[:500]


# --------------------------------------------------------------------------------- argument parsing

def parse_input_spec(text):
    """'name:1x3x224x224:float32' -> (name, [1, 3, 224, 224], 'float32')."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise RunnerFailure("bad --input %r: expected name:1x3x224x224:float32" % text)
    name, shape_s, dtype = parts
    try:
        shape = [int(d) for d in shape_s.lower().split("x")]
    except ValueError:
        raise RunnerFailure("bad --input %r: shape %r must be integers joined by 'x'" % (text, shape_s))
    if not shape or any(d <= 0 for d in shape):
        raise RunnerFailure("bad --input %r: every dimension must be a positive integer" % text)
    if dtype not in SUPPORTED_DTYPES:
        raise RunnerFailure("bad --input %r: dtype %r not in %s" % (text, dtype, ", ".join(SUPPORTED_DTYPES)))
    return name, shape, dtype


# ------------------------------------------------------------------------------------ the measuring

def _terminate(signum, frame):
    raise RunnerFailure("terminated by signal %d" % signum)


def install_signal_handlers():
    """SIGTERM/SIGHUP -> RunnerFailure, so a host timeout still gets the partial JSON.

    Called again after `import paddle`: paddle installs its own failure-signal handlers on import.
    """
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            try:
                signal.signal(sig, _terminate)
            except (ValueError, OSError):  # not the main thread
                pass


def make_inputs(np, specs, seed, vocab_max):
    rng = np.random.RandomState(seed)
    arrays = []
    for name, shape, dtype in specs:
        if dtype in ("int64", "int32", "int8", "uint8"):
            arr = rng.randint(0, vocab_max, size=shape).astype(dtype)
        elif dtype == "bool":
            arr = rng.randint(0, 2, size=shape).astype("bool")
        else:
            arr = rng.random_sample(size=shape).astype(dtype)
        arrays.append((name, arr))
    return arrays


def steady_check_every(n):
    """Iterations between CI checks: ~10, growing with n so total sorting stays O(n log n)."""
    return max(10, n // 50)


def warm_up(run, iters, seconds, timings, clock=time.perf_counter):
    """At least `iters` runs AND at least `seconds`; records warmup_iters / warmup_ms_total."""
    w_iters, w_total = 0, 0.0
    w_start = clock()
    while w_iters < iters or (clock() - w_start) < seconds:
        t = clock()
        run()
        w_total += clock() - t
        w_iters += 1
        timings["warmup_iters"] = w_iters
    timings["warmup_ms_total"] = w_total * 1e3
    return w_iters, w_total


def steady_state(run, min_iters, min_seconds, max_seconds, target_rel_ci, max_iters, timings,
                 clock=time.perf_counter):
    """The measured loop: perf_counter around run() alone, until all stop criteria are met.

    Appends to timings["samples_ms"] as it goes (a SIGTERM still leaves the samples so far) and
    fills steady_seconds, converged, stop_reason, rel_ci. bench/harness_overhead.py calls this very
    function on a shared predictor to measure the loop's own overhead.
    """
    samples = timings["samples_ms"]
    ordered = []  # sorted copy, extended by merging (timsort merges two runs in O(n))
    s_start = clock()
    next_check = steady_check_every(0)
    converged, reason = False, "max_seconds"
    while True:
        t = clock()
        run()
        samples.append((clock() - t) * 1e3)
        n = len(samples)
        elapsed = clock() - s_start
        if max_iters and n >= max_iters:
            rel = median_ci(samples)[3]
            if rel is not None and rel <= target_rel_ci and elapsed >= min_seconds:
                converged, reason = True, "converged"
            else:
                reason = "max_iters"
            break
        if n >= next_check or elapsed >= max_seconds:
            next_check = n + steady_check_every(n)
            if n >= min_iters and elapsed >= min_seconds:
                ordered.extend(sorted(samples[len(ordered):]))
                ordered.sort()
                rel = median_ci(ordered, presorted=True)[3]
                if rel is not None and rel <= target_rel_ci:
                    converged, reason = True, "converged"
                    break
            timings["steady_seconds"] = elapsed
            if elapsed >= max_seconds:
                break
    timings["steady_seconds"] = clock() - s_start
    timings["converged"] = converged
    timings["stop_reason"] = reason
    timings["rel_ci"] = median_ci(samples)[3]
    return timings


def finish(doc, args):
    doc["env"]["freq_khz_end"] = cpu_freqs_khz()
    doc["env"]["temps_c_end"] = thermal_temps_c()
    mb, source, note = peak_rss()
    doc["memory"]["peak_rss_mb"] = mb
    doc["memory"]["rss_source"] = source
    if note:
        doc["memory"]["rss_note"] = note
    doc["finished_at"] = utc_now()
    text = json.dumps(doc, allow_nan=False)
    if args.out == "-":
        sys.stdout.flush()
        sys.stdout.write("\n" + text + "\n")
        sys.stdout.flush()
    else:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)


def compact_output(np, arr):
    """A JSON-able summary of one output tensor that the host can compare (lab/agreement.py).

    Non-finite elements become None in values/sample and are counted in ``nonfinite``.
    """
    flat = np.asarray(arr).astype("float64").ravel()
    n = int(flat.size)
    finite = np.isfinite(flat)
    d = {"shape": [int(x) for x in np.shape(arr)], "numel": n, "nonfinite": int(n - finite.sum())}
    safe = np.where(finite, flat, 0.0)
    d["sum"] = float(safe.sum())
    d["sumsq"] = float((safe * safe).sum())
    if n == 0:
        d.update(values=[], argmax=None, topk=[])
        return d
    ranked = np.where(finite, flat, -np.inf)
    d["argmax"] = int(np.argmax(ranked))
    top = np.argsort(-ranked, kind="stable")[:min(TOPK, n)]
    d["topk"] = [[int(i), float(flat[i]) if finite[i] else None] for i in top]

    def listed(values, ok):
        return [float(v) if good else None for v, good in zip(values.tolist(), ok.tolist())]

    if n <= WHOLE_MAX:
        d["values"] = listed(flat, finite)
    else:
        pick = (np.arange(SAMPLE_SIZE) * n) // SAMPLE_SIZE
        d["sample"] = listed(flat[pick], finite[pick])
    return d


# ------------------------------------------------------------------------------- busy-host probe
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


# ==================================================================== MIRROR (end)


# --------------------------------------------------------------------------- ONNX Runtime specific

PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}
# numpy dtype name -> the ONNX tensor type string onnxruntime reports for an input.
ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "float64": "tensor(double)",
             "int64": "tensor(int64)", "int32": "tensor(int32)", "uint8": "tensor(uint8)",
             "int8": "tensor(int8)", "bool": "tensor(bool)"}


def onnx_sha256(path):
    """sha256 of the .onnx file (weights inside it): the runner JSON's model.sha256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_parser():
    p = argparse.ArgumentParser(prog="ort_runner.py", description="ONNX Runtime runner (hwlab)")
    p.add_argument("--model-file", required=True, help=".onnx model")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="e.g. x:1x3x224x224:float32 (repeatable)")
    p.add_argument("--vocab-max", type=int, default=1000, help="int inputs are random in [0, N)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (inter-op is 1)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--gpu-id", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="what the model holds (int8 = QDQ-quantised .onnx); recorded, not converted")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--min-iters", type=int, default=50)
    p.add_argument("--max-iters", type=int, default=0, help="stop after N steady iterations (0 = no limit)")
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--target-rel-ci", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-inputs", default=None, metavar="FILE.npz",
                   help="after timing, run these inputs (keys in:<name>) and report compact outputs")
    p.add_argument("--eval-inputs", default=None, metavar="FILE.npz",
                   help="after timing, the argmax of output 0 per sample of this set (in:<name>)")
    p.add_argument("--out", default="-", help="result JSON path, or - for the last stdout line")
    p.add_argument("--pid-file", default=None, help="write this process's PID here")
    return p


def validate(args):
    if args.threads < 1:
        raise RunnerFailure("--threads must be >= 1, got %d" % args.threads)
    if not args.model_file.endswith(".onnx"):
        raise RunnerFailure("model file %r must end in .onnx" % args.model_file)
    if args.max_iters and args.max_iters < max(1, args.min_iters):
        raise RunnerFailure("--max-iters (%d) must be >= --min-iters (%d)" % (args.max_iters, args.min_iters))
    for name in ("warmup", "min_iters", "max_iters", "warmup_seconds", "min_seconds", "max_seconds"):
        if getattr(args, name) < 0:
            raise RunnerFailure("--%s must be >= 0" % name.replace("_", "-"))
    if args.target_rel_ci <= 0:
        raise RunnerFailure("--target-rel-ci must be > 0")
    if args.vocab_max < 1:
        raise RunnerFailure("--vocab-max must be >= 1")
    if not args.input:
        raise RunnerFailure("at least one --input name:shape:dtype is required")


def session_options(ort, threads):
    """intra-op = threads, inter-op 1, sequential, all graph optimisations (the lab's rule)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def providers_for(ort, args):
    available = list(ort.get_available_providers())
    wanted = PROVIDERS[args.device]
    if wanted not in available:
        raise RunnerFailure("onnxruntime %s has no %s (available: %s); install %s"
                            % (ort.__version__, wanted, ", ".join(available),
                               "onnxruntime-gpu" if args.device == "gpu" else "onnxruntime"))
    if args.device == "gpu":
        return [(wanted, {"device_id": args.gpu_id}), "CPUExecutionProvider"]
    return [wanted]


def check_inputs(session, specs):
    """The --input specs must name every model input, with its rank, fixed dims and type."""
    model_inputs = session.get_inputs()
    names = [s[0] for s in specs]
    wanted = [i.name for i in model_inputs]
    if sorted(names) != sorted(wanted):
        raise RunnerFailure("inputs do not match the model: model wants [%s], got [%s]"
                            % (", ".join(wanted), ", ".join(names)))
    by_name = dict((s[0], s) for s in specs)
    for inp in model_inputs:
        _, shape, dtype = by_name[inp.name]
        dims = list(inp.shape or [])
        fixed_ok = len(dims) == len(shape) and all(not isinstance(d, int) or d in (-1, s)
                                                   for d, s in zip(dims, shape))
        if not fixed_ok:
            raise RunnerFailure("input %s: shape %s does not fit the model's %s" % (inp.name, shape, dims))
        if ORT_TYPES.get(dtype) != inp.type:
            raise RunnerFailure("input %s: dtype %s but the model wants %s" % (inp.name, dtype, inp.type))


def measure(args, doc):
    """Fill doc in place; raises on failure (the caller records what was measured)."""
    validate(args)
    specs = [parse_input_spec(t) for t in args.input]
    if not os.path.isfile(args.model_file):
        raise RunnerFailure("model file not found: %s" % args.model_file)
    doc["model"]["sha256"] = onnx_sha256(args.model_file)
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise RunnerFailure("duplicate --input names: %s" % ", ".join(names))
    doc["config"]["inputs"] = [{"name": n, "shape": s, "dtype": d} for n, s, d in specs]
    doc["config"]["batch"] = specs[0][1][0]

    import numpy as np
    doc["env"]["numpy"] = np.__version__
    import onnxruntime as ort
    doc["env"]["onnxruntime"] = ort.__version__
    doc["env"]["providers_available"] = list(ort.get_available_providers())
    install_signal_handlers()
    providers = providers_for(ort, args)

    timings = doc["timings"]
    t0 = time.perf_counter()
    session = ort.InferenceSession(args.model_file, sess_options=session_options(ort, args.threads),
                                   providers=providers)
    timings["load_ms"] = (time.perf_counter() - t0) * 1e3
    doc["config"]["providers"] = list(session.get_providers())
    check_inputs(session, specs)
    arrays = make_inputs(np, specs, args.seed, args.vocab_max)
    out_names = [o.name for o in session.get_outputs()]
    where = "cuda" if args.device == "gpu" else "cpu"

    # First inference: bind in + run + copy out.
    t0 = time.perf_counter()
    binding = session.io_binding()
    for name, arr in arrays:
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, where, args.gpu_id))
    for name in out_names:
        binding.bind_output(name, where, args.gpu_id)
    session.run_with_iobinding(binding)
    outs = binding.copy_outputs_to_cpu()
    timings["first_ms"] = (time.perf_counter() - t0) * 1e3
    doc["outputs"] = [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype)}
                      for n, o in zip(out_names, outs)]

    def run():
        session.run_with_iobinding(binding)

    w_iters, _ = warm_up(run, args.warmup, args.warmup_seconds, timings)
    sys.stderr.write("ort_runner: steady state (load %.1f ms, first %.1f ms, %d warm-up iterations)\n"
                     % (timings["load_ms"], timings["first_ms"], w_iters))
    sys.stderr.flush()
    cpus = affinity_cpus()
    busy_start = busy_snapshot(cpus)
    up_start = read_uptime()
    steady_state(run, args.min_iters, args.min_seconds, args.max_seconds, args.target_rel_ci,
                 args.max_iters, timings)
    up_end = read_uptime()
    record_busy(doc, busy_start, busy_snapshot(cpus), cpus)
    if up_start is not None and up_end is not None:
        doc["clock"] = {"name": "uptime", "steady_start": up_start, "steady_end": up_end}
    binding.copy_outputs_to_cpu()  # the session must still produce outputs after the loop
    names = [n for n, _ in arrays]
    if args.reference_inputs:
        doc["outputs_check"] = run_reference_set(np, session, names, args.reference_inputs)
    if args.eval_inputs:
        doc["eval_check"] = run_eval_set(np, session, names, args.eval_inputs)
    if args.device == "gpu":
        doc["memory"]["gpu_mem_note"] = "unavailable: onnxruntime reports no allocator peak (use NVML)"


def run_reference_set(np, session, input_names, path):
    """Feed each reference sample (after timing) and return the ``outputs_check`` document."""
    t0 = time.perf_counter()
    outputs, file_sha = [], None
    for outs, file_sha in feed_samples(np, session, input_names, path, "reference inputs"):
        outputs.append([compact_output(np, o) for o in outs])
    return {"schema": OUTPUTS_CHECK_SCHEMA, "n": len(outputs), "file_sha256": file_sha,
            "output_names": [o.name for o in session.get_outputs()], "outputs": outputs,
            "seconds": time.perf_counter() - t0}


def run_eval_set(np, session, input_names, path):
    """Feed each eval sample (after timing): argmax of the first output, per sample."""
    t0 = time.perf_counter()
    argmax, file_sha, classes = [], None, None
    for outs, file_sha in feed_samples(np, session, input_names, path, "eval inputs"):
        flat = np.asarray(outs[0]).ravel()
        classes = int(flat.size)
        argmax.append(int(np.argmax(flat)))
    return {"schema": EVAL_CHECK_SCHEMA, "n": len(argmax), "file_sha256": file_sha,
            "classes": classes, "argmax": argmax, "seconds": time.perf_counter() - t0}


def feed_samples(np, session, input_names, path, what):
    """Yield (outputs, file sha256) per sample of an .npz set (keys in:<input name>, N x run shape),
    fed with ``session.run`` (not the timed io binding: this is a check, not a measurement)."""
    if not os.path.isfile(path):
        raise RunnerFailure("%s not found: %s" % (what, path))
    with open(path, "rb") as fh:
        file_sha = hashlib.sha256(fh.read()).hexdigest()
    with np.load(path, allow_pickle=False) as z:
        feeds = dict((k[3:], z[k]) for k in z.files if k.startswith("in:"))
    if sorted(feeds) != sorted(input_names):
        raise RunnerFailure("%s %s hold [%s], the model wants [%s]"
                            % (what, path, ", ".join(sorted(feeds)), ", ".join(input_names)))
    counts = set(len(a) for a in feeds.values())
    if len(counts) != 1:
        raise RunnerFailure("%s %s: inputs have different sample counts" % (what, path))
    for i in range(counts.pop()):
        feed = dict((name, np.ascontiguousarray(feeds[name][i])) for name in input_names)
        yield session.run(None, feed), file_sha


def new_doc(args, argv):
    return {
        "schema": SCHEMA, "runner": RUNNER, "runner_version": RUNNER_VERSION,
        "ok": False, "error": None,
        "command": [sys.executable or "python3"] + list(argv),
        "model": {"path": args.model_file, "params_path": None, "format": "onnx", "sha256": None},
        "config": {"threads": args.threads, "onednn": False, "device": args.device,
                   "precision": args.precision, "trt": False, "batch": None, "memory_optim": None,
                   "inputs": [], "seed": args.seed, "intra_op_threads": args.threads,
                   "inter_op_threads": 1, "execution_mode": "sequential",
                   "graph_optimization": "all", "providers": None},
        "protocol": {"warmup": args.warmup, "warmup_seconds": args.warmup_seconds,
                     "min_iters": args.min_iters, "min_seconds": args.min_seconds,
                     "max_seconds": args.max_seconds, "target_rel_ci": args.target_rel_ci,
                     "max_iters": args.max_iters or None},
        "env": {"python": platform.python_version(), "paddle": None, "onnxruntime": None,
                "providers_available": None, "numpy": None,
                "hostname": socket.gethostname(), "machine": platform.machine(),
                "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                "governor": cpu_governor(), "freq_khz_start": cpu_freqs_khz(), "freq_khz_end": None,
                "temps_c_start": thermal_temps_c(), "temps_c_end": None, "pid": os.getpid()},
        "timings": {"load_ms": None, "first_ms": None, "warmup_iters": 0, "warmup_ms_total": None,
                    "samples_ms": [], "steady_seconds": None, "converged": False, "stop_reason": None,
                    "rel_ci": None,
                    "clock": "time.perf_counter around session.run_with_iobinding() (inputs bound once)"},
        "memory": {"peak_rss_mb": None, "rss_source": None, "gpu_mem_mb": None,
                   "gpu_mem_note": "no GPU" if args.device == "cpu" else None},
        "telemetry": {"nvml": None},
        "started_at": utc_now(), "finished_at": None,
    }


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    doc = new_doc(args, [sys.argv[0] if sys.argv and sys.argv[0] else "ort_runner.py"] + argv)
    install_signal_handlers()
    if args.pid_file:
        try:
            with open(args.pid_file, "w") as fh:
                fh.write("%d\n" % os.getpid())
        except OSError as exc:
            sys.stderr.write("ort_runner: cannot write pid file: " + _one_line(exc) + "\n")
    code = 0
    try:
        measure(args, doc)
        doc["ok"] = True
    except BaseException as exc:  # KeyboardInterrupt too: still write what was measured
        doc["ok"] = False
        doc["error"] = _one_line(exc)
        code = EXIT_FAILED
        sys.stderr.write("ort_runner: " + doc["error"] + "\n")
    try:
        finish(doc, args)
    except Exception as exc:
        sys.stderr.write("ort_runner: could not write result: " + _one_line(exc) + "\n")
        code = EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
