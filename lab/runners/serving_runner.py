#!/usr/bin/env python3
"""Serving runner: a KServe v2 / Triton HTTP inference endpoint with Paddle Inference predictors.

Why standalone: this file travels to servers (Python 3.7+) with runner_core.py (the code the
runners share) and nothing else, so it imports only the standard library, runner_core, numpy,
paddle, starlette and uvicorn (the heavy ones lazily, so the host can import it for its constants). The lab's load generator (lab/serving) drives it with MLPerf LoadGen over HTTP; the
same client drives Triton or any other v2 server, because the protocol is the v2 one:

  GET  /v2/health/live, /v2/health/ready        200 once the predictors are loaded
  GET  /v2/models/{name}                        metadata: inputs/outputs (name, datatype, shape)
  GET  /v2/models/{name}/ready
  POST /v2/models/{name}/infer                  JSON tensors in, JSON tensors out; or Triton's binary
                                                tensor extension (Inference-Header-Content-Length,
                                                "binary_data_size", raw little-endian bytes after
                                                the JSON header) in and/or out
  GET  /v2/models/{name}/stats                  Triton-shaped statistics: inference and execution
                                                counts, a batch-size histogram (what the dynamic
                                                batcher really did), and per phase (queue, decode,
                                                compute_input/infer/output, encode, success) the
                                                count and summed ns of the successful requests

Execution: one instance without batching runs each request in the event loop (predictor.run()
holds the GIL, so a thread would only add handoffs; see build_app). Otherwise ``--instances N``
worker threads, each with its own predictor (``--threads`` CPU math threads each), each running
one batch at a time from one shared queue. With ``--max-batch B > 1``
a worker that takes a request waits up to ``--max-queue-delay-ms`` for more, concatenates up to B
rows along dim 0, runs once and splits the outputs (Triton's dynamic batcher, per instance).

Lifetime is bounded: ``--max-seconds`` stops the server by itself (and a watchdog thread hard-exits
if a clean stop hangs), SIGTERM/SIGINT stop it cleanly with exit code 0. ``--port 0`` binds a free
port; the bound port and pid go to ``--ready-file`` (JSON, written atomically once the endpoint
answers). Failures before ready (model load, port in use) exit 3 with one ``serving_runner: error:``
line on stderr.

Test modes: ``--noop`` serves no model (a zero tensor per request; for the load generator's own
capacity benchmark and synthetic endpoints), ``--service-ms`` adds a fixed service time per batch
(a queue whose latency rises with load), ``--inject-stall-ms X --stall-every N`` stalls every N-th
request by X ms (the coordinated-omission test), ``--inject-crash-after N`` exits abruptly after N
requests (the crash-mid-run test).
"""
from __future__ import print_function

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time

try:
    from . import runner_core as core  # imported on the host as part of lab.runners (tests)
except ImportError:
    import runner_core as core  # on the device: the file travels next to this one

RUNNER = "serving_runner"
RUNNER_VERSION = "1.2.0"
EXIT_FAILED = 3
EXIT_CRASH_INJECTED = 70
SWITCH_INTERVAL_S = 0.0005  # see serve()

# v2 datatype <-> numpy dtype name
V2_TO_NUMPY = {"BOOL": "bool", "UINT8": "uint8", "INT8": "int8", "INT16": "int16", "INT32": "int32",
               "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64"}
NUMPY_TO_V2 = dict((v, k) for k, v in V2_TO_NUMPY.items())


RunnerFailure = core.RunnerFailure  # reported as one ``serving_runner: error:`` line and exit code 3


class BadRequest(Exception):
    """A malformed inference request: answered 400 with {"error": message}."""


def log(msg):
    sys.stderr.write("%s %s: %s\n" % (time.strftime("%H:%M:%S"), RUNNER, msg))
    sys.stderr.flush()


