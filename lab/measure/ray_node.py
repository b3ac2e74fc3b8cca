"""What runs on a Ray node: the node agent, the job body, the model cache, errors as data.

Why an agent per node and not a task per job: a Ray task needs a worker process, so a farm of
hundreds of devices would start hundreds of Python workers per node and pay a submission and a
result round trip per job (12 ms each, bench/ray_overhead.py). One `NodeAgent` actor per node runs
that node's jobs in threads (a device runs one job at a time: the driver's scheduler sends a
device's jobs one after the other), takes jobs in batches (`submit`) and hands results back in
batches (`poll`, a long poll), so the driver pays per batch, not per job (docs/ray.md).
Everything here must be importable on a node with only the lab's code and Ray.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core import errors as lab_errors
from lab.core.errors import DeviceError, LabError
from lab.core.records import Device, Job, Measurement

# Executor run *on the node*: (job, device, transport, models_root) -> Measurement.
NodeExecutor = Callable[[Job, Device, Any, str], Measurement]

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
    def of(cls, exc: BaseException) -> RemoteError:
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


def node_info() -> dict[str, Any]:
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
                executor: NodeExecutor | None, transports: dict[str, Any] | None = None,
                node: dict[str, Any] | None = None) -> TaskOutcome:
    """The body of one job on its node: open the transport here, measure; never raise.

    `bundle_box` is [(model id, sha256, ObjectRef)] when models travel through the object store
    (a list, so Ray hands the ref over unresolved and a cache hit costs no transfer), or [] when
    every node sees the driver's `models_root` (a shared filesystem). `transports` (the agent's):
    device id -> its open transport, kept across the device's jobs as the local scheduler keeps
    it (one connection and one identity probe per device per run); dropped after a failed job.
    Without it the transport is opened and closed for this job.
    """
    from lab.transport.registry import close_quietly, open_transport
    node = node if node is not None else node_info()
    transport = transports.pop(device.id, None) if transports is not None else None
    try:
        if bundle_box:
            models_root = materialize_models(bundle_box[0])
        transport = transport or open_transport(device)
        m = (executor or _default_node_executor)(job, device, transport, models_root)
        m.provenance = dict(m.provenance or {})
        m.provenance["ray"] = node
        if transports is not None:
            transports[device.id], transport = transport, None  # kept for the device's next job
        return TaskOutcome(job.job_id, measurement=m, node=node)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the driver as data
        return TaskOutcome(job.job_id, error=RemoteError.of(exc), node=node)
    finally:
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




class NodeAgent:
    """One per node (a Ray actor pinned to it): runs the jobs it is sent, one thread per job.

    `submit` returns at once; `poll(wait_s)` returns every outcome finished since the last poll,
    waiting up to `wait_s` for the first one. Outcomes stay here until polled, so a slow driver
    loses nothing; a dead agent (its node died) loses only its unpolled and running jobs, which the
    driver then treats as lost with the node.
    """

    def __init__(self, models_root: str, executor: NodeExecutor | None = None):
        self.models_root, self.executor = models_root, executor
        self._done: list[TaskOutcome] = []
        self._cv = threading.Condition()
        self._transports: dict[str, Any] = {}  # device id -> open transport (one job per device at a time)
        self._node = node_info()

    def submit(self, batch: list[tuple[Job, Device, list]]) -> int:
        for job, device, box in batch:
            threading.Thread(target=self._run, args=(job, device, box), daemon=True,
                             name=f"job-{job.job_id}").start()
        return len(batch)

    def _run(self, job: Job, device: Device, box: list) -> None:
        out = run_on_node(job, device, box, self.models_root, self.executor, self._transports, self._node)
        with self._cv:
            self._done.append(out)
            self._cv.notify_all()

    def poll(self, wait_s: float) -> list[TaskOutcome]:
        with self._cv:
            if not self._done:
                self._cv.wait(wait_s)
            out, self._done = self._done, []
        return out
