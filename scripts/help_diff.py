"""Every `lab ... --help` text (and `lab --version`) of two source trees: prints the differences.

Why: a refactor that moves modules must not change what a user reads. This walks the parser of
each tree (`lab --help`, every command's, every subcommand's, e.g. `lab models build --help`),
asks each for its help exactly as a user would (`parse_args([..., "--help"])` in a child process
whose `sys.path` starts with that tree), and prints a unified diff per command that differs.

    .venv/bin/python scripts/help_diff.py OLD_TREE [NEW_TREE] [--columns 100] [--dump DIR]

NEW_TREE defaults to this checkout. Exit 0 when every help text is identical, 1 otherwise.
`--dump DIR` also writes each tree's texts to DIR/<old|new>/<command>.txt.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import argparse, contextlib, io, json, sys
import lab
from lab.cli import build_parser

def paths(parser, path):
    out = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out += paths(child, path + [name])
    return out

texts = {}
for argv in [path + ["--help"] for path in paths(build_parser(), [])] + [["--version"]]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pass
    texts[" ".join(["lab"] + argv)] = buf.getvalue()
print(json.dumps({"lab_file": lab.__file__, "texts": texts}))
"""


def help_texts(tree: Path, columns: int) -> dict[str, str]:
    """{"lab models build --help": its text, "lab --version": ...} for the lab package under `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree), COLUMNS=str(columns), LANG="C.UTF-8")
    env.pop("PYTHONSTARTUP", None)
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=tree, env=env, capture_output=True, text=True,
                       check=True)
    doc = json.loads(r.stdout)
    expected = (tree / "lab" / "__init__.py").resolve()
    if Path(doc["lab_file"]).resolve() != expected:
        raise SystemExit(f"{tree}: imported {doc['lab_file']}, not {expected}")
    return doc["texts"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path, nargs="?", default=REPO)
    ap.add_argument("--columns", type=int, default=100, help="terminal width argparse wraps at")
    ap.add_argument("--dump", type=Path, help="also write every text to DIR/old and DIR/new")
    a = ap.parse_args()
    old, new = help_texts(a.old.resolve(), a.columns), help_texts(a.new.resolve(), a.columns)
    if a.dump:
        for side, texts in (("old", old), ("new", new)):
            (a.dump / side).mkdir(parents=True, exist_ok=True)
            for cmd, text in texts.items():
                (a.dump / side / (cmd.replace(" ", "_").replace("--", "") + ".txt")).write_text(text)
    differ = 0
    for cmd in sorted(set(old) | set(new)):
        if cmd not in old or cmd not in new:
            print(f"== {cmd}: only in {'new' if cmd not in old else 'old'}")
            differ += 1
        elif old[cmd] != new[cmd]:
            differ += 1
            sys.stdout.writelines(difflib.unified_diff(old[cmd].splitlines(True), new[cmd].splitlines(True),
                                                       f"old: {cmd}", f"new: {cmd}"))
    print(f"{len(set(old) | set(new))} texts (old {len(old)}, new {len(new)}), {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
