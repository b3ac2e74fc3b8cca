"""Fuzz every input the lab reads through the real CLI: 0 tracebacks, exit 0/1/2, one-line errors,
strict JSON, no control sequences, no formula-leading CSV cells.

Seeded (HWLAB_FUZZ_SEED, default 17) and scaled (HWLAB_FUZZ_SCALE, default 1 = ~2,100 cases in
well under 3 minutes on 2 cores). Each case runs `lab.cli.main` in this process; a few
subprocess runs check what only a real process shows (a full disk on stdout, /dev/null).
A failure lists the seed and argv of the first cases that went wrong.
"""
from __future__ import annotations

import gc
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fuzz_inputs import (EVIL_NUM_TEXT, EVIL_STR, LONG_VALUE, REPO, long_value_docs, meta_case,
                         meta_doc, meter_csv_case, model_json_case, problems, results_csv_case,
                         results_rows, run_cli, yaml_case, yaml_dump, _csv_text, RESULTS_HEADER)

SEED = int(os.environ.get("HWLAB_FUZZ_SEED", "17"))
SCALE = float(os.environ.get("HWLAB_FUZZ_SCALE", "1"))
COUNTS: dict[str, int] = {}


def n(base: int) -> int:
    return max(1, int(base * SCALE))


def check(kind: str, cases) -> None:
    """Run (outcome, json?, csv?) cases, count them, fail with the first problems found."""
    failures, count = [], 0
    for i, (seed, outcome, js, cs) in enumerate(cases):
        count += 1
        bad = problems(outcome, json_out=js, csv_out=cs)
        if bad:
            failures.append(f"seed {seed} argv {[a[:60] for a in outcome.argv]}: {'; '.join(bad)}"
                            + (f"\n{outcome.crash}" if outcome.crash else ""))
    COUNTS[kind] = COUNTS.get(kind, 0) + count
    assert not failures, f"{len(failures)}/{count} {kind} cases failed:\n" + "\n".join(failures[:8])


# ----------------------------------------------------------------------------------- workspace
CAMPAIGN = {"name": "fz", "devices": ["local"], "models": ["fake"],
            "backends": ["paddle-inference-cpu"], "precisions": ["fp32"], "threads": [1, 2],
            "batch": [1], "options": {"onednn": [True, False]},
            "protocol": {"warmup": 1, "min_iters": 5, "max_seconds": 2, "trials": 2,
                         "timeout_s": 30, "target_rel_ci": 0.05}}
DEVICES = {"devices": [
    {"id": "local", "chip": "generic-x86-cpu", "transport": "local", "enabled": True},
    {"id": "board", "chip": "rk3588", "transport": "ssh", "host": "10.0.0.2", "user": "u",
     "port": 22, "enabled": False, "tags": ["a"], "nnadapter_libs": {"rockchip_npu": "/x"}},
    {"id": "phone", "chip": "kirin990", "transport": "adb", "serial": "abc", "enabled": False}]}
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A valid workspace: inventory, campaign, a fake model (no build), profiles, a store."""
    from lab.core.records import Job, Measurement
    from lab.results.store import Store
    root = tmp_path_factory.mktemp("fuzz")
    (root / "devices.yaml").write_text(yaml.safe_dump(DEVICES))
    (root / "campaign.yaml").write_text(yaml.safe_dump(CAMPAIGN))
    (root / "models" / "fake").mkdir(parents=True)
    (root / "models" / "fake" / "meta.json").write_text(__import__("json").dumps(meta_doc()))
    prof = yaml.safe_load((REPO / "lab" / "decide" / "data" / "profiles.yaml").read_text())
    prof["profiles"] = prof["profiles"][:1]
    prof["profiles"][0]["id"] = "fz-profile"
    (root / "profiles.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    csv_text = _csv_text([RESULTS_HEADER] + results_rows(random.Random(1), 6))
    (root / "rows.csv").write_text(csv_text)
    store = root / "base.sqlite"
    assert run_cli(["--store", str(store), "results", "import", str(root / "rows.csv"),
                    "--campaign", "imp"]).code == 0
    s = Store(store)  # one measured local job with samples and trial times, for power import
    job = Job(job_id="j" * 16, campaign="meas", device="local", chip="generic-x86-cpu",
              model="fake", model_sha256="00", backend="paddle-inference-cpu", processor="cpu",
              precision="fp32", threads=1)
    s.plan_jobs([job])
    s.finish_job(job.job_id, "ok", measurement=Measurement(
        job_id=job.job_id, p50_ms=2.0, n_samples=200, samples=[[2.0] * 100, [2.0] * 100],
        provenance={"trials": [{"started_at": "2023-11-14T22:13:21Z",
                                "finished_at": "2023-11-14T22:13:22Z"},
                               {"started_at": "2023-11-14T22:13:23Z",
                                "finished_at": "2023-11-14T22:13:24Z"}]}))
    s.close()
    for suffix in ("-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    return root


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return path


def _rng(kind: str, i: int) -> tuple[str, random.Random]:
    """The case's seed (printed on failure) and its generator."""
    seed = f"{SEED}:{kind}:{i}"
    return seed, random.Random(seed)


