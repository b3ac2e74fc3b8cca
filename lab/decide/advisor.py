"""`lab advise`: "CPU or AIPU?" for a model on a device, with reasons and the numbers behind them.

Why this shape: the answer is assembled from facts that already exist (the store's measured rows,
the chip catalog, the model's static analysis, Paddle Lite's NPU op lists in
`lab/decide/data/npu_ops.yaml`); each rule of the deployment guide lives in `lab/decide/advice_rules.py` and
speaks for itself. Nothing here touches a device or the scheduler: `lab advise --measure` runs
`lab.measure.orchestrate.measure_for_advice` first and then asks this module, from the store alone.
Imports stay light (no paddle, numpy, pandas, matplotlib) so an answer takes well under 300 ms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lab.decide import advice_rules as R
from lab.core.errors import ConfigError, LabError
from lab.results.quality import classify
from lab.core.records import ResultRow
from lab.decide.tradeoffs import BreakEven

ADVICE_SCHEMA = "hwlab.advice/1"
NPU_OPS_PATH = Path(__file__).parent / "data" / "npu_ops.yaml"
DENSE_OPS = frozenset({"conv2d", "depthwise_conv2d", "conv2d_transpose", "conv3d", "matmul",
                       "matmul_v2", "mul", "fc", "bmm"})


# --------------------------------------------------------------------------------- NPU op lists
@dataclass(frozen=True)
class NpuDevice:
    name: str
    ops: frozenset[str]
    needs_quantized: bool
    source: str  # "repo path @ revision"
    note: str = ""


@dataclass(frozen=True)
class Fusion:
    op: str
    after: frozenset[str]
    becomes: str | None
    pass_name: str


@dataclass(frozen=True)
class NpuOps:
    devices: dict[str, NpuDevice]
    ignore: frozenset[str]
    fusions: tuple[Fusion, ...]
    aliases: dict[str, str]
    removed: dict[str, str] = field(default_factory=dict)  # op -> the inference pass deleting it

    def normalise(self, raw: str) -> str | None:
        """One op name as Paddle Lite knows it (legacy name), or None for structure/constants.

        Accepts legacy names (`elementwise_add`), PIR names (`pd_op.add`, `pd_op.relu_`) and the
        serialised PIR form (`1.add`; dialect 0 = builtin, 1 = pd_op; `p` = a parameter).
        """
        name = raw.strip()
        if name in ("p", "") or name.startswith(("builtin.", "0.")):
            return None
        pir = False
        if name.startswith("pd_op."):
            name, pir = name[6:], True
        elif "." in name and name.split(".", 1)[0].isdigit():
            name, pir = name.split(".", 1)[1], True
        if name.endswith("_") and not name.endswith("__"):
            name = name[:-1]
        if pir:
            name = self.aliases.get(name, name)
        return None if name in self.ignore else name


_NPU_CACHE: dict[str, NpuOps] = {}


def load_npu_ops(path: str | Path | None = None) -> NpuOps:
    p = str(path or NPU_OPS_PATH)
    if p in _NPU_CACHE:
        return _NPU_CACHE[p]
    from lab.core.yamlio import load_yaml  # bounded: aliases, nesting, tags, finite numbers
    doc = load_yaml(p, what="NPU op lists")
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), dict):
        raise ConfigError("NPU op lists need a 'devices:' mapping", path=p)
    sources = doc.get("sources") or {}
    devices = {}
    for name, d in doc["devices"].items():
        if not isinstance(d, dict) or not isinstance(d.get("ops"), list):
            raise ConfigError(f"device {name!r}: needs an 'ops:' list", path=p)
        src = sources.get(d.get("source"), {})
        if not src:
            raise ConfigError(f"device {name!r}: unknown source {d.get('source')!r}", path=p,
                              fix="add it under 'sources:' with repo, path and revision")
        devices[name] = NpuDevice(name=name, ops=frozenset(map(str, d["ops"])),
                                  needs_quantized=bool(d.get("needs_quantized")),
                                  source=f"{src.get('repo')}/{src.get('path')}@{src.get('revision')}",
                                  note=str(d.get("note") or ""))
    fusions = tuple(Fusion(op=f["op"], after=frozenset(f.get("after") or ()),
                           becomes=f.get("becomes"), pass_name=f.get("pass", ""))
                    for f in doc.get("fusions") or [])
    removed = {str(r["op"]): str(r.get("pass", "")) for r in doc.get("removed_at_inference") or []
               if isinstance(r, dict) and r.get("op")}
    table = NpuOps(devices=devices, ignore=frozenset(doc.get("ignore") or ()), fusions=fusions,
                   aliases={str(k): str(v) for k, v in (doc.get("pir_aliases") or {}).items()},
                   removed=removed)
    _NPU_CACHE[p] = table
    return table


def partition(raw_ops: Iterable[str], nnadapter_device: str, table: NpuOps | None = None) -> R.Fallback:
    """Which ops fall back to the CPU on one NNAdapter device, and how many NPU subgraphs result.

    An approximation of NNAdapter's subgraph pass: ops are walked in program order (after the
    fusions `opt` applies first), and a boundary is counted at each supported/unsupported
    transition. The real partitioner works on the data-flow graph, so parallel branches can give
    fewer (or more) subgraphs than this count.
    """
    table = table or load_npu_ops()
    dev = table.devices.get(nnadapter_device)
    if dev is None:
        raise ConfigError(f"no NPU op list for NNAdapter device {nnadapter_device!r}",
                          path=str(NPU_OPS_PATH), fix="known: " + ", ".join(table.devices))
    seq: list[str] = []
    fused: dict[str, int] = {}
    removed: dict[str, int] = {}
    for raw in raw_ops:
        op = table.normalise(raw)
        if op is None:
            continue
        if op in table.removed:  # deleted by an inference pass: neither NPU op nor fallback
            key = f"{op} ({table.removed[op]})"
            removed[key] = removed.get(key, 0) + 1
            continue
        fusion = next((f for f in table.fusions if f.op == op and seq and seq[-1] in f.after), None)
        if fusion is not None:
            fused[f"{op}->{fusion.becomes or seq[-1]} ({fusion.pass_name})"] = fused.get(
                f"{op}->{fusion.becomes or seq[-1]} ({fusion.pass_name})", 0) + 1
            if fusion.becomes:
                seq[-1] = fusion.becomes
            continue
        seq.append(op)
    fallback: dict[str, int] = {}
    subgraphs = cpu_segments = supported = 0
    prev: bool | None = None
    for op in seq:
        ok = op in dev.ops
        if ok:
            supported += 1
        else:
            fallback[op] = fallback.get(op, 0) + 1
        if ok != prev:
            if ok:
                subgraphs += 1
            else:
                cpu_segments += 1
        prev = ok
    return R.Fallback(nnadapter_device=nnadapter_device, supported_ops=supported,
                      fallback_ops=fallback, subgraphs=subgraphs, cpu_segments=cpu_segments,
                      fused=fused, needs_quantized=dev.needs_quantized, source=dev.source,
                      removed=removed)


# ------------------------------------------------------------------------------- model facts
def op_sequence(model_file: str | Path) -> list[str]:
    """Op names of a program in program order (PIR names kept with their dialect prefix)."""
    path = Path(model_file)
    if path.suffix.lower() == ".json":
        from lab.models import analysis  # bounded, type-checked walk: a model file is input
        return analysis.pir_op_names(path)
    from lab.models import analysis  # legacy protobuf: the analysis module owns the ProgramDesc reader
    return [_identity_scale(op) for op in analysis._parse_pdmodel(path).ops]


def _identity_scale(op: Any) -> str:
    """`identity_scale` for a scale op that multiplies by 1 and adds 0 (the inference passes
    delete it; npu_ops.yaml `removed_at_inference`), else the op type."""
    if op.type == "scale":
        a = op.attrs or {}
        try:
            if float(a.get("scale", 0)) == 1.0 and float(a.get("bias", 1)) == 0.0:
                return "identity_scale"
        except (TypeError, ValueError):
            pass
    return op.type


@dataclass
class _Model:
    facts: R.ModelFacts
    ops: list[str] | None
    notes: list[str] = field(default_factory=list)
    shas: tuple[str, ...] | None = None  # sha256 (+ legacy_sha256) of the artifact as built now


def model_facts(model_id: str, models_root: str | Path = "models") -> _Model:
    """Static facts of a built/registered model (ConfigError when it is not there)."""
    from lab.models import analysis
    from lab.models.zoo import load_artifact
    art = load_artifact(model_id, root=models_root)
    a = analysis.analysis_for(art)
    notes: list[str] = []
    dyn = tuple(f"{name}[{k}]" for name, idx in a.dynamic_dims.items() for k in idx)
    share, share_note = a.conv_matmul_share, "(conv + matmul MACs) / (all MACs + other element ops)"
    if a.unknown_shape_ops:
        share_note += f"; {a.unknown_shape_ops} compute op(s) with unknown shapes not counted"
    quant = None if a.quantization is None else a.quantization != "none"
    macs = art.flops if art.flops is not None else (a.macs_total or None)
    ops = None
    try:
        ops = op_sequence(art.pdmodel_path if art.json_path is None else art.json_path)
    except (LabError, OSError) as exc:
        notes.append(f"op order unavailable ({exc}); NPU fallback not computed")
    facts = R.ModelFacts(model=model_id, macs=macs, params=art.params or a.params,
                         dense_share=share, dense_share_note=share_note, dynamic_dims=dyn,
                         sequence_ops=tuple(a.sequence_ops),
                         data_dependent_ops=tuple(a.data_dependent_ops), quantized=quant,
                         quant_note=a.quantization + (f" ({', '.join(a.quant_ops)})"
                                                      if a.quant_ops else ""),
                         domain=art.tags.get("domain"))
    shas = tuple(h for h in (art.sha256, art.legacy_sha256) if h)
    try:  # int8 jobs of this model run <model>-int8 (lab.models.zoo.artifact_id): same model
        from lab.models.zoo import artifact_id
        q = load_artifact(artifact_id(model_id, "int8"), models_root) if art.parent is None else None
        shas += tuple(h for h in ((q.sha256, q.legacy_sha256) if q else ()) if h)
    except ConfigError:
        pass
    return _Model(facts, ops, notes, shas or None)


# ------------------------------------------------------------------------------ device facts
@dataclass(frozen=True)
class DeviceFacts:
    id: str
    chip: str | None
    status: str  # inventory | imported | disabled | unreachable
    has_aipu: bool | None
    aipu_name: str | None
    nnadapter: tuple[str, ...]
    has_gpu: bool
    tops: dict[str, float]  # precision -> rated dense TOPS (stated figures only)
    tops_source: dict[str, str]
    note: str = ""
    nnadapter_from: str = "catalog"  # inventory (its nnadapter_libs) | catalog


_CATALOG: list = []


def _catalog():
    """The chip catalog, parsed once per process (the inventory check and chip facts share it)."""
    if not _CATALOG:
        from lab.devices.catalog import load_catalog
        _CATALOG.append(load_catalog())
    return _CATALOG[0]


def _chip_info(chip_id: str | None) -> tuple[bool | None, str | None, tuple[str, ...],
                                                dict[str, float], dict[str, str], str, bool]:
    if not chip_id:
        return None, None, (), {}, {}, "no chip known for this device", False
    try:
        chip = _catalog().get(chip_id)
    except ConfigError as exc:
        return None, None, (), {}, {}, f"chip {chip_id!r} not in the catalog ({exc})", False
    acc = chip.accelerator
    has = acc.kind == "npu" or acc.processor == "aipu"
    tops = {p: f.typical for p, f in acc.tops.items() if f.typical is not None}
    srcs = {p: f"{f.source} [{f.tag()}]" for p, f in acc.tops.items() if f.typical is not None}
    note = ""
    if has and not tops:
        notes = sorted({f.note for f in acc.tops.values() if f.note})
        note = f"chip {chip_id!r}: no rated TOPS" + (f" ({'; '.join(notes)})" if notes else "")
    return has, acc.name, tuple(chip.nnadapter), tops, srcs, note, acc.kind == "gpu"


def device_facts(device_id: str, devices: list, rows: list[ResultRow]) -> DeviceFacts:
    """Where the device is known from: the inventory, else imported/stored rows; else ConfigError."""
    inv = next((d for d in devices if d.id == device_id), None)
    dev_rows = [r for r in rows if r.device == device_id]
    if inv is None and not dev_rows:
        known = sorted({d.id for d in devices} | {r.device for r in rows if r.device})
        import difflib
        close = difflib.get_close_matches(device_id, known, n=1)
        raise ConfigError(f"unknown device {device_id!r}: not in the inventory nor in any stored "
                          "or imported result", fix=(f"did you mean {close[0]!r}? " if close else "")
                          + "known: " + (", ".join(known) or "none"))
    if inv is not None:
        chip = inv.chip
        status, note = "inventory", ""
        if not inv.enabled:
            status, note = "disabled", f"disabled in {inv.source}:{inv.line}"
        else:
            last = sorted((r for r in dev_rows if r.finished_at), key=lambda r: r.finished_at)
            if last and last[-1].status != "ok" and any(
                    w in (last[-1].error or "").lower()
                    for w in ("unreachable", "unhealthy", "timed out", "connection")):
                status, note = "unreachable", f"last job failed: {last[-1].error}"
    else:
        chips = sorted({r.chip for r in dev_rows if r.chip})
        chip = chips[0] if chips else None
        status, note = "imported", "known only from stored/imported results"
    has, name, nna, tops, srcs, cnote, gpu = _chip_info(chip)
    origin = "catalog"
    if inv is not None and inv.nnadapter_libs:
        # the NPU library this device is set up with decides the NNAdapter path, not the model
        nna, origin = tuple(inv.nnadapter_libs), "inventory"
    elif inv is not None and nna and has:
        cnote = "; ".join(x for x in (cnote, f"no nnadapter_libs configured in {inv.source}:"
                                      f"{inv.line}; NPU path taken from the chip catalog "
                                      f"({nna[0]})") if x)
    return DeviceFacts(device_id, chip, status, has, name, nna, gpu, tops, srcs,
                       "; ".join(x for x in (note, cnote) if x), origin)


# ----------------------------------------------------------------------------- measured sides
def _side(r: ResultRow, candidates: int = 1) -> R.Side:
    return R.Side(processor=r.processor or "", backend=r.backend or "", precision=r.precision,
                  p50_ms=r.latency_ms, ci_low_ms=r.ci_low_ms, ci_high_ms=r.ci_high_ms,
                  load_ms=r.load_ms, first_ms=r.first_ms, energy_mj_per_inf=r.energy_per_inf_mj,
                  power_w=r.power_w, peak_rss_mb=r.peak_rss_mb, source=r.source or "lab",
                  job_id=r.job_id or "", campaign=r.campaign or "", candidates=candidates,
                  agree_ok=r.agree_ok, agree_cosine_min=r.agree_cosine_min, agree_top1=r.agree_top1,
                  accuracy_top1=r.accuracy_top1, quality=classify(r).reasons)


def measured_rows(rows: list[ResultRow], device: str, model: str, *,
                  job_ids: Iterable[str] | None = None, model_shas: Iterable[str] | None = None,
                  notes: list[str] | None = None) -> dict[str, tuple[ResultRow, int]]:
    """The row that speaks for each processor class, and how many it was chosen from.

    Fastest ok row per processor class for this model on this device (lab or imported); ties go
    to the most recent run. The advisor and the report's CPU-vs-AIPU table both choose this way.
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
    from lab.devices.backends import BACKENDS
    from lab.decide.frameworks import OTHER_RUNTIMES
    b = BACKENDS.get(r.backend or "")
    return b is not None and b.runtime in OTHER_RUNTIMES


