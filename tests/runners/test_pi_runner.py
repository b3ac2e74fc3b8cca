"""pi_runner: real Paddle Inference on a tiny exported model, run as its own process like on a device.

The model (Linear 16->32, ReLU, Linear 32->4) is exported in the test in both formats: Paddle 3
PIR (.json) and legacy (.pdmodel, FLAGS_enable_pir_api=0). Protocol figures are kept tiny so the
whole file costs a few seconds per runner process (mostly `import paddle`).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.runners import pi_runner as pr
from lab.runners import runner_core as core

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "lab" / "runners" / "pi_runner.py"

EXPORT = r'''
import sys, paddle
class Tiny(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = paddle.nn.Linear(16, 32)
        self.b = paddle.nn.Linear(32, 4)
    def forward(self, x):
        return self.b(paddle.nn.functional.relu(self.a(x)))
paddle.seed(0)
net = Tiny()
net.eval()
paddle.jit.save(net, sys.argv[1], input_spec=[paddle.static.InputSpec([None, 16], "float32", "x")])
'''

FAST = ["--warmup", "2", "--warmup-seconds", "0.05", "--min-iters", "20", "--min-seconds", "0.2"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("paddle")
    root = tmp_path_factory.mktemp("tiny")
    script = root / "export_tiny.py"  # dy2static reads the layer's source: it needs a real file
    script.write_text(EXPORT)
    out = {}
    for fmt, pir in (("json", "1"), ("pdmodel", "0")):
        prefix = root / fmt / "inference"
        env = dict(os.environ, FLAGS_enable_pir_api=pir)
        subprocess.run([sys.executable, str(script), str(prefix)], check=True, env=env,
                       capture_output=True, timeout=300)
        model = prefix.with_suffix("." + fmt)
        assert model.is_file(), f"export did not write {model}"
        out[fmt] = (model, prefix.with_suffix(".pdiparams"))
    return out


def run_runner(args, out_path=None, timeout=120):
    cmd = [sys.executable, str(RUNNER)] + [str(a) for a in args]
    cmd += ["--out", str(out_path) if out_path else "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out_path:
        doc = json.loads(Path(out_path).read_text())
    else:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return proc, doc


def _model_args(models, fmt, *extra):
    model, params = models[fmt]
    return ["--model-file", model, "--params-file", params, "--input", "x:1x16:float32"] + FAST + list(extra)


def _check_schema(doc):
    assert doc["schema"] == pr.SCHEMA == "hwlab.runner/1"
    assert doc["runner"] == "pi_runner" and doc["runner_version"] == pr.RUNNER_VERSION
    for key in ("ok", "error", "command", "model", "config", "protocol", "env", "timings", "memory",
                "telemetry", "started_at", "finished_at"):
        assert key in doc, key
    assert isinstance(doc["command"], list) and all(isinstance(a, str) for a in doc["command"])
    env = doc["env"]
    for key in ("python", "paddle", "numpy", "hostname", "machine", "cpu_model", "cpu_count", "governor",
                "freq_khz_start", "freq_khz_end", "temps_c_start", "temps_c_end"):
        assert key in env, key
    for key in ("freq_khz_start", "freq_khz_end", "temps_c_start", "temps_c_end"):
        assert env[key] is None or (isinstance(env[key], dict) and env[key]), key  # absent -> None, not {}
    t = doc["timings"]
    for key in ("load_ms", "first_ms", "warmup_iters", "warmup_ms_total", "samples_ms", "steady_seconds",
                "converged", "stop_reason", "rel_ci"):
        assert key in t, key
    for key in ("peak_rss_mb", "rss_source", "gpu_mem_mb", "gpu_mem_note"):
        assert key in doc["memory"], key


@pytest.mark.slow
def test_json_model_converges_with_generous_target(tiny_models, tmp_path):
    out = tmp_path / "r.json"
    proc, doc = run_runner(_model_args(tiny_models, "json", "--max-seconds", "10", "--target-rel-ci", "0.5",
                                       "--threads", "1"), out)
    assert proc.returncode == 0, proc.stderr
    _check_schema(doc)
    assert doc["ok"] is True and doc["error"] is None
    model, params = tiny_models["json"]
    import hashlib
    assert doc["model"]["sha256"] == hashlib.sha256(model.read_bytes() + params.read_bytes()).hexdigest()
    assert doc["model"]["format"] == "json"
    cfg = doc["config"]
    assert cfg["memory_optim"] is False  # 3.3.1 quirk: never with .json
    assert cfg["threads"] == 1 and cfg["onednn"] is True and cfg["device"] == "cpu" and cfg["batch"] == 1
    assert cfg["inputs"] == [{"name": "x", "shape": [1, 16], "dtype": "float32"}]
    t = doc["timings"]
    assert t["converged"] is True and t["stop_reason"] == "converged"
    assert t["load_ms"] > 0 and t["first_ms"] > 0
    assert t["warmup_iters"] >= 2 and t["warmup_ms_total"] > 0
    samples = t["samples_ms"]
    assert len(samples) >= 20 and all(isinstance(x, float) and x > 0 for x in samples)
    assert t["steady_seconds"] >= 0.2
    assert 0 <= t["rel_ci"] <= 0.5
    # The runner's rel_ci is recomputable from the raw samples with the documented rule.
    assert t["rel_ci"] == pytest.approx(core.median_ci(samples)[3])
    assert doc["memory"]["rss_source"] == "VmHWM" and doc["memory"]["peak_rss_mb"] > 10
    assert doc["memory"]["gpu_mem_mb"] is None
    assert doc["env"]["paddle"] and doc["env"]["numpy"] and doc["env"]["cpu_count"] >= 1
    assert doc["protocol"]["target_rel_ci"] == 0.5


@pytest.mark.slow
def test_pdmodel_uses_memory_optim_and_stdout_output(tiny_models):
    proc, doc = run_runner(_model_args(tiny_models, "pdmodel", "--max-seconds", "10", "--target-rel-ci", "0.5",
                                       "--onednn", "off", "--threads", "2"))
    assert proc.returncode == 0, proc.stderr
    _check_schema(doc)
    assert doc["ok"] is True
    assert doc["model"]["format"] == "pdmodel" and doc["config"]["memory_optim"] is True
    assert doc["config"]["onednn"] is False and doc["config"]["threads"] == 2
    assert doc["outputs"][0]["shape"] == [1, 4]


@pytest.mark.slow
def test_impossible_target_stops_at_max_seconds_not_converged(tiny_models, tmp_path):
    proc, doc = run_runner(_model_args(tiny_models, "json", "--target-rel-ci", "1e-9", "--max-seconds", "0.6"),
                           tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    t = doc["timings"]
    assert doc["ok"] is True and t["converged"] is False and t["stop_reason"] == "max_seconds"
    assert 0.6 <= t["steady_seconds"] < 3.0
    assert t["rel_ci"] is None or t["rel_ci"] > 1e-9
    assert len(t["samples_ms"]) > 0


@pytest.mark.slow
def test_missing_model_file_is_ok_false_exit_3(tiny_models, tmp_path):
    _, params = tiny_models["json"]
    out = tmp_path / "r.json"
    missing = tmp_path / "nope.json"
    proc, doc = run_runner(["--model-file", missing, "--params-file", params, "--input", "x:1x16:float32"], out)
    assert proc.returncode == 3
    _check_schema(doc)
    assert doc["ok"] is False and str(missing) in doc["error"] and "\n" not in doc["error"]
    assert doc["timings"]["samples_ms"] == [] and doc["timings"]["load_ms"] is None
    assert "Traceback" not in proc.stderr


def test_fp16_on_cpu_is_a_clean_error(tmp_path):
    # Rejected before paddle is imported: no model needed, and fast.
    out = tmp_path / "r.json"
    proc, doc = run_runner(["--model-file", tmp_path / "m.json", "--params-file", tmp_path / "m.pdiparams",
                            "--input", "x:1x16:float32", "--precision", "fp16"], out)
    assert proc.returncode == 3
    assert doc["ok"] is False and "fp16" in doc["error"] and "cpu" in doc["error"]
    assert "Traceback" not in proc.stderr
    assert doc["env"]["paddle"] is None  # nothing measured, nothing invented


@pytest.mark.parametrize("extra,needle", [
    (["--trt"], "--trt needs --device gpu"),
    (["--device", "gpu", "--precision", "int8"], "int8 needs --trt"),
    (["--input", "bad"], "bad --input"),
    (["--precision", "int8", "--onednn", "off"], "oneDNN int8"),
])
def test_bad_options_are_one_line_errors(tmp_path, extra, needle):
    args = ["--model-file", tmp_path / "m.json", "--params-file", tmp_path / "p", "--input", "x:1x16:float32"]
    proc, doc = run_runner(args + extra, tmp_path / "r.json")
    assert proc.returncode == 3 and doc["ok"] is False and needle in doc["error"]


@pytest.mark.slow
def test_wrong_input_name_names_the_model_inputs(tiny_models, tmp_path):
    model, params = tiny_models["json"]
    proc, doc = run_runner(["--model-file", model, "--params-file", params, "--input", "y:1x16:float32"],
                           tmp_path / "r.json")
    assert proc.returncode == 3 and doc["ok"] is False
    assert "model wants [x]" in doc["error"]
    assert doc["timings"]["load_ms"] > 0  # what was measured before the failure is kept


@pytest.mark.slow
def test_sigterm_mid_run_still_writes_partial_result(tiny_models, tmp_path):
    out = tmp_path / "r.json"
    model, params = tiny_models["json"]
    cmd = [sys.executable, str(RUNNER), "--model-file", str(model), "--params-file", str(params),
           "--input", "x:1x16:float32", "--warmup-seconds", "0", "--min-seconds", "30", "--max-seconds", "30",
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    seen = []
    for line in proc.stderr:  # wait until the steady loop runs (import paddle takes a while)
        seen.append(line)
        if line.startswith("pi_runner: steady state") or time.time() > deadline:
            break
    assert any(x.startswith("pi_runner: steady state") for x in seen), "".join(seen)[-2000:]
    time.sleep(0.3)
    from helpers import assert_receives
    assert_receives(proc.pid, signal.SIGTERM)  # the precondition: the runner catches it after paddle's import
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=max(1, deadline - time.time()))
    assert proc.returncode == 3
    doc = json.loads(out.read_text())
    assert doc["ok"] is False and "signal" in doc["error"]
    assert doc["timings"]["load_ms"] is not None


# ---------------------------------------------------------------- pure functions (no paddle needed)

def test_median_ci_indices_match_exact_binomial():
    def exact(n):
        total = 2 ** n
        cdf, k = 0, 0
        while k <= n // 2 and (cdf + math.comb(n, k)) / total <= 0.025:
            cdf += math.comb(n, k)
            k += 1
        return (k - 1, n - k) if k >= 1 and k - 1 < n - k else None

    for n in list(range(0, 120)) + [500, 1001, 4000]:
        assert core.median_ci_indices(n) == exact(n), n
    assert core.median_ci_indices(5) is None and core.median_ci_indices(6) == (0, 5)
    assert core.median_ci_indices(100) == (39, 60)  # textbook: x_(40), x_(61)


def test_median_ci_coverage_is_at_least_nominal():
    import random
    rng = random.Random(1)
    hits, runs = 0, 400
    for _ in range(runs):
        xs = [rng.expovariate(1.0) for _ in range(60)]
        _, lo, hi, _ = core.median_ci(xs)
        hits += lo <= math.log(2) <= hi
    assert hits / runs >= 0.92


def test_median_ci_relative_halfwidth():
    med, lo, hi, rel = core.median_ci([10.0] * 3 + [11.0] * 3)
    assert med == 10.5 and (lo, hi) == (10.0, 11.0) and rel == pytest.approx(0.5 / 10.5)
    assert core.median_ci([1.0, 2.0])[1:] == (None, None, None)


def test_parse_input_spec():
    assert core.parse_input_spec("x:1x3x224x224:float32") == ("x", [1, 3, 224, 224], "float32")
    assert core.parse_input_spec("ids:1x128:int64") == ("ids", [1, 128], "int64")
    for bad in ("x:1x3", "x:1xa:float32", "x:0x3:float32", "x:1x3:complex"):
        with pytest.raises(core.RunnerFailure):
            core.parse_input_spec(bad)


@pytest.mark.slow
def test_max_iters_gives_a_fixed_count_protocol(tiny_models, tmp_path):
    """benchmark_bin-style --warmup 20 --repeats N: exactly N steady samples."""
    model, params = tiny_models["json"]
    proc, doc = run_runner(["--model-file", model, "--params-file", params, "--input", "x:1x16:float32",
                            "--warmup", "20", "--warmup-seconds", "0", "--min-iters", "37", "--max-iters", "37",
                            "--min-seconds", "0", "--max-seconds", "1000", "--target-rel-ci", "1e-12"],
                           tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    t = doc["timings"]
    assert len(t["samples_ms"]) == 37 and t["warmup_iters"] == 20
    assert t["stop_reason"] == "max_iters" and t["converged"] is False
    assert doc["protocol"]["max_iters"] == 37


def test_max_iters_below_min_iters_is_rejected(tmp_path):
    proc, doc = run_runner(["--model-file", tmp_path / "m.json", "--params-file", tmp_path / "p",
                            "--input", "x:1x16:float32", "--min-iters", "50", "--max-iters", "10"],
                           tmp_path / "r.json")
    assert proc.returncode == 3 and "--max-iters" in doc["error"]


def test_pid_file_names_the_runner_process(tiny_models, tmp_path):
    """The NVML sampler reads this file to attribute GPU memory to the runner, not to every process."""
    pid_file = tmp_path / "runner.pid"
    proc, doc = run_runner(_model_args(tiny_models, "json", "--pid-file", pid_file), tmp_path / "o.json")
    assert proc.returncode == 0 and doc["ok"]
    assert int(pid_file.read_text()) == doc["env"]["pid"]
    assert doc["clock"]["name"] == "uptime" and doc["clock"]["steady_end"] >= doc["clock"]["steady_start"]


@pytest.mark.slow
def test_fork_job_cold_predictor_per_trial_after_one_import(tiny_models, tmp_path):
    """--trials 3 --process fork (issue 23): paddle imported once by the runner, each trial's
    predictor created in its own forked child; one document per trial, one per line."""
    import numpy as np
    np.savez(tmp_path / "ref.npz", **{"in:x": np.ones((2, 1, 16), "float32")})
    out = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, str(RUNNER), *map(str, _model_args(tiny_models, "json")),
                           "--trials", "3", "--process", "fork", "--reference-inputs", str(tmp_path / "ref.npz"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(docs) == 3 and all(d["ok"] for d in docs)
    for d in docs:
        _check_schema(d)
        assert d["protocol"]["process"] == "fork" and not d.get("notes")  # one thread: fork allowed
        assert d["timings"]["load_ms"] > 0 and d["timings"]["first_ms"] > 0
    assert len({d["env"]["pid"] for d in docs}) == 3
    assert len({d["timings"]["import_ms"] for d in docs}) == 1 and docs[0]["timings"]["import_ms"] > 100
    assert [d["config"]["seed"] for d in docs] == [0, 1, 2]
    assert ["outputs_check" in d for d in docs] == [False, False, True]
    assert docs[2]["outputs_check"]["n"] == 2


def test_one_fresh_trial_records_its_own_import(tiny_models, tmp_path):
    proc, doc = run_runner(_model_args(tiny_models, "json"), tmp_path / "o.json")
    assert proc.returncode == 0 and doc["protocol"]["process"] == "fresh"
    assert doc["timings"]["import_ms"] > 100 and doc["memory"]["rss_source"] == "VmHWM"
