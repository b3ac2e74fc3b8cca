"""`lab advise`: "CPU or AIPU?" for a model on a device (or every pair of a campaign).

Imports of the advisor are deferred to the handler so that `lab --help` and other commands do
not pay for them, and the advise path never imports paddle, pandas or matplotlib.
"""
from __future__ import annotations

import argparse
import sys

from lab.commands import argtypes
from lab.core import jsonio
from lab.core.textsafe import clean


def register(sub) -> None:
    p = sub.add_parser("advise", help="CPU or AIPU? verdict with reasons and numbers for a model "
                       "on a device (or every model x device of a campaign)")
    p.add_argument("--model", metavar="M", help="model id (zoo, registered, or as in imported results)")
    p.add_argument("--device", metavar="D", help="device id (inventory or imported results)")
    p.add_argument("--campaign", metavar="C", help="answer for every model x device stored for campaign C")
    p.add_argument("--latency-budget-ms", type=argtypes.positive, metavar="X",
                   help="steady-state latency the deployment must meet")
    p.add_argument("--first-inference-budget-ms", type=argtypes.positive, metavar="Y",
                   help="budget for the first prediction (load + first inference with --no-preload)")
    p.add_argument("--no-preload", action="store_true",
                   help="the model is loaded on demand, so load time counts toward the first prediction")
    p.add_argument("--busy-cpu", action="store_true",
                   help="the CPU is busy with other work (game, video, camera)")
    p.add_argument("--power-budget-w", type=argtypes.positive, metavar="W", help="power budget in watts")
    p.add_argument("--measure", action="store_true",
                   help="first run a short campaign on the device through the scheduler, then answer")
    p.add_argument("--models-root", metavar="DIR", default=argparse.SUPPRESS,  # lab.cli's default
                   help="where built models live (default ./models)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_advise)


def cmd_advise(args) -> int:
    from lab.api import advice_rows  # only the rows the answer reads
    from lab.core.errors import ConfigError
    from lab.decide.advice_records import Options
    from lab.decide.advisor import advise, advise_campaign, render_text

    if args.campaign and (args.model or args.device or args.measure):
        raise ConfigError("--campaign answers for every pair of a stored campaign; do not combine "
                          "it with --model/--device/--measure")
    if not args.campaign and not (args.model and args.device):
        raise ConfigError("lab advise needs --model M --device D (or --campaign C)")
    opts = Options(latency_budget_ms=args.latency_budget_ms,
                   first_inference_budget_ms=args.first_inference_budget_ms,
                   no_preload=args.no_preload, busy_cpu=args.busy_cpu,
                   power_budget_w=args.power_budget_w)
    if args.campaign:
        answers = advise_campaign(args.campaign, options=opts, store_path=args.store,
                                  devices_path=args.devices, models_root=args.models_root)
    else:
        job_ids = None
        from pathlib import Path

        from lab.models.zoo import is_zoo_model
        if (not args.measure and not (Path(args.models_root) / args.model / "meta.json").exists()
                and is_zoo_model(args.model, args.models_root)):  # the cheap check first
            # a zoo model not built yet: build it now, and say so (the verdict needs its analysis)
            from lab.measure.orchestrate import ensure_artifact
            ensure_artifact(args.model, args.models_root, log=lambda m: print(m, file=sys.stderr))
        if args.measure:  # the verdict quotes exactly the jobs just measured, nothing older
            from lab.measure.orchestrate import measure_for_advice
            name, job_ids = measure_for_advice(args.model, args.device, store_path=args.store,
                                               devices_path=args.devices, models_root=args.models_root,
                                               log=lambda m: print(m, file=sys.stderr))
            print(f"measured: campaign {name!r} in {args.store}", file=sys.stderr)
        answers = [advise(args.model, args.device, options=opts, store_path=args.store,
                          devices_path=args.devices, models_root=args.models_root,
                          job_ids=job_ids, rows=advice_rows(args.store, args.device, args.model))]
    if args.format == "json":
        docs = [a.to_dict() for a in answers]
        print(jsonio.dumps(docs if args.campaign else docs[0], indent=2))
    else:
        print(clean("\n\n".join(render_text(a) for a in answers)))
    return 0

