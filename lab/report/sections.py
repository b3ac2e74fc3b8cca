"""What each section of the chip-comparison report shows, computed from result records alone.

Why apart from render.py: every table and chart of the report is a decision about data (which rows
speak for a configuration, which comparison is made, what is "n/a" and why), and these are tested
on records without jinja2 or HTML; render.py assembles the sections into the one page.

The figures come from the lab's own analysis, called directly: `lab.decide.scoring` (ranking),
`lab.decide.advisor` (verdicts, and which row speaks for CPU and AIPU), `lab.decide.tradeoffs` (break-even,
Pareto front) and `lab.results.stats.compare` (baseline). A section that cannot be filled is an
`Unavailable` with the reason, shown to the reader as such.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from lab.core.errors import ConfigError
from lab.core.records import ResultRow
from lab.decide import advisor
from lab.decide import scoring
from lab.decide.measures import load_model_flops
from lab.decide.profiles import load_profiles
from lab.decide.tradeoffs import BreakEven, break_even, pareto_front
from lab.devices.catalog import load_catalog
from lab.report import plots
from lab.results import stats
from lab.results.quality import (LABELS, agreement_uninformative, classify, device_kind,
                                 identity_quality, identity_skipped, left_out, representative)
from lab.results.store import Store


# ------------------------------------------------------------------------------------ records
@dataclass
class Unavailable:
    """A section that cannot be filled, and why (shown to the reader as such)."""

    reason: str


@dataclass(frozen=True)
class Noted:
    """A row shown with a note: why its convergence is unknown, its short error, why power is n/a."""

    row: ResultRow
    note: str | None = None


@dataclass
class Pair:
    """CPU vs AIPU for one model on one device: the row that speaks for each class (as the advisor
    chooses it: `advisor.measured_rows`)."""

    device: str
    chip: str | None
    model: str
    cpu: ResultRow
    aipu: ResultRow
    speedup: float | None  # cpu p50 / aipu p50; > 1 means the AIPU is faster in steady state
    cold_cpu_ms: float | None  # load + first inference
    cold_aipu_ms: float | None
    crossing: BreakEven  # lab.decide.tradeoffs.break_even, the same call `lab advise` makes

    @property
    def break_even(self) -> int | None:
        """Inferences from which the side behind at #1 is ahead (see BreakEven); None: no crossing."""
        return self.crossing.inferences

    @property
    def verdict(self) -> str:
        return self.crossing.reason


@dataclass
class Delta:
    """One configuration measured in the report campaign and in the baseline."""

    key: str
    row: ResultRow
    base: ResultRow
    ratio: float | None  # current p50 / baseline p50
    ci_low: float | None
    ci_high: float | None
    significant: bool | None  # None: not testable (no raw samples)
    method: str
    status: str  # regression | improvement | unchanged | untested



# ------------------------------------------------------------------------------------ helpers
def config_label(r: ResultRow, *, with_device: bool = True, with_model: bool = False) -> str:
    parts = []
    if with_model:
        parts.append(str(r.model))
    if with_device:
        parts.append(str(r.device))
    parts.append(str(r.backend))
    parts.append(str(r.precision))
    # imported rows often carry no thread count (null or 0): say so instead of "t0"
    parts.append(f"t{r.threads}" if r.threads else "threads n/a")
    if r.batch not in (None, 1):
        parts.append(f"b{r.batch}")
    parts += [f"{k}={v}" for k, v in sorted(r.options.items())]
    return " · ".join(parts)


def marked_label(r: ResultRow, **kw: bool) -> str:
    """`config_label` plus "[emulated]" / "[identity mismatch]" / "[simulated]": every table row of
    the report that names a configuration says when its figures are not its chip's."""
    marks = [b for b, _ in identity_marks(r) if b != "identity skipped"]
    return config_label(r, **kw) + "".join(f" [{b}]" for b in marks)


def config_key(r: ResultRow) -> str:
    """Identity of a configuration across campaigns (everything but campaign and job id)."""
    return json.dumps([r.device, r.model, r.backend, r.precision, r.threads, r.batch, r.options],
                      sort_keys=True, default=str)


def ok_rows(rows: Iterable[ResultRow]) -> list[ResultRow]:
    return [r for r in rows if r.ok and num(r.p50_ms) is not None]


