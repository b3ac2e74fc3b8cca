"""Campaign spec (campaigns/*.yaml) → jobs with stable ids.

Why stable ids: a job's id is a hash of everything that defines what is measured (campaign,
device, chip, model + artifact hash, backend, precision, threads, batch, options, protocol), so
`lab run --resume` can skip exactly the jobs already done and a changed model re-runs by itself.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable

from lab.core.records import job_id_for
from lab.devices.backends import BACKENDS, RUN_PRECISIONS, get_backend
from lab.core.errors import ConfigError
from lab.devices.inventory import find_device
from lab.core.records import Backend, Device, Job, MeasurementProtocol
from lab.core.yamlio import LineDict, expect_keys, expect_type, load_yaml

CAMPAIGN_KEYS = {"name", "description", "devices", "models", "backends", "threads", "precisions",
                 "batch", "options", "protocol"}
# accuracy: after timing, run the model's eval set and store accuracy_top1 (lab/runtimes/checks.py)
OPTION_KEYS = {"onednn": bool, "power_mode": str, "memory_optim": bool, "model_format": str,
               # serving-http (docs/serving.md): LoadGen scenario and the endpoint's configuration
               "scenario": str, "target_qps": (int, float), "latency_bound_ms": (int, float),
               "percentile": float, "instances": int, "max_batch": int, "max_queue_delay_ms": (int, float),
               "endpoint": str, "endpoint_format": str, "port": int,
               "profile": str, "accuracy": bool}
OPTION_CHOICES = {"power_mode": ("big", "little", "all", "no-bind"), "model_format": ("json", "pdmodel"),
                  "scenario": ("singlestream", "server", "offline", "sweep"),
                  "endpoint_format": ("v2", "pipeline"),
                  "profile": ("ops",)}  # profile: ops = one extra profiled run after the timed trials
SERVING_OPTIONS = ("scenario", "target_qps", "latency_bound_ms", "percentile", "instances", "max_batch",
                   "max_queue_delay_ms", "endpoint", "endpoint_format", "port")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LIMITS = {"threads": 1024, "batch": 65536}
MAX_JOBS = 1_000_000  # planned jobs per campaign; a plan of 100k takes seconds, not minutes
PROTOCOL_TYPES = {f.name: f.type for f in fields(MeasurementProtocol)}


@dataclass(frozen=True)
class CampaignSpec:
    name: str
    devices: tuple[str, ...]
    models: tuple[str, ...]
    backends: tuple[str, ...]
    threads: tuple[int, ...]
    precisions: tuple[str, ...]
    batch: tuple[int, ...]
    options: tuple[tuple[str, tuple[Any, ...]], ...]
    protocol: MeasurementProtocol
    path: str = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = {k: list(v) for k, v in self.options}
        return d


@dataclass(frozen=True)
class Exclusion:
    device: str
    model: str
    backend: str
    reason: str


def load_campaign(path: str | Path) -> CampaignSpec:
    path = str(path)
    doc = load_yaml(path, what="campaign file")
    if not isinstance(doc, LineDict):
        raise ConfigError("a campaign must be a mapping with name, devices, models, backends",
                          path=path, line=getattr(doc, "line", 1), fix="see campaigns/demo.yaml")
    expect_keys(doc, path=path, what="campaign", required={"name", "devices", "models", "backends"},
                allowed=CAMPAIGN_KEYS)

    def str_list(key: str, default=None) -> tuple:
        if key not in doc:
            return tuple(default or ())
        value = doc[key]
        if isinstance(value, str):
            value = [value]
        expect_type(value, list, path=path, line=doc.line_of(key), what=f"'{key}'", hint="a list")
        if not value:
            raise ConfigError(f"'{key}' is empty", path=path, line=doc.line_of(key), fix="name at least one")
        for item in value:
            expect_type(item, str, path=path, line=doc.line_of(key), what=f"an entry of '{key}'",
                        hint="a string")
        return tuple(value)

    def int_list(key: str, default: list[int]) -> tuple[int, ...]:
        value = doc.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        expect_type(value, list, path=path, line=doc.line_of(key), what=f"'{key}'", hint="a list of integers")
        for item in value:
            expect_type(item, int, path=path, line=doc.line_of(key), what=f"an entry of '{key}'",
                        hint="a positive integer")
            if not 1 <= item <= LIMITS[key]:
                raise ConfigError(f"'{key}' entries must be between 1 and {LIMITS[key]}, got {item}",
                                  path=path, line=doc.line_of(key), fix="use a sensible positive integer")
        return tuple(value)

    name = expect_type(doc["name"], str, path=path, line=doc.line_of("name"), what="'name'", hint="a string")
    if not NAME_RE.match(name):
        raise ConfigError(f"campaign name {name!r} is not a valid name", path=path, line=doc.line_of("name"),
                          fix="use letters, digits, '.', '_' or '-' (max 64); it names report folders")
    backends = str_list("backends")
    from lab.runtimes.registry import load_plugins
    load_plugins()  # plugin runtimes' backends (entry points `hwlab.runtimes`) join BACKENDS
    for b in backends:
        if b not in BACKENDS:
            get_backend(b, where=f"{path}:{doc.line_of('backends')}: ")
    precisions = str_list("precisions", ["fp32"])
    for p in precisions:
        if p not in RUN_PRECISIONS:
            raise ConfigError(f"unknown precision {p!r}", path=path, line=doc.line_of("precisions"),
                              fix="use " + ", ".join(RUN_PRECISIONS))
    options: list[tuple[str, tuple]] = []
    if "options" in doc:
        opts = expect_type(doc["options"], dict, path=path, line=doc.line_of("options"),
                           what="'options'", hint="a mapping of option name to a list of values")
        for key, values in opts.items():
            if key not in OPTION_KEYS:
                raise ConfigError(f"unknown option {key!r}", path=path, line=opts.line_of(key),
                                  fix="options: " + ", ".join(OPTION_KEYS))
            if not isinstance(values, list):
                values = [values]
            for v in values:
                types = OPTION_KEYS[key]
                expect_type(v, types, path=path, line=opts.line_of(key), what=f"option {key!r}",
                            hint="a number" if isinstance(types, tuple) else types.__name__)
                if key in OPTION_CHOICES and v not in OPTION_CHOICES[key]:
                    raise ConfigError(f"option {key!r}: {v!r} is not valid", path=path, line=opts.line_of(key),
                                      fix="use " + ", ".join(OPTION_CHOICES[key]))
                _check_serving_option(key, v, path, opts.line_of(key))
            options.append((key, tuple(values)))
    spec = CampaignSpec(
        name=name, devices=str_list("devices"), models=str_list("models"), backends=backends,
        threads=int_list("threads", [1]), precisions=precisions, batch=int_list("batch", [1]),
        options=tuple(sorted(options)), protocol=_protocol(doc.get("protocol"), path, doc),
        path=path, description=str(doc.get("description", "")))
    _check_serving_combinations(spec)
    return spec


def _check_serving_combinations(spec: CampaignSpec) -> None:
    """Serving options that are valid alone but not together (a server scenario without a rate):
    refused when the campaign loads, before any model is built (lab.runtimes.serving.plan_options)."""
    if not any(BACKENDS[b].runtime == "serving" for b in spec.backends):
        return
    from lab.runtimes.serving import plan_options
    chosen = [(k, v) for k, v in spec.options if k in SERVING_OPTIONS or k == "onednn"]
    for combo in itertools.product(*(v for _, v in chosen)):
        plan_options(tuple(sorted(zip((k for k, _ in chosen), combo))), spec.path or None, spec.protocol)


def _protocol(value: Any, path: str, doc: LineDict) -> MeasurementProtocol:
    if value is None:
        return MeasurementProtocol()
    expect_type(value, dict, path=path, line=doc.line_of("protocol"), what="'protocol'", hint="a mapping")
    expect_keys(value, path=path, what="protocol", required=set(), allowed=set(PROTOCOL_TYPES))
    kwargs = {}
    for key, v in value.items():
        if key == "process":
            kwargs[key] = _process(v, path, value.line_of(key))
            continue
        want = int if PROTOCOL_TYPES[key] in ("int", int) else float
        hint = "an integer" if want is int else "a number"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (want is int and not isinstance(v, int)):
            raise ConfigError(f"protocol '{key}' must be {hint}, got {v!r}", path=path,
                              line=value.line_of(key), fix=f"write {key}: <{hint}>")
        if not math.isfinite(v) or v < 0 or (key in ("trials", "min_iters") and v < 1) or (
                key in ("timeout_s", "sample_hz", "target_rel_ci") and v <= 0) or (
                key == "target_rel_ci" and v > 1) or (key == "timeout_s" and v < 1):
            raise ConfigError(f"protocol '{key}' out of range: {v}", path=path, line=value.line_of(key),
                              fix=PROTOCOL_HINTS.get(key, "use a finite positive value"))
        kwargs[key] = want(v)
    proto = MeasurementProtocol(**kwargs)
    if proto.max_seconds < proto.min_seconds:
        raise ConfigError("protocol max_seconds is below min_seconds", path=path,
                          line=value.line_of("max_seconds"), fix="raise max_seconds")
    _check_sustained(proto, path, value)
    return proto


def _process(value: Any, path: str, line: int | None) -> str:
    if value not in PROCESS_CHOICES:
        raise ConfigError(f"protocol 'process' must be fork or fresh, got {value!r}", path=path, line=line,
                          fix="write process: fork (one runner process per job) or process: fresh "
                              "(a new process per trial)")
    return value


def _check_sustained(proto: MeasurementProtocol, path: str, value: LineDict) -> None:
    """Sustained runs (sustained_s > 0): one long trial cut into >= 2 windows, inside timeout_s."""
    line = value.line_of("sustained_s") if "sustained_s" in value else value.line_of("window_s")
    if proto.sustained_s == 0:
        if "throttle_slowdown" in value:
            raise ConfigError("protocol throttle_slowdown is set but sustained_s is 0", path=path,
                              line=value.line_of("throttle_slowdown"),
                              fix="set sustained_s and window_s, or drop throttle_slowdown")
        if proto.window_s:
            raise ConfigError("protocol window_s is set but sustained_s is 0", path=path, line=line,
                              fix="set sustained_s (seconds of continuous running), or drop window_s")
        return
    if not 0 < proto.window_s <= proto.sustained_s / 2:
        raise ConfigError(f"protocol window_s must be > 0 and at most half of sustained_s "
                          f"({proto.sustained_s:g} s), got {proto.window_s:g}", path=path, line=line,
                          fix="e.g. sustained_s: 600 with window_s: 30")
    if not 0 < proto.throttle_slowdown <= 10:
        raise ConfigError(f"protocol throttle_slowdown must be a fraction in (0, 10], got "
                          f"{proto.throttle_slowdown:g}", path=path, line=value.line_of("throttle_slowdown"),
                          fix="e.g. throttle_slowdown: 0.2 (a window 20 % slower than the first)")
    if proto.trials != 1:
        raise ConfigError("a sustained run is one long trial, but protocol trials is "
                          f"{proto.trials}", path=path, line=line, fix="set trials: 1")
    if proto.timeout_s < proto.sustained_s + SUSTAINED_SLACK_S:
        raise ConfigError(f"protocol timeout_s ({proto.timeout_s:g} s) leaves no room for a "
                          f"{proto.sustained_s:g} s sustained run", path=path, line=line,
                          fix=f"set timeout_s to at least sustained_s + {SUSTAINED_SLACK_S:g}")


SUSTAINED_RUNTIMES = ("paddle-inference",)  # runtimes whose runner implements --sustained-s
SUSTAINED_SLACK_S = 60.0  # per sustained trial, beyond sustained_s: model load, warm-up, teardown
# protocol keys left out of a job's identity while at their default, so that adding them kept
# the ids (and `--resume`) of campaigns planned before they existed
_IDENTITY_DEFAULT_OFF = ("sustained_s", "window_s", "throttle_slowdown")
_DEFAULT_PROTOCOL = MeasurementProtocol()


PROCESS_CHOICES = ("fork", "fresh")
# runtimes whose runner forks a cold child per trial from one process that imported the runtime
# (runner_core.run_job); every other runtime (Paddle Lite's benchmark_bin, serving, Paddle.js)
# and every GPU job (a CUDA context must not exist before a fork) runs fresh processes
FORK_RUNTIMES = ("paddle-inference", "onnxruntime")


def job_process(proto: MeasurementProtocol, backend: Backend) -> str:
    """The process model a job runs with: the campaign's `process`, where fork is safe."""
    if proto.process == "fork" and backend.runtime in FORK_RUNTIMES and backend.processor == "cpu":
        return "fork"
    return "fresh"


