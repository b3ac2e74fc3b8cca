"""lite_convert with a fake paddle_lite_opt that checks its argv the way opt would."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab.convert import lite as lite_convert
from lab.core.errors import ConfigError, LabError
from lab.runtimes.paddle_lite import nb_path

from lite_doubles import make_artifact
from lite_doubles import FAKE_OPT  # noqa: F401



@pytest.fixture
def fake_opt(tmp_path, monkeypatch):
    p = tmp_path / "paddle_lite_opt"
    p.write_text(FAKE_OPT.format(python=sys.executable))
    p.chmod(0o755)
    log = tmp_path / "opt.log"
    monkeypatch.setenv("HWLAB_PADDLE_LITE_OPT", str(p))
    monkeypatch.setenv("FAKE_OPT_LOG", str(log))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_arm_and_kirin_targets(tmp_path, fake_opt):
    art = make_artifact(tmp_path)
    nb = lite_convert.convert(art, "arm")
    assert nb == nb_path(art, "arm") and nb.read_bytes() == b"nb:arm"
    argv = calls(fake_opt)[0]
    assert f"--model_file={art.pdmodel_path}" in argv and f"--param_file={art.legacy_pdiparams_path}" in argv
    assert "--optimize_out_type=naive_buffer" in argv and "--valid_targets=arm" in argv
    assert not any(a.startswith("--quant") for a in argv)
    nb2 = lite_convert.convert(art, "huawei_kirin_npu")  # alias of kirin-npu
    assert nb2 == nb_path(art, "kirin-npu") and nb2.read_bytes() == b"nb:huawei_kirin_npu,arm"
    meta = json.loads((nb2.parent / "kirin-npu.json").read_text())
    assert meta["source_sha256"] == art.legacy_sha256 and "--valid_targets=huawei_kirin_npu,arm" in meta["args"]


def test_reuse_when_unchanged(tmp_path, fake_opt):
    art = make_artifact(tmp_path)
    lite_convert.convert(art, "arm")
    lite_convert.convert(art, "arm")
    assert len(calls(fake_opt)) == 1
    lite_convert.convert(art, "arm", quant="int8")  # different flags: converted again
    argv = calls(fake_opt)[-1]
    assert "--quant_model=true" in argv and "--quant_type=QUANT_INT8" in argv
    lite_convert.convert(art, "arm", precision="fp16")
    assert "--enable_fp16=true" in calls(fake_opt)[-1]


def test_rockchip_needs_full_int8(tmp_path, fake_opt):
    art = make_artifact(tmp_path)
    with pytest.raises(ConfigError, match="cannot make one from an fp32 model"):
        lite_convert.convert(art, "rockchip-npu")
    assert calls(fake_opt) == []
    art.tags["quantization"] = "int8-full"
    nb = lite_convert.convert(art, "rockchip-npu")
    assert nb.read_bytes() == b"nb:rockchip_npu,arm"
    with pytest.raises(ConfigError):
        lite_convert.convert(art, "timvx", quant="int8")


def test_missing_tool_names_env_var(tmp_path, monkeypatch):
    monkeypatch.delenv("HWLAB_PADDLE_LITE_OPT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(lite_convert, "_LOCAL_OPT", tmp_path / "no-venv-lite" / "paddle_lite_opt")
    with pytest.raises(ConfigError, match="HWLAB_PADDLE_LITE_OPT"):
        lite_convert.convert(make_artifact(tmp_path), "arm")


def test_bad_target_and_tool_failure(tmp_path, fake_opt, monkeypatch):
    art = make_artifact(tmp_path)
    with pytest.raises(ConfigError, match="unknown Paddle Lite target"):
        lite_convert.convert(art, "npu")
    bad = tmp_path / "bad_opt"
    bad.write_text("#!/bin/sh\necho 'Check failed: model file broken' >&2\nexit 1\n")
    bad.chmod(0o755)
    monkeypatch.setenv("HWLAB_PADDLE_LITE_OPT", str(bad))
    with pytest.raises(LabError, match="model file broken"):
        lite_convert.convert(art, "arm")


def test_json_only_model_refused(tmp_path, fake_opt):
    art = make_artifact(tmp_path)
    art.pdmodel_path = None
    with pytest.raises(ConfigError, match="cannot\\s+read PIR .json"):
        lite_convert.convert(art, "arm")
