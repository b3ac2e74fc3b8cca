"""Serving (backend serving-http): an HTTP endpoint under MLPerf LoadGen, QPS against tail latency.

Why a runtime of its own: the figure is not one process's batch-1 latency but what a server holds
under many users (docs/serving.md). One job = one endpoint and one LoadGen scenario (or a sweep):
- the lab starts the endpoint on the device: `serving_runner.py` and the model are pushed, the
  runner is started in the background with a bounded lifetime (--max-seconds from the job's
  timeout), its ready file read, and it is stopped at the end (SIGTERM, then SIGKILL) on success,
  failure and abort alike; or the campaign names `endpoint: URL` for a server the user runs
  (KServe v2 or Paddle Serving pipeline format) and the lab only sends load.
- LoadGen runs on the orchestrator. On `local` the endpoint is 127.0.0.1; over SSH the runner
  binds the device's loopback and a local port is forwarded through the SSH connection
  (lab.transport.forward: paramiko direct-tcpip), so nothing is opened on the device's network.
- LoadGen's summary and detail logs are kept under `<store dir>/loadgen/<job id>/` (paths in the
  provenance), next to the runner's log.
- Before the load (outside the timed part), the reference input set (lab.models.agreement) goes
  through the endpoint once; `check_outputs` returns those outputs and `base.execute` compares them
  with the host's fp32 reference (lab/runtimes/checks.py), storing agree_* on the row like every
  runtime. The same samples are LoadGen's sample set.
One LoadGen run (or sweep) per job: LoadGen's min duration, min query count and early stopping
stand in for repeated trials, so trials after the first are not run.
"""
from __future__ import annotations

import functools
import math
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.devices.inventory import device_python
from lab.core.errors import ConfigError, DeviceError, RunnerError
from lab.core.records import Job, Measurement, MeasurementProtocol
from lab.runtimes.base import JobContext, PreparedJob, Runtime, TrialResult, push_model, push_runner
from lab.runtimes.checks import CheckOutputs
from lab.runtimes.defaults import ONEDNN, onednn_flag

RUNNER_FILE = "serving_runner.py"
SCENARIOS = {"singlestream": "SingleStream", "server": "Server", "offline": "Offline", "sweep": "sweep"}
# The sanity bound (docs/serving.md): the max QPS a sweep reports can exceed what the instances
# could serve at batch-1 latency only through batching; otherwise by at most this margin.
SANITY_MARGIN = 0.25
SWEEP_REL_TOL = 0.08    # bisection stops when the bracket is within 8 % ...
SWEEP_MAX_POINTS = 7    # ... or after this many Server runs


# options that configure the lab's own endpoint: meaningless with `endpoint:` (a server the user
# runs). `onednn` too, but a campaign may set it for its paddle-inference jobs: a serving job with
# `endpoint:` drops it instead (plan_options)
OWN_ENDPOINT_OPTIONS = ("instances", "max_batch", "max_queue_delay_ms", "port")


