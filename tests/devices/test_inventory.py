"""devices.yaml validation: every mistake is one line naming file, line and fix."""
from __future__ import annotations

import textwrap

import pytest

from lab.core.errors import ConfigError
from lab.devices.inventory import find_device, load_devices

CHIPS = {"generic-x86-cpu", "rk1808", "kirin990", "nvidia-t4"}


def write(tmp_path, text):
    p = tmp_path / "devices.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def err(tmp_path, text) -> str:
    with pytest.raises(ConfigError) as exc:
        load_devices(write(tmp_path, text), chip_ids=CHIPS)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_repo_inventory_loads_with_builtin_catalog():
    devices = load_devices("devices.yaml")
    ids = [d.id for d in devices]
    assert ids[0] == "local" and devices[0].enabled
    assert {"ssh", "adb", "local"} <= {d.transport for d in devices}
    assert all(not d.enabled for d in devices[1:])
    assert {d.chip for d in devices} >= {"kirin990", "rk1808", "rv1109"}


def test_valid_ssh_and_adb_entries(tmp_path):
    devs = load_devices(write(tmp_path, """
        devices:
          - id: local
            chip: generic-x86-cpu
          - id: board-1
            chip: rk1808
            transport: ssh
            host: 10.0.0.2
            user: root
            port: 2222
            tags: [board]
          - id: phone
            chip: kirin990
            transport: adb
            serial: 127.0.0.1:5555
            nnadapter_libs: {huawei_kirin_npu: /x}
        """), chip_ids=CHIPS)
    assert [d.transport for d in devs] == ["local", "ssh", "adb"]
    assert devs[1].port == 2222 and devs[1].host_key_policy == "strict" and devs[1].tags == ("board",)
    assert devs[2].nnadapter_libs == {"huawei_kirin_npu": "/x"}
    assert devs[1].line == 5


def ssh_entry(*extra: str, id: str = "b") -> str:
    """One ssh device entry after an empty first line, as the inline files here start: its lines
    are 2..6 and `extra` keys follow from line 7."""
    return "\n".join(["", f"- id: {id}", "  chip: rk1808", "  transport: ssh", "  host: h", "  user: u",
                      *(f"  {x}" for x in extra)]) + "\n"


LOCAL_A = "- id: a\n  chip: rk1808\n  transport: local\n"


def test_unknown_key_names_line_and_suggests(tmp_path):
    msg = err(tmp_path, ssh_entry("hostt: typo"))
    assert "devices.yaml:7" in msg and "'hostt'" in msg and "did you mean 'host'" in msg


def test_wrong_type(tmp_path):
    msg = err(tmp_path, ssh_entry('port: "twenty-two"'))
    assert ":7:" in msg and "port" in msg and "integer" in msg


def test_duplicate_id(tmp_path):
    msg = err(tmp_path, "\n" + LOCAL_A + LOCAL_A)
    assert "duplicate device id 'a'" in msg and ":5:" in msg and "line 2" in msg


def test_unknown_chip(tmp_path):
    msg = err(tmp_path, "\n" + LOCAL_A.replace("rk1808", "rk1809"))
    assert "unknown chip 'rk1809'" in msg and "did you mean 'rk1808'" in msg and ":3:" in msg


def test_missing_field(tmp_path):
    msg = err(tmp_path, "\n- id: a\n  chip: rk1808\n  transport: ssh\n  host: h\n")
    assert "missing required key 'user'" in msg


def test_secret_refused(tmp_path):
    msg = err(tmp_path, ssh_entry("password: hunter2", id="a"))
    assert "secret" in msg and "key_file" in msg and "hunter2" not in msg


def test_bad_yaml_and_duplicate_key(tmp_path):
    assert "not valid YAML" in err(tmp_path, "- id: [a\n")
    assert "duplicate key 'chip'" in err(tmp_path, "- id: a\n  chip: rk1808\n  chip: rk1808\n")


def test_bad_policy_and_missing_file(tmp_path):
    msg = err(tmp_path, ssh_entry("host_key_policy: trust-me", id="a"))
    assert "host_key_policy" in msg and "accept-new" in msg
    with pytest.raises(ConfigError, match="not found"):
        load_devices(tmp_path / "nope.yaml", chip_ids=CHIPS)


def test_find_device_suggests():
    devs = load_devices("devices.yaml")
    with pytest.raises(ConfigError, match="did you mean 'local'"):
        find_device(devs, "locl")
