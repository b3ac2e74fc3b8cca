"""Device probe (`lab devices --check`): what a device is and what it lacks, before any campaign.

Why one POSIX sh script through `transport.run`: the same probe works over local, SSH and any
Linux board (dash, busybox ash), costs one round trip, and needs nothing installed on the device.
Android devices are probed by `lab.devices.probe_android.probe_android(transport, timeout=...)` (getprop),
imported lazily so this module does not depend on it. Figures the device does not expose stay
None ("unknown"), never 0.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from lab.devices import identity as ident
from lab.devices.inventory import device_python
from lab.devices.portability import no_wheel_reason, probed_readiness
from lab.core.errors import DeviceError, LabError, excerpt

PROBE_TIMEOUT_S = 60.0
PY_MARK = "HWLAB_PY="

# What identity (lab/devices/identity.py) compares, as `key=value` lines: $1 the interpreter the
# runners use (its ELF header; /bin/sh where it is missing), $3 the device nodes the catalog claims.
# POSIX sh, busybox/toybox safe; also the first part of PROBE_SCRIPT (one round trip for both).
IDENTITY_SCRIPT = r'''
echo "kernel=$(uname -r 2>/dev/null)"
echo "arch=$(uname -m 2>/dev/null)"
sh_path=$(readlink -f /bin/sh 2>/dev/null); echo "shell=${sh_path:-/bin/sh}"
case "$sh_path" in *busybox*) echo "busybox=$(busybox 2>&1 | head -n 1 | cut -d ' ' -f 1-2)" ;; esac
if [ -r /proc/cpuinfo ]; then
  grep -E '^(processor|vendor_id|model name|Processor|CPU implementer|CPU part|Hardware|isa|uarch)[[:space:]]*:' /proc/cpuinfo | sed 's/^/cpuinfo=/'
  grep -m1 -E '^flags[[:space:]]*:' /proc/cpuinfo | sed 's/^/cpuinfo=/'
fi
[ -r /sys/devices/system/cpu/present ] && echo "cpu_present=$(cat /sys/devices/system/cpu/present 2>/dev/null)"
[ -r /proc/meminfo ] && echo "mem_total_kb=$(grep -m1 '^MemTotal:' /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
b=$(command -v "$1" 2>/dev/null); [ -n "$b" ] && [ -r "$b" ] || b=/bin/sh
echo "elf=$b|$(od -An -tx1 -N20 "$b" 2>/dev/null | tr -s ' \n' '  ')"
command -v systemd-detect-virt >/dev/null 2>&1 && echo "virt=$(systemd-detect-virt 2>/dev/null)"
for n in $3; do echo "node_checked=$n"; [ -e "$n" ] && echo "node=$n"; done
'''

# Facts as `key=value` lines; lists as repeated keys. POSIX sh, busybox/toybox safe.
PROBE_SCRIPT = r'''
PY=$1; PYCODE=$2
echo "os_name=$(uname -s 2>/dev/null)"
''' + IDENTITY_SCRIPT + r'''
if [ -r /etc/os-release ]; then ( . /etc/os-release 2>/dev/null; echo "os_pretty=${PRETTY_NAME:-}" ); fi
if [ -r /proc/cpuinfo ]; then
  m=$(grep -m1 -i -E '^(model name|hardware|cpu model|processor[[:space:]]*:[[:space:]]*[a-z])' /proc/cpuinfo | cut -d: -f2-)
  echo "cpu_model=$m"
  echo "cores_cpuinfo=$(grep -c '^processor' /proc/cpuinfo)"
fi
echo "cores_online=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do
  [ -r "$f" ] && echo "max_freq_khz=$(cat "$f" 2>/dev/null)"
done
for z in /sys/class/thermal/thermal_zone*; do
  [ -d "$z" ] || continue
  echo "thermal=${z##*/}|$(cat "$z/type" 2>/dev/null)|$(cat "$z/temp" 2>/dev/null)"
done
for p in /sys/class/power_supply/*; do
  [ -d "$p" ] || continue
  f=""; for k in power_now current_now voltage_now energy_now; do [ -r "$p/$k" ] && f="$f $k"; done
  echo "power=power_supply|${p##*/}|$(cat "$p/type" 2>/dev/null)|$f"
done
for h in /sys/class/hwmon/hwmon*; do
  [ -r "$h/name" ] || continue
  n=$(cat "$h/name" 2>/dev/null)
  if ls "$h"/power*_input "$h"/curr*_input >/dev/null 2>&1; then echo "power=hwmon|${h##*/}|$n|"; fi
done
for r in /sys/class/powercap/intel-rapl:*; do
  [ -d "$r" ] || continue
  if [ -r "$r/energy_uj" ] && cat "$r/energy_uj" >/dev/null 2>&1; then ok=readable; else ok=unreadable; fi
  echo "power=rapl|${r##*/}|$(cat "$r/name" 2>/dev/null)|$ok"
done
command -v nvidia-smi >/dev/null 2>&1 && echo "power=nvml|nvidia-smi|gpu|"
if command -v "$PY" >/dev/null 2>&1 || [ -x "$PY" ]; then
  "$PY" -c "$PYCODE" 2>/dev/null || echo "python_failed=$?"
else
  echo "python_missing=1"
fi
'''

# Runs under the device's interpreter (Python 3.7+): versions of the runtimes the runners need.
PY_CODE = r'''
import json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable}
def ver(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:
        return None
for mod, key, dists in (("numpy", "numpy", ("numpy",)), ("paddle", "paddle", ("paddlepaddle", "paddlepaddle-gpu")),
                        ("paddlelite.lite", "paddlelite", ("paddlelite",)), ("onnxruntime", "onnxruntime", ("onnxruntime",))):
    # an import that kills the interpreter (a native crash) leaves the facts found so far and the culprit
    out[key], out[key + "_error"] = None, "the interpreter crashed importing %s" % mod
    print("HWLAB_PY=" + json.dumps(out), flush=True)
    del out[key + "_error"]
    try:
        m = __import__(mod, fromlist=["_"])
        v = getattr(m, "__version__", None)
        for d in dists:
            v = v or ver(d)
        out[key] = str(v or "installed")
        if key == "paddle":
            try:
                out["paddle_cuda"] = bool(m.device.is_compiled_with_cuda())
            except Exception:
                out["paddle_cuda"] = None
    except Exception as exc:
        out[key] = None
        out[key + "_error"] = "%s: %s" % (type(exc).__name__, str(exc)[:160])
print("HWLAB_PY=" + json.dumps(out))
'''


@dataclass
class ProbeReport:
    """What `lab devices --check` reports for one device. None = unknown (never 0)."""

    device: str
    transport: str
    reachable: bool = False
    error: str | None = None
    os: str | None = None
    kernel: str | None = None
    arch: str | None = None
    cpu_model: str | None = None
    cores: int | None = None
    max_freq_mhz: float | None = None
    mem_total_mb: float | None = None
    python: str | None = None
    paddle: str | None = None
    paddlelite: str | None = None
    onnxruntime: str | None = None
    # the userland the lab's shell scripts meet (busybox sh on Buildroot boards), the SSH server and
    # how files travel (SFTP or the exec channel), and which runtimes can run there (devices.portability)
    userland: str | None = None
    ssh_server: str | None = None
    files: str | None = None
    backends: list[str] = field(default_factory=list)
    thermal_zones: list[dict[str, Any]] = field(default_factory=list)
    power_sources: list[dict[str, Any]] = field(default_factory=list)
    runtimes_missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float | None = None
    identity: ident.Identity | None = None  # the chip the inventory names against what was found

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.identity is not None:
            d["identity"]["note"] = self.identity.note  # the text rows store as identity_note
        return d

    def to_text(self) -> str:
        def show(v, unit=""):
            return "n/a" if v is None else f"{v:g}{unit}" if isinstance(v, float) else f"{v}{unit}"
        if not self.reachable:
            return f"{self.device} [{self.transport}] UNREACHABLE: {self.error}"
        lines = [f"{self.device} [{self.transport}] reachable ({show(self.elapsed_s, ' s')})",
                 f"  os: {show(self.os)}  kernel: {show(self.kernel)}  arch: {show(self.arch)}",
                 f"  cpu: {show(self.cpu_model)}  cores: {show(self.cores)}  max freq: "
                 f"{show(self.max_freq_mhz, ' MHz')}  memory: {show(self.mem_total_mb, ' MB')}",
                 f"  python: {show(self.python)}  paddle: {show(self.paddle)}  paddlelite: {show(self.paddlelite)}"]
        if self.identity is not None:
            lines.extend("  " + line for line in self.identity.lines())
        temps = ", ".join(f"{z['type'] or z['zone']}"
                          f"{'' if z.get('temp_c') is None else ' %.1f C' % z['temp_c']}"
                          for z in self.thermal_zones) or "none found"
        lines.append(f"  thermal zones: {temps}")
        power = ", ".join(f"{p['kind']}:{p['name']}" + (f" {p['type']}" if p.get("type") else "")
                          + (f" ({p['note']})" if p.get("note") else "")
                          for p in self.power_sources) or "none found (power will be reported unavailable)"
        lines.append(f"  power sources: {power}")
        if self.userland or self.ssh_server or self.files:
            lines.append(f"  userland: {show(self.userland)}  ssh server: {show(self.ssh_server)}  "
                         f"files: {show(self.files)}")
        lines.extend(f"  backend {b}" for b in self.backends)
        for miss in self.runtimes_missing:
            lines.append(f"  MISSING: {miss}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


def parse_probe_output(device, text: str) -> ProbeReport:
    """Turn the probe script's key=value lines (+ the Python JSON line) into a ProbeReport."""
    rep = ProbeReport(device=device.id, transport=device.transport, reachable=True)
    facts = _key_values(text)
    py: dict[str, Any] | None = None
    for line in facts.pop(PY_MARK[:-1], []):
        try:
            py = json.loads(line)
        except json.JSONDecodeError:
            rep.notes.append(f"unreadable Python probe output: {excerpt(line, 120)}")
    rep.identity = identity_from_facts(device, facts)

    def one(key):
        v = facts.get(key, [""])[0]
        return v or None

    rep.os = one("os_pretty") or one("os_name")
    if one("os_pretty") and one("os_name"):
        rep.os = f"{one('os_name')} ({one('os_pretty')})"
    rep.kernel, rep.arch, rep.cpu_model = one("kernel"), one("arch"), one("cpu_model")
    rep.userland = f"busybox sh ({one('busybox')})" if one("busybox") else one("shell")
    for key in ("cores_online", "cores_cpuinfo"):
        if (one(key) or "").isdigit() and int(one(key)) > 0:
            rep.cores = int(one(key))
            break
    freqs = [int(v) for v in facts.get("max_freq_khz", []) if v.isdigit() and int(v) > 0]
    rep.max_freq_mhz = max(freqs) / 1000.0 if freqs else None
    if not freqs:
        rep.notes.append("no cpufreq max frequency exposed (cpuinfo_max_freq missing)")
    mem = one("mem_total_kb")
    rep.mem_total_mb = round(int(mem) / 1024.0, 1) if mem and mem.isdigit() else None
    for value in facts.get("thermal", []):
        zone, ztype, temp = (value.split("|") + ["", "", ""])[:3]
        try:
            temp_c = int(temp) / 1000.0 if abs(int(temp)) > 200 else float(int(temp))
        except ValueError:
            temp_c = None
        rep.thermal_zones.append({"zone": zone, "type": ztype or None, "temp_c": temp_c})
    for value in facts.get("power", []):
        kind, name, what, note = (value.split("|") + ["", "", "", ""])[:4]
        entry = {"kind": kind, "name": name, "type": what or None, "note": note.strip() or None}
        if kind == "power_supply" and not entry["note"]:
            entry["note"] = "no power/current/voltage readings"
        rep.power_sources.append(entry)
    python_name = device.python
    if "python_missing" in facts:
        rep.runtimes_missing.append(f"python: {python_name!r} not found on the device (" +
                                    (no_wheel_reason(rep.arch) or "install Python 3.7+ or set 'python:' "
                                     "in devices.yaml to the interpreter path") + ")")
    elif py is None:
        rep.runtimes_missing.append(f"python: {python_name!r} failed to run the probe "
                                    f"(exit {one('python_failed') or '?'})")
    else:
        rep.python = f"{py.get('python')} ({py.get('executable')})"
        rep.paddle, rep.paddlelite, rep.onnxruntime = py.get("paddle"), py.get("paddlelite"), py.get("onnxruntime")
        rep.runtimes_missing.extend(_missing_runtimes(device, py, python_name))
    rep.runtimes_missing.extend(_missing_host_side(device))
    _device_runtimes(rep, py or {}, device, one("python_failed"))
    return rep


