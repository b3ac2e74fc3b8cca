"""Output agreement: is a fast result still the right result?

The one place for the maths and the thresholds. A model's reference is fp32 Paddle Inference on the
host (oneDNN off, so it shares no fused code path with what it judges), over a fixed reference input
set, cached as `models/<id>/reference.npz` and keyed by the model's sha256. A candidate (an int8
model, an NPU run, a runner's `outputs_check`) is compared output by output, sample by sample:

- the reference input set: REFERENCE_SET_SIZE samples. For a model with a real eval set (the
  digits model) its first held-out images; for one image input (lab.models.natural.is_image)
  natural images, crops of scikit-learn's bundled photos (seed REFERENCE_SEED); otherwise seeded
  random inputs made by the runner's own `make_inputs` (seed REFERENCE_SEED + i). Devices get the
  inputs themselves (REFERENCE_INPUTS_FILE), so host and device feed the same data.
- compact outputs (`runner_core.compact_output`, the one definition, shared with the travelling
  runner): whole values up to WHOLE_MAX elements, else a fixed strided sample of SAMPLE_SIZE
  elements, plus argmax and top-k.
- metrics: `agree_cosine_min` (the smallest cosine similarity over samples and outputs),
  `agree_max_abs` (largest absolute difference), `agree_top1` (share of samples whose argmax of
  the first output equals the reference's).
- THRESHOLDS per precision: a result passes when cosine_min >= cosine and top1 >= top1.
- the null (`null_scores`): how well a WRONG answer scores through the same `compare`: each sample
  answered with another sample's reference output (every cyclic shift), with one sample's output
  for all (every constant), and with the mean output. Stored with the reference (meta "null", keyed
  by the same sha256), so a job pays nothing. A reference whose null passes a precision's thresholds
  cannot tell a right answer from a wrong one (seeded-random weights whose outputs barely depend on
  the input): its Agreement is `informative=False`, and a passing candidate is never "ok"
  (`Agreement.ok` is None, the row's agree_ok stays None and its note says why).
- weak check (benchmark_bin without --output_data_path): only the per-output mean and standard
  deviation it prints; passes when both are within WEAK_TOLERANCE[precision] x the reference's
  standard deviation. Cosine, max_abs and top1 stay unknown (None). Its null is the wrong answer
  whose mean/std come closest (computed per job: a permutation of the reference's own figures).
Pure numpy on the host; paddle runs only in lab.models.host_infer's child process.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.models import natural
from lab.models.host_infer import pack_outputs, unpack_outputs
from lab.runners import runner_core

REFERENCE_SET_SIZE = 8
REFERENCE_SEED = 1000
REFERENCE_FILE = "reference.npz"
REFERENCE_RUNTIME = "paddle-inference fp32 cpu (oneDNN off)"
# Per precision: minimum cosine (worst sample) and minimum share of same-argmax samples. max_abs is
# recorded, never a threshold: zoo models carry seeded random weights (mobilenet_v1's outputs are
# about 1e-20), so an absolute difference means nothing without the output's scale.
THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"cosine": 0.9999, "top1": 1.0},
    "fp16": {"cosine": 0.999, "top1": 0.875},
    "int8": {"cosine": 0.99, "top1": 0.75},
    "bf16": {"cosine": 0.995, "top1": 0.875},
    "int16": {"cosine": 0.999, "top1": 0.875},
}
WEAK_TOLERANCE: dict[str, float] = {"fp32": 0.001, "fp16": 0.02, "bf16": 0.05, "int16": 0.02,
                                    "int8": 0.1}
REFERENCE_INPUTS_FILE = "reference_inputs.npz"  # what travels to devices: inputs only


@dataclass(frozen=True)
class Agreement:
    """The comparison of one candidate with its reference (stored per model / per job)."""

    agree_cosine_min: float | None
    agree_max_abs: float | None
    agree_top1: float | None
    n: int
    precision: str
    passed: bool
    reason: str
    reference: str  # which reference: "<model id>@<sha12> <runtime>"
    thresholds: dict[str, float]
    # could this check fail? False: a wrong answer (the null) passes these thresholds too; None:
    # unknown (no null: fewer than 2 samples, the weak check, records made before the null)
    informative: bool | None = None
    null: dict[str, Any] | None = None  # the best-scoring wrong answer (NullScore as a dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool | None:
        """The row's agree_ok: False when the check failed; True only when it passed AND could
        have failed; None when it passed an uninformative reference."""
        if not self.passed:
            return False
        return None if self.informative is False else True

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "UNINFORMATIVE"}[self.ok]


@dataclass(frozen=True)
class NullScore:
    """How well one wrong answer scores against the reference, through `compare`."""

    kind: str  # "shift" (another input's output) | "constant" (one output for every input)
    label: str  # in words: "a constant output (input 0's)"
    cosine_min: float | None
    top1: float | None

    def passes(self, precision: str) -> bool:
        th = thresholds_for(precision)
        return (self.cosine_min is not None and self.top1 is not None
                and self.cosine_min >= th["cosine"] and self.top1 >= th["top1"])

    def text(self) -> str:
        return f"{self.label} scores cosine {self.cosine_min:.4f}, top1 {self.top1:.3f}"


def thresholds_for(precision: str) -> dict[str, float]:
    if precision not in THRESHOLDS:
        raise ValueError(f"no agreement thresholds for precision {precision!r}")
    return THRESHOLDS[precision]


def _vector(c: dict[str, Any]) -> list[float | None]:
    return c.get("values") if "values" in c else c.get("sample", [])


def cosine(a: list[float | None], b: list[float | None]) -> float:
    """Cosine similarity; None (non-finite) anywhere makes it 0. Two zero vectors agree (1.0)."""
    if len(a) != len(b) or any(x is None for x in a) or any(y is None for y in b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return max(-1.0, min(1.0, dot / (na * nb)))


def compare(reference: list[list[dict]], candidate: list[list[dict]], precision: str,
            reference_name: str = "", null: list[NullScore] | None = None) -> Agreement:
    """Compare compact outputs [sample][output] of a candidate with the reference's; `null` (the
    reference's `null_scores`) says whether the check could fail at this precision."""
    th = thresholds_for(precision)
    if len(reference) != len(candidate) or not reference:
        return Agreement(None, None, None, len(candidate), precision, False,
                         f"{len(candidate)} candidate samples for {len(reference)} reference samples",
                         reference_name, th)
    cos_min, max_abs, same = 1.0, 0.0, 0
    for i, (ref, cand) in enumerate(zip(reference, candidate)):
        if len(ref) != len(cand):
            return Agreement(None, None, None, len(candidate), precision, False,
                             f"sample {i}: {len(cand)} outputs, reference has {len(ref)}",
                             reference_name, th)
        for j, (r, c) in enumerate(zip(ref, cand)):
            if r["shape"] != c["shape"]:
                return Agreement(None, None, None, len(candidate), precision, False,
                                 f"sample {i} output {j}: shape {c['shape']} != reference "
                                 f"{r['shape']}", reference_name, th)
            a, b = _vector(r), _vector(c)
            cos_min = min(cos_min, cosine(a, b))
            diffs = [abs(x - y) for x, y in zip(a, b) if x is not None and y is not None]
            bad = c.get("nonfinite", 0) > r.get("nonfinite", 0)
            max_abs = math.inf if bad else max([max_abs] + diffs)
        same += int(ref[0].get("argmax") == cand[0].get("argmax"))
    top1 = same / len(reference)
    passed = cos_min >= th["cosine"] and top1 >= th["top1"] and math.isfinite(max_abs)
    reason = "" if passed else (
        f"cosine_min {cos_min:.4f} (needs >= {th['cosine']}), top1 {top1:.3f} "
        f"(needs >= {th['top1']})" + ("" if math.isfinite(max_abs) else ", non-finite outputs"))
    informative, worst = power(null, precision)
    if passed and informative is False:
        reason = uninformative_text(worst, precision)
    return Agreement(round(cos_min, 6), max_abs if math.isfinite(max_abs) else None,
                     round(top1, 4), len(reference), precision, passed, reason, reference_name, th,
                     informative, None if worst is None else asdict(worst))


