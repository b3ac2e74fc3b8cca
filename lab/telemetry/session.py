"""The device side of telemetry: start the samplers around a job, mark the device clock, collect.

Why apart from lab/telemetry/figures.py: that module is pure trace maths (text in, figures out); this one
talks to the device through a transport, starts background processes there and keeps the sessions
that are running, so that an interrupted campaign can stop their samplers (SessionRegistry).
It also reads the device's thermal zones for the scheduler's cooldown between jobs.

Used by the job path (one session per job) and by lab/measure/scheduler.py (abort on Ctrl-C, cooldown).
"""
from __future__ import annotations

import shlex
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lab.core.isotime import iso_epoch
from lab.core.records import Job, MeasurementProtocol
from lab.core.runner_files import RUNNERS_DIR
from lab.telemetry.cooldown import hottest_c, parse_thermal_zones
from lab.telemetry.figures import DEFAULT_IDLE_S, TelemetryResult, Window, analyze, window_telemetry
from lab.telemetry.power import pick_power
from lab.telemetry.trace import parse_trace
from lab.transport.base import Transport, remote_join, shell_command

# The sampler's -M bound: an orchestrator killed with -9 cannot touch the stop file, so the sampler
# ends itself after the longest a job can legitimately take under its protocol:
#   idle baseline + SAMPLER_SETUP_S + trials x (timeout_s + TRIAL_SLACK_S).
SAMPLER_SETUP_S = 120.0  # pushes, header wait, model load outside the trials, collection
TRIAL_SLACK_S = 30.0  # per trial, beyond the runner's own timeout_s: start-up and reading its JSON
HEADER_WAIT_S = 15.0  # a sampler that has not written its header by then is taken as failed
STOP_WAIT_S = 10.0  # after the stop file, how long to wait for the samplers' '# end' lines


def sampler_life_s(protocol: MeasurementProtocol, idle_s: float) -> float:
    """Seconds after which the device's samplers end themselves (see SAMPLER_SETUP_S)."""
    return idle_s + SAMPLER_SETUP_S + protocol.trials * (protocol.timeout_s + TRIAL_SLACK_S)


@dataclass(frozen=True)
class Mark:
    label: str
    clock: float  # device sampler clock (/proc/uptime, or epoch when the device has no uptime)
    epoch: float | None  # device wall clock at the same instant
    epoch_subsecond: bool


class SessionRegistry:
    """The sessions started and not yet collected, so an interrupt can stop their samplers.

    Thread-safe: the scheduler runs one job per device in parallel threads."""

    def __init__(self) -> None:
        self._sessions: set[TelemetrySession] = set()
        self._lock = threading.Lock()

    def add(self, session: "TelemetrySession") -> None:
        with self._lock:
            self._sessions.add(session)

    def discard(self, session: "TelemetrySession") -> None:
        with self._lock:
            self._sessions.discard(session)

    def __contains__(self, session: object) -> bool:
        with self._lock:
            return session in self._sessions

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def abort_all(self) -> int:
        """Touch every running session's stop file and forget it; returns how many."""
        with self._lock:
            sessions, self._sessions = list(self._sessions), set()
        for session in sessions:
            session.request_stop()
        return len(sessions)


# The registry sessions join unless given another; the scheduler aborts it on Ctrl-C.
ACTIVE_SESSIONS = SessionRegistry()


def abort_active_sessions(registry: SessionRegistry = ACTIVE_SESSIONS) -> None:
    """Stop the samplers of every running session (the orchestrator is being interrupted)."""
    registry.abort_all()


