"""Store: planned jobs keep their status across re-planning; finish is atomic; rows are honest."""
from __future__ import annotations

import io
import json
import re
import sqlite3
from pathlib import Path

import pytest

from lab.core.errors import ConfigError
from lab.core.records import Job, Measurement, ResultRow
from lab.results.importer import parse_results_csv
from lab.results.store import ROW_FIELDS, Store

REPO = Path(__file__).resolve().parents[2]


def job(i, campaign="c"):
    return Job(job_id=f"j{i}", campaign=campaign, device="d", chip="rk1808", model="m", model_sha256="s",
               backend="paddle-inference-cpu", processor="cpu", precision="fp32", threads=i)


def test_plan_finish_and_rows(tmp_path):
    s = Store(tmp_path / "lab.sqlite")
    s.plan_jobs([job(1), job(2), job(3)])
    s.finish_job("j1", "ok", measurement=Measurement(job_id="j1", p50_ms=5.0, ci_low_ms=4.9, ci_high_ms=5.1,
                                                       n_samples=4, converged=True,
                                                       samples=[[5.0, 5.1], [4.9, 5.0]]))
    s.finish_job("j2", "failed", error="boom")
    s.plan_jobs([job(1), job(2), job(3)])  # re-planning must not reset finished jobs
    rows = {r.job_id: r for r in s.results("c")}
    assert all(isinstance(r, ResultRow) for r in rows.values())
    assert rows["j1"].status == "ok" and rows["j1"].p50_ms == 5.0 and rows["j1"].converged is True
    assert rows["j1"].threads == 1 and rows["j1"].options == {} and rows["j1"].n_samples == 4
    assert rows["j2"].status == "failed" and rows["j2"].error == "boom" and rows["j2"].p50_ms is None
    assert rows["j2"].n_samples == 0 and rows["j2"].source is None
    assert rows["j3"].status == "planned"
    assert rows["j1"].power_w is None, "unknown is null, never 0"
    assert s.samples("j1") == [[5.0, 5.1], [4.9, 5.0]]
    # a re-run replaces measurement and samples, never duplicates them
    s.finish_job("j1", "ok", measurement=Measurement(job_id="j1", p50_ms=6.0, samples=[[6.0]]))
    assert s.samples("j1") == [[6.0]]
    assert len(s.results()) == 3
    db = sqlite3.connect(tmp_path / "lab.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_json_rows_are_the_records_and_the_documented_fields(tmp_path, capsys):
    """`lab results --format json` prints `ResultRow.to_json()`: every field of docs/architecture.md
    "Results rows", in that order, and every measurement figure among them."""
    from lab.cli import main
    s = Store(tmp_path / "lab.sqlite")
    s.plan_jobs([job(1), job(2)])
    s.finish_job("j1", "ok", measurement=Measurement(job_id="j1", p50_ms=5.0, throttled=False,
                                                       samples=[[5.0]]))
    assert s.results_rows() == [r.to_json() for r in s.results()]
    s.close()
    assert main(["--store", str(tmp_path / "lab.sqlite"), "results", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [list(d) for d in printed] == [ROW_FIELDS + ["options"]] * 2
    assert printed[0]["throttled"] is False and printed[0]["threads"] == 1 and printed[1]["p50_ms"] is None
    doc = (REPO / "docs" / "architecture.md").read_text().split("## Results rows")[1].split("\n## ")[0]
    listed = re.search(r"Each row: (.*?)\.\n", doc, re.S).group(1)
    assert [f.strip(" `\n") for f in listed.replace("\n", " ").split(",")] == ROW_FIELDS + ["options"]


def test_delete_campaign(tmp_path):
    s = Store(tmp_path / "lab.sqlite")
    s.plan_jobs([job(1), job(2, campaign="other")])
    s.finish_job("j1", "ok", measurement=Measurement(job_id="j1", p50_ms=1.0, samples=[[1.0]]))
    assert s.delete_campaign("c") == 1
    assert [r.job_id for r in s.results()] == ["j2"]
    assert s.samples("j1") == []


CSV = ("device,chip,model,backend,processor,precision,threads,batch,p50_ms,p90_ms,mean_ms,load_ms,first_ms,"
       "energy_mj_per_inf,peak_rss_mb,source\n"
       "mate30,kirin990,mobilenet_v1,paddle-lite-kirin-npu,aipu,fp16,,1,3.2,,,,,,,vendor table\n"
       "mate30,kirin990,mobilenet_v1,paddle-lite-arm,cpu,fp32,4,1,,,21.5,120,40,,88,vendor table\n")


def test_import_csv(tmp_path):
    pairs = parse_results_csv(io.StringIO(CSV), "x.csv", "imp", chip_ids={"kirin990"})
    s = Store(tmp_path / "lab.sqlite")
    s.import_rows("imp", pairs)
    s.import_rows("imp", pairs)  # idempotent
    rows = s.results("imp")
    assert len(rows) == 2
    npu = next(r for r in rows if r.processor == "aipu")
    cpu = next(r for r in rows if r.processor == "cpu")
    assert cpu.threads == 4 and cpu.latency_ms == 21.5 and cpu.start_ms == 160.0  # a mean only
    assert npu.p50_ms == 3.2 and npu.mean_ms is None and npu.load_ms is None and npu.start_ms is None
    assert npu.source == "vendor table" and npu.status == "ok"
    assert npu.threads is None, "a threads cell left empty is unknown, not 0"


@pytest.mark.parametrize("body,needle,line", [
    ("d,kirin990,m,,cpu,,,,abc,,,,,,,\n", "p50_ms 'abc' is not a number", 2),
    ("d,kirin990,m,,npu,,,,1,,,,,,,\n", "processor 'npu'", 2),
    ("d,kirin99,m,,cpu,,,,1,,,,,,,\n", "unknown chip 'kirin99'", 2),
    (",kirin990,m,,cpu,,,,1,,,,,,,\n", "empty 'device'", 2),
    ("d,kirin990,m,,cpu,,,,,,,,,,,\n", "neither p50_ms nor mean_ms", 2),
    ("d,kirin990,m,,cpu,,,,1,,,,,,,\nd,kirin990,m,,cpu,,,,2,,,,,,,\n", "duplicate row", 3),
    ("d,kirin990,m,,cpu,,0,,1,,,,,,,\n", "threads must be between 1 and 1024", 2),
    ("d,kirin990,m,,cpu,,99999999999999999999,,1,,,,,,,\n", "threads must be between 1 and 1024", 2),
    ("d,kirin990,m,,cpu,,,,0,,,,,,,\n", "p50_ms is 0", 2),
    ("d,kirin990,m,,cpu,,,,5,4,,,,,,\n", "p90_ms 4 is below p50_ms 5", 2),
    ("d,kirin990,m,,cpu,int3,,,5,,,,,,,\n", "precision 'int3'", 2),
    ("d,kirin990,m,,cpu,,,,5,,,,,,,,extra\n", "more cell(s) than the header", 2),
    ("d,kirin990,m,,cpu,,,,-1,,,,,,,\n", "non-negative", 2),
])
def test_import_bad_rows(body, needle, line):
    header = CSV.splitlines()[0] + "\n"
    with pytest.raises(ConfigError) as exc:
        parse_results_csv(io.StringIO(header + body), "x.csv", "imp", chip_ids={"kirin990"})
    assert needle in str(exc.value) and f"x.csv:{line}:" in str(exc.value)


def test_import_bad_header():
    with pytest.raises(ConfigError, match="unknown column 'latency'"):
        parse_results_csv(io.StringIO("device,chip,model,processor,latency\n"), "x.csv", "c", chip_ids=set())
    with pytest.raises(ConfigError, match="p50_ms or mean_ms"):
        parse_results_csv(io.StringIO("device,chip,model,processor\n"), "x.csv", "c", chip_ids=set())


def test_a_store_from_an_older_lab_gains_the_new_figures_as_unknown(tmp_path):
    """Figures added to Measurement later become NULL columns of an old store, never an error."""
    import sqlite3
    from lab.results.store import Store
    path = tmp_path / "old.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE measurements DROP COLUMN gpu_mem_mb")
    db.commit()
    db.close()
    store = Store(path)
    try:
        cols = {r[1] for r in store._db.execute("PRAGMA table_info(measurements)")}
        assert "gpu_mem_mb" in cols
        assert store.results() == []
    finally:
        store.close()