# ------------------------------------------------------------------------------- arguments
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog=RUNNER, description="KServe v2 HTTP endpoint over Paddle Inference")
    p.add_argument("--model-file", help=".json / .pdmodel (not with --noop)")
    p.add_argument("--params-file", help=".pdiparams")
    p.add_argument("--name", default="model", help="model name in the v2 URLs")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="declared input, e.g. x:-1x3x224x224:float32 (metadata + a warm-up run that "
                        "learns the output shapes; -1 dims run as 1)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (see --ready-file)")
    p.add_argument("--ready-file", help="JSON {port, pid, ...} written once the endpoint answers")
    p.add_argument("--instances", type=int, default=1, help="predictor workers, one batch at a time each")
    p.add_argument("--threads", type=int, default=1, help="CPU math threads per instance")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--gpu-id", type=int, default=0)
    # the default is the lab's one definition (lab/runtimes/defaults.py ONEDNN; a test keeps this copy
    # equal): the batch-1 runner and this endpoint measure the same predictor
    p.add_argument("--onednn", choices=("on", "off"), default="on")
    p.add_argument("--max-batch", type=int, default=1, help=">1 turns dynamic batching on")
    p.add_argument("--max-queue-delay-ms", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, required=True, help="the server stops by itself after this")
    p.add_argument("--noop", action="store_true", help="no model: answer a zero tensor")
    p.add_argument("--noop-output-shape", default="1", help="per-row output shape of --noop (comma list)")
    p.add_argument("--service-ms", type=float, default=0.0, help="test: fixed service time per batch")
    p.add_argument("--inject-stall-ms", type=float, default=0.0, help="test: stall this long ...")
    p.add_argument("--stall-every", type=int, default=0, help="... every N-th request")
    p.add_argument("--inject-crash-after", type=int, default=0, help="test: exit abruptly after N requests")
    args = p.parse_args(argv)
    if args.noop == bool(args.model_file):
        p.error("give exactly one of --model-file or --noop")
    if args.instances < 1 or args.threads < 1 or args.max_batch < 1:
        p.error("--instances, --threads and --max-batch must be >= 1")
    if args.max_seconds <= 0:
        p.error("--max-seconds must be > 0")
    if args.inject_stall_ms and args.stall_every < 1:
        p.error("--inject-stall-ms needs --stall-every N >= 1")
    return args


# ------------------------------------------------------------------------------- engines
class NoopEngine(object):
    """No model: a zero FP32 tensor of shape [rows] + --noop-output-shape per call."""

    def __init__(self, args):
        self.row_shape = [int(x) for x in args.noop_output_shape.split(",") if x.strip()]
        self.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        self.outputs = [{"name": "y", "datatype": "FP32", "shape": [-1] + self.row_shape}]
        self.platform = "noop"

    def infer(self, arrays):
        return self.infer_timed(arrays)[0]

    def infer_timed(self, arrays):
        """-> (outputs, (input ns, run ns, output ns)); a no-op "runs" in its zero fill."""
        import numpy as np
        t0 = time.perf_counter()
        rows = len(next(iter(arrays.values()))) if arrays else 1
        out = [("y", np.zeros([rows] + self.row_shape, dtype="float32"))]
        return out, (0, _ns(time.perf_counter() - t0), 0)


class PaddleEngine(object):
    """One Paddle Inference predictor (one per instance)."""

    def __init__(self, args):
        import paddle.inference as pi
        config = core.paddle_config(pi, args.model_file, args.params_file, args.device, args.threads,
                                    args.onednn == "on")
        if args.device != "cpu":
            config.enable_use_gpu(256, args.gpu_id)
        core.memory_optim(config, args.model_file)
        self.predictor = pi.create_predictor(config)
        self.input_names = list(self.predictor.get_input_names())
        self.output_names = list(self.predictor.get_output_names())
        declared = dict((d[0], d) for d in (parse_input(t) for t in args.input))
        unknown = sorted(set(declared) - set(self.input_names))
        if unknown:
            raise RunnerFailure("--input %s: the model has no such input (it has %s)"
                                % (", ".join(unknown), ", ".join(self.input_names)))
        self.inputs, self.outputs = [], []
        for n in self.input_names:
            if n in declared:
                _, shape, dtype = declared[n]
                self.inputs.append({"name": n, "datatype": NUMPY_TO_V2[dtype], "shape": shape})
            else:  # Paddle Inference does not say a .json model's input shapes before a reshape
                h = self.predictor.get_input_handle(n)
                self.inputs.append({"name": n, "datatype": _v2_type(h.type()), "shape": [-1]})
        self.platform = "paddle_inference"
        if len(declared) == len(self.input_names):
            self._warm_up(declared)
        else:
            self.outputs = [{"name": n, "datatype": "FP32", "shape": [-1]} for n in self.output_names]

    def _warm_up(self, declared):
        """One run at the declared shapes (-1 -> 1): warms the predictor, gives output metadata."""
        import numpy as np
        arrays = dict((n, np.zeros([1 if d < 0 else d for d in shape], dtype=dtype))
                      for n, shape, dtype in declared.values())
        for name, arr in self.infer(arrays):
            shape = [int(d) for d in arr.shape]
            if shape and any(s[1][0] < 0 for s in declared.values()):
                shape[0] = -1
            self.outputs.append({"name": name, "datatype": NUMPY_TO_V2.get(str(arr.dtype), "FP32"),
                                 "shape": shape})

    def infer(self, arrays):
        return self.infer_timed(arrays)[0]

    def infer_timed(self, arrays):
        """-> (outputs, (ns copying inputs in, ns in predictor.run(), ns copying outputs out)): the
        split Triton's statistics call compute_input / compute_infer / compute_output. Only the
        middle one is the figure the batch-1 runner times (pi_runner: perf_counter around run())."""
        t0 = time.perf_counter()
        for spec in self.inputs:
            n, want = spec["name"], spec["shape"]
            if n not in arrays:
                raise BadRequest("missing input %r (the model's inputs: %s)" % (n, ", ".join(self.input_names)))
            got = list(arrays[n].shape)
            if want != [-1] and (len(got) != len(want) or any(w >= 0 and w != g for w, g in zip(want, got))):
                raise BadRequest("input %r: shape %s does not fit the model's %s" % (n, got, want))
            h = self.predictor.get_input_handle(n)
            h.reshape(list(arrays[n].shape))
            h.copy_from_cpu(arrays[n])
        t1 = time.perf_counter()
        self.predictor.run()
        t2 = time.perf_counter()
        outs = [(n, self.predictor.get_output_handle(n).copy_to_cpu()) for n in self.output_names]
        return outs, (_ns(t1 - t0), _ns(t2 - t1), _ns(time.perf_counter() - t2))


