"""Import measurements made elsewhere (vendor tables, other tools) from the documented CSV.

Why: a chip decision often mixes the lab's own runs with published numbers; imported rows go into
the same store (source = where they came from) so scoring, advice and reports use both, and say which.
"""
from __future__ import annotations

import csv
import math
from typing import IO

from lab.devices.backends import RUN_PRECISIONS
from lab.core.records import job_id_for
from lab.core.errors import ConfigError
from lab.core.records import PROCESSOR_CLASSES, Job, Measurement
from lab.core.textsafe import one_line

HEADER = ["device", "chip", "model", "backend", "processor", "precision", "threads", "batch", "p50_ms",
          "p90_ms", "mean_ms", "load_ms", "first_ms", "energy_mj_per_inf", "peak_rss_mb", "source"]
REQUIRED = ["device", "chip", "model", "processor"]
MAX_NAME = 256
NUMERIC = ["p50_ms", "p90_ms", "mean_ms", "load_ms", "first_ms", "energy_mj_per_inf", "peak_rss_mb"]


def parse_results_csv(fh: IO[str], path: str, campaign: str,
                      chip_ids: set[str] | None = None) -> list[tuple[Job, Measurement]]:
    reader = csv.DictReader(fh)
    try:
        return _parse(reader, path, campaign, chip_ids)
    except csv.Error as exc:  # a field over csv's 128 KiB limit, a NUL byte, a broken quote
        raise ConfigError(f"not a results CSV: {exc}", path=path, line=reader.line_num or None,
                          fix="one measurement per row, the documented header first") from None


def _parse(reader: csv.DictReader, path: str, campaign: str,
           chip_ids: set[str] | None) -> list[tuple[Job, Measurement]]:
    _check_header(reader.fieldnames, path)
    if chip_ids is None:
        from lab.devices.catalog import load_catalog
        chip_ids = set(load_catalog().ids())
    out: list[tuple[Job, Measurement]] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if row.get(None):
            raise ConfigError(f"{len(row[None])} more cell(s) than the header has columns", path=path, line=line,
                              fix="remove the extra cells or add their columns to the header")
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(row.values()):
            continue
        job, m = _record(row, path, line, campaign, chip_ids)
        if job.job_id in seen:
            raise ConfigError("duplicate row (same device, model, backend, precision, threads, batch, source)",
                              path=path, line=line, fix=f"same as line {seen[job.job_id]}; keep one")
        seen[job.job_id] = line
        out.append((job, m))
    if not out:
        raise ConfigError("no data rows", path=path, line=2, fix="add at least one measurement row")
    return out


def _check_header(fieldnames, path: str) -> None:
    """Only documented columns; the required ones and at least one latency among them."""
    if not fieldnames:
        raise ConfigError("empty CSV: no header", path=path, line=1, fix="first line: " + ",".join(HEADER))
    names = [n.strip() for n in fieldnames]
    unknown = [n for n in names if n not in HEADER]
    if unknown:
        raise ConfigError(f"unknown column {unknown[0]!r}", path=path, line=1,
                          fix="allowed columns: " + ",".join(HEADER))
    missing = [n for n in REQUIRED if n not in names]
    if missing or not ({"p50_ms", "mean_ms"} & set(names)):
        need = missing[0] if missing else "p50_ms or mean_ms"
        raise ConfigError(f"missing column {need!r}", path=path, line=1,
                          fix="required: device, chip, model, processor and one of p50_ms/mean_ms")


