"""Real int8 PTQ, agreement against fp32, real accuracy on the bundled digits, real opt.

Built once per session (digits_cnn trains in ~6 s, its PTQ ~4 s); tests that damage a model copy
it into their own root first.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab.models import agreement
from lab.models.artifact import load_artifact
from lab.models.build import build
from lab.models import quantize
from lab.cli import main

REPO = Path(__file__).resolve().parents[2]
LITE_OPT = REPO / ".venv-lite" / "bin" / "paddle_lite_opt"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def qroot(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "hwlab-quant"
    build("digits_cnn", root)
    return root


@pytest.fixture(scope="session")
def digits_int8(qroot):
    return quantize.quantize("digits_cnn", qroot)


def _one_line_exit2(capsys, rc):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_quantize_digits_records_recipe_and_passes(digits_int8, qroot):
    assert digits_int8.passed and digits_int8.artifact.id == "digits_cnn-int8"
    meta = json.loads((qroot / "digits_cnn-int8" / "meta.json").read_text())
    q = meta["quantization"]
    assert meta["status"] == "ok" and meta["parent"]["id"] == "digits_cnn"
    assert q["recipe"]["algo"] == "abs_max" and q["recipe"]["onnx_format"] is True
    assert q["quant_ops"]["quantize_linear"] > 0 and q["quant_ops"]["dequantize_linear"] > 0
    assert q["int8_weight_tensors"] == 3  # conv1, conv2, fc
    assert q["size_bytes"]["int8_params"] < q["size_bytes"]["fp32_params"]
    assert "training split" in q["calibration"]["source"]
    ag = meta["agreement"]
    assert ag["agree_cosine_min"] >= agreement.THRESHOLDS["int8"]["cosine"]
    assert ag["agree_top1"] == 1.0 and "digits_cnn@" in ag["reference"]
    assert meta["tags"]["quantization"] == quantize.QUANT_TAG
    assert (qroot / "digits_cnn" / agreement.REFERENCE_FILE).is_file()


def test_quantize_is_cached(digits_int8, qroot):
    again = quantize.quantize("digits_cnn", qroot)
    assert again.reused and again.artifact.sha256 == digits_int8.artifact.sha256


def test_digits_accuracy_fp32_and_int8(digits_int8, qroot, capsys):
    assert main(["models", "--root", str(qroot), "accuracy", "digits_cnn", "--format",
                 "json"]) == 0
    fp32 = json.loads(capsys.readouterr().out)
    assert main(["models", "--root", str(qroot), "accuracy", "digits_cnn-int8", "--format",
                 "json"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert fp32["n"] == int8["n"] == 359
    assert fp32["accuracy_top1"] >= 0.9 and int8["accuracy_top1"] >= 0.9
    assert abs(fp32["accuracy_top1"] - int8["accuracy_top1"]) <= 0.02
    assert "int8" in int8["mode"]
    meta = json.loads((qroot / "digits_cnn-int8" / "meta.json").read_text())
    assert meta["accuracy"]["accuracy_top1"] == int8["accuracy_top1"]


def test_miscalibrated_model_is_kept_marked_failed_exit1(qroot, tmp_path, capsys):
    """Calibrated on 0..255 pixels while the model sees 0..1: a real, wrong int8 model."""
    root = tmp_path / "models"
    shutil.copytree(qroot / "digits_cnn", root / "digits_cnn")
    from lab.models import digits
    bad = digits.calibration_set(8) * 255.0 * 40
    np.savez(tmp_path / "calib.npz", x=bad.astype("float32"))
    rc = main(["models", "--root", str(root), "quantize", "digits_cnn", "--calib-data",
               str(tmp_path / "calib.npz")])
    out = capsys.readouterr()
    assert rc == 1 and "FAILED" in out.err and "FAIL (int8)" in out.out
    meta = json.loads((root / "digits_cnn-int8" / "meta.json").read_text())
    assert meta["status"] == "failed" and not meta["agreement"]["passed"]
    assert (root / "digits_cnn-int8" / "legacy.pdmodel").is_file()  # kept
    # The standalone check says the same, and exit 1.
    assert main(["models", "--root", str(root), "agreement", "digits_cnn-int8"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bad_calibration_shape_and_dtype_exit2(qroot, tmp_path, capsys):
    np.savez(tmp_path / "shape.npz", x=np.zeros((4, 1, 9, 9), "float32"))
    rc = main(["models", "--root", str(qroot), "quantize", "digits_cnn", "--calib-data",
               str(tmp_path / "shape.npz")])
    err = _one_line_exit2(capsys, rc)
    assert "shape.npz" in err and "[4, 1, 9, 9]" in err
    np.savez(tmp_path / "dtype.npz", x=np.zeros((4, 1, 8, 8), "float64"))
    rc = main(["models", "--root", str(qroot), "quantize", "digits_cnn", "--calib-data",
               str(tmp_path / "dtype.npz")])
    err = _one_line_exit2(capsys, rc)
    assert "dtype.npz" in err and "float64" in err and "astype" in err
    np.savez(tmp_path / "name.npz", image=np.zeros((4, 1, 8, 8), "float32"))
    rc = main(["models", "--root", str(qroot), "quantize", "digits_cnn", "--calib-data",
               str(tmp_path / "name.npz")])
    assert "no array for input(s) x" in _one_line_exit2(capsys, rc)


def test_paddleslim_engine_refused_exit2(qroot, capsys):
    rc = main(["models", "--root", str(qroot), "quantize", "digits_cnn", "--engine", "paddleslim"])
    assert "paddleslim" in _one_line_exit2(capsys, rc)


def test_model_without_quantisable_op_exit2(tmp_path, capsys):
    script = (
        "import paddle\n"
        "class L(paddle.nn.Layer):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.scale = self.create_parameter([4])\n"
        "    def forward(self, x):\n"
        "        return paddle.nn.functional.relu(x) * self.scale\n"
        f"paddle.jit.save(L(), {str(tmp_path / 'noquant')!r}, "
        "input_spec=[paddle.static.InputSpec([-1, 4], 'float32', 'x')])\n")
    env = dict(os.environ, FLAGS_enable_pir_api="0")
    (tmp_path / "export.py").write_text(script)  # to_static reads the source: a real file
    subprocess.run([sys.executable, str(tmp_path / "export.py")], env=env, check=True,
                   capture_output=True)
    root = tmp_path / "models"
    assert main(["models", "--root", str(root), "add", "noquant", "--model-file",
                 str(tmp_path / "noquant.pdmodel"), "--input", "x:1x4:float32"]) == 0
    capsys.readouterr()
    rc = main(["models", "--root", str(root), "quantize", "noquant"])
    err = _one_line_exit2(capsys, rc)
    assert "no quantisable op" in err and "noquant/inference.pdmodel" in err


def test_bad_eval_data_exit2(digits_int8, qroot, tmp_path, capsys):
    from lab.models import digits
    x, y = digits.eval_set()
    np.savez(tmp_path / "range.npz", x=x[:20], labels=(y[:20] + 20))
    rc = main(["models", "--root", str(qroot), "accuracy", "digits_cnn", "--eval-data",
               str(tmp_path / "range.npz")])
    err = _one_line_exit2(capsys, rc)
    assert "range.npz" in err and "10 classes" in err
    np.savez(tmp_path / "shape.npz", x=x[:20, :, :4], labels=y[:20])
    rc = main(["models", "--root", str(qroot), "accuracy", "digits_cnn", "--eval-data",
               str(tmp_path / "shape.npz")])
    assert "shape.npz" in _one_line_exit2(capsys, rc)
    np.savez(tmp_path / "labels.npz", x=x[:20], labels=y[:20].astype("float32"))
    rc = main(["models", "--root", str(qroot), "accuracy", "digits_cnn", "--eval-data",
               str(tmp_path / "labels.npz")])
    assert "1-D integer" in _one_line_exit2(capsys, rc)
    np.savez(tmp_path / "count.npz", x=x[:20], labels=y[:19])
    rc = main(["models", "--root", str(qroot), "accuracy", "digits_cnn", "--eval-data",
               str(tmp_path / "count.npz")])
    assert "one label per sample" in _one_line_exit2(capsys, rc)
    # A good user eval file works and is counted.
    np.savez(tmp_path / "ok.npz", x=x[:50], labels=y[:50])
    assert main(["models", "--root", str(qroot), "accuracy", "digits_cnn", "--eval-data",
                 str(tmp_path / "ok.npz"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 50


def test_pi_runner_int8_reports_outputs_check_that_agrees(digits_int8, qroot, tmp_path):
    """The travelling runner: oneDNN int8 timing, then the reference set, compared on the host."""
    parent = load_artifact("digits_cnn", qroot)
    ref = agreement.load_reference(parent)
    art = digits_int8.artifact
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, str(REPO / "lab" / "runners" / "pi_runner.py"),
                        "--model-file", str(art.pdmodel_path), "--params-file",
                        str(art.legacy_pdiparams_path), "--input", "x:1x1x8x8:float32",
                        "--precision", "int8", "--warmup", "2", "--warmup-seconds", "0",
                        "--min-iters", "10", "--min-seconds", "0", "--max-seconds", "2",
                        "--reference-inputs", str(ref["path"]), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["config"]["precision"] == "int8" and doc["ok"]
    check = doc["outputs_check"]
    assert check["n"] == agreement.REFERENCE_SET_SIZE and check["seconds"] > 0
    ag = agreement.compare(ref["compact"], check["outputs"], "int8", agreement.reference_name(ref))
    assert ag.passed, ag
    # fp32 outputs from the runner agree with the reference at the fp32 threshold.
    ag32 = agreement.compare(ref["compact"], check["outputs"], "fp32")
    assert ag32.agree_cosine_min >= 0.99


@pytest.fixture(scope="session")
def lite_opt():
    if not LITE_OPT.is_file():
        r = subprocess.run(["bash", str(REPO / "scripts" / "setup-lite-opt.sh"),
                            str(REPO / ".venv-lite")], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not LITE_OPT.is_file():
            pytest.skip("no paddle_lite_opt: scripts/setup-lite-opt.sh failed: "
                        + (r.stderr.strip().splitlines() or ["?"])[-1])
    return LITE_OPT


def test_lite_rockchip_npu_from_int8(digits_int8, qroot, lite_opt, monkeypatch, capsys):
    monkeypatch.setenv("HWLAB_PADDLE_LITE_OPT", str(lite_opt))
    assert main(["models", "--root", str(qroot), "build", "digits_cnn-int8", "--lite-target",
                 "rockchip-npu", "--lite-target", "timvx"]) == 0
    meta = json.loads((qroot / "digits_cnn-int8" / "meta.json").read_text())
    for target in ("rockchip-npu", "timvx"):
        lite = meta["lite"][target]
        assert (qroot / "digits_cnn-int8" / lite["nb"]).is_file()
        assert lite["npu_subgraphs"] >= 1 and lite["npu_ops"].get("conv2d", 0) >= 1
        assert isinstance(lite["cpu_ops"], dict)
    # The fp32 parent is still refused for these NPUs, with the way out named.
    rc = main(["models", "--root", str(qroot), "build", "digits_cnn", "--lite-target",
               "rockchip-npu"])
    err = capsys.readouterr().err
    assert rc == 2 and "lab models quantize digits_cnn" in err


def test_mobilenet_v1_int8_rockchip_npu(tmp_path_factory, lite_opt, monkeypatch):
    """The issue's must-show: mobilenet_v1 -> -int8 -> rockchip-npu .nb with its subgraphs.

    Whether the int8 model agrees with fp32 is measured, not assumed: on the informative
    mobilenet_v1 (issue 26) abs_max PTQ fails the check, with or without oneDNN's int8 kernels
    (docs/benchmarks.md). Either way the verdict is stored with the model and matches its figures."""
    monkeypatch.setenv("HWLAB_PADDLE_LITE_OPT", str(lite_opt))
    root = tmp_path_factory.getbasetemp() / "hwlab-quant-mnv1"
    build("mobilenet_v1", root)
    r = quantize.quantize("mobilenet_v1", root, calib_batches=4)
    meta = json.loads((root / "mobilenet_v1-int8" / "meta.json").read_text())
    ag, th = meta["agreement"], agreement.thresholds_for("int8")
    assert ag["n"] == agreement.REFERENCE_SET_SIZE and ag["passed"] is r.passed
    assert r.passed is (ag["agree_cosine_min"] >= th["cosine"] and ag["agree_top1"] >= th["top1"])
    assert meta["status"] == ("ok" if r.passed else "failed"), r.summary
    assert meta["quantization"]["calibration"]["source"].startswith("natural images")
    assert main(["models", "--root", str(root), "build", "mobilenet_v1-int8", "--lite-target",
                 "rockchip-npu"]) == 0
    lite = json.loads((root / "mobilenet_v1-int8" / "meta.json").read_text())["lite"]
    assert lite["rockchip-npu"]["npu_subgraphs"] >= 1
