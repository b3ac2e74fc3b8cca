"""Issues 22 and 24, read side: rows from emulated devices, from devices that failed their identity
check, and from a simulated runtime are flagged with their reason, counted by the run summary,
and never comparable with rows from real devices. Rows are made directly with the fields the
identity check (`identity`, `identity_note`) and the simulated runtime (`source`) write."""
from __future__ import annotations

import pytest

from lab.core.errors import ConfigError
from lab.core.records import Measurement, ResultRow
from lab.results.comparability import (
    check_allowed,
    compare_pair,
    context_of,
    differences,
)
from lab.results.quality import (
    FLAGS,
    LABELS,
    NOT_REPRESENTATIVE,
    classify,
    device_kind,
    identity_quality,
    identity_skipped,
    left_out,
    representative,
    summarize,
)

QEMU = "user-mode emulation: ELF machine aarch64, kernel reports x86_64 (AMD EPYC)"
MISMATCH = "found x86_64, 2 cores, AMD EPYC; rk1808 is aarch64 with 2 x Cortex-A35"


def row(job_id="j", **kw) -> ResultRow:
    base = {"job_id": job_id, "campaign": "c", "device": "board", "chip": "rk1808", "model": "digits_cnn",
                "backend": "paddle-inference-cpu", "processor": "cpu", "precision": "fp32", "threads": 2,
                "batch": 1, "status": "ok", "p50_ms": 1.07, "ci_low_ms": 1.06, "ci_high_ms": 1.08, "converged": True,
                "source": "lab", "model_sha256": "ab" * 32}
    base.update(kw)
    return ResultRow(**base)


def test_each_flag_with_its_reason():
    emu = classify(row(identity="emulated", identity_note=QEMU))
    assert emu.flags == ("emulated",) and QEMU in emu.text()
    mis = classify(row(identity="mismatch", identity_note=MISMATCH))
    assert mis.flags == ("identity_mismatch",) and MISMATCH in mis.text()
    sim = classify(row(source="simulated"))
    assert sim.flags == ("simulated",) and "not measured on any device" in sim.text()
    # without a note the reason still says what it is
    assert "emulated or virtualised" in classify(row(identity="emulated")).text()
    # the identity flags come first and sit beside the other quality flags
    both = classify(row(identity="emulated", identity_note=QEMU, converged=False))
    assert both.flags == ("emulated", "not_converged")
    assert set(NOT_REPRESENTATIVE) <= set(FLAGS) and all(f in LABELS for f in FLAGS)


@pytest.mark.parametrize("fields, expected", [
    ({}, True),  # identity not checked (None): rows stored before the check existed
    ({"identity": "ok"}, True),
    ({"identity": "skipped", "identity_note": "board with a custom kernel"}, True),
    ({"identity": "emulated", "identity_note": QEMU}, False),
    ({"identity": "mismatch", "identity_note": MISMATCH}, False),
    ({"source": "simulated"}, False),
    ({"source": "import:vendor.csv"}, True),
])
def test_representative(fields, expected):
    r = row(**fields)
    assert representative(r) is expected
    assert representative(r) is not bool(identity_quality(r).flags)  # the fast path agrees


def test_skipped_is_representative_but_recorded():
    r = row(identity="skipped", identity_note="board with a custom kernel")
    assert classify(r).clean
    assert identity_skipped(r) == "identity check skipped: board with a custom kernel"
    assert identity_skipped(row(identity="ok")) is None


def test_a_measurement_is_judged_like_a_row():
    """The scheduler classifies the Measurement the moment a job ends; the same flags."""
    m = Measurement(job_id="j", p50_ms=1.0, identity="mismatch", identity_note=MISMATCH)
    assert classify(m).flags == ("identity_mismatch",) and not representative(m)


def test_run_summary_counts_them():
    qs = [classify(row(identity="emulated", identity_note=QEMU)),
          classify(row(identity="emulated", identity_note=QEMU)),
          classify(row(identity="mismatch", identity_note=MISMATCH)),
          classify(row(source="simulated")), classify(row())]
    text = summarize(qs)
    assert "2 emulated" in text and "1 identity mismatch" in text and "1 simulated" in text
    assert "4 not representative of their chip" in text
    assert summarize([classify(row())]) == ""


def test_left_out_counts_and_reasons():
    rows = [row(identity="emulated", identity_note=QEMU)] * 3 + [row(source="simulated"), row()]
    lo = left_out(rows)
    assert lo.total == 4 and lo.counts["emulated"] == 3 and lo.counts["simulated"] == 1
    assert lo.text().startswith("4 rows left out: 3 emulated, 1 simulated")
    assert QEMU in lo.text()
    assert lo.to_json() == {"rows": 4, "by_flag": {"emulated": 3, "simulated": 1},
                            "reasons": [f"emulated: {QEMU}", lo.reasons[1]]}
    assert left_out([row()]).text() == ""


def test_device_kind():
    assert device_kind(row()) == "device"
    assert device_kind(row(identity="skipped")) == "device"
    assert device_kind(row(identity="emulated")) == "emulated"
    assert device_kind(row(identity="mismatch")) == "mismatched"
    assert device_kind(row(source="simulated", identity="emulated")) == "simulated"


# ---------------------------------------------------------------------------- comparability
def ctx(r: ResultRow):
    return context_of(r, {"env": {"paddle": "3.3.1", "governor": "performance"},
                          "runner": "pi_runner", "runner_version": "1.0.0"})


@pytest.mark.parametrize("fields", [{"identity": "emulated", "identity_note": QEMU},
                                    {"identity": "mismatch", "identity_note": MISMATCH},
                                    {"source": "simulated"}])
def test_not_comparable_with_rows_from_real_devices(fields):
    real, other = ctx(row("a")), ctx(row("b", **fields))
    (d,) = differences(real, other)
    assert d.field == "identity" and d.a == "real device"
    assert (fields.get("identity_note") or "simulated") in d.b
    # nothing the user may allow removes it
    assert differences(real, other, allow=("runtime_version", "host_busy"))[0].field == "identity"
    res = compare_pair(real, other, [[1.0] * 20], [[1.0] * 20], "digits_cnn")
    assert not res.comparable and res.outcome == "not comparable"
    assert res.to_json()["verdict"].startswith("not comparable: identity: real device vs ")


def test_same_kind_stays_comparable():
    """Two runs on the same emulated board compare with each other (portability work)."""
    a = ctx(row("a", identity="emulated", identity_note=QEMU))
    b = ctx(row("b", identity="emulated", identity_note=QEMU))
    assert differences(a, b) == []
    assert differences(ctx(row("a", identity="skipped")), ctx(row("b"))) == []


def test_allow_different_identity_is_refused_with_the_reason():
    with pytest.raises(ConfigError) as e:
        check_allowed(["identity"])
    assert "never comparable with rows from real devices" in str(e.value)


def test_the_campaign_end_line_counts_them():
    """`lab run`'s end line reads RunSummary.quality_text, built from each job's classify()."""
    from lab.measure.scheduler import RunSummary
    s = RunSummary(ok=2, qualities=[classify(Measurement(job_id="a", p50_ms=1.0, identity="emulated",
                                                         identity_note=QEMU)),
                                    classify(Measurement(job_id="b", p50_ms=1.0, identity="ok"))])
    assert s.quality_text == " (1 emulated, 1 not representative of their chip)"
