"""Paddle.js in a real browser (backend paddle-js-webgl): one fresh page load per trial, over CDP.

Why a runtime of its own: the model runs in a page, not a process the transport starts. `prepare`
checks the web build (models/<id>/web/, `lab models build ID --web`), makes the input with the
host's seeded generator and computes the host's fp32 Paddle Inference reference output for it;
`run_trial` stages the site (page, JS runner, Paddle.js bundles, model, inputs.bin), serves it with
web_server.py and drives a fresh headless Chromium tab to the end of the protocol
(lab/paddlejs_page.run_page: the browser and server are always stopped). The page writes the
lab's runner JSON, so reading, validation and statistics are json_runner's.

Where it runs: `local` (headless Chromium on this host). An SSH host or an Android phone needs the
browser's DevTools port reached through the transport (a port forward, `adb forward tcp:PORT
localabstract:chrome_devtools_remote`); no transport offers one yet, so planning refuses them with
that reason (`paddlejs_page.device_refusal`) and the argv builders in lab/cdp.py wait for it.

Agreement: every trial's page output is compared with the reference (cosine, max |diff|, same
argmax) and the figures are stored in the Measurement provenance under "agreement", named as the
agreement check of the quantise-and-verify issue names them (agree_cosine_min, agree_max_abs,
agree_top1). TODO(merge): use lab.agreement (reference set, thresholds) once it lands on main.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import cdp, paddlejs_page
from ..convert import paddlejs as web_convert
from ..errors import ConfigError, LabError, RunnerError, excerpt
from ..records import Measurement
from .base import JobContext, PreparedJob, Runtime, TrialResult, input_shapes
from .json_runner import measurement_from_docs, trial_from_doc, validate_runner_doc

# Seed of the page's input: sample 0 of the agreement reference set (lab.agreement.REFERENCE_SEED
# on the quantise-and-verify branch), so host and page see the same data.
INPUT_SEED = 1000
VOCAB_MAX = 1000
SOFTWARE_GPU_NOTE = "software GPU emulation (SwiftShader): not a GPU figure"
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def web_model(ctx: JobContext) -> web_convert.WebModel:
    """The model's current web build, or ConfigError naming the exact build command."""
    refusal = web_convert.web_refusal(ctx.artifact)
    if refusal:
        raise ConfigError(f"job {ctx.job.job_id}: {refusal}", fix="use a native backend for it")
    wm = web_convert.current_web(ctx.artifact)
    if wm is None:
        raise ConfigError(f"job {ctx.job.job_id}: model {ctx.artifact.id} has no current Paddle.js "
                          "build (models/<id>/web/ missing or made from another model version)",
                          fix=f"run `{web_convert.build_command(ctx.artifact.id)}`")
    return wm


