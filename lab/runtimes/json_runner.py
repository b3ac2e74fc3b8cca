"""Runtimes whose travelling runner writes the lab's runner JSON (schema hwlab.runner/1).

Why a layer of its own: Paddle Inference's pi_runner, the ONNX Runtime runner and the browser
runner all speak the same document (docs/architecture.md "Runner JSON"), so reading it back,
validating it and turning the trials into a Measurement are written here once. A JSON runtime
only says which runner it pushes, which model files, and which runner arguments. With
`output_checks = True` its runner must accept `--reference-inputs F.npz` (-> `outputs_check`) and
`--eval-inputs F.npz` (-> `eval_check`), as pi_runner does; they ride on the last trial.
"""
from __future__ import annotations

import json
import shlex
import tempfile
import uuid
from pathlib import Path
from typing import Any

from lab.devices.inventory import device_python
from lab.core.errors import InvalidMeasurement, RunnerError, excerpt
from lab.results.opprofile import OpProfile, from_paddle_inference
from lab.core.records import Job, Measurement
from lab.transport.base import RunResult, Transport, remote_join
from lab.runtimes.checks import CheckOutputs
from lab.runtimes.base import (JobContext, PreparedJob, Runtime, TrialResult, ensure_results_dir,
                   median_or_none, push_model, push_runner)

RUNNER_SCHEMA = "hwlab.runner/1"


class JsonRunnerRuntime(Runtime):
    """A runtime driven by a Python runner that writes one runner JSON per trial."""

    runner_file: str = ""
    profiles_ops: bool = False  # the runner takes --profile-ops and writes `op_profile` (pi_runner)

    def model_files(self, ctx: JobContext) -> tuple[list[Path], str]:
        """The files to push (model first) and the sha256 the runner must report."""
        raise NotImplementedError  # pragma: no cover - contract

    def runner_args(self, ctx: JobContext, remote_files: list[str]) -> list[str]:
        """Runner arguments after `python runner.py` (model paths, threads, protocol ...)."""
        raise NotImplementedError  # pragma: no cover - contract

    def prepare(self, ctx: JobContext) -> PreparedJob:
        files, expect_sha = self.model_files(ctx)
        runner_remote = push_runner(ctx.transport, self.runner_file)
        remote = push_model(ctx.transport, ctx.artifact, files)
        ensure_results_dir(ctx)
        command = [device_python(ctx.device), runner_remote,
                   *self.runner_args(ctx, [remote[f.name] for f in files])]
        return PreparedJob(command=command, model_sha256=expect_sha,
                           extra={"check_args": self.push_checks(ctx)})

    def push_checks(self, ctx: JobContext) -> list[str]:
        """Push the reference / eval inputs; the runner arguments that run them after timing."""
        checks, args = ctx.checks, []
        if checks is None:
            return args
        check_dir = remote_join(ctx.transport.workdir, "checks", f"{ctx.artifact.id}-{ctx.artifact.sha256[:12]}")
        for flag, local in (("--reference-inputs", checks.reference_file),
                            ("--eval-inputs", checks.eval_file)):
            if local is not None:
                args += [flag, ctx.transport.push(Path(local), remote_join(check_dir, Path(local).name)).remote]
        return args

    def trial_command(self, ctx: JobContext, prepared: PreparedJob, trial: int, out_remote: str,
                      session: Any | None) -> list[str]:
        cmd = list(prepared.command) + ["--out", out_remote, "--seed", str(trial)]
        if trial == ctx.last_trial:
            cmd += prepared.extra.get("check_args", [])
        if session is not None and session.nvml and session.started:
            cmd += ["--pid-file", session.runner_pid_file]  # GPU memory of this runner, not all
        return cmd

    def run_trials(self, ctx: JobContext, prepared: PreparedJob, session: Any | None) -> list[TrialResult]:
        """`process: fork`: the whole job in one runner process (runner_core.run_job), so one
        command, one result file pulled and two telemetry marks; else one process per trial."""
        if ctx.job.protocol.process != "fork":
            return super().run_trials(ctx, prepared, session)
        p = ctx.job.protocol
        out_remote = remote_join(ctx.results_dir, f"{ctx.job.job_id}-job-{uuid.uuid4().hex[:8]}.jsonl")
        cmd = list(prepared.command) + ["--trials", str(p.trials), "--process", "fork", "--out", out_remote,
                                        "--seed", "0", *prepared.extra.get("check_args", [])]
        if session is not None and session.nvml and session.started:
            cmd += ["--pid-file", session.runner_pid_file]
        if session is not None:
            session.mark("trials-start")
        res = ctx.transport.run(cmd, timeout=p.timeout_s * p.trials)  # timeout_s is per trial
        if session is not None:
            session.mark("trials-end")
        docs = read_runner_docs(ctx.transport, out_remote, res, ctx.job, prepared.model_sha256, p.trials)
        trials = []
        for i, doc in enumerate(docs):
            doc["command"] = cmd + [f"# trial {i}"]
            if session is not None:
                session.add_run(doc, label=f"t{i}")
            trials.append(trial_from_doc(doc))
        return trials

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int,
                  session: Any | None) -> TrialResult:
        # a fresh name per attempt: a result left by an earlier, killed attempt is never read
        out_remote = remote_join(ctx.results_dir, f"{ctx.job.job_id}-t{trial}-{uuid.uuid4().hex[:8]}.json")
        cmd = self.trial_command(ctx, prepared, trial, out_remote, session)
        res = ctx.transport.run(cmd, timeout=ctx.job.protocol.timeout_s)
        doc = read_runner_doc(ctx.transport, out_remote, res, ctx.job, prepared.model_sha256)
        doc["command"] = cmd
        return trial_from_doc(doc)

    def measurement(self, ctx: JobContext, prepared: PreparedJob,
                    trials: list[TrialResult]) -> Measurement:
        m = measurement_from_docs(ctx.job, [t.raw for t in trials])
        m.notes.extend(prepared.notes)
        return m

    def check_outputs(self, ctx: JobContext, prepared: PreparedJob,
                      trials: list[TrialResult]) -> CheckOutputs | None:
        doc = trials[-1].raw if trials else None
        if not isinstance(doc, dict):
            return None
        oc, ev = doc.get("outputs_check") or {}, doc.get("eval_check") or {}
        if not oc and not ev:
            return None
        return CheckOutputs(outputs=oc.get("outputs"), seconds=oc.get("seconds"),
                            eval_argmax=ev.get("argmax"), eval_seconds=ev.get("seconds"))

    def profile(self, ctx: JobContext, prepared: PreparedJob) -> OpProfile:
        """One more runner process with --profile-ops: warm-up as the protocol says, then exactly
        `min_iters` profiled inferences (a fixed count: no CI target, no minimum time)."""
        if not self.profiles_ops:
            return super().profile(ctx, prepared)
        n = str(max(1, ctx.job.protocol.min_iters))
        out_remote = remote_join(ctx.results_dir, f"{ctx.job.job_id}-ops-{uuid.uuid4().hex[:8]}.json")
        cmd = list(prepared.command) + ["--profile-ops", "--min-iters", n, "--max-iters", n,
                                        "--min-seconds", "0", "--target-rel-ci", "1",
                                        "--out", out_remote, "--seed", "0"]
        res = ctx.transport.run(cmd, timeout=ctx.job.protocol.timeout_s)
        doc = read_runner_doc(ctx.transport, out_remote, res, ctx.job, prepared.model_sha256)
        device = (doc.get("config") or {}).get("device") or "cpu"
        return from_paddle_inference(doc.get("op_profile"), device)