def _record(row: dict[str, str], path: str, line: int, campaign: str,
            chip_ids: set[str]) -> tuple[Job, Measurement]:
    """One checked data row as the Job and Measurement the store keeps."""
    _check_names(row, path, line, chip_ids)
    nums = _latencies(row, path, line)
    threads = _int(row.get("threads", ""), "threads", path, line)
    batch = _int(row.get("batch", ""), "batch", path, line) or 1
    precision = row.get("precision") or "fp32"
    if precision not in RUN_PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not known", path=path, line=line,
                          fix="use " + ", ".join(RUN_PRECISIONS))
    backend = row.get("backend") or f"external-{row['processor']}"
    source = row.get("source") or f"import:{path}"
    identity = {"campaign": campaign, "device": row["device"], "chip": row["chip"], "model": row["model"],
                "backend": backend, "processor": row["processor"], "precision": precision,
                "threads": threads, "batch": batch, "source": source}
    jid = job_id_for(identity)
    job = Job(job_id=jid, campaign=campaign, device=row["device"], chip=row["chip"], model=row["model"],
              model_sha256="", backend=backend, processor=row["processor"], precision=precision,
              threads=threads, batch=batch)  # threads None = not stated (never 0)
    m = Measurement(job_id=jid, p50_ms=nums["p50_ms"], p90_ms=nums["p90_ms"], mean_ms=nums["mean_ms"],
                    load_ms=nums["load_ms"], first_ms=nums["first_ms"],
                    energy_mj_per_inf=nums["energy_mj_per_inf"], peak_rss_mb=nums["peak_rss_mb"],
                    n_samples=0, source=source,
                    provenance={"imported_from": path, "line": line})
    m.notes.append("imported: no raw samples, no CI")
    return job, m


def _check_names(row: dict[str, str], path: str, line: int, chip_ids: set[str]) -> None:
    """Required cells filled, names plain and bounded, a known processor class and chip."""
    for key in REQUIRED:
        if not row.get(key):
            raise ConfigError(f"empty {key!r}", path=path, line=line, fix=f"fill in {key}")
    for key in ("device", "model", "backend", "source"):
        value = row.get(key) or ""
        if len(value) > MAX_NAME or one_line(value) != value:
            raise ConfigError(f"{key} {value[:40]!r}: names are at most {MAX_NAME} characters "
                              "without control characters", path=path, line=line,
                              fix="use a plain name")
    if row["processor"] not in PROCESSOR_CLASSES:
        raise ConfigError(f"processor {row['processor']!r} is not cpu, gpu or aipu", path=path, line=line,
                          fix="use cpu, gpu or aipu")
    if row["chip"] not in chip_ids:
        raise ConfigError(f"unknown chip {row['chip']!r}", path=path, line=line,
                          fix="use a chip id from `lab chips`")


def _latencies(row: dict[str, str], path: str, line: int) -> dict[str, float | None]:
    """The NUMERIC cells: unknown (empty) or positive, one latency at least, p90 not below p50."""
    nums = {key: _number(row.get(key, ""), key, path, line) for key in NUMERIC}
    if nums["p50_ms"] is None and nums["mean_ms"] is None:
        raise ConfigError("row has neither p50_ms nor mean_ms", path=path, line=line,
                          fix="give at least one latency")
    for key in NUMERIC:
        if nums[key] == 0:
            raise ConfigError(f"{key} is 0: a measurement cannot be zero", path=path, line=line,
                              fix="leave the cell empty when unknown (empty = unknown, never 0)")
    if nums["p50_ms"] is not None and nums["p90_ms"] is not None and nums["p90_ms"] < nums["p50_ms"]:
        raise ConfigError(f"p90_ms {nums['p90_ms']:g} is below p50_ms {nums['p50_ms']:g}", path=path,
                          line=line, fix="check the columns: p90 is the slower tail")
    return nums


def _cell(text: str, key: str, path: str, line: int, convert, kind: str, fix: str):
    """A cell read by `convert`; an empty cell is unknown (None), never 0."""
    if text == "":
        return None
    try:
        return convert(text)
    except ValueError:
        raise ConfigError(f"{key} {text!r} is not {kind}", path=path, line=line, fix=fix) from None


def _number(text: str, key: str, path: str, line: int) -> float | None:
    v = _cell(text, key, path, line, float, "a number",
              "use a plain number, or leave the cell empty when unknown")
    if v is not None and (math.isnan(v) or v < 0 or math.isinf(v)):
        raise ConfigError(f"{key} {text!r} must be a non-negative number", path=path, line=line,
                          fix="leave the cell empty when unknown (empty = unknown, never 0)")
    return v


def _int(text: str, key: str, path: str, line: int) -> int | None:
    v = _cell(text, key, path, line, int, "an integer", "use a whole number")
    if v is None:
        return None
    limit = 1024 if key == "threads" else 65536
    if not 1 <= v <= limit:
        raise ConfigError(f"{key} must be between 1 and {limit}", path=path, line=line,
                          fix="use a sensible positive integer")
    return v
