"""The Ray engine on a real local multi-node Ray cluster (`ray.cluster_utils.Cluster`: one GCS, one
raylet per node, real worker processes; every node on this machine, told apart by the device
resources it advertises).

- campaign: real Paddle Inference (tiny_mlp, tiny protocol) on two devices on two nodes: `dev-a`
  (local transport) on the head node, `ssh-b` (real SSH to a loopback sshd) on a second node. It is
  started with the local engine and resumed through `lab run --engine ray --resume`.
- node loss: a synthetic fixed-duration executor (labelled synthetic) on three devices, two nodes:
  killing the node that runs the shared device's job mid-campaign keeps everything stored, the
  shared job is retried on the surviving node, the lost node's own device's jobs go back to
  planned with the cause, and a resume after a replacement node joins finishes the campaign.
"""
from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray not installed (pip install '.[ray]')")
from ray.cluster_utils import Cluster  # noqa: E402

from lab import cli  # noqa: E402
from lab.measure.campaign import load_campaign, plan_jobs  # noqa: E402
from lab.devices.inventory import load_devices  # noqa: E402
from lab.measure.ray_engine import SyntheticExecutor, device_resource, run_with_ray  # noqa: E402
from lab.core.records import Device, Job, MeasurementProtocol  # noqa: E402
from lab.measure.scheduler import Scheduler, SchedulerOptions  # noqa: E402
from lab.results.store import Store  # noqa: E402

pytestmark = pytest.mark.slow
NODE = dict(num_cpus=1, object_store_memory=100_000_000)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Head node advertises dev-a; node B advertises ssh-b. Fast failure detection for node loss."""
    saved = os.environ.get("HWLAB_RAY_CACHE")
    os.environ["HWLAB_RAY_CACHE"] = str(tmp_path_factory.mktemp("ray-model-cache"))  # inherited by nodes
    c = Cluster(initialize_head=True, head_node_args=dict(
        NODE, resources={device_resource("dev-a"): 1}, include_dashboard=False,
        _system_config={"health_check_initial_delay_ms": 500, "health_check_period_ms": 500,
                        "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}))
    c.node_b = c.add_node(**NODE, resources={device_resource("ssh-b"): 1})
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()
    if saved is None:
        os.environ.pop("HWLAB_RAY_CACHE", None)
    else:
        os.environ["HWLAB_RAY_CACHE"] = saved


def test_campaign_local_then_resumed_on_ray_across_two_nodes(cluster, tmp_path, ssh_client_key, loopback_sshd):
    from lab.models.artifact import load_artifact
    from lab.models.build import build
    build("tiny_mlp", out_root=str(tmp_path / "models"))
    kh = tmp_path / "known_hosts"
    kh.write_text(loopback_sshd.known_hosts_line())
    (tmp_path / "devices.yaml").write_text(textwrap.dedent(f"""
        devices:
          - id: dev-a
            chip: generic-x86-cpu
            transport: local
            workdir: {tmp_path / 'dev-a'}
          - id: ssh-b
            chip: generic-x86-cpu
            transport: ssh
            host: {loopback_sshd.addr}
            port: {loopback_sshd.port}
            user: root
            key_file: {ssh_client_key[0]}
            known_hosts: {kh}
            workdir: {loopback_sshd.workdir / 'ssh-b'}
            python: {sys.executable}
        """))
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""
        name: raycamp
        devices: [dev-a, ssh-b]
        models: [tiny_mlp]
        backends: [paddle-inference-cpu]
        threads: [1, 2]
        protocol: {warmup: 2, warmup_seconds: 0.01, min_iters: 5, min_seconds: 0.05, max_seconds: 0.5,
                   target_rel_ci: 0.5, trials: 1, timeout_s: 120}
        """))
    devices = load_devices(tmp_path / "devices.yaml")
    spec = load_campaign(tmp_path / "c.yaml")
    sha = load_artifact("tiny_mlp", root=str(tmp_path / "models")).sha256
    jobs, _ = plan_jobs(spec, devices, lambda m: sha)
    assert len(jobs) == 4
    store_path = tmp_path / "s.sqlite"
    store = Store(store_path)
    store.save_campaign(spec.name, spec.to_dict())
    store.plan_jobs(jobs)
    # the local engine measures dev-a's jobs, then "the run is interrupted"
    local_jobs = [j for j in jobs if j.device == "dev-a"]
    summary = Scheduler(store, devices, SchedulerOptions(progress=False, models_root=str(tmp_path / "models"))
                        ).run(local_jobs)
    assert summary.ok == 2, summary
    before = {r["job_id"]: r for r in store.results_rows("raycamp")}
    store.close()

    rc = cli.main(["--devices", str(tmp_path / "devices.yaml"), "--store", str(store_path), "run",
                   str(tmp_path / "c.yaml"), "--resume", "--engine", "ray", "--address", cluster.address,
                   "--models-root", str(tmp_path / "models"), "--no-progress"])
    assert rc == 0
    assert not ray.is_initialized()  # the engine disconnected its driver
    store = Store(store_path)
    rows = {r["job_id"]: r for r in store.results_rows("raycamp")}
    assert {r["status"] for r in rows.values()} == {"ok"} and len(rows) == 4
    for jid, r in rows.items():
        assert r["p50_ms"] > 0 and r["n_samples"] >= 5 and r["load_ms"] > 0
        prov = store.provenance(jid)
        if r["device"] == "dev-a":  # measured by the local engine, not run again
            assert r["finished_at"] == before[jid]["finished_at"] and "ray" not in prov
        else:  # measured on node B only, through real SSH
            assert prov["ray"]["node_id"] == cluster.node_b.node_id, prov["ray"]
            assert r["attempts"] == 1
    # the model travelled through the object store into the node cache
    assert list(Path(os.environ["HWLAB_RAY_CACHE"]).glob("tiny_mlp-*/tiny_mlp/meta.json"))
    store.close()


