"""Where a request's time goes inside the endpoint: the v2 statistics call, read around a LoadGen run.

Why: a serving figure is the model plus the endpoint's own work (HTTP, tensor decoding, thread
handoffs, encoding). Without the split a reader takes "6 QPS" for a property of the chip. Triton's
statistics extension (GET /v2/models/{name}/stats) sums, per phase, the count and the nanoseconds
of every successful request; the lab's runner serves the same document with two more phases
(`decode`, `encode`: the HTTP body to tensors and back). Reading it before and after a run and
taking the difference gives the run's own requests: means per request, in milliseconds:

  queue_ms   waiting for an instance (batching delay included) and, in the lab's runner, for the
             event loop to take the answer back (thread handoffs)
  decode_ms  request body to tensors in the predictor (decode + compute_input)
  model_ms   the model's run (compute_infer): what the batch-1 runner times
  encode_ms  predictor outputs to the answer's bytes (compute_output + encode)
  server_ms  the whole request inside the endpoint (success)

A Triton server has no decode/encode phases: decode_ms is its compute_input, encode_ms its
compute_output. Paddle Serving's pipeline format has no statistics call: no split (None).
"""
from __future__ import annotations

import http.client
import json
from dataclasses import asdict, dataclass
from typing import Any

from lab.serving.protocol import Endpoint


@dataclass(frozen=True)
class EndpointSplit:
    """Mean milliseconds per request of one run, by phase (see the module doc)."""

    requests: int
    queue_ms: float
    decode_ms: float
    model_ms: float
    encode_ms: float
    server_ms: float

    def share(self, latency_ms: float | None) -> float | None:
        """The endpoint's own share of a request as the client sees it: everything but the model
        (queueing, HTTP, decoding, encoding, the client's own path), of the mean latency."""
        if not latency_ms or latency_ms <= 0:
            return None
        return max(0.0, min(1.0, 1.0 - self.model_ms / latency_ms))

    def to_dict(self, latency_ms: float | None = None) -> dict[str, Any]:
        d = asdict(self)
        d["endpoint_share"] = self.share(latency_ms)
        return d


def snapshot(ep: Endpoint, timeout: float = 10.0) -> dict[str, list[int]] | None:
    """phase -> [count, ns] from the endpoint's statistics call; None when it has none."""
    if ep.fmt != "v2":
        return None
    path = ep.path.rsplit("/infer", 1)[0] + "/stats"
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        stats = json.loads(body)["model_stats"][0]["inference_stats"]
        return {k: [int(v["count"]), int(v["ns"])] for k, v in stats.items()}
    except (OSError, ValueError, KeyError, IndexError, TypeError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def split(before: dict[str, list[int]] | None, after: dict[str, list[int]] | None) -> EndpointSplit | None:
    """The run's requests alone (after - before); None without both snapshots or requests."""
    if not before or not after or "success" not in after or "compute_infer" not in after:
        return None
    n = after["success"][0] - before.get("success", [0, 0])[0]
    if n <= 0:
        return None

    def ms(*phases: str) -> float:
        ns = sum(after[p][1] - before.get(p, [0, 0])[1] for p in phases if p in after)
        return ns / n / 1e6

    return EndpointSplit(requests=n, queue_ms=ms("queue"), decode_ms=ms("decode", "compute_input"),
                         model_ms=ms("compute_infer"), encode_ms=ms("compute_output", "encode"),
                         server_ms=ms("success"))
