"""Post-training int8 quantisation of a built model: `lab models quantize ID` -> model `ID-int8`.

Why this recipe (checked on paddle 3.3.1, issue 13): `paddle.static.quantization.
PostTrainingQuantization` on the LEGACY `.pdmodel` (FLAGS_enable_pir_api=0, so it runs in a child
process like the exports in lab.models.build), `data_loader=` a callable yielding feed dicts (3.3.1
ignores sample_generator), `onnx_format=True` (quantize_linear/dequantize_linear ops, int8 weights:
what Paddle Inference oneDNN int8, TensorRT and Paddle Lite's opt read), weights
`channel_wise_abs_max`, activations by --algo (abs_max, hist, KL). The dygraph
`paddle.quantization.PTQ` + `jit.save` path is NOT used: it keeps fp32 weights and runs with wrong
outputs under oneDNN int8 — exactly what the agreement check below exists to catch.

Every quantised model is checked against its fp32 parent's host reference (lab/models/agreement.py) with
oneDNN int8 on the host; a model that fails is kept, marked `status: failed`, and the CLI exits 1.

Calibration data (first match): --calib-data FILE.npz (keys = input names, arrays N x run shape
or N x run shape without its batch-1 axis) or a DIR of such .npz files (or .npy for one-input
models); else the model's own data set (digits: the training split); else, for one image input,
natural images (lab.models.natural, seed CALIBRATION_SEED: other crops than the reference set's);
else seeded random inputs (runner_core.make_inputs), recorded as such: fine for latency, weak for
accuracy.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lab.core import childproc
from lab.core.errors import ConfigError, LabError, excerpt
from lab.core.hashing import files_sha256, sha256_file
from lab.core.versions import paddle_version
from lab.models.artifact import (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE, ModelMeta, load_artifact,
                                 read_meta, verify_artifact, write_meta)
from lab.models.build import BUILDER_VERSION, attach_analysis
from lab.models.host_infer import fit_samples
from lab.models.zoo import INT8_SUFFIX

ALGOS = ("abs_max", "hist", "KL")
ENGINES = ("paddle", "paddleslim")
SUFFIX = INT8_SUFFIX
QUANTIZABLE_OPS = ("conv2d", "depthwise_conv2d", "conv2d_transpose", "mul", "matmul", "matmul_v2")
WEIGHT_QUANTIZE_TYPE = "channel_wise_abs_max"
QUANT_TAG = "int8-ptq"  # models' `quantization` tag (lite_convert accepts it for the int8 NPUs)
RECIPE_VERSION = 1
CALIBRATION_SEED = 2000  # default calibration draws (natural images or make_inputs), sample i: +i
EXIT_NO_QUANT_OP = 3
PADDLESLIM_REFUSAL = ("--engine paddleslim is not available: paddleslim 2.6.0 needs six, requests "
                      "and decorator added and pulls opencv-python, so hwlab does not install it")


@dataclass(frozen=True)
class QuantResult:
    artifact: Any  # lab.models.artifact.ModelArtifact of ID-int8
    passed: bool
    summary: str
    seconds: float
    reused: bool


# --------------------------------------------------------------------------- calibration data
def _np():
    import numpy as np
    return np


def _load_npz(path: Path, inputs) -> dict[str, Any]:
    np = _np()
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"calibration data {path}: not a readable .npz ({exc})",
                          fix="write it with numpy.savez(path, <input name>=array)") from None
    names = [i.name for i in inputs]
    missing = [n for n in names if n not in data]
    if missing:
        raise ConfigError(f"calibration data {path}: no array for input(s) {', '.join(missing)} "
                          f"(has {', '.join(sorted(data)) or 'nothing'})",
                          fix="numpy.savez(path, " + ", ".join(f"{n}=array" for n in names) + ")")
    return {i.name: fit_samples(data[i.name], i, f"calibration data {path}", "") for i in inputs}


def load_calibration(path: Path | str, inputs) -> dict[str, Any]:
    """--calib-data FILE.npz | DIR -> {input name: array [N, *run_shape]} (validated)."""
    np = _np()
    p = Path(path)
    if p.is_file():
        return _load_npz(p, inputs)
    if not p.is_dir():
        raise ConfigError(f"calibration data {p} does not exist", fix="pass a .npz file or a directory")
    files = sorted(f for f in p.iterdir() if f.suffix in (".npz", ".npy"))
    if not files:
        raise ConfigError(f"calibration data {p}: no .npz or .npy files in the directory")
    parts: list[dict[str, Any]] = []
    for f in files:
        if f.suffix == ".npz":
            parts.append(_load_npz(f, inputs))
        else:
            if len(inputs) != 1:
                raise ConfigError(f"calibration data {f}: .npy files only for one-input models",
                                  fix="use .npz files keyed by input name")
            try:
                arr = np.load(f, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"calibration data {f}: not a readable .npy ({exc})") from None
            parts.append({inputs[0].name: fit_samples(arr, inputs[0], f"calibration data {f}", "")})
    return {i.name: np.concatenate([d[i.name] for d in parts]) for i in inputs}


def default_calibration(art, batches: int) -> tuple[dict[str, Any], str]:
    np = _np()
    from lab.models import digits, natural
    from lab.runners import runner_core
    if art.tags.get("eval") == digits.EVAL_TAG:
        x = digits.calibration_set(batches)
        return {art.inputs[0].name: x.reshape((len(x),) + tuple(art.inputs[0].run_shape))}, \
            f"{digits.EVAL_TAG} training split, first {len(x)}"
    if len(art.inputs) == 1 and natural.is_image(art.inputs[0].run_shape, art.inputs[0].dtype):
        spec = art.inputs[0]  # other crops than the reference set's (agreement, seed 1000)
        return {spec.name: natural.images(spec.run_shape, batches, CALIBRATION_SEED, spec.dtype)}, \
            natural.describe(CALIBRATION_SEED, batches)
    specs = [(i.name, list(i.run_shape), i.dtype) for i in art.inputs]
    samples = [dict(runner_core.make_inputs(np, specs, CALIBRATION_SEED + i, 1000))
               for i in range(batches)]
    return {n: np.stack([s[n] for s in samples]) for n, _, _ in specs}, \
        f"seeded random (seed {CALIBRATION_SEED}+i), {batches} batches: weak for accuracy"


# ------------------------------------------------------------------------------------- the host
def int8_id(model_id: str) -> str:
    return model_id + SUFFIX


def _recipe_key(parent_sha: str, recipe: dict, calib: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps({"parent": parent_sha, "recipe": recipe,
                                   "v": RECIPE_VERSION}, sort_keys=True).encode())
    for k in sorted(calib):
        h.update(k.encode())
        h.update(_np().ascontiguousarray(calib[k]).tobytes())
    return h.hexdigest()


def quantize(model_id: str, root: Path | str = "models", *, algo: str = "abs_max",
             calib_batches: int = 8, calib_data: Path | str | None = None, engine: str = "paddle",
             force: bool = False, timeout: float = 900.0,
             log: Callable[[str], None] | None = None) -> QuantResult:
    """Quantise built model `model_id` into `<root>/<model_id>-int8/` and check its agreement."""
    from lab.models import agreement
    _check_request(model_id, algo, calib_batches, engine)
    parent = load_artifact(model_id, root)
    if not (parent.pdmodel_path and parent.legacy_pdiparams_path):
        raise ConfigError(f"model {model_id!r} has no legacy .pdmodel; PTQ needs one",
                          fix=f"rebuild it (`lab models build {model_id} --force`) or register a "
                              ".pdmodel with `lab models add`")
    calib, source = _calibration(parent, calib_data, calib_batches)
    n_calib = len(next(iter(calib.values())))
    batches = min(calib_batches, n_calib)
    recipe = {"engine": "paddle.static.quantization.PostTrainingQuantization", "algo": algo,
              "onnx_format": True, "weight_quantize_type": WEIGHT_QUANTIZE_TYPE,
              "quantizable_op_type": list(QUANTIZABLE_OPS), "batch_nums": batches,
              "batch_size": 1, "is_full_quantize": False}
    key = _recipe_key(parent.legacy_sha256 or parent.sha256, recipe, calib)
    qid = int8_id(model_id)
    reused = None if force else _reused(qid, root, key, log)
    if reused is not None:
        return reused
    started = time.monotonic()
    info = _run_ptq(parent, {k: v[:batches] for k, v in calib.items()}, recipe, Path(root) / qid,
                    timeout)
    seconds = round(time.monotonic() - started, 2)
    if log:
        log(f"{qid}: PTQ {algo} over {batches} calibration batch(es) ({source}) in "
            f"{seconds:.1f} s; checking agreement with {model_id} ...")
    mfile, pfile = Path(root) / qid / LEGACY_MODEL_FILE, Path(root) / qid / LEGACY_PARAMS_FILE
    ag = agreement.check_host((mfile, pfile), parent, "int8")
    quantization = {
        "recipe": recipe, "calibration": {"source": source, "batches": batches,
                                          "available": n_calib},
        "quant_ops": info["quant_ops"], "quantized_op_types": info["quantized_op_types"],
        "int8_weight_tensors": info["int8_weight_tensors"],
        "size_bytes": {"fp32_params": parent.legacy_pdiparams_path.stat().st_size,
                       "int8_params": pfile.stat().st_size, "int8_model": mfile.stat().st_size},
        "seconds": seconds}
    _record(qid, root, parent, key, quantization, ag.to_dict())
    return QuantResult(load_artifact(qid, root), ag.passed, agreement.summary(ag), seconds, False)


def _check_request(model_id: str, algo: str, calib_batches: int, engine: str) -> None:
    if engine == "paddleslim":
        raise ConfigError(PADDLESLIM_REFUSAL, fix="use --engine paddle (the default)")
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    if algo not in ALGOS:
        raise ConfigError(f"--algo {algo!r}: use one of {', '.join(ALGOS)}")
    if calib_batches < 1:
        raise ConfigError(f"--calib-batches {calib_batches}: must be >= 1")
    if model_id.endswith(SUFFIX):
        raise ConfigError(f"model {model_id!r} is already quantised", fix="quantise its fp32 parent")


def _calibration(parent, calib_data: Path | str | None,
                 calib_batches: int) -> tuple[dict[str, Any], str]:
    """(calibration samples {input: [N, *run_shape]}, where they come from)."""
    if calib_data is not None:
        calib = load_calibration(calib_data, parent.inputs)
        source = f"file {Path(calib_data)}"
    else:
        calib, source = default_calibration(parent, calib_batches)
    if len({len(v) for v in calib.values()}) != 1:
        raise ConfigError(f"calibration data {calib_data}: inputs have different sample counts")
    return calib, source


def _reused(qid: str, root: Path | str, key: str,
            log: Callable[[str], None] | None) -> QuantResult | None:
    """The earlier quantisation when it has this recipe key and intact files, else None."""
    from lab.models import agreement
    old = read_meta(qid, root)
    if not old or old.build_key != key:
        return None
    try:
        art = load_artifact(qid, root)
    except ConfigError:
        return None
    if verify_artifact(art):
        return None
    ag = agreement.Agreement(**old.agreement)
    if log:
        log(f"{qid}: up to date (sha256 {art.sha256[:12]})")
    return QuantResult(art, ag.passed, agreement.summary(ag), 0.0, True)


def _run_ptq(parent, calib: dict[str, Any], recipe: dict, qdir: Path,
             timeout: float) -> dict[str, Any]:
    """PTQ in a child (FLAGS_enable_pir_api=0); the int8 pair replaces what `qdir` held (its
    meta.json, reference outputs and Lite builds go: they describe the old model). Returns the
    worker's report: quant ops, quantised op types, int8 weight tensors."""
    from lab.models import agreement
    qdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{qdir.name}.quant-", dir=str(qdir.parent)))
    try:
        _np().savez(tmp / "calib.npz", **calib)
        job = {"model_dir": str(parent.pdmodel_path.parent),
               "model_filename": parent.pdmodel_path.name,
               "params_filename": parent.legacy_pdiparams_path.name,
               "calib": str(tmp / "calib.npz"), "recipe": recipe, "out_dir": str(tmp / "out"),
               "result": str(tmp / "result.json")}
        p = childproc.run_module("lab.models.quantize", ["--worker", json.dumps(job)],
                                 env={"FLAGS_enable_pir_api": "0"}, timeout=timeout)
        _check_worker(p, parent, tmp / "result.json", timeout)
        info = json.loads((tmp / "result.json").read_text())
        qdir.mkdir(parents=True, exist_ok=True)
        (qdir / "meta.json").unlink(missing_ok=True)
        for stale in (qdir / agreement.REFERENCE_FILE, qdir / "lite"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(
                missing_ok=True)
        for name in (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE):
            os.replace(tmp / "out" / name, qdir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _check_worker(p: childproc.ChildResult, parent, result: Path, timeout: float) -> None:
    if p.timed_out:
        raise LabError(f"model {parent.id!r}: quantisation ran over {timeout:.0f} s")
    if p.returncode == EXIT_NO_QUANT_OP:
        info = json.loads(result.read_text())
        raise ConfigError(f"model {parent.id!r}: no quantisable op (PTQ quantises "
                          f"{', '.join(QUANTIZABLE_OPS)}; the model has "
                          f"{', '.join(sorted(info['op_types']))})",
                          path=str(parent.pdmodel_path),
                          fix="int8 PTQ needs conv or matmul layers; run this model in fp32")
    if p.returncode != 0:
        raise LabError(f"model {parent.id!r}: quantisation failed (exit {p.returncode}): "
                       f"{excerpt(p.stderr or p.stdout)}")


def _record(qid: str, root: Path | str, parent, key: str, quantization: dict[str, Any],
            agreement: dict[str, Any]) -> None:
    """meta.json of the int8 model: the parent's inputs, FLOPs and tags, the recipe, the check."""
    qdir = Path(root) / qid
    pmeta = read_meta(parent.id, root)
    files = (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE)
    sha = files_sha256(*(qdir / n for n in files))
    meta = ModelMeta(
        id=qid, source="quantized", format="pdmodel", build_key=key,
        builder_version=BUILDER_VERSION, model_file=LEGACY_MODEL_FILE,
        params_file=LEGACY_PARAMS_FILE, legacy_model_file=LEGACY_MODEL_FILE,
        legacy_params_file=LEGACY_PARAMS_FILE,
        files={n: sha256_file(qdir / n) for n in files}, sha256=sha, legacy_sha256=sha,
        inputs=list(pmeta.inputs) if pmeta else [], flops=parent.flops,
        flops_note="MACs of the fp32 parent " + (parent.flops_note or ""), params=parent.params,
        persistable_numel=pmeta.persistable_numel if pmeta else None,
        tags={**parent.tags, "quantization": QUANT_TAG, "precision": "int8"},
        built_with={"paddle": paddle_version() or ""}, build_seconds=quantization["seconds"],
        parent={"id": parent.id, "sha256": parent.sha256, "legacy_sha256": parent.legacy_sha256},
        quantization=quantization, agreement=agreement,
        status="ok" if agreement["passed"] else "failed")
    attach_analysis(meta, qdir, True)
    write_meta(meta, root)


# -------------------------------------------------------------------------- worker (child process)
def _worker(job: dict[str, Any]) -> int:
    import numpy as np
    import paddle
    paddle.enable_static()
    from paddle.static.quantization import PostTrainingQuantization

    exe = paddle.static.Executor(paddle.CPUPlace())
    program, _, _ = paddle.static.load_inference_model(  # the old dir + file names form
        job["model_dir"], exe, model_filename=job["model_filename"], params_filename=job["params_filename"])
    op_types = {op.type for op in program.global_block().ops}
    recipe = job["recipe"]
    present = sorted(op_types & set(recipe["quantizable_op_type"]))
    if not present:
        Path(job["result"]).write_text(json.dumps({"op_types": sorted(op_types - {"feed", "fetch"})}))
        return EXIT_NO_QUANT_OP
    with np.load(job["calib"], allow_pickle=False) as z:
        calib = {k: z[k] for k in z.files}
    n = len(next(iter(calib.values())))

    def loader():
        for i in range(n):
            yield {k: v[i] for k, v in calib.items()}

    ptq = PostTrainingQuantization(
        executor=exe, model_dir=job["model_dir"], model_filename=job["model_filename"],
        params_filename=job["params_filename"], data_loader=loader, batch_nums=recipe["batch_nums"],
        algo=recipe["algo"], onnx_format=recipe["onnx_format"],
        weight_quantize_type=recipe["weight_quantize_type"],
        quantizable_op_type=[t for t in recipe["quantizable_op_type"] if t in op_types],
        is_full_quantize=recipe["is_full_quantize"])
    ptq.quantize()
    out = Path(job["out_dir"])
    ptq.save_quantized_model(str(out), model_filename="legacy.pdmodel",
                             params_filename="legacy.pdiparams")
    qprog, _, _ = paddle.static.load_inference_model(
        str(out), exe, model_filename="legacy.pdmodel",
        params_filename="legacy.pdiparams")
    ops: dict[str, int] = {}
    for op in qprog.global_block().ops:
        if "quant" in op.type:
            ops[op.type] = ops.get(op.type, 0) + 1
    scope = paddle.static.global_scope()
    int8_vars = []
    for v in qprog.list_vars():
        found = scope.find_var(v.name) if v.persistable and v.name not in ("feed", "fetch") else None
        if found is not None and found.is_initialized() if hasattr(found, "is_initialized") else found:
            try:
                if np.array(found.get_tensor()).dtype == np.int8:
                    int8_vars.append(v.name)
            except (RuntimeError, ValueError, TypeError):  # not a dense tensor
                continue
    Path(job["result"]).write_text(json.dumps({
        "quant_ops": ops, "quantized_op_types": present, "int8_weight_tensors": len(int8_vars)}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(json.loads(sys.argv[2])))
    sys.exit("usage: python -m lab.models.quantize --worker JOB_JSON (internal)")