def framework_note(rows: list[ResultRow], device: str, model: str,
                   store_path: str | Path | None) -> str | None:
    """Information, not a reason: another runtime (ONNX Runtime) measurably faster than Paddle on
    this device (lab.decide.frameworks; needs the stored samples for the CI of the ratio)."""
    mine = [r for r in rows if r.device == device and r.model == model and r.ok]
    if store_path is None or not any(_other_framework(r) for r in mine) or not Path(store_path).exists():
        return None
    from lab.decide.frameworks import faster_runtime_note
    from lab.results.store import Store
    store = Store(store_path, readonly=True)
    try:
        samples = store.all_samples([r.job_id for r in mine])
    finally:
        store.close()
    return faster_runtime_note(mine, samples, device, model)


def measured_sides(rows: list[ResultRow], device: str, model: str, *,
                   job_ids: Iterable[str] | None = None, model_shas: Iterable[str] | None = None,
                   notes: list[str] | None = None) -> dict[str, R.Side]:
    """The measured side of each processor class (`measured_rows`), as the rules read it.

    Why the filters: a verdict must quote the model as it is built now, and after `--measure`
    exactly the jobs just run, not a faster row of an older build or of another campaign.
    `job_ids`: use only these jobs. `model_shas`: the artifact's sha256 (and legacy_sha256);
    rows with another model hash are left out, rows without one (imports) are kept. Each side
    says how many configurations it was chosen from; `notes` receives what was left out.
    """
    chosen = measured_rows(rows, device, model, job_ids=job_ids, model_shas=model_shas, notes=notes)
    return {proc: _side(r, candidates=n) for proc, (r, n) in chosen.items()}


