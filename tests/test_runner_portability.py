"""Runners travel alone to devices with old Pythons: Python 3.7+ syntax, no lab.* imports.

vermin (pip, in .venv) checks the minimum Python version of every file in lab/runners/.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUNNERS = sorted((REPO / "lab" / "runners").glob("*.py"))
# Files that travel to devices, and the third-party modules each may import.
TRAVELLING = {"pi_runner.py": {"paddle", "numpy"}, "lite_runner.py": {"paddlelite", "numpy"},
              "nvml_sampler.py": {"pynvml"}}


def _vermin_cmd():
    exe = Path(sys.executable).with_name("vermin")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("vermin")
    return [found] if found else None


def test_vermin_says_python_3_7_is_enough():
    cmd = _vermin_cmd()
    if cmd is None:
        pytest.skip("vermin is not installed (pip install vermin into .venv): cannot check Python 3.7 syntax")
    proc = subprocess.run(cmd + ["-t=3.7-", "--no-tips", "--violations"] + [str(p) for p in RUNNERS],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _top_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("." * node.level + (node.module or ""))
            else:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", sorted(TRAVELLING))
def test_travelling_runner_imports_only_stdlib_and_its_runtime(name):
    path = REPO / "lab" / "runners" / name
    if not path.exists():
        pytest.skip(f"{name} not written yet")
    allowed = set(sys.stdlib_module_names) | TRAVELLING[name] | {"__future__"}
    bad = sorted(n for n in _top_imports(path) if n not in allowed)
    assert not bad, f"{name} imports {bad}: runners travel alone (stdlib + their runtime only)"


def test_pi_runner_constants_are_plain_literals_at_top():
    """The host reads SCHEMA / RUNNER_VERSION by parsing, so they must be literal assignments."""
    from lab.runners import read_constants
    consts = read_constants(REPO / "lab" / "runners" / "pi_runner.py")
    assert consts.get("SCHEMA") == "hwlab.runner/1"
    assert isinstance(consts.get("RUNNER_VERSION"), str) and consts["RUNNER_VERSION"].count(".") == 2


def test_pi_runner_imports_paddle_lazily():
    """Importing the runner (e.g. for its helpers) must not import paddle or numpy."""
    code = ("import importlib.util, sys;"
            f"s = importlib.util.spec_from_file_location('r', {str(REPO / 'lab/runners/pi_runner.py')!r});"
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m);"
            "print('paddle' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["False", "False"]