def power(null: list[NullScore] | None, precision: str) -> tuple[bool | None, NullScore | None]:
    """(informative, the wrong answer to quote): informative is False when a wrong answer passes
    `precision`'s thresholds (then the best passing constant output, the plainest to explain,
    else the best passing one), None when there is no null to judge by. Informative: the
    best-scoring wrong answer (the check's margin)."""
    if not null:
        return None, None
    passing = [s for s in null if s.passes(precision)]
    pool = [s for s in passing if s.kind == "constant"] or passing or null
    best = max(pool, key=lambda s: (s.cosine_min or -1.0, s.top1 or 0.0))
    return not passing, best


def uninformative_text(worst: NullScore, precision: str) -> str:
    """The one sentence an uninformative check gets (Agreement.reason, the row's note)."""
    th = thresholds_for(precision)
    return (f"agreement uninformative: {worst.text()} (the {precision} check passes at cosine >= "
            f"{th['cosine']}, top1 >= {th['top1']})")


def null_scores(outputs: list[Any]) -> list[NullScore]:
    """How well wrong answers score against stacked reference outputs (one array [N, ...] per
    output): every cyclic shift (each sample answered with another sample's output), every
    constant (each sample answered with sample k's output) and the mean output. [] below 2
    samples (no other input to answer with)."""
    import numpy as np
    ref = compact_all(outputs)
    n = len(ref)
    if n < 2:
        return []
    ragged = any(isinstance(o, list) for o in outputs)  # a content-dependent output: no mean
    mean = None if ragged else compact_all([np.asarray(o, dtype="float64").mean(axis=0, keepdims=True)
                                            for o in outputs])[0]
    wrong = [("shift", f"another input's output (shift {s})", [ref[(i + s) % n] for i in range(n)])
             for s in range(1, n)]
    wrong += [("constant", f"a constant output (input {k}'s)", [ref[k]] * n) for k in range(n)]
    if mean is not None:
        wrong.append(("constant", "a constant output (the mean output)", [mean] * n))
    scores = []
    for kind, label, cand in wrong:
        a = compare(ref, cand, "fp32")
        scores.append(NullScore(kind, label, a.agree_cosine_min, a.agree_top1))
    return scores


