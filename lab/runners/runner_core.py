"""The protocol code every travelling runner shares: one definition, travelling with each runner.

Why a companion file: the runners (pi_runner.py, lite_runner.py, ort_runner.py, serving_runner.py)
run on devices with old Pythons and no lab installed, so they cannot import `lab`. Each used to
carry its own copy of the measuring protocol; now a runner travels with this file and nothing else
(lab/runtimes/base.py `push_runner` pushes both into one remote directory, hash-cached). A runner
imports it as ``from . import runner_core`` on the host (as part of the `lab.runners` package) and
as ``import runner_core`` on the device (run as a script, its own directory is sys.path[0]).

Standard library only, Python 3.7+ syntax; functions that need numpy take it as a parameter, so the
host imports this without numpy or any runtime. Nothing here imports a runner.

What is here: the order-statistic CI of the median and percentiles; the warm-up, the adaptive
steady state and the sustained (windowed) loop; the environment probes (CPU model, governor,
frequencies, temperatures, peak RSS, uptime/UTC clocks) and the busy-host probe from /proc; input
spec parsing and seeded random inputs; the compact outputs the host compares (lab/agreement.py);
the runner JSON skeleton (schema ``hwlab.runner/1``, docs/architecture.md), its writer, the
protocol flags, signal handling and the one-line error of a failed trial.
"""
from __future__ import print_function

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

EXIT_FAILED = 3
SUPPORTED_DTYPES = ("float32", "float16", "float64", "int64", "int32", "uint8", "int8", "bool")

OUTPUTS_CHECK_SCHEMA = "hwlab.outputs_check/1"
EVAL_CHECK_SCHEMA = "hwlab.eval_check/1"
WHOLE_MAX = 4096    # outputs up to this many elements travel whole
SAMPLE_SIZE = 1024  # larger ones: elements at flat indices (k * numel) // SAMPLE_SIZE
TOPK = 5

# The measuring protocol's flags, (dest, type, default), in the order runners and hosts write them;
# lab/runtimes passes a job's Protocol through protocol_argv (same attribute names).
PROTOCOL_FLAGS = (("warmup", int, 10), ("warmup_seconds", float, 1.0), ("min_iters", int, 50),
                  ("min_seconds", float, 2.0), ("max_seconds", float, 20.0), ("target_rel_ci", float, 0.02))


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


