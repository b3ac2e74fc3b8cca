"""sampler.sh on fake sysfs trees, under every shell it must survive (real shells, real files)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab.telemetry.energy import energy_between
from lab.telemetry.figures import Window, analyze
from lab.telemetry.power import battery_series, ina_series, rapl_series
from lab.telemetry.trace import Trace, parse_trace

ROOT = Path(__file__).resolve().parents[2]
SAMPLER = ROOT / "lab" / "runners" / "sampler.sh"
TREES = ROOT / "tests" / "data" / "sysfs"


def _toybox_env(tmp_path: Path) -> dict:
    """An Android-like userland: mksh with only toybox applets on PATH."""
    bindir = tmp_path / "toybin"
    bindir.mkdir()
    toybox = shutil.which("toybox")
    for applet in ("sleep", "date", "cat", "printf", "head"):
        (bindir / applet).symlink_to(toybox)
    return {"PATH": str(bindir)}


SHELLS = {
    "dash": (["dash"], None),
    "bash": (["bash", "--posix"], None),
    "busybox": (["busybox", "sh"], None),
    "mksh+toybox": (["mksh"], "toybox"),
}


def shell_cmd(name: str, tmp_path: Path):
    argv, needs = SHELLS[name]
    if not shutil.which(argv[0]) or (needs and not shutil.which(needs)):
        pytest.skip(f"{argv[0]} not installed (apt-get install dash bash busybox mksh toybox)")
    env = dict(os.environ)
    if name == "busybox":  # busybox applets only, like a board's rootfs
        bindir = tmp_path / "bbbin"
        bindir.mkdir()
        for applet in ("sleep", "date", "cat", "printf"):
            (bindir / applet).symlink_to(shutil.which("busybox"))
        env["PATH"] = str(bindir)
    if needs == "toybox":
        env = _toybox_env(tmp_path)
    return [shutil.which(argv[0])] + argv[1:], env


def run_sampler(shell: str, tmp_path: Path, *args: str) -> Trace:
    cmd, env = shell_cmd(shell, tmp_path)
    out = tmp_path / "trace.txt"
    proc = subprocess.run(cmd + [str(SAMPLER), "-o", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return parse_trace(out.read_text())


@pytest.mark.parametrize("shell", list(SHELLS))
def test_kirin_phone_tree(shell, tmp_path):
    tr = run_sampler(shell, tmp_path, "-R", str(TREES / "kirin_phone"), "-r", "50", "-n", "3")
    assert tr.clock == "uptime" and tr.end_reason == "count" and len(tr.t) == 3
    assert [c.name for c in tr.columns] == ["bat.current", "bat.voltage", "bat.status",
                                             "temp.thermal_zone0", "temp.thermal_zone1",
                                             "cpu.policy0", "cpu.policy4"]
    assert tr.info["bat.node"] == "Battery"  # Huawei's capital B
    assert tr.values["bat.current"] == [350.0] * 3 and tr.values["bat.status"] == ["Discharging"] * 3
    assert tr.info["cpu.policy4.cpuinfo_max_freq"] == "2600000"
    assert tr.info["temp.thermal_zone0.trip_point_0"] == "85000 passive"
    assert tr.t == sorted(tr.t) and len(tr.wall_refs) == 2
    s = battery_series(tr)  # 350 mA x 3.85 V = 1.3475 W, unit detected as mA
    assert s.power_w[0] == pytest.approx(1.3475) and "current unit mA" in s.notes[0]


@pytest.mark.parametrize("shell", list(SHELLS))
def test_rk1808_tree(shell, tmp_path):
    tr = run_sampler(shell, tmp_path, "-R", str(TREES / "rk1808_board"), "-n", "2")
    names = [c.name for c in tr.columns]
    assert "ina.hwmon0.power1" in names and "npu.ffbc0000.npu" in names
    assert not any(n.startswith("ina.hwmon1") for n in names)  # cpu_thermal hwmon is no INA
    assert tr.values["npu.ffbc0000.npu"] == [792000000.0] * 2
    assert ina_series(tr).power_w == [2.5, 2.5]


def test_android_tree_spaces_and_per_cpu_fallback(tmp_path):
    tr = run_sampler("dash", tmp_path, "-R", str(TREES / "android_phone"), "-n", "1")
    assert tr.values["bat.status"] == ["Not_charging"]
    assert "cpu.cpu0" in tr.values
    s = battery_series(tr)  # -420000 µA x 4 V, kernel sign
    assert s.power_w[0] == pytest.approx(1.68) and "negative = discharging" in s.notes[0]


def test_this_machine_reports_power_unavailable_with_reason(tmp_path):
    """The local device: no battery, no INA, no readable RAPL here -> 'power unavailable: why'."""
    tr = run_sampler("dash", tmp_path, "-n", "2")
    have = any(c.name.startswith(("bat.", "ina.", "rapl.")) for c in tr.columns)
    r = analyze(tr, [Window(tr.t[0], tr.t[-1] + 1e-9, 1)])
    if have:  # a machine with readable sensors must give a number instead
        assert r.power_w is not None
    else:
        assert r.power_w is None and r.energy_mj_per_inf is None
        assert r.power_note.startswith("power unavailable:")
        assert "powercap" in r.power_note


def test_unreadable_rapl_zone_is_reported(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "x86_rapl", tree, symlinks=True)
    e = tree / "sys/class/powercap/intel-rapl:0/energy_uj"
    e.unlink()
    e.mkdir()  # reading a directory fails even for root, like a 0400 file for a user
    tr = run_sampler("dash", tmp_path, "-R", str(tree), "-n", "1")
    assert any(w == "rapl.intel-rapl:0" and "root-only" in why for w, why in tr.unavailable)


def test_duration_and_stopfile(tmp_path):
    start = time.monotonic()
    tr = run_sampler("dash", tmp_path, "-R", str(TREES / "bare"), "-r", "20", "-d", "0.5")
    assert tr.end_reason == "duration" and 0.4 <= tr.t[-1] - tr.t[0] <= 1.0
    assert time.monotonic() - start < 5
    stop = tmp_path / "stop"
    (tmp_path / "bb").mkdir()
    cmd, env = shell_cmd("busybox", tmp_path / "bb")
    out = tmp_path / "t2.txt"
    proc = subprocess.Popen(cmd + [str(SAMPLER), "-o", str(out), "-r", "20", "-s", str(stop)],
                            env=env)
    time.sleep(0.5)
    stop.touch()
    assert proc.wait(timeout=5) == 0
    tr = parse_trace(out.read_text())
    assert tr.end_reason == "stopfile" and len(tr.t) >= 2


def test_sigterm_ends_cleanly(tmp_path):
    out = tmp_path / "t.txt"
    proc = subprocess.Popen(["dash", str(SAMPLER), "-o", str(out), "-r", "20"])
    time.sleep(0.4)
    proc.terminate()
    assert proc.wait(timeout=5) == 0
    assert parse_trace(out.read_text()).end_reason == "signal"


def test_bad_arguments_exit_2(tmp_path):
    for args in (["-r", "abc"], ["-r", "0"], ["-c", "sundial"], ["-x"]):
        p = subprocess.run(["dash", str(SAMPLER), *args], capture_output=True, text=True, timeout=10)
        assert p.returncode == 2 and p.stderr


@pytest.mark.slow
def test_scripted_rapl_sequence_with_wraparound(tmp_path):
    """The test rewrites energy_uj after each sample line; counter energy is exact whatever the
    timing: 900 -> 990 -> 40 (wrap at 1000) -> 140 µJ = 90 + 50 + 100 = 240 µJ."""
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "x86_rapl", tree, symlinks=True)
    zone = tree / "sys/class/powercap/intel-rapl:0"
    (zone / "max_energy_range_uj").write_text("1000\n")

    def put(v):
        tmp = zone / "energy_uj.new"
        tmp.write_text(f"{v}\n")
        os.replace(tmp, zone / "energy_uj")

    put(900)
    out = tmp_path / "trace.txt"
    proc = subprocess.Popen(["dash", str(SAMPLER), "-o", str(out), "-R", str(tree), "-r", "4",
                             "-n", "4"])
    seq, seen = [990, 40, 140], 0
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        lines = [ln for ln in out.read_text().splitlines() if ln and not ln.startswith("#")] \
            if out.exists() else []
        if len(lines) > seen and seen < len(seq):
            put(seq[seen])
            seen += 1
        time.sleep(0.01)
    assert proc.wait(timeout=5) == 0
    tr = parse_trace(out.read_text())
    assert tr.values["rapl.intel-rapl:0"] == [900, 990, 40, 140]
    s = rapl_series(tr)
    assert s.wraps == 1 and energy_between(s, tr.t[0], tr.t[-1]) == pytest.approx(240e-6)


def test_shellcheck_posix():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    p = subprocess.run(["shellcheck", "-s", "sh", str(SAMPLER)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
