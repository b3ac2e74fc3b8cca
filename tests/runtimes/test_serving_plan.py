"""Serving at planning (issue 25) and the one definition of the runtime defaults (issue 23).

- A serving-http campaign with a missing or impossible option is refused at planning: `lab run`
  (and `--dry-run`) exits 2 with one line naming the campaign file, the option and the fix, before
  any model is built or any job runs.
- No scenario means `sweep`; the planned job carries the defaults that decide what is measured
  (scenario, oneDNN), so a changed default is a new job id.
- The ETA and the dry run count every LoadGen run a sweep can make (SingleStream + Offline + up to
  SWEEP_MAX_POINTS Server runs), not a trial's protocol bounds.
- Progress lines never cut an error message: the first line whole, the lines after it counted.
- paddle-inference-cpu and serving build their predictor with the same defaults; the runners'
  own copies of the oneDNN default are kept equal to lab.runtimes.defaults.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.core.errors import ConfigError, RunnerError
from lab.core.records import Device, Job, Measurement, MeasurementProtocol
from lab.measure.campaign import load_campaign, plan_jobs
from lab.measure.duration import START_ALLOWANCE_S, job_time_bounds, plan_bounds
from lab.runtimes import defaults
from lab.runtimes.serving import SWEEP_MAX_POINTS, ServingOptions

REPO = Path(__file__).resolve().parents[2]
LOCAL = Device(id="local", chip="generic-x86-cpu", transport="local")


def _plan(tmp_path: Path, options: str, protocol: str = "") -> list[Job]:
    p = tmp_path / "c.yaml"
    p.write_text("name: srv\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [serving-http]\n"
                 + (f"options:\n{options}\n" if options else "") + protocol)
    jobs, excluded = plan_jobs(load_campaign(p), [LOCAL], lambda _m: "0" * 64)
    assert not excluded, excluded
    return jobs


@pytest.mark.parametrize("options,needle,fix", [
    ("  scenario: [server]", "'scenario: server' needs option 'target_qps'", "add options: {target_qps: [N]}"),
    ("  endpoint: ['http://127.0.0.1:9']\n  instances: [2]", "'instances' configures the lab's own endpoint",
     "drop 'instances'"),
    ("  endpoint_format: [pipeline]", "'endpoint_format: pipeline' needs option 'endpoint'", "add endpoint:"),
    ("  max_queue_delay_ms: [5]", "'max_queue_delay_ms' waits for a batch", "set max_batch"),
])
def test_impossible_serving_options_are_refused_at_planning_naming_file_option_and_fix(
        tmp_path, options, needle, fix):
    with pytest.raises(ConfigError) as err:
        _plan(tmp_path, options)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'c.yaml'}: ") and needle in text and fix in text and "\n" not in text


def test_a_timeout_too_short_for_the_sweep_is_refused_at_planning(tmp_path):
    """timeout_s is the lab endpoint's lifetime: a sweep's 9 runs of up to 40 s do not fit in 100 s."""
    with pytest.raises(ConfigError, match=r"c\.yaml: protocol timeout_s \(100 s\).*set timeout_s to at least"):
        _plan(tmp_path, "", "protocol:\n  max_seconds: 40\n  timeout_s: 100\n")


def test_the_cli_exits_2_at_planning_before_anything_runs(tmp_path):
    """The issue's case: a server scenario without a rate passed --dry-run, then failed at run time."""
    camp = tmp_path / "c.yaml"
    camp.write_text("name: srv\ndevices: [local]\nmodels: [no_such_model_yet]\nbackends: [serving-http]\n"
                    "options:\n  scenario: [server]\n")
    for extra in ([], ["--dry-run"]):
        res = subprocess.run([sys.executable, "-m", "lab.cli", "--store", str(tmp_path / "s.sqlite"), "run",
                              str(camp), "--models-root", str(tmp_path / "models"), *extra],
                             capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs option 'target_qps'" in lines[0] and str(camp) in lines[0], lines
        assert "Traceback" not in res.stderr and not (tmp_path / "s.sqlite").exists()


def test_no_scenario_means_sweep_and_the_defaults_are_in_the_job_identity(tmp_path):
    (job,) = _plan(tmp_path, "")
    assert ServingOptions.from_job(job).scenario == "sweep"
    assert dict(job.options) == {"scenario": "sweep", "onednn": defaults.ONEDNN}
    (explicit,) = _plan(tmp_path, f"  scenario: [sweep]\n  onednn: [{str(defaults.ONEDNN).lower()}]")
    assert explicit.job_id == job.job_id  # the same measurement, the same id
    (off,) = _plan(tmp_path, f"  onednn: [{str(not defaults.ONEDNN).lower()}]")
    assert off.job_id != job.job_id
    (user,) = _plan(tmp_path, "  endpoint: ['http://127.0.0.1:9']\n  onednn: [false]")  # a user's server
    assert dict(user.options) == {"endpoint": "http://127.0.0.1:9", "scenario": "sweep"}


def test_eta_counts_every_loadgen_run_a_sweep_can_make(tmp_path):
    """campaigns/serving.yaml's protocol (LoadGen runs of 5..40 s): the issue's ETA said '<= 36 s'
    for a sweep that took 467 s (SingleStream, Offline and 5 Server runs)."""
    proto = "protocol:\n  min_seconds: 5\n  max_seconds: 40\n  trials: 1\n  timeout_s: 900\n"
    (sweep,) = _plan(tmp_path, "  latency_bound_ms: [250]", proto)
    (single,) = _plan(tmp_path, "  scenario: [singlestream]", proto)
    lo, hi = job_time_bounds(sweep)
    assert hi >= (2 + SWEEP_MAX_POINTS) * 40 and lo >= (2 + 2) * 5
    assert hi >= 467 > lo  # the sweep lies inside the estimate ...
    assert hi == pytest.approx(900 + 30 + START_ALLOWANCE_S)  # ... bounded by the endpoint's lifetime
    slo, shi = job_time_bounds(single)
    assert slo == pytest.approx(5 + START_ALLOWANCE_S) and 40 < shi < 60
    # a Server run at a low rate is stretched to LoadGen's early-stopping minimum (459 queries at p99)
    (slow,) = _plan(tmp_path, "  scenario: [server]\n  target_qps: [5]", proto)
    assert job_time_bounds(slow)[1] >= 1.5 * 459 / 5
    assert plan_bounds([sweep, single], max_parallel=8) == pytest.approx((lo + slo, hi + shi))
    # the live view's ETA reads the same bounds
    from lab.measure.scheduler import DeviceState, RunSummary, _Progress
    s = RunSummary(planned=1)
    s.devices["local"] = DeviceState("local", total=1)
    assert _Progress(s, enabled=False, queues={"local": [sweep]}).eta_s() == pytest.approx(hi)


def test_dry_run_estimate_counts_the_sweep(tmp_path, capsys):
    from lab.commands.run import _dry_run
    from lab.measure.duration import fmt_s
    jobs = _plan(tmp_path, "", "protocol:\n  min_seconds: 5\n  max_seconds: 40\n")
    assert _dry_run(SimpleNamespace(store=str(tmp_path / "none.sqlite"), max_parallel=8),
                    SimpleNamespace(jobs=jobs, spec=SimpleNamespace(name="srv"))) == 0
    lo, hi = job_time_bounds(jobs[0])
    err = capsys.readouterr().err
    assert f"estimated device time: {fmt_s(lo)} to {fmt_s(hi)} for all 1 jobs" in err
    assert f"a sweep's up to {2 + SWEEP_MAX_POINTS}" in err


def test_progress_lines_never_cut_an_error_message(tmp_path, capsys):
    from lab.measure.scheduler import Scheduler, SchedulerOptions
    from lab.results.store import Store
    fix = "or drop scenario: the default sweep finds the max QPS"
    long_first = "the server scenario needs target_qps " + "because " * 40 + fix
    job = Job("j1", "c", "local", "generic-x86-cpu", "m", "x", "paddle-inference-cpu", "cpu", "fp32", 1,
              protocol=MeasurementProtocol(trials=1))

    def executor(_job, _device, _transport) -> Measurement:
        raise RunnerError(long_first + "\nlog line 1\nlog line 2")

    store = Store(tmp_path / "s.sqlite")
    store.plan_jobs([job])
    sched = Scheduler(store, [LOCAL], SchedulerOptions(progress=True, live=False), executor=executor,
                      transport_factory=lambda d: SimpleNamespace(close=lambda: None))
    sched.run([job])
    store.close()
    err = capsys.readouterr().err
    assert long_first in err and "(+2 more lines in `lab results`)" in err, err


def test_one_definition_of_the_runtime_defaults():
    """The batch-1 runtime and the serving endpoint of a job get the same oneDNN choice, from
    lab.runtimes.defaults; the travelling runners' and ServerSpec's own defaults are copies of it."""
    from lab.runners import pi_runner, serving_runner
    from lab.serving.endpoint import ServerSpec
    job = Job("j", "c", "local", "x", "m", "0", "serving-http", "cpu", "fp32", 2)
    assert defaults.onednn_flag(job) == ("on" if defaults.ONEDNN else "off")
    flag = {True: "on", False: "off"}[defaults.ONEDNN]
    assert ServerSpec().onednn == flag
    assert serving_runner.parse_args(["--noop", "--max-seconds", "1"]).onednn == flag
    assert pi_runner.build_parser().parse_args(["--model-file", "m.json", "--params-file", "p"]).onednn == flag
    off = Job("j", "c", "local", "x", "m", "0", "serving-http", "cpu", "fp32", 2, options=(("onednn", False),))
    assert defaults.onednn_flag(off) == "off"


def test_the_live_table_wraps_a_long_error_instead_of_cutting_it():
    from rich.console import Console

    from lab.measure.scheduler import DeviceState, RunSummary, _Progress, error_headline
    s = RunSummary(planned=1)
    st = s.devices["local"] = DeviceState("local", total=1)
    fix = "or drop scenario: the default sweep finds the max QPS"
    st.last = "m serving-http: failed: " + error_headline("RunnerError: " + "needs target_qps " * 12 + fix)
    console = Console(width=90, record=True, file=io.StringIO())
    console.print(_Progress(s, enabled=False)._table())
    text = console.export_text()
    flat = " ".join(line.strip(" │┃|") for line in text.splitlines())
    assert "…" not in text and " ".join(fix.split()) in " ".join(flat.split()), text
