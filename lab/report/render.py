"""Build the chip-comparison report from the store alone and render it to one HTML file.

Why one file with everything inside (CSS, script, SVG charts, the raw data): the report is mailed,
archived and opened offline by people who decide; it must not depend on a server or the network.
A Content-Security-Policy with hashes of our own style and script makes that a browser-enforced
fact (nothing external can load, injected markup cannot run), on top of jinja2 autoescaping.

Sections that depend on modules written elsewhere (scoring, advisor, stats.compare) are filled
when those modules are importable and say "not available: <why>" otherwise - never invented.
This module never imports lab.transport or lab.scheduler.
"""
from __future__ import annotations

import base64
import gzip
import dataclasses
import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import jinja2
from markupsafe import Markup

from ..errors import ConfigError
from ..store import ROW_FIELDS, Store
from . import plots

TEMPLATES = Path(__file__).parent / "templates"
BOOTSTRAP_RESAMPLES = 1000
ALPHA = 0.05

CSV_COLUMNS = [f for f in ROW_FIELDS] + ["options"]


# ------------------------------------------------------------------------------------ records
@dataclass
class Unavailable:
    """A section that cannot be filled, and why (shown to the reader as such)."""

    reason: str


@dataclass
class Pair:
    """CPU vs AIPU for one model on one device: the best configuration of each class."""

    device: str
    chip: str | None
    model: str
    cpu: dict
    aipu: dict
    speedup: float | None  # cpu p50 / aipu p50; > 1 means the AIPU is faster in steady state
    cold_cpu_ms: float | None  # load + first inference
    cold_aipu_ms: float | None
    break_even: int | None  # inferences from which the AIPU is ahead in total time
    verdict: str


@dataclass
class Delta:
    """One configuration measured in the report campaign and in the baseline."""

    key: str
    row: dict
    base: dict
    ratio: float | None  # current p50 / baseline p50
    ci_low: float | None
    ci_high: float | None
    significant: bool | None  # None: not testable (no raw samples)
    method: str
    status: str  # regression | improvement | unchanged | untested


@dataclass
class Report:
    title: str
    campaigns: list[str]
    generated_at: str
    rows: list[dict]
    summary: dict
    latency: list[dict] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ helpers
def config_label(r: dict, *, with_device: bool = True, with_model: bool = False) -> str:
    parts = []
    if with_model:
        parts.append(str(r.get("model")))
    if with_device:
        parts.append(str(r.get("device")))
    parts.append(str(r.get("backend")))
    parts.append(str(r.get("precision")))
    # imported rows often carry no thread count (null or 0): say so instead of "t0"
    parts.append(f"t{r['threads']}" if r.get("threads") else "threads n/a")
    if r.get("batch") not in (None, 1):
        parts.append(f"b{r['batch']}")
    opts = r.get("options") or {}
    parts += [f"{k}={v}" for k, v in sorted(opts.items())]
    return " · ".join(parts)


def config_key(r: dict) -> str:
    """Identity of a configuration across campaigns (everything but campaign and job id)."""
    return json.dumps([r.get("device"), r.get("model"), r.get("backend"), r.get("precision"),
                       r.get("threads"), r.get("batch"), r.get("options") or {}], sort_keys=True, default=str)


def _ok(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and _num(r.get("p50_ms")) is not None]


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _imported(r: dict) -> bool:
    return bool(r.get("source")) and r.get("source") != "lab"


def _cold(r: dict) -> float | None:
    load, first = _num(r.get("load_ms")), _num(r.get("first_ms"))
    return None if load is None or first is None else load + first


