"""Paddle Lite through the user's `benchmark_bin` (phones and boards, NPUs through NNAdapter).

Why it differs from the JSON runners: on phones and NPU boards the runtime is the user's own
`benchmark_bin` build (one per ABI, NNAdapter HAL + vendor DDK next to it), which prints text,
not runner JSON, and reports only init / first / min / max / avg. So:
- every trial is a fresh benchmark_bin process (cold init + first each time), with
  `--warmup = protocol.warmup` and `--repeats = max(protocol.min_iters, 1)`;
- the Measurement keeps avg (mean of the trial averages), the extreme min/max, init as load_ms,
  first as first_ms; p50 and its CI are over the per-trial averages (>= 3 trials), p90/p99 are
  unknown (None), and a note says so;
- memory comes from `--enable_memory_profile` only where the binary implements it (v2.12+,
  detected from `--help`), else None with a reason;
- a `.nb` converted for the backend's target (lab/convert/lite.py) is pushed when present; else
  the raw legacy model is pushed and the tool converts it in-process (memory flagged). An int8
  job runs the `-int8` model's `.nb` (lab.models.zoo.artifact_id);
- output checks without an extra process: trial i feeds reference sample i through
  `--input_data_path` (v2.10+, text files) and, where `--help` lists `--output_data_path`, writes
  every output back (compared in full); else only the printed per-output mean/std is compared
  (marked weak). So min(trials, REFERENCE_SET_SIZE) samples are checked.
"""
from __future__ import annotations

import dataclasses
import hashlib
import shlex
import statistics
import tempfile
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError, RunnerError, excerpt
from lab.core.records import Device, Job, Measurement
from lab.results.opprofile import OpProfile, from_lite
from lab.runtimes.benchmark_bin import (BenchSpec, build_shell, is_old_tool, parse_op_profile, parse_output,
                                     parse_values, supports_input_data, supports_memory_profile,
                                     supports_op_time_profile, supports_output_data)
from lab.core.hashing import sha256_file
from lab.transport.base import remote_join
from lab.runtimes.base import (JobContext, PreparedJob, Runtime, TrialResult, ensure_results_dir, input_shapes,
                   median_or_none, push_model)
from lab.runtimes.checks import CheckOutputs

# backend id -> lite_convert target name
LITE_TARGETS = {"paddle-lite-arm": "arm", "paddle-lite-opencl": "opencl",
                "paddle-lite-kirin-npu": "kirin-npu", "paddle-lite-rockchip-npu": "rockchip-npu",
                "paddle-lite-timvx": "timvx"}
MINMAX_NOTE = ("benchmark_bin reports min/max/avg only; median/CI from per-trial avgs "
               "(p90/p99 unknown)")

_TOOL_CACHE: dict[tuple[str, str], str] = {}  # (device id, binary sha256) -> --help text


def nb_path(artifact, target: str) -> Path:
    """Where lite_convert puts the `.nb` of an artifact for one target."""
    return Path(artifact.dir) / "lite" / f"{target}.nb"


def _push_dir(transport, local_dir: Path, remote_dir: str) -> list[str]:
    pushed = []
    for f in sorted(Path(local_dir).iterdir()):
        if f.is_file():
            pushed.append(transport.push(f, remote_join(remote_dir, f.name)).remote)
    return pushed


def _tool_help(transport, device: Device, remote_bin: str, sha: str, lib_env: str) -> str:
    key = (device.id, sha)
    if key not in _TOOL_CACHE:
        r = transport.run(f"{lib_env}{shlex.quote(remote_bin)} --help 2>&1", timeout=60)
        _TOOL_CACHE[key] = r.out + r.err
    return _TOOL_CACHE[key]


def _value_text(arr) -> str:
    return " ".join(repr(float(v)) for v in arr.ravel().tolist()) + "\n"


