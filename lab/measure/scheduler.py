"""Run planned jobs: one serial queue per device, devices in parallel.

Why per-device queues: a device measures one thing at a time (parallel jobs on one board would
measure contention), while different devices are independent. Transient device errors are retried
with backoff on a fresh connection; a device that keeps failing is marked unhealthy and its remaining
jobs are skipped with the reason, while the rest of the campaign goes on. Every job end is committed
to the store at once, so an interrupt loses at most the jobs that were running.

Between two jobs on a device with `cooldown_s` > 0, the scheduler waits for a thermal cooldown: until
the hottest SoC zone is within COOLDOWN_MARGIN_C of the temperature seen before the device's first
job, at most cooldown_s (a fixed sleep of cooldown_s where no zone is readable). What was waited is
stored in the next job's Measurement.provenance['cooldown'].
"""
from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from lab.core.errors import DeviceError, HostLost, LabError
from lab.core.records import Device, Job, Measurement
from lab.results.store import Store
from lab.telemetry.cooldown import BOUND, COOLDOWN_POLL_S, Cooldown, wait_for_cooldown
from lab.telemetry.session import abort_active_sessions, read_hottest_c
from lab.transport.registry import close_quietly as _close_quietly


@dataclass
class SchedulerOptions:
    max_parallel: int = 8  # devices measured at once
    retries: int = 2  # extra attempts for transient device errors
    backoff_s: float = 1.0  # first retry delay, doubled each time
    unhealthy_after: int = 3  # consecutive failed jobs before a device is given up on
    models_root: str = "models"
    progress: bool = True  # report progress at all (stderr)
    live: bool = True  # on a terminal: the live table; False (or not a terminal): one line per job
    thermal_root: str = ""  # prefix of the devices' /sys for the cooldown (tests: a fake sysfs)
    cooldown_poll_s: float = COOLDOWN_POLL_S  # how often the thermal zones are read while cooling


@dataclass
class DeviceState:
    device: str
    total: int = 0
    done: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    current: str = ""
    last: str = ""
    healthy: bool = True
    reason: str = ""


@dataclass
class RunSummary:
    planned: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    devices: dict[str, DeviceState] = field(default_factory=dict)
    qualities: list = field(default_factory=list)  # lab.results.quality.Quality of every ok job

    @property
    def quality_text(self) -> str:
        """' (3 not converged, 1 busy host)' or '' (lab.results.quality.summarize)."""
        from lab.results.quality import summarize
        return summarize(self.qualities)

    @property
    def unfinished(self) -> int:
        return max(0, self.planned - self.ok - self.failed - self.skipped)

    @property
    def exit_code(self) -> int:
        return 0 if self.failed == 0 and self.skipped == 0 and self.unfinished == 0 else 1


# The executor is injectable so the Ray engine and the synthetic benchmarks reuse this scheduler.
Executor = Callable[[Job, Device, object], Measurement]