# --------------------------------------------------------------------------------- estimate
def estimate(facts: R.ModelFacts, dev: DeviceFacts,
             nnadapter: Iterable[str] | None = None) -> R.Estimate | None:
    """AIPU steady latency from rated TOPS: 2 x MACs / (TOPS x utilisation). Low confidence.

    `nnadapter`: the NNAdapter device(s) the answer uses (default: the device's list). On an
    int8-only NPU an fp32 model gets an int8 figure marked `assumes_quantized`: it is what the
    model would reach once quantised, not what it runs at now.
    """
    if not dev.has_aipu:
        return None
    util = R.ASSUMED_UTILISATION
    int8_npu = any(d in R.INT8_ONLY_NPUS for d in (dev.nnadapter if nnadapter is None else nnadapter))
    if facts.quantized or int8_npu:
        order = ("int8", "int16", "fp16")
    else:
        order = ("fp16", "int8")  # Kirin-style NPUs run fp32 models in fp16
    prec = next((p for p in order if p in dev.tops), None)
    if facts.macs is None:
        return R.Estimate(None, prec, dev.tops.get(prec) if prec else None, util,
                          "model MACs unknown")
    if prec is None:
        return R.Estimate(None, None, None, util, f"chip {dev.chip!r} states no TOPS figure")
    tops = dev.tops[prec]
    ms = 2.0 * facts.macs / (tops * 1e12 * util) * 1e3
    note = (f"2 x {facts.macs:,} MACs / ({tops:g} {prec} TOPS x {util:.0%} assumed utilisation); "
            f"TOPS from {dev.tops_source.get(prec, '?')}")
    assumes = prec == "int8" and not facts.quantized
    if assumes and int8_npu and facts.quantized is False:
        note += ("; assumes an int8-quantised model, which this model is not (fp32): it does not "
                 "run on this NPU until quantised")
    elif assumes:
        note += "; int8 TOPS assume the model gets quantised"
    return R.Estimate(ms, prec, tops, util, note, assumes_quantized=assumes)


