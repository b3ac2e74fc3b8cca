"""A model on disk: `models/<id>/meta.json` as a typed record (`ModelMeta`), its one writer and
reader, and the `ModelArtifact` the rest of the lab runs.

Why one record and one writer: four producers (zoo builds, user models, int8 quantisation, ONNX
imports) and four updaters (agreement, accuracy, Paddle Lite and Paddle.js conversions) write
meta.json. Built by hand in each, the files drifted one key at a time; through `ModelMeta` every
writer fills the same fields, a reader gets the same defaults, and a rewrite keeps what it does
not know (`extra`). The file itself is unchanged: sorted keys, indent 2, the core keys always
(null when unknown), the optional sections only when set, replaced atomically so a reader never
sees half a file.

`sha256` is the content hash of what the runner loads: sha256 over the bytes of the model file
followed by the bytes of the params file (lab.core.hashing.files_sha256(model, params)), the same
definition as the runner JSON's `model.sha256`; `legacy_sha256` is the same for the legacy pair.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError
from lab.core.hashing import sha256_file
from lab.core.records import InputSpec
from lab.models.zoo import (ID_RE, default_zoo_path, input_from_json, input_to_json,
                            is_zoo_model, load_zoo, suggest)

META_SCHEMA = "hwlab.model/1"
MODEL_FILE = "inference.json"
PARAMS_FILE = "inference.pdiparams"
# Distinct names (not a legacy/ subdir): files are pushed flat into one per-model device directory.
LEGACY_MODEL_FILE = "legacy.pdmodel"
LEGACY_PARAMS_FILE = "legacy.pdiparams"
_MAX_META_BYTES = 64 * 1024 * 1024


def utc_stamp() -> str:
    """Now as meta.json writes it: 2024-05-01T12:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(kw_only=True)
class ModelMeta:
    """models/<id>/meta.json. Fields up to `analysis` are always written; the optional sections
    after it only when set (None = absent from the file)."""

    id: str
    sha256: str
    source: str | None = "zoo"  # zoo | user | quantized | onnx
    format: str | None = None  # json | pdmodel: which file Paddle Inference loads
    model_file: str | None = None
    params_file: str | None = None
    legacy_model_file: str | None = None  # the .pdmodel pair (Paddle Lite, PTQ, Paddle.js)
    legacy_params_file: str | None = None
    legacy_sha256: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # relative name -> sha256
    inputs: list[InputSpec] = field(default_factory=list)
    schema: str | None = META_SCHEMA
    build_key: str | None = None  # the cache key a rebuild compares (None: never rebuilt)
    builder_version: int | None = None
    zoo_entry: dict[str, Any] | None = None
    flops: int | float | None = None  # MACs at the run shape
    flops_note: str = ""
    params: int | float | None = None
    persistable_numel: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    built_with: dict[str, str] = field(default_factory=dict)
    built_at: str | None = field(default_factory=utc_stamp)
    op_histogram: dict[str, int] = field(default_factory=dict)
    analysis: dict[str, Any] | None = None  # cached lab.models.analysis.ModelAnalysis (as dict)
    # ---- optional sections
    build_seconds: float | None = None
    origin: dict[str, str] | None = None  # the user's / ONNX source files
    parent: dict[str, Any] | None = None  # {id, sha256, legacy_sha256} of an -int8 model's fp32
    quantization: dict[str, Any] | None = None  # lab.models.quantize: recipe, calibration, sizes
    agreement: dict[str, Any] | None = None  # lab.models.agreement.Agreement.to_dict()
    status: str | None = None  # "failed": a quantised model that failed its agreement check
    onnx_import: dict[str, Any] | None = None  # lab.convert.onnx_in
    lite: dict[str, Any] | None = None  # target -> .nb, its hash, opt's partition (lab.convert.lite)
    web: dict[str, Any] | None = None  # the Paddle.js build (lab.convert.paddlejs)
    accuracy: dict[str, Any] | None = None  # lab.models.accuracy
    eval_data: str | None = None  # a user's eval .npz recorded by `lab models accuracy --eval-data`
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (f.name in _SECTIONS and value is None):
                continue
            doc[f.name] = [input_to_json(i) for i in value] if f.name == "inputs" else value
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ModelMeta:
        """A document `meta_problem` found nothing wrong with -> ModelMeta (a key the document
        lacks reads as None: an old file without `schema` stays without one)."""
        known = [f.name for f in fields(cls) if f.name != "extra"]
        kw: dict[str, Any] = {k: doc.get(k) for k in known}
        for name in ("files", "tags", "built_with", "op_histogram"):
            kw[name] = dict(doc.get(name) or {})
        kw["inputs"] = [input_from_json(i) for i in doc.get("inputs") or []]
        kw["flops_note"] = doc.get("flops_note") or ""
        return cls(**kw, extra={k: v for k, v in doc.items() if k not in kw})

    def artifact(self, mdir: Path) -> ModelArtifact:
        """The ModelArtifact of this meta in model directory `mdir`."""
        def p(rel: str | None) -> Path | None:
            return mdir / rel if rel else None

        return ModelArtifact(
            id=self.id, dir=mdir, json_path=p(self.model_file) if self.format == "json" else None,
            pdiparams_path=p(self.params_file),
            pdmodel_path=p(self.legacy_model_file) or (p(self.model_file)
                                                       if self.format == "pdmodel" else None),
            legacy_pdiparams_path=p(self.legacy_params_file),
            sha256=self.sha256, legacy_sha256=self.legacy_sha256, inputs=list(self.inputs),
            flops=self.flops, flops_note=self.flops_note, params=self.params,
            op_histogram=dict(self.op_histogram), source=self.source or "zoo",
            tags=dict(self.tags), files=dict(self.files), built_with=dict(self.built_with),
            analysis=self.analysis,
            parent=(self.parent or {}).get("id"), status=self.status or "ok",
            eval_data=self.eval_data)


