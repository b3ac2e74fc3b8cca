"""Ctrl-C of `lab run`: nothing measured is lost, nothing keeps running on the device, resume finishes."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO, default_signals, job_rows, local_tiny_run

pytestmark = pytest.mark.slow


def _statuses(store: Path) -> dict[str, str]:
    return {r["job_id"]: r["status"] for r in job_rows(store, "intr")}


def campaign(*, threads: str, min_s: float, max_s: float) -> str:
    """Campaign 'intr': tiny_mlp on `local`, each job running min_s..max_s so a signal lands mid-job."""
    return ("name: intr\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-inference-cpu]\n"
            f"{threads}protocol:\n  warmup: 1\n  warmup_seconds: 0.05\n  min_iters: 5\n"
            f"  min_seconds: {min_s}\n  max_seconds: {max_s}\n  target_rel_ci: 0.5\n  trials: 1\n  timeout_s: 120\n")


def _device_processes(workdir: Path) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if str(workdir) in ln and ("pi_runner" in ln or "sampler" in ln)]


def _left_running(workdir: Path, grace_s: float = 10.0) -> list[str]:
    """The device-side processes still there after up to `grace_s` for them to go."""
    deadline = time.monotonic() + grace_s
    while _device_processes(workdir) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _device_processes(workdir)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
                         ids=["ctrl-c", "sigterm", "sighup"])
def test_interruption_kills_the_device_side_and_resume_finishes(tmp_path, sig, code):
    """Ctrl-C, SIGTERM (timeout, CI, systemd) and SIGHUP (a closed terminal) end a run alike."""
    cmd, store, workdir = local_tiny_run(tmp_path, campaign(threads="threads: [1, 2]\n", min_s=4, max_s=5))
    # a terminal's hang-up reaches a lab whose SIGHUP is not ignored; the suite itself may run under
    # nohup (SIGHUP ignored and inherited), where the lab rightly keeps ignoring it
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
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
    assert not _left_running(workdir), "runner or sampler left running after Ctrl-C"
    assert "ok" not in _statuses(store).values()
    assert "running" not in _statuses(store).values(), "an interrupted job goes back to planned"
    res = subprocess.run(cmd[:-1] + ["--resume", "--no-progress"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert set(_statuses(store).values()) == {"ok"} and len(_statuses(store)) == 2


def test_timeout_s_term_then_resume(tmp_path):
    """The issue's check, literally: `timeout -s TERM 5 lab run ...` leaves nothing running on the
    device, the job back to planned, and `--resume` completes it."""
    cmd, store, workdir = local_tiny_run(tmp_path, campaign(threads="", min_s=14, max_s=16))
    res = subprocess.run(["timeout", "-s", "TERM", "8", *cmd], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 124, res.stderr  # timeout's own code for "I had to stop it"
    assert "interrupted (SIGTERM)" in res.stderr and "Traceback" not in res.stderr
    assert not _left_running(workdir), "runner or sampler left running after SIGTERM"
    assert set(_statuses(store).values()) == {"planned"}
    res = subprocess.run([*cmd, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert set(_statuses(store).values()) == {"ok"}
