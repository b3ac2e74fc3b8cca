"""Device identity (issue 22): /proc text of real and composed boards against the catalog's claims.

Fixtures in tests/data/proc (README there says which are recorded and which composed). The claims
come from the built-in catalog, so a wrong catalog fact fails here too.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lab.core.errors import ConfigError
from lab.devices import identity as ident
from lab.devices.catalog import DEFAULT_PATH, load_catalog
from lab.devices.inventory import load_devices
from lab.devices.probe import _key_values, raw_facts

PROC = Path(__file__).resolve().parents[1] / "data" / "proc"


def mem_total_kb(meminfo: str) -> int:
    """MemTotal as the probe's `grep -m1 '^MemTotal:' | tr -s ' ' | cut -d' ' -f2` reads it."""
    return int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE).group(1))


def facts(name: str, **over) -> ident.RawFacts:
    """A fixture folder as the probe would have read it."""
    d = PROC / name
    if (d / "probe.txt").exists():
        return raw_facts(_key_values((d / "probe.txt").read_text()))
    base = {"uname_m": (d / "uname-m").read_text().strip(), "cpuinfo": (d / "cpuinfo").read_text(),
            "mem_total_kb": mem_total_kb((d / "meminfo").read_text())}
    base.update(over)
    return ident.RawFacts(**base)


def check(name: str, chip: str, **over) -> ident.Identity:
    return ident.compare(ident.claim_of(load_catalog().get(chip)), facts(name, **over))


@pytest.mark.parametrize("name, chip, verdict, differs", [
    ("rk1808", "rk1808", "ok", ()),
    ("rk1808", "rv1109", "mismatch", ("arch", "cpu parts")),
    ("rv1109", "rv1109", "ok", ()),
    ("rv1109", "rk1808", "mismatch", ("cpu parts",)),  # armv7l is a valid rk1808 userland; the A7s are not
    ("rv1109", "rv1126", "mismatch", ("cores",)),  # same core, 2 not 4
    ("kirin990", "kirin990", "ok", ()),
    ("kirin990", "kirin9000", "mismatch", ("cpu parts",)),  # A76 is not A77
    ("kirin990", "rk1808", "mismatch", ("cores", "cpu parts", "memory")),
    ("x86-server", "generic-x86-cpu", "ok", ()),
    ("x86-server", "rk1808", "mismatch", ("arch", "cpu parts", "memory")),
    ("x86-server", "kirin990", "mismatch", ("arch", "cores", "cpu parts")),  # memory: [E], shown only
    ("qemu-user-aarch64", "rk1808", "emulated", ("emulation", "cpu parts", "memory")),
    ("qemu-user-aarch64", "generic-x86-cpu", "emulated", ("emulation", "arch")),
    ("qemu-user-armhf", "rv1109", "emulated", ("emulation", "cpu parts")),  # memory: [U], shown only
])
def test_recorded_devices_against_claims(name, chip, verdict, differs):
    got = check(name, chip)
    assert got.verdict == verdict, got.note
    bad = {f.fact for f in got.findings if f.outcome in ("mismatch", "emulated")}
    assert bad == set(differs), got.note
    assert got.note.startswith(f"inventory says {chip} (")


def test_mismatch_note_says_what_was_claimed_and_found():
    note = check("x86-server", "rk1808").note
    assert "2x Cortex-A35, 1 GB" in note and "found x86_64, AMD EPYC, 2 cores" in note
    assert "arch x86_64 (claimed aarch64/armv8l/armv7l)" in note
    assert "hypervisor flag" in note  # recorded, but changes no verdict (see the ok case above)


def test_qemu_user_names_the_emulation():
    got = check("qemu-user-aarch64", "rk1808")
    emu = [f.found for f in got.findings if f.outcome == "emulated"]
    assert emu == [("user-mode emulation: uname -m says aarch64, but /proc/cpuinfo describes an x86 CPU "
                    "(AuthenticAMD AMD EPYC)")]
    assert "/dev/galcore missing" in got.note
    assert ident.elf_machine(facts("qemu-user-aarch64").elf_header) == "aarch64"
    assert ident.elf_machine(facts("qemu-user-armhf").elf_header) == "arm"  # busybox's od, under qemu-arm