def fmt(v: Any, digits: int = 2) -> str:
    """Numbers for people; None is "n/a" (never 0)."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            return "n/a"
        if isinstance(v, int):
            return f"{v:,}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def _short_error(text: str | None, n: int = 240) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------------------------ sections
def summarize_rows(rows: list[dict], specs: dict[str, Any]) -> dict:
    status = Counter(r["status"] for r in rows)
    devices: dict[str, str | None] = {}
    for r in rows:
        devices.setdefault(r["device"], r.get("chip"))
    started = [r["started_at"] for r in rows if r.get("started_at")]
    finished = [r["finished_at"] for r in rows if r.get("finished_at")]
    return {
        "n_jobs": len(rows),
        "status": dict(sorted(status.items())),
        "devices": sorted(devices.items()),
        "models": sorted({r["model"] for r in rows}),
        "backends": sorted({(r.get("backend"), r.get("processor")) for r in rows}, key=str),
        "processors": sorted({r.get("processor") for r in rows if r.get("processor")}),
        "first_start": min(started) if started else None,
        "last_finish": max(finished) if finished else None,
        "not_converged": [r for r in rows if r["status"] == "ok" and r.get("converged") is False],
        # ok rows whose convergence is unknown: imports carry no raw samples to judge it by
        "convergence_unknown": [dict(r, why=("imported: no raw samples" if _imported(r)
                                             else "the run reported no convergence"))
                                for r in rows if r["status"] == "ok" and r.get("converged") is None],
        "throttled": [r for r in rows if r.get("throttled") is True],
        "failed": [dict(r, error_short=_short_error(r.get("error"))) for r in rows if r["status"] == "failed"],
        "skipped": [dict(r, error_short=_short_error(r.get("error"))) for r in rows if r["status"] == "skipped"],
        "unfinished": [r for r in rows if r["status"] in ("planned", "running")],
        "n_samples": sum(r.get("n_samples") or 0 for r in rows),
        "specs": specs,
    }


def latency_groups(rows: list[dict]) -> list[dict]:
    """Per model: every configuration's steady-state latency with its CI, and a chart."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    out = []
    for model in sorted(by_model):
        group = sorted(by_model[model], key=lambda r: (_num(r.get("p50_ms")) is None,
                                                       _num(r.get("p50_ms")) or 0.0))
        ok = _ok(group)
        bars = [plots.Bar(config_label(r), _num(r["p50_ms"]), _num(r.get("ci_low_ms")),
                          _num(r.get("ci_high_ms")), r.get("processor"),
                          "not converged" if r.get("converged") is False else
                          ("throttled" if r.get("throttled") else "")) for r in ok]
        chart = plots.bar_chart(f"{model}: steady-state median latency (95% CI)", bars, "ms per inference",
                                alt=f"Bar chart of median latency for model {model} per configuration")
        out.append({"model": model, "rows": group, "chart": chart})
    return out


def cpu_vs_aipu(rows: list[dict]) -> list[Pair] | Unavailable:
    ok = _ok(rows)
    procs = {r.get("processor") for r in ok}
    if "aipu" not in procs or "cpu" not in procs:
        seen = ", ".join(sorted(p for p in procs if p)) or "none"
        return Unavailable("needs ok measurements of both a CPU and an AIPU backend on the same device; "
                           f"processor classes measured here: {seen}")
    best: dict[tuple, dict] = {}
    for r in ok:
        if r.get("processor") not in ("cpu", "aipu"):
            continue
        k = (r["device"], r["model"], r["processor"])
        if k not in best or r["p50_ms"] < best[k]["p50_ms"]:
            best[k] = r
    pairs = []
    for (device, model, proc), cpu in sorted(best.items()):
        if proc != "cpu" or (device, model, "aipu") not in best:
            continue
        aipu = best[(device, model, "aipu")]
        pairs.append(_pair(device, model, cpu, aipu))
    if not pairs:
        return Unavailable("CPU and AIPU were measured, but never the same model on the same device")
    return pairs


def _pair(device: str, model: str, cpu: dict, aipu: dict) -> Pair:
    c, a = cpu["p50_ms"], aipu["p50_ms"]
    speedup = c / a if a > 0 else None
    cc, ca = _cold(cpu), _cold(aipu)
    break_even = None
    if cc is None or ca is None:
        verdict = ("AIPU faster in steady state" if a < c else "CPU faster in steady state") + \
            "; break-even n/a (load or first inference not measured)"
    elif a < c and ca <= cc:
        break_even, verdict = 1, "AIPU ahead from the first inference"
    elif a < c:
        # total time for n inferences: cold + (n - 1) * p50; AIPU ahead once it has caught up
        break_even = 1 + math.ceil((ca - cc) / (c - a))
        verdict = f"AIPU ahead after {break_even:,} inferences in one process"
    elif ca < cc:
        limit = 1 + math.floor((cc - ca) / (a - c)) if a > c else None
        verdict = ("AIPU ahead only for the first " f"{limit:,} inferences" if limit else
                   "same steady latency; AIPU starts faster")
    else:
        verdict = "CPU ahead at every count (faster start and steady state)"
    return Pair(device, cpu.get("chip"), model, cpu, aipu, speedup, cc, ca, break_even, verdict)


