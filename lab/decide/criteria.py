"""The seven criteria of the deployment guide, scored for one chip from its catalog entry.

Why one small function per criterion: chip selection mixes brochure figures of uneven quality, so
each criterion returns a score in [0, 1] *or None with a reason*: unknown is never scored 0, and
the reason quotes the figure and its source tag so a user can check it; when criteria are combined
an unknown one counts at the conservative prior UNKNOWN_PRIOR defined here. The eighth, measured
criterion is `lab.decide.measures`'. Formulas and targets: docs/scoring.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from lab.decide.profiles import Profile
from lab.devices.catalog import Chip, Figure, Price, tops

# Unknown criteria (docs/scoring.md "Unknowns"): scored at this conservative prior, never at 0 and
# never above a known figure's typical score; the stability draws sample U(0, 2 x prior).
UNKNOWN_PRIOR = 0.25

# supply criterion (criterion 2): penalties subtracted from 1.0, documented in docs/scoring.md
ADVANCED_NODE_NM = 14.0
NODE_PENALTY = 0.3
FLAG_PENALTY = {"production-stopped": 0.5, "export-control": 0.4, "single-source": 0.2, "other": 0.2}


@dataclass
class Criterion:
    """One criterion of one chip: its weight, its score (None = unknown) and why."""

    name: str
    weight: float
    score: float | None  # [0, 1]; None = unknown (never 0)
    value: Any
    reason: str


# ---------------------------------------------------------------------------------- normalisation

def _clamp(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def log_up(x: float, lo: float, hi: float) -> float:
    """0 at <= lo, 1 at >= hi, logarithmic between (figures spanning decades, e.g. TOPS)."""
    if x <= 0:
        return 0.0
    return _clamp(math.log(x / lo) / math.log(hi / lo))


def log_down(x: float, lo: float, hi: float) -> float:
    """1 at <= lo, 0 at >= hi, logarithmic between (lower is better: price, latency, energy)."""
    if x <= 0:
        return 1.0
    return _clamp(math.log(hi / x) / math.log(hi / lo))


def lin_up(x: float, lo: float, hi: float) -> float:
    return _clamp((x - lo) / (hi - lo))


def cap_ratio(x: float, target: float) -> float:
    return _clamp(x / target)


def fig_text(f: Figure | None) -> str:
    """A catalog figure as a reason quotes it: value or range, unit and source tag."""
    if f is None:
        return "not in catalog"
    if f.value is not None and not isinstance(f.value, (int, float)):
        return f"{f.value} [{f.tag()}]"
    if f.low is not None and f.high is not None:
        return f"{f.low:g}-{f.high:g} {f.unit or ''} [{f.tag()}]".replace("  ", " ")
    t = f.typical
    return ("n/a" if t is None else f"{t:g} {f.unit or ''}".strip()) + f" [{f.tag()}]"


# ------------------------------------------------------------------------------ criterion scorers

def score_domain(chip: Chip, p: Profile) -> Criterion:
    """Share of the profile's domain tags the chip carries."""
    hit = [t for t in p.domain if t in chip.domain]
    s = len(hit) / len(p.domain)
    return Criterion("domain", p.weights["domain"], s, hit,
                     f"matches {len(hit)}/{len(p.domain)} tags ({', '.join(hit) or 'none'}) of "
                     f"{', '.join(p.domain)}; chip: {', '.join(chip.domain)}")


def score_supply(chip: Chip, p: Profile) -> Criterion:
    """1.0 minus penalties: node <= 14 nm (supply attention) and each vendor/export supply flag."""
    s, why = 1.0, []
    node = chip.process_nm.typical if chip.process_nm else None
    if node is not None and node <= ADVANCED_NODE_NM:
        s -= NODE_PENALTY
        why.append(f"-{NODE_PENALTY:g}: {node:g} nm <= {ADVANCED_NODE_NM:g} nm needs supply attention "
                   f"[{chip.process_nm.tag()}]")
    elif node is not None:
        why.append(f"{node:g} nm > {ADVANCED_NODE_NM:g} nm: mature node")
    for flag in chip.supply:
        pen = FLAG_PENALTY.get(flag.kind, 0.2)
        s -= pen
        why.append(f"-{pen:g}: {flag.kind}: {flag.note} [{flag.confidence}]")
    if node is None and not chip.supply:
        note = chip.process_nm.note if chip.process_nm and chip.process_nm.note else "not in catalog"
        return Criterion("supply", p.weights["supply"], None, None,
                         f"unknown: process node unknown ({note}) and no supply flags")
    if node is None:
        why.insert(0, "process node unknown (not penalised)")
    return Criterion("supply", p.weights["supply"], max(0.0, s), node, "; ".join(why))


