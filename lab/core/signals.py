"""SIGTERM and SIGHUP end `lab` the way Ctrl-C does.

Why: `timeout`, CI runners and systemd stop a process with SIGTERM, a closed terminal sends
SIGHUP. Python's default for both is to die at once, which left jobs `running` in the store and
runners and samplers going on the device. Raising `Terminated` (a KeyboardInterrupt) in the main
thread sends both signals down the Ctrl-C path: the scheduler aborts the device side, the
orchestrator puts unfinished jobs back to planned, and the CLI exits 128 + the signal number.
"""
from __future__ import annotations

import importlib.abc
import signal
import sys
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
    """Route SIGTERM/SIGHUP to `Terminated` (main thread only; elsewhere a no-op), and again right
    after any later import of a module in TAKERS (see `_ReinstallAfter`)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # keep nohup's SIGHUP ignore
            signal.signal(sig, _raise)  # sigaction again: undoes a C library's own handler
    if not any(isinstance(f, _ReinstallAfter) for f in sys.meta_path):
        sys.meta_path.insert(0, _ReinstallAfter())


# Modules whose import installs a C-level SIGTERM handler of their own. Paddle's prints "FatalError:
# Termination signal" and kills the process, so a lab that imported it on first use (a zoo build, a
# reference) died by the signal with its running job left `running`. Python's signal.getsignal()
# still names the lab's handler afterwards: only installing it again undoes that.
TAKERS = ("paddle",)


class _ReinstallAfter(importlib.abc.MetaPathFinder):
    """Finds nothing itself; for a TAKERS module it wraps the real loader so that `install()` runs
    again the moment that module has been executed, whoever imported it."""

    def find_spec(self, name, path=None, target=None):
        if name not in TAKERS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ThenInstall(spec.loader)
                return spec
        return None


class _ThenInstall(importlib.abc.Loader):
    """A loader that runs the real one, then `install()`; anything else goes to the real one."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            self._loader.exec_module(module)
        finally:
            install()

    def __getattr__(self, name):  # get_resource_reader, is_package, get_data...
        if name == "_loader":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)
