"""`lab advise`: "CPU or AIPU?" for a model on a device, with reasons and the numbers behind them.

Why this shape: the answer is assembled from facts that already exist (the store's measured rows,
the chip catalog, the model's static analysis: `lab.decide.facts`; Paddle Lite's NPU op lists:
`lab.decide.npu_partition`); each rule of the deployment guide lives in `lab/decide/advice_rules.py`
and speaks for itself, and `lab.decide.verdict` weighs them into the answer. This module chooses
the measured rows that speak for each processor, runs those steps for one model x device (or every
pair of a campaign) and writes the answer as text. Nothing here touches a device or the scheduler:
`lab advise --measure` runs `lab.measure.orchestrate.measure_for_advice` first and then asks this
module, from the store alone. Imports stay light (no paddle, numpy, pandas, matplotlib) so an
answer takes well under 300 ms.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from lab.core.errors import ConfigError
from lab.core.records import Device, ResultRow
from lab.decide.advice_records import AdviceInput, Fallback, ModelFacts, Options, Side
from lab.decide.figures import fmt_ms, fmt_num
from lab.decide.facts import (ModelInfo, device_facts, estimate, load_inventory, load_rows,
                              measured_fallback, model_facts)
from lab.decide.npu_partition import fallbacks
from lab.decide.verdict import Advice, answer
from lab.devices.backends import BACKENDS, OTHER_RUNTIMES
from lab.results.quality import LeftOut, classify, identity_skipped, left_out, representative
from lab.results.store import Store


# ----------------------------------------------------------------------------- measured sides
def _side(r: ResultRow, candidates: int = 1) -> Side:
    return Side(processor=r.processor or "", backend=r.backend or "", precision=r.precision,
                p50_ms=r.latency_ms, ci_low_ms=r.ci_low_ms, ci_high_ms=r.ci_high_ms,
                load_ms=r.load_ms, first_ms=r.first_ms, energy_mj_per_inf=r.energy_per_inf_mj,
                power_w=r.power_w, peak_rss_mb=r.peak_rss_mb, source=r.source or "lab",
                job_id=r.job_id or "", campaign=r.campaign or "", candidates=candidates,
                agree_ok=r.agree_ok, agree_cosine_min=r.agree_cosine_min, agree_top1=r.agree_top1,
                accuracy_top1=r.accuracy_top1, quality=classify(r).reasons)


def measured_rows(rows: list[ResultRow], device: str, model: str, *,
                  job_ids: Iterable[str] | None = None, model_shas: Iterable[str] | None = None,
                  notes: list[str] | None = None,
                  excluded: list[ResultRow] | None = None) -> dict[str, tuple[ResultRow, int]]:
    """The row that speaks for each processor class, and how many it was chosen from.

    Fastest ok row per processor class for this model on this device (lab or imported); ties go
    to the most recent run. The advisor and the report's CPU-vs-AIPU table both choose this way.
    Rows that are not representative of their chip (lab.results.quality.representative: emulated,
    identity mismatch, simulated) never speak for it; they go to `excluded` when given.
    """
    wanted = None if job_ids is None else set(job_ids)
    shas = None if model_shas is None else {h for h in model_shas if h}
    groups: dict[str, list[ResultRow]] = {}
    stale = 0
    for r in rows:
        if r.device != device or r.model != model or r.status != "ok":
            continue
        if wanted is not None and r.job_id not in wanted:
            continue
        if r.latency_ms is None or r.processor not in ("cpu", "gpu", "aipu"):
            continue
        if _other_framework(r):
            continue  # the verdict compares processors under Paddle; other runtimes are a note
        if shas and r.model_sha256 and r.model_sha256 not in shas:
            stale += 1
            continue
        if not representative(r):
            if excluded is not None:
                excluded.append(r)
            continue
        groups.setdefault(r.processor, []).append(r)
    if notes is not None and stale:
        notes.append(f"left out {stale} ok row(s) measured on another build of {model!r} "
                     "(their model_sha256 differs from the model as built now)")
    if notes is not None and wanted is not None:
        notes.append(f"evidence: only the {len(wanted)} job(s) just measured")
    out: dict[str, tuple[ResultRow, int]] = {}
    for proc, rs in groups.items():
        # fast but wrong (agreement failed) never speaks for a class that has a right row; when
        # every row failed, the fastest stays so that rule_output_correctness blocks it
        right = [r for r in rs if r.agree_ok is not False]
        if notes is not None and right and len(right) < len(rs):
            notes.append(f"{proc.upper()}: left out {len(rs) - len(right)} configuration(s) whose "
                         "outputs failed the agreement check (fast but wrong): " + ", ".join(
                             f"{r.backend} {r.precision} cosine_min {r.agree_cosine_min}"
                             for r in rs if r.agree_ok is False))
        rs = right or rs
        newest_first = sorted(rs, key=lambda r: r.finished_at or "", reverse=True)
        out[proc] = (min(newest_first, key=lambda r: r.latency_ms), len(rs))  # ties: the most recent
    return out


def _other_framework(r: ResultRow) -> bool:
    b = BACKENDS.get(r.backend or "")
    return b is not None and b.runtime in OTHER_RUNTIMES


def framework_note(rows: list[ResultRow], device: str, model: str,
                   store_path: str | Path | None) -> str | None:
    """Information, not a reason: another runtime (ONNX Runtime) measurably faster than Paddle on
    this device (lab.decide.frameworks; needs the stored samples for the CI of the ratio)."""
    mine = [r for r in rows if r.device == device and r.model == model and r.ok and representative(r)]
    if store_path is None or not any(_other_framework(r) for r in mine) or not Path(store_path).exists():
        return None
    from lab.decide.frameworks import faster_runtime_note  # deferred: numpy (lab.results.stats)
    store = Store(store_path, readonly=True)
    try:
        samples = store.all_samples([r.job_id for r in mine])
    finally:
        store.close()
    return faster_runtime_note(mine, samples, device, model)


def measured_sides(rows: list[ResultRow], device: str, model: str, *,
                   job_ids: Iterable[str] | None = None, model_shas: Iterable[str] | None = None,
                   notes: list[str] | None = None,
                   excluded: list[ResultRow] | None = None) -> dict[str, Side]:
    """The measured side of each processor class (`measured_rows`), as the rules read it.

    Why the filters: a verdict must quote the model as it is built now, and after `--measure`
    exactly the jobs just run, not a faster row of an older build or of another campaign.
    `job_ids`: use only these jobs. `model_shas`: the artifact's sha256 (and legacy_sha256);
    rows with another model hash are left out, rows without one (imports) are kept. Each side
    says how many configurations it was chosen from; `notes` receives what was left out.
    """
    chosen = measured_rows(rows, device, model, job_ids=job_ids, model_shas=model_shas, notes=notes,
                           excluded=excluded)
    if notes is not None:
        notes += [f"{p.upper()} row {r.job_id}: {identity_skipped(r)}"
                  for p, (r, _) in chosen.items() if identity_skipped(r)]
    return {proc: _side(r, candidates=n) for proc, (r, n) in chosen.items()}


def left_out_note(lo: LeftOut, chip: str | None, measured: bool) -> str:
    """What the advice left out, in words: never the chip's figures (issues 22 and 24)."""
    text = (f"{lo.text()}: not representative of chip {chip or '(unknown)'}, so never quoted as "
            "its measurement")
    if not measured and lo.counts.get("simulated") == lo.total:
        text += ("; only simulated rows exist for this model on this device: they are not "
                 "measurements, and the answer rests on the model analysis and the catalog")
    return text


