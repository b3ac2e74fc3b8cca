"""The Paddle.js page job on an SSH host: a headless Chromium and web_server.py on the device.

Why apart from paddlejs_page (the `local` path): here nothing runs on the orchestrator but the CDP
driver. `push_site` stages the site (page, JS runner, vendor bundles, the model's web dir,
inputs.bin) and pushes it with web_server.py and web_session.sh (hash-cached pushes, a directory
per site content). `run_remote_page` starts ONE transport command per trial, web_session.sh, in a
thread: the server and the browser live in that command's process group, so the transport's
abort() (Ctrl-C) kills them, a watchdog on the device kills them after their lifetime, and the
lab kills the group itself at the end of the trial. Chromium writes its DevTools port to
DevToolsActivePort in its profile (--remote-debugging-port=0); the lab reads it over the
transport, forwards it to the orchestrator (lab.transport.forward: SSH direct-tcpip) and drives
the page with cdp.drive_page exactly as on `local`. The page loads http://127.0.0.1:PORT of the
device's own server, so its traffic never leaves the device; the request check (finish_doc) is the
local path's.
"""
from __future__ import annotations

import json
import shlex
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.web import cdp
from lab.core.errors import ConfigError, DeviceError, LabError, excerpt
from lab.core.hashing import tree_sha256
from lab.web.page import PageProtocol, backend_name, finish_doc, page_url, stage_site

SESSION = "web_session.sh"
SERVER = "web_server.py"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
START_TIMEOUT_S = 60.0  # server + browser up (a cold Chromium on a busy board takes seconds)


@dataclass(frozen=True)
class RemoteSite:
    """A staged site on the device and the runner files that serve it."""

    site: str          # the directory web_server.py serves
    server: str        # web_server.py on the device
    session: str       # web_session.sh on the device
    model_sha256: str  # of the model files served (web_sha256 of site/model, verified by push)
    model_files: dict[str, str]


def device_chromium(transport) -> str:
    """The device's Chromium (`command -v`), or ConfigError naming the device and the fix."""
    probe = "; ".join(f"command -v {b} && exit 0" for b in BROWSERS) + "; exit 1"
    res = transport.run(probe, timeout=30)
    path = res.out.strip().splitlines()[0].strip() if res.rc == 0 and res.out.strip() else ""
    if not path:
        raise ConfigError(f"device {transport.device_id!r} has no Chromium for the Paddle.js backend "
                          f"(command -v {' / '.join(BROWSERS)} found none)",
                          fix="install it on the device (Debian/Ubuntu: apt-get install chromium)")
    return path


def push_site(transport, web_dir: Path, inputs: list[tuple[str, Any]], model_id: str) -> RemoteSite:
    """Stage the site here, push it into workdir/web/site-<model>-<content hash>/ on the device."""
    from lab.convert.paddlejs import web_sha256
    from lab.core.runner_files import RUNNERS_DIR
    from lab.transport.base import remote_join
    sweep_stale_runs(transport)
    runners = remote_join(transport.workdir, "runners")
    server = transport.push(RUNNERS_DIR / SERVER, remote_join(runners, SERVER)).remote
    session = transport.push(RUNNERS_DIR / SESSION, remote_join(runners, SESSION)).remote
    with tempfile.TemporaryDirectory(prefix="hwlab-web-site-") as tmp:
        local = stage_site(web_dir, inputs, Path(tmp) / "site")
        files, model_sha = web_sha256(local / "model")
        remote = remote_join(transport.workdir, "web", f"site-{model_id}-{tree_sha256(local)[:12]}")
        for p in sorted(x for x in local.rglob("*") if x.is_file()):
            transport.push(p, remote_join(remote, p.relative_to(local).as_posix()))
    return RemoteSite(remote, server, session, model_sha, files)


