"""lite_convert with a fake paddle_lite_opt that checks its argv the way opt would."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lab import lite_convert
from lab.errors import ConfigError, LabError
from lab.runtimes.paddle_lite import nb_path

from test_lite_exec import make_artifact

FAKE_OPT = r'''#!{python}
"""Fake paddle_lite_opt: validates flags like opt (opt_base.cc SetValidPlaces) and writes <out>.nb."""
import json, os, sys
log = os.environ.get("FAKE_OPT_LOG")
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
if log:
    with open(log, "a") as fh:
        fh.write(json.dumps(sys.argv[1:]) + "\n")
known = {{"arm", "opencl", "huawei_kirin_npu", "rockchip_npu", "verisilicon_timvx"}}
for t in args.get("valid_targets", "arm").split(","):
    if t not in known:
        print("Wrong target '%s' found, please check the command flag 'valid_targets'" % t)
        sys.exit(1)
if "optimize_out" not in args or not os.path.isfile(args.get("model_file", "")):
    print("help: paddle_lite_opt ..."); sys.exit(1)
for b in ("quant_model", "enable_fp16"):
    assert args.get(b, "true") == "true", b
with open(args["optimize_out"] + ".nb", "wb") as fh:
    fh.write(b"nb:" + args["valid_targets"].encode())
print("Save the optimized model into :%s.nb successfully" % args["optimize_out"])
'''


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
