"""Assemble the chip-comparison report from the store and render it to one HTML file.

Why one file with everything inside (CSS, script, SVG charts, the raw data): the report is mailed,
archived and opened offline by people who decide; it must not depend on a server or the network.
A Content-Security-Policy with hashes of our own style and script makes that a browser-enforced
fact (nothing external can load, injected markup cannot run), on top of jinja2 autoescaping.

What each section shows is lab/report/sections.py (and serving.py); this module places them in a
`Report`, embeds the raw data, and renders the template. It never imports lab.transport,
lab.measure.scheduler or lab.commands.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from lab.core.errors import ConfigError
from lab.core.records import ResultRow
from lab.decide.figures import fmt_num
from lab.report.sections import (Unavailable, advisor_section, baseline_section, cold_section, config_label,
                                 cpu_vs_aipu, energy_rows, frameworks_section, identity_marks,
                                 latency_groups, marked_label, memory_section, num, ok_rows,
                                 op_profile_section, pareto_section, provenance_rows, ranking_section,
                                 split_simulated, summarize_rows, sustained_section, web_labels)
from lab.report.serving import serving_section
from lab.results.store import ROW_FIELDS, Store

TEMPLATES = Path(__file__).parent / "templates"

CSV_COLUMNS = [f for f in ROW_FIELDS] + ["options"]
# raw samples embedded in a page: 100,000 (issue 8's scale) keep it under its 5 MB budget; a farm's
# million would not, so whole jobs are embedded up to this many and the page says how to get the rest
SAMPLES_EMBEDDED_MAX = 100_000


@dataclass
class Report:
    """The page's content: the summary, latency groups and every section by name (sections.py)."""

    title: str
    campaigns: list[str]
    generated_at: str
    rows: list[ResultRow]
    summary: dict
    latency: list[dict] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ presentation
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


def heat_class(v: Any) -> str:
    """CSS class of a heatmap cell: 10 buckets over [0, 1]; unknown gets its own hatched class."""
    x = num(v)
    if x is None:
        return "heat-na"
    return f"heat{min(9, max(0, int(x * 10)))}"


# ------------------------------------------------------------------------------------ raw data
def _sig(v: Any) -> Any:
    """Floats to 6 significant digits for the embedded CSV (measurement noise is far larger)."""
    return float(f"{v:.6g}") if isinstance(v, float) and math.isfinite(v) else v


def embedded_data(rows: list[ResultRow], samples: dict[str, list[list[float]]]) -> str:
    """The page's raw data: JSON, gzip-compressed, base64 - the page unpacks it for the downloads.

    Why compressed: 100,000 samples and 2,000 rows are 1.6 MB of JSON text but ~0.6 MB this way,
    which keeps big campaigns under the 5 MB budget. Base64 has no '<' or '&', so nothing in the
    data (a device called "</script>") can end the element it sits in.
    """
    cols = CSV_COLUMNS
    docs = [r.to_json() for r in rows]  # the rows of `lab results --format json`
    table = [[(json.dumps(d[c], sort_keys=True) if c == "options" else _sig(d[c])) for c in cols] for d in docs]
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
                 now: datetime | None = None, allow_different: tuple[str, ...] = ()) -> Report:
    _check_campaigns(store, campaigns, baseline)
    all_rows = store.results(campaigns)
    store.provenances(r.job_id for r in all_rows)  # one query; the sections' provenance() reads it
    specs = {c: store.campaign_spec(c) for c in campaigns}
    rep = Report(title=title or f"hwlab chip comparison: {', '.join(campaigns)}", campaigns=list(campaigns),
                 generated_at=(now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
                 rows=all_rows, summary=summarize_rows(all_rows, specs))
    # simulated rows never sit next to measured ones (sections.split_simulated): shown apart
    rows, simulated, only_simulated = split_simulated(all_rows)
    rep.latency = latency_groups(ok_rows(rows))
    s = rep.sections
    s["simulated"] = {"rows": simulated, "only": only_simulated}
    s["ranking"] = ranking_section(rows, profiles)
    s["cpu_aipu"] = cpu_vs_aipu(rows)
    ok = ok_rows(rows)
    s["cold"] = cold_section(ok)
    s["energy"] = energy_rows(rows)
    s["memory"] = memory_section(ok)
    s["thermal"] = ok
    s["sustained"] = sustained_section(store, rows)
    s["pareto"] = pareto_section(rows)
    s["frameworks"] = frameworks_section(store, ok)
    op_profiles = store.op_profiles([r.job_id for r in ok])
    s["op_profiles"] = op_profile_section(rows, op_profiles)
    s["serving"] = serving_section(store, rows, config_label)
    s["advisor"] = advisor_section(rows, list(campaigns), op_profiles)
    s["baseline"] = (baseline_section(store, rows, store.results([baseline]), allow_different)
                     if baseline else None)
    s["baseline_name"] = baseline
    s["provenance"] = provenance_rows(store, all_rows)
    s["web"] = web_labels(store, rows)
    ids, s["samples_left"] = samples_to_embed(all_rows)
    s["data_json"] = embedded_data(all_rows, store.all_samples(ids))
    return rep


def samples_to_embed(rows: list[ResultRow], budget: int | None = None) -> tuple[list[str], dict | None]:
    """The jobs whose raw samples the page carries (whole jobs, in table order, up to `budget`
    samples, default SAMPLES_EMBEDDED_MAX), and what was left out (None when nothing was)."""
    budget = SAMPLES_EMBEDDED_MAX if budget is None else budget
    ids, n, left_jobs, left_samples = [], 0, 0, 0
    for r in rows:
        k = r.n_samples or 0
        if n + k <= budget:
            ids.append(r.job_id)
            n += k
        else:
            left_jobs, left_samples = left_jobs + 1, left_samples + k
    return ids, ({"jobs": left_jobs, "samples": left_samples, "budget": budget} if left_jobs else None)


def _check_campaigns(store: Store, campaigns: list[str], baseline: str | None) -> None:
    """Every campaign asked for (and the baseline) is in the store; ConfigError names the stored ones."""
    known = set(store.campaigns())
    if not campaigns:
        raise ConfigError("no campaign given", fix="pass --campaign NAME; stored: " + (", ".join(sorted(known)) or "none"))
    for c in list(campaigns) + ([baseline] if baseline else []):
        if c not in known:
            raise ConfigError(f"no campaign named {c!r} in {store.path}",
                              fix="stored campaigns: " + (", ".join(sorted(known)) or "none - run `lab run` first"))


# ------------------------------------------------------------------------------------ render
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["label"] = marked_label  # config_label + [emulated] etc. (sections.identity_marks)
    env.filters["heat"] = heat_class
    env.filters["marks"] = identity_marks
    env.filters["sig"] = fmt_num  # the advisor's figures: 3 significant digits (lab.decide.figures)
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
                 profiles: list[str] | None = None, allow_different: tuple[str, ...] = ()) -> Path:
    path = Path(store_path)
    if not path.exists():
        raise ConfigError(f"no results store at {path}", fix="run a campaign first (`lab run CAMPAIGN`) or pass --store")
    store = Store(path, readonly=True)
    try:
        html = render_html(build_report(store, campaigns, baseline=baseline, profiles=profiles,
                                        allow_different=allow_different))
    finally:
        store.close()
    from lab.core.outpaths import write_text  # checked, atomic; device nodes are never replaced
    return write_text(out, html)
