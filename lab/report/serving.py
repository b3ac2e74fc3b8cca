"""The report's serving section: QPS against p99 per device, max QPS under the bound, cost, and
beside each QPS where a request's time went (the model or the endpoint: what limits the figure).

Why apart from render.py: it reads the sweep points from each serving job's provenance (typed by
lab.serving.sweep.sweep_points) and the chips' cloud-hourly prices (lab.decide.measures.hourly_usd, the
one definition the cloud-serving profile also scores with); render.py only places the section.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.core.records import ResultRow
from lab.report import plots


@dataclass(frozen=True)
class Split:
    """Where the row's requests spent their time (means, ms; lab.serving.stats), in the parts a
    reader weighs: the model, the endpoint's own work, waiting inside it, and everything outside
    it (HTTP on the wire, a request waiting in its socket, the client)."""

    queue_ms: float
    decode_ms: float
    model_ms: float
    encode_ms: float
    other_ms: float  # in the endpoint but in no phase (the HTTP server's own parsing and routing)
    outside_ms: float | None  # the client's mean latency - the endpoint's time; None without it
    share: float | None  # the endpoint's own share: everything but the model
    largest: str  # the part that limits the figure, in words


@dataclass
class ServingRow:
    row: ResultRow
    label: str
    cost_per_million_usd: float | None
    cost_note: str
    split: Split | None = None


def request_split(r: ResultRow) -> Split | None:
    """The row's split, or None when its endpoint has no statistics call (pipeline format)."""
    if r.endpoint_model_ms is None or r.endpoint_server_ms is None:
        return None
    q, d, m, e = (r.endpoint_queue_ms or 0.0, r.endpoint_decode_ms or 0.0, r.endpoint_model_ms,
                  r.endpoint_encode_ms or 0.0)
    other = max(0.0, r.endpoint_server_ms - q - d - m - e)
    outside = max(0.0, r.mean_ms - r.endpoint_server_ms) if r.mean_ms is not None else None
    parts = {"the model": m, "the endpoint's work (decode, encode, HTTP)": d + e + other,
             "queueing in the endpoint": q, "outside the endpoint (socket wait, network, client)": outside or 0.0}
    name = max(parts, key=parts.get)
    total = r.mean_ms or sum(parts.values())
    return Split(q, d, m, e, other, outside, r.endpoint_share,
                 f"{name} ({parts[name] / total:.0%})" if total else name)


def serving_section(store, rows: list[ResultRow], label) -> dict[str, Any] | None:
    """None when the campaigns have no serving job (the template then leaves the section out)."""
    from lab.devices.catalog import load_catalog
    from lab.decide.measures import cost_per_million, hourly_usd
    from lab.serving.sweep import sweep_points
    srv = [r for r in rows if r.ok and r.scenario is not None]
    if not srv:
        return None
    catalog = load_catalog()
    out, series, bounds = [], [], set()
    for r in sorted(srv, key=lambda r: (r.device, r.model, r.instances or 0, r.max_batch or 0)):
        name = f"{label(r, with_model=True)} x{r.instances or '?'} b{r.max_batch or '?'}"
        chip = catalog.chips.get(r.chip) if r.chip else None
        usd_h, why = hourly_usd(chip) if chip is not None else (None, f"chip {r.chip!r} not in the catalog")
        cost = cost_per_million(r.qps, usd_h) if r.valid else None
        note = why if usd_h is None else (f"at {r.qps:.4g} QPS, {why}" if cost is not None else
                                          "no valid rate to price")
        out.append(ServingRow(r, name, cost, note, request_split(r)))
        pts = sweep_points(store.provenance(r.job_id))
        if pts:
            series.append((name, [(p.qps if p.qps is not None else p.target_qps, p.p99_ms, p.valid) for p in pts]))
        if r.latency_bound_ms:
            bounds.add(r.latency_bound_ms)
    bound = bounds.pop() if len(bounds) == 1 else None
    chart = plots.curve_chart("QPS against p99 latency (LoadGen Server runs of each sweep)", series,
                              "QPS (scheduled, Poisson)", "p99 latency (ms, log)", hline=bound,
                              hline_label=f"bound {bound:g} ms" if bound else "",
                              alt="Line chart of p99 latency against offered QPS per device and configuration")
    return {"rows": out, "chart": chart, "split_rows": [v for v in out if v.split is not None]}
