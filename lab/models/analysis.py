"""Static analysis of a saved Paddle model, without running it.

Why static: the advisor must answer "CPU or AIPU?" in well under 300 ms, before anything was
measured, and for models the lab cannot run here. So this module reads the program only:
- Paddle 3.x PIR `.json`: parsed with the standard `json` module (paddle is not imported);
- legacy `.pdmodel` (protobuf ProgramDesc): parsed with paddle's generated `framework_pb2`, loaded
  by file path so that importing it does not initialise paddle (only `google.protobuf` is needed).

Both are normalised to one list of `_Op` (type, input/output shapes, attrs) and the same rules run
on it: op histogram, MAC estimate per op class, dynamic dims of the inputs other than batch,
data-dependent output ops, sequence and control-flow ops, quantisation state, parameter counts.

MAC estimate (documented in docs/models.md): conv = out_numel x prod(filter[1:]) (filter is
[Cout, Cin/groups, kh, kw]); conv transpose = in_numel x prod(filter[1:]); matmul/mul/fc =
out_numel x K; rnn = T x B x dirs x gates x H x (I + H) per layer; everything else counts one op
per output element (batch_norm two), as `other_ops`. Unknown dims (-1) become `batch_fill` in dim 0
(the inputs' run batch when given, else 1) and `dyn_fill` elsewhere (the largest non-batch dynamic
run dim of the inputs when given, else 1).
"""
from __future__ import annotations

import importlib.util
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lab.core.errors import ConfigError, LabError
from lab.core.records import InputSpec

ANALYSIS_VERSION = 2

# Ops whose output size depends on the values of their input (not only on shapes).
DATA_DEPENDENT_OPS = frozenset({
    "nonzero", "where_index", "masked_select", "unique", "unique_consecutive", "nms",
    "multiclass_nms", "multiclass_nms2", "multiclass_nms3", "matrix_nms", "generate_proposals",
    "generate_proposals_v2", "distribute_fpn_proposals", "collect_fpn_proposals",
    "bipartite_match", "edit_distance", "ctc_align", "viterbi_decode", "detection_map",
    "retinanet_detection_output", "locality_aware_nms", "box_decoder_and_assign",
})
SEQUENCE_OPS = frozenset({
    "rnn", "lstm", "gru", "cudnn_lstm", "lstmp", "lstm_unit", "gru_unit", "fusion_lstm",
    "fusion_gru", "multi_gru", "dynamic_lstm", "dynamic_gru", "attention_lstm", "beam_search",
    "beam_search_decode",
})
CONTROL_FLOW_OPS = frozenset({
    "while", "conditional_block", "if", "select_input", "select_output", "pylayer", "yield",
    "has_elements", "tensor_array_to_tensor", "array_read", "array_write",
})
QDQ_OPS = frozenset({"quantize_linear", "dequantize_linear"})
FAKE_QUANT_PREFIXES = ("fake_quantize", "fake_dequantize", "fake_channel_wise",
                       "moving_average_abs_max_scale")
ONEDNN_QUANT_OPS = frozenset({"quantize", "dequantize", "requantize"})
CONV_OPS = frozenset({"conv2d", "depthwise_conv2d", "conv3d", "fused_conv2d",
                      "fused_conv2d_add_act", "conv2d_fusion"})
CONV_T_OPS = frozenset({"conv2d_transpose", "depthwise_conv2d_transpose", "conv3d_transpose"})
MATMUL_OPS = frozenset({"matmul", "matmul_v2", "mul", "fc", "bmm", "linear", "fused_matmul",
                        "addmm"})
# Plumbing, not computation: left out of the histogram.
PLUMBING = frozenset({"parameter", "data", "feed", "fetch", "combine", "split", "constant",
                      "shadow_output", "set_parameter", "builtin_combine"})
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_RELU": 1, "RNN_TANH": 1}
_PIR_DTYPES = {"t_f32": "float32", "t_f16": "float16", "t_bf16": "bfloat16", "t_f64": "float64",
               "t_i64": "int64", "t_i32": "int32", "t_i16": "int16", "t_i8": "int8",
               "t_ui8": "uint8", "t_bool": "bool"}