def energy_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in _ok(rows):
        reason = None
        if _num(r.get("power_w")) is None and _num(r.get("energy_mj_per_inf")) is None:
            reason = r.get("power_note") or "no power source recorded for this job"
        out.append(dict(r, na_reason=reason))
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """Non-dominated flags, both axes minimised."""
    flags = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for j, (x2, y2) in enumerate(points)
                        if j != i)
        flags.append(not dominated)
    return flags


def pareto_section(rows: list[dict]) -> list[dict] | Unavailable:
    """Per model: latency against energy per inference where measured, else against peak memory."""
    ok = _ok(rows)
    out = []
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in ok:
        by_model[r["model"]].append(r)
    for model in sorted(by_model):
        group = by_model[model]
        with_energy = [r for r in group if _num(r.get("energy_mj_per_inf")) is not None]
        if len(with_energy) >= 2:
            ykey, ylabel, note = "energy_mj_per_inf", "energy per inference (mJ)", ""
            group = with_energy
        else:
            group = [r for r in group if _num(r.get("peak_rss_mb")) is not None]
            ykey, ylabel = "peak_rss_mb", "peak RSS (MB)"
            note = "energy per inference not measured for two or more configurations; peak memory used instead"
        if len(group) < 2:
            continue
        pts = [(r["p50_ms"], float(r[ykey])) for r in group]
        flags = pareto_front(pts)
        chart = plots.pareto_chart(f"{model}: latency vs {ylabel}",
                                   [(config_label(r), x, y, f, r.get("processor"))
                                    for r, (x, y), f in zip(group, pts, flags)],
                                   "median latency (ms)", ylabel,
                                   alt=f"Pareto plot of latency against {ylabel} for model {model}")
        out.append({"model": model, "chart": chart, "note": note,
                    "front": [r for r, f in zip(group, flags) if f], "ylabel": ylabel, "ykey": ykey})
    if not out:
        return Unavailable("a Pareto plot needs two or more ok configurations of one model with a second "
                           "measured figure (energy or peak memory)")
    return out


