"""Prepare and run campaigns: the one API behind `lab run`, `lab advise --measure` and Ray.

Why one module: preparing a campaign (inventory, campaign file, model artifacts, plan) and the
run / resume / fresh policy were written in the CLI and again in the advisor. Both now call this;
the CLI only parses arguments and prints, and the advisor reads the store alone.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lab.measure.campaign import CampaignSpec, Exclusion, load_campaign, plan_jobs
from lab.core.errors import ConfigError
from lab.devices.inventory import find_device, load_devices
from lab.core.records import Device, Job, MeasurementProtocol
from lab.measure.scheduler import RunSummary, Scheduler, SchedulerOptions
from lab.results.store import Store

Log = Callable[[str], None]
FINISHED = ("ok", "failed", "skipped")
ADVISE_PROTOCOL = MeasurementProtocol(warmup=3, warmup_seconds=0.2, min_iters=20, min_seconds=0.5,
                           max_seconds=5.0, target_rel_ci=0.05, trials=2, timeout_s=300.0)


def _quiet(_msg: str) -> None:
    pass


@dataclass
class Prepared:
    """A campaign ready to run: its devices, spec, planned jobs and what could not be planned."""

    devices: list[Device]
    spec: CampaignSpec
    jobs: list[Job]
    excluded: list[Exclusion]


@dataclass
class RunOutcome:
    """What a run did: the scheduler's summary (None when nothing was left to do)."""

    planned: int
    already_done: int
    summary: RunSummary | None

    @property
    def exit_code(self) -> int:
        return 0 if self.summary is None else self.summary.exit_code


def ensure_artifact(model_id: str, root: str | Path, log: Log = _quiet):
    """The built model; zoo models not built yet are built now (user models must exist), and
    `<model>-int8` not built yet is quantised now from its fp32 model (default recipe, as
    `lab models quantize <model>`; one that fails its agreement check is kept and used: its
    jobs store the failed check, which is the point)."""
    from lab.models.artifact import load_artifact
    from lab.models.build import build
    from lab.models.zoo import INT8_SUFFIX, default_zoo_path, load_zoo
    root = str(root)
    try:
        return load_artifact(model_id, root=root)
    except ConfigError:
        if model_id.endswith(INT8_SUFFIX) and not (Path(root) / model_id / "meta.json").exists():
            from lab.models.quantize import quantize
            parent = model_id[:-len(INT8_SUFFIX)]
            ensure_artifact(parent, root, log)
            log(f"quantising {parent!r} to int8 (first use; `lab models quantize {parent}` with "
                "options makes it your way) ...")
            res = quantize(parent, root, log=log)
            if not res.passed:
                log(f"warning: {model_id} FAILED its agreement check ({res.summary}); measured anyway")
            return res.artifact
        zoo = load_zoo(default_zoo_path(root))
        if model_id not in zoo:
            known = sorted(set(zoo) | {p.parent.name for p in Path(root).glob("*/meta.json")})
            close = difflib.get_close_matches(model_id, known, n=1)
            raise ConfigError(f"model {model_id!r} is neither built under {root}/ nor in the zoo",
                              fix=(f"did you mean {close[0]!r}? " if close else "") +
                              "register your own with `lab models add`") from None
        if (Path(root) / model_id / "meta.json").exists():
            raise  # a built model whose files went missing: say so, do not silently rebuild
        log(f"building model {model_id!r} (first use) ...")
        return build(model_id, out_root=root)


def prepare(campaign_path: str | Path, devices_path: str | Path, models_root: str | Path = "models",
            *, dry_run: bool = False, log: Log = _quiet) -> Prepared:
    """Inventory + campaign + artifacts (built on demand) -> planned jobs.

    Device mistakes are reported before any model is built; a disabled device is refused unless
    this is a dry run (which only previews).
    """
    devices = load_devices(devices_path)
    spec = load_campaign(campaign_path)
    for dev_id in spec.devices:
        d = find_device(devices, dev_id, where=f"{spec.path}: ")
        if not d.enabled and dry_run:
            log(f"note: device {dev_id!r} is disabled in {d.source}:{d.line}; planned for --dry-run only")
        elif not d.enabled:
            raise ConfigError(f"campaign names device {dev_id!r}, which is disabled in {d.source}:{d.line}",
                              path=spec.path, fix="set 'enabled: true' for it or remove it from the campaign")
    arts = {m: ensure_artifact(m, models_root, log) for m in spec.models}
    built = dict(arts)  # artifact id -> artifact: int8 jobs of model M run M-int8 (on demand)

    def model_hash(art_id: str) -> str:
        if art_id not in built:
            built[art_id] = ensure_artifact(art_id, models_root, log)
        return built[art_id].sha256

    jobs, excluded = plan_jobs(spec, devices, model_hash, arts)
    if not dry_run:
        ensure_web_builds(jobs, arts, log)
        from lab.runtimes.onnxruntime import prepare_models
        prepare_models(arts, jobs, log)  # the .onnx files of onnxruntime jobs, made on the host now
        from lab.devices.backends import BACKENDS
        from lab.models.zoo import artifact_id
        used = {artifact_id(j.model, j.precision, BACKENDS[j.backend].runtime) for j in jobs}
        prepare_checks([a for k, a in built.items() if k in used], jobs, log)
    return Prepared(devices, spec, jobs, excluded)


