"""Thermal cooldown between jobs, through the real local transport and a fake sysfs thermal tree.

The executor plays the job's heat: it writes a hot reading into the zone (what a loaded SoC does);
a timer plays the cooling. The scheduler reads the zones over the transport like on any device.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lab.core.records import Device, Job, Measurement, MeasurementProtocol
from lab.measure.scheduler import Scheduler, SchedulerOptions
from lab.results.store import Store
from lab.transport.local import LocalTransport


def zone(root: Path, millideg: int, name: str = "thermal_zone0", ztype: str = "soc-thermal") -> None:
    z = root / "sys" / "class" / "thermal" / name
    z.mkdir(parents=True, exist_ok=True)
    (z / "type").write_text(ztype + "\n")
    tmp = z / "temp.new"
    tmp.write_text(f"{millideg}\n")
    tmp.replace(z / "temp")  # atomic: a poll never reads a half-written value


def jobs(n: int, cooldown_s: float) -> list[Job]:
    return [Job(job_id=f"j{k}", campaign="cool", device="dev", chip="generic-x86-cpu", model="m",
                model_sha256="0" * 64, backend="paddle-inference-cpu", processor="cpu",
                precision="fp32", threads=1, protocol=MeasurementProtocol(trials=1, cooldown_s=cooldown_s))
            for k in range(n)]


class HeatingExecutor:
    """Each job heats the zone to 70 °C; with cool_after_s set, a timer brings it back to 40.5 °C."""

    def __init__(self, root: Path, cool_after_s: float | None):
        self.root, self.cool_after_s, self.spans = root, cool_after_s, []

    def __call__(self, job, device, transport):
        start = time.monotonic()
        zone(self.root, 70000)
        if self.cool_after_s is not None:
            threading.Timer(self.cool_after_s, zone, (self.root, 40500)).start()
        self.spans.append((start, time.monotonic()))
        return Measurement(job_id=job.job_id, p50_ms=1.0, n_samples=1, samples=[[1.0]])


def run(tmp_path, executor, root: Path, cooldown_s: float, n: int = 2) -> Store:
    store = Store(tmp_path / "lab.sqlite")
    js = jobs(n, cooldown_s)
    store.plan_jobs(js)
    dev = Device(id="dev", chip="generic-x86-cpu", transport="local", workdir=str(tmp_path / "wd"))
    opts = SchedulerOptions(progress=False, thermal_root=str(root), cooldown_poll_s=0.1)
    summary = Scheduler(store, [dev], opts, executor=executor,
                        transport_factory=LocalTransport).run(js)
    assert summary.ok == n
    return store


def test_a_hot_zone_makes_the_scheduler_wait_and_cooling_lets_it_go(tmp_path):
    root = tmp_path / "sysfs"
    zone(root, 40000)  # baseline before the first job: 40 °C
    zone(root, 52000, "thermal_zone1", "battery")  # battery zones never count
    ex = HeatingExecutor(root, cool_after_s=0.6)
    store = run(tmp_path, ex, root, cooldown_s=20)
    try:
        assert "cooldown" not in store.provenance("j0")
        c = store.provenance("j1")["cooldown"]
        assert c["outcome"] == "cooled" and c["baseline_c"] == 40.0 and c["target_c"] == 42.0
        assert c["start_c"] == 70.0 and c["end_c"] == 40.5
        gap = ex.spans[1][0] - ex.spans[0][1]
        assert 0.5 <= c["waited_s"] <= gap and gap < 5  # waited for the cooling, not the 20 s bound
        assert not any("cooldown" in n for n in store.provenance("j1")["notes"])
    finally:
        store.close()


def test_a_zone_that_stays_hot_is_waited_for_at_most_cooldown_s(tmp_path):
    root = tmp_path / "sysfs"
    zone(root, 40000)
    ex = HeatingExecutor(root, cool_after_s=None)
    store = run(tmp_path, ex, root, cooldown_s=0.8)
    try:
        c = store.provenance("j1")["cooldown"]
        assert c["outcome"] == "bound" and c["end_c"] == 70.0
        assert c["waited_s"] == pytest.approx(0.8, abs=0.15)
        assert ex.spans[1][0] - ex.spans[0][1] < 2.5
        assert any("bound of 0.8 s hit" in n for n in store.provenance("j1")["notes"])
    finally:
        store.close()


def test_without_thermal_zones_the_cooldown_is_the_fixed_sleep_and_says_so(tmp_path):
    root = tmp_path / "bare"  # no /sys/class/thermal at all
    root.mkdir()
    ex = HeatingExecutor(tmp_path / "elsewhere", cool_after_s=None)
    store = run(tmp_path, ex, root, cooldown_s=0.5)
    try:
        c = store.provenance("j1")["cooldown"]
        assert c["outcome"] == "fixed" and c["waited_s"] == pytest.approx(0.5, abs=0.15)
        assert "no thermal zone was readable before the device's first job" in c["note"]
        assert ex.spans[1][0] - ex.spans[0][1] >= 0.5
    finally:
        store.close()
