"""Model zoo: build/export zoo models, register user models, load built artifacts.

Why this shape:
- Zoo models are built here from `paddle.vision.models` (or a few lab architectures) with seeded
  random weights, so nothing is downloaded and every machine builds byte-identical weights.
- Each model is exported twice: Paddle 3.x PIR `.json` + `.pdiparams` (what Paddle Inference 3.x
  loads by default) and the legacy `.pdmodel` + `.pdiparams` (Paddle Lite cannot read `.json`).
  `FLAGS_enable_pir_api=0` only takes effect when set before paddle initialises, so each format is
  exported by its own subprocess (`python -m lab.models.zoo --export-worker ...`); this also keeps
  paddle out of the host process, which imports this module cheaply.
- `models/<id>/meta.json` is the single record of a built model: files and their sha256, inputs,
  FLOPs (MACs), params, op histogram, the versions it was built with, and the cached static
  analysis. A rebuild with the same zoo entry + paddle version + builder version is skipped.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from lab.core.versions import dist_version, paddle_version
from lab.core.errors import ConfigError, LabError
from lab.core.records import InputSpec

META_SCHEMA = "hwlab.model/1"
# Bump when the export code changes in a way that changes the artifacts: invalidates the cache.
BUILDER_VERSION = 1

MODEL_FILE = "inference.json"
PARAMS_FILE = "inference.pdiparams"
# Distinct names (not a legacy/ subdir): files are pushed flat into one per-model device directory.
LEGACY_MODEL_FILE = "legacy.pdmodel"
LEGACY_PARAMS_FILE = "legacy.pdiparams"

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")
LAB_ARCHS = ("text_lstm", "tiny_mlp", "tiny_detector", "digits_cnn")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REPO_ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------- records
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
                "inputs": [_input_to_json(i) for i in self.inputs]}


@dataclass
class ModelArtifact:
    """A built (zoo) or registered (user) model, as recorded in models/<id>/meta.json.

    `sha256` is the content hash of what the runner loads: sha256 over the bytes of the model file
    followed by the bytes of the params file (`files_sha256(model, params)`), the same definition
    as the runner JSON's `model.sha256`. `legacy_sha256` is the same for the legacy pair.
    `flops` are multiply-accumulates (MACs) at the inputs' run shape; None with `flops_note` when
    they could not be counted.
    """

    id: str
    dir: Path
    json_path: Path | None
    pdiparams_path: Path | None
    pdmodel_path: Path | None
    legacy_pdiparams_path: Path | None
    sha256: str
    inputs: list[InputSpec]
    flops: int | None
    params: int | None
    op_histogram: dict[str, int]
    source: str  # zoo | user
    legacy_sha256: str | None = None
    flops_note: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # relative name -> sha256
    built_with: dict[str, str] = field(default_factory=dict)
    analysis: dict[str, Any] | None = None  # cached lab.models.analysis.ModelAnalysis (as dict)
    parent: str | None = None  # the fp32 model an `-int8` model was quantised from (lab.models.quantize)
    status: str = "ok"  # "failed": a quantised model that failed its agreement check (kept)
    eval_data: str | None = None  # a user's eval .npz recorded by `lab models accuracy --eval-data`

    @property
    def model_path(self) -> Path:
        """The file Paddle Inference should load: the .json when there is one, else the .pdmodel."""
        path = self.json_path or self.pdmodel_path
        assert path is not None
        return path

    @property
    def params_path(self) -> Path | None:
        return self.pdiparams_path if self.json_path else (self.legacy_pdiparams_path
                                                           or self.pdiparams_path)

    @property
    def model_format(self) -> str:
        return "json" if self.json_path else "pdmodel"


@dataclass(frozen=True)
class ModelStatus:
    """One row of `lab models list`."""

    id: str
    source: str
    built: bool
    flops: int | None
    params: int | None
    inputs: list[InputSpec]
    sha256: str | None
    note: str = ""


# ------------------------------------------------------------------------------------ utilities
INT8_SUFFIX = "-int8"  # `lab models quantize ID` makes model ID-int8 (lab/models/quantize.py)


SELF_QUANTISING_RUNTIMES = ("onnxruntime",)  # make their int8 model from the fp32 one themselves


def artifact_id(model: str, precision: str, runtime: str | None = None) -> str:
    """The model a job runs: a campaign names the fp32 model, and its int8 jobs run the
    quantised `<model>-int8` (built on demand by lab.measure.orchestrate), except on a runtime that
    quantises the fp32 model with its own tool (ONNX Runtime's static QDQ, lab.convert.onnx_out)."""
    if precision == "int8" and not model.endswith(INT8_SUFFIX) and runtime not in SELF_QUANTISING_RUNTIMES:
        return model + INT8_SUFFIX
    return model


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_sha256(*paths: Path | str | None) -> str:
    """sha256 over the concatenated bytes of `paths` (None skipped): the artifact content hash."""
    h = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _input_to_json(spec: InputSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype,
            "run_shape": list(spec.run_shape)}


def _input_from_json(d: dict[str, Any]) -> InputSpec:
    return InputSpec(name=d["name"], shape=tuple(int(x) for x in d["shape"]), dtype=d["dtype"],
                     run_shape=tuple(int(x) for x in d.get("run_shape") or ()))


def default_zoo_path(root: Path | str = "models") -> Path:
    """`<root>/zoo.yaml` when it exists (a user's own zoo), else the zoo shipped with the lab."""
    candidate = Path(root) / "zoo.yaml"
    return candidate if candidate.exists() else _REPO_ROOT / "models" / "zoo.yaml"


# ------------------------------------------------------------------------------------------ zoo
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


def load_zoo(path: Path | str | None = None) -> dict[str, ZooEntry]:
    """Read and validate a zoo file; every problem is a one-line ConfigError naming file:line."""
    zoo_path = Path(path) if path else default_zoo_path()
    spath = str(zoo_path)
    from lab.core.yamlio import MAX_BYTES, loads_yaml  # bounded: aliases, nesting, tags, finite numbers
    try:
        if zoo_path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"model zoo is over the {MAX_BYTES} byte limit", path=spath)
        text = zoo_path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read model zoo: {exc.strerror}", path=spath) from None
    data = loads_yaml(text, spath)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ConfigError("expected a top-level 'models:' list", path=spath)
    lines = getattr(data["models"], "item_lines", None) or _entry_lines(text)
    allowed = {"id", "builder", "inputs", "seed", "tags"}
    zoo: dict[str, ZooEntry] = {}
    for i, raw in enumerate(data["models"]):
        line = lines[i] if i < len(lines) else 0
        if not isinstance(raw, dict):
            raise ConfigError(f"models[{i}] must be a mapping", path=spath, line=line)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(f"models[{i}]: unknown key(s) {', '.join(unknown)}", path=spath,
                              line=line, fix=f"allowed: {', '.join(sorted(allowed))}")
        mid = raw.get("id")
        if not isinstance(mid, str) or not _ID_RE.match(mid):
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
        inputs_raw = raw.get("inputs")
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
        tags = raw.get("tags") or {}
        if not isinstance(tags, dict):
            raise ConfigError(f"model {mid!r}: 'tags' must be a mapping", path=spath, line=line)
        zoo[mid] = ZooEntry(id=mid, arch=builder["arch"], kwargs=dict(kwargs),
                            inputs=tuple(inputs), seed=seed,
                            tags={str(k): str(v) for k, v in tags.items()},
                            source=spath, line=line)
    return zoo


