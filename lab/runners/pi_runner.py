#!/usr/bin/env python3
"""Paddle Inference runner: the trials of one model, each a cold predictor in a process of its own.

Why standalone: this file travels to servers and boards (old Debian, Python 3.7+) with its
companion runner_core.py (the protocol code the runners share) and nothing else, so it imports only
the standard library, runner_core, numpy and paddle (paddle/numpy lazily, so the host can import it
for its constants without paddle). It writes one JSON document, schema ``hwlab.runner/1``
(docs/architecture.md), to ``--out PATH`` or as the last stdout line with ``--out -``.

What is measured, in this order:
  import_ms ``import numpy, paddle, paddle.inference`` in the process that imported them: the
            runner itself with ``--process fork`` (once per job), else the trial's own process.
  load_ms   wall time of ``Config(...)`` + option setup + ``create_predictor`` (model load + graph
            optimisation). Python/paddle import time is NOT included.
  first_ms  the first inference: ``copy_from_cpu`` of every input + ``run()`` + ``copy_to_cpu`` of
            every output (the "load to first prediction" path an app sees).
  warm-up   at least ``--warmup`` iterations AND at least ``--warmup-seconds``.
  steady    until min iterations, min seconds AND the target relative 95% CI of the median are all
            met (checked every ~10 iterations, less often for very fast models so that the check
            stays O(n log n) overall), else stop at ``--max-seconds`` with converged=false
            (stop_reason "max_seconds"). ``--max-iters N`` adds a count limit (stop_reason
            "max_iters"), which with a huge target gives benchmark_bin's fixed --repeats protocol.

Timing choice (kept identical in bench/harness_overhead.py's bare loop): like Paddle Lite's
benchmark_bin, inputs are copied in once (during the first inference) and stay set; each warm-up
and steady sample is ``time.perf_counter()`` around ``predictor.run()`` alone. Outputs are NOT
copied out per iteration: on CPU ``run()`` returns after the computation, so a per-iteration
``copy_to_cpu`` would only add a memcpy that depends on output size, not on the chip. The outputs
are copied out once more after the steady phase, as a check that the predictor still works.
On GPU, ``run()`` of Paddle Inference synchronises its stream before returning (unverified here: no
GPU in this lab's CI).

CI of the median: distribution-free, from order statistics. For n sorted samples the interval
[x_(l), x_(u)] with l, u from Binomial(n, 1/2) covers the true median with probability >= 95%.
The relative CI reported is the half-width (x_(u) - x_(l)) / 2 divided by the sample median.

Output check (``--reference-inputs FILE.npz``): AFTER timing, the runner feeds each sample of the
host's reference input set (keys ``in:<input name>``, arrays N x run shape) and writes compact
outputs into ``outputs_check`` (runner_core.compact_output: whole values for outputs up to WHOLE_MAX elements,
else a fixed strided sample of SAMPLE_SIZE elements; top-k, argmax, sum, sum of squares). The host
compares them with its fp32 reference (lab/agreement.py); the time it took is reported so its share
of the job's device time is known. Eval set (``--eval-inputs FILE.npz``, same layout, no labels:
they stay on the host): after that, the argmax of the first output per sample goes into
``eval_check``; the host scores it against the labels (lab/accuracy.py).

Precision int8: on CPU oneDNN int8 (``enable_onednn_int8``) over a quantised model
(quantize_linear/dequantize_linear ops from lab/quantize.py); on GPU TensorRT int8 with the
model's own scales (``use_calib_mode=False``: no calibration on the device).

Trials (``--trials N --process fork|fresh``, runner_core.run_job): the whole job in one runner
process. ``fork`` imports paddle once, then forks a child per trial that creates its predictor
cold (the runner process made none, initialised no device, started no threads: checked before each
fork, else the trials run as fresh processes with a note); one document per trial, one per line.

Any exception (and SIGTERM) ends in ok=false, a one-line error, exit code 3, and a JSON document
with whatever was measured so far.
"""
from __future__ import print_function

import argparse
import gc
import os
import sys
import time

try:
    from . import runner_core as core  # imported on the host as part of lab.runners (tests, lab.agreement)
except ImportError:
    import runner_core as core  # on the device: the file travels next to this one

SCHEMA = "hwlab.runner/1"
RUNNER = "pi_runner"
RUNNER_VERSION = "1.0.0"

RunnerFailure = core.RunnerFailure

# --------------------------------------------------------------------------------- argument parsing

