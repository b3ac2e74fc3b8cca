"""Issue 17: quality counted in summaries (lab/results/quality.py, one classification), progress lines
when not on a terminal, elapsed/ETA from the protocol bounds, and the dry run's device-time
estimate (lab/measure/duration.py).

The scheduler runs here with an injected executor (the documented seam the Ray engine and the
synthetic benchmarks use): what is under test is the summary and progress, not the runner.
"""
from __future__ import annotations

import argparse
import re
import time
from types import SimpleNamespace

import pytest

from lab.results import quality
from lab.measure.duration import START_ALLOWANCE_S, fmt_s, job_bounds, plan_bounds
from lab.core.records import Device, Job, Measurement, MeasurementProtocol, ResultRow
from lab.measure.scheduler import Scheduler, SchedulerOptions
from lab.results.store import Store

PROTO = MeasurementProtocol(warmup_seconds=0.5, min_seconds=1.5, max_seconds=6, trials=3,
                            cooldown_s=0.5)


def test_classify_flags_and_thresholds():
    assert quality.classify(Measurement("j", p50_ms=10, ci_low_ms=9.5, ci_high_ms=10.5,
                                        converged=True)).clean
    q = quality.classify(Measurement("j", p50_ms=24, ci_low_ms=18, ci_high_ms=32, converged=False,
                                     throttled=True, busy_host=True, host_busy_share=0.4))
    assert q.flags == ("not_converged", "wide_ci", "throttled", "busy_host")
    assert "40%" in q.text() and "18-32 ms" in q.text()
    # the threshold: half-width / median > 10 %
    assert quality.classify(ResultRow(job_id="j", campaign="c", device="d", chip=None, model="m",
                                      backend=None, processor=None, precision=None, threads=None,
                                      batch=None, status="ok", p50_ms=10, ci_low_ms=9.05,
                                      ci_high_ms=10.95)).clean
    assert quality.classify(Measurement("j", p50_ms=10, ci_low_ms=8.9, ci_high_ms=11.1)).flags == ("wide_ci",)
    # unknown is not a flag
    assert quality.classify(Measurement("j", converged=None, busy_host=None, throttled=None)).clean
    assert quality.summarize([q, quality.Quality(), q]) == \
        " (2 not converged, 2 wide CI, 2 throttled, 2 busy host)"


def _jobs(n, device="local"):
    return [Job(job_id=f"j{i:04d}", campaign="c", device=device, chip="generic-x86-cpu",
                model=f"m{i}", model_sha256="x", backend="paddle-inference-cpu", processor="cpu",
                precision="fp32", threads=1, protocol=PROTO) for i in range(n)]


def _executor(job, device, transport):
    time.sleep(0.05)
    i = int(job.job_id[1:])
    return Measurement(job.job_id, p50_ms=20.0, ci_low_ms=19.8, ci_high_ms=20.2, n_samples=10,
                       converged=i == 0)


def test_summary_counts_quality_and_lines_without_a_terminal(tmp_path, capsys):
    store = Store(tmp_path / "s.sqlite")
    jobs = _jobs(4)
    store.plan_jobs(jobs)
    sched = Scheduler(store, [Device(id="local", chip="generic-x86-cpu", transport="local")],
                      SchedulerOptions(progress=True, live=False), executor=_executor,
                      transport_factory=lambda d: SimpleNamespace(close=lambda: None))
    summary = sched.run(jobs)
    store.close()
    assert summary.ok == 4 and summary.quality_text == " (3 not converged)"
    err = capsys.readouterr().err
    starts = re.findall(r"\[local\] \d/4 started: m\d", err)
    ends = re.findall(r"\[local\] \d/4 m\d .*p50 20\.00 ms", err)
    assert len(starts) == 4 and len(ends) == 4, err
    assert "(not converged)" in err and "elapsed" in err and "ETA <=" in err


def test_run_end_line_says_not_converged(tmp_path, monkeypatch, capsys):
    """`lab run`'s end line, from a scheduler summary (orchestrate is replaced by the summary)."""
    from lab.commands import run as run_cmd
    from lab.measure.scheduler import RunSummary
    summary = RunSummary(planned=4, ok=4,
                         qualities=[quality.classify(Measurement("j", converged=False))] * 3
                         + [quality.Quality()])
    outcome = SimpleNamespace(summary=summary, already_done=0, exit_code=0)
    prep = SimpleNamespace(excluded=[], jobs=_jobs(4), spec=SimpleNamespace(name="demo", path="x"))
    monkeypatch.setattr("lab.measure.orchestrate.prepare", lambda *a, **k: prep)
    monkeypatch.setattr("lab.measure.orchestrate.run_prepared", lambda *a, **k: outcome)
    args = argparse.Namespace(engine="local", campaign="x", devices="d", models_root="m",
                              dry_run=False, max_parallel=1, retries=0, no_progress=True,
                              fresh=False, resume=False, address="auto", store=str(tmp_path / "s"))
    assert run_cmd.cmd_run(args) == 0
    assert "4 ok (3 not converged), 0 failed" in capsys.readouterr().err


def test_job_and_plan_bounds_formula():
    lo, hi = job_bounds(PROTO)
    assert lo == pytest.approx(3 * (0.5 + 1.5) + 0.5)
    assert hi == pytest.approx(3 * (START_ALLOWANCE_S + 0.5 + 6) + 0.5)
    jobs = _jobs(4) + _jobs(2, device="phone")
    plo, phi = plan_bounds(jobs, max_parallel=8)  # devices in parallel: the longest queue
    assert (plo, phi) == pytest.approx((4 * lo, 4 * hi))
    slo, shi = plan_bounds(jobs, max_parallel=1)  # one at a time: the sum
    assert (slo, shi) == pytest.approx((6 * lo, 6 * hi))
    assert fmt_s(45) == "45 s" and fmt_s(200) == "3 min 20 s" and fmt_s(3900) == "1 h 05 min"


def test_dry_run_prints_a_device_time_estimate(tmp_path, capsys):
    from lab.commands.run import _dry_run
    prep = SimpleNamespace(jobs=_jobs(4), spec=SimpleNamespace(name="demo"))
    args = argparse.Namespace(store=str(tmp_path / "none.sqlite"), max_parallel=8)
    assert _dry_run(args, prep) == 0
    err = capsys.readouterr().err
    assert "estimated device time: 26 s to 2 min 20 s for all 4 jobs" in err


def test_eta_counts_down(tmp_path):
    from lab.measure.scheduler import RunSummary, DeviceState, _Progress
    s = RunSummary(planned=4)
    s.devices["local"] = DeviceState("local", total=4)
    p = _Progress(s, enabled=False, queues={"local": _jobs(4)})
    full = p.eta_s()
    s.devices["local"].done = 2
    assert p.eta_s() == pytest.approx(full / 2)
    assert "ETA <= 1 min 10 s" in p.clock()
