"""ADB transport against the adbd double, driven by the real adb-shell client."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest_adb import (Faults, adb_device, adb_env, adb_key, kirin, start_double)  # noqa: F401

from lab.core.errors import DeviceTimeout, TransferError
from lab.transport.adb import (ADBDeviceGone, ADBOffline, ADBTransport, ADBUnauthorized,
                               ensure_adb_key)
from lab.core.hashing import sha256_file


def test_double_works_with_unmodified_AdbDeviceTcp(kirin, adb_env):
    """The double speaks the protocol the stock client expects (CNXN/AUTH/OPEN/WRTE/sync)."""
    from adb_shell.adb_device import AdbDeviceTcp
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    dev = AdbDeviceTcp("127.0.0.1", kirin.port, default_transport_timeout_s=5)
    assert dev.connect(rsa_keys=[PythonRSASigner.FromRSAKeyPath(str(adb_env))], auth_timeout_s=2)
    assert dev.shell("getprop ro.board.platform").strip() == "kirin990"
    assert dev.stat("/data/local/tmp")[1] >= 0
    dev.close()
    assert kirin.stats.auth_ok == 1


def test_key_generated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLAB_ADB_KEY", str(tmp_path / "cfg" / "adbkey"))
    from lab.transport.adb import adb_key_path
    p = ensure_adb_key(adb_key_path())
    first = p.read_bytes()
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    assert ensure_adb_key(adb_key_path()).read_bytes() == first
    assert Path(str(p) + ".pub").read_bytes()


def test_run_exit_code_stdout_stderr(kirin):
    t = ADBTransport(adb_device(kirin))
    try:
        r = t.run("echo out; echo err >&2; printf 'no newline'; exit 7", timeout=20)
        assert r.rc == 7
        assert r.out == "out\nno newline"
        assert r.err == "err\n"
        r = t.run(["sh", "-c", 'printf "%s|" "$@"', "x", "a b", "it's", "$HOME"], timeout=20)
        assert r.rc == 0 and r.out == "a b|it's|$HOME|"
        r = t.run(["pwd"], timeout=20, cwd="/data/local/tmp", env={"A": "1 2"})
        assert r.out.strip() == "/data/local/tmp"
        r = t.run("echo $A", timeout=20, env={"A": "x y"})
        assert r.out == "x y\n"
    finally:
        t.close()


def test_run_deadline_kills_remote(kirin):
    t = ADBTransport(adb_device(kirin))
    try:
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match="deadline"):
            t.run("sleep 29.713; echo done", timeout=1.5)  # an odd duration: no other process matches
        assert time.monotonic() - start < 10
        # the transport reconnects and the killed command is gone (allow the kill a moment)
        deadline = time.monotonic() + 5
        while True:
            r = t.run("ps -eo args 2>/dev/null | grep -c '^sleep 29[.]713$' || true", timeout=20)
            if r.out.strip() in ("0", "") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.out.strip() in ("0", "")
    finally:
        t.close()


def test_push_verify_skip_and_pull(kirin, tmp_path):
    t = ADBTransport(adb_device(kirin))
    try:
        f = tmp_path / "model.bin"
        f.write_bytes(os.urandom(300_000))
        f.chmod(0o755)
        r1 = t.push(f, "/data/local/tmp/hwlab/models/m/model.bin")
        assert not r1.skipped and r1.bytes_sent == 300_000 and r1.sha256 == sha256_file(f)
        on_device = kirin.root / "data/local/tmp/hwlab/models/m/model.bin"
        assert on_device.read_bytes() == f.read_bytes()
        assert os.access(on_device, os.X_OK)
        assert not (kirin.root / "data/local/tmp/hwlab/models/m/model.bin.hwlab-part").exists()
        r2 = t.push(f, "/data/local/tmp/hwlab/models/m/model.bin")
        assert r2.skipped and r2.bytes_sent == 0
        back = t.pull("/data/local/tmp/hwlab/models/m/model.bin", tmp_path / "back.bin")
        assert back.read_bytes() == f.read_bytes()
        with pytest.raises(TransferError, match="not found") as ei:
            t.pull("/data/local/tmp/nope", tmp_path / "x")
        assert not ei.value.transient
    finally:
        t.close()


def test_truncated_push_is_a_size_mismatch(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, faults=Faults(truncate_push=True, truncate_push_times=99))
    t = ADBTransport(adb_device(srv))
    try:
        f = tmp_path / "w.bin"
        f.write_bytes(os.urandom(10_000))
        with pytest.raises(TransferError, match="expected 10000 bytes") as ei:
            t.push(f, "/data/local/tmp/hwlab/w.bin")
        assert ei.value.transient
        assert not (srv.root / "data/local/tmp/hwlab/w.bin").exists()
    finally:
        t.close()
        srv.stop()


def test_drop_mid_push_recovers(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, faults=Faults(drop_push_after_bytes=100_000))
    t = ADBTransport(adb_device(srv))
    try:
        f = tmp_path / "m.bin"
        f.write_bytes(os.urandom(600_000))
        r = t.push(f, "/data/local/tmp/hwlab/m.bin")  # retried once on a fresh connection
        assert not r.skipped and srv.stats.drops == 1 and srv.stats.connections >= 2
        assert (srv.root / "data/local/tmp/hwlab/m.bin").read_bytes() == f.read_bytes()
    finally:
        t.close()
        srv.stop()


def test_drop_mid_push_chunked_resends_one_chunk(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, faults=Faults(drop_push_after_bytes=50_000, drop_push_times=2))
    t = ADBTransport(adb_device(srv), large_file_bytes=200_000, chunk_bytes=128 * 1024)
    try:
        f = tmp_path / "big.bin"
        f.write_bytes(os.urandom(700_000))
        r = t.push(f, "/data/local/tmp/hwlab/big.bin")
        assert srv.stats.drops == 2
        assert (srv.root / "data/local/tmp/hwlab/big.bin").read_bytes() == f.read_bytes()
        assert r.bytes_sent == 700_000
        assert not list((srv.root / "data/local/tmp/hwlab").glob("big.bin.hwlab-part*"))
    finally:
        t.close()
        srv.stop()


def test_drop_mid_run_is_device_gone(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, faults=Faults(drop_run_matching="sleep 5", drop_run_after_s=0.3))
    t = ADBTransport(adb_device(srv))
    try:
        start = time.monotonic()
        with pytest.raises(ADBDeviceGone) as ei:
            t.run("echo started; sleep 5; echo end", timeout=30)
        assert ei.value.transient and time.monotonic() - start < 5
        assert t.run("echo again", timeout=20).out == "again\n"  # reconnects on its own
    finally:
        t.close()
        srv.stop()


def test_unauthorized(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, faults=Faults(reject_auth=True))
    t = ADBTransport(adb_device(srv), connect_timeout=3)
    try:
        start = time.monotonic()
        with pytest.raises(ADBUnauthorized, match="Allow USB debugging") as ei:
            t.run("true", timeout=10)
        assert not ei.value.transient and time.monotonic() - start < 6
        assert srv.stats.auth_rejected == 1
    finally:
        t.close()
        srv.stop()


def test_unknown_key_rejected_without_prompt_acceptance(tmp_path, adb_env, monkeypatch):
    srv = start_double(tmp_path, adb_env)
    other = tmp_path / "other" / "adbkey"
    ensure_adb_key(other)
    monkeypatch.setenv("HWLAB_ADB_KEY", str(other))
    t = ADBTransport(adb_device(srv), connect_timeout=3)
    try:
        with pytest.raises(ADBUnauthorized):
            t.run("true", timeout=10)
    finally:
        t.close()
        srv.stop()


def test_offline(adb_env):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    from lab.core.records import Device
    t = ADBTransport(Device(id="gone", chip="x", transport="adb", serial=f"127.0.0.1:{port}"),
                     connect_timeout=2)
    with pytest.raises(ADBOffline, match="cannot connect") as ei:
        t.run("true", timeout=5)
    assert ei.value.transient


def test_config_errors(tmp_path, monkeypatch):
    from lab.core.errors import ConfigError
    from lab.core.records import Device
    with pytest.raises(ConfigError, match="serial"):
        ADBTransport(Device(id="p", chip="x", transport="adb"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no adb binary
    with pytest.raises(ConfigError, match="adb"):
        ADBTransport(Device(id="p", chip="x", transport="adb", serial="R58M", adb_server="lab1:5037"))


@pytest.fixture
def adb_server(tmp_path, adb_env):
    """A real adb server (Debian package `adb`) on a free port, using the lab key."""
    import shutil
    import socket
    import subprocess
    if not shutil.which("adb"):
        pytest.skip("no adb binary (apt-get install adb)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, ADB_VENDOR_KEYS=str(adb_env), HOME=str(tmp_path))
    subprocess.run(["adb", "-P", str(port), "start-server"], env=env, capture_output=True, timeout=30)
    yield f"127.0.0.1:{port}"
    subprocess.run(["adb", "-P", str(port), "kill-server"], env=env, capture_output=True, timeout=30)


def test_through_real_adb_server(kirin, adb_server, tmp_path):
    """devices.yaml `adb_server:`: the real adb server talks to the double; same transport contract."""
    t = ADBTransport(adb_device(kirin, adb_server=adb_server))
    try:
        r = t.run("echo out; echo err >&2; exit 5", timeout=30)
        assert (r.rc, r.out, r.err) == (5, "out\n", "err\n")
        f = tmp_path / "m.bin"
        f.write_bytes(os.urandom(200_000))
        assert not t.push(f, "/data/local/tmp/hwlab/m.bin").skipped
        assert t.push(f, "/data/local/tmp/hwlab/m.bin").skipped
        assert t.pull("/data/local/tmp/hwlab/m.bin", tmp_path / "b.bin").read_bytes() == f.read_bytes()
        with pytest.raises(DeviceTimeout):
            t.run("sleep 20", timeout=1.5)
    finally:
        t.close()
    assert kirin.stats.auth_ok >= 1  # the server authenticated with the lab key


def test_adb_server_unknown_device(adb_server, adb_env):
    from lab.core.records import Device
    t = ADBTransport(Device(id="ghost", chip="x", transport="adb", serial="NOSUCHSERIAL",
                            adb_server=adb_server), connect_timeout=10)
    with pytest.raises(ADBOffline, match="NOSUCHSERIAL"):
        t.run("true", timeout=10)
