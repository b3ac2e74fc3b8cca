"""The Paddle.js path: converter fixes, shim isolation, page server, CDP driver, real Chromium runs.

Real parts: paddlejsconverter 1.0.8 (behind the lab's shim), the npm Paddle.js bundles, Debian
`chromium` headless with WebGL on SwiftShader, Paddle Inference for the reference outputs.
SwiftShader inferences take seconds each, so the protocols here are tiny (warm-up 1, 2 samples).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lab.web import cdp
from lab.web import page as pp
from lab.convert import paddlejs as pjs
from lab.core.errors import ConfigError
from lab.runners import runner_core

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = pp.PageProtocol(warmup=1, warmup_seconds=0, min_iters=2, min_seconds=0, max_seconds=60,
                       max_iters=2)


# ----------------------------------------------------------------------------- pure pieces
def _bn_doc():
    return {"ops": [
        {"type": "conv2d", "attrs": {"groups": 1}, "inputs": {}, "outputs": {"Out": ["c"]}},
        {"type": "depthwise_conv2d", "attrs": {"fuse_relu": True}, "inputs": {}, "outputs": {"Out": ["d"]}},
        {"type": "batchnorm", "attrs": {}, "inputs": {},
         "outputs": {"Out": ["o"], "SavedMean": ["sm"], "SavedVariance": ["sv"]}},
        {"type": "batchnorm", "attrs": {}, "inputs": {},
         "outputs": {"Out": ["o2"], "SavedMean": ["sm2"], "SavedVariance": ["sv2"]}}],
        "vars": {"c": {"shape": [1, 2]}, "sm": {"shape": []}, "sv": {"shape": []},
                 "sm2": {"shape": [8]}, "sv2": {"shape": [8]}, "o": {"shape": [1]}}}


def test_fix_model_json_drops_zero_dim_saved_stats_and_sets_fuse_relu_false():
    doc = _bn_doc()
    fixes = pjs.fix_model_json(doc)
    assert fixes == ["dropped 2 zero-dim batch_norm SavedMean/SavedVariance vars",
                     "set fuse_relu:false on 2 conv op(s)"]
    assert "sm" not in doc["vars"] and "sv" not in doc["vars"]
    assert "SavedMean" not in doc["ops"][2]["outputs"]
    # Non-zero-dim saved stats are real tensors: kept.
    assert doc["vars"]["sm2"] == {"shape": [8]} and "SavedMean" in doc["ops"][3]["outputs"]
    assert all(op["attrs"]["fuse_relu"] is False for op in doc["ops"][:2])
    assert pjs.fix_model_json(doc) == []  # idempotent


def test_fix_model_json_refuses_a_document_without_ops():
    with pytest.raises(Exception, match="ops"):
        pjs.fix_model_json({"vars": {}})


def test_renderer_label_marks_software_emulation():
    assert cdp.renderer_label("ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), "
                              "SwiftShader driver)") == cdp.SOFTWARE_GPU_LABEL
    assert cdp.renderer_label("llvmpipe (LLVM 15.0.6, 256 bits)") == cdp.SOFTWARE_GPU_LABEL
    assert cdp.renderer_label("Adreno (TM) 640") == "GPU"
    assert cdp.renderer_label(None) is None


def test_argv_builders_quote_and_carry_the_flags():
    argv = cdp.chromium_argv("/usr/bin/chromium", "/tmp/p d")
    for flag in ("--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--remote-debugging-port=0"):
        assert flag in argv
    assert "--user-data-dir=/tmp/p d" in argv
    # through a port forward the browser's own websocket address is re-aimed at the forward
    assert cdp.ws_through("ws://127.0.0.1:40123/devtools/browser/abc", "127.0.0.1", 5555) == \
        "ws://127.0.0.1:5555/devtools/browser/abc"
    assert cdp.ws_through("ws://localhost/devtools/browser/x?y=1", "127.0.0.1", 9) == \
        "ws://127.0.0.1:9/devtools/browser/x?y=1"


def test_wasm_backend_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="runtime.wasm"):
        pp.backend_name("paddle-js-wasm")
    assert pp.backend_name("paddle-js-webgl") == "webgl"


def test_js_protocol_maths_equals_pi_runner():
    """The page's median-CI indices and check cadence are the runners' (runner_core), computed by node."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node not installed (scripts/install-web-deps.sh installs npm, which brings it)")
    script = ("global.window={location:{search:''},addEventListener(){}};global.document={};"
              f"require({json.dumps(str(REPO / 'lab/runners/web/runner.js'))});"
              "const s=window.__hwlab,out=[];for(let n=1;n<=400;n++)out.push([s.medianCiIndices(n),"
              "s.checkEvery(n)]);const m=s.medianCi([5,1,4,2,3,9,7,8,6,10,11,12]);"
              "console.log(JSON.stringify({out,m}))")
    res = json.loads(subprocess.run([node, "-e", script], capture_output=True, text=True,
                                    check=True, timeout=30).stdout)
    for n, (idx, every) in enumerate(res["out"], start=1):
        want = runner_core.median_ci_indices(n)
        assert (tuple(idx) if idx else None) == want, n
        assert every == runner_core.steady_check_every(n)
    assert res["m"] == list(runner_core.median_ci(list(range(1, 13))))


