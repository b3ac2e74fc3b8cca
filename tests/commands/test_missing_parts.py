"""No command prints ModuleNotFoundError or a traceback when an optional part is missing.

Each case runs the real CLI in a subprocess whose interpreter cannot import the part: a
`sitecustomize` on PYTHONPATH puts a meta-path finder first that raises ModuleNotFoundError for the
named top-level packages, exactly what Python does when a package is not installed (and child
processes inherit it through PYTHONPATH, as they inherit a missing package). The command must
either work or end with one `lab: error:` line that names the pip command (or script) to run.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, write_local_devices, write_yaml

BLOCKER = '''
import os, sys
_BLOCKED = set(filter(None, os.environ.get("HWLAB_TEST_BLOCK", "").split(",")))
class _Blocker:
    """`import X` fails for X in HWLAB_TEST_BLOCK as if X were not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
'''
EVERY_OPTIONAL = "onnx,onnxruntime,x2paddle,paddle2onnx,mlperf_loadgen,starlette,uvicorn,websocket,psutil,ray,pynvml"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace: the blocker, a `local` device, campaigns per path, tiny_mlp built, an .onnx file."""
    from lab.models.build import build
    from onnx_graphs import tiny_cnn
    root = tmp_path_factory.mktemp("missing")
    (root / "block").mkdir()
    (root / "block" / "sitecustomize.py").write_text(BLOCKER)
    write_local_devices(root, root / "device")
    for name, backend in (("ort", "onnxruntime-cpu"), ("srv", "serving-http"), ("web", "paddle-js-webgl"),
                          ("pi", "paddle-inference-cpu")):
        write_yaml(root / f"{name}.yaml", f"name: {name}\ndevices: [local]\nmodels: [tiny_mlp]\n"
                                          f"backends: [{backend}]\n")
    build("tiny_mlp", out_root=REPO / "models")
    tiny_cnn(root / "m.onnx")
    return root


def lab_without(ws: Path, blocked: str, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ws / 'block'}{os.pathsep}{REPO}", "HWLAB_TEST_BLOCK": blocked}
    return subprocess.run([sys.executable, "-m", "lab.cli", "--devices", str(ws / "devices.yaml"),
                           "--store", str(ws / "s.sqlite"), "--models-root", str(REPO / "models"), *map(str, args)],
                          cwd=ws, capture_output=True, text=True, timeout=300, env=env)


def assert_fix_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback or ModuleNotFoundError anywhere, and the last stderr line is the one
    `lab: error:` line, naming each needle (the package and the command)."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "ModuleNotFoundError" not in out, out[-3000:]
    assert res.returncode == 2, (res.returncode, out[-3000:])
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("lab: error:")]
    assert len(errors) == 1 and res.stderr.rstrip("\n").endswith(errors[0]), res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("blocked, argv, needles", [
    ("onnx", ["models", "import", "{ws}/m.onnx", "--name", "m1"], ["pip install 'onnx>="]),
    ("x2paddle", ["models", "import", "{ws}/m.onnx", "--name", "m1"], ["pip install 'x2paddle=="]),
    ("onnxruntime", ["models", "import", "{ws}/m.onnx", "--name", "m1"], ["pip install 'onnxruntime>="]),
    ("paddle2onnx", ["models", "build", "tiny_mlp", "--onnx"], ["pip install 'paddle2onnx=="]),
    ("onnxruntime", ["run", "{ws}/ort.yaml"], ["pip install 'onnxruntime>="]),
    ("mlperf_loadgen", ["run", "{ws}/srv.yaml"], ["pip install 'mlcommons-loadgen>="]),
    ("starlette,uvicorn", ["run", "{ws}/srv.yaml"], ["'starlette>=", "'uvicorn>="]),
    ("websocket,psutil", ["run", "{ws}/web.yaml"], ["'websocket-client", "'psutil>="]),
    ("ray", ["run", "{ws}/pi.yaml", "--engine", "ray", "--dry-run"], ["ray"]),
    ("ray", ["node", "status"], ["ray"]),
], ids=["import-onnx", "import-x2paddle", "import-onnxruntime", "build-onnx-paddle2onnx",
        "campaign-onnxruntime", "campaign-serving-loadgen", "campaign-serving-endpoint", "campaign-web",
        "engine-ray", "node-ray"])
def test_a_missing_part_is_one_line_with_the_command(ws, blocked, argv, needles):
    res = lab_without(ws, blocked, *[a.format(ws=ws) for a in argv])
    line = assert_fix_line(res, *needles)
    assert "pip install" in line


@pytest.mark.parametrize("argv", [["--help"], ["devices"], ["chips"], ["models", "list"],
                                  ["models", "show", "tiny_mlp"], ["run", "{ws}/pi.yaml", "--dry-run"]],
                         ids=lambda a: " ".join(a))
def test_commands_that_need_no_optional_part_work_without_any(ws, argv):
    """With every optional package missing at once, the commands that need none work as before."""
    res = lab_without(ws, EVERY_OPTIONAL, *[a.format(ws=ws) for a in argv])
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "ModuleNotFoundError" not in out, out[-3000:]
    assert res.returncode == 0, out[-3000:]


@pytest.mark.slow
def test_devices_check_lists_every_path_with_its_command(ws):
    """`lab devices --check local` with the pip parts missing: each path ready or not, with the one
    command that makes it ready (here: pip for the Python packages, the scripts for the rest)."""
    res = lab_without(ws, "onnxruntime,mlperf_loadgen,ray", "devices", "--check", "local")
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "ModuleNotFoundError" not in out, out[-3000:]
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines()[res.stdout.splitlines().index(
        "deployment paths on this host (local):") + 1:] if ln.strip()}
    assert set(lines) == {"paddle-inference", "onnxruntime", "onnx", "serving", "paddle-lite", "paddle-js",
                          "ray"}, lines
    assert lines["paddle-inference"].endswith(" ready")
    assert "NOT READY" in lines["onnxruntime"] and "pip install 'onnxruntime>=" in lines["onnxruntime"]
    assert "NOT READY" in lines["serving"] and "mlcommons-loadgen" in lines["serving"]
    assert "NOT READY" in lines["ray"] and "pip install 'ray[default]" in lines["ray"]
    assert "NOT READY" in lines["onnx"], lines["onnx"]  # an import checks agreement with ONNX Runtime


def test_no_chromium_is_one_line_with_the_script(ws, tmp_path):
    """A web campaign on a host without Chromium (PATH without it, HWLAB_CHROMIUM unset)."""
    env = {k: v for k, v in os.environ.items() if k != "HWLAB_CHROMIUM"}
    (tmp_path / "bin").mkdir()
    res = subprocess.run([sys.executable, "-m", "lab.cli", "--devices", str(ws / "devices.yaml"), "--store",
                          str(ws / "s.sqlite"), "--models-root", str(REPO / "models"), "run", str(ws / "web.yaml"),
                          "--dry-run"], cwd=ws, capture_output=True, text=True, timeout=300,
                         env={**env, "PATH": str(tmp_path / "bin"), "PYTHONPATH": str(REPO)})
    assert_fix_line(res, "no Chromium", "bash scripts/install-web-deps.sh")


def test_no_paddlejs_converter_is_one_line_with_the_script(monkeypatch, tmp_path):
    """`lab models build ID --web` after `pip install -e .` only: paddlejsconverter (pip --no-deps,
    not a dependency) is missing. Its distribution is hidden from importlib.metadata in-process."""
    from importlib import metadata
    from fuzz_inputs import run_cli
    real = metadata.version

    def version(dist):
        if dist == "paddlejsconverter":
            raise metadata.PackageNotFoundError(dist)
        return real(dist)
    monkeypatch.setattr(metadata, "version", version)
    import shutil
    shutil.copytree(REPO / "models" / "tiny_mlp", tmp_path / "tiny_mlp", ignore=shutil.ignore_patterns("web"))
    out = run_cli(["--models-root", str(tmp_path), "models", "build", "tiny_mlp", "--web"])
    assert out.code == 2 and not out.crash, (out.err, out.crash)
    assert "ModuleNotFoundError" not in out.err and "bash scripts/install-web-deps.sh" in out.err.splitlines()[-1]
