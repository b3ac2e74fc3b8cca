"""Correctness next to every latency: the reference (and eval) set a runtime runs after timing.

Why in the job path: a fast result is worthless if its outputs are wrong (an NPU that drops ops, a
broken int8 model). Every job of a runtime that can feed given inputs runs the model's fixed
reference input set (lab/models/agreement.py: REFERENCE_SET_SIZE seeded samples) after its timed
trials, returns compact outputs, and `base.execute` compares them with the model's fp32 host
reference, storing agree_* per job. With the campaign option `accuracy: true` it also runs the
model's eval set and the host scores top-1 against the labels (which never travel).

The contract (docs/architecture.md "How to add a runtime"):
- a runtime sets `output_checks = True`, finds `ctx.checks` (a `CheckInputs`: local .npz files,
  keys `in:<input name>`, N x run shape) set before `prepare`, pushes what it needs, runs the
  sets after timing (JSON runners: `--reference-inputs` / `--eval-inputs` on the last trial), and
  returns a `CheckOutputs` from `Runtime.check_outputs(ctx, prepared, trials)`;
- `base.execute` calls `plan(...)` and `apply(...)`; a runtime never compares by itself.

References are computed when a campaign is prepared (lab.measure.orchestrate), never while jobs run: host
inference would disturb measurements on the `local` device. A job without one says why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError, LabError
from lab.core.records import Measurement

EVAL_INPUTS_FILE = "eval_inputs.npz"


@dataclass
class CheckInputs:
    """What a job's runtime feeds after timing (local paths; the runtime pushes them)."""

    reference_file: Path | None  # the reference inputs (agreement.REFERENCE_INPUTS_FILE)
    n_reference: int = 0
    n_outputs: int = 0
    eval_file: Path | None = None  # eval inputs without labels (EVAL_INPUTS_FILE)
    eval_labels: Any = None
    eval_source: str = ""
    reference: dict[str, Any] | None = None  # lab.models.agreement.load_reference's dict (host only)
    notes: list[str] = field(default_factory=list)

    def sample_inputs(self, i: int) -> dict[str, Any]:
        """Reference sample i: {input name: array of the run shape} (for runtimes that write
        inputs in their own format, e.g. benchmark_bin's text files)."""
        return {k: v[i] for k, v in (self.reference or {}).get("inputs", {}).items()}


@dataclass
class CheckOutputs:
    """What a runtime brings back. `outputs[i]` / `stats[i]` belong to reference sample i."""

    outputs: list[list[dict]] | None = None  # compact outputs (runner_core.compact_output) per sample
    stats: list[list[tuple[float | None, float | None]]] | None = None  # weak: (mean, std) per output
    eval_argmax: list[int] | None = None  # argmax of output 0 per eval sample
    seconds: float | None = None  # device time the reference set took (None: rode on the trials)
    eval_seconds: float | None = None
    note: str = ""


def plan(runtime, ctx) -> CheckInputs | None:
    """The check inputs of one job, or None with the reason in the returned notes' place.

    Returns None only when the runtime cannot run checks at all; a missing reference gives a
    CheckInputs with no reference_file and a note (the eval set may still run)."""
    from lab.models import agreement
    if not getattr(runtime, "output_checks", False):
        return None
    art = ctx.artifact
    notes: list[str] = []
    ref = None
    try:
        ref_art = agreement.reference_artifact(art)
        ref = agreement.cached_reference(ref_art)
        if ref is None:
            notes.append(f"agreement not checked: no fp32 host reference cached for {ref_art.id} "
                         "(`lab run` makes it when it prepares the campaign)")
    except (ConfigError, LabError, OSError) as exc:
        notes.append(f"agreement not checked: reference unavailable ({exc})")
    checks = CheckInputs(reference_file=None, notes=notes, reference=ref)
    if ref is not None:
        checks.reference_file = agreement.reference_inputs_file(ref)
        checks.n_reference = int(ref["meta"]["n"])
        checks.n_outputs = int(ref["meta"]["n_outputs"])
    if ctx.job.option("accuracy"):
        try:
            checks.eval_file, checks.eval_labels, checks.eval_source = eval_inputs_file(art)
        except (ConfigError, LabError, OSError) as exc:
            notes.append(f"accuracy not measured: {exc}")
    return checks


def eval_inputs_file(art) -> tuple[Path, Any, str]:
    """The model's eval inputs as a runner .npz (keys in:<name>), its labels and source."""
    import numpy as np
    from lab.models.accuracy import eval_set_for
    inputs, labels, source = eval_set_for(art)
    path = Path(art.dir) / EVAL_INPUTS_FILE
    tmp = path.with_name(f".eval-in.{os.getpid()}.{id(inputs)}.tmp.npz")
    np.savez(tmp, **{f"in:{k}": v for k, v in inputs.items()})
    if path.is_file() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        tmp.replace(path)
    return path, labels, source


def apply(m: Measurement, ctx, runtime, checks: CheckInputs | None,
          out: CheckOutputs | None) -> None:
    """Compare what the runtime brought back and fill agree_* / accuracy_top1 (None + a note
    when no check could be made). agree_ok is `Agreement.ok`: True only when the check passed AND
    could have failed; a pass against an uninformative reference leaves it None, with the null's
    figures in the note and at the end of agree_reference (lab.results.quality flags the row)."""
    from lab.models import agreement
    name = getattr(runtime, "name", "?")
    if checks is None:
        m.notes.append(f"agreement not checked: runtime {name} does not run the reference set "
                       "(docs/architecture.md: How to add a runtime)")
        return
    m.notes.extend(checks.notes)
    detail: dict[str, Any] = {}
    if out is not None and out.note:
        m.notes.append(out.note)
    precision = ctx.job.precision
    if checks.reference is not None:
        ref = checks.reference
        ref_name = agreement.reference_name(ref)
        ag = None
        if out is not None and out.outputs:
            ag = agreement.judge(ref, out.outputs, precision)
        elif out is not None and out.stats:
            ag = agreement.compare_stats(ref["outputs"], out.stats, precision, ref_name)
        if ag is None:
            m.notes.append(f"agreement not checked: runtime {name} returned no reference outputs")
        else:
            m.agree_cosine_min, m.agree_max_abs, m.agree_top1 = (
                ag.agree_cosine_min, ag.agree_max_abs, ag.agree_top1)
            m.agree_reference, m.agree_ok = ag.reference, ag.ok
            if ag.ok is False:
                m.notes.append(f"output check FAILED against {ag.reference}: {ag.reason}")
            elif ag.ok is None:  # passed, but a wrong answer passes too (lab.results.quality reads it)
                m.agree_reference = f"{ag.reference}; {ag.reason}"
                m.notes.append(ag.reason)
            detail["agreement"] = ag.to_dict()
            detail["seconds"] = out.seconds
    if checks.eval_file is not None:
        if out is None or out.eval_argmax is None:
            m.notes.append(f"accuracy not measured: runtime {name} returned no eval outputs")
        elif len(out.eval_argmax) != len(checks.eval_labels):
            m.notes.append(f"accuracy not measured: {len(out.eval_argmax)} eval outputs for "
                           f"{len(checks.eval_labels)} labels")
        else:
            from lab.models.accuracy import top1
            correct, n = top1(list(out.eval_argmax), checks.eval_labels,
                              f"model {ctx.artifact.id!r} eval set")
            m.accuracy_top1 = round(correct / n, 6)
            detail["accuracy"] = {"correct": correct, "n": n, "eval_set": checks.eval_source,
                                  "seconds": out.eval_seconds}
    if detail:
        m.provenance["checks"] = detail
