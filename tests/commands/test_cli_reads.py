"""Start-up of the read commands (issue 23): `lab --version` builds no parser, and a command parses
with its own module alone; anything unclear falls back to the whole CLI."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lab.cli import _command_in

LOADED = ("import sys\nfrom lab.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
          "print(sorted(m for m in sys.modules if m.startswith('lab.commands.')))")


@pytest.mark.parametrize("argv,command", [
    (["advise", "--model", "m"], "advise"),
    (["--store", "advise", "results", "--format", "json"], "results"),  # a value is not the command
    (["--store=x.sqlite", "score"], "score"),
    (["--help", "advise"], None),  # a flag before the command: the whole CLI
    (["advice"], None),  # a typo: the whole CLI names the choices
    (["_models_quant"], None), (["../cli"], None), ([], None),
])
def test_the_command_a_run_needs(argv, command):
    assert _command_in(argv) == command


@pytest.mark.parametrize("argv,modules", [
    (["--version"], []),
    (["advise", "--help"], ["lab.commands.advise", "lab.commands.argtypes"]),
    (["results", "--help"], ["lab.commands.results"]),
])
def test_a_command_imports_no_other_command(argv, modules, capsys):
    out = subprocess.run([sys.executable, "-c", LOADED.format(argv=argv)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == repr(modules)
