"""Bad input from the command line: exit 2, exactly one line on stderr, no traceback."""
from __future__ import annotations

import textwrap

import pytest

from helpers import lab_cli, one_line_error, write_local_devices


def lab(*args):
    return lab_cli(*args, timeout=120)


@pytest.fixture()
def ws(tmp_path):
    write_local_devices(tmp_path)
    (tmp_path / "c.yaml").write_text(textwrap.dedent("""
        name: t
        devices: [local]
        models: [mobilenet_v1]
        backends: [paddle-inference-cpu]
        """))
    return tmp_path


def test_broken_devices_yaml(ws):
    (ws / "devices.yaml").write_text("devices:\n  - id: local\n    chip: generic-x86-cpu\n    transprt: local\n")
    line = one_line_error(lab("--devices", ws / "devices.yaml", "devices"), "devices.yaml:4", "transprt")
    assert "did you mean 'transport'" in line


def test_unknown_device_in_campaign(ws):
    (ws / "c.yaml").write_text((ws / "c.yaml").read_text().replace("[local]", "[gpu-box]"))
    one_line_error(lab("--devices", ws / "devices.yaml", "--store", ws / "s.sqlite", "run", ws / "c.yaml",
                       "--models-root", ws / "models"), "unknown device 'gpu-box'")


def test_malformed_campaign(ws):
    (ws / "c.yaml").write_text("name: t\ndevices: local\nmodels: [m]\nbackends: [paddle-inference-cpu]\n"
                               "protocol: {trials: many}\n")
    one_line_error(lab("--devices", ws / "devices.yaml", "run", ws / "c.yaml"), "c.yaml:5", "trials")


def test_campaign_not_found(ws):
    one_line_error(lab("--devices", ws / "devices.yaml", "run", ws / "nope.yaml"), "nope.yaml", "not found")


def test_missing_model_file(ws):
    """A registered user model whose file went missing is refused before anything runs."""
    res = lab("models", "--root", ws / "built", "build", "tiny_mlp")
    assert res.returncode == 0, res.stderr
    import shutil
    built = ws / "built" / "tiny_mlp"
    model, params = ws / "user.json", ws / "user.pdiparams"
    shutil.copy(next(built.glob("*.json")), model)
    shutil.copy(next(p for p in built.glob("*.pdiparams") if "legacy" not in p.name), params)
    res = lab("models", "--root", ws / "models", "add", "mine", "--model-file", model, "--params-file", params,
              "--input", "x:1x64:float32")
    assert res.returncode == 0, res.stderr
    model.unlink()
    for f in (ws / "models" / "mine").iterdir():
        if f.suffix in (".pdmodel", ".json"):
            f.unlink()
    (ws / "c.yaml").write_text((ws / "c.yaml").read_text().replace("mobilenet_v1", "mine"))
    one_line_error(lab("--devices", ws / "devices.yaml", "--store", ws / "s.sqlite", "run", ws / "c.yaml",
                       "--models-root", ws / "models"), "mine")


def test_usage_error_is_exit_2():
    res = lab("run")
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_disabled_device(ws):
    (ws / "devices.yaml").write_text("devices:\n  - id: local\n    chip: generic-x86-cpu\n    transport: local\n"
                                     "    enabled: false\n")
    one_line_error(lab("--devices", ws / "devices.yaml", "run", ws / "c.yaml"), "disabled", "enabled: true")
