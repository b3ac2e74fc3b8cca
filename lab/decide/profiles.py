"""Selection profiles: what a deployment asks of a chip, read from YAML and checked line by line.

Why a module of its own: a profile is user input (`lab score --profiles PATH` adds to and overrides
the built-in `lab/decide/data/profiles.yaml`), so every field is validated with the file and line
of a mistake before any scoring runs; the scoring maths then reads typed `Profile` and
`Constraint` records only. Schema and meaning of each field: docs/scoring.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError
from lab.core.yamlio import LineDict, expect_keys, load_yaml
from lab.devices.catalog import PRICE_BASES, TOPS_PRECISIONS

DEFAULT_PROFILES = Path(__file__).parent / "data" / "profiles.yaml"
# the weights a profile gives: the seven criteria of the deployment guide + measured performance
CRITERIA = ("domain", "supply", "tops", "frequency", "memory", "video_isp", "price", "measured")
METRICS = ("power_w", "memory_gb", "decode_1080p30", "encode_1080p30", "isp_mp", "tops",
           "process_nm", "price_usd", "accelerator", "nnadapter", "domain")
PURCHASE_BASES = ("unit", "module", "board", "stick", "phone", "card")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # min | max | in | present
    value: Any
    on_unknown: str = "exclude"  # exclude | keep
    any_of: tuple["Constraint", ...] = ()  # when set, the others are unused

    def describe(self) -> str:
        if self.any_of:
            return " or ".join(c.describe() for c in self.any_of)
        sym = {"min": ">=", "max": "<=", "in": "in", "present": "present"}[self.op]
        val = list(self.value) if isinstance(self.value, tuple) else self.value
        return f"{self.metric} {sym} {val}" if self.op != "present" else f"{self.metric} present"


@dataclass(frozen=True)
class Profile:
    id: str
    description: str
    domain: tuple[str, ...]
    precision: str
    weights: dict[str, float]
    targets: dict[str, Any]
    measured: dict[str, float]  # latency | energy | throughput -> sub-weight
    reference_models: tuple[str, ...]
    price_bases: tuple[str, ...]
    amortisation: dict[str, float]
    min_coverage: float
    constraints: tuple[Constraint, ...]
    currency_to_usd: dict[str, float]
    hours_per_year: float = 8760.0
    source: str = ""


_PROFILE_KEYS = {"id", "description", "domain", "precision", "weights", "targets", "measured",
                 "reference_models", "price_bases", "amortisation", "min_coverage", "constraints"}
_TARGET_KEYS = {"tops", "frequency", "memory_gb", "bandwidth_gbs", "video", "price_usd",
                "latency_ms", "energy_mj", "throughput_ips", "requests_per_usd"}
_VIDEO_KEYS = {"decode_1080p30", "encode_1080p30", "isp_mp", "av1_decode"}


def _perr(path: str, line: int, msg: str, fix: str | None = None) -> ConfigError:
    return ConfigError(msg, path=path, line=line, fix=fix)


def _pos_num(v: Any, path: str, line: int, what: str, *, zero_ok: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (v == 0 and not zero_ok):
        raise _perr(path, line, f"{what} must be a {'non-negative' if zero_ok else 'positive'} number, got {v!r}")
    return float(v)


def _range(v: Any, path: str, line: int, what: str) -> tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2):
        raise _perr(path, line, f"{what} must be [low, high]", fix="e.g. [1, 100]")
    lo, hi = (_pos_num(x, path, line, what, zero_ok=False) for x in v)
    if lo >= hi:
        raise _perr(path, line, f"{what}: low {lo:g} must be below high {hi:g}")
    return lo, hi


def _constraint(raw: Any, path: str, line: int) -> Constraint:
    if not isinstance(raw, dict):
        raise _perr(path, line, "a constraint must be a mapping", fix="e.g. {metric: power_w, max: 10}")
    ln = raw.line if isinstance(raw, LineDict) else line
    if "any_of" in raw:
        expect_keys(raw, path=path, what="constraint", required={"any_of"}, allowed={"any_of"})
        subs = raw["any_of"]
        if not isinstance(subs, list) or not subs:
            raise _perr(path, ln, "any_of must list constraints")
        return Constraint(metric="any_of", op="any_of", value=None,
                          any_of=tuple(_constraint(x, path, ln) for x in subs))
    expect_keys(raw, path=path, what="constraint", required={"metric"},
                allowed={"metric", "min", "max", "in", "present", "on_unknown"})
    metric = raw["metric"]
    if metric not in METRICS:
        raise _perr(path, ln, f"unknown constraint metric {metric!r}", fix="use one of " + ", ".join(METRICS))
    ops = [k for k in ("min", "max", "in", "present") if k in raw]
    if len(ops) != 1:
        raise _perr(path, ln, f"constraint on {metric} needs exactly one of min, max, in, present")
    op = ops[0]
    val = raw[op]
    if op in ("min", "max"):
        if metric in ("accelerator", "nnadapter", "domain"):
            raise _perr(path, ln, f"{metric} takes 'in' or 'present', not {op}")
        val = _pos_num(val, path, ln, f"{metric} {op}")
    elif op == "in":
        if not isinstance(val, list) or not val:
            raise _perr(path, ln, f"{metric} in: must be a non-empty list")
        val = tuple(val)
    elif not isinstance(val, bool):
        raise _perr(path, ln, f"{metric} present: must be true/false")
    on_unknown = raw.get("on_unknown", "exclude")
    if on_unknown not in ("exclude", "keep"):
        raise _perr(path, ln, f"on_unknown must be exclude or keep, got {on_unknown!r}")
    return Constraint(metric=metric, op=op, value=val, on_unknown=on_unknown)



def _profile(m: Any, path: str, assumptions: dict) -> Profile:
    pid, what = _identity(m, path)
    dom = m["domain"]
    if not isinstance(dom, list) or not dom or not all(isinstance(x, str) for x in dom):
        raise _perr(path, m.line_of("domain"), f"{what}: domain must be a non-empty list of tags")
    weights = _weights(m, path, what)
    measured, targets = _measured_and_targets(m, path, what)
    refs = m.get("reference_models") or []
    if not isinstance(refs, list) or not all(isinstance(x, str) for x in refs):
        raise _perr(path, m.line_of("reference_models"), f"{what}: reference_models must be a list of model ids")
    bases = m.get("price_bases") or list(PURCHASE_BASES) + ["cloud-hourly"]
    for b in bases:
        if b not in PRICE_BASES:
            raise _perr(path, m.line_of("price_bases"), f"{what}: unknown price basis {b!r}",
                        fix="use " + ", ".join(PRICE_BASES))
    amort = _amortisation(m, path, what)
    mc = _pos_num(m.get("min_coverage", 0.0), path, m.line_of("min_coverage"), "min_coverage")
    if mc > 1:
        raise _perr(path, m.line_of("min_coverage"), f"{what}: min_coverage must be in [0, 1]")
    cons = m.get("constraints") or []
    if not isinstance(cons, list):
        raise _perr(path, m.line_of("constraints"), f"{what}: constraints must be a list")
    return Profile(id=pid, description=str(m.get("description") or ""), domain=tuple(dom),
                   precision=m["precision"], weights=weights, targets=targets, measured=measured,
                   reference_models=tuple(refs), price_bases=tuple(bases), amortisation=amort,
                   min_coverage=mc,
                   constraints=tuple(_constraint(c, path, m.line_of("constraints")) for c in cons),
                   currency_to_usd=assumptions["currency_to_usd"],
                   hours_per_year=assumptions["hours_per_year"], source=path)


def _identity(m: Any, path: str) -> tuple[str, str]:
    """(id, how errors name the profile) once the mapping, its keys and the precision check out."""
    if not isinstance(m, LineDict):
        raise _perr(path, 1, "each profile must be a mapping")
    pid = m.get("id")
    what = f"profile {pid!r}" if pid else "profile"
    expect_keys(m, path=path, what=what, required={"id", "domain", "precision", "weights", "targets"},
                allowed=_PROFILE_KEYS)
    if not isinstance(pid, str) or not pid:
        raise _perr(path, m.line_of("id"), "profile id must be a string")
    if m["precision"] not in TOPS_PRECISIONS:
        raise _perr(path, m.line_of("precision"), f"{what}: unknown precision {m['precision']!r}",
                    fix="use one of " + ", ".join(TOPS_PRECISIONS))
    return pid, what


def _weights(m: LineDict, path: str, what: str) -> dict[str, float]:
    wts = m["weights"]
    if not isinstance(wts, dict):
        raise _perr(path, m.line_of("weights"), f"{what}: weights must be a mapping")
    expect_keys(wts, path=path, what=f"{what} weights", required=set(CRITERIA), allowed=set(CRITERIA))
    weights = {k: _pos_num(wts[k], path, wts.line_of(k), f"weight {k}") for k in CRITERIA}
    if sum(weights.values()) <= 0:
        raise _perr(path, m.line_of("weights"), f"{what}: all weights are 0")
    return weights


_MEASURED_TARGET = {"latency": "latency_ms", "energy": "energy_mj", "throughput": "throughput_ips",
                    "serving": "requests_per_usd"}


def _measured_and_targets(m: LineDict, path: str, what: str) -> tuple[dict[str, float], dict[str, Any]]:
    """The measured sub-weights, and the targets: each weighted measurement needs its range."""
    tg = m["targets"]
    if not isinstance(tg, dict):
        raise _perr(path, m.line_of("targets"), f"{what}: targets must be a mapping")
    measured_raw = m.get("measured") or LineDict.of({"latency": 1}, m.line_of("measured"))
    if not isinstance(measured_raw, dict):
        raise _perr(path, m.line_of("measured"), f"{what}: measured must map latency/energy/throughput to weights")
    measured = {}
    need = {"tops", "frequency", "memory_gb", "price_usd"}
    for k, v in measured_raw.items():
        if k not in _MEASURED_TARGET:
            raise _perr(path, measured_raw.line_of(k), f"{what}: measured key {k!r}",
                        fix="use latency, energy, throughput, serving")
        measured[k] = _pos_num(v, path, measured_raw.line_of(k), f"measured {k}")
        if measured[k] > 0:
            need.add(_MEASURED_TARGET[k])
    expect_keys(tg, path=path, what=f"{what} targets", required=need, allowed=_TARGET_KEYS)
    return measured, {k: _target(k, v, path, tg.line_of(k)) for k, v in tg.items()}


def _target(k: str, v: Any, path: str, ln: int) -> Any:
    if k == "frequency":
        if not isinstance(v, dict):
            raise _perr(path, ln, "targets.frequency must be {of: cpu|accelerator, mhz: [lo, hi]}")
        expect_keys(v, path=path, what="targets.frequency", required={"of", "mhz"}, allowed={"of", "mhz"})
        if v["of"] not in ("cpu", "accelerator"):
            raise _perr(path, ln, "targets.frequency.of must be cpu or accelerator")
        return {"of": v["of"], "mhz": _range(v["mhz"], path, ln, "targets.frequency.mhz")}
    if k == "video":
        if not isinstance(v, dict):
            raise _perr(path, ln, "targets.video must be a mapping")
        expect_keys(v, path=path, what="targets.video", required=set(), allowed=_VIDEO_KEYS)
        return {vk: (bool(vv) if vk == "av1_decode" else _pos_num(vv, path, ln, f"video {vk}", zero_ok=False))
                for vk, vv in v.items()}
    return _range(v, path, ln, f"targets.{k}")


def _amortisation(m: LineDict, path: str, what: str) -> dict[str, float]:
    am = m.get("amortisation") or {}
    if not isinstance(am, dict):
        raise _perr(path, m.line_of("amortisation"), f"{what}: amortisation must be a mapping")
    if am:
        expect_keys(am, path=path, what=f"{what} amortisation", required=set(),
                    allowed={"years", "utilisation", "usd_per_kwh"})
    ln = m.line_of("amortisation")
    amort = {"years": _pos_num(am.get("years", 3), path, ln, "years", zero_ok=False),
             "utilisation": _pos_num(am.get("utilisation", 1.0), path, ln, "utilisation", zero_ok=False),
             "usd_per_kwh": _pos_num(am.get("usd_per_kwh", 0.12), path, ln, "usd_per_kwh")}
    if amort["utilisation"] > 1:
        raise _perr(path, ln, f"{what}: utilisation must be in (0, 1]")
    return amort


def _assumptions(doc: LineDict, path: str, base: dict | None) -> dict:
    """Exchange rates and hours per year: the built-in file's, updated by this file's."""
    assumptions = dict(base or {"currency_to_usd": {"USD": 1.0}, "hours_per_year": 8760.0})
    a = doc.get("assumptions")
    if a is None:
        return assumptions
    if not isinstance(a, LineDict):
        raise ConfigError("assumptions must be a mapping", path=path, line=doc.line_of("assumptions"))
    expect_keys(a, path=path, what="assumptions", required=set(), allowed={"currency_to_usd", "hours_per_year"})
    if "currency_to_usd" in a:
        rates = a["currency_to_usd"]
        if not isinstance(rates, dict):
            raise ConfigError("currency_to_usd must map currency codes to rates", path=path, line=a.line_of("currency_to_usd"))
        assumptions["currency_to_usd"] = {**assumptions["currency_to_usd"], **{
            str(k): _pos_num(v, path, rates.line_of(k), f"rate {k}", zero_ok=False) for k, v in rates.items()}}
    if "hours_per_year" in a:
        assumptions["hours_per_year"] = _pos_num(a["hours_per_year"], path, a.line_of("hours_per_year"),
                                                 "hours_per_year", zero_ok=False)
    return assumptions


def _load_profile_file(path: str, base_assumptions: dict | None) -> tuple[dict[str, Profile], dict]:
    """(profiles by id, the assumptions they were read with)."""
    doc = load_yaml(path, what="profiles file")
    if not isinstance(doc, LineDict):
        raise ConfigError("profiles file must be a mapping with 'profiles:'", path=path, line=1)
    expect_keys(doc, path=path, what="profiles file", required={"profiles"},
                allowed={"schema", "assumptions", "profiles"})
    assumptions = _assumptions(doc, path, base_assumptions)
    items = doc["profiles"]
    if not isinstance(items, list):
        raise ConfigError("'profiles' must be a list", path=path, line=doc.line_of("profiles"))
    out: dict[str, Profile] = {}
    for it in items:
        prof = _profile(it, path, assumptions)
        if prof.id in out:
            raise ConfigError(f"duplicate profile id {prof.id!r}", path=path, line=it.line_of("id"))
        out[prof.id] = prof
    return out, assumptions


def load_profiles(path: str | Path | None = None) -> dict[str, Profile]:
    """Built-in profiles, plus (and overridden by) the profiles of `path` when given."""
    base, assumptions = _load_profile_file(str(DEFAULT_PROFILES), None)
    if path is None:
        return base
    user, _ = _load_profile_file(str(path), assumptions)
    return {**base, **user}