def _device_runtimes(rep: ProbeReport, py: dict[str, Any], device, python_exit: str | None) -> None:
    """Which backends can run (lab.devices.portability), the version skew with the host's paddle, and
    an interpreter that died mid-probe (a native crash importing a runtime)."""
    if rep.paddle and rep.paddle not in ("installed", _host_paddle_version()):
        rep.notes.append(f"paddle {rep.paddle} here, {_host_paddle_version()} on the lab host that exports "
                         "the models: rows record the device's version (lab results compare shows it)")
    crashed = [k for k in ("numpy", "paddle", "paddlelite", "onnxruntime") if "crashed" in (py.get(k + "_error") or "")]
    if python_exit and crashed:
        rep.notes.append(f"the device's Python exited {python_exit} importing {crashed[0]} "
                         f"({'a segmentation fault' if python_exit in ('139', '-11') else 'a native crash'})")
    if device.transport == "local":
        return  # this host: `lab devices --check local` lists its deployment paths (lab.devices.readiness)
    keys = {"paddlepaddle": "paddle", "onnxruntime": "onnxruntime", "paddlelite": "paddlelite"}
    modules = {wheel: py.get(k) for wheel, k in keys.items()}
    errors = {wheel: py.get(k + "_error") for wheel, k in keys.items() if py.get(k + "_error")}
    rep.backends = [r.to_text() for r in probed_readiness(rep.arch, py.get("python"), modules,
                                                          device.benchmark_bin, errors)]


