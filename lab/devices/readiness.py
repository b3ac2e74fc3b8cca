"""Which deployment paths this host can run now, and the one command that readies each one.

Why: `pip install -e .` installs every pip-installable part of every CPU path, but Chromium, the
Paddle.js npm packages and converter, the Paddle Lite venv and Ray are not pip's to install (or
are extras). A newcomer learnt which was missing from the first command that needed it.
`lab devices --check local` now lists every path as ready or not, with the command to run. The
checks are cheap and import nothing heavy (`find_spec`, `which`, file tests): they describe this
host, where the `local` device runs.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from lab.core import optional
from lab.core.childproc import REPO_ROOT
from lab.core.runner_files import RUNNERS_DIR
from lab.core.versions import dist_version

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")  # lab.web.cdp looks for these
CHROMIUM_ENV = "HWLAB_CHROMIUM"
LITE_VENV = REPO_ROOT / ".venv-lite"
LITE_SETUP = "bash scripts/setup-lite-opt.sh .venv-lite"
WEB_SETUP = "bash scripts/install-web-deps.sh"
PIP_ALL = "pip install -e ."


@dataclass(frozen=True)
class PathReadiness:
    """One deployment path: ready, or what is missing and the one command that fixes it."""

    path: str
    ready: bool
    missing: tuple[str, ...] = ()
    fix: str = ""

    def line(self) -> str:
        if self.ready:
            return f"  {self.path:<22} ready"
        return f"  {self.path:<22} NOT READY ({'; '.join(self.missing)}): run `{self.fix}`"


def _python_path(name: str, modules: tuple[str, ...], fix: str | None = None) -> PathReadiness:
    """A path that needs only Python packages: one pip command for all of those missing."""
    gone = [m for m in modules if optional.missing(m)]
    if not gone:
        return PathReadiness(name, True)
    return PathReadiness(name, False, tuple(f"Python package {optional.PACKAGES.get(m, (m,))[0]}" for m in gone),
                         fix or optional.install_command(*gone))


def chromium() -> str | None:
    """The browser the Paddle.js page would use here ($HWLAB_CHROMIUM, else the first on PATH)."""
    env = os.environ.get(CHROMIUM_ENV)
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    return next((found for found in map(shutil.which, CHROMIUM_NAMES) if found), None)


def _web() -> PathReadiness:
    missing = [f"Python package {optional.PACKAGES[m][0]}" for m in ("websocket", "psutil") if optional.missing(m)]
    if dist_version("paddlejsconverter") is None:  # what lab.convert.paddlejs asks for
        missing.append("paddlejsconverter (pip --no-deps)")
    if not (RUNNERS_DIR / "web" / "node_modules" / "@paddlejs").is_dir():
        missing.append("npm packages of lab/runners/web")
    if chromium() is None:
        missing.append(f"Chromium (or ${CHROMIUM_ENV})")
    return PathReadiness("paddle-js (web)", not missing, tuple(missing), WEB_SETUP)


def _lite() -> PathReadiness:
    missing = []
    if not (os.environ.get("HWLAB_PADDLE_LITE_OPT") or shutil.which("paddle_lite_opt")
            or (LITE_VENV / "bin" / "paddle_lite_opt").is_file()):
        missing.append("paddle_lite_opt")
    if not (LITE_VENV / "bin" / "python").is_file():
        missing.append(f"the paddlelite venv {LITE_VENV.name}/ (Python 3.10)")
    return PathReadiness("paddle-lite (opt, x86)", not missing, tuple(missing), LITE_SETUP)


def deployment_paths() -> list[PathReadiness]:
    """Every deployment path of this host, in the order a newcomer meets them."""
    return [
        _python_path("paddle-inference", ("paddle",), PIP_ALL),
        _python_path("onnxruntime", ("onnxruntime",)),
        _python_path("onnx import/export", ("onnx", "x2paddle", "six", "requests", "paddle2onnx", "onnxruntime")),
        _python_path("serving", ("starlette", "uvicorn", "mlperf_loadgen")),
        _lite(),
        _web(),
        _python_path("ray", ("ray",)),
    ]