def prepare_checks(ctx: JobContext, help_text: str, lite_dir: str, results_dir: str) -> tuple[dict, str]:
    """trial -> (input_data_path, output_data_path or None) for the reference samples the trials
    carry; and a note when no check can ride on them."""
    checks = ctx.checks
    if checks is None or checks.reference_file is None:
        return {}, ""
    if not supports_input_data(help_text):
        return {}, "agreement not checked: this benchmark_bin has no --input_data_path (v2.10+)"
    outputs = supports_output_data(help_text)
    art, transport = ctx.artifact, ctx.transport
    remote_dir = remote_join(lite_dir, "checks", f"{art.id}-{art.sha256[:12]}")
    plan = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(min(ctx.job.protocol.trials, checks.n_reference)):
            paths = []
            for name, arr in checks.sample_inputs(i).items():
                local = Path(tmp) / f"ref{i}-{name}.txt"
                local.write_text(_value_text(arr))
                paths.append(transport.push(local, remote_join(remote_dir, local.name)).remote)
            outs = ":".join(remote_join(results_dir, f"{ctx.job.job_id}-t{i}-out{j}.txt")
                            for j in range(checks.n_outputs)) if outputs else None
            plan[i] = (":".join(paths), outs)
    return plan, ""


def _benchmark_bin(job: Job, device: Device) -> Path:
    """The host path of the device's benchmark_bin build: configured and present (ConfigError)."""
    if not device.benchmark_bin:
        raise ConfigError(f"device {device.id!r}: backend {job.backend} needs 'benchmark_bin: <host path>' (your "
                          f"Paddle Lite build for ABI {device.abi or '?'})", path=device.source or None,
                          line=device.line or None)
    binary = Path(device.benchmark_bin).expanduser()
    if not binary.is_file():
        raise ConfigError(f"device {device.id!r}: benchmark_bin {binary} does not exist",
                          fix="build it with lite/tools/build_android.sh --with_benchmark=ON full_publish")
    return binary


def _push_nnadapter_libs(ctx: JobContext, lite_dir: str) -> str | None:
    """The NNAdapter HAL + vendor DDK libs of the backend's device, pushed; their device dir (None:
    a backend without NNAdapter)."""
    job, device, backend = ctx.job, ctx.device, ctx.backend
    if not backend.nnadapter_device:
        return None
    libs = (device.nnadapter_libs or {}).get(backend.nnadapter_device)
    if not libs or not Path(libs).expanduser().is_dir():
        raise ConfigError(f"device {device.id!r}: backend {job.backend} needs nnadapter_libs: "
                          f"{{{backend.nnadapter_device}: <host dir with libnnadapter.so, the HAL "
                          f"and vendor DDK libs>}}" + (f"; {libs} is not a directory" if libs else ""),
                          path=device.source or None, line=device.line or None)
    lib_dir = remote_join(lite_dir, "libs", backend.nnadapter_device)
    _push_dir(ctx.transport, Path(libs).expanduser(), lib_dir)
    return lib_dir


def _push_model_files(ctx: JobContext, old: bool, results_dir: str,
                      notes: list[str]) -> tuple[dict[str, Any], str]:
    """(BenchSpec model fields, model sha256): the `.nb` converted for the backend's target where
    there is one; else the raw legacy model, which the tool converts in-process (noted)."""
    job, artifact, transport = ctx.job, ctx.artifact, ctx.transport
    target = LITE_TARGETS.get(job.backend, "arm")
    nb = nb_path(artifact, target)
    if nb.is_file():
        return {"optimized_model_file": push_model(transport, artifact, [nb])[nb.name]}, sha256_file(nb)
    if ctx.backend.nnadapter_device == "rockchip_npu":
        raise ConfigError(f"job {job.job_id}: the Rockchip NPU runs only fully-quantised int8 "
                          f"models and {artifact.id} has no {target} .nb",
                          fix=f"lab models build {artifact.id} --lite-target rockchip-npu "
                              "(from a PaddleSlim full-quant model)")
    if old:
        raise ConfigError(f"device {ctx.device.id!r}: this benchmark_bin is the <= v2.9 tool, which needs a .nb",
                          fix=f"lab models build {artifact.id} --lite-target {target}")
    if not (artifact.pdmodel_path and artifact.legacy_pdiparams_path):
        raise ConfigError(f"job {job.job_id}: {artifact.id} has no legacy .pdmodel (Paddle Lite "
                          "cannot read .json models)", fix="rebuild the model with the legacy export")
    pm, pp = Path(artifact.pdmodel_path), Path(artifact.legacy_pdiparams_path)
    remote = push_model(transport, artifact, [pm, pp])
    notes.append("raw model converted in-process by benchmark_bin: init excludes the conversion, "
                 "peak memory includes it")
    return ({"model_file": remote[pm.name], "param_file": remote[pp.name],
             "optimized_model_file": remote_join(results_dir, f"{job.job_id}-opt.nb")},
            artifact.legacy_sha256 or artifact.sha256)


