"""Run a campaign on a Ray cluster: each job is a Ray task that needs its device's resource.

Why Ray, and why this shape: phones and boards hang off several hosts, so one orchestrator cannot
reach them all. A host that reaches devices runs `lab node start`, which joins the cluster and
advertises one unit of the custom resource `hwlab-dev:<device id>` per device (`device_resource`).
A job's task asks for one unit of its device's resource, so Ray places it only on a node that reaches
the device, and never runs two jobs on one device at once.

The driver keeps the local scheduler's semantics by *reusing* `lab.measure.scheduler.Scheduler`: its
per-device threads, retries with backoff for transient DeviceErrors, unhealthy devices, cooldowns
and progress view all run on the driver, with an executor that submits one Ray task per attempt and
waits for it (`ray.wait`). Results stream back as they complete and the driver alone writes the
store, so store semantics (commit per job, `--resume` by job id) are the same under both engines.

Node loss: a task whose node dies raises NodeDiedError / WorkerCrashedError on the driver; that
becomes a transient DeviceError naming the cause, so the scheduler retries it - and the retry is
only submitted while some live node still advertises the device's resource (`_DeviceHandle`), else
the device is marked unhealthy with the reason and its remaining jobs are skipped. A task that is
waiting for a resource that disappears from the cluster is cancelled by the same check.

Models travel through Ray's object store (`_model_bundle`): the driver puts each model's files once,
and a node materialises them into a content-addressed cache (`~/.cache/hwlab/ray-models`, or
$HWLAB_RAY_CACHE) the first time it needs them, so nodes need the lab's code environment but not
the models directory. The lab package itself is shipped to the workers as a Ray `py_modules`
runtime environment when this module starts the connection, so nodes run the driver's code version.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lab.core import errors as lab_errors
from lab.core.errors import ConfigError, DeviceError, LabError
from lab.core.records import Device, Job, Measurement
from lab.measure.scheduler import RunSummary, Scheduler, SchedulerOptions
from lab.results.store import Store

RESOURCE_PREFIX = "hwlab-dev:"
RAY_MISSING = "Ray is not installed: pip install '.[ray]'"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
LAB_DIR = Path(__file__).resolve().parents[1]

# Executor run *on the node*: (job, device, transport, models_root) -> Measurement.
NodeExecutor = Callable[[Job, Device, Any, str], Measurement]


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
        import ray  # noqa: F401
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


# -- what travels back from a node ---------------------------------------------------------------
@dataclass
class RemoteError:
    """An exception raised on a node, as plain data.

    Why not let Ray pickle the exception: the lab's errors take (device, message) arguments, which
    the default exception unpickling cannot rebuild, and the scheduler needs the class (transient?
    LabError or a bug?) to decide on retries.
    """

    cls_name: str
    message: str
    kind: str  # device | lab | internal
    transient: bool = False
    trace: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> "RemoteError":
        kind = "device" if isinstance(exc, DeviceError) else "lab" if isinstance(exc, LabError) else "internal"
        return cls(type(exc).__name__, str(exc), kind, bool(getattr(exc, "transient", False)),
                   "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-2000:])

    def rebuild(self, device_id: str) -> BaseException:
        """An exception of the same class name and text, for the scheduler's retry rules."""
        base = DeviceError if self.kind == "device" else LabError if self.kind == "lab" else Exception
        cls = getattr(lab_errors, self.cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            cls = type(self.cls_name, (base,), {})  # same name in messages, right family for retries
        exc = cls.__new__(cls)
        Exception.__init__(exc, self.message)
        if self.kind == "device":
            exc.device, exc.transient = device_id, self.transient
        return exc


@dataclass
class TaskOutcome:
    job_id: str
    measurement: Measurement | None = None
    error: RemoteError | None = None
    node: dict[str, Any] = field(default_factory=dict)


# -- on the node --------------------------------------------------------------------------------
def _default_node_executor(job: Job, device: Device, transport, models_root: str) -> Measurement:
    from lab.runtimes.execute import execute_job
    return execute_job(job, device, transport, models_root=models_root)


def _node_info() -> dict[str, Any]:
    info: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray
        if not ray.is_initialized():
            return info
        ctx = ray.get_runtime_context()
        info["node_id"] = ctx.get_node_id()
        info["node_ip"] = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - provenance is best effort
        pass
    return info


def run_on_node(job: Job, device: Device, bundle_box: list, models_root: str,
                executor: NodeExecutor | None) -> TaskOutcome:
    """The body of a job's Ray task: open the transport here, measure, close; never raise.

    `bundle_box` is [(model id, sha256, ObjectRef)] when models travel through the object store
    (a list, so Ray hands the ref over unresolved and a cache hit costs no transfer), or [] when
    every node sees the driver's `models_root` (a shared filesystem).
    """
    node = _node_info()
    transport = None
    try:
        if bundle_box:
            models_root = materialize_models(bundle_box[0])
        from lab.transport.registry import open_transport
        transport = open_transport(device)
        m = (executor or _default_node_executor)(job, device, transport, models_root)
        m.provenance = dict(m.provenance or {})
        m.provenance["ray"] = node
        return TaskOutcome(job.job_id, measurement=m, node=node)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the driver as data
        return TaskOutcome(job.job_id, error=RemoteError.of(exc), node=node)
    finally:
        from lab.transport.registry import close_quietly
        close_quietly(transport)


def cache_root() -> Path:
    return Path(os.environ.get("HWLAB_RAY_CACHE") or os.path.expanduser("~/.cache/hwlab/ray-models"))


def materialize_models(entry) -> str:
    """Make a pushed model available on this node; returns a models root for `load_artifact`.

    `entry` is (model id, sha256, ObjectRef or bundle dict). Content-addressed (id + sha256), so a
    node fetches each model version once; written to a temporary directory and renamed, so
    concurrent tasks on one node never see half a model.
    """
    model_id, sha, ref = entry
    root = cache_root() / f"{model_id}-{sha[:16]}"
    if (root / model_id / "meta.json").is_file():
        return str(root)
    if isinstance(ref, dict):
        bundle = ref
    else:
        import ray
        bundle = ray.get(ref)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=root.parent))
    try:
        for rel, data in bundle["files"].items():
            dest = tmp / model_id / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        try:
            os.rename(tmp, root)
        except OSError:  # another task on this node won the race: its copy is the same content
            if not (root / model_id / "meta.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(root)


def _model_bundle(model_id: str, models_root: str) -> dict[str, Any]:
    """meta.json + every file it lists, as bytes, for the object store."""
    from lab.models.artifact import load_artifact
    art = load_artifact(model_id, root=models_root)
    files = {"meta.json": (Path(art.dir) / "meta.json").read_bytes()}
    for rel in art.files:
        files[rel] = (Path(art.dir) / rel).read_bytes()
    return {"model": model_id, "sha256": art.sha256, "files": files}


# -- on the driver ------------------------------------------------------------------------------
class _ClusterView:
    """Which device resources live nodes advertise; cached briefly (one GCS call per `ttl_s`)."""

    def __init__(self, ray, ttl_s: float = 0.5):
        self.ray, self.ttl_s = ray, ttl_s
        self._at, self._res = 0.0, {}
        self._lock = threading.Lock()

    def has(self, resource: str) -> bool:
        with self._lock:
            if time.monotonic() - self._at > self.ttl_s:
                self._res = dict(self.ray.cluster_resources())
                self._at = time.monotonic()
            return self._res.get(resource, 0) > 0


@dataclass
class _DeviceHandle:
    """What the scheduler holds as a device's "transport" under Ray: the device's resource name.

    Opening it checks that some live node advertises the resource; that is how a retry after a
    node loss goes ahead only where another node reaches the same device.
    """

    device_id: str
    resource: str

    def abort(self) -> None:
        """Nothing runs in this process: the scheduler's stop flag makes RayExecutor cancel the
        device's Ray task, which holds the device's real transport on its node."""

    def close(self) -> None:
        pass


class RayExecutor:
    """The scheduler's executor under Ray: submit one task per attempt, wait, hand back the result."""

    def __init__(self, ray, *, models_root: str, node_executor: NodeExecutor | None = None,
                 push_models: bool = True, poll_s: float = 0.5, stop: threading.Event | None = None):
        self.ray = ray
        self.models_root = models_root
        self.node_executor = node_executor
        self.push_models = push_models
        self.poll_s = poll_s
        self.view = _ClusterView(ray)
        self.stop = stop or threading.Event()
        self._task = ray.remote(run_on_node)
        self._bundles: dict[tuple[str, str], tuple[str, str, Any]] = {}
        self._lock = threading.Lock()
        self.in_flight: dict[str, Any] = {}  # job id -> ObjectRef
        self.last_loss: dict[str, str] = {}  # device id -> last "task lost" message (the cause)

    def open(self, device: Device) -> _DeviceHandle:
        res = device_resource(device.id)
        if not self.view.has(res):
            raise DeviceError(device.id, f"no live node in the Ray cluster advertises {res}"
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
        box = self._bundle_box(job)
        ref = self._task.options(resources={handle.resource: 1}, num_cpus=0, max_retries=0,
                                 name=f"hwlab-job-{job.job_id}").remote(job, device, box, self.models_root, self.node_executor)
        self.in_flight[job.job_id] = ref
        try:
            while True:
                ready, _ = self.ray.wait([ref], timeout=self.poll_s)
                if ready:
                    break
                if self.stop.is_set():
                    self._cancel(ref)
                    raise DeviceError(device.id, f"job {job.job_id} cancelled: the run was stopped",
                                      transient=False)
                if not self.view.has(handle.resource):
                    # waiting for a device no live node reaches any more: it would wait forever
                    self._cancel(ref)
                    raise DeviceError(device.id, f"job {job.job_id}: no live node in the Ray cluster "
                                      f"advertises {handle.resource} any more" + self._cause(device.id),
                                      transient=False)
            try:
                outcome: TaskOutcome = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                # NodeDiedError, WorkerCrashedError, ObjectLostError, ...: the node, not the job, failed
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                msg = f"Ray task of job {job.job_id} lost: {type(exc).__name__}: {first[:300]}"
                self.last_loss[device.id] = msg
                raise DeviceError(device.id, msg, transient=True) from None
        finally:
            self.in_flight.pop(job.job_id, None)
        if outcome.error is not None:
            exc = outcome.error.rebuild(device.id)
            host = outcome.node.get("hostname") or outcome.node.get("node_ip") or "?"
            if outcome.error.kind == "internal":  # keep the node's traceback visible
                exc.args = (f"{outcome.error.message} (on Ray node {host}; {outcome.error.trace[-600:]})",)
            raise exc
        return outcome.measurement

    def _cause(self, device_id: str) -> str:
        loss = self.last_loss.get(device_id)
        return (f" (node lost; before that: {loss})" if loss else
                " (run `lab node start --devices ...` on a host that reaches it)")

    def _cancel(self, ref) -> None:
        try:
            self.ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - the task may be gone already
            pass

    def cancel_all(self) -> None:
        for ref in list(self.in_flight.values()):
            self._cancel(ref)


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
        rex = RayExecutor(ray, models_root=str(Path(opts.models_root).resolve()), node_executor=node_executor,
                          push_models=push_models, poll_s=poll_s)
        sched = Scheduler(store, devices, opts, executor=rex, transport_factory=rex.open)
        rex.stop = sched._stop  # one stop flag: Scheduler.stop() also ends the waits on the cluster
        try:
            return sched.run(jobs)
        finally:
            rex.stop.set()
            rex.cancel_all()
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
            marker.write_text(_node_info().get("node_id", "local"))
        t0 = time.perf_counter()
        time.sleep(self.duration_s)
        ms = (time.perf_counter() - t0) * 1000.0
        if marker is not None:
            marker.unlink()
        return Measurement(job_id=job.job_id, p50_ms=ms, mean_ms=ms, min_ms=ms, max_ms=ms, n_samples=1,
                           samples=[[ms]], source="synthetic",
                           notes=[f"synthetic executor: slept {self.duration_s} s, no inference ran"])