# POSIX sh test "process group $pg runs": a zombie member counts as gone (an init that does not
# reap, as in containers, keeps zombies that `kill -0` still sees, so a dead session looked live
# and its run dir was never swept); plain `kill -0` where ps has no -o (busybox).
GROUP_RUNS_SH = ("{ if ps -eo pgid=,stat= >/dev/null 2>&1; then ps -eo pgid=,stat= | "
                 "awk -v g=\"$pg\" '$1 == g && $2 !~ /^Z/ {f = 1} END {exit !f}'; "
                 "else kill -s 0 -- -\"$pg\" 2>/dev/null; fi; }")


def sweep_stale_runs(transport) -> None:
    """Remove run dirs whose session group is gone (a lab interrupted by Ctrl-C had its processes
    killed by transport.abort but exited before removing the files). Live sessions are kept."""
    from lab.transport.base import remote_join
    web = shlex.quote(remote_join(transport.workdir, "web"))
    transport.run(f"for d in {web}/run-*; do [ -d \"$d\" ] || continue; pg=$(cat \"$d/pgid\" 2>/dev/null); "
                  f"case \"$pg\" in ''|*[!0-9]*) ;; *) {GROUP_RUNS_SH} && continue;; esac; "
                  "rm -rf \"$d\"; done; true", timeout=60)


def session_argv(site: RemoteSite, python: str, browser: str, run_dir: str, lifetime_s: int) -> list[str]:
    """web_session.sh's argv: the server's and the browser's (cdp.chromium_argv) in one command."""
    profile = run_dir.rstrip("/") + "/profile"
    return ["sh", site.session, python, site.server, site.site, run_dir, str(int(lifetime_s)),
            *cdp.chromium_argv(browser, profile)]