def _bench_spec(ctx: JobContext, lite_dir: str, model_kw: dict[str, Any], **fixed: Any) -> BenchSpec:
    """The job's benchmark_bin run: its protocol, threads, power mode and precision for the
    backend's processor, run in `lite_dir`; `fixed` are the device paths and tool facts prepare()
    decided."""
    job, backend, p = ctx.job, ctx.backend, ctx.job.protocol
    precision = job.precision if job.precision in ("fp32", "fp16") else "fp32"
    gpu = backend.processor == "gpu"
    return BenchSpec(
        backend=backend.lite_backend or "arm", nnadapter_device=backend.nnadapter_device,
        threads=job.threads, power_mode=job.option("power_mode") or ctx.device.power_mode,
        warmup=p.warmup, repeats=max(p.min_iters, 1),
        cpu_precision=precision if backend.processor == "cpu" else "fp32",
        gpu_precision=precision if gpu else None,
        opencl_cache_dir=remote_join(lite_dir, "opencl") if gpu else None, cwd=lite_dir,
        cpu_mask=job.option("cpu_mask"), **fixed, **model_kw)


class PaddleLite(Runtime):
    name = "paddle-lite"
    nvml = False  # sh sampler only: no NVML on Paddle Lite devices
    output_checks = True  # reference samples ride on the trials (prepare_checks)

    def prepare(self, ctx: JobContext) -> PreparedJob:
        job, transport, backend = ctx.job, ctx.transport, ctx.backend
        binary = _benchmark_bin(job, ctx.device)
        shapes = [shape for _spec, shape in input_shapes(ctx, static=True, dtypes=("float32",))]
        lite_dir = remote_join(transport.workdir, "lite")
        bin_sha = sha256_file(binary)
        remote_bin = transport.push(binary, remote_join(lite_dir, f"benchmark_bin-{bin_sha[:12]}")).remote
        lib_dir = _push_nnadapter_libs(ctx, lite_dir)
        lib_env = (f"LD_LIBRARY_PATH={shlex.quote(lib_dir)}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}} "
                   if lib_dir else "")
        help_text = _tool_help(transport, ctx.device, remote_bin, bin_sha, lib_env)
        old = is_old_tool(help_text)
        memory = (not old) and supports_memory_profile(help_text)
        results_dir = ensure_results_dir(ctx)
        notes = [MINMAX_NOTE]
        model_kw, model_hash = _push_model_files(ctx, old, results_dir, notes)
        spec = _bench_spec(ctx, lite_dir, model_kw, binary=remote_bin, input_shapes=shapes, lib_dir=lib_dir,
                           enable_memory_profile=memory, old_tool=old,
                           result_path=remote_join(results_dir, f"{job.job_id}-result.txt") if old else None)
        try:
            command = build_shell(spec)
        except ValueError as exc:
            raise ConfigError(f"job {job.job_id}: {exc}") from None
        if backend.processor == "gpu":
            transport.run(["mkdir", "-p", spec.opencl_cache_dir], timeout=30)
        check_plan, check_note = prepare_checks(ctx, help_text, lite_dir, results_dir)
        return PreparedJob(command=command, model_sha256=model_hash, notes=notes,
                           extra={"spec": spec, "old": old, "memory": memory,
                                  "check_plan": check_plan, "check_note": check_note,
                                  "op_flag": supports_op_time_profile(help_text)})

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int,
                  session: Any | None) -> TrialResult:
        spec, old = prepared.extra["spec"], prepared.extra["old"]
        command = prepared.command
        check = prepared.extra.get("check_plan", {}).get(trial)
        if check is not None:
            command = build_shell(dataclasses.replace(spec, input_data_path=check[0],
                                                      output_data_path=check[1]))
        if old:
            ctx.transport.run(["rm", "-f", spec.result_path], timeout=30)
        res = ctx.transport.run(command, timeout=ctx.job.protocol.timeout_s)
        text = res.out + ("\n" + res.err if res.err else "")
        if old:
            cat = ctx.transport.run(["cat", spec.result_path], timeout=30)
            text = cat.out + "\n" + text
        parsed = check_trial(ctx.job, ctx.device, trial, parse_output(text), res.rc, text)
        checked = None
        if check is not None:
            checked = {"stats": [(o.mean, o.std) for o in parsed.outputs],
                       "outputs": self._read_outputs(ctx, check[1])}
        return TrialResult(samples_ms=[parsed.avg_ms], load_ms=parsed.init_ms, first_ms=parsed.first_ms,
                           converged=None, peak_rss_mb=parsed.mem_peak_mb, command=str(command),
                           telemetry_doc=trial_doc(parsed, spec.repeats), raw=(parsed, text, checked))

    @staticmethod
    def _read_outputs(ctx: JobContext, out_paths: str | None) -> list[dict] | None:
        """The --output_data_path files as compact outputs (None: not written or unreadable)."""
        if not out_paths:
            return None
        import numpy as np
        from lab.runners.runner_core import compact_output
        ref = ctx.checks.reference
        compact = []
        for j, path in enumerate(out_paths.split(":")):
            r = ctx.transport.run(["cat", path], timeout=60)
            try:
                values = np.asarray(parse_values(r.out), dtype="float64") if r.rc == 0 else None
            except ValueError:
                values = None
            shape = ref["outputs"][j].shape[1:]
            if values is None or values.size != int(np.prod(shape)):
                return None
            compact.append(compact_output(np, values.reshape(shape)))
        return compact

    def check_outputs(self, ctx: JobContext, prepared: PreparedJob,
                      trials: list[TrialResult]) -> CheckOutputs | None:
        checked = [t.raw[2] for t in trials if len(t.raw) > 2 and t.raw[2] is not None]
        note = prepared.extra.get("check_note", "")
        if not checked:
            return CheckOutputs(note=note) if note else None
        full = [c["outputs"] for c in checked]
        if all(f is not None for f in full):
            return CheckOutputs(outputs=full, note=note)
        return CheckOutputs(stats=[c["stats"] for c in checked],
                            note="agreement is weak: benchmark_bin gave only the mean/std of each output")

    def profile(self, ctx: JobContext, prepared: PreparedJob) -> OpProfile:
        """One more benchmark_bin run for its profiler tables (tests/data/benchmark_bin/README.md).

        Paddle Lite prints them only from a `--with_profile=ON` build; `--enable_op_time_profile`
        is passed where `--help` lists it (v2.10-v2.12 accept it and do nothing). At least 10
        warm-ups, so the 10 runs the concise summary leaves out are warm-ups, not repeats.
        """
        spec = prepared.extra["spec"]
        if prepared.extra["old"]:
            return OpProfile.unavailable("the <= v2.9 benchmark_bin writes its result to a file; "
                                         "op profiles are read from v2.10+ tools only")
        pspec = dataclasses.replace(spec, warmup=max(spec.warmup, 10), enable_memory_profile=False,
                                    enable_op_time_profile=bool(prepared.extra.get("op_flag")))
        res = ctx.transport.run(build_shell(pspec), timeout=ctx.job.protocol.timeout_s)
        text = res.out + ("\n" + res.err if res.err else "")
        check_trial(ctx.job, ctx.device, -1, parse_output(text), res.rc, text)
        prof = parse_op_profile(text)
        if prof is None:
            return OpProfile.unavailable(
                "benchmark_bin printed no profiler table: Paddle Lite prints per-op times only when "
                "built with --with_profile=ON (LITE_WITH_PROFILE); --enable_op_time_profile alone "
                "does nothing in v2.10-v2.12")
        return from_lite(prof)

    def measurement(self, ctx: JobContext, prepared: PreparedJob,
                    trials: list[TrialResult]) -> Measurement:
        results = [t.raw[0] for t in trials]
        outputs = [t.raw[1] for t in trials]
        return measurement_from_results(ctx.job, results, str(prepared.command), outputs,
                                        list(prepared.notes), prepared.model_sha256,
                                        prepared.extra["memory"])


