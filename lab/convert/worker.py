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

AGREEMENT_SEED = 20240601
AGREEMENT_SAMPLES = 4


# ----------------------------------------------------------------------- agreement (private copy)
# TODO(merge): use lab.agreement (issue 13) for the reference inputs and the cosine/max_abs/top1
# figures; this is the minimal private version the ONNX conversions need until then.
def _reference_inputs(specs: list[dict[str, Any]], seed: int, count: int) -> list[dict[str, Any]]:
    """`count` seeded input sets {name: array}; floats uniform [0, 1), ints in [0, 1000)."""
    import numpy as np
    rng = np.random.RandomState(seed)
    sets = []
    for _ in range(count):
        feed = {}
        for s in specs:
            shape, dtype = s["run_shape"], s["dtype"]
            if dtype.startswith("float"):
                feed[s["name"]] = rng.random_sample(size=shape).astype(dtype)
            elif dtype == "bool":
                feed[s["name"]] = rng.randint(0, 2, size=shape).astype(bool)
            else:
                feed[s["name"]] = rng.randint(0, 1000, size=shape).astype(dtype)
        sets.append(feed)
    return sets


def _agreement(reference: list[list[Any]], candidate: list[list[Any]]) -> dict[str, Any]:
    """Worst cosine and max |diff| over all samples/outputs; top1 share over the first output."""
    import numpy as np
    cos, max_abs, top1_hits, top1_total = 1.0, 0.0, 0, 0
    for ref_outs, cand_outs in zip(reference, candidate):
        if len(ref_outs) != len(cand_outs):
            raise ValueError(f"{len(cand_outs)} outputs, the reference has {len(ref_outs)}")
        for i, (a, b) in enumerate(zip(ref_outs, cand_outs)):
            a64 = np.asarray(a, dtype=np.float64).ravel()
            b64 = np.asarray(b, dtype=np.float64).ravel()
            if a64.shape != b64.shape:
                raise ValueError(f"output {i}: shape {np.shape(b)} vs reference {np.shape(a)}")
            if a64.size:
                max_abs = max(max_abs, float(np.max(np.abs(a64 - b64))))
                na, nb = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
                c = 1.0 if na == 0 and nb == 0 else (float(a64 @ b64) / (na * nb) if na and nb
                                                    else 0.0)
                cos = min(cos, c)
            if i == 0 and np.ndim(a) >= 2 and np.shape(a)[-1] > 1:
                ra = np.asarray(a).reshape(-1, np.shape(a)[-1]).argmax(axis=1)
                rb = np.asarray(b).reshape(-1, np.shape(b)[-1]).argmax(axis=1)
                top1_hits += int((ra == rb).sum())
                top1_total += int(ra.size)
    return {"cosine": cos, "max_abs": max_abs,
            "top1": top1_hits / top1_total if top1_total else None,
            "top1_note": "" if top1_total else "first output has no class axis",
            "samples": len(reference)}


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
    specs = job["inputs"]  # [{name (onnx), paddle_name, run_shape, dtype}]
    feeds = _reference_inputs(specs, job.get("seed", AGREEMENT_SEED),
                              job.get("count", AGREEMENT_SAMPLES))
    if job.get("reference_paddle_model"):
        ref = _paddle_outputs(job["reference_paddle_model"], job["reference_paddle_params"], feeds)
    else:
        ref = _ort_outputs(job["onnx"], feeds)
    if job.get("candidate_onnx"):
        cand = _ort_outputs(job["candidate_onnx"], feeds)
    else:
        renamed = [{s.get("paddle_name") or s["name"]: f[s["name"]] for s in specs} for f in feeds]
        cand = _paddle_outputs(job["paddle_model"], job["paddle_params"], renamed)
    out = _agreement(ref, cand)
    out.update(seed=job.get("seed", AGREEMENT_SEED),
               reference=("paddle:" + Path(job["reference_paddle_model"]).name
                          if job.get("reference_paddle_model")
                          else "onnxruntime:" + Path(job["onnx"]).name))
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
    """ONNX Runtime static int8: QDQ, per-channel weights, seeded calibration inputs."""
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = _reference_inputs(job["inputs"], job["seed"], job["calibration_samples"])

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
                                  "inputs": job["inputs"]})
    return res


def run(mode: str, job: dict[str, Any], *, timeout: float = 900.0,
        python: str | None = None) -> dict[str, Any]:
    """Host side: run one mode in a child; a crash/abort/timeout becomes {"ok": False, ...}."""
    import os
    import signal
    import subprocess
    import tempfile

    from ..errors import excerpt
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env.setdefault("GLOG_minloglevel", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="hwlab-convert-") as tmp:
        job = dict(job, mode=mode, result=os.path.join(tmp, "result.json"))
        job_path = os.path.join(tmp, "job.json")
        Path(job_path).write_text(json.dumps(job))
        try:
            p = subprocess.run([python or sys.executable, "-m", "lab.convert.worker", job_path], env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "kind": "timeout", "error": f"{mode} ran over {timeout:.0f} s"}
        if os.path.isfile(job["result"]):
            return json.loads(Path(job["result"]).read_text())
        how = (f"killed by signal {-p.returncode} ({signal.Signals(-p.returncode).name})"
               if p.returncode < 0 else f"exit {p.returncode}")
        return {"ok": False, "kind": "crash", "error": f"{mode} {how}: "
                f"{excerpt(p.stdout + p.stderr, 300)}"}


def import_(job: dict[str, Any]) -> dict[str, Any]:
    """x2paddle, then the agreement check, in one process (one paddle import, ~4 s saved)."""
    res = x2paddle(job)
    if res.get("ok"):
        try:
            res["agreement"] = dict(agree(job["agree"]), ok=True)
        except Exception as exc:  # noqa: BLE001 - recorded: the model converted, the check failed
            res["agreement"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    return res


MODES = {"import": import_, "x2paddle": x2paddle, "paddle2onnx": paddle2onnx, "quantize": quantize, "agree": agree}


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