def percentile_sorted(s, q):
    """Linear-interpolated percentile q (0-100) of sorted samples (numpy's default method)."""
    if not s:
        return None
    pos = (len(s) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


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
        return None, None, "peak RSS unavailable: " + one_line(exc)


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


def one_line(exc):
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


_SHA_CACHE = {}  # (path, size, mtime_ns) per file -> digest: forked trials reuse the runner's


def files_sha256(paths):
    """One sha256 over the files' bytes in order (a single file: that file's sha256). Remembered
    per process while the files' sizes and mtimes stay (run_job hashes once before forking)."""
    key = tuple((p, st.st_size, st.st_mtime_ns) for p, st in ((p, os.stat(p)) for p in paths))
    if key in _SHA_CACHE:
        return _SHA_CACHE[key]
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def record_inputs(doc, specs):
    """The parsed --input specs into the runner JSON's config (distinct names; batch = dim 0)."""
    names = [spec[0] for spec in specs]
    if len(set(names)) != len(names):
        raise RunnerFailure("duplicate --input names: %s" % ", ".join(names))
    doc["config"]["inputs"] = [{"name": n, "shape": sh, "dtype": d} for n, sh, d in specs]
    doc["config"]["batch"] = specs[0][1][0]


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

def parse_input_spec(text, dtypes=SUPPORTED_DTYPES, dynamic=False):
    """'name:1x3x224x224:float32' -> (name, [1, 3, 224, 224], 'float32').

    dtypes: what this runner's runtime takes; dynamic: -1 dims allowed (a server's batch axis).
    """
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise RunnerFailure("bad --input %r: expected name:1x3x224x224:float32" % text)
    name, shape_s, dtype = parts
    try:
        shape = [int(d) for d in shape_s.lower().split("x")]
    except ValueError:
        raise RunnerFailure("bad --input %r: shape %r must be integers joined by 'x'" % (text, shape_s))
    if not shape or any(d <= 0 and not (dynamic and d == -1) for d in shape):
        raise RunnerFailure("bad --input %r: every dimension must be a positive integer%s"
                            % (text, " or -1" if dynamic else ""))
    if dtype not in dtypes:
        raise RunnerFailure("bad --input %r: dtype %r not in %s" % (text, dtype, ", ".join(dtypes)))
    return name, shape, dtype


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


def steady_banner(name, timings, warmup_iters):
    """One progress line on stderr when the steady phase starts (logs; tests wait for it)."""
    sys.stderr.write("%s: steady state (load %.1f ms, first %.1f ms, %d warm-up iterations)\n"
                     % (name, timings["load_ms"], timings["first_ms"], warmup_iters))
    sys.stderr.flush()


def steady_window(doc, loop):
    """Run loop(cpus) as the steady window: stamped on the device's uptime clock (the telemetry
    sampler stamps its lines with the same clock, so power is cut to exactly this window,
    lab/telemetry.py) and with the other processes' share of the CPUs during it (doc env)."""
    cpus = affinity_cpus()
    busy_start = busy_snapshot(cpus)
    up_start = read_uptime()
    result = loop(cpus)
    up_end = read_uptime()
    record_busy(doc, busy_start, busy_snapshot(cpus), cpus)
    if up_start is not None and up_end is not None:
        doc["clock"] = {"name": "uptime", "steady_start": up_start, "steady_end": up_end}
    return result


# ----------------------------------------------------------------------------- Paddle Inference

def paddle_config(pi, model_file, params_file, device, threads, onednn):
    """A paddle.inference Config with the options pi_runner and serving_runner share: quiet glog;
    on CPU no GPU, `threads` math threads, oneDNN on or off under either API name (Paddle 3
    renamed mkldnn to onednn). GPU and precision options are the caller's."""
    config = pi.Config(model_file, params_file)
    if hasattr(config, "disable_glog_info"):
        config.disable_glog_info()
    if device == "cpu":
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if onednn:
            (getattr(config, "enable_onednn", None) or config.enable_mkldnn)()
        else:
            off = getattr(config, "disable_onednn", None) or getattr(config, "disable_mkldnn", None)
            if off is None:
                raise RunnerFailure("this paddle has no disable_mkldnn/disable_onednn: cannot turn oneDNN off")
            off()
    return config


def memory_optim(config, model_file):
    """enable_memory_optim for a legacy .pdmodel only: with a .json (PIR) model it breaks
    create_predictor in Paddle 3.3.1 (paddle.md 4.4). Returns whether it is on."""
    if model_file.endswith(".pdmodel"):
        config.enable_memory_optim()
        return True
    return False


# ------------------------------------------------------------------------------ output checks

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


# ------------------------------------------------------------------------------ the runner JSON

def command_line(default_name, argv):
    """The command recorded in the JSON: this interpreter, the runner's path, its arguments."""
    return [sys.executable or "python3", sys.argv[0] if sys.argv and sys.argv[0] else default_name] + list(argv)


def new_doc(schema, runner, version, command, model, config, protocol, env, clock, gpu_mem_note):
    """The runner JSON skeleton with the environment probed now; `env` adds the runtime's versions.

    Every figure starts as None (unknown), never 0; the runner fills what it measures.
    """
    probed = {"python": platform.python_version(), "numpy": None,
              "hostname": socket.gethostname(), "machine": platform.machine(),
              "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
              "governor": cpu_governor(), "freq_khz_start": cpu_freqs_khz(), "freq_khz_end": None,
              "temps_c_start": thermal_temps_c(), "temps_c_end": None, "pid": os.getpid(),
              "host_busy_share": None}
    probed.update(env)
    return {
        "schema": schema, "runner": runner, "runner_version": version, "ok": False, "error": None,
        "command": list(command), "model": model, "config": config, "protocol": protocol, "env": probed,
        "timings": {"import_ms": None, "load_ms": None, "first_ms": None, "warmup_iters": 0,
                    "warmup_ms_total": None,
                    "samples_ms": [], "steady_seconds": None, "converged": False, "stop_reason": None,
                    "rel_ci": None, "clock": clock},
        "memory": {"peak_rss_mb": None, "rss_source": None, "gpu_mem_mb": None, "gpu_mem_note": gpu_mem_note},
        "telemetry": {"nvml": None},
        "started_at": utc_now(), "finished_at": None,
    }


def finish(doc, out):
    """End-of-run probes, then write the JSON to `out` (atomically), as the last stdout line ('-')
    or to a pipe (an int: a forked trial's file descriptor)."""
    doc["env"]["freq_khz_end"] = cpu_freqs_khz()
    doc["env"]["temps_c_end"] = thermal_temps_c()
    mb, source, note = peak_rss()
    if mb is not None and _ZYGOTE.get("file_rss_mb") is not None:
        mb, source, note = forked_peak_rss(mb)
    doc["memory"]["peak_rss_mb"] = mb
    doc["memory"]["rss_source"] = source
    if note:
        doc["memory"]["rss_note"] = note
    doc["finished_at"] = utc_now()
    text = json.dumps(doc, allow_nan=False)
    if isinstance(out, int):  # a forked trial: the pipe to the runner process (run_job)
        write_fd(out, text + "\n")
    elif out == "-":
        sys.stdout.flush()
        sys.stdout.write("\n" + text + "\n")
        sys.stdout.flush()
    else:
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, out)


