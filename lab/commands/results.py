"""`lab results`: show stored measurements; `lab results import FILE.csv`: add outside measurements."""
from __future__ import annotations

import csv
import io
import json
import sys

from lab.core import jsonio
from lab.core.errors import ConfigError
from lab.core.records import ResultRow
from lab.results.store import Store
from lab.core.textsafe import csv_cell, one_line


def register(sub) -> None:
    p = sub.add_parser("results", help="list stored results, or import a CSV of outside measurements")
    p.add_argument("--campaign", action="append", metavar="NAME", help="only this campaign (repeatable)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--status", choices=["ok", "failed", "skipped", "planned", "running"],
                   help="only jobs with this status")
    p.add_argument("--wide", action="store_true",
                   help="table: every column, whatever the terminal width (default: minor columns "
                   "are left out, with a note, when they do not fit)")
    p.set_defaults(func=cmd_results)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    imp = actions.add_parser("import", help="import measurements made elsewhere (docs/results-schema.md)")
    imp.add_argument("file", help="CSV file with the documented header")
    imp.add_argument("--campaign", dest="import_campaign", default=None,
                     help="campaign name to store them under (default: imported-<file stem>)")
    imp.set_defaults(func=cmd_import)
    cmp_ = actions.add_parser("compare", help="compare run B against run A (campaigns or job ids), "
                              "refusing pairs whose context differs")
    cmp_.add_argument("a", help="baseline: a campaign name or a job id")
    cmp_.add_argument("b", help="candidate: a campaign name or a job id")
    cmp_.add_argument("--allow-different", action="append", default=[], metavar="FIELD",
                      help="compare pairs even when FIELD differs (repeatable): "
                           "runtime_version, runner_version, model_sha256, threads, power_mode, "
                           "governor, start_temp, host_busy")
    cmp_.add_argument("--format", dest="cmp_format", choices=["text", "json"], default="text")
    cmp_.set_defaults(func=cmd_compare)
    ops = actions.add_parser("ops", help="a job's per-operator profile (campaign option profile: ops)")
    ops.add_argument("job", help="job id (a unique prefix is enough)")
    ops.add_argument("--format", dest="ops_format", choices=["table", "json"], default="table")
    ops.add_argument("--top", type=int, default=0, metavar="N", help="only the N op types taking most time")
    ops.set_defaults(func=cmd_ops)


# minor columns, dropped (highest first) when the terminal is narrow; the rest are never cut
MINOR = {"mJ/inf": 9, "power W": 8, "conv": 7, "n": 6, "RSS MB": 5, "first ms": 4, "load ms": 3,
         "p90 ms": 2, "batch": 1}
WRAP = {"options", "quality"}
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
    "quality": lambda r: _quality(r),
}


def _quality(r: ResultRow) -> str:
    from lab.results.quality import LABELS, classify
    if not r.ok:
        return ""
    return ", ".join(LABELS[f] for f in classify(r).flags) or "ok"


def cmd_results(args) -> int:
    store = Store(args.store, readonly=True)
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
        _print_table(rows, wide=args.wide)
    return 0


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _print_table(rows: list[ResultRow], *, wide: bool = False, width: int | None = None,
                 file=None) -> None:
    """Rows as a table that never cuts ids or figures (lab.commands.tables); minor columns make room."""
    out = file or sys.stdout
    if not rows:
        print("no results stored yet (run `lab run campaigns/demo.yaml`)", file=out)
        return
    from lab.commands.tables import Col, print_table
    cols = [Col(h, drop=MINOR.get(h, 0), wrap=h in WRAP) for h in TABLE_COLUMNS]
    print_table(cols, [[show(r) for show in TABLE_COLUMNS.values()] for r in rows], wide=wide,
                width=width, file=out)
    failed = [r for r in rows if r.status == "failed"]
    for r in failed[:20]:
        print(one_line(f"failed {r.job_id} {r.device} {r.model} {r.backend}: {r.error}"), file=out)