# ------------------------------------------------------------------------------------ YAML files
def fuzz_yaml(ws, label: str, base: str, top_key: str, count: int, argv_for) -> None:
    """`count` malformed variants of one YAML input, each run through `argv_for(path, i, rng)`,
    which returns (argv, whether stdout must be strict JSON)."""
    f = ws / f"fz-{label}.yaml"

    def cases():
        for i in range(n(count)):
            seed, rng = _rng(label, i)
            _write(f, yaml_case(base, rng, top_key))
            argv, strict_json = argv_for(f, i, rng)
            yield seed, run_cli(argv), strict_json, False
    check(label, cases())


def test_fuzz_devices_yaml(ws):
    def argv(f, i, rng):
        if i % 5 == 0:
            return ["--devices", str(f), "--store", str(ws / "none.sqlite"), "run",
                    str(ws / "campaign.yaml"), "--dry-run", "--models-root", str(ws / "models")], False
        fmt = rng.choice(["json", "table"])
        return ["--devices", str(f), "devices", "--format", fmt], fmt == "json"
    fuzz_yaml(ws, "devices", (ws / "devices.yaml").read_text(), "devices", 260, argv)


def test_fuzz_campaign_yaml(ws):
    def argv(f, i, rng):
        return ["--devices", str(ws / "devices.yaml"), "--store", str(ws / "none.sqlite"), "run",
                str(f), "--dry-run", "--models-root", str(ws / "models")], False
    fuzz_yaml(ws, "campaign", (ws / "campaign.yaml").read_text(), "name", 260, argv)


def test_fuzz_catalog_yaml(ws):
    full = yaml.safe_load((REPO / "lab" / "devices" / "data" / "chips.yaml").read_text())
    full["chips"] = full["chips"][:4]  # four real entries: the same structure, 6x faster cases

    def argv(f, i, rng):
        fmt = rng.choice(["json", "table"])
        if i % 8 == 0:
            return ["--store", str(ws / "base.sqlite"), "score", "--profile", "mobile-app",
                    "--catalog", str(f), "--draws", "5", "--format", fmt], fmt == "json"
        return ["chips", "--catalog", str(f), "--format", fmt], fmt == "json"
    fuzz_yaml(ws, "catalog", yaml.safe_dump(full, sort_keys=False, allow_unicode=True), "chips", 200, argv)


def test_fuzz_profiles_yaml(ws):
    def argv(f, i, rng):
        fmt = rng.choice(["json", "table"])
        return ["--store", str(ws / "base.sqlite"), "score", "--profile", "fz-profile", "--profiles",
                str(f), "--draws", "5", "--models-dir", str(ws / "models"), "--format", fmt], fmt == "json"
    fuzz_yaml(ws, "profiles", (ws / "profiles.yaml").read_text(), "profiles", 200, argv)


def test_fuzz_zoo_yaml(ws):
    def argv(f, i, rng):
        fmt = rng.choice(["json", "table"])
        return ["models", "list", "--root", str(ws / "models"), "--zoo", str(f), "--format", fmt], \
            fmt == "json"
    fuzz_yaml(ws, "zoo", (REPO / "models" / "zoo.yaml").read_text(), "models", 150, argv)


