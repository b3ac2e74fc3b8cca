#!/usr/bin/env python3
"""ONNX Runtime runner: one trial of one .onnx model, in its own process, on the device.

Why standalone: copied alone to devices (Python 3.7+), so it imports only the standard library,
numpy and onnxruntime (lazily: the host imports it for its constants without onnxruntime). It writes
the same JSON document as pi_runner.py, schema ``hwlab.runner/1`` (docs/architecture.md), with
``runner: ort_runner``, ``model.format: onnx`` and ``env.onnxruntime`` / ``config.providers``.

Same protocol as pi_runner.py (warm-up by count AND time, adaptive steady state on the
order-statistic CI of the median, raw samples, VmHWM), so a Paddle Inference row and an ONNX
Runtime row of the same job differ only in the runtime:
  load_ms   ``SessionOptions`` + ``InferenceSession(...)`` (model load + graph optimisation).
  first_ms  binding every input (numpy -> OrtValue) + ``run_with_iobinding`` + copying every
            output to numpy.
  samples   ``time.perf_counter()`` around ``session.run_with_iobinding(binding)`` alone: inputs
            stay bound, outputs stay in ONNX Runtime's memory (pi_runner times ``predictor.run()``
            with the inputs copied in once and the outputs not copied out: the same work).
Threads: intra-op = ``--threads``, inter-op = 1, ``ORT_SEQUENTIAL``, ``ORT_ENABLE_ALL`` graph
optimisations; pi_runner's ``set_cpu_math_library_num_threads`` is the counterpart.
Providers: ``--device cpu`` -> CPUExecutionProvider; ``--device gpu`` -> CUDAExecutionProvider
(onnxruntime-gpu; refused when the installed onnxruntime has no CUDA provider). ONNX Runtime's CUDA
provider synchronises its stream at the end of each run (unverified here: no GPU in this lab's CI).

Output check (``--reference-inputs FILE.npz``) and eval set (``--eval-inputs FILE.npz``): as in
pi_runner.py, after timing, each sample is fed (``session.run``, outside the timed loop) and the
compact outputs go into ``outputs_check`` (argmax per sample into ``eval_check``); the host compares
them with the model's fp32 Paddle Inference reference (lab/agreement.py).

The protocol, the /proc probes and the JSON writer come from runner_core.py, the one companion
that travels with every runner (standard library only); nothing else of the lab is imported.

Any exception (and SIGTERM) ends in ok=false, a one-line error, exit code 3, and a JSON document
with whatever was measured so far.
"""
from __future__ import print_function

import argparse
import os
import platform
import socket
import sys
import time

SCHEMA = "hwlab.runner/1"
RUNNER = "ort_runner"
RUNNER_VERSION = "1.0.0"
EXIT_FAILED = 3

# The protocol, /proc probes, clocks and the JSON writer: the travelling companion, one definition.
try:
    from . import runner_core as core  # imported on the host as part of lab.runners (tests)
except ImportError:
    import runner_core as core  # on the device: the file travels next to this one

RunnerFailure = core.RunnerFailure
OUTPUTS_CHECK_SCHEMA, EVAL_CHECK_SCHEMA = core.OUTPUTS_CHECK_SCHEMA, core.EVAL_CHECK_SCHEMA
cpu_model = core.cpu_model
cpu_freqs_khz = core.cpu_freqs_khz
cpu_governor = core.cpu_governor
thermal_temps_c = core.thermal_temps_c
utc_now = core.utc_now
read_uptime = core.read_uptime
_one_line = core.one_line
parse_input_spec = core.parse_input_spec
install_signal_handlers = core.install_signal_handlers
make_inputs = core.make_inputs
warm_up = core.warm_up
steady_state = core.steady_state
compact_output = core.compact_output
affinity_cpus = core.affinity_cpus
busy_snapshot = core.busy_snapshot
record_busy = core.record_busy


# --------------------------------------------------------------------------- ONNX Runtime specific

PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}
# numpy dtype name -> the ONNX tensor type string onnxruntime reports for an input.
ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "float64": "tensor(double)",
             "int64": "tensor(int64)", "int32": "tensor(int32)", "uint8": "tensor(uint8)",
             "int8": "tensor(int8)", "bool": "tensor(bool)"}


def build_parser():
    p = argparse.ArgumentParser(prog="ort_runner.py", description="ONNX Runtime runner (hwlab)")
    p.add_argument("--model-file", required=True, help=".onnx model")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="e.g. x:1x3x224x224:float32 (repeatable)")
    p.add_argument("--vocab-max", type=int, default=1000, help="int inputs are random in [0, N)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (inter-op is 1)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--gpu-id", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="what the model holds (int8 = QDQ-quantised .onnx); recorded, not converted")
    core.add_protocol_flags(p)
    core.add_output_flags(p)
    core.add_job_flags(p)
    p.add_argument("--pid-file", default=None, help="write this process's PID here")
    return p


