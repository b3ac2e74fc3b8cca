"""`lab models`: build zoo models, register user models, list and analyse them.

Thin: argument parsing and printing only; the work is in `lab.models` (zoo, build, user, artifact, analysis).
"""
from __future__ import annotations

from lab.core import jsonio
from lab.core.textsafe import clean, one_line
import argparse
import json
import sys
from pathlib import Path

from lab.core.errors import ConfigError


def _common(parser, top: bool = False) -> None:
    """--root/--models-root and --zoo, accepted before or after the action."""
    parser.add_argument("--root", dest="models_root", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--models-root", metavar="DIR", default=argparse.SUPPRESS,  # lab.cli's default
                        help="where built models live (default ./models)")
    parser.add_argument("--zoo", metavar="PATH", default=None if top else argparse.SUPPRESS,
                        help="zoo file (default <root>/zoo.yaml, else the lab's own)")


def register(sub) -> None:
    p = sub.add_parser("models", help="build/list/add/analyse models (zoo: models/zoo.yaml)")
    _common(p, top=True)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    b = actions.add_parser("build", help="export zoo models (.json + legacy .pdmodel), cached")
    b.add_argument("ids", nargs="*", metavar="ID", help="zoo model ids")
    b.add_argument("--all", action="store_true", help="every zoo model")
    b.add_argument("--force", action="store_true", help="rebuild even when the cache is valid")
    b.add_argument("--lite-target", action="append", default=[], metavar="TARGET",
                   help="also convert to a Paddle Lite .nb for TARGET (arm, huawei_kirin_npu, "
                        "...; repeatable; needs paddle_lite_opt)")
    b.add_argument("--onnx", action="store_true",
                   help="also export to ONNX (paddle2onnx, opset 13) under models/<id>/onnx/")
    b.add_argument("--onnx-int8", action="store_true",
                   help="also an int8 ONNX (ONNX Runtime quantize_static, QDQ per-channel); "
                        "implies --onnx")
    b.add_argument("--web", action="store_true",
                   help="also convert to a Paddle.js model (models/ID/web/; needs "
                        "scripts/install-web-deps.sh)")
    _common(b)
    b.set_defaults(func=cmd_build)

    ls = actions.add_parser("list", help="zoo and user models, built or not")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    _common(ls)
    ls.set_defaults(func=cmd_list)

    a = actions.add_parser("add", help="register your own exported model files")
    a.add_argument("id", help="new model id")
    a.add_argument("--model-file", required=True, metavar="PATH", help=".json or .pdmodel")
    a.add_argument("--params-file", metavar="PATH",
                   help=".pdiparams (default: next to the model file)")
    a.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="input run shape, e.g. x:1x3x224x224:float32 (repeat per input)")
    _common(a)
    a.set_defaults(func=cmd_add)

    im = actions.add_parser("import", help="convert an .onnx model into the zoo (x2paddle), "
                                           "checked against ONNX Runtime")
    im.add_argument("file", metavar="FILE.onnx")
    im.add_argument("--name", metavar="ID", help="model id (default: the file's stem)")
    im.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                    help="ONNX input run shape, e.g. input:1x3x224x224:float32 (needed for "
                         "dynamic dimensions past the batch)")
    im.add_argument("--force", action="store_true", help="convert again even when cached")
    _common(im)
    im.set_defaults(func=cmd_import)

    s = actions.add_parser("show", help="one model's meta (files, hashes, FLOPs, analysis)")
    s.add_argument("id")
    _common(s)
    s.set_defaults(func=cmd_show)

    an = actions.add_parser("analyze", help="static analysis of a built model or a model file")
    an.add_argument("target", help="model id, or a path to a .json / .pdmodel file")
    an.add_argument("--legacy", action="store_true", help="for a model id: analyse its .pdmodel")
    an.add_argument("--format", choices=["text", "json"], default="text")
    _common(an)
    an.set_defaults(func=cmd_analyze)

    from lab.commands import _models_quant  # quantize / accuracy / agreement (int8 and correctness)
    _models_quant.register_actions(actions, _common)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_build(args) -> int:
    from lab.models.artifact import load_artifact
    from lab.models.build import build
    from lab.models.zoo import default_zoo_path, load_zoo, suggest
    zoo_path = args.zoo or default_zoo_path(args.models_root)
    zoo = load_zoo(zoo_path)
    if args.all and args.ids:
        raise ConfigError("give model ids or --all, not both")
    ids = list(zoo) if args.all else args.ids
    if not ids:
        raise ConfigError("no model to build", fix=f"name ids ({', '.join(zoo)}) or pass --all")
    # Quantised and registered models are not in the zoo: accepted when built (--lite-target).
    unknown = [m for m in ids if m not in zoo and not (Path(args.models_root) / m / "meta.json").is_file()]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(map(repr, unknown))}", path=str(zoo_path),
                          fix=suggest(unknown[0], args.models_root) + f"zoo models: {', '.join(zoo)}")
    converted = web = onnx = 0
    for mid in ids:
        art = (build(mid, args.models_root, zoo_path=zoo_path, force=args.force, log=_log)
               if mid in zoo else load_artifact(mid, args.models_root))
        for target in args.lite_target:
            from lab.convert import lite as lite_convert  # on demand: opt's venv, paddle
            lite_convert.convert(art, target)
            converted += 1
        if args.onnx or args.onnx_int8:
            from lab.convert import onnx_out
            onnx_out.export(art, int8=args.onnx_int8, force=args.force, log=_log)
            onnx += 1
        if args.web:
            from lab.convert import paddlejs
            paddlejs.convert(art, force=args.force, log=_log)
            web += 1
    print(f"built {len(ids)} model(s) under {args.models_root}/" +
          (f", {converted} Paddle Lite conversion(s)" if converted else "") +
          (f", {onnx} ONNX export(s)" if onnx else "") + (f", {web} Paddle.js model(s)" if web else ""))
    return 0