# ------------------------------------------------------------------------------------ answer
def advise(model_id: str, device_id: str, *, options: Options | None = None,
           rows: list[ResultRow] | None = None, devices: list[Device] | None = None,
           models_root: str | Path = "models", store_path: str | Path | None = None,
           devices_path: str | Path | None = None, job_ids: Iterable[str] | None = None,
           op_profiles: dict[str, list] | None = None,
           model_cache: dict[str, ModelInfo | ConfigError] | None = None) -> Advice:
    """The answer for one model on one device.

    `rows` are result records (`Store.results()`); when None they are read from `store_path`.
    `devices` is the inventory; when None it is read from `devices_path` (missing file = empty).
    `job_ids`: answer from these jobs only (`--measure` passes the jobs it just ran).
    `op_profiles`: job id -> op profile rows (`Store.op_profiles`); when None they are read from
    `store_path` for the AIPU job, if any. `model_cache`: model id -> its static facts (or why
    there are none), shared by the answers of one campaign.
    """
    options = options or Options()
    if rows is None:
        rows = load_rows(store_path)
    if devices is None:
        devices = load_inventory(devices_path)
    dev = device_facts(device_id, devices, rows)
    notes: list[str] = [dev.note] if dev.note else []
    m = _model(model_id, models_root, rows, notes, model_cache)
    excluded: list[ResultRow] = []
    sides = measured_sides(rows, device_id, model_id, job_ids=job_ids, model_shas=m.shas,
                           notes=notes, excluded=excluded)
    lo = left_out(excluded)
    if lo.total:
        notes.append(left_out_note(lo, dev.chip, bool(sides)))
    if dev.status in ("disabled", "unreachable"):
        notes.append(f"device {dev.status}: answered from the chip's catalog entry and the model "
                     "analysis" + (" plus earlier stored measurements" if sides else ""))
    found: list[Fallback] = []
    if m.ops is not None and dev.has_aipu is not False:
        found = fallbacks(m.ops, dev.nnadapter, sides["aipu"].backend if "aipu" in sides else None)
    # the path that is measured, else the device's configured (inventory) or first catalog path:
    # the same NPU for every model, never the one that happens to suit this model best
    fallback = found[0] if found else None
    used = (fallback.nnadapter_device,) if fallback else dev.nnadapter[:1]
    est = estimate(m.facts, dev, used) if m.facts.analysed else None
    x = AdviceInput(model=m.facts, device=device_id, chip=dev.chip, has_aipu=dev.has_aipu,
                    aipu_name=dev.aipu_name, has_gpu=dev.has_gpu, options=options,
                    cpu=sides.get("cpu"), aipu=sides.get("aipu"), gpu=sides.get("gpu"),
                    fallback=fallback, estimate=est, nnadapter_devices=used,
                    measured_fallback=measured_fallback(sides.get("aipu"), op_profiles, store_path),
                    left_out=lo if lo.total else None)
    if not sides and lo.total:
        notes.append(f"nothing measured on chip {dev.chip or '(unknown)'} for this model (this "
                     "device's rows are not its figures): static rules and a TOPS estimate only")
    elif not sides:
        notes.append("nothing measured for this model on this device: static rules and a "
                     "TOPS estimate only (run `lab advise ... --measure`)")
    fw = framework_note(rows, device_id, model_id, store_path)
    if fw:
        notes.append(fw)
    return answer(x, device_status=dev.status, fallbacks=found, notes=notes)


