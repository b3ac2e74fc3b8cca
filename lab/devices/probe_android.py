"""Facts about an Android phone or ARM Linux board, read over any transport in one round trip.

Why one shell script: over ADB each command costs a round trip, and phones differ in what exists
(toybox vs busybox, `Battery` vs `battery`, no getprop on Linux boards), so the script only uses
POSIX sh builtins + cat/ls and prints tagged lines that `parse_probe` turns into a dict. Anything
absent is None / empty with the reason in `notes`, never a guessed value.

Facts: getprop (brand, model, board platform, hardware, ABI list, SDK, release); CPU clusters from
cpufreq policy*/related_cpus with max freqs, and the big-core mask (the cluster(s) with the highest
max freq); battery node; thermal zones; NPU presence (HiAI libs for Kirin, /dev/galcore or an npu
devfreq node on Rockchip); MemTotal; `uname -m`.
"""
from __future__ import annotations

ANDROID_PROBE_SCRIPT = r"""
gp() { if command -v getprop >/dev/null 2>&1; then printf 'PROP %s=%s\n' "$1" "$(getprop "$1")"; fi; }
command -v getprop >/dev/null 2>&1 && echo 'HAVE getprop'
for k in ro.product.brand ro.product.model ro.product.device ro.board.platform ro.hardware \
         ro.product.cpu.abi ro.product.cpu.abilist ro.build.version.sdk ro.build.version.release \
         ro.soc.model ro.soc.manufacturer; do gp "$k"; done
echo "UNAME $(uname -m 2>/dev/null)"
for p in /sys/devices/system/cpu/cpufreq/policy*; do
  [ -d "$p" ] || continue
  echo "POLICY ${p##*/} $(cat "$p/related_cpus" 2>/dev/null) | $(cat "$p/cpuinfo_max_freq" 2>/dev/null) | $(cat "$p/scaling_governor" 2>/dev/null)"
done
echo "POSSIBLE $(cat /sys/devices/system/cpu/possible 2>/dev/null)"
for b in /sys/class/power_supply/battery /sys/class/power_supply/Battery; do
  [ -d "$b" ] && echo "BATTERY $b"
done
for z in /sys/class/thermal/thermal_zone*; do
  [ -d "$z" ] || continue
  echo "THERMAL ${z##*/} $(cat "$z/type" 2>/dev/null) $(cat "$z/temp" 2>/dev/null)"
done
for l in /vendor/lib64/libhiai.so /system/lib64/libhiai.so /vendor/lib/libhiai.so /system/lib/libhiai.so; do
  [ -f "$l" ] && echo "HIAI $l"
done
[ -e /dev/galcore ] && echo "GALCORE /dev/galcore"
for d in /sys/class/devfreq/*; do
  case "${d##*/}" in *npu*|*rknpu*) echo "NPUFREQ $d $(cat "$d/max_freq" 2>/dev/null)";; esac
done
while read -r k v rest; do [ "$k" = "MemTotal:" ] && echo "MEMTOTAL_KB $v"; done < /proc/meminfo 2>/dev/null
true
"""


def _cpus(text: str) -> list[int]:
    """'0 1 2 3' (related_cpus) or '0-3,6' (possible) -> [0, 1, 2, 3, 6]."""
    out: list[int] = []
    for part in text.replace(",", " ").split():
        if "-" in part:
            a, b = part.split("-", 1)
            if a.isdigit() and b.isdigit():
                out += range(int(a), int(b) + 1)
        elif part.isdigit():
            out.append(int(part))
    return out


