"""Request and response formats of the two HTTP serving protocols the load generator speaks.

Why here and pure: the load generator builds one request body per input set ahead of the run (so
the hot path only sends bytes), and the tests check outputs against a direct Paddle run; both need
the same encode/decode, with no network in sight.

  v2        KServe v2 / Triton / Open Inference Protocol: POST {base}/v2/models/{name}/infer with
            {"inputs": [{"name", "shape", "datatype", "data"}]} (data flat, row-major); the answer
            has "outputs" in the same form, or {"error": "..."}.
  pipeline  Paddle Serving pipeline (web service): POST {base}/{name}/prediction with
            {"key": [input names], "value": [JSON text of each tensor's nested list]}; the answer
            has "err_no" (0 = ok), "err_msg", "key", "value".
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

import numpy as np

from lab.errors import ConfigError, RunnerError

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
    if fmt not in FORMATS:
        raise ConfigError(f"unknown serving request format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"endpoint {url!r} is not an http://host:port URL",
                          fix="give e.g. http://127.0.0.1:8000 (https is not supported)")
    port = parts.port or 80
    prefix = parts.path.rstrip("/")
    path = f"{prefix}/v2/models/{model}/infer" if fmt == "v2" else f"{prefix}/{model}/prediction"
    return Endpoint(parts.hostname, port, path, fmt, model)


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


def parse_response(fmt: str, body: bytes) -> dict[str, np.ndarray]:
    """Outputs (name -> array) of one answer; RunnerError with the server's message otherwise."""
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
        for t in doc.get("outputs") or []:
            dtype = V2_TO_NUMPY.get(t.get("datatype", ""), None)
            if dtype is None:
                raise RunnerError(f"output {t.get('name')!r}: datatype {t.get('datatype')!r} not supported")
            out[t["name"]] = np.asarray(t["data"], dtype=dtype).reshape(t["shape"])
        if not out:
            raise RunnerError("serving answer has no outputs")
        return out
    if doc.get("err_no", 0) != 0:
        raise RunnerError(f"serving error {doc.get('err_no')}: {doc.get('err_msg', '')}")
    return {k: np.asarray(json.loads(v) if isinstance(v, str) else v)
            for k, v in zip(doc.get("key") or [], doc.get("value") or [])}
