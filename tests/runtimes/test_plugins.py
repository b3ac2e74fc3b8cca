"""Plug-in runtimes through the entry-point group `hwlab.runtimes` (lab/runtimes/registry.py).

The plug-in under test is real and installed the way a vendor's would be: the hwlab-sim
distribution (bench/hwlab_sim, `pip install -e bench/hwlab_sim`, done by `make test`), whose
`simulated` runtime replays a recorded latency distribution through the runner protocol. Broken
plug-ins are real installed distributions too (a dist-info folder on PYTHONPATH, which is all that
importlib.metadata reads), run in a fresh `lab` process.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("hwlab_sim", reason="pip install -e bench/hwlab_sim (make test does)")

from lab import cli
from lab.devices.backends import BACKENDS
from lab.results.store import Store
from lab.runtimes.registry import get_runtime, load_plugins, runtime_sources

LAB = str(Path(sys.executable).with_name("lab"))
PROTOCOL = ("{warmup: 0, warmup_seconds: 0, min_iters: 8, min_seconds: 0.05, max_seconds: 1, "
            "target_rel_ci: 0.5, trials: 2, timeout_s: 60}")


def test_entry_point_runtime_is_registered_with_its_source_and_backends():
    found = {s.name: s for s in load_plugins()}
    sim = found["simulated"]
    assert sim.error is None and sim.source.startswith("hwlab-sim ")
    assert sim.backends == ("sim-cpu", "sim-aipu")
    assert BACKENDS["sim-aipu"].runtime == "simulated" and BACKENDS["sim-aipu"].processor == "aipu"
    assert get_runtime("simulated").name == "simulated"
    sources = {s.name: s.source for s in runtime_sources()}
    assert sources["paddle-inference"] == "builtin" and sources["simulated"] == sim.source


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "devices.yaml"
    inv.write_text(textwrap.dedent(f"""
        devices:
          - id: sim-a
            chip: rk3588
            transport: local
            workdir: {tmp_path / 'sim-a'}
          - id: sim-bad
            chip: kirin990
            transport: local
            workdir: {tmp_path / 'sim-bad'}
            tags: [sim-fault:fail]
        """))
    return inv


@pytest.mark.slow
def test_campaign_through_the_plugin_runtime_and_devices_check_lists_it(tmp_path, capsys):
    from lab.models.build import build
    build("tiny_mlp", out_root=str(tmp_path / "models"))
    inv = _inventory(tmp_path)
    camp = tmp_path / "c.yaml"
    camp.write_text(f"name: simplug\ndevices: [sim-a, sim-bad]\nmodels: [tiny_mlp]\nbackends: [sim-cpu]\n"
                    f"threads: [1, 2]\nprotocol: {PROTOCOL}\n")
    store_path = tmp_path / "s.sqlite"
    rc = cli.main(["--devices", str(inv), "--store", str(store_path), "run", str(camp),
                   "--models-root", str(tmp_path / "models"), "--no-progress"])
    assert rc == 1  # sim-bad fails its jobs, sim-a measures its own
    store = Store(store_path)
    rows = {r.device + str(r.threads): r for r in store.results("simplug")}
    for t in (1, 2):
        ok = rows[f"sim-a{t}"]
        assert ok.status == "ok" and ok.source == "simulated" and ok.n_samples >= 16
        assert ok.p50_ms > 0 and ok.power_w is None and "simulated device" in ok.power_note
        assert len(store.samples(ok.job_id)) == 2  # two trials, two runner processes
        prov = store.provenance(ok.job_id)
        assert prov["runner"] == "sim_runner" and "sim_runner.py" in prov["commands"][0]
        notes = store._db.execute("SELECT notes_json FROM measurements WHERE job_id = ?",
                                  (ok.job_id,)).fetchone()[0]
        assert "latencies replayed from job e8f87fe9fcd8e476 (mobilenet_v1 on generic-x86-cpu" in notes
        bad = rows[f"sim-bad{t}"]
        assert bad.status == "failed" and "simulated device fault" in bad.error
    # the chip factor: rk3588 is not the recorded chip, so its latencies are the recording's, scaled
    assert rows["sim-a1"].p50_ms != pytest.approx(16.6, rel=0.02)
    store.close()

    capsys.readouterr()
    cli.main(["--devices", str(inv), "devices", "--check", "--timeout", "60", "sim-a"])
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("runtimes found: "))
    assert "paddle-inference (builtin)" in line
    assert "simulated (hwlab-sim " in line and "backends sim-cpu, sim-aipu" in line


def _dist(site: Path, name: str, entries: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hwlab.runtimes]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))


@pytest.mark.slow
def test_broken_plugins_are_one_line_each_never_a_traceback(tmp_path):
    site = tmp_path / "site"
    _dist(site, "vendor-missing", {"missing": "no_such_vendor_module:Runtime"})
    _dist(site, "vendor-wrong", {"wrongname": "hwlab_sim.runtime:SimulatedRuntime",
                                 "notaruntime": "json:dumps"})
    inv = tmp_path / "devices.yaml"
    inv.write_text(f"devices:\n  - id: here\n    chip: generic-x86-cpu\n    transport: local\n"
                   f"    workdir: {tmp_path / 'w'}\n")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run([LAB, "--devices", str(inv), "devices", "--check", "--timeout", "60"],
                         capture_output=True, text=True, timeout=120, env=env, check=False)
    text = res.stdout + res.stderr
    assert "Traceback" not in text
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("runtimes found: "))
    assert ("missing (vendor-missing 1.0): BROKEN, not loaded: ModuleNotFoundError: No module named "
            "'no_such_vendor_module'") in line
    assert "wrongname (vendor-wrong 1.0): BROKEN, not loaded: ValueError: runtime name 'simulated' differs" in line
    assert "notaruntime (vendor-wrong 1.0): BROKEN, not loaded: TypeError: function is not a" in line
    assert "simulated (hwlab-sim " in line and "paddle-inference (builtin)" in line  # the rest still loads
