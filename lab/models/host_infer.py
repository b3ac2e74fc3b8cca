"""Run Paddle Inference over a small set of inputs on the host, in a child process.

Why a child: importing paddle costs seconds and memory, and int8 needs oneDNN settings made before
the predictor exists; the CLI process stays paddle-free (as lab.models.build does for exports).
Used by the agreement reference (fp32), the quantize-time agreement check (oneDNN int8) and
`lab models accuracy`. Inputs and outputs travel as .npz files: inputs keyed by input name with a
leading sample axis N in front of the run shape; outputs `out0`, `out1`, ... likewise stacked,
except an output whose shape depends on the content (a detector's boxes): its samples are kept
one array each (`out0.0`, `out0.1`, ...; `pack_outputs` / `unpack_outputs`), never padded.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from lab.core import childproc
from lab.core.errors import ConfigError, LabError, excerpt

# precision -> (oneDNN, oneDNN int8). fp32 reference runs without oneDNN: independent of the
# fused int8 path it judges.
MODES = {"fp32-ref": (False, False), "fp32": (True, False), "int8": (True, True)}


def fit_samples(arr: Any, spec, where: str, fix: str) -> Any:
    """One input's sample array (calibration, eval) -> [N, *run_shape], or a ConfigError naming
    the file: accepts N x run shape, N x run shape without its batch-1 axis, or one run shape."""
    import numpy as np
    if str(arr.dtype) != spec.dtype:
        raise ConfigError(f"{where}: input {spec.name!r} has dtype {arr.dtype}, the model wants "
                          f"{spec.dtype}", fix=fix or f"save it with .astype('{spec.dtype}')")
    run = tuple(spec.run_shape)
    if arr.ndim == len(run) + 1 and tuple(arr.shape[1:]) == run:
        return arr
    if run[0] == 1 and arr.ndim == len(run) and tuple(arr.shape[1:]) == run[1:]:
        return arr.reshape((arr.shape[0],) + run)
    if tuple(arr.shape) == run:
        return arr[np.newaxis]
    raise ConfigError(f"{where}: input {spec.name!r} has shape {list(arr.shape)}, expected N x "
                      f"{list(run)} (or N x {list(run[1:])})",
                      fix=fix or "save one array per model input, samples on the first axis")


def predict(model_file: Path | str, params_file: Path | str, inputs: dict, *, mode: str = "fp32-ref",
            threads: int = 1, batched: bool = False, timeout: float = 600.0) -> list:
    """Outputs (one stacked array per model output) for `inputs` {name: array[N, *run_shape]}.

    `batched`: feed each input array whole (batch N, for models with a dynamic batch axis)
    instead of one sample at a time.
    """
    import numpy as np
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} not in {sorted(MODES)}")
    with tempfile.TemporaryDirectory(prefix="hwlab-infer-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **inputs)
        job = {"model_file": str(model_file), "params_file": str(params_file), "inputs": str(src),
               "out": str(dst), "mode": mode, "threads": threads, "batched": batched}
        p = childproc.run_module("lab.models.host_infer", [json.dumps(job)], timeout=timeout)
        if p.timed_out:
            raise LabError(f"host inference of {model_file} ran over {timeout:.0f} s")
        if p.returncode != 0 or not dst.is_file():
            raise LabError(f"host inference of {model_file} ({mode}) failed (exit {p.returncode}): "
                           f"{excerpt(p.stderr or p.stdout)}")
        with np.load(dst, allow_pickle=False) as z:
            return unpack_outputs(z, "out")


def pack_outputs(outs_by_sample: list[list[Any]], prefix: str) -> dict[str, Any]:
    """Per-sample outputs -> npz arrays: `{prefix}{j}` stacked [N, ...] where every sample has the
    same shape, else `{prefix}{j}.{i}` one per sample (a content-dependent output)."""
    import numpy as np
    arrays: dict[str, Any] = {}
    for j in range(len(outs_by_sample[0])):
        per_sample = [np.asarray(s[j]) for s in outs_by_sample]
        if all(a.shape == per_sample[0].shape for a in per_sample):
            arrays[f"{prefix}{j}"] = np.stack(per_sample)
        else:
            arrays.update({f"{prefix}{j}.{i}": a for i, a in enumerate(per_sample)})
    return arrays


def unpack_outputs(z: Any, prefix: str) -> list[Any]:
    """`pack_outputs`' arrays back: one entry per output, a stacked array or a list of samples."""
    names = {k[len(prefix):].split(".")[0] for k in z.files if k.startswith(prefix)}
    outs = []
    for j in range(len(names)):
        if f"{prefix}{j}" in z.files:
            outs.append(z[f"{prefix}{j}"])
        else:
            count = sum(1 for k in z.files if k.startswith(f"{prefix}{j}."))
            outs.append([z[f"{prefix}{j}.{i}"] for i in range(count)])
    return outs


def _worker(job: dict) -> None:
    import numpy as np
    import paddle.inference as pi

    onednn, int8 = MODES[job["mode"]]
    config = pi.Config(job["model_file"], job["params_file"])
    config.disable_glog_info()
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(int(job["threads"]))
    if onednn:
        config.enable_onednn()
        if int8:
            config.enable_onednn_int8()
    else:
        config.disable_onednn()
    predictor = pi.create_predictor(config)
    with np.load(job["inputs"]) as z:
        feeds = {k: z[k] for k in z.files}
    names = list(predictor.get_input_names())
    if sorted(names) != sorted(feeds):
        raise SystemExit(f"inputs do not match the model: model wants {names}, got {sorted(feeds)}")
    n = len(next(iter(feeds.values())))
    outs_by_sample = []
    chunks = [slice(0, n)] if job["batched"] else [slice(i, i + 1) for i in range(n)]
    for sl in chunks:
        for name in names:
            arr = feeds[name][sl]
            # Each sample carries the run shape (batch 1): one sample, or all merged on axis 0.
            arr = arr.reshape((-1,) + arr.shape[2:]) if job["batched"] else arr[0]
            h = predictor.get_input_handle(name)
            h.reshape(list(arr.shape))
            h.copy_from_cpu(np.ascontiguousarray(arr))
        predictor.run()
        outs_by_sample.append([predictor.get_output_handle(o).copy_to_cpu()
                               for o in predictor.get_output_names()])
    n_out = len(outs_by_sample[0])
    if job["batched"]:
        arrays = {f"out{j}": outs_by_sample[0][j] for j in range(n_out)}
    else:
        arrays = pack_outputs(outs_by_sample, "out")
    np.savez(job["out"], **arrays)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m lab.models.host_infer JOB_JSON (internal)")
    _worker(json.loads(sys.argv[1]))
