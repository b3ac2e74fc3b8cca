"""MLPerf LoadGen against an HTTP serving endpoint, and LoadGen's summary as a typed record.

Why LoadGen: it issues queries on its own schedule (Poisson arrivals in the Server scenario) and
times each from its scheduled issue, so a stalled server shows in the tail instead of silently
slowing the client down (coordinated omission, docs/benchmarks.md "Serving"). It also judges a run
(min duration, min queries, latency bound with early stopping): `valid` is LoadGen's verdict.

Scenarios: SingleStream (one query at a time; p90 with early stopping), Server (target QPS,
Poisson, latency bound at a percentile), Offline (all samples at once; max throughput).
Every run is bounded: LoadGen's max duration and max query count are always set, each request has a
timeout, and the first failed request stops all further HTTP traffic (the remaining queries are
completed at once, marked failed).
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from lab.core.errors import ConfigError
from lab.serving.client import HttpPool, Reply, prepare
from lab.serving.endpoint import ServingError
from lab.serving.protocol import encode_request, endpoint, parse_response
from lab.serving.stats import snapshot, split

SCENARIOS = ("SingleStream", "Server", "Offline")
EARLY_STOPPING_CONFIDENCE = 0.99  # LoadGen's


def early_stopping_min_queries(percentile: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """Fewest queries with which LoadGen's early stopping can pass when none is over the bound.

    All n under latency passes when percentile**n <= 1 - confidence: 459 at p99 (LoadGen itself
    says "would need to run at least 359 more" after 100), 44 at p90.
    """
    return math.ceil(math.log(1.0 - confidence) / math.log(percentile))


@dataclass(frozen=True)
class LoadSettings:
    """One LoadGen run. Durations in seconds, latencies in milliseconds."""

    scenario: str = "Server"
    target_qps: float | None = None        # Server: the Poisson rate; Offline: the expected rate
    latency_bound_ms: float | None = None  # Server: the bound at `percentile`
    percentile: float = 0.99               # Server bound percentile (SingleStream uses p90)
    expected_latency_ms: float = 10.0      # SingleStream: sizes the run
    min_duration_s: float = 5.0
    max_duration_s: float = 60.0
    min_queries: int = 0                   # 0: twice the early-stopping minimum at the percentile
    max_queries: int = 0                   # 0: derived from the rate and max_duration_s
    connections: int = 16
    request_timeout_s: float = 30.0
    seed: int = 0

    def check(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"unknown LoadGen scenario {self.scenario!r}", fix=f"use one of {', '.join(SCENARIOS)}")
        if self.scenario == "Server" and (not self.target_qps or not self.latency_bound_ms):
            raise ConfigError("the Server scenario needs target_qps and latency_bound_ms")
        if not 0.5 <= self.percentile < 1.0:
            raise ConfigError(f"latency percentile {self.percentile} out of range", fix="use e.g. 0.9 or 0.99")
        if self.max_duration_s < self.min_duration_s or self.min_duration_s <= 0:
            raise ConfigError("max_duration_s must be >= min_duration_s > 0")


@dataclass(frozen=True)
class Summary:
    """What mlperf_log_summary.txt says (latencies in ns as LoadGen prints them)."""

    scenario: str
    mode: str
    valid: bool
    checks: dict[str, bool]            # "Min duration satisfied": True, ...
    early_stopping: str                # the "Early Stopping Result" lines, joined
    completed_qps: float | None        # Completed samples per second / Samples per second / QPS w/ loadgen overhead
    scheduled_qps: float | None        # Server only
    percentiles_ns: dict[float, int]   # 50.0 -> ns, ... (the "Additional Stats" section)
    mean_ns: int | None
    min_ns: int | None
    max_ns: int | None
    early_stopping_estimate_ns: int | None  # SingleStream / Server: the early-stopping percentile estimate
    errors: int | None


_KV = re.compile(r"^\s*([^:]+?)\s*:\s*(.*?)\s*$")
_PCT = re.compile(r"^(\d+(?:\.\d+)?) percentile latency \(ns\)$")
_ES_EST = re.compile(r"Early stopping (?:\d+(?:\.\d+)?)(?:th|st|nd|rd)? percentile estimate\s*:\s*(\d+)")


def parse_summary(text: str) -> Summary:
    """Parse LoadGen's human summary; ValueError when it is not one."""
    if "MLPerf Results Summary" not in text:
        raise ValueError("not a LoadGen summary (no 'MLPerf Results Summary' header)")
    kv: dict[str, str] = {}
    checks: dict[str, bool] = {}
    pct: dict[float, int] = {}
    es_lines: list[str] = []
    in_es = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Early Stopping Result"):
            in_es = True
            continue
        if in_es:
            if not s or s.startswith("===="):
                in_es = False
            else:
                es_lines.append(s)
                continue
        m = _KV.match(line)
        if not m:
            continue
        key, val = m.group(1), m.group(2)
        if line.startswith("  ") and val in ("Yes", "NO", "No"):
            checks[key] = val == "Yes"
            continue
        pm = _PCT.match(key)
        if pm:
            pct[float(pm.group(1))] = int(val)
            continue
        kv.setdefault(key, val)
    validity = kv.get("Result is")
    if validity not in ("VALID", "INVALID"):
        raise ValueError(f"LoadGen summary has no 'Result is : VALID|INVALID' line (got {validity!r})")
    es_text = " ".join(es_lines)
    est = _ES_EST.search(es_text)

    def num(key: str, kind=float):
        v = kv.get(key)
        try:
            return kind(v) if v is not None else None
        except ValueError:
            return None

    return Summary(
        scenario=kv.get("Scenario", ""), mode=kv.get("Mode", ""), valid=validity == "VALID", checks=checks,
        early_stopping=es_text,
        completed_qps=(num("Completed samples per second") or num("Samples per second")
                       or num("QPS w/ loadgen overhead")),
        scheduled_qps=num("Scheduled samples per second"), percentiles_ns=pct,
        mean_ns=num("Mean latency (ns)", int), min_ns=num("Min latency (ns)", int),
        max_ns=num("Max latency (ns)", int),
        early_stopping_estimate_ns=int(est.group(1)) if est else None,
        errors=_errors(text))