@dataclass(frozen=True)
class ServingOptions:
    """The job's serving options (campaign `options:`), with their defaults. The default scenario
    is `sweep`: what a user wants from a serving campaign is the max QPS under a bound."""

    scenario: str = "sweep"
    target_qps: float | None = None
    latency_bound_ms: float = 100.0
    percentile: float = 0.99
    instances: int = 1
    max_batch: int = 1
    max_queue_delay_ms: float = 0.0
    endpoint: str | None = None
    endpoint_format: str = "v2"
    port: int = 0

    @classmethod
    def from_job(cls, job: Job) -> "ServingOptions":
        return cls.from_options(job.options, f"job {job.job_id}: ")

    @classmethod
    def from_options(cls, options, where: str = "", path: str | None = None) -> ServingOptions:
        """Checked: a missing or impossible combination is a ConfigError (one line: where, the
        option, the fix). Planning calls this with the campaign file as `path`, so nothing runs."""
        given = dict(options)
        o = cls(**{k: v for k, v in given.items() if k in cls.__dataclass_fields__})

        def bad(msg: str, fix: str):
            raise ConfigError(where + msg, path=path, fix=fix)

        if o.scenario not in SCENARIOS:
            bad(f"unknown scenario {o.scenario!r}", "use " + ", ".join(SCENARIOS))
        if o.scenario == "server" and not o.target_qps:
            bad("option 'scenario: server' needs option 'target_qps' (the Poisson rate)",
                "add options: {target_qps: [N]}, or drop scenario: the default sweep finds the max QPS")
        if o.endpoint:
            own = [k for k in OWN_ENDPOINT_OPTIONS if k in given]
            if own:
                bad(f"option {own[0]!r} configures the lab's own endpoint, not {o.endpoint}",
                    f"drop {own[0]!r}, or drop 'endpoint' to measure the lab's endpoint")
        elif o.endpoint_format != "v2":
            bad(f"option 'endpoint_format: {o.endpoint_format}' needs option 'endpoint' (the lab's "
                "own endpoint speaks KServe v2)", "add endpoint: [http://host:port], or drop endpoint_format")
        if o.max_queue_delay_ms and o.max_batch <= 1:
            bad("option 'max_queue_delay_ms' waits for a batch, but 'max_batch' is 1 (nothing is batched)",
                "set max_batch: [N > 1] for dynamic batching, or drop max_queue_delay_ms")
        return o

    @property
    def loadgen_scenario(self) -> str:
        return SCENARIOS[self.scenario]


@functools.lru_cache(maxsize=1024)  # a plan of many jobs repeats few option combinations
def plan_options(options: tuple[tuple[str, Any], ...], path: str | None = None,
                 protocol: MeasurementProtocol | None = None) -> tuple[tuple[str, Any], ...]:
    """A serving job's options as planned: checked now (`ServingOptions.from_options`, and the
    protocol's timeout against the LoadGen runs: exit 2 before anything runs), and with the
    defaults that decide what is measured written in (the scenario; oneDNN for the lab's own
    endpoint), so a changed default makes a new job id instead of reading a stored row of another
    measurement as this one."""
    o = ServingOptions.from_options(options, path=path)
    if protocol is not None and not o.endpoint:
        runs, per_run = loadgen_runs(o.scenario)[1], _run_seconds(protocol)[1]
        if o.scenario == "server":
            per_run = _server_seconds(per_run, o.percentile, o.target_qps)
        need = runs * (per_run + RUN_ALLOWANCE_S)
        if protocol.timeout_s < need:
            raise ConfigError(f"protocol timeout_s ({protocol.timeout_s:g} s) is the lab endpoint's lifetime, "
                              f"too short for the {runs} LoadGen run(s) of up to {per_run:g} s that "
                              f"scenario {o.scenario} can make", path=path,
                              fix=f"set timeout_s to at least {math.ceil(need)}, or lower max_seconds")
    given = dict(options)
    given.setdefault("scenario", o.scenario)
    if o.endpoint:
        given.pop("onednn", None)
    else:
        given.setdefault("onednn", ONEDNN)
    return tuple(sorted(given.items()))


HOST_MODULES = ("mlperf_loadgen",)  # LoadGen runs on the lab host
ENDPOINT_MODULES = ("starlette", "uvicorn")  # the runner's


def unavailable_reason(device) -> str | None:
    """Why serving cannot run from this lab host on `device`, as far as planning can tell cheaply:
    LoadGen here, and the endpoint's web stack where the device is this interpreter."""
    import sys
    from lab.core import optional
    need = HOST_MODULES + (ENDPOINT_MODULES if device.transport == "local" and
                           device_python(device) == sys.executable else ())
    missing = [m for m in need if optional.missing(m)]
    if missing:
        return (f"serving-http needs {', '.join(optional.PACKAGES[m][0] for m in missing)} in the lab's "
                f"Python: {optional.install_command(*missing)}")
    return None


