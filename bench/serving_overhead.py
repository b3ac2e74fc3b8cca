"""Serving overhead: the endpoint against the batch-1 runner, today's endpoint against this one.

Why: issue 23 found the serving figures measuring the lab's endpoint more than the chip
(mobilenet_v1: batch-1 p50 13 ms, SingleStream through the endpoint 48.5 ms, Offline 20.4/s).
This bench measures, in ONE run, alternated round by round so that a busy period hits every arm:

  pi      lab/runners/pi_runner.py with the flags paddle-inference-cpu gives it (threads, oneDNN
          from lab.runtimes.defaults): its p50 over the steady samples;
  before  the serving runner of an older checkout (`--base`, default /tmp/serving-base, made with
          `git worktree add /tmp/serving-base <rev>`), started as the lab started it then
          (`--onednn off`, the old serving default), under LoadGen SingleStream and Offline;
  after   this checkout's serving runner with the shared defaults, the same two LoadGen runs, and
          its per-request split (lab.serving.stats: queue / decode / model / encode, the
          endpoint's own share).

Printed per round and as medians over rounds: SingleStream p50 / pi p50 (the claim: <= 1.3),
Offline samples/s against 0.7 x 1000 / pi p50 (the claim: >=), the endpoint's share.
The load generator is this checkout's for both endpoints: only the endpoint differs.

Usage: .venv/bin/python bench/serving_overhead.py [--model mobilenet_v1] [--threads 1] [--rounds 3]
       [--seconds 6] [--base /tmp/serving-base] [--models-root models]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.runtimes.defaults import ONEDNN  # after the sys.path line above
from lab.serving.endpoint import LocalServer, ServerSpec
from lab.serving.loadgen import LoadSettings, early_stopping_min_queries, run_scenario


def pi_p50(model: dict, threads: int, seconds: float, out: Path) -> float:
    """The paddle-inference-cpu figure: pi_runner's median, as the lab runs it (batch 1)."""
    argv = [sys.executable, str(REPO / "lab/runners/pi_runner.py"), "--model-file", model["model"],
            "--params-file", model["params"], "--input", model["input"], "--threads", str(threads),
            "--onednn", "on" if ONEDNN else "off", "--min-seconds", str(seconds),
            "--max-seconds", str(seconds * 2), "--out", str(out)]
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    doc = json.loads(out.read_text())
    samples = [x for v in doc["timings"].values() if isinstance(v, list) for x in v]
    return statistics.median(samples)


def endpoint_runs(model: dict, threads: int, seconds: float, work: Path, runner: Path, onednn: str,
                  sample) -> dict:
    """SingleStream then Offline against one endpoint; its p50, Offline samples/s and split."""
    spec = ServerSpec(name="m", model_file=model["model"], params_file=model["params"], threads=threads,
                      onednn=onednn, inputs=(("x", (-1, 3, 224, 224), "float32"),), max_seconds=600)
    with LocalServer(spec, work, ready_timeout=180, runner=runner) as srv:
        ss = run_scenario(srv.url, "m", sample, LoadSettings(
            "SingleStream", min_duration_s=seconds, max_duration_s=seconds * 3,
            min_queries=early_stopping_min_queries(0.9)), out_dir=work / "ss", server=srv)
        off = run_scenario(srv.url, "m", sample, LoadSettings(
            "Offline", target_qps=1000.0 / ss.p50_ms, min_duration_s=seconds, max_duration_s=seconds * 3),
            out_dir=work / "off", server=srv)
    return {"p50_ms": ss.p50_ms, "offline_qps": off.qps, "split": ss.split, "offline_split": off.split}


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mobilenet_v1")
    ap.add_argument("--models-root", default=str(REPO / "models"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0, help="LoadGen min duration and pi_runner min seconds")
    ap.add_argument("--base", default="/tmp/serving-base", help="checkout of the endpoint to compare with")
    args = ap.parse_args()
    base_runner = Path(args.base) / "lab/runners/serving_runner.py"
    if not base_runner.is_file():
        print(f"no {base_runner}: make it with `git worktree add {args.base} <rev>`", file=sys.stderr)
        return 2
    d = Path(args.models_root) / args.model
    model = {"model": str(d / "inference.json"), "params": str(d / "inference.pdiparams"),
             "input": "x:1x3x224x224:float32"}
    import numpy as np
    sample = [{"x": np.random.RandomState(i).rand(1, 3, 224, 224).astype("float32")} for i in range(8)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            w = Path(tmp) / f"r{r}"
            pi = pi_p50(model, args.threads, args.seconds, Path(tmp) / f"pi{r}.json")
            before = endpoint_runs(model, args.threads, args.seconds, w / "before", base_runner, "off", sample)
            after = endpoint_runs(model, args.threads, args.seconds, w / "after",
                                  REPO / "lab/runners/serving_runner.py", "on" if ONEDNN else "off", sample)
            row = {"round": r, "pi_p50_ms": pi, "before": before, "after": after,
                   "load": os.getloadavg()[0]}
            rows.append(row)
            _print_round(row)
    _print_summary(rows)
    return 0


def _print_round(row: dict) -> None:
    pi, b, a = row["pi_p50_ms"], row["before"], row["after"]
    sp = a["split"] or {}
    print(f"round {row['round']} (load {row['load']:.1f}): pi p50 {pi:.2f} ms | before: SingleStream p50 "
          f"{b['p50_ms']:.2f} ms ({b['p50_ms'] / pi:.2f}x), Offline {b['offline_qps']:.1f}/s | after: "
          f"SingleStream p50 {a['p50_ms']:.2f} ms ({a['p50_ms'] / pi:.2f}x), Offline {a['offline_qps']:.1f}/s "
          f"({a['offline_qps'] / (1000.0 / pi):.2f} of 1000/pi p50); per request queue "
          f"{_fmt(sp.get('queue_ms'))} decode {_fmt(sp.get('decode_ms'))} model {_fmt(sp.get('model_ms'))} "
          f"encode {_fmt(sp.get('encode_ms'))} ms, endpoint share {_fmt(sp.get('endpoint_share'), '.0%')}",
          flush=True)


def _print_summary(rows: list[dict]) -> None:
    def med(f):
        return statistics.median(f(r) for r in rows)
    pi = med(lambda r: r["pi_p50_ms"])
    print("\nmedians over rounds:")
    print(f"  paddle-inference-cpu p50           {pi:.2f} ms")
    for arm in ("before", "after"):
        ratio = med(lambda r, arm=arm: r[arm]["p50_ms"] / r["pi_p50_ms"])
        off = med(lambda r, arm=arm: r[arm]["offline_qps"] * r["pi_p50_ms"] / 1000.0)
        print(f"  {arm:<6} SingleStream p50 / pi p50    {ratio:.2f}  (claim <= 1.3)")
        print(f"  {arm:<6} Offline / (1000 / pi p50)     {off:.2f}  (claim >= 0.7)")
    shares = [r["after"]["split"]["endpoint_share"] for r in rows if r["after"]["split"]]
    if shares:
        print(f"  after  endpoint share (SingleStream) {statistics.median(shares):.0%}")


if __name__ == "__main__":
    sys.exit(main())
