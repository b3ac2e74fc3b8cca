"""Host side of Paddle Lite's `benchmark_bin`: build its command lines, parse what it prints.

Why a parser and not the exit code: the tool exits 0 after printing its usage on bad flags
(`CheckFlagsValid()` -> `gflags::ProgramUsage()`; exit(0)), so only the text says whether it ran.
Formats (see shared/reference/paddle.md §1.6-1.11):
- v2.10 .. v2.12 / develop: blocks `======= X Info =======`, `Time(unit: ms):` then
  `init/first/min/max/avg = <v>`; with `--enable_memory_profile` (v2.12+) a `Memory Usage(unit: MB):`
  block where `init` appears again, and a monitor thread printing `cpu usage ratio: X%` lines into
  stdout at any point (even mid-line); memory `init` can be the `-0.001` sentinel (no sample yet).
- <= v2.9 (`lite/api/benchmark.cc`): `<name>min = <v> max = <v> average = <v>` result line and a glog
  `latency(ms): <avg>` line. No init/first.

Standard library only, Python 3.7+ syntax.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

POWER_MODES = {"big": 0, "little": 1, "all": 2, "no-bind": 3}
# benchmark_bin's own NNAdapter allow-list (benchmark.h SetBackendConfig); others are dropped silently.
BENCH_NNADAPTER_DEVICES = ("imagination_nna", "rockchip_npu", "mediatek_apu", "huawei_kirin_npu",
                           "huawei_ascend_npu", "amlogic_npu", "verisilicon_timvx")


@dataclass(frozen=True)
class OutputStat:
    """Per-output fingerprint printed in `Model Info` (cheap output-parity check)."""

    index: int
    shape: tuple
    mean: Optional[float]
    std: Optional[float]


@dataclass
class BenchmarkBinResult:
    ok: bool
    error: Optional[str] = None
    format: str = "unknown"  # v2.10+ | v2.9 | unknown
    init_ms: Optional[float] = None
    first_ms: Optional[float] = None
    min_ms: Optional[float] = None
    max_ms: Optional[float] = None
    avg_ms: Optional[float] = None
    mem_init_mb: Optional[float] = None
    mem_peak_mb: Optional[float] = None
    memory_note: Optional[str] = None
    version: Optional[str] = None
    threads: Optional[int] = None
    power_mode: Optional[int] = None
    warmup: Optional[int] = None
    repeats: Optional[int] = None
    backend: Optional[str] = None
    cpu_precision: Optional[str] = None
    model_file: Optional[str] = None
    converted_in_process: bool = False  # Opt Info block: the tool ran opt itself before timing
    outputs: List[OutputStat] = field(default_factory=list)
    device_info: Dict[str, str] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    # lines saying the NNAdapter device was dropped or not found: the model ran on the CPU only
    nnadapter_unused: List[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> List[tuple]:
        """(mean, std) per output tensor, in order."""
        return [(o.mean, o.std) for o in self.outputs]


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|-?inf)"
_CPU_RATIO = re.compile(r"cpu usage ratio:\s*[-+0-9.eE]+%?")
_MONITOR = re.compile(r"(start|stop) monitoring memory!")
_KV = re.compile(r"^(init|first|min|max|avg|peak)\s*=\s*" + _NUM + r"\s*$")
_OLD = re.compile(r"min\s*=\s*" + _NUM + r"\s+max\s*=\s*" + _NUM + r"\s+average\s*=\s*" + _NUM)
_OLD_LAT = re.compile(r"latency\(ms\):\s*" + _NUM)
_GFLAGS_ERR = re.compile(r"ERROR: (unknown command line flag '[^']*'|.*flag.*)")
# Paddle Lite's own spelling ("avaliable") is kept: these are the strings it prints.
_NN_UNUSED = ("No avaliable device found for nnadapter", "No available device found for nnadapter",
              "The device list for nnadapter is null")
_USAGE_REASONS = ("No model path is set!", "Must set --backend option!",
                  "Must set --input_shape option!", "Only need to set one model format!",
                  "The num of input tensors is ambiguous.",
                  "Both --validation_set and --config_path options should be set!",
                  "Input error, the model path should not be empty.")


def _f(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None  # NaN -> unknown


def parse_output(text: str) -> BenchmarkBinResult:
    """Parse benchmark_bin stdout(+stderr) of any supported version into a typed record.

    Never raises on odd text: anything that is not a complete result is `ok=False` with a reason.
    """
    text = (text or "").replace("\r", "")
    # The memory monitor thread writes into the same stdout at any point, even inside a line.
    clean = _MONITOR.sub("", _CPU_RATIO.sub("", text))
    res = BenchmarkBinResult(ok=False)
    res.error = _refused(clean)
    if res.error:
        return res
    _parse_blocks(clean, res)
    if res.avg_ms is not None:
        return _perf_info_result(res)
    return _old_tool_result(clean, res)


def _refused(clean: str) -> Optional[str]:
    """Why the tool did not run: it printed its usage (it exits 0 on bad flags) or gflags refused a
    flag; None when it ran."""
    if "Note:" in clean and "For detailed usage info" in clean or "Usage:" in clean and \
            "--optimized_model_path" in clean and "latency(ms)" not in clean:
        reasons = [r for r in _USAGE_REASONS if r in clean]
        return ("benchmark_bin printed its usage (bad or missing flags; it exits 0 on this): "
                + ("; ".join(reasons) if reasons else "no reason printed"))
    m = _GFLAGS_ERR.search(clean)
    if m and "Perf Info" not in clean:
        return f"benchmark_bin rejected its flags: {m.group(1)}"
    return None


def _parse_blocks(clean: str, res: BenchmarkBinResult) -> None:
    """The v2.10+ `======= X Info =======` blocks, each line read by its block's parser
    (_BLOCK_PARSERS); a line no parser takes is checked for NNAdapter warnings."""
    section, outs = "", []  # type: str, List[dict]
    for raw in clean.split("\n"):
        line = raw.strip()
        if not line:
            continue
        header = _block_header(line)
        if header is not None:
            section = header
            if section == "opt":
                res.converted_in_process = True
            continue
        parser = _BLOCK_PARSERS.get(section)
        if parser is not None and parser(line, res, outs):
            continue
        _nnadapter_warning(line, res)
    res.outputs = [OutputStat(o["index"], o["shape"], o["mean"], o["std"]) for o in outs]


def _block_header(line: str) -> Optional[str]:
    """The block a header line opens (`X Info` -> 'x', `Time(unit:` -> 'time', ...), else None."""
    hm = re.match(r"^=+\s*(.+?)\s*Info\s*=+$", line)
    if hm:
        return hm.group(1).lower()
    if line.startswith("Time(unit:"):
        return "time"
    if line.startswith("Memory Usage(unit:"):
        return "memory"
    return None


def _time_line(line: str, res: BenchmarkBinResult, outs: List[dict]) -> bool:
    kv = _KV.match(line)
    if not kv:
        return False
    key, val = kv.group(1), _f(kv.group(2))
    if key != "peak":
        setattr(res, key + "_ms", val)
    return True


def _memory_line(line: str, res: BenchmarkBinResult, outs: List[dict]) -> bool:
    if "Not supported yet" in line:
        res.memory_note = "benchmark_bin memory profile not supported by this version (v2.12+)"
        return True
    kv = _KV.match(line)
    if not kv:
        return False
    key, val = kv.group(1), _f(kv.group(2))
    if val is not None and val < 0:  # -0.001 sentinel: no sample taken yet
        val = None
    if key == "init":
        res.mem_init_mb = val
    elif key == "peak":
        res.mem_peak_mb = val
    return True


def _device_line(line: str, res: BenchmarkBinResult, outs: List[dict]) -> bool:
    if ":" not in line:
        return False
    k, v = line.split(":", 1)
    res.device_info[k.strip()] = v.strip()
    return True


def _model_line(line: str, res: BenchmarkBinResult, outs: List[dict]) -> bool:
    """Model Info: the model file and a `--- output tensor N ---` record per output."""
    mo = re.match(r"^--- output tensor (\d+) ---$", line)
    if mo:
        outs.append({"index": int(mo.group(1)), "shape": (), "mean": None, "std": None})
        return True
    current_out = outs[-1] if outs else None
    if line.startswith("optimized_model_file:"):
        res.model_file = line.split(":", 1)[1].strip()
    elif current_out is not None:
        if line.startswith("output shape(NCHW):"):
            current_out["shape"] = tuple(int(x) for x in line.split(":", 1)[1].split()
                                         if x.lstrip("-").isdigit())
        elif " mean value:" in line:
            current_out["mean"] = _f(line.rsplit(":", 1)[1].strip())
        elif " standard deviation:" in line:
            current_out["std"] = _f(line.rsplit(":", 1)[1].strip())
    return True


def _fields_parser(keys: Dict[str, tuple]) -> Callable[[str, BenchmarkBinResult, List[dict]], bool]:
    """A block of `key: value` lines: each key named in `keys` sets (field, conversion) of the
    result; a value that does not convert leaves the field as it was."""
    def parse(line: str, res: BenchmarkBinResult, outs: List[dict]) -> bool:
        if ":" not in line:
            return False
        k, v = (s.strip() for s in line.split(":", 1))
        if k in keys:
            name, conv = keys[k]
            try:
                setattr(res, name, conv(v))
            except ValueError:
                pass
        return True
    return parse


# block name -> line parser: True when the line was the block's (else it is checked for warnings)
_BLOCK_PARSERS = {"time": _time_line, "memory": _memory_line, "device": _device_line, "model": _model_line,
                  "runtime": _fields_parser({"benchmark_bin version": ("version", lambda v: v or None),
                                             "threads": ("threads", int), "power_mode": ("power_mode", int),
                                             "warmup": ("warmup", int), "repeats": ("repeats", int)}),
                  "backend": _fields_parser({"backend": ("backend", str), "cpu precision": ("cpu_precision", str)})}


def _nnadapter_warning(line: str, res: BenchmarkBinResult) -> None:
    """Matched anywhere in the line: glog may prefix them ("[W  1/ 1 ...] ...")."""
    if "Find and ignore unsupport nnadapter device" in line:
        res.warnings.append(line)
        res.nnadapter_unused.append(line)
    elif any(m in line for m in _NN_UNUSED):
        res.warnings.append(line + " (the model ran without the NPU)")
        res.nnadapter_unused.append(line)


def _perf_info_result(res: BenchmarkBinResult) -> BenchmarkBinResult:
    """A v2.10+ result: complete only with init, first, min, max and avg."""
    res.format = "v2.10+"
    missing = [k for k in ("init_ms", "first_ms", "min_ms", "max_ms") if getattr(res, k) is None]
    if missing:
        res.error = f"benchmark_bin Perf Info incomplete: no {', '.join(missing)}"
        return res
    res.ok = True
    if res.converted_in_process and res.mem_peak_mb is not None:
        res.memory_note = ("peak memory includes the in-process opt conversion (ru_maxrss is a "
                           "process-lifetime maximum); push a .nb for a clean figure")
    return res


def _old_tool_result(clean: str, res: BenchmarkBinResult) -> BenchmarkBinResult:
    """The <= v2.9 result line (or only its glog latency line); else why there is no result."""
    old = _OLD.search(clean)
    if old:
        res.format = "v2.9"
        res.min_ms, res.max_ms, res.avg_ms = (_f(old.group(i)) for i in (1, 2, 3))
        for key in ("threads", "power_mode", "warmup", "repeats"):
            km = re.search(r"\] " + key + r":\s*(\d+)", clean)
            if km:
                setattr(res, key, int(km.group(1)))
        res.ok = res.avg_ms is not None
        return res
    lat = _OLD_LAT.search(clean)
    if lat:
        res.format = "v2.9"
        res.avg_ms = _f(lat.group(1))
        res.ok = res.avg_ms is not None
        res.warnings.append("only latency(ms) found: result-file line (min/max) missing")
        return res
    tail = [ln.strip() for ln in clean.split("\n") if ln.strip()][-3:]
    res.error = ("benchmark_bin output has no Perf Info / result line (crashed or killed?): "
                 + (" | ".join(tail) if tail else "no output"))
    return res


# ---------------------------------------------------------------- command lines

@dataclass(frozen=True)
class BenchSpec:
    """Everything one benchmark_bin invocation needs, with device paths already decided."""

    binary: str  # device path of benchmark_bin
    input_shapes: Sequence[Sequence[int]]
    backend: str  # arm | opencl,arm | nnadapter,arm
    optimized_model_file: Optional[str] = None  # .nb on the device (with model_file: where opt writes)
    model_file: Optional[str] = None  # raw combined model on the device (tool converts in-process)
    param_file: Optional[str] = None
    nnadapter_device: Optional[str] = None
    threads: int = 1
    power_mode: Optional[str] = None  # big | little | all | no-bind
    warmup: int = 10
    repeats: int = 20
    cpu_precision: str = "fp32"
    gpu_precision: Optional[str] = None
    opencl_cache_dir: Optional[str] = None
    enable_memory_profile: bool = False
    enable_op_time_profile: bool = False  # profiled trial only (profile: ops); see parse_op_profile
    lib_dir: Optional[str] = None  # prepended to LD_LIBRARY_PATH (NNAdapter HAL + vendor DDK)
    cwd: Optional[str] = None
    cpu_mask: Optional[str] = None  # hex mask for `taskset` (big-core pinning)
    old_tool: bool = False  # <= v2.9 flags
    result_path: Optional[str] = None  # old tool writes its only min/max/avg line there
    # output checks (lab/runtimes/checks.py): ':'-joined text files, one per input / output
    input_data_path: Optional[str] = None  # whitespace-separated values (v2.10+)
    output_data_path: Optional[str] = None  # one file per output (develop only; --help tells)


def build_args(spec: BenchSpec) -> List[str]:
    """argv of benchmark_bin for one run (flag names from the v2.12/HEAD flags.cc or the old tool)."""
    if spec.repeats < 1:
        raise ValueError("benchmark_bin --repeats must be >= 1 (avg divides by repeats)")
    shapes = ":".join(",".join(str(int(d)) for d in s) for s in spec.input_shapes)
    if not shapes or any(int(d) < 1 for s in spec.input_shapes for d in s):
        raise ValueError(f"benchmark_bin needs concrete positive input shapes, got {shapes!r}")
    argv = [spec.binary]
    pm = None
    if spec.power_mode is not None:
        if spec.power_mode not in POWER_MODES:
            raise ValueError(f"power_mode {spec.power_mode!r}: use one of {sorted(POWER_MODES)}")
        pm = POWER_MODES[spec.power_mode]
    if spec.old_tool:
        if spec.backend != "arm":
            raise ValueError("the <= v2.9 benchmark_bin only runs the ARM CPU backend")
        if not spec.optimized_model_file:
            raise ValueError("the <= v2.9 benchmark_bin path needs a converted .nb model")
        argv += [f"--optimized_model_path={spec.optimized_model_file}", f"--input_shape={shapes}",
                 f"--warmup={spec.warmup}", f"--repeats={spec.repeats}", f"--threads={spec.threads}",
                 f"--power_mode={3 if pm is None else pm}"]
        if spec.result_path:
            argv.append(f"--result_path={spec.result_path}")
        if spec.cpu_precision == "fp16":
            argv.append("--use_fp16=true")
        return argv
    if spec.model_file and spec.param_file:
        # raw model: the tool runs opt in-process and writes <optimized_model_file>.nb (if given)
        argv += [f"--model_file={spec.model_file}", f"--param_file={spec.param_file}"]
        if spec.optimized_model_file:
            argv.append(f"--optimized_model_file={spec.optimized_model_file}")
    elif spec.optimized_model_file:
        argv.append(f"--optimized_model_file={spec.optimized_model_file}")
    else:
        raise ValueError("benchmark_bin needs a .nb (--optimized_model_file) or model + params")
    argv += [f"--input_shape={shapes}", f"--backend={spec.backend}",
             f"--threads={spec.threads}", f"--warmup={spec.warmup}", f"--repeats={spec.repeats}",
             f"--cpu_precision={spec.cpu_precision}"]
    if pm is not None:
        argv.append(f"--power_mode={pm}")
    if "nnadapter" in spec.backend.split(","):
        if not spec.nnadapter_device:
            raise ValueError("backend nnadapter needs an NNAdapter device name")
        if spec.nnadapter_device not in BENCH_NNADAPTER_DEVICES:
            raise ValueError(f"benchmark_bin ignores NNAdapter device {spec.nnadapter_device!r} "
                             f"(accepted: {', '.join(BENCH_NNADAPTER_DEVICES)})")
        argv.append(f"--nnadapter_device_names={spec.nnadapter_device}")
    if "opencl" in spec.backend.split(","):
        if spec.gpu_precision:
            argv.append(f"--gpu_precision={spec.gpu_precision}")
        if spec.opencl_cache_dir:
            argv.append(f"--opencl_cache_dir={spec.opencl_cache_dir}")
    optional = (("enable_memory_profile", "true"), ("input_data_path", None),
                ("output_data_path", None), ("enable_op_time_profile", "true"))
    for name, fixed in optional:  # flags given only when the spec asks (and the binary has them)
        value = getattr(spec, name)
        if value:
            argv.append(f"--{name}={fixed or value}")
    return argv


def build_shell(spec: BenchSpec) -> str:
    """One sh command line: cd, LD_LIBRARY_PATH (keeping the device's own), taskset, benchmark_bin.

    Built here rather than with `env` because `$LD_LIBRARY_PATH` must expand on the device;
    every path and flag is shell-quoted.
    """
    parts = []
    if spec.cwd:
        parts.append(f"cd {shlex.quote(spec.cwd)} &&")
    if spec.lib_dir:
        parts.append(f"LD_LIBRARY_PATH={shlex.quote(spec.lib_dir)}"
                     "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
    argv = build_args(spec)
    if spec.cpu_mask:
        if not re.match(r"^(0x)?[0-9a-fA-F]+$", spec.cpu_mask):
            raise ValueError(f"cpu mask {spec.cpu_mask!r} is not hex")
        argv = ["taskset", spec.cpu_mask] + argv
    parts.append(" ".join(shlex.quote(a) for a in argv))
    return " ".join(parts) + " 2>&1"


def supports_memory_profile(help_text: str) -> bool:
    """v2.12+ samples memory (flag `--memory_check_interval_ms`); v2.10/2.11 only say "Not supported"."""
    return "memory_check_interval_ms" in (help_text or "")


def supports_input_data(help_text: str) -> bool:
    """--input_data_path (v2.10+): the reference inputs can be fed; outputs print as mean/std."""
    return "input_data_path" in (help_text or "") and not is_old_tool(help_text)


def supports_output_data(help_text: str) -> bool:
    """--output_data_path (after v2.12): every output value comes back, not only mean/std."""
    return "output_data_path" in (help_text or "")


def parse_values(text: str) -> List[float]:
    """Whitespace-separated numbers of an input/output data file (nan/inf kept as floats)."""
    return [float(v) for v in text.split()]


def is_old_tool(help_text: str) -> bool:
    """<= v2.9 has `--optimized_model_path` and no `--optimized_model_file`."""
    text = help_text or ""
    return "optimized_model_path" in text and "optimized_model_file" not in text


# ---------------------------------------------------------------- per-operator profile

@dataclass(frozen=True)
class LiteOpLine:
    """One row of a Paddle Lite profiler summary (lite/core/profile/profiler.cc `Summary`).

    `avg_ms` is the mean time per inference of this row (concise: summed over `called` instances);
    `place` is KerneAttr(Place), `<target>/<precision>/<layout>` (e.g. arm/float/NCHW).
    """

    op_type: str
    place: str
    avg_ms: float
    called: Optional[int]  # instances per inference (concise CalledTimes; 1 per detailed row)


@dataclass(frozen=True)
class LiteOpProfile:
    kind: str  # concise | detailed
    lines: List[LiteOpLine]
    timing_cycles: Optional[int]  # laps the timers saw ("Timing cycle = N", concise only)
    excluded: int  # first laps left out of the averages ("Exclude N warm-ups")

    @property
    def iterations(self) -> Optional[int]:
        """Inferences the averages cover (cycles - excluded), None when the table does not say."""
        if self.timing_cycles is None:
            return None
        return max(0, self.timing_cycles - self.excluded)


_SUMMARY = re.compile(r"^=+ (Concise|Detailed) (\w+) Profiler Summary: .*?, Exclude (\d+) warm-ups =+$")
_CYCLE = re.compile(r"^Timing cycle = (\d+)$")
_PCT = re.compile(r"^-?\d+(?:\.\d+)?%$")


def _profile_row(tokens: List[str], header: List[str], concise: bool) -> Optional[LiteOpLine]:
    """A table row, located from its Avg(%) column: cells left of it may be blank (setw)."""
    pct = next((i for i, t in enumerate(tokens) if _PCT.match(t)), None)
    back = 3 if concise else 4  # Avg Min Max [Last] before Avg(%)
    if pct is None or pct < back + 2:
        return None
    avg = _f(tokens[pct - back])
    if avg is None:
        return None
    called = None
    if concise and "CalledTimes" in header and len(tokens) > pct + 2 and tokens[pct + 2].isdigit():
        called = int(tokens[pct + 2])
    return LiteOpLine(op_type=tokens[0], place=tokens[1], avg_ms=avg,
                      called=called if concise else 1)


def parse_op_profile(text: str) -> Optional[LiteOpProfile]:
    """The dispatch (kernel run) time per op from benchmark_bin output, None when it has none.

    Prefers the last Concise Dispatch summary (all inferences after the first 10, one row per op
    type x place x kernel function, with CalledTimes); falls back to the last Detailed Dispatch
    summary (one row per op instance, averages over the inferences after the first). Create
    summaries (InferShape time) are skipped. Only a `--with_profile=ON` build prints these.
    """
    text = (text or "").replace("\r", "")
    blocks = []  # (kind, excluded, cycles, lines)
    cycles = None  # type: Optional[int]
    current = None  # type: Optional[list]
    header = []  # type: List[str]
    for raw in text.split("\n"):
        line = raw.strip()
        cm = _CYCLE.match(line)
        if cm:
            cycles = int(cm.group(1))
            continue
        sm = _SUMMARY.match(line)
        if sm:
            kind, what, excl = sm.group(1).lower(), sm.group(2), int(sm.group(3))
            current = None
            if what == "Dispatch":
                current = [kind, excl, cycles if kind == "concise" else None, []]
                blocks.append(current)
            cycles, header = None, []
            continue
        if current is None:
            continue
        if line.startswith("OperatorType"):
            header = line.split()
            continue
        row = _profile_row(line.split(), header, current[0] == "concise") if line and header else None
        if row is None:
            current = None  # the table ended (blank line, log line, memory report ...)
            continue
        current[3].append(row)
    for kind in ("concise", "detailed"):
        found = [b for b in blocks if b[0] == kind and b[3]]
        if found:
            b = found[-1]
            return LiteOpProfile(kind=kind, lines=b[3], timing_cycles=b[2], excluded=b[1])
    return None


def supports_op_time_profile(help_text: str) -> bool:
    """The flag exists (it is accepted; the tables come from a --with_profile build)."""
    return "enable_op_time_profile" in (help_text or "")