def protocol_identity(proto: MeasurementProtocol) -> dict[str, Any]:
    """The protocol part of a job's id. `process` is in it only as fork: a fresh job measures
    what every job measured before the key existed, and keeps its id (and `--resume`)."""
    return {k: v for k, v in asdict(proto).items()
            if not (k in _IDENTITY_DEFAULT_OFF and v == getattr(_DEFAULT_PROTOCOL, k))
            and not (k == "process" and v == "fresh")}


PROTOCOL_HINTS = {
    "timeout_s": "a per-trial deadline of at least 1 s (it includes loading the model)",
    "target_rel_ci": "a fraction in (0, 1], e.g. 0.02 for +-2 %",
    "sample_hz": "a positive sampling rate, e.g. 20",
}


def plan_jobs(spec: CampaignSpec, devices: list[Device], model_hash: Callable[[str], str],
              artifacts: dict[str, Any] | None = None) -> tuple[list[Job], list[Exclusion]]:
    """Expand the campaign's cartesian product into jobs; list combinations that cannot run.

    `model_hash(artifact id)`: the sha256 of the model a job runs, asked only for combinations
    that can run: `models.artifact_id` (an int8 job of model M runs `M-int8`).
    `artifacts` (model id -> lab.models.artifact.ModelArtifact), when given, lets planning refuse a backend
    a model cannot run on (Paddle.js: multi-input or non-float32 models)."""
    from lab.models.zoo import INT8_SUFFIX, artifact_id
    where = f"{spec.path}: " if spec.path else ""
    chosen = [find_device(devices, d, where=where) for d in spec.devices]
    hashes: dict[str, str] = {}
    option_keys = [k for k, _ in spec.options]
    option_values = [v for _, v in spec.options] or [()]
    n_combos = len(chosen) * len(spec.models) * len(spec.backends) * len(spec.precisions) \
        * len(spec.threads) * len(spec.batch)
    for values in option_values if spec.options else ():
        n_combos *= len(values)
    if n_combos > MAX_JOBS:
        raise ConfigError(f"the campaign expands to {n_combos} jobs, over the limit of {MAX_JOBS}",
                          path=spec.path or None, fix="split it into several campaigns")
    jobs: list[Job] = []
    seen: set[str] = set()  # job ids planned so far: the duplicate check is O(1) per job
    excluded: dict[Exclusion, None] = {}  # ordered set
    why_not: dict[tuple[str, str, str, str], str | None] = {}  # per device/model/backend/precision
    protocols = {p: replace(spec.protocol, process=p) for p in PROCESS_CHOICES}
    identities = {p: protocol_identity(proto) for p, proto in protocols.items()}
    for dev, model, backend_id, precision, threads, batch in itertools.product(
            chosen, spec.models, spec.backends, spec.precisions, spec.threads, spec.batch):
        backend = BACKENDS[backend_id]
        key = (dev.id, model, backend_id, precision)  # the rules may depend on the model's artifact
        if key not in why_not:
            reason = applicable(dev, backend_id, precision, (artifacts or {}).get(model))
            if reason is None and model.endswith(INT8_SUFFIX) and precision != "int8":
                reason = f"{model} is a quantised model: run it at precision int8, not {precision}"
            if not reason and spec.protocol.sustained_s and backend.runtime not in SUSTAINED_RUNTIMES:
                reason = (f"sustained runs need a runner that reports windows "
                          f"({', '.join(SUSTAINED_RUNTIMES)}); {backend.runtime} does not")
            why_not[key] = reason
        reason = why_not[key]
        if reason:
            excluded.setdefault(Exclusion(dev.id, model, backend_id, reason), None)
            continue
        art_id, process = artifact_id(model, precision, backend.runtime), job_process(spec.protocol, backend)
        if art_id not in hashes:
            hashes[art_id] = model_hash(art_id)
        for combo in (itertools.product(*option_values) if spec.options else [()]):
            options = tuple(sorted(zip(option_keys, combo)))
            if precision == "int8" and backend_id == "paddle-inference-cpu" and \
                    dict(options).get("onednn") is False:
                excluded.setdefault(Exclusion(dev.id, model, backend_id, "int8 on CPU runs through "
                                              "oneDNN int8: not with option onednn: false"), None)
                continue
            if backend.runtime not in ("paddle-inference", "serving"):
                options = tuple(o for o in options if o[0] != "onednn")
            if backend.runtime != "serving":
                options = tuple(o for o in options if o[0] not in SERVING_OPTIONS)
            else:  # checked now (exit 2 before anything runs), its defaults in the job's identity
                from lab.runtimes.serving import plan_options
                options = plan_options(options, spec.path or None, spec.protocol)
            identity = {"campaign": spec.name, "device": dev.id, "chip": dev.chip, "model": model,
                        "model_sha256": hashes[art_id], "backend": backend_id, "precision": precision,
                        "threads": threads, "batch": batch, "options": dict(options),
                        "protocol": identities[process]}
            job_id = job_id_for(identity)
            if job_id in seen:
                continue
            seen.add(job_id)
            processor = serving_processor(dev) if backend.runtime == "serving" else backend.processor
            jobs.append(Job(job_id=job_id, campaign=spec.name, device=dev.id, chip=dev.chip,
                            model=model, model_sha256=hashes[art_id], backend=backend_id,
                            processor=processor, precision=precision, threads=threads,
                            batch=batch, options=options, protocol=protocols[process]))
    return jobs, list(excluded)


