"""Run a campaign on a Ray cluster, driver side: jobs go to node agents in batches.

Why Ray, and why this shape: phones and boards hang off several hosts, so one orchestrator cannot
reach them all. A host that reaches devices runs `lab node start`, which joins the cluster and
advertises one unit of the custom resource `hwlab-dev:<device id>` per device (`device_resource`).
Every node that advertises devices gets one agent (`lab.measure.ray_node.NodeAgent`, pinned to it),
and a job goes only to an agent whose node advertises its device.

The driver keeps the local scheduler's semantics by *reusing* `lab.measure.scheduler.Scheduler`: its
per-device threads, retries with backoff for transient DeviceErrors, unhealthy devices, cooldowns
and progress view all run on the driver, with an executor (`AgentExecutor`) that queues the job
for its agent's next batch and waits for its outcome, which comes back in a batch from the agent's
long poll. The driver alone writes the store, so store semantics (commit per job, `--resume` by job
id) are the same under both engines. Batches, not a Ray task per job: at 1,000 devices a task per
job meant a worker process per running job and two round trips per job (docs/ray.md).

Node loss: an agent whose node dies fails its poll (ActorDiedError); its jobs become transient
DeviceErrors naming the cause, so the scheduler retries them - and a retry goes only to a live
agent whose node advertises the device (`_DeviceHandle`), else it raises `HostLost`: nothing was
measured, so that job and the rest of the device's queue go back to planned with the cause, and
`lab run --resume` runs them once a node reaches the device again.

Models travel through Ray's object store (`_model_bundle`): the driver puts each model's files once,
and a node materialises them into a content-addressed cache (`~/.cache/hwlab/ray-models`, or
$HWLAB_RAY_CACHE) the first time it needs them, so nodes need the lab's code environment but not
the models directory. The lab package itself is shipped to the workers as a Ray `py_modules`
runtime environment when this module starts the connection, so nodes run the driver's code version.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError, DeviceError, HostLost
from lab.core.records import Device, Job, Measurement
from lab.measure.ray_node import NodeAgent, NodeExecutor, node_info
from lab.measure.scheduler import RunSummary, Scheduler, SchedulerOptions
from lab.results.store import Store

RESOURCE_PREFIX = "hwlab-dev:"
RAY_MISSING = "Ray is not installed: pip install '.[ray]'"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
LAB_DIR = Path(__file__).resolve().parents[1]



def device_resource(device_id: str) -> str:
    """The Ray custom resource that stands for one device: `hwlab-dev:<id>`.

    Inventory ids already match [A-Za-z0-9._-]; anything else is replaced by `_` and, so that two
    ids can never share a resource, suffixed with 8 hex digits of the id's sha1.
    """
    safe = _SAFE.sub("_", device_id)
    if safe != device_id:
        safe += "-" + hashlib.sha1(device_id.encode()).hexdigest()[:8]
    return RESOURCE_PREFIX + safe


def import_ray():
    """Ray, or the one-line ConfigError that tells how to install it (exit 2)."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def connect(address: str | None, *, ship_code: bool = True):
    """Connect this process to a running cluster; returns (ray, owned) - owned: we must disconnect.

    An already connected process (tests, notebooks) is used as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"address": address or "auto", "namespace": "hwlab", "log_to_driver": False,
                              "logging_level": "warning"}
    if ship_code:
        kwargs["runtime_env"] = {"py_modules": [str(LAB_DIR)], "excludes": ["__pycache__", "*.pyc"]}
    if address and address != "auto" and not address.startswith("ray://"):
        _check_reachable(address)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ConfigError(f"no Ray cluster at {address or 'auto'!r}: {str(exc).splitlines()[0]}",
                          fix="start one with `lab node start --devices devices.yaml`, or pass "
                              "--address HOST:PORT of its head") from None
    return ray, True


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after Ray's two-minute GCS timeout, when nothing listens at HOST:PORT."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT", fix="e.g. --address 10.0.0.5:6379 or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster at {address!r}: {exc}",
                          fix="start its head with `lab node start --devices devices.yaml` there, or fix "
                              "--address") from None


def _model_bundle(model_id: str, models_root: str) -> dict[str, Any]:
    """meta.json + every file it lists, as bytes, for the object store."""
    from lab.models.artifact import load_artifact
    art = load_artifact(model_id, root=models_root)
    files = {"meta.json": (Path(art.dir) / "meta.json").read_bytes()}
    for rel in art.files:
        files[rel] = (Path(art.dir) / rel).read_bytes()
    return {"model": model_id, "sha256": art.sha256, "files": files}


# -- on the driver ------------------------------------------------------------------------------
class _Agent:
    """The driver's view of one node's agent: which device resources its node advertises, the
    jobs waiting for the next batch and the jobs it holds."""

    def __init__(self, node_id: str, resources: set[str], handle):
        self.node_id, self.resources, self.handle = node_id, resources, handle
        self.alive = True
        self.pending: list[tuple[Job, Device, list]] = []
        self.inflight: set[str] = set()


@dataclass
class _DeviceHandle:
    """What the scheduler holds as a device's "transport" under Ray: the device's resource name.

    Opening it checks that some live node advertises the resource; that is how a retry after a
    node loss goes ahead only where another node reaches the same device.
    """

    device_id: str
    resource: str

    def abort(self) -> None:
        """Nothing runs in this process: the scheduler's stop flag ends the waits and the run's end
        kills the agents, which hold the devices' real transports on their nodes."""

    def close(self) -> None:
        pass