def build_key(entry: ZooEntry, paddle: str | None = None) -> str:
    """Cache key: zoo entry (incl. seed) + paddle version + builder version."""
    doc = {"entry": entry.canonical(), "paddle": paddle or paddle_version(),
           "builder": BUILDER_VERSION}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- meta
def _meta_path(root: Path | str, model_id: str) -> Path:
    return Path(root) / model_id / "meta.json"


def _read_meta(root: Path | str, model_id: str) -> dict[str, Any] | None:
    path = _meta_path(root, model_id)
    if not path.exists():
        return None
    from lab.core import jsonio
    fix = f"run `lab models build {model_id} --force`"
    try:
        meta = jsonio.load_file(path, what="model meta", max_bytes=64 * 1024 * 1024)
    except ConfigError as exc:
        raise ConfigError(f"model {model_id!r}: unreadable meta ({exc})", fix=fix) from None
    problem = _meta_problem(meta)
    if problem:
        raise ConfigError(f"model {model_id!r}: damaged meta: {problem}", path=str(path), fix=fix)
    return meta


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a meta.json document (None when it has the shape the lab writes)."""
    import math
    if not isinstance(meta, dict):
        return f"a JSON object is expected, not {type(meta).__name__}"
    for key in ("id", "sha256"):
        if not isinstance(meta.get(key), str):
            return f"{key!r} must be a string"
    for key in ("model_file", "params_file", "legacy_model_file", "legacy_params_file",
                "legacy_sha256", "format", "source", "flops_note", "schema"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"{key!r} must be a string"
    for key in ("model_file", "params_file", "legacy_model_file", "legacy_params_file"):
        rel = meta.get(key)
        if rel and (rel.startswith("/") or ".." in rel.split("/")):
            return f"{key!r} {rel[:60]!r} must name a file inside the model's folder"
    for key in ("flops", "params"):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v < 0):
            return f"{key!r} must be a non-negative number"
    for key in ("files", "tags", "built_with", "op_histogram"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"{key!r} must be an object"
    files = meta.get("files") or {}
    if any(not isinstance(k, str) or k.startswith("/") or ".." in k.split("/") for k in files):
        return "'files' must name files inside the model's folder"
    inputs = meta.get("inputs", [])
    if not isinstance(inputs, list):
        return "'inputs' must be a list"
    for i in inputs:
        if (not isinstance(i, dict) or not isinstance(i.get("name"), str)
                or not isinstance(i.get("dtype"), str) or not isinstance(i.get("shape"), list)
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in i["shape"])
                or not isinstance(i.get("run_shape") or [], list)
                or not all(isinstance(x, int) and not isinstance(x, bool)
                           for x in i.get("run_shape") or [])):
            return "each input must be {name, shape: [int], dtype, run_shape: [int]}"
    return None


def read_meta(model_id: str, root: Path | str = "models") -> dict[str, Any] | None:
    """A model's meta.json as a dict (None when the model is not built)."""
    return _read_meta(root, model_id)


