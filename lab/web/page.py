"""The Paddle.js page job, host side: stage the site, serve it, drive the browser, build the doc.

Why apart from the runtime (lab/runtimes/paddle_js.py): this module keeps everything that is the
same for every device kind and that planning needs without the job path (`device_refusal`,
`WASM_REFUSAL`). `run_page(...) -> dict` returns a hwlab.runner/1 document whether the page worked
or not (ok=false with the console's error lines), and always leaves no browser and no server
behind.

Refusals: `paddle-js-wasm` needs `runtime.wasm`, which @paddlejs/paddlejs-backend-wasm 1.0.3
fetches from a CDN at run time and does not ship, so it is refused.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.web import cdp
from lab.core.errors import ConfigError, LabError, excerpt
from lab.core.records import MeasurementProtocol
from lab.core.runner_files import RUNNERS_DIR
from lab.transport.registry import forward_refusal

PAGE_DIR = RUNNERS_DIR / "web"
SERVER = RUNNERS_DIR / "web_server.py"
NODE_MODULES = PAGE_DIR / "node_modules"
# Staged name -> file inside node_modules (UMD bundles: window.paddlejs.core / .webglBackend).
VENDOR = {"paddlejs-core.js": "@paddlejs/paddlejs-core/lib/index.js",
          "paddlejs-backend-webgl.js": "@paddlejs/paddlejs-backend-webgl/lib/index.js"}
PACKAGES = {"@paddlejs/paddlejs-core": "2.2.0", "@paddlejs/paddlejs-backend-webgl": "1.2.9"}
BACKENDS = {"paddle-js-webgl": "webgl"}
WASM_REFUSAL = ("paddle-js-wasm is refused: @paddlejs/paddlejs-backend-wasm 1.0.3 fetches "
                "runtime.wasm from https://paddlejs.cdn.bcebos.com/dist/wasm at run time and the "
                "package does not contain it, so it cannot be served locally (no CDN in the lab)")


_DEFAULT = MeasurementProtocol()


@dataclass(frozen=True)
class PageProtocol:
    """The measurement protocol, as pi_runner's flags (same names, same meaning): the loop fields of
    MeasurementProtocol with its defaults (one definition), plus max_iters (0 = no cap) for tests and
    reference_samples: after the loop, feed that many samples of inputs.bin (the job's reference
    set) and report their outputs as `outputs_check` (lab/runtimes/checks.py; 0 = none)."""

    warmup: int = _DEFAULT.warmup
    warmup_seconds: float = _DEFAULT.warmup_seconds
    min_iters: int = _DEFAULT.min_iters
    min_seconds: float = _DEFAULT.min_seconds
    max_seconds: float = _DEFAULT.max_seconds
    target_rel_ci: float = _DEFAULT.target_rel_ci
    max_iters: int = 0
    reference_samples: int = 0


def device_refusal(dev) -> str | None:
    """Why the browser backends cannot run on `dev` (None when they can); checked at planning."""
    from lab.core import optional
    gone = [m for m in ("websocket", "psutil") if optional.missing(m)]  # the lab host drives the page
    if gone:
        return f"{optional.missing(gone[0])}: {optional.install_command(*gone)}"
    if dev.transport == "local":
        try:
            cdp.find_chromium()
        except ConfigError as exc:
            return str(exc)
        return None
    if dev.transport == "adb":
        return ("Paddle.js on an Android phone drives its Chrome through `adb forward tcp:PORT "
                "localabstract:chrome_devtools_remote`; the ADB transport offers no port forward yet")
    if forward_refusal(dev.transport) is None:
        return None  # the host's Chromium is looked for at the start of the job (over the transport)
    return (f"Paddle.js on {dev.transport} device {dev.id!r} needs the browser's DevTools port "
            "reached through the transport (a port forward); that transport offers none")


def backend_name(backend: str) -> str:
    """The page backend for a lab backend name; ConfigError (with the reason) otherwise."""
    if backend == "paddle-js-wasm":
        raise ConfigError(WASM_REFUSAL, fix="use paddle-js-webgl")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown Paddle.js backend {backend!r}", fix="use paddle-js-webgl")
    return BACKENDS[backend]


def vendor_files() -> dict[str, Path]:
    """The Paddle.js bundles to serve, checked against the pinned versions."""
    out = {}
    for name, rel in VENDOR.items():
        path = NODE_MODULES / rel
        pkg = path.parent.parent / "package.json"
        if not path.is_file() or not pkg.is_file():
            raise ConfigError(f"Paddle.js bundle missing: {path}",
                              fix="run `bash scripts/install-web-deps.sh` (npm ci in lab/runners/web)")
        version = json.loads(pkg.read_text()).get("version")
        want = PACKAGES[str(path.parent.parent.relative_to(NODE_MODULES))]
        if version != want:
            raise ConfigError(f"{pkg}: version {version}, the page is pinned to {want}",
                              fix="run `bash scripts/install-web-deps.sh`")
        out[name] = path
    return out


def stage_site(web_dir: Path, inputs: list[tuple[str, Any]], dest: Path) -> Path:
    """Make the directory the server serves: page, runner, vendor/, model/, inputs.bin.

    `inputs` are (name, numpy array) from the host's seeded generator; Paddle.js takes one
    float32 input, written as raw little-endian float32.
    """
    if len(inputs) != 1:
        raise ConfigError(f"Paddle.js runs single-input models, got {len(inputs)} inputs")
    name, arr = inputs[0]
    if str(arr.dtype) != "float32":
        raise ConfigError(f"Paddle.js feeds float32, input {name} is {arr.dtype}")
    if not (Path(web_dir) / "model.json").is_file():
        raise ConfigError(f"no Paddle.js model in {web_dir}", fix="run `lab models build ID --web`")
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "vendor").mkdir(parents=True)
    for f in ("index.html", "runner.js"):
        shutil.copyfile(PAGE_DIR / f, dest / f)
    for staged, src in vendor_files().items():
        shutil.copyfile(src, dest / "vendor" / staged)
    shutil.copytree(web_dir, dest / "model")
    arr.astype("<f4").tofile(dest / "inputs.bin")
    return dest


def page_url(port: int, input_spec: str, protocol: PageProtocol, *, seed: int = 0,
             backend: str = "webgl", host: str = "127.0.0.1", post: bool = True) -> str:
    q = {"backend": backend, "input": input_spec, "seed": seed, "post": int(post),
         **{k: getattr(protocol, k) for k in PageProtocol.__dataclass_fields__}}
    return f"http://{host}:{int(port)}/index.html?" + urllib.parse.urlencode(q)


class LocalServer:
    """web_server.py on this host, bounded by its own --lifetime and stopped on close()."""

    def __init__(self, site: Path, workdir: Path, lifetime_s: float):
        self.log_path = Path(workdir) / "requests.jsonl"
        self.result_path = Path(workdir) / "result.json"
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--root", str(site), "--log", str(self.log_path),
             "--result", str(self.result_path), "--lifetime", str(int(lifetime_s))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            self.close()
            raise LabError(f"web_server.py did not start: {excerpt(line + self.proc.stderr.read())}")

    def requests(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(x) for x in self.log_path.read_text().splitlines() if x.strip()]
        except OSError:
            return []

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def _outside(urls: list[str], origin: str) -> list[str]:
    """Requests that did not go to the local server (data:/blob:/about: stay in the page)."""
    return [u for u in urls if not (u.startswith(origin + "/") or u == origin
                                    or u.split(":", 1)[0] in ("data", "blob", "about"))]


def finish_doc(run: cdp.PageRun, origin: str, server_log: list[dict[str, Any]]) -> dict[str, Any]:
    """The page's document plus what the browser and server saw; ok=false with the console lines."""
    doc = run.doc or {"schema": "hwlab.runner/1", "runner": "paddlejs_runner", "ok": False,
                      "error": None, "timings": {}, "memory": {}, "env": {}, "outputs": []}
    webgl = (doc.get("env") or {}).get("webgl") or {}
    if webgl:
        webgl["label"] = cdp.renderer_label(webgl.get("renderer"))
    doc.setdefault("memory", {})["js_heap"] = run.heap or None
    doc["browser"] = dict(run.browser, driver_seconds=round(run.seconds, 3))
    outside = _outside(run.requests, origin)
    served = [r.get("path") for r in server_log]
    doc["network"] = {"origin": origin, "requests": run.requests, "outside": outside,
                      "server_log": server_log}
    doc["console"] = {"errors": run.console_errors, "exceptions": run.exceptions}
    problems = []
    if run.error:
        problems.append(run.error)
    if run.exceptions and not any("uncaught exception" in x for x in problems):
        # An uncaught exception fails the job even when the runner still reported a document.
        problems.insert(0, f"uncaught exception in the page: {run.exceptions[0]}")
    if outside:
        problems.append(f"the page requested {len(outside)} URL(s) beyond the local server, "
                        f"first {outside[0]}")
    missing = [u for u in run.requests if u.startswith(origin + "/")
               and u[len(origin):] not in served]
    if missing:
        problems.append(f"{len(missing)} request(s) seen by the browser are not in the server "
                        f"log, first {missing[0]}")
    if run.doc is not None and not run.doc.get("ok"):
        problems.append(run.doc.get("error") or "the page reported ok=false")
    lines = [x for x in run.exceptions + run.console_errors if x]
    if problems:
        msg = "; ".join(dict.fromkeys(problems))
        if lines and lines[0] not in msg:
            msg += " | console: " + " | ".join(dict.fromkeys(lines))[:600]
        doc["ok"], doc["error"] = False, msg
    return doc


def run_page(web_dir: Path, inputs: list[tuple[str, Any]], input_spec: str, protocol: PageProtocol,
             deadline_s: float, workdir: Path, *, seed: int = 0, backend: str = "paddle-js-webgl",
             browser: str | None = None) -> dict[str, Any]:
    """One trial on this host: headless Chromium + web_server.py; both stopped whatever happens."""
    page_backend = backend_name(backend)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    site = stage_site(web_dir, inputs, workdir / "site")
    server = LocalServer(site, workdir, lifetime_s=deadline_s + 30)
    try:
        origin = f"http://127.0.0.1:{server.port}"
        url = page_url(server.port, input_spec, protocol, seed=seed, backend=page_backend)
        with cdp.LocalChromium(browser) as chrome:
            run = cdp.drive_page("127.0.0.1", chrome.port, url, deadline_s, alive=chrome.alive)
            if run.error and not chrome.alive():
                run.error += f" (chromium stderr: {excerpt(chrome.stderr_tail())})"
        time.sleep(0.1)  # the server logs a request after answering it
        doc = finish_doc(run, origin, server.requests())
    finally:
        server.close()
    doc["command"] = [url]
    return doc