def parse_probe(text: str) -> dict:
    props: dict[str, str] = {}
    clusters, zones, hiai, npu_freq = [], [], [], []
    facts: dict = {"android": False, "battery_node": None, "galcore": False, "machine": None,
                   "mem_total_mb": None, "ncpu": None, "notes": []}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "HAVE" and rest == "getprop":
            facts["android"] = True
        elif tag == "PROP" and "=" in rest:
            k, v = rest.split("=", 1)
            if v.strip():
                props[k] = v.strip()
        elif tag == "UNAME":
            facts["machine"] = rest.strip() or None
        elif tag == "POLICY":
            name, _, tail = rest.partition(" ")
            fields = [f.strip() for f in tail.split("|")]
            cpus = _cpus(fields[0]) if fields else []
            maxf = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
            clusters.append({"policy": name, "cpus": cpus, "max_khz": maxf,
                             "governor": (fields[2] or None) if len(fields) > 2 else None})
        elif tag == "POSSIBLE":
            cpus = _cpus(rest)
            facts["ncpu"] = len(cpus) or None
        elif tag == "BATTERY":
            facts["battery_node"] = rest.strip()
        elif tag == "THERMAL":
            parts = rest.split()
            if len(parts) >= 2:
                temp = None
                if len(parts) >= 3 and parts[-1].lstrip("-").isdigit():
                    raw = int(parts[-1])
                    temp = raw / 1000.0 if abs(raw) > 1000 else float(raw)  # m°C on most kernels
                zones.append({"zone": parts[0], "type": parts[1], "temp_c": temp})
        elif tag == "HIAI":
            hiai.append(rest.strip())
        elif tag == "GALCORE":
            facts["galcore"] = True
        elif tag == "NPUFREQ":
            parts = rest.split()
            npu_freq.append({"node": parts[0], "max_hz": int(parts[1]) if len(parts) > 1 and
                             parts[1].isdigit() else None})
        elif tag == "MEMTOTAL_KB" and rest.strip().isdigit():
            facts["mem_total_mb"] = round(int(rest) / 1024, 1)
    clusters.sort(key=lambda c: (c["max_khz"] or 0, c["cpus"][:1]))
    abilist = props.get("ro.product.cpu.abilist")
    facts.update({
        "brand": props.get("ro.product.brand"), "model": props.get("ro.product.model"),
        "device": props.get("ro.product.device"), "board_platform": props.get("ro.board.platform"),
        "hardware": props.get("ro.hardware"), "soc_model": props.get("ro.soc.model"),
        "abi": props.get("ro.product.cpu.abi"), "abilist": abilist.split(",") if abilist else [],
        "sdk": int(props["ro.build.version.sdk"]) if props.get("ro.build.version.sdk", "").isdigit() else None,
        "release": props.get("ro.build.version.release"),
        "cpu_clusters": clusters, "thermal_zones": zones, "hiai_libs": hiai, "npu_devfreq": npu_freq,
    })
    if facts["ncpu"] is None and clusters:
        facts["ncpu"] = len({c for cl in clusters for c in cl["cpus"]})
    top = max((c["max_khz"] or 0 for c in clusters), default=0)
    big = sorted({cpu for c in clusters if top and c["max_khz"] == top for cpu in c["cpus"]})
    # big cores: the fastest cluster; with one cluster there is no big.LITTLE split to pin to
    facts["big_cores"] = big if len(clusters) > 1 else []
    facts["big_core_mask"] = hex(sum(1 << c for c in big)) if len(clusters) > 1 and big else None
    if not clusters:
        facts["notes"].append("no cpufreq policies readable: clusters unknown")
    if facts["battery_node"] is None:
        facts["notes"].append("no battery node (board, or power_supply not exposed)")
    npu = []
    if hiai:
        npu.append("huawei_kirin_npu")
    if facts["galcore"] or npu_freq:
        npu.append("rockchip_npu/verisilicon_timvx")
    facts["npu"] = npu
    if not npu:
        facts["notes"].append("no NPU evidence (no HiAI libs, /dev/galcore or npu devfreq node)")
    if not facts["android"]:
        facts["notes"].append("no getprop: not Android (ARM Linux board?)")
    return facts


def probe_android(transport, *, timeout: float) -> dict:
    """Run the probe script on the device and parse it (see `parse_probe`)."""
    r = transport.run(ANDROID_PROBE_SCRIPT, timeout=timeout)
    facts = parse_probe(r.out)
    if r.rc != 0:
        facts["notes"].append(f"probe script exited {r.rc}: {r.err.strip()[:200]}")
    return facts