def trial_from_doc(doc: dict[str, Any]) -> TrialResult:
    t, mem = doc["timings"], doc.get("memory") or {}
    return TrialResult(
        samples_ms=[float(x) for x in t["samples_ms"]], load_ms=t.get("load_ms"), first_ms=t.get("first_ms"),
        converged=bool(t.get("converged")), stop_reason=t.get("stop_reason"),
        peak_rss_mb=mem.get("peak_rss_mb"), gpu_mem_mb=mem.get("gpu_mem_mb"),
        command=" ".join(shlex.quote(str(a)) for a in doc.get("command", [])),
        started_at=doc.get("started_at"), finished_at=doc.get("finished_at"),
        telemetry_doc=doc, raw=doc)


def read_runner_doc(transport: Transport, out_remote: str, res: RunResult, job: Job,
                    expect_sha: str | None = None) -> dict[str, Any]:
    """The runner's JSON (pulled, else its last stdout line), checked; a failed job otherwise."""
    return read_runner_docs(transport, out_remote, res, job, expect_sha, 1)[0]


def read_runner_docs(transport: Transport, out_remote: str, res: RunResult, job: Job,
                     expect_sha: str | None, count: int) -> list[dict[str, Any]]:
    """The runner's `count` documents, one per line (pulled once, else the last stdout lines),
    each checked; a failed job otherwise (naming the trial that failed)."""
    text = _pull_text(transport, out_remote)
    if text is None:
        lines = [ln for ln in res.out.splitlines() if ln.strip().startswith("{")]
        text = "\n".join(lines[-count:]) if lines else None
    if text is None:
        raise RunnerError(f"job {job.job_id} on {job.device}: runner exited {res.rc} without a result: "
                          f"{excerpt(res.err or res.out)}")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    docs = [_checked_doc(ln, res, job, expect_sha, count > 1) for ln in lines]
    if len(docs) != count:
        raise RunnerError(f"job {job.job_id} on {job.device}: runner exited {res.rc} with {len(docs)} of "
                          f"{count} trial results: {excerpt(res.err or res.out)}")
    return docs


def _pull_text(transport: Transport, out_remote: str) -> str | None:
    text = None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "result.json"
        try:
            transport.pull(out_remote, local)
            text = local.read_text()
        except Exception:  # noqa: BLE001 - fall back to stdout; a missing file is judged below
            text = None
    return text


