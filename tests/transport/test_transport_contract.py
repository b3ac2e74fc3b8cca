"""One transport protocol: `check()` and `abort()` behave the same over local, SSH and ADB.

Real parts only: the local shell, a real OpenSSH server on loopback, and the adbd double driven by
the real adb-shell client (its shell commands are real host processes, so a kill is observable).
"""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from conftest_adb import Faults, adb_device, adb_env, adb_key, kirin, start_double  # noqa: F401

from lab.core.errors import CommandFailed, DeviceError
from lab.core.records import Device
from lab.transport.base import CheckResult, Transport, run_ok
from lab.transport.adb import ADBTransport
from lab.transport.local import LocalTransport
from sshd_fleet import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(params=["local", "ssh", "adb"])
def any_transport(request, tmp_path):
    """One open transport of each kind, all reaching this machine."""
    if request.param == "local":
        t = LocalTransport(Device(id="here", chip="x", transport="local", workdir=str(tmp_path / "wd")))
        yield t
        t.close()
    elif request.param == "ssh":
        from lab.transport.ssh import SSHTransport
        t = SSHTransport(request.getfixturevalue("ssh_device")(request.getfixturevalue("loopback_sshd")))
        yield t
        t.close()
    else:
        t = ADBTransport(adb_device(request.getfixturevalue("kirin")))
        yield t
        t.close()


def _pids_running(pattern: str) -> list[int]:
    """Host pids whose command line is exactly `sleep PATTERN` (an odd duration nobody else uses)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(") ", 1)[1][0]
        except OSError:
            continue
        if args[:2] == [b"sleep", pattern.encode()] and state != "Z":
            out.append(int(entry))
    return out


def _wait(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_every_transport_implements_the_protocol(any_transport):
    assert isinstance(any_transport, Transport)
    for name in ("run", "push", "pull", "forward", "abort", "check", "close"):
        assert callable(getattr(any_transport, name))


def _echo_server() -> tuple[socket.socket, int]:
    """A TCP server on this machine's loopback (the device's, for all three) that echoes one line."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"echo:" + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_forward_reaches_a_device_port_or_is_refused_with_the_reason(any_transport):
    """local and SSH give a local port that reaches the device's loopback; ADB refuses, saying why
    (the same reason planning reads from the class before any connection)."""
    srv, port = _echo_server()
    try:
        if isinstance(any_transport, ADBTransport):
            assert "adb forward" in ADBTransport.forward_refusal
            with pytest.raises(DeviceError, match="offers no port forward") as info:
                any_transport.forward(port)
            assert not info.value.transient and "adb forward tcp:PORT" in str(info.value)
            return
        assert type(any_transport).forward_refusal is None
        with any_transport.forward(port) as fwd:
            with socket.create_connection(("127.0.0.1", fwd.local_port), timeout=10) as c:
                c.sendall(b"ping")
                c.settimeout(10)
                assert c.recv(100) == b"echo:ping"
            assert fwd.via
    finally:
        srv.close()


def test_check_of_a_live_device_is_ok_with_one_return_type(any_transport):
    res = any_transport.check(timeout=20)
    assert isinstance(res, CheckResult)
    assert res.ok, res.detail
    assert res.latency_s is not None and 0 <= res.latency_s < 20
    assert not res.transient


def test_run_ok_returns_the_run_result_or_raises_command_failed(any_transport):
    res = run_ok(any_transport, ["sh", "-c", "echo fine"], timeout=20)
    assert res.rc == 0 and res.out == "fine\n"
    with pytest.raises(CommandFailed, match="exit 3") as info:
        run_ok(any_transport, "echo broken >&2; exit 3", timeout=20, what="the probe")
    assert info.value.rc == 3 and "broken" in str(info.value) and "the probe" in str(info.value)


