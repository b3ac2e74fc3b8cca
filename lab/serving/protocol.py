"""Request and response formats of the two HTTP serving protocols the load generator speaks.

Why here and pure: the load generator builds one request body per input set ahead of the run (so
the hot path only sends bytes), and the tests check outputs against a direct Paddle run; both need
the same encode/decode, with no network in sight.

  v2        KServe v2 / Triton / Open Inference Protocol: POST {base}/v2/models/{name}/infer with
            {"inputs": [{"name", "shape", "datatype", "data"}]} (data flat, row-major); the answer
            has "outputs" in the same form, or {"error": "..."}.
  v2 binary Triton's binary tensor data extension of v2: the body is the JSON header (inputs
            with "parameters": {"binary_data_size": n} and no "data") followed by each tensor's
            raw little-endian bytes in order; the header `Inference-Header-Content-Length` says
            where the JSON ends. `"binary_data_output": true` asks for outputs the same way.
            Why: JSON floats cost ~0.4 s to encode and 0.2 s to decode per 1x3x224x224 tensor
            here, which capped mobilenet_v1 at ~2 QPS end to end; raw bytes cost microseconds.
  pipeline  Paddle Serving pipeline (web service): POST {base}/{name}/prediction with
            {"key": [input names], "value": [JSON text of each tensor's nested list]}; the answer
            has "err_no" (0 = ok), "err_msg", "key", "value".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from lab.core.errors import ConfigError, RunnerError

FORMATS = ("v2", "pipeline")

NUMPY_TO_V2 = {"bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32",
               "int64": "INT64", "float16": "FP16", "float32": "FP32", "float64": "FP64"}
V2_TO_NUMPY = {v: k for k, v in NUMPY_TO_V2.items()}


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: host/port of the HTTP server and the path of the infer call."""

    host: str
    port: int
    path: str
    fmt: str
    model: str

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


def endpoint(url: str, model: str, fmt: str = "v2") -> Endpoint:
    """Parse a base URL (``http://127.0.0.1:8000``) into an Endpoint for `model` in `fmt`."""
    from lab.serving.endpoint import parse_base_url
    if fmt not in FORMATS:
        raise ConfigError(f"unknown serving request format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    host, port, prefix = parse_base_url(url)
    path = f"{prefix}/v2/models/{model}/infer" if fmt == "v2" else f"{prefix}/{model}/prediction"
    return Endpoint(host, port, path, fmt, model)


HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Request:
    """One encoded request: body bytes and the headers it needs besides Host/Content-Length."""

    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


def encode_request(fmt: str, inputs: Mapping[str, np.ndarray], *, binary: bool = True) -> Request:
    """A request for `inputs`; v2 with `binary` uses the binary tensor extension (JSON otherwise)."""
    if fmt != "v2" or not binary:
        return Request(request_body(fmt, inputs))
    header: dict[str, Any] = {"inputs": [], "parameters": {"binary_data_output": True}}
    blobs = []
    for n, a in inputs.items():
        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header["inputs"].append({"name": n, "shape": [int(d) for d in a.shape],
                                 "datatype": NUMPY_TO_V2[str(a.dtype)],
                                 "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    return Request(head + b"".join(blobs), (("Content-Type", "application/octet-stream"),
                                             (HEADER_LENGTH, str(len(head)))))


def request_body(fmt: str, inputs: Mapping[str, np.ndarray]) -> bytes:
    """One request body for `inputs` (name -> array, batch dim first)."""
    if fmt == "v2":
        doc: dict[str, Any] = {"inputs": [
            {"name": n, "shape": [int(d) for d in a.shape], "datatype": NUMPY_TO_V2[str(a.dtype)],
             "data": a.ravel().tolist()} for n, a in inputs.items()]}
    elif fmt == "pipeline":
        doc = {"key": list(inputs), "value": [json.dumps(a.tolist()) for a in inputs.values()]}
    else:
        raise ConfigError(f"unknown serving request format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_response(fmt: str, body: bytes, header_length: int | None = None) -> dict[str, np.ndarray]:
    """Outputs (name -> array) of one answer; RunnerError with the server's message otherwise.

    `header_length`: the answer's Inference-Header-Content-Length (binary outputs follow the JSON).
    """
    blob = b""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise RunnerError(f"{HEADER_LENGTH} {header_length} does not fit a {len(body)}-byte answer")
        body, blob = body[:header_length], body[header_length:]
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RunnerError(f"serving answer is not JSON: {body[:200]!r}") from exc
    if not isinstance(doc, dict):
        raise RunnerError(f"serving answer is not a JSON object: {body[:200]!r}")
    if fmt == "v2":
        if "error" in doc:
            raise RunnerError(f"serving error: {doc['error']}")
        out = {}
        offset = 0
        for t in doc.get("outputs") or []:
            dtype = V2_TO_NUMPY.get(t.get("datatype", ""), None)
            if dtype is None:
                raise RunnerError(f"output {t.get('name')!r}: datatype {t.get('datatype')!r} not supported")
            size = (t.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                if offset + int(size) > len(blob):
                    raise RunnerError(f"output {t.get('name')!r}: {size} binary bytes announced, "
                                      f"{len(blob) - offset} left in the answer")
                arr = np.frombuffer(blob, dtype=np.dtype(dtype).newbyteorder("<"), count=int(size) //
                                    np.dtype(dtype).itemsize, offset=offset)
                offset += int(size)
                out[t["name"]] = arr.astype(dtype).reshape(t["shape"])
            else:
                out[t["name"]] = np.asarray(t["data"], dtype=dtype).reshape(t["shape"])
        if not out:
            raise RunnerError("serving answer has no outputs")
        return out
    if doc.get("err_no", 0) != 0:
        raise RunnerError(f"serving error {doc.get('err_no')}: {doc.get('err_msg', '')}")
    return {k: np.asarray(json.loads(v) if isinstance(v, str) else v)
            for k, v in zip(doc.get("key") or [], doc.get("value") or [])}