def run_measured(name, doc, measure, out, pid_file=None):
    """A runner's life after its arguments: signals, pid file, measure(doc), then the JSON whatever
    happened (KeyboardInterrupt and SIGTERM too: what was measured so far). Returns the exit code."""
    install_signal_handlers()
    if pid_file:
        try:
            with open(pid_file, "w") as fh:
                fh.write("%d\n" % os.getpid())
        except OSError as exc:
            sys.stderr.write(name + ": cannot write pid file: " + one_line(exc) + "\n")
    code = 0
    try:
        measure(doc)
        doc["ok"] = True
    except BaseException as exc:  # KeyboardInterrupt too: still write what was measured
        doc["ok"] = False
        doc["error"] = one_line(exc)
        code = EXIT_FAILED
        sys.stderr.write(name + ": " + doc["error"] + "\n")
    try:
        finish(doc, out)
    except Exception as exc:
        sys.stderr.write(name + ": could not write result: " + one_line(exc) + "\n")
        code = EXIT_FAILED
    return code


# ------------------------------------------------------------ one runner process per job (issue 23)
# Why: a fresh process per trial pays the interpreter, the runtime's import (1.5-6 s for paddle)
# and the model's sha256 again on every trial. With `--trials N --process fork` this process
# imports the runtime once (timings.import_ms: a Python service's "load"), then forks one child per
# trial; the child creates the predictor, so load_ms is still a cold predictor made in a process
# that never made one. A fork copies one thread only: any pool that exists before it (OpenBLAS,
# oneDNN/OpenMP, CUDA, a runtime's own) would be missing in the child, its locks maybe held. So the
# thread count is read from /proc just before each fork; with more than one thread (or no /proc)
# the trials run as fresh processes of this runner instead (today's measurement, still one host
# round trip), and every trial's document says why in `notes`.
# Output: one runner document per trial, one per line (JSON lines; one trial = today's file).

PROCESS_CHOICES = ("fork", "fresh")
RUNNER_SCHEMA = "hwlab.runner/1"  # what every Paddle/ORT runner writes (their SCHEMA)
_ZYGOTE = {"import_ms": None}  # set in the runner process before it forks; children inherit it
CHILD_GRACE_S = 2.0  # after the runner is told to stop: how long a trial has to write what it has


def add_job_flags(parser):
    """--trials and --process: the whole job's trials in this one runner process."""
    parser.add_argument("--trials", type=int, default=1,
                        help="run this many trials (seeds --seed, --seed+1, ...; the output checks "
                             "ride on the last); one runner document per trial, one per line")
    parser.add_argument("--process", choices=PROCESS_CHOICES, default="fresh",
                        help="fork: import the runtime once, fork a child per trial (cold predictor "
                             "each); fresh: a new process per trial")


