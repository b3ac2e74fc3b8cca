"""One orchestrator per device at a time.

Why: the scheduler runs one job at a time per device inside one `lab run`, but two `lab run`s (or a
`--resume` started while the first still runs) would measure on the same device side by side and
store skewed figures. Each run holds an advisory lock per device for its whole duration; the lock
is released by the kernel when the process ends, even on kill -9.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from lab.core.errors import ConfigError


def lock_dir() -> Path:
    return Path(os.environ.get("HWLAB_LOCK_DIR") or Path.home() / ".cache" / "hwlab" / "locks")


class DeviceLocks:
    def __init__(self, device_ids: list[str], campaign: str):
        self.device_ids = sorted(set(device_ids))
        self.campaign = campaign
        self._files: list = []

    def __enter__(self) -> "DeviceLocks":
        d = lock_dir()
        d.mkdir(parents=True, exist_ok=True)
        try:
            for dev in self.device_ids:
                path = d / (re.sub(r"[^A-Za-z0-9._-]", "_", dev) + ".lock")
                fh = open(path, "a+")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    fh.close()
                    raise ConfigError(f"device {dev!r} is being measured by another `lab run` ({holder})",
                                      fix="wait for it to finish (or stop it), then run again with --resume")
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()}, campaign {self.campaign}")
                fh.flush()
                self._files.append(fh)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for fh in self._files:
            try:
                fh.close()  # closing releases the flock
            except OSError:
                pass
        self._files = []
