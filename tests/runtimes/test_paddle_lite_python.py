"""paddle-lite-python: the real paddlelite wheel (Python 3.10 venv, scripts/setup-lite-opt.sh)
running an x86 `.nb` made by the real opt, through `lab run` on `local`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import lab_cli as lab
from lab.measure.campaign import applicable
from lab.core.records import Device
from lab.runtimes import paddle_lite_python as lpy

REPO = Path(__file__).resolve().parents[2]
LOCAL = Device(id="local", chip="generic-x86-cpu", transport="local")


def test_planning_names_the_setup_command_when_paddlelite_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(lpy, "LOCAL_LITE_PYTHON", tmp_path / "no-such-python")
    why = applicable(LOCAL, "paddle-lite-python", "fp32")
    assert why and "scripts/setup-lite-opt.sh" in why


def test_the_nb_target_follows_the_device():
    assert lpy.lite_target_for(LOCAL) in ("x86", "arm")
    board = Device(id="rk", chip="rk3399pro", transport="ssh", host="h", user="u")
    assert lpy.lite_target_for(board) == "arm"


@pytest.mark.slow
def test_real_paddle_lite_job_on_local(tmp_path):
    if not lpy.LOCAL_LITE_PYTHON.is_file():
        pytest.skip("no .venv-lite: scripts/setup-lite-opt.sh could not install the paddlelite wheel")
    camp = tmp_path / "c.yaml"
    camp.write_text("name: lpy\ndevices: [local]\nmodels: [tiny_mlp]\nbackends: [paddle-lite-python]\n"
                    "protocol: {warmup: 2, warmup_seconds: 0.05, min_iters: 20, min_seconds: 0.2, "
                    "max_seconds: 1, trials: 2}\n")
    root = REPO / "models"
    store = tmp_path / "s.sqlite"
    # without the .nb the job is refused with the exact command
    nb = root / "tiny_mlp" / "lite" / f"{lpy.lite_target_for(LOCAL)}.nb"
    if nb.exists():
        nb.unlink()
    res = lab("--store", store, "run", camp, "--no-progress", "--models-root", root, cwd=REPO)
    assert res.returncode == 1, res.stderr
    rows = json.loads(lab("--store", store, "results", "--format", "json", cwd=REPO).stdout)
    assert rows[0]["status"] == "failed" and "--lite-target x86" in rows[0]["error"]
    res = lab("models", "build", "tiny_mlp", "--lite-target", "x86", "--models-root", root, cwd=REPO)
    assert res.returncode == 0, res.stderr
    res = lab("--store", store, "run", camp, "--no-progress", "--fresh", "--models-root", root, cwd=REPO)
    assert res.returncode == 0, res.stderr
    row = json.loads(lab("--store", store, "results", "--format", "json", cwd=REPO).stdout)[0]
    assert row["status"] == "ok" and row["source"] == "lab"
    assert row["p50_ms"] > 0 and row["load_ms"] > 0 and row["n_samples"] >= 40
    prov = json.loads(lab("--store", store, "results", "--format", "json", cwd=REPO).stdout)
    assert prov[0]["model_sha256"]
