"""Run one job on one device: resolve its runtime and hand it to the one job path.

Why here: the local thread engine and Ray both call `execute_job`; everything runtime-specific
lives in lab/runtimes/ (one module per runtime, registered by Backend.runtime) and the trial
loop, telemetry session and merge in lab/runtimes/base.py.
"""
from __future__ import annotations

import threading
import weakref
from pathlib import Path

from lab.devices.backends import BACKENDS
from lab.core.errors import ConfigError
from lab.core.records import Device, Job, Measurement
from lab.runtimes.registry import get_runtime
from lab.runtimes.base import JobContext, execute
from lab.transport.base import Transport


def execute_job(job: Job, device: Device, transport: Transport, *, models_root: str | Path = "models",
                telemetry: bool = True, telemetry_root: str = "", keep_root: str | Path = "") -> Measurement:
    from lab.models.artifact import load_artifact
    from lab.models.zoo import artifact_id
    from lab.runtimes.registry import load_plugins
    load_plugins()  # a plugin runtime's backends (also on a Ray node, a fresh process)
    backend = BACKENDS[job.backend]
    artifact = load_artifact(artifact_id(job.model, job.precision, backend.runtime), root=str(models_root))
    if artifact.sha256 != job.model_sha256:
        raise ConfigError(f"job {job.job_id}: model {job.model!r} changed since the campaign was planned",
                          fix="plan again (lab run without --resume re-plans with the new hash)")
    ctx = JobContext(job=job, device=device, transport=transport, artifact=artifact, backend=backend,
                     telemetry_root=telemetry_root, keep_root=str(keep_root))
    m = execute(get_runtime(backend.runtime), ctx, telemetry=telemetry)
    from lab.devices.identity import for_row
    m.identity, m.identity_note = for_row(device_identity(device, transport), job.processor, m.identity,
                                          m.identity_note)
    return m


_IDENTITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # open transport -> Identity
_IDENTITIES_LOCK = threading.Lock()


def device_identity(device: Device, transport: Transport):
    """The device's identity verdict (lab.devices.identity), probed once per open transport: the
    scheduler keeps one transport per device for a whole run (a Ray node agent one per device), so a
    campaign asks each device once, in one sh round trip, and every row of it carries the verdict."""
    from lab.devices.probe import check_identity
    with _IDENTITIES_LOCK:
        try:
            known = _IDENTITIES.get(transport)
        except TypeError:  # not weak-referenceable: probe every job rather than guess
            known = None
    if known is None:
        known = check_identity(device, transport)
        with _IDENTITIES_LOCK:
            try:
                _IDENTITIES[transport] = known
            except TypeError:
                pass
    return known
