"""Paddle Lite through its Python API (`lite_runner.py`): ARM Linux boards that have paddlelite
built for their Python, and x86 hosts with the paddlelite wheel.

Why next to benchmark_bin: RK/Debian boards often ship Python and no Android toolchain; the
Python API gives the same runner JSON (full sample distribution, p90/p99) that benchmark_bin's
min/max/avg cannot. On `local` the runner runs under the lab's Python 3.10 venv `.venv-lite`
(scripts/setup-lite-opt.sh), since paddlelite has no wheel for the lab's own Python; the `.nb`
is converted for the device's architecture (x86 here, arm on boards) by the real opt.
"""
from __future__ import annotations

import platform
from pathlib import Path

from lab.devices.inventory import device_python
from lab.core.errors import ConfigError
from lab.runners.runner_core import protocol_argv
from lab.core.records import Device
from lab.runtimes.base import JobContext, input_shapes
from lab.runtimes.json_runner import JsonRunnerRuntime
from lab.runtimes.paddle_lite import nb_path

LOCAL_LITE_PYTHON = Path(__file__).resolve().parents[2] / ".venv-lite" / "bin" / "python"
SETUP_HINT = "bash scripts/setup-lite-opt.sh (a Python 3.10 venv with the paddlelite wheel)"


def lite_target_for(device: Device) -> str:
    """The opt target whose kernels the device's paddlelite has: x86 on an x86 host, else arm."""
    if device.transport == "local":
        return "x86" if platform.machine() in ("x86_64", "AMD64") else "arm"
    return "arm"


def lite_python(device: Device) -> str:
    """The interpreter with paddlelite: the device's own, or `.venv-lite` for `local`."""
    if device.transport == "local" and device.python in ("python3", "python", "", None):
        return str(LOCAL_LITE_PYTHON)
    return device_python(device)


def unavailable_reason(device: Device) -> str | None:
    """Why this runtime cannot run on the device, as far as the host can tell at planning."""
    if device.transport == "local" and not Path(lite_python(device)).is_file():
        return f"paddlelite is not installed for `local`: {SETUP_HINT}"
    return None


class PaddleLitePython(JsonRunnerRuntime):
    name = "paddle-lite-python"
    runner_file = "lite_runner.py"
    nvml = False

    def model_files(self, ctx: JobContext) -> tuple[list[Path], str]:
        from lab.core.hashing import sha256_file
        target = lite_target_for(ctx.device)
        nb = nb_path(ctx.artifact, target)
        if not nb.is_file():
            raise ConfigError(f"job {ctx.job.job_id}: {ctx.artifact.id} has no Paddle Lite .nb for {target}",
                              fix=f"lab models build {ctx.artifact.id} --lite-target {target}")
        return [nb], sha256_file(nb)

    def prepare(self, ctx: JobContext):
        prepared = super().prepare(ctx)
        prepared.command[0] = lite_python(ctx.device)
        return prepared

    def runner_args(self, ctx: JobContext, remote_files: list[str]) -> list[str]:
        job, p = ctx.job, ctx.job.protocol
        args = ["--model-file", remote_files[0], "--threads", str(job.threads),
                "--power-mode", job.option("power_mode") or ctx.device.power_mode or "no-bind",
                *protocol_argv(p)]
        for spec, shape in input_shapes(ctx, static=True):
            args += ["--input", f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"]
        return args