def _key_values(text: str) -> dict[str, list[str]]:
    """The probe scripts' `key=value` lines; a key may repeat (a list)."""
    facts: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if "=" in line:
            key, value = line.split("=", 1)
            facts.setdefault(key, []).append(value.strip())
    return facts


def _claim(device) -> ident.Claim | None:
    from lab.devices.catalog import load_catalog
    chip = load_catalog().chips.get(device.chip)
    return ident.claim_of(chip) if chip is not None else None


def raw_facts(facts: dict[str, list[str]]) -> ident.RawFacts:
    """IDENTITY_SCRIPT's lines -> the typed facts identity compares."""
    def one(key):
        return (facts.get(key) or [None])[0] or None
    elf_path, _, elf_hex = (one("elf") or "").partition("|")
    mem = one("mem_total_kb")
    return ident.RawFacts(uname_m=one("arch"), kernel=one("kernel"), cpuinfo="\n".join(facts.get("cpuinfo", [])),
                          cpu_present=one("cpu_present"), mem_total_kb=int(mem) if mem and mem.isdigit() else None,
                          elf_header=elf_hex.strip() or None, elf_path=elf_path or None, virt=one("virt"),
                          nodes_checked=tuple(facts.get("node_checked", [])), nodes_present=tuple(facts.get("node", [])))


