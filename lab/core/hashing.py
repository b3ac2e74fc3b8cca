"""File hashes, streamed: the one way the host hashes a file.

Why one module: a model's identity (meta.json `sha256`, the runner JSON's `model.sha256`), the
push-skip check of every transport and the Paddle.js web model all hash files, and they must agree
byte for byte. Files are read in 1 MiB blocks, so a 500 MB params file never sits in memory.
(lab/runners/runner_core.py keeps its own copy: runners travel to devices alone.)
"""
from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def _feed(hashes: list, path: Path | str) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            for h in hashes:
                h.update(block)


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of one file."""
    h = hashlib.sha256()
    _feed([h], path)
    return h.hexdigest()


def files_sha256(*paths: Path | str | None) -> str:
    """Hex sha256 over the concatenated bytes of `paths`, in order (None skipped): a model's
    content hash is `files_sha256(model, params)`."""
    h = hashlib.sha256()
    for path in paths:
        if path is not None:
            _feed([h], path)
    return h.hexdigest()


def file_digests(path: Path | str, *algorithms: str) -> dict[str, str]:
    """{algorithm: hex digest} of one file in one read, e.g. ("sha256", "md5") for a device that
    may only have md5sum."""
    hashes = [hashlib.new(name) for name in algorithms]
    _feed(hashes, path)
    return {name: h.hexdigest() for name, h in zip(algorithms, hashes)}


def tree_sha256(root: Path | str) -> str:
    """Hex sha256 of a folder's files, names included (relative path, then content hash, in path
    order): a staged site's identity, so an unchanged site is never pushed twice."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()