def test_kirin_a76_reads_under_either_implementer():
    hisi = ident.parse_cpuinfo((PROC / "kirin990" / "cpuinfo").read_text())
    assert hisi.parts.count("cortex-a76") == 4 and hisi.parts.count("cortex-a55") == 4
    arm = ident.parse_cpuinfo((PROC / "kirin990" / "cpuinfo").read_text().replace("0x48", "0x41").replace(
        "0xd40", "0xd0b"))
    assert arm.parts == hisi.parts


def test_parse_cpuinfo_formats():
    x86 = ident.parse_cpuinfo((PROC / "x86-server" / "cpuinfo").read_text())
    assert (x86.isa, x86.vendor, x86.model, x86.cores, x86.hypervisor) == ("x86", "AuthenticAMD", "AMD EPYC", 2, True)
    rv = ident.parse_cpuinfo((PROC / "rv1109" / "cpuinfo").read_text())
    assert (rv.isa, rv.cores, rv.parts) == ("arm", 2, ("cortex-a7", "cortex-a7"))
    # old arm32 kernels list the part once, after every `processor` line (RK3168-era layout)
    old = ident.parse_cpuinfo("Processor\t: ARMv7 Processor rev 0 (v7l)\nprocessor\t: 0\nprocessor\t: 1\n"
                              "CPU implementer\t: 0x41\nCPU part\t: 0xc07\nHardware\t: RK30board\n")
    assert old.cores == 2 and old.part_set_only and old.parts == ("cortex-a7",)
    unknown = ident.parse_cpuinfo("processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x804\n")
    assert unknown.parts == ("Qualcomm:0x804",)


def test_old_arm32_layout_matches_the_claim():
    old = "processor\t: 0\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU part\t: 0xc07\n"
    assert check("rv1109", "rv1109", cpuinfo=old).verdict == "ok"
    assert check("rv1109", "rk1808", cpuinfo=old).verdict == "mismatch"


def test_offline_cores_are_not_a_mismatch():
    """A phone's hotplugged cores are missing from /proc/cpuinfo; /sys/.../cpu/present still counts them."""
    text = (PROC / "kirin990" / "cpuinfo").read_text().split("processor\t: 6")[0]
    got = check("kirin990", "kirin990", cpuinfo=text, cpu_present="0-7")
    assert got.verdict == "ok", got.note
    got = check("kirin990", "kirin990", cpu_present="0-9")
    assert got.verdict == "mismatch" and "cores 10 (claimed 8)" in got.note


def test_software_cpu_and_tcg_are_emulated_but_kvm_and_containers_are_not():
    qemu_max = "processor\t: 0\nCPU implementer\t: 0x00\nCPU part\t: 0x051\n"  # QEMU `-cpu max`: implementer 0
    got = check("rk1808", "rk1808", cpuinfo=qemu_max, cpu_present="0-1")
    assert got.verdict == "emulated" and "reserved for software use" in got.note
    assert check("rk1808", "rk1808", virt="qemu").verdict == "emulated"  # QEMU without KVM
    for virt in ("kvm", "docker", "none"):
        assert check("x86-server", "generic-x86-cpu", virt=virt).verdict == "ok"
    assert "virtual machine (kvm" in check("x86-server", "generic-x86-cpu", virt="kvm").note


def test_elf_machine():
    assert ident.elf_machine(bytes.fromhex("7f454c46020101000000000000000000" "02003e00")) == "x86_64"
    assert ident.elf_machine("7f 45 4c 46 01 01 01 00 00 00 00 00 00 00 00 00 02 00 28 00") == "arm"
    assert ident.elf_machine("not hex") is None and ident.elf_machine(b"\x7fELF") is None
    # an aarch64 interpreter on an x86_64 kernel (an emulator that does not fake uname)
    got = check("x86-server", "generic-x86-cpu",
                elf_header="7f 45 4c 46 02 01 01 00 00 00 00 00 00 00 00 00 02 00 b7 00", elf_path="/usr/bin/python3")
    assert got.verdict == "emulated" and "aarch64 program" in got.note


def test_estimated_memory_is_shown_not_held_against_the_device():
    """Kirin phones' 6-8 GB is an [E] estimate: a 4 GB phone is still a Kirin 990; a 1 GB stick is [V]."""
    got = check("kirin990", "kirin990", mem_total_kb=3_900_000)
    assert got.verdict == "ok" and "not held against it" in got.note
    got = check("rk1808", "rk1808", mem_total_kb=4_000_000)
    assert got.verdict == "mismatch" and "memory 3.81 GB (claimed 1 GB" in got.note


