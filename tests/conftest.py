"""Shared pytest fixtures (keep small and generic; others may add fixtures below).

Why session-scoped SSH fixtures: starting sshd and generating keys is cheap but not free on two
busy cores; tests that break the server (host key change, stop) start their own `Sshd`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # helper modules such as sshd_fleet


@pytest.fixture(scope="session", autouse=True)
def _private_device_locks(tmp_path_factory):
    """Device locks per test session: two test runs on one machine (CI and a developer, or two
    worktrees) must not see each other's `local` device as busy. Subprocesses inherit it."""
    import os
    old = os.environ.get("HWLAB_LOCK_DIR")
    os.environ["HWLAB_LOCK_DIR"] = str(tmp_path_factory.mktemp("locks"))
    yield
    if old is None:
        os.environ.pop("HWLAB_LOCK_DIR", None)
    else:
        os.environ["HWLAB_LOCK_DIR"] = old


@pytest.fixture(scope="session")
def ssh_client_key(tmp_path_factory):
    """An unencrypted ed25519 client key pair: (private path, public path)."""
    from sshd_fleet import keygen, sshd_missing_reason
    reason = sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    key = keygen(tmp_path_factory.mktemp("sshkey") / "id_ed25519")
    return key, Path(str(key) + ".pub")


@pytest.fixture(scope="session")
def loopback_sshd(tmp_path_factory, ssh_client_key):
    """A real OpenSSH server on 127.0.0.1:<random port> with its own host key and work dir."""
    from sshd_fleet import Sshd
    server = Sshd(tmp_path_factory.mktemp("sshd"), client_pub=ssh_client_key[1]).start()
    yield server
    server.stop()


@pytest.fixture
def ssh_device(tmp_path, ssh_client_key):
    """Factory: a `Device` for an `Sshd`, its host key pre-trusted in a fresh known_hosts file."""
    from lab.core.records import Device

    def make(server, *, known: bool = True, **over) -> Device:
        kh = tmp_path / f"known_hosts-{server.port}-{len(list(tmp_path.glob('known_hosts-*')))}"
        kh.write_text(server.known_hosts_line() if known else "")
        fields = dict(id="sshtest", chip="generic-x86-cpu", transport="ssh", host=server.addr,
                      port=server.port, user="root", key_file=str(ssh_client_key[0]), known_hosts=str(kh),
                      workdir=str(server.workdir), python=sys.executable)
        fields.update(over)
        return Device(**fields)
    return make


def pytest_sessionfinish(session, exitstatus):
    """HWLAB_TESTS_NO_SKIP=1 (set by .ci/run): a skipped test is a failure. Skips here mean a real
    part is missing (sshd, chromium, the paddlelite venv, node); CI installs them all, so a skip
    there means an install step broke and the part's tests silently did not run."""
    import os
    if os.environ.get("HWLAB_TESTS_NO_SKIP") != "1" or exitstatus not in (0,):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for rep in skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            reporter.write_line(f"HWLAB_TESTS_NO_SKIP: {rep.nodeid} skipped: {reason}", red=True)
        session.exitstatus = 1
