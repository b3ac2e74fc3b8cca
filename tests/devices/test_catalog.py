"""Chip catalog: the built-in file loads, figures are per precision and sourced, bad files fail
with file:line and a fix (exit 2 through the CLI)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.devices.backends import RUN_PRECISIONS
from lab.devices.catalog import CONFIDENCE_CODES, TOPS_PRECISIONS, load_catalog, tops
from lab.cli import main
from lab.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

EXPECTED = ["rk1808", "rv1109", "rv1126", "rk3399pro", "rk3588", "kirin810", "kirin820", "kirin980",
            "kirin990", "kirin990-5g", "kirin9000", "nvidia-t4", "nvidia-a10", "nvidia-a100",
            "nvidia-l4", "nvidia-h100-sxm", "nvidia-h100-pcie", "jetson-orin-nano-super",
            "jetson-orin-nx", "jetson-agx-orin", "kunlun-k200", "kunlun-r200", "generic-x86-cpu"]


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def test_every_reference_chip_is_there(cat):
    assert set(EXPECTED) <= set(cat.ids())


def test_every_figure_is_tagged(cat):
    for chip in cat:
        for f in chip.figures():
            assert f.source in cat.sources, (chip.id, f)
            assert f.confidence in CONFIDENCE_CODES
            if f.confidence == "U":
                assert f.verified is False, (chip.id, f)
            if not f.known:
                assert f.note, (chip.id, f)
        for p in chip.prices:
            assert p.basis and p.currency and isinstance(p.estimate, bool)
        if not chip.prices:
            assert chip.price_note


def test_rk1808_tops_per_precision_not_derived_by_2x(cat):
    rk = cat.get("rk1808")
    assert tops(rk, "int8").value == 3.0
    fp16 = tops(rk, "fp16")
    assert fp16.value == pytest.approx(0.1)  # 30:1 from the MAC ratio, tagged D
    assert fp16.value != pytest.approx(3.0 / 2)
    assert fp16.confidence == "D" and fp16.verified is False
    assert tops(rk, "int16").value == pytest.approx(0.3)
    assert tops(rk, "fp32") is None  # not stated -> None, never derived


def test_rv1109_has_no_fp16(cat):
    rv = cat.get("rv1109")
    assert tops(rv, "int8").value == 1.2
    assert tops(rv, "fp16") is None
    assert "fp16" in rv.accelerator.unsupported
    assert tops(cat.get("rv1126"), "int8").value == 2.0


def test_nvidia_ratios_as_stated(cat):
    assert cat.tops("nvidia-t4", "int8").value == 130 and cat.tops("nvidia-t4", "fp16").value == 65
    assert cat.tops("kunlun-k200", "int8").value == 256 and cat.tops("kunlun-k200", "fp16").value == 64
    assert cat.tops("nvidia-h100-sxm", "int8").value == 1979
    assert cat.get("jetson-orin-nano-super").accelerator.tops == {}  # only a sparse figure stated
    assert cat.get("jetson-orin-nano-super").accelerator.tops_sparse["int8"].value == 67


def test_kirin_tops_unpublished_is_null_with_note(cat):
    for cid in ("kirin810", "kirin820", "kirin980", "kirin990", "kirin990-5g", "kirin9000"):
        f = cat.tops(cid, "int8")
        assert f is not None and f.value is None and "published" in f.note
        assert any(s.kind == "production-stopped" for s in cat.get(cid).supply)
    assert cat.get("kirin990").nnadapter == ("huawei_kirin_npu",)
    assert cat.get("kirin980").nnadapter == ()  # Cambricon NPU: not huawei_kirin_npu
    assert set(cat.get("rk1808").nnadapter) == {"rockchip_npu", "verisilicon_timvx"}


def test_export_flags_and_generic_cpu(cat):
    for cid in ("nvidia-a100", "nvidia-h100-sxm", "nvidia-h100-pcie"):
        assert any(s.kind == "export-control" for s in cat.get(cid).supply)
    g = cat.get("generic-x86-cpu")
    assert g.accelerator.kind == "none" and g.power_w.value is None and g.power_w.note


def test_unknown_precision_query_raises(cat):
    with pytest.raises(ConfigError):
        tops(cat.get("rk1808"), "int9")
    with pytest.raises(ConfigError, match="unknown chip id"):
        cat.get("nope")


GOOD = """\
sources:
  s1: "a source"