def write_meta(model_id: str, root: Path | str, meta: dict[str, Any]) -> None:
    """Replace a model's meta.json atomically (a reader never sees half a file)."""
    _write_json_atomic(_meta_path(root, model_id), meta)


def update_meta(model_id: str, root: Path | str = "models", **sections: Any) -> dict[str, Any]:
    """Set top-level sections of a built model's meta.json (agreement, accuracy, status, lite ...)
    and write it back atomically; returns the new meta."""
    meta = _read_meta(root, model_id)
    if meta is None:
        raise ConfigError(f"model {model_id!r} is not built", fix=f"run `lab models build {model_id}`")
    meta.update(sections)
    write_meta(model_id, root, meta)
    return meta


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".meta.", dir=str(path.parent))
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def _artifact_from_meta(meta: dict[str, Any], mdir: Path) -> ModelArtifact:
    def p(key: str) -> Path | None:
        rel = meta.get(key)
        return mdir / rel if rel else None

    return ModelArtifact(
        id=meta["id"], dir=mdir, json_path=p("model_file") if meta.get("format") == "json" else None,
        pdiparams_path=p("params_file"),
        pdmodel_path=p("legacy_model_file") or (p("model_file") if meta.get("format") == "pdmodel"
                                                else None),
        legacy_pdiparams_path=p("legacy_params_file"),
        sha256=meta["sha256"], legacy_sha256=meta.get("legacy_sha256"),
        inputs=[_input_from_json(i) for i in meta.get("inputs", [])],
        flops=meta.get("flops"), flops_note=meta.get("flops_note", ""), params=meta.get("params"),
        op_histogram=dict(meta.get("op_histogram") or {}), source=meta.get("source", "zoo"),
        tags=dict(meta.get("tags") or {}), files=dict(meta.get("files") or {}),
        built_with=dict(meta.get("built_with") or {}), analysis=meta.get("analysis"),
        parent=(meta.get("parent") or {}).get("id"), status=meta.get("status", "ok"),
        eval_data=meta.get("eval_data"))


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


