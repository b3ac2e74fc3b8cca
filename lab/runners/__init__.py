"""Files that travel to devices (pi_runner.py, ...) plus host-side helpers to locate them.

A Python runner travels with its companion `runner_core.py` (RUNNER_CORE: the protocol code the
runners share) and nothing else; `lab/runtimes/base.py` `push_runner` pushes both.

Why the host never imports a runner: runners import paddle/paddlelite lazily and run on the
device's Python; the host only needs their path and constants (SCHEMA, RUNNER_VERSION), which it
reads by parsing the file text with `ast`, so no runtime is needed on the host.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

RUNNERS_DIR = Path(__file__).resolve().parent
RUNNER_CORE = "runner_core.py"  # travels next to every Python runner


def runner_path(name: str) -> Path:
    """Absolute path of a runner file shipped with the lab, e.g. runner_path('pi_runner.py')."""
    path = RUNNERS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no runner {name!r} in {RUNNERS_DIR}")
    return path


def read_constants(path: str | Path, names: tuple[str, ...] = ("SCHEMA", "RUNNER", "RUNNER_VERSION")
                   ) -> dict[str, object]:
    """Module-level literal constants of a runner file, read without importing it."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key = node.targets[0].id
            if key in names:
                try:
                    found[key] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return found


def runner_sha256(path: str | Path) -> str:
    """Content hash of a runner file: the transport's push cache and job identity use it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
