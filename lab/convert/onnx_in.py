"""`lab models import FILE.onnx`: an ONNX model into the zoo layout through x2paddle.

Why this shape:
- The ONNX file is checked on the host first (readable protobuf, onnx.checker, --input specs
  against the graph's inputs), so bad input is one ConfigError line before any tool runs.
- x2paddle 1.6.0 writes only the PIR `model.json` + `.pdiparams` and renames every tensor to
  `x2paddle_<name>` (`.`, `-`, `:`, `/`, ... become `_`); the mapping ONNX input -> Paddle input is
  recorded in meta.json (`onnx_import.input_map`) and the zoo inputs carry the Paddle names.
- x2paddle names a failing node by its first output; the host maps that back to the ONNX node name
  and op, so a conversion error is one line naming both.
- The imported model is checked against ONNX Runtime on seeded reference inputs (cosine, max abs,
  top1) and the figures are recorded in meta.json (`onnx_import.agreement`).
- Paddle Lite needs a legacy `.pdmodel`: x2paddle's generated code is re-exported with
  FLAGS_enable_pir_api=0 in a child (worker mode `legacy`; paddle 3.3.1's `paddle.matmul` has no
  legacy static path, so that process appends the legacy `matmul_v2` op itself) and the .pdmodel is
  checked against ONNX Runtime too. Where that fails (another op without a legacy path), Lite
  targets are refused with the error (`lite_refusal`).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lab.core import versions
from lab.core.errors import ConfigError, LabError, excerpt
from lab.core.hashing import files_sha256, sha256_file
from lab.core.records import InputSpec
from lab.convert import worker
from lab.models import analysis
from lab.models.artifact import (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE, MODEL_FILE, PARAMS_FILE,
                                 ModelArtifact, ModelMeta, load_artifact, read_meta,
                                 verify_artifact, write_meta)
from lab.models.build import BUILDER_VERSION
from lab.models.zoo import ID_RE, default_zoo_path, input_to_json, load_zoo

SOURCE = "onnx"
SOURCE_FILE = "onnx/source.onnx"
LITE_REASON = ("imported from ONNX through x2paddle, which writes only the PIR .json; Paddle Lite "
               "needs a legacy .pdmodel and re-exporting x2paddle's code to it failed for this model")
_X2P_CHARS = " .*?\\/-:;"


@dataclass(frozen=True)
class OnnxInput:
    name: str
    dims: tuple[int, ...]  # -1 where the graph leaves a dimension symbolic or unknown
    dtype: str


@dataclass(frozen=True)
class OnnxGraph:
    path: Path
    opset: int
    inputs: tuple[OnnxInput, ...]
    outputs: tuple[str, ...]
    nodes_by_output: dict[str, tuple[str, str]]  # x2paddle node name -> (onnx node name, op)


def x2paddle_name(name: str) -> str:
    """The tensor name x2paddle gives an ONNX name (decoder.make_variable_name)."""
    for ch in _X2P_CHARS:
        name = name.replace(ch, "_")
    return "x2paddle_" + name


def read_graph(path: Path | str) -> OnnxGraph:
    """Load and check an .onnx file; every problem is one ConfigError naming the file."""
    from lab.core import optional
    onnx = optional.require("onnx")
    from onnx import helper
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ONNX file {p} does not exist")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ConfigError(f"not a readable ONNX model ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'truncated or corrupt'})",
                          path=str(p), fix="export it again; the file may be truncated") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - onnx.checker.ValidationError
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ConfigError(f"invalid ONNX model: {first[:300]}", path=str(p)) from None
    if not model.graph.node:
        raise ConfigError("the ONNX graph has no nodes", path=str(p))
    init = {t.name for t in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in init:
            continue
        tt = vi.type.tensor_type
        try:
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        except Exception:  # noqa: BLE001 - unknown element type
            dtype = f"onnx-type-{tt.elem_type}"
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                     for d in tt.shape.dim)
        inputs.append(OnnxInput(vi.name, dims, dtype))
    nodes = {}
    for node in model.graph.node:
        if node.output:
            nodes[x2paddle_name(node.output[0])[len("x2paddle_"):]] = (node.name or node.output[0],
                                                                       node.op_type)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxGraph(p, opset, tuple(inputs), tuple(o.name for o in model.graph.output), nodes)


def resolve_inputs(graph: OnnxGraph, given: list[InputSpec]) -> list[InputSpec]:
    """ONNX inputs with run shapes: from --input where given, else the graph (dynamic batch -> 1)."""
    where = str(graph.path)
    by_name = {i.name: i for i in graph.inputs}
    names = ", ".join(by_name) or "none"
    seen = set()
    for spec in given:
        if spec.name not in by_name:
            raise ConfigError(f"--input {spec.name}: the graph has no input {spec.name!r} "
                              f"(inputs: {names})", path=where)
        if spec.name in seen:
            raise ConfigError(f"--input {spec.name} given twice", path=where)
        seen.add(spec.name)
    out = []
    for gi in graph.inputs:
        spec = next((s for s in given if s.name == gi.name), None)
        shown = "x".join("?" if d == -1 else str(d) for d in gi.dims)
        if spec is None:
            if any(d == -1 for d in gi.dims[1:]) or not gi.dims:
                raise ConfigError(f"input {gi.name} has shape [{shown}] with dynamic dimensions "
                                  f"past the batch", path=where,
                                  fix=f"pass --input {gi.name}:SHAPE:{gi.dtype}")
            run = tuple(1 if d == -1 else d for d in gi.dims)
            out.append(InputSpec(gi.name, gi.dims, gi.dtype, run))
            continue
        if spec.dtype != gi.dtype:
            raise ConfigError(f"--input {gi.name}: dtype {spec.dtype} but the graph wants "
                              f"{gi.dtype}", path=where)
        if len(spec.run_shape) != len(gi.dims) or any(
                d != -1 and d != r for d, r in zip(gi.dims, spec.run_shape)):
            raise ConfigError(f"--input {gi.name}: shape {'x'.join(map(str, spec.run_shape))} "
                              f"does not fit the graph's [{shown}]", path=where)
        out.append(InputSpec(gi.name, gi.dims, gi.dtype, spec.run_shape))
    return out


def _conversion_error(graph: OnnxGraph, res: dict) -> ConfigError:
    where = str(graph.path)
    if res.get("kind") == "node":
        onnx_name, op = graph.nodes_by_output.get(res["node"], (res["node"], res["op"]))
        hint = (" (Conv without an explicit kernel_shape attribute? x2paddle needs it)"
                if op == "Conv" else "")
        return ConfigError(f"x2paddle cannot convert node {onnx_name!r} (op {op}){hint}",
                           path=where)
    if res.get("kind") == "unsupported":
        ops = res.get("ops") or []
        first = [f"{n!r} ({op})" for n, op in graph.nodes_by_output.values() if op in ops][:3]
        return ConfigError(f"x2paddle does not support op {', '.join(ops) or '?'}: node "
                           f"{', '.join(first) or '?'}", path=where,
                           fix="replace the op before exporting, or run the .onnx with ONNX "
                               "Runtime directly")
    return ConfigError(f"x2paddle failed: {res.get('error', '?')}", path=where)


def _default_id(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "_.-" else "_" for c in path.stem).lstrip("_.-")
    return (stem or "onnx_model")[:64]


@dataclass(frozen=True)
class _Converted:
    """What the two worker runs made of the .onnx, once its files are in the model directory."""

    input_map: dict[str, str]  # ONNX input -> Paddle input
    agreement: dict  # the PIR model vs ONNX Runtime
    legacy: dict | None  # the legacy .pdmodel: {patched, agreement}; None when it failed
    lite: str | None  # why Paddle Lite is refused (no legacy .pdmodel), else None


def import_onnx(onnx_file: Path | str, model_id: str | None = None,
                inputs: list[InputSpec] | None = None, root: Path | str = "models", *,
                zoo_path: Path | str | None = None, force: bool = False, timeout: float = 900.0,
                log: Callable[[str], None] | None = None) -> ModelArtifact:
    """Convert an .onnx file into `<root>/<id>/` (PIR .json + .pdiparams + the source .onnx)."""
    src = Path(onnx_file)
    from lab.core import optional
    optional.check("onnx", "x2paddle", "six", "requests", "onnxruntime")  # the worker's imports, said now
    graph = read_graph(src)
    specs = resolve_inputs(graph, list(inputs or []))
    model_id = model_id or _default_id(src)
    _check_id(model_id, root, zoo_path)
    src_sha = sha256_file(src)
    key = {"source_sha256": src_sha, "inputs": [input_to_json(s) for s in specs],
           "x2paddle": versions.dist_version("x2paddle"), "legacy_export": 1}  # 1: .pdmodel for Lite
    cached = _cached(model_id, root, key, force)
    if cached is not None:
        if log:
            log(f"{model_id}: up to date (sha256 {cached.sha256[:12]})")
        return cached
    started = time.monotonic()
    done = _convert(src, graph, specs, Path(root) / model_id, timeout)
    meta = _meta(graph, specs, model_id, Path(root) / model_id, key, done)
    meta.build_seconds = round(time.monotonic() - started, 2)
    write_meta(meta, root)
    if log:
        log(f"{model_id}: imported in {meta.build_seconds:.1f} s, agreement cosine "
            f"{done.agreement.get('cosine')}, max_abs {done.agreement.get('max_abs')}")
    return load_artifact(model_id, root)


def _check_id(model_id: str, root: Path | str, zoo_path: Path | str | None) -> None:
    if not ID_RE.match(model_id):
        raise ConfigError(f"model id {model_id!r}: use letters, digits, _ . - (max 64)",
                          fix="pass --name ID")
    zoo_file = Path(zoo_path) if zoo_path else default_zoo_path(root)
    if zoo_file.exists() and model_id in load_zoo(zoo_file):
        raise ConfigError(f"model id {model_id!r} is a zoo model", path=str(zoo_file),
                          fix="pass --name with another id")


def _cached(model_id: str, root: Path | str, key: dict, force: bool) -> ModelArtifact | None:
    """The earlier import of the same file with the same inputs and tools, when intact."""
    old = read_meta(model_id, root)
    if old and old.source not in (SOURCE, None):
        raise ConfigError(f"model id {model_id!r} is already a {old.source} model under "
                          f"{Path(root) / model_id}", fix="pass --name with another id")
    if old and not force and (old.onnx_import or {}).get("key") == key:
        art = load_artifact(model_id, root)
        if not verify_artifact(art):
            return art
    return None


def _convert(src: Path, graph: OnnxGraph, specs: list[InputSpec], mdir: Path,
             timeout: float) -> _Converted:
    """x2paddle (+ its agreement check), then the legacy re-export, in children; the files land
    in `mdir` (its meta.json removed first) only when x2paddle succeeded."""
    mdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{mdir.name}.import-", dir=str(mdir.parent)))
    try:
        input_map = {s.name: x2paddle_name(s.name) for s in specs}
        made = tmp / "x2p" / "inference_model"
        check = {"onnx": str(src.resolve()), "paddle_model": str(made / "model.json"),
                 "paddle_params": str(made / "model.pdiparams"),
                 "inputs": [dict(input_to_json(s), paddle_name=input_map[s.name]) for s in specs]}
        agreement = _x2paddle(src, graph, specs, tmp, check, mdir.name, timeout)
        leg = worker.run("legacy", {"save_dir": str(tmp / "x2p"), "out_prefix": str(tmp / "legacy"),
                                    "agree": check}, timeout=timeout,
                         env_extra={"FLAGS_enable_pir_api": "0"})
        legacy_ok = bool(leg.get("ok")) and (tmp / "legacy.pdmodel").is_file()
        _install(src, tmp, mdir, legacy_ok)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _Converted(
        input_map, agreement,
        {"patched": leg.get("patched"), "agreement": leg.get("agreement")} if legacy_ok else None,
        None if legacy_ok else f"{LITE_REASON} ({excerpt(leg.get('error') or '?', 200)})")


def _x2paddle(src: Path, graph: OnnxGraph, specs: list[InputSpec], tmp: Path, check: dict,
              model_id: str, timeout: float) -> dict:
    """ONNX -> PIR under tmp/x2p/inference_model and its agreement with ONNX Runtime (figures,
    or {error} when the check could not run)."""
    dynamic_past_batch = any(d == -1 for s in specs for d in s.shape[1:])
    shape_dict = (repr({x2paddle_name(s.name)[len("x2paddle_"):]: list(s.run_shape)
                        for s in specs}) if dynamic_past_batch else None)
    res = worker.run("import", {"onnx": str(src.resolve()), "save_dir": str(tmp / "x2p"),
                                "input_shape_dict": shape_dict, "agree": check}, timeout=timeout)
    if not res.get("ok"):
        raise _conversion_error(graph, res)
    made = tmp / "x2p" / "inference_model"
    if not (made / "model.json").is_file() or not (made / "model.pdiparams").is_file():
        raise LabError(f"model {model_id!r}: x2paddle wrote no inference_model/model.json")
    paddle_inputs = [i.name for i in analysis.analyze(made / "model.json").inputs]
    if sorted(paddle_inputs) != sorted(x2paddle_name(s.name) for s in specs):
        raise LabError(f"model {model_id!r}: x2paddle's inputs {paddle_inputs} do not map to "
                       f"the ONNX inputs {[s.name for s in specs]}")
    agreement = res.get("agreement") or {}
    if not agreement.pop("ok", False):
        agreement = {"error": agreement.get("error", "not run"), "cosine": None,
                     "max_abs": None, "top1": None}
    return agreement


def _install(src: Path, tmp: Path, mdir: Path, legacy_ok: bool) -> None:
    """Move the converted files from `tmp` into `mdir`, with a copy of the source .onnx."""
    made = tmp / "x2p" / "inference_model"
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "meta.json").unlink(missing_ok=True)
    (mdir / "onnx").mkdir(exist_ok=True)
    shutil.copyfile(src, mdir / SOURCE_FILE)
    os.replace(made / "model.json", mdir / MODEL_FILE)
    os.replace(made / "model.pdiparams", mdir / PARAMS_FILE)
    for rel in (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE):
        (mdir / rel).unlink(missing_ok=True)
        if legacy_ok:
            os.replace(tmp / ("legacy" + Path(rel).suffix), mdir / rel)


def _meta(graph: OnnxGraph, specs: list[InputSpec], model_id: str, mdir: Path, key: dict,
          done: _Converted) -> ModelMeta:
    """meta.json of the imported model: its Paddle inputs, static analysis, the import record."""
    paddle_specs = [InputSpec(done.input_map[s.name], s.shape, s.dtype, s.run_shape)
                    for s in specs]
    res = analysis.analyze(mdir / MODEL_FILE, params_file=mdir / PARAMS_FILE,
                           run_shapes={s.name: s.run_shape for s in paddle_specs})
    legacy = done.legacy is not None
    legacy_files = (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE) if legacy else ()
    flops, note = res.estimated_macs(paddle_specs)
    return ModelMeta(
        id=model_id, source=SOURCE, format="json", builder_version=BUILDER_VERSION,
        model_file=MODEL_FILE, params_file=PARAMS_FILE,
        legacy_model_file=LEGACY_MODEL_FILE if legacy else None,
        legacy_params_file=LEGACY_PARAMS_FILE if legacy else None,
        files={rel: sha256_file(mdir / rel)
               for rel in (MODEL_FILE, PARAMS_FILE, SOURCE_FILE, *legacy_files)},
        sha256=files_sha256(mdir / MODEL_FILE, mdir / PARAMS_FILE),
        legacy_sha256=files_sha256(*(mdir / rel for rel in legacy_files)) if legacy else None,
        inputs=paddle_specs, flops=flops, flops_note=note, params=res.params,
        persistable_numel=res.persistable_numel,
        built_with={"paddle": versions.paddle_version(), "x2paddle": key["x2paddle"],
                    "onnx": versions.dist_version("onnx"),
                    "onnxruntime": versions.dist_version("onnxruntime")},
        origin={"onnx_file": str(graph.path.resolve())},
        onnx_import={"key": key, "source_file": SOURCE_FILE, "source_sha256": key["source_sha256"],
                     "opset": graph.opset, "input_map": done.input_map,
                     "onnx_inputs": [input_to_json(s) for s in specs],
                     "agreement": done.agreement, "lite": done.lite, "legacy": done.legacy},
        op_histogram=dict(res.op_histogram), analysis=res.to_dict())


def lite_refusal(artifact: ModelArtifact) -> str | None:
    """Why a Paddle Lite target cannot take this model, or None when it can."""
    if getattr(artifact, "source", None) == SOURCE and artifact.pdmodel_path is None:
        return LITE_REASON
    return None
