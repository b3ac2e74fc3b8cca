"""The facts `lab advise` rests on, gathered from the model, the chip catalog, the inventory and
the store, before any rule runs.

Why a module of its own: the rules (`lab.decide.advice_rules`) read typed records only, and each
fact says where it came from: the model's static analysis (MACs, dense share, dynamic shapes,
quantisation) and op order, the device's chip (NPU, rated TOPS, NNAdapter path) from the inventory
or from stored/imported rows, a low-confidence AIPU latency estimate from rated TOPS, and the CPU
part of a measured AIPU run's op profile. Nothing here touches a device or the scheduler.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from lab.core.errors import ConfigError, LabError
from lab.core.records import Device, ResultRow
from lab.decide.advice_records import Estimate, MeasuredFallback, ModelFacts, Side
from lab.decide.advice_rules import ASSUMED_UTILISATION, INT8_ONLY_NPUS
from lab.decide.npu_partition import op_sequence, per_call_floor
from lab.devices.catalog import Catalog, load_catalog
from lab.devices.inventory import load_devices
from lab.models.analysis import analysis_for
from lab.models.artifact import load_artifact
from lab.models.zoo import artifact_id
from lab.results.opprofile import processor_shares
from lab.results.store import Store


# ------------------------------------------------------------------------------- model facts
@dataclass
class ModelInfo:
    """The model's static facts, and what the advisor needs beside them."""

    facts: ModelFacts
    ops: list[str] | None  # op names in program order (npu_partition.op_sequence); None: unreadable
    notes: list[str] = field(default_factory=list)
    shas: tuple[str, ...] | None = None  # sha256 (+ legacy_sha256) of the artifact as built now


def model_facts(model_id: str, models_root: str | Path = "models") -> ModelInfo:
    """Static facts of a built/registered model (ConfigError when it is not there)."""
    art = load_artifact(model_id, root=models_root)
    a = analysis_for(art)
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
    facts = ModelFacts(model=model_id, macs=macs, params=art.params or a.params,
                       dense_share=share, dense_share_note=share_note, dynamic_dims=dyn,
                       sequence_ops=tuple(a.sequence_ops),
                       data_dependent_ops=tuple(a.data_dependent_ops), quantized=quant,
                       quant_note=a.quantization + (f" ({', '.join(a.quant_ops)})"
                                                    if a.quant_ops else ""),
                       domain=art.tags.get("domain"))
    shas = tuple(h for h in (art.sha256, art.legacy_sha256) if h)
    try:  # int8 jobs of this model run <model>-int8 (lab.models.zoo.artifact_id): same model
        q = load_artifact(artifact_id(model_id, "int8"), models_root) if art.parent is None else None
        shas += tuple(h for h in ((q.sha256, q.legacy_sha256) if q else ()) if h)
    except ConfigError:
        pass
    return ModelInfo(facts, ops, notes, shas or None)


# ------------------------------------------------------------------------------ device facts
@dataclass(frozen=True)
class DeviceFacts:
    """What the advice needs to know about the device: its chip, NPU/GPU, TOPS and status."""

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


_CATALOG: list[Catalog] = []


def _catalog() -> Catalog:
    """The chip catalog, parsed once per process (the inventory check and chip facts share it)."""
    if not _CATALOG:
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


def device_facts(device_id: str, devices: list[Device], rows: list[ResultRow]) -> DeviceFacts:
    """Where the device is known from: the inventory, else imported/stored rows; else ConfigError."""
    inv = next((d for d in devices if d.id == device_id), None)
    dev_rows = [r for r in rows if r.device == device_id]
    if inv is None and not dev_rows:
        known = sorted({d.id for d in devices} | {r.device for r in rows if r.device})
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
    if inv is not None and inv.nnadapter_libs:
        # the NPU library this device is set up with decides the NNAdapter path, not the model
        nna = tuple(inv.nnadapter_libs)
    elif inv is not None and nna and has:
        cnote = "; ".join(x for x in (cnote, f"no nnadapter_libs configured in {inv.source}:"
                                      f"{inv.line}; NPU path taken from the chip catalog "
                                      f"({nna[0]})") if x)
    return DeviceFacts(device_id, chip, status, has, name, nna, gpu, tops, srcs,
                       "; ".join(x for x in (note, cnote) if x))