def _start_tree(transport, tag: str) -> tuple[threading.Thread, dict, str, str]:
    """run() a command that starts a background child, in a thread; returns once both run."""
    # a kind-specific duration: parametrized runs never see each other's sleeps
    child, parent = f"{tag}{len(type(transport).__name__)}1", f"{tag}{len(type(transport).__name__)}2"
    outcome: dict = {}

    def work():
        start = time.monotonic()
        try:
            outcome["result"] = transport.run(f"sleep {child} & sleep {parent}; wait", timeout=120)
        except Exception as exc:  # noqa: BLE001 - a DeviceError is an allowed outcome of an abort
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - start

    th = threading.Thread(target=work, daemon=True)
    th.start()
    assert _wait(lambda: _pids_running(child) and _pids_running(parent), 15), "command never started"
    return th, outcome, child, parent


def test_abort_kills_the_running_command_and_what_it_started(any_transport):
    """Ctrl-C of the orchestrator: the runner and its children die, run() returns promptly, and the
    transport still answers afterwards."""
    th, outcome, child, parent = _start_tree(any_transport, "41.37")
    any_transport.abort()
    th.join(15)
    assert not th.is_alive(), "run() still blocked 15 s after abort()"
    assert outcome["took"] < 30
    if "result" in outcome:
        assert outcome["result"].rc != 0  # killed, never a success
    assert _wait(lambda: not _pids_running(child) and not _pids_running(parent), 5), \
        f"still running after abort: {_pids_running(child) + _pids_running(parent)}"
    assert any_transport.check(timeout=20).ok  # usable again: the next job may run
    any_transport.abort()  # nothing running: a no-op, not an error


def test_close_while_a_command_runs_kills_it(any_transport):
    """A closed connection alone would leave a runner without a pty going on the device."""
    th, outcome, child, parent = _start_tree(any_transport, "43.19")
    any_transport.close()
    th.join(15)
    assert not th.is_alive(), "run() still blocked 15 s after close()"
    assert _wait(lambda: not _pids_running(child) and not _pids_running(parent), 5), \
        f"still running after close: {_pids_running(child) + _pids_running(parent)}"


def test_abort_with_nothing_running_is_a_no_op(any_transport):
    any_transport.abort()
    assert any_transport.run("echo still here", timeout=20).out == "still here\n"


# -- failures: ok=False with the reason, and whether a retry may help --------------------------------
def test_check_of_an_ssh_device_whose_server_went_away_is_transient(tmp_path, ssh_client_key, ssh_device):
    from lab.transport.ssh import SSHTransport
    from sshd_fleet import Sshd
    server = Sshd(tmp_path / "srv", client_pub=ssh_client_key[1]).start()
    t = SSHTransport(ssh_device(server))
    try:
        assert t.check(timeout=10).ok
        server.stop()  # the host goes down: listener and sessions
        res = t.check(timeout=5)
        assert not res.ok and res.transient
        assert "sshtest" in res.detail  # names the device
    finally:
        t.close()


def test_check_of_an_offline_adb_device_is_transient(adb_env):
    dev = Device(id="gone", chip="x", transport="adb", serial=f"127.0.0.1:{free_port()}")
    res = ADBTransport(dev, connect_timeout=2).check(timeout=5)
    assert not res.ok and res.transient
    assert "gone" in res.detail and "cannot connect" in res.detail


def test_check_of_an_unauthorized_adb_device_is_stable(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, faults=Faults(reject_auth=True))
    try:
        res = ADBTransport(adb_device(srv), connect_timeout=3).check(timeout=5)
        assert not res.ok and not res.transient  # retrying cannot help: the key must be accepted
        assert "Allow USB debugging" in res.detail or "key" in res.detail
    finally:
        srv.stop()


def test_check_of_a_device_whose_shell_fails_is_not_ok(tmp_path):
    """A device that answers but cannot run the lab's commands (workdir on a read-only mount, a
    broken shell) is not ok; the detail carries its output."""
    t = LocalTransport(Device(id="here", chip="x", transport="local", workdir=str(tmp_path / "wd")))
    (tmp_path / "a-file").write_text("x")
    t.workdir = str(tmp_path / "a-file" / "wd")  # cannot be created: its parent is a file
    res = t.check(timeout=5)
    assert not res.ok and not res.transient
    assert "a-file" in res.detail and "here" in res.detail

