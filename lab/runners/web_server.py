#!/usr/bin/env python3
"""Tiny HTTP server for the Paddle.js benchmark page, run on the device next to the browser.

Why standalone: copied alone to devices (Python 3.7+, standard library only). It serves ONE
staged directory (the page, runner.js, vendor/ with the Paddle.js bundles, model/ with
model.json + chunks, inputs.bin) so the page needs nothing beyond this server: no CDN.

- Every request is logged as one JSON line to --log (method, path, status, bytes, client, t):
  the host compares it with the browser's own Network events to prove no request left it.
- Bounded lifetime: it exits after --lifetime seconds whatever happens (a lost host cannot leave
  it running), or earlier after the page POSTs its result to /result (written to --result).
- Prints one JSON line {"event": "listening", "port": N} on stdout once bound (--port 0 picks a
  free port), so the host learns the port.
- Responses carry Cache-Control: no-store, so each page load fetches the model (load_ms includes
  the fetch, as on a first visit).
"""
from __future__ import print_function

import argparse
import json
import os
import posixpath
import sys
import threading
import time

try:
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported
    raise SystemExit("web_server.py needs Python 3.7+")

SERVER_VERSION = "1.0.0"
MAX_RESULT_BYTES = 64 * 1024 * 1024
MIME = {".js": "application/javascript", ".json": "application/json", ".html": "text/html",
        ".dat": "application/octet-stream", ".bin": "application/octet-stream",
        ".wasm": "application/wasm"}


def _now():
    return round(time.time(), 3)


def make_handler(root, log_lock, log_fh, result_path, done_event):
    root = os.path.realpath(root)

    class Handler(SimpleHTTPRequestHandler):
        server_version = "hwlab-web/" + SERVER_VERSION

        def translate_path(self, path):
            """Map a URL path inside root only; anything escaping root maps to a missing file."""
            path = posixpath.normpath(unquote(urlsplit(path).path))
            parts = [p for p in path.split("/") if p and p not in (".", "..")]
            full = os.path.realpath(os.path.join(root, *parts))
            if full != root and not full.startswith(root + os.sep):
                return os.path.join(root, "\0missing")
            return full

        def guess_type(self, path):
            ext = os.path.splitext(path)[1].lower()
            return MIME.get(ext) or SimpleHTTPRequestHandler.guess_type(self, path)

        def end_headers(self):
            self.send_header("Cache-Control", "no-store")
            SimpleHTTPRequestHandler.end_headers(self)

        def log_request(self, code="-", size="-"):
            rec = {"t": _now(), "method": self.command, "path": self.path,
                   "status": int(code) if str(code).isdigit() else code,
                   "bytes": int(size) if str(size).isdigit() else None,
                   "client": self.client_address[0]}
            with log_lock:
                log_fh.write(json.dumps(rec) + "\n")
                log_fh.flush()

        def log_message(self, fmt, *args):  # errors go to stderr, one line each
            sys.stderr.write("web_server: " + (fmt % args) + "\n")

        def do_POST(self):
            if urlsplit(self.path).path != "/result" or not result_path:
                self.send_error(404, "only POST /result")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_RESULT_BYTES:
                self.send_error(413, "result too large")
                return
            body = self.rfile.read(length)
            tmp = result_path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, result_path)
            self.send_response_only(204)  # send_response would log it a second time
            self.end_headers()
            self.log_request(204, len(body))
            done_event.set()

    return Handler


def main(argv=None):
    p = argparse.ArgumentParser(prog="web_server.py", description="hwlab Paddle.js page server")
    p.add_argument("--root", required=True, help="the staged directory to serve")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    p.add_argument("--log", required=True, help="request log, one JSON line per request")
    p.add_argument("--lifetime", type=float, default=300.0, help="exit after this many seconds")
    p.add_argument("--result", default=None, help="where a POST /result body is written")
    p.add_argument("--linger", type=float, default=2.0,
                   help="seconds to keep serving after the result arrived")
    args = p.parse_args(argv)
    if not os.path.isdir(args.root):
        sys.stderr.write("web_server: --root %s is not a directory\n" % args.root)
        return 2
    if args.lifetime <= 0:
        sys.stderr.write("web_server: --lifetime must be > 0\n")
        return 2
    done = threading.Event()
    lock = threading.Lock()
    with open(args.log, "a") as log_fh:
        handler = make_handler(args.root, lock, log_fh, args.result, done)
        httpd = ThreadingHTTPServer((args.bind, args.port), handler)
        httpd.daemon_threads = True
        port = httpd.server_address[1]
        sys.stdout.write(json.dumps({"event": "listening", "port": port, "pid": os.getpid(),
                                     "server_version": SERVER_VERSION}) + "\n")
        sys.stdout.flush()
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
        thread.daemon = True
        thread.start()
        deadline = time.time() + args.lifetime
        reason = "lifetime"
        while time.time() < deadline:
            if done.wait(min(0.2, max(0.0, deadline - time.time()))):
                time.sleep(max(0.0, min(args.linger, deadline - time.time())))
                reason = "result"
                break
        httpd.shutdown()
        httpd.server_close()
        sys.stdout.write(json.dumps({"event": "stopped", "reason": reason}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