class Scheduler:
    def __init__(self, store: Store, devices: list[Device], options: SchedulerOptions | None = None,
                 *, executor: Executor | None = None,
                 transport_factory: Callable[[Device], object] | None = None):
        self.store = store
        self.devices = {d.id: d for d in devices}
        self.opts = options or SchedulerOptions()
        self.executor = executor or self._default_executor
        self.transport_factory = transport_factory or _open_transport
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._live: dict[str, object] = {}  # device id -> open transport (for abort on Ctrl-C)
        self.summary = RunSummary()

    def _default_executor(self, job: Job, device: Device, transport) -> Measurement:
        from lab.runtimes.execute import execute_job
        return execute_job(job, device, transport, models_root=self.opts.models_root,
                           keep_root=self.store.path.parent)

    def stop(self) -> None:
        self._stop.set()

    def run(self, jobs: list[Job]) -> RunSummary:
        queues: OrderedDict[str, list[Job]] = OrderedDict()
        for job in jobs:
            queues.setdefault(job.device, []).append(job)
        self.summary.planned = len(jobs)
        for dev, q in queues.items():
            self.summary.devices[dev] = DeviceState(dev, total=len(q))
        progress = _Progress(self.summary, enabled=self.opts.progress, live=self.opts.live,
                             queues=queues)
        sem = threading.Semaphore(max(1, self.opts.max_parallel))
        threads = [threading.Thread(target=self._device_worker, args=(dev, q, sem, progress),
                                    name=f"device-{dev}", daemon=True) for dev, q in queues.items()]
        progress.start()
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except KeyboardInterrupt:
            self._stop.set()
            self.abort_running()
            raise
        finally:
            progress.stop()
        return self.summary

    def abort_running(self) -> None:
        """Kill what runs on the devices now (runner, sampler): an interrupted campaign must not
        leave a runner loading the device that a `--resume` would then measure next to."""
        with self._lock:
            live = list(self._live.values())
        for transport in live:  # every Transport has abort() (lab/transport/base.py)
            try:
                transport.abort()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        try:
            abort_active_sessions()
        except Exception:  # noqa: BLE001
            pass
        cdp = sys.modules.get("lab.web.cdp")  # only when a browser job ran in this process
        try:
            if cdp is not None:
                cdp.close_all()
        except Exception:  # noqa: BLE001
            pass

    # -- one device -----------------------------------------------------------------------------
    def _device_worker(self, dev_id: str, queue: list[Job], sem: threading.Semaphore, progress) -> None:
        state = self.summary.devices[dev_id]
        device = self.devices[dev_id]
        transport = None
        consecutive_failures = 0
        cooldown: Cooldown | None = None  # waited after the previous job, recorded on this one
        with sem:
            try:
                baseline_c = None
                if any(j.protocol.cooldown_s > 0 for j in queue[:-1]):
                    transport, baseline_c = self._baseline(device)
                for i, job in enumerate(queue):
                    if self._stop.is_set():
                        return
                    if not state.healthy:
                        self._finish(job, state, "skipped", error=f"device {dev_id!r} marked unhealthy: "
                                                                   f"{state.reason}")
                        progress.update()
                        continue
                    state.current = f"{job.model} {job.backend} {job.precision} t{job.threads}"
                    progress.update()
                    try:
                        self.store.mark_running(job.job_id)
                        measurement, error, transport, permanent = self._attempt(job, device, transport,
                                                                                 state)
                        if measurement is not None:
                            consecutive_failures = 0
                            if cooldown is not None:
                                measurement.provenance["cooldown"] = cooldown.as_dict()
                                if cooldown.outcome == BOUND:
                                    measurement.notes.append(cooldown.note())
                            self._finish(job, state, "ok", measurement=measurement)
                        else:
                            consecutive_failures += 1
                            if self._stop.is_set():
                                error = f"interrupted: {error}"
                            self._finish(job, state, "failed", error=error)
                            if permanent or consecutive_failures >= self.opts.unhealthy_after:
                                state.healthy = False
                                state.reason = error_headline(error) if permanent else (
                                    f"{consecutive_failures} jobs failed in a row; last: {error_headline(error)}")
                    except HostLost as exc:  # nothing measured: this job and the rest stay planned
                        self._requeue(queue[i:], state, str(exc))
                        progress.update()
                        return
                    except Exception as exc:  # noqa: BLE001 - one broken job must not end the device's queue
                        consecutive_failures += 1
                        try:
                            self._finish(job, state, "failed", error=f"internal error {type(exc).__name__}: "
                                                                    f"{exc}")
                        except Exception:  # noqa: BLE001 - store unusable: the job stays unfinished
                            pass
                    progress.update()
                    cooldown = None
                    if job.protocol.cooldown_s > 0 and i + 1 < len(queue) and not self._stop.is_set():
                        state.current = f"cooling down (at most {job.protocol.cooldown_s:g} s)"
                        progress.update()
                        cooldown = self._cool_down(transport, baseline_c, job.protocol.cooldown_s)
            finally:
                state.current = ""
                with self._lock:
                    self._live.pop(dev_id, None)
                if transport is not None:
                    _close_quietly(transport)

    def _open(self, device: Device):
        transport = self.transport_factory(device)
        with self._lock:
            self._live[device.id] = transport
        return transport

    def _baseline(self, device: Device) -> tuple[object | None, float | None]:
        """Open the device and read its hottest thermal zone before its first job: the temperature
        each cooldown aims back at. A failed open is left to the first job's retries."""
        try:
            transport = self._open(device)
        except Exception:  # noqa: BLE001 - _attempt reconnects with retries and records the cause
            return None, None
        return transport, read_hottest_c(transport, self.opts.thermal_root)

    def _cool_down(self, transport, baseline_c: float | None, bound_s: float) -> Cooldown:
        """Wait for the device to cool back to its baseline, at most bound_s (see module doc)."""
        return wait_for_cooldown(lambda: read_hottest_c(transport, self.opts.thermal_root),
                                 baseline_c, bound_s, sleep=self._stop.wait, clock=time.monotonic,
                                 poll_s=self.opts.cooldown_poll_s)

    def _attempt(self, job: Job, device: Device, transport, state: DeviceState):
        """Run a job with retries for transient device errors. Returns (measurement, error, transport,
        permanent_device_error)."""
        delay = self.opts.backoff_s
        for attempt in range(self.opts.retries + 1):
            try:
                if attempt:
                    self.store.mark_running(job.job_id)  # `attempts` counts every try
                if transport is None:
                    transport = self._open(device)
                return self.executor(job, device, transport), None, transport, False
            except HostLost:
                _close_quietly(transport)
                raise
            except DeviceError as exc:
                _close_quietly(transport)
                transport = None
                if not exc.transient:
                    return None, f"{type(exc).__name__}: {exc}", None, True
                if attempt == self.opts.retries or self._stop.is_set():
                    return None, f"{type(exc).__name__}: {exc} (after {attempt + 1} attempts)", None, False
                state.last = f"retry {attempt + 1} in {delay:.0f}s: {exc}"
                self._stop.wait(delay)
                delay *= 2
            except LabError as exc:
                return None, f"{type(exc).__name__}: {exc}", transport, False
            except Exception as exc:  # noqa: BLE001 - a bug in one job must not stop the campaign
                return None, f"internal error {type(exc).__name__}: {exc}", transport, False
        return None, "no attempt made", transport, False

    def _requeue(self, jobs: list[Job], state: DeviceState, error: str) -> None:
        """The device's host is gone: its running job and the rest of its queue go back to planned
        (the summary counts them unfinished, and `--resume` runs them)."""
        self.store.requeue([j.job_id for j in jobs], f"back to planned: {error}")
        with self._lock:
            state.healthy = False
            state.reason = error_headline(error)
            state.current = ""
            state.last = f"{len(jobs)} job(s) back to planned: {error_headline(error)}"

    def _finish(self, job: Job, state: DeviceState, status: str, *, measurement: Measurement | None = None,
                error: str | None = None) -> None:
        self.store.finish_job(job.job_id, status, measurement=measurement, error=error)
        with self._lock:
            state.done += 1
            state.current = ""  # between jobs: nothing runs (the next job sets it)
            setattr(state, status, getattr(state, status) + 1)
            setattr(self.summary, status, getattr(self.summary, status) + 1)
            if status == "ok" and measurement is not None:
                from lab.results.quality import LABELS, classify
                q = classify(measurement)
                self.summary.qualities.append(q)
                value = measurement.p50_ms if measurement.p50_ms is not None else measurement.mean_ms
                figure = f"p50 {value:.2f} ms" if measurement.p50_ms is not None else (
                    f"mean {value:.2f} ms" if value is not None else "no latency")
                if measurement.qps is not None:  # serving: the figure of merit and what limits it
                    share = measurement.endpoint_share
                    figure = f"{measurement.scenario} {measurement.qps:.1f} QPS, {figure}" + (
                        f", endpoint {share:.0%} of a request" if share is not None else "")
                state.last = f"{job.model} {job.backend} t{job.threads}: {figure}" + (
                    f" ({', '.join(LABELS[f] for f in q.flags)})" if q.flags else "")
            else:
                state.last = f"{job.model} {job.backend}: {status}: {error_headline(error)}"


