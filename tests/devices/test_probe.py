"""Device probe: parser on recorded outputs, the real script locally / under busybox / over SSH."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from lab.cli import main as lab_main
from lab.core.errors import DeviceUnreachable
from lab.devices.probe import PROBE_SCRIPT, PY_CODE, ProbeReport, check_devices, parse_probe_output, probe_device
from lab.core.records import Device
from conftest_adb import adb_env, adb_key  # noqa: F401 (fixtures for the adb probe test)

BOARD = Device(id="rk1808-stick", chip="rk1808", transport="ssh", host="192.0.2.8", user="toybrick",
               python="/usr/bin/python3")

# Recorded shape of the probe's output on an RK1808-like Linux board without paddle.
BOARD_OUTPUT = """\
os_name=Linux
kernel=4.4.194
arch=aarch64
os_pretty=Debian GNU/Linux 10 (buster)
cpu_model= ARMv8 Processor rev 4 (v8l)
cores_cpuinfo=2
cores_online=2
max_freq_khz=1608000
max_freq_khz=1416000
mem_total_kb=1000384
thermal=thermal_zone0|soc-thermal|45000
thermal=thermal_zone1|npu-thermal|47500
power=power_supply|usb|USB|
power=hwmon|hwmon0|ina226|
HWLAB_PY={"python": "3.7.3", "executable": "/usr/bin/python3", "numpy": "1.16.2", "paddle": null, \
"paddle_error": "ModuleNotFoundError: No module named 'paddle'", "paddlelite": null}
"""


def test_parse_board_output_gives_typed_facts_and_install_hints():
    rep = parse_probe_output(BOARD, BOARD_OUTPUT)
    assert rep.reachable and rep.device == "rk1808-stick"
    assert rep.os == "Linux (Debian GNU/Linux 10 (buster))" and rep.arch == "aarch64"
    assert rep.cores == 2 and rep.max_freq_mhz == 1608.0 and rep.mem_total_mb == pytest.approx(976.9, abs=0.1)
    assert [z["temp_c"] for z in rep.thermal_zones] == [45.0, 47.5]
    assert {p["kind"] for p in rep.power_sources} == {"power_supply", "hwmon"}
    assert rep.python.startswith("3.7.3") and rep.paddle is None
    assert any("pip install paddlepaddle==" in m and "/usr/bin/python3" in m for m in rep.runtimes_missing)
    text = rep.to_text()
    assert "MISSING: paddle-inference-cpu" in text and "ina226" in text


def test_unknown_figures_stay_none_not_zero():
    rep = parse_probe_output(BOARD, "os_name=Linux\npython_missing=1\n")
    assert rep.cores is None and rep.max_freq_mhz is None and rep.mem_total_mb is None
    assert rep.thermal_zones == [] and rep.power_sources == []
    assert "n/a" in rep.to_text() and "none found" in rep.to_text()
    assert any("not found on the device" in m for m in rep.runtimes_missing)


def test_nvidia_chip_with_cpu_only_paddle_gets_the_gpu_wheel_hint():
    gpu = replace(BOARD, id="gpu01", chip="nvidia-t4", python="/opt/venv/bin/python")
    out = 'os_name=Linux\nHWLAB_PY={"python": "3.10.12", "numpy": "1.26.4", "paddle": "3.3.1", "paddle_cuda": false}\n'
    rep = parse_probe_output(gpu, out)
    assert any("paddlepaddle-gpu==" in m for m in rep.runtimes_missing)


def test_probe_local_device_for_real():
    rep = probe_device(Device(id="local", chip="generic-x86-cpu", transport="local"))
    assert rep.reachable, rep.error
    assert rep.arch and rep.kernel and rep.cores and rep.cores >= 1 and rep.mem_total_mb > 0
    assert rep.paddle  # the lab's own interpreter has paddle
    assert rep.runtimes_missing == []
    json.dumps(rep.to_dict())


def test_probe_reports_missing_paddle_for_a_python_without_it(tmp_path):
    py = shutil.which("python3", path="/usr/bin:/bin")
    if not py or subprocess.run([py, "-c", "import paddle"], capture_output=True).returncode == 0:
        pytest.skip("no system python3 without paddle")
    rep = probe_device(Device(id="local", chip="generic-x86-cpu", transport="local", python=py,
                              workdir=str(tmp_path)))
    assert rep.reachable and rep.paddle is None
    assert any("pip install paddlepaddle==" in m and py in m for m in rep.runtimes_missing)


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox not installed (apt-get install busybox)")
def test_probe_script_runs_under_busybox_sh():
    res = subprocess.run(["busybox", "sh", "-c", PROBE_SCRIPT, "x", "/nonexistent/python", PY_CODE],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rep = parse_probe_output(BOARD, res.stdout)
    assert rep.kernel and rep.arch and any("not found on the device" in m for m in rep.runtimes_missing)


def test_check_devices_parallel_keeps_order_and_bounds_each_probe():
    def factory(dev):
        if dev.id == "dead":
            raise DeviceUnreachable(dev.id, "connection refused")
        if dev.id == "hang":
            time.sleep(30)
        from lab.transport.registry import open_transport
        return open_transport(dev)

    devs = [Device(id="hang", chip="generic-x86-cpu", transport="local"),
            Device(id="dead", chip="generic-x86-cpu", transport="ssh", host="192.0.2.1", user="x"),
            Device(id="local", chip="generic-x86-cpu", transport="local", python="/bin/true")]
    start = time.monotonic()
    reps = check_devices(devs, timeout=3, transport_factory=factory)
    assert time.monotonic() - start < 15
    assert [r.device for r in reps] == ["hang", "dead", "local"]
    assert not reps[0].reachable and "did not finish within 3 s" in reps[0].error
    assert not reps[1].reachable and "DeviceUnreachable" in reps[1].error
    assert reps[2].reachable and reps[2].kernel


@pytest.mark.slow
def test_devices_check_cli_over_ssh(loopback_sshd, ssh_device, tmp_path, capsys):
    from sshd_fleet import free_port, write_inventory
    good = ssh_device(loopback_sshd)
    inv = write_inventory(tmp_path / "devices.yaml", [
        dict(id="lo-ssh", host=good.host, port=good.port, user="root", key_file=good.key_file,
             known_hosts=good.known_hosts, workdir=good.workdir, python=sys.executable),
        dict(id="lo-closed", host="127.0.0.1", port=free_port(), user="root", key_file=good.key_file,
             known_hosts=good.known_hosts, workdir=good.workdir)])
    rc = lab_main(["--devices", str(inv), "devices", "--check", "--format", "json"])
    reps = json.loads(capsys.readouterr().out)
    assert rc == 1  # one device unreachable
    by_id = {r["device"]: r for r in reps}
    assert by_id["lo-ssh"]["reachable"] and by_id["lo-ssh"]["paddle"] and by_id["lo-ssh"]["cores"] >= 1
    assert not by_id["lo-closed"]["reachable"] and "DeviceUnreachable" in by_id["lo-closed"]["error"]
    rc = lab_main(["--devices", str(inv), "devices", "--check", "lo-ssh"])
    out = capsys.readouterr().out
    assert rc == 0 and "lo-ssh [ssh] reachable" in out and "paddle: " in out


def test_probe_report_roundtrips_to_dict():
    rep = ProbeReport(device="d", transport="ssh", reachable=False, error="x")
    assert rep.to_dict()["error"] == "x" and "UNREACHABLE" in rep.to_text()


def test_adb_device_is_probed_through_probe_android(tmp_path, adb_env):
    from conftest_adb import adb_device, start_double
    srv = start_double(tmp_path, adb_env, "kirin")
    try:
        rep = check_devices([adb_device(srv, benchmark_bin=None)], timeout=60)[0]
    finally:
        srv.stop()
    assert rep.reachable, rep.error
    assert rep.transport == "adb" and rep.os and rep.os.startswith("Android")
    assert rep.cores and rep.cores >= 1 and rep.max_freq_mhz
    assert any("huawei_kirin_npu" in n for n in rep.notes)
    assert any("benchmark_bin" in m for m in rep.runtimes_missing)
    assert "Android" in rep.to_text()
