"""Chip catalog: typed, sourced figures for every chip the lab can select between.

Why typed and sourced: chip selection compares brochure figures whose quality varies wildly
(vendor datasheet vs reseller page vs a guess). Every figure therefore carries its source and a
confidence tag (V, V3, D, U, E; see reference/chips.md), unknowns stay None with a note, and TOPS
are stored per precision exactly as stated (never derived by a fixed INT8:FP16 ratio, which is
wrong for Rockchip NPU v1 at 30:3:1). `lab/decide/scoring.py` reads these records; the inventory uses
`load_catalog().ids()` to reject unknown chip ids.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from lab.core.errors import ConfigError
from lab.core.yamlio import LineDict, expect_keys, load_yaml

DEFAULT_PATH = Path(__file__).parent / "data" / "chips.yaml"

CONFIDENCE_CODES = ("V", "V3", "D", "U", "E")  # how a figure is known (see chips.yaml header)
# Number formats a chip's TOPS are rated at (precision is data: never derived by a fixed ratio).
# The precisions a job runs at are lab.devices.backends.RUN_PRECISIONS, a subset of these.
TOPS_PRECISIONS = ("int4", "int8", "int16", "fp8", "fp16", "bf16", "tf32", "fp32")
PRICE_BASES = ("unit", "module", "board", "stick", "phone", "card", "cloud-hourly")
SUPPLY_KINDS = ("production-stopped", "export-control", "single-source", "other")
ACCEL_KINDS = ("npu", "gpu", "none")
# Paddle Lite NNAdapter device names (reference/paddle.md §2.2, §3)
NNADAPTER_DEVICES = ("huawei_kirin_npu", "huawei_ascend_npu", "rockchip_npu", "verisilicon_timvx",
                     "imagination_nna", "mediatek_apu", "amlogic_npu", "eeasytech_npu",
                     "android_nnapi", "cambricon_mlu", "qualcomm_qnn", "kunlunxin_xtcl")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Figure:
    """One catalog figure. `value` None means unknown (then `note` says why), never 0.

    A range (`low`/`high`) is kept as stated; `typical` is the stated value, else the midpoint.
    """

    value: Any
    unit: str | None
    source: str
    confidence: str
    verified: bool
    note: str | None = None
    low: float | None = None
    high: float | None = None

    @property
    def known(self) -> bool:
        return self.value is not None or self.low is not None or self.high is not None

    @property
    def typical(self) -> float | None:
        """A single number for scoring: the stated value, else the midpoint of low/high."""
        if isinstance(self.value, (int, float)) and not isinstance(self.value, bool):
            return float(self.value)
        if self.low is not None and self.high is not None:
            return (self.low + self.high) / 2.0
        return self.low if self.low is not None else self.high

    @property
    def best_high(self) -> float | None:
        """Largest stated figure (feasibility of a `min` constraint)."""
        vals = [v for v in (self.high, self.typical, self.low) if v is not None]
        return max(vals) if vals else None

    @property
    def best_low(self) -> float | None:
        """Smallest stated figure (feasibility of a `max` constraint)."""
        vals = [v for v in (self.low, self.typical, self.high) if v is not None]
        return min(vals) if vals else None

    def tag(self) -> str:
        return self.confidence + ("" if self.verified else ", unverified")


@dataclass(frozen=True)
class Price:
    basis: str  # unit|module|board|stick|phone|card|cloud-hourly
    currency: str
    low: float | None
    high: float | None
    estimate: bool
    source: str
    confidence: str
    verified: bool
    note: str | None = None

    @property
    def typical(self) -> float | None:
        if self.low is not None and self.high is not None:
            return (self.low + self.high) / 2.0
        return self.low if self.low is not None else self.high


@dataclass(frozen=True)
class SupplyFlag:
    """A supply risk (criterion 2) with its reason, e.g. TSMC stop for Kirin, US export rules."""

    kind: str
    note: str
    source: str
    confidence: str
    verified: bool


@dataclass(frozen=True)
class Accelerator:
    """The unit whose rated TOPS the catalog states (NPU, or GPU tensor cores)."""

    kind: str  # npu | gpu | none
    name: str | None
    processor: str | None  # aipu | gpu: the backend processor class that runs on it
    max_clock_mhz: Figure | None = None
    tops: dict[str, Figure] = field(default_factory=dict)  # dense, per precision as stated
    tops_sparse: dict[str, Figure] = field(default_factory=dict)  # 2:4 structured sparsity
    unsupported: tuple[str, ...] = ()  # precisions the accelerator cannot run at all
    note: str | None = None


@dataclass(frozen=True)
class Unit:
    """A CPU or GPU description with its max clock."""

    desc: str | None
    max_clock_mhz: Figure | None = None
    note: str | None = None


@dataclass(frozen=True)
class Memory:
    size_gb: Figure | None
    type: str | None
    bandwidth_gbs: Figure | None
    scope: str | None  # what the size describes: chip | board | phone | card | stick | host


@dataclass(frozen=True)
class VideoPath:
    desc: str | None
    channels_1080p30: Figure | None  # concurrent 1080p30 streams (derived from pixel rate: D)
    av1: Figure | None


@dataclass(frozen=True)
class Video:
    decode: VideoPath
    encode: VideoPath
    engines: str | None = None


@dataclass(frozen=True)
class ChipIdentity:
    """What a device of this chip must show (lab/devices/identity.py compares): `uname -m` values,
    core types with counts ({cortex-a35: 2}), accelerator device nodes. Each a sourced Figure whose
    value is a list or mapping; None = the catalog claims nothing (a GPU card's host CPU varies)."""

    arch: Figure | None = None
    cpus: Figure | None = None
    nodes: Figure | None = None


@dataclass(frozen=True)
class Chip:
    id: str
    name: str
    vendor: str
    family: str
    domain: tuple[str, ...]
    process_nm: Figure | None
    foundry: str | None
    supply: tuple[SupplyFlag, ...]
    cpu: Unit
    gpu: Unit
    accelerator: Accelerator
    memory: Memory
    video: Video
    isp_mp: Figure | None
    power_w: Figure | None
    launch: Figure | None
    prices: tuple[Price, ...]
    price_note: str | None
    sdk: tuple[str, ...]
    nnadapter: tuple[str, ...]
    notes: tuple[str, ...]
    line: int = 0
    identity: ChipIdentity = ChipIdentity()

    def figures(self) -> list[Figure]:
        out = [self.process_nm, self.cpu.max_clock_mhz, self.gpu.max_clock_mhz,
               self.accelerator.max_clock_mhz, self.memory.size_gb, self.memory.bandwidth_gbs,
               self.video.decode.channels_1080p30, self.video.decode.av1,
               self.video.encode.channels_1080p30, self.video.encode.av1, self.isp_mp,
               self.power_w, self.launch]
        out += list(self.accelerator.tops.values()) + list(self.accelerator.tops_sparse.values())
        return [f for f in out if f is not None]

    def sources(self) -> list[str]:
        ids = [f.source for f in self.figures()] + [p.source for p in self.prices]
        ids += [f.source for f in (self.identity.arch, self.identity.cpus, self.identity.nodes) if f is not None]
        ids += [s.source for s in self.supply]
        return sorted(set(ids))


@dataclass
class Catalog:
    chips: dict[str, Chip]
    sources: dict[str, str]  # source id -> citation
    path: str = ""

    def get(self, chip_id: str) -> Chip:
        try:
            return self.chips[chip_id]
        except KeyError:
            raise ConfigError(f"unknown chip id {chip_id!r}", path=self.path or None,
                              fix="see `lab chips` for the ids") from None

    def ids(self) -> list[str]:
        return list(self.chips)

    def __iter__(self):
        return iter(self.chips.values())

    def __len__(self) -> int:
        return len(self.chips)

    def tops(self, chip: Chip | str, precision: str) -> Figure | None:
        return tops(self.get(chip) if isinstance(chip, str) else chip, precision)


def tops(chip: Chip, precision: str) -> Figure | None:
    """Dense rated TOPS at exactly `precision` as the catalog states it, or None if not stated.

    Never derived from another precision. The Figure may have value None (e.g. Kirin: "not
    published"); its note says why.
    """
    if precision not in TOPS_PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", fix="use one of " + ", ".join(TOPS_PRECISIONS))
    return chip.accelerator.tops.get(precision)


# ---------------------------------------------------------------------------------------- loading

class _Ctx:
    def __init__(self, path: str, sources: dict[str, str]):
        self.path, self.sources = path, sources

    def err(self, msg: str, line: int, fix: str | None = None) -> ConfigError:
        return ConfigError(msg, path=self.path, line=line, fix=fix)


def _map(ctx: _Ctx, value: Any, what: str, line: int) -> LineDict:
    if not isinstance(value, dict):
        raise ctx.err(f"{what} must be a mapping, got {type(value).__name__}", line,
                      fix=f"write {what} as 'key: value' lines")
    return value  # type: ignore[return-value]


def _num(ctx: _Ctx, v: Any, what: str, line: int) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ctx.err(f"{what} must be a number, got {v!r}", line, fix="write a plain number")
    if v < 0:
        raise ctx.err(f"{what} must not be negative, got {v!r}", line)
    return float(v)


def _tagging(ctx: _Ctx, m: LineDict, what: str) -> tuple[str, str, bool]:
    src = m.get("source")
    if not src or not isinstance(src, str):
        raise ctx.err(f"{what}: missing source", m.line, fix="add 'source: <id from sources:>'")
    if src not in ctx.sources:
        raise ctx.err(f"{what}: unknown source {src!r}", m.line_of("source"),
                      fix="add it to the top-level 'sources:' table or use an existing id")
    conf = m.get("confidence")
    if conf not in CONFIDENCE_CODES:
        raise ctx.err(f"{what}: confidence must be one of {', '.join(CONFIDENCE_CODES)}, got {conf!r}",
                      m.line_of("confidence"), fix="tag it V, V3, D, U or E (reference/chips.md)")
    verified = m.get("verified", conf != "U")
    if not isinstance(verified, bool):
        raise ctx.err(f"{what}: verified must be true/false", m.line_of("verified"))
    if conf == "U" and verified:
        raise ctx.err(f"{what}: a [U] figure cannot be verified: true", m.line_of("verified"),
                      fix="set 'verified: false' or find a source and retag it")
    return src, conf, verified


_FIG_KEYS = {"value", "unit", "source", "confidence", "verified", "note", "low", "high"}


def _figure(ctx: _Ctx, raw: Any, what: str, line: int, *, numeric: bool = True,
            kind: type | None = None) -> Figure | None:
    if raw is None:
        return None
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required={"source", "confidence"}, allowed=_FIG_KEYS)
    src, conf, verified = _tagging(ctx, m, what)
    value = m.get("value")
    if kind is bool:
        if value is not None and not isinstance(value, bool):
            raise ctx.err(f"{what}: value must be true/false, got {value!r}", m.line_of("value"))
    elif numeric:
        value = _num(ctx, value, f"{what}.value", m.line_of("value"))
    low = _num(ctx, m.get("low"), f"{what}.low", m.line_of("low"))
    high = _num(ctx, m.get("high"), f"{what}.high", m.line_of("high"))
    if low is not None and high is not None and low > high:
        raise ctx.err(f"{what}: low {low} > high {high}", m.line, fix="swap them")
    note = m.get("note")
    if value is None and low is None and high is None and not note:
        raise ctx.err(f"{what}: unknown figure without a note", m.line,
                      fix="add 'note:' saying why it is unknown (unknown is null, never 0)")
    return Figure(value=value, unit=m.get("unit"), source=src, confidence=conf, verified=verified,
                  note=note, low=low, high=high)


