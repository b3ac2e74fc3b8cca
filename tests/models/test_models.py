"""Model zoo: zoo validation, input parsing, real builds of tiny zoo models (both formats),
content-hash cache, user model registration, CLI errors (exit 2, one line)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import lab.models.build as build_module
from lab.cli import main
from lab.core.errors import ConfigError
from lab.core.hashing import files_sha256, sha256_file
from lab.core.versions import paddle_version
from lab.models.artifact import META_SCHEMA, load_artifact, verify_artifact
from lab.models.build import build, build_key
from lab.models.user import parse_input_arg
from lab.models.zoo import load_zoo

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ fast: zoo file
def _zoo(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "zoo.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD_ENTRY = """\
models:
  - id: m1
    builder: {arch: tiny_mlp, kwargs: {in_features: 8}}
    inputs:
      - {name: x, shape: [-1, 8], dtype: float32, run_shape: [1, 8]}
    seed: 3
"""


def test_shipped_zoo_has_required_models():
    zoo = load_zoo(REPO / "models" / "zoo.yaml")
    for mid in ("mobilenet_v1", "mobilenet_v2", "resnet18", "resnet50", "text_lstm", "tiny_mlp",
                "tiny_detector"):
        assert mid in zoo
    lstm = zoo["text_lstm"].inputs[0]
    assert lstm.shape == (-1, -1) and lstm.dtype == "int64" and lstm.run_shape == (1, 128)
    assert zoo["mobilenet_v1"].inputs[0].run_shape == (1, 3, 224, 224)
    assert zoo["text_lstm"].tags["domain"] == "nlp"


def test_zoo_good_entry(tmp_path):
    zoo = load_zoo(_zoo(tmp_path, GOOD_ENTRY))
    e = zoo["m1"]
    assert (e.arch, e.seed, e.kwargs, e.line) == ("tiny_mlp", 3, {"in_features": 8}, 2)


@pytest.mark.parametrize("body, needle", [
    (GOOD_ENTRY.replace("    seed: 3", "    seed: 3\n    colour: red"), "unknown key(s) colour"),
    (GOOD_ENTRY + GOOD_ENTRY.split("\n", 1)[1], "duplicate model id 'm1'"),
    (GOOD_ENTRY.replace("dtype: float32", "dtype: float99"), "unknown dtype 'float99'"),
    (GOOD_ENTRY.replace("run_shape: [1, 8]", "run_shape: [1, 9]"), "does not fit shape"),
    (GOOD_ENTRY.replace("shape: [-1, 8],", "shape: [-1, 0],"), "bad dimension 0"),
    (GOOD_ENTRY.replace("seed: 3", "seed: -1"), "'seed' must be"),
    (GOOD_ENTRY.replace("builder: {arch: tiny_mlp, kwargs: {in_features: 8}}", "builder: x"),
     "'builder' must be"),
    ("models: [\n", "not valid YAML"),
    ("nothing: 1\n", "top-level 'models:'"),
])
def test_zoo_errors_name_file_and_line(tmp_path, body, needle):
    with pytest.raises(ConfigError) as err:
        load_zoo(_zoo(tmp_path, body))
    msg = str(err.value)
    assert needle in msg and "zoo.yaml" in msg and "\n" not in msg


def test_duplicate_id_points_at_second_entry(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_zoo(_zoo(tmp_path, GOOD_ENTRY + GOOD_ENTRY.split("\n", 1)[1]))
    assert err.value.line == 7 and "first defined at line 2" in str(err.value)


def test_build_key_depends_on_seed_and_paddle(tmp_path):
    e = load_zoo(_zoo(tmp_path, GOOD_ENTRY))["m1"]
    e2 = load_zoo(_zoo(tmp_path, GOOD_ENTRY.replace("seed: 3", "seed: 4")))["m1"]
    assert build_key(e, "3.3.1") == build_key(e, "3.3.1")
    assert build_key(e, "3.3.1") != build_key(e2, "3.3.1")
    assert build_key(e, "3.3.1") != build_key(e, "3.2.0")


@pytest.mark.parametrize("text, expect", [
    ("x:1x3x224x224:float32", ("x", (1, 3, 224, 224), "float32")),
    ("tokens:1X128:int64", ("tokens", (1, 128), "int64")),
    ("x:4x8", ("x", (4, 8), "float32")),
])
def test_parse_input_arg(text, expect):
    spec = parse_input_arg(text)
    assert (spec.name, spec.run_shape, spec.dtype) == expect


@pytest.mark.parametrize("text", ["x", ":1x3", "x:1xax3:float32", "x:0x3", "x:1x3:float99",
                                  "x:-1x3:float32", "a:b:c:d"])
def test_parse_input_arg_rejects(text):
    with pytest.raises(ConfigError):
        parse_input_arg(text)


def test_load_artifact_not_built(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_artifact("mobilenet_v1", root=tmp_path)
    assert "run `lab models build mobilenet_v1 --models-root" in str(err.value)


def test_load_artifact_rejects_path_like_ids(tmp_path):
    for bad in ("../etc", "a/b", ""):
        with pytest.raises(ConfigError):
            load_artifact(bad, root=tmp_path)


def test_cli_build_unknown_model_exit2(tmp_path, capsys):
    rc = main(["models", "--root", str(tmp_path), "--zoo", str(REPO / "models/zoo.yaml"),
               "build", "no_such_model"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown model(s) 'no_such_model'" in err and err.count("\n") == 1


def test_cli_build_needs_ids(tmp_path, capsys):
    rc = main(["models", "--root", str(tmp_path), "build"])
    assert rc == 2 and "--all" in capsys.readouterr().err


# ---------------------------------------------------------------------- slow: real paddle builds
@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory) -> Path:
    """One shared build dir per session (test_analysis reuses it through the build cache)."""
    return tmp_path_factory.getbasetemp() / "hwlab-zoo"


@pytest.fixture(scope="session")
def tiny(zoo_root):
    return build("tiny_mlp", zoo_root)


@pytest.fixture(scope="session")
def lstm(zoo_root):
    return build("text_lstm", zoo_root)


@pytest.fixture(scope="session")
def detector(zoo_root):
    return build("tiny_detector", zoo_root)


@pytest.mark.slow
def test_build_writes_both_formats_and_meta(tiny, zoo_root):
    art = load_artifact("tiny_mlp", zoo_root)
    assert art.json_path.name == "inference.json" and art.json_path.is_file()
    assert art.pdiparams_path.is_file() and art.pdmodel_path.name == "legacy.pdmodel"
    assert art.legacy_pdiparams_path.is_file() and art.source == "zoo"
    meta = json.loads((art.dir / "meta.json").read_text())
    assert meta["schema"] == META_SCHEMA
    assert set(meta["files"]) == {"inference.json", "inference.pdiparams", "legacy.pdmodel",
                                  "legacy.pdiparams"}
    for rel, digest in meta["files"].items():
        assert sha256_file(art.dir / rel) == digest
    assert art.sha256 == files_sha256(art.json_path, art.pdiparams_path)
    assert art.legacy_sha256 == files_sha256(art.pdmodel_path, art.legacy_pdiparams_path)
    # 64->128->10 MLP: MACs 64*128 + 128*10, params weights + biases
    assert art.flops == 64 * 128 + 128 * 10
    assert art.params == 64 * 128 + 128 + 128 * 10 + 10
    assert meta["built_with"]["paddle"] == paddle_version()
    assert meta["built_with"]["numpy"]
    assert [(i.name, i.shape, i.dtype, i.run_shape) for i in art.inputs] == \
        [("x", (-1, 64), "float32", (1, 64))]
    assert art.op_histogram == {"matmul": 2, "add": 2, "relu": 1}
    assert meta["analysis"]["format"] == "json" and meta["analysis"]["params"] == art.params
    assert art.tags["domain"] == "tabular"


@pytest.mark.slow
def test_cache_hit_skips_export(tiny, zoo_root, monkeypatch):
    def no_export(*a, **k):
        raise AssertionError("cache hit expected: the exporter must not run")

    monkeypatch.setattr(build_module, "_start_worker", no_export)
    before = (tiny.dir / "meta.json").read_text()
    t0 = time.monotonic()
    again = build("tiny_mlp", zoo_root)
    assert time.monotonic() - t0 < 2.0
    assert again.sha256 == tiny.sha256 and (tiny.dir / "meta.json").read_text() == before


@pytest.mark.slow
def test_tampered_file_rebuilds_to_same_seeded_weights(tmp_path):
    art = build("tiny_mlp", tmp_path)
    params = art.pdiparams_path.read_bytes()
    art.pdiparams_path.write_bytes(b"\0" * len(params))
    assert verify_artifact(art) == ["inference.pdiparams"]
    rebuilt = build("tiny_mlp", tmp_path)
    # Seeded random weights: a rebuild gives byte-identical parameters.
    assert rebuilt.pdiparams_path.read_bytes() == params
    assert rebuilt.sha256 == art.sha256 and verify_artifact(rebuilt) == []


@pytest.mark.slow
def test_missing_model_file_is_config_error(tiny, tmp_path, capsys):
    import shutil
    root = tmp_path / "models"
    shutil.copytree(tiny.dir, root / "tiny_mlp")
    (root / "tiny_mlp" / "legacy.pdmodel").unlink()
    with pytest.raises(ConfigError) as err:
        load_artifact("tiny_mlp", root)
    assert "legacy.pdmodel missing" in str(err.value)
    assert "lab models build tiny_mlp" in str(err.value)
    rc = main(["models", "--root", str(root), "show", "tiny_mlp"])
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_text_lstm_dynamic_sequence(lstm):
    assert lstm.inputs[0].shape == (-1, -1)
    # embedding: no MACs; LSTM: T * 4H(I+H); head: H * classes
    assert lstm.flops == 128 * 4 * 256 * (128 + 256) + 256 * 2
    assert "LSTM" in lstm.flops_note
    assert lstm.analysis["dynamic_dims"] == {"tokens": [1]}
    assert lstm.analysis["sequence_ops"] == ["rnn"]
    assert lstm.analysis["dyn_fill"] == 128
    assert lstm.analysis["macs_rnn"] == 128 * 4 * 256 * (128 + 256)


RUN_BOTH = r"""
import sys, json, numpy as np
import paddle.inference as pi
out = {}
for model, params, shapes, dtype in json.loads(sys.argv[1]):
    c = pi.Config(model, params); c.disable_gpu()
    p = pi.create_predictor(c)
    for shape in shapes:
        h = p.get_input_handle(p.get_input_names()[0])
        h.reshape(shape); h.copy_from_cpu((np.random.rand(*shape) * 50).astype(dtype))
        p.run()
        out.setdefault(model, []).append(list(p.get_output_handle(p.get_output_names()[0]).copy_to_cpu().shape))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_exports_run_in_paddle_inference(lstm, detector):
    """Both formats load in Paddle Inference; the LSTM takes any sequence length."""
    jobs = [[str(lstm.json_path), str(lstm.pdiparams_path), [[1, 7], [2, 128]], "int64"],
            [str(lstm.pdmodel_path), str(lstm.legacy_pdiparams_path), [[1, 7], [2, 128]], "int64"],
            [str(detector.json_path), str(detector.pdiparams_path), [[1, 3, 128, 128]], "float32"],
            [str(detector.pdmodel_path), str(detector.legacy_pdiparams_path), [[1, 3, 128, 128]],
             "float32"]]
    res = subprocess.run([sys.executable, "-c", RUN_BOTH, json.dumps(jobs)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out[str(lstm.json_path)] == [[1, 2], [2, 2]]
    assert out[str(lstm.pdmodel_path)] == [[1, 2], [2, 2]]
    for path in (detector.json_path, detector.pdmodel_path):
        (shape,) = out[str(path)]
        assert len(shape) == 2 and shape[1] == 4  # N boxes, N depends on the content


# ------------------------------------------------------------------------- user models (CLI)
@pytest.mark.slow
def test_add_user_model_both_formats(tiny, tmp_path, capsys):
    root = tmp_path / "models"
    rc = main(["models", "--root", str(root), "add", "my_pd", "--model-file",
               str(tiny.pdmodel_path), "--params-file", str(tiny.legacy_pdiparams_path),
               "--input", "x:1x64:float32"])
    assert rc == 0, capsys.readouterr().err
    art = load_artifact("my_pd", root)
    assert art.source == "user" and art.model_format == "pdmodel" and art.json_path is None
    assert art.model_path == art.pdmodel_path and art.params_path.is_file()
    assert art.inputs[0].shape == (-1, 64) and art.inputs[0].run_shape == (1, 64)
    assert art.flops == tiny.flops and "statically" in art.flops_note
    assert art.params == tiny.params

    rc = main(["models", "--root", str(root), "add", "my_json", "--model-file",
               str(tiny.json_path), "--input", "x:4x64"])  # params found next to the .json
    assert rc == 0, capsys.readouterr().err
    art2 = load_artifact("my_json", root)
    assert art2.model_format == "json" and art2.sha256 == tiny.sha256
    assert art2.flops == 4 * tiny.flops  # estimated at the given batch 4

    capsys.readouterr()
    assert main(["models", "--root", str(root), "list", "--format", "json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["my_pd"]["source"] == "user" and rows["my_pd"]["built"] is True
    assert rows["mobilenet_v1"]["built"] is False and rows["mobilenet_v1"]["flops"] is None


@pytest.mark.slow
@pytest.mark.parametrize("argv, needle", [
    (["--model-file", "{d}/nope.json", "--input", "x:1x64"], "does not exist"),
    (["--model-file", "{json}", "--params-file", "{d}/nope.pdiparams", "--input", "x:1x64"],
     "does not exist"),
    (["--model-file", "{json}", "--input", "x:1xfoo"], "must be positive integers"),
    (["--model-file", "{json}", "--input", "x:1x64:float99"], "unknown dtype"),
    (["--model-file", "{json}", "--input", "y:1x64"], "not among the model's inputs"),
    (["--model-file", "{json}", "--input", "x:1x65"], "does not fit the model's declared shape"),
    (["--model-file", "{json}"], "at least one --input"),
    (["--model-file", "{d}/weights.txt", "--input", "x:1x64"], "must be a .json"),
    (["--model-file", "{d}/lonely.json", "--input", "x:1x64"], "no params file"),
    (["--model-file", "{d}/garbage.json", "--params-file", "{json}", "--input", "x:1x64"],
     "cannot read"),
])
def test_add_validation_exit2_one_line(tiny, tmp_path, capsys, argv, needle):
    (tmp_path / "weights.txt").write_text("x")
    (tmp_path / "lonely.json").write_text("{}")
    (tmp_path / "garbage.json").write_text("not json")
    subst = {"d": str(tmp_path), "json": str(tiny.json_path)}
    args = [a.format(**subst) for a in argv]
    rc = main(["models", "--root", str(tmp_path / "models"), "add", "mine"] + args)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.startswith("lab: error:") and err.count("\n") == 1
    assert not (tmp_path / "models" / "mine" / "meta.json").exists()


def test_add_rejects_zoo_id(tmp_path, capsys):
    (tmp_path / "m.json").write_text("{}")
    rc = main(["models", "--root", str(tmp_path), "add", "resnet50", "--model-file",
               str(tmp_path / "m.json"), "--input", "x:1x3"])
    assert rc == 2 and "is a zoo model" in capsys.readouterr().err


def test_lite_target_calls_converter_per_model_and_target(monkeypatch, tmp_path, capsys):
    from lab.convert import lite
    calls = []
    monkeypatch.setattr(lite, "convert", lambda art, target: calls.append((art, target)))
    monkeypatch.setattr(build_module, "build", lambda mid, *a, **k: f"artifact:{mid}")
    rc = main(["models", "--root", str(tmp_path), "--zoo", str(REPO / "models/zoo.yaml"),
               "build", "tiny_mlp", "text_lstm", "--lite-target", "arm",
               "--lite-target", "huawei_kirin_npu"])
    assert rc == 0 and "4 Paddle Lite conversion(s)" in capsys.readouterr().out
    assert calls == [("artifact:tiny_mlp", "arm"), ("artifact:tiny_mlp", "huawei_kirin_npu"),
                     ("artifact:text_lstm", "arm"), ("artifact:text_lstm", "huawei_kirin_npu")]