# ---------------------------------------------------------------- long values: quoted, not echoed
@pytest.mark.slow
def test_fuzz_long_values_are_quoted_as_excerpts(ws):
    """The class "38 error messages echo the whole bad input": every node (and key) of every input
    file, every CSV cell and every free-text flag set to a 100,000-character value. No error line
    quotes it whole (problems(): an excerpt of <= ~200 characters, a line <= 2,100)."""
    zoo = yaml.safe_load((REPO / "models" / "zoo.yaml").read_text())
    zoo["models"] = zoo["models"][:2]
    chips = yaml.safe_load((REPO / "lab" / "devices" / "data" / "chips.yaml").read_text())
    chips["chips"] = chips["chips"][:1]
    store, none = str(ws / "base.sqlite"), str(ws / "none.sqlite")
    run = ["--devices", str(ws / "devices.yaml"), "--store", none, "run"]
    mroot = ws / "longmeta"
    (mroot / "fake").mkdir(parents=True, exist_ok=True)
    files = [  # (label, base document, file, argv for it)
        ("devices", DEVICES, ws / "long-d.yaml", lambda f: ["--devices", str(f), "devices"]),
        ("campaign", CAMPAIGN, ws / "long-c.yaml",
         lambda f: run + [str(f), "--dry-run", "--models-root", str(ws / "models")]),
        ("zoo", zoo, ws / "long-z.yaml", lambda f: ["models", "list", "--root", str(ws / "models"), "--zoo", str(f)]),
        ("catalog", chips, ws / "long-cat.yaml", lambda f: ["chips", "--catalog", str(f)]),
        ("profiles", yaml.safe_load((ws / "profiles.yaml").read_text()), ws / "long-p.yaml",
         lambda f: ["--store", store, "score", "--profile", "fz-profile", "--profiles", str(f), "--draws", "5"]),
        ("meta.json", meta_doc(), mroot / "fake" / "meta.json",
         lambda f: ["--devices", str(ws / "devices.yaml"), "--store", none, "run", str(ws / "campaign.yaml"),
                    "--dry-run", "--models-root", str(mroot)]),
    ]

    def cases():
        for label, doc, f, argv_for in files:
            variants = list(long_value_docs(doc))  # every node of the small files; 60 of the catalog's
            seed, rng = _rng("long", 0)
            for path, bad in (rng.sample(variants, n(60)) if len(variants) > n(60) else variants):
                f.write_text(__import__("json").dumps(bad) if f.suffix == ".json" else yaml_dump(bad))
                yield f"{seed} {label}{list(path)}", run_cli(argv_for(f)), False, False
        rows = [list(RESULTS_HEADER)] + results_rows(random.Random(1), 2)
        for j in range(len(RESULTS_HEADER)):
            bad = [list(r) for r in rows]
            bad[1][j] = LONG_VALUE
            f = _write(ws / "long-rows.csv", _csv_text(bad))
            shutil.copy(ws / "base.sqlite", ws / "long.sqlite")
            yield f"csv[{RESULTS_HEADER[j]}]", run_cli(["--store", str(ws / "long.sqlite"), "results",
                                                        "import", str(f), "--campaign", "c1"]), False, False
        for argv in _long_flag_argvs(ws, store):
            yield "flags", run_cli(argv), False, False
    check("long value", cases())