def _str_list(ctx: _Ctx, raw: Any, what: str, line: int) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ctx.err(f"{what} must be a list of strings", line, fix="write [a, b, c]")
    return tuple(raw)


def _known_list(ctx: _Ctx, m: LineDict, key: str, what: str, noun: str,
                known: Sequence[str]) -> tuple[str, ...]:
    """`m[key]` as a list of strings, each one of `known`: an unknown one is named with its line."""
    items = _str_list(ctx, m.get(key), f"{what}.{key}", m.line_of(key))
    for x in items:
        if x not in known:
            raise ctx.err(f"{what}.{key}: unknown {noun} {x!r}", m.line_of(key),
                          fix="use one of " + ", ".join(known))
    return items


def _tops_map(ctx: _Ctx, raw: Any, what: str, line: int) -> dict[str, Figure]:
    if raw is None:
        return {}
    m = _map(ctx, raw, what, line)
    out = {}
    for prec, fig in m.items():
        if prec not in TOPS_PRECISIONS:
            raise ctx.err(f"{what}: unknown precision {prec!r}", m.line_of(prec),
                          fix="use one of " + ", ".join(TOPS_PRECISIONS))
        f = _figure(ctx, fig, f"{what}.{prec}", m.line_of(prec))
        if f is not None:
            out[prec] = f
    return out