def applicable(dev: Device, backend_id: str, precision: str, artifact: Any = None) -> str | None:
    """Why a backend cannot run on a device (None when it can). Checked at plan time, not on the device.

    `artifact`: the model (optional), for rules that depend on it."""
    backend = BACKENDS[backend_id]
    if backend.runtime == "paddle-js":
        return _paddle_js_refusal(dev, backend_id, precision, artifact)
    from lab.devices.portability import planning_refusal  # e.g. no Python wheel exists for armv7
    why = planning_refusal(dev, backend, precision, _chip(dev.chip))
    if why:
        return why
    if backend.runtime == "paddle-lite":
        if dev.transport == "local":
            return "Paddle Lite backends need an ARM device with a user-supplied benchmark_bin"
        if not dev.benchmark_bin:
            return (f"device {dev.id!r} has no benchmark_bin in devices.yaml "
                    "(build Paddle Lite's benchmark_bin for its ABI, see docs/paddle-lite.md)")
        if backend.nnadapter_device and backend.nnadapter_device not in dev.nnadapter_libs:
            return (f"device {dev.id!r} lists no nnadapter_libs for {backend.nnadapter_device} "
                    "(add the HAL + DDK library directory under nnadapter_libs)")
    if backend.runtime == "serving":
        if dev.transport not in ("local", "ssh"):
            return "serving-http needs a local or SSH device (the load comes from the lab host)"
        if precision != "fp32":
            return f"serving-http serves fp32 models here, not {precision}"
        from lab.runtimes.serving import unavailable_reason as serving_reason
        why = serving_reason(dev)
        if why:
            return why
    if backend.runtime == "paddle-lite-python":
        from lab.runtimes.paddle_lite_python import unavailable_reason
        why = unavailable_reason(dev)
        if why:
            return why
    if backend.runtime == "onnxruntime":
        from lab.runtimes.onnxruntime import unavailable_reason as ort_reason
        why = ort_reason(dev)
        if why:
            return why
    if precision not in backend.precisions:
        return (f"{backend_id} cannot run {precision}: " +
                (backend.precision_note or f"it runs {', '.join(backend.precisions)}"))
    if backend.processor == "gpu" and backend.runtime in ("paddle-inference", "onnxruntime"):
        chip = _chip_vendor(dev.chip)
        if chip is not None and chip.lower() != "nvidia":
            return f"chip {dev.chip!r} has no NVIDIA GPU for {backend_id}"
    return None


