"""Helpers shared by the test files: the `lab` CLI as a subprocess, its one-line errors, a `local`
device inventory and the jobs table of a store.

Why one module: a dozen test files started `python -m lab.cli` with their own copy of the same five
lines, and the same "exit 2, one line, no traceback" check; one definition keeps them alike.
Import it as `from helpers import ...` (conftest.py puts tests/ on sys.path).
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def lab_cli(*args, cwd=None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m lab.cli ARGS` (each argument str()-ed), output captured as text, in `cwd` (the
    repository by default)."""
    return subprocess.run([sys.executable, "-m", "lab.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=timeout, env=env)


def repo_env(**extra: str) -> dict:
    """This environment with PYTHONPATH at this checkout, so a CLI started from a workspace imports
    the `lab` under test (a worktree's), not whatever the virtualenv points at."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert the CLI refused with exit 2 and exactly one stderr line (no traceback) that contains
    every needle; return that line."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def config_error(fn, *args, **kwargs) -> str:
    """The message of the ConfigError that `fn(*args, **kwargs)` must raise."""
    from lab.core.errors import ConfigError
    with pytest.raises(ConfigError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


def write_local_devices(ws: Path, workdir: Path | None = None, name: str = "devices.yaml") -> Path:
    """A devices.yaml in `ws` with the one `local` device (its workdir when given)."""
    text = "devices:\n  - id: local\n    chip: generic-x86-cpu\n    transport: local\n"
    if workdir is not None:
        text += f"    workdir: {workdir}\n"
    path = ws / name
    path.write_text(text)
    return path


def write_yaml(path: Path, text: str) -> Path:
    """`text` dedented into `path` (campaign files written inline by a test)."""
    path.write_text(textwrap.dedent(text))
    return path


def job_rows(store: Path, campaign: str) -> list[dict]:
    """The store's jobs rows of `campaign` read directly by SQL (a run may still be writing it):
    [] while the file or its tables do not exist yet."""
    if not store.exists():
        return []
    db = sqlite3.connect(str(store), timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM jobs WHERE campaign=?", (campaign,))]
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        db.close()


def local_tiny_run(tmp_path: Path, campaign: str) -> tuple[list[str], Path, Path]:
    """For tests of a real `lab run` subprocess: tiny_mlp built in the repository's models/, a
    `local` device working in tmp_path/device, `campaign` (YAML text) written. Returns the `lab run`
    argv (no progress line), its store and the device's workdir."""
    from lab.models.build import build
    build("tiny_mlp", out_root=REPO / "models")
    workdir = tmp_path / "device"
    inv = write_local_devices(tmp_path, workdir)
    camp = tmp_path / "c.yaml"
    camp.write_text(campaign)
    store = tmp_path / "s.sqlite"
    argv = [sys.executable, "-m", "lab.cli", "--devices", str(inv), "--store", str(store), "run", str(camp),
            "--models-root", str(REPO / "models"), "--no-progress"]
    return argv, store, workdir


def local_workspace(ws: Path, model: str, campaign: str | None = None) -> Path:
    """`ws` ready for `lab run` from inside it: a `local` device working in ws/device, `model` built
    into ws/models by the CLI, and `campaign` (YAML text, dedented) as ws/c.yaml when given."""
    write_local_devices(ws, ws / "device")
    if campaign is not None:
        write_yaml(ws / "c.yaml", campaign)
    res = lab_cli("models", "--root", ws / "models", "build", model, cwd=ws)
    assert res.returncode == 0, res.stderr
    return ws


def local_campaign(name: str, model: str, *, options: str, protocol: str) -> str:
    """A campaign `name` of `model` on the `local` device with Paddle Inference on 1 thread."""
    return (f"name: {name}\ndevices: [local]\nmodels: [{model}]\nbackends: [paddle-inference-cpu]\n"
            f"threads: [1]\noptions: {options}\nprotocol: {protocol}\n")


def default_signals() -> None:
    """preexec_fn for a `lab` child a test signals: SIGINT/SIGTERM/SIGHUP at their defaults. A
    suite started in the background (`cmd &`: SIGINT ignored) or under nohup (SIGHUP ignored)
    passes those ignores on, and the lab rightly keeps an inherited ignore."""
    import signal
    sigs = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)  # a parent's blocked mask is inherited too


def signal_masks(pid: int) -> dict[str, int]:
    """The signal masks of a live process from /proc/PID/status: SigCgt (caught), SigBlk
    (blocked), SigIgn (ignored), each as an int whose bit (signum - 1) is that signal."""
    masks = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("SigCgt", "SigBlk", "SigIgn"):
                masks[key] = int(value.strip(), 16)
    return masks


def assert_receives(pid: int, *sigs: int) -> None:
    """An interrupt test's precondition: the lab catches each signal and neither blocks nor ignores
    it. A lab that cannot receive SIGINT (blocked or ignored, inherited from a suite run in the
    background) looks exactly like one whose job finished ok."""
    import signal
    masks = signal_masks(pid)
    for sig in sigs:
        bit = 1 << (int(sig) - 1)
        name = signal.Signals(sig).name
        assert masks["SigCgt"] & bit, f"pid {pid} does not catch {name}: {masks}"
        assert not masks["SigBlk"] & bit, f"pid {pid} blocks {name}: {masks}"
        assert not masks["SigIgn"] & bit, f"pid {pid} ignores {name}: {masks}"
