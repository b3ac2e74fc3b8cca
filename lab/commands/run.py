"""`lab run CAMPAIGN`: parse arguments, call lab.measure.orchestrate, print what happened."""
from __future__ import annotations

from lab.commands import argtypes
import argparse
import sys

from lab.core.errors import ConfigError

# lab.measure.orchestrate (scheduler, store, transports) is imported in the handlers: `lab --help` and
# the read commands must not pay for it.


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
    p.add_argument("--max-parallel", type=argtypes.integer(1, 1024, what="a device count"), default=8, metavar="N", help="devices measured at once")
    p.add_argument("--retries", type=argtypes.integer(0, 100, what="a retry count"), default=2, help="retries for transient device errors")
    p.add_argument("--models-root", metavar="DIR", default=argparse.SUPPRESS,  # lab.cli's default
                   help="where built models live (default ./models)")
    p.add_argument("--no-progress", action="store_true",
                   help="no live view: one line per job start and end instead (what a pipe gets)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from lab.measure.orchestrate import prepare, run_prepared
    from lab.measure.scheduler import SchedulerOptions
    if args.engine == "ray":  # a missing Ray is bad input: say so before any model is built
        from lab.measure.ray_engine import import_ray
        import_ray()
    prep = prepare(args.campaign, args.devices, args.models_root, dry_run=args.dry_run, log=_log)
    for ex in prep.excluded:
        _log(f"not planned: {ex.model} on {ex.device} with {ex.backend}: {ex.reason}")
    if not prep.jobs:
        first = prep.excluded[0] if prep.excluded else None  # its reason names what to install
        raise ConfigError("the campaign plans no runnable job", path=prep.spec.path,
                          fix=(f"{first.backend} on {first.device}: {first.reason}" if first else
                               "check devices and backends") +
                          ("; see the 'not planned' lines above" if len(prep.excluded) > 1 else ""))
    if args.dry_run:
        return _dry_run(args, prep)
    from lab.measure.locks import DeviceLocks
    with DeviceLocks([j.device for j in prep.jobs], prep.spec.name):
        opts = SchedulerOptions(max_parallel=args.max_parallel, retries=args.retries,
                                models_root=args.models_root, progress=True,
                                live=not args.no_progress)
        mode = "fresh" if args.fresh else "resume" if args.resume else "plain"
        outcome = run_prepared(prep, args.store, opts, mode=mode, engine=args.engine,
                               address=args.address, log=_log)
    summary = outcome.summary
    if summary is None:
        return 0
    name = prep.spec.name
    _log(f"campaign {name!r}: {summary.ok} ok{summary.quality_text}, {summary.failed} failed, "
         f"{summary.skipped} skipped"
         f" (+{outcome.already_done} done before); results in {args.store}")
    if summary.unfinished:
        _log(f"{summary.unfinished} jobs did not finish; `lab run --resume` runs them")
    for st in summary.devices.values():
        if not st.healthy:
            _log(f"device {st.device!r} marked unhealthy: {st.reason}")
    return outcome.exit_code


def _dry_run(args, prep) -> int:
    """Print the plan, with what the store already holds for each job."""
    from lab.measure.orchestrate import stored_status
    status = stored_status(args.store, prep.spec.name)
    jobs = prep.jobs
    print(f"{'job_id':<16}  {'stored':<8} {'device':<16} {'model':<14} {'backend':<24} prec threads batch options")
    for j in jobs:
        print(f"{j.job_id}  {status.get(j.job_id, '-'):<8} {j.device:<16} {j.model:<14} {j.backend:<24} "
              f"{j.precision} t{j.threads} b{j.batch} {dict(j.options)}")
    finished = sum(1 for j in jobs if status.get(j.job_id) in ("ok", "failed", "skipped"))
    todo = sum(1 for j in jobs if status.get(j.job_id) != "ok")
    _log(f"dry run: {len(jobs)} jobs planned, {len(jobs) - todo} already ok, {todo} would run with --resume"
         + (f"; a plain run would be refused ({finished} finished jobs stored)" if finished else ""))
    from lab.measure.duration import fmt_s, plan_bounds
    from lab.runtimes.serving import loadgen_runs
    lo, hi = plan_bounds(jobs, args.max_parallel)
    rlo, rhi = plan_bounds([j for j in jobs if status.get(j.job_id) != "ok"], args.max_parallel)
    _log(f"estimated device time: {fmt_s(lo)} to {fmt_s(hi)} for all {len(jobs)} jobs"
         + (f" ({fmt_s(rlo)} to {fmt_s(rhi)} for the {todo} left)" if todo != len(jobs) else "")
         + " (per job: trials x (warm-up + min..max steady seconds + start allowance) + cooldown; a "
         "serving job: every LoadGen run its scenario can make, a sweep's up to "
         f"{loadgen_runs('sweep')[1]}; devices in parallel; lab/measure/duration.py)")
    return 0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
