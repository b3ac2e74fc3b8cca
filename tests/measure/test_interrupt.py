"""Ctrl-C of `lab run`: nothing measured is lost, nothing keeps running on the device, resume finishes."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, assert_receives, default_signals, job_rows, local_tiny_run

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
        assert_receives(proc.pid, sig)  # the precondition: the lab can receive it at all
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


FIRST_USE = {"build": "building model 'tiny_mlp' (first use)",
             "reference": "computing the fp32 host reference of tiny_mlp"}


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(stat.strip()) and not stat.strip().startswith("Z")


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-o", "pid=,ppid=,args=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


@pytest.mark.parametrize("window", sorted(FIRST_USE))
def test_sigterm_during_first_use_work_then_resume(tmp_path, window):
    """SIGTERM while the lab builds a zoo model on first use, or computes its fp32 reference (Paddle
    in a child; and any Paddle import in the lab re-installs the handlers): exit 143, no job left
    running, no worker left, and --resume completes. The signal is sent once the step's line is out
    and its worker process runs (polled, not slept)."""
    from helpers import write_local_devices
    models = tmp_path / "models"
    if window == "reference":  # built already: only the reference is missing
        from lab.models.build import build
        build("tiny_mlp", out_root=models)
    inv = write_local_devices(tmp_path, tmp_path / "device")
    camp = tmp_path / "c.yaml"
    camp.write_text(campaign(threads="", min_s=0.2, max_s=1))
    store = tmp_path / "s.sqlite"
    if window == "reference":  # the plan stored already (a run stopped before): it must stay planned
        from lab.measure.orchestrate import prepare
        from lab.results.store import Store
        prep = prepare(camp, inv, models, dry_run=True)
        s = Store(store)
        s.save_campaign(prep.spec.name, prep.spec.to_dict())
        s.plan_jobs(prep.jobs)
        s.close()
    cmd = [sys.executable, "-m", "lab.cli", "--devices", str(inv), "--store", str(store), "--models-root",
           str(models), "run", str(camp), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if FIRST_USE[window] in line:
                break
        else:
            pytest.fail(f"the {window} step never started: {''.join(seen)}")
        deadline = time.monotonic() + 60
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        workers = _children(proc.pid)
        assert workers, f"no worker process for the {window}"
        assert_receives(proc.pid, signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        err = "".join(seen) + proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err and "FatalError" not in err, err
    assert set(_statuses(store).values()) == ({"planned"} if window == "reference" else set()), \
        "a job left running (or measured)"
    assert not [ln for ln in workers if _alive(int(ln.split()[0]))], "the worker outlived the lab"
    res = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert set(_statuses(store).values()) == {"ok"}, _statuses(store)
