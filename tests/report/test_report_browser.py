"""The report opened in real headless Chromium, driven over the DevTools protocol.

Why `--remote-debugging-pipe`: the DevTools protocol over fds 3/4 (NUL-separated JSON) needs no
websocket library and no TCP port. Chromium also gets `--proxy-server` pointing at a local socket
that records every connection: together with the Network domain's request events, that proves the
page makes no external request. Console errors, uncaught exceptions, CSP violations (logged as
errors) and JavaScript dialogs (an `alert` from injected markup) all fail the test.
"""
from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lab.report.render import build_report, render_html
from lab.results.store import Store
from report_fixtures import XSS_DEVICE, XSS_MODEL, fill

# Debian's /usr/bin/chromium is a shell launcher that adds --enable-remote-extensions (extension
# update checks to update.googleapis.com) from /etc/chromium.d; the binary itself takes only our flags.
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium",) if os.access(p, os.X_OK)), None) \
    or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it: "
                                 "scripts/install-test-deps.sh)")]


class ConnectionRecorder:
    """A TCP listener that only records who connected (Chromium's proxy): any hit = a network attempt."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.hits: list[bytes] = []
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(1)
            try:
                self.hits.append(conn.recv(200))
            except OSError:
                self.hits.append(b"")
            conn.close()

    def close(self):
        self.sock.close()


class Browser:
    """Minimal DevTools-protocol client over --remote-debugging-pipe."""

    def __init__(self, proxy_port: int, tmp: Path):
        r_in, w_in = os.pipe()  # we write -> chromium reads on fd 3
        r_out, w_out = os.pipe()  # chromium writes on fd 4 -> we read
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--mute-audio",
                "--disable-features=NetworkTimeServiceQuerying,MediaRouter,OptimizationHints",
                f"--user-data-dir={tmp / 'profile'}", f"--proxy-server=http://127.0.0.1:{proxy_port}",
                "--proxy-bypass-list=<-loopback>", "--remote-debugging-pipe", "about:blank"]

        # bash (dash takes single-digit fds only) puts our pipe ends on fds 3 and 4, where Chromium expects them, then execs it
        wrapper = ["bash", "-c", f'exec "$0" "$@" 3<&{r_in} 4>&{w_out} {r_in}<&- {w_out}>&-'] + args
        self.proc = subprocess.Popen(wrapper, pass_fds=(r_in, w_out), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(tmp / "chromium.log", "wb"))
        os.close(r_in)
        os.close(w_out)
        self._w = os.fdopen(w_in, "wb", buffering=0)
        self._r = os.fdopen(r_out, "rb", buffering=0)
        self._id = 0
        self._q: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        buf = b""
        while True:
            chunk = self._r.read(65536)
            if not chunk:
                self._q.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._q.put(json.loads(msg))

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._q.get(timeout=max(0.1, deadline - time.monotonic()))
            if m is None:
                raise RuntimeError("chromium closed the pipe")
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self._event(m, session)

    def _event(self, m: dict, session: str | None):
        self.events.append(m)
        if m.get("method") == "Page.javascriptDialogOpening":  # answer it, or the page blocks
            self._id += 1
            self._w.write(json.dumps({"id": self._id, "method": "Page.handleJavaScriptDialog",
                                      "params": {"accept": True}, "sessionId": m.get("sessionId")}).encode()
                          + b"\0")

    def _incoming(self, seconds: float, poll: float):
        """Events read in the next `seconds`, each recorded before it is yielded; None last (and
        nothing after) when chromium closed the pipe."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                m = self._q.get(timeout=poll)
            except queue.Empty:
                continue
            if m is None:
                yield None
                return
            self._event(m, None)
            yield m

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        for m in self.events:
            if m.get("method") == method:
                return m
        for m in self._incoming(timeout, 0.2):
            if m is None:
                raise RuntimeError("chromium closed the pipe")
            if m.get("method") == method:
                return m
        raise TimeoutError(method)

    def drain(self, seconds: float):
        for _ in self._incoming(seconds, 0.1):
            pass

    def open(self, url: str, width: int = 1280, height: int = 1600) -> str:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired")
        self.drain(0.5)
        return session

    def evaluate(self, session: str, expr: str):
        res = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                        session)
        if "exceptionDetails" in res:
            raise AssertionError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._w.close()

    # -- what the tests assert on -------------------------------------------------------------
    def errors(self) -> list[str]:
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m.get("method") == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails"))[:300])
            elif m.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out

    def dialogs(self) -> list[str]:
        return [m["params"].get("message", "") for m in self.events
                if m.get("method") == "Page.javascriptDialogOpening"]

    def requests(self) -> list[str]:
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]


@pytest.fixture
def browser(tmp_path):
    proxy = ConnectionRecorder()
    b = Browser(proxy.port, tmp_path)
    b.proxy = proxy
    yield b
    b.close()
    proxy.close()


def decode_png(data: bytes):
    from matplotlib.image import imread
    return imread(io.BytesIO(data), format="png")