def check_trial(job: Job, device: Device, trial: int, parsed, rc: int, text: str):
    """A trial counts only if benchmark_bin exited 0, printed a full result, and (for an NNAdapter
    backend) did not say the NPU was dropped: a CPU fallback must never be stored as an AIPU figure."""
    from lab.devices.backends import BACKENDS
    where = f"job {job.job_id} on {device.id}: " + (f"trial {trial + 1}" if trial >= 0 else "profiled run")
    if not parsed.ok:
        raise RunnerError(f"{where}: {parsed.error} (exit {rc}; output: {excerpt(text, 300)})")
    if rc != 0:
        raise RunnerError(f"{where}: benchmark_bin exited {rc} (crashed after printing its result?); "
                          f"output: {excerpt(text, 300)}")
    nn_device = BACKENDS[job.backend].nnadapter_device
    if nn_device and parsed.nnadapter_unused:
        raise RunnerError(f"{where}: the NNAdapter device {nn_device} was not used, the model ran on "
                          f"the CPU ({parsed.nnadapter_unused[0]}); not an {job.processor} figure. "
                          f"Output: {excerpt(text, 300)}")
    if nn_device and parsed.backend and "nnadapter" not in parsed.backend.split(","):
        raise RunnerError(f"{where}: benchmark_bin reports backend {parsed.backend!r}, not "
                          f"nnadapter: the NPU was not used. Output: {excerpt(text, 300)}")
    return parsed


