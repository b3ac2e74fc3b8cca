"""`lab report`: write the self-contained HTML chip-comparison report of stored campaigns."""
from __future__ import annotations

import time

from lab.core.errors import ConfigError
from lab.core.textsafe import one_line


def register(sub) -> None:
    p = sub.add_parser("report", help="write the HTML chip-comparison report of stored campaigns")
    p.add_argument("--campaign", action="append", metavar="NAME", default=None,
                   help="campaign to report (repeatable; several are shown together)")
    p.add_argument("--baseline", metavar="NAME", help="campaign to compare against (change per configuration, "
                   "significance test, regressions highlighted)")
    p.add_argument("--allow-different", action="append", default=[], metavar="FIELD",
                   help="baseline pairs whose FIELD differs still count (repeatable; see `lab results compare`)")
    p.add_argument("--profile", action="append", metavar="ID", default=None,
                   help="selection profile for the chip ranking (repeatable; default: all profiles)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="HTML file to write (default reports/<campaign>/index.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from lab.report.render import write_report  # matplotlib is imported only when a report is made

    if not args.campaign:
        from pathlib import Path as _P
        if not _P(args.store).is_file():
            raise ConfigError(f"no results store at {args.store}", fix="run a campaign first "
                              "(`lab run campaigns/demo.yaml`) or pass --store PATH")
        from lab.results.store import Store
        store = Store(args.store)
        try:
            names = store.campaigns()
        finally:
            store.close()
        print("campaigns in " + str(args.store) + " (pass one with `lab report --campaign NAME`):")
        for name in names:
            print(f"  {name}")
        if not names:
            print("  (none yet: run `lab run campaigns/demo.yaml`)")
        return 0
    if args.baseline and args.baseline in args.campaign:
        raise ConfigError(f"--baseline {args.baseline!r} is also a --campaign", fix="compare two different campaigns")
    from lab.core.outpaths import check_output, under
    # a campaign name is data (it may come from someone else's store): it names one folder
    # under reports/, never a path; -o is checked before anything is rendered
    out = check_output(args.output if args.output else
                       under("reports", "+".join(args.campaign), what="campaign name") / "index.html")
    t0 = time.perf_counter()
    from lab.results.comparability import check_allowed
    allow = check_allowed(args.allow_different)
    path = write_report(args.store, args.campaign, out, baseline=args.baseline, profiles=args.profile,
                        allow_different=allow)
    size = path.stat().st_size
    print(one_line(f"report: {path} ({size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s)"))
    return 0
