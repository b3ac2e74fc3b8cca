"""Typed records passed between modules (DESIGN: never loose dicts across layers)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any


@dataclass(frozen=True)
class Device:
    """One devices.yaml entry, validated. `line` points back into the file for error messages."""

    id: str
    chip: str
    transport: str  # local | ssh | adb
    enabled: bool = True
    host: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    key_passphrase_env: str | None = None  # name of an env var holding the key passphrase
    known_hosts: str | None = None
    host_key_policy: str = "strict"  # strict | accept-new | insecure
    workdir: str | None = None
    python: str = "python3"
    tags: tuple[str, ...] = ()
    # ADB
    serial: str | None = None  # "host:port" for adb over TCP, or a USB serial
    adb_server: str | None = None  # "host:port" of an adb server to go through instead of adb-shell
    # Paddle Lite
    abi: str | None = None  # arm64-v8a | armeabi-v7a | armv8 | armv7hf
    benchmark_bin: str | None = None  # host path of the user's benchmark_bin for this device's ABI
    nnadapter_libs: dict[str, str] = field(default_factory=dict)  # npu device name -> host dir of .so
    power_mode: str | None = None  # big | little | all | no-bind
    # telemetry
    power_meter_csv: str | None = None
    # identity (issue 22): devices.yaml `identity: skip` with `identity_reason:` -> the reason; rows
    # then carry identity "skipped" and this reason instead of the probe's verdict
    identity_skip: str | None = None
    source: str = ""  # devices.yaml path
    line: int = 0


# What a backend computes on: "CPU or AIPU?" compares these classes on one device.
PROCESSOR_CLASSES = ("cpu", "gpu", "aipu")


@dataclass(frozen=True)
class Backend:
    id: str
    processor: str  # one of PROCESSOR_CLASSES
    runtime: str  # a key of lab.runtimes.registry.RUNTIMES: paddle-inference | paddle-lite | paddle-js
    nnadapter_device: str | None = None  # huawei_kirin_npu | rockchip_npu | verisilicon_timvx
    lite_backend: str | None = None  # benchmark_bin --backend value
    # precisions it runs, with the reason for the others (lab.measure.campaign.applicable refuses them)
    precisions: tuple[str, ...] = ("fp32",)
    precision_note: str = ""


@dataclass(frozen=True)
class MeasurementProtocol:
    """Measurement protocol; defaults per DESIGN.md, overridable per campaign."""

    warmup: int = 10
    warmup_seconds: float = 1.0
    min_iters: int = 50
    min_seconds: float = 2.0
    max_seconds: float = 20.0
    target_rel_ci: float = 0.02  # half-width of the 95% CI of the median / median
    trials: int = 3
    cooldown_s: float = 0.0
    timeout_s: float = 600.0
    idle_baseline_s: float = 0.0  # issue 5: >= 10 s where power is measured
    sample_hz: float = 20.0
    # sustained runs (issue 18; 0 = off): run continuously for sustained_s, report per window_s
    sustained_s: float = 0.0
    window_s: float = 0.0
    # the slowdown (fraction over the first window's p50) that marks the throttle onset; the
    # default is lab.results.sustained.THROTTLE_SLOWDOWN (kept equal by a test: records imports nothing)
    throttle_slowdown: float = 0.20
    # issue 23: fork = one runner process per job imports the runtime once and forks a cold child
    # per trial (Paddle Inference / ONNX Runtime on CPU); fresh = a new process per trial. Planning
    # resolves it per job (lab.measure.campaign.job_process): where fork is unsafe the job is fresh.
    process: str = "fork"


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic dims in the exported model
    dtype: str  # float32 | int64 | ...
    run_shape: tuple[int, ...] = ()  # concrete shape used for benchmarking


@dataclass(frozen=True)
class Job:
    job_id: str
    campaign: str
    device: str
    chip: str
    model: str
    model_sha256: str
    backend: str
    processor: str
    precision: str
    threads: int
    batch: int = 1
    options: tuple[tuple[str, Any], ...] = ()  # sorted (key, value) pairs, e.g. ("onednn", True)
    protocol: MeasurementProtocol = MeasurementProtocol()

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass
class Measurement:
    """What one finished job yields. None means unknown (never 0); `notes` say why."""

    job_id: str
    p50_ms: float | None = None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    peak_rss_mb: float | None = None
    n_samples: int = 0
    converged: bool | None = None
    # power / thermal (issue 5)
    power_w: float | None = None
    idle_w: float | None = None
    energy_mj_per_inf: float | None = None
    energy_net_mj_per_inf: float | None = None
    power_source: str | None = None
    power_note: str | None = None
    temp_start_c: float | None = None
    temp_max_c: float | None = None
    throttled: bool | None = None
    gpu_mem_mb: float | None = None
    # data quality (issues 17/18): other processes' share of the CPU time during the steady window
    # (from /proc, by the runner) and the flag it raises past docs' threshold; None = not measured
    host_busy_share: float | None = None
    busy_host: bool | None = None
    # output correctness (issue 13): the job's outputs on the reference input set against the
    # model's fp32 host reference (lab/models/agreement.py), and top-1 on the model's eval set when the
    # campaign asks for `accuracy`; None = no check could be made (a note says why)
    agree_cosine_min: float | None = None
    agree_max_abs: float | None = None
    agree_top1: float | None = None
    agree_reference: str | None = None
    agree_ok: bool | None = None
    accuracy_top1: float | None = None
    # sustained runs (issue 18, lab/results/sustained.py): seconds from the run's start to the first window
    # more than THROTTLE_SLOWDOWN slower than the first (None: no onset, or not a sustained run), and
    # last-window p50 / first-window p50 (> 1: slower at the end)
    throttle_onset_s: float | None = None
    sustained_ratio: float | None = None
    # serving (issue 14): LoadGen's scenario and verdict; qps is the scenario's figure of merit
    # (Server/sweep: the scheduled Poisson rate held; Offline/SingleStream: completed samples/s)
    scenario: str | None = None  # SingleStream | Server | Offline | sweep
    qps: float | None = None
    latency_bound_ms: float | None = None
    valid: bool | None = None  # LoadGen's VALID/INVALID, early stopping included
    instances: int | None = None
    max_batch: int | None = None
    # serving (issue 23): where the row's LoadGen run spent its requests' time inside the endpoint
    # (lab/serving/stats.py, Triton's statistics extension): MEANS per request over the run, in ms;
    # endpoint_share = 1 - model / the client's mean latency (everything but the model)
    endpoint_queue_ms: float | None = None
    endpoint_decode_ms: float | None = None
    endpoint_model_ms: float | None = None
    endpoint_encode_ms: float | None = None
    endpoint_server_ms: float | None = None
    endpoint_share: float | None = None
    source: str = "lab"  # lab | import:<file> | benchmark_bin | simulated (issue 24: never mixed with measured)
    # identity (issue 22): whether the device this ran on is the chip the inventory names.
    # ok | mismatch | emulated | skipped (devices.yaml `identity: skip`); None = not checked
    identity: str | None = None
    identity_note: str | None = None  # the reason in words (what was found against what was claimed)
    # the runtime's one-time import in the runner process (issue 23: a Python service's "load"),
    # measured apart from load_ms (predictor creation)
    import_ms: float | None = None
    samples: list[list[float]] = field(default_factory=list)  # raw steady samples per trial (ms)
    provenance: dict[str, Any] = field(default_factory=dict)  # runner JSON(s), command lines, env
    notes: list[str] = field(default_factory=list)
    # per-operator profile of the extra profiled trial (job option `profile: ops`): a
    # lab.results.opprofile.OpProfile, stored in its own table, never a figure of the timed trials
    op_profile: Any = None
    windows: list["SustainedWindow"] = field(default_factory=list)  # sustained runs, per window


@dataclass(frozen=True)
class SustainedWindow:
    """One window of a sustained run (store table `windows`). Times in seconds from the run's start;
    clock_* on the device's uptime clock; telemetry figures None where not measured."""

    trial: int
    idx: int
    t_start_s: float
    t_end_s: float
    n: int
    p50_ms: float | None
    p90_ms: float | None
    host_busy_share: float | None = None
    clock_start: float | None = None
    clock_end: float | None = None
    temp_c: float | None = None
    cpu_mhz: float | None = None
    accel_mhz: float | None = None
    power_w: float | None = None