def _model(model_id: str, models_root: str | Path, rows: list[ResultRow],
           notes: list[str], cache: dict[str, ModelInfo | ConfigError] | None = None) -> ModelInfo:
    """The model's static facts; a model known only from stored rows is answered from those."""
    m = cache.get(model_id) if cache is not None else None
    if m is None:
        try:
            m = model_facts(model_id, models_root)
        except ConfigError as exc:
            m = exc
        if cache is not None:
            cache[model_id] = m
    if isinstance(m, ConfigError):
        if not any(r.model == model_id for r in rows):
            raise m
        notes.append(f"model not available for static analysis ({m}); answered from "
                     "measurements only")
        return ModelInfo(ModelFacts(model=model_id, analysed=False), None)
    notes.extend(m.notes)
    return m


def advise_campaign(campaign: str, *, options: Options | None = None,
                    store_path: str | Path | None = None, rows: list[ResultRow] | None = None,
                    devices: list[Device] | None = None, devices_path: str | Path | None = None,
                    models_root: str | Path = "models",
                    op_profiles: dict[str, list] | None = None) -> list[Advice]:
    """One answer per model x device of a stored campaign (evidence: every stored row)."""
    all_rows = load_rows(store_path) if rows is None else rows
    pairs = sorted({(r.model, r.device) for r in all_rows if r.campaign == campaign})
    if not pairs:
        known = sorted({r.campaign for r in all_rows if r.campaign})
        raise ConfigError(f"campaign {campaign!r} has no stored jobs",
                          fix="known campaigns: " + (", ".join(known) or "none"))
    if devices is None:
        devices = load_inventory(devices_path)
    # an answer reads only its device's rows (device facts, the model's rows on it): grouped once,
    # as a scan of every row per pair was quadratic on a farm's store
    by_device: dict[str, list[ResultRow]] = {}
    for r in all_rows:
        by_device.setdefault(r.device, []).append(r)
    facts: dict[str, ModelInfo | ConfigError] = {}  # each model analysed once, not once per device
    return [advise(m, d, options=options, rows=by_device[d], devices=devices, models_root=models_root,
                   store_path=store_path, op_profiles=op_profiles, model_cache=facts)
            for m, d in pairs]


