"""ONNX out (paddle2onnx, ORT int8) and the round trip paddle -> onnx -> x2paddle -> paddle."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lab.convert import onnx_in, onnx_out, worker
from lab.core.errors import ConfigError
from lab.models.artifact import ModelArtifact
from lab.models.build import build

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory) -> Path:
    """The same shared build dir as tests/test_models.py (reused through the build cache)."""
    return tmp_path_factory.getbasetemp() / "hwlab-zoo"


def test_quantised_paddle_model_refused_before_paddle2onnx(tmp_path):
    art = ModelArtifact(
        id="m_int8", dir=tmp_path, json_path=tmp_path / "inference.json",
        pdiparams_path=tmp_path / "inference.pdiparams", pdmodel_path=None,
        legacy_pdiparams_path=None, sha256="0" * 64, inputs=[], flops=None, params=None,
        op_histogram={"conv2d": 3, "quantize_linear": 4, "dequantize_linear": 4}, source="zoo")
    with pytest.raises(ConfigError, match="quantised Paddle model.*quantize_linear.*aborts"):
        onnx_out.export(art)
    tagged = replace(art, op_histogram={"conv2d": 1}, tags={"quantization": "int8-ptq"})
    assert "tagged int8-ptq" in onnx_out.quantised_reason(tagged)
    assert onnx_out.quantised_reason(replace(art, op_histogram={"conv2d": 1})) is None


def test_worker_turns_an_abort_into_one_line(tmp_path):
    """A child killed by SIGABRT (as paddle2onnx does on a quantised model) is a result, not a
    dead lab: the 'interpreter' here is a script that aborts itself."""
    import signal
    abort = tmp_path / "python"
    abort.write_text("#!/bin/sh\necho 'Only support e4m3 or e5m2' >&2\nkill -ABRT $$\n")
    abort.chmod(0o755)
    res = worker.run("paddle2onnx", {}, timeout=60, python=str(abort))
    assert res["ok"] is False and res["kind"] == "crash"
    assert f"killed by signal {int(signal.SIGABRT)} (SIGABRT)" in res["error"], res
    assert "Only support e4m3 or e5m2" in res["error"]


def test_worker_unknown_failure_is_data():
    res = worker.run("no-such-mode", {}, timeout=120)
    assert res["ok"] is False and "KeyError" in res["error"]


@pytest.mark.slow
def test_round_trip_mobilenet_v1(zoo_root, tmp_path):
    art = build("mobilenet_v1", zoo_root)
    res = subprocess.run([sys.executable, "-m", "lab.cli", "models", "--root", str(zoo_root),
                          "build", "mobilenet_v1", "--onnx"], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr
    record = json.loads((art.dir / "onnx" / "export.json").read_text())
    assert record["opset"] == 13 and record["source_sha256"] == art.sha256
    assert record["fp32"]["agreement"]["cosine"] >= 0.9999
    back = onnx_in.import_onnx(art.dir / "onnx" / "model.onnx", "mobilenet_v1_rt",
                               root=tmp_path / "models")
    assert [i.name for i in back.inputs] == ["x2paddle_x"]
    # Paddle (original) against Paddle (after the round trip), on the same seeded inputs.
    agree = worker.run("agree", {
        "reference_paddle_model": str(art.json_path), "reference_paddle_params":
        str(art.pdiparams_path), "paddle_model": str(back.json_path),
        "paddle_params": str(back.pdiparams_path),
        "inputs": [{"name": "x", "paddle_name": "x2paddle_x", "run_shape": [1, 3, 224, 224],
                    "dtype": "float32"}]})
    assert agree["ok"] and agree["cosine"] >= 0.9999 and agree["top1"] == 1.0, agree


@pytest.mark.slow
def test_int8_onnx_recipe_recorded_and_cached(zoo_root):
    art = build("tiny_mlp", zoo_root)
    exp = onnx_out.export(art, int8=True)
    rec = exp.record["int8"]
    assert exp.int8.is_file() and rec["recipe"]["format"] == "QDQ" and rec["recipe"]["per_channel"]
    assert rec["recipe"]["calibration_samples"] == onnx_out.CALIBRATION_SAMPLES
    assert rec["agreement"]["cosine"] > 0.99
    import onnx
    ops = {n.op_type for n in onnx.load(str(exp.int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    before = exp.int8.stat().st_mtime_ns
    again = onnx_out.export(art, int8=True)
    assert again.int8.stat().st_mtime_ns == before  # reused, not re-quantised


@pytest.mark.slow
def test_int8_onnx_of_an_image_model_is_calibrated_and_checked_on_the_jobs_inputs(zoo_root):
    """Regression: ONNX Runtime's int8 MobileNet was calibrated and checked on uniform [0, 1) noise,
    passed that check (cosine 0.996) and scored cosine -0.91 against the fp32 reference on the natural
    photos every job's output check uses. Calibration is now the model's calibration set (the one
    Paddle's PTQ uses) and the build-time check runs on the jobs' reference inputs."""
    from lab.models import agreement, quantize
    art = build("mobilenet_v1", zoo_root)
    rec = onnx_out.export(art, int8=True, force=True).record["int8"]
    _, calib_source = quantize.default_calibration(art, onnx_out.CALIBRATION_SAMPLES)
    _, ref_source = agreement.reference_inputs(art)
    assert rec["recipe"]["calibration_data"] == calib_source and "natural" in calib_source
    assert rec["agreement"]["inputs"] == ref_source
    assert rec["agreement"]["cosine"] > 0.9, rec["agreement"]  # was -0.91 on these inputs
    assert not list((art.dir / "onnx").glob("*.npz"))  # the worker's input files are not left behind
