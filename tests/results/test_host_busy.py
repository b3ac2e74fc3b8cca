"""Busy-host detection: the runners' /proc probe (pure parsing and the share), the host-side flag."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from lab.results.host_busy import BUSY_HOST_SHARE, host_busy_figures, is_busy
from lab.runners import runner_core

STAT = """cpu  1000 10 200 5000 100 5 5 0 0 0
cpu0 500 5 100 2500 50 3 2 0 0 0
cpu1 500 5 100 2500 50 2 3 0 0 0
intr 12345
ctxt 999
"""


def test_proc_stat_busy_and_total():
    # busy = user+nice+system+irq+softirq+steal; idle and iowait are not busy
    assert runner_core.parse_proc_stat(STAT) == (1000 + 10 + 200 + 5 + 5, 6320)
    assert runner_core.parse_proc_stat(STAT, [1]) == (500 + 5 + 100 + 2 + 3, 3160)
    assert runner_core.parse_proc_stat(STAT, [0, 1]) == runner_core.parse_proc_stat(STAT)
    assert runner_core.parse_proc_stat(STAT, [7]) == runner_core.parse_proc_stat(STAT)  # unknown CPU: the total line
    assert runner_core.parse_proc_stat("intr 1\n") is None


def test_self_stat_handles_spaces_and_parens_in_comm():
    line = "4242 (py thon) (x)) S 1 4242 4242 0 -1 4194304 100 0 0 0 37 12 0 0 20 0 3 0 99 1 1"
    assert runner_core.parse_self_stat(line) == 37 + 12
    assert runner_core.parse_self_stat("garbage") is None


def test_share_is_others_over_all_and_unknown_is_none():
    a, b = (1000, 10000, 100), (1900, 11000, 500)  # 900 busy of 1000, 400 of them ours
    share, detail = runner_core.busy_share(a, b)
    assert share == pytest.approx(0.5) and detail["others_jiffies"] == 500
    assert runner_core.busy_share("no /proc/stat", b) == (None, "no /proc/stat")
    assert runner_core.busy_share(a, a)[0] is None
    # accounting skew never yields a negative share
    assert runner_core.busy_share((0, 0, 0), (10, 100, 12))[0] == 0.0


def test_record_busy_writes_share_or_note():
    doc = {"env": {}}
    runner_core.record_busy(doc, (0, 0, 0), (60, 100, 10), [0, 1])
    assert doc["env"]["host_busy_share"] == pytest.approx(0.5) and doc["env"]["host_busy"]["cpus"] == [0, 1]
    doc = {"env": {}}
    runner_core.record_busy(doc, "no /proc/stat or /proc/self/stat on this device", (1, 2, 3), None)
    assert doc["env"]["host_busy_share"] is None and "no /proc/stat" in doc["env"]["host_busy_note"]


def test_host_figures_take_the_worst_trial_and_flag_past_the_threshold():
    share, busy, notes = host_busy_figures([{"host_busy_share": 0.02}, {"host_busy_share": 0.4}, {}])
    assert share == 0.4 and busy is True and "busy host" in notes[0] and "40%" in notes[0]
    share, busy, notes = host_busy_figures([{"host_busy_share": 0.01}])
    assert (share, busy, notes) == (0.01, False, [])
    share, busy, notes = host_busy_figures([{"host_busy_share": None, "host_busy_note": "no /proc"}])
    assert share is None and busy is None and "no /proc" in notes[0]
    assert is_busy(BUSY_HOST_SHARE) is False and is_busy(BUSY_HOST_SHARE + 1e-9) is True and is_busy(None) is None


def test_real_probe_sees_a_pinned_hog():
    """The probe on this machine's /proc: a busy loop pinned to our CPU shows up as others' time."""
    old = os.sched_getaffinity(0)
    cpus = sorted(old)[:1]
    os.sched_setaffinity(0, set(cpus))
    hog = subprocess.Popen([sys.executable, "-c", "import time\nend=time.time()+20\nwhile time.time()<end: pass"])
    try:
        os.sched_setaffinity(hog.pid, set(cpus))
        time.sleep(0.3)
        a = runner_core.busy_snapshot(cpus)
        time.sleep(1.0)
        share, detail = runner_core.busy_share(a, runner_core.busy_snapshot(cpus))
    finally:
        hog.kill()
        hog.wait()
        os.sched_setaffinity(0, old)
    assert share is not None and share > 0.5, detail  # we slept; the hog (and co-tenants) ran


def test_advisor_lowers_confidence_for_a_busy_host(tmp_path):
    """Same two measured sides as a confident answer; flag one busy and the confidence drops."""
    from lab.decide import advisor
    from lab.core.records import Job, Measurement
    from lab.results.store import Store

    def job(backend, proc, prec="fp32"):
        return Job(f"{backend}-{prec}", "c", "mate30", "kirin990", "cnn", "", backend, proc, prec, 1)

    def answer(busy: bool):
        store = Store(tmp_path / f"s{busy}.sqlite")
        cpu, npu = job("paddle-lite-arm", "cpu"), job("paddle-lite-kirin-npu", "aipu")
        store.plan_jobs([cpu, npu])
        store.finish_job(cpu.job_id, "ok", measurement=Measurement(
            cpu.job_id, p50_ms=30.0, ci_low_ms=29.0, ci_high_ms=31.0, load_ms=100.0, first_ms=5.0,
            host_busy_share=0.5 if busy else 0.01, busy_host=busy))
        store.finish_job(npu.job_id, "ok", measurement=Measurement(
            npu.job_id, p50_ms=6.0, ci_low_ms=5.9, ci_high_ms=6.1, load_ms=1800.0, first_ms=60.0,
            host_busy_share=0.01, busy_host=False))
        rows = store.results()
        store.close()
        return advisor.advise("cnn", "mate30", rows=rows, devices=[], models_root=tmp_path / "none")

    quiet, busy = answer(False), answer(True)
    assert quiet.confidence == "high" and busy.confidence == "medium", (quiet.confidence, busy.confidence)
    assert any("busy host" in n for n in busy.confidence_reasons)
    assert not any("busy host" in n for n in quiet.confidence_reasons)
