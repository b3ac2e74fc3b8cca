"""Device inventory (devices.yaml) → validated `Device` records.

Why strict: a typo in an inventory otherwise surfaces minutes later as an SSH error on the wrong
host. Unknown keys, wrong types, duplicate ids, unknown chips and missing fields are refused up
front with the file, the line and the fix.
"""
from __future__ import annotations

import sys

import re
from pathlib import Path

from lab.core.errors import ConfigError
from lab.core.records import Device
from lab.core.yamlio import LineDict, LineList, expect_keys, expect_type, load_yaml

COMMON_KEYS = {"id", "chip", "transport", "enabled", "tags", "workdir", "python", "power_meter_csv",
               "description", "identity", "identity_reason"}
TRANSPORT_KEYS = {
    "local": set(),
    "ssh": {"host", "port", "user", "key_file", "key_passphrase_env", "known_hosts",
            "host_key_policy", "benchmark_bin", "nnadapter_libs", "abi", "power_mode"},
    "adb": {"serial", "adb_server", "abi", "benchmark_bin", "nnadapter_libs", "power_mode"},
}
REQUIRED = {"local": set(), "ssh": {"host", "user"}, "adb": {"serial"}}
SECRET_KEYS = {"password", "passphrase", "key_passphrase", "secret", "token"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
POLICIES = ("strict", "accept-new", "insecure")
POWER_MODES = ("big", "little", "all", "no-bind")


def load_devices(path: str | Path = "devices.yaml", *, chip_ids: set[str] | None = None) -> list[Device]:
    """Read and validate an inventory. `chip_ids` defaults to the built-in catalog's ids."""
    path = str(path)
    doc = load_yaml(path, what="device inventory")
    if isinstance(doc, LineDict) and "devices" in doc:
        expect_keys(doc, path=path, what="inventory", required={"devices"}, allowed={"devices"})
        doc = doc["devices"]
    if not isinstance(doc, LineList):
        raise ConfigError("expected a list of devices (or a 'devices:' key holding one)", path=path,
                          line=getattr(doc, "line", 1), fix="see the example devices.yaml in the repo")
    if chip_ids is None:
        chip_ids = _catalog_chip_ids()
    devices: list[Device] = []
    seen: dict[str, int] = {}
    for entry, line in zip(doc, doc.item_lines):
        if not isinstance(entry, LineDict):
            raise ConfigError("each device must be a mapping of keys", path=path, line=line,
                              fix="start the entry with '- id: NAME'")
        devices.append(_device(entry, path, chip_ids))
        dev = devices[-1]
        if dev.id in seen:
            raise ConfigError(f"duplicate device id {dev.id!r}", path=path, line=entry.line_of("id"),
                              fix=f"first used on line {seen[dev.id]}; ids must be unique")
        seen[dev.id] = entry.line_of("id")
    return devices


def _device(entry: LineDict, path: str, chip_ids: set[str]) -> Device:
    for key in entry:
        if str(key).lower() in SECRET_KEYS:
            raise ConfigError(f"secret key {key!r} is not allowed in the inventory", path=path,
                              line=entry.line_of(key),
                              fix="use key_file (an SSH key) or key_passphrase_env (an environment "
                                  "variable name)")
    transport = entry.get("transport", "local" if entry.get("id") == "local" else None)
    if transport is None:
        raise ConfigError("device: missing required key 'transport'", path=path, line=entry.line,
                          fix="add 'transport: local|ssh|adb'")
    if not isinstance(transport, str) or transport not in TRANSPORT_KEYS:
        raise ConfigError(f"unknown transport {transport!r}", path=path, line=entry.line_of("transport"),
                          fix="use local, ssh or adb")
    where = f"device {entry.get('id', '?')!r}"
    expect_keys(entry, path=path, what=where, required={"id", "chip"} | REQUIRED[transport],
                allowed=COMMON_KEYS | TRANSPORT_KEYS[transport])

    def get(key, types, hint, default=None):
        if key not in entry or entry[key] is None and default is not None:
            return default
        return expect_type(entry[key], types, path=path, line=entry.line_of(key),
                           what=f"{where}: '{key}'", hint=hint)

    dev_id = get("id", str, "a string")
    if not ID_RE.match(dev_id):
        raise ConfigError(f"device id {dev_id!r} is not a valid name", path=path, line=entry.line_of("id"),
                          fix="use letters, digits, '.', '_' or '-' (max 64)")
    chip = get("chip", str, "a chip id string")
    if chip not in chip_ids:
        import difflib
        close = difflib.get_close_matches(chip, sorted(chip_ids), n=1)
        raise ConfigError(f"{where}: unknown chip {chip!r}", path=path, line=entry.line_of("chip"),
                          fix=(f"did you mean {close[0]!r}? " if close else "") + "see `lab chips`")
    policy = get("host_key_policy", str, "strict, accept-new or insecure", "strict")
    if policy not in POLICIES:
        raise ConfigError(f"{where}: host_key_policy {policy!r} is not valid", path=path,
                          line=entry.line_of("host_key_policy"), fix="use strict, accept-new or insecure")
    power_mode = get("power_mode", str, "big, little, all or no-bind")
    if power_mode is not None and power_mode not in POWER_MODES:
        raise ConfigError(f"{where}: power_mode {power_mode!r} is not valid", path=path,
                          line=entry.line_of("power_mode"), fix="use big, little, all or no-bind")
    port = get("port", int, "an integer port")
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} out of range", path=path, line=entry.line_of("port"),
                          fix="use 1-65535")
    tags = get("tags", list, "a list of strings", [])
    for tag in tags:
        expect_type(tag, str, path=path, line=entry.line_of("tags"), what=f"{where}: tag", hint="a string")
    libs = get("nnadapter_libs", dict, "a mapping of NNAdapter device name to a directory", {})
    identity_skip = _identity_skip(entry, path, where, get)
    return Device(
        id=dev_id, chip=chip, transport=transport,
        enabled=get("enabled", bool, "true or false", True),
        host=get("host", str, "a host name or address"), port=port,
        user=get("user", str, "a user name"), key_file=get("key_file", str, "a path"),
        key_passphrase_env=get("key_passphrase_env", str, "an environment variable name"),
        known_hosts=get("known_hosts", str, "a path"), host_key_policy=policy,
        workdir=get("workdir", str, "a path on the device"),
        python=get("python", str, "an interpreter path on the device", "python3"),
        tags=tuple(tags), serial=get("serial", str, "'host:port' or a USB serial"),
        adb_server=get("adb_server", str, "'host:port' of an adb server"),
        abi=get("abi", str, "an ABI name such as arm64-v8a"),
        benchmark_bin=get("benchmark_bin", str, "a host path to benchmark_bin"),
        nnadapter_libs={str(k): str(v) for k, v in libs.items()}, power_mode=power_mode,
        power_meter_csv=get("power_meter_csv", str, "a CSV path"), identity_skip=identity_skip,
        source=path, line=entry.line,
    )


