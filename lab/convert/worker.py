"""Child process for the ONNX conversions: `python -m lab.convert.worker JOB.json`.

Why a child: paddle2onnx aborts (SIGABRT) on a quantised Paddle model and x2paddle prints and
raises from deep inside; a child turns either into one line for the host. The job JSON names a
`mode` and a `result` path; the worker writes `{"ok": true, ...}` or `{"ok": false, "error": ...}`
there. Everything here imports paddle / onnx / onnxruntime lazily.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

AGREEMENT_SAMPLES = 4  # samples of lab.models.agreement's seeded reference inputs (seed REFERENCE_SEED+i)


def _inputs(specs: list[dict[str, Any]], count: int, seed: int | None = None) -> list[dict[str, Any]]:
    """`count` seeded input sets {name: array} (lab.models.agreement.seeded_inputs, the runner's generator)."""
    from lab.models import agreement
    return agreement.seeded_inputs([(s["name"], list(s["run_shape"]), s["dtype"]) for s in specs],
                                   count, agreement.REFERENCE_SEED if seed is None else seed)


def _npz_feeds(path: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input sets saved by the host (`.npz`, key = the model's input name, N x run shape): the
    model's natural reference or calibration inputs, so int8 is calibrated and checked on data
    like what it will see (uniform [0, 1) noise is not an ImageNet-normalised photo)."""
    import numpy as np
    with np.load(path) as data:
        arrays = {s["name"]: data[s.get("paddle_name") or s["name"]] for s in specs}
    n = min(len(a) for a in arrays.values())
    return [{k: a[i] for k, a in arrays.items()} for i in range(n)]


def _agreement(reference: list[list[Any]], candidate: list[list[Any]], precision: str,
               reference_name: str) -> dict[str, Any]:
    """lab.models.agreement.compare over compact outputs; keys cosine/max_abs/top1 kept for the records."""
    import numpy as np

    from lab.models import agreement

    def compact(outs: list[list[Any]]) -> list[list[dict]]:
        return agreement.compact_all([np.stack([o[j] for o in outs]) for j in range(len(outs[0]))])
    if any(len(r) != len(c) for r, c in zip(reference, candidate)):
        raise ValueError(f"{len(candidate[0])} outputs, the reference has {len(reference[0])}")
    ag = agreement.compare(compact(reference), compact(candidate), precision, reference_name)
    if ag.agree_cosine_min is None:
        raise ValueError(ag.reason)
    return {"cosine": ag.agree_cosine_min, "max_abs": ag.agree_max_abs, "top1": ag.agree_top1,
            "samples": ag.n, "precision": precision, "passed": ag.passed, "reason": ag.reason,
            "thresholds": ag.thresholds}


def _ort_outputs(onnx_path: str, feeds: list[dict[str, Any]]) -> list[list[Any]]:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(onnx_path, sess_options=so, providers=["CPUExecutionProvider"])
    return [sess.run(None, feed) for feed in feeds]


def _paddle_outputs(model: str, params: str, feeds: list[dict[str, Any]]) -> list[list[Any]]:
    import paddle.inference as pi
    config = pi.Config(model, params)
    config.disable_gpu()
    if hasattr(config, "disable_glog_info"):
        config.disable_glog_info()
    predictor = pi.create_predictor(config)
    outs = []
    for feed in feeds:
        for name, arr in feed.items():
            h = predictor.get_input_handle(name)
            h.reshape(list(arr.shape))
            h.copy_from_cpu(arr)
        predictor.run()
        outs.append([predictor.get_output_handle(n).copy_to_cpu()
                     for n in predictor.get_output_names()])
    return outs


def agree(job: dict[str, Any]) -> dict[str, Any]:
    """Reference (ONNX Runtime on job['onnx']) against Paddle Inference or another .onnx."""
    from lab.models import agreement
    specs = job["inputs"]  # [{name (onnx), paddle_name, run_shape, dtype}]
    feeds = _npz_feeds(job["feeds_npz"], specs) if job.get("feeds_npz") else \
        _inputs(specs, job.get("count", AGREEMENT_SAMPLES))
    if job.get("reference_paddle_model"):
        ref = _paddle_outputs(job["reference_paddle_model"], job["reference_paddle_params"], feeds)
    else:
        ref = _ort_outputs(job["onnx"], feeds)
    if job.get("candidate_onnx"):
        cand = _ort_outputs(job["candidate_onnx"], feeds)
    else:
        renamed = [{s.get("paddle_name") or s["name"]: f[s["name"]] for s in specs} for f in feeds]
        cand = _paddle_outputs(job["paddle_model"], job["paddle_params"], renamed)
    reference = ("paddle:" + Path(job["reference_paddle_model"]).name
                 if job.get("reference_paddle_model") else "onnxruntime:" + Path(job["onnx"]).name)
    out = _agreement(ref, cand, job.get("precision", "fp32"), reference)
    out.update(seed=agreement.REFERENCE_SEED, reference=reference,
               inputs=job.get("feeds_source") or f"seeded random (seed {agreement.REFERENCE_SEED}+i)")
    return out


# --------------------------------------------------------------------------------- conversions
_FAILED_NODE = re.compile(r"convert failed node:(\S+?), op_type is (\S+)")
_UNSUPPORTED = re.compile(r"^=+ (\S+) =+$")


def x2paddle(job: dict[str, Any]) -> dict[str, Any]:
    """ONNX -> Paddle PIR (.json + .pdiparams) with x2paddle; failures name node/op."""
    import x2paddle as x2p
    from x2paddle.decoder.onnx_decoder import ONNXDecoder
    from x2paddle.op_mapper.onnx2paddle.onnx_op_mapper import ONNXOpMapper
    from x2paddle.optimizer.optimizer import GraphOptimizer
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            decoder = ONNXDecoder(job["onnx"], True, job.get("input_shape_dict"))
            mapper = ONNXOpMapper(decoder)
            mapper.paddle_graph.build()
            GraphOptimizer(source_frame="onnx").optimize(mapper.paddle_graph)
            mapper.paddle_graph.gen_model(job["save_dir"])
    except Exception as exc:  # noqa: BLE001 - reported as data, the host raises ConfigError
        text = str(exc)
        m = _FAILED_NODE.search(text)
        if m:
            return {"ok": False, "kind": "node", "node": m.group(1), "op": m.group(2),
                    "error": text}
        if "not supported yet" in text:
            ops = [m.group(1) for line in buf.getvalue().splitlines()
                   if (m := _UNSUPPORTED.match(line.strip())) and "OPs" not in line]
            return {"ok": False, "kind": "unsupported", "ops": sorted(set(ops)), "error": text}
        return {"ok": False, "kind": "other", "error": f"{type(exc).__name__}: {text}"[:500],
                "log": buf.getvalue()[-2000:]}
    return {"ok": True, "x2paddle": getattr(x2p, "__version__", None)}


def paddle2onnx(job: dict[str, Any]) -> dict[str, Any]:
    """Paddle (PIR .json) -> ONNX at a fixed opset, then its agreement with Paddle Inference."""
    import paddle2onnx as p2o
    with contextlib.redirect_stdout(io.StringIO()):
        p2o.export(job["model"], job["params"], save_file=job["out"],
                   opset_version=int(job["opset"]), auto_upgrade_opset=False,
                   enable_onnx_checker=True, enable_optimize=True)
    res = {"ok": True, "paddle2onnx": p2o.__version__}
    if job.get("agree"):
        res["agreement"] = agree(dict(job["agree"], onnx=job["out"]))
    return res


def quantize(job: dict[str, Any]) -> dict[str, Any]:
    """ONNX Runtime static int8: QDQ, per-channel weights, calibrated on the host's calibration set
    (`calibration_npz`: the same data Paddle's PTQ uses), else on seeded inputs."""
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = _npz_feeds(job["calibration_npz"], job["inputs"]) if job.get("calibration_npz") else \
        _inputs(job["inputs"], job["calibration_samples"], job["seed"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    pre = job["out"] + ".pre.onnx"
    try:
        quant_pre_process(job["fp32"], pre, skip_symbolic_shape=False)
        quantize_static(pre, job["out"], Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    finally:
        Path(pre).unlink(missing_ok=True)
    res = {"ok": True, "onnxruntime": onnxruntime.__version__}
    if job.get("agree"):
        res["agreement"] = agree({"onnx": job["fp32"], "candidate_onnx": job["out"],
                                  "inputs": job["inputs"], "precision": "int8",
                                  "feeds_npz": job.get("feeds_npz"),
                                  "feeds_source": job.get("feeds_source")})
    return res


def legacy(job: dict[str, Any]) -> dict[str, Any]:
    """x2paddle's generated code -> a legacy `.pdmodel` (Paddle Lite's input), in a child started
    with FLAGS_enable_pir_api=0; then the .pdmodel's agreement with ONNX Runtime.

    paddle 3.3.1's `paddle.matmul` has no legacy static-graph path (it calls `_C_ops.matmul`
    and fails with "argument (position 1) must be Value, but got Variable"), so in this process
    only it appends the legacy `matmul_v2` op itself. Any other op without a legacy path fails
    here, and the import keeps the Lite refusal with that error.
    """
    import importlib.util

    import paddle
    from paddle.base.layer_helper import LayerHelper
    from paddle.static import InputSpec
    original = paddle.matmul

    def matmul(x, y, transpose_x=False, transpose_y=False, name=None):
        if paddle.in_dynamic_mode():
            return original(x, y, transpose_x, transpose_y, name)
        helper = LayerHelper("matmul_v2", name=name)
        out = helper.create_variable_for_type_inference(dtype=x.dtype)
        helper.append_op(type="matmul_v2", inputs={"X": x, "Y": y}, outputs={"Out": out},
                         attrs={"trans_x": transpose_x, "trans_y": transpose_y})
        return out

    paddle.matmul = matmul
    save_dir = Path(job["save_dir"])
    spec = importlib.util.spec_from_file_location("x2paddle_code", save_dir / "x2paddle_code.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    model = code.ONNXModel()
    model.set_dict(paddle.load(str(save_dir / "model.pdparams")), use_structured_name=True)
    model.eval()
    with contextlib.redirect_stdout(io.StringIO()):
        paddle.jit.save(model, job["out_prefix"], input_spec=[
            InputSpec(i["shape"], i["dtype"], i["paddle_name"]) for i in job["agree"]["inputs"]])
    res = {"ok": True, "paddle": paddle.__version__, "patched": ["paddle.matmul -> matmul_v2"]}
    res["agreement"] = agree(dict(job["agree"], paddle_model=job["out_prefix"] + ".pdmodel",
                                  paddle_params=job["out_prefix"] + ".pdiparams"))
    return res


def run(mode: str, job: dict[str, Any], *, timeout: float = 900.0,
        python: str | None = None, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Host side: run one mode in a child; a crash/abort/timeout becomes {"ok": False, ...}."""
    import tempfile

    from lab.core import childproc
    from lab.core.errors import excerpt
    with tempfile.TemporaryDirectory(prefix="hwlab-convert-") as tmp:
        result = Path(tmp) / "result.json"
        job_path = Path(tmp) / "job.json"
        job_path.write_text(json.dumps(dict(job, mode=mode, result=str(result))))
        p = childproc.run_module("lab.convert.worker", [str(job_path)], env=env_extra,
                                 timeout=timeout, python=python)
        if p.timed_out:
            return {"ok": False, "kind": "timeout", "error": f"{mode} ran over {timeout:.0f} s"}
        if result.is_file():
            return json.loads(result.read_text())
        return {"ok": False, "kind": "crash", "error": f"{mode} {p.exit_text()}: "
                f"{excerpt(p.output, 300)}"}


def import_(job: dict[str, Any]) -> dict[str, Any]:
    """x2paddle, then the agreement check, in one process (one paddle import, ~4 s saved)."""
    res = x2paddle(job)
    if res.get("ok"):
        try:
            res["agreement"] = dict(agree(job["agree"]), ok=True)
        except Exception as exc:  # noqa: BLE001 - recorded: the model converted, the check failed
            res["agreement"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return res


MODES = {"import": import_, "legacy": legacy, "x2paddle": x2paddle, "paddle2onnx": paddle2onnx, "quantize": quantize, "agree": agree}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    try:
        result = MODES[job["mode"]](job)
        result.setdefault("ok", True)
    except Exception as exc:  # noqa: BLE001 - the host turns it into one line
        result = {"ok": False, "kind": "other", "error": f"{type(exc).__name__}: {exc}"[:500]}
    Path(job["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
