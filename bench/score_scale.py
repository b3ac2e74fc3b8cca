"""Benchmark: scoring scale. 100 chips x 10 profiles (with 1000-draw Monte Carlo each) < 1 s?

Chips are synthetic variants of the built-in catalog (figures scaled by seeded random factors,
ids suffixed), profiles are the 4 built-in ones plus weight-perturbed copies, and every chip gets
store-like rows for the profile's reference models so the measured criterion and Pareto front
are exercised too. Prints one JSON line with the timings.

    .venv/bin/python bench/score_scale.py [--chips 100] [--profiles 10] [--draws 1000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.devices.catalog import Figure, load_catalog  # noqa: E402
from lab.core.records import ResultRow  # noqa: E402
from lab.decide.profiles import load_profiles  # noqa: E402
from lab.decide.scoring import score_chips  # noqa: E402


def _scale(f: Figure | None, k: float) -> Figure | None:
    if f is None or not isinstance(f.value, (int, float)) or isinstance(f.value, bool):
        return f
    return dataclasses.replace(f, value=f.value * k)


def synth_chips(n: int, rng: random.Random):
    base = list(load_catalog())
    out = []
    for i in range(n):
        c = base[i % len(base)]
        k = rng.uniform(0.5, 2.0)
        acc = dataclasses.replace(c.accelerator, tops={p: _scale(f, k) for p, f in c.accelerator.tops.items()})
        out.append(dataclasses.replace(c, id=f"{c.id}-v{i}", accelerator=acc,
                                       power_w=_scale(c.power_w, rng.uniform(0.8, 1.2))))
    return out


def synth_profiles(n: int, rng: random.Random):
    base = list(load_profiles().values())
    out = []
    for i in range(n):
        p = base[i % len(base)]
        w = {k: v * rng.uniform(0.5, 1.5) for k, v in p.weights.items()}
        out.append(dataclasses.replace(p, id=f"{p.id}-v{i}", weights=w))
    return out


def synth_rows(chips, profiles, rng: random.Random):
    models = sorted({m for p in profiles for m in p.reference_models})
    return [ResultRow(job_id=f"{c.id}-{m}", campaign="scale", device=c.id, chip=c.id, model=m,
                      status="ok", p50_ms=rng.uniform(1, 300), batch=1, threads=1, precision="int8",
                      processor=c.accelerator.processor or "cpu", backend="x",
                      energy_mj_per_inf=rng.uniform(1, 500))
            for c in chips for m in models]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chips", type=int, default=100)
    ap.add_argument("--profiles", type=int, default=10)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    chips = synth_chips(a.chips, rng)
    profiles = synth_profiles(a.profiles, rng)
    rows = synth_rows(chips, profiles, rng)
    flops = {"mobilenet_v1": 5.7e8, "mobilenet_v2": 3.0e8, "resnet18": 1.8e9, "resnet50": 4.1e9}
    score_chips(chips[:5], profiles[0], rows, flops=flops, draws=10)  # warm imports (numpy)
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        ranked = 0
        for p in profiles:
            res = score_chips(chips, p, rows, flops=flops, draws=a.draws, seed=a.seed)
            ranked += sum(1 for r in res if r.rank is not None)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"chips": a.chips, "profiles": a.profiles, "draws": a.draws, "rows": len(rows),
                      "ranked_total": ranked, "repeat": a.repeat,
                      "best_s": round(times[0], 4), "median_s": round(times[len(times) // 2], 4),
                      "worst_s": round(times[-1], 4), "under_1s": times[len(times) // 2] < 1.0}))
    return 0 if times[len(times) // 2] < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
