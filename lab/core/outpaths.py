"""Where the lab may write a file: checked before anything is rendered.

Why: a campaign named `../../X` (imported from someone's store) must not make `lab report`
write outside reports/; `-o /dev/null` must not replace the device node with a regular file; a
300-character name or a path under /proc must be one line, exit 2, not a traceback.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from lab.core.errors import ConfigError

NAME_MAX = 255  # bytes per path component (ext4, xfs, btrfs, tmpfs)
PATH_MAX = 4096
PSEUDO_FS = ("/proc", "/sys", "/dev")  # kernel interfaces, never a place for a report


def safe_name(name: str, *, what: str = "name") -> str:
    """A single path component made from data (a campaign name): no separators, no '..',
    no NUL, not empty, at most NAME_MAX bytes."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name
            or len(name.encode("utf-8", "surrogateescape")) > NAME_MAX):
        raise ConfigError(f"{what} {name[:80]!r} cannot name a folder",
                          fix="use letters, digits, '.', '_' or '-', or give -o PATH")
    return name


def under(root: str | Path, *names: str, what: str = "name") -> Path:
    """root/name1/name2..., each name checked by safe_name(), and the result inside root."""
    base = Path(root)
    out = base.joinpath(*(safe_name(n, what=what) for n in names))
    real_root = os.path.realpath(base)
    real_out = os.path.realpath(out)
    if os.path.commonpath([real_root, real_out]) != real_root:
        raise ConfigError(f"{out} escapes {root}/", fix="give -o PATH")
    return out


def check_output(path: str | Path, *, flag: str = "-o") -> Path:
    """A path the lab may create or replace: a regular file (or nothing yet) with sane name
    lengths, outside /proc, /sys and /dev, whose existing parents are folders."""
    p = Path(path)
    text = str(p)
    if not text or "\x00" in text:
        raise ConfigError(f"{flag}: empty or invalid path", fix="give a file path such as reports/x.html")
    if len(os.fsencode(text)) > PATH_MAX:
        raise ConfigError(f"{flag}: path longer than {PATH_MAX} bytes", fix="use a shorter path")
    for part in p.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise ConfigError(f"{flag}: a name in the path is longer than {NAME_MAX} bytes "
                              f"({part[:40]}...)", fix="use a shorter file name")
    real = os.path.realpath(p)
    if any(real == d or real.startswith(d + "/") for d in PSEUDO_FS):
        raise ConfigError(f"{flag} {text[:200]}: {real.split('/')[1] and '/' + real.split('/')[1]} "
                          "is a kernel interface, not a place to write files",
                          fix="write into a normal folder")
    blocker = next((q for q in reversed(p.parents) if q.exists() and not q.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"cannot write {text[:200]}: {blocker} is a file, not a directory",
                          fix="give a path whose folders are folders, e.g. reports/demo/index.html")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"{flag} {text[:200]}: {exc.strerror}", fix="give a writable file path") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, pipe or socket)"
        raise ConfigError(f"{flag} {text[:200]} is {kind}; the lab writes only regular files",
                          fix="give a file path such as reports/demo/index.html")
    return p


def write_text(path: str | Path, text: str, *, flag: str = "-o") -> Path:
    """Write atomically (temp file in the same folder, then rename) after check_output();
    OS errors (full disk, permissions) become one ConfigError line."""
    p = check_output(path, flag=flag)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lab-", suffix=".tmp", dir=str(p.parent))
    except OSError as exc:
        raise ConfigError(f"cannot create {p}: {exc.strerror or exc}", fix=f"give {flag} a writable path") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConfigError(f"cannot write {p}: {exc.strerror or exc}", fix="free disk space or give "
                          f"{flag} a writable path") from None
    return p
