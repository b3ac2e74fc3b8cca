"""Reach a TCP port on the device from the orchestrator: a local port forwarded over SSH.

Why: the serving runtime starts its endpoint on the device bound to the device's own loopback
(never exposed on its network), and the load generator runs on the orchestrator. Over SSH each
connection to the local port becomes a `direct-tcpip` channel of the transport's existing paramiko
connection (what `ssh -L` does), so no port is opened on the device's network and nothing but the
SSH port has to be reachable. The cost is the SSH hop per request (measured in docs/benchmarks.md
"Serving"): latency through a forward includes it, so the report says which path was measured.
On `local` the device's loopback is the orchestrator's: no forward.
"""
from __future__ import annotations

import select
import socket
import threading

from lab.core.errors import DeviceUnreachable


class Forward:
    """127.0.0.1:`local_port` on the orchestrator -> `remote_host`:`remote_port` on the device."""

    def __init__(self, local_port: int, closer=None, *, via: str = "loopback"):
        self.local_port, self._closer, self.via = local_port, closer, via

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> "Forward":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def no_forward(port: int) -> Forward:
    return Forward(port, None, via="loopback")


def ssh_forward(paramiko_transport, device_id: str, remote_port: int, remote_host: str = "127.0.0.1") -> Forward:
    """Listen on 127.0.0.1:0; pump each accepted connection through a direct-tcpip channel."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    stop = threading.Event()
    live: set = set()
    lock = threading.Lock()

    def pump(client: socket.socket) -> None:
        try:
            chan = paramiko_transport.open_channel("direct-tcpip", (remote_host, remote_port),
                                                   client.getpeername(), timeout=10)
        except Exception:  # noqa: BLE001 - refused on the device: close, the client sees a reset
            client.close()
            return
        with lock:
            live.add(chan)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not stop.is_set():
                r, _, _ = select.select([client, chan], [], [], 0.5)
                if client in r:
                    data = client.recv(1 << 18)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in r:
                    data = chan.recv(1 << 18)
                    if not data:
                        break
                    client.sendall(data)
        except (OSError, EOFError):
            pass
        finally:
            with lock:
                live.discard(chan)
            chan.close()
            client.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=pump, args=(client,), name=f"fwd-{port}", daemon=True).start()

    if not paramiko_transport.is_active():
        listener.close()
        raise DeviceUnreachable(device_id, "SSH connection closed; cannot forward the serving port")
    threading.Thread(target=accept, name=f"fwd-accept-{port}", daemon=True).start()

    def closer() -> None:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the other thread
        except OSError:
            pass
        listener.close()
        with lock:
            chans = list(live)
        for c in chans:
            c.close()

    return Forward(port, closer, via=f"ssh direct-tcpip to {remote_host}:{remote_port} on {device_id}")
