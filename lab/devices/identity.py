"""Device identity: is the device the chip the inventory names, or an emulator, a VM, another board?

Why: a row is stored under its device's chip. A campaign run on a VM, under qemu-user or on a
mislabelled board yields figures that are not the chip's, and nothing downstream can tell. So the
probe's raw text (/proc/cpuinfo, MemTotal, `uname -m`, the runner's ELF header,
systemd-detect-virt, device nodes) is compared here with what the catalog claims for the chip
(`Chip.identity`, each fact sourced in chips.yaml). Pure functions over recorded text: the tests
feed recorded /proc files, the probe feeds live ones.

Verdicts: ok | mismatch (a claimed fact is contradicted) | emulated (the CPU or the GPU the job
used is software: user-mode emulation, QEMU TCG, a software WebGL renderer) | skipped
(devices.yaml `identity: skip` with a reason). None = not checked (the note says why).
Hardware virtualisation (KVM, a container) is recorded in the note but changes no verdict: the
CPU a VM runs on is a real CPU of that model, and cloud GPUs are only ever reached through one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_RANK = {None: 0, "ok": 1, "skipped": 2, "mismatch": 3, "emulated": 4}

# ARM MIDR implementer -> name, and (implementer, part) -> core. Source: util-linux
# sys-utils/lscpu-arm.c and Linux arch/arm64/include/asm/cputype.h. HiSilicon ships Cortex-A76/A77
# under its own implementer byte (0x48: 0xd40/0xd41, "HiSilicon uses this ID though advertises
# A76"), so a Kirin's big cores read either way. Implementer 0x00 is "reserved for software use":
# QEMU's `-cpu max` reports it (part 'Q' = 0x051), no silicon does.
ARM_IMPLEMENTERS = {0x00: "software", 0x41: "ARM", 0x42: "Broadcom", 0x48: "HiSilicon", 0x4E: "NVIDIA",
                    0x51: "Qualcomm", 0x53: "Samsung", 0x61: "Apple", 0x70: "Phytium", 0xC0: "Ampere"}
SOFTWARE_IMPLEMENTER = 0x00
ARM_PARTS = {
    (0x41, 0xC05): "cortex-a5", (0x41, 0xC07): "cortex-a7", (0x41, 0xC08): "cortex-a8",
    (0x41, 0xC09): "cortex-a9", (0x41, 0xC0D): "cortex-a12", (0x41, 0xC0E): "cortex-a17",
    (0x41, 0xC0F): "cortex-a15", (0x41, 0xD01): "cortex-a32", (0x41, 0xD02): "cortex-a34",
    (0x41, 0xD03): "cortex-a53", (0x41, 0xD04): "cortex-a35", (0x41, 0xD05): "cortex-a55",
    (0x41, 0xD06): "cortex-a65", (0x41, 0xD07): "cortex-a57", (0x41, 0xD08): "cortex-a72",
    (0x41, 0xD09): "cortex-a73", (0x41, 0xD0A): "cortex-a75", (0x41, 0xD0B): "cortex-a76",
    (0x41, 0xD0C): "neoverse-n1", (0x41, 0xD0D): "cortex-a77", (0x41, 0xD0E): "cortex-a76ae",
    (0x41, 0xD40): "neoverse-v1", (0x41, 0xD41): "cortex-a78", (0x41, 0xD42): "cortex-a78ae",
    (0x41, 0xD44): "cortex-x1", (0x41, 0xD46): "cortex-a510", (0x41, 0xD47): "cortex-a710",
    (0x41, 0xD48): "cortex-x2", (0x41, 0xD49): "neoverse-n2", (0x41, 0xD4B): "cortex-a78c",
    (0x41, 0xD4D): "cortex-a715", (0x41, 0xD4E): "cortex-x3", (0x41, 0xD80): "cortex-a520",
    (0x41, 0xD81): "cortex-a720", (0x41, 0xD82): "cortex-x4",
    (0x48, 0xD01): "taishan-v110", (0x48, 0xD02): "taishan-v120",
    (0x48, 0xD40): "cortex-a76", (0x48, 0xD41): "cortex-a77",
}
KNOWN_CORES = frozenset(ARM_PARTS.values())  # the names chips.yaml `identity.cpus` may use

# `uname -m` / ELF machine -> instruction-set family (emulation = the families disagree)
_ISA = {"x86_64": "x86", "amd64": "x86", "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86",
        "aarch64": "arm", "arm64": "arm", "armv8l": "arm", "armv7l": "arm", "armv6l": "arm", "arm": "arm",
        "riscv64": "riscv", "ppc64le": "power", "s390x": "s390"}
_ELF_MACHINES = {0x03: "i386", 0x28: "arm", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv64",
                 0x15: "ppc64le", 0x16: "s390x"}
# systemd-detect-virt: "qemu" is QEMU without KVM, i.e. TCG, a CPU emulated instruction by instruction
# (systemd-detect-virt(1)); the other VM names are hardware virtualisation.
EMULATING_VIRT = ("qemu",)
CONTAINER_VIRT = ("docker", "podman", "lxc", "lxc-libvirt", "systemd-nspawn", "openvz", "rkt", "wsl",
                  "proot", "pouch")
# A software WebGL/GL renderer: the "GPU" is the CPU (SwiftShader through ANGLE, Mesa's llvmpipe/softpipe).
SOFTWARE_RENDERERS = ("swiftshader", "llvmpipe", "softpipe", "software rasterizer")
# MemTotal against the catalog's RAM size (GiB; boards quote "1 GB" for 1 GiB): MemTotal is the
# RAM less the kernel, firmware and reserved carve-outs (NPU, ISP, video: up to a few hundred MB on
# vendor SoCs), so it may fall 30 % short, and it never exceeds the RAM fitted (5 % for rounding).
MEM_BELOW, MEM_ABOVE = 0.70, 1.05
# memory scopes that describe the RAM the device's own kernel sees (a card's memory is not the host's)
SYSTEM_MEMORY_SCOPES = ("stick", "board", "phone", "module")


# ------------------------------------------------------------------------------ parsed facts
@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says. `parts`: one core name per core where the kernel lists them per core
    (raw "0x41:0xd99" when unknown); `part_set_only` when it lists them once for all (old arm32)."""

    isa: str | None = None  # x86 | arm | riscv | None
    vendor: str | None = None
    model: str | None = None
    cores: int = 0
    parts: tuple[str, ...] = ()
    part_set_only: bool = False
    implementers: tuple[int, ...] = ()
    hypervisor: bool = False


