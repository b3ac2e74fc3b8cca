"""End to end on the `local` device: real Paddle Inference runner, store, results, resume."""
from __future__ import annotations

import json

import pytest

from helpers import lab_cli as lab, local_campaign, local_workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("local-campaign")
    return local_workspace(ws, "tiny_mlp", local_campaign(
        "e2e", "tiny_mlp", options="{onednn: [true, false], model_format: [json, pdmodel]}",
        protocol="{warmup: 3, warmup_seconds: 0.05, min_iters: 20, min_seconds: 0.2, max_seconds: 1.0, "
                 "target_rel_ci: 0.2, trials: 3, timeout_s: 120}"))


def test_campaign_runs_and_results_are_complete(ws):
    res = lab("--devices", "devices.yaml", "--store", "s.sqlite", "run", "c.yaml", "--models-root", "models",
              "--no-progress", cwd=ws)
    assert res.returncode == 0, res.stderr
    rows = json.loads(lab("--store", "s.sqlite", "results", "--format", "json", cwd=ws).stdout)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert r["p50_ms"] > 0 and r["ci_low_ms"] <= r["p50_ms"] <= r["ci_high_ms"]
        assert r["load_ms"] > 0 and r["first_ms"] > 0 and r["peak_rss_mb"] > 10
        assert r["n_samples"] >= 3 * 20 and isinstance(r["converged"], bool)
        assert r["processor"] == "cpu" and r["chip"] == "generic-x86-cpu"
    assert {(r["options"]["onednn"], r["options"]["model_format"]) for r in rows} == {
        (True, "json"), (False, "json"), (True, "pdmodel"), (False, "pdmodel")}
    # resume: nothing left to run; a plain re-run is refused (exit 2) instead of silently duplicating
    res = lab("--store", "s.sqlite", "run", "c.yaml", "--models-root", "models", "--resume", cwd=ws)
    assert res.returncode == 0 and "0 to run" in res.stderr
    res = lab("--store", "s.sqlite", "run", "c.yaml", "--models-root", "models", cwd=ws)
    assert res.returncode == 2 and "--resume" in res.stderr
    csv_out = lab("--store", "s.sqlite", "results", "--format", "csv", "--campaign", "e2e", cwd=ws).stdout
    assert csv_out.splitlines()[0].startswith("job_id,campaign,device") and len(csv_out.splitlines()) == 5
