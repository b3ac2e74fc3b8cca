"""TelemetrySession end to end over the real local transport (the same calls SSH/ADB get)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab.telemetry.figures import POWER_FIELDS
from lab.telemetry import session as S
from lab.core.records import Device
from lab.transport.local import LocalTransport

TREES = Path(__file__).resolve().parents[1] / "data" / "sysfs"


def transport(tmp_path):
    return LocalTransport(Device(id="local", chip="test", transport="local",
                                 workdir=str(tmp_path / "device")))


def test_session_on_fake_phone_gives_power_and_energy(tmp_path):
    tp = transport(tmp_path)
    sess = S.TelemetrySession(idle_s=0.3, root=str(TREES / "kirin_phone"))
    sess.start(tp, tp.workdir, rate_hz=20)
    assert sess.started and sess.has_power
    a = sess.mark("trial-start")
    time.sleep(0.6)
    b = sess.mark("trial-end")
    assert a.clock < b.clock
    # runner JSON with the exact clock fields, 40 inferences in the steady window
    doc = {"timings": {"samples_ms": [10.0] * 40, "steady_seconds": 0.4},
           "clock": {"name": "uptime", "steady_start": a.clock + 0.1, "steady_end": a.clock + 0.5}}
    w = sess.add_run(doc)
    assert w.iterations == 40 and w.end - w.start == pytest.approx(0.4)
    res = sess.stop_and_collect(tp, tmp_path / "local")
    # fake phone: 350 mA x 3.85 V = 1.3475 W flat, idle and load alike
    assert res.power_w == pytest.approx(1.3475)
    assert res.idle_w == pytest.approx(1.3475)
    assert res.energy_mj_per_inf == pytest.approx(1.3475 * 0.4 * 1000 / 40)
    assert res.energy_net_mj_per_inf == pytest.approx(0.0, abs=1e-9)
    assert res.temp_start_c == 41.0 and res.throttled is False
    assert "shorter than 10 sensor periods" in res.power_note  # 0.4 s < 10 x 0.25 s
    assert Path(res.trace_file).exists()
    assert not (Path(sess.dir)).exists()  # device side cleaned up


def test_session_fallback_window_from_end_mark(tmp_path):
    tp = transport(tmp_path)
    sess = S.TelemetrySession(idle_s=0.0, root=str(TREES / "rk1808_board"))
    sess.start(tp, tp.workdir)
    sess.mark("trial-start")
    time.sleep(0.5)
    end = sess.mark("trial-end")
    w = sess.add_run({"timings": {"samples_ms": [5.0] * 60, "steady_seconds": 0.3},
                      "finished_at": "2026-01-01T00:00:00Z"})  # whole seconds: not mappable
    assert w.end == end.clock and "approximate" in w.note
    res = sess.stop_and_collect(tp, tmp_path / "local")
    assert res.power_w == pytest.approx(2.5) and res.power_source.startswith("ina226")
    assert "approximate" in res.power_note and res.idle_w is None


def test_session_on_this_machine_says_unavailable(tmp_path):
    tp = transport(tmp_path)
    sess = S.TelemetrySession(idle_s=10)  # no power sensor here: must not wait 10 s
    t0 = time.monotonic()
    sess.start(tp, tp.workdir)
    assert time.monotonic() - t0 < 8
    sess.mark("trial-start")
    sess.mark("trial-end")
    sess.add_run({"timings": {"samples_ms": [1.0] * 10, "steady_seconds": 0.01}})
    f = sess.stop_and_collect(tp, tmp_path / "local").fields()
    if not sess.has_power:
        assert f["power_w"] is None and f["power_note"].startswith("power unavailable:")


def test_start_failure_never_raises(tmp_path):
    class Broken:
        device_id, workdir = "x", "/nonexistent"

        def push(self, *a):
            raise OSError("disk full")

    sess = S.TelemetrySession(idle_s=0)
    sess.start(Broken(), "/nonexistent")
    res = sess.stop_and_collect(Broken(), tmp_path)
    assert res.power_w is None and "disk full" in res.power_note


def test_job_kwarg_and_whole_job_fallback_as_execute_calls_it(tmp_path):
    """lab/runtimes/execute.py today: TelemetrySession(job=job), start, stop_and_collect, no add_run."""
    from lab.core.records import Job, MeasurementProtocol
    job = Job("j1", "c", "local", "chip", "m", "", "paddle-inference-cpu", "cpu", "fp32", 1,
              protocol=MeasurementProtocol(idle_baseline_s=0.2))
    tp = transport(tmp_path)
    sess = S.TelemetrySession(job=job, root=str(TREES / "x86_rapl"))
    assert sess.idle_s == 0.2 and sess.nvml is False
    sess.start(tp, tp.workdir, job.protocol.sample_hz)
    time.sleep(0.3)
    f = sess.stop_and_collect(tp, tmp_path / "l").measurement_fields()
    # static fake counter: 0 W over the job, a real figure from a counter (not 'unavailable')
    assert f["power_w"] == 0.0 and f["power_source"].startswith("rapl:intel-rapl:0")
    assert f["energy_mj_per_inf"] is None and "whole job" in f["power_note"]
    assert set(f) == set(POWER_FIELDS) | {"_detail"}


def _sampler_running(trace: str) -> bool:
    import subprocess
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return any("sampler.sh" in line and trace in line for line in out.splitlines())


def test_stale_sampler_of_a_killed_orchestrator_is_stopped_by_the_next_session(tmp_path):
    """kill -9 of `lab run` leaves the device's sampler running; the next job's session stops it."""
    tp = transport(tmp_path)
    stale = S.TelemetrySession(idle_s=0.0, root=str(TREES / "rk1808_board"))
    stale.start(tp, tp.workdir)  # ... and never stop_and_collect: the orchestrator "died"
    assert _sampler_running(stale.trace)
    fresh = S.TelemetrySession(idle_s=0.0, root=str(TREES / "rk1808_board"))
    fresh.start(tp, tp.workdir)
    deadline = time.monotonic() + 10
    while _sampler_running(stale.trace) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sampler_running(stale.trace)
    assert _sampler_running(fresh.trace)
    fresh.stop_and_collect(tp, tmp_path / "local")


def test_sampler_life_is_bounded_by_the_job_protocol():
    from lab.core.records import MeasurementProtocol
    sess = S.TelemetrySession(protocol=MeasurementProtocol(trials=3, timeout_s=60.0, idle_baseline_s=10.0))
    assert sess.max_s == 10.0 + 120.0 + 3 * 90.0


def test_sampler_life_without_a_protocol_is_the_default_protocols():
    from lab.core.records import MeasurementProtocol
    sess = S.TelemetrySession(idle_s=0.0)
    assert sess.max_s == S.sampler_life_s(MeasurementProtocol(), 0.0) == 120.0 + 3 * (600.0 + 30.0)
    assert S.TelemetrySession(idle_s=0.0, max_s=5).max_s == 5.0


def test_registry_abort_stops_the_samplers_of_running_sessions(tmp_path):
    """What the scheduler's Ctrl-C does: every session still running gets its stop file."""
    tp = transport(tmp_path)
    reg = S.SessionRegistry()
    sess = S.TelemetrySession(idle_s=0.0, root=str(TREES / "rk1808_board"), registry=reg)
    sess.start(tp, tp.workdir)
    assert sess in reg and sess not in S.ACTIVE_SESSIONS and _sampler_running(sess.trace)
    assert reg.abort_all() == 1 and len(reg) == 0
    deadline = time.monotonic() + 10
    while _sampler_running(sess.trace) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sampler_running(sess.trace)
    res = sess.stop_and_collect(tp, tmp_path / "local")  # still collects what was sampled
    assert res.power_source.startswith("ina226")


def fake_zones(root: Path, zones: dict[str, tuple[str, str]]) -> None:
    for name, (ztype, temp) in zones.items():
        z = root / "sys" / "class" / "thermal" / name
        z.mkdir(parents=True, exist_ok=True)
        (z / "type").write_text(ztype + "\n")
        (z / "temp").write_text(temp + "\n")


def test_read_hottest_zone_over_the_local_transport(tmp_path):
    tp = transport(tmp_path)
    root = tmp_path / "sysfs"
    fake_zones(root, {"thermal_zone0": ("soc-thermal", "41000"),
                      "thermal_zone1": ("battery", "52000"),
                      "thermal_zone2": ("gpu thermal", "47500")})
    assert S.read_hottest_c(tp, str(root)) == 47.5
    assert S.read_hottest_c(tp, str(TREES / "kirin_phone")) == 41.0
    assert S.read_hottest_c(tp, str(tmp_path / "nothing")) is None  # no zones: None, not 0
    assert S.read_hottest_c(object()) is None  # a handle that cannot run commands (Ray)
