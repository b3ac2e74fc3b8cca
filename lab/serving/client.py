"""A keep-alive HTTP/1.1 client for the load generator: one event-loop thread, N connections.

Why not http.client in threads (phase 1): profiling the client path against the no-op endpoint
showed most of its CPU in http.client's header building and email-parser response headers, and in
16 threads handing the GIL to each other; the pool reached 784-1,616 samples/s with LoadGen and
the server on the same 2 cores. Here each request is encoded once, before the run, into its full
HTTP bytes (request line, headers, body: `prepare`); one thread owns every socket (non-blocking,
TCP_NODELAY, epoll through `selectors`), sends prepared bytes, parses only the status line and the
three headers it needs (Content-Length, Transfer-Encoding, Inference-Header-Content-Length) and
calls `done(reply)`. No per-request objects besides the Reply and no thread switch per request.

In flight: at most one request per connection (no pipelining), so `size` bounds the concurrency;
requests that wait for a free connection are still timed from LoadGen's issue time, so queueing
in the client shows in the latency (no coordinated omission). Every request has a deadline.
Traffic goes only where the caller points it: loopback or the tests' own network namespaces.
"""
from __future__ import annotations

import collections
import errno
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

_RECV = 1 << 18


@dataclass
class Reply:
    """One request's outcome: HTTP status, body and the binary-header length, or the error's text."""

    status: int | None
    body: bytes
    error: str | None = None
    header_length: int | None = None  # Inference-Header-Content-Length of the answer
    closed: bool = False  # the server said Connection: close (the socket is not reused)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