# ------------------------------------------------------------------------------ read side
def cold_start_ms(load_ms: float | None, first_ms: float | None) -> float | None:
    """Load + first inference (the guide's "load to first prediction"); None if either is unknown."""
    return None if load_ms is None or first_ms is None else load_ms + first_ms


class _ResultRowReading:
    """What the analysis derives from a stored row (mixed into ResultRow)."""

    __slots__ = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def latency_ms(self) -> float | None:
        """Steady latency: the median, else the mean (imports that publish only a mean)."""
        return self.p50_ms if self.p50_ms is not None else self.mean_ms

    @property
    def start_ms(self) -> float | None:
        return cold_start_ms(self.load_ms, self.first_ms)

    @property
    def energy_per_inf_mj(self) -> float | None:
        """Energy per inference net of the idle baseline where known, else gross."""
        return self.energy_net_mj_per_inf if self.energy_net_mj_per_inf is not None else self.energy_mj_per_inf

    def to_json(self) -> dict[str, Any]:
        """The row of `lab results --format json` (field order kept; options a fresh dict)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["options"] = dict(self.options)
        return d


# the figures of a Measurement: one column each in the store, one field each in ResultRow
MEASUREMENT_FIGURES = tuple(f.name for f in fields(Measurement)
                            if f.name not in ("job_id", "samples", "provenance", "notes", "windows",
                                              "op_profile"))
ResultRow = make_dataclass("ResultRow", [
    ("job_id", "str"), ("campaign", "str"), ("device", "str"), ("chip", "str | None"), ("model", "str"),
    ("backend", "str | None"), ("processor", "str | None"), ("precision", "str | None"),
    ("threads", "int | None"), ("batch", "int | None"),
    ("status", "str"),  # planned | running | ok | failed | skipped
    *[(f.name, f.type, field(default=f.default)) for f in fields(Measurement) if f.name in MEASUREMENT_FIGURES],
    ("error", "str | None", field(default=None)), ("attempts", "int | None", field(default=None)),
    ("started_at", "str | None", field(default=None)), ("finished_at", "str | None", field(default=None)),
    ("model_sha256", "str | None", field(default=None)),
    ("options", "dict[str, Any]", field(default_factory=dict, hash=False)),
], bases=(_ResultRowReading,), frozen=True)
ResultRow.__module__ = __name__  # pickling and reprs name lab.core.records (make_dataclass has no module= on 3.11)
ResultRow.__doc__ = """One stored job as the analysis reads it (`Store.results`); frozen.

Identity and status, then every figure of `Measurement` with its type and default (the figures are
listed once, there; for a job never measured they are None, `n_samples` 0 and `source` None), then
the job's bookkeeping and options. The field order is the column order of `lab results --format
json` (docs/architecture.md); `to_json` is the one place a row becomes that dict.
"""


def job_id_for(identity: dict[str, Any]) -> str:
    """A job's stable id: the hash of its identity (campaign, device, model, backend, options...).
    hashlib is imported here, not at module level: it loads OpenSSL, and `lab --version` never plans."""
    import hashlib
    import json
    blob = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