def load_artifact(model_id: str, root: Path | str = "models") -> ModelArtifact:
    """Read models/<id>/meta.json and check that every recorded file is there."""
    if not _ID_RE.match(model_id or ""):
        raise ConfigError(f"model id {model_id!r}: use letters, digits, _ . - (max 64)")
    mdir = Path(root) / model_id
    meta = _read_meta(root, model_id)
    if meta is None:
        if not is_zoo_model(model_id, root):
            raise ConfigError(f"unknown model {model_id!r}: not built under {root}/ and not in the "
                              "zoo", fix=suggest(model_id, root) + "see `lab models list`, or "
                              f"register your own files with `lab models add {model_id} "
                              "--model-file PATH ...`")
        opt = "" if str(root) == "models" else f" --models-root {root}"
        raise ConfigError(f"model {model_id!r} is not built ({_meta_path(root, model_id)} "
                          f"missing)", fix=f"run `lab models build {model_id}{opt}`")
    if meta.get("schema") != META_SCHEMA:
        raise ConfigError(f"model {model_id!r}: meta schema {meta.get('schema')!r} is not "
                          f"{META_SCHEMA!r}", path=str(_meta_path(root, model_id)),
                          fix=f"run `lab models build {model_id} --force`")
    for rel in meta.get("files", {}):
        if not (mdir / rel).is_file():
            how = (f"run `lab models build {model_id}`" if meta.get("source") == "zoo"
                   else f"register it again with `lab models add {model_id} ...`")
            raise ConfigError(f"model {model_id!r}: file {mdir / rel} missing; {how}")
    return _artifact_from_meta(meta, mdir)


def verify_artifact(art: ModelArtifact) -> list[str]:
    """Files whose sha256 no longer matches meta.json (empty list = intact)."""
    return [rel for rel, digest in art.files.items()
            if not (art.dir / rel).is_file() or sha256_file(art.dir / rel) != digest]


