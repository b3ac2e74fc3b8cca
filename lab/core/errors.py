"""Error classes of the lab.

Why a hierarchy: the CLI maps user mistakes (ConfigError) to exit code 2 with one line and no
traceback, the scheduler retries only transient DeviceErrors, and a RunnerError / InvalidMeasurement
becomes a failed job with an excerpt instead of a crash. Every message names the file, line,
device or job it is about, and what to do.
"""
from __future__ import annotations

from lab.core.textsafe import clip


class LabError(Exception):
    """Base class for every error the lab raises on purpose. Its message quotes at most an excerpt
    of any long value it echoes (`textsafe.clip`): the message is built here, once, for every
    subclass, so no raise site can put a 100 KB input back on one line."""

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (clip(args[0]),) + args[1:]
        super().__init__(*args)


class ConfigError(LabError):
    """Bad user input: a file, a flag, a name. The CLI exits 2 with this one line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 fix: str | None = None):
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        text = f"{where}{message}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)
        self.path, self.line, self.fix = path, line, fix


class DeviceError(LabError):
    """A device could not be used. `transient` says whether a retry may help."""

    transient: bool = False

    def __init__(self, device: str, message: str, *, transient: bool | None = None):
        super().__init__(f"device {device!r}: {message}")
        self.device = device
        if transient is not None:
            self.transient = transient


class DeviceUnreachable(DeviceError):
    transient = True


class HostLost(DeviceError):
    """The host that reaches the device left (a farm node died mid-campaign). Nothing was measured
    and nothing is wrong with the job or the device, so the job goes back to planned rather than
    failed, and `lab run --resume` runs it once a host reaches the device again (issue 24)."""

    transient = False


class DeviceAuthFailed(DeviceError):
    transient = False


class HostKeyMismatch(DeviceError):
    transient = False


class DeviceTimeout(DeviceError):
    transient = True


class CommandFailed(DeviceError):
    """A command on the device exited non-zero where success was required."""

    transient = False

    def __init__(self, device: str, message: str, *, rc: int | None = None, stderr: str = "",
                 transient: bool | None = None):
        super().__init__(device, message, transient=transient)
        self.rc, self.stderr = rc, stderr


class TransferError(DeviceError):
    """A push or pull did not arrive intact (size or sha256 mismatch, broken stream)."""

    transient = True


class RunnerError(LabError):
    """The runner ran but failed or printed something that is not a valid result."""


class InvalidMeasurement(LabError):
    """A runner result parsed but fails validation (negative times, missing samples, ...)."""


def excerpt(text: str, limit: int = 400) -> str:
    """Last `limit` characters of a (possibly long) output, on one line, for error messages."""
    text = (text or "").strip().replace("\r", "")
    if len(text) > limit:
        text = "…" + text[-limit:]
    return " | ".join(line for line in text.splitlines() if line.strip())