def build_parser():
    p = argparse.ArgumentParser(prog="pi_runner.py", description="Paddle Inference runner (hwlab)")
    p.add_argument("--model-file", required=True, help=".json (PIR) or .pdmodel (legacy)")
    p.add_argument("--params-file", required=True)
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE",
                   help="e.g. x:1x3x224x224:float32 (repeatable)")
    p.add_argument("--vocab-max", type=int, default=1000, help="int inputs are random in [0, N)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onednn", choices=("on", "off"), default="on")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--gpu-id", type=int, default=0)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--trt", action="store_true", help="TensorRT subgraphs (paddle-inference-trt)")
    core.add_protocol_flags(p)
    p.add_argument("--sustained-s", type=float, default=0.0,
                   help="run continuously for this many seconds instead of the converging steady "
                        "phase, reporting per --window-s window (0 = off)")
    p.add_argument("--window-s", type=float, default=0.0, help="window length of a sustained run")
    core.add_output_flags(p)
    core.add_job_flags(p)
    p.add_argument("--pid-file", default=None,
                   help="write this process's PID here (the NVML sampler attributes GPU memory to it)")
    p.add_argument("--profile-ops", action="store_true",
                   help="per-operator profile of the steady iterations (Config.enable_profile); the "
                        "table goes into the JSON as op_profile. Use for an extra trial, never a timed one")
    return p


def model_format(path):
    if path.endswith(".json"):
        return "json"
    if path.endswith(".pdmodel"):
        return "pdmodel"
    raise RunnerFailure("model file %r must end in .json (Paddle 3 PIR) or .pdmodel (legacy)" % path)


def validate(args):
    if args.threads < 1:
        raise RunnerFailure("--threads must be >= 1, got %d" % args.threads)
    if args.device == "cpu" and args.precision not in ("fp32", "int8"):
        raise RunnerFailure("precision %s is not supported on --device cpu (fp32, or int8 with oneDNN); "
                            "use --device gpu" % args.precision)
    if args.device == "cpu" and args.precision == "int8" and args.onednn != "on":
        raise RunnerFailure("precision int8 on CPU runs through oneDNN int8: drop --onednn off")
    if args.trt and args.device != "gpu":
        raise RunnerFailure("--trt needs --device gpu")
    if args.device == "gpu" and args.precision == "int8" and not args.trt:
        raise RunnerFailure("precision int8 needs --trt (TensorRT); Paddle Inference GPU alone is fp32/fp16")
    core.validate_protocol(args)
    if args.sustained_s < 0 or (args.sustained_s > 0 and not 0 < args.window_s <= args.sustained_s):
        raise RunnerFailure("--sustained-s must be >= 0, and with it 0 < --window-s <= --sustained-s")
    if args.vocab_max < 1:
        raise RunnerFailure("--vocab-max must be >= 1")
    if not args.input:
        raise RunnerFailure("at least one --input name:shape:dtype is required")


# ------------------------------------------------------------------------------------ the measuring

def make_config(pi, args, fmt, doc):
    """Build the paddle_infer.Config; records memory_optim in doc['config']."""
    config = core.paddle_config(pi, args.model_file, args.params_file, args.device, args.threads,
                                args.onednn == "on")
    if args.device == "cpu":
        if args.onednn == "on" and args.precision == "int8":
            on8 = getattr(config, "enable_onednn_int8", None) or getattr(config, "enable_mkldnn_int8", None)
            if on8 is None:
                raise RunnerFailure("this paddle has no enable_onednn_int8: cannot run int8 on CPU")
            on8()
    else:
        prec = pi.PrecisionType
        gpu_prec = prec.Half if (args.precision == "fp16" and not args.trt) else prec.Float32
        config.enable_use_gpu(256, args.gpu_id, gpu_prec)
        if args.trt:
            trt_prec = {"fp32": prec.Float32, "fp16": prec.Half, "int8": prec.Int8}[args.precision]
            # use_calib_mode defaults to True in the binding (paddle.md 4.2): we never calibrate here.
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=doc["config"]["batch"],
                                          min_subgraph_size=3, precision_mode=trt_prec,
                                          use_static=False, use_calib_mode=False)
    doc["config"]["memory_optim"] = core.memory_optim(config, args.model_file)
    return config


