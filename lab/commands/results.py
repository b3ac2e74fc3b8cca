"""`lab results`: show stored measurements; `lab results import FILE.csv`: add outside measurements."""
from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable
from typing import IO

from lab.core import jsonio
from lab.core.errors import ConfigError
from lab.core.records import ResultRow
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
MINOR = {"cos min": 10, "mJ/inf": 9, "power W": 8, "conv": 7, "n": 6, "RSS MB": 5, "first ms": 4,
         "load ms": 3, "p90 ms": 2, "batch": 1}
WRAP = {"options", "quality"}
TABLE_COLUMNS = {  # header -> how to show one row (a records.ResultRow)
    "campaign": lambda r: r.campaign, "device": lambda r: r.device, "model": lambda r: r.model,
    "backend": lambda r: r.backend, "prec": lambda r: r.precision, "thr": lambda r: _fmt(r.threads),
    "batch": lambda r: _fmt(r.batch),
    "options": lambda r: " ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.options.items())) or "-",
    "status": lambda r: r.status,
    "p50 ms [95% CI]": lambda r: (f"{_fmt(r.p50_ms)} [{_fmt(r.ci_low_ms)}-{_fmt(r.ci_high_ms)}]"
                                  if r.ci_low_ms is not None else _fmt(r.p50_ms or r.mean_ms)),
    # correctness beside the latency at every width (issue 25): key columns, never dropped
    "agree": lambda r: "" if not r.ok else {True: "ok", False: "FAIL"}.get(r.agree_ok, "n/a"),
    "top1%": lambda r: "" if not r.ok else _fmt(None if r.accuracy_top1 is None else 100 * r.accuracy_top1),
    # four decimals, as the report: 3 significant digits would print a cosine of 0.9995 as "1"
    "cos min": lambda r: ("n/a" if r.agree_cosine_min is None else f"{r.agree_cosine_min:.4f}") if r.ok else "",
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
    from lab.results.store import (
        Store,  # deferred: sqlite3 is no cost to the other commands
    )
    store = Store(args.store, readonly=True)
    try:
        if args.campaign:
            store.require_campaigns(args.campaign)
        if args.format == "json":
            write_json(store.scan(args.campaign, status=args.status), sys.stdout)
        elif args.format == "csv":
            write_csv(store.scan(args.campaign, status=args.status), sys.stdout)
        else:
            rows = store.results(args.campaign, status=args.status)
            if args.status and not rows:
                print(f"no {args.status} jobs" + (f" in campaign {', '.join(args.campaign)}"
                                                  if args.campaign else ""))
                return 0
            _print_table(rows, wide=args.wide)
    finally:
        store.close()
    return 0


# -- streamed output (issue 23): a farm's 100,000 rows go out one at a time, never held as a list,
# byte for byte what `jsonio.dumps([row.to_json() ...], indent=1)` and the CSV writer gave
# values only, one per line: ensure_ascii escapes every control character, so a raw newline only
# ever separates values; the row template then puts each after its key
_VALUES_JSON = json.JSONEncoder(separators=("\n", ": "), allow_nan=False)
_BATCH = 1000  # rows per write


def write_json(rows: Iterable[tuple[list, dict]], out: IO[str]) -> None:
    """`Store.scan` rows as the JSON list of `ResultRow.to_json` dicts, indent 1. A row's values
    are one call of the C encoder (a template adds the keys and indentation); options, the only
    nested field and last in the row, are formatted once per distinct option set."""
    from lab.results.store import ROW_FIELDS
    template = ",\n  ".join(f"{json.dumps(k)}: %s" for k in ROW_FIELDS)
    opts_text: dict[int, tuple[dict, str]] = {}
    first, batch = True, []
    for vals, options in rows:
        body = template % tuple(_VALUES_JSON.encode(vals)[1:-1].split("\n"))
        hit = opts_text.get(id(options))
        if hit is None:  # the dict is kept in the value, so its id is never reused meanwhile
            hit = opts_text[id(options)] = (options, jsonio.dumps(options, indent=1).replace("\n", "\n  "))
        batch.append(f"{'[' if first else ','}\n {{\n  {body},\n  \"options\": {hit[1]}\n }}")
        first = False
        if len(batch) >= _BATCH:
            out.write("".join(batch))
            batch = []
    out.write("".join(batch) + ("[]\n" if first else "\n]\n"))


def write_csv(rows: Iterable[tuple[list, dict]], out: IO[str]) -> None:
    """`Store.scan` rows as CSV: ResultRow's fields then options (JSON, sorted keys); text on one
    line and never read as a formula (lab.core.textsafe); unknown is an empty cell."""
    from lab.results.store import ROW_FIELDS
    w = csv.writer(out, lineterminator="\n")
    w.writerow([*ROW_FIELDS, "options"])
    opts_text: dict[int, tuple[dict, str]] = {}
    for vals, options in rows:
        texts = " ".join(v for v in vals if type(v) is str)
        if one_line(texts) != texts:  # a control character somewhere in the row: escape each text
            vals = [one_line(v) if type(v) is str else v for v in vals]
        hit = opts_text.get(id(options))
        if hit is None:
            hit = opts_text[id(options)] = (options, csv_cell(jsonio.dumps(options, sort_keys=True)))
        w.writerow([csv_cell(v) if type(v) is str else v for v in vals] + [hit[1]])


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
    shown = {h: show for h, show in TABLE_COLUMNS.items()  # accuracy only where measured
             if h != "top1%" or any(r.accuracy_top1 is not None for r in rows)}
    cols = [Col(h, drop=MINOR.get(h, 0), wrap=h in WRAP) for h in shown]
    print_table(cols, [[show(r) for show in shown.values()] for r in rows], wide=wide,
                width=width, file=out)
    failed = [r for r in rows if r.status == "failed"]
    for r in failed[:20]:
        print(one_line(f"failed {r.job_id} {r.device} {r.model} {r.backend}: {r.error}"), file=out)


def cmd_compare(args) -> int:
    from lab.report.sections import config_label
    from lab.results.comparability import (
        check_allowed,
        compare_pair,
        context_of,
        pair_rows,
    )
    allow = check_allowed(args.allow_different)
    from lab.results.store import Store
    store = Store(args.store, create=False)
    try:
        side = {}
        for name in (args.a, args.b):
            rows = [r for r in store.results(name) if r.ok]
            if not rows:
                rows = [r for r in store.results(job_id=name) if r.ok]
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
    from pathlib import Path

    from lab.results.importer import parse_results_csv
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
    from lab.results.store import Store
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
    from lab.results.store import Store
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