def ensure_web_builds(jobs: list[Job], arts: dict, log: Log = _quiet) -> None:
    """Build the Paddle.js form of every model a planned paddle-js job needs (reused when current);
    a converter that is not installed is refused with the exact command to run."""
    from lab.devices.backends import BACKENDS
    needed = sorted({j.model for j in jobs if BACKENDS[j.backend].runtime == "paddle-js"})
    if not needed:
        return
    from lab.convert import paddlejs
    for model in needed:
        if paddlejs.current_web(arts[model]) is not None:
            continue
        try:
            paddlejs.convert(arts[model], log=log)
        except ConfigError as exc:
            raise ConfigError(f"model {model!r} needs its Paddle.js form for the planned "
                              f"paddle-js jobs and it could not be built: {exc}",
                              fix=f"run `{paddlejs.build_command(model)}` (after "
                                  "`bash scripts/install-web-deps.sh`)") from None


def prepare_checks(artifacts, jobs: list[Job], log: Log = _quiet) -> None:
    """Host side of the output checks, before any job runs: the fp32 reference of every model
    (cached in models/<id>/reference.npz) and, for `accuracy` jobs, the eval set (a bad eval file
    is bad input, named now; a model without one is said now, and its jobs store n/a)."""
    from lab.models import agreement
    from lab.models.accuracy import eval_set_for
    from lab.core.errors import LabError
    from lab.devices.backends import BACKENDS
    from lab.models.zoo import artifact_id
    for art in artifacts:
        ref_art = agreement.reference_artifact(art)
        if agreement.cached_reference(ref_art) is None:
            log(f"computing the fp32 host reference of {ref_art.id} ({agreement.REFERENCE_SET_SIZE} "
                "inputs) ...")
            try:
                agreement.load_reference(ref_art)
            except LabError as exc:  # its jobs run and say that no check could be made
                log(f"warning: no fp32 host reference for {ref_art.id}: {exc}")
    by_id = {a.id: a for a in artifacts}
    for aid in sorted({artifact_id(j.model, j.precision, BACKENDS[j.backend].runtime)
                       for j in jobs if j.option("accuracy")}):
        art = by_id[aid]
        if art.eval_data is None and not agreement.reference_artifact(art).eval_data and \
                art.tags.get("eval") is None:
            log(f"note: {aid} has no eval set: its accuracy_top1 stays n/a (`lab models accuracy "
                f"{aid} --eval-data eval.npz` records one)")
            continue
        eval_set_for(art)


def stored_status(store_path: str | Path, campaign: str) -> dict[str, str]:
    """job id -> stored status for a campaign ({} when there is no store yet)."""
    if not Path(store_path).is_file():
        return {}
    store = Store(store_path, readonly=True)
    try:
        return store.job_status(campaign)
    finally:
        store.close()