def validate(args):
    if args.threads < 1:
        raise RunnerFailure("--threads must be >= 1, got %d" % args.threads)
    if not args.model_file.endswith(".onnx"):
        raise RunnerFailure("model file %r must end in .onnx" % args.model_file)
    if args.max_iters and args.max_iters < max(1, args.min_iters):
        raise RunnerFailure("--max-iters (%d) must be >= --min-iters (%d)" % (args.max_iters, args.min_iters))
    for name in ("warmup", "min_iters", "max_iters", "warmup_seconds", "min_seconds", "max_seconds"):
        if getattr(args, name) < 0:
            raise RunnerFailure("--%s must be >= 0" % name.replace("_", "-"))
    if args.target_rel_ci <= 0:
        raise RunnerFailure("--target-rel-ci must be > 0")
    if args.vocab_max < 1:
        raise RunnerFailure("--vocab-max must be >= 1")
    if not args.input:
        raise RunnerFailure("at least one --input name:shape:dtype is required")


def session_options(ort, threads):
    """intra-op = threads, inter-op 1, sequential, all graph optimisations (the lab's rule)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def providers_for(ort, args):
    available = list(ort.get_available_providers())
    wanted = PROVIDERS[args.device]
    if wanted not in available:
        raise RunnerFailure("onnxruntime %s has no %s (available: %s); install %s"
                            % (ort.__version__, wanted, ", ".join(available),
                               "onnxruntime-gpu" if args.device == "gpu" else "onnxruntime"))
    if args.device == "gpu":
        return [(wanted, {"device_id": args.gpu_id}), "CPUExecutionProvider"]
    return [wanted]


def check_inputs(session, specs):
    """The --input specs must name every model input, with its rank, fixed dims and type."""
    model_inputs = session.get_inputs()
    names = [s[0] for s in specs]
    wanted = [i.name for i in model_inputs]
    if sorted(names) != sorted(wanted):
        raise RunnerFailure("inputs do not match the model: model wants [%s], got [%s]"
                            % (", ".join(wanted), ", ".join(names)))
    by_name = dict((s[0], s) for s in specs)
    for inp in model_inputs:
        _, shape, dtype = by_name[inp.name]
        dims = list(inp.shape or [])
        fixed_ok = len(dims) == len(shape) and all(not isinstance(d, int) or d in (-1, s)
                                                   for d, s in zip(dims, shape))
        if not fixed_ok:
            raise RunnerFailure("input %s: shape %s does not fit the model's %s" % (inp.name, shape, dims))
        if ORT_TYPES.get(dtype) != inp.type:
            raise RunnerFailure("input %s: dtype %s but the model wants %s" % (inp.name, dtype, inp.type))


def measure(args, doc):
    """Fill doc in place; raises on failure (the caller records what was measured)."""
    validate(args)
    specs = [parse_input_spec(t) for t in args.input]
    if not os.path.isfile(args.model_file):
        raise RunnerFailure("model file not found: %s" % args.model_file)
    doc["model"]["sha256"] = core.files_sha256((args.model_file,))  # weights are inside the .onnx
    core.record_inputs(doc, specs)

    core.timed_import(doc, import_runtime)
    import numpy as np
    import onnxruntime as ort
    doc["env"]["providers_available"] = list(ort.get_available_providers())
    install_signal_handlers()
    providers = providers_for(ort, args)

    timings = doc["timings"]
    t0 = time.perf_counter()
    session = ort.InferenceSession(args.model_file, sess_options=session_options(ort, args.threads),
                                   providers=providers)
    timings["load_ms"] = (time.perf_counter() - t0) * 1e3
    doc["config"]["providers"] = list(session.get_providers())
    check_inputs(session, specs)
    arrays = make_inputs(np, specs, args.seed, args.vocab_max)
    out_names = [o.name for o in session.get_outputs()]
    where = "cuda" if args.device == "gpu" else "cpu"

    # First inference: bind in + run + copy out.
    t0 = time.perf_counter()
    binding = session.io_binding()
    for name, arr in arrays:
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, where, args.gpu_id))
    for name in out_names:
        binding.bind_output(name, where, args.gpu_id)
    session.run_with_iobinding(binding)
    outs = binding.copy_outputs_to_cpu()
    timings["first_ms"] = (time.perf_counter() - t0) * 1e3
    doc["outputs"] = [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype)}
                      for n, o in zip(out_names, outs)]

    def run():
        session.run_with_iobinding(binding)

    w_iters, _ = warm_up(run, args.warmup, args.warmup_seconds, timings)
    sys.stderr.write("ort_runner: steady state (load %.1f ms, first %.1f ms, %d warm-up iterations)\n"
                     % (timings["load_ms"], timings["first_ms"], w_iters))
    sys.stderr.flush()
    cpus = affinity_cpus()
    busy_start = busy_snapshot(cpus)
    up_start = read_uptime()
    steady_state(run, args.min_iters, args.min_seconds, args.max_seconds, args.target_rel_ci,
                 args.max_iters, timings)
    up_end = read_uptime()
    record_busy(doc, busy_start, busy_snapshot(cpus), cpus)
    if up_start is not None and up_end is not None:
        doc["clock"] = {"name": "uptime", "steady_start": up_start, "steady_end": up_end}
    binding.copy_outputs_to_cpu()  # the session must still produce outputs after the loop
    names = [n for n, _ in arrays]
    if args.reference_inputs:
        doc["outputs_check"] = run_reference_set(np, session, names, args.reference_inputs)
    if args.eval_inputs:
        doc["eval_check"] = run_eval_set(np, session, names, args.eval_inputs)
    if args.device == "gpu":
        doc["memory"]["gpu_mem_note"] = "unavailable: onnxruntime reports no allocator peak (use NVML)"


def run_reference_set(np, session, input_names, path):
    """Feed each reference sample (after timing, with ``session.run``: a check, not the timed io
    binding) and return the ``outputs_check`` document."""
    out_names = [o.name for o in session.get_outputs()]
    return core.outputs_check(np, lambda feed: session.run(None, feed), input_names, out_names, path)


def run_eval_set(np, session, input_names, path):
    """Feed each eval sample (after timing): argmax of the first output, per sample."""
    return core.eval_check(np, lambda feed: session.run(None, feed), input_names, path)


def new_doc(args, argv):
    return {
        "schema": SCHEMA, "runner": RUNNER, "runner_version": RUNNER_VERSION,
        "ok": False, "error": None,
        "command": [sys.executable or "python3"] + list(argv),
        "model": {"path": args.model_file, "params_path": None, "format": "onnx", "sha256": None},
        "config": {"threads": args.threads, "onednn": False, "device": args.device,
                   "precision": args.precision, "trt": False, "batch": None, "memory_optim": None,
                   "inputs": [], "seed": args.seed, "intra_op_threads": args.threads,
                   "inter_op_threads": 1, "execution_mode": "sequential",
                   "graph_optimization": "all", "providers": None},
        "protocol": {"warmup": args.warmup, "warmup_seconds": args.warmup_seconds,
                     "min_iters": args.min_iters, "min_seconds": args.min_seconds,
                     "max_seconds": args.max_seconds, "target_rel_ci": args.target_rel_ci,
                     "max_iters": args.max_iters or None, "process": args.process},
        "env": {"python": platform.python_version(), "paddle": None, "onnxruntime": None,
                "providers_available": None, "numpy": None,
                "hostname": socket.gethostname(), "machine": platform.machine(),
                "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                "governor": cpu_governor(), "freq_khz_start": cpu_freqs_khz(), "freq_khz_end": None,
                "temps_c_start": thermal_temps_c(), "temps_c_end": None, "pid": os.getpid()},
        "timings": {"import_ms": None, "load_ms": None, "first_ms": None, "warmup_iters": 0, "warmup_ms_total": None,
                    "samples_ms": [], "steady_seconds": None, "converged": False, "stop_reason": None,
                    "rel_ci": None,
                    "clock": "time.perf_counter around session.run_with_iobinding() (inputs bound once)"},
        "memory": {"peak_rss_mb": None, "rss_source": None, "gpu_mem_mb": None,
                   "gpu_mem_note": "no GPU" if args.device == "cpu" else None},
        "telemetry": {"nvml": None},
        "started_at": utc_now(), "finished_at": None,
    }


def import_runtime():
    """The runtime's imports (timed as import_ms; once per job with --process fork)."""
    import numpy as np
    import onnxruntime as ort
    return {"numpy": np.__version__, "onnxruntime": ort.__version__}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return core.run_job(RUNNER, args, argv, lambda targs, out: run_trial(targs, argv, out), import_runtime,
                        (args.model_file,))


def run_trial(args, argv, out):
    """One trial in this process (a fresh one, or a forked child of run_job)."""
    doc = new_doc(args, [sys.argv[0] if sys.argv and sys.argv[0] else "ort_runner.py"] + argv)
    install_signal_handlers()
    if args.pid_file:
        try:
            with open(args.pid_file, "w") as fh:
                fh.write("%d\n" % os.getpid())
        except OSError as exc:
            sys.stderr.write("ort_runner: cannot write pid file: " + _one_line(exc) + "\n")
    code = 0
    try:
        measure(args, doc)
        doc["ok"] = True
    except BaseException as exc:  # KeyboardInterrupt too: still write what was measured
        doc["ok"] = False
        doc["error"] = _one_line(exc)
        code = EXIT_FAILED
        sys.stderr.write("ort_runner: " + doc["error"] + "\n")
    try:
        core.finish(doc, out)
    except Exception as exc:
        sys.stderr.write("ort_runner: could not write result: " + _one_line(exc) + "\n")
        code = EXIT_FAILED
    return code


if __name__ == "__main__":
    core.leave(main())