def trial_doc(parsed, repeats: int) -> dict:
    """What TelemetrySession.add_run needs: benchmark_bin gives no clock, so the steady window is
    avg x repeats placed just before the trial's end mark (add_run marks it approximate)."""
    n = parsed.repeats or repeats
    return {"timings": {"samples_ms": [parsed.avg_ms] * n,
                        "steady_seconds": parsed.avg_ms * n / 1000.0}}


def measurement_from_results(job: Job, results, command: str, outputs: list[str], notes: list[str],
                             model_hash: str, memory_profiled: bool) -> Measurement:
    avgs = [r.avg_ms for r in results]
    m = Measurement(job_id=job.job_id, source="benchmark_bin", samples=[[a] for a in avgs])
    m.mean_ms = statistics.fmean(avgs)
    mins = [r.min_ms for r in results if r.min_ms is not None]
    maxs = [r.max_ms for r in results if r.max_ms is not None]
    m.min_ms = min(mins) if mins else None
    m.max_ms = max(maxs) if maxs else None
    m.load_ms = median_or_none(r.init_ms for r in results)
    m.first_ms = median_or_none(r.first_ms for r in results)
    m.n_samples = len(avgs)
    m.converged = None  # fixed --repeats: benchmark_bin has no stopping rule
    if len(avgs) >= 3:
        from lab.results.stats import summarize
        st = summarize([[a] for a in avgs])
        m.p50_ms, m.ci_low_ms, m.ci_high_ms = st.p50, st.ci_low, st.ci_high
    else:
        notes.append(f"only {len(avgs)} trial(s): no median/CI (needs >= 3 trials)")
    peaks = [r.mem_peak_mb for r in results if r.mem_peak_mb is not None]
    m.peak_rss_mb = max(peaks) if peaks else None
    if m.peak_rss_mb is None:
        notes.append("peak memory unavailable: " + (
            next((r.memory_note for r in results if r.memory_note), None)
            or ("memory profile gave no sample" if memory_profiled
                else "this benchmark_bin has no --enable_memory_profile (v2.12+)")))
    elif any(r.converted_in_process for r in results):
        notes.append("peak memory includes the in-process opt conversion")
    for r in results:
        for w in r.warnings:
            if w not in notes:
                notes.append(w)
    first = results[0]
    fingerprints = [r.fingerprint for r in results]
    m.provenance = {
        "runner": "benchmark_bin", "runner_version": first.version, "format": first.format,
        "commands": [command] * len(results), "model_sha256": model_hash,
        "backend": first.backend, "threads": first.threads, "power_mode": first.power_mode,
        "warmup": first.warmup, "repeats": first.repeats, "device_info": first.device_info,
        "output_fingerprint": fingerprints[0],
        "output_fingerprint_stable": all(f == fingerprints[0] for f in fingerprints),
        "trials": [{"init_ms": r.init_ms, "first_ms": r.first_ms, "min_ms": r.min_ms,
                    "max_ms": r.max_ms, "avg_ms": r.avg_ms, "mem_init_mb": r.mem_init_mb,
                    "mem_peak_mb": r.mem_peak_mb} for r in results],
        "output_sha256": [hashlib.sha256(o.encode()).hexdigest() for o in outputs],
        "stats_method": "median and bootstrap CI over per-trial benchmark_bin averages",
    }
    m.notes = notes
    return m
