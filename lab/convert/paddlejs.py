"""Convert a built model to a Paddle.js web model (model.json + chunk_N.dat) under models/<id>/web/.

Why this shape:
- paddlejsconverter 1.0.8 is the converter Paddle.js ships, but it imports `paddle.fluid` (gone in
  Paddle 3.x). It runs in its own subprocess (`python -m lab.convert.paddlejs_worker`) with the
  lab's compatibility shim (lab/convert/fluid_shim.py) installed there only, reading the legacy
  `.pdmodel` (FLAGS_enable_pir_api=0). Its optimise step needs `paddlejslite`, which has no
  installable distribution, so only the convert step runs (no `--useGPUOpt` fusing).
- Its model.json then needs two fixes before Paddle.js 2.2.0 / webgl 1.2.9 can run it
  (`fix_model_json`): zero-dimensional batch_norm SavedMean/SavedVariance variables are dropped
  (else "Reduce of empty array with no initial value"), and conv ops get `fuse_relu: false` (else a
  shader compile error "'undefined' : undeclared identifier").
- What was done is recorded in models/<id>/meta.json under "web" (converter version, shim, fixes,
  files and their sha256), and a conversion is reused while the source model, converter version
  and fixer version are unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lab.core import childproc
from lab.core.errors import ConfigError, LabError, excerpt
from lab.core.hashing import files_sha256, sha256_file
from lab.convert import fluid_shim
from lab.models.artifact import read_meta, update_meta, utc_stamp

CONVERTER_DIST = "paddlejsconverter"
CONVERTER_VERSION = "1.0.8"
# Bump when fix_model_json changes: invalidates earlier conversions.
FIXER_VERSION = 1
WEB_DIR = "web"
MODEL_JSON = "model.json"
CONV_OPS = ("conv2d", "depthwise_conv2d", "conv2d_transpose")


@dataclass
class WebModel:
    """A converted Paddle.js model: its directory, files and what the conversion did."""

    model_id: str
    dir: Path
    files: dict[str, str]  # relative name -> sha256
    sha256: str  # over model.json then the chunks in order (the web artifact's content hash)
    converter: str
    fixes: list[str] = field(default_factory=list)
    feed_shape: dict[str, int] | None = None
    reused: bool = False

    def to_meta(self, source_sha256: str) -> dict[str, Any]:
        return {"dir": WEB_DIR, "model_file": MODEL_JSON, "files": self.files,
                "sha256": self.sha256, "converter": self.converter,
                "fixer_version": FIXER_VERSION, "shim": list(fluid_shim.MAPPED),
                "fixes": self.fixes, "feed_shape": self.feed_shape,
                "source_sha256": source_sha256,
                "converted_at": utc_stamp()}


def converter_version() -> str:
    """The installed paddlejsconverter version, or ConfigError saying how to install it."""
    from importlib import metadata
    try:
        version = metadata.version(CONVERTER_DIST)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{CONVERTER_DIST} is not installed: `lab models build --web` needs it",
                          fix="run `bash scripts/install-web-deps.sh` (pip install --no-deps "
                              f"{CONVERTER_DIST}=={CONVERTER_VERSION})") from None
    if version != CONVERTER_VERSION:
        raise ConfigError(f"{CONVERTER_DIST} {version} is installed; the lab's shim and fixes are "
                          f"for {CONVERTER_VERSION}",
                          fix=f"pip install --no-deps {CONVERTER_DIST}=={CONVERTER_VERSION}")
    return version


# ------------------------------------------------------------------------------ model.json fixes
def fix_model_json(doc: dict[str, Any]) -> list[str]:
    """Apply the two Paddle 3.x fixes in place; return one line per fix that changed something."""
    fixes = []
    variables = doc.get("vars")
    if isinstance(variables, list):  # some converter versions write a list
        by_name = {v.get("name"): v for v in variables if isinstance(v, dict)}
    elif isinstance(variables, dict):
        by_name = variables
    else:
        raise LabError("model.json has no 'vars' mapping")
    ops = doc.get("ops")
    if not isinstance(ops, list):
        raise LabError("model.json has no 'ops' list")

    dropped = []
    for op in ops:
        if op.get("type") not in ("batchnorm", "batch_norm"):
            continue
        outputs = op.get("outputs") or {}
        for key in ("SavedMean", "SavedVariance"):
            names = outputs.get(key) or []
            if names and all(n in by_name and by_name[n].get("shape") in ([], None) for n in names):
                dropped.extend(names)
                del outputs[key]
    if dropped:
        gone = set(dropped)
        if isinstance(variables, list):
            doc["vars"] = [v for v in variables if v.get("name") not in gone]
        else:
            for name in gone:
                variables.pop(name, None)
        fixes.append(f"dropped {len(dropped)} zero-dim batch_norm SavedMean/SavedVariance vars")

    set_fuse = 0
    for op in ops:
        if op.get("type") in CONV_OPS:
            attrs = op.setdefault("attrs", {})
            if attrs.get("fuse_relu") is not False:
                attrs["fuse_relu"] = False
                set_fuse += 1
    if set_fuse:
        fixes.append(f"set fuse_relu:false on {set_fuse} conv op(s)")
    return fixes


def web_sha256(web_dir: Path) -> tuple[dict[str, str], str]:
    """Per-file sha256 and the content hash over model.json then chunk_1..N (numeric order)."""
    chunks = sorted((p for p in web_dir.glob("chunk_*.dat")),
                    key=lambda p: int(p.stem.split("_")[1]))
    paths = [web_dir / MODEL_JSON] + chunks
    return {p.name: sha256_file(p) for p in paths}, files_sha256(*paths)


# ------------------------------------------------------------------------ what can be converted
def web_refusal(artifact) -> str | None:
    """Why `artifact` has no Paddle.js build path (None when it has one). Used by the converter and
    by planning (lab/measure/campaign.py), so both refuse for the same reasons."""
    if not (artifact.pdmodel_path and artifact.legacy_pdiparams_path):
        return (f"model {artifact.id}: no legacy .pdmodel/.pdiparams; paddlejsconverter reads only "
                "legacy programs")
    if len(artifact.inputs) != 1:
        return (f"model {artifact.id}: Paddle.js runs single-input models; this one has "
                f"{len(artifact.inputs)} inputs")
    if artifact.inputs[0].dtype != "float32":
        return (f"model {artifact.id}: Paddle.js feeds float32 inputs only; input "
                f"{artifact.inputs[0].name} is {artifact.inputs[0].dtype}")
    return None


def current_web(artifact, converter: str | None = None) -> WebModel | None:
    """The model's web build when it exists and is current (same source model, converter - the
    installed one unless given - and fixer version, files unchanged); None otherwise."""
    web = Path(artifact.dir) / WEB_DIR
    try:
        meta = read_meta(Path(artifact.dir).name, Path(artifact.dir).parent)
    except ConfigError:
        return None
    old = (meta.web if meta else None) or {}
    if converter is None:
        converter = old.get("converter")  # the runtime needs no converter, only a current build
    src_sha = artifact.legacy_sha256 or artifact.sha256
    if not (old.get("source_sha256") == src_sha and old.get("converter") == converter
            and old.get("fixer_version") == FIXER_VERSION and web.is_dir()
            and (web / MODEL_JSON).is_file()):
        return None
    files, digest = web_sha256(web)
    if files != old.get("files") or digest != old.get("sha256"):
        return None
    return WebModel(artifact.id, web, files, digest, converter, list(old.get("fixes", [])),
                    old.get("feed_shape"), reused=True)


def build_command(model_id: str) -> str:
    return f"lab models build {model_id} --web"


# ----------------------------------------------------------------------------------- conversion
def _run_converter(model_file: Path, params_file: Path, out_dir: Path, timeout: float) -> str:
    p = childproc.run_module(
        "lab.convert.paddlejs_worker", [f"--modelPath={model_file}", f"--paramPath={params_file}",
                                        f"--outputDir={out_dir}"],
        env={"FLAGS_enable_pir_api": "0"}, cwd=out_dir, timeout=timeout)
    if p.timed_out:
        raise LabError(f"paddlejsconverter ran over {timeout:.0f} s")
    if p.returncode != 0 or not (out_dir / MODEL_JSON).is_file():
        raise LabError(f"paddlejsconverter failed (exit {p.returncode}): {excerpt(p.output)}")
    return p.output


def convert(artifact, *, force: bool = False, timeout: float = 600.0,
            log: Callable[[str], None] | None = None) -> WebModel:
    """Convert `artifact` (a lab.models.artifact.ModelArtifact) into `<dir>/web/`, or reuse it."""
    version = converter_version()
    refusal = web_refusal(artifact)
    if refusal:
        raise ConfigError(refusal, fix=f"run `lab models build {artifact.id} --force`"
                          if "legacy" in refusal else None)
    src_sha = artifact.legacy_sha256 or artifact.sha256
    mdir = Path(artifact.dir)
    web = mdir / WEB_DIR
    converter = f"{CONVERTER_DIST} {version}"
    if not force:
        current = current_web(artifact, converter)
        if current is not None:
            if log:
                log(f"{artifact.id}: web model up to date (sha256 {current.sha256[:12]})")
            return current
    if log:
        log(f"{artifact.id}: converting to Paddle.js ({converter}, Paddle 3.x shim) ...")
    tmp = Path(tempfile.mkdtemp(prefix=f".{WEB_DIR}.build-", dir=str(mdir))).resolve()
    try:
        _run_converter(artifact.pdmodel_path.resolve(), artifact.legacy_pdiparams_path.resolve(),
                       tmp, timeout)
        doc = json.loads((tmp / MODEL_JSON).read_text())
        fixes = fix_model_json(doc)
        (tmp / MODEL_JSON).write_text(json.dumps(doc, separators=(",", ":")))
        for extra in tmp.iterdir():  # the converter's own leftovers, if any
            if extra.name != MODEL_JSON and not extra.name.startswith("chunk_"):
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        if web.exists():
            shutil.rmtree(web)
        os.replace(tmp, web)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    files, digest = web_sha256(web)
    wm = WebModel(artifact.id, web, files, digest, converter, fixes, doc.get("feedShape"))
    update_meta(mdir.name, mdir.parent, web=wm.to_meta(src_sha))
    if log:
        log(f"{artifact.id}: web model in {web}/ ({len(files) - 1} chunk(s); "
            f"fixes: {'; '.join(fixes) or 'none'})")
    return wm
