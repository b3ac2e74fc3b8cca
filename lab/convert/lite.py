"""Convert a model to a Paddle Lite `.nb` for one target with the user's `paddle_lite_opt`.

Why the user's tool: there is no paddlelite wheel for CPython 3.11 or aarch64 (paddle.md §2.6), and
the opt version must match the benchmark_bin/runtime on the device. The tool comes from
HWLAB_PADDLE_LITE_OPT (a `paddle_lite_opt` script or the `opt` binary; same flags) or
`paddle_lite_opt` on PATH, else the one `scripts/setup-lite-opt.sh` puts in `.venv-lite/`.

Per target (paddle.md §2.2-2.3, §3):
- arm: `--valid_targets=arm`; fp16 -> `--enable_fp16=true` (needs an arm82-fp16 runtime build);
  `quant="int8"|"int16"` -> `--quant_model=true --quant_type=QUANT_INT8|16` (weight-only,
  compute stays float).
- opencl: `--valid_targets=opencl,arm`.
- kirin-npu: `--valid_targets=huawei_kirin_npu,arm` from the fp32 model (the NPU computes in
  fp16 internally; unsupported ops fall back to ARM).
- rockchip-npu / timvx: `--valid_targets=rockchip_npu,arm` / `verisilicon_timvx,arm`. These NPUs
  run only FULLY-quantised int8 models, which opt cannot make from fp32 (its quantisation is
  weight-only): the source model must already be a PaddleSlim full-quant model, declared by the
  artifact tag `quantization: int8-full`, or made by `lab models quantize` (tag `int8-ptq`:
  weights AND activations of conv/matmul quantised, quantize_linear/dequantize_linear ops, which
  opt folds into int8 NPU subgraphs); otherwise this refuses with that explanation.
After a conversion, opt's printed partition (lab/convert/lite_opt_output.py: NPU subgraph count, ops left
on the CPU) goes into `<target>.json` and the model's meta.json under `lite.<target>`.
Input is always the legacy `.pdmodel` + `.pdiparams` (Paddle Lite cannot read `.json`).
Output: `<artifact dir>/lite/<target>.nb` plus `<target>.json` with the command and hashes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.core.errors import ConfigError, LabError, excerpt
from lab.core.hashing import sha256_file

ENV_VAR = "HWLAB_PADDLE_LITE_OPT"


@dataclass(frozen=True)
class LiteTarget:
    name: str
    valid_targets: str
    needs_full_int8: bool = False


TARGETS = {t.name: t for t in [
    LiteTarget("arm", "arm"),
    LiteTarget("x86", "x86"),  # the paddlelite wheel's own kernels: Paddle Lite on an x86 host
    LiteTarget("opencl", "opencl,arm"),
    LiteTarget("kirin-npu", "huawei_kirin_npu,arm"),
    LiteTarget("rockchip-npu", "rockchip_npu,arm", needs_full_int8=True),
    LiteTarget("timvx", "verisilicon_timvx,arm", needs_full_int8=True),
]}
ALIASES = {"huawei_kirin_npu": "kirin-npu", "rockchip_npu": "rockchip-npu",
           "verisilicon_timvx": "timvx", "cpu": "arm", "gpu": "opencl"}
FULL_INT8_TAGS = ("int8-full", "full-int8", "full_quant", "int8-ptq")
_LOCAL_OPT = Path(__file__).resolve().parents[2] / ".venv-lite" / "bin" / "paddle_lite_opt"


def find_opt() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise ConfigError(f"{ENV_VAR}={env} is not an executable file",
                              fix="point it at paddle_lite_opt or the opt binary")
        return p
    found = shutil.which("paddle_lite_opt") or (str(_LOCAL_OPT) if _LOCAL_OPT.is_file() else None)
    if not found:
        raise ConfigError(f"paddle_lite_opt not found: set {ENV_VAR} to your paddle_lite_opt (or opt "
                          "binary) or put it on PATH",
                          fix="pip install paddlelite on a Python it has wheels for (3.7-3.10 x86_64), "
                              "or build opt from Paddle-Lite")
    return Path(found)


def resolve_target(target: str) -> LiteTarget:
    name = ALIASES.get(target, target)
    if name not in TARGETS:
        raise ConfigError(f"unknown Paddle Lite target {target!r}", fix="use " + ", ".join(TARGETS))
    return TARGETS[name]


def opt_args(artifact, target: LiteTarget, out_prefix: Path, *, precision: str | None = None,
             quant: str | None = None) -> list[str]:
    """The opt flags for one conversion (flag names from lite/api/tools/opt.cc; booleans as 'true')."""
    if not (artifact.pdmodel_path and artifact.legacy_pdiparams_path):
        from lab.convert.onnx_in import lite_refusal  # models imported from ONNX say why
        reason = lite_refusal(artifact)
        if reason:
            raise ConfigError(f"model {artifact.id}: no Paddle Lite target: {reason}")
        raise ConfigError(f"model {artifact.id}: no legacy .pdmodel/.pdiparams; Paddle Lite cannot "
                          "read PIR .json models", fix="rebuild it with the legacy export "
                                                       "(FLAGS_enable_pir_api=0)")
    if target.needs_full_int8:
        tag = (getattr(artifact, "tags", None) or {}).get("quantization", "")
        if tag not in FULL_INT8_TAGS:
            raise ConfigError(
                f"model {artifact.id}: target {target.name} runs only fully-quantised int8 models and "
                "paddle_lite_opt cannot make one from an fp32 model (its --quant_model is weight-only)",
                fix=f"run `lab models quantize {artifact.id}` and convert {artifact.id}-int8, or "
                    "quantise it with PaddleSlim (full quantisation, e.g. is_full_quantize: 1), register "
                    "the result with tag quantization: int8-full, and convert that")
    args = [f"--model_file={artifact.pdmodel_path}", f"--param_file={artifact.legacy_pdiparams_path}",
            "--optimize_out_type=naive_buffer", f"--optimize_out={out_prefix}",
            f"--valid_targets={target.valid_targets}"]
    if precision == "fp16":
        if target.name != "arm":
            raise ConfigError(f"fp16 conversion is for the arm target, not {target.name}")
        args.append("--enable_fp16=true")
    if quant:
        if target.needs_full_int8:
            raise ConfigError(f"target {target.name}: the model is already fully quantised; drop quant")
        qt = {"int8": "QUANT_INT8", "int16": "QUANT_INT16"}.get(quant)
        if not qt:
            raise ConfigError(f"quant {quant!r}: use int8 or int16 (weight-only quantisation)")
        args += ["--quant_model=true", f"--quant_type={qt}"]
    return args


def convert(artifact, target: str, *, precision: str | None = None, quant: str | None = None,
            timeout: float = 900.0) -> Path:
    """Run opt; return `<artifact.dir>/lite/<target>.nb` (reused when inputs and flags match)."""
    t = resolve_target(target)
    tool = find_opt()
    out_dir = Path(artifact.dir) / "lite"
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / t.name
    args = opt_args(artifact, t, prefix, precision=precision, quant=quant)
    nb, meta_path = Path(str(prefix) + ".nb"), out_dir / f"{t.name}.json"
    src_sha = artifact.legacy_sha256 or artifact.sha256
    if nb.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("args") == args and meta.get("source_sha256") == src_sha and \
                meta.get("nb_sha256") == sha256_file(nb):
            return nb
    nb.unlink(missing_ok=True)
    cmd = [str(tool)] + args
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"model {artifact.id}: paddle_lite_opt ran over {timeout:.0f} s") from None
    if p.returncode != 0 or not nb.is_file():
        raise LabError(f"model {artifact.id}: paddle_lite_opt for {t.name} failed (exit {p.returncode}"
                       f"{', no ' + nb.name if not nb.is_file() else ''}): {excerpt(p.stdout + p.stderr)}")
    from lab.convert.lite_opt_output import parse
    report = parse(p.stdout + p.stderr)
    doc = {"target": t.name, "tool": str(tool), "args": args, "command": cmd,
           "source_sha256": src_sha, "nb_sha256": sha256_file(nb),
           "seconds": round(time.monotonic() - start, 3),
           "output_tail": excerpt(p.stdout + p.stderr, 600), "partition": report.to_dict()}
    meta_path.write_text(json.dumps(doc, indent=1))
    _record_in_model_meta(artifact, t.name, doc)
    return nb


def _record_in_model_meta(artifact, target: str, doc: dict) -> None:
    """`lite.<target>` in models/<id>/meta.json: the .nb, its hash and opt's partition."""
    from lab.models.artifact import read_meta, update_meta
    root, model_id = Path(artifact.dir).parent, Path(artifact.dir).name
    try:
        meta = read_meta(model_id, root)
    except ConfigError:
        return
    if meta is None:
        return
    part = doc["partition"]
    lite = dict(meta.lite or {})
    lite[target] = {
        "nb": f"lite/{target}.nb", "nb_sha256": doc["nb_sha256"],
        "valid_targets": TARGETS[target].valid_targets, "npu_subgraphs": part["npu_subgraphs"],
        "npu_ops": part["npu_ops"], "cpu_ops": part["cpu_ops"], "seconds": doc["seconds"]}
    update_meta(model_id, root, lite=lite)
