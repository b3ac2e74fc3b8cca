"""The model zoo: models/zoo.yaml entries, model ids, and which model a job runs.

Why apart from building: planning, the advisor and every command that takes a model id read the
zoo (validate it, suggest a close id, map an int8 job to its `-int8` model) without building
anything; the export that needs paddle lives in lab.models.build, meta.json in
lab.models.artifact. Every problem in a zoo file is one ConfigError naming file:line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab.core.errors import ConfigError
from lab.core.records import InputSpec

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a model id: also a directory name
_REPO_ROOT = Path(__file__).resolve().parents[2]
_ENTRY_KEYS = {"id", "builder", "inputs", "seed", "tags"}


@dataclass(frozen=True)
class ZooEntry:
    """One validated models/zoo.yaml entry."""

    id: str
    arch: str
    kwargs: dict[str, Any]
    inputs: tuple[InputSpec, ...]
    seed: int
    tags: dict[str, str]
    source: str = ""
    line: int = 0

    def canonical(self) -> dict[str, Any]:
        """What identifies the build (no file/line): hashed into the cache key."""
        return {"id": self.id, "arch": self.arch, "kwargs": self.kwargs, "seed": self.seed,
                "inputs": [input_to_json(i) for i in self.inputs]}


INT8_SUFFIX = "-int8"  # `lab models quantize ID` makes model ID-int8 (lab/models/quantize.py)
SELF_QUANTISING_RUNTIMES = ("onnxruntime",)  # make their int8 model from the fp32 one themselves


def artifact_id(model: str, precision: str, runtime: str | None = None) -> str:
    """The model a job runs: a campaign names the fp32 model, and its int8 jobs run the
    quantised `<model>-int8` (built on demand by lab.measure.orchestrate), except on a runtime that
    quantises the fp32 model with its own tool (ONNX Runtime's static QDQ, lab.convert.onnx_out)."""
    if precision == "int8" and not model.endswith(INT8_SUFFIX) and runtime not in SELF_QUANTISING_RUNTIMES:
        return model + INT8_SUFFIX
    return model


def input_to_json(spec: InputSpec) -> dict[str, Any]:
    """An input as zoo entries and meta.json write it."""
    return {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype,
            "run_shape": list(spec.run_shape)}


def input_from_json(d: dict[str, Any]) -> InputSpec:
    return InputSpec(name=d["name"], shape=tuple(int(x) for x in d["shape"]), dtype=d["dtype"],
                     run_shape=tuple(int(x) for x in d.get("run_shape") or ()))


def default_zoo_path(root: Path | str = "models") -> Path:
    """`<root>/zoo.yaml` when it exists (a user's own zoo), else the zoo shipped with the lab."""
    candidate = Path(root) / "zoo.yaml"
    return candidate if candidate.exists() else _REPO_ROOT / "models" / "zoo.yaml"


def _entry_lines(text: str) -> list[int]:
    """1-based line of each entry under `models:` (for error messages), best effort."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if node is None or not isinstance(node, yaml.MappingNode):
        return []
    for key, value in node.value:
        if key.value == "models" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _parse_shape(value: Any, where: str, path: str, line: int, *, allow_dynamic: bool) -> tuple:
    if not isinstance(value, list) or not value or not all(isinstance(x, int) and not
                                                           isinstance(x, bool) for x in value):
        raise ConfigError(f"{where}: shape must be a non-empty list of integers, got {value!r}",
                          path=path, line=line)
    for x in value:
        if x == 0 or x < -1 or (x == -1 and not allow_dynamic):
            raise ConfigError(f"{where}: bad dimension {x} in {value!r}",
                              path=path, line=line,
                              fix="use positive sizes" + (", or -1 for dynamic" if allow_dynamic
                                                          else ""))
    return tuple(value)


_PARSED: dict[str, tuple[str, dict[str, ZooEntry]]] = {}


def load_zoo(path: Path | str | None = None) -> dict[str, ZooEntry]:
    """Read and validate a zoo file; every problem is a one-line ConfigError naming file:line.

    Parsed once per process per file content (the entries are frozen): a report asks for the zoo
    once per advisor answer, hundreds of times, and reading the small file is cheap next to YAML."""
    zoo_path = Path(path) if path else default_zoo_path()
    spath = str(zoo_path)
    from lab.core.yamlio import MAX_BYTES  # bounded: aliases, nesting, tags, finite numbers
    try:
        if zoo_path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"model zoo is over the {MAX_BYTES} byte limit", path=spath)
        text = zoo_path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read model zoo: {exc.strerror}", path=spath) from None
    hit = _PARSED.get(spath)
    if hit is None or hit[0] != text:
        hit = _PARSED[spath] = (text, _parse_zoo(text, spath))
    return dict(hit[1])


def _parse_zoo(text: str, spath: str) -> dict[str, ZooEntry]:
    """The zoo file's text -> its validated entries by id."""
    from lab.core.yamlio import loads_yaml
    data = loads_yaml(text, spath)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError("expected a top-level 'models:' list", path=spath)
    lines = getattr(data["models"], "item_lines", None) or _entry_lines(text)
    zoo: dict[str, ZooEntry] = {}
    for i, raw in enumerate(data["models"]):
        entry = _parse_entry(i, raw, spath, lines[i] if i < len(lines) else 0, zoo)
        zoo[entry.id] = entry
    return zoo


def _parse_entry(i: int, raw: Any, spath: str, line: int, zoo: dict[str, ZooEntry]) -> ZooEntry:
    """models[i] -> ZooEntry (`zoo`: the entries before it, for duplicate ids)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"models[{i}] must be a mapping", path=spath, line=line)
    unknown = sorted(set(raw) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"models[{i}]: unknown key(s) {', '.join(unknown)}", path=spath,
                          line=line, fix=f"allowed: {', '.join(sorted(_ENTRY_KEYS))}")
    mid = raw.get("id")
    if not isinstance(mid, str) or not ID_RE.match(mid):
        raise ConfigError(f"models[{i}]: 'id' must be a name of letters, digits, _ . -, "
                          f"got {mid!r}", path=spath, line=line)
    if mid in zoo:
        raise ConfigError(f"duplicate model id {mid!r}", path=spath, line=line,
                          fix=f"first defined at line {zoo[mid].line}")
    builder = raw.get("builder")
    if not isinstance(builder, dict) or not isinstance(builder.get("arch"), str):
        raise ConfigError(f"model {mid!r}: 'builder' must be {{arch: NAME, kwargs: {{...}}}}",
                          path=spath, line=line)
    kwargs = builder.get("kwargs") or {}
    if not isinstance(kwargs, dict) or set(builder) - {"arch", "kwargs"}:
        raise ConfigError(f"model {mid!r}: builder takes only 'arch' and a 'kwargs' mapping",
                          path=spath, line=line)
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"model {mid!r}: 'seed' must be a non-negative integer",
                          path=spath, line=line)
    inputs = _parse_inputs(mid, raw.get("inputs"), spath, line)
    tags = raw.get("tags") or {}
    if not isinstance(tags, dict):
        raise ConfigError(f"model {mid!r}: 'tags' must be a mapping", path=spath, line=line)
    return ZooEntry(id=mid, arch=builder["arch"], kwargs=dict(kwargs), inputs=inputs, seed=seed,
                    tags={str(k): str(v) for k, v in tags.items()}, source=spath, line=line)


def _parse_inputs(mid: str, inputs_raw: Any, spath: str, line: int) -> tuple[InputSpec, ...]:
    if not isinstance(inputs_raw, list) or not inputs_raw:
        raise ConfigError(f"model {mid!r}: 'inputs' must be a non-empty list", path=spath,
                          line=line)
    inputs = []
    for j, item in enumerate(inputs_raw):
        where = f"model {mid!r} inputs[{j}]"
        if not isinstance(item, dict) or set(item) - {"name", "shape", "dtype", "run_shape"}:
            raise ConfigError(f"{where}: expected {{name, shape, dtype, run_shape}}",
                              path=spath, line=line)
        name, dtype = item.get("name"), item.get("dtype", "float32")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' is required", path=spath, line=line)
        if dtype not in DTYPES:
            raise ConfigError(f"{where}: unknown dtype {dtype!r}", path=spath, line=line,
                              fix=f"one of {', '.join(DTYPES)}")
        shape = _parse_shape(item.get("shape"), where, spath, line, allow_dynamic=True)
        run_shape = _parse_shape(item.get("run_shape", [1 if d == -1 else d for d in shape]),
                                 where + " run_shape", spath, line, allow_dynamic=False)
        if len(run_shape) != len(shape) or any(d != -1 and d != r
                                               for d, r in zip(shape, run_shape)):
            raise ConfigError(f"{where}: run_shape {list(run_shape)} does not fit shape "
                              f"{list(shape)}", path=spath, line=line)
        inputs.append(InputSpec(name=name, shape=shape, dtype=dtype, run_shape=run_shape))
    return tuple(inputs)


def suggest(model_id: str, root: Path | str = "models") -> str:
    """'did you mean 'x'? ' for a model id close to a zoo or built id ('' when none is close):
    the one did-you-mean every command that takes a model id uses."""
    import difflib
    known: set[str] = set()
    try:
        known |= set(load_zoo(default_zoo_path(root)))
    except ConfigError:
        pass
    try:
        known |= {p.parent.name for p in Path(root).glob("*/meta.json")}
    except OSError:
        pass
    close = difflib.get_close_matches(model_id or "", sorted(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def is_zoo_model(model_id: str, root: Path | str = "models") -> bool:
    try:
        return model_id in load_zoo(default_zoo_path(root))
    except ConfigError:
        return False
