"""SSH hosts without an sftp subsystem (dropbear / busybox Buildroot images on RV1109/RK1808):
files travel over the exec channel, detected automatically, with the same verify-and-rename and
skip-if-unchanged (issue 17). Real OpenSSH servers with no `Subsystem sftp` line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.core.errors import TransferError
from lab.transport.ssh import SSHTransport
from sshd_fleet import NetnsFleet, Sshd, netns_missing_reason, write_inventory

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def no_sftp_sshd(tmp_path_factory, ssh_client_key):
    server = Sshd(tmp_path_factory.mktemp("nosftp"), client_pub=ssh_client_key[1], sftp=False).start()
    yield server
    server.stop()


def test_push_and_pull_over_the_exec_channel(no_sftp_sshd, ssh_device, tmp_path):
    t = SSHTransport(ssh_device(no_sftp_sshd))
    try:
        blob = tmp_path / "model.bin"
        blob.write_bytes(bytes(range(256)) * 4096 + b"tail")  # 1 MiB + 4 bytes, every byte value
        remote = f"{t.workdir}/dir with space/m'odel.bin"
        first = t.push(blob, remote)
        assert t.no_sftp and "exec channel" in t.no_sftp
        assert not first.skipped and first.bytes_sent == blob.stat().st_size
        assert Path(remote).read_bytes() == blob.read_bytes()  # loopback: the device is this host
        again = t.push(blob, remote)
        assert again.skipped and again.bytes_sent == 0  # skip-if-unchanged by the device's sha256
        blob.write_bytes(blob.read_bytes()[:-1] + b"!")
        assert not t.push(blob, remote).skipped
        back = t.pull(remote, tmp_path / "back.bin")
        assert back.read_bytes() == blob.read_bytes()
        assert not list(Path(remote).parent.glob("*hwlab-part*"))
        with pytest.raises(TransferError, match="not found"):
            t.pull(f"{t.workdir}/absent", tmp_path / "x")
    finally:
        t.close()


def test_a_campaign_runs_on_a_netns_host_without_sftp(tmp_path, ssh_client_key):
    reason = netns_missing_reason()
    if reason:
        pytest.skip(reason)
    from lab.models.build import build
    root = REPO / "models"
    build("tiny_mlp", out_root=root)
    with NetnsFleet(1, tmp_path / "fleet", ssh_client_key[1], sftp=False) as f:
        kh = f.known_hosts(tmp_path / "known_hosts")
        h = f.hosts[0]
        inv = write_inventory(tmp_path / "devices.yaml",
                              [f.device_entry(h, ssh_client_key[0], kh, id="buildroot-board")])
        camp = tmp_path / "c.yaml"
        camp.write_text("name: nosftp\ndevices: [buildroot-board]\nmodels: [tiny_mlp]\n"
                        "backends: [paddle-inference-cpu]\nprotocol: {warmup: 1, warmup_seconds: 0.05, "
                        "min_iters: 5, min_seconds: 0.1, max_seconds: 1, trials: 1}\n")
        store = tmp_path / "s.sqlite"
        argv = [sys.executable, "-m", "lab.cli", "--devices", str(inv), "--store", str(store), "run",
                str(camp), "--models-root", str(root), "--no-progress"]
        res = subprocess.run(f.client_cmd(argv), capture_output=True, text=True, timeout=300, cwd=REPO)
        assert res.returncode == 0, res.stderr
        rows = json.loads(subprocess.run([sys.executable, "-m", "lab.cli", "--store", str(store), "results",
                                          "--format", "json"], capture_output=True, text=True,
                                         cwd=REPO).stdout)
        assert [r["status"] for r in rows] == ["ok"] and rows[0]["p50_ms"] > 0
        assert "subsystem request for sftp" in h.sshd.log.read_text()  # it was asked and refused
