"""lab.core.signals: SIGTERM/SIGHUP become `Terminated` (exit 143/129), and an inherited ignore stays.

Each case runs in a child interpreter: installing handlers inside pytest would change the suite's
own signal handling."""
from __future__ import annotations

import subprocess
import sys

from helpers import REPO, default_signals

CHILD = """
import os, signal, sys
from lab.core import signals
if sys.argv[1] == "ignored":
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does before exec
signals.install()
try:
    os.kill(os.getpid(), signal.SIGHUP)
    import time; time.sleep(0.5)
    print("still running")
except signals.Terminated as exc:
    print("terminated", signals.exit_code(exc))
"""


def _child(mode: str) -> str:
    """The child starts with the signals at their defaults whatever the suite inherited (a suite
    under nohup ignores SIGHUP, one started with `&` ignores SIGINT); "ignored" re-creates nohup."""
    return subprocess.run([sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True,
                          timeout=60, preexec_fn=default_signals).stdout.strip()


def test_sighup_ends_the_lab_like_ctrl_c_with_exit_129():
    assert _child("default") == "terminated 129"


def test_under_nohup_sighup_stays_ignored():
    assert _child("ignored") == "still running"


PADDLE_CHILD = """
import os, signal, time
from lab.core import signals
signals.install()
import paddle  # installs its own C-level SIGTERM handler ("FatalError: Termination signal")
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(2)
    print("still running")
except signals.Terminated as exc:
    print("terminated", signals.exit_code(exc))
"""


def test_the_handlers_are_installed_again_after_paddle_is_imported():
    """The lab imports paddle after `install()` (first-use builds, references): without the
    re-install Paddle's handler took SIGTERM and the process died with "FatalError"."""
    res = subprocess.run([sys.executable, "-c", PADDLE_CHILD], cwd=REPO, capture_output=True, text=True,
                         timeout=300, preexec_fn=default_signals)
    assert res.stdout.strip() == "terminated 143", (res.returncode, res.stdout, res.stderr[-2000:])
    assert "FatalError" not in res.stderr


BLOCKED_PARENT = """
import signal, subprocess, sys
sys.path.insert(0, sys.argv[1])
from helpers import default_signals, signal_masks
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # a parent that blocks them
signal.signal(signal.SIGHUP, signal.SIG_IGN)  # and ignores this one (nohup)
plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
reset = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], preexec_fn=default_signals)
import time; time.sleep(0.5)
for p in (plain, reset):
    m = signal_masks(p.pid)
    print(m["SigBlk"] & 0x4002 != 0, m["SigIgn"] & 0x1 != 0)
    p.kill()
"""


def test_default_signals_unblocks_and_unignores_what_the_parent_passed_on():
    """The helper every interrupt test starts the lab with: a mask blocked by the parent (and an
    inherited ignore) do not reach the lab, where they silently did before."""
    out = subprocess.run([sys.executable, "-c", BLOCKED_PARENT, str(REPO / "tests")], capture_output=True,
                         text=True, timeout=60).stdout.split("\n")
    assert out[:2] == ["True True", "False False"], out
