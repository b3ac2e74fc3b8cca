"""`lab node start|stop|status`: this host as a Ray node that advertises the devices it reaches.

Why a thin wrapper over `ray start`: Ray already does cluster membership, scheduling and failure
detection; the lab only adds the device resources (`hwlab-dev:<id>`, see lab.measure.ray_engine) and the
environment the workers need (this checkout on PYTHONPATH, HWLAB_HOME = the directory it was
started from).
"""
from __future__ import annotations

from lab.commands import argtypes
import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab.core.errors import ConfigError
from lab.devices.inventory import load_devices

REPO_ROOT = Path(__file__).resolve().parents[2]


def register(sub) -> None:
    p = sub.add_parser("node", help="run this host as a Ray node that advertises its devices (--engine ray)")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    s = nsub.add_parser("start", help="start a Ray head (no --address) or join one, advertising the "
                                      "enabled devices of --devices")
    s.add_argument("--devices", default=argparse.SUPPRESS, metavar="PATH",
                   help="device inventory (same as the global --devices; default ./devices.yaml)")
    s.add_argument("--address", default=None, metavar="HEAD",
                   help="join the cluster whose head is HOST:PORT (default: start a new head)")
    s.add_argument("--port", type=argtypes.integer(1, 65535, what="a port"), default=6379, help="head port when starting a head (default 6379)")
    s.add_argument("--only", action="append", default=[], metavar="ID",
                   help="advertise only this device (repeatable); default: every enabled device")
    s.add_argument("--check", action="store_true",
                   help="probe each device first and advertise only those that answer")
    s.add_argument("--num-cpus", type=argtypes.integer(0, 4096, what="a CPU count"), default=1,
                   help="CPUs Ray may use here (jobs need none: the device does the work; default 1)")
    s.add_argument("--object-store-memory", type=argtypes.integer(1 << 20, 1 << 50, what="a size in bytes"), default=None, metavar="BYTES",
                   help="Ray object store size (models travel through it)")
    s.add_argument("--temp-dir", default=None, help="Ray's session directory (head only)")
    s.add_argument("--dry-run", action="store_true", help="print the `ray start` command and exit")
    s.set_defaults(func=cmd_start)
    t = nsub.add_parser("stop", help="stop the Ray processes of this host (`ray stop`)")
    t.add_argument("--force", action="store_true", help="SIGKILL instead of SIGTERM")
    t.set_defaults(func=cmd_stop)
    st = nsub.add_parser("status", help="list the cluster's live nodes and the devices each advertises")
    st.add_argument("--address", default="auto", help="cluster head HOST:PORT (default auto)")
    st.set_defaults(func=cmd_status)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def ray_binary() -> str:
    """The `ray` CLI of this interpreter's environment (the one with the lab installed)."""
    here = Path(sys.executable).with_name("ray")
    found = str(here) if here.exists() else shutil.which("ray")
    if not found:
        from lab.measure.ray_engine import RAY_MISSING
        raise ConfigError(RAY_MISSING)
    return found


def start_command(args, resources: dict[str, float]) -> list[str]:
    from lab.measure.ray_engine import resources_json
    cmd = [ray_binary(), "start"]
    if args.address:
        cmd += ["--address", args.address]
    else:
        cmd += ["--head", "--port", str(args.port), "--include-dashboard=false"]
        if args.temp_dir:
            cmd += ["--temp-dir", args.temp_dir]
    cmd += ["--num-cpus", str(args.num_cpus), "--resources", resources_json(resources),
            "--disable-usage-stats"]
    if args.object_store_memory:
        cmd += ["--object-store-memory", str(args.object_store_memory)]
    return cmd


def node_env() -> dict[str, str]:
    """Workers inherit the raylet's environment: make this checkout importable, remember HOME."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("HWLAB_HOME", os.getcwd())
    return env


def cmd_start(args) -> int:
    devices = load_devices(args.devices)
    known = {d.id: d for d in devices}
    for dev_id in args.only:
        if dev_id not in known:
            raise ConfigError(f"--only {dev_id!r}: no such device", path=args.devices,
                              fix=f"known ids: {', '.join(sorted(known)) or 'none'}")
        if not known[dev_id].enabled:
            raise ConfigError(f"--only {dev_id!r}: the device is disabled", path=args.devices,
                              line=known[dev_id].line, fix="set 'enabled: true' for it")
    chosen = [d for d in devices if d.enabled and (not args.only or d.id in args.only)]
    if args.check and chosen:
        from lab.devices.probe import check_devices
        reports = check_devices(chosen)
        for r in reports:
            if not r.reachable:
                print(f"not advertised: {r.device}: {r.error}", file=sys.stderr)
        ok = {r.device for r in reports if r.reachable}
        chosen = [d for d in chosen if d.id in ok]
    from lab.measure.ray_engine import device_resource, node_resources  # Ray only when used
    resources = node_resources(chosen)
    for d in chosen:
        print(f"advertising {d.id} as {device_resource(d.id)}", file=sys.stderr)
    if not chosen:
        print("advertising no device: this node can drive a campaign but measures nothing",
              file=sys.stderr)
    cmd = start_command(args, resources)
    if args.dry_run:
        print(" ".join(_quote(c) for c in cmd))
        return 0
    res = subprocess.run(cmd, env=node_env())
    return 0 if res.returncode == 0 else 1


def cmd_stop(args) -> int:
    res = subprocess.run([ray_binary(), "stop"] + (["--force"] if args.force else []))
    return 0 if res.returncode == 0 else 1


def cmd_status(args) -> int:
    from lab.measure.ray_engine import RESOURCE_PREFIX, connect
    ray, owned = connect(args.address, ship_code=False)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        for n in nodes:
            devs = sorted(k[len(RESOURCE_PREFIX):] for k in n.get("Resources", {}) if k.startswith(RESOURCE_PREFIX))
            print(f"{n.get('NodeManagerAddress', '?'):<16} {n.get('NodeID', '')[:12]}  "
                  f"devices: {', '.join(devs) or '-'}")
        return 0
    finally:
        if owned:
            ray.shutdown()


def _quote(s: str) -> str:
    import shlex
    return shlex.quote(s)