def thread_count():
    """Threads of this process now (/proc/self/task), None where there is no procfs."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def status_mb(key):
    """A /proc/self/status figure (kB) in MB; None where absent."""
    for line in (_read("/proc/self/status") or "").splitlines():
        parts = line.split()
        if line.startswith(key + ":") and len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1]) / 1024.0
    return None


def forked_peak_rss(child_hwm_mb):
    """Peak RSS of a forked trial, comparable with a fresh process's VmHWM: a fork does not copy
    the page tables of file mappings, so the library pages the runner's import made resident are
    not in the child's VmHWM until it touches them again. They are added back: the runner's
    file-backed RSS at the fork minus the child's at its start. An upper bound: a library page the
    trial touches again counts twice (+5-10 % against fresh processes here, docs/benchmarks.md)."""
    extra = max(0.0, _ZYGOTE["file_rss_mb"] - (_ZYGOTE.get("child_file_rss_mb") or 0.0))
    return (child_hwm_mb + extra, "VmHWM+runner library pages",
            "forked trial: VmHWM plus %.1f MB of library pages the runner's import made resident "
            "(an upper bound)" % extra)


def write_fd(fd, text):
    data = text.encode("utf-8")
    while data:
        data = data[os.write(fd, data):]


def timed_import(doc, importer):
    """importer() -> {name: version} (the runtime's imports); records env versions and
    timings.import_ms: in a forked trial the runner process's one import (the modules are already
    loaded here), else this process's own."""
    t0 = time.perf_counter()
    versions = importer()
    own_ms = (time.perf_counter() - t0) * 1e3
    doc["env"].update(versions)
    zygote = _ZYGOTE["import_ms"]
    doc["timings"]["import_ms"] = zygote if zygote is not None else own_ms


def start_zygote(importer):
    """Import the runtime in this process; (fork allowed, note). OpenBLAS (numpy's BLAS) starts a
    pool at import unless told otherwise; numpy's BLAS is never in a timed path here, so it is asked
    for none (an explicit OPENBLAS_NUM_THREADS wins, and is then caught by the thread check)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    t0 = time.perf_counter()
    try:
        importer()
    except Exception:  # noqa - each trial imports again and reports the failure in its document
        return True, None
    _ZYGOTE["import_ms"] = (time.perf_counter() - t0) * 1e3
    why = fork_refusal()
    return why is None, why


def fork_refusal():
    """Why this process must not fork now (None: one thread, fork is safe)."""
    n = thread_count()
    if n == 1:
        return None
    if n is None:
        return "process fork refused: no /proc/self/task to count threads; trials ran as fresh processes"
    return ("process fork refused: the runner had %d threads after importing the runtime (a fork "
            "copies one); trials ran as fresh processes" % n)


def trial_args(args, i):
    """The arguments of trial i of a job: seed + i, one trial, the checks on the last only."""
    import copy
    targs = copy.copy(args)
    targs.seed, targs.trials = args.seed + i, 1
    if i != args.trials - 1:
        for name in ("reference_inputs", "eval_inputs"):
            if hasattr(targs, name):
                setattr(targs, name, None)
    return targs


def _read_child(fd, deadline=None):
    """Everything the child writes to fd until it closes it (or `deadline`, a time.time())."""
    import select
    chunks = []
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.time())
        ready = select.select([fd], [], [], wait)[0]
        if not ready:
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _stop_child(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


def fork_trial(targs, trial):
    """Trial i in a forked child: (its document or None, exit description, interrupted)."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    _ZYGOTE["file_rss_mb"] = status_mb("RssFile")
    pid = os.fork()
    if pid == 0:  # the child: measure, write the document to the pipe, leave without cleanup
        code = EXIT_FAILED
        try:
            _ZYGOTE["child_file_rss_mb"] = status_mb("RssFile")
            os.close(r)
            code = trial(targs, w)
        finally:
            os._exit(code)
    os.close(w)
    interrupted = False
    try:
        text = _read_child(r)
    except BaseException:  # SIGTERM/Ctrl-C of the runner: the child writes what it measured
        interrupted = True
        text = _read_child(r, time.time() + CHILD_GRACE_S)
        if not text:
            _stop_child(pid)
            text = _read_child(r, time.time() + CHILD_GRACE_S)
    os.close(r)
    status = os.waitpid(pid, 0)[1]
    return _parse_trial(text), _exit_text(status), interrupted


