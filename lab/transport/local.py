"""The `local` transport: this machine, used exactly as a remote device would be.

Why not just call Python in-process: the runner must run as its own process (cold start, peak RSS
of that process only) and files go through a device work dir, so the local path exercises the same
push/run/pull code as SSH and ADB.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from lab.core.errors import DeviceTimeout, TransferError
from lab.core.hashing import sha256_file
from lab.transport.base import CHECK_TIMEOUT_S, CheckResult, PushResult, RunResult, check_device, shell_command


class LocalTransport:
    forward_refusal = None  # the device's loopback is this machine's

    def __init__(self, device):
        self.device_id = device.id
        workdir = device.workdir or "~/.cache/hwlab/device-local"
        self.workdir = str(Path(os.path.expanduser(workdir)).resolve())
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        self._procs: set[subprocess.Popen] = set()  # running commands, for abort()

    def run(self, cmd: Sequence[str] | str, timeout: float, *, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> RunResult:
        text = shell_command(cmd, env=env, cwd=cwd)
        start = time.monotonic()
        # own process group so a deadline kills the runner and anything it started
        proc = subprocess.Popen(["/bin/sh", "-c", text], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        self._procs.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise DeviceTimeout(self.device_id, f"command exceeded its {timeout:.0f} s deadline: "
                                f"{text[:120]}")
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            self._procs.discard(proc)
        return RunResult(proc.returncode, out.decode(errors="replace"),
                         err.decode(errors="replace"), time.monotonic() - start)

    def push(self, local: Path, remote: str) -> PushResult:
        local, dest = Path(local), Path(remote)
        size, digest = local.stat().st_size, sha256_file(local)
        if dest.exists() and dest.stat().st_size == size and sha256_file(dest) == digest:
            return PushResult(remote, size, digest, 0, True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(local, tmp)
        if tmp.stat().st_size != size or sha256_file(tmp) != digest:
            tmp.unlink(missing_ok=True)
            raise TransferError(self.device_id, f"push of {local} to {remote}: content mismatch")
        os.replace(tmp, dest)
        return PushResult(remote, size, digest, size, False)

    def pull(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(remote, local)
        except FileNotFoundError as exc:
            raise TransferError(self.device_id, f"pull {remote}: not found", transient=False) from exc
        return local

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1"):
        """The device's loopback is this machine's: nothing to forward."""
        from lab.transport.forward import no_forward
        return no_forward(remote_port)

    def abort(self) -> None:
        """Kill every command this transport is running now (Ctrl-C of the orchestrator)."""
        for proc in list(self._procs):
            _kill_group(proc)

    def check(self, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
        return check_device(self, timeout)

    def close(self) -> None:
        self.abort()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