def _errors(text: str) -> int | None:
    if "No errors encountered during test" in text:
        return 0
    m = re.search(r"(\d+) ERROR", text)
    return int(m.group(1)) if m else None


@dataclass
class LoadResult:
    """One LoadGen run against one endpoint: LoadGen's verdict and figures, and where its logs are.

    `qps` is the scenario's figure of merit: Server, the scheduled (Poisson) rate LoadGen held;
    Offline and SingleStream, completed samples per second. Latencies in ms; None when LoadGen did
    not report them.
    """

    scenario: str
    qps: float | None
    completed_qps: float | None
    target_qps: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    latency_bound_ms: float | None
    percentile: float
    valid: bool
    checks: dict[str, bool]
    early_stopping: str
    queries: int
    failed: int
    instances: int | None
    max_batch: int | None
    summary_path: str
    detail_path: str
    wall_s: float
    # where the run's requests spent their time inside the endpoint (lab.serving.stats), means per
    # request with the endpoint's own share of the mean latency; None when the endpoint has no
    # statistics call (Paddle Serving's pipeline format)
    split: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Watched(Protocol):
    """A server handle that can say why it stopped (LocalServer; phase 2: a remote handle)."""

    def failure(self) -> str | None: ...


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e6


def prepared_request(ep, inputs: Mapping[str, np.ndarray], binary: bool = True) -> bytes:
    """The full HTTP request for one sample (encoded once, before a run)."""
    req = encode_request(ep.fmt, inputs, binary=binary)
    return prepare(ep.host, ep.port, ep.path, req.body, req.headers)


def probe(url: str, model: str, inputs: Mapping[str, np.ndarray], *, fmt: str = "v2",
          timeout: float = 30.0, binary: bool = True) -> dict[str, np.ndarray]:
    """One request, answered outputs (name -> array). ServingError when the endpoint does not answer."""
    ep = endpoint(url, model, fmt)
    box: list[Reply] = []
    pool = HttpPool(ep.host, ep.port, size=1, timeout=timeout)
    done = threading.Event()
    pool.submit(prepared_request(ep, inputs, binary), lambda r: (box.append(r), done.set()))
    done.wait(timeout + 5)
    pool.close()
    if not box or box[0].error:
        raise ServingError(f"endpoint {ep.base}{ep.path} does not answer: "
                           f"{box[0].error if box else 'no reply'}")
    if box[0].status != 200:
        raise ServingError(f"endpoint {ep.base}{ep.path} answered HTTP {box[0].status}: {box[0].body[:300]!r}")
    return parse_response(fmt, box[0].body, box[0].header_length)


def _test_settings(lg, s: LoadSettings, n_samples: int):
    ts = lg.TestSettings()
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(s.min_duration_s * 1000)
    ts.max_duration_ms = int(s.max_duration_s * 1000)
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = s.seed
    if s.scenario == "Server":
        ts.scenario = lg.TestScenario.Server
        ts.server_target_qps = float(s.target_qps)
        ts.server_target_latency_ns = int(s.latency_bound_ms * 1e6)
        ts.server_target_latency_percentile = s.percentile
        min_q = s.min_queries or 2 * early_stopping_min_queries(s.percentile)
        max_q = s.max_queries or max(min_q, math.ceil(s.target_qps * s.max_duration_s * 1.2))
    elif s.scenario == "SingleStream":
        ts.scenario = lg.TestScenario.SingleStream
        ts.single_stream_expected_latency_ns = int(s.expected_latency_ms * 1e6)
        ts.single_stream_target_latency_percentile = 0.9
        min_q = s.min_queries or 2 * early_stopping_min_queries(0.9)
        max_q = s.max_queries or max(min_q, math.ceil(s.max_duration_s * 1000.0 / max(s.expected_latency_ms, 0.05)))
    else:
        ts.scenario = lg.TestScenario.Offline
        ts.offline_expected_qps = float(s.target_qps or 100.0)
        min_q = s.min_queries or 1
        max_q = s.max_queries or 0
    ts.min_query_count = int(min_q)
    ts.max_query_count = int(max_q)
    return ts