def measure(args, doc):
    """Fill doc in place; raises on failure (the caller records what was measured)."""
    validate(args)
    specs = [core.parse_input_spec(t) for t in args.input]
    fmt = model_format(args.model_file)
    doc["model"]["format"] = fmt
    for path, what in ((args.model_file, "model"), (args.params_file, "params")):
        if not os.path.isfile(path):
            raise RunnerFailure("%s file not found: %s" % (what, path))
    doc["model"]["sha256"] = core.files_sha256((args.model_file, args.params_file))
    core.record_inputs(doc, specs)
    names = [s[0] for s in specs]

    core.timed_import(doc, import_runtime)
    import numpy as np
    import paddle
    import paddle.inference as pi
    core.install_signal_handlers()

    timings = doc["timings"]
    t0 = time.perf_counter()
    config = make_config(pi, args, fmt, doc)
    if args.profile_ops:
        config.enable_profile()
    predictor = pi.create_predictor(config)
    timings["load_ms"] = (time.perf_counter() - t0) * 1e3

    model_inputs = list(predictor.get_input_names())
    missing = [n for n in model_inputs if n not in names]
    extra = [n for n in names if n not in model_inputs]
    if missing or extra:
        raise RunnerFailure("inputs do not match the model: model wants [%s], got [%s]"
                            % (", ".join(model_inputs), ", ".join(names)))
    arrays = core.make_inputs(np, specs, args.seed, args.vocab_max)
    in_handles = [(predictor.get_input_handle(n), a) for n, a in arrays]
    out_handles = [predictor.get_output_handle(n) for n in predictor.get_output_names()]

    # First inference: copy in + run + copy out.
    t0 = time.perf_counter()
    for h, a in in_handles:
        h.reshape(list(a.shape))
        h.copy_from_cpu(a)
    predictor.run()
    outs = [h.copy_to_cpu() for h in out_handles]
    timings["first_ms"] = (time.perf_counter() - t0) * 1e3
    doc["outputs"] = [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype)}
                      for n, o in zip(predictor.get_output_names(), outs)]

    # Warm-up: count AND time.
    w_iters, w_total = core.warm_up(predictor.run, args.warmup, args.warmup_seconds, timings)
    core.steady_banner(RUNNER, timings, w_iters)
    if args.profile_ops:
        reset_op_profiler()  # the table then covers the steady iterations only

    def loop(cpus):
        if args.sustained_s > 0 and not args.profile_ops:  # the extra profiled run is a fixed count
            doc["sustained"] = core.sustained(predictor.run, args.sustained_s, args.window_s,
                                              args.target_rel_ci, timings, cpus=cpus)
        else:
            core.steady_state(predictor.run, args.min_iters, args.min_seconds, args.max_seconds,
                              args.target_rel_ci, args.max_iters, timings)

    core.steady_window(doc, loop)
    # The predictor must still produce outputs after the loop.
    for h in out_handles:
        h.copy_to_cpu()

    if args.reference_inputs:
        doc["outputs_check"] = run_reference_set(np, predictor, model_inputs, args.reference_inputs)
    if args.eval_inputs:
        doc["eval_check"] = run_eval_set(np, predictor, model_inputs, args.eval_inputs)

    if args.device == "gpu":
        try:
            reserved = paddle.device.cuda.max_memory_reserved(args.gpu_id)
            doc["memory"]["gpu_mem_mb"] = reserved / (1024.0 * 1024.0)
            doc["memory"]["gpu_mem_note"] = "paddle allocator max_memory_reserved (this process)"
        except Exception as exc:
            doc["memory"]["gpu_mem_note"] = "unavailable: " + core.one_line(exc)

    if args.profile_ops:
        # Paddle prints the table to fd 1 when the predictor is destroyed: destroy it here, with
        # fd 1 captured, while nothing else holds it (the tensor handles do not).
        box = [predictor]
        del predictor
        text = capture_fd1(lambda: (box.pop(), gc.collect()))
        prof = parse_profile_table(text)
        prof["iterations"] = len(timings["samples_ms"])
        prof["steady_ms_total"] = sum(timings["samples_ms"])
        doc["op_profile"] = prof


# ------------------------------------------------------------------------ per-operator profile

def reset_op_profiler():
    """Forget what the profiler saw so far (graph passes, load, first run, warm-up)."""
    import importlib
    for name in ("paddle.base.core", "paddle.fluid.core"):
        try:
            core = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(core, "reset_profiler"):
            core.reset_profiler()
            return
    raise RunnerFailure("this paddle has no core.reset_profiler: the op profile would include loading "
                        "and warm-up")