def _unit(ctx: _Ctx, raw: Any, what: str, line: int) -> Unit:
    if raw is None:
        return Unit(desc=None)
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required=set(), allowed={"desc", "max_clock_mhz", "note"})
    return Unit(desc=m.get("desc"), max_clock_mhz=_figure(ctx, m.get("max_clock_mhz"),
                f"{what}.max_clock_mhz", m.line_of("max_clock_mhz")), note=m.get("note"))


def _accel(ctx: _Ctx, raw: Any, what: str, line: int) -> Accelerator:
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required={"kind"},
                allowed={"kind", "name", "processor", "max_clock_mhz", "tops", "tops_sparse",
                         "unsupported", "note"})
    kind = m["kind"]
    if kind not in ACCEL_KINDS:
        raise ctx.err(f"{what}.kind must be one of {', '.join(ACCEL_KINDS)}, got {kind!r}",
                      m.line_of("kind"))
    proc = m.get("processor")
    if proc not in (None, "aipu", "gpu"):
        raise ctx.err(f"{what}.processor must be aipu or gpu, got {proc!r}", m.line_of("processor"))
    unsupported = _known_list(ctx, m, "unsupported", what, "precision", TOPS_PRECISIONS)
    t = _tops_map(ctx, m.get("tops"), f"{what}.tops", m.line_of("tops"))
    both = set(unsupported) & set(p for p, f in t.items() if f.known)
    if both:
        raise ctx.err(f"{what}: precision {sorted(both)} both unsupported and rated", m.line)
    return Accelerator(kind=kind, name=m.get("name"), processor=proc,
                       max_clock_mhz=_figure(ctx, m.get("max_clock_mhz"), f"{what}.max_clock_mhz",
                                             m.line_of("max_clock_mhz")),
                       tops=t,
                       tops_sparse=_tops_map(ctx, m.get("tops_sparse"), f"{what}.tops_sparse",
                                             m.line_of("tops_sparse")),
                       unsupported=unsupported, note=m.get("note"))


