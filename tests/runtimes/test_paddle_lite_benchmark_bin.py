"""paddle-lite-* jobs end to end over ADB: benchmark_bin stand-in on the adbd double.

The stand-in (tests/data/benchmark_bin/standin_benchmark_bin.py) is not Paddle Lite: it checks the
flags, files and LD_LIBRARY_PATH a real binary needs and prints the documented v2.12 text.
"""
from __future__ import annotations

import hashlib
from contextlib import closing
from pathlib import Path

import pytest

from conftest_adb import adb_device, adb_env, adb_key, kirin, start_double  # noqa: F401

from lab.runtimes import paddle_lite as lite_rt
from lab.core.errors import ConfigError, RunnerError
from lab.models.artifact import ModelArtifact
from lab.core.records import InputSpec
from lab.transport.adb import ADBTransport
from lite_doubles import STANDIN, make_artifact, make_bin, make_libs, job, run_lite_job, kirin_npu_setup  # noqa: F401













@pytest.fixture(autouse=True)
def _clear_tool_cache():
    lite_rt._TOOL_CACHE.clear()


def test_arm_raw_model_converted_in_process(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)), power_mode="big")
    with closing(ADBTransport(dev)) as t:
        m = run_lite_job(job("paddle-lite-arm"), dev, t, art)
    assert m.source == "benchmark_bin" and m.n_samples == 3 and len(m.samples) == 3
    assert m.mean_ms and m.min_ms <= m.mean_ms <= m.max_ms
    assert m.p50_ms is not None and m.ci_low_ms <= m.p50_ms <= m.ci_high_ms
    assert m.p90_ms is None and m.p99_ms is None and m.converged is None
    assert m.load_ms and m.first_ms and m.first_ms > m.min_ms
    assert m.peak_rss_mb == 61.25  # v2.12 memory profile detected from --help
    assert lite_rt.MINMAX_NOTE in m.notes
    assert any("converted in-process" in n for n in m.notes)
    cmd = m.provenance["commands"][0]
    assert "--model_file=/data/local/tmp/hwlab/models/mnv1-" in cmd and "--backend=arm" in cmd
    assert "--power_mode=0" in cmd and "--threads=2" in cmd and "--repeats=5" in cmd
    assert "--enable_memory_profile=true" in cmd and "LD_LIBRARY_PATH" not in cmd
    assert m.provenance["runner_version"] == "standin0"
    assert m.provenance["output_fingerprint"] == [(0.001, 0.00349)]
    assert m.provenance["device_info"]["Brand"] == "HUAWEI"
    # the tool wrote its converted model where the lab told it to
    assert (kirin.root / "data/local/tmp/hwlab/results/j-paddle-lite-arm-fp32-opt.nb").exists()


def test_kirin_npu_with_nb_pushes_libs_and_caches(kirin, tmp_path):
    art, dev = kirin_npu_setup(kirin, tmp_path)
    with closing(ADBTransport(dev)) as t:
        m = run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
        pushes_after_first = len(kirin.stats.pushes)
        m2 = run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
    cmd = m.provenance["commands"][0]
    assert "--backend=nnadapter,arm" in cmd and "--nnadapter_device_names=huawei_kirin_npu" in cmd
    assert "LD_LIBRARY_PATH=/data/local/tmp/hwlab/lite/libs/huawei_kirin_npu" in cmd
    assert "--optimized_model_file=/data/local/tmp/hwlab/models/mnv1-" in cmd and "kirin-npu.nb" in cmd
    assert (kirin.root / "data/local/tmp/hwlab/lite/libs/huawei_kirin_npu/libhuawei_kirin_npu.so").exists()
    assert not any("converted in-process" in n for n in m.notes)
    assert m.load_ms > 500  # NPU init (model compilation) in the stand-in
    assert len(kirin.stats.pushes) == pushes_after_first  # binary, libs and model all skipped
    assert m2.mean_ms is not None


def test_missing_hal_library_fails_with_reason(kirin, tmp_path):
    art = make_artifact(tmp_path)
    libs = make_libs(tmp_path, "huawei_kirin_npu", with_hal=False)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)),
                     nnadapter_libs={"huawei_kirin_npu": str(libs)})
    with closing(ADBTransport(dev)) as t:
        with pytest.raises(RunnerError, match="libhuawei_kirin_npu.so"):
            run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)


