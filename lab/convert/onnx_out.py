"""`lab models build ID --onnx [--onnx-int8]`: a zoo model as ONNX, for the ONNX Runtime baseline.

Why this shape:
- fp32 comes from paddle2onnx (opset 13) on the PIR `.json`, run in a child process: paddle2onnx
  aborts the whole process (SIGABRT, "Only support e4m3 or e5m2") on a quantised Paddle model. Such
  a model is refused up front with the reason; an abort that still happens becomes one line.
- int8 comes from ONNX Runtime's own `quantize_static` (QDQ, per-channel int8 weights, int8
  activations, MinMax calibration on the model's calibration set: the same data Paddle's PTQ uses,
  lab.models.quantize.default_calibration, natural images for an image model), not from the Paddle
  int8 model; the recipe is recorded so the row can say what "int8" means. Calibrating on uniform
  [0, 1) noise made an int8 MobileNet that passed this check on noise and scored cosine -0.91 on
  photos in every job.
- Both files are checked on the model's reference inputs (lab.models.agreement.reference_inputs, the
  set every job's output check uses): fp32 against Paddle Inference, int8 against the fp32 .onnx; the
  figures recorded. Output: `models/<id>/onnx/model.onnx`, `model-int8.onnx` and `export.json`
  (command, versions, hashes, agreement, recipe), reused while the Paddle model's sha256 and the
  recipe are unchanged.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lab.core import versions
from lab.core.errors import ConfigError, LabError
from lab.core.hashing import sha256_file
from lab.convert import worker
from lab.models.artifact import ModelArtifact
from lab.models.zoo import input_to_json

OPSET = 13
SUBDIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
RECORD_FILE = "export.json"
RECORD_SCHEMA = "hwlab.onnx-export/1"
CALIBRATION_SAMPLES = 16
INT8_RECIPE = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
               "per_channel": True, "weight_type": "QInt8", "activation_type": "QInt8",
               "calibrate_method": "MinMax", "preprocess": "quant_pre_process",
               "calibration_samples": CALIBRATION_SAMPLES}  # + calibration_data: what the set was
QUANT_OP_MARKERS = ("quantize", "dequantize", "fake_quant", "fake_channel_wise")


@dataclass(frozen=True)
class OnnxExport:
    model_id: str
    fp32: Path
    int8: Path | None
    record: dict[str, Any]


def quantised_reason(art: ModelArtifact) -> str | None:
    """Why paddle2onnx must not be run on this model (a quantised Paddle graph), or None."""
    ops = sorted(op for op in art.op_histogram if any(m in op for m in QUANT_OP_MARKERS))
    tag = art.tags.get("quantization") or art.tags.get("precision", "")
    if ops or "int8" in tag:
        what = f"its graph holds {', '.join(ops)}" if ops else f"it is tagged {tag}"
        return (f"model {art.id!r} is a quantised Paddle model ({what}); paddle2onnx 2.1.0 aborts "
                f"on it (\"Only support e4m3 or e5m2\")")
    return None


def _record_path(art: ModelArtifact) -> Path:
    return art.dir / SUBDIR / RECORD_FILE


def _read_record(art: ModelArtifact) -> dict[str, Any] | None:
    try:
        return json.loads(_record_path(art).read_text())
    except (OSError, ValueError):
        return None


def _intact(art: ModelArtifact, part: dict[str, Any] | None) -> bool:
    return bool(part) and (art.dir / part["file"]).is_file() and \
        sha256_file(art.dir / part["file"]) == part.get("sha256")


def current_file(art: ModelArtifact, *, int8: bool = False) -> Path | None:
    """The exported .onnx (fp32, or the int8 one) when it was made from this exact Paddle model
    and is intact; None when it must be (re)built (`lab models build ID --onnx[-int8]`)."""
    record = _read_record(art)
    if not record or record.get("schema") != RECORD_SCHEMA or \
            record.get("source_sha256") != art.sha256 or not _intact(art, record.get("fp32")):
        return None
    part = record.get("int8") if int8 else record["fp32"]
    if int8 and (not part or part.get("fp32_sha256") != record["fp32"]["sha256"]):
        return None
    return art.dir / part["file"] if _intact(art, part) else None


def read_record(art: ModelArtifact) -> dict[str, Any] | None:
    """export.json of the model (None when never exported)."""
    return _read_record(art)


def build_command(model_id: str, *, int8: bool = False) -> str:
    return f"lab models build {model_id} --onnx{'-int8' if int8 else ''}"


def _failure(art: ModelArtifact, what: str, res: dict[str, Any]) -> LabError:
    return LabError(f"model {art.id!r}: {what} failed: {res.get('error', '?')}")


def _save_inputs(path: Path, arrays: dict[str, Any]) -> str:
    import numpy as np
    np.savez(path, **arrays)
    return str(path)


def export(art: ModelArtifact, *, int8: bool = False, force: bool = False,
           timeout: float = 900.0, log: Callable[[str], None] | None = None) -> OnnxExport:
    """Write (or reuse) `<model dir>/onnx/model.onnx` and, with `int8`, `model-int8.onnx`."""
    reason = quantised_reason(art)
    if reason:
        raise ConfigError(reason, fix="export the fp32 model and use --onnx-int8 for ONNX "
                                      "Runtime's own int8")
    if art.json_path is None or art.pdiparams_path is None:
        raise ConfigError(f"model {art.id!r}: no PIR .json + .pdiparams to export",
                          fix=f"run `lab models build {art.id}`")
    from lab.core import optional
    optional.check("paddle2onnx", "onnx", "onnxruntime")  # the worker's imports, said before it starts
    out_dir = art.dir / SUBDIR
    out_dir.mkdir(parents=True, exist_ok=True)
    p2o_version = versions.dist_version("paddle2onnx")
    inputs = [input_to_json(i) for i in art.inputs]
    from lab.models import agreement
    ref_inputs, ref_source = agreement.reference_inputs(art)
    feeds = {"feeds_npz": _save_inputs(out_dir / "reference-inputs.npz", ref_inputs),
             "feeds_source": ref_source}
    record = _read_record(art) or {}
    same_source = (record.get("schema") == RECORD_SCHEMA and record.get("source_sha256") ==
                   art.sha256 and record.get("opset") == OPSET and
                   record.get("paddle2onnx") == p2o_version and record.get("inputs") == inputs)
    if force or not same_source or not _intact(art, record.get("fp32")):
        if log:
            log(f"{art.id}: exporting ONNX (paddle2onnx, opset {OPSET}) ...")
        fp32 = out_dir / FP32_FILE
        fp32.unlink(missing_ok=True)
        res = worker.run("paddle2onnx", {
            "model": str(art.json_path), "params": str(art.pdiparams_path), "out": str(fp32),
            "opset": OPSET,
            "agree": {"paddle_model": str(art.json_path), "paddle_params": str(art.pdiparams_path),
                      "inputs": inputs, **feeds}}, timeout=timeout)
        if not res.get("ok") or not fp32.is_file():
            raise _failure(art, "paddle2onnx export", res)
        record = {"schema": RECORD_SCHEMA, "model": art.id, "source_sha256": art.sha256,
                  "opset": OPSET, "paddle2onnx": res.get("paddle2onnx"), "inputs": inputs,
                  "fp32": {"file": f"{SUBDIR}/{FP32_FILE}", "sha256": sha256_file(fp32),
                           "agreement": dict(res.get("agreement") or {},
                                             note="ONNX Runtime (reference) vs Paddle Inference")}}
    if int8:
        from lab.models import quantize
        calib, calib_source = quantize.default_calibration(art, CALIBRATION_SAMPLES)
        recipe = dict(INT8_RECIPE, onnxruntime=versions.dist_version("onnxruntime"),
                      calibration_data=calib_source)
        part = record.get("int8")
        if force or not part or part.get("recipe") != recipe or \
                part.get("fp32_sha256") != record["fp32"]["sha256"] or not _intact(art, part):
            if log:
                log(f"{art.id}: int8 ONNX (onnxruntime quantize_static, QDQ per-channel) ...")
            q = out_dir / INT8_FILE
            q.unlink(missing_ok=True)
            res = worker.run("quantize", {
                "fp32": str(art.dir / record["fp32"]["file"]), "out": str(q), "inputs": inputs,
                "calibration_npz": _save_inputs(out_dir / "calibration.npz", calib),
                "agree": True, **feeds}, timeout=timeout)
            if not res.get("ok") or not q.is_file():
                raise _failure(art, "ONNX Runtime int8 quantisation", res)
            record["int8"] = {"file": f"{SUBDIR}/{INT8_FILE}", "sha256": sha256_file(q),
                              "fp32_sha256": record["fp32"]["sha256"], "recipe": recipe,
                              "agreement": dict(res.get("agreement") or {},
                                                note="fp32 .onnx (reference) vs int8 .onnx")}
    for name in ("reference-inputs.npz", "calibration.npz"):  # the worker's inputs, not part of the model
        (out_dir / name).unlink(missing_ok=True)
    tmp = _record_path(art).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, _record_path(art))
    if log:
        a = record["fp32"].get("agreement") or {}
        log(f"{art.id}: ONNX fp32 cosine {a.get('cosine')}"
            + (f", int8 cosine {(record['int8'].get('agreement') or {}).get('cosine')}"
               if int8 else ""))
    return OnnxExport(art.id, art.dir / record["fp32"]["file"],
                      art.dir / record["int8"]["file"] if int8 else None, record)
