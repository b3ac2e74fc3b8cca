#!/usr/bin/env python3
"""Push throughput of the SSH transport vs plain `scp`, same file, same link, same sshd.

The lab's push = local sha256 (cache cleared each time, so it is counted) + SFTP stat + pipelined
SFTP writes into a temp name + sha256 of the temp file ON THE DEVICE + rename. `scp` (OpenSSH 9,
SFTP protocol underneath) only copies. Each repetition writes a new remote name, alternating the
two tools; medians are reported. Link: a veth pair between two network namespaces (default, needs
root) or loopback.

Usage: .venv/bin/python bench/ssh_push.py [--mb 100] [--reps 3] [--link netns|loopback]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def measure(args) -> dict:
    from lab.devices.inventory import load_devices
    from lab.transport.ssh import SSHTransport, _local_hash_cache
    dev = load_devices(args.inventory)[0]
    src = Path(args.tmp) / "payload.bin"
    with open(src, "wb") as fh:
        for _ in range(args.mb):
            fh.write(os.urandom(1 << 20))
    size = src.stat().st_size
    t = SSHTransport(dev)
    cipher = t._client.get_transport().remote_cipher
    scp = ["scp", "-q", "-i", dev.key_file, "-o", f"UserKnownHostsFile={dev.known_hosts}", "-o",
           "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-P", str(dev.port or 22)]
    lab_s, scp_s = [], []
    for rep in range(args.reps):
        _local_hash_cache.clear()
        start = time.monotonic()
        res = t.push(src, f"{t.workdir}/lab-{rep}.bin")
        lab_s.append(time.monotonic() - start)
        assert not res.skipped and res.bytes_sent == size
        start = time.monotonic()
        subprocess.run(scp + [str(src), f"{dev.user}@{dev.host}:{t.workdir}/scp-{rep}.bin"], check=True)
        scp_s.append(time.monotonic() - start)
        t.run(["rm", "-f", f"{t.workdir}/lab-{rep}.bin", f"{t.workdir}/scp-{rep}.bin"], timeout=60)
    t.push(src, f"{t.workdir}/keep.bin")
    start = time.monotonic()
    skipped = t.push(src, f"{t.workdir}/keep.bin")
    skip_s = time.monotonic() - start
    t.close()
    t2 = SSHTransport(dev)  # a fresh connection must hash on the device once
    start = time.monotonic()
    skipped2 = t2.push(src, f"{t2.workdir}/keep.bin")
    skip_fresh_s = time.monotonic() - start
    t2.close()
    mb = size / 1e6
    lab_med, scp_med = statistics.median(lab_s), statistics.median(scp_s)
    return {"mb": round(mb, 1), "link": args.link, "reps": args.reps, "paramiko_cipher": cipher,
            "lab_push_s": [round(x, 3) for x in lab_s], "scp_s": [round(x, 3) for x in scp_s],
            "lab_push_MBps": round(mb / lab_med, 1), "scp_MBps": round(mb / scp_med, 1),
            "ratio_lab_vs_scp": round(scp_med / lab_med, 3),
            "unchanged_push_s_same_connection": round(skip_s, 3), "skipped": skipped.skipped,
            "unchanged_push_s_new_connection": round(skip_fresh_s, 3), "skipped_new": skipped2.skipped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--link", choices=["netns", "loopback"], default="netns")
    from sshd_fleet import NetnsFleet, Sshd, bench_args, keygen, netns_missing_reason, run_inner, write_inventory
    args = bench_args(p, measure)
    if args is None:
        return
    with tempfile.TemporaryDirectory(prefix="hwlab-push-") as tmp:
        tmp = Path(tmp)
        key = keygen(tmp / "id_ed25519")
        pub = Path(str(key) + ".pub")
        if args.link == "netns":
            reason = netns_missing_reason()
            if reason:
                raise SystemExit(f"ssh_push: {reason} (or use --link loopback)")
            fleet = NetnsFleet(1, tmp, pub)
            server, wrap = fleet.hosts[0].sshd, fleet.client_cmd
        else:
            fleet, server, wrap = None, Sshd(tmp / "srv", client_pub=pub).start(), (lambda argv: argv)
        try:
            kh = tmp / "known_hosts"
            kh.write_text(server.known_hosts_line())
            inv = write_inventory(tmp / "devices.yaml", [dict(
                id="pushbench", host=server.addr, port=server.port, user="root", key_file=str(key),
                known_hosts=str(kh), workdir=str(server.workdir))])
            result = run_inner(wrap([sys.executable, __file__, "--inner", "--inventory", str(inv), "--tmp",
                                     str(tmp), "--mb", str(args.mb), "--reps", str(args.reps), "--link",
                                     args.link]))
        finally:
            if fleet is not None:
                fleet.close()
            else:
                server.stop()
    print(json.dumps(result, indent=1))
    print(f"push {result['mb']} MB: lab {result['lab_push_MBps']} MB/s (verified) vs scp {result['scp_MBps']} MB/s "
          f"= {result['ratio_lab_vs_scp']}x (target >= 0.8x) -> "
          f"{'PASS' if result['ratio_lab_vs_scp'] >= 0.8 else 'MISS'}", file=sys.stderr)


if __name__ == "__main__":
    main()
