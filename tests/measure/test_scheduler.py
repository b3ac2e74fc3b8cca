"""Scheduler rules: per-device serial queues in parallel, bounded concurrency, retries for transient
device errors only (with backoff, on a fresh connection), unhealthy devices skipped with the reason.

The executor and transport factory are the scheduler's injection points; here they are small
recording functions (the real executor over real SSH is exercised in test_fleet.py).
"""
from __future__ import annotations

import threading
import time

import pytest

from lab.core.errors import DeviceUnreachable, HostKeyMismatch, HostLost, RunnerError
from lab.core.records import Device, Job, Measurement, MeasurementProtocol
from lab.measure.scheduler import Scheduler, SchedulerOptions
from lab.results.store import Store


def devices(*ids):
    return [Device(id=i, chip="generic-x86-cpu", transport="local") for i in ids]


def jobs_for(dev_ids, per_device=3, campaign="sched"):
    out = []
    for d in dev_ids:
        for k in range(per_device):
            out.append(Job(job_id=f"{d}-{k}", campaign=campaign, device=d, chip="generic-x86-cpu", model="m",
                           model_sha256="0" * 64, backend="paddle-inference-cpu", processor="cpu",
                           precision="fp32", threads=k + 1, protocol=MeasurementProtocol(trials=1)))
    return out


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "lab.sqlite")
    yield s
    s.close()


def run(store, devs, jobs, executor, factory=None, **opts):
    store.plan_jobs(jobs)
    options = SchedulerOptions(progress=False, backoff_s=0.01, **opts)
    sched = Scheduler(store, devs, options, executor=executor,
                      transport_factory=factory or (lambda d: object()))
    return sched.run(jobs)


def ok(job):
    return Measurement(job_id=job.job_id, p50_ms=1.0, n_samples=1, samples=[[1.0]])


class Recorder:
    def __init__(self, delay=0.15):
        self.delay, self.intervals, self.lock = delay, [], threading.Lock()

    def __call__(self, job, device, transport):
        start = time.monotonic()
        time.sleep(self.delay)
        with self.lock:
            self.intervals.append((device.id, start, time.monotonic()))
        return ok(job)


def overlaps(a, b):
    return a[1] < b[2] and b[1] < a[2]


def test_devices_run_in_parallel_but_one_job_at_a_time_per_device(store):
    rec = Recorder()
    start = time.monotonic()
    summary = run(store, devices("a", "b", "c"), jobs_for("abc"), rec)
    wall = time.monotonic() - start
    assert (summary.ok, summary.failed, summary.skipped) == (9, 0, 0) and summary.exit_code == 0
    same = [(x, y) for i, x in enumerate(rec.intervals) for y in rec.intervals[i + 1:] if x[0] == y[0]]
    assert not any(overlaps(x, y) for x, y in same)
    cross = [(x, y) for i, x in enumerate(rec.intervals) for y in rec.intervals[i + 1:] if x[0] != y[0]]
    assert any(overlaps(x, y) for x, y in cross)
    assert wall < 9 * rec.delay * 0.7  # serial would be 1.35 s
    assert set(store.job_status("sched").values()) == {"ok"}


def test_max_parallel_bounds_devices_measured_at_once(store):
    rec = Recorder(delay=0.05)
    run(store, devices("a", "b", "c"), jobs_for("abc", 2), rec, max_parallel=1)
    assert not any(overlaps(x, y) for i, x in enumerate(rec.intervals) for y in rec.intervals[i + 1:])


def test_transient_error_is_retried_on_a_fresh_connection(store):
    opened, calls = [], []

    def factory(dev):
        opened.append(dev.id)
        return f"conn{len(opened)}"

    def executor(job, device, transport):
        calls.append((job.job_id, transport))
        if len(calls) == 1:
            raise DeviceUnreachable(device.id, "connection reset")
        return ok(job)

    summary = run(store, devices("a"), jobs_for("a", 2), executor, factory, retries=2)
    assert summary.ok == 2 and summary.failed == 0
    assert calls[:2] == [("a-0", "conn1"), ("a-0", "conn2")]  # retried, on a new transport
    assert calls[2] == ("a-1", "conn2")  # the healthy connection is reused afterwards
    assert opened == ["a", "a"]


