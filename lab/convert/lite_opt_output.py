"""Parse what `paddle_lite_opt` prints: NPU subgraphs and the ops left on the CPU.

Why: for an NNAdapter target (rockchip_npu, verisilicon_timvx, huawei_kirin_npu) opt partitions
the program into NPU subgraphs and prints (paddlelite 2.13rc0, fixture
tests/data/lite_opt/rockchip_npu_mobilenet_v1_int8.txt):
    subgraph clusters: 2
    digraph G { ... node_N[label="conv2d_0_op_subgraph_0" shape="box" ...] ...
                     node_M[label="matmul_v2_0_op" shape="box" ...] ... }
An op node whose label ends in `_op_subgraph_K` runs in NPU subgraph K; an op node ending in `_op`
(other than feed/fetch) stays on the ARM CPU. A plain arm target prints neither (both None: not
applicable, not zero). The advisor reads these from the model's meta (`lite.<target>`).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_CLUSTERS = re.compile(r"^subgraph clusters:\s*(\d+)\s*$", re.M)
_OP_NODE = re.compile(r'label="([A-Za-z0-9_]+?)_(\d+)_op(?:_subgraph_(\d+))?"\s+shape="box"')
_SAVED = re.compile(r"Model is optimized and saved into (\S+) successfully")
_IO_OPS = ("feed", "fetch")


@dataclass
class OptReport:
    npu_subgraphs: int | None
    npu_ops: dict[str, int] | None
    cpu_ops: dict[str, int] | None
    saved: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse(text: str) -> OptReport:
    m = _CLUSTERS.search(text)
    saved = _SAVED.search(text)
    if not m:
        return OptReport(None, None, None, saved.group(1) if saved else None,
                         ["no subgraph partition printed (CPU/GPU target)"])
    npu: dict[str, int] = {}
    cpu: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    for op, idx, sub in _OP_NODE.findall(text):
        if (op, idx) in seen or op in _IO_OPS:
            continue
        seen.add((op, idx))
        bucket = npu if sub else cpu
        bucket[op] = bucket.get(op, 0) + 1
    return OptReport(int(m.group(1)), dict(sorted(npu.items())), dict(sorted(cpu.items())),
                     saved.group(1) if saved else None)
