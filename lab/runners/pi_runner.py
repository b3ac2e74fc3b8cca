#!/usr/bin/env python3
"""Paddle Inference runner: one trial of one model, in its own process, on the device.

Why standalone: this file is copied alone to servers and boards (old Debian, Python 3.7+), so it
imports only the standard library, numpy and paddle (paddle/numpy lazily, so the host can import it
for its constants without paddle). It writes one JSON document, schema ``hwlab.runner/1``
(docs/architecture.md), to ``--out PATH`` or as the last stdout line with ``--out -``.

What is measured, in this order:
  load_ms   wall time of ``Config(...)`` + option setup + ``create_predictor`` (model load + graph
            optimisation). Python/paddle import time is NOT included.
  first_ms  the first inference: ``copy_from_cpu`` of every input + ``run()`` + ``copy_to_cpu`` of
            every output (the "load to first prediction" path an app sees).
  warm-up   at least ``--warmup`` iterations AND at least ``--warmup-seconds``.
  steady    until min iterations, min seconds AND the target relative 95% CI of the median are all
            met (checked every ~10 iterations, less often for very fast models so that the check
            stays O(n log n) overall), else stop at ``--max-seconds`` with converged=false
            (stop_reason "max_seconds"). ``--max-iters N`` adds a count limit (stop_reason
            "max_iters"), which with a huge target gives benchmark_bin's fixed --repeats protocol.

Timing choice (kept identical in bench/harness_overhead.py's bare loop): like Paddle Lite's
benchmark_bin, inputs are copied in once (during the first inference) and stay set; each warm-up
and steady sample is ``time.perf_counter()`` around ``predictor.run()`` alone. Outputs are NOT
copied out per iteration: on CPU ``run()`` returns after the computation, so a per-iteration
``copy_to_cpu`` would only add a memcpy that depends on output size, not on the chip. The outputs
are copied out once more after the steady phase, as a check that the predictor still works.
On GPU, ``run()`` of Paddle Inference synchronises its stream before returning (unverified here: no
GPU in this lab's CI).

CI of the median: distribution-free, from order statistics. For n sorted samples the interval
[x_(l), x_(u)] with l, u from Binomial(n, 1/2) covers the true median with probability >= 95%.
The relative CI reported is the half-width (x_(u) - x_(l)) / 2 divided by the sample median.

Output check (``--reference-inputs FILE.npz``): AFTER timing, the runner feeds each sample of the
host's reference input set (keys ``in:<input name>``, arrays N x run shape) and writes compact
outputs into ``outputs_check`` (compact_output: whole values for outputs up to WHOLE_MAX elements,
else a fixed strided sample of SAMPLE_SIZE elements; top-k, argmax, sum, sum of squares). The host
compares them with its fp32 reference (lab/agreement.py); the time it took is reported so its share
of the job's device time is known. Eval set (``--eval-inputs FILE.npz``, same layout, no labels:
they stay on the host): after that, the argmax of the first output per sample goes into
``eval_check``; the host scores it against the labels (lab/accuracy.py).

Precision int8: on CPU oneDNN int8 (``enable_onednn_int8``) over a quantised model
(quantize_linear/dequantize_linear ops from lab/quantize.py); on GPU TensorRT int8 with the
model's own scales (``use_calib_mode=False``: no calibration on the device).

Any exception (and SIGTERM) ends in ok=false, a one-line error, exit code 3, and a JSON document
with whatever was measured so far.
"""
from __future__ import print_function

import argparse
import gc
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
RUNNER = "pi_runner"
RUNNER_VERSION = "1.0.0"
EXIT_FAILED = 3

OUTPUTS_CHECK_SCHEMA = "hwlab.outputs_check/1"
EVAL_CHECK_SCHEMA = "hwlab.eval_check/1"
WHOLE_MAX = 4096    # outputs up to this many elements travel whole
SAMPLE_SIZE = 1024  # larger ones: elements at flat indices (k * numel) // SAMPLE_SIZE
TOPK = 5

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


def model_sha256(model_file, params_file):
    h = hashlib.sha256()
    for path in (model_file, params_file):
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


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


