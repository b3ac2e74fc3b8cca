"""Where the files that travel to devices (lab/runners/) are on the host.

Why here and not in lab/runners/__init__.py: lab/runners/ holds only what travels, and the host
never imports a runner (runners import paddle/paddlelite lazily and run on the device's Python); it
only pushes them by path. Why in core: the runtimes push runners, telemetry pushes the samplers and
the Paddle.js path pushes its page server and session script, so the one definition sits below
all of them.
"""
from __future__ import annotations

from pathlib import Path

RUNNERS_DIR = Path(__file__).resolve().parents[1] / "runners"
RUNNER_CORE = "runner_core.py"  # travels next to every Python runner (runtimes/base.py push_runner)
