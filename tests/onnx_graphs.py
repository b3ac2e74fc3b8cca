"""Small ONNX graphs built with the `onnx` helper API (no torch): fixtures for the ONNX tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _model(nodes, inputs, outputs, inits, opset=13):
    import onnx
    from onnx import helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_cnn(path: Path, *, kernel_shape: bool = True, dims=("N", 3, 16, 16)) -> Path:
    """Conv(3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(10): an image classifier."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.RandomState(0)
    inits = [numpy_helper.from_array(rng.randn(8, 3, 3, 3).astype("float32"), "W"),
             numpy_helper.from_array(rng.randn(8).astype("float32"), "B"),
             numpy_helper.from_array(rng.randn(10, 8).astype("float32"), "FW"),
             numpy_helper.from_array(rng.randn(10).astype("float32"), "FB")]
    conv_attrs = {"pads": [1, 1, 1, 1]}
    if kernel_shape:
        conv_attrs["kernel_shape"] = [3, 3]
    nodes = [helper.make_node("Conv", ["image.in", "W", "B"], ["c"], name="conv_0", **conv_attrs),
             helper.make_node("Relu", ["c"], ["r"], name="relu_0"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap_0"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten_0", axis=1),
             helper.make_node("Gemm", ["f", "FW", "FB"], ["logits"], name="fc_0", transB=1)]
    model = _model(nodes, [helper.make_tensor_value_info("image.in", TensorProto.FLOAT, list(dims))],
                   [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(model, str(path))
    return path


def with_det(path: Path) -> Path:
    """MatMul -> Det: Det (opset 11+) is valid ONNX that x2paddle 1.6.0 cannot convert."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.eye(4, dtype="float32"), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm_0"),
             helper.make_node("Det", ["m"], ["d"], name="det_0")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 4])],
                   [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2])], [w])
    onnx.save(model, str(path))
    return path
