"""How long `lab advise` takes to answer (target: < 300 ms after the CLI has started).

Two figures:
- in-process: from after argument parsing (the handler is called with parsed args) to the printed
  answer, in a fresh interpreter per repetition (so module imports of the advise path count, which is
  what a user waits for), measured inside that process;
- wall: the whole `python -m lab.cli advise ...` process, for context (interpreter start + CLI
  discovery + the above).

The store is built here: a phone campaign with CPU and NPU rows for a dense CNN (the worked
example), plus `extra` filler jobs so the store is not trivially small. The model is a real zoo
model when it is built under models/ (default mobilenet_v1), else the command fails.

    .venv/bin/python bench/advise_latency.py [--model mobilenet_v1] [--reps 7] [--extra 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INNER = r"""
import sys, time, io, contextlib, os
t0 = time.perf_counter()
if os.environ.get("HWLAB_BENCH_LIBYAML") == "1":  # the proposed lab/core/yamlio.py change, measured
    import yaml
    _compose = yaml.compose
    yaml.compose = lambda text, Loader=None: _compose(text, Loader=yaml.CSafeLoader)
from lab.cli import build_parser
parser = build_parser()
args = parser.parse_args(sys.argv[1:])
t1 = time.perf_counter()
c1 = time.process_time()
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = args.func(args)
t2 = time.perf_counter()
c2 = time.process_time()
heavy = [m for m in ("paddle", "pandas", "matplotlib") if m in sys.modules]
print(f"{rc} {(t1 - t0) * 1e3:.2f} {(t2 - t1) * 1e3:.2f} {','.join(heavy) or '-'} {(c2 - c1) * 1e3:.2f}")
"""


def build_store(path: Path, model: str, extra: int) -> None:
    from lab.core.records import Job, Measurement
    from lab.results.store import Store
    store = Store(path)

    def job(i, device, backend, proc, m=model, campaign="phone"):
        return Job(job_id=f"{campaign}-{i:06d}", campaign=campaign, device=device, chip="kirin990",
                   model=m, model_sha256="f" * 64, backend=backend, processor=proc,
                   precision="fp32", threads=4)
    jobs = [(job(0, "mate30", "paddle-lite-arm", "cpu"),
             dict(p50_ms=30.0, ci_low_ms=29.5, ci_high_ms=30.6, load_ms=60.0, first_ms=45.0)),
            (job(1, "mate30", "paddle-lite-kirin-npu", "aipu"),
             dict(p50_ms=6.0, ci_low_ms=5.9, ci_high_ms=6.2, load_ms=1800.0, first_ms=60.0))]
    for i in range(extra):
        jobs.append((job(i + 10, f"dev{i % 50}", "paddle-lite-arm", "cpu", m=f"m{i % 40}",
                         campaign="filler"), dict(p50_ms=10.0 + i % 7)))
    store.plan_jobs(j for j, _ in jobs)
    for j, m in jobs:
        store.finish_job(j.job_id, "ok", measurement=Measurement(job_id=j.job_id, **m))
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v1")
    ap.add_argument("--models-root", default=str(REPO / "models"))
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--extra", type=int, default=2000, help="filler jobs in the store")
    ap.add_argument("--libyaml", action="store_true",
                    help="measure with yamlio composing through LibYAML (CSafeLoader), the change "
                         "proposed for lab/core/yamlio.py; in-process figure only")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="advise-bench-"))
    store = tmp / "lab.sqlite"
    build_store(store, a.model, a.extra)
    devices = tmp / "devices.yaml"
    devices.write_text("devices:\n  - {id: mate30, chip: kirin990, transport: adb, serial: "
                       "'10.0.0.5:5555', abi: arm64-v8a, benchmark_bin: /x/bb,\n"
                       "     nnadapter_libs: {huawei_kirin_npu: /x/kirin}}\n")
    argv = ["--devices", str(devices), "--store", str(store), "advise", "--models-root",
            a.models_root, "--model", a.model, "--device", "mate30", "--format", "json"]
    env = dict(os.environ, PYTHONPATH=str(REPO), HWLAB_BENCH_LIBYAML="1" if a.libyaml else "0")
    inproc, parse, wall, cpu = [], [], [], []
    for _ in range(a.reps):
        r = subprocess.run([sys.executable, "-c", INNER, *argv], cwd=REPO, env=env,
                           capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.strip():
            print(r.stderr, file=sys.stderr)
            return 1
        rc, p_ms, a_ms, heavy, c_ms = r.stdout.split()
        cpu.append(float(c_ms))
        assert rc == "0" and heavy == "-", (rc, heavy)
        parse.append(float(p_ms))
        inproc.append(float(a_ms))
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "lab.cli", *argv], cwd=REPO, env=env,
                           capture_output=True, text=True)
        wall.append((time.perf_counter() - t) * 1e3)
        assert r.returncode == 0 and json.loads(r.stdout)["verdict"], r.stderr
    med = statistics.median
    print(json.dumps({"model": a.model, "reps": a.reps, "store_jobs": a.extra + 2,
                      "answer_ms_median": round(med(inproc), 1), "answer_ms_max": round(max(inproc), 1),
                      "answer_cpu_ms_median": round(med(cpu), 1),
                      "load_average_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
                      "cli_start_and_parse_ms_median": round(med(parse), 1),
                      "wall_ms_median": round(med(wall), 1), "wall_ms_max": round(max(wall), 1),
                      "heavy_imports": "none", "target_ms": 300, "libyaml_patch": a.libyaml,
                      "ok": max(inproc) < 300}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
