"""Chrome DevTools Protocol driver (host side): start or reach a browser, run one page, collect.

Why CDP and not a browser automation framework: the same few messages reach a headless Chromium
here, Chrome on an Android phone (`adb forward tcp:PORT localabstract:chrome_devtools_remote`) and
a Chromium on an SSH host (its debugging port tunnelled), so one code path measures all three.
What is collected while the page runs: console errors (Runtime.consoleAPICalled, Log.entryAdded),
uncaught exceptions (Runtime.exceptionThrown: fail fast with the line), every network request
(Network.requestWillBeSent: proves nothing left the local server), a crashed or detached target,
and at the end the JS heap (Runtime.getHeapUsage, Performance.getMetrics) and the browser version.

A browser this module starts is always stopped: its whole process group (and any child that left
it) is killed on exit, error or timeout, and its profile directory removed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.core.errors import ConfigError, LabError, excerpt

ENV_BROWSER = "HWLAB_CHROMIUM"
SOFTWARE_GPU_LABEL = "software GPU emulation"
# Headless, software WebGL (SwiftShader through ANGLE), and no traffic of the browser's own.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--no-default-browser-check", "--disable-default-apps",
                  "--enable-precise-memory-info")


class CdpError(LabError):
    """The browser could not be started, reached or driven."""


def renderer_label(renderer: str | None) -> str | None:
    """'software GPU emulation' for SwiftShader/llvmpipe renderers, 'GPU' for others, None unknown."""
    if not renderer:
        return None
    # the one list of software renderers (identity marks those rows emulated)
    from lab.devices.identity import software_renderer
    return SOFTWARE_GPU_LABEL if software_renderer(renderer) else "GPU"


# ------------------------------------------------------------------------------- argv builders
def find_chromium() -> str:
    env = os.environ.get(ENV_BROWSER)
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise ConfigError(f"{ENV_BROWSER}={env} is not an executable file")
        return env
    from lab.devices.readiness import CHROMIUM_NAMES
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError("no Chromium found for the Paddle.js backend",
                      fix="run `bash scripts/install-web-deps.sh` (it installs Debian's chromium) or set "
                          f"{ENV_BROWSER}")


def chromium_argv(binary: str, user_data_dir: str, *, port: int = 0,
                  extra: tuple[str, ...] = ()) -> list[str]:
    """The Chromium command line, for this host or an SSH host (lab/paddlejs_remote.session_argv)."""
    return [binary, *CHROMIUM_FLAGS, f"--remote-debugging-port={int(port)}",
            f"--user-data-dir={user_data_dir}", *extra, "about:blank"]


# ------------------------------------------------------------------------------- local browser
def _kill_tree(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM the process group and every descendant, then SIGKILL what is left."""
    pids = {proc.pid}
    try:
        import psutil
        pids |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    except Exception:  # noqa: BLE001 - psutil missing or the process already gone
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            alive = [p for p in pids if p != proc.pid and _alive(p)]
            if not alive:
                break
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


_LIVE: "set[LocalChromium]" = set()  # browsers started and not yet closed (for `close_all`)
_LIVE_LOCK = threading.Lock()


