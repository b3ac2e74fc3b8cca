"""Are two measurements comparable? One pure check used by `lab results compare` and the report's
baseline section.

Why: a "20 % faster" between two runs means nothing when the runs differ in what was measured or
how: another runtime or runner version, another model build, another thread count, power mode or
CPU governor, a hot start, or a host busy with other work. Each job already records that context
(the runner JSON's env/config, kept in the store's provenance, and the job's own columns); this
module reads it into a `RunContext` and lists the fields in which two runs differ. Pairs that
differ are "not comparable: <field>: a vs b" and stay out of wins/losses unless the user allows
the field (`--allow-different FIELD`).

One difference is never allowed away: `identity`. A row from an emulated device, from a device
that failed its identity check, or from a simulated runtime (lab.results.quality.device_kind) is
not comparable with a row from a real device, nor with one of another kind (issues 22 and 24).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from lab.core.errors import ConfigError
from lab.results.host_busy import is_busy
from lab.results.quality import device_kind, identity_quality
from lab.core.records import ResultRow

# Two runs whose start temperatures differ by more than this are not comparable: a device that
# starts 5 °C hotter reaches its throttle point sooner (and passive boards drift ~1 °C/min).
START_TEMP_MARGIN_C = 5.0

# The fields checked, in report order (also the values `--allow-different` accepts).
FIELDS = ("runtime_version", "runner_version", "model_sha256", "threads", "power_mode", "governor",
          "start_temp", "host_busy")

# compared always, never allowed away (`--allow-different identity` is refused with the reason)
NEVER_ALLOWED = ("identity",)

# options that are compared as fields above, not used to pair configurations
_CHECKED_OPTIONS = ("power_mode", "model_format")
# env keys that name a runtime's version in the runner JSON, first found wins
_RUNTIME_KEYS = ("paddle", "paddlelite", "onnxruntime", "paddlejs", "benchmark_bin")


@dataclass(frozen=True)
class RunContext:
    """What a job ran with, from its row and stored provenance (None = not recorded)."""

    job_id: str
    campaign: str
    label: str
    runtime_version: str | None
    runner_version: str | None
    model_sha256: str | None
    threads: int | None
    power_mode: str | None
    governor: str | None
    temp_start_c: float | None
    host_busy_share: float | None
    busy_host: bool | None
    kind: str = "device"  # lab.results.quality.device_kind: device | emulated | mismatched | simulated
    kind_note: str = ""  # the reason, where the kind is not a real device


@dataclass(frozen=True)
class Difference:
    field: str
    a: str
    b: str

    def __str__(self) -> str:
        return f"{self.field}: {self.a} vs {self.b}"


def context_of(row: ResultRow, provenance: dict[str, Any] | None) -> RunContext:
    prov = provenance or {}
    env = prov.get("env") or {}
    config = prov.get("config") or {}
    runtime = next((f"{k} {env[k]}" for k in _RUNTIME_KEYS if env.get(k)), None)
    runtime = runtime or prov.get("runtime_version")
    runner = " ".join(str(x) for x in (prov.get("runner"), prov.get("runner_version")) if x) or None
    busy = row.busy_host if row.busy_host is not None else is_busy(row.host_busy_share)
    return RunContext(
        job_id=row.job_id, campaign=row.campaign, label=f"{row.campaign}/{row.job_id}",
        runtime_version=runtime, runner_version=runner,
        # what the device ran (the runner's hash: a legacy .pdmodel build differs from the .json one)
        model_sha256=prov.get("model_sha256") or row.model_sha256, threads=row.threads,
        power_mode=row.options.get("power_mode") or config.get("power_mode"),
        governor=env.get("governor"), temp_start_c=row.temp_start_c,
        host_busy_share=row.host_busy_share, busy_host=busy, kind=device_kind(row),
        kind_note="; ".join(identity_quality(row).reasons))


def check_allowed(fields: Iterable[str]) -> tuple[str, ...]:
    """Validate `--allow-different` values (ConfigError names the choices)."""
    out = tuple(fields or ())
    never = [f for f in out if f in NEVER_ALLOWED]
    if never:
        raise ConfigError(f"--allow-different {never[0]!r} is refused: rows from emulated, "
                          "mismatched or simulated devices are never comparable with rows from real "
                          "devices", fix="compare rows of real devices (lab results shows each "
                          "row's quality flags)")
    bad = [f for f in out if f not in FIELDS]
    if bad:
        raise ConfigError(f"--allow-different {bad[0]!r} is not a compared field",
                          fix="use one of " + ", ".join(FIELDS))
    return out


def _show(v: Any) -> str:
    if v is None:
        return "unknown"
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12]  # a sha256
    return str(v)


def _busy(c: RunContext) -> str:
    share = "share unknown" if c.host_busy_share is None else f"{c.host_busy_share:.0%} other CPU"
    return f"{'busy' if c.busy_host else 'quiet' if c.busy_host is False else 'unknown'} ({share})"


def differences(a: RunContext, b: RunContext, allow: Sequence[str] = ()) -> list[Difference]:
    """The checked fields in which runs a and b differ, minus the allowed ones.

    Exact fields compare as recorded (unknown on one side only is a difference). Start temperature
    differs when both are known and more than START_TEMP_MARGIN_C apart. Host busy differs when
    either run was flagged busy (lab/results/host_busy.py): a busy run is not a fair side of a comparison.
    Identity differs when the runs' device kinds differ (a real device against an emulated,
    mismatched or simulated one); `allow` never removes it.
    """
    out: list[Difference] = []
    for name in ("runtime_version", "runner_version", "model_sha256", "threads", "power_mode", "governor"):
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            out.append(Difference(name, _show(va), _show(vb)))
    ta, tb = a.temp_start_c, b.temp_start_c
    if ta is not None and tb is not None and abs(ta - tb) > START_TEMP_MARGIN_C:
        out.append(Difference("start_temp", f"{ta:.1f} °C", f"{tb:.1f} °C (> {START_TEMP_MARGIN_C:g} °C apart)"))
    if a.busy_host or b.busy_host:
        out.append(Difference("host_busy", _busy(a), _busy(b)))
    out = [d for d in out if d.field not in allow]
    if a.kind != b.kind:  # never allowed away (NEVER_ALLOWED)
        out.insert(0, Difference("identity", _kind(a), _kind(b)))
    return out


def _kind(c: RunContext) -> str:
    return "real device" if c.kind == "device" else f"{c.kind} ({c.kind_note})"


def verdict_text(diffs: Sequence[Difference]) -> str:
    return "not comparable: " + "; ".join(str(d) for d in diffs) if diffs else "comparable"


# ---- pairing two sets of rows (campaigns) -------------------------------------------------
def pair_key(r: ResultRow) -> str:
    """What makes two rows the same configuration, the compared fields aside."""
    opts = {k: v for k, v in r.options.items() if k not in _CHECKED_OPTIONS}
    return json.dumps([r.device, r.model, r.backend, r.precision, r.batch, opts], sort_keys=True, default=str)


def pair_rows(rows_a: Sequence[ResultRow], rows_b: Sequence[ResultRow]
              ) -> tuple[list[tuple[ResultRow, ResultRow]], list[ResultRow], list[ResultRow]]:
    """Pairs (a, b) of the same configuration, preferring equal thread counts; and the rows left
    over on each side."""
    left_b = list(rows_b)
    pairs, only_a = [], []
    for ra in rows_a:
        same = [rb for rb in left_b if pair_key(rb) == pair_key(ra)]
        if not same:
            only_a.append(ra)
            continue
        rb = next((x for x in same if x.threads == ra.threads), same[0])
        left_b.remove(rb)
        pairs.append((ra, rb))
    return pairs, only_a, left_b


# ---- the comparison of paired runs ----------------------------------------------------------
@dataclass(frozen=True)
class PairResult:
    """Run b against run a: `stats.compare` figures when comparable (ratio = median b / median a)."""

    a: RunContext
    b: RunContext
    config: str
    differences: tuple[Difference, ...]
    allowed: tuple[str, ...]
    ratio: float | None = None
    ratio_ci: tuple[float | None, float | None] = (None, None)
    p_value: float | None = None
    outcome: str = "not comparable"  # faster | slower | no significant difference | untested | not comparable

    @property
    def comparable(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a.label, "b": self.b.label, "config": self.config, "outcome": self.outcome,
                "comparable": self.comparable, "verdict": verdict_text(self.differences),
                "differences": [{"field": d.field, "a": d.a, "b": d.b} for d in self.differences],
                "allowed_different": list(self.allowed), "ratio_b_over_a": self.ratio,
                "ratio_ci": list(self.ratio_ci), "p_value": self.p_value}


def compare_pair(a: RunContext, b: RunContext, samples_a: list[list[float]], samples_b: list[list[float]],
                 config: str, allow: Sequence[str] = ()) -> PairResult:
    """Check the pair; when comparable, compare the raw samples with `lab.results.stats.compare`."""
    from lab.results import stats
    diffs = tuple(differences(a, b, allow))
    if diffs:
        return PairResult(a, b, config, diffs, tuple(allow))
    if not any(samples_a) or not any(samples_b):
        return PairResult(a, b, config, diffs, tuple(allow), outcome="untested")
    c = stats.compare(samples_a, samples_b)
    outcome = ("no significant difference" if not c.significant
               else "faster" if c.median_b < c.median_a else "slower")
    return PairResult(a, b, config, diffs, tuple(allow), ratio=c.ratio,
                      ratio_ci=(c.ratio_ci_low, c.ratio_ci_high), p_value=c.p_value, outcome=outcome)
