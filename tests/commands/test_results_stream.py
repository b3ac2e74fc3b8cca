"""`lab results` streams its JSON and CSV (issue 23) byte for byte as the list writer did, and shows
agreement (and accuracy where measured) beside p50 at every width (issue 25)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from results_fixtures import small_store

from lab.cli import main
from lab.commands.results import _print_table
from lab.core import jsonio
from lab.core.textsafe import csv_cell, one_line
from lab.results.store import Store


def _list_json(rows) -> str:
    """The writer before streaming: every row built, then one jsonio.dumps."""
    return jsonio.dumps([r.to_json() for r in rows], indent=1) + "\n"


def _list_csv(rows) -> str:
    out = io.StringIO()
    docs = [r.to_json() for r in rows]
    w = csv.DictWriter(out, fieldnames=list(docs[0]), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for d in docs:
        w.writerow({k: csv_cell("" if v is None else jsonio.dumps(v, sort_keys=True) if k == "options"
                                else one_line(v) if isinstance(v, str) else jsonio.finite(v))
                    for k, v in d.items()})
    return out.getvalue()


@pytest.mark.parametrize("fmt,writer", [("json", _list_json), ("csv", _list_csv)])
@pytest.mark.parametrize("filters", [[], ["--campaign", "demo"], ["--status", "failed"]])
def test_streamed_output_is_the_list_output_byte_for_byte(tmp_path, capsys, fmt, writer, filters):
    db = small_store(tmp_path / "lab.sqlite")
    store = Store(db, readonly=True)
    status = filters[1] if filters[:1] == ["--status"] else None
    campaign = filters[1] if filters[:1] == ["--campaign"] else None
    expected = writer(store.results(campaign, status=status))
    store.close()
    assert main(["--store", str(db), "results", "--format", fmt, *filters]) == 0
    got = capsys.readouterr().out
    assert got == expected
    if fmt == "json":
        docs = json.loads(got)
        assert len(docs) == (1 if status else 5 if campaign else 6)
        if not filters:
            by_id = {d["job_id"]: d for d in docs}
            assert by_id["job003"]["options"] == {"shapes": [[1, 3], {"x": 2.5}]} and "h\\u00f6st" in got
            assert by_id["job001"]["agree_ok"] is False and by_id["job002"]["agree_ok"] is None
    else:
        assert "'=cmd" in got and "\\x0aline two \\x1b" in got  # one line, never a formula


def test_an_empty_selection_is_an_empty_list(tmp_path, capsys):
    db = small_store(tmp_path / "lab.sqlite")
    assert main(["--store", str(db), "results", "--format", "json", "--status", "skipped"]) == 0
    assert capsys.readouterr().out == "[]\n"


def test_an_unknown_campaign_is_one_line_and_exit_2(tmp_path, capsys):
    db = small_store(tmp_path / "lab.sqlite")
    assert main(["--store", str(db), "results", "--format", "json", "--campaign", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no campaign named 'nope'" in err and "demo" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("width", [80, 120, None])  # None: --wide
def test_agreement_and_accuracy_sit_beside_p50_at_every_width(tmp_path, width):
    store = Store(small_store(tmp_path / "lab.sqlite"), readonly=True)
    rows = store.results("demo")
    store.close()
    buf = io.StringIO()
    _print_table(rows, wide=width is None, width=width, file=buf)
    lines = buf.getvalue().splitlines()
    head = next(i for i, line in enumerate(lines) if "p50 ms" in line)
    header = lines[head]
    assert "agree" in header and "top1%" in header, header
    assert header.index("p50 ms") < header.index("agree") < header.index("top1%")
    body = "\n".join(lines[head + 1:])
    for expected in ("ok", "FAIL", "91.2", "31", "n/a"):
        assert expected in body, (width, expected)
    if width is None:
        assert "cos min" in header and "0.7" in body  # the detail: in --wide (dropped first when narrow)
    # four decimals, as the report: 3 significant digits printed a cosine of 0.99953 as a perfect "1"
    from dataclasses import replace

    from lab.commands.results import TABLE_COLUMNS
    assert TABLE_COLUMNS["cos min"](replace(rows[0], status="ok", agree_cosine_min=0.99953)) == "0.9995"


def test_no_accuracy_column_where_nothing_measured_it(tmp_path):
    store = Store(small_store(tmp_path / "lab.sqlite"), readonly=True)
    rows = [r for r in store.results("demo") if r.accuracy_top1 is None]
    store.close()
    buf = io.StringIO()
    _print_table(rows, width=120, file=buf)
    assert "agree" in buf.getvalue() and "top1%" not in buf.getvalue()
