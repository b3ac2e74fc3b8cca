"""Runners travel to devices with old Pythons, each with runner_core.py and nothing else: Python 3.7+
syntax, no lab.* imports, no third-party import in runner_core.py.

vermin (pip, in .venv) checks the minimum Python version of every file in lab/runners/.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNERS = sorted((REPO / "lab" / "runners").glob("*.py"))
# Files that travel to devices, and the third-party modules each may import.
# A Python runner may also import its companion runner_core (pushed next to it by push_runner).
COMPANION = "runner_core"
TRAVELLING = {"pi_runner.py": {"paddle", "numpy", COMPANION}, "lite_runner.py": {"paddlelite", "numpy", COMPANION},
              "nvml_sampler.py": {"pynvml"}, "ort_runner.py": {"onnxruntime", "numpy", COMPANION},
              "web_server.py": set(), "runner_core.py": set(),
              "serving_runner.py": {"paddle", "numpy", "starlette", "uvicorn", COMPANION}}


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
            if node.level:  # `from . import runner_core` names the companion
                names.add("." * node.level + (node.module or ""))
                if node.level == 1 and not node.module:
                    names.update("." + a.name for a in node.names)
            else:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", sorted(TRAVELLING))
def test_travelling_runner_imports_only_stdlib_and_its_runtime(name):
    path = REPO / "lab" / "runners" / name
    if not path.exists():
        pytest.skip(f"{name} not written yet")
    allowed = set(sys.stdlib_module_names) | TRAVELLING[name] | {"__future__"}
    if COMPANION in TRAVELLING[name]:
        allowed |= {".", "." + COMPANION}  # the host's spelling of the same import
    bad = sorted(n for n in _top_imports(path) if n not in allowed)
    assert not bad, f"{name} imports {bad}: runners travel with runner_core.py only (stdlib + their runtime)"


def test_every_python_runner_file_is_listed():
    """A new file in lab/runners/ must say whether it travels (and with what) or stays on the host."""
    host_side = {"__init__.py", "benchmark_bin.py"}
    assert {p.name for p in RUNNERS} - host_side == set(TRAVELLING)


def test_runner_core_imports_no_runner():
    """The companion is a leaf: it never imports a runner (or itself via the package)."""
    imports = _top_imports(REPO / "lab" / "runners" / "runner_core.py")
    assert not [n for n in imports if n.startswith(".") or n.endswith("_runner")]


@pytest.mark.parametrize("how", ["package", "device"])
def test_pi_runner_imports_paddle_lazily(how):
    """Importing the runner (e.g. for its helpers) must not import paddle or numpy, neither on the
    host (lab.runners.pi_runner) nor as on the device (its directory on sys.path, no lab)."""
    if how == "package":
        code = "import sys; import lab.runners.pi_runner as m;"
    else:
        code = (f"import sys; sys.path.insert(0, {str(REPO / 'lab' / 'runners')!r}); import pi_runner as m;"
                "assert 'lab' not in sys.modules;")
    code += "print('paddle' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=REPO).stdout
    assert out.split() == ["False", "False"]


def _python37():
    cands = sorted(Path("/root/.pyenv/versions").glob("3.7.*/bin/python3.7")) if Path("/root/.pyenv").exists() else []
    for cand in [str(c) for c in cands] + [shutil.which("python3.7")]:
        if not cand:
            continue
        try:  # pyenv shims exist without a usable interpreter behind them
            ok = subprocess.run([cand, "--version"], capture_output=True, text=True, timeout=20)
        except OSError:
            continue
        if ok.returncode == 0 and "3.7" in (ok.stdout + ok.stderr):
            return cand
    return None


def test_pi_runner_really_runs_on_python_3_7(tmp_path):
    """Beyond vermin's static check: a real 3.7 interpreter (no paddle there) runs the runner as a
    device does: the runner and runner_core.py copied alone into a directory, nothing else (no lab).
    It computes the order-statistic CI and reports a clean ok=false JSON for a missing runtime."""
    py37 = _python37()
    if py37 is None:
        pytest.skip("no python3.7 interpreter on this machine")
    device_dir = tmp_path / "runners"
    device_dir.mkdir()
    for name in ("pi_runner.py", COMPANION + ".py"):
        shutil.copy(REPO / "lab" / "runners" / name, device_dir / name)
    runner = device_dir / "pi_runner.py"
    code = ("import sys; sys.path.insert(0, %r); import pi_runner as m, runner_core as c;"
            "assert m.core is c and 'lab' not in sys.modules;"
            "print(c.median_ci_indices(100), c.median_ci([3.0, 1.0, 2.0])[0])" % str(device_dir))
    out = subprocess.run([py37, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "(39, 60) 2.0"
    model = tmp_path / "m.json"
    model.write_text("{}")
    params = tmp_path / "m.pdiparams"
    params.write_bytes(b"\0")
    res = tmp_path / "r.json"
    proc = subprocess.run([py37, str(runner), "--model-file", str(model), "--params-file", str(params),
                           "--input", "x:1x3:float32", "--out", str(res)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    import json
    doc = json.loads(res.read_text())
    assert proc.returncode == 3 and doc["ok"] is False
    assert doc["error"].startswith("ModuleNotFoundError") or doc["error"].startswith("ImportError")
    assert doc["env"]["python"].startswith("3.7") and doc["model"]["sha256"]


def test_runner_without_its_companion_fails_loudly(tmp_path):
    """The contract's other side: a runner copied without runner_core.py cannot start (so a push
    that forgets the companion is caught by the first trial, not by wrong figures)."""
    lone = tmp_path / "pi_runner.py"
    shutil.copy(REPO / "lab" / "runners" / "pi_runner.py", lone)
    proc = subprocess.run([sys.executable, str(lone), "--help"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode != 0 and "runner_core" in proc.stderr
