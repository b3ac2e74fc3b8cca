"""A simulated device farm on this machine: an inventory of simulated devices and a Ray cluster of
one head and N worker nodes, each a separate `ray start` (its own raylet and workers), each
advertising its share of the devices as a real farm's hosts advertise the devices they reach.

Why separate `ray start` processes (and not `ray.cluster_utils`): a node killed here dies the way a
host does (every process of it, by pid), while the rest of the cluster and the driver live on.
Everything is bounded and self-stopping: tiny resources (1 CPU, 80 MB object store per node), a
temporary directory per farm, free ports per node, and `stop()` kills by pid only what this farm
started (never `ray stop`, which would end every Ray cluster of the user on the machine).
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.measure.ray_engine import device_resource

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[3]
# node death seen by the GCS in ~1.5 s instead of ~30 s (read by every Ray process from the environment)
FAST_HEALTH = {"RAY_health_check_initial_delay_ms": "500", "RAY_health_check_period_ms": "500",
               "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
               "RAY_raylet_start_wait_time_s": "120"}  # a loaded machine registers nodes slowly
CHIPS = ("rk3588", "kirin990", "rv1126", "jetson-orin-nano-super", "generic-x86-cpu", "kirin9000")


def inventory(n: int, *, faulty_share: float = 0.0, seed: int = 0, inprocess: bool = True) -> tuple[str, list[str]]:
    """devices.yaml text for `n` simulated devices (ids sim-0000..), chips cycled over CHIPS, a
    seeded random `faulty_share` of them failing or hanging; returns (text, faulty ids)."""
    rng = random.Random(seed)
    ids = [f"sim-{i:04d}" for i in range(n)]
    faulty = sorted(rng.sample(ids, round(n * faulty_share)))
    lines = ["devices:"]
    for i, dev in enumerate(ids):
        tags = ["sim-inprocess"] if inprocess else []
        if dev in faulty:
            tags.append("sim-fault:" + ("hang" if faulty.index(dev) % 2 else "fail"))
        lines += [f"  - id: {dev}", f"    chip: {CHIPS[i % len(CHIPS)]}", "    transport: local",
                  f"    workdir: /tmp/hwlab-sim-dev/{dev}", f"    tags: [{', '.join(tags)}]",
                  "    identity: skip",
                  "    identity_reason: a simulated device, no hardware to probe (bench/hwlab_sim)"]
    return "\n".join(lines) + "\n", faulty


def _free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class Node:
    name: str
    devices: list[str]
    node_manager_port: int
    pids: list[int] = field(default_factory=list)


class Farm:
    """`with Farm(devices, workers=3) as farm:` -> farm.address; `farm.kill(name)`; `farm.restart(name)`."""

    def __init__(self, devices: list[str], workers: int = 3, *, head_devices: bool = True):
        self.tmp = Path(tempfile.mkdtemp(prefix="hwlab-farm-", dir="/tmp"))
        names = ["head"] + [f"worker{i + 1}" for i in range(workers)]
        holders = names if head_devices else names[1:]
        shares: dict[str, list[str]] = {n: [] for n in names}
        for i, dev in enumerate(devices):
            shares[holders[i % len(holders)]].append(dev)
        self.nodes = {n: Node(n, shares[n], 0) for n in names}
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ, **FAST_HEALTH, PYTHONPATH=os.pathsep.join(
            [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
            RAY_USAGE_STATS_ENABLED="0")

    def __enter__(self) -> Farm:
        try:
            for name in self.nodes:  # one at a time: parallel starts time out on 2 busy cores
                self.start(name)
            self.wait_nodes(len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _argv(self, node: Node) -> list[str]:
        nm, om, da, dg, re_, me = _free_ports(6)
        node.node_manager_port = nm
        res = json.dumps({device_resource(d): 1 for d in node.devices})
        argv = [RAY, "start", "--num-cpus=1", "--object-store-memory=80000000", f"--resources={res}",
                f"--node-manager-port={nm}", f"--object-manager-port={om}",
                f"--dashboard-agent-listen-port={da}", f"--dashboard-agent-grpc-port={dg}",
                f"--runtime-env-agent-port={re_}", f"--metrics-export-port={me}",
                "--disable-usage-stats", f"--temp-dir={self.tmp}"]
        if node.name == "head":
            return argv + ["--head", f"--port={self.port}", "--include-dashboard=false"]
        return argv + [f"--address={self.address}"]

    def start(self, name: str) -> None:
        """`ray start` one node (again, after a kill: the host comes back with the same devices)."""
        node = self.nodes[name]
        proc = subprocess.run(self._argv(node), env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True, timeout=240,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start of {name} failed ({proc.returncode}): {proc.stdout[-2000:]}")
        node.pids = self._node_pids(node)

    def _node_pids(self, node: Node) -> list[int]:
        """The raylet of this node (found by its node manager port) and every process under it."""
        import psutil
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0].endswith("raylet") and f"--node_manager_port={node.node_manager_port}" in cmd:
                return [p.pid] + [c.pid for c in p.children(recursive=True)]
        raise RuntimeError(f"no raylet found for node {node.name}")

    def wait_nodes(self, count: int, timeout_s: float = 120.0) -> None:
        import ray
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = self._alive_count(ray)
            if alive == count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the farm has {alive} live nodes, not {count}, after {timeout_s:.0f} s")

    def _alive_count(self, ray) -> int:
        code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='error', log_to_driver=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        out = subprocess.run([sys.executable, "-c", code, self.address], env=self.env, capture_output=True,
                             text=True, timeout=60, check=False)
        try:
            return int(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return -1

    def kill(self, name: str) -> list[int]:
        """Kill every process of one node by pid (SIGKILL), as a host that loses power."""
        import psutil
        node = self.nodes[name]
        pids = set(node.pids)
        for pid in list(pids):  # workers started since: children of the raylet
            try:
                pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.pids = []
        return sorted(pids)

    def stop(self) -> None:
        """Kill by pid every process this farm started: those whose command line names its temp dir
        and every descendant of them. Nothing else of the machine's Ray clusters is touched."""
        import psutil
        tmp = str(self.tmp)
        roots = [p for p in psutil.process_iter(["cmdline"]) if any(tmp in a for a in (p.info["cmdline"] or []))]
        procs = set()
        for p in roots:
            procs.add(p)
            try:
                procs.update(p.children(recursive=True))
            except psutil.Error:
                pass
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(list(procs), timeout=10)