def compare_stats(reference_outputs: list[Any], stats: list[list[tuple[float | None, float | None]]],
                  precision: str, reference_name: str = "") -> Agreement:
    """Weak check: per sample, per output (mean, std) as benchmark_bin prints them, against the
    same figures of the reference's full outputs (stacked arrays [N, ...] per output). Its null:
    the wrong answer (another input's or a constant output) whose mean/std come closest."""
    th = thresholds_for(precision)
    tol = WEAK_TOLERANCE[precision]
    name = f"{reference_name} (weak: mean/std only)"
    if not stats or len(stats) > len(reference_outputs[0]):
        return Agreement(None, None, None, len(stats), precision, False,
                         f"{len(stats)} candidate samples for {len(reference_outputs[0])} reference "
                         "samples", name, th)
    for i, per_out in enumerate(stats):
        if len(per_out) != len(reference_outputs):
            return Agreement(None, None, None, len(stats), precision, False,
                             f"sample {i}: {len(per_out)} outputs, reference has "
                             f"{len(reference_outputs)}", name, th)
    ref = _sample_stats([o[:len(stats)] for o in reference_outputs])
    worst = _stats_gap(ref, stats)
    passed = worst <= tol
    reason = "" if passed else (f"mean/std differ by {worst:.3g} x the reference's std (needs <= "
                                f"{tol})")
    null = _weak_null(ref, [o[:len(stats)] for o in reference_outputs])
    informative = None if null is None else null[2] > tol
    if passed and informative is False:
        reason = (f"agreement uninformative: {null[1]} comes within {null[2]:.3g} x the "
                  f"reference's std on mean/std (the {precision} weak check passes at <= {tol})")
    return Agreement(None, None, None, len(stats), precision, passed, reason, name,
                     dict(th, weak_tolerance=tol), informative,
                     None if null is None else {"kind": null[0], "label": null[1],
                                                "stats_gap": round(null[2], 6)})


def _sample_stats(outputs: list[Any]) -> list[list[tuple[float, float]]]:
    """(mean, std) per sample, per output of stacked outputs, as benchmark_bin computes them."""
    import numpy as np
    out = []
    for i in range(len(outputs[0])):
        row = []
        for o in outputs:
            v = np.asarray(o[i], dtype="float64").ravel()
            row.append((float(v.mean()), float(v.std(ddof=1) if v.size > 1 else 0.0)))
        out.append(row)
    return out


def _stats_gap(ref: list[list[tuple[float, float]]],
               stats: list[list[tuple[float | None, float | None]]]) -> float:
    """The largest mean/std difference over samples and outputs, in units of the reference's std."""
    worst = 0.0
    for per_ref, per_out in zip(ref, stats):
        for (rmean, rstd), (mean, std) in zip(per_ref, per_out):
            if mean is None or std is None or not (math.isfinite(mean) and math.isfinite(std)):
                return math.inf
            scale = rstd if rstd > 0 else max(abs(rmean), 1e-12)
            worst = max(worst, abs(mean - rmean) / scale, abs(std - rstd) / scale)
    return worst


