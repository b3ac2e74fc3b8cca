"""Transports: one protocol (run / push / pull / abort / check / close) over local, SSH and ADB."""
from __future__ import annotations

from lab.transport.base import CheckResult, PushResult, RunResult, Transport, check_device, run_ok, shell_command

__all__ = ["CheckResult", "PushResult", "RunResult", "Transport", "check_device", "run_ok", "shell_command",
           "open_transport", "close_quietly"]


def open_transport(device):
    """Open the transport a device entry names. Imported lazily: paramiko/adb-shell only when used."""
    kind = device.transport
    if kind == "local":
        from lab.transport.local import LocalTransport
        return LocalTransport(device)
    if kind == "ssh":
        from lab.transport.ssh import SSHTransport
        return SSHTransport(device)
    if kind == "adb":
        from lab.transport.adb import ADBTransport
        return ADBTransport(device)
    from lab.core.errors import ConfigError
    raise ConfigError(f"device {device.id!r}: unknown transport {kind!r}", fix="use local, ssh or adb")


def close_quietly(transport) -> None:
    """Close a transport that may already be dead (closing a broken connection can raise)."""
    if transport is None:
        return
    try:
        transport.close()
    except Exception:  # noqa: BLE001 - nothing useful to do about a failed close
        pass