def num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def identity_marks(r: ResultRow) -> list[tuple[str, str]]:
    """(badge, reason) for each flag that makes the row not its chip's figure (lab.results.quality:
    emulated, identity mismatch, simulated), and for a skipped identity check; shown as text."""
    if r.identity is None and r.source != "simulated":
        return []  # the common case: nothing to mark
    q = identity_quality(r)
    marks = [(LABELS[f], why) for f, why in zip(q.flags, q.reasons)]
    skipped = identity_skipped(r)
    return marks + ([("identity skipped", skipped)] if skipped else [])


def split_simulated(rows: list[ResultRow]) -> tuple[list[ResultRow], list[ResultRow], bool]:
    """(rows the sections compare, simulated rows shown apart, whether the compared rows are all
    simulated). Simulated rows never sit next to measured ones in a table, chart or comparison
    (issue 24); where a report holds nothing else they are shown, each marked "simulated"."""
    simulated = [r for r in rows if r.source == "simulated"]
    if not simulated:
        return rows, [], False
    measured = [r for r in rows if r.source != "simulated"]
    if not measured:
        return rows, [], True
    return measured, simulated, False


def _imported(r: ResultRow) -> bool:
    return bool(r.source) and r.source != "lab"


def _short_error(text: str | None, n: int = 240) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------------------------ sections
def summarize_rows(rows: list[ResultRow], specs: dict[str, Any]) -> dict:
    status = Counter(r.status for r in rows)
    devices: dict[str, str | None] = {}
    for r in rows:
        devices.setdefault(r.device, r.chip)
    started = [r.started_at for r in rows if r.started_at]
    finished = [r.finished_at for r in rows if r.finished_at]
    return {
        "n_jobs": len(rows),
        "status": dict(sorted(status.items())),
        "devices": sorted(devices.items()),
        "models": sorted({r.model for r in rows}),
        "backends": sorted({(r.backend, r.processor) for r in rows}, key=str),
        "processors": sorted({r.processor for r in rows if r.processor}),
        "first_start": min(started) if started else None,
        "last_finish": max(finished) if finished else None,
        # data quality: lab.results.quality.classify, the one judgement the run summary and advisor share
        "not_converged": [r for r in rows if r.ok and "not_converged" in classify(r).flags],
        "wide_ci": [Noted(r, classify(r).text()) for r in rows
                    if r.ok and "wide_ci" in classify(r).flags],
        "busy_host": [r for r in rows if r.ok and "busy_host" in classify(r).flags],
        # ok rows whose convergence is unknown: imports carry no raw samples to judge it by
        "convergence_unknown": [Noted(r, "imported: no raw samples" if _imported(r)
                                      else "the run reported no convergence")
                                for r in rows if r.ok and r.converged is None],
        "throttled": [r for r in rows if "throttled" in classify(r).flags],
        # not representative of the chip (lab.results.quality.representative), and skipped checks
        **_identity_summary(rows),
        "failed": [Noted(r, _short_error(r.error)) for r in rows if r.status == "failed"],
        "skipped": [Noted(r, _short_error(r.error)) for r in rows if r.status == "skipped"],
        "unfinished": [r for r in rows if r.status in ("planned", "running")],
        "n_samples": sum(r.n_samples or 0 for r in rows),
        "specs": specs,
    }


def _identity_summary(rows: list[ResultRow]) -> dict:
    """Rows not representative of their chip, per flag, and rows whose identity check was skipped,
    each with its reason (lab.results.quality): the summary's "Validity flags" lists them."""
    out: dict[str, Any] = {"identity": {f: [] for f in ("emulated", "identity_mismatch", "simulated")},
                           "identity_skipped": []}
    label_flag = {LABELS[f]: f for f in out["identity"]}
    for r in rows:
        if r.identity is None and r.source != "simulated":
            continue  # the common case, at farm scale: nothing to say
        for badge, why in identity_marks(r):
            (out["identity"][label_flag[badge]] if badge in label_flag
             else out["identity_skipped"]).append(Noted(r, why))
    return out