def _long_flag_argvs(ws: Path, store: str) -> list[list[str]]:
    """Every free-text flag and argument of the CLI given a 100,000-character value."""
    L, m, d = LONG_VALUE, str(ws / "models"), str(ws / "devices.yaml")
    return [["--devices", d, "devices", L], ["--devices", L, "devices"], ["--store", L, "results"],
            ["--store", store, "results", "--campaign", L], ["--store", store, "results", "compare", L, L],
            ["--store", store, "results", "ops", L], ["--store", store, "report", "--campaign", L],
            ["--store", store, "score", "--profile", L], ["--store", store, "advise", "--campaign", L],
            ["--store", store, "advise", "--model", L, "--device", "local", "--models-root", m],
            ["--store", store, "advise", "--model", "fake", "--device", L, "--models-root", m],
            ["models", "show", L, "--root", m], ["models", "build", L, "--root", m], ["models", "analyze", L],
            ["models", "add", "ok", "--model-file", L, "--root", m], ["models", "import", L],
            ["models", "quantize", L, "--root", m], ["models", "build", "fake", "--lite-target", L, "--root", m],
            ["--store", store, "power", "import", L, "--device", "local"],
            ["--store", store, "power", "import", str(ws / "rows.csv"), "--device", L],
            ["run", L], ["chips", "--catalog", L], ["--store", store, "report", "-o", L, "--campaign", "imp"],
            ["results", "--format", L], [L], ["models", L], ["--devices", d, "devices", "--timeout", L],
            ["--store", store, "results", "import", L]]


def test_fuzz_swapped_values_and_misfit_tags(ws):
    """The class of the last traceback (a zoo whose `builder` and `arch` values are swapped ->
    KeyError in yamlio._scalar): every pair of values of a zoo entry swapped, and every explicit
    standard tag on text it cannot construct (`!!bool foo`, `!!int`, `!!timestamp abc`), in each
    YAML input: one line, exit 2, no traceback."""
    import itertools
    from fuzz_inputs import TAG_MISFITS, swap_values
    zoo = yaml.safe_load((REPO / "models" / "zoo.yaml").read_text())
    entry = next(e for e in zoo["models"] if e["id"] == "tiny_mlp")
    f = ws / "swap-zoo.yaml"

    def cases():
        the_swap = {**entry, "builder": entry["builder"]["arch"]}  # the reported case, literally
        the_swap["arch"] = entry["builder"]
        variants = [the_swap]
        keys = [("builder",), ("builder", "arch"), ("builder", "kwargs"), ("id",), ("seed",), ("inputs",),
                ("tags",), ("inputs", 0, "shape"), ("inputs", 0, "dtype")]
        for a, b in itertools.combinations(keys, 2):
            import copy
            d = copy.deepcopy(entry)
            va, vb = copy.deepcopy(_get_path(d, a)), copy.deepcopy(_get_path(d, b))
            if _set_path(d, a, vb) and _set_path(d, b, va):
                variants.append(d)
        for i, d in enumerate(variants):
            _write(f, yaml.safe_dump({"models": [d]}))
            yield f"swap{i}", run_cli(["models", "list", "--root", str(ws / "models"), "--zoo", str(f)]), False, False
        for i in range(n(40)):
            seed, rng = _rng("swap", i)
            _write(f, yaml.safe_dump(swap_values({"models": [dict(entry)]}, rng)))
            yield seed, run_cli(["models", "list", "--root", str(ws / "models"), "--zoo", str(f)]), False, False
        for tag in TAG_MISFITS:
            for label, text, argv in (
                    ("zoo", f"models:\n  - id: {tag}\n", ["models", "list", "--zoo", str(f)]),
                    ("devices", f"devices:\n  - id: x\n    chip: {tag}\n", ["--devices", str(f), "devices"]),
                    ("campaign", f"name: {tag}\n", ["run", str(f), "--dry-run"])):
                _write(f, text)
                out = run_cli(argv)
                yield f"{label} {tag}", out, False, False
                assert out.code == 2, (label, tag, out.err)
    check("swapped/tagged", cases())


def _get_path(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _set_path(doc, path, value) -> bool:
    """Set doc[path] = value; False when the path no longer exists (it was inside a swapped value)."""
    try:
        parent = _get_path(doc, path[:-1])
        parent[path[-1]] = value
        return True
    except (KeyError, IndexError, TypeError):
        return False


# ------------------------------------------------------------------------------ model files
def test_fuzz_model_files(ws):
    d = ws / "mf"
    d.mkdir(exist_ok=True)

    def cases():
        for i in range(n(200)):
            seed, rng = _rng("model", i)
            f = _write(d / "m.json", model_json_case(rng))
            fmt = rng.choice(["json", "text"])
            yield seed, run_cli(["models", "analyze", str(f), "--format", fmt]), fmt == "json", False
        for i in range(n(30)):  # legacy protobuf: random and truncated bytes
            seed, rng = _rng("pdmodel", i)
            blob = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 16, 300])))
            f = d / "m.pdmodel"
            f.write_bytes(blob)
            out = run_cli(["models", "analyze", str(f)])
            yield seed, out, False, False
            assert out.code in (0, 2), (seed, out.code, out.err)  # bad input is exit 2, not 1
    check("model file", cases())