def test_retries_back_off_then_fail_with_the_cause_recorded(store):
    times = []

    def executor(job, device, transport):
        times.append(time.monotonic())
        raise DeviceUnreachable(device.id, "no route to host")

    store.plan_jobs(jobs_for("a", 1))
    sched = Scheduler(store, devices("a"), SchedulerOptions(progress=False, retries=2, backoff_s=0.1),
                      executor=executor, transport_factory=lambda d: object())
    summary = sched.run(jobs_for("a", 1))
    assert summary.failed == 1 and summary.exit_code == 1
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 3 and gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.1 s then doubled
    err = store.results_rows("sched")[0]["error"]
    assert "DeviceUnreachable" in err and "no route to host" in err and "after 3 attempts" in err


def test_permanent_error_marks_device_unhealthy_and_skips_its_jobs_while_others_finish(store):
    calls = []

    def executor(job, device, transport):
        calls.append(job.job_id)
        if device.id == "bad":
            raise HostKeyMismatch(device.id, "host key CHANGED")
        return ok(job)

    summary = run(store, devices("bad", "good"), jobs_for(["bad", "good"]), executor, retries=3)
    assert calls.count("bad-0") == 1 and "bad-1" not in calls  # never retried, never tried again
    assert summary.devices["bad"].healthy is False and "CHANGED" in summary.devices["bad"].reason
    status = store.job_status("sched")
    assert status == {"bad-0": "failed", "bad-1": "skipped", "bad-2": "skipped",
                      "good-0": "ok", "good-1": "ok", "good-2": "ok"}
    rows = {r["job_id"]: r for r in store.results_rows("sched")}
    assert "marked unhealthy" in rows["bad-1"]["error"] and "CHANGED" in rows["bad-1"]["error"]


def test_host_lost_puts_the_job_and_the_rest_of_its_queue_back_to_planned(store):
    """A farm node that dies took nothing measured with it: its device's running job and the rest of
    that device's queue go back to planned with the cause (not failed, not skipped), counted as
    unfinished for `--resume`, while the other devices finish (issue 24)."""
    calls = []

    def executor(job, device, transport):
        calls.append(job.job_id)
        if job.job_id == "gone-1":
            raise HostLost(device.id, "no live node in the Ray cluster advertises hwlab-dev:gone")
        return ok(job)

    summary = run(store, devices("gone", "good"), jobs_for(["gone", "good"]), executor, retries=3)
    assert calls.count("gone-1") == 1 and "gone-2" not in calls  # not retried, the queue stops
    assert store.job_status("sched") == {"gone-0": "ok", "gone-1": "planned", "gone-2": "planned",
                                         "good-0": "ok", "good-1": "ok", "good-2": "ok"}
    rows = {r["job_id"]: r for r in store.results_rows("sched")}
    assert all("back to planned" in rows[j]["error"] and "hwlab-dev:gone" in rows[j]["error"]
               for j in ("gone-1", "gone-2"))
    assert summary.unfinished == 2 and summary.failed == summary.skipped == 0 and summary.exit_code == 1
    assert summary.devices["gone"].healthy is False


def test_runner_errors_are_not_retried_and_consecutive_failures_make_a_device_unhealthy(store):
    calls = []

    def executor(job, device, transport):
        calls.append(job.job_id)
        raise RunnerError(f"job {job.job_id}: runner failed")

    summary = run(store, devices("a"), jobs_for("a", 5), executor, retries=3, unhealthy_after=2)
    assert calls == ["a-0", "a-1"]
    assert (summary.failed, summary.skipped) == (2, 3)
    assert "2 jobs failed in a row" in summary.devices["a"].reason


def test_a_bug_in_one_job_does_not_stop_the_campaign(store):
    def executor(job, device, transport):
        if job.job_id == "a-0":
            raise ZeroDivisionError("boom")
        return ok(job)

    summary = run(store, devices("a", "b"), jobs_for("ab", 2), executor)
    assert (summary.ok, summary.failed) == (3, 1)
    rows = {r["job_id"]: r for r in store.results_rows("sched")}
    assert "internal error ZeroDivisionError: boom" in rows["a-0"]["error"]


def test_connect_failure_in_the_transport_factory_is_retried_like_any_transient_error(store):
    attempts = []

    def factory(dev):
        attempts.append(dev.id)
        if len(attempts) < 2:
            raise DeviceUnreachable(dev.id, "connection refused")
        return object()

    summary = run(store, devices("a"), jobs_for("a", 1), lambda j, d, t: ok(j), factory, retries=1)
    assert summary.ok == 1 and attempts == ["a", "a"]