def latency_groups(rows: list[ResultRow]) -> list[dict]:
    """Per model: every configuration's steady-state latency with its CI, and a chart."""
    by_model: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_model[r.model].append(r)
    out = []
    for model in sorted(by_model):
        group = sorted(by_model[model], key=lambda r: (num(r.p50_ms) is None, num(r.p50_ms) or 0.0))
        ok = ok_rows(group)
        bars = [plots.Bar(config_label(r), num(r.p50_ms), num(r.ci_low_ms), num(r.ci_high_ms),
                          r.processor, _bar_flag(r)) for r in ok]
        chart = plots.bar_chart(f"{model}: steady-state median latency (95% CI)", bars, "ms per inference",
                                alt=f"Bar chart of median latency for model {model} per configuration")
        out.append({"model": model, "rows": group, "chart": chart})
    return out


def _bar_flag(r: ResultRow) -> str:
    """The one mark a latency bar carries: not the chip's figure first, then correctness, quality."""
    marks = identity_marks(r)
    if marks and marks[0][0] != "identity skipped":
        return marks[0][0]
    if r.agree_ok is False:
        return "fast but wrong"
    if r.converged is False:
        return "not converged"
    if r.throttled:
        return "throttled"
    return "agreement uninformative" if agreement_uninformative(r) else ""


# What to add where no AIPU was measured (a CPU-only host such as the demo's cannot fill this section)
AIPU_HINT = ("To answer \"CPU or AIPU?\", add a device with an NPU to the campaign with its CPU and NPU "
             "backends, e.g. `devices: [mate30-kirin990]` with `backends: [paddle-lite-arm, "
             "paddle-lite-kirin-npu]` (campaigns/phone-npu.yaml) or an RK1808/RV1109 board "
             "(campaigns/boards.yaml); devices.yaml says what each needs.")


def cpu_vs_aipu(rows: list[ResultRow]) -> list[Pair] | Unavailable:
    """Per model x device, the advisor's CPU and AIPU rows and the lab's one break-even."""
    timed = [r for r in rows if r.ok and r.latency_ms is not None]
    measured = [r for r in timed if representative(r)]  # as advisor.measured_rows chooses
    lo = left_out(timed)
    off = f" ({lo.text()}: not their chip's figures)" if lo.total else ""
    procs = {r.processor for r in measured}
    if "aipu" not in procs or "cpu" not in procs:
        seen = ", ".join(sorted(p for p in procs if p)) or "none"
        return Unavailable("needs ok measurements of both a CPU and an AIPU backend on the same device; "
                           f"processor classes measured here: {seen}{off}. {AIPU_HINT}")
    groups: dict[tuple[str, str], list[ResultRow]] = {}
    for r in measured:  # grouped once: one scan of all rows per pair was quadratic at 100k rows
        groups.setdefault((r.device, r.model), []).append(r)
    pairs = []
    for (device, model), group in sorted(groups.items(), key=lambda kv: kv[0]):
        chosen = advisor.measured_rows(group, device, model)
        if "cpu" in chosen and "aipu" in chosen:
            pairs.append(_pair(chosen["cpu"][0], chosen["aipu"][0]))
    if not pairs:
        return Unavailable("CPU and AIPU were measured, but never the same model on the same device" + off)
    return pairs


def _pair(cpu: ResultRow, aipu: ResultRow) -> Pair:
    c, a = cpu.latency_ms, aipu.latency_ms
    crossing = break_even(cpu_start_ms=cpu.start_ms, cpu_p50_ms=c, aipu_start_ms=aipu.start_ms, aipu_p50_ms=a)
    return Pair(cpu.device, cpu.chip, cpu.model, cpu, aipu, c / a if a and a > 0 else None,
                cpu.start_ms, aipu.start_ms, crossing)


def energy_rows(rows: list[ResultRow]) -> list[Noted]:
    """Every ok row; the note says why power is n/a where it is."""
    out = []
    for r in ok_rows(rows):
        reason = None
        if num(r.power_w) is None and num(r.energy_mj_per_inf) is None:
            reason = r.power_note or "no power source recorded for this job"
        out.append(Noted(r, reason))
    return out


