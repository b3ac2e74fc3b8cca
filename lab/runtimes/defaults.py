"""The Paddle Inference runtime defaults, one definition for every runtime that builds a predictor.

Why: paddle-inference-cpu (pi_runner, batch 1) defaulted to oneDNN on and the serving endpoint
(serving_runner) to oneDNN off, so a serving figure and a batch-1 figure of the same model and
threads measured two different predictors (issue 23). Both runtimes take their predictor
options from here, and both runners build the Config through one function
(lab.runners.runner_core.paddle_config). What each default is and where it is applied:

  threads       the job's `threads` (campaign default [1], lab.measure.campaign): CPU math threads
  oneDNN        ONEDNN below, a job's `onednn:` option overrides it (the runners' own --onednn
                defaults are copies, kept equal by tests/runtimes/test_serving_defaults.py)
  IR optimise   Paddle's default (on): neither runner switches it
  memory optim  on for a legacy .pdmodel only (runner_core.memory_optim: it breaks PIR .json models)
"""
from __future__ import annotations

from lab.core.records import Job

ONEDNN = True  # oneDNN kernels on CPU (Paddle Inference's own fast path on x86)


def onednn(job: Job) -> bool:
    """Whether the job's CPU predictor runs with oneDNN: its `onednn:` option, else the default."""
    return bool(job.option("onednn", ONEDNN))


def onednn_flag(job: Job) -> str:
    """The runners' `--onednn on|off` value for the job."""
    return "on" if onednn(job) else "off"
