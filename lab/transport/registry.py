"""Transport name -> class: how a devices.yaml entry's `transport:` becomes a connection.

Why a registry of loaders: each transport pulls in its own client library (paramiko for ssh,
adb-shell for adb), so a class is imported only when a device of that kind is used, and a new
transport is one entry here. The loaders import by name (not by string) so the layering checks
still see every arrow.
"""
from __future__ import annotations

from typing import Callable

from lab.core.errors import ConfigError


def _local() -> type:
    from lab.transport.local import LocalTransport
    return LocalTransport


def _ssh() -> type:
    from lab.transport.ssh import SSHTransport
    return SSHTransport


def _adb() -> type:
    from lab.transport.adb import ADBTransport
    return ADBTransport


TRANSPORTS: dict[str, Callable[[], type]] = {"local": _local, "ssh": _ssh, "adb": _adb}


def transport_class(kind: str) -> type | None:
    """The class registered for `kind` (imported now); None for a name not in TRANSPORTS."""
    loader = TRANSPORTS.get(kind)
    return loader() if loader is not None else None


def open_transport(device):
    """Open the transport a device entry names."""
    cls = transport_class(device.transport)
    if cls is None:
        raise ConfigError(f"device {device.id!r}: unknown transport {device.transport!r}",
                          fix="use local, ssh or adb")
    return cls(device)


def forward_refusal(kind: str) -> str | None:
    """Why a transport of this kind offers no `forward()` (None when it does); asked at planning,
    without connecting."""
    cls = transport_class(kind)
    if cls is None:
        return f"no transport {kind!r}"
    return cls.forward_refusal


def close_quietly(transport) -> None:
    """Close a transport that may already be dead (closing a broken connection can raise)."""
    if transport is None:
        return
    try:
        transport.close()
    except Exception:  # noqa: BLE001 - nothing useful to do about a failed close
        pass
