"""Conversions between Paddle and other formats: ONNX in (x2paddle) and out (paddle2onnx, ORT int8),
and Paddle.js web models.

Each heavy tool (paddle, x2paddle, paddle2onnx, paddlejsconverter, onnxruntime) runs in a child
process: paddle2onnx aborts the process on some models, x2paddle prints and calls input(),
paddlejsconverter needs a paddle.fluid shim, and the host stays cheap to import.
"""