def test_fuzz_meta_json(ws):
    root = ws / "metaroot"

    def cases():
        for i in range(n(130)):
            seed, rng = _rng("meta", i)
            (root / "fake").mkdir(parents=True, exist_ok=True)
            _write(root / "fake" / "meta.json", meta_case(rng))
            which = i % 4
            if which == 0:
                argv = ["models", "list", "--root", str(root), "--format", "json"]
            elif which == 1:
                argv = ["models", "show", "fake", "--root", str(root)]
            elif which == 2:
                argv = ["--store", str(ws / "base.sqlite"), "score", "--profile", "mobile-app",
                        "--models-dir", str(root), "--draws", "5", "--format", "json"]
            else:
                argv = ["--devices", str(ws / "devices.yaml"), "--store", str(ws / "none.sqlite"),
                        "run", str(ws / "campaign.yaml"), "--dry-run", "--models-root", str(root)]
            yield seed, run_cli(argv), "json" in argv or which == 1, False
    check("meta.json", cases())


# ------------------------------------------------------------------------------------ CSV input
def test_fuzz_results_csv_import(ws):
    f = ws / "fz-rows.csv"
    store = ws / "imp.sqlite"

    def cases():
        for i in range(n(200)):
            seed, rng = _rng("rcsv", i)
            _write(f, results_csv_case(rng))
            shutil.copy(ws / "base.sqlite", store)
            out = run_cli(["--store", str(store), "results", "import", str(f),
                           "--campaign", rng.choice(["c1", "imp"])])
            yield seed, out, False, False
            if out.code == 0:  # what was imported must read back cleanly in every format
                fmt = rng.choice(["json", "csv", "table"])
                yield seed, run_cli(["--store", str(store), "results", "--format", fmt]), \
                    fmt == "json", fmt == "csv"
    check("results CSV", cases())


def test_fuzz_meter_csv(ws):
    f = ws / "fz-meter.csv"
    store = ws / "meter.sqlite"
    shutil.copy(ws / "base.sqlite", store)

    def cases():
        for i in range(n(200)):
            seed, rng = _rng("meter", i)
            _write(f, meter_csv_case(rng, T0))
            yield seed, run_cli(["--store", str(store), "power", "import", str(f), "--device",
                                 "local", "--idle-s", rng.choice(["0", "0.5", "10", "nan", "-1"]),
                                 "--dry-run"]), False, False
    check("meter CSV", cases())


def test_meter_import_stores_energy_from_a_valid_log(ws):
    """The fuzz base is a real, usable log: the measured job gets a power figure."""
    f = ws / "ok-meter.csv"
    t0 = 1699999990.0  # 10 s before the job's first trial (2023-11-14T22:13:21Z - 11 s)
    f.write_text("timestamp,W\n" + "".join(f"{t0 + 0.1 * i:.1f},{2.5 if i > 100 else 1.0}\n"
                                           for i in range(300)))
    out = run_cli(["--store", str(ws / "base.sqlite"), "power", "import", str(f), "--device",
                   "local", "--dry-run"])
    assert out.code == 0, out.err
    assert "1 job(s) would be updated" in out.out


