"""Static analysis of a saved Paddle model, without running it.

Why static: the advisor must answer "CPU or AIPU?" in well under 300 ms, before anything was
measured, and for models the lab cannot run here. So this module reads the program only: Paddle
3.x PIR `.json` and legacy `.pdmodel` (protobuf ProgramDesc) are both read by `lab.models.program`
into one list of `Op`s (type, input/output shapes, attrs), without importing paddle, and the same
rules run on it: op histogram, MAC estimate per op class, dynamic dims of the inputs other than
batch, data-dependent output ops, sequence and control-flow ops, quantisation state, parameter
counts.

MAC estimate (documented in docs/models.md): conv = out_numel x prod(filter[1:]) (filter is
[Cout, Cin/groups, kh, kw]); conv transpose = in_numel x prod(filter[1:]); matmul/mul/fc =
out_numel x K; rnn = T x B x dirs x gates x H x (I + H) per layer; everything else counts one op
per output element (batch_norm two), as `other_ops`. Unknown dims (-1) become `batch_fill` in dim 0
(the inputs' run batch when given, else 1) and `dyn_fill` elsewhere (the largest non-batch dynamic
run dim of the inputs when given, else 1).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lab.core.errors import ConfigError
from lab.core.records import InputSpec
from lab.models.program import Op, base_type, numel, op_kind, read_pdmodel, read_pir

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
PLUMBING = frozenset({"parameter", "data", "feed", "fetch", "combine", "split", "constant",
                      "shadow_output", "set_parameter", "builtin_combine"})
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_RELU": 1, "RNN_TANH": 1}


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


# ------------------------------------------------------------------------------------- rules
def _first(op: Op, slot: str) -> list[int] | None:
    shapes = op.ins.get(slot) or [None]
    return shapes[0]


def _op_macs(op: Op, fill: int, batch: int = 1) -> tuple[str, int | None]:
    """(class, MACs or element ops); None when a needed shape is unknown."""
    kind = op_kind(op.type)
    out = op.outs[0] if op.outs else None
    if kind in ("conv", "conv_t"):
        filt = _first(op, "filter")
        if filt is None or len(filt) < 3:
            return kind, None
        per = numel(filt[1:], fill)
        ref = out if kind == "conv" else _first(op, "x")
        n = numel(ref, fill, batch)
        return "conv", None if per is None or n is None else n * per
    if kind == "matmul":
        x = _first(op, "x")
        n = numel(out, fill, batch)
        if x is None or n is None or not x:
            return kind, None
        t = op.type
        if t == "mul" or t == "fc":
            ncol = int(op.attrs.get("x_num_col_dims") or op.attrs.get("in_num_col_dims") or 1)
            k = numel(x[ncol:], fill)
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
        tb = numel(x[:2], fill, batch)  # [T, B, I]: T*B = run batch x dyn_fill either way
        width = int(isize or x[2])
        total = 0
        for _ in range(layers):
            total += dirs * gates * hidden * (width + hidden)
            width = hidden * dirs
        return kind, None if tb is None else tb * total
    n = numel(out, fill, batch) if out is not None else 0
    if n is None:
        return "other", None
    return "other", 2 * n if base_type(op.type) in ("batch_norm", "sync_batch_norm") else n


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
        prog, fmt = read_pir(path), "json"
    elif suffix == ".pdmodel":
        prog, fmt = read_pdmodel(path), "pdmodel"
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
        base = base_type(op.type)
        types.add(base)
        if base in PLUMBING:
            continue
        hist[base] += 1
        try:
            cls, n = _op_macs(op, fill, batch)
        except (TypeError, ValueError, IndexError, AttributeError):  # attributes of a wrong type
            cls, n = op_kind(op.type), None
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
    prog = read_pir(path) if path.suffix.lower() == ".json" else read_pdmodel(path)
    return [b for b in (base_type(op.type) for op in prog.ops) if b not in PLUMBING]


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
