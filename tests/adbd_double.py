"""A protocol double of Android's adbd, for tests: the real ADB wire protocol over TCP.

What is real: packet framing (24-byte header, checksum and magic checked), CNXN, AUTH with a real
RSA signature check of the token against the client's public key (Android's binary key format,
PKCS#1 v1.5 over the pre-hashed 20-byte token, as adbd does), OPEN/OKAY/WRTE/CLSE with per-stream
flow control (one WRTE in flight until the peer OKAYs it), the `shell:` service (legacy, no pty:
stdout and stderr on one stream, no exit code) and the `sync:` service (STAT, SEND, DATA, DONE,
RECV, QUIT; parent directories created on SEND like adbd's `secure_mkdirs`).

What is simulated, plainly:
- The "device" is a sandbox directory (`root`). Shell commands run with the host's /bin/sh. Device
  paths under /data, /sdcard, /storage, /sys, /system, /vendor, /odm, and any /dev or /proc entry
  that exists in the sandbox, are rewritten in the command text to `<root>/...`, and `<root>` is
  stripped from the output again, so a command sees the sandbox where the device's files would be
  and the host's /bin, /usr and Python for everything else. `getprop` is a sh script on PATH
  reading `<root>/system/build.prop.txt`. Sync paths always map under the sandbox.
- When a shell stream is closed by the client or the connection drops, the command's process group
  is killed (adbd tears the subprocess down with its socket).
- Fault knobs (`Faults`): drop the connection after N bytes of a push or N seconds into a
  matching shell command, reject AUTH (close after the public key is offered, i.e. nobody taps
  "Allow"), and truncate a pushed file by one byte (a size mismatch the client must catch).
"""
from __future__ import annotations

import base64
import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