def pareto_section(rows: list[ResultRow]) -> list[dict] | Unavailable:
    """Per model: latency against energy per inference where measured, else against peak memory."""
    ok = ok_rows(rows)
    out = []
    by_model: dict[str, list[ResultRow]] = defaultdict(list)
    for r in ok:
        by_model[r.model].append(r)
    for model in sorted(by_model):
        group = by_model[model]
        with_energy = [r for r in group if num(r.energy_mj_per_inf) is not None]
        if len(with_energy) >= 2:
            ylabel, note = "energy per inference (mJ)", ""
            group = with_energy
            pts = [(r.p50_ms, float(r.energy_mj_per_inf)) for r in group]
        else:
            group = [r for r in group if num(r.peak_rss_mb) is not None]
            ylabel = "peak RSS (MB)"
            note = "energy per inference not measured for two or more configurations; peak memory used instead"
            pts = [(r.p50_ms, float(r.peak_rss_mb)) for r in group]
        if len(group) < 2:
            continue
        flags = pareto_front(pts)
        chart = plots.pareto_chart(f"{model}: latency vs {ylabel}",
                                   [(marked_label(r), x, y, f, r.processor)
                                    for r, (x, y), f in zip(group, pts, flags)],
                                   "median latency (ms)", ylabel,
                                   alt=f"Pareto plot of latency against {ylabel} for model {model}")
        out.append({"model": model, "chart": chart, "note": note, "ylabel": ylabel,
                    "front": [(r, y) for r, (_, y), f in zip(group, pts, flags) if f]})
    if not out:
        return Unavailable("a Pareto plot needs two or more ok configurations of one model with a second "
                           "measured figure (energy or peak memory)")
    return out



def cold_section(ok: list[ResultRow]) -> dict:
    """Cold start per ok configuration: load (predictor creation) + first inference, stacked."""
    return {"rows": ok, "chart": plots.stacked_chart(
        "Cold start: load (predictor creation) + first inference",
        [marked_label(r, with_model=True) for r in ok],
        [("load", [num(r.load_ms) for r in ok]), ("first inference", [num(r.first_ms) for r in ok])],
        "ms", alt="Stacked bar chart of load time and first inference time per configuration")}


def memory_section(ok: list[ResultRow]) -> dict:
    """Peak resident memory per ok configuration, where measured."""
    mem_bars = [plots.Bar(marked_label(r, with_model=True), num(r.peak_rss_mb), processor=r.processor)
                for r in ok if num(r.peak_rss_mb) is not None]
    return {"rows": ok, "chart": plots.bar_chart("Peak resident memory (VmHWM) per configuration",
                                                 mem_bars, "MB", alt="Bar chart of peak memory")}


# ---- baseline -----------------------------------------------------------------------------
def baseline_section(store: Store, rows: list[ResultRow], base_rows: list[ResultRow],
                     allow: tuple[str, ...] = ()) -> dict:
    """Each configuration in both campaigns: `stats.compare` (baseline a, candidate b) of the raw
    samples gives the ratio of medians with its CI and the significance; without raw samples
    (imports) the change is shown but untested. Pairs whose context differs
    (`comparability.differences`, minus `allow`) are "not comparable" and stay out of the counts."""
    from lab.results.comparability import context_of, differences, verdict_text
    base_by_key: dict[str, list[ResultRow]] = defaultdict(list)
    for r in ok_rows(base_rows):
        base_by_key[config_key(r)].append(r)
    deltas: list[Delta] = []
    for r in ok_rows(rows):
        key = config_key(r)
        same = base_by_key.get(key) or [None]
        # a baseline row of the same kind (real, emulated, simulated) where there is one; another
        # kind is then "not comparable: identity" (lab.results.comparability)
        b = next((x for x in same if x is not None and device_kind(x) == device_kind(r)), same[0])
        if b is None:
            continue
        cur_s, base_s = store.samples(r.job_id), store.samples(b.job_id)
        ratio = r.p50_ms / b.p50_ms if b.p50_ms else None
        lo = hi = sig = None
        method = "untested: no raw samples stored (imported result?)"
        diffs = differences(context_of(b, store.provenance(b.job_id)),
                            context_of(r, store.provenance(r.job_id)), allow)
        if diffs:
            deltas.append(Delta(key, r, b, ratio, None, None, None, verdict_text(diffs), "not comparable"))
            continue
        if any(cur_s) and any(base_s):
            c = stats.compare(base_s, cur_s)  # ratio = median(current) / median(baseline)
            ratio = c.ratio if c.ratio is not None else ratio
            lo, hi, sig = c.ratio_ci_low, c.ratio_ci_high, c.significant
            method = "lab.results.stats.compare: " + c.method
        if sig is None:
            status = "untested"
        elif not sig:
            status = "unchanged"
        else:
            status = "regression" if ratio is not None and ratio > 1 else "improvement"
        deltas.append(Delta(key, r, b, ratio, lo, hi, sig, method, status))
    cur_keys = {config_key(r) for r in ok_rows(rows)}
    return {
        "deltas": sorted(deltas, key=lambda d: ({"regression": 0, "improvement": 1, "untested": 2,
                                                 "unchanged": 3, "not comparable": 4}[d.status],
                                                -(d.ratio or 0))),
        "counts": Counter(d.status for d in deltas),
        "only_current": len(cur_keys - set(base_by_key)),
        "only_baseline": len(set(base_by_key) - cur_keys),
    }


