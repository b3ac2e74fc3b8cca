"""Quantisation figures for docs/benchmarks.md `## Quantisation` (issue 13), measured side by side.

  PYTHONPATH=. python bench/quantisation.py [--root models] [--iters 200]

1. `lab.models.quantize.quantize(mobilenet_v1)` wall time (PTQ child process incl. paddle import;
   the agreement check is timed apart).
2. p50 latency of fp32 (oneDNN) vs int8 (oneDNN int8) at 1 and 2 threads, with a direct predictor
   loop (perf_counter around predictor.run(), like pi_runner), the two models interleaved in rounds
   so that load from other processes hits both alike. Not yet through the job path: precision int8
   in campaigns comes with the runtime contract (issue 12).
3. The agreement check's device-side cost: the REFERENCE_SET_SIZE reference inputs run once after
   timing, as a share of the runner's default minimum job time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="models")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from lab.models import agreement
    from lab.models.build import build
    from lab.models import quantize
    parent = build("mobilenet_v1", args.root)
    t = time.monotonic()
    r = quantize.quantize("mobilenet_v1", args.root, force=True)
    total = time.monotonic() - t
    print(json.dumps({"quantize_wall_s": round(total, 2), "ptq_s": r.seconds,
                      "agreement": r.summary}))
    import numpy as np
    import paddle.inference as pi

    def predictor(art, int8, threads):
        c = pi.Config(str(art.pdmodel_path), str(art.legacy_pdiparams_path))
        c.disable_glog_info()
        c.disable_gpu()
        c.set_cpu_math_library_num_threads(threads)
        c.enable_onednn()
        if int8:
            c.enable_onednn_int8()
        p = pi.create_predictor(c)
        x = np.random.RandomState(0).random_sample((1, 3, 224, 224)).astype("float32")
        h = p.get_input_handle("x")
        h.reshape(list(x.shape))
        h.copy_from_cpu(x)
        for _ in range(10):
            p.run()
        return p

    def samples(p, n):
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            p.run()
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    ref = agreement.load_reference(parent)
    for threads in (1, 2):
        preds = {"fp32": predictor(parent, False, threads),
                 "int8": predictor(r.artifact, True, threads)}
        got = {k: [] for k in preds}
        for _ in range(args.rounds):
            for k, p in preds.items():
                got[k] += samples(p, args.iters // args.rounds)
        p50 = {k: round(statistics.median(v), 3) for k, v in got.items()}
        # The reference set on the int8 predictor, as a runner does after timing.
        p = preds["int8"]
        t0 = time.perf_counter()
        for i in range(agreement.REFERENCE_SET_SIZE):
            h = p.get_input_handle("x")
            h.copy_from_cpu(np.ascontiguousarray(ref["inputs"]["x"][i]))
            p.run()
            p.get_output_handle(p.get_output_names()[0]).copy_to_cpu()
        check_s = time.perf_counter() - t0
        print(json.dumps({"threads": threads, "p50_ms": p50,
                          "int8_over_fp32": round(p50["int8"] / p50["fp32"], 3),
                          "n_per_model": len(got["fp32"]),
                          "reference_set_s": round(check_s, 4),
                          "share_of_min_2s_steady": round(check_s / 2.0, 4)}))
    print(json.dumps({"cpu_count": os.cpu_count(), "loadavg": os.getloadavg()}))


if __name__ == "__main__":
    main()
