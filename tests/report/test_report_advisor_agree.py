"""Regression (issue 12): `lab advise --format json` and `lab report` print the same break-even.

Before, the advisor said 1 and the report n/a when the AIPU starts faster but runs slower, in the
same page. Both now call `lab.decide.tradeoffs.break_even`; this test drives the two real CLI commands on
one store and reads the break-even out of the JSON answer and out of the rendered HTML (the
CPU-vs-AIPU table and the advisor table), for both crossing cases.
"""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from lab.cli import main
from lab.core.records import Job, Measurement
from lab.results.store import Store
from lab.decide.tradeoffs import break_even

CPU = dict(p50_ms=20.0, load_ms=100.0, first_ms=30.0)  # start 130 ms


CASES = {
    # AIPU starts faster (15 ms) but runs slower (25 ms): the CPU catches up at
    # 130 + (n-1)*20 <= 15 + (n-1)*25  <=>  n - 1 >= 23  <=>  n = 24
    "aipu-starts-faster-runs-slower": (dict(p50_ms=25.0, load_ms=10.0, first_ms=5.0), 24, "aipu", "cpu"),
    # AIPU starts slower (1045 ms) but runs faster (5 ms): 1045 + (n-1)*5 <= 130 + (n-1)*20  <=>  n = 62
    "aipu-starts-slower-runs-faster": (dict(p50_ms=5.0, load_ms=1000.0, first_ms=45.0), 62, "cpu", "aipu"),
}


class _Tables(HTMLParser):
    """Cell texts of every table row, per <section id=...>."""

    def __init__(self):
        super().__init__()
        self.section = None
        self.rows: dict[str, list[list[str]]] = {}
        self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.section = dict(attrs).get("id")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self.section, []).append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _column(rows: list[list[str]], header: str) -> list[str]:
    head = next(r for r in rows if header in r)
    i = head.index(header)
    return [r[i] for r in rows if r is not head and len(r) == len(head)]


def _fill(path, campaign: str, aipu: dict) -> None:
    store = Store(path)
    store.save_campaign(campaign, {"name": campaign})
    for backend, proc, prec, m in (("paddle-lite-arm", "cpu", "fp32", CPU),
                                   ("paddle-lite-kirin-npu", "aipu", "int8", aipu)):
        j = Job(job_id=f"{campaign}-{proc}", campaign=campaign, device="phone", chip="kirin990",
                model="netx", model_sha256="", backend=backend, processor=proc, precision=prec,
                threads=4)
        store.plan_jobs([j])
        store.finish_job(j.job_id, "ok", measurement=Measurement(
            job_id=j.job_id, n_samples=100, ci_low_ms=m["p50_ms"] * 0.99,
            ci_high_ms=m["p50_ms"] * 1.01, **m))
    store.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_advise_json_and_report_print_the_same_break_even(case, tmp_path, monkeypatch, capsys):
    aipu, expected, ahead_first, ahead_after = CASES[case]
    monkeypatch.chdir(tmp_path)  # no models/ or devices.yaml here: answered from the store alone
    store = tmp_path / "lab.sqlite"
    _fill(store, case, aipu)

    assert main(["--store", str(store), "advise", "--model", "netx", "--device", "phone",
                 "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["break_even_inferences"] == expected
    be = answer["break_even"]
    assert (be["inferences"], be["ahead_first"], be["ahead_after"]) == (expected, ahead_first, ahead_after)

    out = tmp_path / "r.html"
    assert main(["--store", str(store), "report", "--campaign", case, "-o", str(out)]) == 0
    capsys.readouterr()
    tables = _Tables()
    tables.feed(out.read_text())
    pair_cells = _column(tables.rows["cpu-aipu"], "break-even")
    advisor_cells = _column(tables.rows["advisor"], "break-even")
    assert pair_cells == [f"{expected}"] and advisor_cells == [f"{expected}"]
    verdict = _column(tables.rows["cpu-aipu"], "verdict")[0]
    assert f"{ahead_after.upper()} ahead from inference #{expected}" in verdict, verdict

    # and it is the definition itself: the side behind at #1 is ahead (or level) from #n, not before
    total = lambda m, n: m["load_ms"] + m["first_ms"] + (n - 1) * m["p50_ms"]  # noqa: E731
    late, early = (aipu, CPU) if ahead_after == "aipu" else (CPU, aipu)
    assert total(late, expected) <= total(early, expected)
    assert total(late, expected - 1) > total(early, expected - 1)
    assert break_even(cpu_start_ms=130.0, cpu_p50_ms=20.0, aipu_start_ms=aipu["load_ms"] + aipu["first_ms"],
                      aipu_p50_ms=aipu["p50_ms"]).inferences == expected