# ---- sustained runs (issue 18) -------------------------------------------------------------
def sustained_section(store: Store, rows: list[ResultRow]) -> list[dict] | None:
    """Per model: the sustained configurations ranked by p50 in their first and in their last
    window (rank changes flagged), the onset and ratio, and a p50-per-window chart."""
    from lab.results.sustained import ranks
    ok = ok_rows(rows)
    wins = store.windows([r.job_id for r in ok])
    by_model: dict[str, list[ResultRow]] = {}
    for r in ok:
        if wins.get(r.job_id):
            by_model.setdefault(r.model, []).append(r)
    if not by_model:
        return None
    out = []
    for model, group in sorted(by_model.items()):
        first = {r.job_id: [w for w in wins[r.job_id] if w.trial == 0][0].p50_ms for r in group}
        last = {r.job_id: [w for w in wins[r.job_id] if w.trial == 0][-1].p50_ms for r in group}
        r_first, r_last = ranks(first), ranks(last)
        entries = [{"row": r, "first_p50": first[r.job_id], "last_p50": last[r.job_id],
                    "rank_first": r_first.get(r.job_id), "rank_last": r_last.get(r.job_id),
                    "rank_changed": r_first.get(r.job_id) != r_last.get(r.job_id),
                    "windows": len([w for w in wins[r.job_id] if w.trial == 0])}
                   for r in sorted(group, key=lambda r: r_first.get(r.job_id, 10**9))]
        chart = plots.window_chart(
            f"{model}: p50 per window of the sustained run",
            [(f"{r.chip} · {marked_label(r)}", r.processor,
              [((w.t_start_s + w.t_end_s) / 2, w.p50_ms) for w in wins[r.job_id] if w.trial == 0]) for r in group],
            "p50 ms", alt=f"Line chart of p50 latency per window for {model}")
        out.append({"model": model, "entries": entries, "chart": chart,
                    "window_rows": [(r, w) for r in group for w in wins[r.job_id]]})
    return out


# ---- scoring / advisor --------------------------------------------------------------------
def ranking_section(rows: list[ResultRow], profiles: list[str] | None) -> dict | Unavailable:
    """Ranked chips per selection profile via lab.decide.scoring, plus the criteria heatmap data."""
    catalog = load_catalog()  # a broken catalog or profile file is the user's to fix: ConfigError
    all_profiles = load_profiles()
    flops = load_model_flops()  # local model meta.json: for TOPS utilisation
    names = profiles or list(all_profiles)
    unknown = [p for p in names if p not in all_profiles]
    if unknown:
        raise ConfigError(f"unknown profile {unknown[0]!r}", fix="use one of " + ", ".join(all_profiles))
    out = []
    for name in names:
        scored = [s.to_json() for s in scoring.score_chips(catalog, all_profiles[name], rows, flops=flops)]
        scored.sort(key=lambda s: (s.get("rank") is None, s.get("rank") or 0))
        criteria = []
        for s in scored:
            for c in (s.get("criteria") or {}):
                if c not in criteria:
                    criteria.append(c)
        out.append({"profile": name, "chips": scored, "criteria": criteria, "error": None,
                    "description": all_profiles[name].description})
    return {"profiles": out}


FRAMEWORK_COMPARISONS_MAX = 300  # bootstraps in a report's frameworks table: ~2-3 s on a loaded 2-core box


def frameworks_section(store: Store, ok: list[ResultRow]):
    """Paddle runtimes and ONNX Runtime side by side (lab.decide.frameworks), or why not."""
    from lab.decide import frameworks
    ids = [r.job_id for r in ok]
    comp = frameworks.compare_frameworks(ok, store.all_samples(ids), {i: store.provenance(i) for i in ids},
                                         max_comparisons=FRAMEWORK_COMPARISONS_MAX)
    if comp is None:
        return Unavailable("no model was measured with a Paddle runtime and ONNX Runtime on the "
                           "same device (add onnxruntime-cpu to the campaign's backends)")
    return comp


