"""Static model analysis: rules on hand-written programs in both real formats (PIR JSON as
paddle 3.3.1 writes it, ProgramDesc protobuf built with paddle's own framework_pb2), then on real
exported zoo models of both formats."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.models import analysis, program
from lab.models.build import build
from lab.core.errors import ConfigError, LabError

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------- PIR JSON, written by hand
def _tt(shape, dtype="t_f32"):
    return {"#": "0.t_dtensor", "D": [{"#": f"0.{dtype}"}, shape, "NCHW", [], 0]}


class PirDoc:
    """Writes programs in the layout paddle 3.3.1 `paddle.jit.save` produces (see inference.json)."""

    def __init__(self):
        self.ops, self.next = [], 0

    def _id(self):
        self.next += 1
        return self.next

    def param(self, name, shape, trainable=True, dtype="t_f32"):
        vid = self._id()
        self.ops.append({"#": "p", "A": [0, 1, 1, name], "DA": [],
                         "O": {"%": vid, "TT": _tt(shape, dtype)},
                         "OA": [1, 0 if trainable else 1, 1 if trainable else 0], "QA": []})
        return vid

    def op(self, name, inputs, out_shapes, attrs=None, dtype="t_f32"):
        outs = [{"%": self._id(), "TT": _tt(s, dtype)} for s in out_shapes]
        a = [{"AT": {"#": "0.a_i32" if isinstance(v, int) else "0.a_str", "D": v}, "N": k}
             for k, v in (attrs or {}).items()]
        self.ops.append({"#": f"1.{name}", "A": a, "I": [{"%": i} for i in inputs], "O": outs,
                         "OA": []})
        return [o["%"] for o in outs]

    def data(self, name, shape, dtype="float32"):
        vid = self._id()
        self.ops.append({"#": "1.data", "A": [
            {"AT": {"#": "0.a_str", "D": name}, "N": "name"},
            {"AT": {"#": "1.a_intarray", "D": shape}, "N": "shape"},
            {"AT": {"#": "1.a_dtype", "D": dtype}, "N": "dtype"}],
            "I": [], "O": [{"%": vid, "TT": _tt(shape, "t_i64" if dtype == "int64" else "t_f32")}]})
        return vid

    def write(self, path: Path) -> Path:
        doc = {"base_code": {"magic": "pir", "trainable": True, "version": 4},
               "program": {"regions": [{"#": "region_0", "blocks": [
                   {"#": "block_0", "args": [], "ops": self.ops}]}]}}
        path.write_text(json.dumps(doc))
        return path


def _small_cnn(tmp_path, tail=None, quant=False) -> Path:
    d = PirDoc()
    w = d.param("conv.w", [8, 3, 3, 3])
    bn_mean = d.param("bn.mean", [8], trainable=False)
    fc = d.param("fc.w", [8, 10])
    x = d.data("image", [-1, 3, 32, 32])
    if quant:
        (x,) = d.op("quantize_linear", [x], [[-1, 3, 32, 32]])
        (x,) = d.op("dequantize_linear", [x], [[-1, 3, 32, 32]])
    (y,) = d.op("conv2d", [x, w], [[-1, 8, 16, 16]], {"groups": 1})
    (y,) = d.op("batch_norm_", [y, bn_mean], [[-1, 8, 16, 16]])
    (y,) = d.op("relu_", [y], [[-1, 8, 16, 16]])
    (y,) = d.op("pool2d", [y], [[-1, 8, 1, 1]])
    (y,) = d.op("flatten", [y], [[-1, 8]])
    (y,) = d.op("matmul", [y, fc], [[-1, 10]])
    if tail == "nonzero":
        (y,) = d.op("nonzero", [y], [[-1, 2]], dtype="t_i64")
    d.op("fetch", [y], [[-1, 10]], {"name": "out"})
    return d.write(tmp_path / "cnn.json")


def test_pir_cnn_rules(tmp_path):
    res = analysis.analyze(_small_cnn(tmp_path))
    assert res.format == "json"
    # conv: out 8*16*16 x (3*3*3); matmul: 10 outputs x K=8
    assert res.macs_conv == 8 * 16 * 16 * 27 and res.macs_matmul == 10 * 8
    # other: bn 2 per element, relu 1, pool 8, flatten 8
    assert res.other_ops == 2 * 2048 + 2048 + 8 + 8
    assert res.conv_matmul_share == round((55296 + 80) / (55296 + 80 + 6160), 4)
    assert res.op_histogram == {"conv2d": 1, "batch_norm": 1, "relu": 1, "pool2d": 1,
                                "flatten": 1, "matmul": 1}  # no data/fetch/parameters
    assert [(i.name, i.shape, i.dtype) for i in res.inputs] == [("image", (-1, 3, 32, 32),
                                                                  "float32")]
    assert res.dynamic_dims == {"image": []}
    assert res.params == 8 * 27 + 8 + 80 and res.trainable_params == 8 * 27 + 80
    assert res.outputs == [{"name": "out", "shape": [-1, 10], "dtype": "float32"}]
    assert (res.quantization, res.data_dependent_ops, res.sequence_ops) == ("none", [], [])


def test_pir_batch_from_run_shape(tmp_path):
    res = analysis.analyze(_small_cnn(tmp_path), run_shapes={"image": [4, 3, 32, 32]})
    assert res.batch_fill == 4 and res.macs_conv == 4 * 8 * 16 * 16 * 27
    assert res.estimated_macs()[0] == 4 * (55296 + 80)


def test_pir_data_dependent_and_quant(tmp_path):
    res = analysis.analyze(_small_cnn(tmp_path, tail="nonzero", quant=True))
    assert res.data_dependent_ops == ["nonzero"]
    assert res.quantization == "qdq" and res.quant_ops == ["dequantize_linear", "quantize_linear"]


def test_pir_rnn_and_dynamic_seq(tmp_path):
    d = PirDoc()
    emb = d.param("emb", [100, 16])
    wl = [d.param("w_ih", [4 * 32, 16]), d.param("w_hh", [4 * 32, 32])]
    x = d.data("tokens", [-1, -1], "int64")
    (e,) = d.op("embedding", [x, emb], [[-1, -1, 16]])
    (t,) = d.op("transpose", [e], [[-1, -1, 16]])
    (comb,) = d.op("combine", wl, [[1]])  # builtin plumbing in real files (0.combine)
    d.ops[-1]["#"] = "0.combine"
    (o,) = d.op("rnn", [t, comb, comb], [[-1, -1, 32]],
                {"mode": "LSTM", "hidden_size": 32, "input_size": 16, "num_layers": 1})
    d.op("fetch", [o], [[-1, -1, 32]], {"name": "h"})
    path = d.write(tmp_path / "lstm.json")
    res = analysis.analyze(path, run_shapes={"tokens": [2, 50]})
    assert res.dynamic_dims == {"tokens": [1]}
    assert res.sequence_ops == ["rnn"] and "combine" not in res.op_histogram
    assert (res.dyn_fill, res.batch_fill) == (50, 2)
    assert res.macs_rnn == 2 * 50 * 4 * 32 * (16 + 32)
    assert any("dynamic non-batch dims estimated as 50" in n for n in res.notes)


def test_pir_unknown_shapes_are_counted_not_guessed(tmp_path):
    d = PirDoc()
    x = d.data("x", [-1, 8])
    d.op("matmul", [x, 999], [[-1, 4]])  # weight value id never defined: shape unknown
    res = analysis.analyze(d.write(tmp_path / "m.json"))
    assert res.macs_matmul == 8 * 4  # K comes from x, which is known
    d2 = PirDoc()
    d2.op("conv2d", [998, 999], [[-1, 4, 2, 2]])
    res2 = analysis.analyze(d2.write(tmp_path / "c.json"))
    assert res2.unknown_shape_ops == 1 and res2.macs_conv == 0
    assert res2.estimated_macs()[0] is None


@pytest.mark.parametrize("content, needle", [
    ("not json", "not a Paddle PIR program"),
    ('{"base_code": {"magic": "xyz"}, "program": {"regions": []}}', "no 'pir' magic"),
    ('{"a": 1}', "not a Paddle PIR program"),
])
def test_pir_garbage(tmp_path, content, needle):
    p = tmp_path / "m.json"
    p.write_text(content)
    with pytest.raises(LabError) as err:
        analysis.analyze(p)
    assert needle in str(err.value)


def test_missing_and_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError):
        analysis.analyze(tmp_path / "none.json")
    (tmp_path / "m.onnx").write_text("x")
    with pytest.raises(ConfigError):
        analysis.analyze(tmp_path / "m.onnx")


def test_json_analysis_does_not_import_paddle(tmp_path):
    path = _small_cnn(tmp_path)
    code = (f"import sys; from lab.models import analysis; analysis.analyze({str(path)!r}); "
            f"print('paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------- legacy ProgramDesc, built with protobuf
def _program(ops, vars_):
    pb2 = program.framework_pb2()
    prog = pb2.ProgramDesc()
    block = prog.blocks.add()
    block.idx, block.parent_idx = 0, -1
    for name, dims, persistable, dtype in vars_:
        v = block.vars.add()
        v.name, v.persistable = name, persistable
        v.type.type = pb2.VarType.DENSE_TENSOR
        v.type.dense_tensor.tensor.data_type = dtype
        v.type.dense_tensor.tensor.dims.extend(dims)
    for typ, ins, outs, attrs in ops:
        op = block.ops.add()
        op.type = typ
        for slot, args in ins.items():
            e = op.inputs.add()
            e.parameter = slot
            e.arguments.extend(args)
        for slot, args in outs.items():
            e = op.outputs.add()
            e.parameter = slot
            e.arguments.extend(args)
        for k, v in attrs.items():
            a = op.attrs.add()
            a.name = k
            if isinstance(v, bool):
                a.type, a.b = pb2.AttrType.BOOLEAN, v
            elif isinstance(v, int):
                a.type, a.i = pb2.AttrType.INT, v
            else:
                a.type, a.s = pb2.AttrType.STRING, v
    return prog.SerializeToString()


F32, I64 = 5, 3


def test_pdmodel_rules(tmp_path):
    data = _program(
        [("feed", {"X": ["feed"]}, {"Out": ["x"]}, {"col": 0}),
         ("conv2d", {"Input": ["x"], "Filter": ["w"]}, {"Output": ["c"]}, {"groups": 1}),
         ("batch_norm", {"X": ["c"], "Mean": ["m"], "Variance": ["v"]}, {"Y": ["b"]}, {}),
         ("fake_quantize_dequantize_abs_max", {"X": ["b"]}, {"Out": ["q"]}, {}),
         ("where_index", {"Condition": ["q"]}, {"Out": ["idx"]}, {}),
         ("fetch", {"X": ["idx"]}, {"Out": ["fetch"]}, {"col": 0})],
        [("x", [-1, 3, -1, -1], False, F32), ("w", [4, 3, 1, 1], True, F32),
         ("m", [4], True, F32), ("v", [4], True, F32), ("c", [-1, 4, -1, -1], False, F32),
         ("b", [-1, 4, -1, -1], False, F32), ("q", [-1, 4, -1, -1], False, F32),
         ("idx", [-1, 4], False, I64)])
    path = tmp_path / "m.pdmodel"
    path.write_bytes(data)
    res = analysis.analyze(path, run_shapes={"x": [1, 3, 10, 10]})
    assert res.format == "pdmodel"
    assert res.dynamic_dims == {"x": [2, 3]} and res.dyn_fill == 10
    assert res.macs_conv == 4 * 10 * 10 * 3
    assert res.data_dependent_ops == ["where_index"]
    assert res.quantization == "fake_quant"
    assert res.params == 12 + 8 and res.trainable_params == 12  # BN mean/var are not trainable
    assert res.op_histogram == {"conv2d": 1, "batch_norm": 1,
                                "fake_quantize_dequantize_abs_max": 1, "where_index": 1}


def test_op_sequence_program_order(tmp_path):
    assert analysis.op_sequence(_small_cnn(tmp_path, tail="nonzero")) == [
        "conv2d", "batch_norm", "relu", "pool2d", "flatten", "matmul", "nonzero"]


def test_pdmodel_garbage(tmp_path):
    p = tmp_path / "m.pdmodel"
    p.write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(LabError):
        analysis.analyze(p)


def test_roundtrip_dict(tmp_path):
    res = analysis.analyze(_small_cnn(tmp_path))
    again = analysis.ModelAnalysis.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again == res and "conv+matmul share" in again.to_text()


# --------------------------------------------------------------- real exported models (slow)
@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "hwlab-zoo"  # shared with test_models (cache hits)


@pytest.mark.slow
@pytest.mark.parametrize("model_id, dyn, data_dep, seq", [
    ("text_lstm", {"tokens": [1]}, [], ["rnn"]),
    ("tiny_detector", {"image": []}, ["nonzero", "where_index"], []),
    ("tiny_mlp", {"x": []}, [], []),
])
def test_real_exports_both_formats_agree(zoo_root, model_id, dyn, data_dep, seq):
    art = build(model_id, zoo_root)
    run = {i.name: i.run_shape for i in art.inputs}
    pir = analysis.analyze(art.json_path, run_shapes=run)
    leg = analysis.analyze(art.pdmodel_path, run_shapes=run)
    for res in (pir, leg):
        assert res.dynamic_dims == dyn
        assert set(res.data_dependent_ops) <= set(data_dep)
        assert bool(res.data_dependent_ops) == bool(data_dep)
        assert res.sequence_ops == seq
        assert res.quantization == "none"
        assert res.params == art.params
    # the two formats describe the same computation
    assert (pir.macs_conv, pir.macs_matmul, pir.macs_rnn) == \
        (leg.macs_conv, leg.macs_matmul, leg.macs_rnn)
    # the static estimate agrees with paddle.flops counted on the live layer at build time
    # (paddle.flops adds one op per conv output for the bias; here the bias is its own `add`)
    assert abs(pir.macs_total - art.flops) <= 0.03 * art.flops
    # and meta.json caches it
    assert analysis.analysis_for(art) == pir


@pytest.mark.slow
def test_mobilenet_v1_static_estimate_matches_paddle_flops(zoo_root):
    art = build("mobilenet_v1", zoo_root)
    assert art.flops == 578_876_928 and art.params == 4_253_864  # paddle.md reference values
    res = analysis.analysis_for(art)
    # paddle.flops also counts BN (2/elem) and pooling; conv+matmul alone is ~98% of it
    assert 0.97 * art.flops <= res.macs_total <= art.flops
    assert res.conv_matmul_share > 0.95
    t0 = time.perf_counter()
    analysis.analyze(art.json_path)
    assert time.perf_counter() - t0 < 1.0  # generous here; bench/analysis_speed.py has figures


def test_cli_analyze_file_json_and_errors(tmp_path, capsys):
    from lab.cli import main
    path = _small_cnn(tmp_path, tail="nonzero")
    assert main(["models", "analyze", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["data_dependent_ops"] == ["nonzero"] and doc["macs_conv"] == 8 * 16 * 16 * 27
    assert main(["models", "analyze", str(path)]) == 0
    assert "data-dependent output ops: nonzero" in capsys.readouterr().out
    rc = main(["models", "analyze", str(tmp_path / "missing.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and err.count("\n") == 1
    rc = main(["models", "--root", str(tmp_path), "analyze", "not_built"])
    err = capsys.readouterr().err  # not a zoo model: it cannot be built, only registered
    assert rc == 2 and "unknown model 'not_built'" in err and "lab models add not_built" in err
