"""`lab devices`: list the inventory; `--check` probes each device for its facts and runtimes."""
from __future__ import annotations

from lab.core import jsonio
from lab.core.textsafe import clean, one_line
from lab.commands import argtypes

from lab.devices.inventory import load_devices


def register(sub) -> None:
    p = sub.add_parser("devices", help="list devices.yaml; --check probes the devices")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--check", action="store_true", help="connect to each enabled device and report its facts")
    p.add_argument("--all", action="store_true", help="with --check: disabled devices too")
    p.add_argument("--timeout", type=argtypes.seconds, default=60.0, metavar="S",
                   help="with --check: seconds allowed per device (connect + probe), default 60")
    p.add_argument("ids", nargs="*", help="only these device ids")
    p.set_defaults(func=cmd_devices)


def cmd_devices(args) -> int:
    devices = load_devices(args.devices)
    if args.ids:
        from lab.devices.inventory import find_device
        devices = [find_device(devices, i, where=f"{args.devices}: ") for i in args.ids]
    if args.check:
        from lab.devices.probe import check_devices
        chosen = [d for d in devices if d.enabled or args.all or args.ids]
        if args.timeout <= 0:
            from lab.core.errors import ConfigError
            raise ConfigError(f"--timeout must be positive, got {args.timeout:g}", fix="e.g. --timeout 60")
        reports = check_devices(chosen, timeout=args.timeout)
        if args.format == "json":
            print(jsonio.dumps([r.to_dict() for r in reports], indent=1))
        else:
            for r in reports:
                print(clean(r.to_text()))
            from lab.runtimes.registry import runtime_sources
            print("runtimes found: " + "; ".join(clean(s.line()) for s in runtime_sources()))
            if any(d.transport == "local" for d in chosen):  # this host: each path ready or its command
                from lab.devices.readiness import deployment_paths
                print("deployment paths on this host (local):")
                print("\n".join(clean(p.line()) for p in deployment_paths()))
        return 0 if all(r.reachable for r in reports) else 1
    rows = [{"id": d.id, "chip": d.chip, "transport": d.transport, "enabled": d.enabled,
             "address": _address(d), "tags": list(d.tags), "source": f"{d.source}:{d.line}"} for d in devices]
    if args.format == "json":
        print(jsonio.dumps(rows, indent=1))
    else:
        print(f"{'id':<20} {'chip':<18} {'transport':<9} {'enabled':<7} address")
        for r in rows:
            print(one_line(f"{r['id']:<20} {r['chip']:<18} {r['transport']:<9} "
                           f"{str(r['enabled']).lower():<7} {r['address']}"))
    return 0


def _address(d) -> str:
    if d.transport == "ssh":
        return f"{d.user}@{d.host}:{d.port or 22}"
    if d.transport == "adb":
        return (f"{d.serial} via adb server {d.adb_server}" if d.adb_server else str(d.serial))
    return "this machine"