# ------------------------------------------------------------------------------- agreement
def host_reference(artifact, name: str, array, timeout_s: float = 300.0):
    """fp32 Paddle Inference on the host (oneDNN off) for one input, in a child process: the lab
    process stays paddle-free. TODO(merge): lab.host_infer.predict / lab.agreement.load_reference."""
    import numpy as np
    script = (
        "import sys, numpy as np, paddle.inference as pi\n"
        "m, p, name, src, dst = sys.argv[1:6]\n"
        "c = pi.Config(m, p); c.disable_gpu(); c.disable_glog_info(); c.disable_mkldnn()\n"
        "c.set_cpu_math_library_num_threads(1)\n"
        "pr = pi.create_predictor(c); x = np.load(src); h = pr.get_input_handle(name)\n"
        "h.reshape(list(x.shape)); h.copy_from_cpu(x); pr.run()\n"
        "np.save(dst, pr.get_output_handle(pr.get_output_names()[0]).copy_to_cpu())\n")
    model = artifact.pdmodel_path or artifact.model_path
    params = artifact.legacy_pdiparams_path or artifact.params_path
    with tempfile.TemporaryDirectory(prefix="hwlab-ref-") as tmp:
        src, dst = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(src, array)
        env = dict(os.environ, GLOG_minloglevel="2", FLAGS_enable_pir_api="0")
        try:
            p = subprocess.run([sys.executable, "-c", script, str(model), str(params), name,
                                str(src), str(dst)], env=env, capture_output=True, text=True,
                               timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise LabError(f"host reference of {artifact.id} ran over {timeout_s:.0f} s") from None
        if p.returncode != 0 or not dst.is_file():
            raise LabError(f"host reference of {artifact.id} failed (exit {p.returncode}): "
                           f"{excerpt(p.stderr or p.stdout)}")
        return np.load(dst)


def agreement(reference: list[float] | None, reference_name: str, note: str,
              outputs: list[list[float] | None]) -> dict[str, Any]:
    """Each trial's page output against the reference: the worst cosine, the largest |diff| and the
    share of trials with the reference's argmax (None with the reason when it cannot be told)."""
    base = {"agree_cosine_min": None, "agree_max_abs": None, "agree_top1": None,
            "n": len(outputs), "precision": "fp32", "reference": reference_name, "note": note}
    if reference is None:
        return base
    cos_min, max_abs, same, bad = 1.0, 0.0, 0, []
    ref_arg = max(range(len(reference)), key=reference.__getitem__) if reference else None
    for i, out in enumerate(outputs):
        if out is None or len(out) != len(reference) or not all(math.isfinite(v) for v in out):
            bad.append(i)
            cos_min = 0.0
            continue
        dot = sum(a * b for a, b in zip(out, reference))
        na = math.sqrt(sum(a * a for a in out))
        nb = math.sqrt(sum(b * b for b in reference))
        cos = 1.0 if na == nb == 0.0 else (0.0 if na == 0.0 or nb == 0.0 else dot / (na * nb))
        cos_min = min(cos_min, max(-1.0, min(1.0, cos)))
        max_abs = max([max_abs] + [abs(a - b) for a, b in zip(out, reference)])
        same += int(max(range(len(out)), key=out.__getitem__) == ref_arg)
    base.update(agree_cosine_min=round(cos_min, 8), agree_max_abs=None if bad else max_abs,
                agree_top1=same / len(outputs) if outputs else None)
    if bad:
        base["note"] = (note + "; " if note else "") + (
            f"trial(s) {bad}: output missing, of another size ({len(reference)} expected) or "
            "non-finite")
    return base


# ---------------------------------------------------------------------------------- runtime
class PaddleJs(Runtime):
    name = "paddle-js"
    nvml = False  # the browser's GPU work is not a process NVML could attribute

    def prepare(self, ctx: JobContext) -> PreparedJob:
        import numpy as np
        from ..runners import pi_runner
        page_backend = paddlejs_page.backend_name(ctx.backend.id)  # paddle-js-wasm: refused
        refusal = paddlejs_page.device_refusal(ctx.device)
        if refusal:
            raise ConfigError(f"job {ctx.job.job_id}: {refusal}", fix="run paddle-js-* on `local`")
        wm = web_model(ctx)
        (spec, shape), = input_shapes(ctx, static=True, dtypes=("float32",))
        inputs = pi_runner.make_inputs(np, [(spec.name, shape, spec.dtype)], INPUT_SEED, VOCAB_MAX)
        input_spec = f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"
        return PreparedJob(command=["chromium", "(headless, CDP)", "index.html", input_spec],
                           model_sha256=wm.sha256,
                           notes=[f"Paddle.js web model {wm.converter}; fixes: "
                                  f"{'; '.join(wm.fixes) or 'none'}"],
                           extra={"web_dir": wm.dir, "inputs": inputs, "input_spec": input_spec,
                                  "page_backend": page_backend})

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int,
                  session: Any | None) -> TrialResult:
        p, x = ctx.job.protocol, prepared.extra
        proto = paddlejs_page.PageProtocol(
            warmup=p.warmup, warmup_seconds=p.warmup_seconds, min_iters=p.min_iters,
            min_seconds=p.min_seconds, max_seconds=p.max_seconds, target_rel_ci=p.target_rel_ci)
        with tempfile.TemporaryDirectory(prefix=f"hwlab-web-{ctx.job.job_id}-t{trial}-",
                                         dir=ctx.transport.workdir) as tmp:
            doc = paddlejs_page.run_page(x["web_dir"], x["inputs"], x["input_spec"], proto,
                                         p.timeout_s, Path(tmp), seed=trial, backend=ctx.job.backend)
            served_files, served_sha = web_convert.web_sha256(Path(tmp) / "site" / "model")
        doc.setdefault("model", {})["sha256"] = served_sha  # what the server actually served
        doc["model"]["files"] = served_files
        if not doc.get("ok"):
            raise RunnerError(f"{ctx.where}: page failed: {doc.get('error') or 'no error text'}")
        validate_runner_doc(doc, ctx.job, prepared.model_sha256)
        return trial_from_doc(doc)

    @staticmethod
    def reference(ctx: JobContext, x: dict[str, Any]) -> tuple[list[float] | None, str, str]:
        """(reference output, its name, a note); computed after the trials, so a failed page
        costs no host inference. An unavailable reference leaves agreement unknown, with why."""
        art, (name, array) = ctx.artifact, x["inputs"][0]
        ref_name = (f"{art.id}@{(art.legacy_sha256 or art.sha256)[:12]} paddle-inference fp32 cpu "
                    "(oneDNN off), host")
        try:
            values = [float(v) for v in host_reference(art, name, array).ravel()]
        except LabError as exc:
            return None, ref_name, f"reference unavailable: {exc}"
        return values, ref_name, (f"input: pi_runner.make_inputs seed {INPUT_SEED} (the bytes of "
                                  "inputs.bin)")

    def measurement(self, ctx: JobContext, prepared: PreparedJob,
                    trials: list[TrialResult]) -> Measurement:
        docs = [t.raw for t in trials]
        m = measurement_from_docs(ctx.job, docs)
        x = prepared.extra
        webgl = [(d.get("env") or {}).get("webgl") or {} for d in docs]
        renderer = next((w.get("renderer") for w in webgl if w.get("renderer")), None)
        label = cdp.renderer_label(renderer)
        outputs = [((d.get("outputs") or [{}])[0]).get("values") for d in docs]
        agree = agreement(*self.reference(ctx, x), outputs)
        m.provenance["agreement"] = agree
        m.provenance["web"] = {
            "backend": x["page_backend"], "renderer": renderer, "label": label,
            "webgl": webgl[0] if webgl else None,
            "browser": docs[0].get("browser") if docs else None,
            "js_heap": [{"page_peak_mb": (d.get("memory") or {}).get("js_heap_peak_mb"),
                         "cdp": (d.get("memory") or {}).get("js_heap")} for d in docs],
            "requests": [len((d.get("network") or {}).get("requests") or []) for d in docs],
            "outside_requests": sorted({u for d in docs for u in (d.get("network") or {}).get("outside") or []}),
            "served": sorted({str(r.get("path", "")).split("?")[0] for d in docs
                              for r in (d.get("network") or {}).get("server_log") or []}),
        }
        m.notes.extend(prepared.notes)
        m.notes.append(f"WebGL renderer: {renderer or 'unknown'}")
        if label == cdp.SOFTWARE_GPU_LABEL:
            m.notes.append(SOFTWARE_GPU_NOTE)
        m.notes.append("peak RSS unavailable: a page cannot see its browser's process RSS "
                       "(JS heap in provenance['web']['js_heap'])")
        if agree["agree_cosine_min"] is not None:
            m.notes.append(f"agreement with host fp32 Paddle Inference over {agree['n']} page load(s): "
                           f"cosine_min {agree['agree_cosine_min']:.6f}, top1 {agree['agree_top1']:.2f}")
        else:
            m.notes.append(f"agreement unknown: {agree['note']}")
        return m

