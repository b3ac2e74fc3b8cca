"""benchmark_bin parser (documented formats) and command-line construction."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lab.runtimes.benchmark_bin import (BenchSpec, build_args, build_shell, is_old_tool,
                                       parse_output, supports_memory_profile)

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmark_bin"


def sample(name: str) -> str:
    return (DATA / name).read_text()


def test_v2_12_android_arm():
    r = parse_output(sample("v2_12_android_arm.txt"))
    assert r.ok and r.error is None and r.format == "v2.10+"
    assert (r.init_ms, r.first_ms, r.min_ms, r.max_ms, r.avg_ms) == (15.305, 43.670, 32.577, 32.895,
                                                                       32.723)
    assert r.mem_init_mb is None and r.mem_peak_mb is None and r.memory_note is None
    assert r.version == "f294964a" and r.threads == 4 and r.power_mode == 0
    assert r.warmup == 10 and r.repeats == 20 and r.backend == "arm" and r.cpu_precision == "fp32"
    assert r.device_info["Model"] == "ELE-AL00" and r.device_info["Android API Level"] == "29"
    assert r.fingerprint == [(0.001, 0.00349)]
    assert r.outputs[0].shape == (1, 1000)
    assert not r.converted_in_process


def test_memory_block_second_init_sentinel_and_cpu_ratio_noise():
    r = parse_output(sample("v2_12_memory_profile.txt"))
    assert r.ok
    # the Time init must not be overwritten by the Memory init
    assert r.init_ms == 18.002 and r.first_ms == 120.551 and r.avg_ms == 104.208
    assert r.mem_init_mb is None  # -0.001 sentinel
    assert r.mem_peak_mb == 48.613
    assert r.device_info["Brand"] == "HUAWEI"


def test_memory_init_real_value_kept():
    text = sample("v2_12_memory_profile.txt").replace("init  = -0.001", "init  = 31.250")
    r = parse_output(text)
    assert r.mem_init_mb == 31.25 and r.init_ms == 18.002


def test_linux_nnadapter_in_process_conversion():
    r = parse_output(sample("v2_12_linux_nnadapter_opt.txt"))
    assert r.ok and r.converted_in_process and r.backend == "nnadapter,arm"
    assert r.device_info == {}
    assert len(r.outputs) == 2 and r.outputs[1].shape == (1, 1917, 21)
    assert any("android_nnapi" in w for w in r.warnings)
    assert r.init_ms == 2210.442


def test_in_process_conversion_flags_memory():
    text = sample("v2_12_linux_nnadapter_opt.txt") + "\nMemory Usage(unit: MB):\ninit  = 10.0\npeak  = 300.5\n"
    r = parse_output(text)
    assert r.mem_peak_mb == 300.5 and "conversion" in r.memory_note


def test_v2_11_memory_not_supported():
    r = parse_output(sample("v2_11_memory_not_supported.txt"))
    assert r.ok and r.mem_peak_mb is None and "not supported" in r.memory_note


def test_old_format():
    r = parse_output(sample("v2_9_old_result.txt"))
    assert r.ok and r.format == "v2.9"
    assert (r.min_ms, r.max_ms, r.avg_ms) == (30.119, 31.707, 30.6424)
    assert r.init_ms is None and r.first_ms is None
    assert r.threads == 2 and r.repeats == 20


def test_old_format_latency_only():
    r = parse_output("I0101 benchmark.cc:252] latency(ms): 12.5\n")
    assert r.ok and r.avg_ms == 12.5 and r.min_ms is None and r.warnings


def test_usage_is_failure_with_reason():
    r = parse_output(sample("usage_missing_model.txt"))
    assert not r.ok
    assert "usage" in r.error and "No model path is set!" in r.error
    assert "Must set --input_shape option!" in r.error


def test_old_usage_is_failure():
    text = ("I0101 benchmark.cc:300] Input error, the model path should not be empty.\n"
            "I0101 benchmark.cc:120] Usage: \n./benchmark_bin \n  --optimized_model_path (The path)\n")
    r = parse_output(text)
    assert not r.ok and "model path should not be empty" in r.error


def test_unknown_flag():
    r = parse_output(sample("unknown_flag.txt"))
    assert not r.ok and "precision" in r.error


@pytest.mark.parametrize("text", ["", "Segmentation fault\n", "======= Perf Info =======\nTime(unit: ms):\n"
                                  "init  = 1.0\n"])
def test_truncated_or_crash(text):
    r = parse_output(text)
    assert not r.ok and r.error


def test_incomplete_perf_block():
    text = "======= Perf Info =======\nTime(unit: ms):\ninit  = 1.0\navg   = 3.0\n"
    r = parse_output(text)
    assert not r.ok and "first_ms" in r.error


def test_help_detection():
    assert supports_memory_profile("  -memory_check_interval_ms (Memory check interval)")
    assert not supports_memory_profile("  -enable_memory_profile (Not supported yet)")
    assert is_old_tool("--optimized_model_path (The path of the model that is optimized")
    assert not is_old_tool("-optimized_model_file (The filename of the model)")


# ------------------------------------------------------------------ commands

def spec(**kw) -> BenchSpec:
    base = dict(binary="/data/local/tmp/hwlab/bin/benchmark_bin", input_shapes=[(1, 3, 224, 224)],
                backend="arm", optimized_model_file="/data/local/tmp/hwlab/m/model.nb")
    base.update(kw)
    return BenchSpec(**base)


def test_arm_args():
    argv = build_args(spec(threads=4, power_mode="big", warmup=5, repeats=30))
    assert argv[0].endswith("benchmark_bin")
    assert "--optimized_model_file=/data/local/tmp/hwlab/m/model.nb" in argv
    assert "--input_shape=1,3,224,224" in argv and "--backend=arm" in argv
    assert "--threads=4" in argv and "--power_mode=0" in argv
    assert "--warmup=5" in argv and "--repeats=30" in argv and "--cpu_precision=fp32" in argv
    assert not any(a.startswith("--nnadapter") for a in argv)


def test_power_modes():
    for name, num in (("big", 0), ("little", 1), ("all", 2), ("no-bind", 3)):
        assert f"--power_mode={num}" in build_args(spec(power_mode=name))
    with pytest.raises(ValueError):
        build_args(spec(power_mode="turbo"))


def test_opencl_and_nnadapter_args():
    argv = build_args(spec(backend="opencl,arm", gpu_precision="fp16",
                           opencl_cache_dir="/data/local/tmp/hwlab/cl"))
    assert "--backend=opencl,arm" in argv and "--gpu_precision=fp16" in argv
    assert "--opencl_cache_dir=/data/local/tmp/hwlab/cl" in argv
    argv = build_args(spec(backend="nnadapter,arm", nnadapter_device="huawei_kirin_npu",
                           enable_memory_profile=True))
    assert "--nnadapter_device_names=huawei_kirin_npu" in argv
    assert "--enable_memory_profile=true" in argv
    with pytest.raises(ValueError, match="ignores"):
        build_args(spec(backend="nnadapter,arm", nnadapter_device="android_nnapi"))
    with pytest.raises(ValueError):
        build_args(spec(backend="nnadapter,arm"))


def test_raw_model_and_validation():
    argv = build_args(spec(optimized_model_file=None, model_file="/d/m.pdmodel", param_file="/d/m.pdiparams",
                           input_shapes=[(1, 3, 8, 8), (1, 5)]))
    assert "--model_file=/d/m.pdmodel" in argv and "--param_file=/d/m.pdiparams" in argv
    assert "--input_shape=1,3,8,8:1,5" in argv
    with pytest.raises(ValueError):
        build_args(spec(optimized_model_file=None))
    with pytest.raises(ValueError):
        build_args(spec(repeats=0))
    with pytest.raises(ValueError):
        build_args(spec(input_shapes=[(1, -1, 224, 224)]))


def test_old_tool_args():
    argv = build_args(spec(old_tool=True, power_mode="big", result_path="/d/r.txt"))
    assert "--optimized_model_path=/data/local/tmp/hwlab/m/model.nb" in argv
    assert "--result_path=/d/r.txt" in argv and "--power_mode=0" in argv
    assert not any(a.startswith("--backend") for a in argv)
    with pytest.raises(ValueError):
        build_args(spec(old_tool=True, backend="opencl,arm"))


def test_shell_quotes_and_ld_library_path():
    text = build_shell(spec(cwd="/data/local/tmp/hw lab", lib_dir="/data/local/tmp/hw lab/libs/kirin",
                            cpu_mask="f0", backend="nnadapter,arm", nnadapter_device="huawei_kirin_npu"))
    assert text.startswith("cd '/data/local/tmp/hw lab' && LD_LIBRARY_PATH='/data/local/tmp/hw lab/libs/kirin'"
                           "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} taskset f0 ")
    assert text.endswith(" 2>&1")
    # the argv part round-trips through a POSIX shell lexer
    tokens = shlex.split(text.split("taskset f0 ", 1)[1].rsplit(" 2>&1", 1)[0])
    assert tokens[-1] == "--nnadapter_device_names=huawei_kirin_npu"
    with pytest.raises(ValueError):
        build_shell(spec(cpu_mask="f0; rm -rf /"))
