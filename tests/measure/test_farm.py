"""A device farm on a real 4-node Ray cluster: 1 head + 3 worker nodes, each a separate `ray start`
on this machine (bench/hwlab_sim/hwlab_sim/farm.py), each advertising its share of 200 simulated
devices as a real farm's hosts advertise the devices they reach.

The devices are simulated, said plainly: the `simulated` plug-in runtime (the hwlab-sim
distribution, entry point `hwlab.runtimes`) replays a latency distribution recorded from a real
stored job through the runner protocol; every row says `source: simulated`. What is real: the Ray
cluster, its node processes and their death by SIGKILL, the lab's CLI, planning, scheduler, node
agents and SQLite store.

- a campaign of 1,000 jobs over 200 devices; one worker node killed (its processes, by pid) when
  a third of the jobs are stored; the other nodes finish; the node comes back and `lab run
  --resume` completes the campaign: jobs stored == jobs planned, no duplicate, nothing measured
  before the kill measured again;
- 5 % of the devices fail or hang at random: they are marked unhealthy and skipped, the rest goes on.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray not installed (pip install '.[ray]')")
farm_mod = pytest.importorskip("hwlab_sim.farm", reason="pip install -e bench/hwlab_sim (make test does)")

from lab import cli
from lab.devices.inventory import load_devices
from lab.measure.orchestrate import prepare, run_prepared
from lab.measure.scheduler import SchedulerOptions

pytestmark = pytest.mark.slow
N_DEVICES = 200
VICTIM = "worker2"
PROTOCOL = ("{warmup: 0, warmup_seconds: 0, min_iters: 5, min_seconds: 0.05, max_seconds: 1, "
            "target_rel_ci: 0.5, trials: 1, timeout_s: TIMEOUT}")


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    from lab.models.build import build
    root = tmp_path_factory.mktemp("farm")
    build("tiny_mlp", out_root=str(root / "models"))
    devices = [f"sim-{i:04d}" for i in range(N_DEVICES)]
    with farm_mod.Farm(devices, workers=3) as f:
        f.root = root
        yield f
    assert not ray.is_initialized()


def _campaign(root: Path, name: str, threads: list[int], faulty_share: float = 0.0,
              timeout_s: int = 20) -> tuple[Path, Path, list[str]]:
    text, faulty = farm_mod.inventory(N_DEVICES, faulty_share=faulty_share, seed=24)
    inv = root / f"{name}-devices.yaml"
    inv.write_text(text)
    camp = root / f"{name}.yaml"
    camp.write_text(f"name: {name}\ndevices: [{', '.join(f'sim-{i:04d}' for i in range(N_DEVICES))}]\n"
                    f"models: [tiny_mlp]\nbackends: [sim-cpu]\nthreads: {threads}\n"
                    f"protocol: {PROTOCOL.replace('TIMEOUT', str(timeout_s))}\n")
    return inv, camp, faulty


def _rows(store: Path, campaign: str) -> dict[str, dict]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return {r["job_id"]: dict(r) for r in db.execute(
            "SELECT j.job_id, j.device, j.status, j.error, j.attempts, j.finished_at, m.source, "
            "(SELECT count(*) FROM samples s WHERE s.job_id = j.job_id) AS n_stored, m.n_samples "
            "FROM jobs j LEFT JOIN measurements m USING (job_id) WHERE j.campaign = ?", (campaign,))}
    finally:
        db.close()


def _run(farm, inv: Path, camp: Path, store: Path, *extra: str) -> int:
    return cli.main(["--devices", str(inv), "--store", str(store), "run", str(camp), "--engine", "ray",
                     "--address", farm.address, "--models-root", str(farm.root / "models"),
                     "--max-parallel", str(N_DEVICES), "--retries", "1", "--no-progress", *extra])


def test_worker_node_killed_mid_campaign_then_resume_completes_it(farm, capsys):
    inv, camp, _ = _campaign(farm.root, "farm1k", [1, 2, 3, 4, 5])
    store = farm.root / "farm.sqlite"
    killed: dict = {}

    def killer():
        """When a third of the 1,000 jobs are stored ok, kill every process of one worker node."""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            try:
                rows = _rows(store, "farm1k") if store.exists() else {}
            except sqlite3.OperationalError:  # the store is being created
                rows = {}
            if rows:
                ok = {j: r["finished_at"] for j, r in rows.items() if r["status"] == "ok"}
                if len(ok) >= 333:
                    killed["stored_ok"] = ok
                    killed["pids"] = farm.kill(VICTIM)
                    return
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    t0 = time.monotonic()
    rc = _run(farm, inv, camp, store)
    first_s = time.monotonic() - t0
    t.join(5)
    assert killed, "the node was never killed (campaign too fast?)"
    assert rc == 1  # jobs of the lost node's devices did not finish
    rows = _rows(store, "farm1k")
    assert len(rows) == 1000
    lost_devices = set(farm.nodes[VICTIM].devices)
    # nothing stored before the kill was lost or rewritten
    assert all(rows[j]["status"] == "ok" and rows[j]["finished_at"] == fin for j, fin in killed["stored_ok"].items())
    # the other nodes finished every job of theirs
    others = [r for r in rows.values() if r["device"] not in lost_devices]
    assert others and all(r["status"] == "ok" for r in others), [r["error"] for r in others if r["status"] != "ok"][:3]
    # the lost node's devices: what ran there went back to planned with the cause (nothing was
    # measured), and so did the rest of their queues: none failed, none skipped
    lost = [r for r in rows.values() if r["device"] in lost_devices and r["status"] != "ok"]
    assert lost, "no job of the killed node was left to resume"
    assert {r["status"] for r in lost} == {"planned"}, sorted({r["status"] for r in lost})
    assert any("lost" in (r["error"] or "") or "no live node" in (r["error"] or "") for r in lost), \
        [r["error"] for r in lost][:3]
    print(f"first run {first_s:.1f} s; killed {VICTIM} (pids {killed['pids']}); "
          f"{len(killed['stored_ok'])} ok at the kill, {len(lost)} jobs left to resume")

    # the host comes back with the same devices; --resume runs only what is not stored ok
    farm.start(VICTIM)
    farm.wait_nodes(len(farm.nodes))
    capsys.readouterr()
    assert _run(farm, inv, camp, store, "--resume") == 0
    assert f"1000 jobs planned, {1000 - len(lost)} already done, {len(lost)} to run" in capsys.readouterr().err
    final = _rows(store, "farm1k")
    assert len(final) == 1000 and {r["status"] for r in final.values()} == {"ok"}  # stored == planned
    assert {r["source"] for r in final.values()} == {"simulated"}
    db = sqlite3.connect(str(store))
    dup = db.execute("SELECT count(*) - count(DISTINCT job_id) FROM jobs").fetchone()[0]
    meas = db.execute("SELECT count(*), count(DISTINCT job_id) FROM measurements").fetchone()
    db.close()
    assert dup == 0 and meas == (1000, 1000)
    # every job's samples stored once (a run twice would add a second trial's rows or clash)
    assert all(r["n_stored"] == r["n_samples"] for r in final.values())
    for j, r in rows.items():  # measured before the resume: untouched by it
        if r["status"] == "ok":
            assert final[j]["finished_at"] == r["finished_at"] and final[j]["attempts"] == r["attempts"]


def test_five_percent_faulty_devices_are_marked_unhealthy_and_skipped(farm, tmp_path):
    inv, camp, faulty = _campaign(farm.root, "farmfaults", [1, 2, 3], faulty_share=0.05, timeout_s=8)
    assert len(faulty) == 10
    farm.wait_nodes(len(farm.nodes))
    prep = prepare(camp, inv, farm.root / "models")
    opts = SchedulerOptions(max_parallel=N_DEVICES, retries=1, backoff_s=0.2, unhealthy_after=2,
                            models_root=str(farm.root / "models"), progress=False)
    out = run_prepared(prep, tmp_path / "f.sqlite", opts, engine="ray", address=farm.address)
    summary = out.summary
    rows = _rows(tmp_path / "f.sqlite", "farmfaults")
    bad = {d for d in faulty}
    for dev in bad:
        state = summary.devices[dev]
        assert not state.healthy, dev
        mine = sorted((r for r in rows.values() if r["device"] == dev), key=lambda r: r["status"])
        assert [r["status"] for r in mine] == ["failed", "failed", "skipped"], (dev, mine)
        assert "unhealthy" in mine[-1]["error"]
    kinds = {d.id: d.tags for d in load_devices(inv)}
    hung = [r for r in rows.values() if "sim-fault:hang" in kinds[r["device"]] and r["status"] == "failed"]
    assert hung and all("deadline" in r["error"] for r in hung), [r["error"] for r in hung][:2]
    good = [r for r in rows.values() if r["device"] not in bad]
    assert len(good) == 570 and all(r["status"] == "ok" for r in good)
    assert summary.ok == 570 and summary.exit_code == 1