def _field_lines(text: str):
    for raw in text.splitlines():
        if ":" in raw:
            key, value = raw.split(":", 1)
            yield key.strip(), value.strip()


def _hex(value: str) -> int | None:
    try:
        return int(value, 16)
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> CpuInfo:
    """x86 (vendor_id, model name, flags) and ARM (CPU implementer/part per core, or once on old arm32)."""
    vendor = model = None
    cores, impls, parts, flags = 0, [], [], ""
    isa = None
    for key, value in _field_lines(text):
        low = key.lower()
        if key == "processor":
            cores += 1
        elif low == "vendor_id":
            vendor, isa = vendor or value, "x86"
        elif low == "model name" and model is None:
            model = value
        elif low == "flags" and not flags:
            flags, isa = value, "x86"
        elif key == "CPU implementer":
            isa = "arm"
            impls.append(_hex(value))
        elif key == "CPU part":
            isa = "arm"
            impl = impls[-1] if impls else None
            part = _hex(value)
            raw_id = f"{'?' if impl is None else ARM_IMPLEMENTERS.get(impl, hex(impl))}:{value.strip()}"
            parts.append(ARM_PARTS.get((impl, part)) or raw_id)
        elif low in ("isa", "uarch") and isa is None:
            isa = "riscv" if value.startswith("rv") or "," in value else isa
    if isa == "arm" and model is None:
        model = ", ".join(sorted(set(parts))) or None
    return CpuInfo(isa=isa, vendor=vendor, model=model, cores=cores, parts=tuple(parts),
                   part_set_only=bool(parts) and len(parts) < cores,
                   implementers=tuple(i for i in impls if i is not None),
                   hypervisor="hypervisor" in flags.split())