def close_all() -> int:
    """Stop every browser this process started and has not closed: the scheduler calls it on
    Ctrl-C/SIGTERM, since the page runs in a job thread that is never joined then and Chromium
    (in its own session) would outlive `lab run`. Returns how many were stopped."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for browser in live:
        browser.close()
    return len(live)


class LocalChromium:
    """A headless Chromium on this host, always stopped by `close()` / the context manager."""

    def __init__(self, binary: str | None = None, *, start_timeout_s: float = 30.0):
        self.binary = binary or find_chromium()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.profile = tempfile.mkdtemp(prefix="hwlab-chromium-")
        self.stderr_path = Path(self.profile + ".stderr")
        self.argv = chromium_argv(self.binary, self.profile)

    def __enter__(self) -> "LocalChromium":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> int:
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(self)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited at start (code {self.proc.returncode}): "
                               f"{excerpt(self.stderr_tail())}")
            try:
                first = port_file.read_text().splitlines()[0].strip()
                if first.isdigit():
                    self.port = int(first)
                    return self.port
            except (OSError, IndexError):
                pass
            time.sleep(0.05)
        self.close()
        raise CdpError(f"chromium gave no DevTools port within {self.start_timeout_s:.0f} s: "
                       f"{excerpt(self.stderr_tail())}")

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            return self.stderr_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self.proc is not None:
            _kill_tree(self.proc)
        shutil.rmtree(self.profile, ignore_errors=True)
        try:
            self.stderr_path.unlink()
        except OSError:
            pass


# ------------------------------------------------------------------------------ the connection
def browser_ws_url(host: str, port: int, timeout_s: float = 10.0) -> tuple[str, dict[str, Any]]:
    """The browser-level websocket URL from http://host:port/json/version (Chromium and Android)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{int(port)}/json/version", timeout=timeout_s) as r:
            info = json.loads(r.read().decode())
    except (OSError, ValueError) as exc:
        raise CdpError(f"no DevTools endpoint at {host}:{port}: {exc}") from None
    url = info.get("webSocketDebuggerUrl")
    if not url:
        raise CdpError(f"DevTools at {host}:{port} gave no webSocketDebuggerUrl")
    return ws_through(url, host, port), info


def ws_through(ws_url: str, host: str, port: int) -> str:
    """The websocket URL re-aimed at the host:port the lab reached DevTools through.

    A browser names its own address (an SSH host's Chromium: its port on the device's loopback;
    a phone's Chrome: no port at all); through a port forward the lab must use the forward's."""
    parts = urllib.parse.urlsplit(ws_url)
    return urllib.parse.urlunsplit((parts.scheme, f"{host}:{int(port)}", parts.path, parts.query, ""))


