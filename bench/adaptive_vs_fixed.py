"""Adaptive stopping vs Paddle Lite's documented fixed protocol: device-seconds for the same CI.

Why: benchmark_bin's docs and tools run a fixed `--warmup` / `--repeats` (the figure quoted here is
warmup 20, repeats 600). The lab instead stops when min iterations, min seconds and a target
relative 95% CI of the median are all met. This bench measures what each costs on this machine,
per model, all with the real runner (lab/runners/pi_runner.py) in fresh processes:

  fixed        --warmup 20 --warmup-seconds 0 --min-iters 600 --max-iters 600 (no CI target):
               Paddle Lite's protocol; its achieved relative CI half-width r_fixed is computed from
               its 600 samples with the runner's own order-statistic rule.
  adaptive=    the lab's defaults (warmup 10 iterations and 1 s, min 50 iterations, min 2 s) with
               --target-rel-ci r_fixed: the seconds the lab needs for the SAME CI width.
  adaptive 2%  the lab's default target (0.02), for context.

device-seconds = warm-up wall time + steady-state wall time, as reported by the runner (process
start, `import paddle` and predictor load are the same for every protocol and are excluded; the
process wall time is printed too).

Usage: .venv/bin/python bench/adaptive_vs_fixed.py [--models mobilenet_v1,resnet18,tiny_mlp] [--repeats 1]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RUNNER = REPO / "lab" / "runners" / "pi_runner.py"


def _runner_module():
    from lab.runners import pi_runner  # the package import: pi_runner finds its runner_core beside it
    return pi_runner


def run(model, params, inputs, extra, tmp, tag, threads):
    out = Path(tmp) / f"{tag}.json"
    cmd = [sys.executable, str(RUNNER), "--model-file", str(model), "--params-file", str(params),
           "--threads", str(threads), "--onednn", "on", "--out", str(out)] + extra
    for name, shape, dtype in inputs:
        cmd += ["--input", f"{name}:{'x'.join(map(str, shape))}:{dtype}"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    doc = json.loads(out.read_text())
    if proc.returncode != 0 or not doc["ok"]:
        raise SystemExit(f"{tag}: runner failed: {doc.get('error')}\n{proc.stderr[-1500:]}")
    t = doc["timings"]
    device_s = (t["warmup_ms_total"] or 0.0) / 1e3 + t["steady_seconds"]
    return {"protocol": tag, "iters": len(t["samples_ms"]), "warmup_iters": t["warmup_iters"],
            "device_s": device_s, "process_wall_s": wall, "rel_ci": t["rel_ci"],
            "converged": t["converged"], "median_ms": sorted(t["samples_ms"])[len(t["samples_ms"]) // 2],
            "command": " ".join(cmd)}


def bench_model(model_id, repeat, tmp, threads, max_seconds):
    from lab.models.build import build
    art = build(model_id, REPO / "models", log=lambda m: print("#", m, file=sys.stderr))
    inputs = [(i.name, list(i.run_shape or i.shape), i.dtype) for i in art.inputs]
    model, params = art.json_path, art.pdiparams_path
    pr = _runner_module()
    fixed = run(model, params, inputs,
                ["--warmup", "20", "--warmup-seconds", "0", "--min-iters", "600", "--max-iters", "600",
                 "--min-seconds", "0", "--max-seconds", "100000", "--target-rel-ci", "1000"],
                tmp, "fixed", threads)
    r_fixed = fixed["rel_ci"]
    lab = ["--warmup", "10", "--warmup-seconds", "1", "--min-iters", "50", "--min-seconds", "2",
           "--max-seconds", str(max_seconds)]
    same = run(model, params, inputs, lab + ["--target-rel-ci", repr(r_fixed)], tmp, "adaptive=", threads)
    two = run(model, params, inputs, lab + ["--target-rel-ci", "0.02"], tmp, "adaptive 2%", threads)
    rows = [fixed, same, two]
    for r in rows:
        r.update(model=model_id, repeat=repeat, target=None)
    same["target"], two["target"] = r_fixed, 0.02
    assert pr.SCHEMA  # the runner under test is the lab's
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v1,resnet18,tiny_mlp")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--nice", type=int, default=0,
                    help="os.nice() increment for this bench and its children (negative needs root)")
    args = ap.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for m in args.models.split(","):
                rows += bench_model(m.strip(), rep, tmp, args.threads, args.max_seconds)
    print("| model | protocol | target rel CI | iterations | device-s | process wall s | median ms | "
          "achieved rel CI | converged |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tgt = "-" if r["target"] is None else f"{r['target']:.4f}"
        print(f"| {r['model']} | {r['protocol']} | {tgt} | {r['iters']} | {r['device_s']:.2f} | "
              f"{r['process_wall_s']:.1f} | {r['median_ms']:.3f} | {r['rel_ci']:.4f} | {r['converged']} |")
    print(f"# load average at end: {os.getloadavg() if hasattr(os, 'getloadavg') else None}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