def elf_machine(header: bytes | str | None) -> str | None:
    """The machine of an ELF header (bytes, or `od -An -tx1` hex text), e.g. 'aarch64'; None if unknown."""
    if header is None:
        return None
    if isinstance(header, str):
        try:
            header = bytes(int(b, 16) for b in header.split())
        except ValueError:
            return None
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    little = header[5] == 1
    machine = int.from_bytes(header[18:20], "little" if little else "big")
    name = _ELF_MACHINES.get(machine)
    if name == "arm" and header[4] == 2:  # ELFCLASS64 with EM_ARM does not exist; keep it honest
        return None
    return name


def isa_of(machine: str | None) -> str | None:
    return _ISA.get((machine or "").strip().lower()) if machine else None


def software_renderer(renderer: str | None) -> bool:
    """True for a WebGL/GL renderer string that names a CPU rasteriser (SwiftShader, llvmpipe, ...)."""
    low = (renderer or "").lower()
    return any(s in low for s in SOFTWARE_RENDERERS)


@dataclass(frozen=True)
class RawFacts:
    """What the probe read on the device, as text (one round trip, POSIX sh: lab/devices/probe.py)."""

    uname_m: str | None = None
    kernel: str | None = None
    cpuinfo: str = ""
    cpu_present: str | None = None  # /sys/devices/system/cpu/present, e.g. "0-7" (offline cores too)
    mem_total_kb: int | None = None
    elf_header: str | None = None  # `od -An -tx1 -N20` of the runner's interpreter (or /bin/sh)
    elf_path: str | None = None
    virt: str | None = None  # systemd-detect-virt's answer, where it exists
    nodes_checked: tuple[str, ...] = ()
    nodes_present: tuple[str, ...] = ()


def count_cpu_list(text: str | None) -> int | None:
    """'0-3,6' -> 5 (the kernel's cpu list format); None when unreadable."""
    if not text or not text.strip():
        return None
    n = 0
    try:
        for part in text.strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
    except ValueError:
        return None
    return n


# ------------------------------------------------------------------------------ the claim
@dataclass(frozen=True)
class Claim:
    """What the catalog says the chip is, as identity compares it (from `catalog.Chip`)."""

    chip: str
    arch: tuple[str, ...] = ()
    cpus: dict[str, int] = field(default_factory=dict)  # core name -> count
    mem_gb: tuple[float, float] | None = None  # (low, high) RAM the kernel sees
    nodes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    # facts the catalog holds only as [U] (unconfirmed) or [E] (estimate): shown when contradicted,
    # never the reason for a mismatch (a phone's "6-8 GB" is a guess, not a claim about this one)
    weak: frozenset[str] = frozenset()

    @property
    def cores(self) -> int | None:
        return sum(self.cpus.values()) or None

    def describe(self) -> str:
        bits = []
        if self.arch:
            bits.append("/".join(self.arch))
        if self.cpus:
            bits.append(" + ".join(f"{n}x {_pretty(c)}" for c, n in self.cpus.items()))
        if self.mem_gb:
            lo, hi = self.mem_gb
            bits.append(f"{_g(lo)} GB" if lo == hi else f"{_g(lo)}-{_g(hi)} GB")
        return f"{self.chip} ({', '.join(bits)})" if bits else f"{self.chip} (no identity facts in the catalog)"


def claim_of(chip: Any) -> Claim:
    """The identity claim of a `lab.devices.catalog.Chip` (duck-typed: this module imports no catalog)."""
    ident = getattr(chip, "identity", None)
    arch = tuple(ident.arch.value) if ident is not None and ident.arch is not None else ()
    cpus = dict(ident.cpus.value) if ident is not None and ident.cpus is not None else {}
    nodes = tuple(ident.nodes.value) if ident is not None and ident.nodes is not None else ()
    sources = tuple(f.source for f in (getattr(ident, "arch", None), getattr(ident, "cpus", None),
                                       getattr(ident, "nodes", None)) if f is not None)
    weak = {k for k in ("arch", "cpus") if getattr(getattr(ident, k, None), "confidence", None) in _WEAK}
    mem = None
    size = chip.memory.size_gb
    if size is not None and chip.memory.scope in SYSTEM_MEMORY_SCOPES and size.known:
        lo, hi = size.best_low, size.best_high
        if lo is not None and hi is not None:
            mem = (lo, hi)
            sources += (size.source,)
            if size.confidence in _WEAK:
                weak.add("memory")
    return Claim(chip=chip.id, arch=arch, cpus=cpus, mem_gb=mem, nodes=nodes, sources=sources,
                 weak=frozenset(weak))


