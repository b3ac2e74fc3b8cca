"""Paddle.js in a real browser (backend paddle-js-webgl): one fresh page load per trial, over CDP.

Why a runtime of its own: the model runs in a page, not a process the transport starts. `prepare`
checks the web build (models/<id>/web/, `lab models build ID --web`) and takes the inputs from the
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

Output checks (lab/runtimes/checks.py, the job path every runtime shares): inputs.bin holds the
whole reference input set; the timed loop feeds sample 0, and on the last trial the page runs every
sample once after the loop (PageProtocol.reference_samples) and reports the flat outputs as
`outputs_check`. `check_outputs` shapes them as the host reference's and compacts them
(runner_core.compact_output); `base.execute` compares them and stores agree_* on the row.
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
from lab.core.errors import ConfigError, RunnerError
from lab.core.records import Measurement
from lab.runtimes.base import JobContext, PreparedJob, Runtime, TrialResult, input_shapes
from lab.runtimes.checks import CheckOutputs
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


# --------------------------------------------------------------------------- output checks
def page_outputs(reference: dict[str, Any], outputs: list[list[dict]]) -> list[list[dict]]:
    """The page's `outputs_check` outputs, compact per sample, for `checks.apply`.

    The page returns output 0 of each sample as a flat list (non-finite values arrive as null);
    it is shaped as the reference's output of that sample before it is compacted by the one
    definition (runner_core.compact_output). A missing or mis-sized output stays empty: the
    comparison reports it as a failure, with the reason.
    """
    import numpy as np
    from lab.runners import runner_core
    out = []
    for i, recs in enumerate(outputs):
        want = reference["outputs"][0][i]
        values = (recs[0] if recs else {}).get("values")
        if values is None or len(values) != want.size:
            out.append([])
            continue
        arr = np.array([np.nan if v is None else v for v in values], dtype="float64").reshape(want.shape)
        out.append([runner_core.compact_output(np, arr)])
    return out


# ---------------------------------------------------------------------------------- runtime
class PaddleJs(Runtime):
    name = "paddle-js"
    nvml = False  # the browser's GPU work is not a process NVML could attribute
    output_checks = True  # the page runs the reference set after the last trial's timed loop

    def prepare(self, ctx: JobContext) -> PreparedJob:
        import numpy as np
        page_backend = paddlejs_page.backend_name(ctx.backend.id)  # paddle-js-wasm: refused
        refusal = paddlejs_page.device_refusal(ctx.device)
        if refusal:
            raise ConfigError(f"job {ctx.job.job_id}: {refusal}", fix="run paddle-js-* on `local` or an SSH host")
        wm = web_model(ctx)
        (spec, shape), = input_shapes(ctx, static=True, dtypes=("float32",))
        ref_inputs, source, n_check = _reference_set(ctx)
        samples = np.ascontiguousarray(ref_inputs[spec.name], dtype="float32")
        if list(samples.shape[1:]) != shape:
            raise ConfigError(f"job {ctx.job.job_id}: the page feeds reference samples of shape "
                              f"{list(samples.shape[1:])}, the job asks for {shape}",
                              fix="use batch 1 for paddle-js backends")
        inputs = [(spec.name, samples)]  # inputs.bin: every sample; the timed loop feeds sample 0
        input_spec = f"{spec.name}:{'x'.join(str(d) for d in shape)}:{spec.dtype}"
        extra = {"web_dir": wm.dir, "inputs": inputs, "input_spec": input_spec, "page_backend": page_backend,
                 "input_source": f"{source}: sample 0", "reference_samples": n_check}
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
            min_seconds=p.min_seconds, max_seconds=p.max_seconds, target_rel_ci=p.target_rel_ci,
            reference_samples=x["reference_samples"] if trial == ctx.last_trial else 0)
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
        m.provenance["web"] = {
            "backend": x["page_backend"], "renderer": renderer, "label": label, "input": x["input_source"],
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
            if ctx.job.processor == "gpu":  # issue 22: the row's GPU is the CPU: emulated, whatever the device
                m.identity = "emulated"
                m.identity_note = f"software WebGL renderer ({renderer}): the GPU this row ran on is emulated on the CPU"
        m.notes.append("peak RSS unavailable: a page cannot see its browser's process RSS "
                       "(JS heap in provenance['web']['js_heap'])")
        return m

    def check_outputs(self, ctx: JobContext, prepared: PreparedJob,
                      trials: list[TrialResult]) -> CheckOutputs | None:
        """The last trial's `outputs_check` (the page's reference pass after its timed loop)."""
        doc = trials[-1].raw if trials else None
        oc = doc.get("outputs_check") if isinstance(doc, dict) else None
        ref = ctx.checks.reference if ctx.checks is not None else None
        if not oc or ref is None:
            return None
        n, wanted = int(oc.get("n") or 0), prepared.extra["reference_samples"]
        note = "" if n == wanted else (f"agreement over {n} of the {wanted} reference samples "
                                       f"(inputs.bin held {oc.get('available')})")
        return CheckOutputs(outputs=page_outputs(ref, oc.get("outputs") or []), seconds=oc.get("seconds"),
                            note=note)


def _reference_set(ctx: JobContext) -> tuple[dict[str, Any], str, int]:
    """The inputs the page feeds: the reference set the job's fp32 reference was made from
    (ctx.checks), all of it checked after the last trial; without a reference the model's own
    reference input set (the same data), unchecked (the job's notes say why)."""
    from lab.models import agreement
    ref = ctx.checks.reference if ctx.checks is not None else None
    if ref is None:
        inputs, source = agreement.reference_inputs(ctx.artifact)
        return inputs, source, 0
    return ref["inputs"], ref["meta"]["source"], int(ref["meta"]["n"])