# ------------------------------------------------------------------------------------ answer
@dataclass
class Advice:
    model: str
    device: str
    chip: str | None
    device_status: str
    verdict: str  # cpu | aipu | gpu | either (the set follows the device: `accelerator`)
    confidence: str  # high | medium | low
    reasons: list[R.Contribution]
    speedup: float | None  # cpu p50 / aipu p50 (> 1: AIPU faster)
    speedup_source: str | None  # measured | estimate
    break_even: BreakEven | None  # lab.decide.tradeoffs: where CPU and AIPU cross in total time
    run_ids: list[str]
    numbers: dict[str, Any]
    fallback: R.Fallback | None
    fallback_all: list[R.Fallback]
    estimate: R.Estimate | None
    options: R.Options
    notes: list[str] = field(default_factory=list)
    measured_fallback: R.MeasuredFallback | None = None  # the AIPU job's op profile, where it has one
    accelerator: str | None = "aipu"  # aipu | gpu | None (CPU only): what the question compares
    confidence_reasons: list[str] = field(default_factory=list)  # why confidence is not higher

    @property
    def verdicts(self) -> tuple[str, ...]:
        acc = self.accelerator
        if acc is None:
            return ("cpu",)
        extra = ("gpu",) if acc == "aipu" and self.numbers.get("gpu") else ()
        return ("cpu", acc, *extra, "either")

    @property
    def break_even_inferences(self) -> int | None:
        return None if self.break_even is None else self.break_even.inferences

    def to_dict(self) -> dict[str, Any]:
        def fb(f: R.Fallback | None) -> dict[str, Any] | None:
            if f is None:
                return None
            return {"nnadapter_device": f.nnadapter_device, "supported_ops": f.supported_ops,
                    "fallback_ops": dict(f.fallback_ops), "subgraphs": f.subgraphs,
                    "cpu_segments": f.cpu_segments, "fused_by_opt": dict(f.fused),
                    "removed_at_inference": dict(f.removed), "source": f.source}
        est = None
        if self.estimate is not None:
            e = self.estimate
            est = {"aipu_ms": _r(e.aipu_ms), "precision": e.precision, "tops": e.tops,
                   "assumed_utilisation": e.utilisation, "note": e.note, "confidence": "low",
                   "assumes_quantized": e.assumes_quantized}
        return {
            "schema": ADVICE_SCHEMA, "model": self.model, "device": self.device, "chip": self.chip,
            "device_status": self.device_status, "verdict": self.verdict,
            "confidence": self.confidence, "confidence_reasons": list(self.confidence_reasons),
            "accelerator": self.accelerator, "verdicts": list(self.verdicts), "reasons": [c.to_dict() for c in self.reasons],
            "speedup": _r(self.speedup), "speedup_source": self.speedup_source,
            "break_even_inferences": self.break_even_inferences,
            "break_even": None if self.break_even is None else self.break_even.to_dict(),
            "run_ids": list(self.run_ids),
            "numbers": self.numbers, "npu_fallback": fb(self.fallback),
            "npu_fallback_all": [fb(f) for f in self.fallback_all], "estimate": est,
            "options": {"latency_budget_ms": self.options.latency_budget_ms,
                        "first_inference_budget_ms": self.options.first_inference_budget_ms,
                        "no_preload": self.options.no_preload, "busy_cpu": self.options.busy_cpu,
                        "power_budget_w": self.options.power_budget_w},
            "notes": list(self.notes),
            "npu_fallback_measured": None if self.measured_fallback is None else {
                "job_id": self.measured_fallback.job_id, "cpu_time_share": _r(self.measured_fallback.cpu_share),
                "cpu_ops_share": {k: _r(v) for k, v in self.measured_fallback.cpu_ops.items()},
                "iterations": self.measured_fallback.iterations, "source": self.measured_fallback.source},
        }


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(v, nd)