# --------------------------------------------------------------------------------- estimate
def estimate(facts: ModelFacts, dev: DeviceFacts,
             nnadapter: Iterable[str] | None = None) -> Estimate | None:
    """AIPU steady latency from rated TOPS: 2 x MACs / (TOPS x utilisation). Low confidence.

    `nnadapter`: the NNAdapter device(s) the answer uses (default: the device's list). On an
    int8-only NPU an fp32 model gets an int8 figure marked `assumes_quantized`: it is what the
    model would reach once quantised, not what it runs at now. A compute time below the NPU's
    fixed per-call cost (`npu_partition.per_call_floor`) is not a figure: `aipu_ms` None,
    `below_floor` True, and the note says so instead of quoting noise to six digits.
    """
    if not dev.has_aipu:
        return None
    util = ASSUMED_UTILISATION
    int8_npu = any(d in INT8_ONLY_NPUS for d in (dev.nnadapter if nnadapter is None else nnadapter))
    if facts.quantized or int8_npu:
        order = ("int8", "int16", "fp16")
    else:
        order = ("fp16", "int8")  # Kirin-style NPUs run fp32 models in fp16
    prec = next((p for p in order if p in dev.tops), None)
    if facts.macs is None:
        return Estimate(None, prec, dev.tops.get(prec) if prec else None, util,
                        "model MACs unknown")
    if prec is None:
        return Estimate(None, None, None, util, f"chip {dev.chip!r} states no TOPS figure")
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
    floor, basis = per_call_floor()
    if floor is not None and ms < floor:
        return Estimate(None, prec, tops, util,
                        f"the compute alone ({note}) is below the NPU's ~{floor:g} ms per-call "
                        f"floor: not a figure (the floor is {basis.split(':')[0]}, an order of "
                        "magnitude: lab/decide/data/npu_ops.yaml)", per_call_floor_ms=floor,
                        below_floor=True,
                        assumes_quantized=assumes)
    return Estimate(ms, prec, tops, util, note, assumes_quantized=assumes, per_call_floor_ms=floor)


def measured_fallback(aipu: Side | None, op_profiles: dict[str, list] | None,
                      store_path: str | Path | None) -> MeasuredFallback | None:
    """The CPU part of the AIPU job's op profile (lab.results.opprofile rows), None without one or when
    the profiler does not say where each op ran."""
    if aipu is None or not aipu.job_id:
        return None
    if op_profiles is None:
        if store_path is None or not Path(store_path).exists():
            return None
        store = Store(store_path)
        try:
            rows = store.op_profile(aipu.job_id)
        finally:
            store.close()
    else:
        rows = op_profiles.get(aipu.job_id) or []
    if not rows or all(r.processor is None for r in rows):
        return None
    return MeasuredFallback(job_id=aipu.job_id, cpu_ops=processor_shares(rows, "cpu"),
                            iterations=rows[0].iterations, source=rows[0].source)


# ------------------------------------------------------------------------------- loading helpers
def load_rows(store_path: str | Path | None) -> list[ResultRow]:
    """Result records of every campaign; an absent store is empty (and is not created)."""
    if store_path is None or not Path(store_path).exists():
        return []
    store = Store(store_path, readonly=True)
    try:
        return store.results()
    finally:
        store.close()


def load_inventory(path: str | Path | None) -> list[Device]:
    """The inventory's devices, checked against the catalog's chip ids; a missing file is empty."""
    if path is None or not Path(path).exists():
        return []
    try:
        chip_ids = set(_catalog().ids())
    except ConfigError:
        chip_ids = None  # let the inventory report the catalog problem itself
    return load_devices(path, chip_ids=chip_ids)