def cmd_compare(args) -> int:
    from lab.results.comparability import check_allowed, compare_pair, context_of, pair_rows
    from lab.report.sections import config_label
    allow = check_allowed(args.allow_different)
    store = Store(args.store, create=False)
    try:
        side = {}
        for name in (args.a, args.b):
            rows = [r for r in store.results(name) if r.ok]
            if not rows:
                rows = [r for r in store.results() if r.job_id == name and r.ok]
            if not rows:
                raise ConfigError(f"{name!r} is neither a campaign nor a job id with ok results in {args.store}",
                                  fix="see `lab results` for the stored campaigns and job ids")
            side[name] = rows
        rows_a, rows_b = side[args.a], side[args.b]
        if len(rows_a) == 1 and len(rows_b) == 1 and rows_a[0].job_id in (args.a, args.b):
            pairs, only_a, only_b = [(rows_a[0], rows_b[0])], [], []
        else:
            pairs, only_a, only_b = pair_rows(rows_a, rows_b)
        results = [compare_pair(context_of(ra, store.provenance(ra.job_id)),
                                context_of(rb, store.provenance(rb.job_id)),
                                store.samples(ra.job_id), store.samples(rb.job_id),
                                config_label(ra, with_model=True), allow) for ra, rb in pairs]
    finally:
        store.close()
    counts = {k: sum(1 for r in results if r.outcome == k)
              for k in ("faster", "slower", "no significant difference", "untested", "not comparable")}
    if args.cmp_format == "json":
        json.dump({"a": args.a, "b": args.b, "pairs": [r.to_json() for r in results], "counts": counts,
                   "only_a": [r.job_id for r in only_a], "only_b": [r.job_id for r in only_b]},
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"B = {args.b} against A = {args.a}: {len(results)} pairs")
    for r in results:
        if r.comparable:
            ci = (f" [{_fmt(r.ratio_ci[0])}-{_fmt(r.ratio_ci[1])}]" if r.ratio_ci[0] is not None else "")
            print(f"  {r.config}: B/A p50 {_fmt(r.ratio)}{ci}: {r.outcome}")
        else:
            print(f"  {r.config}: not comparable: " + "; ".join(str(d) for d in r.differences))
    print(f"B faster in {counts['faster']}, slower in {counts['slower']}, no significant difference in "
          f"{counts['no significant difference']}; not comparable: {counts['not comparable']}"
          + (f"; untested (no raw samples): {counts['untested']}" if counts["untested"] else "")
          + (f"; only in A: {len(only_a)}" if only_a else "") + (f"; only in B: {len(only_b)}" if only_b else ""))
    return 0


def cmd_import(args) -> int:
    from lab.results.importer import parse_results_csv
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


def cmd_ops(args) -> int:
    """`lab results ops JOB`: where the time of one job goes, per op type and processor."""
    store = Store(args.store, create=False)
    try:
        row = store.find_job(args.job)
        ops = store.op_profile(row.job_id)
        notes = store.provenance(row.job_id).get("notes", []) if not ops else []
    finally:
        store.close()
    if not ops:
        why = next((n.split(": ", 1)[1] for n in notes if n.startswith("op profile unavailable: ")), None)
        raise ConfigError(f"job {row.job_id} ({row.model} on {row.device}, {row.backend}) has no op profile"
                          + (f": {why}" if why else ""),
                          fix=None if why else "add `options: {profile: [ops]}` to the campaign and run it")
    if args.top and args.top > 0:
        shown = ops[:args.top]
    else:
        shown = ops
    iters = ops[0].iterations
    total = sum(r.total_ms for r in ops)
    if args.ops_format == "json":
        json.dump({"job_id": row.job_id, "campaign": row.campaign, "device": row.device, "model": row.model,
                   "backend": row.backend, "processor": row.processor, "source": ops[0].source,
                   "iterations": iters, "total_ms": total, "mean_ms": row.mean_ms,
                   "ops": [{"op_type": r.op_type, "processor": r.processor, "calls": r.calls,
                            "total_ms": r.total_ms, "per_inference_ms": r.per_inference_ms,
                            "share": r.share} for r in shown]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"job {row.job_id}: {row.model} on {row.device} ({row.backend}, {row.processor}); "
          f"{ops[0].source}")
    per_inf = total / iters if iters else None
    line = f"profile: {_fmt(total)} ms over {iters or '?'} inference(s)"
    if per_inf is not None:
        line += f" = {_fmt(per_inf)} ms per inference"
    if row.mean_ms:
        line += f"; timed trials: mean {_fmt(row.mean_ms)} ms"
    print(line)
    header = ("op type", "processor", "calls", "total ms", "ms/inf", "share")
    table = [(r.op_type, r.processor or "n/a", _fmt(r.calls), _fmt(r.total_ms), _fmt(r.per_inference_ms),
              f"{100 * r.share:.1f} %") for r in shown]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
    if len(shown) < len(ops):
        print(f"... {len(ops) - len(shown)} more op type(s), {100 * sum(r.share for r in ops[len(shown):]):.1f} % "
              "of the time")
    return 0