def run_prepared(prep: Prepared, store_path: str | Path, options: SchedulerOptions, *,
                 mode: str = "plain", engine: str = "local", address: str = "auto",
                 log: Log = _quiet, interrupted_note: str | None = None,
                 keep_stale: bool = False) -> RunOutcome:
    """Store the plan and measure what is not done yet, under the run policy.

    `mode`: "plain" refuses a campaign that already has finished jobs (nothing is duplicated
    silently), "resume" runs only jobs not stored as ok, "fresh" deletes the campaign first. A
    campaign whose stored jobs are not in the new plan (edited protocol, models, devices, rebuilt
    model) is refused: resuming it would mix two experiments under one name (`keep_stale`: the
    caller quotes only the jobs it planned, as `lab advise --measure` does, so older ones may stay).
    """
    if mode not in ("plain", "resume", "fresh"):
        raise ValueError(f"unknown run mode {mode!r}")
    spec, jobs = prep.spec, prep.jobs
    store = Store(store_path)
    try:
        if mode == "fresh":
            store.delete_campaign(spec.name)
        status = store.job_status(spec.name)
        finished = {k for k, v in status.items() if v in FINISHED}
        if finished and mode == "plain":
            raise ConfigError(f"campaign {spec.name!r} already has {len(finished)} finished jobs in "
                              f"{store_path}", path=spec.path,
                              fix="use --resume to finish it, or --fresh to measure everything again")
        planned_ids = {j.job_id for j in jobs}
        stale = [k for k in status if k not in planned_ids]
        if stale and not keep_stale:
            raise ConfigError(f"campaign {spec.name!r} changed since it was stored: {len(stale)} stored jobs "
                              "are not in the new plan (edited protocol, models, devices or a rebuilt model)",
                              path=spec.path, fix="use --fresh to measure it again as it is now, or give the "
                              "changed campaign a new name")
        store.save_campaign(spec.name, spec.to_dict())
        store.plan_jobs(jobs)
        todo = [j for j in jobs if status.get(j.job_id) != "ok"]
        done = len(jobs) - len(todo)
        log(f"campaign {spec.name!r}: {len(jobs)} jobs planned, {done} already done, {len(todo)} to run")
        if not todo:
            return RunOutcome(len(jobs), done, None)
        try:
            if engine == "ray":
                from lab.measure.ray_engine import run_with_ray
                summary = run_with_ray(store, prep.devices, todo, options, address=address)
            else:
                summary = Scheduler(store, prep.devices, options).run(todo)
        except KeyboardInterrupt as exc:
            from lab.core.signals import interruption_name
            store.reset_running(spec.name, interrupted_note or
                                f"interrupted ({interruption_name(exc)}): not measured; "
                                "`lab run --resume` runs it")
            raise
        summary.already_done = done
        return RunOutcome(len(jobs), done, summary)
    finally:
        store.close()


def measure_for_advice(model_id: str, device_id: str, *, store_path: str | Path,
                       devices_path: str | Path, models_root: str | Path = "models",
                       scheduler_options: SchedulerOptions | None = None,
                       protocol: MeasurementProtocol | None = None, log: Log | None = None) -> tuple[str, list[str]]:
    """`lab advise --measure`: a short campaign (every backend that applies to the device, fp32,
    1 thread) run before the advisor reads the store. Returns (campaign name, job ids) so the
    verdict quotes exactly these jobs."""
    from lab.devices.backends import BACKENDS
    from lab.measure.campaign import applicable
    log = log or _quiet
    devices = load_devices(devices_path)
    dev = next((d for d in devices if d.id == device_id), None)
    if dev is None:
        raise ConfigError(f"--measure needs device {device_id!r} in the inventory {devices_path}",
                          fix="add it to devices.yaml (imported-only devices cannot be measured)")
    if not dev.enabled:
        raise ConfigError(f"--measure: device {device_id!r} is disabled in {dev.source}:{dev.line}",
                          fix="set 'enabled: true' or drop --measure")
    art = ensure_artifact(model_id, models_root, log)
    # the processor question: Paddle's own backends; the browser backends answer "how does it run in
    # a web page" (campaigns/web.yaml), serving measures QPS under load, and other frameworks are
    # baselines a campaign names (campaigns/frameworks.yaml)
    backends = tuple(b for b in BACKENDS if BACKENDS[b].runtime not in ("paddle-js", "serving", "onnxruntime")
                     and applicable(dev, b, "fp32", art) is None)
    if not backends:
        raise ConfigError(f"--measure: no backend applies to device {device_id!r}")
    spec = CampaignSpec(name=f"advise-{model_id}-{device_id}", devices=(device_id,),
                        models=(model_id,), backends=backends, threads=(1,), precisions=("fp32",),
                        batch=(1,), options=(), protocol=protocol or ADVISE_PROTOCOL,
                        description="lab advise --measure")
    jobs, excluded = plan_jobs(spec, devices, lambda _m: art.sha256)
    prepare_checks([art], jobs, log)
    for ex in excluded:
        log(f"not planned: {ex.backend}: {ex.reason}")
    opts = scheduler_options or SchedulerOptions(progress=False, models_root=str(models_root))
    run_prepared(Prepared(devices, spec, jobs, excluded), store_path, opts, mode="resume", log=log,
                 keep_stale=True)
    return spec.name, [j.job_id for j in jobs]