class TelemetrySession:
    """Starts the samplers on the device, keeps marks and job windows, collects and analyses.

    Clock choice (docs/telemetry.md): every time the analysis uses is on the device's
    /proc/uptime clock, the one sampler.sh stamps its lines with. `mark()` reads it over the
    transport; a runner JSON may carry `clock: {name: uptime, steady_start, steady_end}` (exact);
    otherwise its sub-second `finished_at` is mapped through the marks' (uptime, epoch) pairs, and
    as a last resort the steady window is placed just before the trial's end mark (approximate).

    Defaults come from `job` when given: its protocol (idle baseline, sampler life) and NVML when
    its processor is 'gpu'. `root` prefixes /sys and /proc (tests point it at a fake sysfs).
    """

    def __init__(self, *, job: Job | None = None, idle_s: float | None = None,
                 protocol: MeasurementProtocol | None = None, nvml: bool | None = None,
                 python: str = "python3", root: str = "", max_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 registry: SessionRegistry = ACTIVE_SESSIONS):
        if job is not None:
            protocol = protocol or job.protocol
            if nvml is None:
                nvml = job.processor == "gpu"
        protocol = protocol or MeasurementProtocol()
        if idle_s is None:
            idle_s = protocol.idle_baseline_s or DEFAULT_IDLE_S
        self.idle_s = float(idle_s)
        self.max_s = float(max_s) if max_s is not None else sampler_life_s(protocol, self.idle_s)
        self.nvml, self.python, self.root = bool(nvml), python, root
        self.sleep = sleep
        self.registry = registry
        self.marks: list[Mark] = []
        self.windows: list[Window] = []
        # sustained runs: (trial label, [(start, end)] per window on the sampler clock)
        self.sustained_spans: list[tuple[str, list[tuple[float, float]]]] = []
        self.started = False
        self.start_error: str | None = None
        self.has_power: bool | None = None
        self.pids_note: str | None = None
        self.transport: Transport | None = None
        self.dir = self.trace = self.nvml_trace = self.runner_pid_file = self.stopfile = ""

    # -- device side --------------------------------------------------------------------
    def start(self, transport: Transport, workdir: str, rate_hz: float = 20.0) -> None:
        """Push sampler.sh (hash-cached), start it in the background with a stop file, wait for
        its header, then record the idle baseline (sleeps idle_s when the device has a power
        sensor). Never raises for telemetry trouble: the job still runs, power is 'unavailable'."""
        self.transport = transport
        self.dir = remote_join(workdir, "telemetry", uuid.uuid4().hex[:12])
        self.trace = remote_join(self.dir, "sampler.txt")
        self.nvml_trace = remote_join(self.dir, "nvml.txt")
        self.runner_pid_file = remote_join(self.dir, "runner.pid")  # the runner writes its PID here
        self.stopfile = remote_join(self.dir, "stop")
        try:
            sampler = remote_join(workdir, "runners", "sampler.sh")
            transport.push(RUNNERS_DIR / "sampler.sh", sampler)
            # Stop samplers left running by an earlier session that never came back (kill -9,
            # lost connection): one job at a time per device, so any other session is stale.
            tdir = shlex.quote(remote_join(workdir, "telemetry"))
            cmds = [f'for d in {tdir}/*/; do [ -f "$d"sampler.txt ] && : > "$d"stop; done; true',
                    shell_command(["mkdir", "-p", self.dir])]
            args = ["sh", sampler, "-o", self.trace, "-r", f"{rate_hz:g}", "-s", self.stopfile,
                    "-M", f"{self.max_s:g}"] + (["-R", self.root] if self.root else [])
            cmds.append(_background(args, remote_join(self.dir, "sampler.err")))
            if self.nvml:
                nv = remote_join(workdir, "runners", "nvml_sampler.py")
                transport.push(RUNNERS_DIR / "nvml_sampler.py", nv)
                cmds.append(_background([self.python, nv, "-o", self.nvml_trace, "-r",
                                         f"{rate_hz:g}", "-s", self.stopfile, "-M",
                                         f"{self.max_s:g}", "--pid-file", self.runner_pid_file],
                                        remote_join(self.dir, "nvml.err")))
            res = transport.run(" && ".join(cmds), timeout=30)
            if res.rc != 0:
                raise RuntimeError(f"sampler start exited {res.rc}: {res.err.strip()[:200]}")
            header = self._wait_header(self.trace)
            if self.nvml:
                header += self._wait_header(self.nvml_trace)
            tr = parse_trace(header)
            self.has_power = pick_power(tr)[0] is not None or any(
                c.name.endswith(".energy") or c.name.endswith(".power") for c in tr.columns)
            self.started = True
            self.registry.add(self)
        except Exception as exc:  # telemetry must never fail the job
            self.start_error = f"telemetry could not start: {exc}"
            return
        if self.has_power and self.idle_s > 0:
            self.mark("idle-start")
            self.sleep(self.idle_s)
        self.mark("job-start")

    def _wait_header(self, path: str, wait_s: float = HEADER_WAIT_S) -> str:
        deadline = time.monotonic() + wait_s
        while True:
            res = self.transport.run(shell_command(["cat", path]) + " 2>/dev/null", timeout=15)
            if "# wall_ref" in res.out and "# fields" in res.out:
                return res.out
            if time.monotonic() > deadline:
                raise RuntimeError(f"no sampler header in {path} after {wait_s:g} s")
            time.sleep(0.1)

    def mark(self, label: str) -> Mark | None:
        """Read the device clock now (uptime + epoch in one shell line) and remember it."""
        if not self.started:
            return None
        uptime = f"{self.root}/proc/uptime" if self.root else "/proc/uptime"
        cmd = (f"u=; read -r u _r < {shlex.quote(uptime)} 2>/dev/null; e=$(date +%s.%N 2>/dev/null);"
               ' case "$e" in *N*|*%*|"") e=$(date +%s);; esac; echo "${u:-$e} $e"')
        try:
            res = self.transport.run(cmd, timeout=15)
            a, b = res.out.split()[:2]
            m = Mark(label, float(a), float(b), "." in b)
        except Exception:  # noqa: BLE001 - a lost mark costs window precision, never the job
            return None
        self.marks.append(m)
        return m

    # -- job windows ----------------------------------------------------------------------
    def add_window(self, start: float, end: float, iterations: int, label: str = "",
                   note: str = "") -> Window:
        w = Window(start, end, int(iterations), label, note)
        self.windows.append(w)
        return w

    def add_run(self, doc: dict, label: str = "") -> Window | None:
        """One trial's steady window from its runner JSON (see class doc for the clock rules).
        Call after mark('trial-start'), the runner, mark('trial-end')."""
        doc = doc or {}
        self._add_sustained(doc, label)
        timings = doc.get("timings") or {}
        samples = timings.get("samples_ms") or []
        n = len(samples)
        steady = timings.get("steady_seconds")
        if steady is None and samples:
            steady = sum(samples) / 1000.0
        clock = doc.get("clock") or {}
        if clock.get("steady_start") is not None and clock.get("steady_end") is not None:
            return self.add_window(float(clock["steady_start"]), float(clock["steady_end"]), n,
                                   label)
        if not self.marks or steady is None:
            return None
        end_mark = self.marks[-1]
        start_mark = self.marks[-2] if len(self.marks) >= 2 else None
        fin = iso_epoch(doc.get("finished_at"))
        if fin is not None and fin[1] and end_mark.epoch_subsecond:
            offs = [m.epoch - m.clock for m in self.marks if m.epoch_subsecond]
            end = fin[0] - statistics.median(offs)
            return self.add_window(end - steady, end, n, label,
                                   "steady window mapped from the runner's wall-clock finished_at")
        end = end_mark.clock
        start = end - steady
        if start_mark is not None:
            start = max(start, start_mark.clock)
        return self.add_window(start, end, n, label, "steady window approximate: placed just "
                               "before the trial's end mark (process teardown included)")

    def _add_sustained(self, doc: dict, label: str) -> None:
        """A sustained run's windows (runner `sustained.windows`, on the uptime clock) are kept so
        that stop_and_collect gives temperature, clocks and power per window."""
        wins = (doc.get("sustained") or {}).get("windows") or []
        spans = [(float(w["clock_start"]), float(w["clock_end"])) for w in wins
                 if w.get("clock_start") is not None and w.get("clock_end") is not None]
        if spans and len(spans) == len(wins):
            self.sustained_spans.append((label, spans))

    # -- collect ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Touch the stop file so the device's samplers end (used on Ctrl-C; never raises)."""
        if self.transport is None or not self.stopfile:
            return
        try:
            self.transport.run(shell_command(["touch", self.stopfile]), timeout=5)
        except Exception:  # noqa: BLE001 - the device may be gone; the sampler's -M bound remains
            pass

    def stop_and_collect(self, transport: Transport, local_dir: Path | str) -> TelemetryResult:
        """Stop the samplers (stop file, then at most STOP_WAIT_S for their end lines), pull the
        traces into local_dir, analyse the recorded windows. Never raises: trouble becomes
        power_note."""
        self.registry.discard(self)
        if not self.started:
            return TelemetryResult(power_note="power unavailable: " + (
                self.start_error or "telemetry was not started"))
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        self.mark("job-end")
        try:
            transport.run(shell_command(["touch", self.stopfile]), timeout=15)
            paths = [self.trace] + ([self.nvml_trace] if self.nvml else [])
            deadline = time.monotonic() + STOP_WAIT_S
            text: dict[str, str] = {}
            while True:
                for p in paths:
                    res = transport.run(shell_command(["cat", p]) + " 2>/dev/null", timeout=30)
                    text[p] = res.out
                if all("\n# end " in text[p] for p in paths) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            local = []
            for p in paths:
                dest = local_dir / Path(p).name
                transport.pull(p, dest)
                local.append(dest)
            tr = parse_trace(local[0].read_text())
            if self.nvml:
                tr = tr.merge(parse_trace(local[1].read_text()))
            transport.run(shell_command(["rm", "-rf", self.dir]), timeout=30)
        except Exception as exc:  # noqa: BLE001 - telemetry must never fail the job
            return TelemetryResult(power_note=f"power unavailable: telemetry collection failed: "
                                   f"{exc}")
        idle = None
        ms = {m.label: m for m in self.marks}
        if "idle-start" in ms and "job-start" in ms:
            idle = (ms["idle-start"].clock, ms["job-start"].clock)
        windows = list(self.windows)
        if not windows and "job-start" in ms and "job-end" in ms:
            windows = [Window(ms["job-start"].clock, ms["job-end"].clock, 0, "job",
                              "no steady window was given (add_run): power is the average over "
                              "the whole job incl. model load and warm-up")]
        res = analyze(tr, windows, idle, idle_s_wanted=self.idle_s, gpu_pids_note=self.pids_note)
        res.windows = windows
        res.per_window = {label: window_telemetry(tr, spans) for label, spans in self.sustained_spans}
        res.trace_file = str(local[0])
        return res


