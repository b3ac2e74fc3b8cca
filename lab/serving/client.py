"""A keep-alive HTTP connection pool for the load generator: threads, each owning one connection.

Why threads + http.client (measured, docs/benchmarks.md "Serving"): against the no-op endpoint on
this 2-core machine a pool of http.client threads sustained more requests per second than aiohttp
(2,160-2,700/s closed loop vs 1,070-2,170/s), needs no extra dependency, and hands each completion
to LoadGen from a plain thread. LoadGen's own issue thread only enqueues; it never waits on HTTP.
The pool bounds the requests in flight to its size; requests that wait for a free connection are
still timed from LoadGen's issue time, so queueing in the client shows in the latency (no
coordinated omission).
"""
from __future__ import annotations

import http.client
import queue
import threading
from dataclasses import dataclass
from typing import Callable

LOOPBACK_ONLY_NOTE = "load tests send traffic only to loopback or the tests' own netns hosts"


@dataclass
class Reply:
    """One request's outcome: HTTP status and body, or the connection error's text."""

    status: int | None
    body: bytes
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


class HttpPool:
    """`size` threads, each with one persistent HTTP/1.1 connection to host:port."""

    def __init__(self, host: str, port: int, size: int = 16, timeout: float = 30.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"http-{i}", daemon=True)
                         for i in range(size)]
        for t in self._threads:
            t.start()

    def submit(self, path: str, body: bytes, done: Callable[[Reply], None]) -> None:
        """POST `body` to `path`; `done(reply)` is called from a pool thread."""
        self._q.put((path, body, done))

    def close(self) -> None:
        for _ in self._threads:
            self._q.put(None)
        for t in self._threads:
            t.join(timeout=self.timeout + 1)

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _work(self) -> None:
        conn = self._connect()
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        while True:
            job = self._q.get()
            if job is None:
                conn.close()
                return
            path, body, done = job
            reply = None
            for attempt in (0, 1):  # one reconnect: the server may have closed an idle connection
                try:
                    conn.request("POST", path, body, headers)
                    resp = conn.getresponse()
                    reply = Reply(resp.status, resp.read())
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = self._connect()
                    if attempt == 1 or isinstance(exc, TimeoutError):
                        reply = Reply(None, b"", f"{type(exc).__name__}: {exc}")
                        break
            done(reply)