_WEAK = ("U", "E")
_WEAK_FACT = {"arch": "arch", "cores": "cpus", "cpu parts": "cpus", "memory": "memory"}


def _pretty(core: str) -> str:
    """'cortex-a35' -> 'Cortex-A35' (raw '0x51:0x804' ids unchanged)."""
    for low, up in (("cortex-", "Cortex-"), ("neoverse-", "Neoverse-"), ("taishan-", "TaiShan-")):
        if core.startswith(low):
            return up + core[len(low):].upper()
    return core


def _g(x: float) -> str:
    return f"{x:.3g}"


# ------------------------------------------------------------------------------ the verdict
@dataclass(frozen=True)
class Finding:
    """One fact compared: what was claimed, what was found, and what it means."""

    fact: str  # arch | cores | cpu parts | memory | device nodes | emulation | virtualisation | renderer
    claimed: str | None
    found: str | None
    outcome: str  # ok | mismatch | emulated | info | unknown

    def text(self) -> str:
        if self.claimed is None:
            return f"{self.fact}: {self.found}"
        return f"{self.fact} {self.found} (claimed {self.claimed})"


@dataclass(frozen=True)
class Identity:
    """The device's identity verdict with its findings and the one-line note stored on rows."""

    verdict: str | None
    summary: str  # "inventory says <claim>, found <facts>", or why it was skipped / not checked
    findings: tuple[Finding, ...] = ()

    @property
    def details(self) -> str:
        """What differs first (the reason for the verdict), then what is recorded but changes nothing."""
        bad = [f.text() for f in self.findings if f.outcome in ("mismatch", "emulated")]
        info = [f.text() for f in self.findings if f.outcome in ("info", "unknown")]
        return "; ".join(bad + (["also " + "; ".join(info)] if info and bad else info))

    @property
    def note(self) -> str:
        """The reason in words, as rows store it (`identity_note`)."""
        return f"{self.summary}; {self.details}" if self.details else self.summary

    def for_processor(self, processor: str | None) -> tuple[str | None, str]:
        """(verdict, note) for a row on `processor`: an AIPU row on a device without the claimed
        accelerator node is a mismatch (runtimes such as NNAdapter fall back to the CPU silently)."""
        missing = [f for f in self.findings if f.fact == "device nodes" and f.outcome == "info"
                   and f.claimed is not None]
        if processor == "aipu" and missing and _RANK[self.verdict] < _RANK["mismatch"] and self.verdict != "skipped":
            return "mismatch", f"{self.note}; AIPU row without the accelerator: {missing[0].found}"
        return self.verdict, self.note

    def lines(self) -> list[str]:
        """`lab devices --check`: the verdict with claim and finding, then what differs (if anything)."""
        word = {"ok": "ok", "mismatch": "MISMATCH", "emulated": "EMULATED", "skipped": "skipped"}
        out = [f"identity: {word.get(self.verdict or '', 'not checked')} - {self.summary}"]
        return out + ([f"  {self.details}"] if self.details else [])


def skipped(reason: str) -> Identity:
    return Identity("skipped", f"identity check skipped in devices.yaml: {reason}")


def not_checked(reason: str) -> Identity:
    return Identity(None, f"identity not checked: {reason}")


