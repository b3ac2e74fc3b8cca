"""The results store: SQLite in WAL mode, append-only per job.

Why SQLite: one file, transactional, readable by pandas; a job's measurement, raw samples and status
change are committed together when the job ends, so a crash or kill -9 loses at most the running
job, and `--resume` can tell done from not done by job id.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.core.records import (
    MEASUREMENT_FIGURES,
    Job,
    Measurement,
    ResultRow,
    SustainedWindow,
)
from lab.results.opprofile import OpRow

SCHEMA_VERSION = 1

MEASURE_FIELDS = list(MEASUREMENT_FIGURES)
_MEASURE_TYPES = {f.name: str(f.type) for f in fields(Measurement)}


def _column_type(name: str) -> str:
    """SQLite column of a Measurement figure, from its annotation (str -> TEXT, numbers -> REAL)."""
    return "TEXT" if _MEASURE_TYPES.get(name, "").startswith("str") else "REAL"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS campaigns (
  name TEXT PRIMARY KEY, spec_json TEXT, created_at TEXT, updated_at TEXT);
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, campaign TEXT NOT NULL, device TEXT NOT NULL, chip TEXT, model TEXT NOT NULL,
  model_sha256 TEXT, backend TEXT, processor TEXT, precision TEXT, threads INTEGER, batch INTEGER,
  options_json TEXT, protocol_json TEXT, status TEXT NOT NULL, error TEXT, attempts INTEGER DEFAULT 0,
  planned_at TEXT, started_at TEXT, finished_at TEXT);
CREATE INDEX IF NOT EXISTS jobs_campaign ON jobs(campaign);
CREATE INDEX IF NOT EXISTS jobs_order ON jobs(campaign, device, model, backend, precision, threads, job_id);
CREATE INDEX IF NOT EXISTS jobs_device_model ON jobs(device, model);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs(model);
CREATE TABLE IF NOT EXISTS measurements (
  job_id TEXT PRIMARY KEY REFERENCES jobs(job_id) ON DELETE CASCADE,
  {", ".join(f"{name} {_column_type(name)}" for name in MEASURE_FIELDS)},
  provenance_json TEXT, notes_json TEXT);
CREATE TABLE IF NOT EXISTS samples (
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE, trial INTEGER NOT NULL,
  idx INTEGER NOT NULL, ms REAL NOT NULL, PRIMARY KEY (job_id, trial, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE, trial INTEGER NOT NULL,
  {", ".join(f"{f.name} {'INTEGER' if f.type == 'int' else 'REAL'}"
             for f in fields(SustainedWindow) if f.name != "trial")},
  PRIMARY KEY (job_id, trial, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS op_profiles (
  job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE, op_type TEXT NOT NULL,
  processor TEXT NOT NULL DEFAULT '', calls INTEGER, total_ms REAL NOT NULL, share REAL NOT NULL,
  iterations INTEGER, source TEXT, PRIMARY KEY (job_id, op_type, processor)) WITHOUT ROWID;
"""
WINDOW_FIELDS = [f.name for f in fields(SustainedWindow)]

# the columns of a results row: ResultRow's fields (every Measurement figure among them), options aside
ROW_FIELDS = [f.name for f in fields(ResultRow) if f.name != "options"]
_BOOL_FIELDS = {n for n, t in _MEASURE_TYPES.items() if t.startswith("bool") and n in MEASURE_FIELDS}
_INT_FIELDS = {"threads", "batch", "attempts"} | {n for n, t in _MEASURE_TYPES.items()
                                                   if t.startswith("int") and n in MEASURE_FIELDS}
_TEXT_FIELDS = {f.name for f in fields(ResultRow)
                if str(f.type).startswith("str") and f.name != "options"}
MAX_TEXT = 64 * 1024  # a stored name or error longer than this is cut (a store is input too)

# how each row field is read (`Store._row_sql`): typed in SQL, anything else is unknown (NULL)
_KIND = {n: "text" if n in _TEXT_FIELDS else "bool" if n in _BOOL_FIELDS else "int" if n in _INT_FIELDS
         else "num" for n in ROW_FIELDS}
