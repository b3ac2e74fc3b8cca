"""Run one job on one device through its transport and turn what comes back into a Measurement.

Why here and not in the scheduler: the same code runs under the local thread engine and under Ray,
and it is the only place that knows how a runner is pushed, started and read back.
Each trial is a fresh runner process, so load and first inference are true cold starts.
"""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .backends import BACKENDS
from .errors import ConfigError, InvalidMeasurement, RunnerError, excerpt
from .records import Device, Job, Measurement
from .transport.base import Transport, remote_join

RUNNERS_DIR = Path(__file__).parent / "runners"
RUNNER_SCHEMA = "hwlab.runner/1"


def device_python(device: Device) -> str:
    """The interpreter that runs Python runners on the device (the lab's own one for `local`)."""
    if device.transport == "local" and device.python in ("python3", "python", "", None):
        return sys.executable
    return device.python


def push_model(transport: Transport, artifact, files: list[Path]) -> dict[str, str]:
    """Push model files into a per-content directory; returns local name -> remote path."""
    remote_dir = remote_join(transport.workdir, "models", f"{artifact.id}-{artifact.sha256[:12]}")
    out = {}
    for f in files:
        res = transport.push(Path(f), remote_join(remote_dir, Path(f).name))
        out[Path(f).name] = res.remote
    return out


def execute_job(job: Job, device: Device, transport: Transport, *, models_root: str | Path = "models",
                telemetry: bool = True) -> Measurement:
    backend = BACKENDS[job.backend]
    from .models import load_artifact
    artifact = load_artifact(job.model, root=str(models_root))
    if artifact.sha256 != job.model_sha256:
        raise ConfigError(f"job {job.job_id}: model {job.model!r} changed since the campaign was planned",
                          fix="plan again (lab run without --resume re-plans with the new hash)")
    if backend.runtime == "paddle-lite":
        from .lite_exec import run_lite_job
        return run_lite_job(job, device, transport, artifact, telemetry=telemetry)
    return _run_paddle_inference(job, device, transport, artifact, telemetry=telemetry)