def test_config_errors(kirin, tmp_path):
    art = make_artifact(tmp_path)
    with closing(ADBTransport(adb_device(kirin))) as t:
        with pytest.raises(ConfigError, match="benchmark_bin"):
            run_lite_job(job("paddle-lite-arm"), adb_device(kirin), t, art)
        dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)))
        with pytest.raises(ConfigError, match="nnadapter_libs"):
            run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
        rk = adb_device(kirin, benchmark_bin=str(dev.benchmark_bin),
                        nnadapter_libs={"rockchip_npu": str(make_libs(tmp_path, "rockchip_npu"))})
        with pytest.raises(ConfigError, match="fully-quantised int8"):
            run_lite_job(job("paddle-lite-rockchip-npu", precision="int8"), rk, t, art)


def test_v2_11_memory_unavailable_and_few_trials(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path, "v2.11")))
    with closing(ADBTransport(dev)) as t:
        m = run_lite_job(job("paddle-lite-arm", trials=2), dev, t, art)
    assert m.peak_rss_mb is None
    assert any("peak memory unavailable" in n for n in m.notes)
    assert m.p50_ms is None and any("needs >= 3 trials" in n for n in m.notes)
    assert "--enable_memory_profile" not in m.provenance["commands"][0]


def test_usage_output_is_a_failed_job(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path, usage_always=True)))
    with closing(ADBTransport(dev)) as t:
        with pytest.raises(RunnerError, match="usage.*Must set --backend"):
            run_lite_job(job("paddle-lite-arm"), dev, t, art)


# Paddle Lite prints this (its own spelling) when the HAL finds no device, then runs on the CPU.
NO_DEVICE = ('    on_npu = "nnadapter" in backends\n',
             '    sys.stderr.write("[W  1/ 1  0:0:0.0 nnadapter.cc:88 Init] No avaliable device found '
             'for nnadapter\\n")\n    on_npu = False\n')
# a crash after the result was printed (e.g. in the predictor's destructor)
CRASH_AT_EXIT = ('    if memory and FLAVOUR != "v2.11":\n        sys.stdout.write("stop monitoring memory!\\n")\n'
                 '    return 0\n',
                 '    sys.stdout.write("Segmentation fault\\n")\n    return 139\n')




def test_npu_not_used_is_a_failed_job_not_an_aipu_figure(kirin, tmp_path):
    art, dev = kirin_npu_setup(kirin, tmp_path, NO_DEVICE)
    with closing(ADBTransport(dev)) as t:
        with pytest.raises(RunnerError, match=r"huawei_kirin_npu was not used.*No avaliable device"):
            run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
        # the same fallback text on a CPU backend is not an error (no NPU was asked for)
        m = run_lite_job(job("paddle-lite-arm"), dev, t, art)
    assert m.mean_ms is not None


def test_parser_flags_every_nnadapter_fallback_line():
    from lab.runtimes.benchmark_bin import parse_output
    base = ("======= Perf Info =======\nTime(unit: ms):\ninit  = 1\nfirst = 2\nmin   = 1\n"
            "max   = 2\navg   = 1.5\n")
    for line in ("Find and ignore unsupport nnadapter device: android_nnapi",
                 "[W 12/ 3 10:0:0.1 nnadapter.cc:88] No avaliable device found for nnadapter",
                 "The device list for nnadapter is null!"):
        r = parse_output(line + "\n" + base)
        assert r.ok and r.nnadapter_unused == [line.rstrip()]
    assert parse_output(base).nnadapter_unused == []


def test_nonzero_exit_after_perf_info_is_a_failed_job(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path, patch=CRASH_AT_EXIT)))
    with closing(ADBTransport(dev)) as t:
        with pytest.raises(RunnerError, match=r"exited 139.*Segmentation fault"):
            run_lite_job(job("paddle-lite-arm"), dev, t, art)


def test_lite_job_gets_battery_power_from_the_phone_sampler(kirin, tmp_path, monkeypatch):
    # the Kirin double's battery: current_now -350000 µA x voltage_now 4.012 V = 1.4042 W, flat.
    # The double rewrites /sys only in command text, so the sampler is pointed at the sandbox.
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)))
    with closing(ADBTransport(dev)) as t:
        m = run_lite_job(job("paddle-lite-arm"), dev, t, art, root=str(kirin.root))
        off = run_lite_job(job("paddle-lite-arm"), dev, t, art, telemetry=False, root=str(kirin.root))
    assert m.power_w == pytest.approx(0.35 * 4.012), m.power_note
    assert m.power_source.startswith("battery:Battery")
    assert m.energy_mj_per_inf is not None and m.energy_mj_per_inf > 0
    assert "approximate" in m.power_note  # window = avg x repeats before the trial's end mark
    assert m.temp_start_c == 41.0
    windows = m.provenance["telemetry"]["windows"]
    assert len(windows) == 3 and all(w[2] == 5 for w in windows)  # one per trial, --repeats=5
    assert off.power_w is None and "telemetry disabled" in off.power_note


