"""Run one job on one device: resolve its runtime and hand it to the one job path.

Why here: the local thread engine and Ray both call `execute_job`; everything runtime-specific
lives in lab/runtimes/ (one module per runtime, registered by Backend.runtime) and the trial
loop, telemetry session and merge in lab/runtimes/base.py.
"""
from __future__ import annotations

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
    backend = BACKENDS[job.backend]
    artifact = load_artifact(artifact_id(job.model, job.precision, backend.runtime), root=str(models_root))
    if artifact.sha256 != job.model_sha256:
        raise ConfigError(f"job {job.job_id}: model {job.model!r} changed since the campaign was planned",
                          fix="plan again (lab run without --resume re-plans with the new hash)")
    ctx = JobContext(job=job, device=device, transport=transport, artifact=artifact, backend=backend,
                     telemetry_root=telemetry_root, keep_root=str(keep_root))
    return execute(get_runtime(backend.runtime), ctx, telemetry=telemetry)
