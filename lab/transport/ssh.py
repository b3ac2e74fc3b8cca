"""The SSH transport (paramiko): servers and Linux boards reached over SSH.

Why it looks like this (see shared/reference/peers.md §7.1 for the paramiko pitfalls):
- paramiko's `timeout` is per read, not a deadline. `run()` keeps its own monotonic deadline and
  drains stdout/stderr while waiting (a full window would otherwise block the remote process and
  `recv_exit_status` would hang). On timeout the remote *process group* is killed: the command
  runs as `exec sh -c SCRIPT`, so the shell keeps the session-leader pid sshd gave it, reports
  `$$` on its first stderr line, and `kill -- -PID` reaches everything it started.
- Opening the connection (host-key policy, key file, passphrase) is lab/transport/ssh_connect.py.
- One SSHClient (one TCP connection) per transport; the scheduler keeps one transport per device.
- `push()` goes through SFTP into a temporary name, is verified by size + sha256 computed *on the
  device*, then renamed into place; unchanged files (same size + sha256) are not sent again. After a
  file is verified by sha256 on the device the lab leaves a record `.NAME.hwlab-sha256` ("size
  mtime sha256") next to it; while SFTP stat shows the same size and mtime, later pushes (this
  connection or a later run) skip without a shell session. Any change on the device moves the mtime
  and brings back the on-device hash. Why: a shell session costs 0.2-0.3 s of sshd work, the
  per-job overhead that limits parallel campaigns on small hosts.
"""
from __future__ import annotations

import os
import posixpath
import select
import shlex
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping, Sequence

from lab.core.errors import (CommandFailed, DeviceError, DeviceTimeout, DeviceUnreachable, TransferError,
                            excerpt)
from lab.core.hashing import sha256_file
from lab.transport.base import (CHECK_TIMEOUT_S, CONNECT_TIMEOUT_S, CheckResult, PushResult, RunResult, check_device, remote_join, run_ok,
                   shell_command)
from lab.transport.ssh_connect import DEFAULT_PORT, open_client

KEEPALIVE_S = 15
SFTP_OP_TIMEOUT_S = 60.0
PID_MARK = "hwlab-pid:"
RECORD_SUFFIX = ".hwlab-sha256"  # `.NAME.hwlab-sha256` next to a pushed file: "size mtime sha256"

# sha256 of a file on the device with what it has: OpenSSL first (uses the CPU's SHA extensions:
# 0.3 s for 100 MB here vs 2.2 s for coreutils sha256sum), then coreutils/busybox, then Python.
_REMOTE_HASH = (
    'f=$1; if [ ! -f "$f" ]; then echo missing; exit 0; fi; '
    'size=$(wc -c < "$f" | tr -d " "); '
    'h=$( (openssl dgst -sha256 -r "$f" 2>/dev/null || sha256sum "$f" 2>/dev/null '
    '|| python3 -c "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],\'rb\').read()).hexdigest())" '
    '"$f" 2>/dev/null) | cut -d " " -f 1); '
    'echo "$size $h"'
)

# The same for several files: one "size sha256 path" line each (files that vanished are left out).
_REMOTE_HASH_MANY = (
    'for f in "$@"; do [ -f "$f" ] || continue; size=$(wc -c < "$f" | tr -d " "); '
    'h=$( (openssl dgst -sha256 -r "$f" 2>/dev/null || sha256sum "$f" 2>/dev/null '
    '|| python3 -c "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],\'rb\').read()).hexdigest())" '
    '"$f" 2>/dev/null) | cut -d " " -f 1); echo "$size $h $f"; done'
)

_local_hash_cache: dict[tuple[str, int, int], str] = {}
_cache_lock = threading.Lock()


