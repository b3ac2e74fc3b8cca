"""Sustained runs: the runner's windows, the pure maths (onset, ratio, per-window telemetry), the
protocol keys, the store table, and real runs on `local` with a CPU hog started mid-run."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from helpers import config_error, repo_env
from lab.telemetry.figures import WindowTelemetry, window_telemetry
from lab.telemetry.trace import parse_trace
from lab.measure.campaign import load_campaign, plan_jobs, protocol_identity
from lab.devices.inventory import load_devices
from lab.core.records import Measurement, MeasurementProtocol, SustainedWindow
from lab.runners import runner_core
from lab.results.store import Store
from lab.results.sustained import THROTTLE_SLOWDOWN, merge_window_telemetry, summary, windows_from_doc

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------- the runner
def test_runner_cuts_the_run_into_windows_on_both_clocks():
    """A fake clock: each run() takes 10 ms until t=3 s, then 20 ms; windows of 1 s over 5 s."""
    now = [0.0]

    def clock():
        return now[0]

    def run():
        now[0] += 0.010 if now[0] < 3.0 else 0.020

    timings = {"samples_ms": []}
    up = iter(range(100, 200))
    snaps = iter([(0, 100 * i, 10 * i) for i in range(100)])
    out = runner_core.sustained(run, 5.0, 1.0, 0.02, timings, clock=clock, uptime=lambda: float(next(up)),
                              snapshot=lambda cpus: next(snaps))
    wins = out["windows"]
    assert len(wins) == 5 and [w["idx"] for w in wins] == list(range(5))
    assert wins[0]["t_start_s"] == 0 and wins[-1]["t_end_s"] >= 5.0
    assert all(a["t_end_s"] == b["t_start_s"] and a["clock_end"] == b["clock_start"] for a, b in zip(wins, wins[1:]))
    assert wins[0]["p50_ms"] == pytest.approx(10.0) and wins[4]["p50_ms"] == pytest.approx(20.0)
    assert sum(w["n"] for w in wins) == len(timings["samples_ms"])
    assert timings["stop_reason"] == "sustained" and timings["converged"] is True
    assert wins[0]["host_busy_share"] == 0.0  # fake /proc: no busy jiffies at all


def test_percentile_matches_numpy():
    np = pytest.importorskip("numpy")
    xs = sorted([3.0, 1.0, 7.0, 2.5, 9.0, 4.0, 4.5])
    assert runner_core.percentile_sorted(xs, 90) == pytest.approx(float(np.percentile(xs, 90)))


# ------------------------------------------------------------------------------------ the maths
def _w(idx, p50, t=5.0, trial=0):
    return SustainedWindow(trial=trial, idx=idx, t_start_s=idx * t, t_end_s=(idx + 1) * t, n=100,
                           p50_ms=p50, p90_ms=p50 * 1.2)


def test_onset_is_the_first_window_past_the_threshold_and_ratio_is_last_over_first():
    slow = 10 * (1 + THROTTLE_SLOWDOWN) + 0.01
    onset, ratio, notes = summary([_w(0, 10), _w(1, 10.5), _w(2, slow), _w(3, 30)])
    assert onset == 10.0 and ratio == 3.0 and "onset at 10 s" in notes[0]
    onset, ratio, notes = summary([_w(0, 10), _w(1, 10 * (1 + THROTTLE_SLOWDOWN)), _w(2, 9)])
    assert onset is None and ratio == pytest.approx(0.9) and "no window more than" in notes[0]
    assert summary([_w(0, 10)])[:2] == (None, None)
    # only the first trial counts
    assert summary([_w(0, 10), _w(1, 10), _w(0, 99, trial=1), _w(1, 1, trial=1)])[:2] == (None, 1.0)


def test_throttle_slowdown_sets_the_onset_threshold_and_defaults_to_the_documented_one():
    wins = [_w(0, 10), _w(1, 13.1), _w(2, 16), _w(3, 16)]
    assert summary(wins)[0] == 5.0  # 31 % > 20 %: a noisy host's drift reads as an onset
    onset, _, notes = summary(wins, slowdown=0.5)
    assert onset == 10.0 and "> 50%" in notes[0]
    assert MeasurementProtocol().throttle_slowdown == THROTTLE_SLOWDOWN
    assert "throttle_slowdown" not in protocol_identity(MeasurementProtocol(sustained_s=60, window_s=10))
    assert protocol_identity(MeasurementProtocol(sustained_s=60, window_s=10,
                                                 throttle_slowdown=0.5))["throttle_slowdown"] == 0.5


def test_windows_from_doc_and_telemetry_merge():
    doc = {"sustained": {"windows": [
        {"idx": 0, "t_start_s": 0, "t_end_s": 2, "clock_start": 100.0, "clock_end": 102.0, "n": 5,
         "p50_ms": 1.0, "p90_ms": 2.0, "host_busy_share": 0.3},
        {"idx": 1, "t_start_s": 2, "t_end_s": 4, "clock_start": 102.0, "clock_end": 104.0, "n": 6,
         "p50_ms": 1.5, "p90_ms": 2.5, "host_busy_share": None}]}}
    wins = windows_from_doc(doc, 0)
    assert [w.n for w in wins] == [5, 6] and wins[1].host_busy_share is None and wins[0].clock_end == 102.0
    assert windows_from_doc({}, 0) == []
    merged = merge_window_telemetry(wins, {"t0": [{"temp_c": 50.0, "cpu_mhz": 1800.0, "accel_mhz": None,
                                                    "power_w": 3.0}]})
    assert merged[0].temp_c == 50.0 and merged[0].power_w == 3.0 and merged[1].temp_c is None


def test_window_telemetry_from_a_trace():
    """Two windows [0,2] and [2,4]; the zone heats up, the CPU clock drops, the NPU is steady;
    RAPL counter: 2 J/s then 4 J/s."""
    head = "# hwlab-sampler 1\n# clock uptime\n# rate_hz 1\n# period_s 1\n"
    cols = [("temp.thermal_zone0", "mC"), ("temp.thermal_zone1", "mC"), ("cpu.policy0", "kHz"),
            ("cpu.policy4", "kHz"), ("npu.ffbc0000.npu", "Hz"), ("rapl.intel-rapl:0", "uJ")]
    text = head + "".join(f"# col {n} {u} /sys/x\n" for n, u in cols)
    text += "# info temp.thermal_zone0.type soc-thermal\n# info temp.thermal_zone1.type battery\n"
    text += "# info rapl.intel-rapl:0.max_energy_range_uj 262143328850\n"
    text += "# fields t " + " ".join(n for n, _ in cols) + "\n"
    rows = [(0, 40000, 90000, 1000000, 2000000, 600000000, 0), (1, 41000, 90000, 1000000, 2000000, 600000000, 2e6),
            (2, 45000, 90000, 1000000, 1500000, 600000000, 4e6), (3, 50000, 90000, 1000000, 1000000, 600000000, 8e6),
            (4, 52000, 90000, 1000000, 1000000, 600000000, 12e6)]
    text += "".join(" ".join(str(int(x)) for x in r) + "\n" for r in rows)
    tr = parse_trace(text)
    a, b = window_telemetry(tr, [(0.0, 2.0), (2.0, 4.0)])
    assert a.temp_c == 45.0 and b.temp_c == 52.0  # battery zone (90 °C) excluded
    assert a.cpu_mhz == pytest.approx(2000 * 2 / 3 + 1500 / 3) and b.cpu_mhz == pytest.approx((1500 + 1000 + 1000) / 3)
    assert a.accel_mhz == 600.0 and a.power_w == pytest.approx(2.0) and b.power_w == pytest.approx(4.0)
    bare = parse_trace(head + "# col cpu.policy0 kHz /x\n# fields t cpu.policy0\n0 -\n")
    assert window_telemetry(bare, [(0.0, 1.0)]) == [WindowTelemetry()]


# ------------------------------------------------------------------------------ protocol keys
def _campaign(tmp_path, protocol: str, backends: str = "[paddle-inference-cpu]"):
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(f"""
        name: s
        devices: [local]
        models: [tiny_mlp]
        backends: {backends}
        protocol: {protocol}
        """))
    return p


@pytest.mark.parametrize("protocol,msg", [
    ("{sustained_s: 60, trials: 1}", "window_s must be > 0"),
    ("{sustained_s: 60, window_s: 40, trials: 1}", "at most half"),
    ("{sustained_s: 60, window_s: 10}", "trials: 1"),
    ("{sustained_s: 600, window_s: 10, trials: 1}", "timeout_s"),
    ("{window_s: 10}", "sustained_s is 0"),
    ("{sustained_s: -1}", "out of range"),
    ("{sustained_s: 60, window_s: 10, trials: 1, timeout_s: 200, throttle_slowdown: 0}", "throttle_slowdown must"),
    ("{sustained_s: 60, window_s: 10, trials: 1, timeout_s: 200, throttle_slowdown: 11}", "(0, 10]"),
    ("{throttle_slowdown: 0.5}", "throttle_slowdown is set but sustained_s is 0"),
])
def test_sustained_protocol_is_validated(tmp_path, protocol, msg):
    text = config_error(load_campaign, _campaign(tmp_path, protocol))
    assert msg in text and "c.yaml" in text


def test_sustained_keys_keep_old_job_ids_and_exclude_runners_without_windows(tmp_path):
    assert "sustained_s" not in protocol_identity(MeasurementProtocol())
    assert protocol_identity(MeasurementProtocol(sustained_s=60, window_s=10))["window_s"] == 10
    devs = tmp_path / "d.yaml"
    devs.write_text("devices:\n  - {id: local, chip: generic-x86-cpu, transport: local}\n"
                    "  - {id: phone, chip: kirin990, transport: adb, serial: 'x:5555', abi: arm64-v8a,"
                    " benchmark_bin: /bin/true}\n")
    spec = load_campaign(_campaign(tmp_path, "{sustained_s: 60, window_s: 10, trials: 1, timeout_s: 200}",
                                   "[paddle-inference-cpu, paddle-lite-arm]"))
    spec = spec.__class__(**{**spec.__dict__, "devices": ("local", "phone")})
    jobs, excluded = plan_jobs(spec, load_devices(devs), lambda m: "0" * 64)
    assert {j.backend for j in jobs} == {"paddle-inference-cpu"}
    assert any("sustained runs need" in e.reason for e in excluded)


# ----------------------------------------------------------------------------------- the store
def test_store_keeps_windows_and_summary_figures(tmp_path):
    from lab.core.records import Job
    s = Store(tmp_path / "s.sqlite")
    job = Job("j1", "c", "local", "x", "m", "0" * 64, "paddle-inference-cpu", "cpu", "fp32", 2)
    s.plan_jobs([job])
    m = Measurement("j1", p50_ms=1.0, throttle_onset_s=10.0, sustained_ratio=2.5, samples=[[1.0]],
                    windows=[_w(0, 1.0), SustainedWindow(0, 1, 5.0, 10.0, 50, 2.5, 3.0, 0.4, 1.0, 2.0, 61.5,
                                                         1800.0, None, 3.2)])
    s.finish_job("j1", "ok", measurement=m)
    row = s.results()[0]
    assert row.throttle_onset_s == 10.0 and row.sustained_ratio == 2.5
    assert s.windows()["j1"] == m.windows and s.windows("nope") == {}
    s.finish_job("j1", "failed", error="x")  # a re-run replaces the windows
    assert s.windows() == {}
    s.close()


# ------------------------------------------------------------------------ real runs with a hog
# The onset threshold of the hog runs: the hog makes the runner ~7x slower, while this shared VM's
# quiet windows drift by up to ~30 % over minutes (seen: window 6 of a quiet run 31 % slower than
# window 0, no busy host) - which the default 20 % rightly reads as an onset.
HOG_SLOWDOWN = 1.0


def sustained_with_hog(tmp_path, *, model: str, seconds: float, window: float, hog_at: float):
    """Run a sustained job on `local` (threads 2) and start a hog pinned to the runner's CPUs
    `hog_at` s after the runner process appears; returns (row, windows, hog start on uptime)."""
    from hog import boost, cpu_hog, find_process, uptime
    (tmp_path / "devices.yaml").write_text(f"devices:\n  - {{id: local, chip: generic-x86-cpu, transport: local,"
                                           f" workdir: {tmp_path / 'device'}}}\n")
    (tmp_path / "c.yaml").write_text(textwrap.dedent(f"""
        name: sus
        devices: [local]
        models: [{model}]
        backends: [paddle-inference-cpu]
        threads: [2]
        protocol: {{warmup: 3, warmup_seconds: 0.5, trials: 1, sustained_s: {seconds}, window_s: {window},
                   timeout_s: {seconds + 240}, sample_hz: 5, throttle_slowdown: {HOG_SLOWDOWN}}}
        """))
    from lab.models.build import build
    root = REPO / "models"  # the lab's default models root (git-ignored): cached builds are reused
    build(model, out_root=root)
    out: dict = {}
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "--devices", "devices.yaml", "--store", "s.sqlite",
                             "run", "c.yaml", "--models-root", str(root), "--no-progress"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=repo_env())
    stop = threading.Event()
    try:
        pid = find_process(b"--sustained-s", timeout=300, alive=lambda: proc.poll() is None)
        assert pid, proc.communicate()[1][-2000:]
        boost(pid)
        cpus = sorted(os.sched_getaffinity(pid))
        stop.wait(hog_at)
        with cpu_hog(cpus, per_cpu=3, seconds=seconds + 120):
            out["hog_uptime"] = uptime()
            # the hog ends with the runner: the lab's own work after it (pulling, the host-side
            # reference, the store) is not what is measured, and starved by the hog it took ~30 s
            deadline = time.monotonic() + seconds + 600
            while os.path.exists(f"/proc/{pid}") and proc.poll() is None and time.monotonic() < deadline:
                stop.wait(0.2)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    s = Store(tmp_path / "s.sqlite")
    row = s.results("sus")[0]
    wins = s.windows(row.job_id)[row.job_id]
    s.close()
    return row, wins, out["hog_uptime"]


def _check_onset(row, wins, hog_uptime, window):
    hog_rel = hog_uptime - wins[0].clock_start  # the hog's start, seconds into the sustained run
    table = "\n".join(f"{w.idx:3d} {w.t_start_s:6.1f}s p50 {w.p50_ms:8.2f} p90 {w.p90_ms:8.2f} n {w.n:5d} "
                      f"busy {w.host_busy_share}" for w in wins)
    assert window <= hog_rel <= wins[-1].t_end_s - 2 * window, f"hog started at {hog_rel:.1f} s:\n{table}"
    before = [w for w in wins if w.t_end_s <= hog_rel]
    after = [w for w in wins if w.t_start_s >= hog_rel]
    # the windows show the change: every window after the hog is slower than every one before it
    assert max(w.p50_ms for w in before) < min(w.p50_ms for w in after), table
    assert row.throttle_onset_s is not None, table
    assert abs(row.throttle_onset_s - hog_rel) <= window, f"onset {row.throttle_onset_s} vs hog {hog_rel:.1f}\n{table}"
    assert row.sustained_ratio > 1 + HOG_SLOWDOWN and row.busy_host is True
    return hog_rel, table


# (seconds, window, hog at): the issue's 5 minutes with a hog from minute 2, or a 40 s development
# variant (HWLAB_SUSTAINED_SHORT=1, ~75 s in all); CI runs the 5 minutes
SUSTAINED_RUNS = {"five-minutes": (300, 15, 120), "short": (40, 5, 15)}


@pytest.mark.slow
@pytest.mark.sustained
def test_sustained_run_with_a_hog_shows_the_onset_in_its_windows(tmp_path):
    """The issue's must-show: 5 minutes in 15 s windows on `local`, a CPU hog from minute 2."""
    seconds, window, hog_at = SUSTAINED_RUNS["short" if os.environ.get("HWLAB_SUSTAINED_SHORT") == "1"
                                             else "five-minutes"]
    row, wins, hog = sustained_with_hog(tmp_path, model="mobilenet_v1", seconds=seconds, window=window,
                                        hog_at=hog_at)
    hog_rel, table = _check_onset(row, wins, hog, window)
    print(f"hog at {hog_rel:.1f} s; onset {row.throttle_onset_s:.1f} s; ratio {row.sustained_ratio:.2f}\n{table}")


