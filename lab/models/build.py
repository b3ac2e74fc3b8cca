"""Build a zoo model: export it with paddle in child processes, then record it in meta.json.

Why this shape:
- Zoo models are built from `paddle.vision.models` (or a few lab architectures) with seeded
  random weights, so nothing is downloaded and every machine builds byte-identical weights. Image
  models then get a data-dependent initialisation (lab.models.datainit: batch-norm statistics and
  classifier bias from a few natural images), so their outputs differ between inputs.
- Each model is exported twice: Paddle 3.x PIR `.json` + `.pdiparams` (what Paddle Inference 3.x
  loads by default) and the legacy `.pdmodel` + `.pdiparams` (Paddle Lite cannot read `.json`).
  `FLAGS_enable_pir_api=0` only takes effect when set before paddle initialises, so each format is
  exported by its own child process (`python -m lab.models.build --export-worker ...`, the two side
  by side); this also keeps paddle out of the host process, which imports this module cheaply.
- `models/<id>/meta.json` (lab.models.artifact.ModelMeta) records files and their sha256, inputs,
  FLOPs (MACs), params, op histogram, the versions it was built with, and the cached static
  analysis. A rebuild with the same zoo entry + paddle version + builder version is skipped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from lab.core import childproc
from lab.core.errors import ConfigError, LabError, excerpt
from lab.core.hashing import files_sha256, sha256_file
from lab.core.versions import dist_version, paddle_version
from lab.models.artifact import (LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE, META_SCHEMA, MODEL_FILE,
                                 PARAMS_FILE, ModelArtifact, ModelMeta, load_artifact, read_meta,
                                 verify_artifact, write_meta)
from lab.models.zoo import ZooEntry, default_zoo_path, input_to_json, load_zoo, suggest

# Bump when the export code changes in a way that changes the artifacts: invalidates the cache.
# 3: data-dependent initialisation of image models (lab.models.datainit, issue 26).
BUILDER_VERSION = 3
LAB_ARCHS = ("text_lstm", "tiny_mlp", "tiny_detector", "digits_cnn")
TRAINED_ARCHS = ("digits_cnn",)  # weights learnt from real labels: no data-dependent init
_EXPORTED = (MODEL_FILE, PARAMS_FILE, LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE)


def build_key(entry: ZooEntry, paddle: str | None = None) -> str:
    """Cache key: zoo entry (incl. seed) + paddle version + builder version."""
    doc = {"entry": entry.canonical(), "paddle": paddle or paddle_version(),
           "builder": BUILDER_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def build(model_id: str, out_root: Path | str = "models", *, zoo_path: Path | str | None = None,
          force: bool = False, analyze: bool = True, timeout: float = 900.0,
          log: Callable[[str], None] | None = None) -> ModelArtifact:
    """Build one zoo model into `<out_root>/<id>/` (both formats), or reuse the cached build."""
    zoo = load_zoo(zoo_path or default_zoo_path(out_root))
    if model_id not in zoo:
        raise ConfigError(f"unknown model {model_id!r}",
                          path=str(zoo_path or default_zoo_path(out_root)),
                          fix=suggest(model_id, out_root) + f"zoo models: {', '.join(sorted(zoo))}")
    entry = zoo[model_id]
    key = build_key(entry)
    cached = None if force else _cached(model_id, out_root, key, analyze)
    if cached is not None:
        if log:
            log(f"{model_id}: up to date (sha256 {cached.sha256[:12]})")
        return cached
    if log:
        log(f"{model_id}: exporting .json and legacy .pdmodel ...")
    started = time.monotonic()
    mdir = Path(out_root) / model_id
    counted = _export(entry, Path(out_root), mdir, timeout)
    meta = ModelMeta(
        id=model_id, source="zoo", format="json", build_key=key, builder_version=BUILDER_VERSION,
        zoo_entry=entry.canonical(), model_file=MODEL_FILE, params_file=PARAMS_FILE,
        legacy_model_file=LEGACY_MODEL_FILE, legacy_params_file=LEGACY_PARAMS_FILE,
        files={rel: sha256_file(mdir / rel) for rel in _EXPORTED},
        sha256=files_sha256(mdir / MODEL_FILE, mdir / PARAMS_FILE),
        legacy_sha256=files_sha256(mdir / LEGACY_MODEL_FILE, mdir / LEGACY_PARAMS_FILE),
        inputs=list(entry.inputs), flops=counted.get("flops"),
        flops_note=counted.get("flops_note", ""), params=counted.get("params"),
        persistable_numel=counted.get("persistable_numel"), tags=entry.tags,
        built_with={"paddle": counted.get("paddle") or paddle_version(),
                    "numpy": counted.get("numpy") or dist_version("numpy"),
                    "python": counted.get("python", "")},
        build_seconds=round(time.monotonic() - started, 2))
    attach_analysis(meta, mdir, analyze)
    write_meta(meta, out_root)
    if log:
        log(f"{model_id}: built in {meta.build_seconds:.1f} s (sha256 {meta.sha256[:12]})")
    return meta.artifact(mdir)


def _cached(model_id: str, out_root: Path | str, key: str, analyze: bool) -> ModelArtifact | None:
    """The build under `out_root` when it has this key and its files are intact, else None."""
    meta = read_meta(model_id, out_root)
    if not meta or meta.build_key != key or meta.schema != META_SCHEMA:
        return None
    mdir = Path(out_root) / model_id
    if not all((mdir / r).is_file() for r in meta.files):
        return None
    art = load_artifact(model_id, out_root)
    if verify_artifact(art):
        return None
    if analyze and analysis_outdated(meta):
        # Cheap refresh (no export): the analysis rules changed since this build.
        attach_analysis(meta, mdir, analyze)
        write_meta(meta, out_root)
        art = meta.artifact(mdir)
    return art


def _export(entry: ZooEntry, out_root: Path, mdir: Path, timeout: float) -> dict[str, Any]:
    """Export both formats side by side into a temporary directory, then move the files into
    `mdir` (its meta.json removed first: a half-moved directory is never "built"). Returns the
    PIR worker's count (params, MACs, versions)."""
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.id}.build-", dir=str(out_root)))
    try:
        job = {"arch": entry.arch, "kwargs": entry.kwargs, "seed": entry.seed,
               "inputs": [input_to_json(i) for i in entry.inputs]}
        pir = _start_worker(dict(job, prefix=str(tmp / "inference"), count=True,
                                 result=str(tmp / "count.json")), legacy=False)
        legacy = _start_worker(dict(job, prefix=str(tmp / "legacy"), count=False), legacy=True)
        try:
            results = [("PIR .json", pir.wait(timeout)), ("legacy .pdmodel", legacy.wait(timeout))]
        finally:
            pir.kill()
            legacy.kill()
        for what, res in reversed(results):  # both failed: the legacy export's error, as always
            _check_export(res, what, entry.id, timeout)
        counted = json.loads((tmp / "count.json").read_text())
        (tmp / "count.json").unlink()
        for rel in _EXPORTED:
            if not (tmp / rel).is_file():
                raise LabError(f"model {entry.id!r}: export did not write {rel}")
        mdir.mkdir(parents=True, exist_ok=True)
        (mdir / "meta.json").unlink(missing_ok=True)
        for rel in [p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()]:
            os.replace(tmp / rel, mdir / rel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counted


def _start_worker(job: dict[str, Any], legacy: bool) -> childproc.Child:
    return childproc.start_module("lab.models.build", ["--export-worker", json.dumps(job)],
                                  env={"FLAGS_enable_pir_api": "0" if legacy else "1"},
                                  merge_stderr=True)


def _check_export(res: childproc.ChildResult, what: str, model_id: str, timeout: float) -> None:
    if res.timed_out:
        raise LabError(f"model {model_id!r}: {what} export timed out after {timeout:.0f} s")
    if res.returncode != 0:
        raise LabError(f"model {model_id!r}: {what} export failed (exit {res.returncode}): "
                       f"{excerpt(res.output)}")


def analysis_outdated(meta: ModelMeta) -> bool:
    """The cached analysis was made by other rules (or the op histogram is missing)."""
    from lab.models.analysis import ANALYSIS_VERSION
    cached = meta.analysis or {}
    return cached.get("analysis_version") != ANALYSIS_VERSION or not meta.op_histogram


def attach_analysis(meta: ModelMeta, mdir: Path, analyze: bool) -> None:
    """Fill op_histogram (always) and the cached static analysis (when `analyze`)."""
    from lab.models import analysis
    res = analysis.analyze(mdir / meta.model_file,
                           params_file=mdir / meta.params_file if meta.params_file else None,
                           run_shapes={i.name: list(i.run_shape) for i in meta.inputs})
    meta.op_histogram = dict(res.op_histogram)
    if analyze:
        meta.analysis = res.to_dict()


# ------------------------------------------------------------------------- export worker (child)
def _lab_architectures() -> dict[str, Callable[..., Any]]:
    """Lab-defined architectures (imported lazily: paddle lives only in the worker process)."""
    import paddle
    from paddle import nn

    class TextLSTM(nn.Layer):
        """Embedding + LSTM + linear head over the last hidden state; any sequence length."""

        def __init__(self, vocab_size=10000, embed_dim=128, hidden_size=256, num_layers=1,
                     num_classes=2):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed_dim)
            self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers)
            self.fc = nn.Linear(hidden_size, num_classes)

        def forward(self, tokens):
            _, (h, _) = self.lstm(self.embedding(tokens))
            return self.fc(h[-1])

    class TinyMLP(nn.Layer):
        def __init__(self, in_features=64, hidden=128, num_classes=10):
            super().__init__()
            self.fc1 = nn.Linear(in_features, hidden)
            self.fc2 = nn.Linear(hidden, num_classes)

        def forward(self, x):
            return self.fc2(nn.functional.relu(self.fc1(x)))

    class TinyDetector(nn.Layer):
        """Conv backbone, score+box head, then nonzero(score > t): output size depends on content."""

        def __init__(self, channels=16, threshold=0.5):
            super().__init__()
            self.backbone = nn.Sequential(
                nn.Conv2D(3, channels, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2D(channels, channels, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Conv2D(channels, 5, 1)
            # Threshold on logits (logit(t)): paddle 3.3.1's sigmoid has no legacy-static path.
            self.logit_threshold = math.log(threshold / (1.0 - threshold))

        def forward(self, image):
            out = self.head(self.backbone(image))
            logits = out[:, 0]
            boxes = paddle.transpose(out[:, 1:], [0, 2, 3, 1])
            keep = paddle.nonzero(logits > self.logit_threshold)
            return paddle.gather_nd(boxes, keep), paddle.gather_nd(logits, keep)

    from lab.models.digits import architectures as digits_architectures  # trained on bundled data
    return {"text_lstm": TextLSTM, "tiny_mlp": TinyMLP, "tiny_detector": TinyDetector,
            **digits_architectures()}


def _count(layer: Any, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """MACs at the run shape via paddle's layer rules, plus LSTM MACs from layer shapes."""
    import numpy
    import paddle
    from paddle import nn
    from paddle.hapi.dynamic_flops import dynamic_flops

    params = int(sum(int(numpy.prod(p.shape)) for p in layer.parameters()))
    persist = params + int(sum(int(numpy.prod(b.shape)) for b in layer.buffers()))
    out = {"params": params, "persistable_numel": persist, "flops": None, "flops_note": "",
           "paddle": paddle.__version__, "numpy": numpy.__version__,
           "python": ".".join(map(str, sys.version_info[:3]))}
    if len(inputs) != 1:
        out["flops_note"] = "not counted: paddle.flops takes a single input"
        return out
    spec = inputs[0]
    shape = spec["run_shape"]
    if spec["dtype"].startswith("float"):
        x = paddle.randn(shape, dtype=spec["dtype"])
    else:
        x = paddle.zeros(shape, dtype=spec["dtype"])  # index 0 is valid for any embedding
    rnn_macs: list[int] = []

    def lstm_hook(m, ins, _outs):
        seq = ins[0].shape  # [B, T, I] (time_major False) or [T, B, I]
        b, t = (seq[1], seq[0]) if m.time_major else (seq[0], seq[1])
        dirs = m.num_directions
        total, width = 0, m.input_size
        for _ in range(m.num_layers):
            total += dirs * 4 * m.hidden_size * (width + m.hidden_size)
            width = m.hidden_size * dirs
        rnn_macs.append(int(b * t * total))

    hooks = [m.register_forward_post_hook(lstm_hook) for m in layer.sublayers()
             if isinstance(m, nn.LSTM)]
    try:
        macs = int(dynamic_flops(layer, x, print_detail=False))
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal: FLOPs become unknown
        out["flops_note"] = f"not counted: paddle.flops failed: {type(exc).__name__}: {exc}"[:300]
        return out
    finally:
        for h in hooks:
            h.remove()
    note = f"MACs via paddle.flops layer rules at run shape {shape}"
    if rnn_macs:
        macs += sum(rnn_macs)
        note += " + LSTM gates counted from layer shapes (4*H*(I+H) per step)"
    out["flops"], out["flops_note"] = macs, note
    return out


def _export_worker(job: dict[str, Any]) -> None:
    import paddle
    from paddle.static import InputSpec as PInputSpec

    paddle.seed(int(job["seed"]))
    arch, kwargs = job["arch"], job.get("kwargs") or {}
    custom = _lab_architectures()
    if arch in custom:
        layer = custom[arch](**kwargs)
    else:
        ctor = getattr(paddle.vision.models, arch, None)
        if ctor is None:
            raise SystemExit(f"unknown architecture {arch!r}: not in paddle.vision.models nor "
                             f"{', '.join(LAB_ARCHS)}")
        layer = ctor(pretrained=False, **kwargs)
    layer.eval()
    if arch not in TRAINED_ARCHS:  # only image inputs change (datainit.informative decides)
        from lab.models.datainit import informative
        informative(layer, job["inputs"])
    if os.environ.get("FLAGS_enable_pir_api") == "0":
        # Legacy export of nn.LSTM/GRU in 3.3.1 fails ("Unknown place type: Place(undefined:0)"):
        # RNNBase keeps an uninitialised dropout-state tensor that to_static cannot convert.
        # Give it a real (unused in eval) one; the fused `rnn` op is kept, which Paddle Lite runs.
        for sub in layer.sublayers():
            if isinstance(sub, paddle.nn.layer.rnn.RNNBase) and hasattr(sub, "_dropout_state"):
                sub._dropout_state = paddle.zeros([1], dtype="uint8")
    specs = [PInputSpec(i["shape"], i["dtype"], i["name"]) for i in job["inputs"]]
    Path(job["prefix"]).parent.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(layer, job["prefix"], input_spec=specs)
    if job.get("count"):
        # After saving: dynamic_flops registers buffers on the layer, which must not be exported.
        result = _count(layer, job["inputs"])
        Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--export-worker":
        _export_worker(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m lab.models.build --export-worker JOB_JSON (internal)")