def identity_from_facts(device, facts: dict[str, list[str]]) -> ident.Identity:
    """The device's verdict from the probe's lines: `identity: skip` wins, an unknown chip is not checked."""
    if getattr(device, "identity_skip", None):
        return ident.skipped(device.identity_skip)
    claim = _claim(device)
    if claim is None:
        return ident.not_checked(f"chip {device.chip!r} is not in the catalog")
    if "arch" not in facts:
        return ident.not_checked("the probe printed no facts")
    return ident.compare(claim, raw_facts(facts))


def check_identity(device, transport, *, timeout: float = PROBE_TIMEOUT_S) -> ident.Identity:
    """The identity verdict alone, in one round trip (IDENTITY_SCRIPT; no Python import on the device):
    what a campaign asks once per device. Never raises: a failed probe is `not checked` with the reason."""
    if getattr(device, "identity_skip", None):
        return ident.skipped(device.identity_skip)
    try:
        claim = _claim(device)
        nodes = " ".join(claim.nodes) if claim is not None else ""
        res = transport.run(["sh", "-c", IDENTITY_SCRIPT, "hwlab-identity", device_python(device), "", nodes],
                            timeout=timeout)
        return identity_from_facts(device, _key_values(res.out))
    except Exception as exc:  # noqa: BLE001 - the job's own run reports the device's failure
        return ident.not_checked(f"probe failed: {type(exc).__name__}: {excerpt(str(exc), 160)}")


