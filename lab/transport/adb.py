"""ADB transport: phones and boards reached over adbd, with adb-shell (TCP) or an adb server.

Why this shape (see shared/reference/peers.md §6):
- adb-shell's `shell()` returns no exit code, so every command is wrapped: stderr goes to a device
  temp file and is printed after a random marker, then the exit code after a second marker.
- adb-shell's `shell()` has per-read timeouts only; `run()` keeps a wall-clock deadline, and on
  expiry drops the connection (its state is unknown), reconnects and kills the command by the PID
  the wrapper recorded, with everything it started (`_KILL_TREE`: stop, recurse into `pgrep -P`
  children, kill; a shell without job control puts `&` children in the caller's process group, so
  there is no group to kill as over SSH). `abort()` does the same for every command running now,
  over a second connection, so the blocked `run()` sees its command end and returns.
- adb-shell's TCP transport ignores partial `send()`s, spins on a closed socket until its read
  timeout and leaves Nagle on (header and payload go in two writes: ~40 ms per packet);
  `_TcpTransport` writes fully, reports EOF at once and sets TCP_NODELAY.
- Pushes go to `<dest>.hwlab-part`, are verified on the device (size + sha256sum, md5sum where
  sha256sum is missing) and renamed; an unchanged file is skipped. Files above
  `large_file_bytes` are pushed in chunks, each retried on its own after a reconnect, then joined
  with `cat` and verified whole: a drop costs one chunk, not the whole model.
- Every reconnect disconnects first (stale sessions make adb hang, labgrid / devlib).
- `adb_server: host:port` in devices.yaml routes through the `adb` binary (`adb -H -P -s`), which
  multiplexes USB phones on a lab host; it must be installed.
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

from lab.core.errors import (ConfigError, DeviceAuthFailed, DeviceError, DeviceTimeout,
                      DeviceUnreachable, TransferError)
from lab.core.hashing import file_digests
from lab.transport.base import (CHECK_TIMEOUT_S, CONNECT_TIMEOUT_S, CheckResult, PushResult, RunResult, check_device, remote_join, run_ok,
                   shell_command)

DEFAULT_WORKDIR = "/data/local/tmp/hwlab"
LARGE_FILE_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 16 * 1024 * 1024
KILL_TIMEOUT_S = 15.0

# Kill the commands whose wrapper PID files are given, children first (stopped before the walk, so
# none can start another while its parent is being killed). toybox and busybox have pgrep -P.
_KILL_TREE = ('hwlab_kill() { kill -STOP "$1" 2>/dev/null; '
              'for c in $(pgrep -P "$1" 2>/dev/null); do hwlab_kill "$c"; done; kill -9 "$1" 2>/dev/null; }; '
              'for f in "$@"; do p=$(cat "$f" 2>/dev/null); [ -n "$p" ] && hwlab_kill "$p"; rm -f "$f"; done; '
              'true')


# `transient` (may a retry help?) comes from the base classes in lab/core/errors.py: unreachable yes,
# refused authentication no.
class ADBOffline(DeviceUnreachable):
    """Cannot connect: no route, adbd not listening, or the server lists the device offline."""


class ADBUnauthorized(DeviceAuthFailed):
    """adbd did not accept the lab's RSA key (the "Allow USB debugging?" prompt)."""


class ADBDeviceGone(DeviceUnreachable):
    """The connection broke in the middle of an operation (cable, Wi-Fi, adbd restart)."""


# ------------------------------------------------------------------ key

_KEY_LOCK = threading.Lock()


def adb_key_path() -> Path:
    """HWLAB_ADB_KEY, else $XDG_CONFIG_HOME/hwlab/adbkey (~/.config/hwlab/adbkey)."""
    env = os.environ.get("HWLAB_ADB_KEY")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "hwlab" / "adbkey"