# ---------------------------------------------------------------------------------------- build
def _run_worker(job: dict[str, Any], legacy: bool, timeout: float) -> subprocess.Popen:
    env = dict(os.environ)
    env["FLAGS_enable_pir_api"] = "0" if legacy else "1"
    env.setdefault("GLOG_minloglevel", "2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "lab.models.zoo", "--export-worker",
                             json.dumps(job)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _collect(proc: subprocess.Popen, what: str, model_id: str, timeout: float) -> None:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise LabError(f"model {model_id!r}: {what} export timed out after {timeout:.0f} s")
    if proc.returncode != 0:
        from lab.core.errors import excerpt
        raise LabError(f"model {model_id!r}: {what} export failed (exit {proc.returncode}): "
                       f"{excerpt(out)}")


def build(model_id: str, out_root: Path | str = "models", *, zoo_path: Path | str | None = None,
          force: bool = False, analyze: bool = True, timeout: float = 900.0,
          log: Callable[[str], None] | None = None) -> ModelArtifact:
    """Build one zoo model into `<out_root>/<id>/` (both formats), or reuse the cached build."""
    zoo = load_zoo(zoo_path or default_zoo_path(out_root))
    if model_id not in zoo:
        raise ConfigError(f"unknown model {model_id!r}",
                          path=str(zoo_path or default_zoo_path(out_root)),
                          fix=suggest(model_id, out_root) + f"zoo models: {', '.join(sorted(zoo))}")
    entry = zoo[model_id]
    key = build_key(entry)
    mdir = Path(out_root) / model_id
    meta = _read_meta(out_root, model_id)
    if meta and not force and meta.get("build_key") == key and meta.get("schema") == META_SCHEMA:
        art = load_artifact(model_id, out_root) if all((mdir / r).is_file()
                                                       for r in meta.get("files", {})) else None
        if art is not None and not verify_artifact(art):
            if analyze and _analysis_outdated(meta):
                # Cheap refresh (no export): the analysis rules changed since this build.
                _attach_analysis(meta, mdir, analyze)
                _write_json_atomic(mdir / "meta.json", meta)
                art = _artifact_from_meta(meta, mdir)
            if log:
                log(f"{model_id}: up to date (sha256 {art.sha256[:12]})")
            return art
    if log:
        log(f"{model_id}: exporting .json and legacy .pdmodel ...")
    started = time.monotonic()
    Path(out_root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id}.build-", dir=str(out_root)))
    try:
        job = {"arch": entry.arch, "kwargs": entry.kwargs, "seed": entry.seed,
               "inputs": [_input_to_json(i) for i in entry.inputs]}
        pir = _run_worker(dict(job, prefix=str(tmp / "inference"), count=True,
                               result=str(tmp / "count.json")), legacy=False, timeout=timeout)
        legacy = _run_worker(dict(job, prefix=str(tmp / "legacy"), count=False),
                             legacy=True, timeout=timeout)
        try:
            _collect(pir, "PIR .json", model_id, timeout)
        finally:
            _collect(legacy, "legacy .pdmodel", model_id, timeout)
        counted = json.loads((tmp / "count.json").read_text())
        (tmp / "count.json").unlink()
        for rel in (MODEL_FILE, PARAMS_FILE, LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE):
            if not (tmp / rel).is_file():
                raise LabError(f"model {model_id!r}: export did not write {rel}")
        # Move into place; meta.json is written last, so a half-moved dir is never "built".
        mdir.mkdir(parents=True, exist_ok=True)
        (mdir / "meta.json").unlink(missing_ok=True)
        extra = [p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file()]
        for rel in extra:
            os.replace(tmp / rel, mdir / rel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = {rel: sha256_file(mdir / rel) for rel in
             (MODEL_FILE, PARAMS_FILE, LEGACY_MODEL_FILE, LEGACY_PARAMS_FILE)}
    meta = {
        "schema": META_SCHEMA, "id": model_id, "source": "zoo", "format": "json",
        "build_key": key, "builder_version": BUILDER_VERSION, "zoo_entry": entry.canonical(),
        "model_file": MODEL_FILE, "params_file": PARAMS_FILE,
        "legacy_model_file": LEGACY_MODEL_FILE, "legacy_params_file": LEGACY_PARAMS_FILE,
        "files": files,
        "sha256": files_sha256(mdir / MODEL_FILE, mdir / PARAMS_FILE),
        "legacy_sha256": files_sha256(mdir / LEGACY_MODEL_FILE, mdir / LEGACY_PARAMS_FILE),
        "inputs": [_input_to_json(i) for i in entry.inputs],
        "flops": counted.get("flops"), "flops_note": counted.get("flops_note", ""),
        "params": counted.get("params"), "persistable_numel": counted.get("persistable_numel"),
        "tags": entry.tags,
        "built_with": {"paddle": counted.get("paddle") or paddle_version(),
                       "numpy": counted.get("numpy") or dist_version("numpy"),
                       "python": counted.get("python", "")},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 2),
        "op_histogram": {}, "analysis": None,
    }
    _attach_analysis(meta, mdir, analyze)
    _write_json_atomic(mdir / "meta.json", meta)
    if log:
        log(f"{model_id}: built in {meta['build_seconds']:.1f} s (sha256 {meta['sha256'][:12]})")
    return _artifact_from_meta(meta, mdir)


def _analysis_outdated(meta: dict[str, Any]) -> bool:
    try:
        from lab.models.analysis import ANALYSIS_VERSION
    except ImportError:
        return False
    cached = meta.get("analysis") or {}
    return cached.get("analysis_version") != ANALYSIS_VERSION or not meta.get("op_histogram")


def _attach_analysis(meta: dict[str, Any], mdir: Path, analyze: bool) -> None:
    """Fill op_histogram (always) and the cached static analysis (when `analyze`)."""
    try:
        from lab.models import analysis
    except ImportError:  # analysis module not present yet
        return
    model = mdir / meta["model_file"]
    res = analysis.analyze(model, params_file=mdir / meta["params_file"]
                           if meta.get("params_file") else None,
                           run_shapes={i["name"]: i["run_shape"] for i in meta["inputs"]})
    meta["op_histogram"] = dict(res.op_histogram)
    if analyze:
        meta["analysis"] = res.to_dict()


def build_many(model_ids: Iterable[str], out_root: Path | str = "models", **kw) -> list[ModelArtifact]:
    return [build(mid, out_root, **kw) for mid in model_ids]


# ------------------------------------------------------------------------------------ user models
def parse_input_arg(text: str) -> InputSpec:
    """`name:1x3x224x224:float32` (run shape; dtype defaults to float32) -> InputSpec."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ConfigError(f"--input {text!r}: expected NAME:SHAPE[:DTYPE], e.g. "
                          f"x:1x3x224x224:float32")
    name, shape_text = parts[0], parts[1]
    dtype = parts[2] if len(parts) == 3 else "float32"
    try:
        shape = tuple(int(d) for d in shape_text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input {text!r}: shape {shape_text!r} must be positive integers "
                          f"joined by 'x', e.g. 1x3x224x224")
    if dtype not in DTYPES:
        raise ConfigError(f"--input {text!r}: unknown dtype {dtype!r}",
                          fix=f"one of {', '.join(DTYPES)}")
    return InputSpec(name=name, shape=shape, dtype=dtype, run_shape=shape)


def add_user_model(model_id: str, model_file: Path | str, params_file: Path | str | None,
                   inputs: list[InputSpec], root: Path | str = "models", *,
                   zoo_path: Path | str | None = None) -> ModelArtifact:
    """Register the user's own exported model (.json or .pdmodel + .pdiparams) as models/<id>/."""
    if not _ID_RE.match(model_id or ""):
        raise ConfigError(f"model id {model_id!r}: use letters, digits, _ . - (max 64)")
    zoo_file = Path(zoo_path) if zoo_path else default_zoo_path(root)
    if zoo_file.exists() and model_id in load_zoo(zoo_file):
        raise ConfigError(f"model id {model_id!r} is a zoo model", path=str(zoo_file),
                          fix="choose another id")
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ConfigError(f"model {model_id!r}: --model-file {model_file} does not exist")
    suffix = model_file.suffix.lower()
    if suffix not in (".json", ".pdmodel"):
        raise ConfigError(f"model {model_id!r}: --model-file {model_file} must be a .json (Paddle "
                          f"3.x PIR) or .pdmodel (legacy) file")
    if params_file is None:
        guess = model_file.with_suffix(".pdiparams")
        if not guess.is_file():
            raise ConfigError(f"model {model_id!r}: no params file next to {model_file} "
                              f"({guess.name} missing)", fix="pass --params-file PATH")
        params_file = guess
    params_file = Path(params_file)
    if not params_file.is_file():
        raise ConfigError(f"model {model_id!r}: --params-file {params_file} does not exist")
    if not inputs:
        raise ConfigError(f"model {model_id!r}: at least one --input NAME:SHAPE:DTYPE is required")
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"model {model_id!r}: duplicate --input names {names}")

    from lab.models import analysis  # static analysis of the user's file (no paddle import for .json)
    try:
        res = analysis.analyze(model_file, params_file=params_file,
                               run_shapes={i.name: i.run_shape for i in inputs})
    except LabError as exc:
        raise ConfigError(f"model {model_id!r}: cannot read {model_file}: {exc}") from None
    declared = {i.name: i for i in res.inputs}
    if declared:
        missing = [n for n in names if n not in declared]
        if missing:
            raise ConfigError(f"model {model_id!r}: --input {', '.join(missing)} not among the "
                              f"model's inputs ({', '.join(sorted(declared))})")
        absent = sorted(set(declared) - set(names))
        if absent:
            raise ConfigError(f"model {model_id!r}: no --input given for model input(s) "
                              f"{', '.join(absent)}")
    specs = []
    for spec in inputs:
        d = declared.get(spec.name)
        shape = spec.run_shape
        if d is not None and d.shape:
            if len(d.shape) != len(spec.run_shape) or any(
                    a != -1 and a != b for a, b in zip(d.shape, spec.run_shape)):
                raise ConfigError(f"model {model_id!r}: --input {spec.name} shape "
                                  f"{'x'.join(map(str, spec.run_shape))} does not fit the model's "
                                  f"declared shape {list(d.shape)}")
            shape = d.shape
        specs.append(InputSpec(spec.name, tuple(shape), spec.dtype, spec.run_shape))

    mdir = Path(root) / model_id
    fmt = "json" if suffix == ".json" else "pdmodel"
    mname, pname = f"inference{suffix}", "inference.pdiparams"
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "meta.json").unlink(missing_ok=True)
    for src, dst in ((model_file, mname), (params_file, pname)):
        tmp = mdir / f".{dst}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, mdir / dst)
    files = {mname: sha256_file(mdir / mname), pname: sha256_file(mdir / pname)}
    flops, note = res.estimated_macs(specs)
    meta = {
        "schema": META_SCHEMA, "id": model_id, "source": "user", "format": fmt,
        "build_key": None, "builder_version": BUILDER_VERSION, "zoo_entry": None,
        "model_file": mname, "params_file": pname,
        "legacy_model_file": mname if fmt == "pdmodel" else None,
        "legacy_params_file": pname if fmt == "pdmodel" else None,
        "files": files, "sha256": files_sha256(mdir / mname, mdir / pname),
        "legacy_sha256": files_sha256(mdir / mname, mdir / pname) if fmt == "pdmodel" else None,
        "inputs": [_input_to_json(i) for i in specs],
        "flops": flops, "flops_note": note, "params": res.params,
        "persistable_numel": res.persistable_numel,
        "tags": {}, "built_with": {}, "origin": {"model_file": str(model_file.resolve()),
                                                 "params_file": str(params_file.resolve())},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "op_histogram": dict(res.op_histogram), "analysis": res.to_dict(),
    }
    _write_json_atomic(mdir / "meta.json", meta)
    return _artifact_from_meta(meta, mdir)


