"""SIGTERM and SIGHUP end `lab` the way Ctrl-C does.

Why: `timeout`, CI runners and systemd stop a process with SIGTERM, a closed terminal sends
SIGHUP. Python's default for both is to die at once, which left jobs `running` in the store and
runners and samplers going on the device. Raising `Terminated` (a KeyboardInterrupt) in the main
thread sends both signals down the Ctrl-C path: the scheduler aborts the device side, the
orchestrator puts unfinished jobs back to planned, and the CLI exits 128 + the signal number.
"""
from __future__ import annotations

import signal
import threading

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def interruption_name(exc: BaseException) -> str:
    """'SIGTERM', 'SIGHUP' or 'Ctrl-C': for the messages and the store's notes."""
    return exc.name if isinstance(exc, Terminated) else "Ctrl-C"


def exit_code(exc: BaseException) -> int:
    """128 + the signal number, as a shell reports a process ended by that signal."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def _raise(signum, _frame):
    # once is enough: a second signal during the clean-up must not interrupt the clean-up
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def install() -> None:
    """Route SIGTERM/SIGHUP to `Terminated` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # keep nohup's SIGHUP ignore
            signal.signal(sig, _raise)
