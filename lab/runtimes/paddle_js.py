"""Paddle.js in a real browser (backend paddle-js-webgl): one fresh page load per trial, over CDP.

Why a runtime of its own: the model runs in a page, not a process the transport starts. `prepare`
checks the web build (models/<id>/web/, `lab models build ID --web`) and takes the input from the
model's agreement reference set;
`run_trial` stages the site (page, JS runner, Paddle.js bundles, model, inputs.bin), serves it with
web_server.py and drives a fresh headless Chromium tab to the end of the protocol
(lab/web/page.py `run_page`: the browser and server are always stopped). The page writes the
lab's runner JSON, so reading, validation and statistics are json_runner's.

Where it runs: `local` (headless Chromium on this host) and an SSH host (lab/web/remote.py:
the site and web_server.py are pushed in `prepare`, the host's own headless Chromium and server run
as one process group per trial, and its DevTools port is forwarded over the SSH connection). An
Android phone needs `adb forward tcp:PORT localabstract:chrome_devtools_remote`; the ADB transport
refuses `forward`, so planning refuses the job with that reason (lab/web/page.py `device_refusal`).

Agreement (lab/models/agreement.py, the one definition): the page's input is sample 0 of the model's
reference input set; after the trials every page load's output is compared with the host's cached
fp32 Paddle Inference reference for that sample (`agreement.compare`, fp32 thresholds), and the
`Agreement` is stored in the Measurement provenance under "agreement" (agree_cosine_min,
agree_max_abs, agree_top1 over the trials).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lab.devices.inventory import device_python
from lab.web import cdp
from lab.web import page as paddlejs_page
from lab.web import remote as paddlejs_remote
from lab.convert import paddlejs as web_convert
from lab.core.errors import ConfigError, LabError, RunnerError
from lab.core.records import Measurement
from lab.runtimes.base import JobContext, PreparedJob, Runtime, TrialResult, input_shapes
from lab.runtimes.json_runner import measurement_from_docs, trial_from_doc, validate_runner_doc

SOFTWARE_GPU_NOTE = "software GPU emulation (SwiftShader): not a GPU figure"


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
def page_agreement(art, outputs: list[list[float | None] | None], precision: str = "fp32"):
    """Each page load's output against the reference of sample 0 (one comparison per trial).

    The page returns a flat list (non-finite values arrive as null); it is shaped as the
    reference output before it is compacted by the one definition (runner_core.compact_output).
    """
    import numpy as np
    from lab.models import agreement
    from lab.runners import runner_core
    ref = agreement.load_reference(art)
    want = ref["outputs"][0][0]
    cands = []
    for out in outputs:
        if out is None or len(out) != want.size:
            cands.append([])  # compare() reports the missing output as a failure, with the reason
            continue
        arr = np.array([np.nan if v is None else v for v in out], dtype="float64").reshape(want.shape)
        cands.append([runner_core.compact_output(np, arr)])
    return agreement.compare([ref["compact"][0]] * len(outputs), cands, precision,
                             agreement.reference_name(ref))


# ---------------------------------------------------------------------------------- runtime
class PaddleJs(Runtime):
    name = "paddle-js"
    nvml = False  # the browser's GPU work is not a process NVML could attribute

    def prepare(self, ctx: JobContext) -> PreparedJob:
        import numpy as np
        from lab.models import agreement
        page_backend = paddlejs_page.backend_name(ctx.backend.id)  # paddle-js-wasm: refused
        refusal = paddlejs_page.device_refusal(ctx.device)
        if refusal:
            raise ConfigError(f"job {ctx.job.job_id}: {refusal}", fix="run paddle-js-* on `local` or an SSH host")
        wm = web_model(ctx)
        (spec, shape), = input_shapes(ctx, static=True, dtypes=("float32",))
        ref_inputs, source = agreement.reference_inputs(ctx.artifact)
        sample = np.ascontiguousarray(ref_inputs[spec.name][0], dtype="float32")
        if list(sample.shape) != shape:
            raise ConfigError(f"job {ctx.job.job_id}: the page feeds one reference sample of shape "
                              f"{list(sample.shape)}, the job asks for {shape}",
                              fix="use batch 1 for paddle-js backends")
        inputs = [(spec.name, sample)]
        input_spec = f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"
        extra = {"web_dir": wm.dir, "inputs": inputs, "input_spec": input_spec,
                 "page_backend": page_backend, "input_source": f"{source}: sample 0"}
        browser = "chromium"
        notes = [f"Paddle.js web model {wm.converter}; fixes: {'; '.join(wm.fixes) or 'none'}"]
        if ctx.device.transport != "local":  # an SSH host: its own Chromium and page server
            browser = paddlejs_remote.device_chromium(ctx.transport)
            python = device_python(ctx.device)
            paddlejs_remote.check_python(ctx.transport, python)
            site = paddlejs_remote.push_site(ctx.transport, wm.dir, inputs, ctx.artifact.id)
            extra.update(site=site, browser=browser, python=python)
            notes.append(f"page served and run on {ctx.device.id} (headless {browser}); "
                         "DevTools reached through an SSH port forward")
        return PreparedJob(command=[browser, "(headless, CDP)", "index.html", input_spec],
                           model_sha256=wm.sha256, notes=notes, extra=extra)

    def run_trial(self, ctx: JobContext, prepared: PreparedJob, trial: int,
                  session: Any | None) -> TrialResult:
        p, x = ctx.job.protocol, prepared.extra
        proto = paddlejs_page.PageProtocol(
            warmup=p.warmup, warmup_seconds=p.warmup_seconds, min_iters=p.min_iters,
            min_seconds=p.min_seconds, max_seconds=p.max_seconds, target_rel_ci=p.target_rel_ci)
        if "site" in x:  # an SSH host: pushed (and verified by sha256) in prepare
            site = x["site"]
            doc = paddlejs_remote.run_remote_page(
                ctx.transport, site, x["input_spec"], proto, p.timeout_s, python=x["python"],
                browser=x["browser"], seed=trial, backend=ctx.job.backend,
                tag=f"{ctx.job.job_id}-t{trial}")
            served_files, served_sha = site.model_files, site.model_sha256
        else:
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

    def measurement(self, ctx: JobContext, prepared: PreparedJob,
                    trials: list[TrialResult]) -> Measurement:
        docs = [t.raw for t in trials]
        m = measurement_from_docs(ctx.job, docs)
        x = prepared.extra
        webgl = [(d.get("env") or {}).get("webgl") or {} for d in docs]
        renderer = next((w.get("renderer") for w in webgl if w.get("renderer")), None)
        label = cdp.renderer_label(renderer)
        outputs = [((d.get("outputs") or [{}])[0]).get("values") for d in docs]
        try:
            agree = page_agreement(ctx.artifact, outputs).to_dict()
            agree["input"] = x["input_source"]
        except LabError as exc:  # the figures stand; agreement is unknown, with the reason
            agree = {"agree_cosine_min": None, "agree_max_abs": None, "agree_top1": None,
                     "passed": None, "reason": f"reference unavailable: {exc}"}
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
        if agree.get("passed") is False:
            m.notes.append(f"outputs disagree with the host fp32 reference: {agree['reason']}")
        elif agree.get("passed") is None:
            m.notes.append(f"agreement unknown: {agree['reason']}")
        return m

