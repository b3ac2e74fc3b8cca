"""Issues 22 and 24 in the report: rows from emulated or mismatched devices are marked (a visible
badge per row, the reason as text) and explained; simulated rows never sit next to measured ones
in a table, chart, ranking, verdict or comparison, and a report of simulated rows only says so.

Rows carry the fields the identity check and the simulated runtime write (`identity`,
`identity_note`, `source`), stored through the real Store (tests/report_fixtures.fill). Model ids
are not zoo ids: the report's advisor reads ./models, and a built zoo model there would set its
build hash apart from these rows'."""
from __future__ import annotations

import html

import pytest
from report_fixtures import fill

from lab.report.render import build_report, render_html
from lab.report.sections import split_simulated
from lab.results.store import Store

QEMU = "user-mode emulation: ELF machine aarch64, kernel reports x86_64 <qemu>"
MISMATCH = "found x86_64 with 2 cores; rk1808 is aarch64 with 2 x Cortex-A35"
SIM = {"source": "simulated"}


def _latency(page: str) -> str:
    return page.split('id="latency"')[1].split("</section>")[0]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Real rows on a host and a phone, an emulated board, a mismatched board, and simulated rows
    of the same models (one of them far faster than anything measured); the report built once."""
    s = Store(tmp_path_factory.mktemp("mixed") / "lab.sqlite")
    fill(s, "mix", [
        ({"device": "host", "model": "net_a"}, 10.0, {}),
        ({"device": "arm-emu", "model": "net_a", "chip": "rk1808"}, 50.0,
         {"identity": "emulated", "identity_note": QEMU}),
        ({"device": "local-as-rk1808", "model": "net_a", "chip": "rk1808"}, 1.07,
         {"identity": "mismatch", "identity_note": MISMATCH}),
        ({"device": "phone", "model": "net_b", "backend": "paddle-lite-arm", "chip": "kirin990"}, 30.0, {}),
        ({"device": "phone", "model": "net_b", "backend": "paddle-lite-kirin-npu",
          "processor": "aipu", "precision": "int8", "chip": "kirin990"}, 5.0, {}),
        ({"device": "sim-0001", "model": "net_a", "chip": "rk3588"}, 0.2, SIM),
        ({"device": "sim-0002", "model": "net_b", "backend": "paddle-lite-kirin-npu",
          "processor": "aipu", "precision": "int8", "chip": "kirin990"}, 0.1, SIM),
    ])
    rep = build_report(s, ["mix"])
    yield rep, render_html(rep)
    s.close()


def test_rows_are_marked_with_a_badge_and_the_reason_as_text(mixed):
    _, page = mixed
    lat = _latency(page)
    # one visible badge per row, the reason escaped (text, never markup)
    assert f'title="emulated: {html.escape(QEMU)}">emulated</span>' in lat
    assert f'title="identity mismatch: {html.escape(MISMATCH)}">identity mismatch</span>' in lat
    assert "<qemu>" not in page and "&lt;qemu&gt;" in page
    # every configuration label in the page's tables says so too
    assert "arm-emu · paddle-inference-cpu · fp32 · t1 · onednn=True [emulated]" in page
    # the summary explains, with the counts and reasons
    summary = page.split('id="summary"')[1].split("</section>")[0]
    assert "1 row(s) ran on an emulated or virtualised device: not representative of their chip" in summary
    assert "1 row(s) ran on hardware that is not the chip the inventory names" in summary
    assert html.escape(MISMATCH) in summary
    assert 'class="flag good">clean' not in summary


def test_simulated_rows_are_shown_apart_never_next_to_measured(mixed):
    rep, page = mixed
    # no latency table or chart of measured rows holds a simulated one
    shown = [r for g in rep.latency for r in g["rows"]]
    assert shown and not [r for r in shown if r.source == "simulated"]
    assert {r.device for r in rep.sections["simulated"]["rows"]} == {"sim-0001", "sim-0002"}
    assert rep.sections["simulated"]["only"] is False
    assert "sim-0001" not in _latency(page)
    apart = page.split('id="simulated"')[1].split("</section>")[0]
    assert "Simulated rows (not measurements)" in apart and "sim-0001" in apart
    assert ">simulated</span>" in apart
    # the CPU-vs-AIPU comparison and the verdicts use the phone's measured rows only
    (pair,) = rep.sections["cpu_aipu"]
    assert pair.device == "phone" and pair.aipu.p50_ms > 1.0
    devices = {a["device"] for a in rep.sections["advisor"]["answers"]}
    assert not [d for d in devices if d.startswith("sim-")]
    # the ranking: no chip's measured criterion comes from a simulated or unrepresentative row
    for prof in rep.sections["ranking"]["profiles"]:
        for chip in prof["chips"]:
            for m in chip["measured"].values():
                assert m["latency_ms"] is None or m["latency_ms"] >= 1.5, (chip["chip"], m)


def test_unrepresentative_rows_never_speak_for_a_chip_in_verdicts(mixed):
    rep, _ = mixed
    answers = {a["device"]: a for a in rep.sections["advisor"]["answers"]}
    mis = answers["local-as-rk1808"]
    assert mis["numbers"]["cpu"] is None and mis["left_out"]["by_flag"] == {"identity_mismatch": 1}
    assert any(MISMATCH in n for n in mis["notes"])


def test_a_report_of_simulated_rows_only_says_so(tmp_path):
    s = Store(tmp_path / "sim.sqlite")
    fill(s, "scale", [({"device": f"sim-{i:04d}", "model": "net_a", "chip": "rk3588"}, 1.0 + i, SIM)
                      for i in range(3)])
    rep = build_report(s, ["scale"])
    assert rep.sections["simulated"] == {"rows": [], "only": True}
    page = render_html(rep)
    assert "every row of this report was replayed by a simulated runtime" in page
    lat = _latency(page)
    assert lat.count(">simulated</span>") == 3  # each shown row is labelled
    # never a chip's measurement: scoring and the advisor leave them out
    for prof in rep.sections["ranking"]["profiles"]:
        assert all(not c["measured"] for c in prof["chips"])
    for a in rep.sections["advisor"]["answers"]:
        assert a["numbers"] == {"cpu": None, "aipu": None, "gpu": None}
        assert any("only simulated rows exist" in n for n in a["notes"])
    s.close()


def test_baseline_never_compares_simulated_with_measured(tmp_path):
    s = Store(tmp_path / "b.sqlite")
    fill(s, "base", [({"device": "d", "model": "a"}, 10.0, {})])
    fill(s, "sim", [({"device": "d", "model": "a"}, 5.0, SIM)], seed=2)
    (d,) = build_report(s, ["sim"], baseline="base").sections["baseline"]["deltas"]
    assert d.status == "not comparable" and d.method.startswith("not comparable: identity: real device")
    s.close()


def test_split_simulated():
    class R:
        def __init__(self, source):
            self.source = source
    real, sim = R("lab"), R("simulated")
    assert split_simulated([real]) == ([real], [], False)
    assert split_simulated([real, sim]) == ([real], [sim], False)
    assert split_simulated([sim]) == ([sim], [], True)
