"""`lab models import FILE.onnx`: real x2paddle, Paddle Inference and ONNX Runtime on small graphs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.convert import lite as lite_convert
from lab.convert import onnx_in
from lab.core.errors import ConfigError
from lab.models.artifact import LEGACY_MODEL_FILE, ModelArtifact, load_artifact
from lab.models.user import parse_input_arg
from helpers import lab_cli, one_line_error
from tests.onnx_graphs import tiny_cnn, with_det

REPO = Path(__file__).resolve().parents[2]


def lab(*args):
    return lab_cli(*args, timeout=300)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The hand-built CNN imported once through the CLI (x2paddle + agreement, ~6 s)."""
    d = tmp_path_factory.mktemp("onnx-import")
    src = tiny_cnn(d / "tiny_cnn.onnx")
    res = lab("models", "--root", d / "models", "import", src, "--name", "tiny_cnn")
    assert res.returncode == 0, res.stderr
    return d, res


@pytest.mark.slow
def test_hand_built_graph_imports_and_agrees(imported):
    d, res = imported
    assert "image.in -> x2paddle_image_in" in res.stdout
    art = load_artifact("tiny_cnn", d / "models")
    meta = json.loads((art.dir / "meta.json").read_text())
    assert meta["source"] == "onnx" and meta["legacy_model_file"] == LEGACY_MODEL_FILE
    assert [i.name for i in art.inputs] == ["x2paddle_image_in"]
    assert art.inputs[0].run_shape == (1, 3, 16, 16) and art.inputs[0].shape == (-1, 3, 16, 16)
    imp = meta["onnx_import"]
    assert imp["input_map"] == {"image.in": "x2paddle_image_in"}
    assert imp["agreement"]["cosine"] >= 0.9999 and imp["agreement"]["top1"] == 1.0
    assert imp["agreement"]["max_abs"] < 1e-3
    assert (art.dir / imp["source_file"]).is_file() and art.flops and art.flops > 0


@pytest.mark.slow
def test_imported_model_runs_in_both_runners(imported, tmp_path):
    d, _ = imported
    art = load_artifact("tiny_cnn", d / "models")
    fast = ["--warmup", "2", "--warmup-seconds", "0", "--min-iters", "10", "--min-seconds", "0.1",
            "--max-seconds", "2"]
    pi = subprocess.run([sys.executable, str(REPO / "lab/runners/pi_runner.py"), "--model-file",
                         str(art.model_path), "--params-file", str(art.params_path), "--input",
                         "x2paddle_image_in:1x3x16x16:float32", "--out", str(tmp_path / "pi.json"),
                         *fast], capture_output=True, text=True, timeout=120)
    ort = subprocess.run([sys.executable, str(REPO / "lab/runners/ort_runner.py"), "--model-file",
                          str(art.dir / "onnx/source.onnx"), "--input", "image.in:1x3x16x16:float32",
                          "--out", str(tmp_path / "ort.json"), *fast],
                         capture_output=True, text=True, timeout=120)
    for p, name in ((pi, "pi"), (ort, "ort")):
        assert p.returncode == 0, p.stderr
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        assert doc["ok"] and doc["outputs"][0]["shape"] == [1, 10]


@pytest.mark.slow
def test_reimport_is_cached(imported):
    d, _ = imported
    art = onnx_in.import_onnx(d / "tiny_cnn.onnx", "tiny_cnn", root=d / "models")
    assert art.sha256 == load_artifact("tiny_cnn", d / "models").sha256


@pytest.mark.slow
def test_imported_model_gets_a_legacy_pdmodel_and_runs_in_paddle_lite(imported, tmp_path):
    """x2paddle's code re-exported to .pdmodel (matmul_v2 appended by hand), checked against ONNX
    Runtime, converted by the real opt for x86 and run by the real paddlelite (.venv-lite)."""
    d, _ = imported
    art = load_artifact("tiny_cnn", d / "models")
    meta = json.loads((art.dir / "meta.json").read_text())
    leg = meta["onnx_import"]["legacy"]
    assert meta["onnx_import"]["lite"] is None and leg["patched"] == ["paddle.matmul -> matmul_v2"]
    assert leg["agreement"]["cosine"] >= 0.9999 and leg["agreement"]["top1"] == 1.0
    assert art.pdmodel_path.is_file() and art.legacy_sha256 and onnx_in.lite_refusal(art) is None
    from lab.runtimes.paddle_lite_python import LOCAL_LITE_PYTHON
    if not LOCAL_LITE_PYTHON.is_file():
        pytest.skip("no .venv-lite: scripts/setup-lite-opt.sh could not install the paddlelite wheel")
    res = lab("models", "--root", d / "models", "build", "tiny_cnn", "--lite-target", "x86")
    assert res.returncode == 0, res.stderr
    nb = art.dir / "lite" / "x86.nb"
    p = subprocess.run([str(LOCAL_LITE_PYTHON), str(REPO / "lab/runners/lite_runner.py"),
                        "--model-file", str(nb), "--input", "x2paddle_image_in:1x3x16x16:float32",
                        "--warmup", "2", "--warmup-seconds", "0", "--min-iters", "10",
                        "--min-seconds", "0.1", "--max-seconds", "2", "--out", str(tmp_path / "l.json")],
                       capture_output=True, text=True, timeout=120)
    doc = json.loads((tmp_path / "l.json").read_text())
    assert p.returncode == 0 and doc["ok"], doc.get("error")
    assert doc["outputs"][0]["shape"] == [1, 10] and doc["timings"]["samples_ms"]


