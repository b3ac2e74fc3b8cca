"""The serving runner's command line, its ready file, and a local process handle.

Why apart from the load generator: phase 2's serving runtime starts the runner on a device through
a transport (push the runner, run `server_argv(...)` in the background, read the ready file, tail
the log on failure); tests and benches start it here as a local process. Both use the same argv
builder and ready-file parser; `LocalServer` is only the loopback flavour of that handle.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.core.errors import ConfigError, DeviceError, RunnerError

RUNNER_PATH = Path(__file__).resolve().parent.parent / "runners" / "serving_runner.py"


class ServingError(RunnerError):
    """The endpoint failed (exited, hung, refused): the message carries its last log lines."""


def parse_base_url(url: str) -> tuple[str, int, str]:
    """http://host[:port][/prefix] -> (host, port, prefix); ConfigError (one line) otherwise.

    Stdlib only, so campaign validation can call it without loading numpy."""
    try:
        parts = urlsplit(str(url))
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"endpoint {url!r} is not an http://host:port URL ({exc})",
                          fix="give e.g. http://127.0.0.1:8000") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"endpoint {url!r} is not an http://host:port URL",
                          fix="give e.g. http://127.0.0.1:8000 (https is not supported)")
    if parts.query or parts.fragment:
        raise ConfigError(f"endpoint {url!r} has a query or fragment",
                          fix="give only the server's base URL, e.g. http://127.0.0.1:8000")
    return parts.hostname, port, parts.path.rstrip("/")


@dataclass(frozen=True)
class ServerSpec:
    """What the runner serves and how: one value per runner flag."""

    name: str = "model"
    model_file: str | None = None
    params_file: str | None = None
    noop: bool = False
    instances: int = 1
    threads: int = 1
    max_batch: int = 1
    max_queue_delay_ms: float = 0.0
    device: str = "cpu"
    onednn: str = "on"  # a copy of lab.runtimes.defaults.ONEDNN (this package is below runtimes; a test keeps it equal)
    host: str = "127.0.0.1"
    port: int = 0
    max_seconds: float = 600.0
    service_ms: float = 0.0
    inject_stall_ms: float = 0.0
    stall_every: int = 0
    inject_crash_after: int = 0
    noop_output_shape: str = "1"
    inputs: tuple[tuple[str, tuple[int, ...], str], ...] = ()  # (name, shape, dtype), -1 = dynamic


def server_argv(spec: ServerSpec, *, python: str = sys.executable, runner: str | Path = RUNNER_PATH,
                ready_file: str) -> list[str]:
    """argv that starts the runner (a list: quote it with shlex.join for a remote shell)."""
    argv = [python, str(runner), "--name", spec.name, "--host", spec.host, "--port", str(spec.port),
            "--ready-file", ready_file, "--instances", str(spec.instances), "--threads", str(spec.threads),
            "--max-batch", str(spec.max_batch), "--max-queue-delay-ms", repr(spec.max_queue_delay_ms),
            "--max-seconds", repr(spec.max_seconds), "--device", spec.device, "--onednn", spec.onednn]
    if spec.noop:
        argv += ["--noop", "--noop-output-shape", spec.noop_output_shape]
    else:
        if not spec.model_file:
            raise ValueError("ServerSpec needs model_file unless noop")
        argv += ["--model-file", spec.model_file]
        if spec.params_file:
            argv += ["--params-file", spec.params_file]
        for name, shape, dtype in spec.inputs:
            argv += ["--input", f"{name}:{'x'.join(str(d) for d in shape)}:{dtype}"]
    if spec.service_ms:
        argv += ["--service-ms", repr(spec.service_ms)]
    if spec.inject_stall_ms:
        argv += ["--inject-stall-ms", repr(spec.inject_stall_ms), "--stall-every", str(spec.stall_every)]
    if spec.inject_crash_after:
        argv += ["--inject-crash-after", str(spec.inject_crash_after)]
    return argv


@dataclass(frozen=True)
class Ready:
    """The runner's ready file: where it listens and what it loaded."""

    pid: int
    host: str
    port: int
    name: str
    instances: int
    max_batch: int
    load_s: float
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_ready(text: str) -> Ready:
    try:
        d = json.loads(text)
        return Ready(int(d["pid"]), str(d["host"]), int(d["port"]), str(d["name"]), int(d["instances"]),
                     int(d["max_batch"]), float(d["load_s"]), d)
    except (ValueError, KeyError, TypeError) as exc:
        raise ServingError(f"serving runner ready file is malformed ({exc}): {text[:200]!r}") from exc


def tail(path: Path | str, lines: int = 12) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