def _ns(seconds):
    return int(seconds * 1e9)


def parse_input(text):
    """NAME:SHAPE:DTYPE (shape dims joined by x, -1 for dynamic) -> (name, [dims], dtype)."""
    return core.parse_input_spec(text, tuple(sorted(NUMPY_TO_V2)), dynamic=True)


def _v2_type(paddle_dtype):
    text = str(paddle_dtype).lower()
    for key, v2 in (("float32", "FP32"), ("float16", "FP16"), ("float64", "FP64"), ("int64", "INT64"),
                    ("int32", "INT32"), ("uint8", "UINT8"), ("int8", "INT8"), ("bool", "BOOL")):
        if key in text:
            return v2
    return "FP32"


# ------------------------------------------------------------------------------- v2 tensors
def decode_inputs(doc, want_arrays=True, blob=None):
    """v2 request JSON -> ({name: ndarray}, rows). Data may be flat or nested (row-major), or raw
    little-endian bytes in `blob` (Triton's binary tensor extension: "parameters":
    {"binary_data_size": n} per input, in order, after the JSON header)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise BadRequest("the request needs a non-empty 'inputs' list")
    arrays, rows, offset = {}, None, 0
    for t in doc["inputs"]:
        if not isinstance(t, dict) or not all(k in t for k in ("name", "shape", "datatype")):
            raise BadRequest("each input needs name, shape, datatype and data")
        params = t.get("parameters") if isinstance(t.get("parameters"), dict) else {}
        size = params.get("binary_data_size")
        if size is None and "data" not in t:
            raise BadRequest("each input needs name, shape, datatype and data")
        shape = t["shape"]
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise BadRequest("input %r: shape must be a non-empty list of non-negative ints" % t["name"])
        if t["datatype"] not in V2_TO_NUMPY:
            raise BadRequest("input %r: datatype %r not supported" % (t["name"], t["datatype"]))
        rows = shape[0] if rows is None else rows
        if shape[0] != rows:
            raise BadRequest("inputs disagree on the batch dimension")
        n = 1
        for d in shape:
            n *= d
        if size is not None:
            if blob is None:
                raise BadRequest("input %r: binary_data_size without an Inference-Header-Content-Length "
                                 "header" % t["name"])
            if not isinstance(size, int) or size < 0 or offset + size > len(blob):
                raise BadRequest("input %r: binary_data_size %r does not fit the %d bytes after the header"
                                 % (t["name"], size, len(blob) - offset))
            chunk = blob[offset:offset + size]
            offset += size
        if not want_arrays:
            continue
        import numpy as np
        dtype = V2_TO_NUMPY[t["datatype"]]
        if size is not None:
            itemsize = np.dtype(dtype).itemsize
            if size != n * itemsize:
                raise BadRequest("input %r: %d bytes for shape %s of %s" % (t["name"], size, shape, t["datatype"]))
            # a view of the request's bytes: no copy on a little-endian host (copy_from_cpu copies once)
            arr = np.frombuffer(chunk, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype, copy=False)
        else:
            try:
                arr = np.asarray(t["data"], dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise BadRequest("input %r: data is not %s: %s" % (t["name"], t["datatype"], exc))
            if arr.size != n:
                raise BadRequest("input %r: %d values for shape %s" % (t["name"], arr.size, shape))
        arrays[t["name"]] = arr.reshape(shape)
    if blob is not None and offset != len(blob):
        raise BadRequest("%d bytes after the JSON header, the inputs announce %d" % (len(blob), offset))
    return arrays, rows


def wants_binary_outputs(doc):
    """Binary outputs when the request asks (binary_data_output, or binary_data per output)."""
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    if params.get("binary_data_output"):
        return True
    outs = doc.get("outputs") if isinstance(doc.get("outputs"), list) else []
    return any(isinstance(o, dict) and isinstance(o.get("parameters"), dict)
               and o["parameters"].get("binary_data") for o in outs)


def encode_outputs(outputs, binary=False):
    """-> (output tensor JSON list, raw bytes after the header: b"" unless binary)."""
    out, blobs = [], []
    for name, arr in outputs:
        t = {"name": name, "datatype": NUMPY_TO_V2.get(str(arr.dtype), "FP32"),
             "shape": [int(d) for d in arr.shape]}
        if binary:
            raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            t["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            t["data"] = arr.ravel().tolist()
        out.append(t)
    return out, b"".join(blobs)


# ------------------------------------------------------------------------------- execution
# Per-request phases, summed over the successful requests (Triton's statistics extension: count and
# ns per phase; "decode" and "encode" are this endpoint's additions, the HTTP body to tensors and
# back). queue: waiting for an instance (the batching delay included) and for the event loop to take
# the answer back; success: the whole request inside the endpoint, from the handler's start.
PHASES = ("success", "queue", "decode", "compute_input", "compute_infer", "compute_output", "encode")


class Stats(object):
    """Server-side counts, read by /stats: requests, executions, batch-size histogram, and the
    per-phase time of every successful request (what a client's latency is made of)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.executions = 0
        self.batches = {}  # batch rows -> [count, ns]
        self.phases = {k: [0, 0] for k in PHASES}

    def served(self, ns_by_phase):
        with self.lock:
            for k, ns in ns_by_phase.items():
                c = self.phases[k]
                c[0] += 1
                c[1] += max(0, int(ns))

    def doc(self, name):
        """The Triton-shaped statistics document of GET /v2/models/{name}/stats."""
        with self.lock:
            batch_stats = [{"batch_size": k, "compute_infer": {"count": v[0], "ns": v[1]}}
                           for k, v in sorted(self.batches.items())]
            inference = {k: {"count": c, "ns": ns} for k, (c, ns) in self.phases.items()}
            return {"model_stats": [{"name": name, "version": "1", "inference_count": self.requests,
                                     "execution_count": self.executions, "inference_stats": inference,
                                     "batch_stats": batch_stats}]}

    def executed(self, rows, ns):
        with self.lock:
            self.executions += 1
            c = self.batches.setdefault(rows, [0, 0])
            c[0] += 1
            c[1] += ns


class Item(object):
    """One request between the event loop and an instance; the times (perf_counter seconds) and
    the model's phase ns are filled in on the way, for the per-request statistics."""
    __slots__ = ("arrays", "rows", "future", "loop", "t_enq", "t_start", "t_done", "ns")

    def __init__(self, arrays, rows, future, loop):
        self.arrays, self.rows, self.future, self.loop = arrays, rows, future, loop
        self.t_enq = time.perf_counter()
        self.t_start = self.t_done = self.t_enq
        self.ns = (0, 0, 0)


def _resolve(fut, value, exc):
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class Instance(threading.Thread):
    """One predictor worker: takes a request (and, with batching, more up to the delay), runs it."""

    def __init__(self, idx, engine, work, args, stats, hooks):
        threading.Thread.__init__(self, name="instance-%d" % idx)
        self.daemon = True
        self.engine, self.work, self.args, self.stats, self.hooks = engine, work, args, stats, hooks

    def _gather(self, first, carry):
        import queue as _queue
        batch, rows = [first], first.rows
        if self.args.max_batch <= 1:
            return batch, None
        deadline = first.t_enq + self.args.max_queue_delay_ms / 1000.0
        while rows < self.args.max_batch:
            wait = deadline - time.perf_counter()
            try:
                nxt = self.work.get(timeout=wait) if wait > 0 else self.work.get_nowait()
            except _queue.Empty:
                break
            if nxt is None:  # stop: leave the sentinel for the others, finish this batch
                self.work.put(None)
                break
            if rows + nxt.rows > self.args.max_batch:
                return batch, nxt
            batch.append(nxt)
            rows += nxt.rows
        return batch, None

    def run(self):
        import numpy as np
        carry = None
        while True:
            first = carry if carry is not None else self.work.get()
            carry = None
            if first is None:
                return
            batch, carry = self._gather(first, carry)
            t0 = time.perf_counter()
            try:
                self.hooks.before_execute(len(batch))
                t_hook = time.perf_counter()
                if len(batch) == 1:
                    joined, ns = self.engine.infer_timed(batch[0].arrays)
                    outs = [joined]
                else:
                    names = list(batch[0].arrays)
                    merged = dict((n, np.concatenate([b.arrays[n] for b in batch], axis=0)) for n in names)
                    joined, ns = self.engine.infer_timed(merged)
                    outs, start = [], 0
                    for b in batch:
                        outs.append([(n, a[start:start + b.rows]) for n, a in joined])
                        start += b.rows
                t1 = time.perf_counter()
                ns = (ns[0], ns[1] + _ns(t_hook - t0), ns[2])  # --service-ms is the test mode's "model"
                self.stats.executed(sum(b.rows for b in batch), _ns(t1 - t0))
                for b, o in zip(batch, outs):
                    b.t_start, b.t_done, b.ns = t0, t1, ns  # each request of a batch waited the whole batch
                    b.loop.call_soon_threadsafe(_resolve, b.future, o, None)
            except Exception as exc:  # answered 500 (400 for BadRequest) per request
                for b in batch:
                    b.loop.call_soon_threadsafe(_resolve, b.future, None, exc)


class Hooks(object):
    """The test-mode behaviours (service time, stalls, crash), one place for both paths."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.count = 0

    def on_request(self):
        """Called per request in the event loop; may stall the whole server or crash it."""
        a = self.args
        with self.lock:
            self.count += 1
            n = self.count
        if a.inject_crash_after and n > a.inject_crash_after:
            log("fatal: injected crash after %d requests" % a.inject_crash_after)
            os._exit(EXIT_CRASH_INJECTED)
        if a.inject_stall_ms and n % a.stall_every == 0:
            time.sleep(a.inject_stall_ms / 1000.0)  # stop-the-world, like a GC pause

    def before_execute(self, _n):
        if self.args.service_ms:
            time.sleep(self.args.service_ms / 1000.0)


# ------------------------------------------------------------------------------- HTTP app
def build_app(args, engines, stats, hooks, state):
    """The starlette app; `engines[0]` describes the model (all instances load the same files)."""
    import asyncio
    import queue as _queue
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    meta = {"name": args.name, "versions": ["1"], "platform": engines[0].platform,
            "inputs": engines[0].inputs, "outputs": engines[0].outputs}
    # One instance without batching runs each request in the event loop itself: predictor.run()
    # holds the GIL, so a worker thread would not let the loop do anything meanwhile, only add two
    # thread handoffs per request (measured: ~4 ms of queue_ms per request on a loaded 2-core box).
    # A request that arrives during a run then waits in its socket, not in `queue`: that wait is in
    # the client's latency, outside the endpoint's server_ms. --service-ms (a sleep, which frees
    # the GIL) keeps the worker thread, so its test endpoint still queues inside.
    inline = args.instances == 1 and args.max_batch <= 1 and not args.service_ms
    work = _queue.Queue()
    workers = []
    if not inline:
        for i, eng in enumerate(engines):
            w = Instance(i, eng, work, args, stats, hooks)
            w.start()
            workers.append(w)
    state["work"], state["workers"] = work, workers

    def err(status, message):
        return JSONResponse({"error": message}, status_code=status)

    def known(request):
        return request.path_params["name"] == args.name

    async def live(_request):
        return JSONResponse({"live": True})

    async def ready(_request):
        return JSONResponse({"ready": True})

    async def model_meta(request):
        if not known(request):
            return err(404, "unknown model %r (this server has %r)" % (request.path_params["name"], args.name))
        return JSONResponse(meta)

    async def model_ready(request):
        return JSONResponse({"name": args.name, "ready": True}) if known(request) else err(404, "unknown model")

    async def model_stats(request):
        if not known(request):
            return err(404, "unknown model")
        return JSONResponse(stats.doc(args.name))

    async def infer(request):
        try:
            return await _infer(request)
        except Exception as exc:  # never a bare 500: say what broke, in the answer and the log
            import traceback
            log("error in infer: %s" % traceback.format_exc().strip().replace("\n", " | "))
            return err(500, "%s: %s" % (type(exc).__name__, exc))

    async def _infer(request):
        if not known(request):
            return err(404, "unknown model %r (this server has %r)" % (request.path_params["name"], args.name))
        t0 = time.perf_counter()
        body = await request.body()
        blob = None
        try:
            hlen = request.headers.get("inference-header-content-length")
            if hlen is not None:
                try:
                    hlen = int(hlen)
                except ValueError:
                    raise BadRequest("Inference-Header-Content-Length %r is not an integer" % hlen)
                if not 0 < hlen <= len(body):
                    raise BadRequest("Inference-Header-Content-Length %d does not fit a %d-byte body"
                                     % (hlen, len(body)))
                view = memoryview(body)  # the tensors are read in place, not copied out of the body
                body, blob = body[:hlen], view[hlen:]
            doc = json.loads(body.decode("utf-8"))
            arrays, rows = decode_inputs(doc, want_arrays=not (inline and args.noop), blob=blob)
        except BadRequest as exc:
            return err(400, str(exc))
        except ValueError as exc:
            return err(400, "request body is not JSON: %s" % exc)
        hooks.on_request()
        with stats.lock:
            stats.requests += 1
        t1 = time.perf_counter()
        if inline:
            item = Item(arrays or {"x": [0] * rows}, rows, None, None)
            try:
                outs, item.ns = engines[0].infer_timed(item.arrays)
            except BadRequest as exc:
                return err(400, str(exc))
            item.t_start, item.t_done = t1, time.perf_counter()
            stats.executed(rows, _ns(item.t_done - t1))
        else:
            if args.max_batch > 1 and rows > args.max_batch:
                return err(400, "batch of %d rows is larger than --max-batch %d" % (rows, args.max_batch))
            loop = asyncio.get_event_loop()
            fut = loop.create_future()
            item = Item(arrays, rows, fut, loop)
            work.put(item)
            try:
                outs = await fut
            except BadRequest as exc:
                return err(400, str(exc))
            except Exception as exc:
                return err(500, "%s: %s" % (type(exc).__name__, exc))
        t2 = time.perf_counter()
        response = _answer(args.name, doc, outs)
        stats.served({"success": _ns(time.perf_counter() - t0), "decode": _ns(t1 - t0),
                      "queue": _ns((item.t_start - t1) + (t2 - item.t_done)), "compute_input": item.ns[0],
                      "compute_infer": item.ns[1], "compute_output": item.ns[2],
                      "encode": _ns(time.perf_counter() - t2)})
        return response

    def _answer(name, doc, outs):
        """The v2 answer (binary tensors when the request asks for them)."""
        binary = wants_binary_outputs(doc)
        tensors, raw = encode_outputs(outs, binary)
        resp = {"model_name": name, "model_version": "1", "outputs": tensors}
        if "id" in doc:
            resp["id"] = doc["id"]
        head = json.dumps(resp, separators=(",", ":")).encode("utf-8")
        if binary:
            return Response(head + raw, media_type="application/octet-stream",
                            headers={"Inference-Header-Content-Length": str(len(head))})
        return Response(head, media_type="application/json")

    routes = [Route("/v2/health/live", live), Route("/v2/health/ready", ready),
              Route("/v2/models/{name}", model_meta), Route("/v2/models/{name}/ready", model_ready),
              Route("/v2/models/{name}/stats", model_stats),
              Route("/v2/models/{name}/infer", infer, methods=["POST"]),
              Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"])]
    return Starlette(routes=routes)


# ------------------------------------------------------------------------------- lifecycle
def bind_socket(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it the
    # response headers and body wait on Nagle + delayed ACK (~40 ms per keep-alive request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RunnerFailure("cannot bind %s:%d: %s (port in use? pass --port 0 for a free one)" % (host, port, exc))
    sock.listen(2048)
    return sock


def write_ready(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, path)


def make_server(app):
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn without its own signal handling: this runner owns SIGTERM and the lifetime."""

        def install_signal_handlers(self):  # uvicorn < 0.29
            pass

        @contextlib.contextmanager
        def capture_signals(self):  # uvicorn >= 0.29 (re-raises signals after shutdown otherwise)
            yield

    kw = dict(log_level="warning", access_log=False, lifespan="off", timeout_keep_alive=30)
    try:
        config = uvicorn.Config(app, timeout_graceful_shutdown=2, **kw)
    except TypeError:  # older uvicorn
        config = uvicorn.Config(app, **kw)
    return _Server(config)


def watchdog(deadline_box, code_box):
    """Hard stop: if a clean stop has not finished by the deadline, exit anyway."""
    while True:
        time.sleep(0.2)
        if time.monotonic() > deadline_box[0]:
            log("watchdog: clean stop did not finish in time, exiting")
            os._exit(code_box[0])


def serve(args):
    import asyncio
    # predictor.run() holds the GIL (Paddle 3.3.1, measured: the event loop stalls for whole runs),
    # so the loop and an instance hand the GIL to each other at least twice per request. At
    # CPython's default 5 ms switch interval a thread that wants the GIL may wait that long;
    # 0.5 ms keeps those handoffs far below a model's run.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    t0 = time.monotonic()
    hard = [t0 + args.max_seconds + 10.0]
    code = [0]
    wd = threading.Thread(target=watchdog, args=(hard, code), name="watchdog")
    wd.daemon = True
    wd.start()

    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    engines = []
    try:
        n_eng = 1 if args.noop else args.instances
        for _ in range(n_eng):
            engines.append(NoopEngine(args) if args.noop else PaddleEngine(args))
        while len(engines) < args.instances:
            engines.append(engines[0])  # noop: one engine object serves all instances
    except RunnerFailure:
        raise
    except Exception as exc:
        raise RunnerFailure("cannot load the model: %s: %s" % (type(exc).__name__, exc))
    load_s = time.monotonic() - t0
    stats, hooks, state = Stats(), Hooks(args), {}
    app = build_app(args, engines, stats, hooks, state)
    server = make_server(app)
    stop_reason = []

    def stop(reason):
        if not stop_reason:
            stop_reason.append(reason)
            log("stopping: %s" % reason)
            hard[0] = min(hard[0], time.monotonic() + 8.0)
        server.should_exit = True

    async def main():
        loop = asyncio.get_event_loop()
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, stop, name)
        remaining = args.max_seconds - (time.monotonic() - t0)
        loop.call_later(max(0.0, remaining), stop, "max_seconds")
        task = loop.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
            raise RunnerFailure("uvicorn stopped before it was ready")
        info = {"runner": RUNNER, "runner_version": RUNNER_VERSION, "pid": os.getpid(), "host": args.host,
                "port": port, "name": args.name, "instances": args.instances, "threads": args.threads,
                "max_batch": args.max_batch, "max_queue_delay_ms": args.max_queue_delay_ms,
                "onednn": args.onednn, "switch_interval_s": sys.getswitchinterval(),
                "noop": bool(args.noop), "load_s": round(load_s, 3),
                "inputs": engines[0].inputs, "outputs": engines[0].outputs}
        if args.ready_file:
            write_ready(args.ready_file, info)
        log("ready on %s:%d (pid %d, %d instance(s), max_batch %d, load %.2fs)"
            % (args.host, port, os.getpid(), args.instances, args.max_batch, load_s))
        await task

    asyncio.run(main())
    for _ in state.get("workers", []):
        state["work"].put(None)
    for w in state.get("workers", []):
        w.join(timeout=2.0)
    log("stopped (%s) after %.1fs: %d requests, %d executions, batch sizes %s"
        % (stop_reason[0] if stop_reason else "server exit", time.monotonic() - t0, stats.requests,
           stats.executions, json.dumps(dict((str(k), v[0]) for k, v in sorted(stats.batches.items())))))


def main(argv=None):
    args = parse_args(argv)
    try:
        serve(args)
    except RunnerFailure as exc:
        log("error: %s" % exc)
        return EXIT_FAILED
    except Exception as exc:  # one line, never a silent hang
        log("error: %s: %s" % (type(exc).__name__, exc))
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