def _side_numbers(s: R.Side | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"backend": s.backend, "precision": s.precision, "p50_ms": s.p50_ms,
            "ci_low_ms": s.ci_low_ms, "ci_high_ms": s.ci_high_ms, "load_ms": s.load_ms,
            "first_ms": s.first_ms, "load_plus_first_ms": s.start_ms,
            "energy_mj_per_inf": s.energy_mj_per_inf, "power_w": s.power_w,
            "peak_rss_mb": s.peak_rss_mb, "source": s.source, "job_id": s.job_id,
            "campaign": s.campaign, "candidates": s.candidates, "selection": s.selection,
            "agree_ok": s.agree_ok, "agree_cosine_min": s.agree_cosine_min,
            "accuracy_top1": s.accuracy_top1, "quality": list(s.quality)}


LEVELS = ("low", "medium", "high")


def _confidence(contribs: list[R.Contribution], x: R.AdviceInput,
                margin: float) -> tuple[str, list[str]]:
    """How far to trust the verdict, and why it is not higher.

    Base: `high` when CPU and accelerator were both measured by the lab with CIs (or the chip has
    nothing to offload to), `medium` with imports or without CIs, or with one side measured and a
    clear margin, else `low`. Data quality lowers it one step (lab.results.quality.classify: not
    converged, wide CI, throttled, busy host) and names each row's problem; a verdict resting on
    the rated-TOPS estimate alone is `low`.
    """
    sides = {p: s for p, s in (("cpu", x.cpu), ("aipu", x.aipu), ("gpu", x.gpu)) if s is not None}
    why: list[str] = []
    if x.accel is None or any(c.blocking and c.rule == "no_accelerator" for c in contribs):
        return "high", why
    cpu, other = x.cpu, x.acc
    if cpu is not None and other is not None:
        level = "high" if (cpu.has_ci and other.has_ci and not cpu.imported
                           and not other.imported) else "medium"
        if level == "medium":
            why.append("a side is imported or has no CI")
    elif sides and margin >= 2.0:
        level = "medium"
        why.append(f"only {', '.join(p.upper() for p in sides)} measured")
    else:
        level = "low"
        why.append("nothing measured for both CPU and " + R.ACCEL_NAME[x.accel])
    if other is None and x.estimate is not None and x.estimate.aipu_ms is not None \
            and any(c.rule == "estimate" and c.direction != "neutral" for c in contribs):
        level = "low"
        why.append(f"the {R.ACCEL_NAME[x.accel]} side is an estimate from rated TOPS, not a "
                   "measurement")
    flagged = [(p, s.quality) for p, s in sides.items() if s.quality]
    if flagged:
        level = LEVELS[max(0, LEVELS.index(level) - 1)]
        why += [f"{p.upper()} row {s_job(sides[p])}: {'; '.join(q)}" for p, q in flagged]
    return level, why


