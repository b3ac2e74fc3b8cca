"""Which ops of a model an NPU takes, and where the program falls back to the CPU.

Why a module of its own: NNAdapter's subgraph pass decides how much of a model runs on the NPU,
and the lab answers that before anything is measured, from Paddle Lite's own op lists
(`lab/decide/data/npu_ops.yaml`: each NNAdapter device's supported ops with the source revision,
the fusions `opt` applies first, the ops the inference passes delete) and the model's op order
(`lab.models.program`, no paddle import). The result is an `advice_records.Fallback` the rules read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from lab.core.errors import ConfigError
from lab.core.yamlio import load_yaml
from lab.decide.advice_records import Fallback
from lab.devices.backends import BACKENDS
from lab.models.program import Op, pir_op_names, read_pdmodel

NPU_OPS_PATH = Path(__file__).parent / "data" / "npu_ops.yaml"


@dataclass(frozen=True)
class NpuDevice:
    """One NNAdapter device's supported ops, as Paddle Lite lists them at a pinned revision."""

    name: str
    ops: frozenset[str]
    needs_quantized: bool
    source: str  # "repo path @ revision"
    note: str = ""


@dataclass(frozen=True)
class Fusion:
    """An `opt` fusion: `op` right after one of `after` is absorbed (into `becomes` when set)."""

    op: str
    after: frozenset[str]
    becomes: str | None
    pass_name: str


@dataclass(frozen=True)
class NpuOps:
    """npu_ops.yaml: the devices, the ops that are structure, the fusions, PIR -> legacy names."""

    devices: dict[str, NpuDevice]
    ignore: frozenset[str]
    fusions: tuple[Fusion, ...]
    aliases: dict[str, str]
    removed: dict[str, str] = field(default_factory=dict)  # op -> the inference pass deleting it
    per_call_floor_ms: float | None = None  # the NPU's fixed cost per call (`per_call_floor`)
    per_call_floor_basis: str = ""

    def normalise(self, raw: str) -> str | None:
        """One op name as Paddle Lite knows it (legacy name), or None for structure/constants.

        Accepts legacy names (`elementwise_add`), PIR names (`pd_op.add`, `pd_op.relu_`) and the
        serialised PIR form (`1.add`; dialect 0 = builtin, 1 = pd_op; `p` = a parameter).
        """
        name = raw.strip()
        if name in ("p", "") or name.startswith(("builtin.", "0.")):
            return None
        pir = False
        if name.startswith("pd_op."):
            name, pir = name[6:], True
        elif "." in name and name.split(".", 1)[0].isdigit():
            name, pir = name.split(".", 1)[1], True
        if name.endswith("_") and not name.endswith("__"):
            name = name[:-1]
        if pir:
            name = self.aliases.get(name, name)
        return None if name in self.ignore else name


_NPU_CACHE: dict[str, NpuOps] = {}


def load_npu_ops(path: str | Path | None = None) -> NpuOps:
    """The op lists of `path` (default npu_ops.yaml), parsed once per process."""
    p = str(path or NPU_OPS_PATH)
    if p in _NPU_CACHE:
        return _NPU_CACHE[p]
    doc = load_yaml(p, what="NPU op lists")  # bounded: aliases, nesting, tags, finite numbers
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), dict):
        raise ConfigError("NPU op lists need a 'devices:' mapping", path=p)
    sources = doc.get("sources") or {}
    devices = {}
    for name, d in doc["devices"].items():
        if not isinstance(d, dict) or not isinstance(d.get("ops"), list):
            raise ConfigError(f"device {name!r}: needs an 'ops:' list", path=p)
        src = sources.get(d.get("source"), {})
        if not src:
            raise ConfigError(f"device {name!r}: unknown source {d.get('source')!r}", path=p,
                              fix="add it under 'sources:' with repo, path and revision")
        devices[name] = NpuDevice(name=name, ops=frozenset(map(str, d["ops"])),
                                  needs_quantized=bool(d.get("needs_quantized")),
                                  source=f"{src.get('repo')}/{src.get('path')}@{src.get('revision')}",
                                  note=str(d.get("note") or ""))
    fusions = tuple(Fusion(op=f["op"], after=frozenset(f.get("after") or ()),
                           becomes=f.get("becomes"), pass_name=f.get("pass", ""))
                    for f in doc.get("fusions") or [])
    removed = {str(r["op"]): str(r.get("pass", "")) for r in doc.get("removed_at_inference") or []
               if isinstance(r, dict) and r.get("op")}
    floor_ms, floor_basis = _floor(doc.get("per_call_floor"), p)
    table = NpuOps(devices=devices, ignore=frozenset(doc.get("ignore") or ()), fusions=fusions,
                   aliases={str(k): str(v) for k, v in (doc.get("pir_aliases") or {}).items()},
                   removed=removed, per_call_floor_ms=floor_ms, per_call_floor_basis=floor_basis)
    _NPU_CACHE[p] = table
    return table


