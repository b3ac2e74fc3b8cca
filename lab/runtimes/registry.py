"""The runtime registry: `Backend.runtime` -> the runtime that runs its jobs.

Adding a runtime is one module in lab/runtimes/ and one entry below (docs/architecture.md
"How to add a runtime"; lab/runtimes/base.py for the contract).
"""
from __future__ import annotations

from ..errors import ConfigError
from .base import Runtime
from .onnxruntime import OnnxRuntime
from .paddle_inference import PaddleInference
from .paddle_js import PaddleJs
from .paddle_lite import PaddleLite
from .paddle_lite_python import PaddleLitePython
from .serving import Serving

RUNTIMES: dict[str, Runtime] = {rt.name: rt for rt in (PaddleInference(), PaddleLite(), PaddleLitePython(),
                                                       PaddleJs(), Serving(), OnnxRuntime())}


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"no runtime {name!r} is registered",
                          fix="use one of " + ", ".join(sorted(RUNTIMES))) from None