def s_job(s: R.Side) -> str:
    return s.job_id or "?"


def advise(model_id: str, device_id: str, *, options: R.Options | None = None,
           rows: list[ResultRow] | None = None, devices: list | None = None,
           models_root: str | Path = "models", store_path: str | Path | None = None,
           devices_path: str | Path | None = None, job_ids: Iterable[str] | None = None,
           op_profiles: dict[str, list] | None = None) -> Advice:
    """The answer for one model on one device.

    `rows` are result records (`Store.results()`); when None they are read from `store_path`.
    `devices` is the inventory; when None it is read from `devices_path` (missing file = empty).
    `job_ids`: answer from these jobs only (`--measure` passes the jobs it just ran).
    `op_profiles`: job id -> op profile rows (`Store.op_profiles`); when None they are read from
    `store_path` for the AIPU job, if any.
    """
    options = options or R.Options()
    if rows is None:
        rows = load_rows(store_path)
    if devices is None:
        devices = load_inventory(devices_path)
    dev = device_facts(device_id, devices, rows)
    notes: list[str] = [dev.note] if dev.note else []
    try:
        m = model_facts(model_id, models_root)
        notes += m.notes
    except ConfigError as exc:
        if not any(r.model == model_id for r in rows):
            raise
        m = _Model(R.ModelFacts(model=model_id, analysed=False), None)
        notes.append(f"model not available for static analysis ({exc}); answered from "
                     "measurements only")
    sides = measured_sides(rows, device_id, model_id, job_ids=job_ids, model_shas=m.shas,
                           notes=notes)
    if dev.status in ("disabled", "unreachable"):
        notes.append(f"device {dev.status}: answered from the chip's catalog entry and the model "
                     "analysis" + (" plus earlier stored measurements" if sides else ""))
    fallbacks: list[R.Fallback] = []
    if m.ops is not None and dev.has_aipu is not False:
        table = load_npu_ops()
        cands = [d for d in dev.nnadapter if d in table.devices]
        aipu_backend = sides["aipu"].backend if "aipu" in sides else None
        if aipu_backend:
            from lab.devices.backends import BACKENDS
            b = BACKENDS.get(aipu_backend)
            if b is not None and b.nnadapter_device in table.devices:
                cands = [b.nnadapter_device] + [c for c in cands if c != b.nnadapter_device]
        fallbacks = [partition(m.ops, d, table) for d in cands]
    # the path that is measured, else the device's configured (inventory) or first catalog path:
    # the same NPU for every model, never the one that happens to suit this model best
    fallback = fallbacks[0] if fallbacks else None
    used = (fallback.nnadapter_device,) if fallback else dev.nnadapter[:1]
    est = estimate(m.facts, dev, used) if m.facts.analysed else None
    x = R.AdviceInput(model=m.facts, device=device_id, chip=dev.chip, has_aipu=dev.has_aipu,
                      aipu_name=dev.aipu_name, has_gpu=dev.has_gpu, options=options, cpu=sides.get("cpu"),
                      aipu=sides.get("aipu"), gpu=sides.get("gpu"), fallback=fallback,
                      estimate=est, nnadapter_devices=used,
                      measured_fallback=measured_fallback(sides.get("aipu"), op_profiles, store_path))
    contribs = R.evaluate(x)
    verdict, margin = R.decide(contribs, x)
    confidence, conf_why = _confidence(contribs, x, margin)
    speedup, sp_src = None, None
    cpu, acc = sides.get("cpu"), x.acc
    if cpu and acc and cpu.p50_ms and acc.p50_ms:
        speedup, sp_src = cpu.p50_ms / acc.p50_ms, "measured"
    elif x.accel == "aipu" and cpu and cpu.p50_ms and est and est.aipu_ms and not est.assumes_quantized:
        speedup, sp_src = cpu.p50_ms / est.aipu_ms, "estimate"
    if not sides:
        notes.append("nothing measured for this model on this device: static rules and a "
                     "TOPS estimate only (run `lab advise ... --measure`)")
    fw = framework_note(rows, device_id, model_id, store_path)
    if fw:
        notes.append(fw)
    return Advice(model=model_id, device=device_id, chip=dev.chip, device_status=dev.status,
                  verdict=verdict, confidence=confidence, confidence_reasons=conf_why,
                  accelerator=x.accel,
                  reasons=contribs, speedup=speedup, speedup_source=sp_src,
                  break_even=R.break_even(cpu, acc, x.accel) if cpu and acc else None,
                  run_ids=sorted({s.job_id for s in sides.values() if s.job_id}),
                  numbers={p: _side_numbers(sides.get(p)) for p in ("cpu", "aipu", "gpu")},
                  fallback=fallback, fallback_all=fallbacks, estimate=est, options=options,
                  notes=notes, measured_fallback=x.measured_fallback)