# ------------------------------------------------------------------------------- page server
def _start_server(root: Path, tmp: Path, lifetime=20):
    proc = subprocess.Popen([PY, str(pp.SERVER), "--root", str(root), "--log", str(tmp / "req.jsonl"),
                             "--result", str(tmp / "result.json"), "--lifetime", str(lifetime),
                             "--linger", "0"], stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())["port"]


def test_web_server_serves_only_its_root_logs_every_request_and_stops(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "model.json").write_text('{"ops": []}')
    (tmp_path / "secret.txt").write_text("no")
    proc, port = _start_server(root, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/model.json", timeout=5) as r:
            assert r.read() == b'{"ops": []}' and r.headers["Cache-Control"] == "no-store"
        for bad in ("/../secret.txt", "/%2e%2e/secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + bad, timeout=5)
            assert err.value.code == 404
        req = urllib.request.Request(base + "/result", data=b'{"ok": true}', method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 204
        assert proc.wait(timeout=10) == 0  # the result ends it (linger 0)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = [json.loads(x) for x in (tmp_path / "req.jsonl").read_text().splitlines()]
    assert [(r["method"], r["status"]) for r in log] == [("GET", 200), ("GET", 404), ("GET", 404),
                                                         ("POST", 204)]
    assert json.loads((tmp_path / "result.json").read_text()) == {"ok": True}


def test_web_server_exits_at_its_lifetime(tmp_path):
    start = time.monotonic()
    proc, _ = _start_server(tmp_path, tmp_path, lifetime=1)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - start < 8


# ------------------------------------------------------------------------ real conversion + runs
@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """mobilenet_v1 built and converted by the CLI into a private models root."""
    root = tmp_path_factory.mktemp("models")
    p = subprocess.run([PY, "-m", "lab.cli", "models", "build", "mobilenet_v1", "--web",
                        "--root", str(root)], capture_output=True, text=True, timeout=300,
                       cwd=str(REPO))
    assert p.returncode == 0, p.stdout + p.stderr
    from lab.models.artifact import load_artifact
    return load_artifact("mobilenet_v1", root)


def _chromium_pids() -> set[int]:
    import psutil
    out = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "--user-data-dir=/tmp/hwlab-chromium-" in cmd or "hwlab-chromium-" in cmd:
            out.add(proc.pid)
    return out


def _inputs(art):
    spec = art.inputs[0]
    shape = list(spec.run_shape)
    # TODO(merge): use lab.models.agreement's seeded reference inputs once it lands.
    arrays = runner_core.make_inputs(np, [(spec.name, shape, spec.dtype)], 0, 1000)
    return arrays, f"{spec.name}:{'x'.join(map(str, shape))}:{spec.dtype}"


def _cosine(a, b) -> float:
    # TODO(merge): use lab.models.agreement
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _paddle_inference(art, arrays):
    import paddle.inference as pi
    cfg = pi.Config(str(art.model_path), str(art.params_path))
    cfg.disable_gpu()
    cfg.disable_glog_info()
    pred = pi.create_predictor(cfg)
    name, arr = arrays[0]
    h = pred.get_input_handle(name)
    h.reshape(list(arr.shape))
    h.copy_from_cpu(arr)
    pred.run()
    return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()


@pytest.mark.slow
def test_build_web_records_converter_shim_and_fixes(mobilenet):
    meta = json.loads((mobilenet.dir / "meta.json").read_text())["web"]
    assert meta["converter"] == "paddlejsconverter 1.0.8"
    assert any("SavedMean" in f for f in meta["fixes"]) and any("fuse_relu" in f for f in meta["fixes"])
    assert any("load_inference_model" in s for s in meta["shim"])
    files, digest = pjs.web_sha256(mobilenet.dir / "web")
    assert files == meta["files"] and digest == meta["sha256"] and "chunk_1.dat" in files
    doc = json.loads((mobilenet.dir / "web" / "model.json").read_text())
    assert not [v for v in doc["vars"].values() if v.get("shape") == []
                and any(v["name"] in (op["outputs"].get("SavedMean", []) + op["outputs"].get("SavedVariance", []))
                        for op in doc["ops"])]
    assert "paddle.fluid" not in sys.modules  # the shim lives only in the converter's process


@pytest.mark.slow
def test_mobilenet_v1_on_webgl_in_headless_chromium(mobilenet, tmp_path):
    before = _chromium_pids()
    arrays, spec = _inputs(mobilenet)
    doc = pp.run_page(mobilenet.dir / "web", arrays, spec, TINY, 150, tmp_path)
    assert doc["ok"], doc["error"]
    webgl = doc["env"]["webgl"]
    assert webgl["renderer"] and webgl["source"] == "WEBGL_debug_renderer_info"
    assert webgl["label"] == cdp.SOFTWARE_GPU_LABEL  # SwiftShader here
    t = doc["timings"]
    assert t["load_ms"] > 0 and t["first_ms"] > 0 and len(t["samples_ms"]) == 2
    assert t["stop_reason"] == "max_iters" and t["warmup_iters"] == 1
    assert doc["schema"] == "hwlab.runner/1" and doc["memory"]["js_heap"]["used_mb"] > 0
    # Agreement with Paddle Inference on the same seeded input.
    ref = _paddle_inference(mobilenet, arrays)
    web = doc["outputs"][0]["values"]
    assert len(web) == ref.size
    assert _cosine(ref, web) >= 0.999
    # No request beyond the local server: from the browser's events AND the server's log.
    net = doc["network"]
    assert net["outside"] == [] and net["requests"]
    assert all(u.startswith(net["origin"] + "/") for u in net["requests"])
    served = {r["path"].split("?")[0] for r in net["server_log"]}
    assert {"/model/model.json", "/model/chunk_1.dat", "/vendor/paddlejs-core.js", "/inputs.bin",
            "/result"} <= served
    assert {u[len(net["origin"]):].split("?")[0] for u in net["requests"]} <= served
    assert all(r["client"] == "127.0.0.1" for r in net["server_log"])
    assert not (_chromium_pids() - before)


@pytest.mark.slow
def test_page_runs_the_reference_samples_after_the_timed_loop(mobilenet, tmp_path):
    """inputs.bin holds several samples: the timed loop feeds sample 0, then each sample runs once
    (reference_samples; here one more than the file holds, so n records how many ran) and its
    output goes into outputs_check, each matching Paddle Inference on that sample."""
    import dataclasses
    from lab.models import agreement
    name = mobilenet.inputs[0].name
    x = np.ascontiguousarray(agreement.reference_inputs(mobilenet)[0][name][:3], dtype="float32")
    spec = f"{name}:{'x'.join(map(str, x.shape[1:]))}:float32"
    doc = pp.run_page(mobilenet.dir / "web", [(name, x)], spec,
                      dataclasses.replace(TINY, reference_samples=4), 200, tmp_path)
    assert doc["ok"], doc["error"]
    oc = doc["outputs_check"]
    assert (oc["n"], oc["requested"], oc["available"]) == (3, 4, 3) and oc["seconds"] > 0
    refs = [_paddle_inference(mobilenet, [(name, x[i])]) for i in range(3)]
    got = [o[0]["values"] for o in oc["outputs"]]
    assert all(_cosine(r, g) >= 0.999 for r, g in zip(refs, got))
    assert _cosine(refs[0], doc["outputs"][0]["values"]) >= 0.999  # the timed loop's input: sample 0
    assert got[0] != got[1]  # each sample was fed, not sample 0 again


@pytest.mark.slow
def test_broken_model_json_fails_with_the_console_line(mobilenet, tmp_path):
    before = _chromium_pids()
    web = tmp_path / "web"
    shutil.copytree(mobilenet.dir / "web", web)
    (web / "model.json").write_text('{"ops": [')  # truncated
    arrays, spec = _inputs(mobilenet)
    doc = pp.run_page(web, arrays, spec, TINY, 60, tmp_path / "job")
    assert not doc["ok"]
    # Paddle.js's loader rejects a promise nobody awaits: the driver's exception line names it.
    assert "uncaught exception" in doc["error"] and "Unexpected end of JSON input" in doc["error"], \
        doc["error"]
    assert doc["console"]["exceptions"]
    # it stopped at the exception, not at the 60 s deadline (no wall-clock bound: a busy CI box
    # starts Chromium slowly)
    assert "no result within" not in doc["error"]
    assert not (_chromium_pids() - before)


@pytest.mark.slow
def test_page_js_error_fails_fast_with_the_exception_and_stops_the_browser(mobilenet, tmp_path):
    before = _chromium_pids()
    arrays, spec = _inputs(mobilenet)
    site = pp.stage_site(mobilenet.dir / "web", arrays, tmp_path / "site")
    (site / "vendor" / "paddlejs-backend-webgl.js").write_text(
        'throw new Error("boom from the test page");\n')
    server = pp.LocalServer(site, tmp_path, lifetime_s=60)
    try:
        url = pp.page_url(server.port, spec, TINY)
        with cdp.LocalChromium() as chrome:
            pids = {chrome.proc.pid}
            run = cdp.drive_page("127.0.0.1", chrome.port, url, 45, alive=chrome.alive)
        doc = pp.finish_doc(run, f"http://127.0.0.1:{server.port}", server.requests())
    finally:
        server.close()
    assert not doc["ok"]
    assert "uncaught exception" in doc["error"] and "boom from the test page" in doc["error"]
    assert "paddlejs-backend-webgl.js:1" in doc["console"]["exceptions"][0]
    assert "no result within" not in (run.error or "")  # ended by the exception or the page, not the deadline
    assert not any(cdp._alive(p) for p in pids)
    assert not (_chromium_pids() - before)
