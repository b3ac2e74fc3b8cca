"""Read a saved Paddle program into one typed list of ops, without running it or importing paddle.

Why a module of its own: two file formats carry the same program, and everything that judges a
model (the static analysis, the advisor's NPU partitioning) must see them alike:
- Paddle 3.x PIR `.json`: parsed with the standard `json` module through `lab.core.jsonio`
  (bounded in size and depth; paddle is not imported);
- legacy `.pdmodel` (protobuf ProgramDesc): parsed with paddle's generated `framework_pb2`, loaded
  by file path so that importing it does not initialise paddle (only `google.protobuf` is needed).
Both give a `Program`: `Op`s in program order (type, input shapes by slot, output shapes, attrs),
the inputs and outputs, and the parameter counts. `op_kind` names the compute class an op's cost
is estimated by (the PIR reader needs it to name a conv's or matmul's operands).
"""
from __future__ import annotations

import importlib.util
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core import jsonio
from lab.core.errors import ConfigError, LabError
from lab.core.records import InputSpec

CONV_OPS = frozenset({"conv2d", "depthwise_conv2d", "conv3d", "fused_conv2d",
                      "fused_conv2d_add_act", "conv2d_fusion"})
CONV_T_OPS = frozenset({"conv2d_transpose", "depthwise_conv2d_transpose", "conv3d_transpose"})
MATMUL_OPS = frozenset({"matmul", "matmul_v2", "mul", "fc", "bmm", "linear", "fused_matmul",
                        "addmm"})
_PIR_DTYPES = {"t_f32": "float32", "t_f16": "float16", "t_bf16": "bfloat16", "t_f64": "float64",
               "t_i64": "int64", "t_i32": "int32", "t_i16": "int16", "t_i8": "int8",
               "t_ui8": "uint8", "t_bool": "bool"}
_WEIGHT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int8")
_PROTO_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32",
                 6: "float64", 20: "uint8", 21: "int8", 22: "bfloat16"}


@dataclass
class Op:
    """One op of a program: inputs by slot (`_all`: every input in order), main outputs."""

    type: str
    ins: dict[str, list[list[int] | None]]  # slot -> shapes (None = unknown)
    outs: list[list[int] | None]
    attrs: dict[str, Any]


@dataclass
class Program:
    """A whole program as both readers return it."""

    ops: list[Op]
    inputs: list[InputSpec]
    outputs: list[dict[str, Any]]
    params: int | None
    trainable_params: int | None
    persistable_numel: int | None
    weight_dtypes: Counter
    notes: list[str] = field(default_factory=list)


def numel(shape: list[int] | None, fill: int | None = None, batch: int = 1) -> int | None:
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


def base_type(op_type: str) -> str:
    """Inplace variants (`relu_`, `batch_norm_`) count as their op."""
    return op_type[:-1] if op_type.endswith("_") and not op_type.endswith("__") else op_type


def op_kind(op_type: str) -> str:
    """conv | conv_t | matmul | rnn | other: the class an op's cost is estimated by."""
    t = base_type(op_type)
    if t in CONV_OPS:
        return "conv"
    if t in CONV_T_OPS:
        return "conv_t"
    if t in MATMUL_OPS:
        return "matmul"
    if t in ("rnn", "lstm", "gru", "cudnn_lstm"):
        return "rnn"
    return "other"


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


def read_pir(path: Path) -> Program:
    """A PIR `.json` program (paddle.jit.save, Paddle 3.x); ConfigError when it is not one."""
    doc = _load_pir_doc(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("base_code"), dict) \
            or doc["base_code"].get("magic") != "pir":
        raise ConfigError(f"{path}: not a Paddle PIR program (no 'pir' magic)",
                          fix="give a .json saved by paddle.jit.save (PIR) or a .pdmodel")
    program = _obj(doc.get("program"), "'program'", path)
    regions = _seq(program.get("regions"), "'program.regions'", path)
    shapes: dict[int, tuple[list[int] | None, str | None]] = {}
    ops: list[Op] = []
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
                        count = numel(shape)
                        oa = op.get("OA") if isinstance(op.get("OA"), list) else []
                        if count is not None:
                            persist += count
                            if dtype in _WEIGHT_DTYPES:
                                params += count
                                if len(oa) >= 3 and oa[2]:
                                    trainable += count
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
                    kind = op_kind(name)
                    slots = _PIR_SLOTS.get(kind, ())
                    ins = {slot: [in_shapes[k]] for k, slot in enumerate(slots) if k < len(in_shapes)}
                    ins["_all"] = in_shapes
                    ops.append(Op(name, ins, [t[0] for t in out_types], attrs))
                    if op.get("regions"):
                        walk(op["regions"])

    walk(regions)
    return Program(ops, inputs, outputs, params, trainable, persist, weight_dtypes)


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


def framework_pb2():
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


def read_pdmodel(path: Path) -> Program:
    """A legacy protobuf ProgramDesc (`.pdmodel`); ConfigError when it is not one."""
    pb2 = framework_pb2()
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
            ops.append(Op(op.type, ins, [var_info.get(a, (None,))[0] for a in main_out], attrs))
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
        count = numel(shape) or 0
        persist += count
        weight_dtypes[dtype or "?"] += 1
        if dtype in _WEIGHT_DTYPES:
            params += count
            if name not in bn_stats:
                trainable += count
    return Program(ops, inputs, outputs, params, trainable, persist, weight_dtypes)


