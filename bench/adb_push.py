#!/usr/bin/env python3
"""Push throughput through adb-shell to the adbd double vs a local file write, and the cost of the
large-file fallback (chunked push + on-device `cat`) with and without a dropped connection.

What it measures (loopback, so the numbers are the protocol + verification overhead of the lab's
ADB path, not a USB/Wi-Fi link):
  local      shutil.copyfile of the same file + sha256 (what LocalTransport.push does)
  raw        adb-shell AdbDevice.push alone (sync SEND/DATA/DONE), no verification
  lab        ADBTransport.push: stat+digest check, push to .hwlab-part, sha256sum on the device, mv
  chunked    ADBTransport.push with the large-file fallback forced (16 MiB chunks)
  chunked+drop / single+drop: the double drops the connection after 60% of the file; the
             single-shot path re-sends the whole file, the chunked path only the broken chunk
Usage: .venv/bin/python bench/adb_push.py [--mib 64] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from adbd_double import AdbdDouble, make_device_root  # noqa: E402

from lab.core.records import Device  # noqa: E402
from lab.transport.adb import ADBTransport, ensure_adb_key  # noqa: E402
from lab.core.hashing import sha256_file  # noqa: E402


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hwlab-bench-adb-"))
    try:
        key = ensure_adb_key(tmp / "adbkey")
        pub = Path(str(key) + ".pub").read_bytes()
        src = tmp / "model.bin"
        size = args.mib * 1024 * 1024
        with open(src, "wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(1024 * 1024))
        root = make_device_root(tmp / "root", "kirin")
        srv = AdbdDouble(root, authorized_keys=[pub])
        srv.start()
        dev = Device(id="bench", chip="kirin990", transport="adb", serial=srv.serial)
        results = {}

        def local():
            dst = tmp / "local-copy.bin"
            shutil.copyfile(src, dst)
            sha256_file(dst)
            dst.unlink()
        results["local copy + sha256"] = timed(local, args.repeat)

        t = ADBTransport(dev, key_path=key, large_file_bytes=1 << 62)
        t.run("true", 30)

        def raw():
            t.link.push(src, "/data/local/tmp/raw.bin", 600)
        results["adb-shell push (no verify)"] = timed(raw, args.repeat)

        def lab_push():
            t.run("rm -f /data/local/tmp/hwlab/m.bin", 30)
            t.push(src, "/data/local/tmp/hwlab/m.bin")
        results["ADBTransport.push (verify)"] = timed(lab_push, args.repeat)
        results["ADBTransport.push unchanged (skip)"] = timed(
            lambda: t.push(src, "/data/local/tmp/hwlab/m.bin"), args.repeat)
        t.close()

        tc = ADBTransport(dev, key_path=key, large_file_bytes=1, chunk_bytes=16 * 1024 * 1024)

        def chunked():
            tc.run("rm -f /data/local/tmp/hwlab/c.bin", 30)
            tc.push(src, "/data/local/tmp/hwlab/c.bin")
        results["chunked fallback (16 MiB)"] = timed(chunked, args.repeat)

        def with_drop(transport, name):
            def go():
                srv.faults.drop_push_after_bytes = int(size * 0.6) if transport is t else \
                    int(16 * 1024 * 1024 * 0.6)
                srv.faults.drop_push_times = 1
                transport.run(f"rm -f /data/local/tmp/hwlab/{name}*", 30)
                # chunked: drop inside the last chunk's push (60% into chunk 4 of 4 at 64 MiB)
                if transport is tc:
                    srv.faults.drop_push_after_bytes = int(16 * 1024 * 1024 * 0.6)
                    srv.faults.drop_push_times = 0
                    pieces = size // (16 * 1024 * 1024)
                    orig = transport.link.push
                    count = {"n": 0}

                    def push(local, remote, timeout):
                        count["n"] += 1
                        if count["n"] == pieces:
                            srv.faults.drop_push_times = 1
                        return orig(local, remote, timeout)
                    transport.link.push = push
                    try:
                        transport.push(src, f"/data/local/tmp/hwlab/{name}")
                    finally:
                        transport.link.push = orig
                else:
                    transport.push(src, f"/data/local/tmp/hwlab/{name}")
            return go
        t = ADBTransport(dev, key_path=key, large_file_bytes=1 << 62)
        drops0 = srv.stats.drops
        results["single push, drop at 60% (retry)"] = timed(with_drop(t, "d1.bin"), args.repeat)
        results["chunked, drop in last chunk (retry)"] = timed(with_drop(tc, "d2.bin"), args.repeat)
        drops = srv.stats.drops - drops0
        t.close()
        tc.close()
        srv.stop()
        print(f"file {args.mib} MiB, median of {args.repeat}, loopback adbd double, "
              f"{drops} connection drops injected")
        print("| case | seconds | MiB/s |\n|---|---|---|")
        for name, sec in results.items():
            print(f"| {name} | {sec:.3f} | {args.mib / sec:.0f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
