"""Identity end to end (issue 22): this x86 machine declared as an RK1808 is flagged by
`lab devices --check`, and every row its campaign stores carries identity "mismatch" with the
reason; the same machine declared as what it is (generic-x86-cpu) stores "ok"; `identity: skip`
stores "skipped" with the user's reason. Real probe, real runner, real store."""
from __future__ import annotations

import json

import pytest
from helpers import lab_cli as lab
from helpers import write_yaml

pytestmark = pytest.mark.slow

DEVICES = """\
devices:
  - id: board
    chip: rk1808
    transport: local
    workdir: {ws}/dev-board
  - id: host
    chip: generic-x86-cpu
    transport: local
    workdir: {ws}/dev-host
  - id: trusted
    chip: rk1808
    transport: local
    workdir: {ws}/dev-trusted
    identity: skip
    identity_reason: "test: the user vouches for this board"
"""
CAMPAIGN = """\
name: ident
devices: [board, host, trusted]
models: [tiny_mlp]
backends: [paddle-inference-cpu]
threads: [1]
protocol: {warmup: 2, warmup_seconds: 0.01, min_iters: 10, min_seconds: 0.05, max_seconds: 0.5,
           target_rel_ci: 0.5, trials: 1, timeout_s: 120}
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("identity-campaign")
    (ws / "devices.yaml").write_text(DEVICES.format(ws=ws))
    write_yaml(ws / "c.yaml", CAMPAIGN)
    res = lab("models", "--root", ws / "models", "build", "tiny_mlp", cwd=ws)
    assert res.returncode == 0, res.stderr
    return ws


def test_devices_check_flags_the_mislabelled_machine(ws):
    res = lab("--devices", "devices.yaml", "devices", "--check", cwd=ws)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    board = text[text.index("board ["):text.index("host [")]
    assert "identity: MISMATCH - inventory says rk1808 (aarch64/armv8l/armv7l, 2x Cortex-A35, 1 GB), found x86_64" \
        in board
    assert "arch x86_64 (claimed aarch64/armv8l/armv7l)" in board
    host = text[text.index("host ["):text.index("trusted [")]
    assert "identity: ok - inventory says generic-x86-cpu (x86_64), found x86_64" in host
    assert "identity: skipped - identity check skipped in devices.yaml: test: the user vouches" in text
    doc = json.loads(lab("--devices", "devices.yaml", "devices", "--check", "--format", "json", cwd=ws).stdout)
    by_id = {d["device"]: d["identity"] for d in doc}
    assert by_id["board"]["verdict"] == "mismatch" and by_id["board"]["note"].startswith("inventory says rk1808")
    assert {f["fact"] for f in by_id["board"]["findings"] if f["outcome"] == "mismatch"} >= {"arch", "cpu parts",
                                                                                             "memory"}


def test_campaign_rows_carry_the_verdict(ws):
    res = lab("--devices", "devices.yaml", "--store", "s.sqlite", "run", "c.yaml", "--models-root", "models",
              "--no-progress", cwd=ws)
    assert res.returncode == 0, res.stderr
    rows = {r["device"]: r for r in json.loads(lab("--store", "s.sqlite", "results", "--format", "json",
                                                   cwd=ws).stdout)}
    assert {r["status"] for r in rows.values()} == {"ok"}
    board = rows["board"]
    assert board["chip"] == "rk1808" and board["identity"] == "mismatch"
    assert board["identity_note"].startswith("inventory says rk1808 (aarch64/armv8l/armv7l, 2x Cortex-A35, 1 GB), "
                                             "found x86_64")
    assert "cpu parts none (an x86 CPU" in board["identity_note"]
    assert rows["host"]["identity"] == "ok" and "found x86_64" in rows["host"]["identity_note"]
    assert rows["trusted"]["identity"] == "skipped"
    assert rows["trusted"]["identity_note"] == ("identity check skipped in devices.yaml: test: the user vouches "
                                                "for this board")
