"""Emulated ARM boards for tests: build (scripts/boards), start their own SSH server, stop.

Why real boards under qemu-user: the ARM code paths (aarch64 Paddle Inference and ONNX Runtime
wheels, a busybox userland, dropbear without SFTP) can only be believed where they really run.
Each board is a foreign root file system from the cache (~/.cache/hwlab/boards/<name>/root, built
once by scripts/boards/build-<name>.sh) run through binfmt_misc.

A running board lives in its own mount and PID namespaces (`unshare --kill-child`): /proc, /sys,
a tmpfs /run and this test session's directory (bind-mounted at /run/hwlab: client key, work dir)
are mounted only there, so nothing leaks into the host's mount table, two test sessions can run
the same cached board at once, and killing the namespace's first process ends every session and
runner on the board. The SSH server listens on 127.0.0.1:
- arm64: the board's own aarch64 OpenSSH sshd (it re-executes itself by path, fine under qemu);
- armhf: the board's own armv7 dropbear, one `dropbear -i` per connection (tests/boards/inetd.py
  says why).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOARDS_CACHE = Path(os.environ.get("HWLAB_BOARDS_CACHE")
                    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hwlab" / "boards")
BUILD_TIMEOUT_S = 1800  # a cold arm64 build: ~6 min debootstrap + ~150 MB of wheels
SESSION_DIR = "/run/hwlab"  # where this session's directory appears on the board


def missing_reason() -> str | None:
    """Why boards cannot run here (None: they can). CI runs as root on Debian."""
    if sys.platform != "linux":
        return "emulated boards need Linux (binfmt_misc, namespaces)"
    if os.geteuid() != 0:
        return "emulated boards need root (chroot, mount and PID namespaces, binfmt_misc)"
    for tool in ("unshare", "chroot", "ssh-keygen"):
        if not shutil.which(tool):
            return f"{tool} not installed (util-linux / coreutils / openssh-client)"
    return None


def ensure_built(name: str) -> Path:
    """The board's root file system, built by its script when the cache lacks it (idempotent)."""
    script = REPO / "scripts" / "boards" / f"build-{name}.sh"
    res = subprocess.run(["bash", str(script)], check=False, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if res.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({res.returncode}): {res.stderr[-2000:]}")
    return Path(res.stdout.strip().splitlines()[-1]) / "root"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Board:
    """One running board. `session` is a host directory seen on the board at /run/hwlab."""

    name: str  # arm64 | armhf
    root: Path
    session: Path
    client_pub: Path
    port: int = 0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def workdir(self) -> str:
        """The lab's work directory on the board (this session's, backed by a host directory)."""
        return f"{SESSION_DIR}/work"

    def host_path(self, board_path: str) -> Path:
        """Where a board path under /run/hwlab lies on the host (to look at what the lab wrote)."""
        return self.session / Path(board_path).relative_to(SESSION_DIR)

    def known_hosts_line(self) -> str:
        pub = {"arm64": "etc/ssh/ssh_host_ed25519_key.pub",
               "armhf": "etc/dropbear/dropbear_ed25519_host_key.pub"}[self.name]
        kind, b64 = (self.root / pub).read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"

    def start(self, timeout: float = 60.0) -> Board:
        (self.session / "work").mkdir(parents=True, exist_ok=True)
        (self.session / "ssh").mkdir(mode=0o700, exist_ok=True)
        keys = self.session / "ssh" / "authorized_keys"
        keys.write_text(Path(self.client_pub).read_text())
        keys.chmod(0o600)
        script = self._mounts() + (self._sshd() if self.name == "arm64" else self._dropbear())
        with open(self.session / "server.log", "ab") as log:
            self.proc = subprocess.Popen(["unshare", "--mount", "--pid", "--kill-child", "--propagation",
                                          "private", "sh", "-c", script], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        if self.name == "armhf":  # inetd binds port 0 and says which port it got
            line = self.proc.stdout.readline().strip()
            self.port = int(line) if line.isdigit() else 0
        self._wait_listening(timeout)
        return self

    def _mounts(self) -> str:
        # No /sys on the arm64 board: with the host's sysfs beside the host's x86 /proc/cpuinfo,
        # onnxruntime's cpuinfo library (its ARM code path) segfaults at import, something no real
        # ARM board shows; without sysfs it falls back with a warning. The armhf board gets it
        # (the sampler and the probe read it; nothing there parses the CPU).
        r, s = str(self.root), str(self.session)
        sysfs = "mount -t sysfs sysfs \"$R/sys\"; " if self.name == "armhf" else ""
        return (f"set -e; R='{r}'; mount -t proc proc \"$R/proc\"; {sysfs}mount -t tmpfs tmpfs \"$R/run\"; "
                f"mkdir -p \"$R/run/sshd\" \"$R{SESSION_DIR}\"; mount --bind '{s}' \"$R{SESSION_DIR}\"; ")

    def _sshd(self) -> str:
        self.port = free_port()
        opts = [f"Port={self.port}", "ListenAddress=127.0.0.1", "UsePAM=no", "StrictModes=no",
                f"AuthorizedKeysFile={SESSION_DIR}/ssh/authorized_keys", "PasswordAuthentication=no",
                "PermitRootLogin=prohibit-password", "UseDNS=no", "MaxSessions=64", "MaxStartups=100",
                f"PidFile={SESSION_DIR}/sshd.pid"]
        return "exec chroot \"$R\" /usr/sbin/sshd -D -e " + " ".join(f"-o {o}" for o in opts)

    def _dropbear(self) -> str:
        # dropbear reads ~/.ssh/authorized_keys only: this session's file, bind-mounted over it
        inetd = Path(__file__).with_name("inetd.py")
        return (f"mount --bind '{self.session}/ssh' \"$R/root/.ssh\"; exec '{sys.executable}' '{inetd}' -- "
                "chroot \"$R\" /usr/sbin/dropbear -i -s -r /etc/dropbear/dropbear_ed25519_host_key")

    def _wait_listening(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} board's SSH server exited {self.proc.returncode}: "
                                   f"{(self.session / 'server.log').read_text()[-1500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(20)
                    if s.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} board's SSH server did not answer within {timeout:g} s")

    def stop(self) -> None:
        """Kill the namespace's first process: the kernel ends every process on the board, and the
        mounts go with the namespace."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def device_entry(self, key_file: Path, known_hosts: Path, **over) -> dict:
        """A devices.yaml entry (`write_devices`) for this board."""
        entry = {"id": f"emu-{self.name}", "host": "127.0.0.1", "port": self.port, "user": "root",
                 "key_file": str(key_file), "known_hosts": str(known_hosts), "host_key_policy": "strict",
                 "workdir": self.workdir, "python": "/usr/bin/python3" if self.name == "arm64" else None,
                 "tags": ["emulated", self.name]}
        entry.update(over)
        return entry


def write_devices(path: Path, entries: list[dict]) -> Path:
    """A devices.yaml with `local` (the host) and the given board entries (Board.device_entry)."""
    lines = ["devices:", "  - id: local", "    chip: generic-x86-cpu", "    transport: local",
             f"    workdir: '{path.parent / 'local-work'}'"]
    for e in entries:
        lines += [f"  - id: {e['id']}", f"    chip: {e['chip']}", "    transport: ssh"]
        lines += [f"    {k}: {v if isinstance(v, int) else repr(str(v))}" for k, v in e.items()
                  if k not in ("id", "chip", "tags") and v is not None]
        lines.append(f"    tags: [{', '.join(e.get('tags', []))}]")
    path.write_text("\n".join(lines) + "\n")
    return path


def lab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real `lab` CLI, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