# ----------------------------------------------------------------------------------------- list
def list_models(root: Path | str = "models", zoo_path: Path | str | None = None) -> list[ModelStatus]:
    """Zoo entries (built or not) plus every registered user model under `root`."""
    zoo = load_zoo(zoo_path or default_zoo_path(root))
    ids = list(zoo)
    rootp = Path(root)
    if rootp.is_dir():
        ids += sorted(p.name for p in rootp.iterdir()
                      if p.is_dir() and p.name not in zoo and (p / "meta.json").is_file())
    rows = []
    for mid in ids:
        try:
            art = load_artifact(mid, root)
        except ConfigError as exc:
            entry = zoo.get(mid)
            rows.append(ModelStatus(mid, "zoo" if entry else "user", False, None, None,
                                    list(entry.inputs) if entry else [], None,
                                    note="" if "not built" in str(exc) else str(exc)))
            continue
        rows.append(ModelStatus(mid, art.source, True, art.flops, art.params, art.inputs,
                                art.sha256))
    return rows


# ------------------------------------------------------------------------- export worker (child)
def _lab_architectures() -> dict[str, Callable[..., Any]]:
    """Lab-defined architectures (imported lazily: paddle lives only in the worker process)."""
    import paddle
    from paddle import nn

    class TextLSTM(nn.Layer):
        """Embedding + LSTM + linear head over the last hidden state; any sequence length."""

        def __init__(self, vocab_size=10000, embed_dim=128, hidden_size=256, num_layers=1,
                     num_classes=2):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed_dim)
            self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers)
            self.fc = nn.Linear(hidden_size, num_classes)

        def forward(self, tokens):
            _, (h, _) = self.lstm(self.embedding(tokens))
            return self.fc(h[-1])

    class TinyMLP(nn.Layer):
        def __init__(self, in_features=64, hidden=128, num_classes=10):
            super().__init__()
            self.fc1 = nn.Linear(in_features, hidden)
            self.fc2 = nn.Linear(hidden, num_classes)

        def forward(self, x):
            return self.fc2(nn.functional.relu(self.fc1(x)))

    class TinyDetector(nn.Layer):
        """Conv backbone, score+box head, then nonzero(score > t): output size depends on content."""

        def __init__(self, channels=16, threshold=0.5):
            super().__init__()
            self.backbone = nn.Sequential(
                nn.Conv2D(3, channels, 3, stride=2, padding=1), nn.ReLU(),
                nn.Conv2D(channels, channels, 3, stride=2, padding=1), nn.ReLU())
            self.head = nn.Conv2D(channels, 5, 1)
            # Threshold on logits (logit(t)): paddle 3.3.1's sigmoid has no legacy-static path.
            self.logit_threshold = math.log(threshold / (1.0 - threshold))

        def forward(self, image):
            out = self.head(self.backbone(image))
            logits = out[:, 0]
            boxes = paddle.transpose(out[:, 1:], [0, 2, 3, 1])
            keep = paddle.nonzero(logits > self.logit_threshold)
            return paddle.gather_nd(boxes, keep), paddle.gather_nd(logits, keep)

    from lab.models.digits import architectures as digits_architectures  # trained on bundled data
    return {"text_lstm": TextLSTM, "tiny_mlp": TinyMLP, "tiny_detector": TinyDetector,
            **digits_architectures()}