def prepare(host: str, port: int, path: str, body: bytes,
            headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)) -> bytes:
    """The complete HTTP/1.1 POST request as bytes (built once per sample, sent many times)."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}",
            "Connection: keep-alive", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Conn:
    __slots__ = ("sock", "out", "sent", "buf", "job", "deadline", "fresh", "registered")

    def __init__(self):
        self.sock: socket.socket | None = None
        self.out = b""
        self.sent = 0
        self.buf = bytearray()
        self.job = None
        self.deadline = 0.0
        self.fresh = True  # no answer read on this socket yet (a refusal is real, not a stale close)
        self.registered = 0


class HttpPool:
    """`size` persistent connections to host:port, driven by one thread."""

    def __init__(self, host: str, port: int, size: int = 16, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._pending: collections.deque = collections.deque()
        self._idle = [_Conn() for _ in range(max(1, size))]
        self._busy: set[_Conn] = set()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._sleeping = False
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="http-pool", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------- API
    def submit(self, request: bytes, done: Callable[[Reply], None]) -> None:
        """Send prepared `request` bytes (see `prepare`); `done(reply)` runs on the pool thread."""
        self._pending.append((request, done, 0))
        if self._sleeping:
            self._wake()

    def close(self) -> None:
        self._closing = True
        self._wake()
        self._thread.join(timeout=self.timeout + 1)
        for c in list(self._busy) + self._idle:
            self._drop(c)
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ----------------------------------------------------------------------------- loop
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # pipe full (already woken) or closed
            pass

    def _loop(self) -> None:
        pending, idle, busy = self._pending, self._idle, self._busy
        while True:
            while pending and idle:
                self._start(idle.pop(), *pending.popleft())
            if self._closing and not busy:
                return
            timeout = None
            if busy:
                timeout = max(0.0, min(c.deadline for c in busy) - time.monotonic())
            self._sleeping = True
            if pending and idle:
                self._sleeping = False
                continue
            events = self._sel.select(timeout)
            self._sleeping = False
            for key, mask in events:
                conn = key.data
                if conn is None:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except OSError:
                        pass
                    continue
                if mask & selectors.EVENT_WRITE:
                    self._send(conn)
                if mask & selectors.EVENT_READ and conn.job is not None:
                    self._recv(conn)
            if busy:
                now = time.monotonic()
                for c in [c for c in busy if c.deadline <= now]:
                    self._finish(c, Reply(None, b"", f"TimeoutError: no answer within {self.timeout:g}s"),
                                 broken=True)

    def _start(self, conn: _Conn, request: bytes, done, attempt: int) -> None:
        conn.job = (request, done, attempt)
        conn.out, conn.sent = request, 0
        conn.buf.clear()
        conn.deadline = time.monotonic() + self.timeout
        self._busy.add(conn)
        if conn.sock is None:
            try:
                conn.sock = socket.create_connection((self.host, self.port), timeout=min(self.timeout, 10.0))
            except OSError as exc:
                conn.sock = None
                self._finish(conn, Reply(None, b"", f"{type(exc).__name__}: {exc}"), broken=True)
                return
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.setblocking(False)
            conn.fresh = True
        self._send(conn)

    def _register(self, conn: _Conn, mask: int) -> None:
        if conn.registered == mask:
            return
        if conn.registered:
            self._sel.modify(conn.sock, mask, conn)
        else:
            self._sel.register(conn.sock, mask, conn)
        conn.registered = mask

    def _send(self, conn: _Conn) -> None:
        try:
            while conn.sent < len(conn.out):
                n = conn.sock.send(memoryview(conn.out)[conn.sent:])
                conn.sent += n
        except (BlockingIOError, InterruptedError):
            self._register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return
        except OSError as exc:
            self._retry_or_fail(conn, exc)
            return
        self._register(conn, selectors.EVENT_READ)

    def _recv(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._retry_or_fail(conn, exc)
            return
        if not data:
            if not conn.buf:
                self._retry_or_fail(conn, ConnectionResetError(errno.ECONNRESET, "server closed the connection"))
            else:
                reply = _parse(conn.buf, eof=True)
                self._finish(conn, reply or Reply(None, b"", "ConnectionResetError: answer cut short"),
                             broken=True)
            return
        conn.buf += data
        reply = _parse(conn.buf, eof=False)
        if reply is not None:
            conn.fresh = False
            self._finish(conn, reply, broken=reply.error is not None or reply.closed)

    def _retry_or_fail(self, conn: _Conn, exc: BaseException) -> None:
        """A kept-alive connection the server closed gets one fresh try; otherwise the request fails."""
        request, done, attempt = conn.job
        stale = not conn.fresh and attempt == 0
        self._drop(conn)
        self._busy.discard(conn)
        conn.job = None
        if stale:
            self._start(conn, request, done, 1)
        else:
            self._idle.append(conn)
            done(Reply(None, b"", f"{type(exc).__name__}: {exc}"))

    def _finish(self, conn: _Conn, reply: Reply, *, broken: bool = False) -> None:
        done = conn.job[1]
        conn.job = None
        conn.buf.clear()
        self._busy.discard(conn)
        if broken:
            self._drop(conn)
        self._idle.append(conn)
        done(reply)

    def _drop(self, conn: _Conn) -> None:
        if conn.sock is not None:
            if conn.registered:
                try:
                    self._sel.unregister(conn.sock)
                except (KeyError, ValueError):
                    pass
            conn.sock.close()
        conn.sock, conn.registered = None, 0


def _parse(buf: bytearray, *, eof: bool) -> Reply | None:
    """A complete HTTP/1.1 response in `buf`, or None while more bytes are needed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        return Reply(None, b"", f"BadStatusLine: {head[0][:100]!r}")
    length = hlen = None
    chunked = close = False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "inference-header-content-length":
            hlen = int(value)
        elif name == "connection":
            close = value.strip().lower() == "close"
    start = end + 4
    if chunked:
        body = _dechunk(buf, start)
        if body is None:
            return None
    elif length is not None:
        if len(buf) < start + length:
            return None
        body = bytes(buf[start:start + length])
    elif eof:
        body, close = bytes(buf[start:]), True
    else:
        return None
    return Reply(status, body, None, hlen, close)


def _dechunk(buf: bytearray, pos: int) -> bytes | None:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            return bytes(out) if buf.find(b"\r\n", pos) >= 0 else None
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos:pos + size]
        pos += size + 2