def test_lite_refused_for_an_import_without_pdmodel():
    art = ModelArtifact(
        id="imp", dir=Path("/nonexistent"), json_path=Path("/nonexistent/inference.json"),
        pdiparams_path=Path("/nonexistent/inference.pdiparams"), pdmodel_path=None,
        legacy_pdiparams_path=None, sha256="0" * 64, inputs=[], flops=None, params=None,
        op_histogram={}, source="onnx")
    assert "re-exporting x2paddle's code to it failed" in onnx_in.lite_refusal(art)
    with pytest.raises(ConfigError, match="x2paddle.*legacy .pdmodel"):
        lite_convert.opt_args(art, lite_convert.resolve_target("arm"), Path("/nonexistent/x"))


def test_truncated_onnx_exit2(tmp_path):
    src = tiny_cnn(tmp_path / "m.onnx")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    one_line_error(lab("models", "--root", tmp_path / "models", "import", src),
                   str(src), "not a readable ONNX model")


def test_not_an_onnx_file_exit2(tmp_path):
    (tmp_path / "x.onnx").write_text("hello")
    one_line_error(lab("models", "--root", tmp_path / "models", "import", tmp_path / "x.onnx"),
                   "ONNX")


@pytest.mark.parametrize("spec, needle", [
    ("nope:1x3x16x16:float32", "the graph has no input 'nope' (inputs: image.in)"),
    ("image.in:1x3x32x32:float32", "does not fit the graph's [?x3x16x16]"),
    ("image.in:1x3x16:float32", "does not fit"),
    ("image.in:1x3x16x16:int64", "dtype int64 but the graph wants float32"),
])
def test_input_spec_mismatch_exit2(tmp_path, spec, needle):
    src = tiny_cnn(tmp_path / "m.onnx")
    one_line_error(lab("models", "--root", tmp_path / "models", "import", src, "--input", spec),
                   needle)


def test_dynamic_spatial_dims_need_input(tmp_path):
    src = tiny_cnn(tmp_path / "m.onnx", dims=("N", 3, "H", "W"))
    one_line_error(lab("models", "--root", tmp_path / "models", "import", src),
                   "dynamic dimensions past the batch", "--input image.in:SHAPE:float32")


@pytest.mark.slow
def test_unsupported_op_exit2(tmp_path):
    src = with_det(tmp_path / "det.onnx")
    one_line_error(lab("models", "--root", tmp_path / "models", "import", src),
                   "x2paddle does not support op Det", "'det_0' (Det)")


@pytest.mark.slow
def test_conv_without_kernel_shape_names_node_and_op(tmp_path):
    src = tiny_cnn(tmp_path / "m.onnx", kernel_shape=False)
    one_line_error(lab("models", "--root", tmp_path / "models", "import", src),
                   "node 'conv_0' (op Conv)", "kernel_shape")


def test_zoo_id_refused(tmp_path):
    src = tiny_cnn(tmp_path / "m.onnx")
    one_line_error(lab("models", "--root", tmp_path / "models", "import", src, "--name",
                       "mobilenet_v1"), "is a zoo model")


@pytest.mark.slow
def test_dynamic_spatial_dims_with_input_import(tmp_path):
    src = tiny_cnn(tmp_path / "dyn.onnx", dims=("N", 3, "H", "W"))
    art = onnx_in.import_onnx(src, "dyn", [parse_input_arg("image.in:1x3x32x32:float32")],
                              root=tmp_path / "models")
    assert art.inputs[0].shape == (-1, 3, -1, -1) and art.inputs[0].run_shape == (1, 3, 32, 32)
    meta = json.loads((art.dir / "meta.json").read_text())
    assert meta["onnx_import"]["agreement"]["cosine"] >= 0.9999