def _synthetic_jobs(devices: list[str], n: int) -> list[Job]:
    return [Job(job_id=f"k-{d}-{i:02d}", campaign="kill", device=d, chip="generic-x86-cpu", model="none",
                model_sha256="0" * 64, backend="paddle-inference-cpu", processor="cpu", precision="fp32",
                threads=1, options=(("i", i),), protocol=MeasurementProtocol())
            for d in devices for i in range(n)]


def _kill_workers(node) -> None:
    """SIGKILL the node's worker processes (children of its raylet): `remove_node` kills the raylet
    and its daemons, and an orphaned worker would otherwise live on for a moment, which no real host
    loss allows."""
    import psutil
    for info in node.all_processes.get("raylet", []):
        for child in psutil.Process(info.process.pid).children(recursive=True):
            child.kill()


def test_node_loss_mid_campaign_then_resume(cluster, tmp_path):
    k1 = cluster.add_node(**NODE, resources={device_resource("solo-1"): 1, device_resource("shared"): 1})
    k2 = cluster.add_node(**NODE, resources={device_resource("solo-2"): 1, device_resource("shared"): 1})
    names = {"solo-1", "solo-2", "shared"}
    devices = [Device(id=d, chip="generic-x86-cpu", transport="local", workdir=str(tmp_path / d)) for d in names]
    jobs = _synthetic_jobs(sorted(names), 8)
    trace = tmp_path / "trace"
    trace.mkdir()
    store = Store(tmp_path / "k.sqlite")
    store.plan_jobs(jobs)
    opts = SchedulerOptions(progress=False, retries=2, backoff_s=0.5, unhealthy_after=3)
    killed: dict = {}

    def killer():
        """When every device has 2 jobs stored, kill the node running the shared device's job."""
        watch = Store(tmp_path / "k.sqlite")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = watch.results_rows("kill")
            ok = {d: [r for r in rows if r["device"] == d and r["status"] == "ok"] for d in names}
            if all(len(v) >= 2 for v in ok.values()):
                for m in trace.glob("k-shared-*.running"):
                    try:
                        node_id, age = m.read_text(), time.time() - m.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if node_id and age < 0.5:
                        victim = k1 if node_id == k1.node_id else k2
                        killed["stored_ok"] = {r["job_id"]: r["finished_at"] for r in rows if r["status"] == "ok"}
                        killed["shared_job"] = m.name.split(".")[0]
                        killed["node"] = victim
                        killed["solo"] = "solo-1" if victim is k1 else "solo-2"
                        _kill_workers(victim)  # a host that dies takes its workers (the node agent) along
                        cluster.remove_node(victim, allow_graceful=False)
                        watch.close()
                        return
            time.sleep(0.05)
        watch.close()

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    summary = run_with_ray(store, devices, jobs, opts, address=cluster.address,
                           node_executor=SyntheticExecutor(1.0, trace_dir=str(trace)), push_models=False)
    t.join(5)
    assert killed, "the node was never killed (campaign too fast?)"
    survivor = k2 if killed["node"] is k1 else k1
    lost_dev = killed["solo"]
    rows = {r["job_id"]: r for r in store.results_rows("kill")}
    # 1. nothing measured before the kill was lost or rewritten
    for jid, fin in killed["stored_ok"].items():
        assert rows[jid]["status"] == "ok" and rows[jid]["finished_at"] == fin
    # 2. the shared device: the job on the dead node was retried on the survivor; all measured
    shared = [r for r in rows.values() if r["device"] == "shared"]
    assert all(r["status"] == "ok" for r in shared), [(r["job_id"], r["error"]) for r in shared]
    sj = rows[killed["shared_job"]]
    # it was running on the victim when it was killed (its marker said so), and was measured on the
    # survivor (the scheduler's retry of a transient error; `attempts` counts runs, not retries)
    assert store.provenance(sj["job_id"])["ray"]["node_id"] == survivor.node_id
    # 3. the lost node's own device: nothing was measured there after the kill, so its running job
    # and the rest of its queue went back to planned with the cause (not failed, not skipped)
    lost = [r for r in rows.values() if r["device"] == lost_dev]
    requeued = [r for r in lost if r["status"] != "ok"]
    assert requeued and {r["status"] for r in requeued} == {"planned"}, [r["status"] for r in lost]
    # the cause is named: the task died with its node, or (when the kill fell between two of this
    # device's tasks) the device's resource vanished with the node
    assert all(any(cause in (r["error"] or "") for cause in
                   ("NodeDiedError", "WorkerCrashedError", "ActorDiedError", "was lost",
                    "no live node in the Ray cluster advertises")) for r in requeued), \
        [r["error"] for r in requeued]
    assert not summary.devices[lost_dev].healthy and summary.exit_code == 1
    assert summary.unfinished == len(requeued)
    print("lost device errors:", [r["error"] for r in requeued][:2])
    # 4. the other solo device was never disturbed
    other = "solo-2" if lost_dev == "solo-1" else "solo-1"
    assert all(rows[j.job_id]["status"] == "ok" for j in jobs if j.device == other)

    # resume: a replacement node that reaches the lost device joins; only unfinished jobs run
    cluster.add_node(**NODE, resources={device_resource(lost_dev): 1})
    todo = [j for j in jobs if rows[j.job_id]["status"] != "ok"]
    summary2 = run_with_ray(store, devices, todo, opts, address=cluster.address,
                            node_executor=SyntheticExecutor(0.2), push_models=False)
    assert summary2.ok == len(todo) and summary2.exit_code == 0
    final = {r["job_id"]: r for r in store.results_rows("kill")}
    assert {r["status"] for r in final.values()} == {"ok"} and len(final) == len(jobs)
    for jid, fin in killed["stored_ok"].items():
        assert final[jid]["finished_at"] == fin
    store.close()


def test_device_no_node_reaches_is_given_up_with_the_reason(cluster, tmp_path):
    devices = [Device(id=d, chip="generic-x86-cpu", transport="local", workdir=str(tmp_path / d))
               for d in ("ghost", "dev-a")]
    jobs = _synthetic_jobs(["ghost", "dev-a"], 3)
    store = Store(tmp_path / "g.sqlite")
    store.plan_jobs(jobs)
    summary = run_with_ray(store, devices, jobs, SchedulerOptions(progress=False), address=cluster.address,
                           node_executor=SyntheticExecutor(0.05), push_models=False)
    rows = {r["job_id"]: r for r in store.results_rows("kill")}
    ghost = sorted((r for r in rows.values() if r["device"] == "ghost"), key=lambda r: r["job_id"])
    assert [r["status"] for r in ghost] == ["failed", "skipped", "skipped"]
    assert "no live node in the Ray cluster advertises hwlab-dev:ghost" in ghost[0]["error"]
    assert "lab node start" in ghost[0]["error"] and "unhealthy" in ghost[1]["error"]
    assert all(r["status"] == "ok" for r in rows.values() if r["device"] == "dev-a")  # the rest goes on
    assert summary.exit_code == 1
    store.close()
