"""Frameworks side by side: Paddle Inference, Paddle Lite and ONNX Runtime on one device and model.

Why: the deployment guide claims Paddle Lite/Paddle is faster than other frameworks at deployment.
The claim is worth something only measured on the user's device, in one campaign with one
protocol, and it must be reported whichever way it comes out. The report's framework table and
`lab advise` (as information, never as the verdict, which stays about the processor) both read
this module: one comparison, `lab.results.stats.compare` (difference of medians, bootstrap CI of the
ratio), per (device, model, threads, precision).

- Baseline of each row: the fastest Paddle runtime at that precision (Paddle Inference, a Paddle
  Lite backend), else (e.g. int8 run only by ONNX Runtime) the fastest Paddle fp32 row, said so
  and left out of the claim's tally; the cells give every runtime's p50 [95% CI] and its latency ratio to that
  baseline with the CI of the ratio. "faster"/"slower" only when the CI excludes 1.
- Agreement per cell: the job's own output check (`agree_*` of the row) where stored; else the build-time check of the file the job ran (`provenance.model_agreement`, e.g.
  the .onnx against Paddle Inference), labelled `build`; the fp32 Paddle Inference row is the
  reference itself.
Pure: rows, samples and provenance in, typed records out.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from lab.decide.figures import fmt_ms, fmt_num
from lab.results import stats
from lab.results.quality import agreement_uninformative
from lab.devices.backends import BACKENDS, OTHER_RUNTIMES
from lab.core.records import ResultRow

PADDLE_RUNTIMES = ("paddle-inference", "paddle-lite", "paddle-lite-python")
RUNTIME_LABELS = {"paddle-inference": "Paddle Inference", "paddle-lite": "Paddle Lite",
                  "paddle-lite-python": "Paddle Lite", "onnxruntime": "ONNX Runtime"}
CLAIM = "Paddle Lite/Paddle is faster than other frameworks at deployment (the deployment guide)"


@dataclass(frozen=True)
class Agree:
    cosine_min: float | None
    top1: float | None
    passed: bool | None
    source: str  # job | "job, uninformative" (lab.results.quality) | build | reference


@dataclass
class Cell:
    row: ResultRow
    runtime: str  # label, e.g. "ONNX Runtime"
    agreement: Agree | None
    ratio: float | None = None  # p50 / baseline p50 (bootstrap, lab.results.stats.compare)
    ratio_ci: tuple[float | None, float | None] = (None, None)
    verdict: str = ""  # faster | slower | same (CI includes 1) | baseline | "" (no baseline)


@dataclass
class FrameworkRow:
    device: str
    model: str
    threads: int | None
    precision: str
    baseline: ResultRow | None  # Paddle fp32 where no Paddle row has this precision
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Comparison:
    rows: list[FrameworkRow]
    claim_line: str
    faster_other: list[Cell]  # cells of a non-Paddle runtime faster than the Paddle baseline (CI)
    left_out: tuple[int, int] | None = None  # (configurations, comparisons) over the budget


def runtime_of(r: ResultRow) -> str | None:
    b = BACKENDS.get(r.backend or "")
    return b.runtime if b else None


def agreement_of(prov: dict[str, Any], r: ResultRow) -> Agree | None:
    """The agreement a row carries: per job, else the build-time check of its model file."""
    if r.agree_cosine_min is not None or r.agree_ok is not None:
        return Agree(r.agree_cosine_min, r.agree_top1, r.agree_ok,
                     "job, uninformative" if agreement_uninformative(r) else "job")
    mag = prov.get("model_agreement") if prov else None
    if mag:
        return Agree(mag.get("cosine"), mag.get("top1"), mag.get("passed"), "build")
    if runtime_of(r) == "paddle-inference" and r.precision == "fp32":
        return Agree(1.0, 1.0, True, "reference")
    return None


def compare_frameworks(rows: Iterable[ResultRow], samples: dict[str, list[list[float]]],
                       provenance: dict[str, dict[str, Any]] | None = None, *,
                       max_comparisons: int | None = None) -> Comparison | None:
    """The framework table, or None when no (device, model) has a non-Paddle runtime next to a
    Paddle one. `max_comparisons`: at most this many bootstrap comparisons (~8 ms each), whole
    configurations in table order; the others are counted in `Comparison.left_out` (a farm's
    report would otherwise spend minutes on 20,000 of them)."""
    provenance = provenance or {}
    ok = [r for r in rows if r.ok and r.p50_ms is not None and runtime_of(r) and samples.get(r.job_id)]
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for r in ok:
        groups[(r.device, r.model, r.threads, r.precision)].append(r)
    pairs_dm = {(r.device, r.model) for r in ok if runtime_of(r) in OTHER_RUNTIMES} & \
        {(r.device, r.model) for r in ok if runtime_of(r) in PADDLE_RUNTIMES}
    if not pairs_dm:
        return None
    out: list[FrameworkRow] = []
    faster: list[Cell] = []
    tally = {"faster": 0, "slower": 0, "same": 0}
    used, left = 0, [0, 0]
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2] or 0, k[3])):
        if (key[0], key[1]) not in pairs_dm:
            continue
        members = sorted(groups[key], key=lambda r: (runtime_of(r) not in PADDLE_RUNTIMES, r.p50_ms))
        base, like = _baseline(key, members, groups)
        need = 0 if base is None else len(members) - any(r is base for r in members)
        if max_comparisons is not None and (left[0] or used + need > max_comparisons):
            left[0], left[1] = left[0] + 1, left[1] + need
            continue
        used += need
        out.append(_framework_row(key, members, base, like, samples, provenance, tally, faster))
    comp = Comparison(out, claim_line(tally, sorted({r.device for r in ok})), faster)
    if left[0]:
        comp.left_out = (left[0], left[1])
        comp.claim_line += (f" Compared here: the first {len(out)} of {len(out) + left[0]} configurations "
                            f"(a budget of {max_comparisons} bootstrap comparisons; {left[1]} more left "
                            "out); `lab advise --model M --device D` compares the runtimes of one pair.")
    return comp


def _baseline(key: tuple, members: list[ResultRow], groups: dict[tuple, list[ResultRow]]
              ) -> tuple[ResultRow | None, bool]:
    """The fastest Paddle row of the configuration, else Paddle fp32 at its threads; like: same precision."""
    paddle = [r for r in members if runtime_of(r) in PADDLE_RUNTIMES]
    base, like = (paddle[0] if paddle else None), bool(paddle)
    if base is None and key[3] != "fp32":  # e.g. int8 only in ONNX Runtime: against Paddle fp32
        fp32 = sorted((r for r in groups.get(key[:3] + ("fp32",), [])
                       if runtime_of(r) in PADDLE_RUNTIMES), key=lambda r: r.p50_ms)
        base = fp32[0] if fp32 else None
    return base, like


def _framework_row(key: tuple, members: list[ResultRow], base: ResultRow | None, like: bool,
                   samples: dict[str, list[list[float]]], provenance: dict[str, dict[str, Any]],
                   tally: dict[str, int], faster: list[Cell]) -> FrameworkRow:
    """One configuration's cells, each compared with the baseline (bootstrap CI of the ratio)."""
    fr = FrameworkRow(key[0], key[1], key[2], key[3], base)
    for r in members:
        cell = Cell(r, RUNTIME_LABELS.get(runtime_of(r) or "", r.backend or "?"),
                    agreement_of(provenance.get(r.job_id) or {}, r))
        if base is not None and r is base:
            cell.verdict = "baseline"
        elif base is not None:
            c = stats.compare(samples[base.job_id], samples[r.job_id])
            cell.ratio, cell.ratio_ci = c.ratio, (c.ratio_ci_low, c.ratio_ci_high)
            lo, hi = cell.ratio_ci
            cell.verdict = ("faster" if hi is not None and hi < 1 else
                            "slower" if lo is not None and lo > 1 else "same")
            if not like:
                cell.verdict += f" (vs {base.backend} fp32)"
            elif runtime_of(r) in OTHER_RUNTIMES and r.agree_ok is not False and base.agree_ok is not False:
                tally[cell.verdict] += 1  # the claim counts only answers that were not wrong
            if runtime_of(r) in OTHER_RUNTIMES and cell.verdict == "faster":
                faster.append(cell)
        fr.cells.append(cell)
    return fr