class CdpConnection:
    """One DevTools websocket: numbered calls, events kept in order for the page watcher."""

    def __init__(self, ws_url: str, timeout_s: float = 10.0):
        from lab.core import optional
        websocket = optional.require("websocket")  # websocket-client
        self._ws_mod = websocket
        try:
            self.ws = websocket.create_connection(ws_url, timeout=timeout_s, suppress_origin=True)
        except (OSError, websocket.WebSocketException) as exc:
            raise CdpError(f"cannot open DevTools websocket {ws_url}: {exc}") from None
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass

    def _recv(self, timeout_s: float) -> dict[str, Any] | None:
        self.ws.settimeout(max(0.01, timeout_s))
        try:
            raw = self.ws.recv()
        except self._ws_mod.WebSocketTimeoutException:
            return None
        except (OSError, self._ws_mod.WebSocketException) as exc:
            raise CdpError(f"DevTools connection lost: {exc}") from None
        return json.loads(raw) if raw else None

    def call(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout_s: float = 10.0) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            self.ws.send(json.dumps(msg))
        except (OSError, self._ws_mod.WebSocketException) as exc:
            raise CdpError(f"DevTools connection lost sending {method}: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"DevTools call {method} got no answer in {timeout_s:.0f} s")
            got = self._recv(left)
            if got is None:
                continue
            if got.get("id") == self._next:
                if "error" in got:
                    raise CdpError(f"DevTools {method}: {got['error'].get('message')}")
                return got.get("result") or {}
            if "method" in got:
                self.events.append(got)

    def pump(self, seconds: float) -> None:
        """Receive events for up to `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            got = self._recv(left)
            if got is not None and "method" in got:
                self.events.append(got)


# ----------------------------------------------------------------------------- running a page
@dataclass
class PageRun:
    """What one page run gave: its runner document (or None) and what the browser saw."""

    doc: dict[str, Any] | None
    error: str | None
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    heap: dict[str, Any] = field(default_factory=dict)
    browser: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _exception_line(params: dict[str, Any]) -> str:
    d = params.get("exceptionDetails") or {}
    exc = d.get("exception") or {}
    text = (exc.get("description") or d.get("text") or "exception").splitlines()[0]
    where = d.get("url") or ""
    if where:
        where = f" ({where.split('?')[0].rsplit('/', 1)[-1]}:{d.get('lineNumber', 0) + 1})"
    return (text + where)[:400]


def _watch(events: list[dict[str, Any]], run: PageRun, session: str) -> str | None:
    """Fold new events into `run`; return a fatal reason (crash/detach) or None."""
    fatal = None
    for ev in events:
        if ev.get("sessionId") not in (None, session):
            continue
        m, p = ev.get("method"), ev.get("params") or {}
        if m == "Runtime.exceptionThrown":
            run.exceptions.append(_exception_line(p))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            parts = [str(a.get("value", a.get("description", ""))) for a in p.get("args", [])]
            run.console_errors.append(" ".join(parts)[:400])
        elif m == "Log.entryAdded" and (p.get("entry") or {}).get("level") == "error":
            e = p["entry"]
            run.console_errors.append(f"{e.get('source', 'log')}: {e.get('text', '')}"[:400])
        elif m == "Network.requestWillBeSent":
            run.requests.append((p.get("request") or {}).get("url", ""))
        elif m in ("Inspector.targetCrashed", "Target.targetCrashed"):
            fatal = "the page's renderer crashed"
        elif m == "Target.detachedFromTarget" and p.get("sessionId") == session:
            fatal = "the page was detached (browser closed?)"
    events.clear()
    return fatal


_RESULT_JS = ("(() => { const s = window.__hwlab; "
              "return s && s.done ? JSON.stringify(s.doc) : null; })()")


def drive_page(host: str, port: int, url: str, deadline_s: float, *, poll_s: float = 0.5,
               exception_grace_s: float = 0.5, alive=None) -> PageRun:
    """Open `url` in a new tab of the browser at host:port, wait for window.__hwlab.done.

    Stops early on an uncaught exception (after a short grace to collect more console lines), a
    crash, or `alive()` turning false. Never raises for page problems: they are `run.error`.
    """
    start = time.monotonic()
    end = start + deadline_s
    run = PageRun(doc=None, error=None)
    ws_url, info = browser_ws_url(host, port)
    run.browser = {"product": info.get("Browser"), "user_agent": info.get("User-Agent"),
                   "protocol": info.get("Protocol-Version")}
    conn = CdpConnection(ws_url)
    target = None
    try:
        target = conn.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = conn.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page", "Performance"):
            conn.call(f"{domain}.enable", session=session)
        conn.call("Page.navigate", {"url": url}, session=session)
        exception_at = None
        while True:
            fatal = _watch(conn.events, run, session)
            now = time.monotonic()
            if fatal:
                run.error = fatal
                break
            if alive is not None and not alive():
                run.error = "the browser process died"
                break
            if run.exceptions and exception_at is None:
                exception_at = now
            if exception_at is not None and now - exception_at >= exception_grace_s:
                run.error = f"uncaught exception in the page: {run.exceptions[0]}"
                break
            if now >= end:
                run.error = f"no result within {deadline_s:.0f} s"
                break
            res = conn.call("Runtime.evaluate", {"expression": _RESULT_JS, "returnByValue": True},
                            session=session, timeout_s=max(1.0, end - now + 5.0))
            value = (res.get("result") or {}).get("value")
            if value:
                run.doc = json.loads(value)
                break
            conn.pump(poll_s)
        _watch(conn.events, run, session)
        try:
            used = conn.call("Runtime.getHeapUsage", session=session)
            run.heap = {"used_mb": used.get("usedSize", 0) / 1048576.0,
                        "total_mb": used.get("totalSize", 0) / 1048576.0,
                        "source": "CDP Runtime.getHeapUsage after the run"}
            metrics = {m["name"]: m["value"] for m in
                       conn.call("Performance.getMetrics", session=session).get("metrics", [])}
            if "JSHeapUsedSize" in metrics:
                run.heap["metrics_used_mb"] = metrics["JSHeapUsedSize"] / 1048576.0
                run.heap["metrics_total_mb"] = metrics.get("JSHeapTotalSize", 0) / 1048576.0
        except CdpError as exc:
            run.heap = {"note": f"unavailable: {exc}"}
    except CdpError as exc:
        run.error = run.error or str(exc)
    finally:
        if target is not None:
            try:
                conn.call("Target.closeTarget", {"targetId": target}, timeout_s=3.0)
            except CdpError:
                pass
        conn.close()
        run.seconds = time.monotonic() - start
    return run
