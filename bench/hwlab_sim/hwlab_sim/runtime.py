"""The `simulated` runtime: a plug-in (entry point `hwlab.runtimes`) whose devices are simulated.

Why outside the product: its rows are not measurements. They exist to load the lab's orchestration
(planning, Ray farm, store, readers) at the scale of a real farm, with latencies that look like a
real device's because they are replayed from one (`profile.py`). Every row says `source:
simulated`, notes where its distribution came from, and has no power or memory figures (no sensors).

Device tags (devices.yaml `tags`) steer a simulated device:
- `sim-inprocess`: run the runner's `main()` in a thread of the process that runs the job instead of
  a fresh process over the transport (same arguments, same JSON file, same validation): at 1,000
  devices a Python start per job would be the benchmark, not the orchestration;
- `sim-fault:fail` / `sim-fault:hang`: the device fails every job / stops answering (farm faults).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

from hwlab_sim.profile import DEFAULT_PROFILE
from lab.core.errors import DeviceTimeout
from lab.core.records import Backend, Measurement
from lab.devices.inventory import device_python
from lab.runtimes.base import (
    JobContext,
    PreparedJob,
    Runtime,
    TrialResult,
    ensure_results_dir,
)
from lab.runtimes.json_runner import (
    JsonRunnerRuntime,
    measurement_from_docs,
    read_runner_doc,
    trial_from_doc,
)
from lab.transport.base import RunResult, remote_join

RUNNER = Path(__file__).resolve().parent / "sim_runner.py"
SOURCE = "simulated"
NO_POWER = "power unavailable: simulated device (no sensors; latencies replayed from a recorded job)"
_PRECISIONS = ("fp32", "fp16", "int8")


def chip_scale(chip: str, recorded_chip: str) -> float:
    """The simulated chip's factor on the recorded latencies: 1 for the recorded chip, else a fixed
    value in [0.5, 3) from the chip id. Not a prediction of that chip's speed: a spread, so that
    simulated chips differ the way a farm's do, reproducibly."""
    if chip == recorded_chip:
        return 1.0
    h = int(hashlib.sha256(chip.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return round(0.5 + 2.5 * h, 3)


def _fault(ctx: JobContext) -> str:
    faults = [t.split(":", 1)[1] for t in ctx.device.tags if t.startswith("sim-fault:")]
    return faults[0] if faults else "none"


class SimulatedRuntime(JsonRunnerRuntime):
    name = "simulated"
    nvml = False
    sensors = False
    backends = (Backend("sim-cpu", "cpu", "simulated", precisions=_PRECISIONS),
                Backend("sim-aipu", "aipu", "simulated", precisions=_PRECISIONS))

    def prepare(self, ctx: JobContext) -> PreparedJob:
        profile = DEFAULT_PROFILE
        recorded = json.loads(profile.read_text())["from"]
        scale = chip_scale(ctx.job.chip, recorded["chip"])
        p = ctx.job.protocol
        args = ["--scale", str(scale), "--sha", ctx.job.model_sha256, "--warmup", str(p.warmup),
                "--warmup-seconds", str(p.warmup_seconds),
                "--min-iters", str(p.min_iters), "--min-seconds", str(p.min_seconds),
                "--max-seconds", str(p.max_seconds), "--device-seed", f"{ctx.device.id}/{ctx.job.job_id}",
                "--fault", _fault(ctx), "--hang-s", str(2 * p.timeout_s)]
        inprocess = "sim-inprocess" in ctx.device.tags
        if inprocess:
            command = ["--profile", str(profile), *args]
        else:
            rdir = remote_join(ctx.transport.workdir, "runners")
            runner = ctx.transport.push(RUNNER, remote_join(rdir, RUNNER.name)).remote
            remote_profile = ctx.transport.push(profile, remote_join(rdir, profile.name)).remote
            ensure_results_dir(ctx)
            command = [device_python(ctx.device), runner, "--profile", remote_profile, *args]
        note = (f"simulated: latencies replayed from job {recorded['job_id']} ({recorded['model']} on "
                f"{recorded['chip']}, {recorded['backend']}) x {scale:g} for chip {ctx.job.chip}; "
                "nothing ran on a device")
        return PreparedJob(command=command, model_sha256=ctx.job.model_sha256, notes=[note],
                           extra={"inprocess": inprocess})

    run_trials = Runtime.run_trials  # one runner run per trial (the sim runner has no fork mode)

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int, session) -> TrialResult:
        if not prepared.extra["inprocess"]:
            return super().run_trial(ctx, prepared, trial, session)
        tmp = tempfile.mkdtemp(prefix="hwlab-sim-")
        try:  # not TemporaryDirectory: a runner past its deadline may still write here later
            out = str(Path(tmp) / f"{ctx.job.job_id}-t{trial}-{uuid.uuid4().hex[:8]}.json")
            cmd = list(prepared.command) + ["--out", out, "--seed", str(trial)]
            rc = _run_inprocess(cmd, ctx.job.protocol.timeout_s, ctx.job.device)
            text = Path(out).read_text() if Path(out).is_file() else ""
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        doc = read_runner_doc(_NoPull(), out, RunResult(rc=rc, out=text, err=""), ctx.job,
                              prepared.model_sha256)
        doc["command"] = ["sim_runner.py", *cmd]
        return trial_from_doc(doc)

    def measurement(self, ctx: JobContext, prepared: PreparedJob, trials: list[TrialResult]) -> Measurement:
        m = measurement_from_docs(ctx.job, [t.raw for t in trials])
        m.source = SOURCE
        m.power_note = NO_POWER
        m.notes.extend(prepared.notes)
        return m


def _runner_module():
    spec = importlib.util.spec_from_file_location("hwlab_sim_runner", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_RUNNER_MOD = None
_mod_lock = threading.Lock()


def _run_inprocess(cmd: list[str], timeout_s: float, device: str) -> int:
    """The runner's main() in a daemon thread, under the job's deadline like a process would be."""
    global _RUNNER_MOD
    with _mod_lock:
        if _RUNNER_MOD is None:
            _RUNNER_MOD = _runner_module()
    box: list[int] = []
    t = threading.Thread(target=lambda: box.append(_RUNNER_MOD.main(cmd)), daemon=True,
                         name=f"sim-runner-{device}")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise DeviceTimeout(device, f"simulated runner exceeded its {timeout_s:.0f} s deadline")
    return box[0] if box else 1


class _NoPull:
    """read_runner_doc's transport for an in-process runner: nothing to pull, the text is in res.out."""

    def pull(self, remote, local):
        raise FileNotFoundError(remote)
