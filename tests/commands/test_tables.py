"""Issue 17: terminal tables never cut ids, chips, models or figures (lab/commands/tables.py).

Rendered at 80 and 120 columns as a terminal of that width would get them; every full id and
figure must appear on one line, and what was left out is named with the `--wide` hint.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.devices.catalog import load_catalog
from lab.cli import main
from lab.core.records import ResultRow
from lab.decide.profiles import load_profiles
from lab.decide.scoring import score_chips

REPO = Path(__file__).resolve().parents[2]


def _rows():
    out = []
    for i, (dev, chip, model) in enumerate([("device-rk3399pro-board-01", "rk3399pro", "mobilenet_v2"),
                                            ("device-rk3588-evb-02", "rk3588", "resnet50"),
                                            ("demo-local-x86-host", "generic-x86-cpu", "tiny_detector")]):
        out.append(ResultRow(job_id=f"job{i:013d}", campaign="demo-campaign-with-long-name",
                             device=dev, chip=chip, model=model, backend="paddle-inference-cpu",
                             processor="cpu", precision="fp32", threads=2, batch=1, status="ok",
                             p50_ms=12.3456 * (i + 1), ci_low_ms=12.0 * (i + 1),
                             ci_high_ms=12.9 * (i + 1), p90_ms=14.0, load_ms=123.0, first_ms=45.6,
                             peak_rss_mb=210.0, n_samples=300, converged=i != 1,
                             options={"onednn": True}))
    return out


@pytest.mark.parametrize("width", [80, 120])
def test_results_table_keeps_ids_whole(width):
    from lab.commands.results import _print_table
    buf = io.StringIO()
    _print_table(_rows(), width=width, file=buf)
    text = buf.getvalue()
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(map(len, lines))
    for r in _rows():
        assert any(r.device in line and r.model in line for line in lines), r.device
        assert "demo-campaign-with-long-name" in text and f"{r.p50_ms:.3g}" in text
    assert "…" not in text
    if width == 80:
        assert "--wide shows all" in text
    assert "converged" in text  # the quality column (lab.results.quality) is a key column


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("pid", sorted(load_profiles()))
def test_score_table_keeps_chip_ids_whole(width, pid):
    from lab.commands.score import render_table
    p = load_profiles()[pid]
    res = score_chips(load_catalog(), p, [], draws=20)
    buf = io.StringIO()
    render_table(res, p, "note", 20, 0, width=width, file=buf)
    text = buf.getvalue()
    table = text.split("winner")[0]
    assert "…" not in text
    for r in res:
        if not r.excluded:
            assert f"{r.rank} " in table and f" {r.chip} " in table, (r.chip, width)
            assert f"{r.score:.1f}" in table
    assert all(len(line) <= width for line in table.splitlines())


@pytest.mark.parametrize("width", [80, 120])
def test_chips_table_keeps_ids_whole(width):
    from lab.commands.chips import render_table
    buf = io.StringIO()
    cat = load_catalog()
    render_table(cat, width=width, file=buf)
    text = buf.getvalue()
    assert "…" not in text
    for chip in cat:
        assert any(line.split()[:1] == [chip.id] for line in text.splitlines()), chip.id


def test_wide_flag_keeps_every_column(tmp_path, capsys):
    from lab.commands.results import _print_table
    buf = io.StringIO()
    _print_table(_rows(), width=80, file=buf, wide=True)
    head = buf.getvalue().splitlines()[0]
    assert "mJ/inf" in head and "p90" in head
    assert main(["chips", "--wide"]) == 0


def test_markup_in_names_is_text():
    from lab.commands.results import _print_table
    r = _rows()[0]
    import dataclasses
    buf = io.StringIO()
    _print_table([dataclasses.replace(r, device="[bold]x[/]")], width=120, file=buf)
    assert "[bold]x[/]" in buf.getvalue()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
@pytest.mark.parametrize("width", [80, 120])
def test_in_a_real_terminal_with_tmux(tmp_path, width):
    """The way a person sees it: `lab score` in an 80/120-column tmux pane, captured."""
    sock = str(tmp_path / "tmux.sock")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = (f"{sys.executable} -m lab.cli --store {tmp_path}/none.sqlite score --profile mobile-app; "
           "sleep 30")
    subprocess.run(["tmux", "-S", sock, "new-session", "-d", "-x", str(width), "-y", "50", cmd],
                   check=True, env=env, cwd=REPO)
    try:
        deadline = time.time() + 30
        text = ""
        while time.time() < deadline:
            text = subprocess.run(["tmux", "-S", sock, "capture-pane", "-p", "-J", "-S", "-300"],
                                  capture_output=True, text=True).stdout
            if "measurements:" in text:
                break
            time.sleep(0.2)
        assert "…" not in text, text
        for chip in ("kirin990-5g", "kirin9000", "rk1808", "rv1126"):
            assert any(line.split()[1:2] == [chip] for line in text.splitlines()), (chip, text)
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