def test_accelerator_nodes_turn_only_aipu_rows_into_mismatches():
    claim = ident.claim_of(load_catalog().get("rk1808"))
    assert claim.nodes == ("/dev/galcore",)
    missing = check("rk1808", "rk1808", nodes_checked=("/dev/galcore",))
    assert missing.verdict == "ok" and missing.for_processor("cpu")[0] == "ok"
    verdict, note = missing.for_processor("aipu")
    assert verdict == "mismatch" and "without the accelerator" in note
    present = check("rk1808", "rk1808", nodes_checked=("/dev/galcore",), nodes_present=("/dev/galcore",))
    assert present.for_processor("aipu")[0] == "ok"


def test_row_identity_precedence():
    device_bad = check("x86-server", "rk1808")
    assert ident.for_row(device_bad, "cpu") == ("mismatch", device_bad.note)
    # a software renderer is emulation on any device; the device's own finding follows it
    verdict, note = ident.for_row(device_bad, "gpu", "emulated", "software WebGL renderer (SwiftShader)")
    assert verdict == "emulated" and note.startswith("software WebGL") and "device: inventory says rk1808" in note
    ok = check("x86-server", "generic-x86-cpu")
    assert ident.for_row(ok, "gpu", "emulated", "sw")[0] == "emulated"
    skipped = ident.skipped("board kernel hides CPU parts")
    assert ident.for_row(skipped, "aipu") == ("skipped", ("identity check skipped in devices.yaml: board "
                                                         "kernel hides CPU parts"))
    assert ident.for_row(None, "cpu") == (None, None)
    assert ident.software_renderer("ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), SwiftShader driver)")
    assert not ident.software_renderer("ANGLE (NVIDIA, NVIDIA GeForce RTX 3060)")


def test_generic_chips_claim_only_what_is_true():
    cat = load_catalog()
    generic = ident.claim_of(cat.get("generic-x86-cpu"))
    assert generic.arch == ("x86_64",) and not generic.cpus and generic.mem_gb is None and not generic.nodes
    for chip in ("nvidia-t4", "nvidia-h100-pcie", "kunlun-k200"):  # cards: the host around them varies
        claim = ident.claim_of(cat.get(chip))
        assert not claim.arch and not claim.cpus and claim.mem_gb is None, chip
    for chip in cat:  # every identity fact is sourced
        for f in (chip.identity.arch, chip.identity.cpus, chip.identity.nodes):
            if f is not None:
                assert f.source in cat.sources, chip.id


def test_catalog_refuses_bad_identity_facts(tmp_path):
    text = DEFAULT_PATH.read_text()
    for bad, needle in (("{cortex-a35: 2}", "unknown core 'cortex-a99'"),
                        ("[/dev/galcore]", "paths under /dev/")):
        p = tmp_path / "chips.yaml"
        broken = text.replace("{cortex-a35: 2}", "{cortex-a99: 2}", 1) if bad.startswith("{") else \
            text.replace("[/dev/galcore]", "[galcore]", 1)
        p.write_text(broken)
        with pytest.raises(ConfigError) as exc:
            load_catalog(p)
        line = next(i for i, ln in enumerate(broken.splitlines(), 1) if "cortex-a99" in ln or "[galcore]" in ln)
        assert needle in str(exc.value) and f"chips.yaml:{line}:" in str(exc.value)


def _devices(tmp_path, extra: str):
    p = tmp_path / "devices.yaml"
    p.write_text("devices:\n  - id: board\n    chip: rk1808\n    transport: local\n"
                 + textwrap.indent(textwrap.dedent(extra), "    "))
    return p


def test_inventory_identity_skip_needs_a_reason(tmp_path):
    dev = load_devices(_devices(tmp_path, """\
        identity: skip
        identity_reason: "vendor kernel hides CPU parts"
        """))[0]
    assert dev.identity_skip == "vendor kernel hides CPU parts"
    assert load_devices(_devices(tmp_path, ""))[0].identity_skip is None
    for extra, needle, line in (("identity: skip\n", "'identity: skip' needs a reason", 5),
                                ("identity: never\n", "identity 'never' is not valid", 5),
                                ("identity_reason: because\n", "identity_reason without 'identity: skip'", 5)):
        with pytest.raises(ConfigError) as exc:
            load_devices(_devices(tmp_path, extra))
        assert needle in str(exc.value) and f"devices.yaml:{line}:" in str(exc.value)
