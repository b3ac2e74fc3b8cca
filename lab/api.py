"""The lab from Python (a notebook): stored results as a pandas DataFrame, raw samples, chip scores
and the CPU-or-AIPU advice, the same records the CLI prints as JSON.

Why here and not in the commands: a notebook user wants the rows typed (floats, nullable integers
and booleans, text) under the names of `lab results --format json` (units in the names, as in
docs/results-schema.md), not text to parse; and `score`/`advise` return exactly what `lab score
--format json` and `lab advise --format json` print, so a notebook and a script never disagree.
pandas is imported on the first call, never by the CLI.

    import lab.api
    df = lab.api.results(store="results/lab.sqlite", campaign="demo")
    df[df.status == "ok"].groupby(["device", "backend"]).p50_ms.median()
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.core import jsonio
from lab.core.records import ResultRow
from lab.results.store import ROW_FIELDS, Store

if TYPE_CHECKING:
    import pandas

DEFAULT_STORE = "results/lab.sqlite"

# pandas dtype of each results field, from ResultRow's annotations: unknown stays missing (NaN, <NA>)
_DTYPE = {"str": "string", "float": "float64", "int": "Int64", "bool": "boolean"}


def _dtype(name: str) -> str:
    kind = str(ResultRow.__dataclass_fields__[name].type).split(" ")[0].split("|")[0]
    return _DTYPE[kind]


def _campaigns(campaign: str | Iterable[str] | None) -> list[str] | None:
    return [campaign] if isinstance(campaign, str) else None if campaign is None else list(campaign)


def _open(store: str | Path, campaigns: list[str] | None) -> Store:
    s = Store(store, readonly=True)
    try:
        if campaigns:
            s.require_campaigns(campaigns)
    except BaseException:
        s.close()
        raise
    return s


def results(store: str | Path = DEFAULT_STORE, campaign: str | Iterable[str] | None = None, *,
            status: str | None = None, samples: bool = False) -> pandas.DataFrame:
    """One row per stored job, the columns of `lab results --format json` in that order, typed:
    text `string`, figures `float64`, counts `Int64`, flags `boolean` (unknown: NaN / <NA>, never
    0); `options` holds a dict per row. `samples=True` adds `samples_ms`: the raw steady samples,
    one list per trial (empty for jobs without samples)."""
    import pandas as pd
    campaigns = _campaigns(campaign)
    s = _open(store, campaigns)
    try:
        cols: list[list[Any]] = [[] for _ in ROW_FIELDS]
        options = []
        for vals, opts in s.scan(campaigns, status=status):
            for col, v in zip(cols, vals):
                col.append(v)
            options.append(dict(opts))
        raw = s.all_samples(cols[0]) if samples else None
    finally:
        s.close()
    frame = pd.DataFrame({name: pd.array(col, dtype=_dtype(name)) for name, col in zip(ROW_FIELDS, cols)})
    frame["options"] = pd.Series(options, dtype="object")
    if raw is not None:
        frame["samples_ms"] = pd.Series([raw.get(j, []) for j in cols[0]], dtype="object")
    return frame


def samples(store: str | Path = DEFAULT_STORE, campaign: str | Iterable[str] | None = None
            ) -> pandas.DataFrame:
    """Raw steady samples in long form, one row per sample: job_id, trial, idx, ms (the store's
    `samples` table), for the jobs of `campaign` (default: all)."""
    import pandas as pd
    campaigns = _campaigns(campaign)
    s = _open(store, campaigns)
    try:
        ids = None if campaigns is None else [v[0] for v, _ in s.scan(campaigns)]
        by_job = s.all_samples(ids)
    finally:
        s.close()
    rows = [(j, t, i, ms) for j, trials in by_job.items() for t, trial in enumerate(trials)
            for i, ms in enumerate(trial)]
    frame = pd.DataFrame(rows, columns=["job_id", "trial", "idx", "ms"])
    return frame.astype({"job_id": "string", "trial": "Int64", "idx": "Int64", "ms": "float64"})


def _as_json(doc: Any) -> Any:
    """Exactly what the CLI prints, read back: strict JSON (unknown is None, tuples are lists)."""
    return jsonio.loads(jsonio.dumps(doc))


def score(profile: str, store: str | Path = DEFAULT_STORE, campaign: str | Iterable[str] | None = None,
          *, catalog: str | Path | None = None, profiles: str | Path | None = None,
          models_root: str | Path = "models", draws: int = 1000, seed: int = 0) -> list[dict]:
    """`lab score --profile P --format json`: each chip's score, criteria, exclusions, stability."""
    from lab.core.errors import ConfigError
    from lab.decide.measures import load_model_flops
    from lab.decide.profiles import load_profiles
    from lab.decide.scoring import score_chips
    from lab.devices.catalog import load_catalog
    known = load_profiles(profiles)
    if profile not in known:
        raise ConfigError(f"unknown profile {profile!r}", fix="known: " + ", ".join(sorted(known)))
    campaigns = _campaigns(campaign)
    rows: list[ResultRow] = []
    if Path(store).is_file() or campaigns:
        s = _open(store, campaigns)
        try:
            rows = s.results(campaigns)
        finally:
            s.close()
    ranked = score_chips(load_catalog(catalog), known[profile], rows, flops=load_model_flops(models_root),
                         draws=draws, seed=seed)
    return _as_json([r.to_json() for r in ranked])


def advice_rows(store: str | Path, device: str, model: str) -> list[ResultRow]:
    """Only the rows an answer for (model, device) reads (issue 23), selected in SQL: the device's
    (its chip, the model's measurements), one of the model's if the device has none (a model
    known from stored rows), one per device if the device has none (an unknown device's error
    names the known ones). An absent store is empty, not created."""
    if not Path(store).exists():
        return []
    s = Store(store, readonly=True)
    try:
        rows = s.results(device=device)
        if not any(r.model == model for r in rows):
            rows += s.results(model=model, limit=1)
        if not any(r.device == device for r in rows):
            rows += s.results(one_per_device=True)
        return rows
    finally:
        s.close()


def advise(model: str, device: str, store: str | Path = DEFAULT_STORE, *,
           devices: str | Path | None = "devices.yaml", models_root: str | Path = "models",
           **options: Any) -> dict:
    """`lab advise --model M --device D --format json`: the verdict, its reasons and numbers.
    `options`: the budgets and flags of `lab advise` (latency_budget_ms, first_inference_budget_ms,
    no_preload, busy_cpu, power_budget_w)."""
    from lab.decide.advice_records import Options
    from lab.decide.advisor import advise as answer
    a = answer(model, device, options=Options(**options), store_path=store, devices_path=devices,
               models_root=models_root, rows=advice_rows(store, device, model))
    return _as_json(a.to_dict())