def claim_line(tally: dict[str, int], devices: list[str]) -> str:
    n = sum(tally.values())
    if not n:
        return (f"Claim \u201c{CLAIM}\u201d: not measured here (no configuration has a Paddle runtime "
                "and ONNX Runtime at the same precision and threads).")
    if tally["faster"] == 0 and tally["slower"] == 0:
        outcome = "this campaign could not tell them apart (every CI of the ratio includes 1)"
    elif tally["faster"] == 0:
        outcome = "this campaign supports it wherever a difference was measurable"
    elif tally["slower"] == 0:
        outcome = "this campaign contradicts it wherever a difference was measurable"
    else:
        outcome = "this campaign found it true in some configurations and false in others"
    return (f"Claim \u201c{CLAIM}\u201d: {outcome}. On {', '.join(devices)}, ONNX Runtime was faster "
            f"than the fastest Paddle runtime at the same precision and threads in {tally['faster']} "
            f"of {n} configurations, slower in {tally['slower']}, and within noise (95% CI of the "
            f"ratio includes 1) in {tally['same']} (configurations where either side failed the "
            "agreement check are not counted).")


def faster_runtime_note(rows: Iterable[ResultRow], samples: dict[str, list[list[float]]],
                        device: str, model: str) -> str | None:
    """For `lab advise`: which other runtime was measurably faster than Paddle here (information).
    Configurations whose outputs failed the agreement check are left out on both sides, as the
    verdict leaves them out: fast but wrong is no one's speed figure."""
    mine = [r for r in rows if r.device == device and r.model == model and r.agree_ok is not False]
    comp = compare_frameworks(mine, samples)
    if comp is None or not comp.faster_other:
        return None
    best = min(comp.faster_other, key=lambda c: c.ratio or 1.0)
    r, base = best.row, next(fr.baseline for fr in comp.rows if best in fr.cells)
    top = min((fr.baseline for fr in comp.rows if fr.baseline is not None), key=lambda b: b.p50_ms)
    return (f"information: {best.runtime} ({r.backend}, {r.precision}, t{r.threads}) ran {model} "
            f"at {fmt_ms(r.p50_ms)} p50, {fmt_num(best.ratio)}\u00d7 the latency of {base.backend} "
            f"{base.precision} ({fmt_ms(base.p50_ms)}; 95% CI of the ratio "
            f"{fmt_num(best.ratio_ci[0])}-{fmt_num(best.ratio_ci[1])}) "
            f"on {device}; faster in {len(comp.faster_other)} configuration(s); the fastest Paddle "
            f"configuration here is {top.backend} {top.precision} t{top.threads} at {fmt_ms(top.p50_ms)}. "
            "The verdict compares processors, not runtimes.")
