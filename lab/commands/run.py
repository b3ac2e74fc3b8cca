"""`lab run CAMPAIGN`: plan a campaign into jobs and measure them."""
from __future__ import annotations

import sys
from pathlib import Path

from ..campaign import load_campaign, plan_jobs
from ..errors import ConfigError
from ..inventory import load_devices
from ..scheduler import Scheduler, SchedulerOptions
from ..store import Store


def register(sub) -> None:
    p = sub.add_parser("run", help="run a campaign (models x devices x backends x precisions x threads)")
    p.add_argument("campaign", help="campaign YAML file, e.g. campaigns/demo.yaml")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="run only the jobs of this campaign not yet stored as ok")
    mode.add_argument("--fresh", action="store_true",
                      help="delete this campaign's stored jobs first and measure everything again")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local threads (default) or a Ray cluster (pip install .[ray])")
    p.add_argument("--address", default="auto", help="Ray address for --engine ray (auto | host:port)")
    p.add_argument("--max-parallel", type=int, default=8, metavar="N", help="devices measured at once")
    p.add_argument("--retries", type=int, default=2, help="retries for transient device errors")
    p.add_argument("--models-root", default="models", help="where built models live (default models/)")
    p.add_argument("--no-progress", action="store_true", help="no live progress view")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.set_defaults(func=cmd_run)


def prepare(args):
    """Load inventory + campaign, make sure models exist, plan jobs. Shared with the Ray engine."""
    devices = load_devices(args.devices)
    spec = load_campaign(args.campaign)
    from ..inventory import find_device
    for dev_id in spec.devices:  # device mistakes first: before any model is built
        d = find_device(devices, dev_id, where=f"{spec.path}: ")
        if not d.enabled and getattr(args, "dry_run", False):
            _log(f"note: device {dev_id!r} is disabled in {d.source}:{d.line}; planned for --dry-run only")
        elif not d.enabled:
            raise ConfigError(f"campaign names device {dev_id!r}, which is disabled in {d.source}:{d.line}",
                              path=spec.path, fix="set 'enabled: true' for it or remove it from the campaign")
    hashes = {m: ensure_artifact(m, args.models_root).sha256 for m in spec.models}
    jobs, excluded = plan_jobs(spec, devices, hashes.__getitem__)
    return devices, spec, jobs, excluded


def ensure_artifact(model_id: str, root: str):
    """The built model; zoo models not built yet are built now (user models must exist)."""
    from .. import models
    try:
        return models.load_artifact(model_id, root=root)
    except ConfigError as missing:
        zoo = models.load_zoo(models.default_zoo_path(root))
        if model_id not in zoo:
            import difflib
            known = sorted(set(zoo) | {p.parent.name for p in Path(root).glob("*/meta.json")})
            close = difflib.get_close_matches(model_id, known, n=1)
            raise ConfigError(f"model {model_id!r} is neither built under {root}/ nor in the zoo",
                              fix=(f"did you mean {close[0]!r}? " if close else "") +
                              "register your own with `lab models add`") from None
        if (Path(root) / model_id / "meta.json").exists():
            raise  # a built model whose files went missing: say so, do not silently rebuild
        _log(f"building model {model_id!r} (first use) ...")
        return models.build(model_id, out_root=root)


def cmd_run(args) -> int:
    if args.engine == "ray":  # a missing Ray is bad input: say so before any model is built
        from ..ray_engine import import_ray
        import_ray()
    devices, spec, jobs, excluded = prepare(args)
    for ex in excluded:
        _log(f"not planned: {ex.model} on {ex.device} with {ex.backend}: {ex.reason}")
    if not jobs:
        raise ConfigError("the campaign plans no runnable job", path=spec.path,
                          fix="check devices and backends: see the 'not planned' lines above")
    if args.dry_run:
        return _dry_run(args, spec, jobs)
    from ..locks import DeviceLocks
    with DeviceLocks([j.device for j in jobs], spec.name):
        return _run_planned(args, devices, spec, jobs)


def _dry_run(args, spec, jobs) -> int:
    """Print the plan, with what the store already holds for each job."""
    status: dict[str, str] = {}
    if Path(args.store).is_file():
        store = Store(args.store)
        try:
            status = store.job_status(spec.name)
        finally:
            store.close()
    print(f"{'job_id':<16}  {'stored':<8} {'device':<16} {'model':<14} {'backend':<24} prec threads batch options")
    for j in jobs:
        print(f"{j.job_id}  {status.get(j.job_id, '-'):<8} {j.device:<16} {j.model:<14} {j.backend:<24} "
              f"{j.precision} t{j.threads} b{j.batch} {dict(j.options)}")
    finished = sum(1 for j in jobs if status.get(j.job_id) in ("ok", "failed", "skipped"))
    todo = sum(1 for j in jobs if status.get(j.job_id) != "ok")
    _log(f"dry run: {len(jobs)} jobs planned, {len(jobs) - todo} already ok, {todo} would run with --resume"
         + (f"; a plain run would be refused ({finished} finished jobs stored)" if finished else ""))
    return 0


def _run_planned(args, devices, spec, jobs) -> int:
    store = Store(args.store)
    try:
        if args.fresh:
            store.delete_campaign(spec.name)
        status = store.job_status(spec.name)
        finished = {k for k, v in status.items() if v in ("ok", "failed", "skipped")}
        if finished and not args.resume:
            raise ConfigError(f"campaign {spec.name!r} already has {len(finished)} finished jobs in "
                              f"{args.store}", path=spec.path,
                              fix="use --resume to finish it, or --fresh to measure everything again")
        planned_ids = {j.job_id for j in jobs}
        stale = [k for k in status if k not in planned_ids]
        if stale:
            raise ConfigError(f"campaign {spec.name!r} changed since it was stored: {len(stale)} stored jobs "
                              "are not in the new plan (edited protocol, models, devices or a rebuilt model)",
                              path=spec.path, fix="use --fresh to measure it again as it is now, or give the "
                              "changed campaign a new name")
        store.save_campaign(spec.name, spec.to_dict())
        store.plan_jobs(jobs)
        todo = [j for j in jobs if status.get(j.job_id) != "ok"]
        done = len(jobs) - len(todo)
        _log(f"campaign {spec.name!r}: {len(jobs)} jobs planned, {done} already done, {len(todo)} to run")
        if not todo:
            return 0
        opts = SchedulerOptions(max_parallel=args.max_parallel, retries=args.retries,
                                models_root=args.models_root, progress=not args.no_progress)
        try:
            if args.engine == "ray":
                from ..ray_engine import run_with_ray
                summary = run_with_ray(store, devices, todo, opts, address=args.address)
            else:
                summary = Scheduler(store, devices, opts).run(todo)
        except KeyboardInterrupt:
            store.reset_running(spec.name, "interrupted (Ctrl-C): not measured; `lab run --resume` runs it")
            raise
        summary.already_done = done
        _log(f"campaign {spec.name!r}: {summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped"
             f" (+{done} done before); results in {args.store}")
        if summary.unfinished:
            _log(f"{summary.unfinished} jobs did not finish; `lab run --resume` runs them")
        for st in summary.devices.values():
            if not st.healthy:
                _log(f"device {st.device!r} marked unhealthy: {st.reason}")
        return summary.exit_code
    finally:
        store.close()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)

