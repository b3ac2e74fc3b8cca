"""Host side of `process: fork | fresh` (issue 23): planning, job identity, the one result file of a
whole job, and a real Paddle Inference job through the job path in each mode."""
from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, replace

import pytest
from helpers import config_error, lab_cli, local_workspace, one_line_error, write_local_devices

from lab.core.errors import RunnerError
from lab.core.records import MeasurementProtocol, job_id_for
from lab.devices.backends import BACKENDS
from lab.measure.campaign import job_process, load_campaign, plan_jobs, protocol_identity
from lab.runtimes.json_runner import measurement_from_docs, read_runner_docs
from lab.transport.base import RunResult

# the same job and pull-only transport double as the json_runner tests (one definition)
from test_execute_job import JOB, FileTransport  # noqa: E402


def doc(trial, **over):
    d = {"schema": "hwlab.runner/1", "runner": "pi_runner", "ok": True, "error": None, "trial": trial,
         "model": {"sha256": "abc"}, "protocol": {"process": "fork"}, "env": {},
         "timings": {"import_ms": 2000.0 + trial, "load_ms": 100.0, "first_ms": 20.0,
                     "samples_ms": [10.0, 11.0, 12.0], "converged": True}, "memory": {"peak_rss_mb": 300.0}}
    d.update(over)
    return d


def read(lines, rc=0, count=2):
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    return read_runner_docs(FileTransport({"/r.jsonl": text}), "/r.jsonl", RunResult(rc, "", "stderr"),
                            JOB, None, count)


def test_one_file_holds_every_trial_and_a_failed_trial_is_named():
    docs = read([doc(0), doc(1)])
    assert [d["trial"] for d in docs] == [0, 1]
    with pytest.raises(RunnerError, match="runner failed in trial 1 .exit 3.: trial 1 wrote no result"):
        read([doc(0), {"schema": "hwlab.runner/1", "ok": False, "trial": 1,
                       "error": "trial 1 wrote no result (killed by signal 9)"}], rc=3)
    with pytest.raises(RunnerError, match="with 1 of 2 trial results"):
        read([doc(0)], rc=3)


def test_measurement_keeps_import_ms_the_process_and_the_runner_notes():
    note = "process fork refused: the runner had 2 threads after importing the runtime"
    m = measurement_from_docs(JOB, [doc(0, notes=[note]), doc(1, notes=[note]), doc(2)])
    assert m.import_ms == 2001.0 and m.load_ms == 100.0
    assert m.notes.count(note) == 1 and m.provenance["process"] == "fork"
    assert [t["import_ms"] for t in m.provenance["trials"]] == [2000.0, 2001.0, 2002.0]


def test_fork_only_where_it_is_safe():
    fork = MeasurementProtocol()
    assert fork.process == "fork"
    assert job_process(fork, BACKENDS["paddle-inference-cpu"]) == "fork"
    assert job_process(fork, BACKENDS["onnxruntime-cpu"]) == "fork"
    for backend in ("paddle-inference-gpu", "onnxruntime-gpu", "serving-http", "paddle-js-webgl",
                    "paddle-lite-arm"):
        assert job_process(fork, BACKENDS[backend]) == "fresh", backend
    assert job_process(replace(fork, process="fresh"), BACKENDS["paddle-inference-cpu"]) == "fresh"


