"""`lab models quantize | accuracy | agreement`: int8 models and whether their outputs are right.

A private module (no top-level command: lab.cli skips `_`-prefixed modules); its actions hang
under `lab models` (commands/models.py calls register_actions). Thin: parse, call lab.models.quantize / lab.models.accuracy / lab.models.agreement, print. Exit 1 when a check fails
(the model is kept and marked failed), 2 on bad input.
"""
from __future__ import annotations

from lab.commands import argtypes
import json
import sys


def register_actions(actions, common) -> None:
    q = actions.add_parser("quantize", help="post-training int8 quantisation -> model ID-int8, "
                                            "checked against fp32")
    q.add_argument("id", help="a built model (zoo or user, with a legacy .pdmodel)")
    q.add_argument("--algo", choices=["abs_max", "hist", "KL"], default="abs_max",
                   help="activation calibration algorithm (default abs_max)")
    q.add_argument("--calib-batches", type=argtypes.integer(1, 100_000, what="a batch count"), default=8, metavar="N",
                   help="calibration batches (default 8)")
    q.add_argument("--calib-data", metavar="FILE.npz|DIR",
                   help="calibration inputs (keys = input names); default: the model's own data "
                        "set, else seeded random")
    q.add_argument("--engine", choices=["paddle", "paddleslim"], default="paddle")
    q.add_argument("--force", action="store_true", help="re-quantise even when up to date")
    common(q)
    q.set_defaults(func=cmd_quantize)

    a = actions.add_parser("accuracy", help="top-1 accuracy on the model's eval set (or "
                                            "--eval-data)")
    a.add_argument("id")
    a.add_argument("--eval-data", metavar="eval.npz", help="labels + one array per model input")
    a.add_argument("--format", choices=["text", "json"], default="text")
    common(a)
    a.set_defaults(func=cmd_accuracy)

    g = actions.add_parser("agreement", help="compare a model's outputs with a reference model's "
                                             "fp32 outputs")
    g.add_argument("id")
    g.add_argument("--against", metavar="REF_ID", help="reference model (default: the parent of "
                                                       "an -int8 model)")
    g.add_argument("--precision", choices=["fp32", "fp16", "int8"], default=None,
                   help="thresholds and host mode (default: the model's precision tag, else fp32)")
    common(g)
    g.set_defaults(func=cmd_agreement)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_quantize(args) -> int:
    from lab.models import quantize
    r = quantize.quantize(args.id, args.models_root, algo=args.algo, calib_batches=args.calib_batches,
                          calib_data=args.calib_data, engine=args.engine, force=args.force,
                          log=_log)
    from lab.models.artifact import read_meta
    q = read_meta(r.artifact.id, args.models_root).quantization
    sizes = q["size_bytes"]
    print(f"{r.artifact.id}: {'reused' if r.reused else f'quantised in {r.seconds:.1f} s'}, "
          f"params {sizes['fp32_params'] / 1e6:.1f} MB -> {sizes['int8_params'] / 1e6:.1f} MB, "
          f"{q['int8_weight_tensors']} int8 weight tensors, quant ops {q['quant_ops']}")
    print(f"agreement {r.summary}")
    if not r.passed:
        print(f"{r.artifact.id}: agreement check FAILED; the model is kept and marked failed",
              file=sys.stderr)
        return 1
    return 0


def cmd_accuracy(args) -> int:
    from lab.models import accuracy
    from lab.models.artifact import load_artifact
    art = load_artifact(args.id, args.models_root)
    acc = accuracy.measure(art, eval_data=args.eval_data)
    if args.format == "json":
        print(json.dumps(acc.to_dict()))
    else:
        print(f"{art.id}: accuracy_top1 {acc.accuracy_top1:.4f} ({acc.correct}/{acc.n}) on "
              f"{acc.eval_set}, {acc.mode}")
    return 0


def cmd_agreement(args) -> int:
    from lab.models import agreement
    from lab.models.artifact import load_artifact, update_meta
    from lab.core.errors import ConfigError
    art = load_artifact(args.id, args.models_root)
    ref_id = args.against or art.parent
    if not ref_id:
        raise ConfigError(f"model {art.id!r} has no parent", fix="pass --against REF_ID")
    ref = load_artifact(ref_id, args.models_root)
    precision = args.precision or art.tags.get("precision") or "fp32"
    files = (art.pdmodel_path, art.legacy_pdiparams_path) if art.pdmodel_path else \
        (art.model_path, art.params_path)
    ag = agreement.check_host(files, ref, precision)
    update_meta(art.id, args.models_root, agreement=ag.to_dict(),
                status="ok" if ag.passed else "failed")
    print(f"{art.id} vs {ref_id}: agreement {agreement.summary(ag)}")
    return 0 if ag.passed else 1

