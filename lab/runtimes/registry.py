"""The runtime registry: `Backend.runtime` -> the runtime that runs its jobs.

Adding a runtime is one module in lab/runtimes/ and one entry below (docs/architecture.md
"How to add a runtime"; lab/runtimes/base.py for the contract).
"""
from __future__ import annotations

from lab.core.errors import ConfigError
from lab.runtimes.base import Runtime
from lab.runtimes.onnxruntime import OnnxRuntime
from lab.runtimes.paddle_inference import PaddleInference
from lab.runtimes.paddle_js import PaddleJs
from lab.runtimes.paddle_lite import PaddleLite
from lab.runtimes.paddle_lite_python import PaddleLitePython
from lab.runtimes.serving import Serving

RUNTIMES: dict[str, Runtime] = {rt.name: rt for rt in (PaddleInference(), PaddleLite(), PaddleLitePython(),
                                                       PaddleJs(), Serving(), OnnxRuntime())}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"no runtime {name!r} is registered",
                          fix="use one of " + ", ".join(sorted(RUNTIMES))) from None