def effective_tops(chip: Chip, precision: str) -> tuple[float | None, str]:
    """Rated dense TOPS at exactly `precision` and how it was obtained (docs/scoring.md).

    Only that precision is read. If only a 2:4-sparse figure is stated, half of it is used and
    the reason says so (structured sparsity doubles peak throughput by definition).
    """
    acc = chip.accelerator
    if acc.kind == "none":
        return None, "no accelerator: no rated TOPS (judge it by measurements)"
    if precision in acc.unsupported:
        return 0.0, f"{acc.name or acc.kind} cannot run {precision} ({acc.note or 'catalog'})"
    f = tops(chip, precision)
    if f is not None and f.value is not None:
        return float(f.value), f"{f.value:g} {precision} dense [{f.tag()}]"
    if f is not None:
        return None, f"{precision}: {f.note}"
    sp = acc.tops_sparse.get(precision)
    if sp is not None and sp.value is not None:
        return float(sp.value) / 2.0, (f"{sp.value:g} {precision} 2:4-sparse [{sp.tag()}] / 2 = "
                                       f"{sp.value / 2:g} dense-equivalent (dense not stated)")
    stated = sorted(set(acc.tops) | set(acc.tops_sparse))
    return None, (f"no {precision} rating stated (stated: {', '.join(stated) or 'none'}); "
                  "not derived from another precision")


def score_tops(chip: Chip, p: Profile) -> Criterion:
    """log_up(TOPS at the profile precision, targets.tops)."""
    lo, hi = p.targets["tops"]
    v, why = effective_tops(chip, p.precision)
    if v is None:
        return Criterion("tops", p.weights["tops"], None, None, "unknown: " + why)
    return Criterion("tops", p.weights["tops"], log_up(v, lo, hi), v, f"{why}; log scale {lo:g}..{hi:g}")


def score_frequency(chip: Chip, p: Profile) -> Criterion:
    """lin_up(max clock of the accelerator or the CPU, targets.frequency.mhz)."""
    spec = p.targets["frequency"]
    lo, hi = spec["mhz"]
    if spec["of"] == "cpu":
        f, what = chip.cpu.max_clock_mhz, "CPU max clock"
    else:
        f, what = chip.accelerator.max_clock_mhz, f"{chip.accelerator.kind.upper()} max clock"
        if chip.accelerator.kind == "none":
            return Criterion("frequency", p.weights["frequency"], None, None,
                             "unknown: no accelerator clock (no accelerator)")
    v = f.typical if f else None
    if v is None:
        return Criterion("frequency", p.weights["frequency"], None, None,
                         f"unknown: {what} {f.note if f and f.note else 'not in catalog'}")
    return Criterion("frequency", p.weights["frequency"], lin_up(v, lo, hi), v,
                     f"{what} {fig_text(f)}; linear {lo:g}..{hi:g} MHz")


def score_memory(chip: Chip, p: Profile) -> Criterion:
    """Mean of log_up(capacity GB) and, when the profile asks, log_up(bandwidth GB/s)."""
    parts, why = [], []

    def log_part(fig, key: str, label: str, unit: str, scope: str = "") -> float | None:
        lo, hi = p.targets[key]
        value = fig.typical if fig else None
        if value is None:
            why.append(f"{label} unknown")
        else:
            parts.append(log_up(value, lo, hi))
            why.append(f"{label} {fig_text(fig)}{scope}, log {lo:g}..{hi:g} {unit}")
        return value

    cap = log_part(chip.memory.size_gb, "memory_gb", "capacity", "GB", f" ({chip.memory.scope or '?'})")
    if "bandwidth_gbs" in p.targets:
        log_part(chip.memory.bandwidth_gbs, "bandwidth_gbs", "bandwidth", "GB/s")
    if not parts:
        return Criterion("memory", p.weights["memory"], None, None, "unknown: " + "; ".join(why))
    return Criterion("memory", p.weights["memory"], sum(parts) / len(parts), cap, "; ".join(why))