# a number is between the finite bounds; NULL, text and blobs never are (SQLite orders them after
# numbers), nor is Infinity (NaN is stored as NULL)
_FINITE = "{c} BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"
_CLEAN = {
    "num": f"CASE WHEN {_FINITE} THEN {{c}} END",
    "bool": f"CASE WHEN {_FINITE} THEN {{c}} != 0 END",
    "int": "CASE WHEN {c} BETWEEN -4611686018427387904 AND 4611686018427387904 THEN CAST({c} AS INTEGER) END",
    "text": (f"CASE WHEN typeof({{c}}) = 'text' AND length({{c}}) <= {MAX_TEXT} THEN {{c}} "  # no copy
             f"WHEN {{c}} IS NULL THEN NULL ELSE substr(CAST({{c}} AS TEXT), 1, {MAX_TEXT}) END"),
}
_NOT_NULL = {"job_id": "''", "campaign": "''", "device": "''", "model": "''", "status": "''",
             "n_samples": "0"}
_BOOL_POS = [i for i, n in enumerate(ROW_FIELDS) if n in _BOOL_FIELDS]
# the one order of results rows; index jobs_order serves it without a sort
_ORDER = " ORDER BY j.campaign, j.device, j.model, j.backend, j.precision, j.threads, j.job_id"


def _number(v: Any) -> float | int | None:
    """A stored figure as a finite number, else None: a store edited or damaged elsewhere may hold
    text, blobs or Infinity in a REAL column (SQLite has no column types), which is unknown."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return str(v)[:MAX_TEXT]


def _json_cell(text: Any, default: Any) -> Any:
    """A stored JSON cell (options, provenance, notes); damaged -> the default, never a crash."""
    from lab.core import jsonio
    if not isinstance(text, (str, bytes)) or not text:
        return default
    try:
        doc = jsonio.loads(text, max_depth=32)
    except Exception:  # noqa: BLE001 - ConfigError; a damaged cell means "not known"
        return default
    return doc if isinstance(doc, type(default)) else default


def _lenient_text(b: bytes) -> str:
    """TEXT that is not UTF-8 (a damaged page, a foreign writer) is shown, not a crash."""
    return b.decode("utf-8", "replace")


def _guarded(method):
    """sqlite errors on a damaged store (bad pages, missing tables or columns, a full disk)
    become one ConfigError naming the file, never a traceback."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise _damaged(self.path, exc) from None
    return wrapper