def _floor(entry: object, path: str) -> tuple[float | None, str]:
    """`per_call_floor: {ms, confidence, basis}` -> (ms, "confidence: basis"); absent -> None."""
    if entry is None:
        return None, ""
    ms = entry.get("ms") if isinstance(entry, dict) else None
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not 0 < ms < 1000:
        raise ConfigError("per_call_floor needs 'ms:', a positive number of milliseconds",
                          path=path)
    return float(ms), f"{entry.get('confidence', 'assumed')}: {' '.join(str(entry.get('basis', '')).split())}"


def per_call_floor(table: NpuOps | None = None) -> tuple[float | None, str]:
    """The NPU's fixed cost per inference call in ms and its basis (npu_ops.yaml
    `per_call_floor`): no AIPU call is faster, whatever its compute."""
    table = table or load_npu_ops()
    return table.per_call_floor_ms, table.per_call_floor_basis


def partition(raw_ops: Iterable[str], nnadapter_device: str, table: NpuOps | None = None) -> Fallback:
    """Which ops fall back to the CPU on one NNAdapter device, and how many NPU subgraphs result.

    An approximation of NNAdapter's subgraph pass: ops are walked in program order (after the
    fusions `opt` applies first), and a boundary is counted at each supported/unsupported
    transition. The real partitioner works on the data-flow graph, so parallel branches can give
    fewer (or more) subgraphs than this count.
    """
    table = table or load_npu_ops()
    dev = table.devices.get(nnadapter_device)
    if dev is None:
        raise ConfigError(f"no NPU op list for NNAdapter device {nnadapter_device!r}",
                          path=str(NPU_OPS_PATH), fix="known: " + ", ".join(table.devices))
    seq: list[str] = []
    fused: dict[str, int] = {}
    removed: dict[str, int] = {}
    for raw in raw_ops:
        op = table.normalise(raw)
        if op is None:
            continue
        if op in table.removed:  # deleted by an inference pass: neither NPU op nor fallback
            key = f"{op} ({table.removed[op]})"
            removed[key] = removed.get(key, 0) + 1
            continue
        fusion = next((f for f in table.fusions if f.op == op and seq and seq[-1] in f.after), None)
        if fusion is not None:
            fused[f"{op}->{fusion.becomes or seq[-1]} ({fusion.pass_name})"] = fused.get(
                f"{op}->{fusion.becomes or seq[-1]} ({fusion.pass_name})", 0) + 1
            if fusion.becomes:
                seq[-1] = fusion.becomes
            continue
        seq.append(op)
    fallback: dict[str, int] = {}
    subgraphs = cpu_segments = supported = 0
    prev: bool | None = None
    for op in seq:
        ok = op in dev.ops
        if ok:
            supported += 1
        else:
            fallback[op] = fallback.get(op, 0) + 1
        if ok != prev:
            if ok:
                subgraphs += 1
            else:
                cpu_segments += 1
        prev = ok
    return Fallback(nnadapter_device=nnadapter_device, supported_ops=supported,
                    fallback_ops=fallback, subgraphs=subgraphs, cpu_segments=cpu_segments,
                    fused=fused, needs_quantized=dev.needs_quantized, source=dev.source,
                    removed=removed)


def fallbacks(ops: list[str], nnadapter: Iterable[str], measured_backend: str | None = None,
              table: NpuOps | None = None) -> list[Fallback]:
    """`partition` on each of the device's NNAdapter paths that has an op list, the path of the
    measured AIPU backend first: the answer quotes the first, the path that was measured (else the
    device's configured one), never the one that happens to suit this model best."""
    table = table or load_npu_ops()
    cands = [d for d in nnadapter if d in table.devices]
    b = BACKENDS.get(measured_backend) if measured_backend else None
    if b is not None and b.nnadapter_device in table.devices:
        cands = [b.nnadapter_device] + [c for c in cands if c != b.nnadapter_device]
    return [partition(ops, d, table) for d in cands]


# --------------------------------------------------------------------------- the model's ops
def op_sequence(model_file: str | Path) -> list[str]:
    """Op names of a program in program order (PIR names kept with their dialect prefix)."""
    path = Path(model_file)
    if path.suffix.lower() == ".json":
        return pir_op_names(path)  # bounded, type-checked walk: a model file is input
    return [_identity_scale(op) for op in read_pdmodel(path).ops]


def _identity_scale(op: Op) -> str:
    """`identity_scale` for a scale op that multiplies by 1 and adds 0 (the inference passes
    delete it; npu_ops.yaml `removed_at_inference`), else the op type."""
    if op.type == "scale":
        a = op.attrs or {}
        try:
            if float(a.get("scale", 0)) == 1.0 and float(a.get("bias", 1)) == 0.0:
                return "identity_scale"
        except (TypeError, ValueError):
            pass
    return op.type