def loadgen_runs(scenario: str) -> tuple[int, int]:
    """(fewest, most) LoadGen runs one job makes: one for a single scenario; a sweep's SingleStream
    and Offline, then its Server runs (lab.serving.sweep: at least two, at most SWEEP_MAX_POINTS)."""
    return (1, 1) if scenario != "sweep" else (2 + 2, 2 + SWEEP_MAX_POINTS)


RUN_ALLOWANCE_S = 3.0  # per LoadGen run: the probe request, LoadGen's start and its log files


def time_bounds(job: Job, start_allowance_s: float) -> tuple[float, float]:
    """(low, high) seconds of one serving job, from every LoadGen run its scenario can make.

    low: the fewest runs at LoadGen's min duration, plus the endpoint's start. high: a single
    scenario's run at its max duration (a Server run at a low rate is stretched to reach LoadGen's
    min query count: `_server_seconds`); a sweep's Server rates are only found as it runs, and a
    low one stretches the same way, so its bound is the lab endpoint's lifetime (`_lifetime_s`:
    the endpoint stops itself then, so no job outlives it; planning checks that the unstretched
    runs fit in it). For a user's `endpoint:` nothing is stopped: there it is an estimate."""
    o = ServingOptions.from_options(job.options)
    min_s, max_s = _run_seconds(job.protocol)
    low = loadgen_runs(o.scenario)[0] * min_s + start_allowance_s
    lifetime = _lifetime_s(job.protocol) + start_allowance_s
    if o.scenario == "sweep":
        return low, lifetime
    run = _server_seconds(max_s, o.percentile, o.target_qps) if o.scenario == "server" else max_s
    return low, min(lifetime, run + RUN_ALLOWANCE_S + start_allowance_s)


def keep_dir(ctx: JobContext) -> Path:
    """Where this job's LoadGen logs are kept on the orchestrator (next to the store)."""
    return Path(ctx.keep_root or "results") / "loadgen" / ctx.job.job_id


class Serving(Runtime):
    name = "serving"
    output_checks = True  # the reference pass goes through the endpoint before the load

    def prepare(self, ctx: JobContext) -> PreparedJob:
        opts = ServingOptions.from_job(ctx.job)
        if opts.endpoint:
            return PreparedJob(command=f"(user endpoint) {opts.endpoint}", extra={"opts": opts})
        files, sha = _model_files(ctx)
        runner = push_runner(ctx.transport, RUNNER_FILE)
        remote = push_model(ctx.transport, ctx.artifact, files)
        return PreparedJob(command=f"{RUNNER_FILE} on {ctx.job.device}", model_sha256=sha,
                           extra={"opts": opts, "runner": runner, "files": [remote[f.name] for f in files]})

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int, session: Any | None) -> TrialResult:
        if trial > 0:  # one LoadGen run per job (see the module doc)
            return TrialResult(samples_ms=[], raw=None, stop_reason="not run: one LoadGen run per job")
        opts: ServingOptions = prepared.extra["opts"]
        out = keep_dir(ctx)
        if out.exists():
            shutil.rmtree(out)  # an earlier attempt's logs are never read as this one's
        out.mkdir(parents=True)
        server = forward = None
        killed = False
        try:
            if opts.endpoint:
                url, via = opts.endpoint, "user endpoint"
            else:
                server = _start_server(ctx, prepared, opts)
                forward = ctx.transport.forward(server.ready.port)
                url, via = f"http://127.0.0.1:{forward.local_port}", forward.via
            doc = _drive(ctx, opts, url, server, out)
            doc["endpoint"] = {"url": opts.endpoint or f"device 127.0.0.1:{server.ready.port}", "via": via,
                               "format": opts.endpoint_format,
                               "ready": server.ready.raw if server is not None else None}
        except RunnerError as exc:
            if server is not None and "last log lines" not in str(exc):
                raise type(exc)(f"{exc}\nserving runner's last log lines:\n{server.tail()}") from exc
            raise
        finally:
            if forward is not None:
                forward.close()
            if server is not None:
                killed = server.stop()
                _keep_server_log(ctx, server, out)
        if server is not None:
            doc["endpoint"]["stopped"] = "SIGKILL after the grace period" if killed else "SIGTERM"
        return TrialResult(samples_ms=[], command=prepared.command if isinstance(prepared.command, str) else "",
                           raw=doc, load_ms=(server.ready.load_s * 1000.0 if server is not None else None))

    def measurement(self, ctx: JobContext, prepared: PreparedJob, trials: list[TrialResult]) -> Measurement:
        doc = trials[0].raw
        opts: ServingOptions = prepared.extra["opts"]
        res = doc["result"]
        m = Measurement(job_id=ctx.job.job_id, p50_ms=res["p50_ms"], p90_ms=res["p90_ms"], p99_ms=res["p99_ms"],
                        mean_ms=res["mean_ms"], max_ms=res["max_ms"], load_ms=trials[0].load_ms,
                        scenario=doc["scenario"], qps=doc["qps"],
                        latency_bound_ms=opts.latency_bound_ms if opts.scenario in ("server", "sweep") else None,
                        valid=doc["valid"], instances=None if opts.endpoint else opts.instances,
                        max_batch=None if opts.endpoint else opts.max_batch, n_samples=res["queries"],
                        converged=doc.get("converged", res["valid"]), source="lab", **_split_fields(res))
        served = {k: v for k, v in doc.items() if k != "outputs_check"}  # compared by checks.apply
        m.provenance = {"serving": served, "model_sha256": prepared.model_sha256, "runner": RUNNER_FILE,
                        "loadgen_dir": str(keep_dir(ctx))}
        m.notes.extend(doc.get("notes", []))
        m.notes.append("serving: one LoadGen run per job (its min duration, min query count and early "
                       "stopping stand in for trials)")
        return m

    def check_outputs(self, ctx: JobContext, prepared: PreparedJob,
                      trials: list[TrialResult]) -> CheckOutputs | None:
        """The reference pass the LoadGen trial sent through the endpoint before its load."""
        oc = (trials[0].raw or {}).get("outputs_check") if trials else None
        if not oc:
            return None
        return CheckOutputs(outputs=oc["outputs"], seconds=oc["seconds"])