def _flush_c_stdout():
    """Flush C stdio: with fd 1 on a file, what C++ wrote may still sit in libc's buffer."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:  # no libc symbols (static builds): std::endl flushed most of it anyway
        pass


def capture_fd1(action):
    """Run action() with file descriptor 1 sent to a temporary file; return what was written.

    Also runs it in a temporary working directory: Paddle's profiler writes ./profile.log there.
    """
    import shutil
    import tempfile
    sys.stdout.flush()
    tmpdir = tempfile.mkdtemp(prefix="pi_runner_profile_")
    path = os.path.join(tmpdir, "stdout.txt")
    cwd = os.getcwd()
    saved = os.dup(1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.dup2(fd, 1)
        os.chdir(tmpdir)
        action()
        _flush_c_stdout()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)
        os.chdir(cwd)
    try:
        with open(path) as fh:
            return fh.read()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def parse_profile_table(text):
    """Paddle Inference's profiler report (printed when the predictor is destroyed) -> dict.

    Reads the first `Event Summary` (the report that merges all threads): one event per line,
    `name calls total min max ave ratio`, times in the report's unit (ms). Indented lines are
    nested events, already inside their parent's time: skipped, and counted.
    Returns {"place", "time_unit", "events": [{event, calls, total_ms, min_ms, max_ms, ave_ms,
    ratio}], "nested_skipped"}, or {"error": ...} when there is no such table.
    """
    place, unit, events, nested = None, "ms", [], 0
    in_table = False
    for raw in (text or "").replace("\r", "").split("\n"):
        line = raw.rstrip()
        stripped = line.strip()
        if not in_table:
            if stripped.startswith("Place:") and place is None:
                place = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("Time unit:"):
                unit = stripped.split(":", 1)[1].strip()
            elif stripped.startswith("Event ") and "Calls" in stripped and "Total" in stripped:
                in_table = True
            continue
        if not stripped or stripped.startswith("-"):
            if events or nested:
                break  # the first table ended
            continue
        if line[:1].isspace():
            nested += 1
            continue
        parts = stripped.rsplit(None, 6)
        if len(parts) != 7:
            break
        try:
            nums = [float(x) for x in parts[1:]]
        except ValueError:
            break
        events.append({"event": parts[0], "calls": int(nums[0]), "total_ms": nums[1], "min_ms": nums[2],
                       "max_ms": nums[3], "ave_ms": nums[4], "ratio": nums[5]})
    if not events:
        tail = [x.strip() for x in (text or "").splitlines() if x.strip()][-2:]
        return {"error": "the profiler printed no event table" + (": " + " | ".join(tail) if tail else "")}
    if unit != "ms":
        return {"error": "profiler time unit %r, expected ms" % unit}
    return {"place": place, "time_unit": unit, "events": events, "nested_skipped": nested}


def _predict(np, predictor, input_names):
    """`run_one(feed) -> outputs` for the checks: copy in, run, copy out (outside the timed loop)."""
    out_names = predictor.get_output_names()

    def run_one(feed):
        for name in input_names:
            h = predictor.get_input_handle(name)
            h.reshape(list(feed[name].shape))
            h.copy_from_cpu(feed[name])
        predictor.run()
        return [predictor.get_output_handle(o).copy_to_cpu() for o in out_names]
    return run_one, out_names


def run_reference_set(np, predictor, input_names, path):
    """Feed each reference sample (after timing) and return the ``outputs_check`` document."""
    run_one, out_names = _predict(np, predictor, input_names)
    return core.outputs_check(np, run_one, input_names, out_names, path)


def run_eval_set(np, predictor, input_names, path):
    """Feed each eval sample (after timing): argmax of the first output, per sample."""
    return core.eval_check(np, _predict(np, predictor, input_names)[0], input_names, path)


def new_doc(args, command):
    return core.new_doc(
        SCHEMA, RUNNER, RUNNER_VERSION, command,
        model={"path": args.model_file, "params_path": args.params_file, "format": None, "sha256": None},
        config={"threads": args.threads, "onednn": args.onednn == "on" and args.device == "cpu",
                "device": args.device, "precision": args.precision, "trt": bool(args.trt),
                "batch": None, "memory_optim": None, "inputs": [], "seed": args.seed},
        protocol=dict(core.protocol_doc(args), sustained_s=args.sustained_s or None,
                      window_s=args.window_s or None),
        env={"paddle": None}, clock="time.perf_counter around predictor.run()",
        gpu_mem_note="no GPU" if args.device == "cpu" else None)


def import_runtime():
    """The runtime's imports (timed as import_ms; once per job with --process fork)."""
    import numpy as np
    import paddle
    import paddle.inference  # noqa: F401 - loads the inference library itself
    return {"numpy": np.__version__, "paddle": paddle.__version__}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def trial(targs, out):
        doc = new_doc(targs, core.command_line("pi_runner.py", argv))
        return core.run_measured(RUNNER, doc, lambda d: measure(targs, d), out, targs.pid_file)
    return core.run_job(RUNNER, args, argv, trial, import_runtime, (args.model_file, args.params_file))


if __name__ == "__main__":
    core.leave(main())
