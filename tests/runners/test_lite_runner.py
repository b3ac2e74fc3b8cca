"""lite_runner.py: argument handling and JSON writing; no paddlelite wheel exists for this Python.

The measurement loop is exercised against `fakelite`, a tiny numpy stand-in of the paddlelite
Python API (MobileConfig / create_paddle_predictor / PowerMode) written below: it is NOT Paddle
Lite, it only lets the runner's own code run end to end.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "lab" / "runners" / "lite_runner.py"

FAKE_API = '''
import time
import numpy as np
__version__ = "0.0-fake"
class _PM:
    LITE_POWER_HIGH, LITE_POWER_LOW, LITE_POWER_FULL, LITE_POWER_NO_BIND = 0, 1, 2, 3
class lite:
    PowerMode = _PM
    calls = []
    class MobileConfig:
        def set_model_from_file(self, p): self.model = p
        def set_threads(self, n): self.threads = n
        def set_power_mode(self, m): self.power = m
        def set_nnadapter_device_names(self, names): lite.calls.append(("nnadapter", names))
        def set_nnadapter_context_properties(self, s): pass
    class _T:
        def __init__(self): self.a = None
        def from_numpy(self, a): self.a = a
        def numpy(self): return np.ones((1, 10), "float32")
    class _P:
        def __init__(self): self.ins = [lite._T()]; self.outs = [lite._T()]
        def get_input_names(self): return ["x"]
        def get_output_names(self): return ["y"]
        def get_input(self, i): return self.ins[i]
        def get_output(self, i): return self.outs[i]
        def run(self): time.sleep(0.0005)
    @staticmethod
    def create_paddle_predictor(config):
        if config.power != 3: raise RuntimeError("expected NO_BIND from --power-mode no-bind")
        return lite._P()
'''


def run_runner(tmp_path, *args, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(RUNNER), *args, "--out", str(out)], capture_output=True,
                       text=True, env=env, timeout=120)
    doc = json.loads(out.read_text()) if out.exists() else None
    return p, doc


@pytest.fixture
def nb(tmp_path):
    p = tmp_path / "m.nb"
    p.write_bytes(b"naive buffer")
    return p


def test_python37_syntax():
    ast.parse(RUNNER.read_text(), feature_version=(3, 7))
    imports = {n.names[0].name.split(".")[0] for n in ast.walk(ast.parse(RUNNER.read_text()))
               if isinstance(n, ast.Import)} | \
              {n.module.split(".")[0] for n in ast.walk(ast.parse(RUNNER.read_text()))
               if isinstance(n, ast.ImportFrom) and n.module}
    assert "lab" not in imports and imports <= {"argparse", "os", "sys", "time", "__future__",
                                                "runner_core", "numpy", "paddlelite"}


@pytest.mark.skipif(importlib.util.find_spec("paddlelite") is not None, reason="paddlelite installed")
def test_paddlelite_absent_is_a_clean_failure(tmp_path, nb):
    p, doc = run_runner(tmp_path, "--model-file", str(nb), "--input", "x:1x3x8x8:float32")
    assert p.returncode == 3
    assert doc["schema"] == "hwlab.runner/1" and doc["runner"] == "lite_runner" and doc["ok"] is False
    assert "paddlelite is not importable" in doc["error"] and "--with_python=ON" in doc["error"]
    assert doc["model"]["sha256"] and doc["timings"]["samples_ms"] == []
    assert "lite_runner: paddlelite" in p.stderr


def test_bad_arguments(tmp_path, nb):
    p, doc = run_runner(tmp_path, "--model-file", str(nb), "--input", "x:1x-3:float32")
    assert p.returncode == 3 and "every dimension must be a positive integer" in doc["error"]
    p, doc = run_runner(tmp_path, "--model-file", str(nb), "--power-mode", "turbo", "--input", "x:1:float32")
    assert p.returncode == 3 and doc["error"].startswith("bad arguments")
    p, doc = run_runner(tmp_path, "--model-file", str(tmp_path / "missing.nb"), "--input", "x:1:float32")
    assert "model file not found" in doc["error"]


def test_stdout_mode(tmp_path, nb):
    p = subprocess.run([sys.executable, str(RUNNER), "--model-file", str(nb), "--input", "x:1:float32",
                        "--out", "-"], capture_output=True, text=True, timeout=60)
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert doc["runner"] == "lite_runner" and p.returncode == (0 if doc["ok"] else 3)


def test_measurement_loop_with_fake_api(tmp_path, nb):
    pkg = tmp_path / "fakelite" / "paddlelite"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_API)
    p, doc = run_runner(tmp_path, "--model-file", str(nb), "--input", "x:1x3x8x8:float32",
                        "--nnadapter-device", "rockchip_npu", "--warmup", "3", "--warmup-seconds", "0",
                        "--min-iters", "20", "--min-seconds", "0.05", "--max-seconds", "2",
                        pythonpath=tmp_path / "fakelite")
    assert p.returncode == 0, p.stderr
    t = doc["timings"]
    assert doc["ok"] and doc["env"]["paddlelite"] == "0.0-fake" and doc["config"]["device"] == "aipu"
    assert t["load_ms"] > 0 and t["first_ms"] > 0 and t["warmup_iters"] >= 3
    assert len(t["samples_ms"]) >= 20 and all(x > 0 for x in t["samples_ms"])
    assert t["stop_reason"] in ("converged", "max_seconds")
    assert doc["outputs"][0]["shape"] == [1, 10]
