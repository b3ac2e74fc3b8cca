#!/usr/bin/env python3
"""NVML telemetry sampler: a separate process that samples an NVIDIA GPU at a fixed rate.

Why a separate process: the runner's timing loop must not share a thread with sampling, and the
sampler must see the whole job (idle baseline, load, teardown). It travels alone to GPU servers:
standard library + optional pynvml (pip install nvidia-ml-py), Python 3.7+.

Output: the same line format as sampler.sh (see docs/telemetry.md), so lab.telemetry parses both:
  # col nvml.gpu0.energy mJ ...   total energy counter (Volta+), mJ since driver load
  # col nvml.gpu0.power mW ...    power usage (1 s average on Ampere+ except GA100)
  mem_used MB (device), proc_mem MB (runner process / all compute processes), sm_clock MHz,
  temp C, reasons (clocks-event reasons bitmask, decimal)
Without pynvml or a GPU it writes "# unavailable nvml <reason>" and exits 0.
"""
from __future__ import print_function

import argparse
import os
import signal
import sys
import time

VERSION = "1.0.0"


def now_clock():
    """(name, fn): CLOCK_BOOTTIME equals /proc/uptime, the clock sampler.sh uses."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        try:
            time.clock_gettime(time.CLOCK_BOOTTIME)
            return "uptime", lambda: time.clock_gettime(time.CLOCK_BOOTTIME)
        except OSError:
            pass
    return "monotonic", time.monotonic


def read_pids(args):
    pids = set(args.pid or [])
    if args.pid_file:
        try:
            with open(args.pid_file) as fh:
                for tok in fh.read().split():
                    if tok.isdigit():
                        pids.add(int(tok))
        except (IOError, OSError):
            pass
    return pids


class Gpu(object):
    """One GPU handle and which NVML calls work on it (decided on the first read)."""

    def __init__(self, nv, index):
        self.nv = nv
        self.index = index
        self.h = nv.nvmlDeviceGetHandleByIndex(index)
        self.prefix = "nvml.gpu%d" % index
        self.reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        self.mismatch_noted = False
        self.empty_noted = False
        self.pid_file_given = False

    def read(self, pids):
        nv, h = self.nv, self.h
        out = {}
        out["energy"] = _try(lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h))
        out["power"] = _try(lambda: nv.nvmlDeviceGetPowerUsage(h))
        mem = _try(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        out["mem_used"] = None if mem is None else mem.used / 1048576.0
        out["proc_mem"], note = self.proc_mem(pids)
        out["sm_clock"] = _try(lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        out["temp"] = _try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        out["reasons"] = _try(lambda: self.reasons_fn(h)) if self.reasons_fn else None
        return out, note

    def proc_mem(self, pids):
        procs = _try(lambda: self.nv.nvmlDeviceGetComputeRunningProcesses(self.h))
        if procs is None:
            return None, None
        used = [(p.pid, getattr(p, "usedGpuMemory", None)) for p in procs]
        used = [(pid, m) for pid, m in used if isinstance(m, int) and m >= 0 and m < (1 << 62)]
        if not pids:
            note = None
            if self.pid_file_given and used and not self.empty_noted:
                self.empty_noted = True
                note = ("note %s.proc_mem sums all compute processes on the GPU (the pid file "
                        "names no runner pid yet)" % self.prefix)
            return (sum(m for _, m in used) / 1048576.0 if used else None), note
        mine = [m for pid, m in used if pid in pids]
        if mine:
            return sum(mine) / 1048576.0, None
        if used and not self.mismatch_noted:
            self.mismatch_noted = True
            return None, ("note %s.proc_mem runner pid(s) %s not among GPU processes %s "
                          "(container PID namespace?): use the device memory delta"
                          % (self.prefix, sorted(pids), sorted(p for p, _ in used)))
        return None, None


def _try(fn):
    try:
        v = fn()
    except Exception:  # NVMLError_NotSupported, NoPermission, ...: the field is unavailable
        return None
    return v


COLS = [("energy", "mJ"), ("power", "mW"), ("mem_used", "MB"), ("proc_mem", "MB"),
        ("sm_clock", "MHz"), ("temp", "C"), ("reasons", "mask")]


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.3f" % v
    return str(int(v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", type=float, default=20.0, dest="rate", help="samples per second")
    ap.add_argument("-o", dest="out", default="-", help="output file (default stdout)")
    ap.add_argument("-d", type=float, dest="duration", help="stop after SECONDS")
    ap.add_argument("-n", type=int, dest="count", help="stop after COUNT samples")
    ap.add_argument("-s", dest="stopfile", help="stop when this file exists")
    ap.add_argument("-i", dest="index", default="0", help="GPU index or 'all' (default 0)")
    ap.add_argument("--pid", type=int, action="append", help="runner PID (repeatable)")
    ap.add_argument("--pid-file", help="file holding runner PID(s), re-read every sample")
    ap.add_argument("-M", type=float, dest="max_seconds", default=7200.0,
                    help="hard upper bound on run time")
    args = ap.parse_args(argv)
    if args.rate <= 0:
        ap.error("-r must be > 0")

    out = sys.stdout if args.out == "-" else open(args.out, "w")
    clock_name, clock = now_clock()
    w = out.write
    w("# hwlab-sampler 1\n# sampler nvml_sampler %s\n# clock %s\n# rate_hz %g\n# period_s %g\n"
      % (VERSION, clock_name, args.rate, 1.0 / args.rate))

    def finish(reason, n):
        w("# wall_ref %.6f %.6f\n# end %.6f %s %d\n" % (clock(), time.time(), clock(), reason, n))
        out.flush()
        if out is not sys.stdout:
            out.close()
        return 0

    try:
        import pynvml as nv
    except ImportError as exc:
        w("# unavailable nvml pynvml not importable (pip install nvidia-ml-py): %s\n# fields t\n"
          % str(exc).replace("\n", " "))
        return finish("unavailable", 0)
    try:
        nv.nvmlInit()
        count = nv.nvmlDeviceGetCount()
    except Exception as exc:
        w("# unavailable nvml NVML init failed (no NVIDIA driver or GPU?): %s\n# fields t\n"
          % str(exc).replace("\n", " "))
        return finish("unavailable", 0)
    if count < 1:
        w("# unavailable nvml no NVIDIA GPU visible\n# fields t\n")
        return finish("unavailable", 0)
    indices = list(range(count)) if args.index == "all" else [int(args.index)]
    gpus = []
    for i in indices:
        try:
            gpus.append(Gpu(nv, i))
            gpus[-1].pid_file_given = bool(args.pid_file)
        except Exception as exc:
            w("# unavailable nvml.gpu%d %s\n" % (i, str(exc).replace("\n", " ")))
    if not gpus:
        w("# fields t\n")
        return finish("unavailable", 0)

    driver = _try(nv.nvmlSystemGetDriverVersion)
    if driver is not None:
        w("# info nvml.driver %s\n" % _text(driver))
    first = []
    for g in gpus:
        name = _try(lambda: nv.nvmlDeviceGetName(g.h))
        if name is not None:
            w("# info %s.name %s\n" % (g.prefix, _text(name).replace(" ", "_")))
        mx = _try(lambda: nv.nvmlDeviceGetMaxClockInfo(g.h, nv.NVML_CLOCK_SM))
        if mx is not None:
            w("# info %s.sm_clock.max_mhz %s\n" % (g.prefix, mx))
        lim = _try(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(g.h))
        if lim is not None:
            w("# info %s.power_limit_mw %s\n" % (g.prefix, lim))
        vals, _ = g.read(read_pids(args))
        first.append(vals)
        for key, unit in COLS:
            w("# col %s.%s %s nvml\n" % (g.prefix, key, unit))
            if vals[key] is None and key != "proc_mem":
                w("# unavailable %s.%s not supported on this GPU/driver\n" % (g.prefix, key))
    if not (args.pid or args.pid_file):
        w("# note proc_mem sums all compute processes on the GPU (no --pid given)\n")
    w("# fields t %s\n" % " ".join("%s.%s" % (g.prefix, k) for g in gpus for k, _ in COLS))
    w("# wall_ref %.6f %.6f\n" % (clock(), time.time()))
    out.flush()

    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append("signal"))
    period = 1.0 / args.rate
    t0 = clock()
    n = 0
    reason = "signal"
    while True:
        t = clock()
        fields = ["%.6f" % t]
        for g in gpus:
            vals, note = g.read(read_pids(args))
            if note:
                w("# %s\n" % note)
            fields += [fmt(vals[k]) for k, _ in COLS]
        w(" ".join(fields) + "\n")
        out.flush()
        n += 1
        if stop:
            break
        if args.count and n >= args.count:
            reason = "count"
            break
        if args.stopfile and os.path.exists(args.stopfile):
            reason = "stopfile"
            break
        el = clock() - t0
        if args.duration is not None and el >= args.duration:
            reason = "duration"
            break
        if el >= args.max_seconds:
            reason = "max_seconds"
            break
        # keep the schedule (no drift): sleep to the next multiple of the period
        time.sleep(max(0.0, t0 + n * period - clock()))
        if stop:
            break
    try:
        nv.nvmlShutdown()
    except Exception:
        pass
    return finish(reason, n)


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


if __name__ == "__main__":
    sys.exit(main())