def _weak_null(ref: list[list[tuple[float, float]]],
               outputs: list[Any]) -> tuple[str, str, float] | None:
    """(kind, label, gap) of the wrong answer closest to the reference through the weak check;
    None below 2 samples."""
    n = len(ref)
    if n < 2:
        return None
    mean = _sample_stats([o.mean(axis=0, keepdims=True) for o in outputs])[0]
    wrong = [("shift", f"another input's output (shift {s})", [ref[(i + s) % n] for i in range(n)])
             for s in range(1, n)]
    wrong += [("constant", f"a constant output (input {k}'s)", [ref[k]] * n) for k in range(n)]
    wrong.append(("constant", "a constant output (the mean output)", [mean] * n))
    return min(((kind, label, _stats_gap(ref, cand)) for kind, label, cand in wrong),
               key=lambda w: (w[2], w[0] != "constant"))


def compact_all(outputs: list[Any]) -> list[list[dict]]:
    """Stacked outputs (one array [N, ...] per model output) -> compact [sample][output]."""
    import numpy as np
    n = len(outputs[0]) if outputs else 0
    return [[runner_core.compact_output(np, out[i]) for out in outputs] for i in range(n)]


# ------------------------------------------------------------------------- the reference input set
def reference_inputs(art) -> tuple[dict[str, Any], str]:
    """({input name: array [N, *run_shape]}, source) for a model artifact."""
    import numpy as np
    if art.tags.get("eval") == _digits().EVAL_TAG:
        x, _ = _digits().eval_set()
        name = art.inputs[0].name
        return {name: x[:REFERENCE_SET_SIZE].reshape((REFERENCE_SET_SIZE,) +
                                                      tuple(art.inputs[0].run_shape))}, \
            f"{_digits().EVAL_TAG} eval split, first {REFERENCE_SET_SIZE}"
    if _natural_input(art):
        spec = art.inputs[0]
        return {spec.name: natural.images(spec.run_shape, REFERENCE_SET_SIZE, REFERENCE_SEED,
                                          spec.dtype)}, \
            natural.describe(REFERENCE_SEED, REFERENCE_SET_SIZE)
    specs = [(i.name, list(i.run_shape), i.dtype) for i in art.inputs]
    samples = seeded_inputs(specs, REFERENCE_SET_SIZE)
    return {s[0]: np.stack([d[s[0]] for d in samples]) for s in specs}, \
        f"seeded random (seed {REFERENCE_SEED}+i, runner_core.make_inputs), {REFERENCE_SET_SIZE}"


def _natural_input(art) -> bool:
    """One image-shaped float input: the reference set is natural images (lab.models.natural)."""
    return len(art.inputs) == 1 and natural.is_image(art.inputs[0].run_shape, art.inputs[0].dtype)


def seeded_inputs(specs: list[tuple[str, list[int], str]], n: int,
                  seed: int = REFERENCE_SEED) -> list[dict[str, Any]]:
    """n samples {input name: array of the run shape}, sample i from `make_inputs` with seed+i
    (the runners' own generator, so host and device make the same data)."""
    import numpy as np
    return [dict(runner_core.make_inputs(np, specs, seed + i, 1000)) for i in range(n)]


def _digits():
    from lab.models import digits
    return digits


def reference_path(art) -> Path:
    return Path(art.dir) / REFERENCE_FILE


def _fp32_files(art) -> tuple[Path, Path]:
    if art.pdmodel_path and art.legacy_pdiparams_path:
        return art.pdmodel_path, art.legacy_pdiparams_path
    return art.model_path, art.params_path


def reference_artifact(art):
    """The model whose fp32 host outputs judge `art`: the fp32 parent of a quantised model,
    else the model itself."""
    if not art.parent:
        return art
    from lab.models.artifact import load_artifact
    return load_artifact(art.parent, Path(art.dir).parent)


def cached_reference(art) -> dict[str, Any] | None:
    """The cached reference of `art` when it is there and made for its sha256 (no inference)."""
    import numpy as np
    path = reference_path(art)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("model_sha256") != art.sha256 or meta.get("n") != REFERENCE_SET_SIZE:
                return None
            if meta.get("natural", False) != _natural_input(art):  # made before issue 26
                return None
            inputs = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
            outs = unpack_outputs(z, "out:")
            if len(outs) != meta["n_outputs"]:
                return None
    except (OSError, ValueError, KeyError):
        return None
    return _reference(inputs, outs, meta, path)


