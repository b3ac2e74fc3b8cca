"""External meter CSV import: parsing, alignment to stored jobs, CLI (real SQLite store)."""
from __future__ import annotations

import pytest

from lab import cli
from lab.core.errors import ConfigError
from lab.telemetry.meter_import import read_meter_csv
from lab.core.records import Job, Measurement
from lab.results.store import Store


def iso(epoch):
    from datetime import datetime, timezone
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def write_meter(path, volts_amps=False, iso_time=False):
    lines = ["timestamp,V,A" if volts_amps else "timestamp,W"]
    for t in range(990, 1016):
        w = 2.0 if t <= 1005 else 6.0
        ts = iso(t) if iso_time else str(t)
        lines.append(f"{ts},5.0,{w / 5}" if volts_amps else f"{ts},{w}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("va,isot", [(False, False), (True, False), (False, True), (True, True)])
def test_read_meter_formats(tmp_path, va, isot):
    s = read_meter_csv(write_meter(tmp_path / "m.csv", va, isot))
    assert s.t[0] == 990 and s.power_w[0] == pytest.approx(2.0) and s.power_w[-1] == pytest.approx(6.0)
    assert s.period_s == 1.0 and s.source == "meter:m.csv"


def test_headerless_and_errors(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("1,2.5\n2,3.5\n")
    assert read_meter_csv(p).power_w == [2.5, 3.5]
    p.write_text("time,mystery\n1,2\n")
    with pytest.raises(ConfigError, match="h.csv:1: .*no timestamp"):
        read_meter_csv(p)
    p.write_text("timestamp,W\n1,2\n1,3\n")
    with pytest.raises(ConfigError, match="h.csv:3: .*not after"):
        read_meter_csv(p)
    p.write_text("timestamp,W\n1,2\nyesterday,3\n")
    with pytest.raises(ConfigError, match="h.csv:3: bad row"):
        read_meter_csv(p)


def make_store(tmp_path):
    store = Store(tmp_path / "lab.sqlite")
    job = Job("job-rk1808-1", "demo", "rk1808", "RK1808", "mobilenet", "", "lite-npu", "aipu",
              "int8", 1)
    store.plan_jobs([job])
    m = Measurement(job_id=job.job_id, p50_ms=50.0, n_samples=100, samples=[[50.0] * 100])
    m.power_note = "power unavailable: no sensor on the stick"
    m.provenance = {"trials": [{"started_at": iso(1000), "finished_at": iso(1012), "n": 100}]}
    store.finish_job(job.job_id, "ok", measurement=m)
    store.close()
    return tmp_path / "lab.sqlite"


def test_cli_import_aligns_and_stores_hand_computed(tmp_path, capsys):
    # steady window = [1012 - 100 x 50 ms, 1012] = [1007, 1012] at 6 W -> 30 J / 100 = 300 mJ
    # idle [990, 1000] at 2 W -> net (30 - 2 x 5) / 100 = 200 mJ
    db = make_store(tmp_path)
    meter = write_meter(tmp_path / "usb.csv")
    assert cli.main(["--store", str(db), "power", "import", str(meter), "--device", "rk1808"]) == 0
    assert "1 job(s) updated" in capsys.readouterr().out
    store = Store(db)
    row = store.results_rows("demo")[0]
    store.close()
    assert row["power_w"] == pytest.approx(6.0) and row["idle_w"] == pytest.approx(2.0)
    assert row["energy_mj_per_inf"] == pytest.approx(300.0)
    assert row["energy_net_mj_per_inf"] == pytest.approx(200.0)
    assert row["power_source"].startswith("meter:usb.csv") and "NTP" in row["power_note"]


def test_cli_no_overlap_is_bad_input(tmp_path, capsys):
    db = make_store(tmp_path)
    p = tmp_path / "late.csv"
    p.write_text("timestamp,W\n5000,1\n5001,1\n")
    assert cli.main(["--store", str(db), "power", "import", str(p), "--device", "rk1808"]) == 2
    err = capsys.readouterr().err
    assert "late.csv" in err and "no ok job" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["--store", str(db), "power", "import", str(tmp_path / "nope.csv"),
                     "--device", "rk1808"]) == 2


def add_previous_job(db_path, finished_epoch, job_id="job-rk1808-0", status="ok", device="rk1808"):
    """A job that ran on the same device just before (cooldown 0), ending at finished_epoch."""
    store = Store(db_path)
    job = Job(job_id, "earlier", device, "RK1808", "resnet", "", "lite-npu", "aipu", "int8", 1)
    store.plan_jobs([job])
    store.finish_job(job_id, status, error=None if status == "ok" else "boom")
    with store._tx() as db:  # the store stamps now(); put the job where the meter log has it
        db.execute("UPDATE jobs SET finished_at=? WHERE job_id=?", (iso(finished_epoch), job_id))
    store.close()


def write_meter_with_previous_load(path):
    # 6 W up to t=993 (the previous job), 2 W idle 994..1005, 6 W after (this job's steady part)
    lines = ["timestamp,W"] + [f"{t},{6.0 if t <= 993 or t > 1005 else 2.0}" for t in range(985, 1016)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_idle_baseline_is_clipped_after_the_previous_job(tmp_path):
    db = make_store(tmp_path)
    add_previous_job(db, 994, status="failed")  # a failed job loaded the device all the same
    meter = write_meter_with_previous_load(tmp_path / "usb.csv")
    # unclipped [990, 1000] would average 990..993 at 6 W into 'idle'; clipped [994, 1000] = 2 W
    assert cli.main(["--store", str(db), "power", "import", str(meter), "--device", "rk1808"]) == 0
    store = Store(db)
    row = store.results_rows("demo")[0]
    store.close()
    assert row["idle_w"] == pytest.approx(2.0)
    assert row["energy_net_mj_per_inf"] == pytest.approx(200.0)  # (30 J - 2 W x 5 s) / 100
    assert "clipped to 6.0 s" in row["power_note"] and "job-rk1808-0" in row["power_note"]


def test_idle_baseline_dropped_when_less_than_half_remains(tmp_path):
    db = make_store(tmp_path)
    add_previous_job(db, 997)  # only 3 s of idle before the first trial (< 10 s / 2)
    meter = write_meter_with_previous_load(tmp_path / "usb.csv")
    assert cli.main(["--store", str(db), "power", "import", str(meter), "--device", "rk1808"]) == 0
    store = Store(db)
    row = store.results_rows("demo")[0]
    store.close()
    assert row["power_w"] == pytest.approx(6.0) and row["energy_mj_per_inf"] == pytest.approx(300.0)
    assert row["idle_w"] is None and row["energy_net_mj_per_inf"] is None
    assert "idle baseline dropped" in row["power_note"] and "3.0 s" in row["power_note"]


def test_jobs_on_other_devices_or_long_before_do_not_clip(tmp_path):
    from lab.telemetry.meter_import import idle_window
    assert idle_window(1000, 10, [], "x") == ((990, 1000), None)
    assert idle_window(1000, 10, [(999.0, "x")], "x") == ((990, 1000), None)  # the job itself
    assert idle_window(1000, 10, [(980.0, "old")], "x") == ((990, 1000), None)  # long before
    db = make_store(tmp_path)
    add_previous_job(db, 997, job_id="job-other-0", device="other-board")
    assert cli.main(["--store", str(db), "power", "import", str(write_meter(tmp_path / "m.csv")),
                     "--device", "rk1808"]) == 0
    store = Store(db)
    row = store.results_rows("demo")[0]
    store.close()
    assert row["idle_w"] == pytest.approx(2.0) and "idle baseline" not in row["power_note"]