def _exit_text(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    return "exit %d" % (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1)


def _parse_trial(text):
    lines = [ln for ln in (text or "").splitlines() if ln.strip().startswith("{")]
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def fresh_trial(args, argv, i, tmpdir):
    """Trial i as a fresh process of this runner (the fallback): (document or None, exit, interrupted)."""
    import subprocess
    out = os.path.join(tmpdir, "t%d.json" % i)
    cmd = [sys.executable or "python3", os.path.abspath(sys.argv[0])] + list(argv) + [
        "--trials", "1", "--process", "fresh", "--seed", str(args.seed + i), "--out", out]
    if i != args.trials - 1:
        cmd += ["--reference-inputs", "", "--eval-inputs", ""]
    proc = subprocess.Popen(cmd)
    interrupted = False
    try:
        code = proc.wait()
    except BaseException:
        interrupted = True
        proc.terminate()
        code = proc.wait()
    text = _read(out)
    return _parse_trial(text), "exit %d" % code, interrupted


GPU_REFUSAL = ("process fork refused: --device gpu (a CUDA context must never be inherited by a "
               "fork); trials ran as fresh processes")


def run_job(name, args, argv, trial, importer, model_files=()):
    """A runner's life with --trials/--process: trial(targs, out) -> exit code runs one trial in
    this process (the runner's main before issue 23); returns the exit code for the whole job.
    `model_files` are hashed once before the forks (the trials report the sha256)."""
    if args.trials == 1 and args.process == "fresh":
        return trial(args, args.out)
    if args.trials < 1:
        sys.stderr.write(name + ": --trials must be >= 1\n")
        return EXIT_FAILED
    install_signal_handlers()
    fork, note = False, None
    if args.process == "fork" and getattr(args, "device", "cpu") == "gpu":
        note = GPU_REFUSAL  # the host plans GPU jobs fresh; a hand-run runner is refused too
    elif args.process == "fork":
        fork, note = start_zygote(importer)
    if fork:
        try:
            files_sha256(model_files)
        except OSError:  # a missing file: each trial says so in its document
            pass
    import tempfile
    tmpdir = tempfile.mkdtemp(prefix="hwlab_trials_")
    docs = []
    for i in range(args.trials):
        why = fork_refusal() if fork else None
        if why is not None:  # a thread appeared since the last trial
            fork, note = False, why
        if fork:
            doc, how, interrupted = fork_trial(trial_args(args, i), trial)
        else:
            doc, how, interrupted = fresh_trial(args, argv, i, tmpdir)
        if doc is None:
            doc = {"schema": RUNNER_SCHEMA, "ok": False, "trial": i,
                   "error": "trial %d wrote no result (%s)" % (i, how)}
        doc["trial"] = i
        if note:
            doc.setdefault("notes", []).append(note)
        docs.append(doc)
        if interrupted or not doc.get("ok"):
            break
    import shutil
    shutil.rmtree(tmpdir, ignore_errors=True)
    _ZYGOTE["leave_fast"] = True
    return write_docs(name, docs, args.out, args.trials)


def leave(code):
    """Exit a runner. After run_job's trials, without the interpreter's teardown: the runner
    process holds nothing to clean up, and unloading paddle took ~1 s of every job here."""
    if _ZYGOTE.get("leave_fast"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def write_docs(name, docs, out, trials):
    """The trials' documents, one per line, to `out` (atomically) or stdout ('-')."""
    text = "\n".join(json.dumps(d, allow_nan=False) for d in docs) + "\n"
    try:
        if out == "-":
            sys.stdout.flush()
            sys.stdout.write("\n" + text)
            sys.stdout.flush()
        else:
            with open(out + ".tmp", "w") as f:
                f.write(text)
            os.replace(out + ".tmp", out)
    except Exception as exc:
        sys.stderr.write(name + ": could not write result: " + one_line(exc) + "\n")
        return EXIT_FAILED
    ok = len(docs) == trials and all(d.get("ok") for d in docs)
    return 0 if ok else EXIT_FAILED


# ------------------------------------------------------------------------------ the protocol flags

def add_protocol_flags(parser, max_iters=True):
    """The measuring protocol's flags (PROTOCOL_FLAGS), plus --max-iters where the runner has it."""
    for dest, kind, default in PROTOCOL_FLAGS:
        parser.add_argument("--" + dest.replace("_", "-"), type=kind, default=default)
    if max_iters:
        parser.add_argument("--max-iters", type=int, default=0,
                            help="stop after N steady iterations (0 = no limit); with --target-rel-ci huge "
                                 "this is a fixed-count protocol like benchmark_bin --repeats")


def add_output_flags(parser):
    """--seed, the correctness inputs (--reference-inputs, --eval-inputs) and --out: the flags
    every Paddle/ORT runner shares after the protocol's."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference-inputs", default=None, metavar="FILE.npz",
                        help="after timing, run these inputs (keys in:<name>) and report compact outputs")
    parser.add_argument("--eval-inputs", default=None, metavar="FILE.npz",
                        help="after timing, the argmax of output 0 per sample of this set (in:<name>)")
    parser.add_argument("--out", default="-", help="result JSON path, or - for the last stdout line")


def protocol_argv(protocol):
    """--warmup ... --target-rel-ci from anything with the PROTOCOL_FLAGS attributes (argparse
    namespace, the host's Protocol record): the command line a runner parses back."""
    argv = []
    for dest, _, _ in PROTOCOL_FLAGS:
        argv += ["--" + dest.replace("_", "-"), str(getattr(protocol, dest))]
    return argv


def protocol_doc(args):
    """The JSON's `protocol` object: the flags as parsed (max_iters None when unlimited)."""
    doc = dict((dest, getattr(args, dest)) for dest, _, _ in PROTOCOL_FLAGS)
    if hasattr(args, "max_iters"):
        doc["max_iters"] = args.max_iters or None
    if hasattr(args, "process"):
        doc["process"] = args.process
    return doc


def validate_protocol(args):
    """The protocol flags' own rules (one-line RunnerFailure)."""
    max_iters = getattr(args, "max_iters", 0)
    if max_iters and max_iters < max(1, args.min_iters):
        raise RunnerFailure("--max-iters (%d) must be >= --min-iters (%d)" % (max_iters, args.min_iters))
    for dest in ("warmup", "min_iters", "max_iters", "warmup_seconds", "min_seconds", "max_seconds"):
        if getattr(args, dest, 0) < 0:
            raise RunnerFailure("--%s must be >= 0" % dest.replace("_", "-"))
    if args.target_rel_ci <= 0:
        raise RunnerFailure("--target-rel-ci must be > 0")


# ------------------------------------------------------------- output and eval checks (after timing)
def sample_feeds(np, input_names, path, what):
    """(file sha256, [{input name: array}] per sample) of an .npz set (keys in:<input name>, N x run
    shape); a set that does not fit the model is a RunnerFailure naming both."""
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
    return file_sha, [dict((name, np.ascontiguousarray(feeds[name][i])) for name in input_names)
                      for i in range(counts.pop())]


def outputs_check(np, run_one, input_names, output_names, path):
    """Feed each reference sample with `run_one(feed) -> [outputs]` (not the timed loop) and
    return the ``outputs_check`` document the host compares with its fp32 reference."""
    t0 = time.perf_counter()
    file_sha, samples = sample_feeds(np, input_names, path, "reference inputs")
    outputs = [[compact_output(np, o) for o in run_one(feed)] for feed in samples]
    return {"schema": OUTPUTS_CHECK_SCHEMA, "n": len(outputs), "file_sha256": file_sha,
            "output_names": list(output_names), "outputs": outputs, "seconds": time.perf_counter() - t0}


def eval_check(np, run_one, input_names, path):
    """Feed each eval sample: argmax of the first output per sample (labels stay on the host)."""
    t0 = time.perf_counter()
    file_sha, samples = sample_feeds(np, input_names, path, "eval inputs")
    argmax, classes = [], None
    for feed in samples:
        flat = np.asarray(run_one(feed)[0]).ravel()
        classes = int(flat.size)
        argmax.append(int(np.argmax(flat)))
    return {"schema": EVAL_CHECK_SCHEMA, "n": len(argmax), "file_sha256": file_sha,
            "classes": classes, "argmax": argmax, "seconds": time.perf_counter() - t0}
