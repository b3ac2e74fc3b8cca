"""paddle-lite-* jobs end to end over ADB: benchmark_bin stand-in on the adbd double.

The stand-in (tests/data/benchmark_bin/standin_benchmark_bin.py) is not Paddle Lite: it checks the
flags, files and LD_LIBRARY_PATH a real binary needs and prints the documented v2.12 text.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest_adb import adb_device, adb_env, adb_key, kirin, start_double  # noqa: F401

from lab import lite_exec
from lab.errors import ConfigError, RunnerError
from lab.models import ModelArtifact
from lab.records import InputSpec, Job, Protocol
from lab.transport.adb import ADBTransport

STANDIN = Path(__file__).parent / "data" / "benchmark_bin" / "standin_benchmark_bin.py"


def make_artifact(tmp_path: Path, model_id: str = "mnv1") -> ModelArtifact:
    d = tmp_path / "models" / model_id
    d.mkdir(parents=True)
    (d / "inference.pdmodel").write_bytes(b"program-desc" * 10)
    (d / "inference.pdiparams").write_bytes(b"\x00\x01" * 1000)
    sha = hashlib.sha256((d / "inference.pdmodel").read_bytes() + (d / "inference.pdiparams").read_bytes()).hexdigest()
    return ModelArtifact(id=model_id, dir=d, json_path=None, pdiparams_path=None,
                         pdmodel_path=d / "inference.pdmodel", legacy_pdiparams_path=d / "inference.pdiparams",
                         sha256=sha, inputs=[InputSpec("x", (-1, 3, 224, 224), "float32", (1, 3, 224, 224))],
                         flops=None, params=None, op_histogram={}, source="zoo", legacy_sha256=sha)


def make_bin(tmp_path: Path, flavour: str = "v2.12", usage_always: bool = False) -> Path:
    text = STANDIN.read_text().replace('FLAVOUR = "v2.12"', f'FLAVOUR = "{flavour}"')
    if usage_always:
        text = text.replace("    if errors:\n", "    errors.append('Must set --backend option!')\n    if errors:\n")
    p = tmp_path / f"bin-{flavour}-{int(usage_always)}" / "benchmark_bin"
    p.parent.mkdir(parents=True)
    p.write_text(text)
    p.chmod(0o755)
    return p


def make_libs(tmp_path: Path, device: str, with_hal: bool = True) -> Path:
    d = tmp_path / f"libs-{device}-{int(with_hal)}"
    d.mkdir()
    (d / "libnnadapter.so").write_bytes(b"\x7fELF stand-in")
    if with_hal:
        (d / f"lib{device}.so").write_bytes(b"\x7fELF stand-in HAL")
    (d / "libhiai.so").write_bytes(b"\x7fELF stand-in DDK")
    return d


def job(backend: str, *, trials: int = 3, precision: str = "fp32", **opts) -> Job:
    return Job(job_id=f"j-{backend}-{precision}", campaign="c", device="phone", chip="kirin990",
               model="mnv1", model_sha256="x", backend=backend,
               processor="aipu" if "npu" in backend or "timvx" in backend else "cpu",
               precision=precision, threads=2, options=tuple(sorted(opts.items())),
               protocol=Protocol(warmup=2, min_iters=5, trials=trials, timeout_s=60))


@pytest.fixture(autouse=True)
def _clear_tool_cache():
    lite_exec._TOOL_CACHE.clear()


def test_arm_raw_model_converted_in_process(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)), power_mode="big")
    t = ADBTransport(dev)
    try:
        m = lite_exec.run_lite_job(job("paddle-lite-arm"), dev, t, art)
    finally:
        t.close()
    assert m.source == "benchmark_bin" and m.n_samples == 3 and len(m.samples) == 3
    assert m.mean_ms and m.min_ms <= m.mean_ms <= m.max_ms
    assert m.p50_ms is not None and m.ci_low_ms <= m.p50_ms <= m.ci_high_ms
    assert m.p90_ms is None and m.p99_ms is None and m.converged is None
    assert m.load_ms and m.first_ms and m.first_ms > m.min_ms
    assert m.peak_rss_mb == 61.25  # v2.12 memory profile detected from --help
    assert lite_exec.MINMAX_NOTE in m.notes
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
    art = make_artifact(tmp_path)
    nb = lite_exec.nb_path(art, "kirin-npu")
    nb.parent.mkdir(parents=True)
    nb.write_bytes(b"naive buffer for kirin")
    libs = make_libs(tmp_path, "huawei_kirin_npu")
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)),
                     nnadapter_libs={"huawei_kirin_npu": str(libs)})
    t = ADBTransport(dev)
    try:
        m = lite_exec.run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
        pushes_after_first = len(kirin.stats.pushes)
        m2 = lite_exec.run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
    finally:
        t.close()
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
    t = ADBTransport(dev)
    try:
        with pytest.raises(RunnerError, match="libhuawei_kirin_npu.so"):
            lite_exec.run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
    finally:
        t.close()


def test_config_errors(kirin, tmp_path):
    art = make_artifact(tmp_path)
    t = ADBTransport(adb_device(kirin))
    try:
        with pytest.raises(ConfigError, match="benchmark_bin"):
            lite_exec.run_lite_job(job("paddle-lite-arm"), adb_device(kirin), t, art)
        dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path)))
        with pytest.raises(ConfigError, match="nnadapter_libs"):
            lite_exec.run_lite_job(job("paddle-lite-kirin-npu"), dev, t, art)
        rk = adb_device(kirin, benchmark_bin=str(dev.benchmark_bin),
                        nnadapter_libs={"rockchip_npu": str(make_libs(tmp_path, "rockchip_npu"))})
        with pytest.raises(ConfigError, match="fully-quantised int8"):
            lite_exec.run_lite_job(job("paddle-lite-rockchip-npu", precision="int8"), rk, t, art)
    finally:
        t.close()


def test_v2_11_memory_unavailable_and_few_trials(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path, "v2.11")))
    t = ADBTransport(dev)
    try:
        m = lite_exec.run_lite_job(job("paddle-lite-arm", trials=2), dev, t, art)
    finally:
        t.close()
    assert m.peak_rss_mb is None
    assert any("peak memory unavailable" in n for n in m.notes)
    assert m.p50_ms is None and any("needs >= 3 trials" in n for n in m.notes)
    assert "--enable_memory_profile" not in m.provenance["commands"][0]


def test_usage_output_is_a_failed_job(kirin, tmp_path):
    art = make_artifact(tmp_path)
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path, usage_always=True)))
    t = ADBTransport(dev)
    try:
        with pytest.raises(RunnerError, match="usage.*Must set --backend"):
            lite_exec.run_lite_job(job("paddle-lite-arm"), dev, t, art)
    finally:
        t.close()
