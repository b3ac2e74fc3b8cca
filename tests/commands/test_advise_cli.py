"""The advisor end to end: store rows (lab runs and imports), inventory, catalog, CLI, JSON schema.

Models here are registered fixtures: a meta.json whose cached analysis (lab.models.analysis's own
`ModelAnalysis` fields) we choose, plus a PIR-shaped .json holding the op order. The slow tests use
real zoo models exported by Paddle and a real `--measure` run on the local device.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.decide import advisor, facts, verdict
from lab.decide.advice_records import Options
from lab.cli import main
from lab.core.records import Measurement
from lab.results.store import Store
from advisor_fixtures import CNN_OPS, LSTM_OPS, finish, job, make_model  # noqa: F401

REPO = Path(__file__).resolve().parents[2]









@pytest.fixture
def lab(tmp_path):
    models = tmp_path / "models"
    make_model(models, "cnn", CNN_OPS, macs=570_000_000, share=0.97)
    make_model(models, "lstm", LSTM_OPS, macs=50_000_000, share=0.0, dyn={"x": [1]}, seq=("rnn",),
               domain="nlp")
    make_model(models, "tiny", ["1.data", "1.matmul", "1.add", "1.relu", "1.fetch"], macs=9_000,
               share=0.97)
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        "devices:\n"
        "  - {id: local, chip: generic-x86-cpu, transport: local}\n"
        "  - {id: mate30, chip: kirin990, transport: adb, serial: '10.0.0.5:5555', enabled: true,\n"
        "     abi: arm64-v8a, benchmark_bin: /x/benchmark_bin,\n"
        "     nnadapter_libs: {huawei_kirin_npu: /x/kirin}}\n"
        "  - {id: rk-off, chip: rk1808, transport: ssh, host: 10.0.0.8, user: u, enabled: false}\n")
    store_path = tmp_path / "lab.sqlite"
    store = Store(store_path)
    c = "phone"
    finish(store, job(c, "mate30", "kirin990", "cnn", "paddle-lite-arm", "cpu"), p50_ms=30.0,
           ci_low_ms=29.5, ci_high_ms=30.6, load_ms=60.0, first_ms=45.0, energy_mj_per_inf=90.0,
           power_w=3.0)
    finish(store, job(c, "mate30", "kirin990", "cnn", "paddle-lite-kirin-npu", "aipu"), p50_ms=6.0,
           ci_low_ms=5.9, ci_high_ms=6.2, load_ms=1800.0, first_ms=60.0, energy_mj_per_inf=12.0,
           power_w=2.0)
    finish(store, job(c, "mate30", "kirin990", "tiny", "paddle-lite-arm", "cpu"), p50_ms=0.05,
           ci_low_ms=0.049, ci_high_ms=0.052, load_ms=5.0, first_ms=0.4)
    finish(store, job(c, "mate30", "kirin990", "tiny", "paddle-lite-kirin-npu", "aipu"),
           p50_ms=0.9, ci_low_ms=0.85, ci_high_ms=0.95, load_ms=400.0, first_ms=3.0)
    # imported rows of a device the inventory does not know
    imp = [(job("vendor", "rv1109-board", "rv1109", "cnn", "external-cpu", "cpu"),
            Measurement(job_id="", p50_ms=120.0, load_ms=90.0, first_ms=150.0, source="import:v.csv")),
           (job("vendor", "rv1109-board", "rv1109", "cnn", "external-aipu", "aipu", "int8"),
            Measurement(job_id="", p50_ms=15.0, load_ms=900.0, first_ms=40.0, source="import:v.csv"))]
    for j, m in imp:
        m.job_id = j.job_id
    store.import_rows("vendor", imp)
    store.close()
    return {"root": tmp_path, "models": models, "devices": devices, "store": store_path}


def run_cli(lab, *argv, capsys):
    rc = main(["--devices", str(lab["devices"]), "--store", str(lab["store"]), "advise",
               "--models-root", str(lab["models"]), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_dense_cnn_on_kirin_from_lab_runs(lab, capsys):
    rc, out, err = run_cli(lab, "--model", "cnn", "--device", "mate30", "--format", "json",
                           capsys=capsys)
    assert rc == 0, err
    a = json.loads(out)
    assert a["verdict"] == "aipu" and a["confidence"] == "high"
    assert a["speedup"] == pytest.approx(5.0)
    # 1860 + (n-1)*6 <= 105 + (n-1)*30 -> n-1 >= 73.125 -> n = 75
    assert a["break_even_inferences"] == 75
    assert len(a["run_ids"]) == 2 and a["device_status"] == "inventory"
    rules = {r["rule"]: r for r in a["reasons"]}
    assert rules["measured_speed"]["direction"] == "aipu"
    assert rules["dense_compute"]["direction"] == "aipu"
    assert rules["op_fallback"]["evidence"]["subgraphs"] == 1
    assert a["npu_fallback"]["nnadapter_device"] == "huawei_kirin_npu"
    assert all(set(r) >= {"rule", "text", "evidence"} for r in a["reasons"])


def test_strict_first_inference_budget_flips_to_cpu(lab, capsys):
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "mate30", "--first-inference-budget-ms",
                         "500", "--no-preload", "--format", "json", capsys=capsys)
    a = json.loads(out)
    assert rc == 0 and a["verdict"] == "cpu"
    r = next(r for r in a["reasons"] if r["rule"] == "first_inference_budget")
    assert r["blocking"] and r["evidence"]["aipu_ms"] == 1860.0 and r["evidence"]["cpu_ms"] == 105.0


def test_tiny_model_is_cpu(lab, capsys):
    rc, out, _ = run_cli(lab, "--model", "tiny", "--device", "mate30", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    assert a["verdict"] == "cpu" and a["break_even_inferences"] is None
    assert {"model_too_small", "measured_speed"} <= {r["rule"] for r in a["reasons"]
                                                     if r["direction"] == "cpu"}


def test_variable_length_nlp_on_disabled_rockchip_is_cpu_from_catalog(lab, capsys):
    rc, out, _ = run_cli(lab, "--model", "lstm", "--device", "rk-off", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    assert rc == 0 and a["verdict"] == "cpu" and a["confidence"] == "low"
    assert a["device_status"] == "disabled" and a["run_ids"] == []
    assert any("catalog" in n for n in a["notes"])
    fb = a["npu_fallback"]
    assert fb["fallback_ops"].get("rnn") == 1 and fb["subgraphs"] >= 1
    assert a["estimate"]["precision"] == "int8" and a["estimate"]["confidence"] == "low"


def test_imported_only_device_and_text_output(lab, capsys):
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "rv1109-board", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    assert rc == 0 and a["device_status"] == "imported" and a["chip"] == "rv1109"
    assert a["confidence"] == "medium"  # imported: no CI
    assert a["numbers"]["aipu"]["source"] == "import:v.csv"
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "rv1109-board", capsys=capsys)
    assert rc == 0 and out.startswith("cnn on rv1109-board (rv1109; imported):")


def test_campaign_answers_every_pair(lab, capsys):
    rc, out, _ = run_cli(lab, "--campaign", "phone", "--format", "json", capsys=capsys)
    docs = json.loads(out)
    assert rc == 0 and {(d["model"], d["device"]) for d in docs} == {("cnn", "mate30"),
                                                                    ("tiny", "mate30")}


def test_unknown_device_and_bad_input_exit_2_one_line(lab, capsys):
    rc, out, err = run_cli(lab, "--model", "cnn", "--device", "mate31", capsys=capsys)
    assert rc == 2 and "unknown device 'mate31'" in err and "mate30" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    rc, _, err = run_cli(lab, "--model", "cnn", capsys=capsys)
    assert rc == 2 and "--device" in err
    rc, _, err = run_cli(lab, "--campaign", "nope", capsys=capsys)
    assert rc == 2 and "phone" in err
    with pytest.raises(SystemExit) as exc:
        run_cli(lab, "--model", "cnn", "--device", "mate30", "--latency-budget-ms", "-3",
                capsys=capsys)
    assert exc.value.code == 2


def test_api_for_reports_and_no_heavy_imports(lab):
    rows = facts.load_rows(lab["store"])
    a = advisor.advise("cnn", "mate30", rows=rows, devices=facts.load_inventory(lab["devices"]),
                       models_root=lab["models"])
    assert a.verdict == "aipu" and a.to_dict()["schema"] == verdict.ADVICE_SCHEMA
    code = ("import sys; from lab.cli import main; "
            f"rc = main(['--devices', {str(lab['devices'])!r}, '--store', {str(lab['store'])!r}, "
            f"'advise', '--models-root', {str(lab['models'])!r}, '--model', 'cnn', '--device', "
            "'mate30']); heavy = [m for m in ('paddle', 'pandas', 'matplotlib') if m in sys.modules]; "
            "assert rc == 0 and not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_json_schema_documented():
    doc = (REPO / "docs" / "advisor.md").read_text()
    a = verdict.Advice(model="m", device="d", chip=None, device_status="imported", verdict="cpu",
                       confidence="low", reasons=[], speedup=None, speedup_source=None,
                       break_even=None, run_ids=[], numbers={}, fallback=None,
                       fallback_all=[], estimate=None, options=Options())
    for key in a.to_dict():
        assert f"`{key}`" in doc, key
    for key in ("rule", "direction", "weight", "blocking", "text", "evidence"):
        assert f"`{key}`" in doc, key


# ---------------------------------------------------------------------------- slow: real parts
@pytest.mark.slow
def test_real_zoo_models_and_measure_on_local(tmp_path, capsys):
    """Worked examples on exported zoo models, and --measure through the real scheduler."""
    from lab.models.build import build
    root = tmp_path / "models"
    for mid in ("text_lstm", "tiny_mlp"):
        build(mid, out_root=root)
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - {id: local, chip: generic-x86-cpu, transport: local,"
                       f" workdir: {tmp_path / 'dev'}}}\n"
                       "  - {id: rk, chip: rk1808, transport: ssh, host: h, user: u, enabled: false}\n")
    store = tmp_path / "s.sqlite"
    base = ["--devices", str(devices), "--store", str(store), "advise", "--models-root", str(root)]
    assert main(base + ["--model", "text_lstm", "--device", "rk", "--format", "json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert a["verdict"] == "cpu"
    assert "rnn" in a["npu_fallback"]["fallback_ops"]
    rc = main(base + ["--model", "tiny_mlp", "--device", "local", "--measure", "--format", "json"])
    out, err = capsys.readouterr()
    a = json.loads(out)
    failed = [(r.backend, r.status, r.error) for r in facts.load_rows(store) if r.status != "ok"]
    assert rc == 0 and a["numbers"]["cpu"] is not None, (failed, err)
    assert a["numbers"]["cpu"]["p50_ms"] > 0 and a["run_ids"]
    assert a["verdict"] == "cpu"  # no accelerator on a generic x86 CPU


# ------------------------------------------------------------------- review fixes (evidence rows)
def test_measure_answers_from_exactly_the_jobs_just_run(lab, capsys, monkeypatch):
    """--measure must not quote a faster row of another campaign (the scheduler is replaced by a
    double that stores one finished job, as the real one does)."""
    store = Store(lab["store"])
    finish(store, job("old-sweep", "mate30", "kirin990", "cnn", "paddle-lite-arm", "cpu",
                      "int8"), p50_ms=11.0, ci_low_ms=10.9, ci_high_ms=11.2)
    store.close()
    fresh = job("advise-cnn-mate30", "mate30", "kirin990", "cnn", "paddle-lite-arm", "cpu")

    def fake_measure(model_id, device_id, *, store_path, **_kw):
        s = Store(store_path)
        finish(s, fresh, p50_ms=31.0, ci_low_ms=30.5, ci_high_ms=31.5)
        s.close()
        return fresh.campaign, [fresh.job_id]

    from lab.measure import orchestrate
    monkeypatch.setattr(orchestrate, "measure_for_advice", fake_measure)
    rc, out, err = run_cli(lab, "--model", "cnn", "--device", "mate30", "--measure", "--format",
                           "json", capsys=capsys)
    a = json.loads(out)
    assert rc == 0, err
    assert a["run_ids"] == [fresh.job_id] and a["numbers"]["aipu"] is None
    assert a["numbers"]["cpu"]["job_id"] == fresh.job_id and a["numbers"]["cpu"]["p50_ms"] == 31.0
    assert any("only the 1 job(s) just measured" in n for n in a["notes"])


def test_without_measure_best_of_n_is_named_in_the_evidence(lab, capsys):
    store = Store(lab["store"])
    other = job("old-sweep", "mate30", "kirin990", "cnn", "paddle-lite-arm", "cpu", "int8")
    finish(store, other, p50_ms=11.0, ci_low_ms=10.9, ci_high_ms=11.2)
    store.close()
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "mate30", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    cpu = a["numbers"]["cpu"]
    assert cpu["job_id"] == other.job_id and cpu["campaign"] == "old-sweep"
    assert cpu["candidates"] == 2 and "fastest of 2 CPU configurations" in cpu["selection"]
    ev = next(r for r in a["reasons"] if r["rule"] == "measured_speed")["evidence"]["cpu"]
    assert ev["campaign"] == "old-sweep" and ev["candidates"] == 2
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "mate30", capsys=capsys)
    assert f"job {other.job_id} of campaign old-sweep; fastest of 2 CPU configurations" in out


def test_rows_of_another_model_build_are_left_out_imports_kept(lab, capsys):
    store = Store(lab["store"])
    stale = dataclasses.replace(job("old-build", "mate30", "kirin990", "cnn", "paddle-lite-arm",
                                    "cpu"), model_sha256="e" * 64)
    finish(store, stale, p50_ms=1.0, ci_low_ms=0.9, ci_high_ms=1.1)
    store.close()
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "mate30", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    assert a["numbers"]["cpu"]["p50_ms"] == 30.0 and stale.job_id not in a["run_ids"]
    assert any("another build of 'cnn'" in n for n in a["notes"])
    # imported rows carry no model hash: kept, and said to be imported
    rc, out, _ = run_cli(lab, "--model", "cnn", "--device", "rv1109-board", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    assert a["numbers"]["cpu"]["p50_ms"] == 120.0
    assert "imported (import:v.csv" in a["numbers"]["cpu"]["selection"]


def test_text_numbers_have_no_exponents(lab, capsys):
    store = Store(lab["store"])
    finish(store, job("slow", "mate30", "kirin990", "lstm", "paddle-lite-arm", "cpu"),
           p50_ms=1530.4, ci_low_ms=1500.0, ci_high_ms=1561.0, load_ms=80.0, first_ms=1700.0)
    store.close()
    rc, out, _ = run_cli(lab, "--model", "lstm", "--device", "mate30", capsys=capsys)
    assert rc == 0 and "p50 1,530 ms [1,500 ms, 1,561 ms]" in out and "load+first 1,780 ms" in out
    assert "e+0" not in out


@pytest.fixture
def rk_lab(lab):
    with open(lab["devices"], "a") as f:
        f.write("  - {id: rk-tim, chip: rk1808, transport: ssh, host: 10.0.0.9, user: u,\n"
                "     nnadapter_libs: {verisilicon_timvx: /x/timvx}}\n"
                "  - {id: rk-rk, chip: rk1808, transport: ssh, host: 10.0.0.10, user: u,\n"
                "     nnadapter_libs: {rockchip_npu: /x/rknpu}}\n")
    make_model(lab["models"], "cnnq", CNN_OPS, macs=570_000_000, share=0.97, quant="int8")
    store = Store(lab["store"])
    finish(store, job("rk", "rk-tim", "rk1808", "cnn", "paddle-lite-arm", "cpu"), p50_ms=400.0,
           ci_low_ms=390.0, ci_high_ms=410.0)
    store.close()
    return lab


def test_fp32_model_on_int8_only_npu_is_cpu_until_quantised(rk_lab, capsys):
    rc, out, _ = run_cli(rk_lab, "--model", "cnn", "--device", "rk-tim", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    assert rc == 0 and a["verdict"] == "cpu"
    rules = {r["rule"]: r for r in a["reasons"]}
    q = rules["quantized"]
    assert q["blocking"] and "until quantised with PaddleSlim" in q["text"]
    assert rules["estimate"]["direction"] == "neutral"
    assert "assumes an int8-quantised model (it is not)" in rules["estimate"]["text"]
    assert a["estimate"]["assumes_quantized"] is True and a["speedup"] is None
    assert "which this model is not" in a["estimate"]["note"]
    # the configured NNAdapter library decides the path, for every model
    assert a["npu_fallback"]["nnadapter_device"] == "verisilicon_timvx"
    for model in ("cnn", "lstm", "tiny"):
        for dev, npu in (("rk-tim", "verisilicon_timvx"), ("rk-rk", "rockchip_npu")):
            rc, out, _ = run_cli(rk_lab, "--model", model, "--device", dev, "--format", "json",
                                 capsys=capsys)
            doc = json.loads(out)
            assert [f["nnadapter_device"] for f in doc["npu_fallback_all"]] == [npu], (model, dev)


def test_quantised_model_on_int8_npu_keeps_the_estimate_vote(rk_lab, capsys):
    rc, out, _ = run_cli(rk_lab, "--model", "cnnq", "--device", "rk-tim", "--format", "json",
                         capsys=capsys)
    a = json.loads(out)
    rules = {r["rule"]: r for r in a["reasons"]}
    assert rules["quantized"]["direction"] == "aipu" and not a["estimate"]["assumes_quantized"]