def _check_serving_option(key: str, value: Any, path: str, line: int | None) -> None:
    """Serving options that parse but cannot work: one line naming the file, line and fix."""
    if key == "endpoint":
        from lab.serving.endpoint import parse_base_url
        try:
            parse_base_url(value)
        except ConfigError as exc:
            raise ConfigError(str(exc), path=path, line=line) from None
    elif key in ("target_qps", "latency_bound_ms") and not value > 0:
        raise ConfigError(f"option {key!r} must be > 0, got {value!r}", path=path, line=line)
    elif key == "percentile" and not 0.5 <= value < 1.0:
        raise ConfigError(f"option 'percentile' {value!r} is out of range", path=path, line=line,
                          fix="use e.g. 0.9 or 0.99")
    elif key in ("instances", "max_batch") and value < 1:
        raise ConfigError(f"option {key!r} must be >= 1, got {value!r}", path=path, line=line)
    elif key in ("max_queue_delay_ms", "port") and value < 0:
        raise ConfigError(f"option {key!r} must be >= 0, got {value!r}", path=path, line=line)


def serving_processor(dev: Device) -> str:
    """serving-http runs where the device computes: on an NVIDIA chip the GPU, else the CPU."""
    vendor = _chip_vendor(dev.chip)
    return "gpu" if vendor is not None and vendor.lower() == "nvidia" else "cpu"