_SECTIONS = ("build_seconds", "origin", "parent", "quantization", "agreement", "status",
             "onnx_import", "lite", "web", "accuracy", "eval_data")


@dataclass
class ModelArtifact:
    """A built (zoo) or registered (user) model, as recorded in models/<id>/meta.json.

    `sha256` / `legacy_sha256`: see the module docstring. `flops` are multiply-accumulates (MACs)
    at the inputs' run shape; None with `flops_note` when they could not be counted.
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
        if path is None:  # a meta.json that names no model file (hand-written or damaged)
            raise ConfigError(f"model {self.id!r}: its meta.json names no model file",
                              path=str(self.dir / "meta.json"), fix=f"build or add {self.id!r} again")
        return path

    @property
    def params_path(self) -> Path | None:
        return self.pdiparams_path if self.json_path else (self.legacy_pdiparams_path
                                                           or self.pdiparams_path)

    @property
    def model_format(self) -> str:
        return "json" if self.json_path else "pdmodel"


# ---------------------------------------------------------------------------- read and write
def meta_path(model_id: str, root: Path | str = "models") -> Path:
    return Path(root) / model_id / "meta.json"


def meta_problem(meta: Any) -> str | None:
    """What is wrong with a meta.json document (None when it has the shape the lab writes)."""
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
    return _inputs_problem(meta.get("inputs", []))


def _inputs_problem(inputs: Any) -> str | None:
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


def read_meta(model_id: str, root: Path | str = "models") -> ModelMeta | None:
    """A model's meta.json (None when the model is not built); ConfigError when it is damaged."""
    path = meta_path(model_id, root)
    if not path.exists():
        return None
    from lab.core import jsonio
    fix = f"run `lab models build {model_id} --force`"
    try:
        doc = jsonio.load_file(path, what="model meta", max_bytes=_MAX_META_BYTES)
    except ConfigError as exc:
        raise ConfigError(f"model {model_id!r}: unreadable meta ({exc})", fix=fix) from None
    problem = meta_problem(doc)
    if problem:
        raise ConfigError(f"model {model_id!r}: damaged meta: {problem}", path=str(path), fix=fix)
    return ModelMeta.from_json(doc)


def write_meta(meta: ModelMeta, root: Path | str = "models") -> Path:
    """The one writer of meta.json: replace `<root>/<id>/meta.json` atomically."""
    path = meta_path(meta.id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".meta.", dir=str(path.parent))
    with os.fdopen(fd, "w") as fh:
        json.dump(meta.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def update_meta(model_id: str, root: Path | str = "models", **sections: Any) -> ModelMeta:
    """Set fields of a built model's meta.json (agreement, accuracy, status, lite, web ...) and
    write it back atomically; returns the new meta."""
    meta = read_meta(model_id, root)
    if meta is None:
        raise ConfigError(f"model {model_id!r} is not built", fix=f"run `lab models build {model_id}`")
    meta = replace(meta, **sections)
    write_meta(meta, root)
    return meta


# ----------------------------------------------------------------------------------- artifacts
def load_artifact(model_id: str, root: Path | str = "models") -> ModelArtifact:
    """Read models/<id>/meta.json and check that every recorded file is there."""
    if not ID_RE.match(model_id or ""):
        raise ConfigError(f"model id {model_id!r}: use letters, digits, _ . - (max 64)")
    mdir = Path(root) / model_id
    meta = read_meta(model_id, root)
    if meta is None:
        if not is_zoo_model(model_id, root):
            raise ConfigError(f"unknown model {model_id!r}: not built under {root}/ and not in the "
                              "zoo", fix=suggest(model_id, root) + "see `lab models list`, or "
                              f"register your own files with `lab models add {model_id} "
                              "--model-file PATH ...`")
        opt = "" if str(root) == "models" else f" --models-root {root}"
        raise ConfigError(f"model {model_id!r} is not built ({meta_path(model_id, root)} "
                          f"missing)", fix=f"run `lab models build {model_id}{opt}`")
    if meta.schema != META_SCHEMA:
        raise ConfigError(f"model {model_id!r}: meta schema {meta.schema!r} is not "
                          f"{META_SCHEMA!r}", path=str(meta_path(model_id, root)),
                          fix=f"run `lab models build {model_id} --force`")
    for rel in meta.files:
        if not (mdir / rel).is_file():
            how = (f"run `lab models build {model_id}`" if meta.source == "zoo"
                   else f"register it again with `lab models add {model_id} ...`")
            raise ConfigError(f"model {model_id!r}: file {mdir / rel} missing; {how}")
    return meta.artifact(mdir)


def verify_artifact(art: ModelArtifact) -> list[str]:
    """Files whose sha256 no longer matches meta.json (empty list = intact)."""
    return [rel for rel, digest in art.files.items()
            if not (art.dir / rel).is_file() or sha256_file(art.dir / rel) != digest]


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