def _checked_doc(text: str, res: RunResult, job: Job, expect_sha: str | None, several: bool) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise RunnerError(f"job {job.job_id} on {job.device}: runner result is not JSON: "
                          f"{excerpt(text, 200)}") from None
    if not isinstance(doc, dict) or doc.get("schema") != RUNNER_SCHEMA:
        raise RunnerError(f"job {job.job_id} on {job.device}: unexpected runner schema "
                          f"{doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r}")
    if not doc.get("ok") or (res.rc != 0 and not several):
        trial = f" in trial {doc['trial']}" if several and "trial" in doc else ""
        raise RunnerError(f"job {job.job_id} on {job.device}: runner failed{trial} (exit {res.rc}): "
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
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x > 0 or x == float("inf")
           for x in samples):
        raise InvalidMeasurement(f"{where}: runner returned non-positive or non-numeric samples")
    for key in ("import_ms", "load_ms", "first_ms"):
        v = t.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0
                              or v == float("inf")):
            raise InvalidMeasurement(f"{where}: {key}={v!r} is not a valid duration")
    sha = (doc.get("model") or {}).get("sha256") if isinstance(doc.get("model"), dict) else None
    expect_sha = expect_sha or job.model_sha256
    if not sha:
        raise InvalidMeasurement(f"{where}: runner did not report the sha256 of the model it ran")
    if expect_sha and sha != expect_sha:
        raise InvalidMeasurement(f"{where}: the device ran a different model (sha256 {sha[:12]} != "
                                 f"{expect_sha[:12]})")


def measurement_from_docs(job: Job, docs: list[dict[str, Any]], tele: dict[str, Any] | None = None
                          ) -> Measurement:
    """The trials' runner documents -> one Measurement (stats over all trials' raw samples)."""
    from lab.results.host_busy import host_busy_figures
    from lab.results.sustained import summary as sustained_summary
    from lab.results.sustained import windows_from_doc
    from lab.results.stats import summarize
    from lab.runtimes.base import merge_telemetry
    trials = [[float(x) for x in d["timings"]["samples_ms"]] for d in docs]
    st = summarize(trials)
    rss = [(d.get("memory") or {}).get("peak_rss_mb") for d in docs]
    gpu = [(d.get("memory") or {}).get("gpu_mem_mb") for d in docs]
    m = Measurement(
        job_id=job.job_id, p50_ms=st.p50, ci_low_ms=st.ci_low, ci_high_ms=st.ci_high, p90_ms=st.p90,
        p99_ms=st.p99, mean_ms=st.mean, std_ms=st.std, min_ms=st.min, max_ms=st.max,
        load_ms=median_or_none(d["timings"].get("load_ms") for d in docs),
        import_ms=median_or_none(d["timings"].get("import_ms") for d in docs),
        first_ms=median_or_none(d["timings"].get("first_ms") for d in docs),
        peak_rss_mb=max((r for r in rss if r is not None), default=None),
        gpu_mem_mb=max((g for g in gpu if g is not None), default=None),
        n_samples=st.n, converged=all(bool(d["timings"].get("converged")) for d in docs),
        source="lab", samples=trials)
    m.provenance = {
        "runner": docs[0].get("runner"), "runner_version": docs[0].get("runner_version"),
        "model_sha256": (docs[0].get("model") or {}).get("sha256"),
        "commands": [" ".join(shlex.quote(str(a)) for a in d.get("command", [])) for d in docs],
        "env": docs[0].get("env"), "config": docs[0].get("config"), "protocol": docs[0].get("protocol"),
        "process": (docs[0].get("protocol") or {}).get("process"),
        "trials": [{"load_ms": d["timings"].get("load_ms"), "first_ms": d["timings"].get("first_ms"),
                    "import_ms": d["timings"].get("import_ms"),
                    "warmup_ms_total": d["timings"].get("warmup_ms_total"),
                    "steady_seconds": d["timings"].get("steady_seconds"),
                    "n": len(d["timings"]["samples_ms"]), "converged": d["timings"].get("converged"),
                    "stop_reason": d["timings"].get("stop_reason"), "started_at": d.get("started_at"),
                    "finished_at": d.get("finished_at")} for d in docs],
        "stats_method": st.method,
    }
    m.notes.extend(cpu_state_flags(docs))
    m.host_busy_share, m.busy_host, busy_notes = host_busy_figures(d.get("env") for d in docs)
    m.notes.extend(busy_notes)
    m.windows = [w for i, d in enumerate(docs) for w in windows_from_doc(d, i)]
    if m.windows:
        m.throttle_onset_s, m.sustained_ratio, sustained_notes = sustained_summary(
            m.windows, slowdown=job.protocol.throttle_slowdown)
        m.notes.extend(sustained_notes)
    for note in {(d.get("config") or {}).get("threads_note") for d in docs} - {None}:
        m.notes.append(note)  # e.g. a runtime build that cannot set its thread count
    for note in dict.fromkeys(n for d in docs for n in d.get("notes") or []):
        m.notes.append(note)  # e.g. process fork refused: the runner had threads before forking
    if not m.converged and not m.windows:
        m.notes.append("not converged: the target CI was not reached within max_seconds in "
                       f"{sum(1 for d in docs if not d['timings'].get('converged'))} of {len(docs)} trials")
    if tele is not None:
        merge_telemetry(m, tele)
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
