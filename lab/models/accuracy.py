"""Real accuracy: top-1 of a model over an eval set with labels (`lab models accuracy`).

Why next to agreement: agreement says int8 computes what fp32 computes; accuracy says whether
either is right. Eval sets: the model's own (digits_cnn and its int8 child: the held-out split of
the bundled digits, lab/models/digits.py), or `--eval-data eval.npz` with `labels` (integer class per
sample) plus one array per model input (samples on the first axis, as for calibration data).
An int8 model (tag precision: int8) runs with oneDNN int8, an fp32 one with oneDNN fp32: the
configurations the lab benchmarks. The result goes into meta.json under `accuracy`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError


@dataclass(frozen=True)
class Accuracy:
    accuracy_top1: float
    n: int
    correct: int
    eval_set: str
    mode: str
    model_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_eval(path: Path | str, art) -> tuple[dict[str, Any], Any]:
    """Validated (inputs {name: [N, *run_shape]}, labels [N]) from an eval .npz."""
    import numpy as np
    from lab.models.host_infer import fit_samples
    p = Path(path)
    fix = ("numpy.savez(path, labels=int_array, " +
           ", ".join(f"{i.name}=array" for i in art.inputs) + ")")
    if not p.is_file():
        raise ConfigError(f"eval data {p} does not exist", fix=fix)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"eval data {p}: not a readable .npz ({exc})", fix=fix) from None
    if "labels" not in data:
        raise ConfigError(f"eval data {p}: no 'labels' array", fix=fix)
    labels = data["labels"]
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ConfigError(f"eval data {p}: 'labels' must be a 1-D integer array, got "
                          f"{labels.dtype} of shape {list(labels.shape)}",
                          fix="labels = numpy.asarray(class_ids, dtype='int64')")
    missing = [i.name for i in art.inputs if i.name not in data]
    if missing:
        raise ConfigError(f"eval data {p}: no array for input(s) {', '.join(missing)}", fix=fix)
    inputs = {i.name: fit_samples(data[i.name], i, f"eval data {p}", "") for i in art.inputs}
    for name, arr in inputs.items():
        if len(arr) != len(labels):
            raise ConfigError(f"eval data {p}: input {name!r} has {len(arr)} samples, 'labels' "
                              f"has {len(labels)}", fix="one label per sample")
    return inputs, labels


def builtin_eval(art) -> tuple[dict[str, Any], Any, str] | None:
    from lab.models import digits
    if art.tags.get("eval") != digits.EVAL_TAG:
        return None
    x, y = digits.eval_set()
    spec = art.inputs[0]
    return {spec.name: x.reshape((len(x),) + tuple(spec.run_shape))}, y, \
        f"{digits.EVAL_TAG} held-out split ({len(y)} images)"


def eval_set_for(art, *, eval_data: Path | str | None = None) -> tuple[dict[str, Any], Any, str]:
    """(inputs, labels, source) of a model's eval set: `eval_data` when given, else the model's
    own (digits), else the eval .npz recorded in its meta (or its fp32 parent's, for an -int8
    model) by `lab models accuracy --eval-data`. ConfigError when it has none."""
    if eval_data is None:
        found = builtin_eval(art)
        if found is not None:
            return found
        eval_data = art.eval_data
        if eval_data is None and art.parent:
            from lab.models.artifact import read_meta
            parent = read_meta(art.parent, Path(art.dir).parent)
            eval_data = parent.eval_data if parent else None
        if eval_data is None:
            raise ConfigError(f"model {art.id!r} has no eval set of its own",
                              fix=f"`lab models accuracy {art.id} --eval-data eval.npz` (labels + one "
                                  "array per input) records one")
    inputs, labels = load_eval(eval_data, art)
    return inputs, labels, f"file {Path(eval_data)}"


def top1(logits: Any, labels: Any, where: str) -> tuple[int, int]:
    """(correct, n) for first-output logits [N, classes...] or argmaxes [N] against labels."""
    import numpy as np
    arr = np.asarray(logits)
    pred = arr if arr.ndim == 1 else np.argmax(arr.reshape(len(labels), -1), axis=1)
    classes = None if arr.ndim == 1 else arr.reshape(len(labels), -1).shape[1]
    if classes is not None and (labels.min() < 0 or labels.max() >= classes):
        raise ConfigError(f"{where}: labels span {int(labels.min())}..{int(labels.max())} but the "
                          f"model has {classes} classes", fix=f"labels must be in 0..{classes - 1}")
    return int((pred == labels).sum()), int(len(labels))


def measure(art, *, eval_data: Path | str | None = None, threads: int = 1) -> Accuracy:
    """Top-1 accuracy of `art` on its eval set; recorded in its meta.json (with the eval file,
    so campaigns with `accuracy: true` find it)."""
    from lab.models.host_infer import predict
    inputs, labels, source = eval_set_for(art, eval_data=eval_data)
    mode = "int8" if art.tags.get("precision") == "int8" else "fp32"
    batched = all(i.shape and i.shape[0] == -1 for i in art.inputs)
    files = (art.pdmodel_path, art.legacy_pdiparams_path) if art.pdmodel_path else \
        (art.model_path, art.params_path)
    outs = predict(files[0], files[1], inputs, mode=mode, threads=threads, batched=batched)
    where = f"eval data {eval_data}" if eval_data else f"model {art.id!r} eval set"
    correct, n = top1(outs[0], labels, where)
    acc = Accuracy(round(correct / n, 6), n, correct, source,
                   f"paddle-inference cpu oneDNN {mode}", art.sha256)
    from lab.models.artifact import update_meta, utc_stamp
    sections: dict[str, Any] = {"accuracy": dict(acc.to_dict(), measured_at=utc_stamp())}
    if eval_data is not None:
        sections["eval_data"] = str(Path(eval_data).resolve())
    update_meta(art.id, Path(art.dir).parent, **sections)
    return acc
