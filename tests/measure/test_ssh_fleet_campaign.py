"""A fleet of 4 real sshd hosts in network namespaces, driven by the real `lab` CLI.

Each host: its own netns, veth /30 link, sshd, host key and work dir; the device python is this
venv's interpreter, so every job is the real pi_runner with real Paddle Inference (tiny_mlp, tiny
protocol). The orchestrator runs inside a client namespace (`ip netns exec`), the only place
where the fleet's 10.77.x.y addresses exist.

Shows: `lab devices --check` reports every host; a campaign completes with every job ok; names
with `; touch ...` and spaces (work dir, interpreter path) run quoted and create nothing; a host
going down mid-campaign fails only its own jobs with the cause recorded, and `lab run --resume`
after it is back runs exactly the missing jobs (planned == stored, no duplicates).
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sshd_fleet import NetnsFleet, netns_missing_reason, netns_names, write_inventory

pytestmark = [pytest.mark.slow, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
N_HOSTS = 4
PROTOCOL = """protocol:
  warmup: 1
  warmup_seconds: 0.05
  min_iters: 5
  min_seconds: 0.2
  max_seconds: 1
  target_rel_ci: 0.5
  trials: 1
  timeout_s: 120
"""


@pytest.fixture(scope="module")
def models_root():
    from lab.models.build import build
    root = REPO / "models"  # the lab's default models root (git-ignored); build is skipped when cached
    build("tiny_mlp", out_root=root)
    return root


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, ssh_client_key, models_root):
    reason = netns_missing_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("fleet")
    # If any path were pasted into a shell unquoted, `; touch <pwned>; x` would create this file.
    pwned = Path(f"/tmp/pwned-hwlab-{os.getpid()}")
    payload = f"; touch {pwned}; x"
    with NetnsFleet(N_HOSTS, root, ssh_client_key[1]) as f:
        kh = f.known_hosts(root / "known_hosts")
        # Host 3 gets hostile-looking paths: a work dir and an interpreter path with spaces and `; touch`.
        weird_bin = root / f"py bin{payload}"
        weird_bin.mkdir(parents=True)
        wrapper = weird_bin / "python"
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
        wrapper.chmod(0o755)
        entries = []
        for h in f.hosts:
            workdir = str(h.sshd.workdir)
            python = sys.executable
            if h.index == 3:
                workdir = str(h.sshd.workdir / f"work dir{payload}")
                python = str(wrapper)
            entries.append(f.device_entry(h, ssh_client_key[0], kh, workdir=workdir, python=python))
        f.inventory = write_inventory(root / "devices.yaml", entries)
        f.pwned = pwned
        f.payload = payload
        f.tmp = root
        f.models_root = models_root
        yield f
    assert not [n for n in netns_names() if n.startswith(f"hwlab-t{f.token}-")], "namespaces left behind"


def lab(fleet, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "lab.cli", "--devices", str(fleet.inventory),
            "--store", str(fleet.tmp / "lab.sqlite"), *args]
    return subprocess.run(fleet.client_cmd(argv), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def campaign(fleet, name: str, threads=(1,)) -> Path:
    path = fleet.tmp / f"{name}.yaml"
    path.write_text(f"name: {name}\ndevices: [{', '.join(h.id for h in fleet.hosts)}]\nmodels: [tiny_mlp]\n"
                    f"backends: [paddle-inference-cpu]\nthreads: [{', '.join(map(str, threads))}]\n"
                    f"options:\n  onednn: [false]\n{PROTOCOL}")
    return path


def rows(fleet, name: str) -> list[dict]:
    db = sqlite3.connect(str(fleet.tmp / "lab.sqlite"))
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM jobs WHERE campaign=?", (name,))]
    finally:
        db.close()


def test_devices_check_reports_each_host(fleet):
    res = lab(fleet, "devices", "--check", "--format", "json")
    assert res.returncode == 0, res.stderr
    reps = {r["device"]: r for r in json.loads(res.stdout)}
    assert sorted(reps) == [h.id for h in fleet.hosts]
    for r in reps.values():
        assert r["reachable"] and r["transport"] == "ssh", r
        assert r["kernel"] and r["arch"] and r["cores"] >= 1 and r["mem_total_mb"] > 0
        assert r["paddle"] and r["runtimes_missing"] == []
    assert not fleet.pwned.exists()


def test_campaign_over_the_fleet_completes_with_every_job_ok(fleet):
    res = lab(fleet, "run", str(campaign(fleet, "fleet-ok")), "--models-root", str(fleet.models_root),
              "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = rows(fleet, "fleet-ok")
    assert len(jobs) == N_HOSTS and {j["status"] for j in jobs} == {"ok"}, jobs
    assert sorted(j["device"] for j in jobs) == [h.id for h in fleet.hosts]
    # host 3 ran with the hostile work dir and interpreter path: quoted everywhere, nothing executed
    assert not fleet.pwned.exists()
    weird = fleet.hosts[3].sshd.workdir / f"work dir{fleet.payload}"
    assert (weird / "runners" / "pi_runner.py").exists() and (weird / "runners" / "runner_core.py").exists()


def test_hostile_device_id_is_refused_before_anything_runs(fleet, tmp_path):
    bad = tmp_path / "devices.yaml"
    bad.write_text(fleet.inventory.read_text().replace("id: 'nshost0'", f"id: 'x{fleet.payload}'"))
    res = subprocess.run([sys.executable, "-m", "lab.cli", "--devices", str(bad), "devices"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 2 and "not a valid name" in res.stderr and "Traceback" not in res.stderr
    assert not fleet.pwned.exists()


def test_host_down_mid_campaign_then_resume_runs_exactly_the_missing_jobs(fleet):
    name = "fleet-fault"
    victim = fleet.hosts[2]
    camp = campaign(fleet, name, threads=(1, 2))
    argv = [sys.executable, "-m", "lab.cli", "--devices", str(fleet.inventory), "--store",
            str(fleet.tmp / "lab.sqlite"), "run", str(camp), "--models-root", str(fleet.models_root),
            "--no-progress", "--retries", "1"]
    proc = subprocess.Popen(fleet.client_cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the victim is busy with its first job
            if any(j["device"] == victim.id and j["status"] == "running" for j in rows(fleet, name)):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("the victim never started a job")
        victim.sshd.stop()  # listener, sessions and the running runner: the host is down
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    jobs = rows(fleet, name)
    assert len(jobs) == 2 * N_HOSTS
    for j in jobs:
        if j["device"] == victim.id:
            assert j["status"] in ("failed", "skipped"), j
            assert "DeviceUnreachable" in (j["error"] or "") or "unhealthy" in (j["error"] or ""), j
        else:
            assert j["status"] == "ok", j
    before = {j["job_id"]: j["finished_at"] for j in jobs if j["status"] == "ok"}

    victim.sshd.start()  # back up with the same host key
    res = lab(fleet, "run", str(camp), "--resume", "--models-root", str(fleet.models_root), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{2 * N_HOSTS} jobs planned, {len(before)} already done, {2 * N_HOSTS - len(before)} to run" \
        in res.stderr
    jobs = rows(fleet, name)
    assert len(jobs) == len({j["job_id"] for j in jobs}) == 2 * N_HOSTS  # planned == stored, no duplicates
    assert {j["status"] for j in jobs} == {"ok"}
    assert {j["job_id"]: j["finished_at"] for j in jobs if j["job_id"] in before} == before  # not re-run
    assert all(j["attempts"] == 1 for j in jobs if j["job_id"] in before)


def test_hostile_model_name_is_refused_before_anything_runs(fleet, tmp_path):
    for model in (f"x{fleet.payload}", "my model"):
        camp = tmp_path / "evil.yaml"
        camp.write_text(f"name: evil\ndevices: [nshost0]\nmodels: ['{model}']\nbackends: [paddle-inference-cpu]\n")
        res = lab(fleet, "run", str(camp), "--models-root", str(fleet.models_root), "--no-progress")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert model in res.stderr  # the message names the model
    assert not fleet.pwned.exists()
    assert not any(p.name.startswith("x;") for p in fleet.models_root.iterdir())