_WEIGHT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int8")
_PROTO_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32",
                 6: "float64", 20: "uint8", 21: "int8", 22: "bfloat16"}


@dataclass
class ModelAnalysis:
    """What the program says about the model. None = could not be determined (see `notes`)."""

    format: str  # json | pdmodel
    path: str
    op_count: int
    op_histogram: dict[str, int]
    inputs: list[InputSpec]
    dynamic_dims: dict[str, list[int]]  # input name -> indices of dynamic dims other than dim 0
    outputs: list[dict[str, Any]]  # {name, shape, dtype}
    data_dependent_ops: list[str]
    sequence_ops: list[str]
    control_flow_ops: list[str]
    quantization: str  # none | qdq | fake_quant | onednn_int8 | int8_weights
    quant_ops: list[str]
    params: int | None  # elements of float weights incl. BN mean/var (= paddle's "Total Params")
    trainable_params: int | None  # without batch-norm running statistics
    persistable_numel: int | None  # every persisted tensor, any dtype
    macs_conv: int
    macs_matmul: int
    macs_rnn: int
    other_ops: int
    conv_matmul_share: float | None  # (conv + matmul MACs) / (all MACs + other ops)
    dyn_fill: int  # value used for unknown non-batch dims
    batch_fill: int  # value used for an unknown dim 0 (batch)
    unknown_shape_ops: int  # compute ops skipped because a needed shape was missing
    analysis_version: int = ANALYSIS_VERSION
    notes: list[str] = field(default_factory=list)

    @property
    def macs_total(self) -> int:
        return self.macs_conv + self.macs_matmul + self.macs_rnn

    @property
    def has_dynamic_non_batch_dims(self) -> bool:
        return any(self.dynamic_dims.values())

    def estimated_macs(self, specs: Iterable[InputSpec] = ()) -> tuple[int | None, str]:
        """(MACs, note) for meta.json `flops` of models the lab did not build itself."""
        if self.macs_total == 0 and self.unknown_shape_ops:
            return None, "not counted: shapes of the compute ops are not in the program"
        note = (f"MACs estimated statically from op shapes (conv+matmul+rnn); unknown dims "
                f"taken as batch {self.batch_fill}, others {self.dyn_fill}")
        if self.unknown_shape_ops:
            note += f"; {self.unknown_shape_ops} compute op(s) skipped (unknown shapes)"
        return self.macs_total, note

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype}
                       for i in self.inputs]
        d["macs_total"] = self.macs_total
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelAnalysis":
        d = dict(d)
        d.pop("macs_total", None)
        d["inputs"] = [InputSpec(i["name"], tuple(i["shape"]), i["dtype"]) for i in d["inputs"]]
        return cls(**d)

    def to_text(self) -> str:
        hist = ", ".join(f"{k} {v}" for k, v in sorted(self.op_histogram.items(),
                                                       key=lambda kv: (-kv[1], kv[0])))
        share = "n/a" if self.conv_matmul_share is None else f"{self.conv_matmul_share:.1%}"
        lines = [
            f"model: {self.path} ({self.format})",
            f"ops: {self.op_count}: {hist}",
            "inputs: " + ", ".join(f"{i.name} {list(i.shape)} {i.dtype}" for i in self.inputs),
            "dynamic dims other than batch: " + (", ".join(
                f"{k}{v}" for k, v in self.dynamic_dims.items() if v) or "none"),
            f"MACs: conv {self.macs_conv:,}, matmul {self.macs_matmul:,}, rnn {self.macs_rnn:,}; "
            f"other ops {self.other_ops:,}; conv+matmul share {share}",
            f"data-dependent output ops: {', '.join(self.data_dependent_ops) or 'none'}",
            f"sequence ops: {', '.join(self.sequence_ops) or 'none'}; control flow: "
            f"{', '.join(self.control_flow_ops) or 'none'}",
            f"quantisation: {self.quantization}"
            + (f" ({', '.join(self.quant_ops)})" if self.quant_ops else ""),
            f"params: {_n(self.params)} ({_n(self.trainable_params)} trainable, "
            f"{_n(self.persistable_numel)} persisted elements)",
        ]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _n(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


@dataclass
class _Op:
    type: str
    ins: dict[str, list[list[int] | None]]  # slot -> shapes (None = unknown)
    outs: list[list[int] | None]
    attrs: dict[str, Any]
    out_dtypes: list[str | None] = field(default_factory=list)


@dataclass
class _Program:
    ops: list[_Op]
    inputs: list[InputSpec]
    outputs: list[dict[str, Any]]
    params: int | None
    trainable_params: int | None
    persistable_numel: int | None
    weight_dtypes: Counter
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- PIR (.json)
def _pir_type(tt: Any) -> tuple[list[int] | None, str | None]:
    """(shape, dtype) of a PIR type entry {'#': '0.t_dtensor', 'D': [dtype, shape, ...]}."""
    if not isinstance(tt, dict):
        return None, None
    kind = str(tt.get("#", ""))
    data = tt.get("D")
    if kind.endswith("t_dtensor") and isinstance(data, list) and len(data) >= 2:
        dt = data[0].get("#", "") if isinstance(data[0], dict) else ""
        return _int_list(data[1]), _PIR_DTYPES.get(str(dt).split(".", 1)[-1])
    return None, None


def _int_list(value: Any) -> list[int] | None:
    """A shape: a list of integers, else None (unknown); model files are input like any other."""
    if isinstance(value, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in value):
        return value
    return None


def _seq(value: Any, what: str, path: Path) -> list:
    """A list the PIR walker iterates (absent = empty); anything else is a malformed program."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: not a Paddle PIR program ({what} is a {type(value).__name__}, "
                          "not a list)", fix="export the model again with paddle.jit.save")
    return value


def _obj(value: Any, what: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: not a Paddle PIR program ({what} is a {type(value).__name__}, "
                          "not an object)", fix="export the model again with paddle.jit.save")
    return value


def _load_pir_doc(path: Path) -> Any:
    """The JSON of a PIR program, bounded in size and depth, no NaN/Infinity (jsonio)."""
    from lab.core import jsonio
    try:
        return jsonio.load_file(path, what="model file")
    except ConfigError as exc:
        raise ConfigError(f"{path}: not a Paddle PIR program ({str(exc).split(': ', 1)[-1]})",
                          fix="give a .json saved by paddle.jit.save (PIR) or a .pdmodel") from None


def _pir_attr_value(at: Any) -> Any:
    if not isinstance(at, dict):
        return at
    d = at.get("D")
    if isinstance(d, list):
        return [_pir_attr_value(x) for x in d]
    return d


def _pir_name(raw: str) -> str:
    name = raw.split(".", 1)[1] if "." in raw and raw.split(".", 1)[0].isdigit() else raw
    return name


_PIR_SLOTS = {  # positional operands of the ops whose cost we estimate
    "conv": ("x", "filter"), "matmul": ("x", "y"), "rnn": ("x", "pre_state", "weights"),
}


def _parse_pir(path: Path) -> _Program:
    doc = _load_pir_doc(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("base_code"), dict) \
            or doc["base_code"].get("magic") != "pir":
        raise ConfigError(f"{path}: not a Paddle PIR program (no 'pir' magic)",
                          fix="give a .json saved by paddle.jit.save (PIR) or a .pdmodel")
    program = _obj(doc.get("program"), "'program'", path)
    regions = _seq(program.get("regions"), "'program.regions'", path)
    shapes: dict[int, tuple[list[int] | None, str | None]] = {}
    ops: list[_Op] = []
    inputs: list[InputSpec] = []
    outputs: list[dict[str, Any]] = []
    params = trainable = persist = 0
    weight_dtypes: Counter = Counter()

    def walk(region_list: list[Any]) -> None:
        nonlocal params, trainable, persist
        for region in _seq(region_list, "regions", path):
            for block in _seq(_obj(region, "a region", path).get("blocks"), "blocks", path):
                block = _obj(block, "a block", path)
                for arg in _seq(block.get("args"), "block args", path):
                    if isinstance(arg, dict) and isinstance(arg.get("%"), (int, str)):
                        shapes[arg["%"]] = _pir_type(arg.get("TT"))
                for op in _seq(block.get("ops"), "block ops", path):
                    op = _obj(op, "an op", path)
                    raw = str(op.get("#", ""))
                    outs_raw = op.get("O")
                    outs_list = outs_raw if isinstance(outs_raw, list) else (
                        [outs_raw] if isinstance(outs_raw, dict) else [])
                    out_types = []
                    for o in outs_list:
                        t = _pir_type(o.get("TT")) if isinstance(o, dict) else (None, None)
                        if isinstance(o, dict) and isinstance(o.get("%"), (int, str)):
                            shapes[o["%"]] = t
                        out_types.append(t)
                    if raw == "p":  # parameter: A = [?, ?, ?, name], OA = [persistable, stop_gradient, trainable]
                        shape, dtype = out_types[0] if out_types else (None, None)
                        numel = _numel(shape)
                        oa = op.get("OA") if isinstance(op.get("OA"), list) else []
                        if numel is not None:
                            persist += numel
                            if dtype in _WEIGHT_DTYPES:
                                params += numel
                                if len(oa) >= 3 and oa[2]:
                                    trainable += numel
                        weight_dtypes[dtype or "?"] += 1
                        continue
                    name = _pir_name(raw)
                    attrs = {}
                    for a in _seq(op.get("A"), "op attributes", path):
                        if isinstance(a, dict) and isinstance(a.get("N"), str):
                            attrs[a["N"]] = _pir_attr_value(a.get("AT"))
                    in_ids = [i.get("%") for i in _seq(op.get("I"), "op inputs", path)
                              if isinstance(i, dict) and isinstance(i.get("%"), (int, str))]
                    in_shapes = [shapes.get(i, (None, None))[0] for i in in_ids]
                    if name == "data":
                        shape, dtype = out_types[0] if out_types else (None, None)
                        decl = _int_list(attrs.get("shape")) or shape
                        inputs.append(InputSpec(str(attrs.get("name", f"input{len(inputs)}")),
                                                tuple(decl or ()),
                                                str(attrs.get("dtype") or dtype or "unknown")))
                    elif name == "fetch":
                        shape, dtype = out_types[0] if out_types else (None, None)
                        outputs.append({"name": str(attrs.get("name", f"output{len(outputs)}")),
                                        "shape": shape, "dtype": dtype})
                    kind = _kind(name)
                    slots = _PIR_SLOTS.get(kind, ())
                    ins = {slot: [in_shapes[k]] for k, slot in enumerate(slots) if k < len(in_shapes)}
                    ins["_all"] = in_shapes
                    ops.append(_Op(name, ins, [t[0] for t in out_types], attrs,
                                   [t[1] for t in out_types]))
                    if op.get("regions"):
                        walk(op["regions"])

    walk(regions)
    return _Program(ops, inputs, outputs, params, trainable, persist, weight_dtypes)


def pir_op_names(path: Path | str) -> list[str]:
    """Raw op names ("pd_op.conv2d", dialect prefix kept) of a PIR program in program order,
    nested regions inline; the same bounds and checks as the full parser."""
    path = Path(path)
    doc = _load_pir_doc(path)
    program = _obj(_obj(doc, "the document", path).get("program"), "'program'", path)
    out: list[str] = []

    def walk(region_list: Any) -> None:
        for region in _seq(region_list, "regions", path):
            for block in _seq(_obj(region, "a region", path).get("blocks"), "blocks", path):
                for op in _seq(_obj(block, "a block", path).get("ops"), "block ops", path):
                    op = _obj(op, "an op", path)
                    out.append(str(op.get("#", "")))
                    if op.get("regions"):
                        walk(op["regions"])

    walk(program.get("regions"))
    return out


# ------------------------------------------------------------------------- legacy (.pdmodel)
_FPB2 = None


def _framework_pb2():
    """paddle's generated ProgramDesc module, loaded by path: no paddle initialisation."""
    global _FPB2
    if _FPB2 is None:
        spec = importlib.util.find_spec("paddle")
        if spec is None or not spec.origin:
            raise LabError("reading a .pdmodel needs the paddlepaddle package (framework_pb2)")
        pb2 = os.path.join(os.path.dirname(spec.origin), "base", "proto", "framework_pb2.py")
        if not os.path.isfile(pb2):
            raise LabError(f"paddle's framework_pb2.py not found at {pb2}")
        mspec = importlib.util.spec_from_file_location("_hwlab_paddle_framework_pb2", pb2)
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
        _FPB2 = module
    return _FPB2


def _proto_attr(attr: Any) -> Any:
    t = attr.type
    return {0: lambda: attr.i, 1: lambda: attr.f, 2: lambda: attr.s, 3: lambda: list(attr.ints),
            4: lambda: list(attr.floats), 5: lambda: list(attr.strings), 6: lambda: attr.b,
            7: lambda: list(attr.bools), 9: lambda: attr.l, 11: lambda: list(attr.longs),
            15: lambda: attr.float64}.get(t, lambda: None)()


_LEGACY_SLOTS = {"Input": "x", "X": "x", "Filter": "filter", "Y": "y", "W": "y",
                 "WeightList": "weights", "PreState": "pre_state"}


def _parse_pdmodel(path: Path) -> _Program:
    pb2 = _framework_pb2()
    prog = pb2.ProgramDesc()
    try:
        prog.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ConfigError(f"{path}: not a Paddle ProgramDesc ({type(exc).__name__}: "
                          f"{str(exc)[:120]})", fix="give a .pdmodel saved by paddle") from None
    if not prog.blocks:
        raise ConfigError(f"{path}: empty ProgramDesc", fix="give a .pdmodel saved by paddle")
    var_info: dict[str, tuple[list[int] | None, str | None, bool]] = {}
    for block in prog.blocks:
        for v in block.vars:
            if v.type.HasField("dense_tensor"):
                t = v.type.dense_tensor.tensor
                var_info[v.name] = (list(t.dims), _PROTO_DTYPES.get(t.data_type), v.persistable)
            else:
                var_info.setdefault(v.name, (None, None, v.persistable))
    ops, inputs, outputs = [], [], []
    bn_stats: set[str] = set()
    feeds: list[tuple[int, str]] = []
    fetches: list[tuple[int, str]] = []
    for block in prog.blocks:
        for op in block.ops:
            attrs = {a.name: _proto_attr(a) for a in op.attrs
                     if a.name not in ("op_callstack", "op_namescope", "op_role_var")}
            ins_named = {i.parameter: list(i.arguments) for i in op.inputs}
            outs_named = {o.parameter: list(o.arguments) for o in op.outputs}
            if op.type == "feed":
                feeds.append((int(attrs.get("col") or 0), outs_named.get("Out", [""])[0]))
            elif op.type == "fetch":
                fetches.append((int(attrs.get("col") or 0), ins_named.get("X", [""])[0]))
            if op.type in ("batch_norm", "sync_batch_norm"):
                bn_stats.update(ins_named.get("Mean", []) + ins_named.get("Variance", []))
            ins = {_LEGACY_SLOTS.get(k, k): [var_info.get(a, (None,))[0] for a in args]
                   for k, args in ins_named.items()}
            ins["_all"] = [var_info.get(a, (None,))[0] for args in ins_named.values() for a in args]
            out_vars = [a for args in outs_named.values() for a in args]
            main_out = outs_named.get("Out") or outs_named.get("Output") or outs_named.get("Y") \
                or out_vars[:1]
            ops.append(_Op(op.type, ins, [var_info.get(a, (None,))[0] for a in main_out], attrs,
                           [var_info.get(a, (None, None))[1] for a in main_out]))
    for _, name in sorted(feeds):
        shape, dtype, _ = var_info.get(name, (None, None, False))
        inputs.append(InputSpec(name, tuple(shape or ()), dtype or "unknown"))
    for _, name in sorted(fetches):
        shape, dtype, _ = var_info.get(name, (None, None, False))
        outputs.append({"name": name, "shape": shape, "dtype": dtype})
    params = trainable = persist = 0
    weight_dtypes: Counter = Counter()
    for name, (shape, dtype, persistable) in var_info.items():
        if not persistable or name in ("feed", "fetch") or shape is None:
            continue
        numel = _numel(shape) or 0
        persist += numel
        weight_dtypes[dtype or "?"] += 1
        if dtype in _WEIGHT_DTYPES:
            params += numel
            if name not in bn_stats:
                trainable += numel
    return _Program(ops, inputs, outputs, params, trainable, persist, weight_dtypes)


# ------------------------------------------------------------------------------------- rules
def _numel(shape: list[int] | None, fill: int | None = None, batch: int = 1) -> int | None:
    """Element count; unknown dims become `batch` in dim 0 and `fill` elsewhere."""
    if shape is None:
        return None
    n = 1
    for i, d in enumerate(shape):
        if d is None or d < 0:
            if fill is None:
                return None
            d = batch if i == 0 else fill
        n *= d
    return n


def _base(op_type: str) -> str:
    """Inplace variants (`relu_`, `batch_norm_`) count as their op."""
    return op_type[:-1] if op_type.endswith("_") and not op_type.endswith("__") else op_type


def _kind(op_type: str) -> str:
    t = _base(op_type)
    if t in CONV_OPS:
        return "conv"
    if t in CONV_T_OPS:
        return "conv_t"
    if t in MATMUL_OPS:
        return "matmul"
    if t in ("rnn", "lstm", "gru", "cudnn_lstm"):
        return "rnn"
    return "other"


def _first(op: _Op, slot: str) -> list[int] | None:
    shapes = op.ins.get(slot) or [None]
    return shapes[0]


def _op_macs(op: _Op, fill: int, batch: int = 1) -> tuple[str, int | None]:
    """(class, MACs or element ops); None when a needed shape is unknown."""
    kind = _kind(op.type)
    out = op.outs[0] if op.outs else None
    if kind in ("conv", "conv_t"):
        filt = _first(op, "filter")
        if filt is None or len(filt) < 3:
            return kind, None
        per = _numel(filt[1:], fill)
        ref = out if kind == "conv" else _first(op, "x")
        n = _numel(ref, fill, batch)
        return "conv", None if per is None or n is None else n * per
    if kind == "matmul":
        x = _first(op, "x")
        n = _numel(out, fill, batch)
        if x is None or n is None or not x:
            return kind, None
        t = op.type
        if t == "mul" or t == "fc":
            ncol = int(op.attrs.get("x_num_col_dims") or op.attrs.get("in_num_col_dims") or 1)
            k = _numel(x[ncol:], fill)
        else:
            trans = op.attrs.get("transpose_x", op.attrs.get("trans_x", False))
            k = x[-2] if trans and len(x) >= 2 else x[-1]
            if k is not None and k < 0:
                k = fill
        return kind, None if k is None else n * k
    if kind == "rnn":
        x = _first(op, "x")
        mode = str(op.attrs.get("mode") or "LSTM")
        gates = _RNN_GATES.get(mode, 4)
        hidden, isize = op.attrs.get("hidden_size"), op.attrs.get("input_size")
        layers = int(op.attrs.get("num_layers") or 1)
        dirs = 2 if op.attrs.get("is_bidirec") else 1
        if x is None or len(x) < 3 or not hidden or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 20
                for v in (hidden, layers, int(isize or x[2]))) or layers > 1000:
            return kind, None  # absent or absurd attributes: unknown, not a hang or a crash
        tb = _numel(x[:2], fill, batch)  # [T, B, I]: T*B = run batch x dyn_fill either way
        width = int(isize or x[2])
        total = 0
        for _ in range(layers):
            total += dirs * gates * hidden * (width + hidden)
            width = hidden * dirs
        return kind, None if tb is None else tb * total
    n = _numel(out, fill, batch) if out is not None else 0
    if n is None:
        return "other", None
    return "other", 2 * n if _base(op.type) in ("batch_norm", "sync_batch_norm") else n