def compare(claim: Claim, raw: RawFacts) -> Identity:
    """The verdict for a device: emulation first (it explains every other difference), then each
    claimed fact against what was found."""
    cpu = parse_cpuinfo(raw.cpuinfo)
    findings = _emulation(raw, cpu) + _virtualisation(raw, cpu)
    findings += [_weaken(claim, f) for f in (_arch(claim, raw), _cores(claim, raw, cpu), _parts(claim, cpu),
                                             _memory(claim, raw), _nodes(claim, raw)) if f is not None]
    outcomes = {f.outcome for f in findings}
    verdict = "emulated" if "emulated" in outcomes else "mismatch" if "mismatch" in outcomes else "ok"
    return Identity(verdict, f"inventory says {claim.describe()}, found {_found_text(raw, cpu)}", tuple(findings))


def _weaken(claim: Claim, f: Finding) -> Finding:
    if f.outcome == "mismatch" and _WEAK_FACT.get(f.fact) in claim.weak:
        return Finding(f.fact, f"{f.claimed} ([U]/[E] in the catalog: not held against it)", f.found, "info")
    return f


def _emulation(raw: RawFacts, cpu: CpuInfo) -> list[Finding]:
    out = []
    uname_isa, elf = isa_of(raw.uname_m), elf_machine(raw.elf_header)
    elf_isa = isa_of(elf)
    described = f"{cpu.vendor or ''} {cpu.model or ''}".strip() or cpu.isa
    if cpu.isa and uname_isa and uname_isa != cpu.isa:
        out.append(Finding("emulation", None, f"user-mode emulation: uname -m says {raw.uname_m}, but "
                           f"/proc/cpuinfo describes an {cpu.isa} CPU ({described})", "emulated"))
    elif cpu.isa and elf_isa and elf_isa != cpu.isa:
        out.append(Finding("emulation", None, f"user-mode emulation: the runner's {raw.elf_path or 'interpreter'} "
                           f"is an {elf} program, but /proc/cpuinfo describes an {cpu.isa} CPU ({described})",
                           "emulated"))
    elif uname_isa and elf_isa and uname_isa != elf_isa:
        out.append(Finding("emulation", None, f"user-mode emulation: the runner's {raw.elf_path or 'interpreter'} "
                           f"is an {elf} program on a {raw.uname_m} kernel", "emulated"))
    if SOFTWARE_IMPLEMENTER in cpu.implementers:
        out.append(Finding("emulation", None, "CPU implementer 0x00 (reserved for software use: an emulated "
                           "CPU such as QEMU's 'max')", "emulated"))
    if (raw.virt or "").strip() in EMULATING_VIRT:
        out.append(Finding("emulation", None, "systemd-detect-virt: qemu (QEMU without KVM: the CPU is "
                           "emulated instruction by instruction)", "emulated"))
    return out


def _virtualisation(raw: RawFacts, cpu: CpuInfo) -> list[Finding]:
    virt = (raw.virt or "").strip()
    out = []
    if virt and virt != "none" and virt not in EMULATING_VIRT:
        kind = "container" if virt in CONTAINER_VIRT else "virtual machine"
        out.append(Finding("virtualisation", None, f"{kind} ({virt}, systemd-detect-virt)", "info"))
    if cpu.hypervisor:
        out.append(Finding("virtualisation", None, "hypervisor flag in /proc/cpuinfo", "info"))
    return out


def _arch(claim: Claim, raw: RawFacts) -> Finding | None:
    if not claim.arch:
        return None
    if not raw.uname_m:
        return Finding("arch", "/".join(claim.arch), "unknown (uname -m unreadable)", "unknown")
    ok = raw.uname_m.strip() in claim.arch
    return Finding("arch", "/".join(claim.arch), raw.uname_m, "ok" if ok else "mismatch")


def _cores(claim: Claim, raw: RawFacts, cpu: CpuInfo) -> Finding | None:
    if claim.cores is None:
        return None
    found = count_cpu_list(raw.cpu_present) or cpu.cores or None
    if found is None:
        return Finding("cores", str(claim.cores), "unknown (no /proc/cpuinfo)", "unknown")
    return Finding("cores", str(claim.cores), str(found), "ok" if found == claim.cores else "mismatch")


