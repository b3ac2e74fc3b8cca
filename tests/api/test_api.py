"""lab.api for notebooks (issue 25): results as a typed DataFrame equal to the CLI's JSON for the
same store (values, dtypes, units in the names), raw samples on request, and score/advise returning
the CLI's JSON records."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from advisor_fixtures import CNN_OPS, make_model
from results_fixtures import small_store

import lab.api
from lab.cli import main
from lab.core.errors import ConfigError
from lab.results.store import ROW_FIELDS

DTYPES = {"string": pd.StringDtype(), "float64": "float64", "Int64": pd.Int64Dtype(), "boolean": pd.BooleanDtype()}


def _cli_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _cell(v):
    """A DataFrame cell as JSON reads it: missing (NaN, <NA>) is null; numpy scalars are Python."""
    if v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


@pytest.mark.parametrize("campaign", [None, "demo"])
def test_results_frame_is_the_cli_json(tmp_path, capsys, campaign):
    db = small_store(tmp_path / "lab.sqlite")
    docs = _cli_json(capsys, "--store", str(db), "results", "--format", "json",
                     *(["--campaign", campaign] if campaign else []))
    df = lab.api.results(store=db, campaign=campaign)
    assert list(df.columns) == ROW_FIELDS + ["options"] == list(docs[0])
    assert len(df) == len(docs) == (5 if campaign else 6)
    for i, doc in enumerate(docs):
        assert {k: _cell(df.iloc[i][k]) if k != "options" else df.iloc[i][k] for k in doc} == doc
    # typed, with the units in the names (docs/results-schema.md)
    assert df["p50_ms"].dtype == "float64" and df["peak_rss_mb"].dtype == "float64"
    assert df["threads"].dtype == DTYPES["Int64"] and df["n_samples"].dtype == DTYPES["Int64"]
    assert df["agree_ok"].dtype == DTYPES["boolean"] and df["device"].dtype == DTYPES["string"]
    assert {"p50_ms", "load_ms", "power_w", "energy_mj_per_inf", "temp_max_c"} <= set(df.columns)
    ok = df[df.status == "ok"]
    assert ok.p50_ms.median() == pytest.approx(14.95) and ok.agree_ok.sum() == 2


def test_samples_on_request(tmp_path):
    db = small_store(tmp_path / "lab.sqlite")
    assert "samples_ms" not in lab.api.results(store=db)
    df = lab.api.results(store=db, campaign="demo", samples=True).set_index("job_id")
    assert df.loc["job001", "samples_ms"] == [[13.3, 13.4, 13.200000000000001], [13.3, 13.5, 13.25]]
    assert df.loc["job010", "samples_ms"] == []  # failed: no samples
    long = lab.api.samples(store=db, campaign="demo")
    assert list(long.columns) == ["job_id", "trial", "idx", "ms"] and len(long) == 4 * 6
    assert long[long.job_id == "job001"].groupby("trial").ms.count().tolist() == [3, 3]
    assert lab.api.samples(store=db, campaign="other").empty


def test_bad_arguments_are_config_errors(tmp_path):
    db = small_store(tmp_path / "lab.sqlite")
    with pytest.raises(ConfigError, match="no campaign named 'nope'"):
        lab.api.results(store=db, campaign="nope")
    with pytest.raises(ConfigError, match="no results store"):
        lab.api.results(store=tmp_path / "absent.sqlite")
    with pytest.raises(ConfigError, match="unknown profile"):
        lab.api.score("nope", store=db)


def test_score_and_advise_return_the_cli_json(tmp_path, capsys):
    db = small_store(tmp_path / "lab.sqlite")
    models = tmp_path / "models"
    make_model(models, "mobilenet_v1", CNN_OPS, macs=570_000_000, share=0.97)
    (tmp_path / "devices.yaml").write_text("devices: []\n")
    common = ["--store", str(db), "--devices", str(tmp_path / "devices.yaml")]
    assert main(["score"]) == 0  # the profiles, listed: take the first
    pid = capsys.readouterr().out.splitlines()[1].split(":")[0].strip()
    cli = _cli_json(capsys, *common, "score", "--profile", pid, "--models-root", str(models), "--draws", "50",
                    "--format", "json")
    assert lab.api.score(pid, store=db, models_root=models, draws=50) == cli
    cli = _cli_json(capsys, *common, "advise", "--models-root", str(models), "--model", "mobilenet_v1",
                    "--device", "phone", "--latency-budget-ms", "20", "--format", "json")
    got = lab.api.advise("mobilenet_v1", "phone", store=db, devices=tmp_path / "devices.yaml",
                         models_root=models, latency_budget_ms=20)
    assert got == cli and got["verdict"]