def _memory(ctx: _Ctx, raw: Any, what: str, line: int) -> Memory:
    if raw is None:
        return Memory(None, None, None, None)
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required=set(),
                allowed={"size_gb", "type", "bandwidth_gbs", "scope"})
    return Memory(size_gb=_figure(ctx, m.get("size_gb"), f"{what}.size_gb", m.line_of("size_gb")),
                  type=m.get("type"),
                  bandwidth_gbs=_figure(ctx, m.get("bandwidth_gbs"), f"{what}.bandwidth_gbs",
                                        m.line_of("bandwidth_gbs")),
                  scope=m.get("scope"))


def _video_path(ctx: _Ctx, raw: Any, what: str, line: int) -> VideoPath:
    if raw is None:
        return VideoPath(None, None, None)
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required=set(), allowed={"desc", "channels_1080p30", "av1"})
    return VideoPath(desc=m.get("desc"),
                     channels_1080p30=_figure(ctx, m.get("channels_1080p30"),
                                              f"{what}.channels_1080p30", m.line_of("channels_1080p30")),
                     av1=_figure(ctx, m.get("av1"), f"{what}.av1", m.line_of("av1"), kind=bool))


def _video(ctx: _Ctx, raw: Any, what: str, line: int) -> Video:
    if raw is None:
        return Video(VideoPath(None, None, None), VideoPath(None, None, None))
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required=set(), allowed={"decode", "encode", "engines"})
    return Video(decode=_video_path(ctx, m.get("decode"), f"{what}.decode", m.line_of("decode")),
                 encode=_video_path(ctx, m.get("encode"), f"{what}.encode", m.line_of("encode")),
                 engines=m.get("engines"))


