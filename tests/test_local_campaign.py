"""End to end on the `local` device: real Paddle Inference runner, store, results, resume."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def lab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lab.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("local-campaign")
    (ws / "devices.yaml").write_text(textwrap.dedent(f"""
        devices:
          - id: local
            chip: generic-x86-cpu
            transport: local
            workdir: {ws / 'device'}
        """))
    (ws / "c.yaml").write_text(textwrap.dedent("""
        name: e2e
        devices: [local]
        models: [tiny_mlp]
        backends: [paddle-inference-cpu]
        threads: [1]
        options: {onednn: [true, false], model_format: [json, pdmodel]}
        protocol: {warmup: 3, warmup_seconds: 0.05, min_iters: 20, min_seconds: 0.2, max_seconds: 1.0,
                   target_rel_ci: 0.2, trials: 3, timeout_s: 120}
        """))
    res = lab("models", "--root", ws / "models", "build", "tiny_mlp", cwd=ws)
    assert res.returncode == 0, res.stderr
    return ws


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