A_VERSION = 0x01000001
MAX_PAYLOAD = 1024 * 1024
CMDS = {name: struct.unpack("<I", name)[0] for name in
        (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE", b"SYNC")}
NAMES = {v: k for k, v in CMDS.items()}
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
SYNC_DATA_MAX = 64 * 1024
SHELL_PREFIXES = ("data", "sdcard", "storage", "sys", "system", "vendor", "odm")


class _Dropped(Exception):
    """The connection is gone (peer closed or a fault dropped it)."""


@dataclass
class Faults:
    """Fault knobs; each `*_times` counts down so a retry can succeed."""

    drop_push_after_bytes: int | None = None
    drop_push_times: int = 1
    drop_run_matching: str | None = None  # substring of a shell command
    drop_run_after_s: float = 0.2
    drop_run_times: int = 1
    reject_auth: bool = False
    truncate_push: bool = False
    truncate_push_times: int = 1


@dataclass
class Stats:
    connections: int = 0
    auth_ok: int = 0
    auth_rejected: int = 0
    shell_commands: list = field(default_factory=list)
    pushes: list = field(default_factory=list)
    drops: int = 0


def decode_android_pubkey(text: bytes) -> rsa.RSAPublicKey:
    """Android's RSAPublicKey struct (base64), as written by `adbkey.pub`, into a key object."""
    blob = base64.b64decode(text.split(b"\0")[0].split(b" ")[0])
    words, _n0inv = struct.unpack_from("<II", blob, 0)
    size = words * 4
    modulus = int.from_bytes(blob[8:8 + size], "little")
    exponent = struct.unpack_from("<I", blob, 8 + 2 * size)[0]
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


class AdbdDouble:
    """Serve one sandbox device on 127.0.0.1:<port>. `start()` returns the port."""

    def __init__(self, root: Path, *, authorized_keys: list[bytes] | None = None,
                 accept_new_keys: bool = False, require_auth: bool = True,
                 banner: str = "device::ro.product.name=double;ro.product.model=double;"
                               "ro.product.device=double;",
                 maxdata: int = MAX_PAYLOAD, faults: Faults | None = None):
        self.root = Path(root).resolve()
        for d in ("data/local/tmp", "system/bin", "sys", "sdcard"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.authorized = [decode_android_pubkey(k) for k in (authorized_keys or [])]
        self.accept_new_keys = accept_new_keys
        self.require_auth = require_auth
        self.banner = banner
        self.maxdata = maxdata
        self.faults = faults or Faults()
        self.stats = Stats()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._stop = threading.Event()
        self.port = 0

    # -------------------------------------------------------------- lifecycle
    def start(self) -> int:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"adbd-double:{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self.port

    def stop(self) -> None:
        self._stop.set()
        if self._sock:
            try:
                self._sock.close()
            except OSError:
                pass
        for c in list(self._conns):
            _hard_close(c)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.stats.connections += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            threading.Thread(target=_Connection(self, conn).serve, daemon=True).start()

    # -------------------------------------------------------------- path mapping
    def device_path(self, path: str) -> Path:
        """Sync paths: every absolute device path lives under the sandbox."""
        return self.root / path.lstrip("/")

    def rewrite_command(self, cmd: str) -> str:
        names = list(SHELL_PREFIXES)
        for top in ("dev", "proc"):
            d = self.root / top
            if d.is_dir():
                names += [f"{top}/{re.escape(p.name)}" for p in d.iterdir()]
        pattern = r"(?<![\w./~-])/(" + "|".join(names) + r")(?=/|\b|$)"
        root = str(self.root)
        return re.sub(pattern, lambda m: root + m.group(0), cmd)

    def shell_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
        env["PATH"] = f"{self.root}/system/bin:{self.root}/system/xbin:{os.environ.get('PATH', '/usr/bin:/bin')}"
        env["HOME"] = str(self.root / "data/local/tmp")
        env["TMPDIR"] = str(self.root / "data/local/tmp")
        env["ANDROID_ROOT"] = "/system"
        env["HWLAB_DOUBLE_ROOT"] = str(self.root)  # for stand-in tools that must map paths
        return env


def _hard_close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


class _Connection:
    def __init__(self, server: AdbdDouble, conn: socket.socket):
        self.s, self.conn = server, conn
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.alive = True
        self.maxdata = server.maxdata
        self.peer_version = 0

    # ------------------------------------------------------------ framing
    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise _Dropped("peer closed")
            buf += chunk
        return bytes(buf)

    def read_packet(self):
        header = self._recv_exact(24)
        cmd, arg0, arg1, length, check, magic = struct.unpack("<6I", header)
        if cmd not in NAMES or magic != cmd ^ 0xFFFFFFFF:
            raise _Dropped(f"bad packet header {header!r}")
        data = self._recv_exact(length) if length else b""
        # adbd skips the checksum once both sides speak >= 0x01000001 (the adb server sends 0);
        # adb-shell announces 0x01000000, so its checksums are checked
        if self.peer_version < A_VERSION and _checksum(data) != check:
            raise _Dropped("bad checksum")
        return NAMES[cmd], arg0, arg1, data

    def send(self, cmd: bytes, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = struct.pack("<6I", CMDS[cmd], arg0, arg1, len(data), _checksum(data),
                             CMDS[cmd] ^ 0xFFFFFFFF)
        with self.send_lock:
            if not self.alive:
                raise _Dropped("connection closed")
            try:
                self.conn.sendall(header + data)
            except OSError as exc:
                raise _Dropped(str(exc)) from exc

    def drop(self) -> None:
        """Fault: the cable is pulled."""
        self.s.stats.drops += 1
        self.alive = False
        _hard_close(self.conn)

    # ------------------------------------------------------------ main loop
    def serve(self) -> None:
        try:
            if not self._handshake():
                return
            while True:
                cmd, arg0, arg1, data = self.read_packet()
                if cmd == b"OPEN":
                    self._open(arg0, data)
                elif cmd in (b"OKAY", b"WRTE", b"CLSE"):
                    stream = self.streams.get(arg1)
                    if stream is not None:
                        stream.inbox.put((cmd, data))
                        if cmd == b"OKAY" and stream.remote_id == 0:
                            stream.remote_id = arg0
                # anything else after the handshake is ignored, as adbd does for unknown packets
        except (_Dropped, OSError):
            pass
        finally:
            self.alive = False
            _hard_close(self.conn)
            self.s._conns.discard(self.conn)
            for stream in list(self.streams.values()):
                stream.inbox.put((b"GONE", b""))

    def _handshake(self) -> bool:
        cmd, version, peer_max, _data = self.read_packet()
        if cmd != b"CNXN":
            return False
        self.peer_version = version
        self.maxdata = min(self.maxdata, peer_max) if peer_max else self.maxdata
        if not self.s.require_auth:
            self.send(b"CNXN", A_VERSION, self.maxdata, self.s.banner.encode() + b"\0")
            return True
        token = os.urandom(20)
        self.send(b"AUTH", AUTH_TOKEN, 0, token)
        while True:
            cmd, arg0, _a1, data = self.read_packet()
            if cmd != b"AUTH":
                continue
            if arg0 == AUTH_SIGNATURE:
                if not self.s.faults.reject_auth and self._verify(token, data):
                    self.s.stats.auth_ok += 1
                    self.send(b"CNXN", A_VERSION, self.maxdata, self.s.banner.encode() + b"\0")
                    return True
                token = os.urandom(20)  # adbd sends a fresh token after a bad signature
                self.send(b"AUTH", AUTH_TOKEN, 0, token)
            elif arg0 == AUTH_RSAPUBLICKEY:
                if self.s.accept_new_keys and not self.s.faults.reject_auth:
                    self.s.authorized.append(decode_android_pubkey(data))
                    self.s.stats.auth_ok += 1
                    self.send(b"CNXN", A_VERSION, self.maxdata, self.s.banner.encode() + b"\0")
                    return True
                self.s.stats.auth_rejected += 1
                _hard_close(self.conn)  # nobody tapped "Allow" on the device
                return False

    def _verify(self, token: bytes, signature: bytes) -> bool:
        for key in self.s.authorized:
            try:
                key.verify(signature, token, padding.PKCS1v15(), Prehashed(hashes.SHA1()))
                return True
            except InvalidSignature:
                continue
        return False

    def _open(self, remote_id: int, data: bytes) -> None:
        dest = data.rstrip(b"\0").decode(errors="replace")
        local_id = self.next_id
        self.next_id += 1
        if dest.startswith("shell:"):
            stream = _ShellStream(self, local_id, remote_id, dest[len("shell:"):])
        elif dest.startswith("sync:"):
            stream = _SyncStream(self, local_id, remote_id)
        else:
            self.send(b"CLSE", 0, remote_id)  # unknown service: refused
            return
        self.streams[local_id] = stream
        self.send(b"OKAY", local_id, remote_id)
        threading.Thread(target=stream.run, daemon=True).start()


class _Stream:
    def __init__(self, conn: _Connection, local_id: int, remote_id: int):
        self.c, self.local_id, self.remote_id = conn, local_id, remote_id
        self.inbox: queue.Queue = queue.Queue()
        self.closed = False

    def write(self, data: bytes) -> None:
        """WRTE in pieces of at most maxdata, each waiting for the peer's OKAY (flow control)."""
        view = memoryview(data)
        while view:
            piece, view = bytes(view[:self.c.maxdata]), view[self.c.maxdata:]
            self.c.send(b"WRTE", self.local_id, self.remote_id, piece)
            while True:
                cmd, _ = self.inbox.get()
                if cmd == b"OKAY":
                    break
                if cmd in (b"CLSE", b"GONE"):
                    self.closed = True
                    raise _Dropped("stream closed by peer")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.c.send(b"CLSE", self.local_id, self.remote_id)
            except _Dropped:
                pass
        self.c.streams.pop(self.local_id, None)


class _ShellStream(_Stream):
    def __init__(self, conn, local_id, remote_id, command: str):
        super().__init__(conn, local_id, remote_id)
        self.command = command

    def run(self) -> None:
        server = self.c.s
        server.stats.shell_commands.append(self.command)
        text = server.rewrite_command(self.command) if self.command else "exec sh"
        proc = subprocess.Popen(["/bin/sh", "-c", text], cwd=str(server.root), env=server.shell_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        faults = server.faults
        drop_at = None
        if faults.drop_run_matching and faults.drop_run_times > 0 and \
                faults.drop_run_matching in self.command:
            faults.drop_run_times -= 1
            drop_at = time.monotonic() + faults.drop_run_after_s
        root = str(server.root).encode()
        carry = b""
        try:
            fd = proc.stdout.fileno()
            os.set_blocking(fd, False)
            while True:
                if drop_at is not None and time.monotonic() >= drop_at:
                    self.c.drop()
                    raise _Dropped("fault: connection dropped mid-run")
                ready, _, _ = select.select([fd], [], [], 0.05)
                if not ready:
                    if not self.inbox.empty():
                        cmd, _ = self.inbox.queue[0]
                        if cmd in (b"CLSE", b"GONE"):
                            raise _Dropped("client closed the shell stream")
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                data = _unroot(carry + chunk, root)
                keep = len(root) - 1
                carry, data = (data[-keep:], data[:-keep]) if len(data) > keep else (data, b"")
                if data:
                    self.write(data)
            if carry:
                self.write(_unroot(carry, root))
            proc.wait()
            self.close()
        except _Dropped:
            _kill_group(proc)
            self.closed = True
            self.c.streams.pop(self.local_id, None)
        finally:
            if proc.poll() is None:
                _kill_group(proc)
            proc.stdout.close()


class _SyncStream(_Stream):
    def run(self) -> None:
        buf = bytearray()
        try:
            while True:
                cmd, data = self.inbox.get()
                if cmd == b"CLSE":
                    self.close()
                    return
                if cmd == b"GONE":
                    return
                if cmd != b"WRTE":
                    continue
                self.c.send(b"OKAY", self.local_id, self.remote_id)
                buf += data
                self._process(buf)
        except _Dropped:
            self.closed = True
            self.c.streams.pop(self.local_id, None)

    # sync requests: 4-byte id + u32 (length, or mtime for DONE) [+ payload]
    def _process(self, buf: bytearray) -> None:
        while len(buf) >= 8:
            ident, arg = bytes(buf[:4]), struct.unpack("<I", buf[4:8])[0]
            if ident in (b"DONE", b"QUIT"):
                del buf[:8]
                self._handle(ident, arg, b"")
                continue
            if len(buf) < 8 + arg:
                return
            payload = bytes(buf[8:8 + arg])
            del buf[:8 + arg]
            self._handle(ident, arg, payload)

    def _handle(self, ident: bytes, arg: int, payload: bytes) -> None:
        server = self.c.s
        if ident == b"STAT":
            p = server.device_path(payload.decode())
            try:
                st = p.stat()
                self.write(b"STAT" + struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                 int(st.st_mtime)))
            except OSError:
                self.write(b"STAT" + struct.pack("<3I", 0, 0, 0))
        elif ident == b"SEND":
            spec = payload.decode()
            path, _, mode = spec.rpartition(",")
            self._send_path = server.device_path(path)
            self._send_mode = int(mode) if mode.isdigit() else 0o644
            self._send_path.parent.mkdir(parents=True, exist_ok=True)
            self._send_file = open(self._send_path, "wb")
            self._send_bytes = 0
            server.stats.pushes.append(path)
        elif ident == b"DATA":
            faults = server.faults
            self._send_file.write(payload)
            self._send_bytes += len(payload)
            if faults.drop_push_after_bytes is not None and faults.drop_push_times > 0 and \
                    self._send_bytes >= faults.drop_push_after_bytes:
                faults.drop_push_times -= 1
                self._send_file.close()
                self.c.drop()
                raise _Dropped("fault: connection dropped mid-push")
        elif ident == b"DONE":
            faults = server.faults
            self._send_file.close()
            if faults.truncate_push and faults.truncate_push_times > 0:
                faults.truncate_push_times -= 1
                with open(self._send_path, "r+b") as fh:
                    fh.truncate(max(0, self._send_bytes - 1))
            os.chmod(self._send_path, self._send_mode & 0o7777)
            os.utime(self._send_path, (arg, arg))
            self.write(b"OKAY" + struct.pack("<I", 0))
        elif ident == b"RECV":
            p = server.device_path(payload.decode())
            try:
                with open(p, "rb") as fh:
                    while True:
                        block = fh.read(SYNC_DATA_MAX)
                        if not block:
                            break
                        self.write(b"DATA" + struct.pack("<I", len(block)) + block)
                self.write(b"DONE" + struct.pack("<I", 0))
            except OSError as exc:
                msg = f"open failed: {exc.strerror}".encode()
                self.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
        elif ident == b"QUIT":
            self.close()
        else:
            msg = f"unsupported sync request {ident!r} in the double".encode()
            self.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)


def _unroot(data: bytes, root: bytes) -> bytes:
    """Sandbox paths back to device paths in command output (`<root>/x` -> `/x`, `<root>` -> `/`)."""
    return data.replace(root + b"/", b"/").replace(root, b"/")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


# ------------------------------------------------------------------ device sandboxes

GETPROP = r"""#!/bin/sh
# getprop stand-in: reads key=value lines from the sandbox's build.prop.txt
props="${HWLAB_DOUBLE_ROOT}/system/build.prop.txt"
if [ $# -eq 0 ]; then
  while IFS='=' read -r k v; do [ -n "$k" ] && printf '[%s]: [%s]\n' "$k" "$v"; done < "$props"
  exit 0
fi
while IFS='=' read -r k v; do
  if [ "$k" = "$1" ]; then printf '%s\n' "$v"; exit 0; fi
done < "$props"
printf '%s\n' "${2:-}"
"""


def _w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_device_root(root: Path, profile: str) -> Path:
    """Populate a sandbox like a Kirin 990 phone (`kirin`) or an RK1808 board (`rk1808`)."""
    root = Path(root)
    if profile == "kirin":
        props = {"ro.product.brand": "HUAWEI", "ro.product.vendor.brand": "HUAWEI",
                 "ro.product.model": "ELE-AL00", "ro.product.vendor.model": "ELE-AL00",
                 "ro.product.vendor.device": "HWELE", "ro.board.platform": "kirin990",
                 "ro.hardware": "kirin990", "ro.product.cpu.abi": "arm64-v8a",
                 "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
                 "ro.build.version.sdk": "29", "ro.build.version.release": "10"}
        clusters = [((0, 1, 2, 3), 1844000), ((4, 5), 2362000), ((6, 7), 2860000)]
        battery = "Battery"  # Huawei names the node with a capital B
        zones = [("soc_thermal", 41000), ("battery", 33000)]
        (root / "vendor/lib64").mkdir(parents=True, exist_ok=True)
        for lib in ("libhiai.so", "libhiai_ir.so", "libhiai_ir_build.so"):
            _w(root / "vendor/lib64" / lib, "stand-in\n")
    elif profile == "rk1808":
        props = {}
        clusters = [((0, 1), 1600000)]
        battery = None
        zones = [("soc-thermal", 46000)]
        _w(root / "dev/galcore", "")  # the Vivante driver node (a plain file in the sandbox)
        _w(root / "sys/class/devfreq/ffbc0000.npu/cur_freq", "792000000\n")
        _w(root / "sys/class/devfreq/ffbc0000.npu/max_freq", "792000000\n")
    else:
        raise ValueError(f"unknown profile {profile!r}")
    if props:
        _w(root / "system/build.prop.txt", "".join(f"{k}={v}\n" for k, v in props.items()))
        gp = root / "system/bin/getprop"
        _w(gp, GETPROP)
        gp.chmod(0o755)
    cpu_root = root / "sys/devices/system/cpu"
    ncpu = 0
    for i, (cpus, maxf) in enumerate(clusters):
        pol = cpu_root / f"cpufreq/policy{cpus[0]}"
        _w(pol / "related_cpus", " ".join(map(str, cpus)) + "\n")
        _w(pol / "cpuinfo_max_freq", f"{maxf}\n")
        _w(pol / "scaling_cur_freq", f"{maxf // 2}\n")
        _w(pol / "scaling_governor", "schedutil\n")
        ncpu = max(ncpu, max(cpus) + 1)
    _w(cpu_root / "possible", f"0-{ncpu - 1}\n")
    for i, (name, temp) in enumerate(zones):
        _w(root / f"sys/class/thermal/thermal_zone{i}/type", name + "\n")
        _w(root / f"sys/class/thermal/thermal_zone{i}/temp", f"{temp}\n")
    if battery:
        b = root / "sys/class/power_supply" / battery
        _w(b / "capacity", "87\n")
        _w(b / "voltage_now", "4012000\n")
        _w(b / "current_now", "-350000\n")
        _w(b / "temp", "331\n")
    _w(root / "proc/meminfo", "MemTotal:        7753572 kB\n" if profile == "kirin" else
       "MemTotal:        1020376 kB\n")
    return root
