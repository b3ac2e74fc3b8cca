#!/usr/bin/env python3
"""Real-GPU check of the NVML telemetry path (issue 5). NOT RUN in the session that wrote it
(no GPU was lent); a session with an NVIDIA GPU runs it once (about 45 s):

    .venv/bin/python bench/nvml_check.py --idle 8 --load 20 [--out nvml_check.json]

Starts lab/runners/nvml_sampler.py as its own process at 20 Hz, records an idle baseline, then a
matmul loop (torch if importable, else paddle) with a synchronised iteration count, and reports
idle W, load W, energy per iteration (counter difference), device and per-process memory,
clocks-event reasons, and whether the counter energy and the trapezoid of sampled power agree
within 5 % (exit 1 when they do not, 2 when no GPU/pynvml).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.telemetry.energy import energy_between  # noqa: E402
from lab.telemetry.figures import Window, analyze  # noqa: E402
from lab.telemetry.power import PowerSeries, nvml_series  # noqa: E402
from lab.telemetry.trace import parse_trace  # noqa: E402

clock = lambda: time.clock_gettime(time.CLOCK_BOOTTIME)  # noqa: E731 - the sampler's clock


def matmul_loop(seconds: float):
    """(framework, iterations, t_start, t_end) of a synchronised bf16/fp16 8192^2 matmul loop."""
    try:
        import torch
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        sync, step, fw = torch.cuda.synchronize, (lambda: a @ b), f"torch {torch.__version__}"
    except ImportError:
        import paddle
        paddle.set_device("gpu")
        a = paddle.randn([8192, 8192]).astype("float16")
        b = paddle.randn([8192, 8192]).astype("float16")
        sync = paddle.device.cuda.synchronize
        step, fw = (lambda: paddle.matmul(a, b)), f"paddle {paddle.__version__}"
    for _ in range(5):
        step()
    sync()
    n, t0 = 0, clock()
    while clock() - t0 < seconds:
        for _ in range(10):
            step()
        sync()
        n += 10
    return fw, n, t0, clock()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=float, default=8.0)
    ap.add_argument("--load", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nvml_check_"))
    trace, stop = tmp / "nvml.txt", tmp / "stop"
    proc = subprocess.Popen([sys.executable, str(ROOT / "lab/runners/nvml_sampler.py"), "-o",
                             str(trace), "-r", str(args.rate), "-s", str(stop), "--pid",
                             str(os.getpid()), "-M", "600"])
    time.sleep(1.0)
    head = trace.read_text() if trace.exists() else ""
    if "# unavailable nvml" in head:
        print(head)
        proc.wait(5)
        return 2
    t_idle0 = clock()
    time.sleep(args.idle)
    t_idle1 = clock()
    fw, n, t0, t1 = matmul_loop(args.load)
    time.sleep(1.0)
    stop.touch()
    proc.wait(10)
    tr = parse_trace(trace.read_text())
    res = analyze(tr, [Window(t0, t1, n)], (t_idle0, t_idle1), idle_s_wanted=args.idle)
    counter = nvml_series(tr)
    gpu = next(c.name.split(".")[1] for c in tr.columns if c.name.endswith(".power"))
    pt, pv = tr.series(f"nvml.{gpu}.power")
    sampled = PowerSeries("sampled", "nvml power", "nvml", list(pt),
                            power_w=[v * 1e-3 if isinstance(v, float) else None for v in pv])
    e_counter = energy_between(counter, t0, t1) if counter.kind == "counter" else None
    e_trap = energy_between(sampled, t0, t1)
    agree = (abs(e_counter - e_trap) / e_counter) if e_counter and e_trap else None
    report = {
        "device": tr.info.get(f"nvml.{gpu}.name"), "driver": tr.info.get("nvml.driver"),
        "framework": fw, "iterations": n, "load_s": round(t1 - t0, 3),
        "idle_w": res.idle_w, "load_w": res.power_w, "energy_mj_per_iter": res.energy_mj_per_inf,
        "energy_net_mj_per_iter": res.energy_net_mj_per_inf,
        "counter_j": e_counter, "trapezoid_j": e_trap, "counter_vs_trapezoid": agree,
        "gpu_mem_mb": res.gpu_mem_mb, "throttled": res.throttled,
        "throttle_reasons": res.throttle_reasons, "temp_start_c": res.temp_start_c,
        "temp_max_c": res.temp_max_c, "sensor_period_s": res.sensor_period_s,
        "power_source": res.power_source, "note": res.power_note,
        "command": " ".join(sys.argv)}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0 if agree is not None and agree <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
