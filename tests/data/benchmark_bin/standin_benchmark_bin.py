#!/usr/bin/env python3
"""benchmark_bin stand-in for the adbd double: NOT Paddle Lite, no inference happens.

It honours the v2.12 flags it is given and prints the documented v2.12 text (benchmark.cc Run()),
so command construction, library pushing and parsing are tested together. Faithful quirks:
usage text + exit 0 when CheckFlagsValid() fails; gflags error + exit 1 on unknown flags;
`Find and ignore unsupport nnadapter device`; in-process conversion writes `<opt>.nb` and prints
Opt Info; the memory block with `cpu usage ratio` noise and a `-0.001` init. It also checks what a
real binary would need: model files present, and for nnadapter libnnadapter.so + the HAL library
on LD_LIBRARY_PATH (a real binary fails to dlopen them otherwise). Times are synthetic.
Inputs: `--input_data_path` files are read as benchmark.cc does (`fs >> input_data[k]`, whitespace-
separated, "Open input image X error." on stderr when a file cannot be opened; missing values
stay unset, here 0). Outputs: no inference happens, so what "the device computed" comes from
OUTPUTS_TABLE (a JSON file the test writes: sha256 of the ':'-joined input file texts -> list of
flat output value lists); without an entry, one 1000-element output printed with the fixed
fingerprint mean 0.001 / std 0.00349 (written as 0.001 each). The printed mean and
standard deviation (n-1, as lite::compute_standard_deviation with is_sample true) are of those
values; flavour "develop" also has `--output_data_path` (one file per output, values written as
text, whitespace-separated) and `--input_data_type`.
With --enable_op_time_profile=true it behaves as a `--with_profile=ON` build (a real one prints these
on every run, whatever the flag): the Concise Dispatch summary that RuntimeProgram's destructor logs
(lite/core/profile/profiler.cc), on stderr, consistent with the times it printed.
Standard library only, Python 3.7+.
"""
import hashlib
import json
import math
import os
import random
import subprocess
import sys

FLAVOUR = "v2.12"  # tests write copies with "v2.11" (no memory profiling) or "develop"
OUTPUTS_TABLE = ""  # tests write copies naming a JSON table of outputs per input
FLAGS = {
    "optimized_model_file": "", "uncombined_model_dir": "", "model_file": "", "param_file": "",
    "input_shape": "", "input_data_path": "", "validation_set": "", "show_output_elem": "false",
    "warmup": "0", "repeats": "1", "run_delay": "-1.0", "power_mode": "0", "threads": "1",
    "result_path": "", "backend": "", "cpu_precision": "fp32", "gpu_precision": "fp16",
    "opencl_cache_dir": "", "opencl_kernel_cache_file": "paddle_lite_opencl_kernel.bin",
    "opencl_tuned_file": "paddle_lite_opencl_tuned.params", "opencl_tune_mode": "normal",
    "nnadapter_device_names": "", "nnadapter_context_properties": "",
    "enable_op_time_profile": "false", "enable_memory_profile": "false",
    "memory_check_interval_ms": "5", "config_path": "",
}
ALLOWED_NN = ["imagination_nna", "rockchip_npu", "mediatek_apu", "huawei_kirin_npu",
              "huawei_ascend_npu", "amlogic_npu", "verisilicon_timvx"]
USAGE = ("benchmark_bin: \nNote: \n  If load the optimized model, set --optimized_model_file. \n"
         "  Otherwise, set --uncombined_model_dir for uncomnbined paddle model or set --model_file "
         "and param_file for combined paddle model. \n"
         "For detailed usage info: ./benchmark_bin --help \n\n")


# (op type, KerneAttr(Place), KernelFuncName, share of the run, CalledTimes) per backend
PROFILE_OPS = {
    "nnadapter": [("subgraph", "nnadapter/any/NCHW", "NotImpl", 0.80, 1),
                  ("softmax", "arm/float/NCHW", "NotImpl", 0.20, 1)],
    "opencl": [("conv2d", "opencl/float16/ImageDefault", "conv2d_1x1_simple", 0.85, 27),
               ("io_copy", "opencl/any/any", "HostToOpenCL", 0.10, 1),
               ("softmax", "arm/float/NCHW", "NotImpl", 0.05, 1)],
    "arm": [("conv2d", "arm/float/NCHW", "conv1x1s1_gemm_fp32", 0.80, 13),
            ("conv2d", "arm/float/NCHW", "conv_3x3s2_direct_fp32", 0.03, 1),
            ("depthwise_conv2d", "arm/float/NCHW", "conv_depthwise_3x3_fp32", 0.14, 13),
            ("fc", "arm/float/NCHW", "NotImpl", 0.02, 1),
            ("pool2d", "arm/float/NCHW", "NotImpl", 0.005, 1),
            ("softmax", "arm/float/NCHW", "NotImpl", 0.005, 1)],
}


