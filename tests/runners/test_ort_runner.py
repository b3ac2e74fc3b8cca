"""ort_runner.py: real ONNX Runtime, same JSON and protocol as pi_runner.py."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.onnx_graphs import tiny_cnn

REPO = Path(__file__).resolve().parents[2]
ORT = REPO / "lab" / "runners" / "ort_runner.py"
CORE = REPO / "lab" / "runners" / "runner_core.py"
FAST = ["--warmup", "3", "--warmup-seconds", "0", "--min-iters", "20", "--min-seconds", "0.2",
        "--max-seconds", "3"]
def run(tmp_path, *args):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(ORT), "--out", str(out), *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    return p, json.loads(out.read_text()) if out.exists() else None


def test_ort_runner_takes_the_protocol_from_runner_core():
    """One definition: the protocol lives in the travelling companion, not in a copy."""
    tree = ast.parse(ORT.read_text())
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & {"median_ci", "steady_state", "warm_up", "compact_output", "peak_rss"}
    assert "runner_core" in ORT.read_text() and CORE.is_file()


def test_runner_json_same_schema_as_pi_runner(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    p, doc = run(tmp_path, "--model-file", model, "--input", "image.in:2x3x16x16:float32",
                 "--threads", "2", *FAST)
    assert p.returncode == 0, p.stderr
    assert doc["ok"] and doc["schema"] == "hwlab.runner/1" and doc["runner"] == "ort_runner"
    # the busy-host probe as in pi_runner: other processes' CPU share during the steady window
    share = doc["env"]["host_busy_share"]
    assert (0.0 <= share <= 1.0 and doc["env"]["host_busy"]["total_jiffies"] > 0) if share is not None \
        else doc["env"]["host_busy_note"]
    # every key pi_runner documents is there (docs/architecture.md "Runner JSON")
    for section, keys in {"model": ["path", "format", "sha256"],
                          "config": ["threads", "device", "precision", "batch", "inputs"],
                          "protocol": ["warmup", "warmup_seconds", "min_iters", "min_seconds",
                                       "max_seconds", "target_rel_ci", "max_iters"],
                          "timings": ["load_ms", "first_ms", "warmup_iters", "samples_ms",
                                      "steady_seconds", "converged", "stop_reason", "rel_ci"],
                          "memory": ["peak_rss_mb", "rss_source", "gpu_mem_mb"]}.items():
        missing = [k for k in keys if k not in doc[section]]
        assert not missing, (section, missing)
    t = doc["timings"]
    assert t["load_ms"] > 0 and t["first_ms"] > 0 and len(t["samples_ms"]) >= 20
    assert t["warmup_iters"] >= 3 and doc["memory"]["rss_source"] == "VmHWM"
    assert doc["model"]["format"] == "onnx" and len(doc["model"]["sha256"]) == 64
    c = doc["config"]
    assert (c["intra_op_threads"], c["inter_op_threads"], c["execution_mode"],
            c["graph_optimization"]) == (2, 1, "sequential", "all")
    assert c["providers"] == ["CPUExecutionProvider"] and c["batch"] == 2
    assert doc["env"]["onnxruntime"] and doc["outputs"][0]["shape"] == [2, 10]


def test_max_iters_fixed_count(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    p, doc = run(tmp_path, "--model-file", model, "--input", "image.in:1x3x16x16:float32",
                 "--warmup", "1", "--warmup-seconds", "0", "--min-iters", "5", "--max-iters", "7",
                 "--min-seconds", "0", "--target-rel-ci", "1e-9")
    assert p.returncode == 0 and len(doc["timings"]["samples_ms"]) == 7
    assert doc["timings"]["stop_reason"] == "max_iters" and not doc["timings"]["converged"]


@pytest.mark.parametrize("spec, needle", [
    ("x:1x3x16x16:float32", "inputs do not match the model: model wants [image.in], got [x]"),
    ("image.in:1x3x8x8:float32", "does not fit the model's"),
    ("image.in:1x3x16x16:int64", "dtype int64 but the model wants tensor(float)"),
])
def test_bad_input_is_ok_false(tmp_path, spec, needle):
    model = tiny_cnn(tmp_path / "m.onnx")
    p, doc = run(tmp_path, "--model-file", model, "--input", spec, *FAST)
    assert p.returncode == 3 and doc["ok"] is False and needle in doc["error"], doc["error"]
    assert doc["timings"]["load_ms"] is not None  # what was measured so far is kept


def test_gpu_without_cuda_provider_says_what_to_install(tmp_path):
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    model = tiny_cnn(tmp_path / "m.onnx")
    p, doc = run(tmp_path, "--model-file", model, "--input", "image.in:1x3x16x16:float32",
                 "--device", "gpu", *FAST)
    assert p.returncode == 3 and "no CUDAExecutionProvider" in doc["error"]
    assert "install onnxruntime-gpu" in doc["error"] and doc["timings"]["load_ms"] is None


def test_truncated_model_is_ok_false(tmp_path):
    model = tiny_cnn(tmp_path / "m.onnx")
    model.write_bytes(model.read_bytes()[:100])
    p, doc = run(tmp_path, "--model-file", model, "--input", "image.in:1x3x16x16:float32", *FAST)
    assert p.returncode == 3 and doc["ok"] is False and doc["model"]["sha256"]
    assert "\n" not in doc["error"]


def test_runs_on_python_3_7_without_onnxruntime(tmp_path):
    from test_runner_portability import _python37
    py37 = _python37()
    if py37 is None:
        pytest.skip("no python3.7 interpreter on this machine")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\0")
    out = tmp_path / "r.json"
    p = subprocess.run([py37, str(ORT), "--model-file", str(model), "--input", "x:1x3:float32",
                        "--out", str(out)], capture_output=True, text=True, timeout=60)
    doc = json.loads(out.read_text())
    assert p.returncode == 3 and doc["ok"] is False and doc["env"]["python"].startswith("3.7")
    assert "No module named" in doc["error"]


def test_reference_and_eval_inputs_after_timing(tmp_path):
    """--reference-inputs / --eval-inputs like pi_runner: compact outputs equal ONNX Runtime's own
    outputs on the same samples, argmax per eval sample; lab.models.agreement compares them."""
    import numpy as np
    import onnxruntime as ort

    from lab.models import agreement
    model = tiny_cnn(tmp_path / "m.onnx")
    x = np.random.RandomState(3).random_sample((3, 1, 3, 16, 16)).astype("float32")
    np.savez(tmp_path / "ref.npz", **{"in:image.in": x})
    p, doc = run(tmp_path, "--model-file", model, "--input", "image.in:1x3x16x16:float32",
                 "--reference-inputs", tmp_path / "ref.npz", "--eval-inputs", tmp_path / "ref.npz",
                 *FAST)
    assert p.returncode == 0, p.stderr
    oc, ev = doc["outputs_check"], doc["eval_check"]
    assert oc["schema"] == "hwlab.outputs_check/1" and oc["n"] == 3 and oc["output_names"] == ["logits"]
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = [sess.run(None, {"image.in": x[i]})[0] for i in range(3)]
    ag = agreement.compare(agreement.compact_all([np.stack(want)]), oc["outputs"], "fp32")
    assert ag.passed and ag.agree_cosine_min == 1.0 and ag.agree_top1 == 1.0
    assert ev["argmax"] == [int(np.argmax(w)) for w in want] and ev["classes"] == 10
    # a reference file for another model's inputs: ok=false, one line
    np.savez(tmp_path / "bad.npz", **{"in:x": x})
    p, doc = run(tmp_path, "--model-file", model, "--input", "image.in:1x3x16x16:float32",
                 "--reference-inputs", tmp_path / "bad.npz", *FAST)
    assert p.returncode == 3 and "hold [x], the model wants [image.in]" in doc["error"]


def test_trials_in_one_runner_process_fork_or_the_reason_not(tmp_path):
    """--trials 2 --process fork: ONNX Runtime's module starts a thread when it is imported (1.32
    here), so the runner may refuse to fork; then the trials are fresh processes and say why."""
    model = tiny_cnn(tmp_path / "m.onnx")
    out = tmp_path / "r.jsonl"
    p = subprocess.run([sys.executable, str(ORT), "--model-file", str(model), "--input",
                        "image.in:1x3x16x16:float32", *FAST, "--trials", "2", "--process", "fork",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["ok"] for d in docs] == [True, True] and [d["config"]["seed"] for d in docs] == [0, 1]
    for d in docs:
        assert d["timings"]["import_ms"] > 0 and d["timings"]["load_ms"] > 0
        if d["protocol"]["process"] == "fresh":
            assert "process fork refused: the runner had" in d["notes"][0]
        else:
            assert d["protocol"]["process"] == "fork" and not d.get("notes")
