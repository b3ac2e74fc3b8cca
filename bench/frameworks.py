"""Paddle Inference vs ONNX Runtime, side by side on one machine, with CIs and agreement.

Why: the deployment guide says Paddle's runtimes beat other frameworks at deployment speed; this
measures it here, whichever way it comes out. Each trial is a fresh process of the lab's own
runner (lab/runners/pi_runner.py or lab/runners/ort_runner.py: same protocol, same timing rule,
same JSON), the runtimes interleaved trial by trial so that the box's load hits both alike.

  paddle-inference fp32   the zoo's PIR .json, oneDNN on, set_cpu_math_library_num_threads(t)
  onnxruntime fp32        paddle2onnx export (opset 13) of the same model, intra-op t, inter-op 1,
                          sequential, all graph optimisations
  onnxruntime int8        ONNX Runtime quantize_static (QDQ, per-channel, 16 seeded calibration
                          inputs) of that .onnx

Per (model, threads, runtime): median and 95% CI over the pooled samples of all trials
(lab.results.stats.summarize, hierarchical bootstrap), load and first-inference medians, and the
ratio Paddle / ONNX Runtime with its CI (lab.results.stats.compare). Agreement comes from the export
record (models/<id>/onnx/export.json). Direct runner calls for now: the job-path integration
(backends onnxruntime-cpu/-gpu in a campaign) comes with the runtime contract.

Usage: .venv/bin/python bench/frameworks.py [--models mobilenet_v1,resnet18] [--threads 1,2]
       [--trials 3] [--root models] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.models.build import build  # noqa: E402
from lab.results import stats  # noqa: E402
from lab.convert import onnx_out  # noqa: E402

RUNNERS = REPO / "lab" / "runners"


def _trial(cmd: list[str], out: Path) -> dict:
    p = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=600)
    doc = json.loads(out.read_text()) if out.exists() else {"ok": False, "error": p.stderr[-300:]}
    if not doc.get("ok"):
        raise SystemExit(f"runner failed: {doc.get('error')}")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v1,resnet18")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--root", default="models")
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mid in args.models.split(","):
            art = build(mid.strip(), args.root)
            exp = onnx_out.export(art, int8=True)
            spec = art.inputs[0]
            inp = f"{spec.name}:{'x'.join(map(str, spec.run_shape))}:{spec.dtype}"
            proto = ["--input", inp, "--max-seconds", str(args.max_seconds)]
            for t in (int(x) for x in args.threads.split(",")):
                cmds = {
                    "paddle-inference fp32": [sys.executable, str(RUNNERS / "pi_runner.py"),
                                              "--model-file", str(art.model_path),
                                              "--params-file", str(art.params_path),
                                              "--threads", str(t), *proto],
                    "onnxruntime fp32": [sys.executable, str(RUNNERS / "ort_runner.py"),
                                         "--model-file", str(exp.fp32), "--threads", str(t),
                                         *proto],
                    "onnxruntime int8": [sys.executable, str(RUNNERS / "ort_runner.py"),
                                         "--model-file", str(exp.int8), "--threads", str(t),
                                         "--precision", "int8", *proto],
                }
                docs = {k: [] for k in cmds}
                for trial in range(args.trials):
                    for name, cmd in cmds.items():  # interleaved: A B C A B C ...
                        docs[name].append(_trial(cmd, Path(tmp) / f"{trial}.json"))
                base = [d["timings"]["samples_ms"] for d in docs["paddle-inference fp32"]]
                for name, ds in docs.items():
                    samples = [d["timings"]["samples_ms"] for d in ds]
                    s = stats.summarize(samples)
                    c = stats.compare(samples, base) if name != "paddle-inference fp32" else None
                    agree = (exp.record["fp32"]["agreement"] if name == "onnxruntime fp32" else
                             exp.record["int8"]["agreement"] if name == "onnxruntime int8" else
                             None)
                    load = sorted(d["timings"]["load_ms"] for d in ds)
                    first = sorted(d["timings"]["first_ms"] for d in ds)
                    rows.append({
                        "model": mid, "threads": t, "runtime": name, "p50_ms": s.p50,
                        "ci_low_ms": s.ci_low, "ci_high_ms": s.ci_high, "n": s.n,
                        "trials": s.n_trials, "load_ms": load[len(load) // 2],
                        "first_ms": first[len(first) // 2],
                        "converged": all(d["timings"]["converged"] for d in ds),
                        "paddle_over_this": c.ratio if c else None,
                        "ratio_ci": [c.ratio_ci_low, c.ratio_ci_high] if c else None,
                        "cosine": agree.get("cosine") if agree else None,
                        "top1": agree.get("top1") if agree else None,
                        "version": ds[0]["env"].get("paddle") or ds[0]["env"].get("onnxruntime")})
    print("| model | threads | runtime | median ms (95% CI) | load ms | first ms | n / trials | "
          "converged | Paddle ÷ this (95% CI) | cosine vs reference | top1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = (f"{r['paddle_over_this']:.2f} ({r['ratio_ci'][0]:.2f}-{r['ratio_ci'][1]:.2f})"
                 if r["paddle_over_this"] else "-")
        cos = f"{r['cosine']:.6f}" if r["cosine"] is not None else "-"
        top1 = f"{r['top1']:.2f}" if r["top1"] is not None else "-"
        print(f"| {r['model']} | {r['threads']} | {r['runtime']} | {r['p50_ms']:.2f} "
              f"({r['ci_low_ms']:.2f}-{r['ci_high_ms']:.2f}) | {r['load_ms']:.0f} | "
              f"{r['first_ms']:.1f} | {r['n']} / {r['trials']} | {r['converged']} | {ratio} | "
              f"{cos} | {top1} |")
    print(f"# load average at end: {os.getloadavg()}; versions: "
          f"{sorted({(r['runtime'].split()[0], r['version']) for r in rows})}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