def _host_paddle_version() -> str:
    try:
        from lab.core.versions import paddle_version
        return paddle_version() or "3.3.1"
    except Exception:  # noqa: BLE001 - only used in an install hint
        return "3.3.1"


def _missing_runtimes(device, py: dict[str, Any], python_name: str) -> list[str]:
    out = []
    want = _host_paddle_version()
    if not py.get("paddle"):
        why = py.get("paddle_error") or "not installed"
        out.append(f"paddle-inference-cpu: paddle cannot be imported ({why}); "
                   f"pip install paddlepaddle=={want} in {python_name}")
    elif _is_nvidia(device) and py.get("paddle_cuda") is False:
        out.append(f"paddle-inference-gpu: the installed paddle {py['paddle']} has no CUDA; "
                   f"pip install paddlepaddle-gpu=={want} in {python_name} (see paddlepaddle.org.cn for the "
                   "wheel matching the device's CUDA)")
    if not py.get("numpy"):
        out.append(f"numpy (needed by the runners): pip install numpy in {python_name}")
    if device.benchmark_bin and not py.get("paddlelite"):
        out.append(f"paddlelite Python API (lite_runner, optional: benchmark_bin is used otherwise): "
                   f"pip install paddlelite in {python_name}")
    return out


def _missing_host_side(device) -> list[str]:
    out = []
    if device.benchmark_bin and not os.path.exists(os.path.expanduser(device.benchmark_bin)):
        out.append(f"paddle-lite backends: benchmark_bin {device.benchmark_bin} does not exist on this host "
                   "(build Paddle Lite's benchmark_bin for the device ABI, see docs/paddle-lite.md)")
    for npu, path in (device.nnadapter_libs or {}).items():
        if not os.path.isdir(os.path.expanduser(path)):
            out.append(f"paddle-lite {npu}: NNAdapter library directory {path} does not exist on this host")
    return out


def _is_nvidia(device) -> bool:
    try:
        from lab.devices.catalog import load_catalog
        return str(getattr(load_catalog().get(device.chip), "vendor", "")).lower() == "nvidia"
    except Exception:  # noqa: BLE001 - unknown chip: no GPU hint
        return False


def probe_transport(device, transport, *, timeout: float = PROBE_TIMEOUT_S) -> ProbeReport:
    """Probe through an open transport (any Transport; adb devices go to probe_android)."""
    start = time.monotonic()
    if device.transport == "adb":
        from lab.devices.probe_android import probe_android  # Android facts (getprop, cpufreq policies, NPU)
        facts = probe_android(transport, timeout=timeout)
        rep = facts if isinstance(facts, ProbeReport) else report_from_android(device, facts)
        rep.device, rep.transport = device.id, "adb"
        rep.identity = check_identity(device, transport, timeout=timeout)
    else:
        python = device_python(device)
        claim = None if getattr(device, "identity_skip", None) else _claim(device)
        res = transport.run(["sh", "-c", PROBE_SCRIPT, "hwlab-probe", python, PY_CODE,
                             " ".join(claim.nodes) if claim is not None else ""], timeout=timeout)
        if res.rc != 0 and "os_name=" not in res.out:
            raise LabError(f"probe script failed on {device.id!r} (exit {res.rc}): {excerpt(res.err or res.out)}")
        rep = parse_probe_output(_WithPython(device, python), res.out)
        rep.ssh_server = getattr(transport, "server_software", None)
        rep.files = transport.file_transfer() if hasattr(transport, "file_transfer") else None
    rep.elapsed_s = round(time.monotonic() - start, 2)
    return rep


