"""Run `python -m lab.MODULE ARGS` in a child process and bring back what happened as a record.

Why children at all: paddle must not be imported by the CLI process (seconds of start-up, and
`FLAGS_enable_pir_api` only takes effect before paddle initialises), and some tools abort the whole
process (paddle2onnx SIGABRTs on a quantised model). A child turns an import, an abort or a hang
into a `ChildResult`: the exit status, the output, and whether the deadline killed it. Each caller
words its own error from that record (its users know its messages); this module only starts,
waits and kills.

The child sees the lab on PYTHONPATH (it may run from any directory), paddle's glog quiet unless
the user asked otherwise, stdin closed (a child never steals the terminal's input), and the
caller's extra variables on top.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment + the lab on PYTHONPATH + quiet glog (unless set) + `extra`."""
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class ChildResult:
    """How a child ended. After a timeout the child was killed: `timed_out` and a negative code."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def exit_text(self) -> str:
        """'exit 2', or 'killed by signal 6 (SIGABRT)' for a child a signal ended."""
        if self.returncode >= 0:
            return f"exit {self.returncode}"
        try:
            name = signal.Signals(-self.returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-self.returncode} ({name})"


class Child:
    """A started child; `wait` collects it (several can run side by side)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def wait(self, timeout: float) -> ChildResult:
        """Its output and exit status; past `timeout` seconds it is killed and reaped (and so it
        is when the wait itself is interrupted, as subprocess.run does)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            timed_out = True
        except BaseException:
            self.kill()
            raise
        return ChildResult(self.proc.returncode, out or "", err or "", timed_out)

    def kill(self) -> None:
        """Kill and reap it if it still runs (a no-op after `wait`)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()  # reaps it and closes the pipes


def start_module(module: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 cwd: Path | str | None = None, python: str | None = None,
                 merge_stderr: bool = False) -> Child:
    """Start `python -m module *args` (this interpreter unless `python`) with `child_env(env)`;
    `merge_stderr` interleaves stderr into stdout as the child wrote them."""
    proc = subprocess.Popen([python or sys.executable, "-m", module, *args], env=child_env(env),
                            cwd=None if cwd is None else str(cwd), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            text=True, errors="replace")
    return Child(proc)


def run_module(module: str, args: Sequence[str] = (), *, timeout: float,
               env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
               python: str | None = None) -> ChildResult:
    """Run `python -m module *args` to the end (or `timeout`) and return how it went."""
    return start_module(module, args, env=env, cwd=cwd, python=python).wait(timeout)