def test_report_ranks_first_and_last_window_and_flags_rank_changes(tmp_path):
    """Chip A is faster at first and throttles; chip B is steady: ranks swap, both flagged."""
    from lab.core.records import Job
    from lab.report.render import build_report, render_html
    from lab.report.sections import sustained_section
    s = Store(tmp_path / "s.sqlite")
    jobs = [Job("ja", "c", "board-a", "rk3588", "m", "0" * 64, "paddle-inference-cpu", "cpu", "fp32", 2),
            Job("jb", "c", "board-b", "generic-x86-cpu", "m", "0" * 64, "paddle-inference-cpu", "cpu", "fp32", 2)]
    s.plan_jobs(jobs)
    a = [_w(0, 10.0), _w(1, 11.0), _w(2, 25.0)]
    b = [_w(0, 15.0), _w(1, 15.2), _w(2, 15.1)]
    for job, wins in ((jobs[0], a), (jobs[1], b)):
        onset, ratio, notes = summary(wins)
        s.finish_job(job.job_id, "ok", measurement=Measurement(
            job.job_id, p50_ms=wins[1].p50_ms, throttle_onset_s=onset, sustained_ratio=ratio,
            samples=[[w.p50_ms for w in wins]], windows=wins, notes=notes))
    (g,) = sustained_section(s, s.results("c"))
    ranks = {e["row"].job_id: (e["rank_first"], e["rank_last"], e["rank_changed"]) for e in g["entries"]}
    assert ranks == {"ja": (1, 2, True), "jb": (2, 1, True)} and g["chart"] is not None
    html = render_html(build_report(s, ["c"]))
    s.close()
    assert 'id="sustained"' in html and html.count("rank changed") >= 2 and "minute 1 against minute N" in html
