"""The runtime contract: what every runtime does for one job, and the job path written once.

Why: each runtime (Paddle Inference, Paddle Lite's benchmark_bin, serving, Paddle.js, ONNX
Runtime) differs only in what it pushes, how one trial is started and how its output parses.
The trial loop, the telemetry session around it, the telemetry merge, model push and input
shapes are the same for all of them and live here, once.

A runtime implements three steps:
- `prepare(ctx)`: push what the job needs (runner, model, libraries) and return a
  `PreparedJob` (the command and anything the trials need);
- `run_trial(ctx, prepared, trial)`: run one fresh process and return a typed `TrialResult`
  (`run_trials` calls it per trial; a runner that runs the whole job in one process, `process:
  fork`, overrides `run_trials` instead);
- `measurement(ctx, prepared, trials)`: turn the trials into a `Measurement`.
`execute()` calls them in that order inside a telemetry session. Output correctness (optional,
lab/runtimes/checks.py): a runtime with `output_checks = True` finds the reference / eval inputs
in `ctx.checks`, runs them after timing and returns them from `check_outputs`; `execute()`
compares them with the model's fp32 host reference and stores agree_* / accuracy_top1.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.devices.inventory import device_python
from lab.core.errors import ConfigError
from lab.results.opprofile import OpProfile
from lab.core.records import Backend, Device, InputSpec, Job, Measurement
from lab.core.runner_files import RUNNER_CORE, RUNNERS_DIR
from lab.transport.base import Transport, remote_join

# Measurement attributes that belong to the job itself, never copied from telemetry.
_NOT_FROM_TELEMETRY = ("job_id", "samples", "provenance", "notes", "windows")


@dataclass
class JobContext:
    """Everything one job's runtime needs, resolved once."""

    job: Job
    device: Device
    transport: Transport
    artifact: Any  # lab.models.artifact.ModelArtifact
    backend: Backend
    telemetry_root: str = ""  # prefixes /sys and /proc for the sampler (tests: a fake sysfs)
    keep_root: str = ""  # orchestrator dir for logs kept with the job (the store's dir; "" = results/)
    checks: Any = None  # checks.CheckInputs set by execute() for runtimes with output_checks

    @property
    def last_trial(self) -> int:
        return self.job.protocol.trials - 1

    @property
    def where(self) -> str:
        return f"job {self.job.job_id} on {self.job.device}"

    @property
    def results_dir(self) -> str:
        return remote_join(self.transport.workdir, "results")


@dataclass
class PreparedJob:
    """What `prepare` pushed and decided; `extra` carries runtime-specific state."""

    command: list[str] | str
    model_sha256: str | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialResult:
    """One fresh runner process: its steady samples and cold-start figures (ms), typed.

    `telemetry_doc` is what the telemetry session needs to place the steady window (the runner's
    own clock where it has one); `raw` is the runner's document or text, kept for provenance.
    """

    samples_ms: list[float]
    load_ms: float | None = None
    first_ms: float | None = None
    converged: bool | None = None
    stop_reason: str | None = None
    peak_rss_mb: float | None = None
    gpu_mem_mb: float | None = None
    command: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    telemetry_doc: dict[str, Any] = field(default_factory=dict)
    raw: Any = None