def report_from_android(device, facts: dict[str, Any]) -> ProbeReport:
    """Map `lab.devices.probe_android.probe_android` facts onto the common report (phones have no Python:
    Paddle Lite runs there through the user's benchmark_bin, checked on the host side)."""
    rep = ProbeReport(device=device.id, transport="adb", reachable=True)
    if facts.get("android"):
        rep.os = f"Android {facts.get('release') or '?'} (SDK {facts.get('sdk') or '?'})"
    else:
        rep.os = "Linux (no getprop)"
    rep.arch = facts.get("machine") or facts.get("abi")
    parts = [facts.get(k) for k in ("brand", "model") if facts.get(k)]
    soc = facts.get("soc_model") or facts.get("board_platform") or facts.get("hardware")
    rep.cpu_model = " ".join(str(p) for p in parts + ([f"({soc})"] if soc else [])) or None
    rep.cores = facts.get("ncpu")
    freqs = [c.get("max_khz") for c in facts.get("cpu_clusters") or [] if c.get("max_khz")]
    rep.max_freq_mhz = max(freqs) / 1000.0 if freqs else None
    rep.mem_total_mb = facts.get("mem_total_mb")
    rep.thermal_zones = [dict(z) for z in facts.get("thermal_zones") or []]
    if facts.get("battery_node"):
        rep.power_sources.append({"kind": "power_supply", "name": facts["battery_node"].rsplit("/", 1)[-1],
                                  "type": "Battery", "note": "fuel gauge"})
    if facts.get("npu"):
        rep.notes.append("NPU evidence: " + ", ".join(facts["npu"]))
    if facts.get("big_core_mask"):
        rep.notes.append(f"big cores {facts.get('big_cores')} (mask {facts['big_core_mask']})")
    rep.notes.extend(facts.get("notes") or [])
    if not device.benchmark_bin:
        rep.runtimes_missing.append("paddle-lite backends: no benchmark_bin in devices.yaml for this device "
                                    "(build Paddle Lite's benchmark_bin for its ABI, see docs/paddle-lite.md)")
    rep.runtimes_missing.extend(_missing_host_side(device))
    return rep


class _WithPython:
    """A device view whose `python` is the interpreter actually probed (the lab's own for `local`)."""

    def __init__(self, device, python: str):
        self._d, self.python = device, python

    def __getattr__(self, name):
        return getattr(self._d, name)


def probe_device(device, *, timeout: float = PROBE_TIMEOUT_S,
                 transport_factory: Callable[[Any], Any] | None = None) -> ProbeReport:
    """Connect, probe, close. Connection and device errors become an unreachable report."""
    if transport_factory is None:
        from lab.transport.registry import open_transport as transport_factory
    start = time.monotonic()
    transport = None
    try:
        transport = transport_factory(device)
        return probe_transport(device, transport, timeout=timeout)
    except (DeviceError, LabError) as exc:
        return ProbeReport(device=device.id, transport=device.transport, reachable=False,
                           error=f"{type(exc).__name__}: {exc}", elapsed_s=round(time.monotonic() - start, 2))
    except Exception as exc:  # noqa: BLE001 - one broken device must not stop the check of the others
        return ProbeReport(device=device.id, transport=device.transport, reachable=False,
                           error=f"internal error {type(exc).__name__}: {exc}",
                           elapsed_s=round(time.monotonic() - start, 2))
    finally:
        from lab.transport.registry import close_quietly
        close_quietly(transport)


def check_devices(devices, *, timeout: float = PROBE_TIMEOUT_S, max_parallel: int = 16,
                  transport_factory: Callable[[Any], Any] | None = None) -> list[ProbeReport]:
    """Probe devices in parallel, each bounded by `timeout` (connect + probe); input order kept.

    Daemon threads: a device that hangs past its timeout is reported and left behind, so one
    dead board never blocks the report of the others (or the CLI's exit).
    """
    results: list[ProbeReport | None] = [None] * len(devices)
    sem = threading.Semaphore(max(1, max_parallel))

    def work(i, dev):
        with sem:
            results[i] = probe_device(dev, timeout=timeout, transport_factory=transport_factory)

    threads = [threading.Thread(target=work, args=(i, d), daemon=True, name=f"probe-{d.id}")
               for i, d in enumerate(devices)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout * (1 + len(devices) // max(1, max_parallel)) + 5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [r if r is not None else ProbeReport(device=d.id, transport=d.transport, reachable=False,
                                                error=f"probe did not finish within {timeout:g} s")
            for r, d in zip(results, devices)]
