"""Python packages a command needs that may be missing: import one, or say in one line what to install.

Why one place: `pip install -e .` installs every pip-installable part of every CPU path, but an
environment made another way (a wheel without extras, a pruned image, an uninstalled package)
ended in `ModuleNotFoundError` and a traceback. Every import of such a package, in the lab's
process or before a child process that needs it starts, goes through `require` / `check`, which
raise a ConfigError (exit 2, one line) naming the exact pip command. The requirement itself is
read from the installed hwlab's metadata, so pyproject.toml stays its one definition.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from lab.core.errors import ConfigError

# import name -> (distribution as pyproject.toml names it, what in the lab needs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "ONNX import and export"),
    "onnxruntime": ("onnxruntime", "ONNX Runtime (onnxruntime-cpu jobs, ONNX agreement checks)"),
    "x2paddle": ("x2paddle", "ONNX import (`lab models import`)"),
    "paddle2onnx": ("paddle2onnx", "ONNX export (`lab models build --onnx`)"),
    "six": ("six", "x2paddle"),
    "requests": ("requests", "x2paddle"),
    "mlperf_loadgen": ("mlcommons-loadgen", "serving load (MLPerf LoadGen)"),
    "starlette": ("starlette", "the serving endpoint"),
    "uvicorn": ("uvicorn", "the serving endpoint"),
    "websocket": ("websocket-client", "the Paddle.js page (DevTools protocol)"),
    "psutil": ("psutil", "the Paddle.js page (browser process tree)"),
    "ray": ("ray", "the Ray engine (`--engine ray`, `lab node`)"),
    "pynvml": ("nvidia-ml-py", "NVML telemetry on NVIDIA GPUs"),
}


def requirement(dist: str) -> str:
    """The requirement pyproject.toml gives `dist` ('onnx>=1.16', 'ray[default]>=2.60'), or its
    bare name when hwlab's metadata is not there (a source tree on PYTHONPATH)."""
    from importlib import metadata
    try:
        reqs = metadata.requires("hwlab") or []
    except metadata.PackageNotFoundError:
        reqs = []
    for req in reqs:
        spec = req.split(";", 1)[0].strip()
        name = spec.split("[", 1)[0]
        for sep in "<>=!~ ":
            name = name.split(sep, 1)[0]
        if name.lower().replace("_", "-") == dist.lower():
            return spec
    return dist


def install_command(*modules: str) -> str:
    """The one command that installs what importing `modules` needs, for this interpreter."""
    reqs = " ".join(f"'{requirement(PACKAGES.get(m, (m,))[0])}'" for m in modules)
    return f"{sys.executable} -m pip install {reqs}"


def missing(module: str) -> str | None:
    """None when `module` can be imported here; else the one line that says what to install
    (found without importing it: a cheap check before a child process that imports it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    what = PACKAGES.get(module, (module, "this command"))[1]
    return (f"{what} needs the Python package {PACKAGES.get(module, (module,))[0]!r}, which is not "
            f"installed for {sys.executable}")


def check(*modules: str) -> None:
    """Raise the ConfigError of the first of `modules` that cannot be imported."""
    for module in modules:
        why = missing(module)
        if why:
            raise ConfigError(why, fix=f"run `{install_command(module)}`")


def require(module: str) -> ModuleType:
    """`import module`, or the one-line ConfigError with the pip command (exit 2)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = (exc.name or module).split(".")[0]
        top = top if top in PACKAGES else module.split(".")[0]
        what = PACKAGES.get(top, (top, "this command"))[1]
        raise ConfigError(f"{what} needs the Python package {PACKAGES.get(top, (top,))[0]!r}, which "
                          f"cannot be imported ({exc})", fix=f"run `{install_command(top)}`") from None