# ---- baseline -----------------------------------------------------------------------------
def bootstrap_ratio(cur: list[list[float]], base: list[list[float]], *, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians (current / baseline) with a 95% percentile CI.

    Hierarchical bootstrap: trials are resampled, then samples within each drawn trial, because
    samples of one process are correlated (same placement, same frequency); resampling the pooled
    samples would understate the uncertainty.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def medians(trials: list[list[float]]):
        trials = [np.asarray(t, dtype=float) for t in trials if len(t)]
        out = np.empty(resamples)
        picks = rng.integers(0, len(trials), size=(resamples, len(trials)))
        for b in range(resamples):
            drawn = [trials[i] for i in picks[b]]
            sample = np.concatenate([t[rng.integers(0, len(t), size=len(t))] for t in drawn])
            out[b] = np.median(sample)
        return out

    point = float(np.median(np.concatenate([np.asarray(t, float) for t in cur]))
                  / np.median(np.concatenate([np.asarray(t, float) for t in base])))
    ratios = medians(cur) / medians(base)
    lo, hi = np.percentile(ratios, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return point, float(lo), float(hi)


def _stats_compare():
    try:
        from .. import stats  # noqa: WPS433 - optional sibling module
    except ImportError as exc:
        return None, f"lab.stats not importable ({exc})"
    fn = getattr(stats, "compare", None)
    return (fn, "") if callable(fn) else (None, "lab.stats has no compare()")


def _read_compare(result: Any) -> tuple[float | None, float | None, float | None, bool | None]:
    """Read lab.stats.compare's answer whatever its record type (dataclass, dict or object)."""
    if dataclasses.is_dataclass(result):
        result = dataclasses.asdict(result)
    get = result.get if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    ratio = next((get(k) for k in ("ratio", "ratio_median", "median_ratio") if get(k) is not None), None)
    lo = next((get(k) for k in ("ci_low", "ratio_ci_low", "low") if get(k) is not None), None)
    hi = next((get(k) for k in ("ci_high", "ratio_ci_high", "high") if get(k) is not None), None)
    sig = get("significant")
    if sig is None and get("p_value") is not None:
        sig = float(get("p_value")) < ALPHA
    return (_num(ratio), _num(lo), _num(hi), None if sig is None else bool(sig))


def baseline_section(store: Store, rows: list[dict], base_rows: list[dict]) -> dict:
    base_by_key = {config_key(r): r for r in _ok(base_rows)}
    compare, why_not = _stats_compare()
    deltas: list[Delta] = []
    for r in _ok(rows):
        key = config_key(r)
        b = base_by_key.get(key)
        if b is None:
            continue
        cur_s, base_s = store.samples(r["job_id"]), store.samples(b["job_id"])
        ratio = r["p50_ms"] / b["p50_ms"] if b["p50_ms"] else None
        lo = hi = sig = None
        method = "untested: no raw samples stored (imported result?)"
        if cur_s and base_s and any(cur_s) and any(base_s):
            done = False
            if compare is not None:
                try:
                    result = compare(base_s, cur_s)  # (baseline a, candidate b): ratio = b / a
                    c_ratio, lo, hi, sig = _read_compare(result)
                    if c_ratio is not None:
                        ratio = c_ratio
                    if sig is None and lo is not None and hi is not None:
                        sig = not (lo <= 1.0 <= hi)
                    done = sig is not None
                    method = "lab.stats.compare: " + str(getattr(result, "method", "") or "bootstrap")
                except Exception as exc:  # an analysis bug must not lose the report; say so
                    why_not = f"lab.stats.compare failed ({type(exc).__name__}: {exc})"
            if not done:
                ratio, lo, hi = bootstrap_ratio(cur_s, base_s, seed=int(hashlib.sha256(key.encode())
                                                                      .hexdigest()[:8], 16))
                sig = not (lo <= 1.0 <= hi)
                method = f"hierarchical bootstrap of the median ratio, {BOOTSTRAP_RESAMPLES} resamples" + \
                    (f" ({why_not})" if why_not else "")
        if sig is None:
            status = "untested"
        elif not sig:
            status = "unchanged"
        else:
            status = "regression" if ratio is not None and ratio > 1 else "improvement"
        deltas.append(Delta(key, r, b, ratio, lo, hi, sig, method, status))
    cur_keys = {config_key(r) for r in _ok(rows)}
    return {
        "deltas": sorted(deltas, key=lambda d: ({"regression": 0, "improvement": 1, "untested": 2,
                                                 "unchanged": 3}[d.status], -(d.ratio or 0))),
        "counts": Counter(d.status for d in deltas),
        "only_current": len(cur_keys - set(base_by_key)),
        "only_baseline": len(set(base_by_key) - cur_keys),
    }


# ---- scoring / advisor (other engineers' modules; used when present) ---------------------
def _as_dict(obj: Any) -> dict:
    """A record's documented JSON form first (`to_json`: the CLI's schema), else its fields."""
    if isinstance(obj, dict):
        return obj
    for name in ("to_json", "to_dict", "as_dict", "model_dump"):
        fn = getattr(obj, name, None)
        if callable(fn):
            return fn()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return dict(vars(obj))


def ranking_section(rows: list[dict], profiles: list[str] | None) -> dict | Unavailable:
    """Ranked chips per selection profile via lab.scoring, plus the criteria heatmap data."""
    try:
        from .. import scoring
        from ..catalog import load_catalog
    except ImportError as exc:
        return Unavailable(f"chip scoring is not installed in this lab yet ({exc})")
    try:
        catalog = load_catalog()
        all_profiles = _load_profiles(scoring)
    except ConfigError:
        raise
    except Exception as exc:
        return Unavailable(f"could not load the catalog or the selection profiles ({type(exc).__name__}: {exc})")
    flops_fn = getattr(scoring, "load_model_flops", None)
    flops = flops_fn() if callable(flops_fn) else None  # local model meta.json: for TOPS utilisation
    names = profiles or list(all_profiles)
    unknown = [p for p in names if p not in all_profiles]
    if unknown:
        raise ConfigError(f"unknown profile {unknown[0]!r}", fix="use one of " + ", ".join(all_profiles))
    out = []
    for name in names:
        try:
            scored = [_as_dict(s) for s in scoring.score_chips(catalog, all_profiles[name], rows, flops=flops)]
        except Exception as exc:
            out.append({"profile": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        scored.sort(key=lambda s: (s.get("rank") is None, s.get("rank") or 0))
        criteria = []
        for s in scored:
            for c in (s.get("criteria") or {}):
                if c not in criteria:
                    criteria.append(c)
        out.append({"profile": name, "chips": scored, "criteria": criteria, "error": None,
                    "description": getattr(all_profiles[name], "description", "")})
    return {"profiles": out}


def _load_profiles(scoring) -> dict[str, Any]:
    for name in ("load_profiles", "builtin_profiles"):
        fn = getattr(scoring, name, None)
        if callable(fn):
            profs = fn()
            if isinstance(profs, dict):
                return profs
            return {getattr(p, "id", None) or getattr(p, "name"): p for p in profs}
    raise RuntimeError("lab.scoring has no load_profiles()")


def advisor_section(rows: list[dict], campaigns: list[str]) -> dict | Unavailable:
    """lab.advisor's answer for every model x device of the campaigns, from these rows only (no
    inventory: a device is known by its name and chip, as for imported results)."""
    try:
        from .. import advisor
    except ImportError as exc:
        return Unavailable(f"the CPU-or-AIPU advisor is not installed in this lab yet ({exc})")
    fn = getattr(advisor, "advise_campaign", None)
    if not callable(fn):
        return Unavailable("lab.advisor has no advise_campaign() the report can call")
    answers = []
    try:
        for c in campaigns:
            answers += [_as_dict(a) for a in fn(c, rows=rows, devices=[])]
    except Exception as exc:  # the report still renders; the reader sees why this part is missing
        return Unavailable(f"the advisor failed on these results ({type(exc).__name__}: {exc})")
    if not answers:
        return Unavailable("no model x device pairs to advise on")
    return {"answers": answers}


# ---- provenance and raw data --------------------------------------------------------------
def provenance_rows(store: Store, rows: list[dict]) -> dict:
    """Provenance per job, plus the groups it shares (runner/runtime/host, model hashes): at 2,000
    jobs the shared parts would otherwise repeat 2,000 times."""
    jobs, groups, models = [], Counter(), Counter()
    for r in rows:
        if r["status"] not in ("ok", "failed"):
            continue
        p = store.provenance(r["job_id"]) if r["status"] == "ok" else {}
        env = p.get("env") or {}
        cmds = p.get("commands") or []
        runner = " ".join(str(x) for x in (p.get("runner") or r.get("source"), p.get("runner_version")) if x)
        runtime = ", ".join(f"{k} {env[k]}" for k in ("python", "paddle", "paddlelite", "numpy") if env.get(k))
        groups[(runner or None, runtime or None, env.get("hostname"), p.get("stats_method"))] += 1
        sha = p.get("model_sha256") or r.get("model_sha256")
        models[(r["model"], sha)] += 1
        jobs.append({"row": r, "model_sha256": sha, "command": cmds[0] if cmds else None,
                     "n_commands": len(cmds), "notes": p.get("notes") or []})
    return {"jobs": jobs,
            "groups": [{"runner": k[0], "runtime": k[1], "host": k[2], "stats_method": k[3], "n": n}
                       for k, n in sorted(groups.items(), key=lambda kv: -kv[1])],
            "models": [(m, sha, n) for (m, sha), n in sorted(models.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))]}


def _sig(v: Any) -> Any:
    """Floats to 6 significant digits for the embedded CSV (measurement noise is far larger)."""
    return float(f"{v:.6g}") if isinstance(v, float) and math.isfinite(v) else v


def embedded_data(rows: list[dict], samples: dict[str, list[list[float]]]) -> str:
    """The page's raw data: JSON, gzip-compressed, base64 - the page unpacks it for the downloads.

    Why compressed: 100,000 samples and 2,000 rows are 1.6 MB of JSON text but ~0.6 MB this way,
    which keeps big campaigns under the 5 MB budget. Base64 has no '<' or '&', so nothing in the
    data (a device called "</script>") can end the element it sits in.
    """
    cols = CSV_COLUMNS
    table = [[(json.dumps(r.get(c), sort_keys=True) if c == "options" else _sig(r.get(c))) for c in cols]
             for r in rows]
    compact = {j: [[round(x, 4) for x in t] for t in trials] for j, trials in samples.items()}
    text = json.dumps({"columns": cols, "rows": table, "samples": compact}, separators=(",", ":"),
                      default=str, allow_nan=False)
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)).decode("ascii")


def decode_embedded(blob: str) -> dict:
    """Inverse of `embedded_data` (tests, and anyone scripting against a report file)."""
    return json.loads(gzip.decompress(base64.b64decode(blob)).decode("utf-8"))


# ------------------------------------------------------------------------------------ build
def build_report(store: Store, campaigns: list[str], *, baseline: str | None = None,
                 profiles: list[str] | None = None, title: str | None = None,
                 now: datetime | None = None) -> Report:
    known = set(store.campaigns())
    if not campaigns:
        raise ConfigError("no campaign given", fix="pass --campaign NAME; stored: " + (", ".join(sorted(known)) or "none"))
    for c in list(campaigns) + ([baseline] if baseline else []):
        if c not in known:
            raise ConfigError(f"no campaign named {c!r} in {store.path}",
                              fix="stored campaigns: " + (", ".join(sorted(known)) or "none - run `lab run` first"))
    rows = store.results_rows(campaigns)
    specs = {c: store.campaign_spec(c) for c in campaigns}
    rep = Report(title=title or f"hwlab chip comparison: {', '.join(campaigns)}", campaigns=list(campaigns),
                 generated_at=(now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
                 rows=rows, summary=summarize_rows(rows, specs))
    rep.latency = latency_groups(_ok(rows))
    s = rep.sections
    s["ranking"] = ranking_section(rows, profiles)
    s["cpu_aipu"] = cpu_vs_aipu(rows)
    ok = _ok(rows)
    s["cold"] = {"rows": ok, "chart": plots.stacked_chart(
        "Cold start: load (predictor creation) + first inference",
        [config_label(r, with_model=True) for r in ok],
        [("load", [_num(r.get("load_ms")) for r in ok]), ("first inference", [_num(r.get("first_ms")) for r in ok])],
        "ms", alt="Stacked bar chart of load time and first inference time per configuration")}
    s["energy"] = energy_rows(rows)
    mem_bars = [plots.Bar(config_label(r, with_model=True), _num(r.get("peak_rss_mb")), processor=r.get("processor"))
                for r in ok if _num(r.get("peak_rss_mb")) is not None]
    s["memory"] = {"rows": ok, "chart": plots.bar_chart("Peak resident memory (VmHWM) per configuration",
                                                        mem_bars, "MB", alt="Bar chart of peak memory")}
    s["thermal"] = ok
    s["pareto"] = pareto_section(rows)
    s["advisor"] = advisor_section(rows, list(campaigns))
    s["baseline"] = (baseline_section(store, rows, store.results_rows([baseline])) if baseline else None)
    s["baseline_name"] = baseline
    s["provenance"] = provenance_rows(store, rows)
    s["data_json"] = embedded_data(rows, store.all_samples([r["job_id"] for r in rows]))
    return rep


def heat_class(v: Any) -> str:
    """CSS class of a heatmap cell: 10 buckets over [0, 1]; unknown gets its own hatched class."""
    x = _num(v)
    if x is None:
        return "heat-na"
    return f"heat{min(9, max(0, int(x * 10)))}"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["label"] = config_label
    env.filters["heat"] = heat_class
    env.tests["unavailable"] = lambda v: isinstance(v, Unavailable)
    return env


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(rep: Report) -> str:
    style = (TEMPLATES / "report.css").read_text()
    script = (TEMPLATES / "report.js").read_text()
    csp = (f"default-src 'none'; img-src data:; style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
           "base-uri 'none'; form-action 'none'")
    return _env().get_template("report.html.j2").render(
        r=rep, s=rep.sections, style=Markup(style), script=Markup(script), csp=csp,
        data_json=Markup(rep.sections["data_json"]))


def write_report(store_path: str | Path, campaigns: list[str], out: str | Path, *, baseline: str | None = None,
                 profiles: list[str] | None = None) -> Path:
    path = Path(store_path)
    if not path.exists():
        raise ConfigError(f"no results store at {path}", fix="run a campaign first (`lab run CAMPAIGN`) or pass --store")
    store = Store(path)
    try:
        html = render_html(build_report(store, campaigns, baseline=baseline, profiles=profiles))
    finally:
        store.close()
    out = Path(out)
    blocker = next((p for p in reversed(out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"cannot write {out}: {blocker} is a file, not a directory",
                          fix="give -o a path whose folders are folders, e.g. reports/demo/index.html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder for {out}: {exc.strerror or exc}",
                          fix="give -o a writable path") from None
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
