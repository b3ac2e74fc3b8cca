"""Paddle Inference (servers, the local machine): the travelling `pi_runner.py`."""
from __future__ import annotations

from pathlib import Path

from lab.core.errors import ConfigError
from lab.runners.runner_core import protocol_argv
from lab.runtimes.base import JobContext, input_shapes
from lab.runtimes.defaults import onednn_flag
from lab.runtimes.json_runner import JsonRunnerRuntime


class PaddleInference(JsonRunnerRuntime):
    name = "paddle-inference"
    runner_file = "pi_runner.py"
    output_checks = True  # pi_runner --reference-inputs / --eval-inputs
    profiles_ops = True  # Config.enable_profile(): pi_runner --profile-ops

    def model_files(self, ctx: JobContext) -> tuple[list[Path], str]:
        job, artifact = ctx.job, ctx.artifact
        fmt = job.option("model_format", artifact.model_format)
        if fmt == "json" and artifact.json_path:
            return [Path(artifact.json_path), Path(artifact.pdiparams_path)], artifact.sha256
        if fmt == "pdmodel" and artifact.pdmodel_path:
            params = artifact.legacy_pdiparams_path or artifact.pdiparams_path
            return [Path(artifact.pdmodel_path), Path(params)], artifact.legacy_sha256 or artifact.sha256
        raise ConfigError(f"job {job.job_id}: model {job.model!r} has no {fmt!r} form",
                          fix="use model_format json or pdmodel as built (see `lab models show`)")

    def runner_args(self, ctx: JobContext, remote_files: list[str]) -> list[str]:
        job, p = ctx.job, ctx.job.protocol
        args = ["--model-file", remote_files[0], "--params-file", remote_files[1],
                "--threads", str(job.threads), "--onednn", onednn_flag(job),
                "--device", "gpu" if ctx.backend.processor == "gpu" else "cpu",
                "--precision", job.precision, *protocol_argv(p)]
        if p.sustained_s > 0:
            args += ["--sustained-s", str(p.sustained_s), "--window-s", str(p.window_s)]
        if job.backend == "paddle-inference-trt":
            args.append("--trt")
        for spec, shape in input_shapes(ctx):
            args += ["--input", f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"]
        return args