# ------------------------------------------------------------------------------------ helpers
def _split_fields(result: dict[str, Any]) -> dict[str, float | None]:
    """The row's endpoint_* fields from its LoadGen run's split (lab.serving.stats); None without."""
    sp = result.get("split") or {}
    return {"endpoint_queue_ms": sp.get("queue_ms"), "endpoint_decode_ms": sp.get("decode_ms"),
            "endpoint_model_ms": sp.get("model_ms"), "endpoint_encode_ms": sp.get("encode_ms"),
            "endpoint_server_ms": sp.get("server_ms"), "endpoint_share": sp.get("endpoint_share")}


def _model_files(ctx: JobContext) -> tuple[list[Path], str]:
    art = ctx.artifact
    if art.json_path:
        return [Path(art.json_path), Path(art.pdiparams_path)], art.sha256
    if art.pdmodel_path:
        return [Path(art.pdmodel_path), Path(art.legacy_pdiparams_path or art.pdiparams_path)], \
            art.legacy_sha256 or art.sha256
    raise ConfigError(f"job {ctx.job.job_id}: model {ctx.job.model!r} has no Paddle Inference form to serve")


def _lifetime_s(protocol: MeasurementProtocol) -> float:
    """The server's --max-seconds: the job's timeout (it stops by itself if the lab dies)."""
    return float(protocol.timeout_s) + 30.0


def _start_server(ctx: JobContext, prepared: PreparedJob, opts: ServingOptions):
    from lab.serving.endpoint import DeviceServer, ServerSpec
    files = prepared.extra["files"]
    inputs = tuple((i.name, tuple(int(d) for d in i.shape), i.dtype) for i in ctx.artifact.inputs)
    spec = ServerSpec(name=ctx.job.model, model_file=files[0], params_file=files[1], instances=opts.instances,
                      threads=ctx.job.threads, max_batch=opts.max_batch,
                      max_queue_delay_ms=float(opts.max_queue_delay_ms), device=ctx.job.processor
                      if ctx.job.processor in ("cpu", "gpu") else "cpu",
                      onednn=onednn_flag(ctx.job), host="127.0.0.1",
                      port=opts.port, max_seconds=_lifetime_s(ctx.job.protocol), inputs=inputs)
    tag = f"{ctx.job.job_id}-{uuid.uuid4().hex[:8]}"
    return DeviceServer(ctx.transport, spec, python=device_python(ctx.device), runner=prepared.extra["runner"],
                        workdir=ctx.transport.workdir, tag=tag).start()