def _identity_skip(entry: LineDict, path: str, where: str, get) -> str | None:
    """`identity: skip` needs `identity_reason:` (recorded on every row); `identity: check` is the default."""
    mode = get("identity", str, "'skip' (with identity_reason) or 'check'", "check")
    reason = get("identity_reason", str, "a sentence saying why the identity check does not apply")
    if mode not in ("check", "skip"):
        raise ConfigError(f"{where}: identity {mode!r} is not valid", path=path, line=entry.line_of("identity"),
                          fix="use 'identity: skip' with 'identity_reason: ...', or leave it out")
    if mode == "skip" and not (reason or "").strip():
        raise ConfigError(f"{where}: 'identity: skip' needs a reason", path=path, line=entry.line_of("identity"),
                          fix="add 'identity_reason: <why this device is the chip it names>' (it is recorded "
                              "on every row)")
    if mode == "check" and reason is not None:
        raise ConfigError(f"{where}: identity_reason without 'identity: skip'", path=path,
                          line=entry.line_of("identity_reason"), fix="add 'identity: skip' or drop the reason")
    return " ".join(reason.split()) if mode == "skip" else None


def _catalog_chip_ids() -> set[str]:
    try:
        from lab.devices.catalog import load_catalog
    except ImportError:  # catalog module not present: cannot check chip ids
        return _AnyChip()
    return set(load_catalog().ids())


class _AnyChip(set):
    def __contains__(self, item):  # pragma: no cover - only before the catalog exists
        return True


def find_device(devices: list[Device], device_id: str, *, where: str = "") -> Device:
    for dev in devices:
        if dev.id == device_id:
            return dev
    import difflib
    close = difflib.get_close_matches(device_id, [d.id for d in devices], n=1)
    raise ConfigError(f"{where}unknown device {device_id!r}",
                      fix=(f"did you mean {close[0]!r}? " if close else "") +
                      "devices: " + ", ".join(d.id for d in devices))


def device_python(device: Device) -> str:
    """The interpreter that runs Python runners on the device (the lab's own one for `local`)."""
    if device.transport == "local" and device.python in ("python3", "python", "", None):
        return sys.executable
    return device.python
