"""Which backends a device's CPU architecture and userland can run, and the fix for the others.

Why one place: planning refuses a Python backend on a board that cannot have one (no wheel exists
for its architecture) before anything is pushed, and `lab devices --check` lists the same verdicts
from what the probe found on the device. Wheel facts, checked on the package index in 2026-12
(shared/reference/arm-emulation.md): paddlepaddle and onnxruntime publish x86_64 and aarch64
wheels, and there is none of either (nor of paddlelite) for 32-bit ARM. A Buildroot-style armv7
board (busybox, dropbear) runs Paddle Lite through a benchmark_bin built for armv7hf instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Runtimes whose runner is a Python program on the device (lab/runners/*.py).
PYTHON_RUNTIMES = ("paddle-inference", "onnxruntime", "paddle-lite-python", "serving")
# The Python package each needs there, as pip names it.
RUNTIME_WHEELS = {"paddle-inference": "paddlepaddle", "onnxruntime": "onnxruntime",
                  "paddle-lite-python": "paddlelite", "serving": "paddlepaddle"}
# `uname -m` values and ABI names of 32-bit ARM (an armv8l kernel runs a 32-bit userland too).
ARM32_NAMES = ("armv6l", "armv7l", "armv8l", "armv7", "armv7hf", "armhf", "armeabi-v7a", "arm")
ARMV7_FIX = ("run Paddle Lite there: paddle-lite-arm with a benchmark_bin built for armv7hf "
             "(docs/paddle-lite.md)")


def is_arm32(arch: str | None) -> bool:
    return bool(arch) and arch.lower() in ARM32_NAMES


def is_arm(arch: str | None) -> bool:
    return is_arm32(arch) or (arch or "").lower() in ("aarch64", "arm64", "arm64-v8a", "armv8")


def no_wheel_reason(arch: str | None, wheel: str = "paddlepaddle, onnxruntime or paddlelite") -> str | None:
    """Why `wheel` (by default: any Python runtime) cannot be installed on a CPU of `arch` (None
    when wheels exist)."""
    if is_arm32(arch):
        return f"no {wheel} wheel exists for 32-bit ARM ({arch}); {ARMV7_FIX}"
    return None


def declared_arch(dev: Any, chip: Any = None) -> str | None:
    """The architecture the inventory implies without asking the device: its `abi`, else the
    catalog chip's `identity.arch` (duck-typed `catalog.Chip`; None when it names none)."""
    if getattr(dev, "abi", None):
        return dev.abi
    ident = getattr(chip, "identity", None)
    arch = getattr(getattr(ident, "arch", None), "value", None)
    return arch[0] if arch else None


def planning_refusal(dev: Any, backend: Any, precision: str, chip: Any = None) -> str | None:
    """Why `backend` (a records.Backend) cannot be planned on `dev` at `precision` for the device's
    architecture (None: it can, or the inventory does not say the architecture)."""
    runtime, arch = backend.runtime, declared_arch(dev, chip)
    if runtime not in PYTHON_RUNTIMES:
        return None
    why = no_wheel_reason(arch, RUNTIME_WHEELS[runtime])
    if why:
        return f"{runtime} runs a Python runner with {RUNTIME_WHEELS[runtime]} on the device: {why}"
    if runtime == "paddle-inference" and backend.processor == "cpu" and precision == "int8" and is_arm(arch):
        return (f"{backend.id} runs int8 through oneDNN int8, and Paddle's ARM wheels are built without "
                f"oneDNN ({arch}: is_compiled_with_mkldnn() is False); run int8 there with "
                "onnxruntime-cpu or paddle-lite-arm")
    return None


@dataclass(frozen=True)
class Readiness:
    """One backend runtime on one probed device: can it run, and if not, the fix."""

    runtime: str
    ready: bool
    reason: str

    def to_text(self) -> str:
        return f"{self.runtime}: {'can run' if self.ready else 'cannot run'} ({self.reason})"


def probed_readiness(arch: str | None, python: str | None, modules: dict[str, str | None],
                     benchmark_bin: str | None, errors: dict[str, str] | None = None) -> list[Readiness]:
    """Verdicts from the probe's findings: `python` the interpreter's version (None: none runs),
    `modules` pip name -> version (None: cannot be imported, `errors` says why), `benchmark_bin`
    the inventory's."""
    out = []
    for runtime in PYTHON_RUNTIMES:
        wheel = RUNTIME_WHEELS[runtime]
        no_wheel = no_wheel_reason(arch, wheel)
        if no_wheel:
            out.append(Readiness(runtime, False, no_wheel))
        elif python is None:
            out.append(Readiness(runtime, False, f"no Python on the device: install Python 3.7+ and "
                                                 f"pip install {wheel}, or set 'python:' in devices.yaml"))
        elif not modules.get(wheel):
            why = (errors or {}).get(wheel)
            out.append(Readiness(runtime, False, f"{wheel} cannot be imported by Python {python}"
                                                 + (f" ({why})" if why else f": pip install {wheel}")))
        else:
            out.append(Readiness(runtime, True, f"Python {python} with {wheel} {modules[wheel]}"))
    if benchmark_bin:
        out.append(Readiness("paddle-lite", True, f"benchmark_bin {benchmark_bin}, over a shell only"))
    else:
        out.append(Readiness("paddle-lite", False, "no benchmark_bin in devices.yaml: build Paddle "
                                                   "Lite's benchmark_bin for the device ABI (docs/paddle-lite.md)"))
    return out
