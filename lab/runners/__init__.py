"""Files that travel to devices: runners (pi_runner.py, ...), samplers and the Paddle.js page.

A Python runner travels with its companion `runner_core.py` (the protocol code the runners share)
and nothing else; `lab/runtimes/base.py` `push_runner` pushes both. Nothing here imports `lab`.
The host finds these files through lab/core/runner_files.py and never imports a runner: runners
import paddle/paddlelite lazily and run on the device's Python.
"""