# ------------------------------------------------------------------------------------- the store
def _damage_store(path: Path, rng: random.Random) -> None:
    k = rng.randrange(10)
    if k < 6:
        db = sqlite3.connect(str(path))
        col, table = rng.choice([("device", "jobs"), ("model", "jobs"), ("campaign", "jobs"),
                                 ("error", "jobs"), ("threads", "jobs"), ("options_json", "jobs"),
                                 ("p50_ms", "measurements"), ("p90_ms", "measurements"),
                                 ("converged", "measurements"), ("n_samples", "measurements"),
                                 ("provenance_json", "measurements"), ("ms", "samples"),
                                 ("status", "jobs"), ("chip", "jobs")])
        value = rng.choice(EVIL_STR + ["NaN", "Infinity", "{bad", '{"a": NaN}', "[]", "1e999",
                                       b"\x00\xff", 9e999, -9e999, 10 ** 18, -5, "x" * 100_000])
        if isinstance(value, float):
            db.execute(f"UPDATE {table} SET {col} = {'9e999' if value > 0 else '-9e999'}")
        else:
            db.execute(f"UPDATE {table} SET {col} = ?", (value,))
        db.commit()
        db.close()
    elif k == 6:
        db = sqlite3.connect(str(path))
        table = rng.choice(["measurements", "jobs", "samples", "campaigns"])
        db.execute(f"DROP TABLE {table}")
        if rng.random() < 0.5 and table == "jobs":
            db.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, campaign TEXT NOT NULL, "
                       "device TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL)")
        db.commit()
        db.close()
    elif k == 7:
        blob = bytearray(path.read_bytes())
        for _ in range(rng.randint(1, 50)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        path.write_bytes(bytes(blob))
    elif k == 8:
        blob = path.read_bytes()
        path.write_bytes(blob[:rng.randrange(len(blob))])
    else:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([0, 100, 5000]))))


def test_fuzz_store(ws):
    store = ws / "dmg.sqlite"

    def cases():
        for i in range(n(170)):
            seed, rng = _rng("store", i)
            for suffix in ("", "-wal", "-shm"):
                Path(str(store) + suffix).unlink(missing_ok=True)
            shutil.copy(ws / "base.sqlite", store)
            _damage_store(store, rng)
            k = i % 6
            if k < 3:
                fmt = ["json", "csv", "table"][k]
                argv = ["--store", str(store), "results", "--format", fmt]
            elif k == 3:
                fmt = rng.choice(["json", "table"])
                argv = ["--store", str(store), "score", "--profile", "mobile-app", "--draws", "5",
                        "--format", fmt]
            elif k == 4:
                fmt = rng.choice(["json", "text"])
                argv = ["--store", str(store), "advise", "--campaign", "imp",
                        "--models-root", str(ws / "models"), "--format", fmt]
            else:
                fmt = "table"
                argv = ["--store", str(store), "power", "import", str(ws / "rows.csv"),
                        "--device", "local", "--dry-run"]
            yield seed, run_cli(argv), fmt == "json", fmt == "csv"
            if i % 17 == 0:  # the report reads everything; it is slower, so a few of them
                yield seed, run_cli(["--store", str(store), "report", "--campaign", "imp", "-o",
                                     str(ws / "rep" / f"r{i}.html")]), False, False
    check("store", cases())


def test_evil_names_in_a_store_are_text(ws):
    """Markup, escapes and formulas in stored names: every output shows them as text."""
    store = ws / "names.sqlite"
    shutil.copy(ws / "base.sqlite", store)
    db = sqlite3.connect(str(store))
    db.execute("UPDATE jobs SET device = ?, model = ?, campaign = ? WHERE campaign = 'imp'",
               ("=cmd|' /C calc'!A0\x1b[2J[/]", "@SUM(1)\x07", "../../X"))
    db.execute("UPDATE measurements SET p50_ms = 9e999")
    db.commit()
    db.close()
    for fmt in ("table", "json", "csv"):
        out = run_cli(["--store", str(store), "results", "--format", fmt])
        assert out.code == 0 and not problems(out, json_out=fmt == "json", csv_out=fmt == "csv"), \
            (fmt, problems(out), out.err)
    assert "[/]" in run_cli(["--store", str(store), "results"]).out  # shown, not parsed
    csv_out = run_cli(["--store", str(store), "results", "--format", "csv"]).out
    assert "'=cmd" in csv_out and "'@SUM" in csv_out
    out = run_cli(["--store", str(store), "report", "--campaign", "../../X"])
    assert out.code == 2 and "cannot name a folder" in out.err, out.err
    assert not (ws.parent / "X").exists()


