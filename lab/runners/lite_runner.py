#!/usr/bin/env python3
"""Paddle Lite runner: one trial of one `.nb` model through the paddlelite Python API.

For ARM Linux boards that have paddlelite built for their Python (`--with_python=ON`): there is no
aarch64 wheel and no CPython 3.11 wheel on PyPI (shared/reference/paddle.md §2.6), so on this lab's
host the import fails and the runner reports that cleanly (ok=false, exit 3). Phones use
benchmark_bin instead (lab/runtimes/paddle_lite.py).

Travels with runner_core.py only: standard library + runner_core + numpy + paddlelite (both imported
lazily), Python 3.7+. Writes the same JSON as pi_runner (schema ``hwlab.runner/1``,
docs/architecture.md) to ``--out`` (or as the last stdout line with ``--out -``), by the same
protocol code (runner_core): load_ms = MobileConfig setup + create_paddle_predictor; first_ms =
inputs in + run() + outputs out; warm-up by count AND time; steady samples = perf_counter around
run() until min iters, min seconds and the target relative CI of the median are met, or max seconds
(converged=false).
"""
from __future__ import print_function

import argparse
import os
import sys
import time

try:
    from . import runner_core as core  # imported on the host as part of lab.runners (tests)
except ImportError:
    import runner_core as core  # on the device: the file travels next to this one

SCHEMA = "hwlab.runner/1"
RUNNER = "lite_runner"
RUNNER_VERSION = "1.0.0"
POWER_MODES = {"big": "LITE_POWER_HIGH", "little": "LITE_POWER_LOW", "all": "LITE_POWER_FULL",
               "no-bind": "LITE_POWER_NO_BIND"}
DTYPES = ("float32", "int64", "int32")

RunnerFailure = core.RunnerFailure


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise RunnerFailure("bad arguments: " + message)


def build_parser():
    p = _Parser(prog="lite_runner.py", description="one Paddle Lite trial (paddlelite Python API)")
    p.add_argument("--model-file", required=True, help="the .nb made by paddle_lite_opt")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE:DTYPE")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--power-mode", choices=sorted(POWER_MODES), default="no-bind")
    p.add_argument("--nnadapter-device", default=None, help="e.g. rockchip_npu, verisilicon_timvx")
    p.add_argument("--nnadapter-context", default=None)
    core.add_protocol_flags(p, max_iters=False)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="-")
    return p


def new_doc(command):
    return core.new_doc(
        SCHEMA, RUNNER, RUNNER_VERSION, command,
        model={"path": None, "format": "nb", "sha256": None},
        config={"threads": None, "device": "cpu", "precision": None, "batch": None,
                "power_mode": None, "nnadapter_device": None, "inputs": []},
        protocol={}, env={"paddlelite": None}, clock="time.perf_counter around predictor.run()",
        gpu_mem_note="not measured by lite_runner")


def measure(args, doc):
    doc["model"]["path"] = args.model_file
    doc["config"].update({"threads": args.threads, "power_mode": args.power_mode,
                          "nnadapter_device": args.nnadapter_device,
                          "device": "aipu" if args.nnadapter_device else "cpu"})
    doc["protocol"] = core.protocol_doc(args)
    if args.threads < 1 or args.min_iters < 1 or args.max_seconds <= 0:
        raise RunnerFailure("threads and min-iters must be >= 1 and max-seconds > 0")
    if not args.input:
        raise RunnerFailure("at least one --input NAME:SHAPE:DTYPE is required")
    specs = [core.parse_input_spec(t, DTYPES) for t in args.input]
    doc["config"]["inputs"] = [{"name": n, "shape": s, "dtype": d} for n, s, d in specs]
    doc["config"]["batch"] = specs[0][1][0]
    if not os.path.isfile(args.model_file):
        raise RunnerFailure("model file not found: %s" % args.model_file)
    doc["model"]["sha256"] = core.files_sha256((args.model_file,))

    try:
        import numpy as np
        doc["env"]["numpy"] = np.__version__
    except ImportError:
        raise RunnerFailure("numpy is not installed on this device")
    try:
        import paddlelite
        from paddlelite import lite
    except ImportError as exc:
        raise RunnerFailure("paddlelite is not importable on this device (%s): PyPI has wheels only "
                            "for x86_64 CPython 3.7-3.10; on ARM boards build Paddle Lite with "
                            "--with_python=ON" % core.one_line(exc))
    doc["env"]["paddlelite"] = getattr(paddlelite, "__version__", None)

    t = doc["timings"]
    t0 = time.perf_counter()
    config = lite.MobileConfig()
    config.set_model_from_file(args.model_file)
    # x86 builds of the API (the PyPI wheel) have neither setter: record that the request was not
    # applied rather than pretend it was
    applied = []
    if hasattr(config, "set_threads"):
        config.set_threads(args.threads)
        applied.append("threads")
    if hasattr(config, "set_power_mode") and hasattr(lite, "PowerMode"):
        config.set_power_mode(getattr(lite.PowerMode, POWER_MODES[args.power_mode]))
        applied.append("power_mode")
    doc["config"]["applied"] = applied
    if "threads" not in applied:
        doc["config"]["threads_note"] = ("this paddlelite build has no MobileConfig.set_threads: "
                                         "it ran with its own default thread count")
    if args.nnadapter_device:
        config.set_nnadapter_device_names([args.nnadapter_device])
        if args.nnadapter_context:
            config.set_nnadapter_context_properties(args.nnadapter_context)
    predictor = lite.create_paddle_predictor(config)
    t["load_ms"] = (time.perf_counter() - t0) * 1e3

    names = list(predictor.get_input_names())
    given = [s[0] for s in specs]
    if sorted(names) != sorted(given):
        raise RunnerFailure("inputs do not match the model: model wants [%s], got [%s]"
                            % (", ".join(names), ", ".join(given)))
    arrays = dict(core.make_inputs(np, specs, args.seed, 1000))
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        predictor.get_input(i).from_numpy(arrays[name])
    predictor.run()
    outs = [predictor.get_output(i).numpy() for i in range(len(predictor.get_output_names()))]
    t["first_ms"] = (time.perf_counter() - t0) * 1e3
    doc["outputs"] = [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype),
                       "mean": float(o.mean()) if o.size else None}
                      for n, o in zip(predictor.get_output_names(), outs)]

    w_iters, _ = core.warm_up(predictor.run, args.warmup, args.warmup_seconds, t)
    core.steady_banner(RUNNER, t, w_iters)
    core.steady_window(doc, lambda cpus: core.steady_state(
        predictor.run, args.min_iters, args.min_seconds, args.max_seconds, args.target_rel_ci, 0, t))


def _out_from_argv(argv):
    """--out even when the other arguments are bad, so the host still finds a result there."""
    for i, a in enumerate(argv):
        if a == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--out="):
            return a.split("=", 1)[1]
    return "-"


def main(argv=None):
    """Bad arguments, too, end in ok=false JSON and exit 3 (at --out when it can be found)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    doc = new_doc(core.command_line("lite_runner.py", argv))
    try:
        args, bad, out = build_parser().parse_args(argv), None, None
    except RunnerFailure as exc:
        args, bad, out = None, exc, _out_from_argv(argv)
    except SystemExit as exc:  # --help
        return exc.code or 0

    def go(doc):
        if bad is not None:
            raise bad
        measure(args, doc)

    return core.run_measured(RUNNER, doc, go, args.out if args else out)


if __name__ == "__main__":
    sys.exit(main())
