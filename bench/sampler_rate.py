#!/usr/bin/env python3
"""Achieved rate and CPU cost of sampler.sh per shell (issue 5).

    .venv/bin/python bench/sampler_rate.py [--seconds 5] [--rate 20]

Runs the sampler on the fake RK1808 tree (6 columns) under each installed shell and reports
samples/s, median/max gap between samples and the CPU time the sampler and its children used.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lab.telemetry.trace import parse_trace  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()
    tree = ROOT / "tests/data/sysfs/rk1808_board"
    print("| shell | target Hz | achieved Hz | median gap ms | max gap ms | CPU ms/s |")
    print("|---|---|---|---|---|---|")
    for name, argv in (("dash", ["dash"]), ("bash --posix", ["bash", "--posix"]),
                       ("busybox sh", ["busybox", "sh"]), ("mksh", ["mksh"])):
        if not shutil.which(argv[0]):
            continue
        out = Path(tempfile.mkdtemp()) / "t.txt"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv + [str(ROOT / "lab/runners/sampler.sh"), "-o", str(out), "-R", str(tree),
                               "-r", str(args.rate), "-d", str(args.seconds)], check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        tr = parse_trace(out.read_text())
        gaps = [(b - a) * 1000 for a, b in zip(tr.t, tr.t[1:])]
        span = tr.t[-1] - tr.t[0]
        print(f"| {name} | {args.rate:g} | {(len(tr.t) - 1) / span:.1f} | "
              f"{statistics.median(gaps):.0f} | {max(gaps):.0f} | {cpu / span * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
