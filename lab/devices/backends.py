"""Backend ids and what they run on.

Why a table: "CPU or AIPU?" compares processor classes on one device, so every backend declares
its class (cpu | gpu | aipu) once, here, and everything else looks it up.
"""
from __future__ import annotations

from lab.core.errors import ConfigError
from lab.core.records import Backend

_LITE = ("fp32", "fp16", "int8")  # int8: the `-int8` model's .nb (lab.convert.lite)
_LITE_NOTE = "Paddle Lite runs fp32, fp16 (ARMv8.2 builds) and int8 (a quantised model's .nb)"
BACKENDS: dict[str, Backend] = {b.id: b for b in [
    Backend("paddle-inference-cpu", "cpu", "paddle-inference", precisions=("fp32", "int8"),
            precision_note="Paddle Inference on CPU runs fp32, and int8 through oneDNN int8 "
                           "(fp16 needs a GPU: paddle-inference-gpu)"),
    Backend("paddle-inference-gpu", "gpu", "paddle-inference", precisions=("fp32", "fp16"),
            precision_note="Paddle Inference GPU without TensorRT runs fp32/fp16; int8 needs "
                           "paddle-inference-trt"),
    Backend("paddle-inference-trt", "gpu", "paddle-inference", precisions=("fp32", "fp16", "int8"),
            precision_note="TensorRT runs fp32, fp16 and int8 (with the model's own scales)"),
    Backend("paddle-lite-arm", "cpu", "paddle-lite", lite_backend="arm", precisions=_LITE,
            precision_note=_LITE_NOTE),
    Backend("paddle-lite-python", "cpu", "paddle-lite-python"),
    Backend("paddle-lite-opencl", "gpu", "paddle-lite", lite_backend="opencl,arm",
            precisions=_LITE, precision_note=_LITE_NOTE),
    # baselines: the same job through ONNX Runtime (lab/runtimes/onnxruntime.py)
    Backend("onnxruntime-cpu", "cpu", "onnxruntime", precisions=("fp32", "int8"),
            precision_note="ONNX Runtime runs fp32 (the paddle2onnx export) and int8 (its own static QDQ model)"),
    Backend("onnxruntime-gpu", "gpu", "onnxruntime", precisions=("fp32", "int8"),
            precision_note="ONNX Runtime runs fp32 (the paddle2onnx export) and int8 (its own static QDQ model)"),
    Backend("paddle-lite-kirin-npu", "aipu", "paddle-lite", nnadapter_device="huawei_kirin_npu",
            lite_backend="nnadapter,arm", precisions=_LITE, precision_note=_LITE_NOTE),
    Backend("paddle-lite-rockchip-npu", "aipu", "paddle-lite", nnadapter_device="rockchip_npu",
            lite_backend="nnadapter,arm", precisions=_LITE, precision_note=_LITE_NOTE),
    Backend("paddle-lite-timvx", "aipu", "paddle-lite", nnadapter_device="verisilicon_timvx",
            lite_backend="nnadapter,arm", precisions=_LITE, precision_note=_LITE_NOTE),
    # processor: "cpu" as declared; planning sets "gpu" on devices whose chip is an NVIDIA GPU
    # (campaign.serving_processor), where the runner serves with Paddle Inference's GPU predictor
    Backend("serving-http", "cpu", "serving"),
    # Paddle.js in a browser: "gpu" is the WebGL device the page asks for; a software renderer
    # (SwiftShader) is labelled "software GPU emulation" in results and report (lab/web/cdp.py).
    Backend("paddle-js-webgl", "gpu", "paddle-js"),
    Backend("paddle-js-wasm", "cpu", "paddle-js"),  # refused at planning: runtime.wasm is CDN-only
]}

# Precisions a job runs a model at (campaigns, imported results); each one has TOPS figures in
# lab.devices.catalog.TOPS_PRECISIONS, the wider set of formats chips are rated at.
# Runtimes that are not Paddle's: the honest baseline that the frameworks comparison and the advisor
# put beside Paddle Inference, never in place of it.
OTHER_RUNTIMES = ("onnxruntime",)
RUN_PRECISIONS = ("fp32", "fp16", "int8", "int16", "bf16")


def get_backend(backend_id: str, *, where: str = "") -> Backend:
    try:
        return BACKENDS[backend_id]
    except KeyError:
        raise ConfigError(f"{where}unknown backend {backend_id!r}",
                          fix="use one of " + ", ".join(BACKENDS)) from None
