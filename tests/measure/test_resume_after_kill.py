"""kill -9 of the orchestrator mid-campaign, then `lab run --resume` (issue 2's fault test).

Real `lab run` subprocess on the `local` device with real Paddle Inference (tiny_mlp, tiny
protocol). After SIGKILL the store must hold every job committed so far, the job that was running
stays not-ok, and resume finishes the campaign with every planned job stored exactly once.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from helpers import REPO, job_rows as _rows, local_tiny_run
from sshd_fleet import descendants

pytestmark = pytest.mark.slow


def test_kill_9_mid_campaign_then_resume_stores_every_job_exactly_once(tmp_path):
    base, store, _ = local_tiny_run(
        tmp_path, "name: kill9\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-inference-cpu]\n"
        "threads: [1, 2, 3, 4]\noptions:\n  onednn: [false]\nprotocol:\n  warmup: 1\n"
        "  warmup_seconds: 0.05\n  min_iters: 5\n  min_seconds: 0.2\n  max_seconds: 1\n"
        "  target_rel_ci: 0.5\n  trials: 1\n  timeout_s: 120\n")
    proc = subprocess.Popen(base, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            rows = _rows(store, "kill9")
            if any(r["status"] == "ok" for r in rows) and any(r["status"] == "running" for r in rows):
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        else:
            pytest.fail("no job finished in time")
        children = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:  # the orphaned runner of the killed job
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    assert proc.returncode == -signal.SIGKILL
    rows = _rows(store, "kill9")
    assert len(rows) == 4
    done_before = {r["job_id"]: r["finished_at"] for r in rows if r["status"] == "ok"}
    assert 1 <= len(done_before) < 4
    assert any(r["status"] == "running" for r in rows)  # the killed job never claimed to be done

    res = subprocess.run(base + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"4 jobs planned, {len(done_before)} already done, {4 - len(done_before)} to run" in res.stderr
    rows = _rows(store, "kill9")
    assert len(rows) == len({r["job_id"] for r in rows}) == 4
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["job_id"]: r["finished_at"] for r in rows if r["job_id"] in done_before} == done_before
    db = sqlite3.connect(str(store))
    try:  # one measurement per job, samples only for stored jobs
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT job_id) FROM measurements").fetchone() == (4, 4)
    finally:
        db.close()
