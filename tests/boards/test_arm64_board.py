"""Campaigns on the emulated arm64 board: real aarch64 Paddle Inference (3.2.2, the newest cp311
aarch64 wheel) and ONNX Runtime (1.32.0) under qemu-user, reached over the board's own OpenSSH.

Shows: the probe finds aarch64, Python, both runtimes and the version skew with the host's paddle;
one campaign on `local` (x86) and the board gives ok rows for paddle-inference-cpu and
onnxruntime-cpu on digits_cnn, each agreeing with the host's x86 fp32 reference (cosine >= 0.999),
with top-1 measured on the board within 1 point of the host's, the board's paddle version
recorded on its rows, and every board row flagged emulated (never the chip's figure). int8:
Paddle's aarch64 wheel has no oneDNN, so paddle-inference-cpu int8 is refused at planning with that
reason, while onnxruntime-cpu runs its int8 QDQ model on the board.
Left out for the time budget (jobs on one device run one at a time, and each emulated job pays
6-20 s of `import paddle` / onnxruntime start-up): tiny_mlp (digits_cnn covers the same path and
has labels), and mobilenet_v1, whose ~5 s per emulated inference makes even an agreement-only job
(8 reference samples, load, one short trial) over a minute.
"""
from __future__ import annotations

import json
import sqlite3

import pytest
from boardctl import REPO, lab

pytestmark = [pytest.mark.slow, pytest.mark.boards]

PROTOCOL = """protocol:
  warmup: 1
  warmup_seconds: 0.05
  min_iters: 5
  min_seconds: 0.2
  max_seconds: 1
  target_rel_ci: 0.5
  trials: 1
  timeout_s: 300
"""
PROBE_TIMEOUT_S = "240"  # `import paddle` alone takes 6 s emulated, far more on two busy cores


@pytest.fixture(scope="module")
def arm64(arm64_board, tmp_path_factory, ssh_client_key):
    from boardctl import write_devices

    from lab.models.build import build
    build("digits_cnn", out_root=REPO / "models")  # cached after the first build
    tmp = tmp_path_factory.mktemp("arm64-campaign")
    kh = tmp / "known_hosts"
    kh.write_text(arm64_board.known_hosts_line())
    entry = arm64_board.device_entry(ssh_client_key[0], kh, chip="rk1808")
    return write_devices(tmp / "devices.yaml", [entry]), tmp, entry["id"]


def run_campaign(arm64, name: str, body: str):
    inv, tmp, _ = arm64
    camp = tmp / f"{name}.yaml"
    camp.write_text(f"name: {name}\n{body}{PROTOCOL}")
    res = lab("--devices", str(inv), "--store", str(tmp / "lab.sqlite"), "run", str(camp),
              "--models-root", str(REPO / "models"), "--no-progress", "--max-parallel", "2", timeout=900)
    db = sqlite3.connect(str(tmp / "lab.sqlite"))
    db.row_factory = sqlite3.Row
    try:
        rows = [dict(r) for r in db.execute(
            "SELECT * FROM jobs LEFT JOIN measurements USING (job_id) WHERE campaign=?", (name,))]
    finally:
        db.close()
    return res, rows


def test_probe_finds_aarch64_python_and_both_runtimes(arm64):
    inv, _, dev_id = arm64
    res = lab("--devices", str(inv), "devices", "--check", dev_id, "--format", "json",
              "--timeout", PROBE_TIMEOUT_S, timeout=300)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)[0]
    assert rep["arch"] == "aarch64" and rep["python"].startswith("3.11")
    assert rep["paddle"] == "3.2.2" and rep["onnxruntime"] == "1.32.0"
    assert rep["ssh_server"].startswith("OpenSSH_") and rep["files"] == "sftp"
    assert "backend paddle-inference: can run" in "\n".join(f"backend {b}" for b in rep["backends"])
    assert any("paddle 3.2.2 here" in n and "on the lab host" in n for n in rep["notes"])


@pytest.fixture(scope="module")
def campaign(arm64):
    """One campaign, local (x86) beside the board: fp32 and int8 of digits_cnn on both backends."""
    _, _, dev_id = arm64
    return run_campaign(arm64, "arm64", f"devices: [local, {dev_id}]\nmodels: [digits_cnn]\n"
                        "backends: [paddle-inference-cpu, onnxruntime-cpu]\nprecisions: [fp32, int8]\n"
                        "threads: [1]\noptions:\n  accuracy: [true]\n")


def test_campaign_on_the_board_agrees_with_the_host(arm64, campaign):
    _, _, dev_id = arm64
    res, rows = campaign
    assert res.returncode == 0, res.stderr[-3000:]
    assert {r["status"] for r in rows} == {"ok"}, [(r["device"], r["backend"], r["error"]) for r in rows]
    host = {(r["backend"], r["precision"]): r for r in rows if r["device"] == "local"}
    board = {(r["backend"], r["precision"]): r for r in rows if r["device"] == dev_id}
    assert len(host) == 4 and sorted(board) == [("onnxruntime-cpu", "fp32"), ("onnxruntime-cpu", "int8"),
                                                ("paddle-inference-cpu", "fp32")]
    for key in (("paddle-inference-cpu", "fp32"), ("onnxruntime-cpu", "fp32")):
        r = board[key]
        assert r["agree_cosine_min"] >= 0.999 and r["agree_ok"] == 1, r
        # top-1 on the labelled eval set, run on the board and scored on the host, against the host's own run
        assert r["accuracy_top1"] is not None and host[key]["accuracy_top1"] is not None
        assert abs(r["accuracy_top1"] - host[key]["accuracy_top1"]) <= 0.01, (r["accuracy_top1"], host[key])
    env = json.loads(board[("paddle-inference-cpu", "fp32")]["provenance_json"]).get("env") or {}
    assert str(env.get("paddle", "")).startswith("3.2.2"), env  # the board's wheel, not the host's 3.3.1
    int8 = board[("onnxruntime-cpu", "int8")]  # ONNX Runtime's QDQ model on aarch64 kernels
    assert int8["agree_cosine_min"] is not None and int8["accuracy_top1"] is not None


def test_every_board_row_is_flagged_emulated(arm64, campaign):
    _, _, dev_id = arm64
    board = [r for r in campaign[1] if r["device"] == dev_id]
    assert board and all(r["identity"] == "emulated" for r in board), [r["identity"] for r in board]
    assert all(r["identity"] != "emulated" for r in campaign[1] if r["device"] == "local")


def test_paddle_cpu_int8_is_refused_at_planning_with_the_reason(arm64, campaign):
    _, _, dev_id = arm64
    refused = [ln for ln in campaign[0].stderr.splitlines() if ln.startswith("not planned:")]
    assert len(refused) == 1, refused
    assert f"on {dev_id} with paddle-inference-cpu" in refused[0]
    assert "runs int8 through oneDNN int8" in refused[0] and "built without oneDNN" in refused[0]
