"""A browser started for a Paddle.js job is stopped when the run is interrupted (the job thread is
never joined then): Scheduler.abort_running -> lab.web.cdp.close_all."""
from __future__ import annotations

import shutil

import pytest

from lab.web import cdp
from lab.measure.scheduler import Scheduler, SchedulerOptions

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium")]


def test_abort_running_stops_live_browsers(tmp_path):
    browser = cdp.LocalChromium()
    browser.start()
    pid = browser.proc.pid
    assert cdp._alive(pid)
    Scheduler(store=None, devices=[], options=SchedulerOptions(progress=False)).abort_running()
    assert not cdp._alive(pid)
    assert cdp.close_all() == 0  # nothing left to stop
