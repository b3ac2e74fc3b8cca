"""Ray engine pieces that need no cluster: resource names, error records, the node task body,
the model cache, the missing-Ray message and `lab node start` command lines."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lab import cli
from lab.core import errors
from lab.core.errors import ConfigError, DeviceError
from lab.core.records import Device, Job
from lab.measure import ray_engine as re_
from lab.measure.ray_engine import SyntheticExecutor, device_resource, node_resources
from lab.measure.ray_node import RemoteError, materialize_models, run_on_node


def _job(i=0, device="dev-a"):
    return Job(job_id=f"job{i:04d}", campaign="c", device=device, chip="generic-x86-cpu", model="m",
               model_sha256="0" * 64, backend="paddle-inference-cpu", processor="cpu", precision="fp32",
               threads=1)


def _local(tmp_path, dev_id="dev-a", **kw):
    return Device(id=dev_id, chip="generic-x86-cpu", transport="local", workdir=str(tmp_path / dev_id), **kw)


# -- resource names -----------------------------------------------------------------------------
def test_device_resource_keeps_inventory_ids_and_separates_sanitised_ones():
    assert device_resource("local") == "hwlab-dev:local"
    assert device_resource("rk1808-stick.2_b") == "hwlab-dev:rk1808-stick.2_b"
    a, b = device_resource("a/b"), device_resource("a b")
    assert a.startswith("hwlab-dev:a_b-") and b.startswith("hwlab-dev:a_b-") and a != b
    assert a != device_resource("a_b")


def test_node_resources_only_enabled_devices_and_only_filter(tmp_path):
    devs = [_local(tmp_path, "x"), _local(tmp_path, "y", enabled=False), _local(tmp_path, "z")]
    assert node_resources(devs) == {"hwlab-dev:x": 1.0, "hwlab-dev:z": 1.0}
    assert node_resources(devs, only=["z", "y"]) == {"hwlab-dev:z": 1.0}


# -- errors travel as data ----------------------------------------------------------------------
@pytest.mark.parametrize("exc, family, transient", [
    (errors.DeviceTimeout("d", "took too long"), DeviceError, True),
    (errors.HostKeyMismatch("d", "key changed"), DeviceError, False),
    (errors.CommandFailed("d", "exit 3", rc=3, transient=True), DeviceError, True),
    (errors.RunnerError("runner printed garbage"), errors.LabError, False),
    (ValueError("a bug"), Exception, False),
])
def test_remote_error_rebuilds_class_text_and_transience(exc, family, transient):
    rec = RemoteError.of(exc)
    back = rec.rebuild("dev-a")
    assert type(back).__name__ == type(exc).__name__ and isinstance(back, family)
    assert str(back) == str(exc)
    if isinstance(back, DeviceError):
        assert back.transient is transient and back.device == "dev-a"
    else:
        assert not isinstance(back, DeviceError)
    assert type(exc).__name__ in rec.trace  # the node's traceback text travels with the record


def test_unknown_device_error_class_keeps_family():
    rec = RemoteError("AdbSpecialError", "device 'p': gone", "device", True)
    back = rec.rebuild("p")
    assert isinstance(back, DeviceError) and back.transient and type(back).__name__ == "AdbSpecialError"


# -- the node task body, run in-process -----------------------------------------------------------
def test_run_on_node_returns_measurement_with_provenance(tmp_path):
    out = run_on_node(_job(), _local(tmp_path), [], "", SyntheticExecutor(0.01))
    assert out.error is None and out.measurement.source == "synthetic"
    assert out.measurement.p50_ms >= 10 and out.measurement.provenance["ray"]["pid"] == os.getpid()
    assert (tmp_path / "dev-a").is_dir()  # the transport was really opened on "the node"


def test_run_on_node_turns_exceptions_into_records(tmp_path):
    def boom(job, device, transport, root):
        raise errors.DeviceUnreachable(device.id, "no route to host")
    out = run_on_node(_job(), _local(tmp_path), [], "", boom)
    assert out.measurement is None and out.error.kind == "device" and out.error.transient
    assert "no route to host" in out.error.message

    def bug(job, device, transport, root):
        return {}["missing"]
    out = run_on_node(_job(), _local(tmp_path), [], "", bug)
    assert out.error.kind == "internal" and out.error.cls_name == "KeyError"


def test_run_on_node_default_executor_reports_missing_model_as_lab_error(tmp_path):
    out = run_on_node(_job(), _local(tmp_path), [], str(tmp_path / "models"), None)
    assert out.error.kind == "lab" and out.error.cls_name == "ConfigError" and "not built" in out.error.message


# -- model cache --------------------------------------------------------------------------------
def test_materialize_models_is_content_addressed_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HWLAB_RAY_CACHE", str(tmp_path / "cache"))
    bundle = {"model": "m", "sha256": "ab" * 32,
              "files": {"meta.json": b'{"x": 1}', "sub/model.json": b"{}", "model.pdiparams": b"\x00\x01"}}
    root = Path(materialize_models(("m", "ab" * 32, bundle)))
    assert root == tmp_path / "cache" / f"m-{'ab' * 8}"
    assert (root / "m" / "sub" / "model.json").read_bytes() == b"{}"
    assert (root / "m" / "model.pdiparams").read_bytes() == b"\x00\x01"
    stamp = (root / "m" / "meta.json").stat().st_mtime_ns
    # a second task finds it and does not touch it, even with a bundle it cannot read
    assert materialize_models(("m", "ab" * 32, {"files": None})) == str(root)
    assert (root / "m" / "meta.json").stat().st_mtime_ns == stamp
    # another version of the same model goes elsewhere; no temp dirs are left behind
    other = materialize_models(("m", "cd" * 32, dict(bundle, sha256="cd" * 32)))
    assert other != str(root)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


# -- Ray absent ---------------------------------------------------------------------------------
def test_missing_ray_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"Ray is not installed: pip install '\.\[ray\]'"):
        re_.import_ray()
    from lab.results.store import Store
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match="Ray is not installed"):
        re_.run_with_ray(store, [_local(tmp_path)], [_job()], address="auto")
    store.close()


def test_unreachable_address_fails_fast():
    with pytest.raises(ConfigError, match="no Ray cluster at '127.0.0.1:1'"):
        re_.connect("127.0.0.1:1")
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        re_.connect("nonsense")


# -- lab node start (command line only; the cluster tests start real nodes) -----------------------
def _inventory(tmp_path):
    p = tmp_path / "devices.yaml"
    p.write_text(
        "devices:\n"
        "  - id: local\n    chip: generic-x86-cpu\n    transport: local\n"
        "  - id: board-1\n    chip: generic-x86-cpu\n    transport: local\n    enabled: false\n"
        "  - id: box2\n    chip: generic-x86-cpu\n    transport: local\n")
    return p


def test_node_start_dry_run_head_and_join(tmp_path, capsys):
    inv = _inventory(tmp_path)
    assert cli.main(["node", "start", "--devices", str(inv), "--dry-run", "--port", "6390"]) == 0
    out = capsys.readouterr().out.strip()
    assert "start --head --port 6390" in out and "--include-dashboard=false" in out
    res = json.loads(out.split("--resources ")[1].split(" --")[0].strip("'"))
    assert res == {"hwlab-dev:local": 1.0, "hwlab-dev:box2": 1.0}
    assert cli.main(["--devices", str(inv), "node", "start", "--address", "10.0.0.5:6379", "--only", "box2",
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--address 10.0.0.5:6379" in out and "--head" not in out and "hwlab-dev:local" not in out


def test_node_start_bad_input_exits_2(tmp_path, capsys):
    inv = _inventory(tmp_path)
    assert cli.main(["node", "start", "--devices", str(inv), "--only", "nope", "--dry-run"]) == 2
    assert "no such device" in capsys.readouterr().err
    assert cli.main(["node", "start", "--devices", str(inv), "--only", "board-1", "--dry-run"]) == 2
    assert "disabled" in capsys.readouterr().err
    assert cli.main(["node", "start", "--devices", str(tmp_path / "none.yaml"), "--dry-run"]) == 2


def test_node_env_makes_checkout_importable(monkeypatch):
    from lab.commands.node import REPO_ROOT, node_env
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = node_env()
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(REPO_ROOT), "/elsewhere"]
    assert (REPO_ROOT / "lab" / "measure" / "ray_engine.py").is_file()