def _keep_server_log(ctx: JobContext, server, out: Path) -> None:
    try:
        ctx.transport.pull(server.log_path, out / "serving_runner.log")
    except Exception:  # noqa: BLE001 - a missing log must not hide the job's own outcome
        pass


def _samples(ctx: JobContext) -> list[dict]:
    """The sample set: the reference inputs the job's fp32 reference was made from (ctx.checks),
    else the model's own reference input set (the same data), one request each."""
    from lab.models import agreement
    ref = ctx.checks.reference if ctx.checks is not None else None
    inputs = ref["inputs"] if ref is not None else agreement.reference_inputs(ctx.artifact)[0]
    n = len(next(iter(inputs.values())))
    return [{k: v[i] for k, v in inputs.items()} for i in range(n)]  # each at its run shape


def _reference_pass(ctx: JobContext, url: str, opts: ServingOptions, samples: list[dict]) -> dict[str, Any]:
    """Each reference input once through the endpoint (not timed): the compact outputs per sample,
    as a JSON runner's `outputs_check`. The first request also says whether the endpoint answers
    at all (transient if not)."""
    import numpy as np

    from lab.runners import runner_core
    from lab.serving.loadgen import probe
    from lab.serving.endpoint import ServingError
    t0 = time.perf_counter()
    outs = []
    for i, s in enumerate(samples):
        try:
            got = probe(url, ctx.job.model, s, fmt=opts.endpoint_format, timeout=60.0)
        except ServingError as exc:
            if i == 0 and ("does not answer" in str(exc)):
                raise DeviceError(ctx.job.device, f"serving endpoint does not answer: {exc}", transient=True) from None
            raise
        outs.append([runner_core.compact_output(np, np.asarray(a)) for a in got.values()])
    return {"n": len(outs), "outputs": outs, "seconds": round(time.perf_counter() - t0, 3)}


def _settings(ctx: JobContext, opts: ServingOptions, scenario: str, target_qps: float | None = None,
              expected_latency_ms: float = 10.0):
    from lab.serving.loadgen import LoadSettings, early_stopping_min_queries
    p = ctx.job.protocol
    pct = opts.percentile if scenario == "Server" else 0.9
    bound = opts.latency_bound_ms
    min_q = early_stopping_min_queries(pct)
    min_s, max_s = _run_seconds(p)
    if scenario == "Server" and target_qps:
        max_s = _server_seconds(max_s, pct, target_qps)
    return LoadSettings(scenario=scenario, target_qps=target_qps, latency_bound_ms=bound if scenario == "Server" else None,
                        percentile=pct, expected_latency_ms=expected_latency_ms,
                        min_duration_s=min_s, max_duration_s=max_s,
                        min_queries=min_q,
                        connections=max(16, 4 * opts.instances * opts.max_batch),
                        request_timeout_s=min(60.0, max(5.0, 20.0 * bound / 1000.0)))


def _run_seconds(protocol) -> tuple[float, float]:
    """LoadGen's (min, max) duration of one run from the job's protocol (min_seconds, max_seconds)."""
    return max(0.5, protocol.min_seconds), max(protocol.max_seconds, protocol.min_seconds)


def _server_seconds(max_s: float, percentile: float, target_qps: float) -> float:
    """A Server run's max duration: LoadGen needs the early-stopping minimum of queries for a
    verdict, so a low rate gets the time to issue them."""
    from lab.serving.loadgen import early_stopping_min_queries
    return max(max_s, 1.5 * early_stopping_min_queries(percentile) / target_qps)


