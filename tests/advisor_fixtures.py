"""Shared test helpers (moved out of test_advise_cli.py so other test files import a helper, not a test module)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from lab.models.analysis import ANALYSIS_VERSION, ModelAnalysis
from lab.core.records import Job, Measurement


CNN_OPS = ["1.data", "1.conv2d", "1.batch_norm_", "1.relu", "1.depthwise_conv2d", "1.batch_norm_",
           "1.relu", "1.conv2d", "1.batch_norm_", "1.relu", "1.pool2d", "1.flatten", "1.matmul",
           "1.add", "1.fetch"]


LSTM_OPS = ["1.data", "1.embedding", "1.shape64", "1.full", "0.combine", "1.stack",
            "1.full_with_tensor", "1.transpose", "1.rnn", "0.split", "1.slice", "1.matmul",
            "1.add", "1.fetch"]


def make_model(root: Path, mid: str, ops: list[str], *, macs: int, share: float, dyn=None,
               seq=(), datadep=(), quant="none", domain="vision"):
    d = root / mid
    d.mkdir(parents=True)
    prog = {"base_code": {"magic": "pir", "trainable": True, "version": 4},
            "program": {"regions": [{"#": "region_0", "blocks": [
                {"#": "block_0", "args": [], "ops": [{"#": o} for o in ops]}]}]}}
    (d / "inference.json").write_text(json.dumps(prog))
    (d / "inference.pdiparams").write_bytes(b"\0" * 16)
    files = {n: hashlib.sha256((d / n).read_bytes()).hexdigest()
             for n in ("inference.json", "inference.pdiparams")}
    analysis = {"format": "json", "path": str(d / "inference.json"), "op_count": len(ops),
                "op_histogram": {}, "inputs": [{"name": "x", "shape": [-1, 3, 224, 224],
                                                "dtype": "float32"}],
                "dynamic_dims": dyn or {"x": []}, "outputs": [], "data_dependent_ops": list(datadep),
                "sequence_ops": list(seq), "control_flow_ops": [], "quantization": quant,
                "quant_ops": [], "params": 1000, "trainable_params": 1000,
                "persistable_numel": 1000, "macs_conv": int(macs * share), "macs_matmul": 0,
                "macs_rnn": macs - int(macs * share), "other_ops": 0, "conv_matmul_share": share,
                "dyn_fill": 1, "unknown_shape_ops": 0, "analysis_version": ANALYSIS_VERSION,
                "notes": []}
    # fields lab.models.analysis added since: filled by type, then checked to load from the cache
    for f in dataclasses.fields(ModelAnalysis):
        if f.name not in analysis and f.default is dataclasses.MISSING:
            t = str(f.type)
            analysis[f.name] = (1 if t.startswith("int") else [] if t.startswith("list") else
                                {} if t.startswith("dict") else "" if t.startswith("str") else None)
    ModelAnalysis.from_dict(dict(analysis))  # the advisor must read this cache, not re-analyse
    meta = {"schema": "hwlab.model/1", "id": mid, "source": "user", "format": "json",
            "model_file": "inference.json", "params_file": "inference.pdiparams", "files": files,
            "sha256": "f" * 64, "inputs": [{"name": "x", "shape": [-1, 3, 224, 224],
                                            "dtype": "float32", "run_shape": [1, 3, 224, 224]}],
            "flops": macs, "params": 1000, "op_histogram": {}, "tags": {"domain": domain},
            "analysis": analysis}
    (d / "meta.json").write_text(json.dumps(meta))


def job(campaign, device, chip, model, backend, processor, precision="fp32"):
    jid = hashlib.sha256(f"{campaign}{device}{model}{backend}{precision}".encode()).hexdigest()[:16]
    return Job(job_id=jid, campaign=campaign, device=device, chip=chip, model=model,
               model_sha256="f" * 64, backend=backend, processor=processor, precision=precision,
               threads=4)


def finish(store, j, **m):
    store.plan_jobs([j])
    store.finish_job(j.job_id, "ok", measurement=Measurement(job_id=j.job_id, n_samples=100, **m))