class Runtime:
    """Base class of the runtimes registered in `lab.runtimes.registry.RUNTIMES` by `Backend.runtime`."""

    name: str = ""
    nvml: bool | None = None  # None: the session decides (GPU backends); False: never NVML
    output_checks: bool = False  # True: runs ctx.checks after timing and implements check_outputs
    sensors: bool = True  # False: no device to sample (a simulated one); its power_note says why

    def prepare(self, ctx: JobContext) -> PreparedJob:  # pragma: no cover - contract
        raise NotImplementedError

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int,
                  session: Any | None) -> TrialResult:  # pragma: no cover - contract
        raise NotImplementedError

    def measurement(self, ctx: JobContext, prepared: PreparedJob,
                    trials: list[TrialResult]) -> Measurement:  # pragma: no cover - contract
        raise NotImplementedError

    def run_trials(self, ctx: JobContext, prepared: PreparedJob, session: Any | None) -> list[TrialResult]:
        """The protocol's trials, one `run_trial` (one fresh process) each, between telemetry marks.
        A runtime whose runner runs a whole job in one process (`process: fork`) overrides this."""
        trials: list[TrialResult] = []
        for trial in range(ctx.job.protocol.trials):
            if session is not None:
                session.mark(f"t{trial}-start")
            result = self.run_trial(ctx, prepared, trial, session)
            if session is not None:
                session.mark(f"t{trial}-end")
                session.add_run(result.telemetry_doc, label=f"t{trial}")
            trials.append(result)
        return trials

    def check_outputs(self, ctx: JobContext, prepared: PreparedJob,
                      trials: list[TrialResult]) -> Any:  # checks.CheckOutputs | None
        """The reference (and eval) set's outputs, run after timing (runtimes with
        `output_checks`); None: nothing came back (the job's notes say so)."""
        return None

    def profile(self, ctx: JobContext, prepared: PreparedJob) -> OpProfile:
        """One extra run with the runtime's per-operator profiler (job option `profile: ops`),
        called after the timed trials and outside the telemetry session. A runtime that cannot
        profile keeps this default: no rows, and the reason."""
        return OpProfile.unavailable(f"runtime {self.name or type(self).__name__} cannot profile "
                                     "per operator")


# ------------------------------------------------------------------------------ the job path
def execute(runtime: Runtime, ctx: JobContext, *, telemetry: bool = True) -> Measurement:
    """Prepare, run the protocol's trials inside one telemetry session, merge, check, return."""
    from lab.runtimes import checks
    phases = Phases()  # where a job's wall time goes outside the model (issue 23; the bench reads it)
    ctx.checks = checks.plan(runtime, ctx)
    prepared = runtime.prepare(ctx)
    phases.lap("prepare")
    session = open_session(ctx, runtime) if telemetry and runtime.sensors else None
    phases.lap("telemetry_start")
    trials: list[TrialResult] = []
    started = time.monotonic()
    try:
        trials = runtime.run_trials(ctx, prepared, session)
    finally:
        seconds = time.monotonic() - started
        phases.lap("trials")
        tele = close_session(session, ctx.transport)
        phases.lap("telemetry_stop")
    m = runtime.measurement(ctx, prepared, trials)
    merge_telemetry(m, tele)
    m.provenance["trials_seconds"] = round(seconds, 3)  # the job's device time (checks' share)
    checks.apply(m, ctx, runtime, ctx.checks,
                 runtime.check_outputs(ctx, prepared, trials) if ctx.checks is not None else None)
    phases.lap("measurement")
    if ctx.job.option("profile") == "ops":
        m.op_profile = profile_ops(runtime, ctx, prepared, m)
        phases.lap("profile")
    m.provenance["phases_s"] = phases.seconds
    return m