def build_parser():
    p = argparse.ArgumentParser(prog="pi_runner.py", description="Paddle Inference runner (hwlab)")
    p.add_argument("--model-file", required=True, help=".json (PIR) or .pdmodel (legacy)")
    p.add_argument("--params-file", required=True)
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="e.g. x:1x3x224x224:float32 (repeatable)")
    p.add_argument("--vocab-max", type=int, default=1000, help="int inputs are random in [0, N)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onednn", choices=("on", "off"), default="on")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--gpu-id", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--trt", action="store_true", help="TensorRT subgraphs (paddle-inference-trt)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--min-iters", type=int, default=50)
    p.add_argument("--max-iters", type=int, default=0,
                   help="stop after N steady iterations (0 = no limit); with --target-rel-ci huge this is "
                        "a fixed-count protocol like benchmark_bin --repeats")
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--target-rel-ci", type=float, default=0.02)
    p.add_argument("--sustained-s", type=float, default=0.0,
                   help="run continuously for this many seconds instead of the converging steady "
                        "phase, reporting per --window-s window (0 = off)")
    p.add_argument("--window-s", type=float, default=0.0, help="window length of a sustained run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference-inputs", default=None, metavar="FILE.npz",
                   help="after timing, run these inputs (keys in:<name>) and report compact outputs")
    p.add_argument("--eval-inputs", default=None, metavar="FILE.npz",
                   help="after timing, the argmax of output 0 per sample of this set (in:<name>)")
    p.add_argument("--out", default="-", help="result JSON path, or - for the last stdout line")
    p.add_argument("--pid-file", default=None,
                   help="write this process's PID here (the NVML sampler attributes GPU memory to it)")
    p.add_argument("--profile-ops", action="store_true",
                   help="per-operator profile of the steady iterations (Config.enable_profile); the "
                        "table goes into the JSON as op_profile. Use for an extra trial, never a timed one")
    return p


def model_format(path):
    if path.endswith(".json"):
        return "json"
    if path.endswith(".pdmodel"):
        return "pdmodel"
    raise RunnerFailure("model file %r must end in .json (Paddle 3 PIR) or .pdmodel (legacy)" % path)


def validate(args):
    if args.threads < 1:
        raise RunnerFailure("--threads must be >= 1, got %d" % args.threads)
    if args.device == "cpu" and args.precision not in ("fp32", "int8"):
        raise RunnerFailure("precision %s is not supported on --device cpu (fp32, or int8 with oneDNN); "
                            "use --device gpu" % args.precision)
    if args.device == "cpu" and args.precision == "int8" and args.onednn != "on":
        raise RunnerFailure("precision int8 on CPU runs through oneDNN int8: drop --onednn off")
    if args.trt and args.device != "gpu":
        raise RunnerFailure("--trt needs --device gpu")
    if args.device == "gpu" and args.precision == "int8" and not args.trt:
        raise RunnerFailure("precision int8 needs --trt (TensorRT); Paddle Inference GPU alone is fp32/fp16")
    if args.max_iters and args.max_iters < max(1, args.min_iters):
        raise RunnerFailure("--max-iters (%d) must be >= --min-iters (%d)" % (args.max_iters, args.min_iters))
    for name in ("warmup", "min_iters", "max_iters"):
        if getattr(args, name) < 0:
            raise RunnerFailure("--%s must be >= 0" % name.replace("_", "-"))
    for name in ("warmup_seconds", "min_seconds", "max_seconds"):
        if getattr(args, name) < 0:
            raise RunnerFailure("--%s must be >= 0" % name.replace("_", "-"))
    if args.target_rel_ci <= 0:
        raise RunnerFailure("--target-rel-ci must be > 0")
    if args.sustained_s < 0 or (args.sustained_s > 0 and not 0 < args.window_s <= args.sustained_s):
        raise RunnerFailure("--sustained-s must be >= 0, and with it 0 < --window-s <= --sustained-s")
    if args.vocab_max < 1:
        raise RunnerFailure("--vocab-max must be >= 1")
    if not args.input:
        raise RunnerFailure("at least one --input name:shape:dtype is required")


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