def _background(argv: list[str], errfile: str) -> str:
    """A detached background command: no fds left open so SSH/ADB channels can close."""
    return f"(nohup {shell_command(argv)} </dev/null >/dev/null 2>{shlex.quote(errfile)} &)"


# --------------------------------------------------------------------------------------------
# thermal zones, for the scheduler's cooldown between jobs

def thermal_zones_command(root: str = "") -> str:
    """One sh line printing `ZONE MILLIDEGREES TYPE` per readable zone (the paths sampler.sh uses;
    POSIX sh + cat only, so it works on busybox/toybox devices)."""
    base = shlex.quote(f"{root}/sys/class/thermal")
    return (f'for z in {base}/thermal_zone*; do [ -r "$z/temp" ] || continue; '
            't=$(cat "$z/temp" 2>/dev/null) || continue; y=$(cat "$z/type" 2>/dev/null); '
            'echo "${z##*/} $t $y"; done; true')


def read_hottest_c(transport: object, root: str = "", timeout: float = 15.0) -> float | None:
    """The hottest SoC thermal zone of the device now, in °C; None when there is no readable zone,
    the handle cannot run commands (a Ray device handle), or the read failed. Never raises."""
    if not isinstance(transport, Transport):
        return None
    try:
        res = transport.run(thermal_zones_command(root), timeout=timeout)
    except Exception:  # noqa: BLE001 - no reading is a fixed sleep, never a failed campaign
        return None
    return hottest_c(parse_thermal_zones(res.out)) if res.rc == 0 else None
