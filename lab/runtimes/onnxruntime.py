"""ONNX Runtime as a baseline runtime (`onnxruntime-cpu`, `onnxruntime-gpu`): the travelling
`ort_runner.py`, which writes the same runner JSON with the same protocol as pi_runner.

Why a runtime and not a bench script: the guide claims Paddle is faster than other frameworks at
deployment; the claim is only worth something measured on the user's device, in the same
campaign, protocol, statistics and report as the Paddle rows.

- Model files come from `models/<id>/onnx/` (lab.convert.onnx_out): `model.onnx` (paddle2onnx)
  for precision fp32, `model-int8.onnx` (ONNX Runtime's own static QDQ quantisation, recipe in
  `export.json`) for int8. `lab run` builds them when it prepares the campaign
  (`prepare_models`); a job whose file is missing or was made from another Paddle model is refused
  naming `lab models build ID --onnx` / `--onnx-int8`.
- int8 jobs run model `ID` itself (`models.artifact_id`: ONNX Runtime quantises the fp32 model
  with its own tool, no `ID-int8` is made for it); a campaign that names `ID-int8` runs the ONNX
  Runtime int8 file of its parent.
- Output checks: `output_checks = True`; ort_runner runs `--reference-inputs`/`--eval-inputs`
  after timing like pi_runner, so every job stores agree_* against the fp32 host reference.
- Threads: intra-op = the job's threads, inter-op 1, sequential, all graph optimisations.
- Where onnxruntime is missing: `local` with the lab's own interpreter is checked at planning
  (lab.measure.campaign.applicable, a cheap `find_spec`); any other device (SSH, ADB, another interpreter,
  and every GPU job) is probed over its transport at the start of the job (lab.convert.ort_probe,
  once per device and interpreter per process): the job fails with a ConfigError line naming the
  device and what to install, and is not retried.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from lab.devices.inventory import device_python
from lab.core.errors import ConfigError
from lab.runtimes.base import JobContext, PreparedJob, input_shapes
from lab.runtimes.json_runner import JsonRunnerRuntime

PRECISIONS = ("fp32", "int8")
INT8_SUFFIX = "-int8"  # lab.models.quantize names a quantised Paddle model ID-int8
_PROBED: dict[tuple[str, str, bool], str] = {}  # (device, python, gpu) -> onnxruntime version


def unavailable_reason(device) -> str | None:
    """Why onnxruntime cannot run on the device, as far as planning can tell cheaply (precisions:
    `Backend.precisions` in lab/devices/backends.py)."""
    if _lab_python(device):
        from lab.core import optional
        why = optional.missing("onnxruntime")
        return f"{why}: {optional.install_command('onnxruntime')}" if why else None
    return None


def _lab_python(device) -> bool:
    return device.transport == "local" and device_python(device) == sys.executable


def fp32_artifact(art):
    """The fp32 Paddle model whose ONNX export a job runs (the parent of an `ID-int8` model)."""
    from lab.models.artifact import load_artifact
    if not art.id.endswith(INT8_SUFFIX):
        return art
    parent = getattr(art, "parent", None) or art.id[:-len(INT8_SUFFIX)]
    return load_artifact(parent, root=str(Path(art.dir).parent))


def prepare_models(artifacts: dict[str, object], jobs, log: Callable[[str], None]) -> None:
    """Planning: export the ONNX files the campaign's onnxruntime jobs need. `export` reuses them
    while the Paddle model, opset, tool versions and int8 recipe are unchanged."""
    from lab.devices.backends import BACKENDS
    from lab.convert import onnx_out
    wanted: dict[str, bool] = {}
    for job in jobs:
        if BACKENDS[job.backend].runtime == OnnxRuntime.name:
            wanted[job.model] = wanted.get(job.model, False) or job.precision == "int8"
    for model_id, int8 in wanted.items():
        onnx_out.export(fp32_artifact(artifacts[model_id]), int8=int8, log=log)  # reused if current


class OnnxRuntime(JsonRunnerRuntime):
    name = "onnxruntime"
    runner_file = "ort_runner.py"
    output_checks = True  # the runner takes --reference-inputs / --eval-inputs like pi_runner

    def model_files(self, ctx: JobContext) -> tuple[list[Path], str]:
        from lab.convert import onnx_out
        from lab.core.hashing import sha256_file
        art, int8 = fp32_artifact(ctx.artifact), ctx.job.precision == "int8"
        if ctx.job.precision not in PRECISIONS:
            raise ConfigError(f"job {ctx.job.job_id}: {ctx.job.backend} cannot run {ctx.job.precision}",
                              fix="use precision fp32 or int8")
        path = onnx_out.current_file(art, int8=int8)
        if path is None:
            raise ConfigError(f"job {ctx.job.job_id}: {art.id} has no current "
                              f"{'int8 ' if int8 else ''}ONNX export under {art.dir / onnx_out.SUBDIR}",
                              fix=f"run `{onnx_out.build_command(art.id, int8=int8)}`")
        return [path], sha256_file(path)

    def prepare(self, ctx: JobContext) -> PreparedJob:
        self._require_onnxruntime(ctx)
        prepared = super().prepare(ctx)
        from lab.convert import onnx_out
        record = onnx_out.read_record(fp32_artifact(ctx.artifact)) or {}
        part = record.get("int8" if ctx.job.precision == "int8" else "fp32") or {}
        if ctx.job.precision == "int8":
            prepared.notes.append("int8: ONNX Runtime's own static quantisation of the fp32 .onnx "
                                  "(QDQ, per-channel; recipe in onnx/export.json), not Paddle's "
                                  "int8 model")
        prepared.extra["model_agreement"] = part.get("agreement")
        return prepared

    def measurement(self, ctx, prepared, trials):
        m = super().measurement(ctx, prepared, trials)
        if prepared.extra.get("model_agreement"):
            # build-time check of the file this job ran (lab.convert.onnx_out), not a per-job check
            m.provenance["model_agreement"] = prepared.extra["model_agreement"]
        return m

    def _require_onnxruntime(self, ctx: JobContext) -> None:
        from lab.convert.ort_probe import require_onnxruntime
        gpu = ctx.backend.processor == "gpu"
        if _lab_python(ctx.device) and not gpu:
            return  # checked at planning (unavailable_reason)
        python = device_python(ctx.device)
        key = (ctx.device.id, python, gpu)
        if key not in _PROBED:
            _PROBED[key] = require_onnxruntime(ctx.transport, python, device=ctx.device.id,
                                               gpu=gpu).version or "?"

    def runner_args(self, ctx: JobContext, remote_files: list[str]) -> list[str]:
        job, p = ctx.job, ctx.job.protocol
        args = ["--model-file", remote_files[0], "--threads", str(job.threads),
                "--device", "gpu" if ctx.backend.processor == "gpu" else "cpu",
                "--precision", job.precision,
                "--warmup", str(p.warmup), "--warmup-seconds", str(p.warmup_seconds),
                "--min-iters", str(p.min_iters), "--min-seconds", str(p.min_seconds),
                "--max-seconds", str(p.max_seconds), "--target-rel-ci", str(p.target_rel_ci)]
        for spec, shape in input_shapes(ctx, static=True):
            args += ["--input", f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"]
        return args
