"""The transport registry: a devices.yaml `transport:` name -> its class, imported only when used."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lab.core.errors import ConfigError
from lab.core.records import Device
from lab.transport.local import LocalTransport
from lab.transport.registry import TRANSPORTS, forward_refusal, open_transport, transport_class


def test_every_kind_the_inventory_accepts_is_registered():
    from lab.devices.inventory import TRANSPORT_KEYS
    assert set(TRANSPORTS) == set(TRANSPORT_KEYS)


def test_open_transport_builds_the_registered_class(tmp_path):
    t = open_transport(Device(id="here", chip="x", transport="local", workdir=str(tmp_path / "wd")))
    try:
        assert isinstance(t, LocalTransport)
    finally:
        t.close()


def test_an_unknown_transport_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as info:
        open_transport(Device(id="odd", chip="x", transport="serial"))
    assert str(info.value) == "device 'odd': unknown transport 'serial' (use local, ssh or adb)"
    assert transport_class("serial") is None


def test_forward_refusal_is_known_before_any_connection():
    assert forward_refusal("local") is None and forward_refusal("ssh") is None
    assert "adb forward" in forward_refusal("adb")


def test_the_registry_imports_no_client_library_until_a_kind_is_used():
    code = ("import sys; import lab.transport.registry; "
            "print([m for m in ('paramiko', 'adb_shell', 'lab.transport.ssh', 'lab.transport.adb') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
