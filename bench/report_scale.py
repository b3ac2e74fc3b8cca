"""Scale benchmark of `lab report`: 2,000 jobs and 100,000 raw samples -> < 10 s and < 5 MB of HTML.

Why synthetic rows: the figure is about the report's own cost (queries, statistics, charts,
template, embedded data), not about measuring; the store is filled through the real Store API
(`import_rows`, one transaction) with every field a real job has: CI, cold start, memory, power on
some jobs, not-converged and throttled flags, failed jobs with errors, provenance with commands.

    .venv/bin/python bench/report_scale.py [--jobs 2000] [--samples 100000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.core.records import Job, Measurement, MeasurementProtocol  # noqa: E402
from lab.results.store import Store  # noqa: E402

BACKENDS = [("paddle-inference-cpu", "cpu", "fp32"), ("paddle-lite-arm", "cpu", "fp32"),
            ("paddle-lite-opencl", "gpu", "fp16"), ("paddle-lite-kirin-npu", "aipu", "int8"),
            ("paddle-lite-rockchip-npu", "aipu", "int8")]
CHIPS = ["kirin990", "kirin9000", "rk1808", "rv1109", "rk3588", "x86_64-host", "jetson-orin-nano", "a100",
         "kirin810", "rk3399pro"]


def fill(store: Store, n_jobs: int, n_samples: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    per_job = max(1, n_samples // n_jobs)
    models = [f"model_{i:02d}" for i in range(10)]
    pairs = []
    i = 0
    while len(pairs) < n_jobs:
        dev = f"dev{(i // 200) % 10:02d}"
        chip = CHIPS[(i // 200) % 10]
        model = models[(i // 20) % 10]
        backend, proc, prec = BACKENDS[i % 5]
        threads = 1 + (i // 5) % 4
        job = Job(job_id=f"j{i:06d}", campaign="scale", device=dev, chip=chip, model=model, model_sha256="cd" * 32,
                  backend=backend, processor=proc, precision=prec, threads=threads, options=(("onednn", True),),
                  protocol=MeasurementProtocol())
        base = rng.uniform(2, 80) / (3 if proc == "aipu" else 1)
        trials = [[base * (1 + rng.gauss(0, 0.03)) for _ in range(per_job // 3 + (1 if t < per_job % 3 else 0))]
                  for t in range(3)]
        flat = sorted(x for t in trials for x in t)
        p50 = flat[len(flat) // 2]
        powered = i % 3 == 0
        m = Measurement(job_id=job.job_id, p50_ms=p50, ci_low_ms=p50 * 0.98, ci_high_ms=p50 * 1.02,
                        p90_ms=flat[int(len(flat) * 0.9)], p99_ms=flat[-1], mean_ms=sum(flat) / len(flat),
                        std_ms=0.03 * p50, min_ms=flat[0], max_ms=flat[-1], load_ms=rng.uniform(50, 2000),
                        first_ms=p50 * rng.uniform(1.5, 6), peak_rss_mb=rng.uniform(80, 900), n_samples=len(flat),
                        converged=rng.random() > 0.05, power_w=rng.uniform(1, 9) if powered else None,
                        energy_mj_per_inf=p50 * 3 if powered else None,
                        power_source="battery" if powered else None,
                        power_note=None if powered else "no power source readable on this device",
                        temp_start_c=rng.uniform(30, 45), temp_max_c=rng.uniform(45, 80),
                        throttled=rng.random() < 0.02, samples=trials,
                        provenance={"runner": "lite_runner", "runner_version": "1.0.0", "model_sha256": "cd" * 32,
                                    "commands": [f"python3 lite_runner.py --model /data/hwlab/{model}.nb "
                                                 f"--threads {threads} --out -"] * 3,
                                    "env": {"python": "3.7.3", "paddlelite": "2.13"}})
        pairs.append((job, m))
        i += 1
    store.import_rows("scale", pairs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--keep", metavar="DIR", help="keep the store and report here")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="hwlab-report-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "lab.sqlite"
    if db.exists():
        db.unlink()
    store = Store(db)
    t0 = time.perf_counter()
    fill(store, args.jobs, args.samples)
    t_fill = time.perf_counter() - t0
    n_rows = len(store.results_rows(["scale"]))
    n_samp = sum(len(t) for tr in store.all_samples().values() for t in tr)
    store.close()

    from lab.report.render import write_report  # imports (matplotlib, jinja2) outside the timed part
    import matplotlib.figure  # noqa: F401

    out = work / "index.html"
    t0, c0 = time.perf_counter(), time.process_time()
    write_report(db, ["scale"], out)
    t_render, c_render = time.perf_counter() - t0, time.process_time() - c0
    size = out.stat().st_size
    result = {"jobs": n_rows, "samples": n_samp, "fill_s": round(t_fill, 2), "render_s": round(t_render, 2),
              "render_cpu_s": round(c_render, 2), "load_avg_1min": round(os.getloadavg()[0], 2),
              "html_mb": round(size / 1e6, 3), "ok": t_render < 10 and size < 5e6, "report": str(out)}
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        del result["report"]
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