def _quantization(types: set[str], weight_dtypes: Counter) -> tuple[str, list[str]]:
    qdq = sorted(t for t in types if t in QDQ_OPS)
    fake = sorted(t for t in types if t.startswith(FAKE_QUANT_PREFIXES))
    onednn = sorted(t for t in types if t in ONEDNN_QUANT_OPS)
    if qdq:
        return "qdq", qdq + fake
    if fake:
        return "fake_quant", fake
    if onednn:
        return "onednn_int8", onednn
    if weight_dtypes.get("int8"):
        return "int8_weights", []
    return "none", []


def analyze(model_file: Path | str, *, params_file: Path | str | None = None,
            run_shapes: dict[str, Iterable[int]] | None = None) -> ModelAnalysis:
    """Analyse a `.json` or `.pdmodel` file. `run_shapes` (input -> run shape) sets `dyn_fill`.

    `params_file` is accepted for symmetry with loaders; counts come from the program itself.
    """
    path = Path(model_file)
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        prog, fmt = _parse_pir(path), "json"
    elif suffix == ".pdmodel":
        prog, fmt = _parse_pdmodel(path), "pdmodel"
    else:
        raise ConfigError(f"model file {path}: expected .json (PIR) or .pdmodel (legacy)")

    dynamic = {i.name: [k for k, d in enumerate(i.shape) if k > 0 and d < 0] for i in prog.inputs}
    fill = batch = 1
    declared = {i.name: i.shape for i in prog.inputs}
    for name, shape in (run_shapes or {}).items():
        shape = list(shape)
        for k in dynamic.get(name, []):
            if k < len(shape):
                fill = max(fill, int(shape[k]))
        if shape and declared.get(name) and declared[name][0] < 0:
            batch = max(batch, int(shape[0]))
    hist: Counter = Counter()
    macs = {"conv": 0, "matmul": 0, "rnn": 0, "other": 0}
    unknown = 0
    types = set()
    for op in prog.ops:
        base = _base(op.type)
        types.add(base)
        if base in PLUMBING:
            continue
        hist[base] += 1
        try:
            cls, n = _op_macs(op, fill, batch)
        except (TypeError, ValueError, IndexError, AttributeError):  # attributes of a wrong type
            cls, n = _kind(op.type), None
        if n is None:
            if cls != "other":
                unknown += 1
            continue
        macs[cls] += n
    denom = macs["conv"] + macs["matmul"] + macs["rnn"] + macs["other"]
    share = (macs["conv"] + macs["matmul"]) / denom if denom else None
    quant, qops = _quantization(types, prog.weight_dtypes)
    notes = list(prog.notes)
    if unknown:
        notes.append(f"{unknown} compute op(s) had unknown shapes and are not in the MAC estimate")
    if any(dynamic.values()):
        notes.append(f"dynamic non-batch dims estimated as {fill}")
    return ModelAnalysis(
        format=fmt, path=str(path), op_count=sum(hist.values()), op_histogram=dict(hist),
        inputs=prog.inputs, dynamic_dims=dynamic, outputs=prog.outputs,
        data_dependent_ops=sorted(types & DATA_DEPENDENT_OPS),
        sequence_ops=sorted(t for t in types if t in SEQUENCE_OPS or t.startswith("sequence_")),
        control_flow_ops=sorted(types & CONTROL_FLOW_OPS),
        quantization=quant, quant_ops=qops, params=prog.params, trainable_params=prog.trainable_params,
        persistable_numel=prog.persistable_numel, macs_conv=macs["conv"],
        macs_matmul=macs["matmul"], macs_rnn=macs["rnn"], other_ops=macs["other"],
        conv_matmul_share=None if share is None else round(share, 4), dyn_fill=fill,
        batch_fill=batch,
        unknown_shape_ops=unknown, notes=notes)


def op_sequence(model_file: Path | str) -> list[str]:
    """Op types in program order (nested blocks inline), plumbing and parameters left out,
    inplace suffix dropped: the same names for `.json` and `.pdmodel` where paddle uses the same
    op (legacy-only names such as `matmul_v2`/`elementwise_add` stay as they are)."""
    path = Path(model_file)
    prog = _parse_pir(path) if path.suffix.lower() == ".json" else _parse_pdmodel(path)
    return [b for b in (_base(op.type) for op in prog.ops) if b not in PLUMBING]


def analysis_for(artifact: Any) -> ModelAnalysis:
    """The analysis of a built/registered model: from meta.json's cache when it is current."""
    cached = getattr(artifact, "analysis", None)
    if cached and cached.get("analysis_version") == ANALYSIS_VERSION:
        try:
            return ModelAnalysis.from_dict(cached)
        except (KeyError, TypeError):
            pass
    return analyze(artifact.model_path, params_file=artifact.params_path,
                   run_shapes={i.name: i.run_shape for i in artifact.inputs if i.run_shape})