def make_config(pi, args, fmt, doc):
    """Build the paddle_infer.Config; records memory_optim in doc['config']."""
    config = pi.Config(args.model_file, args.params_file)
    if hasattr(config, "disable_glog_info"):
        config.disable_glog_info()
    if args.device == "cpu":
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(args.threads)
        if args.onednn == "on":
            on = getattr(config, "enable_onednn", None) or config.enable_mkldnn
            on()
            if args.precision == "int8":
                on8 = getattr(config, "enable_onednn_int8", None) or getattr(config, "enable_mkldnn_int8", None)
                if on8 is None:
                    raise RunnerFailure("this paddle has no enable_onednn_int8: cannot run int8 on CPU")
                on8()
        else:
            off = getattr(config, "disable_onednn", None) or getattr(config, "disable_mkldnn", None)
            if off is None:
                raise RunnerFailure("this paddle has no disable_mkldnn/disable_onednn: cannot turn oneDNN off")
            off()
    else:
        prec = pi.PrecisionType
        gpu_prec = prec.Half if (args.precision == "fp16" and not args.trt) else prec.Float32
        config.enable_use_gpu(256, args.gpu_id, gpu_prec)
        if args.trt:
            trt_prec = {"fp32": prec.Float32, "fp16": prec.Half, "int8": prec.Int8}[args.precision]
            # use_calib_mode defaults to True in the binding (paddle.md 4.2): we never calibrate here.
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=doc["config"]["batch"],
                                          min_subgraph_size=3, precision_mode=trt_prec,
                                          use_static=False, use_calib_mode=False)
    # Paddle 3.3.1: enable_memory_optim + a .json (PIR) model breaks create_predictor
    # (paddle.md 4.4); with a legacy .pdmodel it works.
    if fmt == "pdmodel":
        config.enable_memory_optim()
        doc["config"]["memory_optim"] = True
    else:
        doc["config"]["memory_optim"] = False
    return config


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