def _damaged(path: Path, exc: Exception) -> Exception:
    from lab.core.errors import ConfigError
    return ConfigError(f"the results store is damaged or unusable: {exc}", path=str(path),
                       fix="restore it from a copy, or point --store at another file")


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection; permission problems are named as such."""
    from lab.core.errors import ConfigError
    if not os.access(path, os.R_OK):
        raise ConfigError("permission denied: cannot read the results store", path=str(path),
                          fix="make it readable (chmod a+r) or copy it somewhere readable")
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.text_factory = _lenient_text
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # a WAL store in a read-only folder cannot get its -shm file: read it as an immutable archive
        try:
            db = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30, check_same_thread=False,
                                 isolation_level=None)
            db.row_factory = sqlite3.Row
            db.text_factory = _lenient_text
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read this file as the results store: {exc}", path=str(path),
                              fix="point --store at a lab SQLite store") from None
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:  # damaged bytes in the message
        raise ConfigError(f"cannot read this file as the results store: {exc}", path=str(path),
                          fix="point --store at a lab SQLite store") from None
    return db


def _result_row(vals: list[Any], options: dict[str, Any]) -> ResultRow:
    """ResultRow(*vals, options=options) without the frozen dataclass's __init__, which sets its
    66 fields one object.__setattr__ at a time (most of reading a 100,000-row store); the fields
    are set all at once, typed already by the query (`_row_sql`)."""
    row = object.__new__(ResultRow)
    row.__dict__.update(zip(ROW_FIELDS, vals), options=options)
    return row


def _provenance(cells: Any) -> dict[str, Any]:
    prov = _json_cell(cells[0], {})
    prov["notes"] = [str(n) for n in _json_cell(cells[1], [])]
    return prov


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    def __init__(self, path: str | Path = "results/lab.sqlite", *, create: bool = True,
                 readonly: bool = False):
        """Open (and by default create) a store. Problems with the file are the user's to fix:
        ConfigError naming the path, never a sqlite traceback.

        `readonly`: the read commands' mode (SQLite `mode=ro`): a shared archive, a 444 file or a
        read-only mount serves `results`, `score`, `advise` and `report`; nothing is written."""
        from lab.core.errors import ConfigError
        self.path = Path(path)
        self.readonly = readonly
        self._prov: dict[str, dict[str, Any]] = {}  # provenances() of a read-only store
        if (readonly or not create) and not self.path.is_file():
            raise ConfigError("no results store here", path=str(path),
                              fix="run a campaign first with `lab run campaigns/demo.yaml`, or pass --store PATH")
        self._lock = threading.RLock()
        if readonly:
            self._db = _open_readonly(self.path)
            return
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise ConfigError("permission denied: the results store is not readable and writable "
                              "by this user", path=str(path),
                              fix="fix its permissions (chmod u+rw) or pass --store with a writable copy")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False,
                                       isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.text_factory = _lenient_text
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._add_new_columns()
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        except (sqlite3.DatabaseError, OSError, UnicodeDecodeError) as exc:  # damaged bytes in messages
            raise ConfigError(f"cannot use this file as the results store: {exc}", path=str(path),
                              fix="point --store at a lab SQLite store or a new file name") from None

    def _add_new_columns(self) -> None:
        """A store written by an older lab lacks the figures added since: add them as NULL (unknown),
        so old stores stay readable and appendable."""
        have = {r[1] for r in self._db.execute("PRAGMA table_info(measurements)")}
        for name in MEASURE_FIELDS:
            if name not in have:
                self._db.execute(f"ALTER TABLE measurements ADD COLUMN {name} {_column_type(name)}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- campaigns and jobs -------------------------------------------------------------------
    @_guarded
    def save_campaign(self, name: str, spec: dict[str, Any]) -> None:
        ts = now_iso()
        with self._tx() as db:
            db.execute("INSERT INTO campaigns VALUES (?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                       "spec_json=excluded.spec_json, updated_at=excluded.updated_at",
                       (name, json.dumps(spec, default=str), ts, ts))

    @_guarded
    def delete_campaign(self, name: str) -> int:
        with self._tx() as db:
            n = db.execute("DELETE FROM jobs WHERE campaign=?", (name,)).rowcount
            db.execute("DELETE FROM campaigns WHERE name=?", (name,))
        return n

    @_guarded
    def plan_jobs(self, jobs: Iterable[Job]) -> None:
        """Insert planned jobs; jobs already stored keep their status (that is what resume needs)."""
        ts = now_iso()
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO jobs (job_id, campaign, device, chip, model, model_sha256, backend,"
                " processor, precision, threads, batch, options_json, protocol_json, status, planned_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,'planned',?)",
                [(j.job_id, j.campaign, j.device, j.chip, j.model, j.model_sha256, j.backend, j.processor,
                  j.precision, j.threads, j.batch, json.dumps(dict(j.options), sort_keys=True),
                  json.dumps(asdict(j.protocol), sort_keys=True), ts) for j in jobs])

    @_guarded
    def requeue(self, job_ids: list[str], note: str) -> int:
        """Jobs whose device's host was lost go back to 'planned' with the cause (resume runs them)."""
        with self._tx() as db:
            return sum(db.execute("UPDATE jobs SET status='planned', error=? WHERE job_id=?",
                                  (note, j)).rowcount for j in job_ids)

    def reset_running(self, campaign: str, note: str) -> int:
        """Jobs left 'running' by an interrupted orchestrator go back to 'planned' (resume runs them)."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET status='planned', error=? WHERE campaign=? AND status='running'",
                              (note, campaign)).rowcount

    @_guarded
    def job_status(self, campaign: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT job_id, status FROM jobs WHERE campaign=?", (campaign,))
            return {_text(r["job_id"]) or "": _text(r["status"]) or "" for r in rows}

    @_guarded
    def mark_running(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET status='running', started_at=?, attempts=attempts+1 "
                       "WHERE job_id=?", (now_iso(), job_id))

    @_guarded
    def finish_job(self, job_id: str, status: str, *, measurement: Measurement | None = None,
                   error: str | None = None) -> None:
        """Commit a job's end state, its measurement and raw samples in one transaction."""
        assert status in ("ok", "failed", "skipped"), status
        with self._tx() as db:
            db.execute("UPDATE jobs SET status=?, error=?, finished_at=? WHERE job_id=?",
                       (status, error, now_iso(), job_id))
            db.execute("DELETE FROM op_profiles WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM samples WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM windows WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM measurements WHERE job_id=?", (job_id,))
            if measurement is not None:
                self._insert_measurement(db, job_id, measurement)

    def _insert_measurement(self, db: sqlite3.Connection, job_id: str, m: Measurement) -> None:
        values = [getattr(m, name) for name in MEASURE_FIELDS]
        values = [int(v) if isinstance(v, bool) else v for v in values]
        db.execute(f"INSERT INTO measurements (job_id, {', '.join(MEASURE_FIELDS)}, provenance_json,"
                   f" notes_json) VALUES (?, {', '.join('?' * len(MEASURE_FIELDS))}, ?, ?)",
                   [job_id, *values, json.dumps(m.provenance, default=str), json.dumps(m.notes)])
        db.executemany("INSERT INTO samples VALUES (?,?,?,?)",
                       [(job_id, t, i, float(ms)) for t, trial in enumerate(m.samples)
                        for i, ms in enumerate(trial)])
        db.executemany(f"INSERT INTO windows (job_id, {', '.join(WINDOW_FIELDS)}) VALUES "
                       f"(?, {', '.join('?' * len(WINDOW_FIELDS))})",
                       [(job_id, *(getattr(w, k) for k in WINDOW_FIELDS)) for w in m.windows])
        prof = m.op_profile
        if prof is not None and prof.rows:
            db.executemany("INSERT INTO op_profiles VALUES (?,?,?,?,?,?,?,?)",
                           [(job_id, r.op_type, r.processor or "", r.calls, r.total_ms, r.share,
                             r.iterations, r.source) for r in prof.rows])

    @_guarded
    def import_rows(self, campaign: str, jobs_and_measurements: list[tuple[Job, Measurement]]) -> int:
        """Store measurements made elsewhere (vendor tables, other tools) as finished jobs."""
        self.plan_jobs(j for j, _ in jobs_and_measurements)
        with self._tx() as db:
            for job, m in jobs_and_measurements:
                db.execute("UPDATE jobs SET status='ok', error=NULL, finished_at=? WHERE job_id=?",
                           (now_iso(), job.job_id))
                db.execute("DELETE FROM op_profiles WHERE job_id=?", (job.job_id,))
                db.execute("DELETE FROM samples WHERE job_id=?", (job.job_id,))
                db.execute("DELETE FROM windows WHERE job_id=?", (job.job_id,))
                db.execute("DELETE FROM measurements WHERE job_id=?", (job.job_id,))
                self._insert_measurement(db, job.job_id, m)
        return len(jobs_and_measurements)

    # -- reading ------------------------------------------------------------------------------
    @_guarded
    def campaigns(self) -> list[str]:
        with self._lock:
            return [_text(r[0]) or "" for r in self._db.execute(
                "SELECT DISTINCT campaign FROM jobs ORDER BY campaign")]

    def require_campaigns(self, names: Iterable[str]) -> None:
        """Every campaign named is stored; else ConfigError naming the first missing one."""
        from lab.core.errors import ConfigError
        known = set(self.campaigns())
        missing = [c for c in names if c not in known]
        if missing:
            raise ConfigError(f"no campaign named {missing[0]!r} in {self.path}",
                              fix="stored campaigns: " + (", ".join(sorted(known)[:20]) or "none"))

    @_guarded
    def campaign_spec(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT spec_json FROM campaigns WHERE name=?", (name,)).fetchone()
        return _json_cell(row[0], {}) or None if row else None

    def _row_sql(self) -> str:
        """The SELECT of one results row per job: ResultRow's fields in order, then options_json.

        Each value is typed and cleaned in SQL (a store edited or damaged elsewhere may hold text,
        blobs or Infinity in a REAL column: unknown, NULL), so the Python side of a 100,000-row
        read only turns 0/1 into booleans. A read-only store from an older lab may lack newer
        figures: NULL."""
        have = {n: "j" for n in self._columns("jobs")}
        for n in self._columns("measurements"):
            have.setdefault(n, "m")
        cols = []
        for name in ROW_FIELDS:
            expr = f"{have[name]}.{name}" if name in have else "NULL"
            kind = _KIND[name]
            cell = expr if expr == "NULL" else _CLEAN[kind].format(c=expr)
            if name in _NOT_NULL:
                cell = f"coalesce({cell}, {_NOT_NULL[name]})"
            cols.append(cell)
        return (f"SELECT {', '.join(cols)}, j.options_json FROM jobs j "
                "LEFT JOIN measurements m ON m.job_id = j.job_id")

    def _columns(self, table: str) -> list[str]:
        return [r[1] for r in self._db.execute(f"PRAGMA table_info({table})")]

    def scan(self, campaigns: Iterable[str] | str | None = None, *, status: str | None = None,
             device: str | None = None, model: str | None = None, job_id: str | None = None,
             one_per_device: bool = False, limit: int | None = None) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        """Result rows one at a time, in the stable order of `results()`: (values in `ROW_FIELDS`
        order, typed as ResultRow's fields; the job's options). Why a generator: `lab results` on
        a farm's 100,000 rows streams them, never holding the list (issue 23). Rows with the same
        options share one dict: copy it before changing it. Filters run in SQL (indexed): `status`,
        `device`, `model`, `job_id`, `one_per_device` (one row of each stored device: which devices the store
        knows), at most `limit` rows."""
        if isinstance(campaigns, str):
            campaigns = [campaigns]
        where, params = [], []
        if campaigns:
            campaigns = list(campaigns)
            where.append(f"j.campaign IN ({', '.join('?' * len(campaigns))})")
            params += campaigns
        if status:
            where.append("j.status = ?")
            params.append(status)
        for col, value in (("device", device), ("model", model), ("job_id", job_id)):
            if value is not None:
                where.append(f"j.{col} = ?")
                params.append(value)
        if one_per_device:
            where.append("j.rowid IN (SELECT min(rowid) FROM jobs GROUP BY device)")
        sql = self._row_sql() + (" WHERE " + " AND ".join(where) if where else "") + _ORDER
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._typed(sql, params)

    def _tuples(self, sql: str, params: list[Any], lenient: bool) -> sqlite3.Cursor:
        """Rows as plain tuples (sqlite3.Row looks names up linearly). Text is decoded by sqlite3
        itself, in C, unless `lenient`: then bytes that are not UTF-8 are shown, not a crash."""
        with self._lock:
            self._db.text_factory = _lenient_text if lenient else str
            cur = self._db.cursor()
            cur.row_factory = None
            return cur.execute(sql, params)

    def _typed(self, sql: str, params: list[Any]) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        opt_cache: dict[Any, dict[str, Any]] = {}
        bools, n = _BOOL_POS, len(ROW_FIELDS)
        done = 0
        try:
            for lenient in (False, True):  # text that is not UTF-8: again, leniently, from that row
                try:
                    for r in itertools.islice(self._tuples(sql, params, lenient), done, None):
                        vals = list(r[:n])
                        for i in bools:
                            if vals[i] is not None:
                                vals[i] = vals[i] == 1
                        cell = r[n]
                        options = opt_cache.get(cell)
                        if options is None:  # campaigns repeat a few option sets: parse each once
                            options = opt_cache[cell] = {str(k): v for k, v in _json_cell(cell, {}).items()}
                        done += 1
                        yield vals, options
                    return
                except (sqlite3.OperationalError, UnicodeDecodeError):
                    if lenient:
                        raise
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise _damaged(self.path, exc) from None
        finally:
            self._db.text_factory = _lenient_text

    @_guarded
    def results(self, campaigns: Iterable[str] | str | None = None, *, status: str | None = None,
                device: str | None = None, model: str | None = None, job_id: str | None = None,
                one_per_device: bool = False, limit: int | None = None) -> list[ResultRow]:
        """Typed result records, one per job (planned/failed jobs too), in a stable order;
        filters as in `scan`."""
        scan = self.scan(campaigns, status=status, device=device, model=model, job_id=job_id,
                         one_per_device=one_per_device, limit=limit)
        return [_result_row(vals, dict(options)) for vals, options in scan]

    @_guarded
    def results_rows(self, campaigns: Iterable[str] | str | None = None) -> list[dict[str, Any]]:
        """The rows of `lab results --format json` (fields in docs/architecture.md): the JSON form
        of `results()`. Analysis code reads `results()`; this is for JSON output and scripts."""
        return [r.to_json() for r in self.results(campaigns)]

    @_guarded
    def samples(self, job_id: str) -> list[list[float]]:
        return self.all_samples([job_id]).get(job_id, [])

    @_guarded
    def all_samples(self, job_ids: Iterable[str] | None = None) -> dict[str, list[list[float]]]:
        """Raw samples by job id: a list of trials (in trial order), each the ms in run order.
        Only the jobs asked for are read (their ids as one JSON parameter: any number of them,
        read-only stores too); damaged cells are not samples."""
        sql, params = "SELECT job_id, trial, ms FROM samples WHERE " + _FINITE.format(c="ms"), []
        if job_ids is not None:
            sql += " AND job_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(set(job_ids))))
        sql += " ORDER BY job_id, trial, idx"
        try:
            rows = self._tuples(sql, params, lenient=False).fetchall()
        except (sqlite3.OperationalError, UnicodeDecodeError):  # a job id that is not UTF-8
            rows = self._tuples(sql, params, lenient=True).fetchall()
        finally:
            self._db.text_factory = _lenient_text
        out: dict[str, list[list[float]]] = {}
        for (job, _), trial in itertools.groupby(rows, key=operator.itemgetter(0, 1)):
            out.setdefault(job, []).append([r[2] for r in trial])
        return out

    @_guarded
    def windows(self, job_ids: Iterable[str] | str | None = None) -> dict[str, list[SustainedWindow]]:
        """Sustained runs' windows (typed), by job id, in (trial, idx) order; jobs without none."""
        if isinstance(job_ids, str):
            job_ids = [job_ids]
        wanted = set(job_ids) if job_ids is not None else None
        with self._lock:
            rows = self._db.execute(f"SELECT job_id, {', '.join(WINDOW_FIELDS)} FROM windows "
                                    "ORDER BY job_id, trial, idx").fetchall()
        out: dict[str, list[SustainedWindow]] = {}
        for r in rows:
            if wanted is None or r["job_id"] in wanted:
                out.setdefault(r["job_id"], []).append(SustainedWindow(**{k: r[k] for k in WINDOW_FIELDS}))
        return out

    @_guarded
    def provenance(self, job_id: str) -> dict[str, Any]:
        """What made a job's figures (runner JSON, commands, env) and its notes; {} if not measured."""
        if job_id in self._prov:  # read by provenances() on a read-only store
            return dict(self._prov[job_id])
        with self._lock:
            row = self._db.execute("SELECT provenance_json, notes_json FROM measurements WHERE job_id=?",
                                   (job_id,)).fetchone()
        return _provenance(row) if row else {}

    @_guarded
    def provenances(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """provenance() of many jobs in one query (a report reads every row's: one query, not
        one per row). On a read-only store they are kept, so later provenance() calls are free."""
        sql = ("SELECT job_id, provenance_json, notes_json FROM measurements "
               "WHERE job_id IN (SELECT value FROM json_each(?))")
        with self._lock:
            rows = self._db.execute(sql, (json.dumps(sorted(set(job_ids))),)).fetchall()
        out = {r[0]: _provenance(r[1:]) for r in rows}
        if self.readonly:
            self._prov.update(out)
        return out

    @_guarded
    def op_profile(self, job_id: str) -> list[OpRow]:
        """A job's per-operator profile (job option `profile: ops`), largest total first; [] if none."""
        return self.op_profiles([job_id]).get(job_id, [])

    @_guarded
    def op_profiles(self, job_ids: Iterable[str] | None = None) -> dict[str, list[OpRow]]:
        """Op profiles by job id (only jobs that have one), each largest total first."""
        wanted = None if job_ids is None else set(job_ids)
        with self._lock:
            rows = self._db.execute("SELECT * FROM op_profiles ORDER BY job_id, total_ms DESC, op_type")
            out: dict[str, list[OpRow]] = {}
            for r in rows:
                if wanted is None or r["job_id"] in wanted:
                    calls, its = _number(r["calls"]), _number(r["iterations"])
                    out.setdefault(r["job_id"], []).append(OpRow(
                        op_type=_text(r["op_type"]) or "", processor=_text(r["processor"]) or None,
                        calls=None if calls is None else int(calls), total_ms=_number(r["total_ms"]),
                        share=_number(r["share"]), iterations=None if its is None else int(its),
                        source=_text(r["source"]) or ""))
        return out

    @_guarded
    def find_job(self, prefix: str) -> ResultRow:
        """The one job whose id starts with `prefix` (ConfigError naming the problem otherwise)."""
        from lab.core.errors import ConfigError
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT job_id FROM jobs WHERE substr(job_id, 1, ?) = ? ORDER BY job_id LIMIT 6",
                (len(prefix), prefix))]
        if not prefix or not ids:
            raise ConfigError(f"no job {prefix!r} in {self.path}",
                              fix="take a job id from `lab results --format json` (a prefix is enough)")
        if len(ids) > 1:
            raise ConfigError(f"job id prefix {prefix!r} is ambiguous ({', '.join(ids[:5])}"
                              f"{', ...' if len(ids) > 5 else ''})", fix="give more characters of the id")
        return self.results(job_id=ids[0])[0]
