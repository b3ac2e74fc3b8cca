"""A campaign over ADB: a Kirin-like phone and an RK1808-like board, each an adbd double.

Real parts: the `lab` CLI, scheduler, store, Paddle Inference + pi_runner (host Python running on
the "device"), adb-shell, the ADB transport. Simulated: the devices (adbd double sandboxes) and
benchmark_bin (the stand-in script: no Paddle Lite runs here). Faults: connection dropped
mid-push and mid-run, a truncated push (size mismatch), AUTH rejected; retries and --resume finish
the campaign without losing a finished job.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from conftest_adb import Faults, adb_key, start_double  # noqa: F401
from helpers import lab_cli
from lite_doubles import make_bin, make_libs
from lite_doubles import FAKE_OPT

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def lab(*args, cwd, env):
    return lab_cli(*args, cwd=cwd, env=env, timeout=900)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, adb_key):
    ws = tmp_path_factory.mktemp("adb-campaign")
    opt = ws / "paddle_lite_opt"
    opt.write_text(FAKE_OPT.format(python=sys.executable))
    opt.chmod(0o755)
    env = dict(os.environ, HWLAB_ADB_KEY=str(adb_key), HWLAB_PADDLE_LITE_OPT=str(opt),
               PYTHONPATH=str(REPO))
    res = lab("models", "--root", ws / "models", "build", "tiny_mlp", "--lite-target", "kirin-npu",
              cwd=ws, env=env)
    assert res.returncode == 0, res.stderr
    assert (ws / "models/tiny_mlp/lite/kirin-npu.nb").is_file()
    # The RK NPU needs a fully-quantised int8 model, which opt cannot make from fp32 (lite_convert
    # refuses): stand in for an imported PaddleSlim conversion with a pre-made .nb.
    (ws / "models/tiny_mlp/lite/rockchip-npu.nb").write_bytes(b"stand-in int8 nb for rockchip_npu")
    return ws, env


def write_config(ws: Path, phone, board, name: str) -> None:
    bin_ = make_bin(ws / name)
    (ws / f"{name}-devices.yaml").write_text(textwrap.dedent(f"""
        devices:
          - id: phone
            chip: kirin990
            transport: adb
            serial: "{phone.serial}"
            python: {sys.executable}
            benchmark_bin: {bin_}
            power_mode: big
            nnadapter_libs: {{huawei_kirin_npu: {make_libs(ws / name, 'huawei_kirin_npu')}}}
          - id: board
            chip: rk1808
            transport: adb
            serial: "{board.serial}"
            python: {sys.executable}
            benchmark_bin: {bin_}
            nnadapter_libs: {{rockchip_npu: {make_libs(ws / name, 'rockchip_npu')}}}
        """))
    (ws / f"{name}.yaml").write_text(textwrap.dedent(f"""
        name: {name}
        devices: [phone, board]
        models: [tiny_mlp]
        backends: [paddle-inference-cpu, paddle-lite-arm, paddle-lite-kirin-npu, paddle-lite-rockchip-npu]
        threads: [1]
        protocol: {{warmup: 2, warmup_seconds: 0.02, min_iters: 10, min_seconds: 0.05, max_seconds: 1.0,
                   target_rel_ci: 0.5, trials: 3, timeout_s: 120, idle_baseline_s: 0.5}}
        """))


def rows_of(ws, env, name):
    res = lab("--store", f"{name}.sqlite", "results", "--format", "json", cwd=ws, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_kirin_and_rk_campaign(ws, tmp_path, adb_key):
    ws, env = ws
    (ws / "dev-a").mkdir()
    phone = start_double(ws / "dev-a", adb_key, "kirin")
    board = start_double(ws / "dev-a", adb_key, "rk1808")
    try:
        write_config(ws, phone, board, "adbcamp")
        res = lab("--devices", "adbcamp-devices.yaml", "--store", "adbcamp.sqlite", "run", "adbcamp.yaml",
                  "--models-root", "models", "--no-progress", cwd=ws, env=env)
        assert res.returncode == 0, res.stderr + res.stdout
        rows = rows_of(ws, env, "adbcamp")
    finally:
        phone.stop()
        board.stop()
    ran = {(r["device"], r["backend"]): r for r in rows if r["status"] == "ok"}
    assert set(ran) == {("phone", "paddle-inference-cpu"), ("phone", "paddle-lite-arm"),
                        ("phone", "paddle-lite-kirin-npu"), ("board", "paddle-inference-cpu"),
                        ("board", "paddle-lite-arm"), ("board", "paddle-lite-rockchip-npu")}
    assert ran[("phone", "paddle-lite-kirin-npu")]["processor"] == "aipu"
    assert ran[("board", "paddle-lite-rockchip-npu")]["processor"] == "aipu"
    assert ran[("phone", "paddle-lite-arm")]["processor"] == "cpu"
    pi = ran[("phone", "paddle-inference-cpu")]
    assert pi["source"] == "lab" and pi["p50_ms"] > 0 and pi["n_samples"] >= 30 and pi["load_ms"] > 0
    for key in (("phone", "paddle-lite-kirin-npu"), ("board", "paddle-lite-rockchip-npu")):
        r = ran[key]
        assert r["source"] == "benchmark_bin" and r["mean_ms"] > 0 and r["p90_ms"] is None
        assert r["load_ms"] > ran[(key[0], "paddle-lite-arm")]["load_ms"]  # NPU init is the cost
    # the real pi_runner ran inside the phone's sandbox and its result came back over sync (one
    # .jsonl per job under `process: fork`, the default; one .json per trial under `fresh`)
    assert list((phone.root / "data/local/tmp/hwlab/results").glob("*.jsonl"))


def test_faults_retries_and_resume(ws, adb_key):
    ws, env = ws
    (ws / "dev-b").mkdir()
    phone = start_double(ws / "dev-b", adb_key, "kirin",
                         faults=Faults(drop_push_after_bytes=1000, drop_run_matching="benchmark_bin-",
                                       drop_run_after_s=0.0, truncate_push=True))
    board = start_double(ws / "dev-b", adb_key, "rk1808", faults=Faults(reject_auth=True))
    try:
        write_config(ws, phone, board, "faulty")
        res = lab("--devices", "faulty-devices.yaml", "--store", "faulty.sqlite", "run", "faulty.yaml",
                  "--models-root", "models", "--no-progress", cwd=ws, env=env)
        assert res.returncode == 1  # the board's jobs failed: unauthorized
        rows = rows_of(ws, env, "faulty")
        phone_rows = [r for r in rows if r["device"] == "phone"]
        assert phone_rows and {r["status"] for r in phone_rows} == {"ok"}  # retried through faults
        assert phone.stats.drops >= 2 and phone.stats.connections >= 3
        board_rows = [r for r in rows if r["device"] == "board"]
        assert board_rows and all(r["status"] in ("failed", "skipped") for r in board_rows)
        assert any("Unauthorized" in (r["error"] or "") or "Allow USB debugging" in (r["error"] or "")
                   for r in board_rows)
        done_before = {r["job_id"]: r["finished_at"] for r in phone_rows}

        board.faults.reject_auth = False  # someone tapped "Allow" on the board
        res = lab("--devices", "faulty-devices.yaml", "--store", "faulty.sqlite", "run", "faulty.yaml",
                  "--models-root", "models", "--resume", "--no-progress", cwd=ws, env=env)
        assert res.returncode == 0, res.stderr
        rows = rows_of(ws, env, "faulty")
    finally:
        phone.stop()
        board.stop()
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 6
    # nothing lost, nothing re-measured: the phone's jobs kept their first results
    assert {r["job_id"]: r["finished_at"] for r in rows if r["device"] == "phone"} == done_before