def _drive(ctx: JobContext, opts: ServingOptions, url: str, server, out: Path) -> dict[str, Any]:
    """The reference pass, then the scenario (a sweep: SingleStream + Offline + bisection over
    Server runs)."""
    from lab.serving.loadgen import run_scenario
    from lab.serving.sweep import sweep
    samples = _samples(ctx)
    notes: list[str] = []
    kw = dict(fmt=opts.endpoint_format, server=server, instances=opts.instances, max_batch=opts.max_batch)
    model = ctx.job.model
    doc: dict[str, Any] = {"outputs_check": _reference_pass(ctx, url, opts, samples), "notes": notes,
                           "options": asdict(opts)}
    if opts.scenario != "sweep":
        r = run_scenario(url, model, samples, _settings(ctx, opts, opts.loadgen_scenario, opts.target_qps),
                         out_dir=out / opts.scenario, **kw)
        doc.update(scenario=r.scenario, qps=r.qps, valid=r.valid, result=r.to_dict())
        return doc
    single = run_scenario(url, model, samples, _settings(ctx, opts, "SingleStream"), out_dir=out / "singlestream", **kw)
    expect = opts.instances * opts.max_batch * 1000.0 / single.p50_ms
    offline = run_scenario(url, model, samples, _settings(ctx, opts, "Offline", max(10.0, expect)),
                           out_dir=out / "offline", **kw)
    hi = max((offline.qps or 1.0) * 1.1, 1.0)
    lo = min(opts.target_qps or 0.3 * hi, 0.9 * hi)

    runs = [0]

    def measure(q: float):
        runs[0] += 1  # a rate may be run twice (a halved bracket): each run keeps its own logs
        return run_scenario(url, model, samples, _settings(ctx, opts, "Server", round(q, 3)),
                            out_dir=out / f"server-{runs[0]:02d}-{q:.3f}qps", **kw)

    sanity = sanity_bound(opts.instances, opts.max_batch, single.p50_ms)
    # LoadGen runs rates rounded to 3 decimals (measure below): the ceiling rounds down to stay under
    ceiling = None if sanity is None else math.floor(sanity * 1000.0) / 1000.0
    sw = sweep(measure, lo, hi, rel_tol=SWEEP_REL_TOL, max_points=SWEEP_MAX_POINTS, ceiling=ceiling)
    doc["singlestream"], doc["offline"] = single.to_dict(), offline.to_dict()
    max_qps = sw.best.target_qps if sw.best is not None else None  # the rate LoadGen ran (rounded)
    doc["sweep"] = {"max_qps": max_qps, "latency_bound_ms": sw.latency_bound_ms, "percentile": sw.percentile,
                    "converged": sw.converged, "note": sw.note, "sanity_bound_qps": sanity,
                    "points": [asdict(p) for p in sw.points]}
    if sw.best is None:
        raise RunnerError(f"job {ctx.job.job_id} on {ctx.job.device}: no rate held the p{sw.percentile * 100:g} bound "
                          f"of {opts.latency_bound_ms:g} ms ({sw.note}); logs in {out}")
    if max_qps is not None and sanity is not None and max_qps > sanity:
        notes.append(f"max QPS {max_qps:.1f} exceeds the batch-1 sanity bound {sanity:.1f} "
                     f"(instances x 1000 / p50 x max_batch x {1 + SANITY_MARGIN}): check the endpoint")
    if not sw.converged:
        notes.append(f"sweep not converged: {sw.note}")
    best = sw.best.to_dict()
    doc.update(scenario="sweep", qps=max_qps, valid=sw.best.valid, converged=sw.converged, result=best)
    return doc


def sanity_bound(instances: int, max_batch: int, p50_ms: float | None) -> float | None:
    """The most QPS `instances` can serve if each request takes the batch-1 p50 (docs/serving.md)."""
    if not p50_ms or p50_ms <= 0 or math.isnan(p50_ms):
        return None
    return instances * max_batch * 1000.0 / p50_ms * (1.0 + SANITY_MARGIN)