@dataclass
class _Lost:
    message: str


_STOPPED = object()  # a job's outcome when the run stops before it came back


class AgentExecutor:
    """The scheduler's executor under Ray: a job goes into its node agent's next batch, its
    outcome comes back in a batch from the agent's long poll (module doc, lab/measure/ray_node.py).

    Threads: the scheduler's device threads wait on a Future each; one flusher sends each agent the
    jobs queued since its last batch (`batch_s` apart at most); one collector per agent polls it.
    """

    def __init__(self, ray, *, models_root: str, node_executor: NodeExecutor | None = None,
                 push_models: bool = True, poll_s: float = 0.5, batch_s: float = 0.005,
                 stop: threading.Event | None = None):
        self.ray, self.models_root, self.node_executor = ray, models_root, node_executor
        self.push_models, self.poll_s, self.batch_s = push_models, poll_s, batch_s
        self.stop = stop or threading.Event()
        self._agent_cls = ray.remote(NodeAgent)
        self.agents: dict[str, _Agent] = {}
        self.futures: dict[str, Future] = {}
        self.last_loss: dict[str, str] = {}  # device id -> last "node lost" message (the cause)
        self._bundles: dict[tuple[str, str], tuple[str, str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._discover_lock = threading.Lock()
        self._discovered_at = -1e9
        self._threads: list[threading.Thread] = []
        self.discover()
        self._spawn(self._flush_loop, "ray-flusher")

    def discover(self) -> None:
        """An agent on every live node that advertises devices and has none yet (a node that
        joined mid-run, a replacement host, is picked up when a device asks for it)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        with self._discover_lock:  # one device thread asks the GCS; the others reuse its answer
            if time.monotonic() - self._discovered_at < self.poll_s:
                return
            nodes = self.ray.nodes()
            self._discovered_at = time.monotonic()
            for node in nodes:
                self._start_agent(node, NodeAffinitySchedulingStrategy)

    def _start_agent(self, node: dict, affinity) -> None:
        """An agent pinned to `node` if it is alive, advertises devices and has none yet."""
        res = {k for k in (node.get("Resources") or {}) if k.startswith(RESOURCE_PREFIX)}
        nid = node.get("NodeID")
        with self._lock:
            known = nid in self.agents
        if not node.get("Alive") or not res or known:
            return
        handle = self._agent_cls.options(num_cpus=0, max_concurrency=4, max_restarts=0,
                                         scheduling_strategy=affinity(nid, soft=False),
                                         ).remote(self.models_root, self.node_executor)
        agent = _Agent(nid, res, handle)
        with self._lock:
            self.agents[nid] = agent
        self._spawn(lambda: self._collect(agent), f"ray-poll-{nid[:8]}")

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _route(self, resource: str) -> _Agent | None:
        with self._lock:
            live = [a for a in self.agents.values() if a.alive and resource in a.resources]
        return min(live, key=lambda a: len(a.inflight)) if live else None

    def open(self, device: Device) -> _DeviceHandle:
        res = device_resource(device.id)
        if self._route(res) is None:
            self.discover()
        if self._route(res) is None:
            error = HostLost if device.id in self.last_loss else DeviceError
            raise error(device.id, f"no live node in the Ray cluster advertises {res}"
                        + self._cause(device.id), transient=False)
        return _DeviceHandle(device.id, res)

    def _bundle_box(self, job: Job) -> list:
        if not self.push_models:
            return []
        key = (job.model, job.model_sha256)
        with self._lock:
            if key not in self._bundles:
                bundle = _model_bundle(job.model, self.models_root)
                if bundle["sha256"] != job.model_sha256:
                    raise ConfigError(f"job {job.job_id}: model {job.model!r} changed since the campaign "
                                      f"was planned", fix="plan again (lab run without --resume)")
                self._bundles[key] = (job.model, bundle["sha256"], self.ray.put(bundle))
            return [self._bundles[key]]

    def __call__(self, job: Job, device: Device, handle: _DeviceHandle) -> Measurement:
        agent = self._route(handle.resource)
        if agent is None:  # its node was lost: nothing measured, the job goes back to planned
            raise HostLost(device.id, f"job {job.job_id}: no live node in the Ray cluster advertises "
                           f"{handle.resource} any more" + self._cause(device.id))
        box = self._bundle_box(job)
        fut: Future = Future()
        with self._lock:
            if agent.alive:
                self.futures[job.job_id] = fut
                agent.inflight.add(job.job_id)
                agent.pending.append((job, device, box))
            else:
                fut.set_result(_Lost(self.last_loss.get(device.id, "its node was lost")))
        self._wake.set()
        try:
            outcome = self._wait(fut, job, device)
        finally:
            with self._lock:
                self.futures.pop(job.job_id, None)
                agent.inflight.discard(job.job_id)
        return self._result(outcome, job, device)

    def _wait(self, fut: Future, job: Job, device: Device):
        """The job's outcome. No polling here (1,000 device threads waking twice a second would
        cost the driver more than the jobs): the flusher resolves every future when the run stops."""
        outcome = fut.result()
        if outcome is _STOPPED:
            raise DeviceError(device.id, f"job {job.job_id} cancelled: the run was stopped", transient=False)
        return outcome

    def _result(self, outcome, job: Job, device: Device) -> Measurement:
        if isinstance(outcome, _Lost):
            self.last_loss[device.id] = f"Ray task of job {job.job_id} lost: {outcome.message}"
            raise DeviceError(device.id, self.last_loss[device.id], transient=True)
        if outcome.error is not None:
            exc = outcome.error.rebuild(device.id)
            host = outcome.node.get("hostname") or outcome.node.get("node_ip") or "?"
            if outcome.error.kind == "internal":  # keep the node's traceback visible
                exc.args = (f"{outcome.error.message} (on Ray node {host}; {outcome.error.trace[-600:]})",)
            raise exc
        return outcome.measurement

    def _flush_loop(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self.stop.is_set():
                self._resolve_all(_STOPPED)
            time.sleep(self.batch_s)  # let the jobs of devices finishing together join one batch
            with self._lock:
                work = [(a, a.pending) for a in self.agents.values() if a.pending and a.alive]
                for a, _ in work:
                    a.pending = []
            for agent, batch in work:
                agent.handle.submit.remote(batch)  # a dead agent shows in its poll

    def _collect(self, agent: _Agent) -> None:
        while not self._closed.is_set():
            try:
                outcomes = self.ray.get(agent.handle.poll.remote(self.poll_s))
            except Exception as exc:  # noqa: BLE001 - RayActorError & co: the agent's node is gone
                if not self._closed.is_set():
                    self._lose(agent, exc)
                return
            with self._lock:
                futs = [(self.futures.get(o.job_id), o) for o in outcomes]
            for fut, o in futs:
                if fut is not None and not fut.done():
                    fut.set_result(o)

    def _lose(self, agent: _Agent, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        msg = f"{type(exc).__name__}: its node {agent.node_id[:12]} was lost ({first})"
        with self._lock:
            agent.alive = False
            futs = [self.futures.get(j) for j in agent.inflight]
        for fut in futs:
            if fut is not None and not fut.done():
                fut.set_result(_Lost(msg))

    def _resolve_all(self, outcome) -> None:
        with self._lock:
            futs = list(self.futures.values())
        for fut in futs:
            if not fut.done():
                fut.set_result(outcome)

    def _cause(self, device_id: str) -> str:
        loss = self.last_loss.get(device_id)
        return (f" (node lost; before that: {loss})" if loss else
                " (run `lab node start --devices ...` on a host that reaches it)")

    def close(self) -> None:
        """Stop polling and kill the agents: what still runs on a node ends with its agent."""
        self._closed.set()
        self._wake.set()
        self._resolve_all(_STOPPED)
        for agent in list(self.agents.values()):
            with contextlib.suppress(Exception):  # the agent may be gone already
                self.ray.kill(agent.handle)
        for t in list(self._threads):  # none may sit in a Ray call when the caller shuts Ray down
            t.join(self.poll_s + 5.0)


def run_with_ray(store: Store, devices: list[Device], jobs: list[Job], opts: SchedulerOptions | None = None,
                 *, address: str | None = "auto", node_executor: NodeExecutor | None = None,
                 push_models: bool = True, poll_s: float = 0.5, ship_code: bool = True) -> RunSummary:
    """Measure `jobs` on the cluster at `address`; the same RunSummary as the local engine.

    `node_executor` replaces `execute_job` on the nodes (benchmarks use a synthetic one). With
    `push_models=False` no model travels: nodes read the driver's models root by its absolute path
    (a shared or identically synced filesystem).
    """
    opts = opts or SchedulerOptions()
    ray, owned = connect(address, ship_code=ship_code)
    try:
        rex = AgentExecutor(ray, models_root=str(Path(opts.models_root).resolve()), node_executor=node_executor,
                            push_models=push_models, poll_s=poll_s)
        sched = Scheduler(store, devices, opts, executor=rex, transport_factory=rex.open)
        rex.stop = sched._stop  # one stop flag: Scheduler.stop() also ends the waits on the cluster
        try:
            return sched.run(jobs)
        finally:
            rex.stop.set()
            rex.close()
    finally:
        if owned:
            ray.shutdown()


def node_resources(devices: list[Device], only: list[str] | None = None) -> dict[str, float]:
    """The custom resources `lab node start` advertises: one unit per enabled device it reaches."""
    chosen = [d for d in devices if d.enabled and (not only or d.id in only)]
    return {device_resource(d.id): 1.0 for d in chosen}


def resources_json(resources: dict[str, float]) -> str:
    return json.dumps(resources, sort_keys=True)


class SyntheticExecutor:
    """A fixed-duration stand-in for `execute_job`, labelled synthetic in what it returns.

    Why it exists: to measure the *scheduling* machinery (local threads vs Ray) and to test node
    loss without paying for real inference. It never runs under `lab run`. It works as the local
    scheduler's executor (job, device, transport) and as a Ray node executor (+ models_root).
    """

    def __init__(self, duration_s: float = 0.05, trace_dir: str | None = None):
        self.duration_s = duration_s
        self.trace_dir = trace_dir  # if set: <job id>.running holds the Ray node id while it "runs"

    def __call__(self, job: Job, device: Device, transport, models_root: str | None = None) -> Measurement:
        marker = Path(self.trace_dir) / f"{job.job_id}.running" if self.trace_dir else None
        if marker is not None:
            marker.write_text(node_info().get("node_id", "local"))
        t0 = time.perf_counter()
        time.sleep(self.duration_s)
        ms = (time.perf_counter() - t0) * 1000.0
        if marker is not None:
            marker.unlink()
        return Measurement(job_id=job.job_id, p50_ms=ms, mean_ms=ms, min_ms=ms, max_ms=ms, n_samples=1,
                           samples=[[ms]], source="synthetic",
                           notes=[f"synthetic executor: slept {self.duration_s} s, no inference ran"])