def advisor_section(rows: list[ResultRow], campaigns: list[str],
                    op_profiles: dict[str, list] | None = None) -> dict | Unavailable:
    """lab.decide.advisor's answer for every model x device of the campaigns, from these rows only (no
    inventory: a device is known by its name and chip, as for imported results); fallback ops are
    weighed by the AIPU job's op profile where one is stored."""
    answers = [a.to_dict() for c in campaigns
               for a in advisor.advise_campaign(c, rows=rows, devices=[], op_profiles=op_profiles or {})]
    if not answers:
        return Unavailable("no model x device pairs to advise on")
    return {"answers": answers}


_PROC_ORDER = {"cpu": 0, "aipu": 1, "gpu": 2}


def op_profile_section(rows: list[ResultRow], profiles: dict[str, list]) -> list[dict] | Unavailable:
    """Per model: where the time goes in each profiled job (`profile: ops`), CPU and AIPU runs side
    by side in one chart, and the top ops of each as a table."""
    ok = [r for r in ok_rows(rows) if profiles.get(r.job_id)]
    if not ok:
        return Unavailable("no job of these campaigns has an op profile (add `options: {profile: [ops]}` "
                           "to a campaign to get one)")
    out = []
    for model in sorted({r.model for r in ok}):
        jobs = sorted((r for r in ok if r.model == model),
                      key=lambda r: (_PROC_ORDER.get(r.processor or "", 9), r.device, config_key(r)))
        panels = [(marked_label(r), [(o.op_type, o.share, o.processor) for o in profiles[r.job_id]]) for r in jobs]
        chart = plots.op_profile_chart(f"{model}: share of op time per op type", panels,
                                       alt=f"Bar charts of the per-operator time share of {model}, one per job")
        out.append({"model": model, "chart": chart,
                    "jobs": [{"row": r, "ops": profiles[r.job_id][:plots.OP_TOP_N],
                              "more": max(0, len(profiles[r.job_id]) - plots.OP_TOP_N)} for r in jobs]})
    return out


# ---- browser (Paddle.js) rows ----------------------------------------------------------------
def web_labels(store: Store, rows: list[ResultRow]) -> dict[str, str]:
    """job id -> "web · <renderer label>" for ok browser rows (backends paddle-js-*), from the
    stored provenance: a SwiftShader figure reads "software GPU emulation" beside the native rows."""
    out = {}
    for r in rows:
        if r.ok and str(r.backend or "").startswith("paddle-js-"):
            web = store.provenance(r.job_id).get("web") or {}
            out[r.job_id] = "web · " + (web.get("label") or "renderer unknown")
    return out


# ---- provenance -----------------------------------------------------------------------------
def provenance_rows(store: Store, rows: list[ResultRow]) -> dict:
    """Provenance per job, plus the groups it shares (runner/runtime/host, model hashes): at 2,000
    jobs the shared parts would otherwise repeat 2,000 times."""
    jobs, groups, models = [], Counter(), Counter()
    for r in rows:
        if r.status not in ("ok", "failed"):
            continue
        p = store.provenance(r.job_id) if r.ok else {}
        env = p.get("env") or {}
        cmds = p.get("commands") or []
        runner = " ".join(str(x) for x in (p.get("runner") or r.source, p.get("runner_version")) if x)
        runtime = ", ".join(f"{k} {env[k]}" for k in ("python", "paddle", "paddlelite", "numpy") if env.get(k))
        groups[(runner or None, runtime or None, env.get("hostname"), p.get("stats_method"))] += 1
        sha = p.get("model_sha256") or r.model_sha256
        models[(r.model, sha)] += 1
        jobs.append({"row": r, "model_sha256": sha, "command": cmds[0] if cmds else None,
                     "n_commands": len(cmds), "notes": p.get("notes") or []})
    return {"jobs": jobs,
            "groups": [{"runner": k[0], "runtime": k[1], "host": k[2], "stats_method": k[3], "n": n}
                       for k, n in sorted(groups.items(), key=lambda kv: -kv[1])],
            "models": [(m, sha, n) for (m, sha), n in sorted(models.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]}