def _campaign(tmp_path, process_line):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: c
        devices: [local]
        models: [m]
        backends: [paddle-inference-cpu, serving-http]
        protocol:
          trials: 2
        {process_line}
        """))
    return path


def _plan(tmp_path, process_line):
    from lab.devices.inventory import load_devices
    spec = load_campaign(_campaign(tmp_path, process_line))
    return plan_jobs(spec, load_devices(write_local_devices(tmp_path)), lambda _a: "sha")[0]


def test_process_is_part_of_the_job_identity_and_fresh_keeps_the_old_ids(tmp_path):
    fork = {j.backend: j for j in _plan(tmp_path, "  process: fork")}
    fresh = {j.backend: j for j in _plan(tmp_path, "  process: fresh")}
    default = {j.backend: j for j in _plan(tmp_path, "")}
    assert default["paddle-inference-cpu"].job_id == fork["paddle-inference-cpu"].job_id
    assert fork["paddle-inference-cpu"].protocol.process == "fork"
    assert fresh["paddle-inference-cpu"].protocol.process == "fresh"
    assert fork["paddle-inference-cpu"].job_id != fresh["paddle-inference-cpu"].job_id
    # serving never forks: its job (and id) is the same whatever the campaign asks
    assert fork["serving-http"].protocol.process == "fresh"
    assert fork["serving-http"].job_id == fresh["serving-http"].job_id
    # a fresh job's id is the id of the same job planned before `process` existed
    job = fresh["paddle-inference-cpu"]
    before = {k: v for k, v in asdict(job.protocol).items() if k != "process"}
    assert protocol_identity(job.protocol) == {k: v for k, v in before.items()
                                               if k not in ("sustained_s", "window_s", "throttle_slowdown")}
    identity = {"campaign": "c", "device": "local", "chip": job.chip, "model": "m", "model_sha256": "sha",
                "backend": job.backend, "precision": "fp32", "threads": 1, "batch": 1, "options": {},
                "protocol": protocol_identity(job.protocol)}
    assert job_id_for(identity) == job.job_id


def test_a_bad_process_value_is_one_line_naming_file_and_line(tmp_path):
    msg = config_error(load_campaign, _campaign(tmp_path, "  process: spawn"))
    assert "c.yaml:7" in msg and "fork or fresh" in msg and "'spawn'" in msg
    path = _campaign(tmp_path, "  process: [fork]")
    write_local_devices(tmp_path)
    one_line_error(lab_cli("run", path, "--dry-run", cwd=tmp_path), "c.yaml:7", "fork or fresh")


@pytest.mark.slow
def test_a_real_job_in_each_mode(tmp_path):
    """tiny_mlp on `local`, 3 trials: the fork job ran one runner process (one command for the
    whole job), imported once and measured like the fresh job."""
    ws = local_workspace(tmp_path, "tiny_mlp")
    rows = {}
    for process in ("fork", "fresh"):
        (ws / f"{process}.yaml").write_text(
            f"name: {process}\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-inference-cpu]\n"
            "protocol: {warmup: 2, warmup_seconds: 0.05, min_iters: 20, min_seconds: 0.2, max_seconds: 1.0, "
            f"target_rel_ci: 0.2, trials: 3, timeout_s: 120, process: {process}}}\n")
        res = lab_cli("--devices", "devices.yaml", "--store", "s.sqlite", "run", f"{process}.yaml",
                      "--models-root", "models", "--no-progress", cwd=ws)
        assert res.returncode == 0, res.stderr
        out = lab_cli("--store", "s.sqlite", "results", "--format", "json", "--campaign", process, cwd=ws)
        [rows[process]] = json.loads(out.stdout)
    from lab.results.store import Store
    store = Store(ws / "s.sqlite", readonly=True)
    try:
        prov = {p: store.provenance(rows[p]["job_id"]) for p in rows}
    finally:
        store.close()
    for process, row in rows.items():
        assert row["status"] == "ok" and row["n_samples"] >= 3 * 20
        assert row["import_ms"] > 100 and row["load_ms"] > 0 and row["peak_rss_mb"] > 10
        assert prov[process]["process"] == process
        assert set(prov[process]["phases_s"]) >= {"prepare", "telemetry_start", "trials", "telemetry_stop"}
    assert len(set(prov["fork"]["commands"])) == 3 and all("--process fork" in c for c in prov["fork"]["commands"])
    assert len({t["import_ms"] for t in prov["fork"]["trials"]}) == 1  # one import for the whole job
    assert len({t["import_ms"] for t in prov["fresh"]["trials"]}) == 3  # each process its own
