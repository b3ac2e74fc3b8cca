"""Conversions between Paddle and other formats: ONNX in (x2paddle) and out (paddle2onnx, ORT int8).

Each heavy tool (paddle, x2paddle, paddle2onnx, onnxruntime) runs in a child process
(`python -m lab.convert.worker`): paddle2onnx aborts the process on some models, x2paddle prints
and calls input(), and the host stays cheap to import.
"""
