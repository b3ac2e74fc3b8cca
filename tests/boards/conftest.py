"""Fixtures: the emulated arm64 and armhf boards, running for the test session (tests/boards/boardctl.py).

Why session scope: a board starts in well under a second, but its first build takes minutes
(scripts/boards/build-*.sh, cached under ~/.cache/hwlab/boards); the fixture builds it when the
cache lacks it, so CI builds each board once per machine.
"""
from __future__ import annotations

import pytest
from boardctl import Board, ensure_built, missing_reason, write_devices


def _board(name: str, tmp_path_factory, ssh_client_key):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    root = ensure_built(name)
    board = Board(name, root, tmp_path_factory.mktemp(f"board-{name}"), ssh_client_key[1]).start()
    try:
        yield board
    finally:
        board.stop()


@pytest.fixture(scope="session")
def arm64_board(tmp_path_factory, ssh_client_key):
    """Debian arm64 with its own aarch64 OpenSSH, Python 3.11, paddlepaddle 3.2.2 and onnxruntime."""
    yield from _board("arm64", tmp_path_factory, ssh_client_key)


@pytest.fixture(scope="session")
def armhf_board(tmp_path_factory, ssh_client_key):
    """A Buildroot-like armv7 board: busybox and dropbear only (no Python, no SFTP)."""
    yield from _board("armhf", tmp_path_factory, ssh_client_key)


@pytest.fixture
def board_device(tmp_path, ssh_client_key):
    """Factory: (devices.yaml path, Device) for a running board, its host key pre-trusted."""
    from lab.devices.inventory import find_device, load_devices

    def make(board: Board, chip: str, **over):
        kh = tmp_path / f"known_hosts-{board.name}"
        kh.write_text(board.known_hosts_line())
        entry = board.device_entry(ssh_client_key[0], kh, chip=chip, **over)
        inv = write_devices(tmp_path / "devices.yaml", [entry])
        return inv, find_device(load_devices(inv), entry["id"])
    return make