def video_parts(chip: Chip) -> dict[str, Figure | None]:
    """The chip's video/ISP figures by target key (the criterion and the constraints read these)."""
    return {"decode_1080p30": chip.video.decode.channels_1080p30,
            "encode_1080p30": chip.video.encode.channels_1080p30,
            "isp_mp": chip.isp_mp, "av1_decode": chip.video.decode.av1}


def score_video_isp(chip: Chip, p: Profile) -> Criterion:
    """Mean over the profile's video targets of min(1, value / target); AV1 is 1/0."""
    targets = p.targets.get("video") or {}
    w = p.weights["video_isp"]
    if not targets:
        return Criterion("video_isp", w, None, None, "profile sets no video/ISP targets")
    figs = video_parts(chip)
    parts, why = [], []
    for key, target in targets.items():
        f = figs[key]
        if f is None or not f.known:
            why.append(f"{key} unknown ({f.note if f is not None and f.note else 'not in catalog'})")
            continue
        if key == "av1_decode":
            parts.append(1.0 if (f.value is True) == bool(target) else 0.0)
        else:
            parts.append(cap_ratio(f.typical, float(target)))
        why.append(f"{key} {fig_text(f)} vs {target}")
    if not parts:
        return Criterion("video_isp", w, None, None, "unknown: " + "; ".join(why))
    return Criterion("video_isp", w, sum(parts) / len(parts), len(parts), "; ".join(why))


def amortised_usd(chip: Chip, p: Profile) -> tuple[float | None, str, Price | None]:
    """Cost of one unit over the profile's horizon in USD (rule in docs/scoring.md).

    cloud-hourly: hourly x hours_per_year x years x utilisation (energy is in the price).
    purchase bases: typical price (+ energy: typical W x hours x utilisation x USD/kWh when the
    power is known; otherwise stated as not included).
    """
    if not chip.prices:
        return None, f"unknown: {chip.price_note or 'no price in catalog'}", None
    by_basis = {}
    for pr in chip.prices:
        by_basis.setdefault(pr.basis, pr)
    pr = next((by_basis[b] for b in p.price_bases if b in by_basis), None)
    if pr is None:
        return None, (f"unknown: no price on an accepted basis ({', '.join(p.price_bases)}); "
                      f"catalog has {', '.join(by_basis)}"), None
    rate = p.currency_to_usd.get(pr.currency)
    if rate is None:
        return None, f"unknown: no exchange rate for {pr.currency} in profiles assumptions", pr
    years = p.amortisation["years"]
    util = p.amortisation["utilisation"]
    hours = p.hours_per_year * years * util
    typ = pr.typical * rate
    tag = f"[{pr.confidence}{', estimate' if pr.estimate else ''}]"
    if pr.basis == "cloud-hourly":
        return typ * hours, (f"cloud {typ:g} USD/h x {hours:g} h ({years:g} y x {util:g} utilisation) "
                             f"{tag}"), pr
    why = f"{pr.basis} {typ:,.0f} USD {tag}"
    watts = chip.power_w.typical if chip.power_w else None
    if watts is None:
        return typ, why + "; energy not included (power unknown)", pr
    energy = watts * hours / 1000.0 * p.amortisation["usd_per_kwh"]
    return typ + energy, why + (f" + energy {watts:g} W x {hours:g} h x "
                                f"{p.amortisation['usd_per_kwh']:g} USD/kWh = {energy:,.0f} USD"), pr


def score_price(chip: Chip, p: Profile) -> Criterion:
    """log_down(amortised USD, targets.price_usd)."""
    usd, why, _ = amortised_usd(chip, p)
    if usd is None:
        return Criterion("price", p.weights["price"], None, None, why)
    lo, hi = p.targets["price_usd"]
    return Criterion("price", p.weights["price"], log_down(usd, lo, hi), usd,
                     f"{usd:,.0f} USD over {p.amortisation['years']:g} y: {why}; log {lo:g}..{hi:g}")


SCORERS: dict[str, Callable[[Chip, Profile], Criterion]] = {
    "domain": score_domain, "supply": score_supply, "tops": score_tops,
    "frequency": score_frequency, "memory": score_memory, "video_isp": score_video_isp,
    "price": score_price,
}

