"""Benchmark: static model analysis time (the advisor's budget is < 300 ms per answer).

Measures, for each built model in --root (default ./models):
- `fresh_json_ms`: a fresh Python process imports lab.models.analysis and analyses the .json
  (import + parse + rules; reported without interpreter start-up, timed inside the child);
- `json_ms` / `pdmodel_ms`: median of N in-process analyses of the .json / legacy .pdmodel;
- `cached_ms`: median of N `analysis_for(load_artifact(id))` (meta.json cache, what the advisor uses);
- `cache_hit_build_ms`: `lab.models.build.build(id)` when the build is cached (hashes every file).

Usage: .venv/bin/python bench/analysis_speed.py [--root models] [--repeat 20] [IDS...]
Build the models first: .venv/bin/lab models build --all
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.models import analysis
from lab.models.artifact import list_models, load_artifact  # noqa: E402
from lab.models.build import build  # noqa: E402

CHILD = """
import sys, time, json
t0 = time.perf_counter()
from lab.models import analysis
res = analysis.analyze(sys.argv[1])
t1 = time.perf_counter()
print(json.dumps({"ms": (t1 - t0) * 1000, "paddle_imported": "paddle" in sys.modules}))
"""


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ids", nargs="*")
    ap.add_argument("--root", default="models")
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    ids = args.ids or [r.id for r in list_models(args.root) if r.built]
    rows = []
    for mid in ids:
        art = load_artifact(mid, args.root)
        child = subprocess.run([sys.executable, "-c", CHILD, str(art.model_path)], cwd=REPO,
                               capture_output=True, text=True, check=True)
        fresh = json.loads(child.stdout.strip().splitlines()[-1])
        row = {"model": mid, "json_kb": round(art.model_path.stat().st_size / 1024),
               "fresh_json_ms": round(fresh["ms"], 1),
               "paddle_imported": fresh["paddle_imported"],
               "json_ms": round(_median_ms(lambda: analysis.analyze(art.model_path), args.repeat), 1),
               "pdmodel_ms": round(_median_ms(lambda: analysis.analyze(art.pdmodel_path),
                                              args.repeat), 1) if art.pdmodel_path else None,
               "cached_ms": round(_median_ms(lambda: analysis.analysis_for(
                   load_artifact(mid, args.root)), args.repeat), 2),
               "cache_hit_build_ms": round(_median_ms(lambda: build(mid, args.root), 3), 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