def error_headline(error: str | None) -> str:
    """An error's first line, whole (never cut mid-sentence: the fix is at its end), and how many
    lines follow it (a runner's log tail); `lab results` shows the stored error in full."""
    lines = (error or "").strip().splitlines() or [""]
    more = len(lines) - 1
    return lines[0] + (f" (+{more} more line{'s' if more > 1 else ''} in `lab results`)" if more else "")


def _wrapped(line: str) -> str:
    """A progress line wrapped to the terminal's width (continuations indented), never cut; as it
    is for a pipe or a log file (one line per event, for grep)."""
    if not sys.stderr.isatty():
        return line
    import shutil
    import textwrap
    width = max(40, shutil.get_terminal_size((100, 24)).columns)
    return textwrap.fill(line, width=width, subsequent_indent="    ", break_long_words=False,
                         break_on_hyphens=False)


def _open_transport(device: Device):
    from lab.transport.registry import open_transport
    return open_transport(device)


class _Progress:
    """Live per-device view on a terminal (rich), with elapsed time and an ETA from the protocol
    bounds (lab.measure.duration); otherwise (not a terminal, or `live` off) one line per job start and
    end, each with elapsed time and ETA, so a piped or `make` run is never silent."""

    def __init__(self, summary: RunSummary, enabled: bool, live: bool = True,
                 queues: dict[str, list[Job]] | None = None):
        self.summary = summary
        self.enabled = enabled
        self.want_live = live
        self.live = None
        self.queues = queues or {}
        self._printed: dict[str, int] = {}
        self._started: dict[str, str] = {}
        self._job_t0: dict[str, float] = {}
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def start(self) -> None:
        self.t0 = time.monotonic()
        if not self.enabled:
            return
        if self.want_live and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.live import Live
                self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4)
                self.live.start()
            except Exception:  # noqa: BLE001 - fall back to plain lines
                self.live = None

    def eta_s(self) -> float:
        """Upper-bound seconds left: per device, the high bound of the jobs not done (the running
        one less what it has run), devices in parallel."""
        from lab.measure.duration import job_time_bounds
        now = time.monotonic()
        left = 0.0
        for dev, q in self.queues.items():
            st = self.summary.devices.get(dev)
            done = st.done if st else 0
            rest = q[done:]
            t = sum(job_time_bounds(j)[1] for j in rest)
            if rest and dev in self._job_t0 and st and st.current:
                t -= min(job_time_bounds(rest[0])[1], now - self._job_t0[dev])
            left = max(left, t)
        return left

    def clock(self) -> str:
        from lab.measure.duration import fmt_s
        return (f"elapsed {fmt_s(time.monotonic() - self.t0)}, ETA <= {fmt_s(self.eta_s())} "
                "(protocol bounds)")

    def _table(self):
        from rich.table import Table
        table = Table(title=f"hwlab campaign: {self.clock()}", expand=False)
        for col in ("device", "done", "ok", "failed", "skipped", "now", "last"):
            table.add_column(col, overflow="fold")  # long cells wrap, never end in an ellipsis
        for s in self.summary.devices.values():
            table.add_row(s.device + ("" if s.healthy else " (unhealthy)"), f"{s.done}/{s.total}", str(s.ok),
                          str(s.failed), str(s.skipped), s.current, s.last)
        return table

    def update(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            for s in self.summary.devices.values():  # when each device's job started (ETA)
                if s.current and self._started.get(s.device) != f"{s.done}:{s.current}":
                    self._job_t0[s.device] = time.monotonic()
            if self.live is not None:
                for s in self.summary.devices.values():
                    self._started[s.device] = f"{s.done}:{s.current}"
                self.live.update(self._table())
                return
            for s in self.summary.devices.values():
                key = f"{s.done}:{s.current}"
                if s.current and self._started.get(s.device) != key:
                    self._started[s.device] = key
                    if s.current.startswith("cooling down"):
                        continue
                    print(_wrapped(f"[{s.device}] {s.done + 1}/{s.total} started: {s.current} ({self.clock()})"),
                          file=sys.stderr, flush=True)
                if self._printed.get(s.device, 0) < s.done:
                    self._printed[s.device] = s.done
                    print(_wrapped(f"[{s.device}] {s.done}/{s.total} {s.last} ({self.clock()})"),
                          file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
