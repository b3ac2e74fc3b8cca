"""The typed records between the advisor's fact gathering and the rules of `lab advise`.

Why a module of its own: the rules (`lab.decide.advice_rules`) must never read files, the store or
devices, so what they read arrives as these frozen records, gathered first by `lab.decide.facts`,
`lab.decide.npu_partition` and `lab.decide.advisor`: the model's static facts, each processor's
measured side, the NPU fallback (estimated from the op lists, or measured by an op profile), the
TOPS estimate and the user's options, together in one `AdviceInput`. A rule answers with a
`Contribution`: its direction, weight, reason in words and the evidence it used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.core.records import cold_start_ms
from lab.results.quality import LeftOut


@dataclass(frozen=True)
class Contribution:
    rule: str
    direction: str  # cpu | aipu | gpu | neutral
    weight: float
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)
    blocking: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "direction": self.direction, "weight": round(self.weight, 2),
                "blocking": self.blocking, "text": self.text, "evidence": self.evidence}


@dataclass(frozen=True)
class Side:
    """Measured figures of one processor class (cpu | aipu | gpu) for the model on the device."""

    processor: str
    backend: str
    precision: str | None
    p50_ms: float | None
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    load_ms: float | None = None
    first_ms: float | None = None
    energy_mj_per_inf: float | None = None
    power_w: float | None = None
    peak_rss_mb: float | None = None
    source: str = "lab"
    job_id: str = ""
    campaign: str = ""
    candidates: int = 1  # ok configurations of this processor class the fastest was chosen from
    # output correctness of this row (lab/models/agreement.py); False: fast but wrong
    agree_ok: bool | None = None
    agree_cosine_min: float | None = None
    agree_top1: float | None = None
    accuracy_top1: float | None = None
    quality: tuple[str, ...] = ()  # lab.results.quality.classify reasons (not converged, wide CI, ...)

    @property
    def imported(self) -> bool:
        return self.source != "lab"

    @property
    def selection(self) -> str:
        """Which row speaks for this processor, in words (job/campaign, best of N, imported)."""
        where = f"job {self.job_id or '?'} of campaign {self.campaign or '?'}"
        if self.imported:
            where += f", imported ({self.source}; no model hash)"
        if self.candidates > 1:
            where += f"; fastest of {self.candidates} {self.processor.upper()} configurations"
        return where

    @property
    def start_ms(self) -> float | None:
        """Load + first inference: the guide's "load to first prediction"."""
        return cold_start_ms(self.load_ms, self.first_ms)

    @property
    def has_ci(self) -> bool:
        return self.ci_low_ms is not None and self.ci_high_ms is not None


@dataclass(frozen=True)
class ModelFacts:
    """What the static analysis says about the model (None = unknown)."""

    model: str
    macs: int | None = None
    params: int | None = None
    dense_share: float | None = None  # share of MACs in conv/matmul
    dense_share_note: str = ""
    dynamic_dims: tuple[str, ...] = ()  # "input[axis]" for dynamic dims other than batch
    sequence_ops: tuple[str, ...] = ()
    data_dependent_ops: tuple[str, ...] = ()
    quantized: bool | None = None
    quant_note: str = ""
    domain: str | None = None  # zoo tag (nlp, vision, ...)
    analysed: bool = True  # False when only measured rows exist (model file not available)


@dataclass(frozen=True)
class Fallback:
    """NPU op coverage on one NNAdapter device (approximation of NNAdapter's partitioning)."""

    nnadapter_device: str
    supported_ops: int
    fallback_ops: dict[str, int]  # op -> count running on the CPU
    subgraphs: int  # NPU subgraphs (runs of supported ops in program order)
    cpu_segments: int  # runs of unsupported ops
    fused: dict[str, int] = field(default_factory=dict)  # op -> count absorbed by opt fusions
    needs_quantized: bool = False
    source: str = ""
    removed: dict[str, int] = field(default_factory=dict)  # "op (pass)" -> count deleted at inference

    @property
    def total_ops(self) -> int:
        return self.supported_ops + sum(self.fallback_ops.values())


@dataclass(frozen=True)
class MeasuredFallback:
    """What the AIPU job's op profile says ran on the CPU, as shares of that run's op time."""

    job_id: str
    cpu_ops: dict[str, float]  # op type -> share of the profile's total time, largest first
    iterations: int | None = None
    source: str = ""

    @property
    def cpu_share(self) -> float:
        return sum(self.cpu_ops.values())


@dataclass(frozen=True)
class Estimate:
    """AIPU steady latency from rated TOPS and model MACs: low confidence by construction."""

    aipu_ms: float | None
    precision: str | None
    tops: float | None
    utilisation: float
    note: str
    assumes_quantized: bool = False  # int8 TOPS used for a model that is not int8-quantised
    # the NPU's fixed cost per call (lab.decide.npu_partition.per_call_floor); a compute estimate
    # below it is not a latency figure: aipu_ms is then None and below_floor True
    per_call_floor_ms: float | None = None
    below_floor: bool = False


@dataclass(frozen=True)
class Options:
    latency_budget_ms: float | None = None
    first_inference_budget_ms: float | None = None
    no_preload: bool = False
    busy_cpu: bool = False
    power_budget_w: float | None = None


@dataclass(frozen=True)
class AdviceInput:
    model: ModelFacts
    device: str
    chip: str | None
    has_aipu: bool | None  # None: chip not in the catalog
    aipu_name: str | None
    options: Options
    has_gpu: bool = False
    cpu: Side | None = None
    aipu: Side | None = None
    gpu: Side | None = None
    fallback: Fallback | None = None
    estimate: Estimate | None = None
    nnadapter_devices: tuple[str, ...] = ()
    measured_fallback: MeasuredFallback | None = None  # from the AIPU job's op profile
    # rows of this model on this device left out as not representative of the chip (emulated,
    # identity mismatch, simulated: lab.results.quality); None when there were none
    left_out: LeftOut | None = None

    @property
    def accel(self) -> str | None:
        """The accelerator class the question is about on this device: `aipu` (an NPU, or a chip
        the catalog does not know), `gpu` (no NPU, a GPU), or None (neither: CPU only)."""
        if self.aipu is not None or self.has_aipu:
            return "aipu"
        if self.gpu is not None or self.has_gpu:
            return "gpu"
        return "aipu" if self.has_aipu is None else None

    @property
    def acc(self) -> Side | None:
        """The measured side of `accel`."""
        return {"aipu": self.aipu, "gpu": self.gpu}.get(self.accel or "")

    @property
    def verdicts(self) -> tuple[str, ...]:
        """The answers this device allows: cpu | <accel> (| gpu) | either; only cpu with neither."""
        acc = self.accel
        if acc is None:
            return ("cpu",)
        extra = ("gpu",) if acc == "aipu" and (self.gpu is not None) else ()
        return ("cpu", acc, *extra, "either")