# --------------------------------------------------------------------------------------- flags
def _flag_argv(ws: Path, rng: random.Random) -> tuple[list[str], bool]:
    num = rng.choice(EVIL_NUM_TEXT + ["1", "2", "0.5", "100", "10000000000000"])
    s = rng.choice(EVIL_STR + ["imp", "fake", "local", "mobile-app"])
    store = ["--store", str(ws / "base.sqlite")]
    path = rng.choice(["/dev/null", "/dev/full", "/proc/self/x.html", "/proc/1/status", "/",
                       str(ws), str(ws / ("n" * 300 + ".html")), str(ws / "o" / "r.html"),
                       str(ws / "devices.yaml" / "x.html"), "", "../../out.html".replace("..", str(ws))])
    k = rng.randrange(12)
    if k == 0:
        return store + ["score", "--profile", "mobile-app", "--draws", num, "--seed",
                        rng.choice(EVIL_NUM_TEXT + ["0", "7"]), "--format", "json"], True
    if k == 1:
        return ["--devices", str(ws / "devices.yaml"), "--store", str(ws / "none.sqlite"), "run",
                str(ws / "campaign.yaml"), "--dry-run", "--models-root", str(ws / "models"),
                rng.choice(["--max-parallel", "--retries"]), num], False
    if k == 2:
        return ["--devices", str(ws / "devices.yaml"), "devices", "--timeout", num], False
    if k == 3:
        return store + ["power", "import", str(ws / "rows.csv"), "--device", s, "--idle-s", num,
                        "--dry-run"], False
    if k == 4:
        return store + ["advise", "--model", s, "--device", rng.choice([s, "local"]),
                        rng.choice(["--latency-budget-ms", "--power-budget-w",
                                    "--first-inference-budget-ms"]), num,
                        "--models-root", str(ws / "models"), "--format", "json"], True
    if k == 5:
        return store + ["report", "--campaign", rng.choice([s, "imp"]), "-o", path], False
    if k == 6:
        return store + ["results", "--campaign", s, "--format", rng.choice(["json", "csv"])], True
    if k == 7:
        return ["models", "show", s, "--root", str(ws / "models")], True
    if k == 8:
        return ["--store", rng.choice([path, s, "x" * 5000]), "results", "--format", "json"], True
    if k == 9:
        return ["--devices", rng.choice([path, s, "/proc/self/mem"]), "devices"], False
    if k == 10:
        return ["node", "start", "--dry-run", "--devices", str(ws / "devices.yaml"),
                rng.choice(["--port", "--num-cpus", "--object-store-memory"]), num], False
    junk = [rng.choice(EVIL_STR + EVIL_NUM_TEXT + ["--format", "-o", "--x", "results", "score"])
            for _ in range(rng.randint(1, 4))]
    return [rng.choice(["results", "score", "chips", "models", "power", "report", "advise"])] + junk, False


def test_fuzz_cli_flags(ws):
    def cases():
        for i in range(n(260)):
            seed, rng = _rng("flags", i)
            argv, js = _flag_argv(ws, rng)
            out = run_cli(argv)
            yield seed, out, js and "json" in argv, False
    check("CLI flags", cases())
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("argv, needle", [
    (["score", "--profile", "mobile-app", "--seed", "-1"], "--seed"),
    (["score", "--profile", "mobile-app", "--draws", "1000000000000"], "--draws"),
    (["devices", "--timeout", "nan"], "--timeout"),
    (["devices", "--timeout", "inf"], "--timeout"),
    (["run", "x.yaml", "--retries", "-1"], "--retries"),
    (["run", "x.yaml", "--max-parallel", "0"], "--max-parallel"),
    (["power", "import", "x.csv", "--device", "d", "--idle-s", "nan"], "--idle-s"),
])
def test_bad_numbers_are_refused_at_the_command_line(argv, needle):
    out = run_cli(argv)
    assert out.code == 2 and needle in out.err and len(out.err.splitlines()) == 1, out.err