class LocalServer:
    """The runner as a local child process (loopback): start, wait ready, check, stop."""

    def __init__(self, spec: ServerSpec, workdir: Path | str, *, python: str = sys.executable,
                 ready_timeout: float = 60.0, runner: str | Path = RUNNER_PATH):
        self.spec, self.dir, self.python, self.ready_timeout = spec, Path(workdir), python, ready_timeout
        self.runner = runner  # another runner file: a bench compares an older endpoint with this one
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ready_path = self.dir / "serving.ready.json"
        self.log_path = self.dir / "serving.log"
        self.proc: subprocess.Popen | None = None
        self.ready: Ready | None = None

    def start(self) -> "LocalServer":
        self.ready_path.unlink(missing_ok=True)
        argv = server_argv(self.spec, python=self.python, runner=self.runner, ready_file=str(self.ready_path))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.ready_path.exists():
                self.ready = parse_ready(self.ready_path.read_text())
                return self
            if self.proc.poll() is not None:
                raise ServingError(f"serving runner exited with code {self.proc.returncode} before it was "
                                   f"ready; last log lines:\n{tail(self.log_path)}")
            time.sleep(0.05)
        self.stop()
        raise ServingError(f"serving runner not ready after {self.ready_timeout:.0f}s (killed); "
                           f"last log lines:\n{tail(self.log_path)}")

    @property
    def url(self) -> str:
        assert self.ready is not None, "start() first"
        return self.ready.url

    def failure(self) -> str | None:
        """None while the server runs; else why it stopped, with its last log lines."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"serving runner exited with code {self.proc.returncode}; last log lines:\n{tail(self.log_path)}"

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait `grace` seconds, then SIGKILL the process group. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()


# ------------------------------------------------------------------------ on a device (transport)
def _q(x: str) -> str:
    return shlex.quote(str(x))


def _alive_sh(pid: int) -> str:
    """POSIX sh test "pid runs": a zombie counts as gone (the runner is orphaned by nohup's shell,
    and an init that does not reap, as in containers, leaves it a zombie that `kill -0` still sees)."""
    return (f"{{ s=$(ps -o stat= -p {pid} 2>/dev/null) || s=; "
            f"if [ -z \"$s\" ] && ! command -v ps >/dev/null 2>&1; then kill -0 {pid} 2>/dev/null && s=R; fi; "
            f"case \"$s\" in ''|Z*) false;; *) true;; esac; }}")


class DeviceServer:
    """The runner started on a device through a transport (local or SSH), with a bounded lifetime.

    `start` runs it in the background (nohup, output to a log on the device) and polls its ready
    file; `failure` says why it stopped (with its last log lines) or None while it runs; `stop`
    sends SIGTERM, then SIGKILL after `grace` seconds. Failures before ready: a port that cannot
    be bound is a transient DeviceError (the scheduler retries, then marks the device unhealthy);
    anything else (model load) a ServingError carrying the log lines.
    """

    def __init__(self, transport, spec: ServerSpec, *, python: str, runner: str, workdir: str, tag: str,
                 ready_timeout: float = 120.0):
        self.t, self.spec, self.python, self.runner = transport, spec, python, runner
        self.dir = workdir.rstrip("/") + "/serving"
        self.ready_path = f"{self.dir}/{tag}.ready.json"
        self.log_path = f"{self.dir}/{tag}.log"
        self.ready_timeout = ready_timeout
        self.pid: int | None = None
        self.ready: Ready | None = None

    @property
    def device(self) -> str:
        return getattr(self.t, "device_id", "device")

    def start(self) -> "DeviceServer":
        argv = server_argv(self.spec, python=self.python, runner=self.runner, ready_file=self.ready_path)
        cmd = (f"mkdir -p {_q(self.dir)} && rm -f {_q(self.ready_path)} && "
               f"(nohup {' '.join(_q(a) for a in argv)} </dev/null >{_q(self.log_path)} 2>&1 & echo $!)")
        res = self.t.run(cmd, timeout=60)
        try:
            self.pid = int(res.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ServingError(f"could not start the serving runner on {self.device}: {res.err or res.out}")
        deadline = time.monotonic() + self.ready_timeout
        probe_cmd = f"cat {_q(self.ready_path)} 2>/dev/null; {_alive_sh(self.pid)} || echo __DEAD__"
        while time.monotonic() < deadline:
            out = self.t.run(probe_cmd, timeout=30).out
            if out.strip().startswith("{"):
                self.ready = parse_ready(out.strip().splitlines()[0])
                return self
            if "__DEAD__" in out:
                text = self.tail()
                msg = (f"serving runner on {self.device} exited before it was ready; last log lines:\n{text}")
                if "cannot bind" in text:
                    raise DeviceError(self.device, msg, transient=True)
                raise ServingError(msg)
            time.sleep(0.25)
        text = self.tail()
        self.stop()
        raise ServingError(f"serving runner on {self.device} not ready after {self.ready_timeout:.0f}s "
                           f"(killed); last log lines:\n{text}")

    def tail(self, lines: int = 12) -> str:
        try:
            res = self.t.run(f"tail -n {int(lines)} {_q(self.log_path)} 2>/dev/null", timeout=30)
            return res.out.rstrip() or "(empty log)"
        except Exception as exc:  # noqa: BLE001 - the device may be gone; say so in the message
            return f"(log unreadable: {type(exc).__name__}: {exc})"

    def alive(self) -> bool:
        if self.pid is None:
            return False
        return self.t.run(_alive_sh(self.pid), timeout=30).rc == 0

    def failure(self) -> str | None:
        if self.alive():
            return None
        return f"serving runner on {self.device} (pid {self.pid}) has exited; last log lines:\n{self.tail()}"

    def stop(self, grace: float = 10.0) -> bool:
        """SIGTERM, wait up to `grace` s, SIGKILL and wait (up to 10 s) until it is gone. True when
        it had to be killed."""
        if self.pid is None:
            return False
        steps = max(1, int(grace / 0.25))
        alive = _alive_sh(self.pid)
        cmd = (f"kill -TERM {self.pid} 2>/dev/null || exit 0; i=0; "
               f"while {alive} && [ $i -lt {steps} ]; do sleep 0.25; i=$((i+1)); done; "
               f"if {alive}; then kill -KILL {self.pid}; echo __KILLED__; i=0; "
               # SIGKILL is delivered asynchronously: wait (bounded) until it is really gone, so
               # that a caller who restarts on the same port or checks the pid sees it dead
               f"while {alive} && [ $i -lt 40 ]; do sleep 0.25; i=$((i+1)); done; fi")
        try:
            res = self.t.run(cmd, timeout=grace + 30)
        finally:
            self.pid = None
        return "__KILLED__" in res.out