def _reference(inputs: dict[str, Any], outs: list[Any], meta: dict[str, Any],
               path: Path) -> dict[str, Any]:
    """The reference dict; its null comes from meta, or is computed (a reference cached before
    the null: `load_reference` then stores it)."""
    null = ([NullScore(**d) for d in meta["null"]] if "null" in meta else null_scores(outs))
    return {"inputs": inputs, "outputs": outs, "compact": compact_all(outs), "meta": meta,
            "path": path, "null": null}


def load_reference(art) -> dict[str, Any]:
    """The cached fp32 reference of `art`, computed when missing or made for another sha256.

    Returns {"inputs": {...}, "outputs": [stacked arrays], "compact": [[...]], "meta": {...},
    "null": [NullScore, ...]}.
    Computing it runs paddle on the host: `lab run` does it when it prepares a campaign, never
    while jobs run (it would disturb measurements on the `local` device).
    """
    import os
    import numpy as np
    from lab.models.host_infer import predict
    found = cached_reference(art)
    if found is not None and "null" in found["meta"]:
        return found
    path = reference_path(art)
    if found is not None:  # cached before the null: keep the outputs, store the null with them
        inputs, outs, meta = found["inputs"], found["outputs"], found["meta"]
    else:
        inputs, source = reference_inputs(art)
        model, params = _fp32_files(art)
        outs = predict(model, params, inputs, mode="fp32-ref")
        meta = {"model_id": art.id, "model_sha256": art.sha256, "n": REFERENCE_SET_SIZE,
                "source": source, "natural": _natural_input(art), "runtime": REFERENCE_RUNTIME,
                "n_outputs": len(outs)}
    meta["null"] = [asdict(s) for s in (found or {}).get("null") or null_scores(outs)]
    arrays = {f"in:{k}": v for k, v in inputs.items()}
    arrays.update(pack_outputs([[o[i] for o in outs] for i in range(len(outs[0]))], "out:"))
    tmp = path.with_name(f".reference.{os.getpid()}.{id(arrays)}.tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)
    return _reference(inputs, outs, meta, path)


def reference_inputs_file(ref: dict[str, Any]) -> Path:
    """The reference inputs alone (keys `in:<input name>`, N x run shape), next to the reference:
    the file runners get as `--reference-inputs` (outputs stay on the host)."""
    import os
    import numpy as np
    path = Path(ref["path"]).with_name(REFERENCE_INPUTS_FILE)
    stamp = path.with_suffix(".sha")
    key = f"{ref['meta']['model_sha256']} {ref['meta'].get('source', '')}"
    if path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path
    tmp = path.with_name(f".ref-in.{os.getpid()}.{id(ref)}.tmp.npz")
    np.savez(tmp, **{f"in:{k}": v for k, v in ref["inputs"].items()})
    tmp.replace(path)
    stamp.write_text(key)
    return path


def reference_name(ref: dict[str, Any]) -> str:
    m = ref["meta"]
    return f"{m['model_id']}@{m['model_sha256'][:12]} {m['runtime']}"


def judge(ref: dict[str, Any], candidate: list[list[dict]], precision: str) -> Agreement:
    """Compare a candidate's compact outputs with the first len(candidate) samples of the
    reference dict, with the null of those samples (stored for the full set, computed for fewer)."""
    n = len(candidate)
    full = n == len(ref["compact"])
    null = ref.get("null") if full else None
    if null is None:
        null = null_scores([o[:n] for o in ref["outputs"]])
    return compare(ref["compact"] if full else ref["compact"][:n], candidate, precision,
                   reference_name(ref), null)


def check_host(candidate_files: tuple[Path, Path], reference_art, precision: str, *,
               mode: str | None = None, threads: int = 1) -> Agreement:
    """Run a candidate model on the host (oneDNN int8 for int8) and compare with the reference."""
    from lab.models.host_infer import predict
    ref = load_reference(reference_art)
    outs = predict(candidate_files[0], candidate_files[1], ref["inputs"],
                   mode=mode or ("int8" if precision == "int8" else "fp32"), threads=threads)
    return judge(ref, compact_all(outs), precision)


def summary(a: Agreement) -> str:
    def f(x: float | None, fmt: str) -> str:
        return "n/a" if x is None else format(x, fmt)
    return (f"{a.status} ({a.precision}): cosine_min "
            f"{f(a.agree_cosine_min, '.4f')}, max_abs {f(a.agree_max_abs, '.3g')}, top1 "
            f"{f(a.agree_top1, '.3f')} over {a.n} inputs" + (f"; {a.reason}" if a.reason else ""))
