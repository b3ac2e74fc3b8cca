"""`lab run` guards: one orchestrator per device, and a resumed campaign must be the stored one."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lab.core.errors import ConfigError
from lab.measure.locks import DeviceLocks

REPO = Path(__file__).resolve().parents[2]


def test_device_lock_is_exclusive_and_released(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLAB_LOCK_DIR", str(tmp_path / "locks"))
    with DeviceLocks(["local", "board"], "a"):
        with pytest.raises(ConfigError, match=r"device 'board' is being measured by another `lab run` \(pid \d+, "
                                              r"campaign a\)"):
            with DeviceLocks(["board"], "b"):
                pass
        with DeviceLocks(["other"], "c"):  # other devices are free
            pass
    with DeviceLocks(["board"], "b"):  # released on exit
        pass


def test_second_run_on_a_locked_device_is_refused(tmp_path):
    """A real second `lab run` process while the first holds the device: exit 2, one line."""
    env_dir = tmp_path / "locks"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        os.environ["HWLAB_LOCK_DIR"] = {str(env_dir)!r}
        from lab.measure.locks import DeviceLocks
        with DeviceLocks(["local"], "first"):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        camp = tmp_path / "c.yaml"
        camp.write_text("name: second\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-inference-cpu]\n")
        res = subprocess.run([sys.executable, "-m", "lab.cli", "--store", str(tmp_path / "s.sqlite"), "run",
                              str(camp)], capture_output=True, text=True, cwd=REPO, timeout=300,
                             env={**__import__("os").environ, "HWLAB_LOCK_DIR": str(env_dir)})
        assert res.returncode == 2, res.stderr
        assert "being measured by another `lab run`" in res.stderr and "campaign first" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        holder.kill()
        holder.wait()


def test_resume_of_a_changed_campaign_is_refused(tmp_path):
    from lab.measure.orchestrate import Prepared, run_prepared
    from lab.measure.scheduler import SchedulerOptions
    from lab.measure.campaign import load_campaign, plan_jobs
    from lab.core.records import Device, Measurement
    from lab.results.store import Store
    camp = tmp_path / "c.yaml"
    camp.write_text("name: ch\ndevices: [local]\nmodels: [m]\nbackends: [paddle-inference-cpu]\n"
                    "protocol: {trials: 3}\n")
    devices = [Device(id="local", chip="generic-x86-cpu", transport="local")]
    jobs, _ = plan_jobs(load_campaign(camp), devices, lambda m: "sha")
    store = Store(tmp_path / "s.sqlite")
    store.plan_jobs(jobs)
    store.finish_job(jobs[0].job_id, "ok", measurement=Measurement(job_id=jobs[0].job_id, p50_ms=1.0,
                                                                     samples=[[1.0]]))
    store.close()
    camp.write_text(camp.read_text().replace("trials: 3", "trials: 5"))
    changed, _ = plan_jobs(load_campaign(camp), devices, lambda m: "sha")
    prep = Prepared(devices, load_campaign(camp), changed, [])
    with pytest.raises(ConfigError, match="changed since it was stored: 1 stored jobs are not in the new plan"):
        run_prepared(prep, tmp_path / "s.sqlite", SchedulerOptions(progress=False), mode="resume")
