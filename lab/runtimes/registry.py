"""The runtime registry: `Backend.runtime` -> the runtime that runs its jobs.

Adding a runtime is one module and one registry entry (docs/architecture.md "How to add a runtime";
lab/runtimes/base.py for the contract). The entry is either a line below (a runtime shipped with the
lab) or an entry point in the group `hwlab.runtimes` of another installed distribution (a vendor's
runtime, a user's own, the farm simulator in bench/hwlab_sim): the lab then runs it without being
forked. A plugin names a `Runtime` subclass (or instance) whose class attribute `backends` holds
the `Backend` records it runs; those join `lab.devices.backends.BACKENDS` when plugins are loaded.

Why plugins never raise: one broken vendor package must not take the lab down. Its failure is kept
as one line (`plugin_sources`) that `lab devices --check` prints and `get_runtime` quotes.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from lab.core.errors import ConfigError
from lab.core.records import Backend
from lab.runtimes.base import Runtime
from lab.runtimes.onnxruntime import OnnxRuntime
from lab.runtimes.paddle_inference import PaddleInference
from lab.runtimes.paddle_js import PaddleJs
from lab.runtimes.paddle_lite import PaddleLite
from lab.runtimes.paddle_lite_python import PaddleLitePython
from lab.runtimes.serving import Serving

ENTRY_POINT_GROUP = "hwlab.runtimes"
BUILTIN = "builtin"
RUNTIMES: dict[str, Runtime] = {rt.name: rt for rt in (PaddleInference(), PaddleLite(), PaddleLitePython(),
                                                       PaddleJs(), Serving(), OnnxRuntime())}


@dataclass(frozen=True)
class RuntimeSource:
    """Where a runtime came from: `builtin` or `<distribution> <version>`; `error` for a broken one."""

    name: str
    source: str
    backends: tuple[str, ...] = ()
    error: str | None = None

    def line(self) -> str:
        if self.error:
            return f"{self.name} ({self.source}): BROKEN, not loaded: {self.error}"
        return f"{self.name} ({self.source}): backends {', '.join(self.backends) or 'none'}"


_loaded: list[RuntimeSource] | None = None
_load_lock = threading.Lock()


def load_plugins() -> list[RuntimeSource]:
    """Register every runtime of the `hwlab.runtimes` entry-point group once per process (cheap
    after the first call); returns what was found, broken plugins included."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            _loaded = [_load_one(ep) for ep in _entry_points()]
        return list(_loaded)


def _entry_points() -> list:
    from importlib.metadata import entry_points
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_one(ep) -> RuntimeSource:
    dist = getattr(ep, "dist", None)
    source = f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.value}"
    try:
        obj = ep.load()
        runtime = obj() if isinstance(obj, type) else obj
        backends = _check_plugin(ep.name, runtime)
    except Exception as exc:  # noqa: BLE001 - a broken plugin is one line, never a traceback
        text = " ".join(str(exc).split())[:240]
        return RuntimeSource(ep.name, source, error=f"{type(exc).__name__}: {text}")
    from lab.devices.backends import BACKENDS
    RUNTIMES[runtime.name] = runtime
    for b in backends:
        BACKENDS[b.id] = b
    return RuntimeSource(runtime.name, source, tuple(b.id for b in backends))


def _check_plugin(ep_name: str, runtime) -> tuple[Backend, ...]:
    """What a plugin must be: a Runtime named like its entry point, with new backends of its own."""
    from lab.devices.backends import BACKENDS
    if not isinstance(runtime, Runtime):
        raise TypeError(f"{type(runtime).__name__} is not a lab.runtimes.base.Runtime")
    if runtime.name != ep_name:
        raise ValueError(f"runtime name {runtime.name!r} differs from its entry point name {ep_name!r}")
    if runtime.name in RUNTIMES:
        raise ValueError(f"runtime {runtime.name!r} is already registered")
    backends = tuple(getattr(runtime, "backends", ()) or ())
    if not backends:
        raise ValueError("declares no backends (class attribute `backends`: Backend records)")
    for b in backends:
        if not isinstance(b, Backend) or b.runtime != runtime.name:
            raise ValueError(f"backend {b!r} is not a Backend with runtime={runtime.name!r}")
        if b.id in BACKENDS:
            raise ValueError(f"backend id {b.id!r} is already taken")
    return backends


def runtime_sources() -> list[RuntimeSource]:
    """Every runtime the lab can run, with its source: the built-in ones, then the plugins."""
    from lab.devices.backends import BACKENDS
    plugins = load_plugins()
    plugin_names = {p.name for p in plugins}
    builtin = [RuntimeSource(name, BUILTIN, tuple(b for b, rec in BACKENDS.items() if rec.runtime == name))
               for name in RUNTIMES if name not in plugin_names]
    return builtin + plugins


def get_runtime(name: str) -> Runtime:
    load_plugins()
    try:
        return RUNTIMES[name]
    except KeyError:
        broken = [p.line() for p in load_plugins() if p.error and p.name == name]
        raise ConfigError(f"no runtime {name!r} is registered" + (f"; {broken[0]}" if broken else ""),
                          fix="use one of " + ", ".join(sorted(RUNTIMES))) from None
