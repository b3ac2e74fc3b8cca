"""Shared fixtures for the ADB tests: a lab key, and adbd doubles with Kirin/RK-like sandboxes.

Imported by tests/test_adb*.py and tests/test_lite*.py with `from conftest_adb import *`
(a plain module, so it does not clash with the lead's tests/conftest.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from adbd_double import AdbdDouble, Faults, make_device_root  # noqa: E402

from lab.core.records import Device  # noqa: E402


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory):
    """One RSA key for the session (keygen costs ~0.1-1 s); HWLAB_ADB_KEY points at it."""
    from lab.transport.adb import ensure_adb_key
    path = tmp_path_factory.mktemp("adbkey") / "adbkey"
    ensure_adb_key(path)
    return path


@pytest.fixture
def adb_env(adb_key, monkeypatch):
    monkeypatch.setenv("HWLAB_ADB_KEY", str(adb_key))
    return adb_key


def start_double(tmp_path: Path, adb_key: Path, profile: str = "kirin", **kw) -> AdbdDouble:
    root = make_device_root(tmp_path / f"{profile}-root", profile)
    pub = Path(str(adb_key) + ".pub").read_bytes()
    srv = AdbdDouble(root, authorized_keys=[pub], **kw)
    srv.start()
    return srv


def adb_device(srv: AdbdDouble, dev_id: str = "phone", **kw) -> Device:
    fields = dict(id=dev_id, chip="kirin990", transport="adb", serial=srv.serial,
                  workdir="/data/local/tmp/hwlab", python=sys.executable)
    fields.update(kw)
    return Device(**fields)


@pytest.fixture
def kirin(tmp_path, adb_env):
    srv = start_double(tmp_path, adb_env, "kirin")
    yield srv
    srv.stop()


__all__ = ["AdbdDouble", "Faults", "make_device_root", "adb_key", "adb_env", "start_double",
           "adb_device", "kirin"]
