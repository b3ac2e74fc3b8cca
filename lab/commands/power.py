"""`lab power import FILE.csv --device D [--campaign C]`: external meter logs -> stored jobs."""
from __future__ import annotations

from lab.core.textsafe import one_line
from lab.commands import argtypes
from lab.core.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("power", help="power telemetry: import an external meter's CSV")
    actions = p.add_subparsers(dest="power_action", metavar="ACTION")
    imp = actions.add_parser("import", help="align a meter CSV (timestamp,W or timestamp,V,A; "
                             "epoch or ISO time) to the device's jobs and store energy/inference")
    imp.add_argument("file", help="meter CSV")
    imp.add_argument("--device", required=True, help="device id the meter was on")
    imp.add_argument("--campaign", default=None, help="only jobs of this campaign")
    imp.add_argument("--idle-s", type=argtypes.number(0, 86400, what="seconds between 0 and 86400"), default=10.0,
                     help="idle baseline taken before each job's first trial (default 10 s)")
    imp.add_argument("--dry-run", action="store_true", help="show figures, store nothing")
    imp.set_defaults(func=cmd_import)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_import(args) -> int:
    from lab.telemetry.meter_import import apply_meter, read_meter_csv  # here: other commands never pay for it
    from lab.results.store import Store
    series = read_meter_csv(args.file)
    store = Store(args.store)
    try:
        done = apply_meter(store, series, args.device, args.campaign, idle_s=args.idle_s,
                           write=not args.dry_run)
    finally:
        store.close()
    if not done:
        raise ConfigError(f"no ok job of device {args.device!r}"
                          f"{' in campaign ' + repr(args.campaign) if args.campaign else ''} "
                          "lies inside the meter's time range", path=args.file,
                          fix="check --device/--campaign and that the meter log spans the jobs "
                              "(host and device clocks in UTC/NTP)")
    print(f"{'job':<14} {'model':<16} {'W':>8} {'idle W':>8} {'mJ/inf':>10} {'net mJ/inf':>10}")
    for row, res in done:
        print(f"{one_line(row['job_id'][:14]):<14} {one_line(str(row['model'])[:16]):<16} {_f(res.power_w):>8} "
              f"{_f(res.idle_w):>8} {_f(res.energy_mj_per_inf):>10} "
              f"{_f(res.energy_net_mj_per_inf):>10}")
    print(one_line(f"{len(done)} job(s) {'would be ' if args.dry_run else ''}updated from {args.file}"))
    return 0


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"