class RemoteSession:
    """One trial's web_session.sh on the device, run by a thread as one transport command."""

    def __init__(self, transport, argv: list[str], run_dir: str, lifetime_s: int):
        self.t, self.run_dir, self.lifetime_s = transport, run_dir, lifetime_s
        self.result: Any = None  # RunResult, or the exception the command ended with
        # `exec` keeps the transport's own shell pid, so the session's group is the command's.
        cmd = "exec " + " ".join(shlex.quote(a) for a in argv)
        self.thread = threading.Thread(target=self._run, args=(cmd,), daemon=True,
                                       name=f"web-session-{transport.device_id}")

    def _run(self, cmd: str) -> None:
        try:
            self.result = self.t.run(cmd, timeout=self.lifetime_s + 30)
        except Exception as exc:  # noqa: BLE001 - reported by `why_dead`
            self.result = exc

    def start(self) -> "RemoteSession":
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _files(self, *names: str) -> list[str]:
        q = shlex.quote(self.run_dir)
        cmd = "; echo __HWLAB_SEP__; ".join(f"cat {q}/{n} 2>/dev/null" for n in names)
        out = self.t.run(cmd, timeout=30).out
        return [x.strip() for x in out.split("__HWLAB_SEP__")] + [""] * len(names)

    def tails(self) -> str:
        """The browser's and the server's last stderr lines (for an error message)."""
        q = shlex.quote(self.run_dir)
        try:
            out = self.t.run(f"tail -c 1500 {q}/chromium.err 2>/dev/null; echo ' | server:'; "
                             f"tail -c 600 {q}/server.err 2>/dev/null", timeout=30).out
        except LabError as exc:
            return f"(unreadable: {exc})"
        return excerpt(out)

    def wait_ports(self, timeout_s: float = START_TIMEOUT_S) -> tuple[int, int]:
        """(server port, DevTools port) on the device, once both are up."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            server_out, devtools = self._files("server.out", "profile/DevToolsActivePort")[:2]
            sport = dport = None
            for line in server_out.splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == "listening":
                    sport = int(rec["port"])
            first = devtools.splitlines()[0].strip() if devtools else ""
            if first.isdigit():
                dport = int(first)
            if sport and dport:
                return sport, dport
            if not self.alive():
                raise cdp.CdpError(f"the page session on {self.t.device_id} ended at start "
                                   f"({self._ended()}): {self.tails()}")
            time.sleep(0.2)
        raise cdp.CdpError(f"chromium or web_server.py on {self.t.device_id} not up within "
                           f"{timeout_s:.0f} s: {self.tails()}")

    def _ended(self) -> str:
        r = self.result
        return f"exit {r.rc}" if hasattr(r, "rc") else f"{type(r).__name__}: {r}"

    def requests(self) -> list[dict[str, Any]]:
        text = self._files("requests.jsonl")[0]
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self) -> None:
        """Kill the session's process group (TERM, then KILL) and remove its run dir.

        Signals are delivered asynchronously: the dir is removed only once the group is gone (waits
        bounded at 3 s after TERM and 5 s after KILL), or a dying Chromium still writing into its
        profile leaves the dir behind ("Directory not empty")."""
        q = shlex.quote(self.run_dir)
        script = (f"pg=$(cat {q}/pgid 2>/dev/null); "
                  f"case \"$pg\" in ''|*[!0-9]*) ;; *) kill -s TERM -- -\"$pg\" 2>/dev/null; i=0; "
                  f"while {GROUP_RUNS_SH} && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; "
                  f"kill -s KILL -- -\"$pg\" 2>/dev/null; i=0; "
                  f"while {GROUP_RUNS_SH} && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done;; esac; "
                  f"rm -rf {q} 2>/dev/null || {{ sleep 0.5; rm -rf {q}; }}; true")
        try:
            self.t.run(script, timeout=30)
        except LabError:  # connection gone: the device-side watchdog ends the group; the job's
            pass          # own error (already raised) is the one to report
        finally:
            self.thread.join(timeout=15)


def run_remote_page(transport, site: RemoteSite, input_spec: str, protocol: PageProtocol,
                    deadline_s: float, *, python: str, browser: str, seed: int = 0,
                    backend: str = "paddle-js-webgl", tag: str = "job") -> dict[str, Any]:
    """One trial on the device; the browser and the server are stopped whatever happens."""
    from lab.transport.base import remote_join
    page_backend = backend_name(backend)
    run_dir = remote_join(transport.workdir, "web", f"run-{tag}-{uuid.uuid4().hex[:8]}")
    lifetime = int(deadline_s + START_TIMEOUT_S + 30)
    session = RemoteSession(transport, session_argv(site, python, browser, run_dir, lifetime),
                            run_dir, lifetime).start()
    url = None
    try:
        sport, dport = session.wait_ports()
        origin = f"http://127.0.0.1:{sport}"
        url = page_url(sport, input_spec, protocol, seed=seed, backend=page_backend)
        try:
            forward = transport.forward(dport)
        except DeviceError as exc:
            raise cdp.CdpError(f"cannot forward the DevTools port of {transport.device_id}: {exc}") from None
        try:
            run = cdp.drive_page("127.0.0.1", forward.local_port, url, deadline_s, alive=session.alive)
        finally:
            forward.close()
        if run.error and not session.alive():
            run.error += f" (chromium stderr: {session.tails()})"
        time.sleep(0.1)  # the server logs a request after answering it
        doc = finish_doc(run, origin, session.requests())
        doc["browser"]["via"] = forward.via
    except cdp.CdpError as exc:
        doc = finish_doc(cdp.PageRun(doc=None, error=str(exc)), "http://127.0.0.1", [])
    finally:
        session.stop()
    doc["command"] = [url or "(page not opened)"]
    return doc


def check_python(transport, python: str) -> None:
    """web_server.py needs Python 3.7+ on the device: ConfigError naming the device otherwise."""
    res = transport.run([python, "-c", "import sys; print(sys.version_info >= (3, 7))"], timeout=30)
    if res.rc != 0 or res.out.strip() != "True":
        raise ConfigError(f"device {transport.device_id!r}: {python} cannot run web_server.py "
                          f"(needs Python 3.7+): {excerpt(res.err or res.out) or 'no output'}",
                          fix="set `python:` of the device in devices.yaml to a Python 3.7+")
