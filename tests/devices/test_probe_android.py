"""Android / ARM board probe: parser on recorded text, and the real script through the double."""
from __future__ import annotations

from conftest_adb import adb_device, adb_env, adb_key, kirin, start_double  # noqa: F401

from lab.devices.probe_android import parse_probe, probe_android
from lab.transport.adb import ADBTransport

RECORDED = """HAVE getprop
PROP ro.product.brand=HUAWEI
PROP ro.product.model=ELE-AL00
PROP ro.board.platform=kirin980
PROP ro.product.cpu.abi=arm64-v8a
PROP ro.product.cpu.abilist=arm64-v8a,armeabi-v7a,armeabi
PROP ro.build.version.sdk=29
PROP ro.soc.model=
UNAME aarch64
POLICY policy0 0 1 2 3 | 1863000 | schedutil
POLICY policy4 4 5 | 1920000 | schedutil
POLICY policy6 6 7 | 2600000 | schedutil
POSSIBLE 0-7
BATTERY /sys/class/power_supply/Battery
THERMAL thermal_zone0 soc_thermal 43000
THERMAL thermal_zone1 battery 31
HIAI /vendor/lib64/libhiai.so
MEMTOTAL_KB 5842412
"""


def test_parse_recorded_kirin():
    f = parse_probe(RECORDED)
    assert f["android"] and f["brand"] == "HUAWEI" and f["board_platform"] == "kirin980"
    assert f["abi"] == "arm64-v8a" and f["abilist"][1] == "armeabi-v7a" and f["sdk"] == 29
    assert f["soc_model"] is None  # empty prop is unknown, not ""
    assert [c["cpus"] for c in f["cpu_clusters"]] == [[0, 1, 2, 3], [4, 5], [6, 7]]
    assert f["big_cores"] == [6, 7] and f["big_core_mask"] == "0xc0" and f["ncpu"] == 8
    assert f["battery_node"].endswith("/Battery")
    assert f["thermal_zones"][0]["temp_c"] == 43.0 and f["thermal_zones"][1]["temp_c"] == 31.0
    assert f["npu"] == ["huawei_kirin_npu"] and f["mem_total_mb"] == round(5842412 / 1024, 1)


def test_parse_empty_is_unknown_not_zero():
    f = parse_probe("")
    assert f["android"] is False and f["ncpu"] is None and f["mem_total_mb"] is None
    assert f["big_core_mask"] is None and f["npu"] == []
    assert any("clusters unknown" in n for n in f["notes"])


def test_probe_kirin_double(kirin):
    t = ADBTransport(adb_device(kirin))
    try:
        f = probe_android(t, timeout=30)
    finally:
        t.close()
    assert f["android"] and f["model"] == "ELE-AL00" and f["board_platform"] == "kirin990"
    assert f["big_cores"] == [6, 7] and f["big_core_mask"] == "0xc0"
    assert [c["max_khz"] for c in f["cpu_clusters"]] == [1844000, 2362000, 2860000]
    assert f["battery_node"] == "/sys/class/power_supply/Battery"  # device path, not sandbox
    assert "huawei_kirin_npu" in f["npu"] and f["hiai_libs"][0] == "/vendor/lib64/libhiai.so"
    assert {z["type"] for z in f["thermal_zones"]} == {"soc_thermal", "battery"}
    assert f["mem_total_mb"] > 7000


def test_probe_rk1808_double(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, "rk1808")
    t = ADBTransport(adb_device(srv, "rk", chip="rk1808"))
    try:
        f = probe_android(t, timeout=30)
    finally:
        t.close()
        srv.stop()
    assert not f["android"] and f["brand"] is None
    assert f["galcore"] and f["npu"] == ["rockchip_npu/verisilicon_timvx"]
    assert f["npu_devfreq"][0]["max_hz"] == 792000000
    assert f["big_core_mask"] is None and f["cpu_clusters"][0]["cpus"] == [0, 1]
    assert f["battery_node"] is None and any("battery" in n for n in f["notes"])
