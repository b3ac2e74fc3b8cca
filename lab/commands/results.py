"""`lab results`: show stored measurements; `lab results import FILE.csv`: add outside measurements."""
from __future__ import annotations

from .. import jsonio
from ..textsafe import console, csv_cell, one_line
import csv
import io
import sys

from ..errors import ConfigError
from ..records import ResultRow
from ..store import Store


def register(sub) -> None:
    p = sub.add_parser("results", help="list stored results, or import a CSV of outside measurements")
    p.add_argument("--campaign", action="append", metavar="NAME", help="only this campaign (repeatable)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--status", choices=["ok", "failed", "skipped", "planned", "running"],
                   help="only jobs with this status")
    p.set_defaults(func=cmd_results)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    imp = actions.add_parser("import", help="import measurements made elsewhere (docs/results-schema.md)")
    imp.add_argument("file", help="CSV file with the documented header")
    imp.add_argument("--campaign", dest="import_campaign", default=None,
                     help="campaign name to store them under (default: imported-<file stem>)")
    imp.set_defaults(func=cmd_import)


TABLE_COLUMNS = {  # header -> how to show one row (a records.ResultRow)
    "campaign": lambda r: r.campaign, "device": lambda r: r.device, "model": lambda r: r.model,
    "backend": lambda r: r.backend, "prec": lambda r: r.precision, "thr": lambda r: _fmt(r.threads),
    "batch": lambda r: _fmt(r.batch),
    "options": lambda r: " ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.options.items())) or "-",
    "status": lambda r: r.status,
    "p50 ms [95% CI]": lambda r: (f"{_fmt(r.p50_ms)} [{_fmt(r.ci_low_ms)}-{_fmt(r.ci_high_ms)}]"
                                  if r.ci_low_ms is not None else _fmt(r.p50_ms or r.mean_ms)),
    "p90 ms": lambda r: _fmt(r.p90_ms), "load ms": lambda r: _fmt(r.load_ms),
    "first ms": lambda r: _fmt(r.first_ms), "RSS MB": lambda r: _fmt(r.peak_rss_mb),
    "n": lambda r: _fmt(r.n_samples), "conv": lambda r: _fmt(r.converged),
    "power W": lambda r: _fmt(r.power_w), "mJ/inf": lambda r: _fmt(r.energy_mj_per_inf),
}


def cmd_results(args) -> int:
    store = Store(args.store, create=False)
    try:
        rows = store.results(args.campaign)
    finally:
        store.close()
    if args.campaign:
        known = {r.campaign for r in rows}
        missing = [c for c in args.campaign if c not in known]
        if missing:
            raise ConfigError(f"no campaign named {missing[0]!r} in {args.store}",
                              fix="see `lab results` for the stored campaigns")
    if args.status:
        rows = [r for r in rows if r.status == args.status]
        if not rows and args.format == "table":
            print(f"no {args.status} jobs" + (f" in campaign {', '.join(args.campaign)}" if args.campaign else ""))
            return 0
    if args.format == "json":
        sys.stdout.write(jsonio.dumps([r.to_json() for r in rows], indent=1) + "\n")
    elif args.format == "csv":
        docs = [r.to_json() for r in rows]
        fields = list(docs[0]) if docs else []
        w = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for d in docs:
            w.writerow({k: csv_cell("" if v is None else jsonio.dumps(v, sort_keys=True)
                                    if k == "options" else one_line(v) if isinstance(v, str) else
                                    jsonio.finite(v)) for k, v in d.items()})
    else:
        _print_table(rows)
    return 0


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _print_table(rows: list[ResultRow]) -> None:
    if not rows:
        print("no results stored yet (run `lab run campaigns/demo.yaml`)")
        return
    try:
        from rich.table import Table
        table = Table(show_lines=False, box=None, header_style="bold")
        for col in TABLE_COLUMNS:
            table.add_column(col, no_wrap=True)
        for r in rows:
            table.add_row(*[show(r) for show in TABLE_COLUMNS.values()])
        console(width=None if sys.stdout.isatty() else 250).print(table)
    except ImportError:
        print("\t".join(TABLE_COLUMNS))
        for r in rows:
            print("\t".join(one_line(show(r)) for show in TABLE_COLUMNS.values()))
    failed = [r for r in rows if r.status == "failed"]
    for r in failed[:20]:
        print(one_line(f"failed {r.job_id} {r.device} {r.model} {r.backend}: {r.error}"))


def cmd_import(args) -> int:
    from ..results_import import parse_results_csv
    from pathlib import Path
    path = Path(args.file)
    if not path.is_file():
        raise ConfigError("file not found", path=args.file, fix="give the path of a CSV file")
    campaign = args.import_campaign or f"imported-{path.stem}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", path=str(path),
                          fix="save the CSV as UTF-8") from None
    pairs = parse_results_csv(io.StringIO(text), str(path), campaign)
    store = Store(args.store)
    try:
        store.save_campaign(campaign, {"name": campaign, "imported_from": str(path)})
        n = store.import_rows(campaign, pairs)
    finally:
        store.close()
    print(one_line(f"imported {n} measurements from {path} into campaign {campaign!r}"))
    return 0
