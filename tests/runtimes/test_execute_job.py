"""Host side of a Paddle Inference job: malformed runner output becomes a failed job, never a crash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.core.errors import InvalidMeasurement, RunnerError
from lab.runtimes.json_runner import cpu_state_flags, measurement_from_docs
from lab.runtimes.json_runner import read_runner_doc as _read_runner_doc
from lab.core.records import Job, MeasurementProtocol
from lab.transport.base import RunResult

JOB = Job(job_id="j1", campaign="c", device="d", chip="generic-x86-cpu", model="m", model_sha256="abc",
          backend="paddle-inference-cpu", processor="cpu", precision="fp32", threads=1,
          protocol=MeasurementProtocol(trials=2))


class FileTransport:
    """Pull serves prepared file contents; anything else is missing."""

    def __init__(self, files):
        self.files = files

    def pull(self, remote, local):
        if remote not in self.files:
            raise FileNotFoundError(remote)
        Path(local).write_text(self.files[remote])
        return Path(local)


def doc(**over):
    d = {"schema": "hwlab.runner/1", "runner": "pi_runner", "runner_version": "1", "ok": True, "error": None,
         "model": {"sha256": "abc"}, "env": {"governor": "performance", "freq_khz_start": {"cpu0": 2000000},
                                           "freq_khz_end": {"cpu0": 2000000}},
         "timings": {"load_ms": 100.0, "first_ms": 20.0, "samples_ms": [10.0, 11.0, 12.0], "converged": True},
         "memory": {"peak_rss_mb": 300.0}}
    d.update(over)
    return d


def read(text, rc=0, out=""):
    return _read_runner_doc(FileTransport({"/r.json": text} if text is not None else {}), "/r.json",
                            RunResult(rc, out, "boom on stderr"), JOB)


def test_valid_doc_is_read():
    assert read(json.dumps(doc()))["timings"]["samples_ms"] == [10.0, 11.0, 12.0]


def test_stdout_fallback_when_no_file():
    assert read(None, out="progress\n" + json.dumps(doc()))["ok"] is True


@pytest.mark.parametrize("text,rc,exc,needle", [
    (None, 3, RunnerError, "without a result"),
    ("{not json", 0, RunnerError, "not JSON"),
    (json.dumps({"schema": "other/9"}), 0, RunnerError, "unexpected runner schema"),
    (json.dumps(doc(ok=False, error="CUDA missing")), 3, RunnerError, "CUDA missing"),
    (json.dumps(doc()), 1, RunnerError, "exit 1"),
    (json.dumps(doc(timings={"samples_ms": []})), 0, InvalidMeasurement, "no steady-state samples"),
    (json.dumps(doc(timings={"samples_ms": [1.0, -2.0]})), 0, InvalidMeasurement, "non-positive"),
    (json.dumps(doc(timings={"samples_ms": [1.0], "load_ms": -5})), 0, InvalidMeasurement, "load_ms"),
    (json.dumps(doc(model={"sha256": "zzz"})), 0, InvalidMeasurement, "different model"),
    (json.dumps(doc(model={})), 0, InvalidMeasurement, "did not report the sha256"),
    (json.dumps(doc(timings=[1, 2])), 0, InvalidMeasurement, "no timings object"),
])
def test_bad_runner_output_is_a_clear_error(text, rc, exc, needle):
    with pytest.raises(exc, match=needle):
        read(text, rc=rc)


def test_measurement_aggregates_trials_and_keeps_raw_samples():
    a = doc()
    b = doc(timings={"load_ms": 300.0, "first_ms": 40.0, "samples_ms": [12.0, 13.0], "converged": False})
    m = measurement_from_docs(JOB, [a, b], None)
    assert m.samples == [[10.0, 11.0, 12.0], [12.0, 13.0]] and m.n_samples == 5
    assert m.load_ms == 200.0 and m.first_ms == 30.0  # medians over trials (cold starts)
    assert m.p50_ms == 12.0 and m.ci_low_ms <= 12.0 <= m.ci_high_ms
    assert m.converged is False and any("not converged" in n for n in m.notes)
    assert m.peak_rss_mb == 300.0 and m.power_w is None


def test_cpu_state_flags():
    assert cpu_state_flags([doc()]) == []
    scaling = doc(env={"governor": "schedutil", "freq_khz_start": {"cpu0": 2000000, "cpu1": 1000000},
                       "freq_khz_end": {"cpu0": 1200000, "cpu1": 1010000}})
    notes = cpu_state_flags([doc(), scaling])
    assert any("governor schedutil" in n for n in notes)
    assert any(n.startswith("trial 1:") and "cpu0" in n and "cpu1" not in n for n in notes)
    assert cpu_state_flags([doc(env={})]) == []
