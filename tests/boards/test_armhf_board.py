"""The emulated armhf board (Cortex-A7 class, like an RV1109 running a Buildroot image): busybox and
dropbear only, no Python, no SFTP. Everything here goes through the board's real armv7 dropbear.

Shows: `lab devices --check` says what it found (armv7l, busybox, dropbear, no Python, files over
the exec channel) and which backends can run there and which cannot, with the fix; Python backends
are refused at planning with one line and exit 2; a file pushed and pulled through dropbear
without SFTP, its sha256 verified on the board and on the host; the sampler under busybox sh.
"""
from __future__ import annotations

import hashlib
import json
import os

import pytest
from boardctl import REPO, lab

pytestmark = [pytest.mark.slow, pytest.mark.boards]


@pytest.fixture
def armhf(armhf_board, board_device):
    return board_device(armhf_board, "rv1109", abi="armv7hf")


def test_devices_check_says_what_it_found_and_what_can_run(armhf):
    inv, dev = armhf
    res = lab("--devices", str(inv), "devices", "--check", dev.id, timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "arch: armv7l" in text
    assert "userland: busybox sh (BusyBox v1." in text and "  identity: EMULATED" in text
    assert "ssh server: dropbear_" in text
    assert "files: no SFTP on the device" in text and "exec channel" in text
    assert "python: n/a" in text
    assert "MISSING: python: 'python3' not found on the device (no paddlepaddle" in text
    # every Python runtime: cannot run, with the reason and the way that works there
    for runtime, wheel in (("paddle-inference", "paddlepaddle"), ("onnxruntime", "onnxruntime"),
                           ("paddle-lite-python", "paddlelite"), ("serving", "paddlepaddle")):
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"backend {runtime}:"))
        assert f"cannot run (no {wheel} wheel exists for 32-bit ARM (armv7l)" in line
        assert "paddle-lite-arm with a benchmark_bin built for armv7hf" in line
    assert "backend paddle-lite: cannot run (no benchmark_bin in devices.yaml: build Paddle Lite's" in text
    rep = json.loads(lab("--devices", str(inv), "devices", "--check", dev.id, "--format", "json",
                         timeout=120).stdout)[0]
    assert rep["arch"] == "armv7l" and rep["python"] is None and rep["paddle"] is None
    assert rep["ssh_server"].startswith("dropbear_") and rep["userland"].startswith("busybox sh")


def test_python_backends_are_refused_at_planning(armhf, tmp_path):
    inv, dev = armhf
    camp = tmp_path / "arm32.yaml"
    camp.write_text(f"name: arm32\ndevices: [{dev.id}]\nmodels: [tiny_mlp]\n"
                    "backends: [paddle-inference-cpu, onnxruntime-cpu]\n")
    res = lab("--devices", str(inv), "--store", str(tmp_path / "lab.sqlite"), "run", str(camp),
              "--models-root", str(REPO / "models"), "--no-progress", timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    refusals = [ln for ln in res.stderr.splitlines() if ln.startswith("not planned:")]
    assert len(refusals) == 2, res.stderr  # one line per backend
    for backend, runtime in (("paddle-inference-cpu", "paddle-inference"), ("onnxruntime-cpu", "onnxruntime")):
        line = next(ln for ln in refusals if f"with {backend}:" in ln)
        assert f"{runtime} runs a Python runner" in line and "32-bit ARM (armv7hf)" in line
    assert "the campaign plans no runnable job" in res.stderr.splitlines()[-1]


def test_push_and_pull_through_dropbear_without_sftp(armhf_board, armhf, tmp_path):
    from lab.transport.ssh import SSHTransport
    _, dev = armhf
    payload = tmp_path / "model.bin"
    payload.write_bytes(os.urandom(3 * (1 << 20) + 12345))  # several channel windows, an odd tail
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    with SSHTransport(dev) as t:
        remote = f"{t.workdir}/push/model.bin"
        res = t.push(payload, remote)
        assert t.no_sftp and "no SFTP on the device" in t.no_sftp  # dropbear: no sftp subsystem
        assert (res.size, res.sha256, res.skipped) == (payload.stat().st_size, digest, False)
        # the board's own busybox sha256sum says the same, and so does the file itself on the host side
        out = t.run(["sha256sum", remote], timeout=60)
        assert out.rc == 0 and out.out.split()[0] == digest
        assert hashlib.sha256(armhf_board.host_path(remote).read_bytes()).hexdigest() == digest
        assert t.push(payload, remote).skipped  # unchanged: verified by sha256 on the board, not re-sent
        back = t.pull(remote, tmp_path / "back.bin")
        assert hashlib.sha256(back.read_bytes()).hexdigest() == digest


def test_sampler_runs_under_busybox_sh(armhf, tmp_path):
    from lab.transport.ssh import SSHTransport
    _, dev = armhf
    with SSHTransport(dev) as t:
        shell = t.run('readlink -f /bin/sh; sh --help 2>&1 | head -n 1', timeout=60).out.splitlines()
        assert shell[0] == "/bin/busybox" and shell[1].startswith("BusyBox v1.")
        script = f"{t.workdir}/runners/sampler.sh"
        t.push(REPO / "lab" / "runners" / "sampler.sh", script)
        res = t.run(["sh", script, "-o", f"{t.workdir}/samples.txt", "-r", "10", "-n", "5"], timeout=120)
        assert res.rc == 0, res.err
        out = t.pull(f"{t.workdir}/samples.txt", tmp_path / "samples.txt").read_text().splitlines()
    assert out[0].startswith("# hwlab-sampler 1")
    data = [ln for ln in out if ln and not ln.startswith("#")]
    assert len(data) == 5
    times = [float(ln.split()[0]) for ln in data]
    assert times == sorted(times) and times[-1] > times[0]  # a real clock, read on the board
    assert out[-1].startswith("# end ") and out[-1].split()[-1] == "5"