# ------------------------------------------------------------------------------------- text
def render_text(a: Advice) -> str:
    """The answer for people: verdict and confidence, each side's numbers, the reasons, notes."""
    ms = fmt_ms
    head = (f"{a.model} on {a.device} ({a.chip or 'chip unknown'}; {a.device_status}): "
            f"{a.verdict.upper()}  [confidence {a.confidence}]")
    lines = [head]
    for p in ("cpu", "aipu", "gpu"):
        n = a.numbers.get(p)
        if n:
            ci = (f" [{ms(n['ci_low_ms'])}, {ms(n['ci_high_ms'])}]"
                  if n["ci_low_ms"] is not None else " (no CI)")
            e = ("" if n["energy_mj_per_inf"] is None
                 else f", {fmt_num(n['energy_mj_per_inf'])} mJ/inf")
            lines.append(f"  {p.upper():<4} p50 {ms(n['p50_ms'])}{ci}, load+first "
                         f"{ms(n['load_plus_first_ms'])}{e}  ({n['backend']}, {n['selection']})")
    acc = (a.accelerator or "aipu").upper()
    if a.confidence_reasons and a.confidence != "high":
        lines.append(f"  confidence {a.confidence}: " + "; ".join(a.confidence_reasons))
    if a.speedup is not None:
        lines.append(f"  speedup (CPU/{acc} steady): {fmt_num(a.speedup)}x ({a.speedup_source})")
    if a.break_even is not None:
        lines.append(f"  break-even: {a.break_even.reason}")
    if a.fallback is not None:
        f = a.fallback
        fb = ", ".join(f"{k} x{v}" for k, v in sorted(f.fallback_ops.items())) or "none"
        lines.append(f"  NPU ops ({f.nnadapter_device}): {f.supported_ops} mapped, CPU fallback: "
                     f"{fb}; {f.subgraphs} subgraph(s) (program-order approximation)")
    if a.measured_fallback is not None:
        mf = a.measured_fallback
        ops = ", ".join(f"{k} {100 * v:.1f} %" for k, v in mf.cpu_ops.items()) or "none"
        lines.append(f"  CPU time in the AIPU run (op profile, job {mf.job_id[:12]}): {ops}")
    lines.append("  reasons:")
    for c in a.reasons:
        tag = "!" if c.blocking else ("+" if c.direction != "neutral" else "·")
        lines.append(f"   {tag} [{c.rule} -> {c.direction}] {c.text}")
    for n in a.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
