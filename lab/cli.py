"""`lab` command line: parse args, call the API, print. Exit 0 ok / 1 jobs failed / 2 bad input.

Thin on purpose: each subcommand lives in `lab/commands/<name>.py` with `register(subparsers)`;
the handler it sets as `func` returns the exit code. A `_`-prefixed module there is a helper of
one command (e.g. `_models_quant` under `lab models`), not a command of its own.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import ConfigError, LabError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        sys.stderr.write(f"lab: error: {message} (see 'lab {self.prog.split(' ', 1)[-1]} --help')\n"
                         if " " in self.prog else f"lab: error: {message} (see 'lab --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lab", allow_abbrev=False,
                     description="hwlab: benchmark PaddlePaddle models on devices and choose the chip to "
                     "ship on.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"lab (hwlab) {__version__}")
    parser.add_argument("--devices", default="devices.yaml", metavar="PATH",
                        help="device inventory (default ./devices.yaml)")
    parser.add_argument("--store", default="results/lab.sqlite", metavar="PATH",
                        help="results store (default results/lab.sqlite)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # helpers of a command (e.g. _models_quant under `models`)
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    for child in sub.choices.values():
        _add_globals(child)
    return parser


def _add_globals(parser: argparse.ArgumentParser) -> None:
    """Accept --devices/--store after the subcommand too (`lab results --store X`); SUPPRESS keeps
    the root parser's value when they are not given there."""
    parser.allow_abbrev = False  # `--resum` must not silently mean `--resume`
    have = {opt for action in parser._actions for opt in action.option_strings}
    if "--devices" not in have:
        parser.add_argument("--devices", default=argparse.SUPPRESS, metavar="PATH", help=argparse.SUPPRESS)
    if "--store" not in have:
        parser.add_argument("--store", default=argparse.SUPPRESS, metavar="PATH", help=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_globals(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from . import signals
    signals.install()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"lab: interrupted ({signals.interruption_name(exc)}); finished jobs are stored, "
              "run again with --resume", file=sys.stderr)
        return signals.exit_code(exc)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