def _fmt_int(n) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def cmd_list(args) -> int:
    from lab.models.artifact import list_models
    rows = list_models(args.models_root, args.zoo)
    if args.format == "json":
        print(jsonio.dumps([{"id": r.id, "source": r.source, "built": r.built, "flops": r.flops,
                    "params": r.params, "sha256": r.sha256, "note": r.note or None,
                    "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype,
                                "run_shape": list(i.run_shape)} for i in r.inputs]}
                   for r in rows], indent=1))
        return 0
    print(f"{'id':<16} {'source':<6} {'built':<5} {'MACs':>8} {'params':>8} {'sha256':<12} inputs")
    for r in rows:
        inputs = ", ".join(f"{i.name}:{'x'.join(map(str, i.shape))}:{i.dtype}" for i in r.inputs)
        print(one_line(f"{r.id:<16} {r.source:<6} {'yes' if r.built else 'no':<5} "
                       f"{_fmt_int(r.flops):>8} {_fmt_int(r.params):>8} "
                       f"{(r.sha256 or '-')[:12]:<12} {inputs}" + (f"  ({r.note})" if r.note else "")))
    return 0


def cmd_add(args) -> int:
    from lab.models.user import add_user_model, parse_input_arg
    inputs = [parse_input_arg(text) for text in args.input]
    art = add_user_model(args.id, args.model_file, args.params_file, inputs, args.models_root,
                         zoo_path=args.zoo)
    print(f"registered {art.id} ({art.model_format}) under {art.dir}/, sha256 {art.sha256[:12]}, "
          f"MACs {_fmt_int(art.flops)}, params {_fmt_int(art.params)}")
    return 0


def cmd_import(args) -> int:
    from lab.convert import onnx_in
    from lab.models.user import parse_input_arg
    inputs = [parse_input_arg(text) for text in args.input]
    art = onnx_in.import_onnx(args.file, args.name, inputs, args.models_root, zoo_path=args.zoo,
                              force=args.force, log=_log)
    meta = json.loads((art.dir / "meta.json").read_text())["onnx_import"]
    agree = meta["agreement"]
    mapping = ", ".join(f"{k} -> {v}" for k, v in meta["input_map"].items())
    print(f"imported {art.id} under {art.dir}/ (inputs {mapping}), sha256 {art.sha256[:12]}; "
          f"vs ONNX Runtime: cosine {agree.get('cosine')}, max_abs {agree.get('max_abs')}, "
          f"top1 {agree.get('top1')}" + (f" ({agree['error']})" if agree.get("error") else ""))
    return 0


def cmd_show(args) -> int:
    from lab.models.artifact import load_artifact
    art = load_artifact(args.id, args.models_root)
    meta = jsonio.load_file(art.dir / "meta.json", what="model meta")
    print(jsonio.dumps(meta, indent=1, sort_keys=True))
    return 0


def cmd_analyze(args) -> int:
    from pathlib import Path

    from lab.models import analysis
    from lab.models.artifact import load_artifact
    target = Path(args.target)
    if target.suffix.lower() in (".json", ".pdmodel") or target.is_file():
        if not target.is_file():
            raise ConfigError(f"model file {target} does not exist")
        res = analysis.analyze(target)
    else:
        art = load_artifact(args.target, args.models_root)
        if args.legacy:
            if art.pdmodel_path is None:
                raise ConfigError(f"model {art.id!r} has no legacy .pdmodel")
            res = analysis.analyze(art.pdmodel_path, params_file=art.legacy_pdiparams_path)
        else:
            res = analysis.analysis_for(art)
    if args.format == "json":
        print(jsonio.dumps(res.to_dict(), indent=1, sort_keys=True))
    else:
        print(clean(res.to_text()))
    return 0