def test_lite_job_without_power_sensor_says_why(kirin, tmp_path, monkeypatch):
    import shutil
    shutil.rmtree(kirin.root / "sys/class/power_supply")
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)))
    with closing(ADBTransport(dev)) as t:
        m = run_lite_job(job("paddle-lite-arm", trials=1), dev, t, art, root=str(kirin.root))
    assert m.power_w is None and m.power_note.startswith("power unavailable")
    assert "no battery node" in m.power_note and m.temp_start_c == 41.0  # thermal still read


# ----------------------------------------------------------------- output checks (issue 13)
def _with_reference(tmp_path: Path):
    """A small fake model with a host reference written in agreement's cache format (no paddle:
    the comparison and benchmark_bin's input/output files are under test, not the model)."""
    import json as _json

    import numpy as np

    from lab.models import agreement
    d = tmp_path / "models" / "tiny"
    d.mkdir(parents=True)
    (d / "inference.pdmodel").write_bytes(b"program" * 10)
    (d / "inference.pdiparams").write_bytes(b"\x00" * 64)
    sha = hashlib.sha256((d / "inference.pdmodel").read_bytes() + (d / "inference.pdiparams").read_bytes()).hexdigest()
    art = ModelArtifact(id="tiny", dir=d, json_path=None, pdiparams_path=None, pdmodel_path=d / "inference.pdmodel",
                        legacy_pdiparams_path=d / "inference.pdiparams", sha256=sha,
                        inputs=[InputSpec("x", (-1, 1, 4, 4), "float32", (1, 1, 4, 4))], flops=None, params=None,
                        op_histogram={}, source="zoo", legacy_sha256=sha)
    rng = np.random.RandomState(0)
    n = agreement.REFERENCE_SET_SIZE
    x = rng.rand(n, 1, 1, 4, 4).astype("float32")
    out = rng.randn(n, 1, 10).astype("float32")
    meta = {"model_id": "tiny", "model_sha256": sha, "n": n, "source": "test", "runtime": "test fp32",
            "n_outputs": 1}
    np.savez(d / agreement.REFERENCE_FILE, meta=np.array(_json.dumps(meta)), **{"in:x": x, "out:0": out})
    return art, x, out


def _table(tmp_path: Path, x, out, perturb: bool) -> Path:
    import json as _json
    table = {}
    for i in range(3):
        vals = out[i].ravel()[::-1] if perturb else out[i].ravel()
        table[hashlib.sha256(lite_rt._value_text(x[i]).encode()).hexdigest()] = [[float(v) for v in vals]]
    p = tmp_path / "outputs.json"
    p.write_text(_json.dumps(table))
    return p


@pytest.mark.parametrize("flavour,perturb,weak,ok", [
    ("develop", False, False, True),   # --output_data_path: every value compared
    ("v2.12", False, True, True),      # mean/std only: weak, still passes
    ("develop", True, False, False),   # a device that computes something else: fast but wrong
    ("v2.12", True, True, True),       # reversed values keep mean/std: the weak check cannot see it
])
def test_lite_output_check_rides_on_the_trials(kirin, tmp_path, flavour, perturb, weak, ok):
    art, x, out = _with_reference(tmp_path)
    table = _table(tmp_path, x, out, perturb)
    binary = make_bin(tmp_path, flavour, patch=('OUTPUTS_TABLE = ""', f'OUTPUTS_TABLE = "{table}"'))
    dev = adb_device(kirin, benchmark_bin=str(binary))
    with closing(ADBTransport(dev)) as t:
        m = run_lite_job(job("paddle-lite-arm"), dev, t, art, telemetry=False)
    assert m.agree_ok is ok, m.notes
    assert ("weak" in m.agree_reference) is weak and m.agree_reference.startswith("tiny@")
    if weak:
        assert m.agree_cosine_min is None and any("weak" in n for n in m.notes)
    else:
        assert (m.agree_cosine_min > 0.9999) is ok and m.agree_top1 is not None
    cmds = m.provenance["commands"]
    assert m.provenance["checks"]["agreement"]["n"] == 3  # one reference sample per trial
    assert all("--input_data_path=" not in c for c in cmds)  # the timing command as planned
