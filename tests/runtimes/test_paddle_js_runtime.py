"""The paddle-js runtime through real campaigns: planning refusals, the page's reference outputs, and
`lab run` on `local` with headless Chromium (SwiftShader WebGL), Paddle.js from npm and mobilenet_v1.

Real parts: the lab CLI, Paddle Inference (native rows and the host reference), paddlejsconverter,
Debian chromium. SwiftShader takes seconds per inference on two busy cores, so the protocol is the
smallest that still measures: no warm-up, one steady sample, one trial.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import lab_cli as lab, local_workspace
from lab.measure.campaign import applicable
from lab.convert import paddlejs as pjs
from lab.core.errors import ConfigError
from lab.core.records import Device, InputSpec
from lab.runtimes.registry import RUNTIMES
from lab.runtimes.paddle_js import page_outputs, web_model

REPO = Path(__file__).resolve().parents[2]
LOCAL = Device(id="local", chip="generic-x86-cpu", transport="local")


def _art(tmp_path, inputs=(InputSpec("x", (1, 3, 8, 8), "float32"),), web_meta=None):
    meta = {"id": "m", "sha256": "a" * 64, **({"web": web_meta} if web_meta else {})}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return SimpleNamespace(id="m", dir=tmp_path, inputs=list(inputs), pdmodel_path=tmp_path / "m.pdmodel",
                           legacy_pdiparams_path=tmp_path / "m.pdiparams", sha256="a" * 64,
                           legacy_sha256="b" * 64)


# ----------------------------------------------------------------------------- planning rules
def test_runtime_is_registered_for_both_backends():
    from lab.devices.backends import BACKENDS
    assert BACKENDS["paddle-js-webgl"].runtime == "paddle-js" and "paddle-js" in RUNTIMES
    assert BACKENDS["paddle-js-webgl"].processor == "gpu"


def test_planning_refuses_wasm_non_fp32_and_models_without_a_web_path(tmp_path):
    assert "runtime.wasm" in applicable(LOCAL, "paddle-js-wasm", "fp32")
    assert "fp32 only" in applicable(LOCAL, "paddle-js-webgl", "int8")
    two = _art(tmp_path, inputs=(InputSpec("a", (1, 4), "float32"), InputSpec("b", (1, 4), "float32")))
    assert "single-input" in applicable(LOCAL, "paddle-js-webgl", "fp32", two)
    ints = _art(tmp_path, inputs=(InputSpec("ids", (1, 16), "int64"),))
    assert "float32 inputs only" in applicable(LOCAL, "paddle-js-webgl", "fp32", ints)


def test_planning_refuses_devices_whose_browser_cannot_be_driven(monkeypatch, tmp_path):
    ssh = Device(id="board", chip="c", transport="ssh", host="h")
    adb = Device(id="phone", chip="c", transport="adb", serial="s")
    assert applicable(ssh, "paddle-js-webgl", "fp32") is None  # its DevTools port is SSH-forwarded
    assert "runtime.wasm" in applicable(ssh, "paddle-js-wasm", "fp32")
    assert "adb forward tcp:PORT localabstract:chrome_devtools_remote" in applicable(adb, "paddle-js-webgl", "fp32")
    monkeypatch.setenv("HWLAB_CHROMIUM", str(tmp_path / "no-such-chromium"))
    reason = applicable(LOCAL, "paddle-js-webgl", "fp32")
    assert "HWLAB_CHROMIUM" in reason and "not an executable" in reason


def test_a_model_without_a_current_web_build_names_the_build_command(tmp_path):
    ctx = SimpleNamespace(artifact=_art(tmp_path), job=SimpleNamespace(job_id="j1"))
    with pytest.raises(ConfigError, match=r"`lab models build m --web`"):
        web_model(ctx)
    # a build made from another version of the model is not current either
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "model.json").write_text("{}")
    files, digest = pjs.web_sha256(tmp_path / "web")
    meta = {"source_sha256": "c" * 64, "converter": "paddlejsconverter 1.0.8",
            "fixer_version": pjs.FIXER_VERSION, "files": files, "sha256": digest}
    ctx.artifact = _art(tmp_path, web_meta=meta)
    with pytest.raises(ConfigError, match="no current Paddle.js build"):
        web_model(ctx)
    ctx.artifact = _art(tmp_path, web_meta=dict(meta, source_sha256="b" * 64))
    assert web_model(ctx).sha256 == digest


# ---------------------------------------------------------------------------- output checks
def test_page_outputs_are_shaped_compacted_and_compared_per_sample():
    """The page's flat outputs (null for non-finite) per reference sample, shaped as the reference's
    [1, 3] and compacted; the comparison is checks.apply's (lab.models.agreement), the reference a
    hand-made one here (the real host reference is exercised by the campaign tests below)."""
    import numpy as np
    from lab.models import agreement as ag
    from lab.runners import runner_core
    ref_out = np.array([[[0.1, 0.7, 0.2]], [[0.5, 0.1, 0.3]]])  # stacked: [sample][1, 3]
    ref = {"outputs": [ref_out], "compact": [[runner_core.compact_output(np, o)] for o in ref_out]}

    def rec(values):
        return [{"name": "output0", "values": values}]

    def compare(cands):
        return ag.compare(ref["compact"][:len(cands)], cands, "fp32", "m@aaaaaaaaaaaa")

    same = page_outputs(ref, [rec([0.2, 1.4, 0.4]), rec([0.5, 0.1, 0.3])])  # a scaled copy: cosine 1
    assert same[0][0]["shape"] == [1, 3] and same[0][0]["argmax"] == 1
    ag_same = compare(same)
    assert ag_same.passed and ag_same.agree_cosine_min == pytest.approx(1.0) and ag_same.n == 2
    assert ag_same.agree_max_abs == pytest.approx(0.7)
    off = compare(page_outputs(ref, [rec([0.7, 0.1, 0.2])]))  # one sample: n records it
    assert off.n == 1 and off.agree_cosine_min < 0.6 and off.agree_top1 == 0.0 and not off.passed
    nan = compare(page_outputs(ref, [rec([0.1, None, 0.2])]))
    assert not nan.passed and nan.agree_max_abs is None
    missing = compare(page_outputs(ref, [rec([0.1, 0.7])]))
    assert not missing.passed and "0 outputs" in missing.reason
    assert page_outputs(ref, [[{"name": "output0", "values_note": "more than 1048576 values"}]]) == [[]]


# -------------------------------------------------------------------------- real campaigns
PROTOCOL = ("protocol: {warmup: 0, warmup_seconds: 0, min_iters: 1, min_seconds: 0, max_seconds: 0.5,\n"
            "           target_rel_ci: 0.5, trials: 1, timeout_s: 300}\n")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with mobilenet_v1 built for Paddle Inference only (the web form is built on
    demand by the campaign), a `local` device, and a private TMPDIR so that any browser this
    workspace starts (its profile lives under TMPDIR) can be found by path."""
    ws = tmp_path_factory.mktemp("web-campaign")
    (ws / "tmp").mkdir()
    local_workspace(ws, "mobilenet_v1")
    assert not (ws / "models" / "mobilenet_v1" / "web").exists()
    return ws