# Chromium's own background services: even on about:blank, with --disable-background-networking and
# --disable-component-update, this build still asks these hosts (network time, component/extension
# updates, account sign-in) through the proxy. Only these exact hosts are set aside; the page's own
# requests are checked without exception through the Network domain above.
CHROMIUM_SERVICE_HOSTS = {"clients2.google.com", "update.googleapis.com", "accounts.google.com"}


def proxy_host(first_bytes: bytes) -> str:
    """Host of a proxied request line: 'CONNECT h:443 ...' or 'GET http://h/... ...'."""
    parts = first_bytes.split(b" ")
    if len(parts) < 2:
        return "?"
    target = parts[1].decode("latin-1")
    if "://" in target:
        target = target.split("://", 1)[1].split("/", 1)[0]
    return target.rsplit(":", 1)[0]


def test_proxy_host_parsing():
    assert proxy_host(b"CONNECT update.googleapis.com:443 HTTP/1.1\r\n") == "update.googleapis.com"
    assert proxy_host(b"GET http://fonts.example.org/a.css HTTP/1.1") == "fonts.example.org"


def _check_clean(b: Browser):
    assert b.errors() == [], b.errors()
    assert b.dialogs() == []
    external = [u for u in b.requests() if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert external == []
    hosts = {proxy_host(h) for h in b.proxy.hits} - CHROMIUM_SERVICE_HOSTS
    assert hosts == set(), [h[:120] for h in b.proxy.hits]


def test_report_renders_in_chromium(browser, tmp_path):
    store = Store(tmp_path / "lab.sqlite")
    fill(store, "demo", [
        (dict(device="local", model="mobilenet_v1"), 10.0, {}),
        (dict(device="local", model="mobilenet_v1", threads=2), 6.0, {"converged": False}),
        (dict(device="local", model="mobilenet_v2"), 8.0, {"power_w": 4.2, "energy_mj_per_inf": 33.6,
                                                         "power_source": "rapl", "power_note": None}),
        (dict(device="phone", model="mobilenet_v1", backend="paddle-lite-kirin-npu", processor="aipu",
              precision="int8", chip="kirin990"), 5.0, {}),
        (dict(device="phone", model="mobilenet_v1", backend="paddle-lite-arm", chip="kirin990"), 30.0, {}),
        (dict(device="local", model="resnet50"), None, {}),
    ])
    fill(store, "before", [(dict(device="local", model="mobilenet_v1"), 8.0, {})], seed=5)
    rep = build_report(store, ["demo"], baseline="before", profiles=["mobile-app"])
    page = tmp_path / "index.html"
    page.write_text(render_html(rep), encoding="utf-8")
    n_samples = sum(r.n_samples for r in rep.rows)

    s = browser.open(page.as_uri())
    _check_clean(browser)
    assert browser.evaluate(s, "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.evaluate(s, "document.images.length") >= 4
    assert browser.evaluate(s, "document.querySelectorAll('tr.regression').length") == 1
    # the downloadable CSVs are built in the page from the embedded data
    assert browser.evaluate(s, "hwlabCsv.results().then(t => t.trim().split('\\n').length)") == len(rep.rows) + 1
    assert browser.evaluate(s, "hwlabCsv.samples().then(t => t.trim().split('\\n').length)") == n_samples + 1
    browser.evaluate(s, "document.getElementById('dl-results').click()")  # must not raise or log an error

    shot = base64.b64decode(browser.call("Page.captureScreenshot", {"format": "png"}, s)["data"])
    img = decode_png(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    rgb = (img[..., :3] * 255).astype("uint8").reshape(-1, 3)
    colours = {tuple(p) for p in rgb[:: 7]}
    non_white = (rgb.min(axis=1) < 240).mean()
    assert len(colours) > 50 and non_white > 0.03, (len(colours), non_white)
    (tmp_path / "shot.png").write_bytes(shot)

    pdf = base64.b64decode(browser.call("Page.printToPDF", {}, s, timeout=120)["data"])
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    browser.drain(0.3)
    _check_clean(browser)


def test_hostile_names_stay_text_in_chromium(browser, tmp_path):
    store = Store(tmp_path / "x.sqlite")
    fill(store, "x", [(dict(device=XSS_DEVICE, model=XSS_MODEL), 5.0, {}),
                      (dict(device=XSS_DEVICE, model=XSS_MODEL, threads=2), 4.0, {})])
    page = tmp_path / "x.html"
    page.write_text(render_html(build_report(store, ["x"], profiles=["mobile-app"])), encoding="utf-8")
    s = browser.open(page.as_uri())
    browser.drain(1.0)  # give an onerror handler time to fire, if one had slipped through
    _check_clean(browser)
    assert browser.evaluate(s, "document.querySelectorAll('img[onerror], script[src]').length") == 0
    assert browser.evaluate(s, "document.scripts.length") == 2  # the data block and our own script
    text = browser.evaluate(s, "document.body.innerText")
    assert XSS_DEVICE in text and XSS_MODEL in text
    csv = browser.evaluate(s, "hwlabCsv.results()")
    assert XSS_DEVICE in csv and '""><img onerror=alert(1) src=x>"' in csv  # CSV-quoted, intact