def test_report_never_replaces_a_device_node_or_writes_under_proc(ws):
    for target in ("/dev/null", "/proc/self/report.html", str(ws / ("n" * 300 + ".html"))):
        out = run_cli(["--store", str(ws / "base.sqlite"), "report", "--campaign", "imp",
                       "-o", target])
        assert out.code == 2 and len(out.err.splitlines()) == 1, (target, out.err)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# ----------------------------------------------------------------------------- real processes
def _lab(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, **kw)


@pytest.mark.parametrize("args", [
    ["chips", "--format", "json"],
    ["chips"],
])
def test_full_disk_on_stdout_is_one_line(args):
    with open("/dev/full", "w") as full:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        p = subprocess.run([sys.executable, "-m", "lab.cli", *args], env=env, stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == ["lab: error: cannot write the output: No space left on device"] \
        or "No space left" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_subprocess_bad_inputs_are_one_line(ws):
    bomb = ws / "bomb.yaml"
    bomb.write_text(yaml_case_bomb())
    for args in (["--devices", str(bomb), "devices"],
                 ["--store", "x" * 300, "results"],
                 ["--store", str(ws / "base.sqlite"), "report", "--campaign", "imp", "-o", "/dev/null"],
                 ["score", "--profile", "mobile-app", "--draws", str(10 ** 12)]):
        p = _lab(args)
        assert p.returncode in (1, 2) and "Traceback" not in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def yaml_case_bomb() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\ndevices: *a9\n"


def test_dry_run_of_100k_jobs_takes_seconds(tmp_path):
    """Planning is linear: 1,000 thread counts x 100 batch sizes = 100,000 jobs, fake model."""
    (tmp_path / "models" / "fake").mkdir(parents=True)
    (tmp_path / "models" / "fake" / "meta.json").write_text(__import__("json").dumps(meta_doc()))
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump(DEVICES))
    (tmp_path / "big.yaml").write_text(yaml.safe_dump({
        "name": "big", "devices": ["local"], "models": ["fake"],
        "backends": ["paddle-inference-cpu"], "threads": list(range(1, 1001)),
        "batch": list(range(1, 101))}))
    t0 = time.perf_counter()
    p = _lab(["--devices", str(tmp_path / "devices.yaml"), "--store", str(tmp_path / "s.sqlite"),
              "run", str(tmp_path / "big.yaml"), "--dry-run", "--models-root",
              str(tmp_path / "models")], cwd=tmp_path)
    took = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-500:]
    assert "100000 jobs planned" in p.stderr
    assert len(p.stdout.splitlines()) == 100_001
    assert took < 30, f"100k-job dry run took {took:.1f} s"


def test_plan_is_linear_in_jobs():
    """Planning 4x the jobs costs about 4x the time (the old duplicate check was quadratic)."""
    from lab.measure.campaign import CampaignSpec, plan_jobs
    from lab.core.records import Device, MeasurementProtocol
    dev = Device(id="local", chip="generic-x86-cpu", transport="local")

    def plan(threads: int) -> float:
        spec = CampaignSpec(name="lin", devices=("local",), models=("m",),
                            backends=("paddle-inference-cpu",), threads=tuple(range(1, threads + 1)),
                            precisions=("fp32",), batch=tuple(range(1, 21)), options=(),
                            protocol=MeasurementProtocol(), path="", description="")
        gc.disable()  # the collector's passes grow with live objects; measure the planner
        try:
            t0 = time.perf_counter()
            jobs, _ = plan_jobs(spec, [dev], lambda m: "00")
            took = time.perf_counter() - t0
        finally:
            gc.enable()
        assert len(jobs) == threads * 20
        return took
    plan(10)
    small, big = min(plan(250) for _ in range(2)), min(plan(1000) for _ in range(2))
    assert big < small * 10, (small, big)  # quadratic would be ~16x


def test_fuzz_case_count():
    """Runs last in this file (pytest keeps file order): the suite ran >= 2,000 cases."""
    total = sum(COUNTS.values())
    if SCALE >= 1 and len(COUNTS) >= 10:
        assert total >= 2000, COUNTS
    print(f"\nfuzz cases: {total} {COUNTS}")