def local_sha256(path: Path) -> str:
    """sha256 of a host file, cached by (path, size, mtime) so unchanged models hash once per run."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _local_hash_cache:
            return _local_hash_cache[key]
    digest = sha256_file(path)
    with _cache_lock:
        _local_hash_cache[key] = digest
    return digest


class SSHTransport:
    """`Transport` over one paramiko connection to one device."""

    forward_refusal = None  # direct-tcpip channels of the one connection (lab.transport.forward)

    def __init__(self, device, *, connect_timeout: float = CONNECT_TIMEOUT_S,
                 keepalive_s: int = KEEPALIVE_S, known_hosts_default: str = "~/.ssh/known_hosts"):
        import paramiko  # imported here: hosts without SSH devices never load paramiko
        self._paramiko = paramiko
        self.device = device
        self.device_id = device.id
        self.host = device.host
        self.port = int(device.port or DEFAULT_PORT)
        self.user = device.user
        self.policy = device.host_key_policy or "strict"
        self.known_hosts = os.path.expanduser(device.known_hosts or known_hosts_default)
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        self._running: set = set()  # channels of commands running now
        self._pids: dict = {}  # channel -> remote process group id (for abort())
        self._client = None
        self._sftp = None
        self.no_sftp: str | None = None  # why files go over the exec channel (None: SFTP works)
        self._home: str | None = None
        self._dirs: set[str] = set()  # remote directories known to exist
        # remote path -> (size, sha256, mtime) when this connection last verified it by sha256 on the
        # device: later pushes of the same file skip re-hashing while size and mtime are unchanged.
        self._verified: dict[str, tuple[int, str, float]] = {}
        self._dirs_hashed: set[str] = set()
        self._recorded: dict[str, tuple[int, str, float]] = {}  # records known to be on the device
        self._lock = threading.RLock()
        self.bytes_sent = 0  # pushed payload bytes over this transport's life (benchmarks read it)
        self._connect()
        try:
            self.workdir = self.expand(device.workdir or "~/hwlab")
        except BaseException:
            self.close()
            raise

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        self._client = open_client(self.device, port=self.port, policy=self.policy,
                                   known_hosts=self.known_hosts, timeout=self.connect_timeout,
                                   keepalive_s=self.keepalive_s)

    def _transport(self):
        t = self._client.get_transport() if self._client is not None else None
        if t is None or not t.is_active():
            raise DeviceUnreachable(self.device_id, f"SSH connection to {self.host}:{self.port} is closed")
        return t

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1"):
        """A local port that reaches `remote_host:remote_port` on the device (lab.transport.forward)."""
        from lab.transport.forward import ssh_forward
        return ssh_forward(self._transport(), self.device_id, remote_port, remote_host)

    def expand(self, path: str) -> str:
        """Expand a leading `~` with the device's $HOME (asked once)."""
        if path == "~" or path.startswith("~/"):
            if self._home is None:
                res = self.run('printf "%s" "$HOME"', timeout=30)
                if res.rc != 0 or not res.out.startswith("/"):
                    raise CommandFailed(self.device_id, f"cannot read $HOME on the device: "
                                        f"{excerpt(res.err or res.out)}", rc=res.rc, stderr=res.err)
                self._home = res.out.rstrip("/") or "/"
            return self._home + path[1:]
        return path

    # -- commands -----------------------------------------------------------------------------
    def run(self, cmd: Sequence[str] | str, timeout: float, *, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> RunResult:
        text = shell_command(cmd, env=env, cwd=cwd)
        # `exec sh -c` keeps sshd's session-leader pid, so $$ is also the process group to kill.
        script = f'echo "{PID_MARK}$$" >&2; {text}'
        wrapped = "exec sh -c " + shlex.quote(script)
        start = time.monotonic()
        deadline = start + float(timeout)
        with self._lock:
            try:
                chan = self._transport().open_session(timeout=self.connect_timeout)
                chan.exec_command(wrapped)
                chan.shutdown_write()  # stdin closed: a runner never waits for input
            except DeviceError:
                raise
            except (self._paramiko.SSHException, OSError, EOFError) as exc:
                raise DeviceUnreachable(self.device_id, f"cannot start a command: {exc}") from None
        out, err = bytearray(), bytearray()
        exited_at = None  # sshd may send the exit status before the last stderr bytes: drain to EOF
        self._running.add(chan)
        try:
            while True:
                got = _drain(chan, out, err)
                if chan not in self._pids and err:
                    pid = _pid_from(err)
                    if pid:
                        self._pids[chan] = pid
                now = time.monotonic()
                if chan.exit_status_ready():
                    if exited_at is None or got:
                        exited_at = now
                    # done at EOF/close; or 2 s after the exit with no output: a background child
                    # still holds the pipes open (OpenSSH's ssh would hang there; the lab moves on)
                    if chan.eof_received or chan.closed or now - exited_at > 2.0:
                        _drain(chan, out, err)
                        break
                elif chan.closed or not chan.get_transport().is_active():
                    _drain(chan, out, err)
                    if not chan.exit_status_ready():
                        raise DeviceUnreachable(self.device_id, "connection lost while a command was "
                                                f"running: {text[:120]}")
                    continue
                remaining = deadline - now
                if remaining <= 0:
                    pid = _pid_from(err)
                    chan.close()
                    self._kill_remote(pid)
                    raise DeviceTimeout(self.device_id, f"command exceeded its {timeout:g} s deadline "
                                        f"(remote process group {pid or '?'} killed): {text[:120]}")
                if chan.eof_received:  # output closed: wait for the exit status (select would spin)
                    chan.status_event.wait(min(remaining, 0.5))
                else:
                    select.select([chan], [], [], min(remaining, 0.2))
            rc = chan.recv_exit_status()
            if rc == -1 and not self._alive():  # paramiko's "no exit status": the connection died
                raise DeviceUnreachable(self.device_id, "connection lost while a command was running: "
                                        f"{text[:120]}")
        finally:
            self._running.discard(chan)
            self._pids.pop(chan, None)
            chan.close()
        err_text = _strip_pid(err.decode(errors="replace"))
        return RunResult(rc, out.decode(errors="replace"), err_text, time.monotonic() - start)

    def _kill_remote(self, pid: int | None) -> None:
        """Kill the timed-out command's process group (TERM, then KILL) on a fresh channel."""
        if not pid:
            return
        p = str(int(pid))
        script = (f"kill -s TERM -- -{p} 2>/dev/null || kill -s TERM {p} 2>/dev/null; sleep 0.3; "
                  f"kill -s KILL -- -{p} 2>/dev/null || kill -s KILL {p} 2>/dev/null; true")
        try:
            with self._lock:
                chan = self._transport().open_session(timeout=self.connect_timeout)
                chan.exec_command(script)
            end = time.monotonic() + 5
            while not chan.exit_status_ready() and time.monotonic() < end:
                time.sleep(0.05)
            chan.close()
        except Exception:  # noqa: BLE001 - connection already gone: the process dies with it or not at all
            pass

    def check(self, timeout: float = CHECK_TIMEOUT_S) -> CheckResult:
        return check_device(self, timeout)

    @property
    def server_software(self) -> str | None:
        """The server's SSH version string ("OpenSSH_9.2p1 ...", "dropbear_2022.83"), for the probe."""
        version = getattr(self._client.get_transport(), "remote_version", None) if self._client else None
        return version.split("-", 2)[-1] if version else None

    def file_transfer(self) -> str:
        """How files travel to this device: SFTP, or the exec channel and why (the probe says it)."""
        return "sftp" if self._sftp_client() is not None else str(self.no_sftp)

    # -- files --------------------------------------------------------------------------------
    def _sftp_client(self):
        """The SFTP session, or None on hosts without an sftp subsystem (dropbear or busybox
        images without sftp-server): files then travel over the exec channel (`_exec_push`)."""
        with self._lock:
            if self._sftp is None and self.no_sftp is None:
                try:
                    self._sftp = self._client.open_sftp()
                    # per-operation bound: a peer that vanishes without a RST fails a push in
                    # SFTP_OP_TIMEOUT_S instead of the kernel's ~15 min TCP give-up
                    self._sftp.get_channel().settimeout(SFTP_OP_TIMEOUT_S)
                except (self._paramiko.SSHException, OSError, EOFError) as exc:
                    if not self._alive():
                        raise DeviceUnreachable(self.device_id, f"connection lost opening SFTP: {exc}") from None
                    self.no_sftp = f"no SFTP on the device ({exc}): files go over the exec channel"
            return self._sftp

    def remote_hash(self, remote: str) -> tuple[int, str] | None:
        """(size, sha256) of a device file, None when it does not exist."""
        res = self.run(["sh", "-c", _REMOTE_HASH, "hwlab-hash", remote], timeout=300)
        line = res.out.strip().splitlines()[-1] if res.out.strip() else ""
        if res.rc != 0 or not line:
            raise TransferError(self.device_id, f"cannot hash {remote} on the device: "
                                f"{excerpt(res.err or res.out)}")
        if line == "missing":
            return None
        parts = line.split()
        if len(parts) != 2 or len(parts[1]) != 64:
            raise TransferError(self.device_id, f"no sha256 tool on the device (sha256sum, openssl or "
                                f"python3) to verify {remote}: {excerpt(res.err or res.out)}", transient=False)
        return int(parts[0]), parts[1]

    def push(self, local: Path, remote: str) -> PushResult:
        local = Path(local)
        remote = self.expand(remote)
        size = local.stat().st_size
        digest = local_sha256(local)
        sftp = self._sftp_client()
        if sftp is None:
            return self._exec_push(local, remote, size, digest)
        try:
            # SFTP stat first: no shell session (and no hashing) unless the size already matches.
            try:
                st = sftp.stat(remote)
            except FileNotFoundError:
                st = None
            parent = posixpath.dirname(remote) or "."
            if st is not None and st.st_size == size:
                known = self._verified.get(remote)
                if known is None or known[2] != st.st_mtime:
                    known = self._read_record(sftp, remote)  # the device's record of an earlier check
                if (known is None or known[2] != st.st_mtime) and parent not in self._dirs_hashed:
                    self._hash_dir(sftp, parent)  # one session hashes this file and its siblings
                    known = self._verified.get(remote)
                if known is None or known[2] != st.st_mtime:
                    have = self.remote_hash(remote)
                    known = (have[0], have[1], st.st_mtime) if have else None
                    if known:
                        self._verified[remote] = known
                if known == (size, digest, st.st_mtime):
                    self._write_record(sftp, remote, known)
                    return PushResult(remote, size, digest, 0, True)
            self._ensure_dir(sftp, parent)
            tmp = _part_path(remote)
        except (self._paramiko.SSHException, OSError, EOFError) as exc:
            raise self._transfer_error(f"push {local} -> {remote}", exc) from None
        with self._pushing_part(local, remote, tmp):
            self._check_part(local, remote, tmp, self._sftp_put(sftp, local, tmp), size, digest)
            try:
                sftp.posix_rename(tmp, remote)
            except IOError:
                run_ok(self, ["mv", "-f", tmp, remote], what="rename pushed file")
            self._write_record(sftp, remote, (size, digest, sftp.stat(remote).st_mtime))
        self.bytes_sent += size
        return PushResult(remote, size, digest, size, False)

    @staticmethod
    def _record_path(remote: str) -> str:
        return remote_join(posixpath.dirname(remote) or ".", f".{posixpath.basename(remote)}{RECORD_SUFFIX}")

    def _read_record(self, sftp, remote: str) -> tuple[int, str, float] | None:
        """The `size mtime sha256` line the lab left next to a file it verified on the device."""
        try:
            with sftp.open(self._record_path(remote), "r") as fh:
                parts = fh.read(200).decode(errors="replace").split()
            if len(parts) == 3 and parts[0].isdigit() and len(parts[2]) == 64:
                record = (int(parts[0]), parts[2], float(parts[1]))
                self._recorded[remote] = record
                return record
        except (OSError, ValueError, self._paramiko.SSHException):
            pass
        return None

    def _write_record(self, sftp, remote: str, record: tuple[int, str, float]) -> None:
        self._verified[remote] = record
        if self._recorded.get(remote) == record:
            return
        self._recorded[remote] = record
        try:
            with sftp.open(self._record_path(remote), "w") as fh:
                fh.write(f"{record[0]} {int(record[2])} {record[1]}\n".encode())
        except (OSError, self._paramiko.SSHException):
            pass  # only an optimisation: the next connection hashes on the device again

    def _hash_dir(self, sftp, path: str) -> None:
        """sha256 of every regular file in a device directory in one session (a model's files live
        together), remembered with the size + mtime SFTP reports, so sibling pushes need no session."""
        self._dirs_hashed.add(path)
        try:
            attrs = {a.filename: a for a in sftp.listdir_attr(path)}
        except (OSError, self._paramiko.SSHException):
            return
        names = [n for n, a in attrs.items() if a.st_mode is not None and stat.S_ISREG(a.st_mode)
                 and ".hwlab-part-" not in n and not n.endswith(RECORD_SUFFIX)][:64]
        if not names:
            return
        res = self.run(["sh", "-c", _REMOTE_HASH_MANY, "hwlab-hash"] + [remote_join(path, n) for n in names],
                       timeout=300)
        for line in res.out.splitlines():
            parts = line.split(" ", 2)
            if len(parts) != 3 or len(parts[1]) != 64 or not parts[0].isdigit():
                continue
            name = posixpath.basename(parts[2])
            a = attrs.get(name)
            if a is not None and a.st_size == int(parts[0]):
                self._verified[remote_join(path, name)] = (int(parts[0]), parts[1], a.st_mtime)

    def _ensure_dir(self, sftp, path: str) -> None:
        if path in self._dirs:
            return
        try:
            sftp.stat(path)
        except FileNotFoundError:
            run_ok(self, ["mkdir", "-p", path], what=f"mkdir {path}")
        self._dirs.add(path)

    def _transfer_error(self, what: str, exc: BaseException) -> DeviceError:
        if not self._alive():
            return DeviceUnreachable(self.device_id, f"connection lost during {what}: {exc}")
        return TransferError(self.device_id, f"{what} failed: {exc}")

    def _sftp_put(self, sftp, local: Path, remote: str) -> int:
        """Pipelined SFTP writes (requests are not waited for one by one), counting bytes sent."""
        with open(local, "rb") as src, sftp.open(remote, "wb") as dst:
            dst.set_pipelined(True)
            return _copy_blocks(src, dst.write, 1 << 20)

    def _alive(self) -> bool:
        t = self._client.get_transport() if self._client is not None else None
        return bool(t and t.is_active())

    @contextmanager
    def _pushing_part(self, local: Path, remote: str, part: str):
        """Around writing, verifying and renaming a part file: on failure the part goes, and a
        broken stream becomes a TransferError that names the push."""
        try:
            yield
        except TransferError:
            self._remove_quietly(part)
            raise
        except (self._paramiko.SSHException, OSError, EOFError) as exc:
            self._remove_quietly(part)
            raise self._transfer_error(f"push {local} -> {remote}", exc) from None

    def _check_part(self, local: Path, remote: str, part: str, sent: int, size: int, digest: str) -> None:
        """Why: a push counts only when the device holds every byte with the right sha256, before
        the part file is renamed over `remote` (SFTP and exec-channel pushes alike)."""
        if sent != size:
            raise TransferError(self.device_id, f"push {local} -> {remote}: sent {sent} of {size} bytes "
                                "(file changed while pushing?)")
        got = self.remote_hash(part)
        if got != (size, digest):
            raise TransferError(self.device_id, f"push {local} -> {remote}: the device has "
                                f"{got[0] if got else 'no file'} bytes / sha256 "
                                f"{got[1][:12] if got else '-'}, expected {size} / {digest[:12]}")

    def _remove_quietly(self, remote: str) -> None:
        try:
            if self._alive():
                self.run(["rm", "-f", remote], timeout=30)
        except Exception:  # noqa: BLE001 - best effort cleanup of a partial temp file
            pass

    def pull(self, remote: str, local: Path) -> Path:
        local = Path(local)
        remote = self.expand(remote)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".part")
        sftp = self._sftp_client()
        if sftp is None:
            return self._exec_pull(remote, local, tmp)
        try:
            try:
                size = sftp.stat(remote).st_size
            except FileNotFoundError:
                raise TransferError(self.device_id, f"pull {remote}: not found", transient=False) from None
            sftp.get(remote, str(tmp))
            if tmp.stat().st_size != size:
                raise TransferError(self.device_id, f"pull {remote}: got {tmp.stat().st_size} of {size} bytes")
            os.replace(tmp, local)
        except TransferError:
            tmp.unlink(missing_ok=True)
            raise
        except (self._paramiko.SSHException, OSError, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._transfer_error(f"pull {remote}", exc) from None
        return local

    # -- files without SFTP: the exec channel ---------------------------------------------------
    def _exec_push(self, local: Path, remote: str, size: int, digest: str) -> PushResult:
        """`cat > part` over an exec channel, then sha256 on the device and rename: the same
        verify-then-rename contract and skip-if-unchanged (by the device's sha256) as SFTP."""
        have = self.remote_hash(remote)
        if have == (size, digest):
            self._verified[remote] = (size, digest, 0.0)
            return PushResult(remote, size, digest, 0, True)
        parent = posixpath.dirname(remote) or "."
        if parent not in self._dirs:
            run_ok(self, ["mkdir", "-p", parent], what=f"mkdir {parent}")
            self._dirs.add(parent)
        tmp = _part_path(remote)
        with self._pushing_part(local, remote, tmp):
            self._check_part(local, remote, tmp, self._exec_send(local, tmp), size, digest)
            run_ok(self, ["mv", "-f", tmp, remote], what="rename pushed file")
        self._verified[remote] = (size, digest, 0.0)
        self.bytes_sent += size
        return PushResult(remote, size, digest, size, False)

    def _exec_send(self, local: Path, remote: str) -> int:
        """Stream a file into `cat > remote` on the device; returns the bytes sent."""
        chan = self._transport().open_session(timeout=self.connect_timeout)
        try:
            chan.settimeout(SFTP_OP_TIMEOUT_S)
            chan.exec_command("cat > " + shlex.quote(remote))
            with open(local, "rb") as src:
                sent = _copy_blocks(src, chan.sendall, 1 << 18)
            chan.shutdown_write()
            rc = chan.recv_exit_status()
            if rc != 0:
                err = chan.recv_stderr(4096).decode(errors="replace")
                raise TransferError(self.device_id, f"cat > {remote} exited {rc}: {excerpt(err)}")
            return sent
        finally:
            chan.close()

    def _exec_pull(self, remote: str, local: Path, tmp: Path) -> Path:
        """`cat remote` over an exec channel, checked against the device's size and sha256."""
        have = self.remote_hash(remote)
        if have is None:
            raise TransferError(self.device_id, f"pull {remote}: not found", transient=False)
        chan = self._transport().open_session(timeout=self.connect_timeout)
        try:
            chan.settimeout(SFTP_OP_TIMEOUT_S)
            chan.exec_command("cat " + shlex.quote(remote))
            with open(tmp, "wb") as dst:
                while True:
                    block = chan.recv(1 << 18)
                    if not block:
                        break
                    dst.write(block)
            rc = chan.recv_exit_status()
        except (self._paramiko.SSHException, OSError, EOFError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._transfer_error(f"pull {remote}", exc) from None
        finally:
            chan.close()
        if rc != 0 or (tmp.stat().st_size, local_sha256(tmp)) != have:
            tmp.unlink(missing_ok=True)
            raise TransferError(self.device_id, f"pull {remote}: the copy does not match the device's "
                                f"{have[0]} bytes / sha256 {have[1][:12]} (exit {rc})")
        os.replace(tmp, local)
        return local

    def abort(self) -> None:
        """Kill the remote process groups of the commands running now (Ctrl-C of the orchestrator):
        closing the channel alone leaves a runner without a pty running on the device."""
        for chan, pid in list(self._pids.items()):
            self._kill_remote(pid)
            try:
                chan.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        """Abort what still runs (a closed channel alone leaves the runner going), then disconnect."""
        if self._pids and self._alive():
            self.abort()
        with self._lock:
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:  # noqa: BLE001
                    pass
                self._sftp = None
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- helpers --------------------------------------------------------------------------------------
def _copy_blocks(src, write, block_size: int) -> int:
    """Copy an open file to `write` block by block; the bytes sent (checked against the size hashed
    before the push: a file that changed meanwhile shows as a mismatch)."""
    sent = 0
    for block in iter(lambda: src.read(block_size), b""):
        write(block)
        sent += len(block)
    return sent


def _part_path(remote: str) -> str:
    """A unique part file beside `remote`: a push writes there and renames once verified."""
    parent = posixpath.dirname(remote) or "."
    return remote_join(parent, f".{posixpath.basename(remote)}.hwlab-part-{uuid.uuid4().hex[:8]}")


def _drain(chan, out: bytearray, err: bytearray) -> int:
    """Move whatever stdout/stderr bytes paramiko has buffered; returns how many."""
    n = 0
    while chan.recv_ready():
        block = chan.recv(1 << 16)
        out += block
        n += len(block)
    while chan.recv_stderr_ready():
        block = chan.recv_stderr(1 << 16)
        err += block
        n += len(block)
    return n


def _pid_from(err: bytearray) -> int | None:
    head = bytes(err[:200]).decode(errors="replace")
    if head.startswith(PID_MARK):
        digits = head[len(PID_MARK):].split("\n", 1)[0].strip()
        if digits.isdigit():
            return int(digits)
    return None


def _strip_pid(text: str) -> str:
    if text.startswith(PID_MARK):
        return text.split("\n", 1)[1] if "\n" in text else ""
    return text