def percentile_sorted(s, q):
    """Linear-interpolated percentile q (0-100) of sorted samples (numpy's default method)."""
    if not s:
        return None
    pos = (len(s) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def sustained(run, seconds, window_s, target_rel_ci, timings, clock=time.perf_counter,
              uptime=read_uptime, cpus=None, snapshot=busy_snapshot):
    """Run continuously for `seconds`, cut into windows of `window_s` (the last may be shorter).

    Every sample goes to timings["samples_ms"] (the job's figures are over the whole run); each
    window records its iterations, p50/p90, its start/end relative to the run's start
    (t_start_s/t_end_s, perf_counter) and on the device's uptime clock (clock_start/clock_end, the
    telemetry sampler's clock), and the other processes' share of the CPU during it.
    """
    samples = timings["samples_ms"]
    windows = []
    start = clock()
    w_start, w_first, w_up, w_busy = start, 0, uptime(), snapshot(cpus)
    while True:
        t = clock()
        run()
        now = clock()
        samples.append((now - t) * 1e3)
        done = now - start >= seconds
        if now - w_start >= window_s or done:
            ordered = sorted(samples[w_first:])
            up, busy = uptime(), snapshot(cpus)
            windows.append({"idx": len(windows), "t_start_s": w_start - start, "t_end_s": now - start,
                            "clock_start": w_up, "clock_end": up, "n": len(ordered),
                            "p50_ms": median_of_sorted(ordered), "p90_ms": percentile_sorted(ordered, 90),
                            "host_busy_share": busy_share(w_busy, busy)[0]})
            timings["steady_seconds"] = now - start
            w_start, w_first, w_up, w_busy = now, len(samples), up, busy
        if done:
            break
    rel = median_ci(samples)[3]
    timings["steady_seconds"] = clock() - start
    timings["converged"] = rel is not None and rel <= target_rel_ci
    timings["stop_reason"] = "sustained"
    timings["rel_ci"] = rel
    return {"seconds": seconds, "window_s": window_s, "windows": windows}


def measure(args, doc):
    """Fill doc in place; raises on failure (the caller records what was measured)."""
    validate(args)
    specs = [parse_input_spec(t) for t in args.input]
    fmt = model_format(args.model_file)
    doc["model"]["format"] = fmt
    for path, what in ((args.model_file, "model"), (args.params_file, "params")):
        if not os.path.isfile(path):
            raise RunnerFailure("%s file not found: %s" % (what, path))
    doc["model"]["sha256"] = model_sha256(args.model_file, args.params_file)
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise RunnerFailure("duplicate --input names: %s" % ", ".join(names))
    doc["config"]["inputs"] = [{"name": n, "shape": s, "dtype": d} for n, s, d in specs]
    doc["config"]["batch"] = specs[0][1][0]

    import numpy as np
    doc["env"]["numpy"] = np.__version__
    import paddle
    import paddle.inference as pi
    doc["env"]["paddle"] = paddle.__version__
    install_signal_handlers()

    timings = doc["timings"]
    t0 = time.perf_counter()
    config = make_config(pi, args, fmt, doc)
    if args.profile_ops:
        config.enable_profile()
    predictor = pi.create_predictor(config)
    timings["load_ms"] = (time.perf_counter() - t0) * 1e3

    model_inputs = list(predictor.get_input_names())
    missing = [n for n in model_inputs if n not in names]
    extra = [n for n in names if n not in model_inputs]
    if missing or extra:
        raise RunnerFailure("inputs do not match the model: model wants [%s], got [%s]"
                            % (", ".join(model_inputs), ", ".join(names)))
    arrays = make_inputs(np, specs, args.seed, args.vocab_max)
    in_handles = [(predictor.get_input_handle(n), a) for n, a in arrays]
    out_handles = [predictor.get_output_handle(n) for n in predictor.get_output_names()]

    # First inference: copy in + run + copy out.
    t0 = time.perf_counter()
    for h, a in in_handles:
        h.reshape(list(a.shape))
        h.copy_from_cpu(a)
    predictor.run()
    outs = [h.copy_to_cpu() for h in out_handles]
    timings["first_ms"] = (time.perf_counter() - t0) * 1e3
    doc["outputs"] = [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype)}
                      for n, o in zip(predictor.get_output_names(), outs)]

    # Warm-up: count AND time.
    w_iters, w_total = warm_up(predictor.run, args.warmup, args.warmup_seconds, timings)
    # Steady state. One progress line on stderr (logs; tests wait for it).
    sys.stderr.write("pi_runner: steady state (load %.1f ms, first %.1f ms, %d warm-up iterations)\n"
                     % (timings["load_ms"], timings["first_ms"], w_iters))
    sys.stderr.flush()
    # The steady window on the device's uptime clock: the telemetry sampler stamps its lines with
    # the same clock, so power can be cut to exactly this window (lab/telemetry.py).
    cpus = affinity_cpus()
    busy_start = busy_snapshot(cpus)
    if args.profile_ops:
        reset_op_profiler()  # the table then covers the steady iterations only
    up_start = read_uptime()
    if args.sustained_s > 0 and not args.profile_ops:  # the extra profiled run is a fixed count
        doc["sustained"] = sustained(predictor.run, args.sustained_s, args.window_s,
                                     args.target_rel_ci, timings, cpus=cpus)
    else:
        steady_state(predictor.run, args.min_iters, args.min_seconds, args.max_seconds,
                     args.target_rel_ci, args.max_iters, timings)
    up_end = read_uptime()
    record_busy(doc, busy_start, busy_snapshot(cpus), cpus)
    if up_start is not None and up_end is not None:
        doc["clock"] = {"name": "uptime", "steady_start": up_start, "steady_end": up_end}
    # The predictor must still produce outputs after the loop.
    for h in out_handles:
        h.copy_to_cpu()

    if args.reference_inputs:
        doc["outputs_check"] = run_reference_set(np, predictor, model_inputs, args.reference_inputs)
    if args.eval_inputs:
        doc["eval_check"] = run_eval_set(np, predictor, model_inputs, args.eval_inputs)

    if args.device == "gpu":
        try:
            reserved = paddle.device.cuda.max_memory_reserved(args.gpu_id)
            doc["memory"]["gpu_mem_mb"] = reserved / (1024.0 * 1024.0)
            doc["memory"]["gpu_mem_note"] = "paddle allocator max_memory_reserved (this process)"
        except Exception as exc:
            doc["memory"]["gpu_mem_note"] = "unavailable: " + _one_line(exc)

    if args.profile_ops:
        # Paddle prints the table to fd 1 when the predictor is destroyed: destroy it here, with
        # fd 1 captured, while nothing else holds it (the tensor handles do not).
        box = [predictor]
        del predictor
        text = capture_fd1(lambda: (box.pop(), gc.collect()))
        prof = parse_profile_table(text)
        prof["iterations"] = len(timings["samples_ms"])
        prof["steady_ms_total"] = sum(timings["samples_ms"])
        doc["op_profile"] = prof


