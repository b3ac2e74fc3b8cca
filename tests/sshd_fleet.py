"""Real OpenSSH servers for tests and benchmarks: one on loopback, or a fleet in network namespaces.

Why real sshd: the SSH transport's contract (host keys, deadlines, exit codes, SFTP, dropped
connections) is only believable against the server devices actually run. Nothing here is mocked.

Fleet topology (all addresses live only inside namespaces this module creates and removes):

    netns hwlab-t<pid>-c  (the "lab host": the orchestrator runs here via `ip netns exec`)
      vc<i> 10.77.<i>.1/30  <── veth ──>  vh<i> 10.77.<i>.2/30  in netns hwlab-t<pid>-<i>
                                                               (its own sshd, host key, work dir)

The root namespace gets no interface and no address. Namespaces are removed on close(), at
interpreter exit, and stale ones from dead test processes are swept at the next start.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                                "/usr/libexec/sftp-server") if os.path.exists(p)), "internal-sftp")
NS_PREFIX = "hwlab-t"
_NS_RE = re.compile(r"^hwlab-t(\d+)-")


def sshd_missing_reason() -> str | None:
    if not os.path.exists(SSHD):
        return "OpenSSH server not installed (apt-get install openssh-server; `make test` does it)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen not installed (apt-get install openssh-client)"
    return None


def netns_missing_reason() -> str | None:
    reason = sshd_missing_reason()
    if reason:
        return reason
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the suite as root"
    if not shutil.which("ip"):
        return "iproute2 not installed (apt-get install iproute2)"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"ip netns add is not permitted here: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def keygen(path: Path, passphrase: str = "", kind: str = "ed25519") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_name(path.name + ".pub")):
        if p.exists():
            p.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "hwlab-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    """One sshd: own config, host key, authorized_keys, log; optionally inside a netns."""

    root: Path
    addr: str = "127.0.0.1"
    port: int = 0
    netns: str | None = None
    client_pub: Path | None = None
    host_key: Path | None = None
    sftp: bool = True  # False: no sftp subsystem, like dropbear/busybox boards without sftp-server
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self):
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir = self.root / "work"
        self.workdir.mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port() if self.netns is None else 22
        if self.host_key is None:
            self.host_key = keygen(self.root / "ssh_host_ed25519_key")
        if self.client_pub is not None:
            (self.root / "authorized_keys").write_text(Path(self.client_pub).read_text())
        self.log = self.root / "sshd.log"

    def config(self) -> Path:
        cfg = self.root / "sshd_config"
        cfg.write_text("\n".join([
            f"Port {self.port}", f"ListenAddress {self.addr}", f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password", "UseDNS no",
            *([f"Subsystem sftp {SFTP_SERVER}"] if self.sftp else []), "LogLevel INFO", "MaxSessions 64", "MaxStartups 100:30:200",
            "ClientAliveInterval 0", "",
        ]))
        return cfg

    def start(self, timeout: float = 15.0) -> "Sshd":
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        cmd = [SSHD, "-D", "-e", "-f", str(self.config())]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        mark = self.log.stat().st_size if self.log.exists() else 0
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.log.read_bytes()[mark:].decode(errors="replace")
            if "Server listening" in text:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {text[-800:]}")
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not start listening within {timeout} s: {self.log.read_text()[-800:]}")

    def stop(self, *, connections: bool = True) -> None:
        """Stop the listener; with `connections` also every session (the host going down)."""
        victims = []
        if self.proc is not None and self.proc.poll() is None:
            victims = descendants(self.proc.pid) if connections else []
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        if connections:
            if self.netns:
                kill_netns_processes(self.netns)
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def restart(self, *, new_host_key: bool = False) -> "Sshd":
        self.stop(connections=False)
        if new_host_key:
            self.host_key = keygen(self.root / "ssh_host_ed25519_key")
        return self.start()

    def known_hosts_line(self) -> str:
        name = self.addr if self.port == 22 else f"[{self.addr}]:{self.port}"
        kind, b64 = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        return f"{name} {kind} {b64}\n"


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (from /proc/*/stat), e.g. an sshd's per-connection sessions."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def write_inventory(path: Path, entries: list[dict], chip: str = "generic-x86-cpu") -> Path:
    """A devices.yaml for test hosts; each entry: id, host, port, key_file, known_hosts, workdir, ..."""
    lines = ["devices:"]
    for e in entries:
        lines.append(f"  - id: {_yaml_str(e['id'])}")
        lines.append(f"    chip: {e.get('chip', chip)}")
        lines.append("    transport: ssh")
        for key in ("host", "port", "user", "key_file", "key_passphrase_env", "known_hosts",
                    "host_key_policy", "workdir", "python"):
            if e.get(key) is not None:
                value = e[key]
                lines.append(f"    {key}: {value if isinstance(value, int) else _yaml_str(str(value))}")
        lines.append(f"    tags: [{', '.join(e.get('tags', ['test']))}]")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


# -- network namespaces ------------------------------------------------------------------------
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def kill_netns_processes(ns: str) -> None:
    res = _ip("netns", "pids", ns, check=False)
    for pid in res.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def delete_netns(ns: str) -> None:
    kill_netns_processes(ns)
    _ip("netns", "del", ns, check=False)


def sweep_stale_namespaces() -> list[str]:
    """Remove hwlab-t<pid>-* namespaces whose creating process is gone (a killed earlier run)."""
    removed = []
    res = _ip("netns", "list", check=False)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            delete_netns(name)
            removed.append(name)
    return removed


@dataclass
class FleetHost:
    index: int
    netns: str
    addr: str
    sshd: Sshd

    @property
    def id(self) -> str:
        return f"nshost{self.index}"


class NetnsFleet:
    """N hosts, each in its own network namespace with its own sshd, reached from a client netns."""

    def __init__(self, n: int, root: Path, client_pub: Path, *, start: bool = True, sftp: bool = True):
        sweep_stale_namespaces()
        self.root = Path(root)
        self.token = str(os.getpid())
        self.client_ns = f"{NS_PREFIX}{self.token}-c"
        self.hosts: list[FleetHost] = []
        self._namespaces: list[str] = []
        atexit.register(self.close)
        try:
            self._add_ns(self.client_ns)
            for i in range(n):
                ns = f"{NS_PREFIX}{self.token}-{i}"
                self._add_ns(ns)
                _ip("-n", self.client_ns, "link", "add", f"vc{i}", "type", "veth", "peer", "name", f"vh{i}",
                    "netns", ns)
                _ip("-n", self.client_ns, "addr", "add", f"10.77.{i}.1/30", "dev", f"vc{i}")
                _ip("-n", ns, "addr", "add", f"10.77.{i}.2/30", "dev", f"vh{i}")
                _ip("-n", self.client_ns, "link", "set", f"vc{i}", "up")
                _ip("-n", ns, "link", "set", f"vh{i}", "up")
                sshd = Sshd(self.root / f"host{i}", addr=f"10.77.{i}.2", port=22, netns=ns,
                            client_pub=client_pub, sftp=sftp)
                self.hosts.append(FleetHost(i, ns, f"10.77.{i}.2", sshd))
            if start:
                for h in self.hosts:
                    h.sshd.start()
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def known_hosts(self, path: Path) -> Path:
        Path(path).write_text("".join(h.sshd.known_hosts_line() for h in self.hosts))
        return Path(path)

    def device_entry(self, host, key_file: Path, known_hosts: Path, **over) -> dict:
        """One devices.yaml entry for `host`: root over SSH with strict host keys, this
        interpreter as its python, the host's sshd work dir (`over` replaces any of them)."""
        return {**dict(id=host.id, host=host.addr, port=22, user="root", key_file=str(key_file),
                       known_hosts=str(known_hosts), host_key_policy="strict",
                       workdir=str(host.sshd.workdir), python=sys.executable), **over}

    def client_cmd(self, argv: list[str]) -> list[str]:
        """argv run inside the client namespace (where the fleet's addresses are routable)."""
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def close(self) -> None:
        for h in self.hosts:
            try:
                h.sshd.stop(connections=False)
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        for ns in reversed(self._namespaces):
            delete_netns(ns)
        self._namespaces = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def netns_names() -> list[str]:
    res = _ip("netns", "list", check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


if __name__ == "__main__":  # manual check: python tests/sshd_fleet.py N
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        key = keygen(Path(tmp) / "id_ed25519")
        with NetnsFleet(int(sys.argv[1]) if len(sys.argv) > 1 else 2, Path(tmp), Path(str(key) + ".pub")) as f:
            print([h.addr for h in f.hosts], netns_names())
    print("after:", [n for n in netns_names() if n.startswith(NS_PREFIX)])


# ---------------------------------------------------------------- benchmarks' inner half
# The SSH benchmarks run in two halves: the outer one starts the servers (and namespaces), then
# re-runs the same script with hidden flags inside the client namespace, which prints its figures
# as one JSON line.

def bench_args(p: argparse.ArgumentParser, inner) -> argparse.Namespace | None:
    """Parse a benchmark's arguments (the inner half's hidden flags added); in the inner half, run
    `inner(args)`, print its JSON and return None, else return the arguments."""
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inventory", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.inner:
        return args
    print(json.dumps(inner(args)))
    return None


def run_inner(argv: list[str]) -> dict:
    """Run the inner half (`argv`, already wrapped for its namespace); its JSON line as a dict."""
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"inner run failed: {res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])