def _count(layer: Any, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """MACs at the run shape via paddle's layer rules, plus LSTM MACs from layer shapes."""
    import numpy
    import paddle
    from paddle import nn
    from paddle.hapi.dynamic_flops import dynamic_flops

    params = int(sum(int(numpy.prod(p.shape)) for p in layer.parameters()))
    persist = params + int(sum(int(numpy.prod(b.shape)) for b in layer.buffers()))
    out = {"params": params, "persistable_numel": persist, "flops": None, "flops_note": "",
           "paddle": paddle.__version__, "numpy": numpy.__version__,
           "python": ".".join(map(str, sys.version_info[:3]))}
    if len(inputs) != 1:
        out["flops_note"] = "not counted: paddle.flops takes a single input"
        return out
    spec = inputs[0]
    shape = spec["run_shape"]
    if spec["dtype"].startswith("float"):
        x = paddle.randn(shape, dtype=spec["dtype"])
    else:
        x = paddle.zeros(shape, dtype=spec["dtype"])  # index 0 is valid for any embedding
    rnn_macs: list[int] = []

    def lstm_hook(m, ins, _outs):
        seq = ins[0].shape  # [B, T, I] (time_major False) or [T, B, I]
        b, t = (seq[1], seq[0]) if m.time_major else (seq[0], seq[1])
        dirs = m.num_directions
        total, width = 0, m.input_size
        for _ in range(m.num_layers):
            total += dirs * 4 * m.hidden_size * (width + m.hidden_size)
            width = m.hidden_size * dirs
        rnn_macs.append(int(b * t * total))

    hooks = [m.register_forward_post_hook(lstm_hook) for m in layer.sublayers()
             if isinstance(m, nn.LSTM)]
    try:
        macs = int(dynamic_flops(layer, x, print_detail=False))
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal: FLOPs become unknown
        out["flops_note"] = f"not counted: paddle.flops failed: {type(exc).__name__}: {exc}"[:300]
        return out
    finally:
        for h in hooks:
            h.remove()
    note = f"MACs via paddle.flops layer rules at run shape {shape}"
    if rnn_macs:
        macs += sum(rnn_macs)
        note += " + LSTM gates counted from layer shapes (4*H*(I+H) per step)"
    out["flops"], out["flops_note"] = macs, note
    return out


def _export_worker(job: dict[str, Any]) -> None:
    import paddle
    from paddle.static import InputSpec as PInputSpec

    paddle.seed(int(job["seed"]))
    arch, kwargs = job["arch"], job.get("kwargs") or {}
    custom = _lab_architectures()
    if arch in custom:
        layer = custom[arch](**kwargs)
    else:
        ctor = getattr(paddle.vision.models, arch, None)
        if ctor is None:
            raise SystemExit(f"unknown architecture {arch!r}: not in paddle.vision.models nor "
                             f"{', '.join(LAB_ARCHS)}")
        layer = ctor(pretrained=False, **kwargs)
    layer.eval()
    if os.environ.get("FLAGS_enable_pir_api") == "0":
        # Legacy export of nn.LSTM/GRU in 3.3.1 fails ("Unknown place type: Place(undefined:0)"):
        # RNNBase keeps an uninitialised dropout-state tensor that to_static cannot convert.
        # Give it a real (unused in eval) one; the fused `rnn` op is kept, which Paddle Lite runs.
        for sub in layer.sublayers():
            if isinstance(sub, paddle.nn.layer.rnn.RNNBase) and hasattr(sub, "_dropout_state"):
                sub._dropout_state = paddle.zeros([1], dtype="uint8")
    specs = [PInputSpec(i["shape"], i["dtype"], i["name"]) for i in job["inputs"]]
    Path(job["prefix"]).parent.mkdir(parents=True, exist_ok=True)
    paddle.jit.save(layer, job["prefix"], input_spec=specs)
    if job.get("count"):
        # After saving: dynamic_flops registers buffers on the layer, which must not be exported.
        result = _count(layer, job["inputs"])
        Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--export-worker":
        _export_worker(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m lab.models.zoo --export-worker JOB_JSON (internal)")