def _prices(ctx: _Ctx, raw: Any, what: str, line: int) -> tuple[Price, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.err(f"{what} must be a list of price entries", line, fix="write '- {basis: ...}'")
    out = []
    for i, item in enumerate(raw):
        w = f"{what}[{i}]"
        m = _map(ctx, item, w, line)
        expect_keys(m, path=ctx.path, what=w, required={"basis", "currency", "estimate", "source",
                    "confidence"}, allowed={"basis", "currency", "low", "high", "estimate", "source",
                                            "confidence", "verified", "note"})
        if m["basis"] not in PRICE_BASES:
            raise ctx.err(f"{w}.basis must be one of {', '.join(PRICE_BASES)}, got {m['basis']!r}",
                          m.line_of("basis"))
        if not isinstance(m["estimate"], bool):
            raise ctx.err(f"{w}.estimate must be true/false", m.line_of("estimate"))
        src, conf, verified = _tagging(ctx, m, w)
        low = _num(ctx, m.get("low"), f"{w}.low", m.line_of("low"))
        high = _num(ctx, m.get("high"), f"{w}.high", m.line_of("high"))
        if low is None and high is None:
            raise ctx.err(f"{w}: a price needs low and/or high", m.line,
                          fix="give low/high, or drop the entry and explain in price_note")
        if low is not None and high is not None and low > high:
            raise ctx.err(f"{w}: low {low} > high {high}", m.line, fix="swap them")
        out.append(Price(basis=m["basis"], currency=str(m["currency"]), low=low, high=high,
                         estimate=m["estimate"], source=src, confidence=conf, verified=verified,
                         note=m.get("note")))
    return tuple(out)


def _supply(ctx: _Ctx, raw: Any, what: str, line: int) -> tuple[SupplyFlag, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ctx.err(f"{what} must be a list", line)
    out = []
    for i, item in enumerate(raw):
        w = f"{what}[{i}]"
        m = _map(ctx, item, w, line)
        expect_keys(m, path=ctx.path, what=w, required={"kind", "note", "source", "confidence"},
                    allowed={"kind", "note", "source", "confidence", "verified"})
        if m["kind"] not in SUPPLY_KINDS:
            raise ctx.err(f"{w}.kind must be one of {', '.join(SUPPLY_KINDS)}", m.line_of("kind"))
        src, conf, verified = _tagging(ctx, m, w)
        out.append(SupplyFlag(m["kind"], m["note"], src, conf, verified))
    return tuple(out)


def _identity(ctx: _Ctx, raw: Any, what: str, line: int) -> ChipIdentity:
    """`identity:` {arch: [uname -m values], cpus: {core: count}, nodes: [/dev/...]}, each sourced."""
    if raw is None:
        return ChipIdentity()
    from lab.devices.identity import KNOWN_CORES
    m = _map(ctx, raw, what, line)
    expect_keys(m, path=ctx.path, what=what, required=set(), allowed={"arch", "cpus", "nodes"})
    figs = {k: _figure(ctx, m.get(k), f"{what}.{k}", m.line_of(k), numeric=False) for k in ("arch", "cpus", "nodes")}
    for key in ("arch", "nodes"):
        f = figs[key]
        if f is not None and (not isinstance(f.value, list) or not f.value
                              or not all(isinstance(x, str) and x for x in f.value)):
            raise ctx.err(f"{what}.{key}.value must be a non-empty list of strings", m.line_of(key))
    if figs["nodes"] is not None and not all(x.startswith("/dev/") for x in figs["nodes"].value):
        raise ctx.err(f"{what}.nodes: device nodes are paths under /dev/", m.line_of("nodes"))
    cpus = figs["cpus"]
    if cpus is not None:
        if not isinstance(cpus.value, dict) or not cpus.value:
            raise ctx.err(f"{what}.cpus.value must map core names to counts", m.line_of("cpus"),
                          fix="write {cortex-a35: 2}")
        for core, n in cpus.value.items():
            if core not in KNOWN_CORES:
                raise ctx.err(f"{what}.cpus: unknown core {core!r}", m.line_of("cpus"),
                              fix="use a name of lab/devices/identity.py ARM_PARTS, e.g. cortex-a55")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ctx.err(f"{what}.cpus: count of {core} must be a positive integer", m.line_of("cpus"))
    return ChipIdentity(arch=figs["arch"], cpus=cpus, nodes=figs["nodes"])


_CHIP_KEYS = {"id", "name", "vendor", "family", "domain", "process_nm", "foundry", "supply", "cpu",
              "gpu", "accelerator", "memory", "video", "isp_mp", "power_w", "launch", "price",
              "price_note", "sdk", "nnadapter", "notes", "identity"}


def _chip(ctx: _Ctx, m: LineDict) -> Chip:
    cid = m.get("id")
    what = f"chip {cid!r}" if cid else "chip"
    expect_keys(m, path=ctx.path, what=what, required={"id", "name", "vendor", "family", "domain",
                "accelerator"}, allowed=_CHIP_KEYS)
    if not isinstance(cid, str) or not _ID_RE.match(cid):
        raise ctx.err(f"chip id {cid!r} is not valid", m.line_of("id"),
                      fix="use lowercase letters, digits, '-' and '_' (e.g. kirin990-5g)")
    domain = _str_list(ctx, m.get("domain"), f"{what}.domain", m.line_of("domain"))
    if not domain:
        raise ctx.err(f"{what}.domain must list at least one tag", m.line_of("domain"))
    nna = _known_list(ctx, m, "nnadapter", what, "NNAdapter device", NNADAPTER_DEVICES)
    prices = _prices(ctx, m.get("price"), f"{what}.price", m.line_of("price"))
    if not prices and not m.get("price_note"):
        raise ctx.err(f"{what}: no price and no price_note", m.line,
                      fix="add a price entry or 'price_note:' saying why it is unknown")
    return Chip(
        id=cid, name=str(m["name"]), vendor=str(m["vendor"]), family=str(m["family"]), domain=domain,
        process_nm=_figure(ctx, m.get("process_nm"), f"{what}.process_nm", m.line_of("process_nm")),
        foundry=m.get("foundry"),
        supply=_supply(ctx, m.get("supply"), f"{what}.supply", m.line_of("supply")),
        cpu=_unit(ctx, m.get("cpu"), f"{what}.cpu", m.line_of("cpu")),
        gpu=_unit(ctx, m.get("gpu"), f"{what}.gpu", m.line_of("gpu")),
        accelerator=_accel(ctx, m.get("accelerator"), f"{what}.accelerator", m.line_of("accelerator")),
        memory=_memory(ctx, m.get("memory"), f"{what}.memory", m.line_of("memory")),
        video=_video(ctx, m.get("video"), f"{what}.video", m.line_of("video")),
        isp_mp=_figure(ctx, m.get("isp_mp"), f"{what}.isp_mp", m.line_of("isp_mp")),
        power_w=_figure(ctx, m.get("power_w"), f"{what}.power_w", m.line_of("power_w")),
        launch=_figure(ctx, m.get("launch"), f"{what}.launch", m.line_of("launch"), numeric=False),
        prices=prices, price_note=m.get("price_note"),
        sdk=_str_list(ctx, m.get("sdk"), f"{what}.sdk", m.line_of("sdk")),
        nnadapter=nna,
        notes=_str_list(ctx, m.get("notes"), f"{what}.notes", m.line_of("notes")),
        line=m.line, identity=_identity(ctx, m.get("identity"), f"{what}.identity", m.line_of("identity")))


_CACHE: dict[tuple, Catalog] = {}


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a chip catalog (default: the built-in lab/devices/data/chips.yaml).

    Cached per file version (path, mtime, size): the inventory, the planner and the importer
    each ask for it, and parsing it is most of a small command's time. Chips are frozen."""
    p = str(path or DEFAULT_PATH)
    try:
        st = os.stat(p)
        key = (p, st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key in _CACHE:
        return _CACHE[key]
    from lab.devices import catalog_cache  # validated catalogs kept between processes
    catalog = catalog_cache.load(p, _load_catalog, Path(__file__), (
        Figure, Price, SupplyFlag, Accelerator, Unit, Memory, VideoPath, Video, ChipIdentity, Chip, Catalog))
    if key is not None:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = catalog
    return catalog


def _load_catalog(p: str) -> Catalog:
    doc = load_yaml(p, what="chip catalog")
    if not isinstance(doc, dict):
        raise ConfigError("chip catalog must be a mapping with 'sources:' and 'chips:'", path=p, line=1)
    expect_keys(doc, path=p, what="catalog", required={"chips", "sources"},
                allowed={"schema", "sources", "chips", "notes"})
    if not isinstance(doc["sources"], dict):
        raise ConfigError("'sources' must map source ids to citations", path=p,
                          line=doc.line_of("sources"))
    ctx = _Ctx(p, {str(k): str(v) for k, v in doc["sources"].items()})
    if not isinstance(doc["chips"], list):
        raise ConfigError("'chips' must be a list", path=p, line=doc.line_of("chips"), fix="write '- id: ...'")
    chips: dict[str, Chip] = {}
    for item in doc["chips"]:
        m = _map(ctx, item, "chip", doc.line_of("chips"))
        chip = _chip(ctx, m)
        if chip.id in chips:
            raise ctx.err(f"duplicate chip id {chip.id!r}", m.line_of("id"),
                          fix=f"first defined on line {chips[chip.id].line}")
        chips[chip.id] = chip
    return Catalog(chips=chips, sources=ctx.sources, path=p)
