"""Ctrl-C of `lab run`: nothing measured is lost, nothing keeps running on the device, resume finishes."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _statuses(store: Path) -> dict[str, str]:
    if not store.exists():
        return {}
    db = sqlite3.connect(str(store), timeout=30)
    try:
        return dict(db.execute("SELECT job_id, status FROM jobs WHERE campaign='intr'"))
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


def _device_processes(workdir: Path) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if str(workdir) in ln and ("pi_runner" in ln or "sampler" in ln)]


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_interruption_kills_the_device_side_and_resume_finishes(tmp_path, sig, code):
    """Ctrl-C, SIGTERM (timeout, CI, systemd) and SIGHUP (a closed terminal) end a run alike."""
    from lab import models
    models.build("tiny_mlp", out_root=REPO / "models")
    workdir = tmp_path / "device"
    inv = tmp_path / "devices.yaml"
    inv.write_text(f"devices:\n  - id: local\n    chip: generic-x86-cpu\n    transport: local\n"
                   f"    workdir: {workdir}\n")
    camp = tmp_path / "c.yaml"
    camp.write_text("name: intr\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-inference-cpu]\n"
                    "threads: [1, 2]\nprotocol:\n  warmup: 1\n  warmup_seconds: 0.05\n  min_iters: 5\n"
                    "  min_seconds: 8\n  max_seconds: 10\n  target_rel_ci: 0.5\n  trials: 1\n  timeout_s: 120\n")
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "lab.cli", "--devices", str(inv), "--store", str(store), "run", str(camp),
           "--models-root", str(REPO / "models"), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("pi_runner" in p for p in _device_processes(workdir)):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        assert _device_processes(workdir), "the runner never started"
        time.sleep(1.0)
        proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    name = "Ctrl-C" if sig == signal.SIGINT else signal.Signals(sig).name
    assert f"interrupted ({name})" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while _device_processes(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _device_processes(workdir), "runner or sampler left running after Ctrl-C"
    assert "ok" not in _statuses(store).values()
    assert "running" not in _statuses(store).values(), "an interrupted job goes back to planned"
    res = subprocess.run(cmd[:-1] + ["--resume", "--no-progress"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert set(_statuses(store).values()) == {"ok"} and len(_statuses(store)) == 2


def test_timeout_s_term_then_resume(tmp_path):
    """The issue's check, literally: `timeout -s TERM 5 lab run ...` leaves nothing running on the
    device, the job back to planned, and `--resume` completes it."""
    from lab import models
    models.build("tiny_mlp", out_root=REPO / "models")
    workdir = tmp_path / "device"
    inv = tmp_path / "devices.yaml"
    inv.write_text(f"devices:\n  - id: local\n    chip: generic-x86-cpu\n    transport: local\n"
                   f"    workdir: {workdir}\n")
    camp = tmp_path / "c.yaml"
    camp.write_text("name: intr\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-inference-cpu]\n"
                    "protocol:\n  warmup: 1\n  warmup_seconds: 0.05\n  min_iters: 5\n"
                    "  min_seconds: 30\n  max_seconds: 40\n  target_rel_ci: 0.5\n  trials: 1\n  timeout_s: 120\n")
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "lab.cli", "--devices", str(inv), "--store", str(store), "run", str(camp),
           "--models-root", str(REPO / "models"), "--no-progress"]
    res = subprocess.run(["timeout", "-s", "TERM", "8", *cmd], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 124, res.stderr  # timeout's own code for "I had to stop it"
    assert "interrupted (SIGTERM)" in res.stderr and "Traceback" not in res.stderr
    deadline = time.monotonic() + 10
    while _device_processes(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _device_processes(workdir), "runner or sampler left running after SIGTERM"
    assert set(_statuses(store).values()) == {"planned"}
    res = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert set(_statuses(store).values()) == {"ok"}
