"""Reads that scale (issue 23): indexes where a query needs them (an old store gains them on its
first write, and still reads without them), filters in SQL, samples of the jobs asked for only,
damaged cells unknown."""
from __future__ import annotations

import dataclasses
import shutil
import sqlite3

from results_fixtures import small_store

from lab.api import advice_rows
from lab.core.records import Job, Measurement, ResultRow
from lab.results.store import Store

NEW_INDEXES = {"jobs_order", "jobs_device_model", "jobs_model"}


def _indexes(path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")}
    finally:
        db.close()


def _old_store(path):
    """A store as the previous schema made it: the same tables, without the indexes of issue 23."""
    small_store(path)
    db = sqlite3.connect(path)
    for name in NEW_INDEXES:
        db.execute(f"DROP INDEX {name}")
    db.commit()
    db.close()
    assert not NEW_INDEXES & _indexes(path) and "jobs_campaign" in _indexes(path)
    return path


def test_an_old_store_reads_without_the_indexes_and_gains_them_on_first_write(tmp_path):
    old = _old_store(tmp_path / "old.sqlite")
    shutil.copy(old, tmp_path / "ref.sqlite")
    ro = Store(old, readonly=True)  # a read-only open never writes: still no indexes, same rows
    rows = [r.to_json() for r in ro.results()]
    ro.close()
    assert not NEW_INDEXES & _indexes(old) and len(rows) == 6
    s = Store(old)
    s.finish_job("job011", "skipped", error="device unhealthy")
    s.close()
    assert NEW_INDEXES <= _indexes(old)
    s = Store(old, readonly=True)
    after = {r["job_id"]: r for r in (x.to_json() for x in s.results())}
    plan = " ".join(r[3] for r in s._db.execute("EXPLAIN QUERY PLAN " + s._row_sql() + " WHERE j.device = ?",
                                                  ["phone"]))
    s.close()
    assert after["job011"]["status"] == "skipped"
    assert [r for r in rows if r["job_id"] != "job011"] == [r for j, r in after.items() if j != "job011"]
    assert "jobs_device_model" in plan


def test_filters_run_in_sql_and_the_advisor_reads_only_its_rows(tmp_path):
    db = small_store(tmp_path / "lab.sqlite")
    s = Store(db, readonly=True)
    for r in s.results():  # built without __init__ (speed): the same record as built with it
        again = ResultRow(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})
        assert again == r and again.to_json() == r.to_json() and type(r) is ResultRow
    assert {r.job_id for r in s.results(device="phone", status="ok")} == {"job000", "job001"}
    assert [r.job_id for r in s.results(job_id="job003")] == ["job003"]
    assert len(s.results(model="mobilenet_v1", limit=2)) == 2
    assert {r.device for r in s.results(one_per_device=True)} == {"phone", "höst-ü"}
    s.close()
    assert {r.device for r in advice_rows(db, "phone", "mobilenet_v1")} == {"phone"}
    other = advice_rows(db, "phone", "resnet18")  # model only known elsewhere: nothing more to read
    assert {r.model for r in other} == {"mobilenet_v1"} and {r.device for r in other} == {"phone"}
    unknown = advice_rows(db, "tablet", "mobilenet_v1")  # one row per stored device: the error names them
    assert {r.device for r in unknown} == {"phone", "höst-ü"} and len(unknown) == 3
    assert advice_rows(tmp_path / "absent.sqlite", "phone", "m") == []
    assert not (tmp_path / "absent.sqlite").exists()


def test_samples_of_the_jobs_asked_for_only(tmp_path):
    s = Store(small_store(tmp_path / "lab.sqlite"), readonly=True)
    some = s.all_samples(["job001", "job003", "job010", "nope"])
    assert set(some) == {"job001", "job003"}  # the failed job has none
    assert some["job001"] == [[13.3, 13.4, 13.200000000000001], [13.3, 13.5, 13.25]]
    assert s.samples("job001") == some["job001"] and s.samples("nope") == []
    assert set(s.all_samples()) == {"job000", "job001", "job002", "job003"}
    assert s.all_samples([]) == {}
    s.close()


def test_damaged_cells_read_as_unknown_and_text_that_is_not_utf8_is_shown(tmp_path):
    path = small_store(tmp_path / "lab.sqlite")
    db = sqlite3.connect(path)
    db.execute("UPDATE measurements SET p50_ms='fast', load_ms=9e999, n_samples=X'00', converged=2.0 "
               "WHERE job_id='job000'")
    db.execute("UPDATE jobs SET device=CAST(X'ff41' AS TEXT), threads='two' WHERE job_id='job003'")
    db.execute("UPDATE samples SET ms='x' WHERE job_id='job000' AND idx=0")
    db.commit()
    db.close()
    s = Store(path, readonly=True)
    rows = {r.job_id: r for r in s.results()}
    first = s.all_samples(["job000"])["job000"]
    s.close()
    r0, r3 = rows["job000"], rows["job003"]
    assert r0.p50_ms is None and r0.load_ms is None and r0.n_samples == 0 and r0.converged is True
    assert r3.device == "\ufffdA" and r3.threads is None and r3.p50_ms == 19.9
    assert [len(t) for t in first] == [2, 2]  # the damaged sample is not a sample


def test_job_ids_in_any_number(tmp_path):
    """all_samples takes its ids as one JSON parameter: more than SQLite's variable limit."""
    s = Store(tmp_path / "lab.sqlite")
    jobs = [Job(job_id=f"j{i}", campaign="c", device="d", chip="rk1808", model="m", model_sha256="s",
                backend="paddle-inference-cpu", processor="cpu", precision="fp32", threads=1) for i in range(3)]
    s.import_rows("c", [(j, Measurement(job_id=j.job_id, p50_ms=1.0, samples=[[1.0]])) for j in jobs])
    ids = [f"j{i}" for i in range(40_000)]
    assert set(s.all_samples(ids)) == {"j0", "j1", "j2"}
    s.close()


def test_provenances_in_one_query_are_provenance_per_job(tmp_path):
    db = small_store(tmp_path / "lab.sqlite")
    each = Store(db, readonly=True)
    ids = [r.job_id for r in each.results()]
    one_by_one = {i: each.provenance(i) for i in ids}
    each.close()
    s = Store(db, readonly=True)
    batch = s.provenances(ids)
    assert batch == {i: p for i, p in one_by_one.items() if p} and set(batch) == {"job000", "job001", "job002",
                                                                                 "job003"}
    s._db.close()  # kept on a read-only store: later provenance() calls need no query
    assert {i: s.provenance(i) for i in batch} == batch
