"""Per-operator profiles in one shape, whatever runtime measured them.

Why: "where does the time go" must read the same for Paddle Inference on a server CPU and Paddle
Lite on a phone's NPU, so that a fallback op that takes 40 % of an AIPU run stands out next to one
that takes 1 %. Each runtime's profiler prints its own table; the runtime turns it into an
`OpProfile` here: per (op type, processor) the calls and total milliseconds over the profiled
inferences, and the share of the profile's total. Pure Python, no lab imports below `records`.

Sources:
- Paddle Inference `Config.enable_profile()`: the runner resets the profiler after warm-up, runs
  N inferences and returns the event table (pi_runner.py `parse_profile_table`); the op events
  are totals over those N inferences; nested events (indented, e.g. `PhiKernelInstruction::
  infermeta`) are part of their parent and are not counted again.
- Paddle Lite profiler (`--with_profile=ON` builds; lab/runtimes/benchmark_bin.py
  `parse_op_profile`): averages per inference; totals here are average x inferences covered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

# Paddle Lite KerneAttr(Place) target -> processor class (TargetToStr names, lite/api/paddle_place.cc)
LITE_TARGET_PROCESSOR = {
    "arm": "cpu", "host": "cpu", "x86": "cpu",
    "opencl": "gpu", "cuda": "gpu", "metal": "gpu",
    "nnadapter": "aipu", "npu": "aipu", "apu": "aipu", "rknpu": "aipu", "xpu": "aipu",
    "huawei_ascend_npu": "aipu", "imagination_nna": "aipu", "bm": "aipu", "mlu": "aipu",
}


@dataclass(frozen=True)
class OpRow:
    """One op type on one processor in one job's profile (`Store.op_profile`)."""

    op_type: str
    processor: str | None  # cpu | gpu | aipu; None where the profiler does not say
    calls: int | None  # over `iterations` inferences; None where the profiler does not count them
    total_ms: float  # over `iterations` inferences
    share: float  # of the profile's total time, 0..1
    iterations: int | None = None  # profiled inferences the totals cover
    source: str = ""

    @property
    def per_inference_ms(self) -> float | None:
        return self.total_ms / self.iterations if self.iterations else None


@dataclass
class OpProfile:
    """A job's op profile, or why it has none (`reason`, rows empty)."""

    rows: list[OpRow] = field(default_factory=list)
    iterations: int | None = None
    source: str = ""
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def available(self) -> bool:
        return bool(self.rows)

    @property
    def total_ms(self) -> float:
        return sum(r.total_ms for r in self.rows)

    @classmethod
    def unavailable(cls, reason: str, source: str = "") -> "OpProfile":
        return cls(rows=[], source=source, reason=reason)


def normalise(items: Iterable[tuple[str, str | None, int | None, float]], *, iterations: int | None,
              source: str, notes: list[str] | None = None) -> OpProfile:
    """(op type, processor, calls, total ms) items -> one row per op type and processor, with
    its share of the total, largest first. Calls are None if any item of the group lacks them."""
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for op, proc, calls, total in items:
        g = groups.setdefault((op, proc), [0, 0.0])
        g[0] = None if g[0] is None or calls is None else g[0] + int(calls)
        g[1] += float(total)
    grand = sum(g[1] for g in groups.values())
    if not groups or grand <= 0:
        return OpProfile.unavailable("the profiler reported no op time", source)
    rows = [OpRow(op_type=op, processor=proc, calls=g[0], total_ms=g[1], share=g[1] / grand,
                  iterations=iterations, source=source)
            for (op, proc), g in groups.items()]
    rows.sort(key=lambda r: (-r.total_ms, r.op_type, r.processor or ""))
    return OpProfile(rows=rows, iterations=iterations, source=source, notes=list(notes or []))


def from_paddle_inference(doc: dict[str, Any], device: str = "cpu") -> OpProfile:
    """The runner JSON's `op_profile` object (pi_runner.py) -> OpProfile. `device` is the
    runner's config.device: on `cpu` every kernel ran on the CPU."""
    source = "paddle-inference enable_profile"
    if not isinstance(doc, dict):
        return OpProfile.unavailable("the runner returned no op profile", source)
    if doc.get("error"):
        return OpProfile.unavailable(f"op profile failed on the device: {doc['error']}", source)
    place = str(doc.get("place") or "")
    # the table says CPU when every kernel ran on the CPU; a GPU run mixes places per op
    proc = "cpu" if device == "cpu" or place.upper() == "CPU" else None
    notes = [] if proc else [f"profiler place {place or '?'}: the processor of each op is not printed"]
    items = []
    for ev in doc.get("events") or []:
        try:
            items.append((str(ev["event"]), proc, int(ev["calls"]), float(ev["total_ms"])))
        except (KeyError, TypeError, ValueError):
            continue
    iters = doc.get("iterations")
    return normalise(items, iterations=int(iters) if iters else None, source=source, notes=notes)


def lite_processor(place: str) -> str | None:
    """`arm/float/NCHW` -> cpu, `opencl/float16/ImageDefault` -> gpu, `nnadapter/any/NCHW` -> aipu."""
    return LITE_TARGET_PROCESSOR.get((place or "").split("/", 1)[0].strip().lower())


def from_lite(profile: Any) -> OpProfile:
    """A `benchmark_bin.LiteOpProfile` -> OpProfile (totals = average per inference x inferences)."""
    source = f"paddle-lite profiler ({profile.kind} dispatch summary)"
    notes = []
    iterations = profile.iterations
    if not iterations:
        iterations = 1
        notes.append("the profiler table does not say how many inferences it averaged: totals are "
                     "per inference")
    items = [(ln.op_type, lite_processor(ln.place),
              None if ln.called is None else ln.called * iterations, ln.avg_ms * iterations)
             for ln in profile.lines]
    return normalise(items, iterations=iterations, source=source, notes=notes)


def processor_shares(rows: Iterable[OpRow], processor: str) -> dict[str, float]:
    """Share of the profile's time per op type that ran on `processor` (e.g. the CPU fallback
    ops of an AIPU job), largest first."""
    out: dict[str, float] = {}
    for r in rows:
        if r.processor == processor:
            out[r.op_type] = out.get(r.op_type, 0.0) + r.share
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