def _paddle_js_refusal(dev: Device, backend_id: str, precision: str, artifact: Any) -> str | None:
    """Paddle.js: webgl only (wasm's runtime.wasm is CDN-only), fp32, a model with a web build
    path, and a device whose browser the lab can drive (Chromium on `local`; an SSH host, whose
    DevTools port the transport forwards: its Chromium is looked for at the start of the job)."""
    from lab.web.page import BACKENDS as PAGE_BACKENDS, WASM_REFUSAL, device_refusal
    if backend_id not in PAGE_BACKENDS:
        return WASM_REFUSAL if backend_id == "paddle-js-wasm" else f"{backend_id}: no page backend"
    if precision != "fp32":
        return f"{backend_id} runs fp32 only (Paddle.js feeds and computes float32), not {precision}"
    if artifact is not None:
        from lab.convert.paddlejs import web_refusal
        reason = web_refusal(artifact)
        if reason:
            return reason
    return device_refusal(dev)


def _chip_vendor(chip_id: str) -> str | None:
    return getattr(_chip(chip_id), "vendor", None)


def _chip(chip_id: str) -> Any:
    try:
        from lab.devices.catalog import load_catalog
        return load_catalog().get(chip_id)
    except Exception:  # catalog unavailable or chip unknown: let the device decide at run time
        return None