def run_scenario(url: str, model: str, inputs: Sequence[Mapping[str, np.ndarray]], settings: LoadSettings,
                 *, out_dir: Path | str, fmt: str = "v2", server: Watched | None = None,
                 instances: int | None = None, max_batch: int | None = None, binary: bool = True) -> LoadResult:
    """Run one LoadGen scenario against `url` and return its typed result.

    `inputs`: the sample set (each a name -> array mapping with the batch dim first); requests
    are encoded once, before the run (v2: binary tensors unless `binary=False`). LoadGen's logs go
    to `out_dir`. A failed request,
    or a `server` that has stopped, raises ServingError with the first error and the server's
    last log lines.
    """
    from lab.core import optional
    lg = optional.require("mlperf_loadgen")

    settings.check()
    if not inputs:
        raise ConfigError("run_scenario needs at least one input sample")
    ep = endpoint(url, model, fmt)
    bodies = [prepared_request(ep, sample, binary) for sample in inputs]
    probe(url, model, inputs[0], fmt=fmt, timeout=settings.request_timeout_s, binary=binary)  # clear error before LoadGen
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    before = snapshot(ep)  # after the probe: the difference is this run's requests alone
    pool = HttpPool(ep.host, ep.port, size=settings.connections, timeout=settings.request_timeout_s)
    state = {"failed": 0, "first": None, "issued": 0}
    lock = threading.Lock()

    def complete(qid: int, reply: Reply | None) -> None:
        if reply is not None and not reply.ok:
            with lock:
                state["failed"] += 1
                if state["first"] is None:
                    state["first"] = reply.error or f"HTTP {reply.status}: {reply.body[:300]!r}"
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, 0, 0)])

    def issue(samples) -> None:
        for qs in samples:
            state["issued"] += 1
            if state["failed"]:
                complete(qs.id, None)  # stop traffic after the first failure; the run ends by itself
                continue
            pool.submit(bodies[qs.index], lambda r, qid=qs.id: complete(qid, r))

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(bodies), len(bodies), lambda _s: None, lambda _s: None)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(out)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    t0 = time.monotonic()
    try:
        lg.StartTestWithLogSettings(sut, qsl, _test_settings(lg, settings, len(bodies)), log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        pool.close()
    wall = time.monotonic() - t0
    why = server.failure() if server is not None else None
    parts = split(before, snapshot(ep)) if not (state["failed"] or why) else None
    if state["failed"] or why:
        msg = f"{state['failed']} of {state['issued']} requests to {ep.base}{ep.path} failed"
        if state["first"]:
            msg += f"; first: {state['first']}"
        raise ServingError(msg + (f"\n{why}" if why else ""))
    return _load_result(settings, out, state["issued"], wall, parts, instances, max_batch)


def _load_result(settings: LoadSettings, out: Path, queries: int, wall: float, parts, instances: int | None,
                 max_batch: int | None) -> LoadResult:
    """The run's LoadResult from LoadGen's summary in `out` and the endpoint's split."""
    summary_path, detail_path = out / "mlperf_log_summary.txt", out / "mlperf_log_detail.txt"
    try:
        sm = parse_summary(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise ServingError(f"LoadGen wrote no usable summary in {out}: {exc}") from exc
    p = sm.percentiles_ns
    p90 = p.get(90.0)
    if settings.scenario == "SingleStream" and sm.early_stopping_estimate_ns is not None:
        p90 = sm.early_stopping_estimate_ns  # LoadGen's p90 figure of merit, early stopping included
    qps = sm.scheduled_qps if settings.scenario == "Server" else sm.completed_qps
    return LoadResult(
        scenario=settings.scenario, qps=qps, completed_qps=sm.completed_qps, target_qps=settings.target_qps,
        p50_ms=_ms(p.get(50.0)), p90_ms=_ms(p90), p99_ms=_ms(p.get(99.0)), p999_ms=_ms(p.get(99.9)),
        mean_ms=_ms(sm.mean_ns), max_ms=_ms(sm.max_ns),
        latency_bound_ms=settings.latency_bound_ms if settings.scenario == "Server" else None,
        percentile=settings.percentile if settings.scenario == "Server" else 0.9,
        valid=sm.valid, checks=sm.checks, early_stopping=sm.early_stopping, queries=queries,
        failed=0, instances=instances, max_batch=max_batch, summary_path=str(summary_path),
        detail_path=str(detail_path), wall_s=wall,
        split=parts.to_dict(_ms(sm.mean_ns)) if parts is not None else None)
