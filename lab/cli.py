"""`lab` command line: parse args, call the API, print. Exit 0 ok / 1 jobs failed / 2 bad input.

Thin on purpose: each subcommand lives in `lab/commands/<name>.py` with `register(subparsers)`;
the handler it sets as `func` returns the exit code. A `_`-prefixed module there is a helper of
one command (e.g. `_models_quant` under `lab models`), not a command of its own.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from lab import commands
from lab.core.errors import ConfigError, LabError


GLOBAL_OPTIONS = ("--devices", "--store", "--models-root")  # before or after the command, alike


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        from lab.core.textsafe import clip, one_line
        message = clip(message)  # argparse echoes the bad value whole
        sys.stderr.write(f"lab: error: {one_line(message)} (see 'lab {self.prog.split(' ', 1)[-1]} --help')\n"
                         if " " in self.prog else f"lab: error: {one_line(message)} (see 'lab --help')\n")
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or with `only` one command registered (what a run of that command needs:
    the other command modules, and what they import, are never loaded; issue 23)."""
    parser = _Parser(prog="lab", allow_abbrev=False,
                     description="hwlab: benchmark PaddlePaddle models on devices and choose the chip to "
                     "ship on.")
    from lab import __version__
    parser.add_argument("--version", action="version", version=f"lab (hwlab) {__version__}")
    parser.add_argument("--devices", default="devices.yaml", metavar="PATH",
                        help="device inventory (default ./devices.yaml)")
    parser.add_argument("--store", default="results/lab.sqlite", metavar="PATH",
                        help="results store (default results/lab.sqlite)")
    parser.add_argument("--models-root", default="models", metavar="DIR",
                        help="where built models live (default ./models)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # helpers of a command (e.g. _models_quant under `models`)
            continue
        if only is not None and info.name != only:
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):  # argtypes, tables: helpers the commands share
            module.register(sub)
    for child in sub.choices.values():
        _add_globals(child)
    return parser


def _add_globals(parser: argparse.ArgumentParser) -> None:
    """Accept --devices/--store/--models-root after the subcommand too (`lab results --store X`),
    alike before it; SUPPRESS keeps the root parser's value when they are not given there."""
    parser.allow_abbrev = False  # `--resum` must not silently mean `--resume`
    have = {opt for action in parser._actions for opt in action.option_strings}
    for opt in GLOBAL_OPTIONS:
        if opt not in have:
            parser.add_argument(opt, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_globals(child)


def _error(message: str) -> None:
    """One line on stderr, names shown as text (no control sequences, no embedded newlines), quoting
    at most an excerpt of a long value (an OSError's file name is the user's path)."""
    from lab.core.textsafe import clip, one_line
    try:
        sys.stderr.write(f"lab: error: {one_line(clip(message))}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr itself is gone: the exit code still says it


def _flush_stdout() -> int | None:
    """Flush stdout now, so a full disk (/dev/full) or a closed pipe is one line, not a
    traceback at interpreter exit. Returns an exit code when the output was lost."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _park_stdout()
        return 0
    except OSError as exc:
        _park_stdout()
        _error(f"cannot write the output: {exc.strerror or exc}")
        return 1
    return None


def _park_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush has nothing left to fail on."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


_PARSERS: dict[str | None, argparse.ArgumentParser] = {}


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser, built once per process and command (argparse parsers are reusable; building
    one imports and registers commands, which tests calling main() many times should not repeat)."""
    if only not in _PARSERS:
        _PARSERS[only] = build_parser(only)
    return _PARSERS[only]


def _command_in(argv: list[str]) -> str | None:
    """The command of `argv` when it can be parsed with that command alone: the first bare word
    after `--option VALUE` pairs, if a command module has that name; else None (the whole CLI:
    `--help`, a typo, a flag before the command)."""
    i = 0
    while i < len(argv):
        if not argv[i].startswith("-"):
            name = argv[i]
            ok = name.isidentifier() and not name.startswith("_")
            return name if ok and os.path.isfile(os.path.join(commands.__path__[0], name + ".py")) else None
        i += 1 if "=" in argv[i] else 2
    return None


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        # fast path (issue 23: < 60 ms): no parser, so no command module is imported
        from lab import __version__
        print(f"lab (hwlab) {__version__}")
        raise SystemExit(0)  # as argparse's version action does
    parser = _parser(_command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from lab.core import signals
    signals.install()
    try:
        code = int(args.func(args) or 0)
    except ConfigError as exc:
        code = 2
        _error(str(exc))
    except LabError as exc:
        code = 1
        _error(str(exc))
    except KeyboardInterrupt as exc:
        print(f"lab: interrupted ({signals.interruption_name(exc)}); finished jobs are stored, "
              "run again with --resume", file=sys.stderr)
        return signals.exit_code(exc)
    except BrokenPipeError:
        _park_stdout()
        return 0
    except OSError as exc:  # a path the user gave: too long, under /proc, no permission, disk full
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            _error(f"{where}{exc.strerror or exc}")
            return 1
        _error(f"{where}{exc.strerror or exc}")
        return 2
    lost = _flush_stdout()
    return code if lost is None else (code or lost)


if __name__ == "__main__":
    sys.exit(main())