def _run_paddle_inference(job: Job, device: Device, transport: Transport, artifact,
                          *, telemetry: bool) -> Measurement:
    fmt = job.option("model_format", artifact.model_format)
    if fmt == "json" and artifact.json_path:
        files, expect_sha = [Path(artifact.json_path), Path(artifact.pdiparams_path)], artifact.sha256
    elif fmt == "pdmodel" and artifact.pdmodel_path:
        params = artifact.legacy_pdiparams_path or artifact.pdiparams_path
        files = [Path(artifact.pdmodel_path), Path(params)]
        expect_sha = artifact.legacy_sha256 or artifact.sha256
    else:
        raise ConfigError(f"job {job.job_id}: model {job.model!r} has no {fmt!r} form",
                          fix="use model_format json or pdmodel as built (see `lab models show`)")
    runner_remote = transport.push(RUNNERS_DIR / "pi_runner.py",
                                   remote_join(transport.workdir, "runners", "pi_runner.py")).remote
    remote = push_model(transport, artifact, files)
    model_remote, params_remote = remote[files[0].name], remote[files[1].name]
    results_dir = remote_join(transport.workdir, "results")
    transport.run(["mkdir", "-p", results_dir], timeout=30)
    p = job.protocol
    base_cmd = [device_python(device), runner_remote, "--model-file", model_remote,
                "--params-file", params_remote, "--threads", str(job.threads),
                "--onednn", "on" if job.option("onednn", True) else "off",
                "--device", "gpu" if backend_is_gpu(job) else "cpu", "--precision", job.precision,
                "--warmup", str(p.warmup), "--warmup-seconds", str(p.warmup_seconds),
                "--min-iters", str(p.min_iters), "--min-seconds", str(p.min_seconds),
                "--max-seconds", str(p.max_seconds), "--target-rel-ci", str(p.target_rel_ci)]
    if job.backend == "paddle-inference-trt":
        base_cmd.append("--trt")
    for spec in artifact.inputs:
        shape = list(spec.run_shape or spec.shape)
        if shape and job.batch:
            shape[0] = job.batch
        base_cmd += ["--input", f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"]

    session = _telemetry_session(transport, job, device) if telemetry else None
    docs: list[dict[str, Any]] = []
    try:
        for trial in range(p.trials):
            # a fresh name per attempt: a result left by an earlier, killed attempt is never read
            out_remote = remote_join(results_dir, f"{job.job_id}-t{trial}-{uuid.uuid4().hex[:8]}.json")
            cmd = base_cmd + ["--out", out_remote, "--seed", str(trial)]
            if session is not None and getattr(session, "nvml", False) and session.started:
                cmd += ["--pid-file", session.runner_pid_file]  # GPU memory of this runner, not all
            if session is not None:
                session.mark(f"t{trial}-start")
            res = transport.run(cmd, timeout=p.timeout_s)
            if session is not None:
                session.mark(f"t{trial}-end")
            doc = _read_runner_doc(transport, out_remote, res, job, expect_sha)
            doc["command"] = cmd
            if session is not None:
                session.add_run(doc, label=f"t{trial}")
            docs.append(doc)
    finally:
        tele = _stop_telemetry(session, transport, job)
    return measurement_from_docs(job, docs, tele)


def backend_is_gpu(job: Job) -> bool:
    return BACKENDS[job.backend].processor == "gpu"


def _read_runner_doc(transport: Transport, out_remote: str, res, job: Job,
                     expect_sha: str | None = None) -> dict[str, Any]:
    text = None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "result.json"
        try:
            transport.pull(out_remote, local)
            text = local.read_text()
        except Exception:  # noqa: BLE001 - fall back to stdout; a missing file is judged below
            text = None
    if text is None:
        lines = [ln for ln in res.out.splitlines() if ln.strip().startswith("{")]
        text = lines[-1] if lines else None
    if text is None:
        raise RunnerError(f"job {job.job_id} on {job.device}: runner exited {res.rc} without a result: "
                          f"{excerpt(res.err or res.out)}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise RunnerError(f"job {job.job_id} on {job.device}: runner result is not JSON: "
                          f"{excerpt(text, 200)}") from None
    if not isinstance(doc, dict) or doc.get("schema") != RUNNER_SCHEMA:
        raise RunnerError(f"job {job.job_id} on {job.device}: unexpected runner schema "
                          f"{doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r}")
    if not doc.get("ok") or res.rc != 0:
        raise RunnerError(f"job {job.job_id} on {job.device}: runner failed (exit {res.rc}): "
                          f"{doc.get('error') or excerpt(res.err)}")
    validate_runner_doc(doc, job, expect_sha)
    return doc


def validate_runner_doc(doc: dict[str, Any], job: Job, expect_sha: str | None = None) -> None:
    """Reject results that parsed but cannot be true (negative or missing times, no samples)."""
    where = f"job {job.job_id} on {job.device}"
    t = doc.get("timings")
    if not isinstance(t, dict):
        raise InvalidMeasurement(f"{where}: runner result has no timings object")
    samples = t.get("samples_ms")
    if not isinstance(samples, list) or not samples:
        raise InvalidMeasurement(f"{where}: runner returned no steady-state samples")
    if any(not isinstance(x, (int, float)) or x <= 0 or x != x for x in samples):
        raise InvalidMeasurement(f"{where}: runner returned non-positive or non-numeric samples")
    for key in ("load_ms", "first_ms"):
        v = t.get(key)
        if v is not None and (not isinstance(v, (int, float)) or v < 0):
            raise InvalidMeasurement(f"{where}: {key}={v!r} is not a valid duration")
    sha = (doc.get("model") or {}).get("sha256") if isinstance(doc.get("model"), dict) else None
    expect_sha = expect_sha or job.model_sha256
    if not sha:
        raise InvalidMeasurement(f"{where}: runner did not report the sha256 of the model it ran")
    if expect_sha and sha != expect_sha:
        raise InvalidMeasurement(f"{where}: the device ran a different model (sha256 {sha[:12]} != "
                                 f"{expect_sha[:12]})")


def _median(values: list[float]) -> float | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def measurement_from_docs(job: Job, docs: list[dict[str, Any]], tele: dict[str, Any] | None) -> Measurement:
    from .stats import summarize
    trials = [[float(x) for x in d["timings"]["samples_ms"]] for d in docs]
    st = summarize(trials)
    loads = [d["timings"].get("load_ms") for d in docs]
    firsts = [d["timings"].get("first_ms") for d in docs]
    rss = [(d.get("memory") or {}).get("peak_rss_mb") for d in docs]
    gpu = [(d.get("memory") or {}).get("gpu_mem_mb") for d in docs]
    m = Measurement(
        job_id=job.job_id, p50_ms=st.p50, ci_low_ms=st.ci_low, ci_high_ms=st.ci_high, p90_ms=st.p90,
        p99_ms=st.p99, mean_ms=st.mean, std_ms=st.std, min_ms=st.min, max_ms=st.max,
        load_ms=_median(loads), first_ms=_median(firsts),
        peak_rss_mb=max((r for r in rss if r is not None), default=None),
        gpu_mem_mb=max((g for g in gpu if g is not None), default=None),
        n_samples=st.n, converged=all(bool(d["timings"].get("converged")) for d in docs),
        source="lab", samples=trials)
    m.provenance = {
        "runner": docs[0].get("runner"), "runner_version": docs[0].get("runner_version"),
        "model_sha256": (docs[0].get("model") or {}).get("sha256"),
        "commands": [" ".join(shlex.quote(str(a)) for a in d.get("command", [])) for d in docs],
        "env": docs[0].get("env"), "config": docs[0].get("config"), "protocol": docs[0].get("protocol"),
        "trials": [{"load_ms": d["timings"].get("load_ms"), "first_ms": d["timings"].get("first_ms"),
                    "n": len(d["timings"]["samples_ms"]), "converged": d["timings"].get("converged"),
                    "stop_reason": d["timings"].get("stop_reason"), "started_at": d.get("started_at"),
                    "finished_at": d.get("finished_at")} for d in docs],
        "stats_method": st.method,
    }
    m.notes.extend(cpu_state_flags(docs))
    if not m.converged:
        m.notes.append("not converged: the target CI was not reached within max_seconds in "
                       f"{sum(1 for d in docs if not d['timings'].get('converged'))} of {len(docs)} trials")
    if tele:
        for key, value in tele.items():
            if hasattr(m, key) and key not in ("job_id", "samples", "provenance", "notes"):
                if key == "gpu_mem_mb" and m.gpu_mem_mb is not None:
                    continue  # the runner's own per-process figure beats NVML's (may be all processes)
                if value is not None or getattr(m, key) is None:
                    setattr(m, key, value)
        m.provenance["telemetry"] = tele.get("_detail")
    return m


def cpu_state_flags(docs: list[dict[str, Any]]) -> list[str]:
    """Validity notes from the runner's env: a CPU governor that scales, a frequency that moved."""
    notes: list[str] = []
    governors = {g for d in docs for g in [(d.get("env") or {}).get("governor")] if g}
    scaling = sorted(g for g in governors if g not in ("performance", "userspace"))
    if scaling:
        notes.append(f"CPU governor {', '.join(scaling)}: the clock may scale during the measurement "
                     "(pin it with the performance governor for stable figures)")
    for i, d in enumerate(docs):
        env = d.get("env") or {}
        start, end = env.get("freq_khz_start") or {}, env.get("freq_khz_end") or {}
        moved = [cpu for cpu in start if start.get(cpu) and end.get(cpu)
                 and abs(end[cpu] - start[cpu]) > 0.05 * start[cpu]]
        if moved:
            notes.append(f"trial {i}: CPU frequency moved >5% between start and end on {', '.join(moved[:4])}"
                         f"{' ...' if len(moved) > 4 else ''}")
    return notes


def _telemetry_session(transport: Transport, job: Job, device: Device):
    """Start the on-device sampler around the job (power, thermal, clocks; see lab/telemetry.py)."""
    from .telemetry import TelemetrySession
    session = TelemetrySession(job=job, python=device_python(device))
    session.start(transport, transport.workdir, job.protocol.sample_hz)
    return session


def _stop_telemetry(session, transport: Transport, job: Job) -> dict[str, Any] | None:
    if session is None:
        return {"power_note": "telemetry disabled for this run", "power_source": None}
    with tempfile.TemporaryDirectory() as tmp:
        result = session.stop_and_collect(transport, Path(tmp))
    return result.measurement_fields() if hasattr(result, "measurement_fields") else dict(result)
