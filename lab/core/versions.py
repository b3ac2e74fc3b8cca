"""Installed package versions, asked lazily: `importlib.metadata` costs ~100 ms at import and only
builds, probes and provenance need it, never the CLI's start-up."""
from __future__ import annotations


def dist_version(dist: str) -> str | None:
    """The installed version of distribution `dist`, or None when it is not installed."""
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def paddle_version() -> str | None:
    """The Paddle wheel on this host: CPU or GPU build, whichever is installed."""
    return dist_version("paddlepaddle") or dist_version("paddlepaddle-gpu")