def ensure_adb_key(path: Path | None = None) -> Path:
    """Create the RSA key pair once (private key mode 0600); later calls reuse it."""
    from adb_shell.auth.keygen import keygen

    path = Path(path or adb_key_path())
    with _KEY_LOCK:
        if path.exists() and Path(str(path) + ".pub").exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        keygen(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(str(tmp) + ".pub", str(path) + ".pub")
        os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ links

class _TcpTransport:
    """adb-shell TcpTransport with full writes and immediate EOF (see module doc)."""

    def __new__(cls, host, port):
        from adb_shell.transport.tcp_transport import TcpTransport

        class _Impl(TcpTransport):
            def connect(self, transport_timeout_s):
                super().connect(transport_timeout_s)
                # adb-shell writes a packet's header and payload separately: without NODELAY,
                # Nagle + delayed ACK add ~40 ms to every packet
                self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def bulk_read(self, numbytes, transport_timeout_s):
                data = super().bulk_read(numbytes, transport_timeout_s)
                if not data:
                    raise ConnectionResetError(f"{host}:{port} closed the connection")
                return data

            def bulk_write(self, data, transport_timeout_s):
                import select
                view, deadline = memoryview(data), time.monotonic() + (transport_timeout_s or 1e9)
                while view:
                    left = deadline - time.monotonic()
                    _, w, _ = select.select([], [self._connection], [], max(left, 0))
                    if not w:
                        from adb_shell.exceptions import TcpTimeoutException
                        raise TcpTimeoutException(f"sending to {host}:{port} timed out")
                    sent = self._connection.send(view)
                    view = view[sent:]
                return len(data)

        return _Impl(host, port)


def _split_hostport(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"bad host:port {text!r}", fix="write e.g. 192.168.1.20:5555") from None


class _ShellLink:
    """adb-shell (pure Python) over TCP, or USB where adb-shell[usb] is installed."""

    def __init__(self, device, key_path: Path, connect_timeout: float):
        self.device_id = device.id
        self.serial = device.serial
        self.key_path = key_path
        self.connect_timeout = connect_timeout
        self.dev = None

    def _new_device(self):
        from adb_shell.adb_device import AdbDevice

        serial = self.serial or ""
        if ":" in serial:
            host, port = _split_hostport(serial, 5555)
            return AdbDevice(_TcpTransport(host, port), banner="hwlab")
        try:
            from adb_shell.adb_device import AdbDeviceUsb
            return AdbDeviceUsb(serial=serial or None, banner="hwlab")
        except Exception as exc:  # InvalidTransportError without libusb1
            raise ConfigError(f"device {self.device_id!r}: serial {serial!r} is a USB device but "
                              f"adb-shell has no USB support here ({exc})",
                              fix="pip install 'adb-shell[usb]', or set adb_server: host:5037") from None

    def connect(self) -> None:
        from adb_shell.auth.sign_pythonrsa import PythonRSASigner
        from adb_shell.exceptions import DeviceAuthError

        self.close()  # disconnect before reconnect
        signer = PythonRSASigner.FromRSAKeyPath(str(ensure_adb_key(self.key_path)))
        offered = []
        dev = self._new_device()
        try:
            dev.connect(rsa_keys=[signer], transport_timeout_s=self.connect_timeout,
                        auth_timeout_s=self.connect_timeout, read_timeout_s=self.connect_timeout,
                        auth_callback=lambda _d: offered.append(True))
        except DeviceAuthError as exc:
            raise ADBUnauthorized(self.device_id, f"adbd requires a key: {exc}") from exc
        except Exception as exc:
            _close_quietly(dev)
            if offered:
                raise ADBUnauthorized(
                    self.device_id, f"adbd at {self.serial} rejected key {self.key_path}.pub "
                    "(accept the 'Allow USB debugging?' prompt on the device, tick 'Always allow', "
                    "or add the key to /data/misc/adb/adb_keys)") from exc
            raise ADBOffline(self.device_id, f"cannot connect to adbd at {self.serial}: "
                             f"{type(exc).__name__}: {exc} (is the device on the network with "
                             "'adb tcpip 5555' enabled?)") from exc
        self.dev = dev

    def _ensure(self):
        if self.dev is None:
            self.connect()
        return self.dev

    def shell(self, text: str, timeout: float) -> str:
        dev = self._ensure()
        try:
            return dev.shell(text, transport_timeout_s=timeout, read_timeout_s=timeout,
                             timeout_s=timeout, decode=True)
        except Exception as exc:
            self.close()
            raise _classify(self.device_id, exc, f"shell on {self.serial}", timeout) from exc

    def push(self, local: Path, remote: str, timeout: float) -> None:
        dev = self._ensure()
        mode = 0o100000 | (local.stat().st_mode & 0o777)
        try:
            dev.push(str(local), remote, st_mode=mode, transport_timeout_s=timeout,
                     read_timeout_s=timeout)
        except Exception as exc:
            self.close()
            raise _classify(self.device_id, exc, f"push {local.name} -> {remote}", timeout) from exc

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        from adb_shell.exceptions import AdbCommandFailureException

        dev = self._ensure()
        try:
            dev.pull(remote, str(local), transport_timeout_s=timeout, read_timeout_s=timeout)
        except AdbCommandFailureException as exc:
            self.close()
            raise TransferError(self.device_id, f"pull {remote}: {exc}", transient=False) from exc
        except Exception as exc:
            self.close()
            raise _classify(self.device_id, exc, f"pull {remote}", timeout) from exc

    def close(self) -> None:
        if self.dev is not None:
            _close_quietly(self.dev)
            self.dev = None


def _close_quietly(dev) -> None:
    try:
        dev.close()
    except Exception:
        pass


def _classify(device_id: str, exc: Exception, what: str, timeout: float):
    """adb-shell / socket errors -> lab errors; the connection is assumed dead afterwards."""
    from adb_shell import exceptions as ax

    name = type(exc).__name__
    if isinstance(exc, (ax.AdbTimeoutError, ax.TcpTimeoutException, socket.timeout)):
        return DeviceTimeout(device_id, f"{what}: no answer within {timeout:.0f} s ({exc})")
    if isinstance(exc, (ConnectionError, OSError, ax.InvalidChecksumError, ax.InvalidCommandError,
                        ax.InvalidResponseError, ax.AdbConnectionError, ax.UsbReadFailedError,
                        ax.UsbWriteFailedError)):
        return ADBDeviceGone(device_id, f"{what}: connection lost ({name}: {exc})")
    if isinstance(exc, ax.PushFailedError):
        return TransferError(device_id, f"{what}: adbd refused the file ({exc})")
    return ADBDeviceGone(device_id, f"{what}: {name}: {exc}")


class _ServerLink:
    """Through an adb server (`adb -H host -P port -s serial ...`), for USB farms."""

    def __init__(self, device, connect_timeout: float):
        self.device_id = device.id
        self.serial = device.serial
        self.adb = shutil.which("adb")
        if not self.adb:
            raise ConfigError(f"device {device.id!r}: adb_server is set but no 'adb' binary is on PATH",
                              fix="install Android platform-tools (Debian: apt-get install adb) "
                                  "or remove adb_server to use adb-shell over TCP")
        host, port = _split_hostport(device.adb_server, 5037)
        self.base = [self.adb, "-H", host, "-P", str(port)]
        self.connect_timeout = connect_timeout
        self.connected = False

    def _adb(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        cmd = self.base + (["-s", self.serial] if self.serial else []) + args
        try:
            return subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DeviceTimeout(self.device_id, f"adb {' '.join(args[:2])}: no answer within "
                                f"{timeout:.0f} s") from exc

    def connect(self) -> None:
        if self.serial and ":" in self.serial:  # network device known to the server
            subprocess.run(self.base + ["disconnect", self.serial], capture_output=True,
                           timeout=self.connect_timeout)
            subprocess.run(self.base + ["connect", self.serial], capture_output=True,
                           timeout=self.connect_timeout)
        p = self._adb(["get-state"], self.connect_timeout)
        state = (p.stdout + p.stderr).decode(errors="replace").strip()
        if p.returncode == 0 and state.endswith("device"):
            self.connected = True
            return
        if "unauthorized" in state:
            raise ADBUnauthorized(self.device_id, f"adb server reports {self.serial} unauthorized: "
                                  "accept the 'Allow USB debugging?' prompt on the device")
        raise ADBOffline(self.device_id, f"adb server reports {self.serial!r}: {state or 'not found'}")

    def _ensure(self) -> None:
        if not self.connected:
            self.connect()

    def shell(self, text: str, timeout: float) -> str:
        self._ensure()
        p = self._adb(["shell", text], timeout)
        out = (p.stdout + (p.stderr if p.returncode else b"")).decode(errors="replace")
        if p.returncode != 0 and any(w in out for w in ("device offline", "not found", "no devices",
                                                         "error: closed")):
            self.connected = False
            raise ADBDeviceGone(self.device_id, f"adb shell: {out.strip()[:200]}")
        return p.stdout.decode(errors="replace")

    def push(self, local: Path, remote: str, timeout: float) -> None:
        self._ensure()
        p = self._adb(["push", str(local), remote], timeout)
        if p.returncode != 0:
            self.connected = False
            raise ADBDeviceGone(self.device_id, f"adb push {local.name}: "
                                f"{(p.stdout + p.stderr).decode(errors='replace').strip()[:200]}")

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        self._ensure()
        p = self._adb(["pull", remote, str(local)], timeout)
        if p.returncode != 0:
            msg = (p.stdout + p.stderr).decode(errors="replace").strip()[:200]
            raise TransferError(self.device_id, f"adb pull {remote}: {msg}",
                                transient="No such file" not in msg and "does not exist" not in msg)

    def close(self) -> None:
        self.connected = False


# ------------------------------------------------------------------ transport

class ADBTransport:
    """The lab's `Transport` over ADB (see module doc)."""

    forward_refusal = ("the ADB transport offers no port forward (adb-shell has shell and file "
                       "transfer only, and the lab runs no `adb forward` through an adb server); "
                       "forward by hand with `adb forward tcp:PORT tcp:PORT`")

    def __init__(self, device, *, key_path: Path | None = None, connect_timeout: float = CONNECT_TIMEOUT_S,
                 large_file_bytes: int = LARGE_FILE_BYTES, chunk_bytes: int = CHUNK_BYTES,
                 chunk_attempts: int = 3, transfer_timeout: float = 300.0):
        self.device_id = device.id
        self.workdir = device.workdir or DEFAULT_WORKDIR
        if not device.serial:
            raise ConfigError(f"device {device.id!r}: adb transport needs 'serial' "
                              "(host:port for adb over TCP, or the USB serial)",
                              path=device.source or None, line=device.line or None)
        self.key_path = Path(key_path) if key_path else adb_key_path()
        self._device, self._connect_timeout = device, connect_timeout
        self.link = self._new_link()
        self.large_file_bytes = large_file_bytes
        self.chunk_bytes = chunk_bytes
        self.chunk_attempts = chunk_attempts
        self.transfer_timeout = transfer_timeout
        self._lock = threading.RLock()
        self._running: set[str] = set()  # PID files of the commands running now (for abort())

    def _new_link(self):
        if self._device.adb_server:
            return _ServerLink(self._device, self._connect_timeout)
        return _ShellLink(self._device, self.key_path, self._connect_timeout)

    # ---------------------------------------------------------------- run
    def run(self, cmd: Sequence[str] | str, timeout: float, *, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> RunResult:
        text = shell_command(cmd, env=env, cwd=cwd)
        nonce = secrets.token_hex(8)
        mark_err, mark_rc = f"__HWLAB_{nonce}_ERR__", f"__HWLAB_{nonce}_RC__"
        tmp = remote_join(self.workdir, ".hwlab-run")
        errf, pidf = f"{tmp}/{nonce}.err", f"{tmp}/{nonce}.pid"
        prep = f"[ -d {shlex.quote(tmp)} ] || mkdir -p {shlex.quote(tmp)} 2>/dev/null; "  # `[` is builtin
        wrapped = (f"{prep}( {text} ) 2>{shlex.quote(errf)} & "
                   f"p=$!; echo $p > {shlex.quote(pidf)}; wait $p; rc=$?; "
                   f"printf '\\n%s\\n' {mark_err}; cat {shlex.quote(errf)} 2>/dev/null; "
                   f"rm -f {shlex.quote(errf)} {shlex.quote(pidf)}; printf '\\n%s %s\\n' {mark_rc} \"$rc\"")
        start = time.monotonic()
        with self._lock:
            self._running.add(pidf)
            try:
                raw = self.link.shell(wrapped, timeout)
            except DeviceTimeout:
                self._kill_remote(pidf)
                raise DeviceTimeout(self.device_id, f"command exceeded its {timeout:.0f} s deadline "
                                    f"(killed on the device): {text[:120]}") from None
            finally:
                self._running.discard(pidf)
        dur = time.monotonic() - start
        i_rc = raw.rfind("\n" + mark_rc + " ")
        i_err = raw.rfind("\n" + mark_err + "\n", 0, i_rc if i_rc >= 0 else None)
        if i_rc < 0 or i_err < 0:
            raise ADBDeviceGone(self.device_id, "command output ended without the exit marker "
                                f"(connection cut or shell killed): {raw[-200:]!r}")
        out = raw[:i_err]
        err = raw[i_err + len(mark_err) + 2:i_rc]
        rc_text = raw[i_rc + len(mark_rc) + 2:].strip()
        try:
            rc = int(rc_text.split()[0])
        except (ValueError, IndexError):
            raise ADBDeviceGone(self.device_id, f"unreadable exit code {rc_text!r}") from None
        return RunResult(rc, out, err, dur)

    def _kill_remote(self, pidf: str) -> None:
        """After a deadline: reconnect (the connection's state is unknown) and kill the command tree."""
        try:
            self.link.close()
            self.link.shell(_kill_command([pidf]), KILL_TIMEOUT_S)
        except Exception:
            pass  # best effort: the device may be gone too

    def abort(self) -> None:
        """Kill every command running now with what it started (the orchestrator's Ctrl-C).

        Called from another thread while `run()` holds the connection: the kill goes over a second
        adb-shell connection (the adb server's link is one `adb` process per call already), and the
        blocked `run()` then returns the killed command's exit status."""
        pidfs = sorted(self._running)
        if not pidfs:
            return
        link = self.link if isinstance(self.link, _ServerLink) else self._new_link()
        try:
            link.shell(_kill_command(pidfs), KILL_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - best effort on the way out: the device may be gone
            pass
        finally:
            if link is not self.link:
                link.close()

    def check(self, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
        return check_device(self, timeout)

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1"):
        """Refused, with the reason (`forward_refusal`): planning keeps forwarding jobs off ADB."""
        raise DeviceError(self.device_id, f"cannot reach {remote_host}:{remote_port} on the device: "
                          f"{self.forward_refusal}", transient=False)

    # ---------------------------------------------------------------- files
    def remote_digest(self, remote: str, timeout: float = 120.0) -> tuple[int | None, str, str]:
        """(size or None if missing, algorithm 'sha256'|'md5'|'none', hex digest or '')."""
        q = shlex.quote(remote)
        script = (f"f={q}; if [ -f \"$f\" ]; then s=$(wc -c < \"$f\"); "
                  "if command -v sha256sum >/dev/null 2>&1; then h=\"sha256 $(sha256sum \"$f\" | cut -d' ' -f1)\"; "
                  "elif command -v md5sum >/dev/null 2>&1; then h=\"md5 $(md5sum \"$f\" | cut -d' ' -f1)\"; "
                  "else h='none -'; fi; echo \"HWLAB_STAT $s $h\"; else echo 'HWLAB_STAT missing'; fi")
        out = run_ok(self, script, timeout, what=f"stat of {remote}").out
        line = next((ln for ln in out.splitlines() if ln.startswith("HWLAB_STAT ")), "")
        parts = line.split()
        if len(parts) == 2 and parts[1] == "missing":
            return None, "none", ""
        if len(parts) != 4:
            raise ADBDeviceGone(self.device_id, f"unreadable stat of {remote}: {out[-200:]!r}")
        return int(parts[1]), parts[2], "" if parts[3] == "-" else parts[3]

    def push(self, local: Path, remote: str) -> PushResult:
        local = Path(local)
        size = local.stat().st_size
        digests = file_digests(local, "sha256", "md5")
        with self._lock:
            have = self.remote_digest(remote)
            if _matches(have, size, digests):
                return PushResult(remote, size, digests["sha256"], 0, True)
            parent = remote.rsplit("/", 1)[0] or "/"
            run_ok(self, f"mkdir -p {shlex.quote(parent)}")
            part = remote + ".hwlab-part"
            if size > self.large_file_bytes:
                sent = self._push_chunked(local, part, size)
            else:
                sent = self._push_once(local, part)
            got = self.remote_digest(part)
            if not _matches(got, size, digests):
                self.run(f"rm -f {shlex.quote(part)}", 30)
                raise TransferError(self.device_id, f"push of {local} to {remote}: device has "
                                    f"{got[0]} bytes ({got[1]} {got[2][:12] or '-'}), expected {size} "
                                    f"bytes (sha256 {digests['sha256'][:12]})")
            mode = oct(local.stat().st_mode & 0o777)[2:]
            run_ok(self, f"chmod {mode} {shlex.quote(part)} && mv -f {shlex.quote(part)} "
                   f"{shlex.quote(remote)}")
        return PushResult(remote, size, digests["sha256"], sent, False)

    def _push_once(self, local: Path, remote: str) -> int:
        try:
            self.link.push(local, remote, self.transfer_timeout)
        except (ADBDeviceGone, DeviceTimeout):
            self.link.push(local, remote, self.transfer_timeout)  # one retry on a fresh connection
        return local.stat().st_size

    def _push_chunked(self, local: Path, part: str, size: int) -> int:
        """Large-file fallback: fixed-size pieces, each verified and retried alone, then `cat`."""
        import tempfile

        n = (size + self.chunk_bytes - 1) // self.chunk_bytes
        names = [f"{part}.{i:04d}" for i in range(n)]
        sent = 0
        with tempfile.TemporaryDirectory(prefix="hwlab-chunks-") as tmpd, open(local, "rb") as fh:
            for i, name in enumerate(names):
                piece = Path(tmpd) / f"c{i:04d}"
                piece.write_bytes(fh.read(self.chunk_bytes))
                want = file_digests(piece, "sha256", "md5")
                psize = piece.stat().st_size
                if _matches(self.remote_digest(name), psize, want):
                    continue  # left by an earlier, interrupted push
                for attempt in range(1, self.chunk_attempts + 1):
                    try:
                        self.link.push(piece, name, self.transfer_timeout)
                        if _matches(self.remote_digest(name), psize, want):
                            sent += psize
                            break
                        err = f"chunk {i} arrived damaged"
                    except (ADBDeviceGone, DeviceTimeout, TransferError) as exc:
                        err = str(exc)
                    if attempt == self.chunk_attempts:
                        raise TransferError(self.device_id, f"push of {local.name}: chunk {i + 1}/{n} "
                                            f"failed {attempt} times: {err}")
                piece.unlink()
        qs = " ".join(shlex.quote(x) for x in names)
        run_ok(self, f"cat {qs} > {shlex.quote(part)} && rm -f {qs}", self.transfer_timeout)
        return sent

    def pull(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            have = self.remote_digest(remote)
            if have[0] is None:
                raise TransferError(self.device_id, f"pull {remote}: not found", transient=False)
            tmp = local.with_name(local.name + ".part")
            self.link.pull(remote, tmp, self.transfer_timeout)
        got = tmp.stat().st_size
        if got != have[0] or (have[1] in ("sha256", "md5") and
                              file_digests(tmp, "sha256", "md5")[have[1]] != have[2]):
            tmp.unlink(missing_ok=True)
            raise TransferError(self.device_id, f"pull {remote}: got {got} bytes, device has {have[0]}"
                                " (or content differs)")
        os.replace(tmp, local)
        return local

    def close(self) -> None:
        """Abort what still runs (see abort()), then disconnect."""
        self.abort()
        with self._lock:
            self.link.close()


def _kill_command(pidfs: list[str]) -> str:
    return "sh -c " + shlex.quote(_KILL_TREE) + " hwlab-kill " + " ".join(shlex.quote(f) for f in pidfs)


def _matches(have: tuple, size: int, digests: dict) -> bool:
    """Same size and same digest; a device without sha256sum/md5sum never counts as unchanged."""
    rsize, algo, digest = have
    return rsize == size and algo in digests and digests[algo] == digest