# ------------------------------------------------------------------------ per-operator profile

def reset_op_profiler():
    """Forget what the profiler saw so far (graph passes, load, first run, warm-up)."""
    import importlib
    for name in ("paddle.base.core", "paddle.fluid.core"):
        try:
            core = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(core, "reset_profiler"):
            core.reset_profiler()
            return
    raise RunnerFailure("this paddle has no core.reset_profiler: the op profile would include loading "
                        "and warm-up")


def _flush_c_stdout():
    """Flush C stdio: with fd 1 on a file, what C++ wrote may still sit in libc's buffer."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:  # no libc symbols (static builds): std::endl flushed most of it anyway
        pass


def capture_fd1(action):
    """Run action() with file descriptor 1 sent to a temporary file; return what was written.

    Also runs it in a temporary working directory: Paddle's profiler writes ./profile.log there.
    """
    import shutil
    import tempfile
    sys.stdout.flush()
    tmpdir = tempfile.mkdtemp(prefix="pi_runner_profile_")
    path = os.path.join(tmpdir, "stdout.txt")
    cwd = os.getcwd()
    saved = os.dup(1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.dup2(fd, 1)
        os.chdir(tmpdir)
        action()
        _flush_c_stdout()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)
        os.chdir(cwd)
    try:
        with open(path) as fh:
            return fh.read()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def parse_profile_table(text):
    """Paddle Inference's profiler report (printed when the predictor is destroyed) -> dict.

    Reads the first `Event Summary` (the report that merges all threads): one event per line,
    `name calls total min max ave ratio`, times in the report's unit (ms). Indented lines are
    nested events, already inside their parent's time: skipped, and counted.
    Returns {"place", "time_unit", "events": [{event, calls, total_ms, min_ms, max_ms, ave_ms,
    ratio}], "nested_skipped"}, or {"error": ...} when there is no such table.
    """
    place, unit, events, nested = None, "ms", [], 0
    in_table = False
    for raw in (text or "").replace("\r", "").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if not in_table:
            if stripped.startswith("Place:") and place is None:
                place = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("Time unit:"):
                unit = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("Event ") and "Calls" in stripped and "Total" in stripped:
                in_table = True
            continue
        if not stripped or stripped.startswith("-"):
            if events or nested:
                break  # the first table ended
            continue
        if line[:1].isspace():
            nested += 1
            continue
        parts = stripped.rsplit(None, 6)
        if len(parts) != 7:
            break
        try:
            nums = [float(x) for x in parts[1:]]
        except ValueError:
            break
        events.append({"event": parts[0], "calls": int(nums[0]), "total_ms": nums[1], "min_ms": nums[2],
                       "max_ms": nums[3], "ave_ms": nums[4], "ratio": nums[5]})
    if not events:
        tail = [x.strip() for x in (text or "").splitlines() if x.strip()][-2:]
        return {"error": "the profiler printed no event table" + (": " + " | ".join(tail) if tail else "")}
    if unit != "ms":
        return {"error": "profiler time unit %r, expected ms" % unit}
    return {"place": place, "time_unit": unit, "events": events, "nested_skipped": nested}


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


def run_reference_set(np, predictor, input_names, path):
    """Feed each reference sample (after timing) and return the ``outputs_check`` document."""
    t0 = time.perf_counter()
    outputs, file_sha, out_names = [], None, predictor.get_output_names()
    for outs, file_sha in feed_samples(np, predictor, input_names, path, "reference inputs"):
        outputs.append([compact_output(np, o) for o in outs])
    return {"schema": OUTPUTS_CHECK_SCHEMA, "n": len(outputs), "file_sha256": file_sha,
            "output_names": list(out_names), "outputs": outputs,
            "seconds": time.perf_counter() - t0}


def run_eval_set(np, predictor, input_names, path):
    """Feed each eval sample (after timing): argmax of the first output, per sample."""
    t0 = time.perf_counter()
    argmax, file_sha, classes = [], None, None
    for outs, file_sha in feed_samples(np, predictor, input_names, path, "eval inputs"):
        flat = np.asarray(outs[0]).ravel()
        classes = int(flat.size)
        argmax.append(int(np.argmax(flat)))
    return {"schema": EVAL_CHECK_SCHEMA, "n": len(argmax), "file_sha256": file_sha,
            "classes": classes, "argmax": argmax, "seconds": time.perf_counter() - t0}


def feed_samples(np, predictor, input_names, path, what):
    """Yield (outputs, file sha256) per sample of an .npz set (keys in:<input name>, N x run shape)."""
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
    n = counts.pop()
    out_names = predictor.get_output_names()
    for i in range(n):
        for name in input_names:
            arr = np.ascontiguousarray(feeds[name][i])
            h = predictor.get_input_handle(name)
            h.reshape(list(arr.shape))
            h.copy_from_cpu(arr)
        predictor.run()
        yield [predictor.get_output_handle(o).copy_to_cpu() for o in out_names], file_sha


def new_doc(args, argv):
    return {
        "schema": SCHEMA, "runner": RUNNER, "runner_version": RUNNER_VERSION,
        "ok": False, "error": None,
        "command": [sys.executable or "python3"] + list(argv),
        "model": {"path": args.model_file, "params_path": args.params_file, "format": None, "sha256": None},
        "config": {"threads": args.threads, "onednn": args.onednn == "on" and args.device == "cpu",
                   "device": args.device, "precision": args.precision, "trt": bool(args.trt),
                   "batch": None, "memory_optim": None, "inputs": [], "seed": args.seed},
        "protocol": {"warmup": args.warmup, "warmup_seconds": args.warmup_seconds,
                     "min_iters": args.min_iters, "min_seconds": args.min_seconds,
                     "max_seconds": args.max_seconds, "target_rel_ci": args.target_rel_ci,
                     "max_iters": args.max_iters or None, "sustained_s": args.sustained_s or None,
                     "window_s": args.window_s or None},
        "env": {"python": platform.python_version(), "paddle": None, "numpy": None,
                "hostname": socket.gethostname(), "machine": platform.machine(),
                "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                "governor": cpu_governor(), "freq_khz_start": cpu_freqs_khz(), "freq_khz_end": None,
                "temps_c_start": thermal_temps_c(), "temps_c_end": None, "pid": os.getpid(),
                "host_busy_share": None},
        "timings": {"load_ms": None, "first_ms": None, "warmup_iters": 0, "warmup_ms_total": None,
                    "samples_ms": [], "steady_seconds": None, "converged": False, "stop_reason": None,
                    "rel_ci": None, "clock": "time.perf_counter around predictor.run()"},
        "memory": {"peak_rss_mb": None, "rss_source": None, "gpu_mem_mb": None,
                   "gpu_mem_note": "no GPU" if args.device == "cpu" else None},
        "telemetry": {"nvml": None},
        "started_at": utc_now(), "finished_at": None,
    }


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


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    doc = new_doc(args, [sys.argv[0] if sys.argv and sys.argv[0] else "pi_runner.py"] + argv)
    install_signal_handlers()
    if args.pid_file:
        try:
            with open(args.pid_file, "w") as fh:
                fh.write("%d\n" % os.getpid())
        except OSError as exc:
            sys.stderr.write("pi_runner: cannot write pid file: " + _one_line(exc) + "\n")
    code = 0
    try:
        measure(args, doc)
        doc["ok"] = True
    except BaseException as exc:  # KeyboardInterrupt too: still write what was measured
        doc["ok"] = False
        doc["error"] = _one_line(exc)
        code = EXIT_FAILED
        sys.stderr.write("pi_runner: " + doc["error"] + "\n")
    try:
        finish(doc, args)
    except Exception as exc:
        sys.stderr.write("pi_runner: could not write result: " + _one_line(exc) + "\n")
        code = EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