def op_profile_text(backends, runs):
    kept = runs[10:] or runs[-1:]
    avg = sum(kept) / len(kept)
    ops = PROFILE_OPS["nnadapter" if "nnadapter" in backends else
                      "opencl" if "opencl" in backends else "arm"]
    out = ["[I 11/29 10:12:33.412 ...ite/lite/core/program.h:217 ~RuntimeProgram]\n",
           "Timing cycle = %d\n" % len(runs),
           "===== Concise Dispatch Profiler Summary: N/A, Exclude 10 warm-ups =====\n",
           "%-20s %-30s %-24s %-7s %-7s %-7s %-7s %-7s %-11s\n" % (
               "OperatorType", "KerneAttr(Place)", "KernelFuncName", "Avg(ms)", "Min(ms)", "Max(ms)",
               "Avg(%)", "GOPs", "CalledTimes")]
    for op, place, func, share, called in ops:
        a = avg * share
        out.append("%-20s %-30s %-24s %-7.3f %-7.3f %-7.3f %.2f%%    %-7.3f %-11d\n"
                   % (op, place, func, a, a * 0.97, a * 1.05, share * 100, 0.0, called))
    return "".join(out) + "\n"


def main(argv):
    flags = dict(FLAGS)
    if FLAVOUR == "v2.11":
        del flags["memory_check_interval_ms"]
    if FLAVOUR == "develop":
        flags["output_data_path"] = ""
        flags["input_data_type"] = ""
    for arg in argv:
        if arg in ("--help", "-help", "--helpfull"):
            sys.stdout.write(USAGE + "\n  Flags from lite/api/tools/benchmark/utils/flags.cc:\n")
            for k in sorted(flags):
                sys.stdout.write("    -%s (...) type: string default: \"%s\"\n" % (k, flags[k]))
            return 1
        if not arg.startswith("--") or "=" not in arg:
            sys.stdout.write("ERROR: flag %r needs --name=value in this stand-in\n" % arg)
            return 1
        k, v = arg[2:].split("=", 1)
        if k not in flags:
            sys.stderr.write("ERROR: unknown command line flag '%s'\n" % k)
            return 1
        flags[k] = v
    errors = []
    is_opt = not flags["model_file"] and not flags["uncombined_model_dir"] and flags["optimized_model_file"]
    is_raw = flags["uncombined_model_dir"] or (flags["model_file"] and flags["param_file"])
    if not is_opt and not is_raw:
        errors.append("\nNo model path is set!")
    if not flags["backend"]:
        errors.append("Must set --backend option!")
    if not flags["input_shape"]:
        errors.append("Must set --input_shape option!")
    if errors:
        sys.stderr.write("\n".join(errors) + "\n")
        sys.stdout.write(USAGE)
        return 0  # the real tool exits 0 here

    backends = flags["backend"].split(",")
    if "nnadapter" in backends:
        devices = [d for d in flags["nnadapter_device_names"].split(",") if d]
        for d in devices:
            if d not in ALLOWED_NN:
                sys.stderr.write("Find and ignore unsupport nnadapter device: %s\n" % d)
        devices = [d for d in devices if d in ALLOWED_NN]
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
        for lib in ["libnnadapter.so"] + ["lib%s.so" % d for d in devices]:
            if not any(os.path.isfile(os.path.join(p, lib)) for p in paths):
                sys.stderr.write("[F lite/core/device/nnadapter] Failed to load %s: cannot open "
                                 "shared object file (LD_LIBRARY_PATH=%s)\n"
                                 % (lib, os.environ.get("LD_LIBRARY_PATH", "")))
                return 134
    model = flags["optimized_model_file"]
    if is_raw:
        for f in (flags["model_file"], flags["param_file"]):
            if not os.path.isfile(f):
                sys.stderr.write("[F model_parser] Cannot open %s\n" % f)
                return 134
        saved = model if model else ".nb"
        with open(saved, "wb") as fh:
            fh.write(b"stand-in nb converted from " + flags["model_file"].encode())
        sys.stdout.write("\n======= Opt Info =======\nLoad paddle model from %s and %s\n"
                         "Save optimized model to %s\n\n" % (flags["model_file"], flags["param_file"], saved))
        model = saved
    elif not os.path.isfile(model):
        sys.stderr.write("Mode file[%s] not exist!\n" % model)
        return 134

    shapes = [[int(d) for d in s.split(",")] for s in flags["input_shape"].split(":")]
    texts = []
    if flags["input_data_path"]:
        paths = flags["input_data_path"].split(":")
        for i, shape in enumerate(shapes):
            try:
                with open(paths[i]) as fh:
                    text = fh.read()
            except (OSError, IndexError):
                sys.stderr.write("Open input image %s error.\n" % (paths[i] if i < len(paths) else ""))
                text = ""
            texts.append(text)
    key = hashlib.sha256(":".join(texts).encode()).hexdigest() if texts else "all-ones"
    values = None  # no entry: the fixed fingerprint below (mean 0.001, std 0.00349)
    if OUTPUTS_TABLE and os.path.isfile(OUTPUTS_TABLE):
        with open(OUTPUTS_TABLE) as fh:
            values = json.load(fh).get(key)
    if flags.get("output_data_path"):
        for path, vals in zip(flags["output_data_path"].split(":"), values or [[0.001] * 1000]):
            with open(path, "w") as fh:
                fh.write(" ".join(repr(v) for v in vals) + "\n")

    threads, repeats = int(flags["threads"]), int(flags["repeats"])
    on_npu = "nnadapter" in backends
    base = 6.0 if on_npu else (12.0 if "opencl" in backends else 40.0 / max(1, threads))
    rnd = random.Random()
    runs = [base * (1 + 0.05 * rnd.random()) for _ in range(int(flags["warmup"]) + repeats)]
    runs[0] *= 3.0  # first run: caches, kernel compilation
    timed = runs[-repeats:]
    init = (900.0 if on_npu else 15.0) * (1 + 0.1 * rnd.random())
    memory = flags["enable_memory_profile"] == "true"
    if memory and FLAVOUR != "v2.11":
        sys.stdout.write("start monitoring memory!\ncpu usage ratio: 97.5%\n")

    ss = []
    try:
        brand = subprocess.check_output(["getprop", "ro.product.vendor.brand"]).decode().strip()
        model_name = subprocess.check_output(["getprop", "ro.product.vendor.model"]).decode().strip()
        sdk = subprocess.check_output(["getprop", "ro.build.version.sdk"]).decode().strip()
        ss.append("\n======= Device Info =======\nBrand: %s\nDevice: x\nModel: %s\n"
                  "Android Version: 10\nAndroid API Level: %s\n" % (brand, model_name, sdk))
    except (OSError, subprocess.CalledProcessError):
        pass  # ARM Linux build: no Device Info block
    ss.append("\n======= Model Info =======\noptimized_model_file: %s\ninput_data_path: %s\n"
              "input_shape: %s\noutput tensor num: %d\n"
              % (model, flags["input_data_path"] or "All 1.f", flags["input_shape"], len(values or [0])))
    if values is None:
        ss.append("--- output tensor 0 ---\noutput shape(NCHW): 1 1000 \noutput tensor 0 elem num: 1000\n"
                  "output tensor 0 mean value: 0.001\noutput tensor 0 standard deviation: 0.00349\n")
    for t, vals in enumerate(values or []):
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / max(1, len(vals) - 1))
        ss.append("--- output tensor %d ---\noutput shape(NCHW): 1 %d \noutput tensor %d elem num: %d\n"
                  "output tensor %d mean value: %g\noutput tensor %d standard deviation: %g\n"
                  % (t, len(vals), t, len(vals), t, mean, t, std))
    ss.append("\n======= Runtime Info =======\nbenchmark_bin version: standin0\nthreads: %d\n"
              "power_mode: %s\nwarmup: %s\nrepeats: %d\nresult_path: %s\n"
              % (threads, flags["power_mode"], flags["warmup"], repeats, flags["result_path"]))
    ss.append("\n======= Backend Info =======\nbackend: %s\ncpu precision: %s\n"
              % (flags["backend"], flags["cpu_precision"]))
    if "opencl" in backends:
        ss.append("gpu precision: %s\nopencl_cache_dir: %s\n" % (flags["gpu_precision"],
                                                                  flags["opencl_cache_dir"]))
    ss.append("\n======= Perf Info =======\nTime(unit: ms):\n")
    for label, value in (("init  = ", init), ("first = ", runs[0]), ("min   = ", min(timed)),
                         ("max   = ", max(timed)), ("avg   = ", sum(timed) / repeats)):
        ss.append("%s%-12.3f\n" % (label, value))
    if memory:
        if FLAVOUR == "v2.11":
            ss.append("\nMemory Usage(unit: kB):\nNot supported yet\n")
        else:
            ss.append("\nMemory Usage(unit: MB):\ninit  = %-12.3f\npeak  = %-12.3f\n" % (-0.001, 61.25))
    sys.stdout.write("".join(ss) + "\n")
    if flags["enable_op_time_profile"] == "true":
        sys.stdout.flush()
        sys.stderr.write(op_profile_text(backends, runs))
    if memory and FLAVOUR != "v2.11":
        sys.stdout.write("stop monitoring memory!\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
