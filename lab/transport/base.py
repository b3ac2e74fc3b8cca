"""The transport protocol every device connection implements.

Why one protocol: the scheduler, the probe and the runner adapters are written once against
`run/push/pull/close`; local, SSH and ADB differ only underneath. Contract (DESIGN.md):
- `run()` enforces a wall-clock deadline itself, drains stdout/stderr while waiting and returns
  the real exit code;
- `push()` verifies size + sha256 on the device and skips files that are already there unchanged;
- every path and argument is shell-quoted (`shell_command`).
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence, runtime_checkable


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


@runtime_checkable
class Transport(Protocol):
    device_id: str
    workdir: str  # absolute path on the device where the lab keeps runners, models and results

    def run(self, cmd: Sequence[str] | str, timeout: float, *, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> RunResult:
        """Run a command; raise DeviceTimeout after `timeout` wall-clock seconds (process killed)."""
        ...

    def push(self, local: Path, remote: str) -> PushResult:
        """Copy a file; skip when size+sha256 match on the device; verify after copying."""
        ...

    def pull(self, remote: str, local: Path) -> Path:
        ...

    def close(self) -> None:
        ...


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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def remote_join(*parts: str) -> str:
    """Join POSIX device paths (devices are POSIX whatever the host is)."""
    out = parts[0]
    for p in parts[1:]:
        out = out.rstrip("/") + "/" + p.lstrip("/")
    return out
