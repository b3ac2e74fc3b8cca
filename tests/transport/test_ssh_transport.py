"""SSH transport against a real OpenSSH server on loopback (no mocks)."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lab.core.errors import (DeviceAuthFailed, DeviceTimeout, DeviceUnreachable, HostKeyMismatch,
                        TransferError)
from lab.transport.registry import open_transport
from lab.transport.ssh import SSHTransport
from sshd_fleet import Sshd, free_port, keygen

pytestmark = pytest.mark.slow


@pytest.fixture
def tx(loopback_sshd, ssh_device):
    t = SSHTransport(ssh_device(loopback_sshd))
    yield t
    t.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


# -- run ------------------------------------------------------------------------------------------
def test_run_returns_real_exit_code_and_separate_streams(tx):
    res = tx.run("echo out; echo err >&2; exit 7", timeout=20)
    assert (res.rc, res.out, res.err) == (7, "out\n", "err\n")
    assert tx.run(["true"], timeout=20).rc == 0


def test_run_quotes_every_argument_env_and_cwd(tx, tmp_path):
    marker = tmp_path / "pwned"
    evil = f"x; touch {marker}"
    res = tx.run(["printf", "%s|", evil, "a b", "$HOME", "`id`"], timeout=20,
                 env={"HWLAB_V": f"v; touch {marker}"}, cwd=str(tmp_path))
    assert res.rc == 0
    assert res.out == f"{evil}|a b|$HOME|`id`|"
    res = tx.run(["sh", "-c", 'printf "%s" "$HWLAB_V"; pwd'], timeout=20,
                 env={"HWLAB_V": f"v; touch {marker}"}, cwd=str(tmp_path))
    assert res.out == f"v; touch {marker}{tmp_path}\n"
    assert not marker.exists()


def test_run_drains_large_output_without_hanging(tx):
    # 4 MB on stdout and 1 MB on stderr: far beyond the SSH window, so a non-draining wait would hang.
    res = tx.run("head -c 4000000 /dev/zero | tr '\\0' a; head -c 1000000 /dev/zero | tr '\\0' b >&2",
                 timeout=60)
    assert res.rc == 0 and len(res.out) == 4_000_000 and len(res.err) == 1_000_000
    assert set(res.out) == {"a"} and set(res.err) == {"b"}


def test_run_deadline_kills_the_remote_process_group(tx, tmp_path):
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(DeviceTimeout) as info:
        tx.run(f"sleep 300 & echo $! > {pidfile}; sleep 200; echo never", timeout=1.0)
    elapsed = time.monotonic() - start
    assert elapsed < 8, elapsed
    assert info.value.transient and "1 s deadline" in str(info.value)
    child = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "the background child of the timed-out command survived"
    assert tx.run("echo still usable", timeout=20).out == "still usable\n"  # connection reused


def test_connection_is_reused_for_every_call(loopback_sshd, ssh_device):
    before = loopback_sshd.log.read_text().count("Accepted publickey")
    with SSHTransport(ssh_device(loopback_sshd)) as t:
        for _ in range(3):
            t.run(["true"], timeout=20)
        t.push(Path(__file__), t.workdir + "/reuse.py")
        t.pull(t.workdir + "/reuse.py", Path(t.workdir) / "pulled.py")
    time.sleep(0.2)
    assert loopback_sshd.log.read_text().count("Accepted publickey") - before == 1


def test_workdir_tilde_is_expanded_with_the_device_home(loopback_sshd, ssh_device):
    with SSHTransport(ssh_device(loopback_sshd, workdir="~/hwlab-tilde-test")) as t:
        home = t.run('printf %s "$HOME"', timeout=20).out
        assert t.workdir == f"{home}/hwlab-tilde-test"


# -- push / pull ----------------------------------------------------------------------------------
def test_push_verifies_skips_unchanged_and_resends_changes(tx, tmp_path):
    src = tmp_path / "model file.bin"
    src.write_bytes(os.urandom(300_000))
    dest = f"{tx.workdir}/push dir/m; touch {tmp_path}/pwned.bin"
    first = tx.push(src, dest)
    assert not first.skipped and first.bytes_sent == 300_000
    assert Path(dest).read_bytes() == src.read_bytes()
    assert tx.push(src, dest).skipped and tx.push(src, dest).bytes_sent == 0
    src.write_bytes(os.urandom(300_000))  # same size, new content: must be sent again
    again = tx.push(src, dest)
    assert not again.skipped and Path(dest).read_bytes() == src.read_bytes()
    assert not (tmp_path / "pwned.bin").exists()
    leftovers = [p.name for p in Path(dest).parent.iterdir() if "hwlab-part" in p.name]
    assert leftovers == []


def test_pull_and_missing_file(tx, tmp_path):
    remote = Path(tx.workdir) / "result.json"
    remote.write_text('{"ok": true}')
    assert tx.pull(str(remote), tmp_path / "r.json").read_text() == '{"ok": true}'
    with pytest.raises(TransferError) as info:
        tx.pull(str(remote) + ".missing", tmp_path / "x.json")
    assert not info.value.transient and "not found" in str(info.value)


def test_remote_hash_falls_back_without_openssl(tx, tmp_path):
    import shutil
    from lab.transport.ssh import _REMOTE_HASH
    f = Path(tx.workdir) / "h.bin"
    f.write_bytes(b"hello")
    want = (5, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    assert tx.remote_hash(str(f)) == want
    bin_dir = tmp_path / "bin"  # a device without openssl: only sh, coreutils' sha256sum and friends
    bin_dir.mkdir()
    for tool in ("sh", "wc", "tr", "cut", "sha256sum"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    res = tx.run(["env", f"PATH={bin_dir}", "sh", "-c", _REMOTE_HASH, "x", str(f)], timeout=20)
    assert res.out.split() == [str(want[0]), want[1]]


# -- host keys ------------------------------------------------------------------------------------
@pytest.fixture
def own_sshd(tmp_path, ssh_client_key):
    server = Sshd(tmp_path / "srv", client_pub=ssh_client_key[1]).start()
    yield server
    server.stop()


def test_strict_refuses_unknown_host(own_sshd, ssh_device):
    with pytest.raises(HostKeyMismatch) as info:
        SSHTransport(ssh_device(own_sshd, known=False))
    assert "not in" in str(info.value) and "ssh-keyscan" in str(info.value)
    assert not info.value.transient


def test_changed_host_key_is_refused_with_a_clear_error(own_sshd, ssh_device):
    dev = ssh_device(own_sshd)
    SSHTransport(dev).close()
    trusted = Path(dev.known_hosts).read_text()
    own_sshd.restart(new_host_key=True)
    for policy in ("strict", "accept-new"):
        with pytest.raises(HostKeyMismatch) as info:
            SSHTransport(replace(dev, host_key_policy=policy))
        msg = str(info.value)
        assert "CHANGED" in msg and "ssh-keygen -R" in msg and "sshtest" in msg
        new_fp = subprocess.run(["ssh-keygen", "-lf", str(own_sshd.host_key) + ".pub"], capture_output=True,
                                text=True).stdout.split()[1]
        assert new_fp.startswith("SHA256:") and new_fp in msg  # the fingerprint the admin can check
    assert Path(dev.known_hosts).read_text() == trusted  # the old key is never overwritten


def test_accept_new_saves_unknown_key_then_trusts_it(own_sshd, ssh_device):
    dev = replace(ssh_device(own_sshd, known=False), host_key_policy="accept-new")
    SSHTransport(dev).close()
    assert Path(dev.known_hosts).read_text() == own_sshd.known_hosts_line()
    SSHTransport(replace(dev, host_key_policy="strict")).close()


def test_insecure_warns_loudly_on_every_connect(own_sshd, ssh_device, capsys):
    dev = replace(ssh_device(own_sshd, known=False), host_key_policy="insecure")
    for _ in range(2):
        SSHTransport(dev).close()
    err = capsys.readouterr().err
    assert err.count("WARNING") == 2 and "NOT checked" in err
    assert Path(dev.known_hosts).read_text() == ""  # nothing saved


# -- auth and reachability ------------------------------------------------------------------------
def test_wrong_key_is_auth_failed(own_sshd, ssh_device, tmp_path):
    other = keygen(tmp_path / "other")
    with pytest.raises(DeviceAuthFailed) as info:
        SSHTransport(ssh_device(own_sshd, key_file=str(other)))
    assert not info.value.transient


def test_passphrase_only_from_the_named_environment_variable(tmp_path, ssh_device, monkeypatch):
    key = keygen(tmp_path / "enc", passphrase="s3cret pass")
    server = Sshd(tmp_path / "srv2", client_pub=Path(str(key) + ".pub")).start()
    try:
        dev = ssh_device(server, key_file=str(key), key_passphrase_env="HWLAB_TEST_PASS")
        monkeypatch.delenv("HWLAB_TEST_PASS", raising=False)
        with pytest.raises(DeviceAuthFailed, match="HWLAB_TEST_PASS"):
            SSHTransport(dev)
        monkeypatch.setenv("HWLAB_TEST_PASS", "s3cret pass")
        with SSHTransport(dev) as t:
            assert t.run(["echo", "ok"], timeout=20).out == "ok\n"
        with pytest.raises(DeviceAuthFailed):
            SSHTransport(replace(dev, key_passphrase_env=None))
    finally:
        server.stop()


def test_closed_port_is_unreachable_and_transient(ssh_device, loopback_sshd):
    dev = replace(ssh_device(loopback_sshd), port=free_port())
    with pytest.raises(DeviceUnreachable) as info:
        open_transport(dev)
    assert info.value.transient


def test_host_going_down_mid_command_is_unreachable(own_sshd, ssh_device):
    t = SSHTransport(ssh_device(own_sshd))
    import threading
    threading.Timer(1.0, own_sshd.stop).start()
    with pytest.raises(DeviceUnreachable) as info:
        t.run("sleep 30", timeout=60)
    assert info.value.transient
    t.close()


def test_unchanged_siblings_are_verified_in_one_session_and_device_edits_are_caught(loopback_sshd, ssh_device,
                                                                                     tmp_path):
    files = []
    for name in ("inference.json", "inference.pdiparams"):
        f = tmp_path / name
        f.write_bytes(os.urandom(50_000))
        files.append(f)
    dest = Path(loopback_sshd.workdir) / "models" / "m-abc"
    dev = ssh_device(loopback_sshd)
    with SSHTransport(dev) as t:
        for f in files:
            assert not t.push(f, str(dest / f.name)).skipped
    with SSHTransport(dev) as t:  # a new connection: the device-side records answer, no session
        calls = []
        real_run = t.run
        t.run = lambda *a, **k: (calls.append(a[0]), real_run(*a, **k))[1]
        assert all(t.push(f, str(dest / f.name)).skipped for f in files)
        assert calls == []
    for rec in dest.glob(".*.hwlab-sha256"):
        rec.unlink()
    with SSHTransport(dev) as t:  # no records: one hashing session for both siblings, then stat only
        calls = []
        real_run = t.run
        t.run = lambda *a, **k: (calls.append(a[0]), real_run(*a, **k))[1]
        assert all(t.push(f, str(dest / f.name)).skipped for f in files)
        assert len(calls) == 1
        assert all(t.push(f, str(dest / f.name)).skipped for f in files)
        assert len(calls) == 1
        assert len(list(dest.glob(".*.hwlab-sha256"))) == 2  # records written back
        target = dest / files[1].name  # changed on the device behind the lab's back, same size
        target.write_bytes(os.urandom(50_000))
        os.utime(target, (time.time() + 5, time.time() + 5))
        res = t.push(files[1], str(target))
        assert not res.skipped and target.read_bytes() == files[1].read_bytes()


def test_background_child_holding_the_pipes_does_not_hang_run(tx, tmp_path):
    pidfile = tmp_path / "bg.pid"
    start = time.monotonic()
    res = tx.run(f"sleep 60 & echo $! > {pidfile}; echo started", timeout=30)
    assert res.rc == 0 and res.out == "started\n"
    assert time.monotonic() - start < 10  # the 2 s grace after the exit status, not the sleep
    os.kill(int(pidfile.read_text()), 9)