class Phases:
    """Consecutive laps of the job path, in seconds (monotonic clock)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.seconds[name] = round(now - self._last, 4)
        self._last = now


def profile_ops(runtime: Runtime, ctx: JobContext, prepared: PreparedJob, m: Measurement) -> OpProfile:
    """The extra profiled run: its failure or absence is a note on the job, never a failed job
    (the timed figures stand on their own)."""
    from lab.core.errors import LabError
    try:
        prof = runtime.profile(ctx, prepared)
    except LabError as exc:
        prof = OpProfile.unavailable(f"the profiled run failed: {exc}")
    if prof.available:
        m.notes.append(f"op profile: {len(prof.rows)} op type(s) over {prof.iterations or '?'} "
                       f"inference(s) of an extra run ({prof.source}); the timed trials ran without it")
        m.notes.extend(prof.notes)
    else:
        m.notes.append(f"op profile unavailable: {prof.reason}")
    return prof


def open_session(ctx: JobContext, runtime: Runtime):
    """Start the on-device sampler around the job (power, thermal, clocks; docs/telemetry.md)."""
    from lab.telemetry.session import TelemetrySession
    kwargs: dict[str, Any] = {"job": ctx.job, "python": device_python(ctx.device), "root": ctx.telemetry_root}
    if runtime.nvml is not None:
        kwargs["nvml"] = runtime.nvml
    session = TelemetrySession(**kwargs)
    session.start(ctx.transport, ctx.transport.workdir, ctx.job.protocol.sample_hz)
    return session


def close_session(session, transport: Transport) -> dict[str, Any] | None:
    if session is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        result = session.stop_and_collect(transport, Path(tmp))
    return result.measurement_fields()


def merge_telemetry(m: Measurement, tele: dict[str, Any] | None) -> None:
    """Telemetry fills what the runtime did not measure; it never replaces a runtime's own figure
    (a runner's per-process GPU memory beats NVML's, which may sum every process)."""
    if tele is None:
        m.power_note = m.power_note or "power unavailable: telemetry disabled for this run"
        return
    for key, value in tele.items():
        if key.startswith("_") or key in _NOT_FROM_TELEMETRY or not hasattr(m, key):
            continue
        if getattr(m, key) is None:
            setattr(m, key, value)
    if m.power_w is None and not m.power_note:
        m.power_note = "power unavailable: no reason recorded by telemetry"
    if m.windows and tele.get("_per_window"):
        from lab.results.sustained import merge_window_telemetry
        m.windows = merge_window_telemetry(m.windows, tele["_per_window"])
    m.provenance["telemetry"] = tele.get("_detail")


# --------------------------------------------------------------------------- shared helpers
def push_runner(transport: Transport, filename: str) -> str:
    """Push a travelling runner and its companion runner_core.py (the protocol code the runners
    share) into one remote directory, both hash-cached by the transport; returns the runner's path."""
    remote_dir = remote_join(transport.workdir, "runners")
    transport.push(RUNNERS_DIR / RUNNER_CORE, remote_join(remote_dir, RUNNER_CORE))
    return transport.push(RUNNERS_DIR / filename, remote_join(remote_dir, filename)).remote


def push_model(transport: Transport, artifact, files: list[Path]) -> dict[str, str]:
    """Push model files into a per-content directory; returns local name -> remote path."""
    remote_dir = remote_join(transport.workdir, "models", f"{artifact.id}-{artifact.sha256[:12]}")
    out = {}
    for f in files:
        res = transport.push(Path(f), remote_join(remote_dir, Path(f).name))
        out[Path(f).name] = res.remote
    return out


def ensure_results_dir(ctx: JobContext) -> str:
    ctx.transport.run(["mkdir", "-p", ctx.results_dir], timeout=30)
    return ctx.results_dir


def input_shapes(ctx: JobContext, *, static: bool = False,
                 dtypes: tuple[str, ...] | None = None) -> list[tuple[InputSpec, list[int]]]:
    """Each model input with its run shape, the batch dimension set to the job's batch.

    `static`: the runtime needs concrete dims (a dynamic dim is bad input, naming the fix).
    `dtypes`: the dtypes the runtime can feed (others are refused with the reason).
    """
    job, artifact = ctx.job, ctx.artifact
    out = []
    for spec in artifact.inputs:
        shape = [int(d) for d in (spec.run_shape or spec.shape)]
        if shape and job.batch:
            shape[0] = job.batch
        if static and any(d < 1 for d in shape):
            raise ConfigError(f"job {job.job_id}: input {spec.name!r} of {artifact.id} has a dynamic "
                              f"dim {shape}; {ctx.backend.runtime} needs a concrete run shape",
                              fix="set run_shape for the input in models/zoo.yaml")
        if dtypes is not None and spec.dtype not in dtypes:
            raise ConfigError(f"job {job.job_id}: {ctx.backend.runtime} feeds inputs as "
                              f"{'/'.join(dtypes)}; input {spec.name!r} is {spec.dtype}",
                              fix="use the paddle-inference backend")
        out.append((spec, shape))
    if static and not out:
        raise ConfigError(f"job {job.job_id}: model {artifact.id} declares no inputs")
    return out


def median_or_none(values) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None
