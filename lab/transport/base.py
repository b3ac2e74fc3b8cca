"""The transport protocol every device connection implements.

Why one protocol: the scheduler, the probe and the runner adapters are written once against
`run/push/pull/forward/abort/check/close`; local, SSH and ADB differ only underneath. Contract (DESIGN.md):
- `run()` enforces a wall-clock deadline itself, drains stdout/stderr while waiting and returns
  the real exit code;
- `push()` verifies size + sha256 on the device and skips files that are already there unchanged;
- `abort()` kills every command the transport is running now and everything those started (the
  orchestrator's Ctrl-C); the blocked `run()` returns a non-zero rc or raises a DeviceError, and
  the transport stays usable; with nothing running it does nothing;
- `check()` never raises for a device problem: it returns a `CheckResult` that says whether the
  device answers and can hold the lab's files, and, when not, whether a retry may help (devlib's
  transient vs stable target errors: offline or timed out vs refused key or broken shell);
- `forward(port)` returns a `Forward`: a local port that reaches a port on the device's loopback
  (the serving endpoint, a browser's DevTools), so nothing is opened on the device's network; a
  transport that cannot forward says why in `forward_refusal` (read at planning, before any
  connection) and raises a DeviceError with that reason;
- every path and argument is shell-quoted (`shell_command`).
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence, runtime_checkable

from lab.core.errors import CommandFailed, DeviceError, LabError, excerpt

if TYPE_CHECKING:
    from lab.transport.forward import Forward

CONNECT_TIMEOUT_S = 10.0  # TCP connect + handshake + auth of one device connection
CHECK_TIMEOUT_S = 15.0
_CHECK_TOKEN = "hwlab-check-ok"


@dataclass(frozen=True)
class RunResult:
    rc: int
    out: str
    err: str
    duration_s: float = 0.0


@dataclass(frozen=True)
class PushResult:
    remote: str
    size: int
    sha256: str
    bytes_sent: int  # 0 when skipped because the device already had the same content
    skipped: bool


@dataclass(frozen=True)
class CheckResult:
    """What `Transport.check()` found. `transient` (only meaningful when not ok): a retry may help
    (device offline, connection lost, no answer in time) as opposed to a stable fault that needs a
    person (key refused, host key changed, work dir not writable, broken shell)."""

    ok: bool
    detail: str  # "answered in 0.04 s" or the error, naming the device
    transient: bool = False
    latency_s: float | None = None  # round trip of the check command; None when it did not answer


@runtime_checkable
class Transport(Protocol):
    device_id: str
    workdir: str  # absolute path on the device where the lab keeps runners, models and results
    forward_refusal: str | None  # why `forward()` is refused on this transport; None: it forwards

    def run(self, cmd: Sequence[str] | str, timeout: float, *, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> RunResult:
        """Run a command; raise DeviceTimeout after `timeout` wall-clock seconds (process killed)."""
        ...

    def push(self, local: Path, remote: str) -> PushResult:
        """Copy a file; skip when size+sha256 match on the device; verify after copying."""
        ...

    def pull(self, remote: str, local: Path) -> Path:
        ...

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> "Forward":
        """A local port reaching `remote_host:remote_port` on the device; close() ends it.
        DeviceError (with `forward_refusal`) on a transport that cannot forward."""
        ...

    def abort(self) -> None:
        """Kill the commands running now and what they started; safe from another thread."""
        ...

    def check(self, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
        """Does the device answer and can it hold the lab's files? Never raises for device faults."""
        ...

    def close(self) -> None:
        """Abort what still runs, then release the connection."""
        ...


def run_ok(transport: Transport, cmd: Sequence[str] | str, timeout: float = 60.0, *,
           what: str | None = None) -> RunResult:
    """`run()` that requires exit 0: CommandFailed (with an excerpt of the output) otherwise."""
    res = transport.run(cmd, timeout)
    if res.rc != 0:
        label = what or (cmd if isinstance(cmd, str) else " ".join(str(a) for a in cmd))[:120]
        raise CommandFailed(transport.device_id, f"{label} failed (exit {res.rc}): "
                            f"{excerpt(res.err or res.out)}", rc=res.rc, stderr=res.err)
    return res


def check_device(transport: Transport, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
    """The one `check()` every transport returns: one command that creates the work dir if needed,
    proves it writable and echoes a token. A DeviceError becomes ok=False with its `transient`;
    a bad device entry (ConfigError) is stable."""
    wd = shlex.quote(transport.workdir)
    probe = f".hwlab-check-{time.monotonic_ns()}"
    cmd = (f"mkdir -p {wd} && : > {wd}/{probe} && rm -f {wd}/{probe} && echo {_CHECK_TOKEN}")
    start = time.monotonic()
    try:
        res = transport.run(cmd, timeout)
    except DeviceError as exc:
        return CheckResult(False, str(exc), transient=bool(exc.transient))
    except LabError as exc:  # ConfigError: the inventory entry itself is wrong
        return CheckResult(False, str(exc), transient=False)
    latency = round(time.monotonic() - start, 4)
    if res.rc != 0 or _CHECK_TOKEN not in res.out:
        return CheckResult(False, f"device {transport.device_id!r}: answered, but cannot use its work dir "
                           f"{transport.workdir} (exit {res.rc}): {excerpt(res.err or res.out)}",
                           transient=False, latency_s=latency)
    return CheckResult(True, f"device {transport.device_id!r}: answered in {latency:.2f} s",
                       latency_s=latency)


def shell_command(cmd: Sequence[str] | str, *, env: Mapping[str, str] | None = None,
                  cwd: str | None = None) -> str:
    """One POSIX sh command line with every argument, env value and the cwd quoted.

    A list is quoted element by element; a string is taken as already-built shell text (only
    for fixed commands written in the lab's own code, never with user data pasted in).
    """
    text = cmd if isinstance(cmd, str) else " ".join(shlex.quote(str(a)) for a in cmd)
    if env:
        for key in env:
            if not key.replace("_", "").isalnum():
                raise ValueError(f"bad environment variable name {key!r}")
        assigns = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in env.items())
        text = f"env {assigns} {text}" if not isinstance(cmd, str) else f"export {assigns}; {text}"
    if cwd:
        text = f"cd {shlex.quote(cwd)} && {text}"
    return text


def remote_join(*parts: str) -> str:
    """Join POSIX device paths (devices are POSIX whatever the host is)."""
    out = parts[0]
    for p in parts[1:]:
        out = out.rstrip("/") + "/" + p.lstrip("/")
    return out
