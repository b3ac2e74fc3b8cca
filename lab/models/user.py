"""The user's own exported model (`lab models add ID --model-file ... --input ...`) as models/<id>/.

Why checks before the copy: the model file is analysed statically (no paddle import for a
`.json`) and every --input is held against the inputs the program declares, so a wrong name or
shape is one ConfigError line now rather than a failed job on a device later. The files are
copied in (the user's originals may move) and recorded like a zoo build, with `source: user`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from lab.core.errors import ConfigError, LabError
from lab.core.hashing import files_sha256, sha256_file
from lab.core.records import InputSpec
from lab.models.artifact import ModelArtifact, ModelMeta, write_meta
from lab.models.build import BUILDER_VERSION
from lab.models.zoo import DTYPES, ID_RE, default_zoo_path, load_zoo

PARAMS_NAME = "inference.pdiparams"


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
    _check_id(model_id, root, zoo_path)
    model_file, params_file = _check_files(model_id, Path(model_file), params_file)
    _check_inputs(model_id, inputs)
    from lab.models import analysis  # static analysis of the user's file (no paddle import for .json)
    try:
        res = analysis.analyze(model_file, params_file=params_file,
                               run_shapes={i.name: i.run_shape for i in inputs})
    except LabError as exc:
        raise ConfigError(f"model {model_id!r}: cannot read {model_file}: {exc}") from None
    specs = _fit_declared(model_id, inputs, {i.name: i for i in res.inputs})
    mdir = Path(root) / model_id
    mname = f"inference{model_file.suffix.lower()}"
    _copy_in(mdir, ((model_file, mname), (params_file, PARAMS_NAME)))
    legacy = model_file.suffix.lower() == ".pdmodel"
    sha = files_sha256(mdir / mname, mdir / PARAMS_NAME)
    flops, note = res.estimated_macs(specs)
    meta = ModelMeta(
        id=model_id, source="user", format="pdmodel" if legacy else "json",
        builder_version=BUILDER_VERSION, model_file=mname, params_file=PARAMS_NAME,
        legacy_model_file=mname if legacy else None,
        legacy_params_file=PARAMS_NAME if legacy else None,
        files={n: sha256_file(mdir / n) for n in (mname, PARAMS_NAME)}, sha256=sha,
        legacy_sha256=sha if legacy else None, inputs=specs, flops=flops, flops_note=note,
        params=res.params, persistable_numel=res.persistable_numel,
        origin={"model_file": str(model_file.resolve()), "params_file": str(params_file.resolve())},
        op_histogram=dict(res.op_histogram), analysis=res.to_dict())
    write_meta(meta, root)
    return meta.artifact(mdir)


def _check_id(model_id: str, root: Path | str, zoo_path: Path | str | None) -> None:
    if not ID_RE.match(model_id or ""):
        raise ConfigError(f"model id {model_id!r}: use letters, digits, _ . - (max 64)")
    zoo_file = Path(zoo_path) if zoo_path else default_zoo_path(root)
    if zoo_file.exists() and model_id in load_zoo(zoo_file):
        raise ConfigError(f"model id {model_id!r} is a zoo model", path=str(zoo_file),
                          fix="choose another id")


def _check_files(model_id: str, model_file: Path,
                 params_file: Path | str | None) -> tuple[Path, Path]:
    """(model file, params file): they exist, of a kind the lab reads; params guessed beside."""
    if not model_file.is_file():
        raise ConfigError(f"model {model_id!r}: --model-file {model_file} does not exist")
    if model_file.suffix.lower() not in (".json", ".pdmodel"):
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
    return model_file, params_file


def _check_inputs(model_id: str, inputs: list[InputSpec]) -> None:
    if not inputs:
        raise ConfigError(f"model {model_id!r}: at least one --input NAME:SHAPE:DTYPE is required")
    names = [i.name for i in inputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"model {model_id!r}: duplicate --input names {names}")


def _fit_declared(model_id: str, inputs: list[InputSpec],
                  declared: dict[str, InputSpec]) -> list[InputSpec]:
    """The --inputs against the program's declared inputs (when it declares any): same names,
    run shapes that fit; the recorded shape is the declared one (with its -1 dims)."""
    names = [i.name for i in inputs]
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
    return specs


def _copy_in(mdir: Path, pairs: tuple[tuple[Path, str], ...]) -> None:
    """Copy (source, name) pairs into `mdir`, each atomically; its old meta.json goes first."""
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / "meta.json").unlink(missing_ok=True)
    for src, dst in pairs:
        tmp = mdir / f".{dst}.tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, mdir / dst)