def _env(ws):
    return dict(os.environ, TMPDIR=str(ws / "tmp"))


def _browsers_of(ws) -> list[int]:
    """Processes whose command line names this workspace's TMPDIR (its Chromium profiles)."""
    import psutil
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(ws / "tmp") in " ".join(proc.info.get("cmdline") or []):
            out.append(proc.pid)
    return out


def _campaign(ws, name, backends):
    path = ws / f"{name}.yaml"
    path.write_text(f"name: {name}\ndevices: [local]\nmodels: [mobilenet_v1]\n"
                    f"backends: [{', '.join(backends)}]\n" + PROTOCOL)
    return path


def _rows(ws, campaign):
    res = lab("--store", "s.sqlite", "results", "--format", "json", "--campaign", campaign, cwd=ws)
    assert res.returncode == 0, res.stderr
    return {r["backend"]: r for r in json.loads(res.stdout)}


@pytest.mark.slow
def test_web_campaign_runs_beside_native_and_the_report_labels_it(ws):
    camp = _campaign(ws, "web", ["paddle-js-webgl", "paddle-js-wasm", "paddle-inference-cpu"])
    res = lab("--devices", "devices.yaml", "--store", "s.sqlite", "run", camp, "--models-root", "models",
              "--no-progress", cwd=ws, env=_env(ws))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "converting to Paddle.js" in res.stderr  # built on demand
    assert "paddle-js-wasm" in res.stderr and "runtime.wasm" in res.stderr  # refused at planning
    rows = _rows(ws, "web")
    assert set(rows) == {"paddle-js-webgl", "paddle-inference-cpu"}
    web = rows["paddle-js-webgl"]
    assert web["status"] == "ok" and web["processor"] == "gpu", web["error"]
    assert web["p50_ms"] > 0 and web["load_ms"] > 0 and web["first_ms"] > 0
    assert web["peak_rss_mb"] is None  # unknown, not zero
    # issue 22: a software renderer makes the gpu row emulated; the native row keeps the device's verdict
    assert web["identity"] == "emulated" and "software WebGL renderer (ANGLE" in web["identity_note"]
    assert rows["paddle-inference-cpu"]["identity"] == "ok"
    from lab.results.store import Store
    store = Store(ws / "s.sqlite")
    try:
        prov = store.provenance(web["job_id"])
    finally:
        store.close()
    w = prov["web"]
    assert "SwiftShader" in w["renderer"] and w["label"] == "software GPU emulation"
    assert "software GPU emulation (SwiftShader): not a GPU figure" in prov["notes"]
    assert any(n.startswith("WebGL renderer: ANGLE") for n in prov["notes"])
    assert w["js_heap"][0]["cdp"]["used_mb"] > 0
    # the page made no request beyond the local server (browser events and server log agree)
    assert w["outside_requests"] == [] and w["requests"][0] > 0
    assert {"/model/model.json", "/model/chunk_1.dat", "/inputs.bin", "/index.html"} <= set(w["served"])
    # the output check: the whole reference set after the timed loop, on the row (checks.apply)
    from lab.models import agreement
    assert web["agree_ok"] is True and web["agree_cosine_min"] >= 0.9999 and web["agree_top1"] == 1.0
    assert web["agree_reference"].startswith("mobilenet_v1@")
    assert prov["checks"]["agreement"]["n"] == agreement.REFERENCE_SET_SIZE
    assert not any("agreement not checked" in n for n in prov["notes"]), prov["notes"]
    assert w["input"].endswith(": sample 0")  # the reference set's source (lab.models.agreement)
    assert prov["model_sha256"] == json.loads(
        (ws / "models" / "mobilenet_v1" / "meta.json").read_text())["web"]["sha256"]
    assert not _browsers_of(ws)
    # the report: web row beside the native one in the latency table, labelled
    res = lab("--store", "s.sqlite", "report", "--campaign", "web", "-o", "r.html", cwd=ws)
    assert res.returncode == 0, res.stderr
    html = (ws / "r.html").read_text()
    latency = html[html.index('<section id="latency">'):html.index('<section id="cpu-aipu">')]
    assert "<td>paddle-inference-cpu</td>" in latency and "<td>paddle-js-webgl</td>" in latency
    web_tr = next(tr for tr in latency.split("<tr>") if "<td>paddle-js-webgl</td>" in tr)
    assert "web · software GPU emulation" in web_tr