chips:
  - id: c1
    name: C1
    vendor: V
    family: f
    domain: [edge]
    accelerator:
      kind: npu
      tops:
        int8: {value: 1.0, unit: TOPS, source: s1, confidence: V}
    price:
      - {basis: board, currency: USD, low: 10, high: 20, estimate: true, source: s1, confidence: E}
"""


def _load(tmp_path, text):
    p = tmp_path / "chips.yaml"
    p.write_text(text)
    return load_catalog(p), p


def test_minimal_good_file(tmp_path):
    c, _ = _load(tmp_path, GOOD)
    assert c.ids() == ["c1"] and c.tops("c1", "int8").value == 1.0


@pytest.mark.parametrize("bad,needle,line", [
    (GOOD.replace("int8: {", "int9: {"), "unknown precision 'int9'", 12),
    (GOOD.replace("source: s1, confidence: V}", "confidence: V}"), "missing required key 'source'", 12),
    (GOOD.replace("source: s1, confidence: V}", "source: s9, confidence: V}"), "unknown source 's9'", 12),
    (GOOD.replace("confidence: V}", "confidence: X}"), "confidence must be one of", 12),
    (GOOD.replace("confidence: V}", "confidence: U, verified: true}"), "cannot be verified", 12),
    (GOOD.replace("value: 1.0, unit", "value: null, unit"), "without a note", 12),
    (GOOD.replace("value: 1.0", "value: -1"), "must not be negative", 12),
    (GOOD.replace("basis: board", "basis: lease"), "basis must be one of", 14),
    (GOOD.replace("id: c1", "id: C 1"), "is not valid", 4),
    (GOOD.replace("    family: f\n", "    family: f\n    colour: red\n"), "unknown key 'colour'", 8),
    (GOOD.replace("    vendor: V\n", ""), "missing required key 'vendor'", 4),
    (GOOD + GOOD.split("chips:\n")[1], "duplicate chip id 'c1'", 15),
    (GOOD.replace("kind: npu", "kind: npu\n      unsupported: [int8]"), "both unsupported and rated", 10),
])
def test_validation_errors_name_file_line_and_fix(tmp_path, bad, needle, line):
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, bad)
    msg = str(ei.value)
    assert needle in msg
    assert f"chips.yaml:{line}:" in msg, msg


def test_bad_catalog_cli_exit_2_one_line(tmp_path, capsys):
    p = tmp_path / "chips.yaml"
    p.write_text(GOOD.replace("int8: {", "int9: {"))
    assert main(["chips", "--catalog", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "int9" in err[0] and "Traceback" not in err[0]


def test_chips_json_cli(capsys):
    assert main(["chips", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by = {d["id"]: d for d in data}
    assert set(EXPECTED) <= set(by)
    for d in data:
        assert {"id", "vendor", "tops", "sources"} <= set(d)
        assert set(d["tops"]) <= set(TOPS_PRECISIONS)
    assert by["rk1808"]["tops"] == {"int8": 3.0, "int16": 0.3, "fp16": 0.1}
    assert by["kirin990"]["tops"]["int8"] is None


@pytest.mark.slow
def test_chips_table_cli_runs():
    r = subprocess.run([sys.executable, "-m", "lab.cli", "chips"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "rk1808" in r.stdout and "kirin990-5g" in r.stdout


def test_every_run_precision_can_be_looked_up_in_the_rated_tops():
    """A job's precision is the key into a chip's TOPS (utilisation, scoring): it must be a rated one."""
    assert set(RUN_PRECISIONS) <= set(TOPS_PRECISIONS)
    assert {"fp32", "fp16", "int8", "int16"} <= set(RUN_PRECISIONS)
