"""What the identity check adds to a campaign: one `check_identity` round trip per device per run.

Times, alternating on one open `local` transport, a bare `sh -c true` round trip and the identity
probe (IDENTITY_SCRIPT: uname, /proc/cpuinfo, MemTotal, od of the interpreter, systemd-detect-virt,
the claimed device nodes) plus the comparison with the catalog, and prints both medians.

    .venv/bin/python bench/identity_probe.py [--reps 20] [--chip rk1808]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from lab.core.records import Device
from lab.devices.probe import check_identity
from lab.transport.registry import close_quietly, open_transport


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--chip", default="rk1808")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hwlab-identity-bench-") as work:
        dev = Device(id="local", chip=args.chip, transport="local", workdir=work)
        transport = open_transport(dev)
        bare, probe, verdict = [], [], None
        try:
            for _ in range(args.reps):
                t0 = time.perf_counter()
                transport.run(["sh", "-c", "true"], timeout=30)
                bare.append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                verdict = check_identity(dev, transport).verdict
                probe.append((time.perf_counter() - t0) * 1e3)
        finally:
            close_quietly(transport)
    print(f"reps {args.reps}: sh -c true median {statistics.median(bare):.1f} ms (p90 "
          f"{sorted(bare)[int(0.9 * len(bare)) - 1]:.1f}); check_identity median {statistics.median(probe):.1f} ms "
          f"(p90 {sorted(probe)[int(0.9 * len(probe)) - 1]:.1f}); verdict {verdict}")


if __name__ == "__main__":
    main()