@pytest.mark.slow
def test_a_perturbed_reference_fails_the_page_output_check(ws):
    """The same page and outputs against a reference whose outputs were negated (its sha256 stamp
    kept, so it is the cached reference): the row stores agree_ok false with the reason."""
    import numpy as np
    from lab.models import agreement
    from lab.models.artifact import load_artifact
    root = _broken_copy(ws, "perturbed", lambda p: None)
    ref_path = agreement.load_reference(load_artifact("mobilenet_v1", root))["path"]  # cached or made
    with np.load(ref_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["out:0"] = -arrays["out:0"]
    np.savez(ref_path, **arrays)
    camp = _campaign(ws, "perturbed", ["paddle-js-webgl"])
    res = lab("--devices", "devices.yaml", "--store", "s.sqlite", "run", camp, "--models-root", root,
              "--no-progress", cwd=ws, env=_env(ws))
    assert res.returncode == 0, res.stdout + res.stderr
    row = _rows(ws, "perturbed")["paddle-js-webgl"]
    assert row["status"] == "ok" and row["agree_ok"] is False and row["agree_cosine_min"] < 0, row
    from lab.results.store import Store
    store = Store(ws / "s.sqlite")
    try:
        notes = store.provenance(row["job_id"])["notes"]
    finally:
        store.close()
    assert any(n.startswith("output check FAILED against mobilenet_v1@") for n in notes), notes
    assert not _browsers_of(ws)


def _broken_copy(ws, name, edit) -> Path:
    """A models root whose mobilenet_v1 web build is `edit`ed, meta updated as if the converter had
    written it (so it is "current" and nothing rebuilds it)."""
    src = ws / "models" / "mobilenet_v1"
    if not (src / "web").is_dir():  # this test alone: convert first
        res = lab("models", "--root", ws / "models", "build", "mobilenet_v1", "--web", cwd=ws)
        assert res.returncode == 0, res.stderr
    root = ws / f"models-{name}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(src, root / "mobilenet_v1")
    web = root / "mobilenet_v1" / "web"
    edit(web / "model.json")
    meta_path = root / "mobilenet_v1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["web"]["files"], meta["web"]["sha256"] = pjs.web_sha256(web)
    meta_path.write_text(json.dumps(meta))
    return root


def _run_failing(ws, name, root):
    camp = _campaign(ws, name, ["paddle-js-webgl"])
    res = lab("--devices", "devices.yaml", "--store", "s.sqlite", "run", camp, "--models-root", root,
              "--no-progress", cwd=ws, env=_env(ws))
    assert res.returncode != 0 and "1 failed" in res.stderr, res.stdout + res.stderr
    row = _rows(ws, name)["paddle-js-webgl"]
    assert row["status"] == "failed"
    assert not _browsers_of(ws)
    return row["error"]


@pytest.mark.slow
def test_broken_model_json_fails_the_job_with_the_console_line(ws):
    root = _broken_copy(ws, "badjson", lambda p: p.write_text(p.read_text()[:200]))
    error = _run_failing(ws, "badjson", root)
    # Paddle.js's loader rejects a promise nobody awaits: the page's exception line names it
    assert "page failed: uncaught exception in the page" in error and "SyntaxError" in error \
        and "JSON" in error, error


@pytest.mark.slow
def test_shader_compile_failure_fails_the_job_with_the_console_line(ws):
    def unfix(p: Path):  # undo the converter fix: conv ops without fuse_relu -> shader error
        doc = json.loads(p.read_text())
        for op in doc["ops"]:
            (op.get("attrs") or {}).pop("fuse_relu", None)
        p.write_text(json.dumps(doc))
    root = _broken_copy(ws, "shader", unfix)
    error = _run_failing(ws, "shader", root)
    assert "'undefined' : undeclared identifier" in error and "phase first" in error, error
