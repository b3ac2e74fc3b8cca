"""The paddle-js-webgl runtime on an SSH host: the host's own headless Chromium and page server.

Real parts: OpenSSH in a network namespace the test creates (tests/sshd_fleet.NetnsFleet; the
host's processes run on this machine, so Debian's chromium is there), the lab CLI run inside the
client namespace, paramiko's direct-tcpip forward of the DevTools port, Paddle.js from npm,
mobilenet_v1 through paddlejsconverter and Paddle Inference for the reference. All traffic stays
in the test's namespaces. SwiftShader takes seconds per inference: warm-up 0, two steady samples,
one trial.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import assert_receives, default_signals
from lab.web import remote as pr
from lab.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"  # the lab's default models root (git-ignored); cached builds are reused
PROTOCOL = ("protocol: {warmup: 0, warmup_seconds: 0, min_iters: 2, min_seconds: 0, max_seconds: 12,\n"
            "           target_rel_ci: 0.5, trials: 1, timeout_s: 240}\n")


def _lab(*args, prefix=(), cwd=REPO, timeout=600):
    return subprocess.run([*prefix, sys.executable, "-m", "lab.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def _procs_naming(text: str) -> list[str]:
    """Command lines of live (non-zombie) processes that name `text` (the device's work dir)."""
    import psutil
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if text in cmd and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            out.append(cmd[:200])
    return out


def test_session_argv_carries_the_server_and_the_browser_flags_as_one_command():
    site = pr.RemoteSite("/w/web/site-m-abc", "/w/runners/web_server.py", "/w/runners/web_session.sh",
                         "f" * 64, {})
    argv = pr.session_argv(site, "python3", "/usr/bin/chromium", "/w/web/run x;rm -rf ~", 300)
    assert argv[:7] == ["sh", site.session, "python3", site.server, site.site, "/w/web/run x;rm -rf ~", "300"]
    assert argv[7] == "/usr/bin/chromium" and "--remote-debugging-port=0" in argv
    assert "--user-data-dir=/w/web/run x;rm -rf ~/profile" in argv and argv[-1] == "about:blank"


def test_stop_waits_for_a_group_that_ignores_term_then_removes_the_run_dir(tmp_path):
    """A dying browser still writes into its profile: the run dir goes only once the whole group
    is gone (CI once saw a run dir left behind by `rm -rf` racing the kill)."""
    from lab.core.records import Device
    from lab.transport.local import LocalTransport
    t = LocalTransport(Device(id="local", chip="generic-x86-cpu", transport="local", workdir=str(tmp_path)))
    run = tmp_path / "web" / "run-x"
    (run / "profile").mkdir(parents=True)
    writer = ("echo $$ > \"$1/pgid\"; trap '' TERM; "
              "(trap '' TERM; while :; do touch \"$1/profile/f$$$(date +%N)\"; sleep 0.02; done) & wait")
    group = subprocess.Popen(["setsid", "sh", "-c", writer, "sh", str(run)])
    try:
        deadline = time.monotonic() + 10
        while not list((run / "profile").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pg = int((run / "pgid").read_text())
        session = pr.RemoteSession(t, ["true"], str(run), 60).start()  # the group is the writer's
        t0 = time.monotonic()
        session.stop()
        assert not run.exists() and time.monotonic() - t0 < 15
        group.wait(timeout=10)
        ps = subprocess.run(["ps", "-eo", "pgid=,stat="], capture_output=True, text=True).stdout.split("\n")
        assert not [ln for ln in ps if ln.split() and ln.split()[0] == str(pg) and not ln.split()[1].startswith("Z")]
    finally:
        if group.poll() is None:
            group.kill()


def test_sweep_removes_a_run_whose_group_is_only_a_zombie_and_keeps_a_live_one(tmp_path):
    """A session killed by Ctrl-C can leave a zombie in its group where init does not reap (as in
    containers): `kill -0` still sees the group, and the run dir stayed forever (seen in CI)."""
    from lab.core.records import Device
    from lab.transport.local import LocalTransport
    t = LocalTransport(Device(id="local", chip="generic-x86-cpu", transport="local", workdir=str(tmp_path)))
    dead, live = tmp_path / "web" / "run-dead", tmp_path / "web" / "run-live"
    dead.mkdir(parents=True)
    live.mkdir(parents=True)
    zombie = subprocess.Popen(["sh", "-c", 'echo $$ > "$1/pgid"', "sh", str(dead)], start_new_session=True)
    runner = subprocess.Popen(["sh", "-c", 'echo $$ > "$1/pgid"; exec sleep 60', "sh", str(live)],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
                (live / "pgid").exists() and (dead / "pgid").exists()
                and open(f"/proc/{zombie.pid}/stat").read().split()[2] == "Z"):
            time.sleep(0.05)
        pr.sweep_stale_runs(t)  # the zombie is not reaped yet: we have not waited for it
        assert not dead.exists() and live.exists()
    finally:
        runner.kill()
        runner.wait()
        zombie.wait()


def test_missing_chromium_on_the_device_is_refused_with_the_fix(loopback_sshd, ssh_device, monkeypatch):
    """Over a real sshd: the browser is looked up with `command -v` on the device."""
    from lab.transport.ssh import SSHTransport
    t = SSHTransport(ssh_device(loopback_sshd))
    try:
        monkeypatch.setattr(pr, "BROWSERS", ("hwlab-no-such-browser",))
        with pytest.raises(ConfigError) as exc:
            pr.device_chromium(t)
        assert "'sshtest' has no Chromium" in str(exc.value) and "apt-get install chromium" in str(exc.value)
        monkeypatch.setattr(pr, "BROWSERS", ("hwlab-no-such-browser", "sh"))
        assert pr.device_chromium(t).endswith("/sh")
    finally:
        t.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory, ssh_client_key):
    """One SSH host in its own network namespace, its inventory, and mobilenet_v1 built."""
    from sshd_fleet import NetnsFleet, netns_missing_reason, write_inventory
    reason = netns_missing_reason()
    if reason:
        pytest.skip(reason)
    from lab.models.build import build
    build("mobilenet_v1", out_root=MODELS)
    tmp = tmp_path_factory.mktemp("webssh")
    with NetnsFleet(1, tmp / "fleet", ssh_client_key[1]) as fleet:
        h = fleet.hosts[0]
        kh = fleet.known_hosts(tmp / "known_hosts")
        inv = write_inventory(tmp / "devices.yaml", [fleet.device_entry(h, ssh_client_key[0], kh)])
        yield SimpleNamespace(fleet=fleet, id=h.id, workdir=str(h.sshd.workdir), inventory=inv, tmp=tmp)


def _campaign(host, name: str) -> Path:
    camp = host.tmp / f"{name}.yaml"
    camp.write_text(f"name: {name}\ndevices: [{host.id}]\nmodels: [mobilenet_v1]\n"
                    f"backends: [paddle-js-webgl]\n" + PROTOCOL)
    return camp


def _wait_gone(workdir: str, seconds: float = 10.0) -> list[str]:
    end = time.monotonic() + seconds
    while (left := _procs_naming(workdir)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


@pytest.mark.slow
@pytest.mark.netns
def test_mobilenet_v1_on_the_ssh_hosts_chromium_ok_row_renderer_agreement_nothing_left(host):
    store = host.tmp / "ok.sqlite"
    res = _lab("--devices", host.inventory, "--store", store, "run", _campaign(host, "webssh"),
               "--models-root", MODELS, "--no-progress", prefix=host.fleet.client_cmd([]), timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    # every process the job started on the host is gone (their command lines name the work dir)
    assert _procs_naming(host.workdir) == []
    web = Path(host.workdir) / "web"
    assert not list(web.glob("run-*"))  # each trial's run dir removed
    sites = list(web.glob("site-mobilenet_v1-*"))
    assert len(sites) == 1 and (sites[0] / "model" / "model.json").is_file()
    from lab.results.store import Store
    s = Store(store)
    try:
        (row,) = [r.to_json() for r in s.results()]
        prov = s.provenance(row["job_id"])
    finally:
        s.close()
    assert row["status"] == "ok" and row["device"] == host.id, row.get("error")
    assert row["p50_ms"] > 0 and row["load_ms"] > 0 and row["first_ms"] > 0 and row["n_samples"] >= 1  # max_seconds caps a loaded host
    w = prov["web"]
    assert "SwiftShader" in w["renderer"] and w["label"] == "software GPU emulation"
    assert w["browser"]["via"].startswith("ssh direct-tcpip to 127.0.0.1:")
    # the page asked only the device's own server, and the server log has every request it saw
    assert w["outside_requests"] == [] and w["requests"][0] > 0
    assert {"/index.html", "/model/model.json", "/inputs.bin"} <= set(w["served"])
    assert row["agree_ok"] is True and row["agree_cosine_min"] >= 0.9999 and row["agree_top1"] == 1.0, prov["notes"]
    meta = json.loads((MODELS / "mobilenet_v1" / "meta.json").read_text())["web"]
    assert prov["model_sha256"] == meta["sha256"]
    assert any(f"page served and run on {host.id}" in n for n in prov["notes"])


@pytest.mark.slow
@pytest.mark.netns
def test_ctrl_c_while_the_page_runs_stops_the_hosts_browser_and_server(host):
    """transport.abort() kills the session's process group: Chromium, its children, web_server.py."""
    proc = subprocess.Popen([*host.fleet.client_cmd([]), sys.executable, "-m", "lab.cli", "--devices",
                             str(host.inventory), "--store", str(host.tmp / "int.sqlite"), "run",
                             str(_campaign(host, "webint")), "--models-root", str(MODELS), "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)  # a suite started with `&` ignores SIGINT
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            running = _procs_naming(host.workdir)
            if any("web_server.py" in c for c in running) and any("--type=renderer" in c for c in running):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the page never started on the host: {proc.communicate(timeout=30)}")
        time.sleep(1.0)  # inside the page's run
        assert_receives(proc.pid, signal.SIGINT)  # the precondition: not ignored, not blocked
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted (Ctrl-C)" in err, out[-1000:] + err[-2000:]
    assert _wait_gone(host.workdir) == []


@pytest.mark.slow
@pytest.mark.netns
def test_a_page_error_on_the_host_fails_the_job_with_the_console_line_and_stops_everything(host):
    import shutil

    from lab.convert import paddlejs as pjs
    root = host.tmp / "models-bad"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(MODELS / "mobilenet_v1", root / "mobilenet_v1")
    shutil.copyfile(MODELS / "zoo.yaml", root / "zoo.yaml")
    web = root / "mobilenet_v1" / "web"
    (web / "model.json").write_text((web / "model.json").read_text()[:200])  # truncated JSON
    meta_path = root / "mobilenet_v1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["web"]["files"], meta["web"]["sha256"] = pjs.web_sha256(web)  # "current": not rebuilt
    meta_path.write_text(json.dumps(meta))
    store = host.tmp / "bad.sqlite"
    res = _lab("--devices", host.inventory, "--store", store, "run", _campaign(host, "webbad"),
               "--models-root", root, "--no-progress", prefix=host.fleet.client_cmd([]), timeout=300)
    assert res.returncode != 0 and "1 failed" in res.stderr, res.stdout[-1000:] + res.stderr[-2000:]
    from lab.results.store import Store
    s = Store(store)
    try:
        (row,) = [r.to_json() for r in s.results()]
    finally:
        s.close()
    assert row["status"] == "failed"
    assert "page failed: uncaught exception in the page" in row["error"] and "JSON" in row["error"], row["error"]
    assert _procs_naming(host.workdir) == []
    assert not list((Path(host.workdir) / "web").glob("run-*"))