def _parts(claim: Claim, cpu: CpuInfo) -> Finding | None:
    """Core types: every core the kernel lists must be a claimed type, in at most the claimed number
    (cores a phone has taken offline are missing from /proc/cpuinfo; the core count covers them)."""
    if not claim.cpus:
        return None
    claimed = " + ".join(f"{n}x {_pretty(c)}" for c, n in claim.cpus.items())
    if not cpu.parts:
        found = f"none (an {cpu.isa} CPU: {cpu.model or cpu.vendor})" if cpu.isa and cpu.isa != "arm" else None
        return Finding("cpu parts", claimed, found or "unknown (no CPU part lines)",
                       "mismatch" if found else "unknown")
    counts: dict[str, int] = {}
    for p in cpu.parts:
        counts[p] = counts.get(p, 0) + 1
    shown = " + ".join(f"{n}x {_pretty(c)}" for c, n in counts.items())
    if cpu.part_set_only:
        ok = set(counts) <= set(claim.cpus)
        shown = "/".join(_pretty(c) for c in counts) + " (listed once for all cores)"
    else:
        ok = all(c in claim.cpus and n <= claim.cpus[c] for c, n in counts.items())
    return Finding("cpu parts", claimed, shown, "ok" if ok else "mismatch")


def _memory(claim: Claim, raw: RawFacts) -> Finding | None:
    if claim.mem_gb is None:
        return None
    lo, hi = claim.mem_gb
    claimed = f"{_g(lo)} GB" if lo == hi else f"{_g(lo)}-{_g(hi)} GB"
    if raw.mem_total_kb is None:
        return Finding("memory", claimed, "unknown (no MemTotal)", "unknown")
    gb = raw.mem_total_kb / 1024.0 / 1024.0
    ok = lo * MEM_BELOW <= gb <= hi * MEM_ABOVE
    return Finding("memory", claimed + f"; MemTotal {_g(lo * MEM_BELOW)}-{_g(hi * MEM_ABOVE)} GB accepted",
                   f"{gb:.3g} GB", "ok" if ok else "mismatch")


def _nodes(claim: Claim, raw: RawFacts) -> Finding | None:
    """Accelerator nodes: missing ones are recorded (`info`); only AIPU rows turn it into a mismatch."""
    if not claim.nodes:
        return None
    if not raw.nodes_checked:
        return Finding("device nodes", None, "not checked", "unknown")
    missing = [n for n in claim.nodes if n not in raw.nodes_present]
    if not missing:
        return Finding("device nodes", ", ".join(claim.nodes), ", ".join(claim.nodes), "ok")
    return Finding("device nodes", ", ".join(claim.nodes),
                   f"{', '.join(missing)} missing (accelerator driver not loaded, or not this chip)", "info")


def _found_text(raw: RawFacts, cpu: CpuInfo) -> str:
    bits = [raw.uname_m or "arch unknown"]
    if cpu.isa == "arm" and cpu.parts:
        counts: dict[str, int] = {}
        for p in cpu.parts:
            counts[p] = counts.get(p, 0) + 1
        bits.append(" + ".join(f"{n}x {_pretty(c)}" for c, n in counts.items()))
    elif cpu.model or cpu.vendor:
        bits.append(cpu.model or cpu.vendor or "")
    cores = count_cpu_list(raw.cpu_present) or cpu.cores
    if cores:
        bits.append(f"{cores} cores")
    if raw.mem_total_kb:
        bits.append(f"{raw.mem_total_kb / 1024.0 / 1024.0:.3g} GB")
    return ", ".join(bits)


def for_row(device: Identity | None, processor: str | None, row_verdict: str | None = None,
            row_note: str | None = None) -> tuple[str | None, str | None]:
    """The (identity, identity_note) a stored row gets: the device's verdict for the row's processor,
    unless the job itself found worse (a software WebGL renderer: `emulated`), which is kept with the
    device's note after it."""
    dev_verdict, dev_note = device.for_processor(processor) if device is not None else (None, None)
    if row_verdict is not None and _RANK.get(row_verdict, 0) >= _RANK.get(dev_verdict, 0):
        note = row_note or ""
        if dev_note and dev_verdict not in (None, "ok"):
            note = f"{note}; device: {dev_note}" if note else dev_note
        return row_verdict, note or None
    return dev_verdict, dev_note