def advise_campaign(campaign: str, *, options: R.Options | None = None,
                    store_path: str | Path | None = None, rows: list[ResultRow] | None = None,
                    devices: list | None = None, devices_path: str | Path | None = None,
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
    return [advise(m, d, options=options, rows=all_rows, devices=devices, models_root=models_root,
                   store_path=store_path, op_profiles=op_profiles)
            for m, d in pairs]


def measured_fallback(aipu: R.Side | None, op_profiles: dict[str, list] | None,
                      store_path: str | Path | None) -> R.MeasuredFallback | None:
    """The CPU part of the AIPU job's op profile (lab.results.opprofile rows), None without one or when
    the profiler does not say where each op ran."""
    if aipu is None or not aipu.job_id:
        return None
    if op_profiles is None:
        if store_path is None or not Path(store_path).exists():
            return None
        from lab.results.store import Store
        store = Store(store_path)
        try:
            rows = store.op_profile(aipu.job_id)
        finally:
            store.close()
    else:
        rows = op_profiles.get(aipu.job_id) or []
    if not rows or all(r.processor is None for r in rows):
        return None
    from lab.results.opprofile import processor_shares
    return R.MeasuredFallback(job_id=aipu.job_id, cpu_ops=processor_shares(rows, "cpu"),
                              iterations=rows[0].iterations, source=rows[0].source)


# ------------------------------------------------------------------------------- loading helpers
def load_rows(store_path: str | Path | None) -> list[ResultRow]:
    """Result records of every campaign; an absent store is empty (and is not created)."""
    if store_path is None or not Path(store_path).exists():
        return []
    from lab.results.store import Store
    store = Store(store_path, readonly=True)
    try:
        return store.results()
    finally:
        store.close()


def load_inventory(path: str | Path | None) -> list:
    if path is None or not Path(path).exists():
        return []
    from lab.devices.inventory import load_devices
    try:
        chip_ids = set(_catalog().ids())
    except ConfigError:
        chip_ids = None  # let the inventory report the catalog problem itself
    return load_devices(path, chip_ids=chip_ids)


# ------------------------------------------------------------------------------------- text
def render_text(a: Advice) -> str:
    ms = R._fmt
    head = (f"{a.model} on {a.device} ({a.chip or 'chip unknown'}; {a.device_status}): "
            f"{a.verdict.upper()}  [confidence {a.confidence}]")
    lines = [head]
    for p in ("cpu", "aipu", "gpu"):
        n = a.numbers.get(p)
        if n:
            ci = (f" [{ms(n['ci_low_ms'])}, {ms(n['ci_high_ms'])}]"
                  if n["ci_low_ms"] is not None else " (no CI)")
            e = ("" if n["energy_mj_per_inf"] is None
                 else f", {R.fmt_num(n['energy_mj_per_inf'])} mJ/inf")
            lines.append(f"  {p.upper():<4} p50 {ms(n['p50_ms'])}{ci}, load+first "
                         f"{ms(n['load_plus_first_ms'])}{e}  ({n['backend']}, {n['selection']})")
    acc = (a.accelerator or "aipu").upper()
    if a.confidence_reasons and a.confidence != "high":
        lines.append(f"  confidence {a.confidence}: " + "; ".join(a.confidence_reasons))
    if a.speedup is not None:
        lines.append(f"  speedup (CPU/{acc} steady): {a.speedup:.2f}x ({a.speedup_source})")
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
