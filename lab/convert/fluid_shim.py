"""The lab's compatibility layer for paddlejsconverter 1.0.8 under Paddle 3.x: a `paddle.fluid`.

Why: paddlejsconverter's convertModel.py does `import paddle.fluid as fluid` and calls
`fluid.Executor`, `fluid.CPUPlace`, `fluid.global_scope` and `fluid.io.load_inference_model`;
Paddle 3.x removed `paddle.fluid`. This module maps exactly those four names onto
`paddle.static` and is installed ONLY inside the converter's own subprocess
(`python -m lab.convert.paddlejs_worker`), never into the lab's process. Everything else the
converter touches on a Program/Operator/Variable exists in Paddle 3.x's legacy (non-PIR) static
graph, which the worker selects with FLAGS_enable_pir_api=0.
"""
from __future__ import annotations

import sys
import types

# What the shim maps, recorded in the model's meta (one definition).
MAPPED = ("fluid.Executor -> paddle.static.Executor",
          "fluid.CPUPlace -> paddle.CPUPlace",
          "fluid.global_scope -> paddle.static.global_scope",
          "fluid.io.load_inference_model(dirname, executor, model_filename, params_filename) "
          "-> paddle.static.load_inference_model(dirname, executor, model_filename, params_filename)")


def _load_inference_model(dirname, executor, model_filename=None, params_filename=None, **_):
    """fluid's (dirname, executor, model_filename, params_filename) on paddle.static's signature."""
    import paddle
    if not model_filename:
        raise ValueError("fluid shim: model_filename is required (combined-params models only)")
    # With model_filename given, paddle.static treats path_prefix as the directory.
    return paddle.static.load_inference_model(dirname, executor, model_filename=model_filename,
                                              params_filename=params_filename)


def install() -> types.ModuleType:
    """Register `paddle.fluid` (and `paddle.fluid.io`) in sys.modules; returns the module."""
    import paddle
    fluid = types.ModuleType("paddle.fluid")
    fluid.__doc__ = "hwlab compatibility shim (lab/convert/fluid_shim.py), not Paddle's fluid"
    fluid.Executor = paddle.static.Executor
    fluid.CPUPlace = paddle.CPUPlace
    fluid.global_scope = paddle.static.global_scope
    io = types.ModuleType("paddle.fluid.io")
    io.load_inference_model = _load_inference_model
    fluid.io = io
    sys.modules["paddle.fluid"] = fluid
    sys.modules["paddle.fluid.io"] = io
    paddle.fluid = fluid
    return fluid
