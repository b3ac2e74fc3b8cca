"""The serving-http runtime: campaign options, the job path on `local` and over SSH, and faults.

Fast tests: option validation (one-line errors with file:line), planning (processor from the
device, serving options kept only for serving jobs), the sanity bound. Slow tests start the real
serving runner (uvicorn + Paddle Inference) through the lab's transports and drive it with real
MLPerf LoadGen; all traffic goes to 127.0.0.1 or the test's own network namespace, every server
has a --max-seconds bound and every LoadGen run a max duration.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lab.measure.campaign import load_campaign, plan_jobs, serving_processor
from lab.core.errors import ConfigError, DeviceError
from lab.core.records import Device
from lab.runtimes.serving import SANITY_MARGIN, ServingOptions, sanity_bound

REPO = Path(__file__).resolve().parents[2]


def _campaign(tmp_path: Path, options: str, *, models="tiny_mlp", devices="local", protocol="") -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(f"name: srv\ndevices: [{devices}]\nmodels: [{models}]\nbackends: [serving-http, paddle-inference-cpu]\n"
                 f"options:\n{options}\n{protocol}")
    return p


@pytest.mark.parametrize("value,needle", [("ftp://x", "is not an http://host:port URL"),
                                          ("http://127.0.0.1:99999", "is not an http://host:port URL"),
                                          ("127.0.0.1:8000", "is not an http://host:port URL"),
                                          ("http://h:1/?a=b", "query or fragment")])
def test_bad_endpoint_url_is_one_line_naming_file_and_line(tmp_path, value, needle):
    p = _campaign(tmp_path, f"  scenario: [server]\n  target_qps: [5]\n  endpoint: ['{value}']")
    with pytest.raises(ConfigError) as err:
        load_campaign(p)
    text = str(err.value)
    assert needle in text and f"{p}:8:" in text and "\n" not in text


@pytest.mark.parametrize("opt", ["target_qps: [0]", "latency_bound_ms: [-1]", "instances: [0]",
                                 "percentile: [0.2]", "scenario: [fast]", "max_batch: ['x']"])
def test_bad_serving_options_are_config_errors(tmp_path, opt):
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: option"):
        load_campaign(_campaign(tmp_path, f"  {opt}"))


def test_planning_keeps_serving_options_for_serving_jobs_only_and_takes_processor_from_device(tmp_path):
    spec = load_campaign(_campaign(tmp_path, "  scenario: [sweep]\n  instances: [1, 2]\n  latency_bound_ms: [50]"))
    local = Device(id="local", chip="generic-x86-cpu", transport="local")
    jobs, excluded = plan_jobs(spec, [local], lambda _m: "0" * 64)
    serving = [j for j in jobs if j.backend == "serving-http"]
    pi = [j for j in jobs if j.backend == "paddle-inference-cpu"]
    assert len(serving) == 2 and len(pi) == 1 and not excluded
    assert {j.option("instances") for j in serving} == {1, 2} and pi[0].options == ()
    assert serving[0].processor == "cpu"
    t4 = Device(id="t4", chip="nvidia-t4", transport="ssh", host="h")
    assert serving_processor(t4) == "gpu"
    phone = Device(id="local", chip="generic-x86-cpu", transport="adb", serial="x")
    _, excluded = plan_jobs(spec, [phone], lambda _m: "0" * 64)
    assert any("local or SSH device" in e.reason for e in excluded)


def test_server_scenario_needs_a_rate_and_sanity_bound_is_stated():
    from lab.core.records import Job
    job = Job("j", "c", "local", "x", "m", "0", "serving-http", "cpu", "fp32", 1,
              options=(("scenario", "server"),))
    with pytest.raises(ConfigError, match="needs option 'target_qps'"):
        ServingOptions.from_job(job)
    assert sanity_bound(2, 1, 20.0) == pytest.approx(2 * 1000 / 20 * (1 + SANITY_MARGIN))
    assert sanity_bound(1, 1, None) is None


# ------------------------------------------------------------------------------- slow: local
def _rows(store: Path) -> list[dict]:
    from lab.results.store import Store
    s = Store(store)
    try:
        return [dict(r.to_json(), provenance=s.provenance(r.job_id)) for r in s.results()]
    finally:
        s.close()


def _lab(*args: str, timeout: float = 600, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from lab.models.build import build
    root = REPO / "models"  # the lab's default models root (git-ignored); cached builds are reused
    build("tiny_mlp", out_root=root)
    build("mobilenet_v1", out_root=root)
    return root


CONFIRM_SHARE = 0.8  # the confirmation run completes at least this share of the sweep's maximum


@pytest.mark.slow
def test_local_sweep_of_mobilenet_1_and_2_instances_gives_a_qps_p99_curve(zoo, tmp_path):
    """The must-show: max QPS under the bound per instance count, confirmed by a Server run."""
    bound = 1500  # p90; generous: the shared 2-core box runs at load 15-40 (see docs/serving.md)
    camp = _campaign(tmp_path, f"  scenario: [sweep]\n  instances: [1, 2]\n  latency_bound_ms: [{bound}]\n"
                     "  percentile: [0.9]", models="mobilenet_v1",
                     protocol="protocol:\n  min_seconds: 2\n  max_seconds: 12\n  trials: 1\n  timeout_s: 400\n")
    camp.write_text(camp.read_text().replace("backends: [serving-http, paddle-inference-cpu]",
                                             "backends: [serving-http]"))
    store = tmp_path / "lab.sqlite"
    res = _lab("--store", str(store), "run", str(camp), "--models-root", str(zoo), "--no-progress", timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = _rows(store)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    from lab.serving.sweep import sweep_points
    for r in rows:
        assert r["scenario"] == "sweep" and r["valid"] and r["latency_bound_ms"] == bound
        assert r["instances"] in (1, 2) and r["max_batch"] == 1 and r["qps"] > 0
        sw = r["provenance"]["serving"]["sweep"]
        points = sweep_points(r["provenance"])
        assert len(points) >= 3 and all(p.p99_ms for p in points)  # the QPS-against-p99 curve
        assert r["qps"] in [p.target_qps for p in points if p.valid]
        # consistent with batch-1 latency: max QPS <= instances x 1000 / p50(SingleStream) x (1 + margin)
        assert r["qps"] <= sw["sanity_bound_qps"], sw
        assert r["agree_ok"] is True and r["agree_cosine_min"] >= 0.9999, r["provenance"]["notes"]
        logs = Path(r["provenance"]["loadgen_dir"])
        assert logs == tmp_path / "loadgen" / r["job_id"]
        assert (logs / "singlestream" / "mlperf_log_summary.txt").is_file()
        assert (logs / "serving_runner.log").is_file() and "stopping: SIGTERM" in (logs / "serving_runner.log").read_text()
    # a LoadGen Server run at the reported max QPS (2 instances: the most queries per second, so the
    # least Poisson noise) completes at least 80 % of what it scheduled: the endpoint really serves
    # about that rate. Why 80 % and not the sweep's own KEEP_UP (90 %): the sweep's maximum sits at
    # the edge of capacity by construction (bisection to 5 %), and this box's capacity moves between
    # two runs minutes apart (CI, 2026-12-07: the sweep held 61 QPS, i.e. completed >= 55/s, and the
    # confirmation completed 51.7/s: 0.85). The failure this guards against is far larger: a short run
    # over capacity read as held (VALID at 22.7 QPS on an endpoint completing 14.5/s: 0.64).
    from lab.models.artifact import load_artifact
    from lab.serving.endpoint import LocalServer, ServerSpec
    from lab.serving.loadgen import LoadSettings, run_scenario
    art = load_artifact("mobilenet_v1", root=str(zoo))
    two = next(r for r in rows if r["instances"] == 2)
    x = [{"x": np.random.RandomState(i).rand(1, 3, 224, 224).astype("float32")} for i in range(4)]
    spec = ServerSpec(name="mobilenet_v1", model_file=str(art.model_path), params_file=str(art.params_path),
                      inputs=(("x", (-1, 3, 224, 224), "float32"),), instances=2, max_seconds=300)
    with LocalServer(spec, tmp_path / "confirm", ready_timeout=180) as srv:
        for attempt in range(2):  # one retry: on a shared box another process can take the CPU for seconds
            confirm = run_scenario(srv.url, "mobilenet_v1", x, LoadSettings("Server", target_qps=two["qps"],
                                   latency_bound_ms=bound, percentile=0.9, min_duration_s=15,
                                   max_duration_s=40, min_queries=44),
                                   out_dir=tmp_path / f"confirm-lg-{attempt}", server=srv)
            if confirm.completed_qps >= CONFIRM_SHARE * confirm.qps:
                break
    assert CONFIRM_SHARE * confirm.qps <= confirm.completed_qps <= 1.1 * confirm.qps, confirm.to_dict()
    assert abs(confirm.qps - two["qps"]) <= 0.25 * two["qps"], (confirm.to_dict(), two["qps"])  # Poisson draw


def _results_json(store: Path) -> list[dict]:
    res = _lab("--store", str(store), "results", "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.slow
def test_serving_rows_carry_the_reference_pass_agreement_and_a_constant_endpoint_fails_it(zoo, tmp_path):
    """The reference set goes through the endpoint before the load; the row stores agree_* through
    the one check path (checks.apply), read back with `lab results --format json`. An endpoint
    that answers a constant (the serving runner's --noop: zeros) fails the check."""
    from lab.models import agreement
    from lab.serving.endpoint import LocalServer, ServerSpec
    proto = "protocol:\n  min_seconds: 0.5\n  max_seconds: 3\n  trials: 1\n  timeout_s: 120\n"
    runs = {}
    spec = ServerSpec(name="tiny_mlp", noop=True, noop_output_shape="10", inputs=(("x", (-1, 64), "float32"),),
                      max_seconds=300)
    with LocalServer(spec, tmp_path / "noop", ready_timeout=120) as const:
        for name, extra in (("model", ""), ("const", f"\n  endpoint: ['{const.url}']")):
            d = tmp_path / name
            d.mkdir()
            camp = _campaign(d, "  scenario: [singlestream]" + extra, protocol=proto)
            camp.write_text(camp.read_text().replace(", paddle-inference-cpu]", "]"))
            res = _lab("--store", str(d / "lab.sqlite"), "run", str(camp), "--models-root", str(zoo),
                       "--no-progress", timeout=300)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
            (runs[name],) = _results_json(d / "lab.sqlite")
    (prov,) = [r["provenance"] for r in _rows(tmp_path / "model" / "lab.sqlite")]
    good, bad = runs["model"], runs["const"]
    assert good["status"] == "ok" and good["agree_ok"] is True and good["agree_cosine_min"] >= 0.9999, prov["notes"]
    assert good["agree_top1"] == 1.0 and good["agree_reference"].startswith("tiny_mlp@")
    assert prov["checks"]["agreement"]["n"] == agreement.REFERENCE_SET_SIZE
    assert not any("agreement not checked" in n for n in prov["notes"])
    assert "outputs_check" not in prov["serving"] and "agreement" not in prov["serving"]
    assert bad["status"] == "ok" and bad["agree_ok"] is False and bad["agree_cosine_min"] == 0.0
    # where the requests' time went (issue 23), stored on the row from the endpoint's statistics
    for row in (good, bad):
        assert 0 < row["endpoint_model_ms"] < row["endpoint_server_ms"] <= row["mean_ms"], row
        assert all(row[f"endpoint_{k}_ms"] >= 0 for k in ("queue", "decode", "encode"))
        assert row["endpoint_share"] == pytest.approx(1 - row["endpoint_model_ms"] / row["mean_ms"], rel=1e-6)
    (bad_prov,) = [r["provenance"] for r in _rows(tmp_path / "const" / "lab.sqlite")]
    assert any(n.startswith("output check FAILED against tiny_mlp@") for n in bad_prov["notes"])


# ------------------------------------------------------------------------------- slow: faults
def _device_server(tmp_path: Path, **kw):
    from lab.serving.endpoint import DeviceServer, ServerSpec
    from lab.transport.local import LocalTransport
    t = LocalTransport(Device(id="local", chip="generic-x86-cpu", transport="local", workdir=str(tmp_path / "wd")))
    spec = ServerSpec(name="m", noop=True, max_seconds=60, **kw)
    from lab.core.runner_files import RUNNERS_DIR
    return DeviceServer(t, spec, python=sys.executable, runner=str(RUNNERS_DIR / "serving_runner.py"),
                        workdir=t.workdir, tag="fault", ready_timeout=60)


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_device_server_crash_and_hang_mid_run_fail_with_log_lines_and_are_killed(tmp_path):
    from lab.serving.endpoint import ServingError
    from lab.serving.loadgen import LoadSettings, run_scenario
    x = [{"x": np.zeros((1, 4), "float32")}]
    s = LoadSettings("Server", target_qps=100, latency_bound_ms=100, percentile=0.9, min_duration_s=2,
                     max_duration_s=5, min_queries=50, request_timeout_s=2)
    srv = _device_server(tmp_path / "crash", inject_crash_after=40).start()
    with pytest.raises(ServingError) as err:
        run_scenario(srv.ready.url, "m", x, s, out_dir=tmp_path / "lg1", server=srv)
    assert "injected crash after 40 requests" in str(err.value) and "has exited" in str(err.value)
    srv.stop()
    # a hang: the event loop stalls for 10 minutes at request 30; requests time out, SIGTERM cannot
    # be handled by the stalled loop, so stop() kills it after its grace period
    srv = _device_server(tmp_path / "hang", inject_stall_ms=600000, stall_every=30).start()
    pid = srv.pid
    t0 = time.monotonic()
    with pytest.raises(ServingError, match="TimeoutError"):
        run_scenario(srv.ready.url, "m", x, s, out_dir=tmp_path / "lg2", server=srv)
    assert srv.failure() is None  # still there, hung
    assert srv.stop(grace=2) is True and not _pid_alive(pid)
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_port_in_use_is_a_transient_device_error_with_the_log(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        srv = _device_server(tmp_path, port=busy.getsockname()[1])
        with pytest.raises(DeviceError) as err:
            srv.start()
    assert err.value.transient and "cannot bind" in str(err.value) and "port in use" in str(err.value)


@pytest.mark.slow
def test_silent_endpoint_is_retried_then_the_device_is_marked_unhealthy(zoo, tmp_path):
    from lab.measure.orchestrate import prepare, run_prepared
    from lab.measure.scheduler import SchedulerOptions
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing answers there
    camp = _campaign(tmp_path, f"  scenario: [server]\n  target_qps: [5, 6, 7, 8]\n  endpoint: ['http://127.0.0.1:{port}']",
                     protocol="protocol:\n  trials: 1\n  timeout_s: 60\n")
    camp.write_text(camp.read_text().replace(", paddle-inference-cpu]", "]"))
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - id: local\n    chip: generic-x86-cpu\n    transport: local\n")
    prep = prepare(camp, devices, zoo)
    out = run_prepared(prep, tmp_path / "lab.sqlite", SchedulerOptions(progress=False, models_root=str(zoo),
                                                                        backoff_s=0.05, retries=1))
    rows = sorted(_rows(tmp_path / "lab.sqlite"), key=lambda r: r["options"]["target_qps"])
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "skipped"], rows
    assert "does not answer" in rows[0]["error"] and "after 2 attempts" in rows[0]["error"]
    assert rows[0]["attempts"] == 2 and "marked unhealthy" in rows[3]["error"]
    assert out.summary.devices["local"].healthy is False


# ------------------------------------------------------------------------------- slow: over SSH
@pytest.mark.slow
@pytest.mark.netns
def test_over_ssh_the_lab_starts_the_endpoint_on_the_netns_host_and_loads_it_from_the_lab_host(
        zoo, tmp_path, ssh_client_key):
    from sshd_fleet import NetnsFleet, netns_missing_reason, write_inventory
    reason = netns_missing_reason()
    if reason:
        pytest.skip(reason)
    with NetnsFleet(1, tmp_path / "fleet", ssh_client_key[1]) as fleet:
        h = fleet.hosts[0]
        kh = fleet.known_hosts(tmp_path / "known_hosts")
        inv = write_inventory(tmp_path / "devices.yaml", [fleet.device_entry(h, ssh_client_key[0], kh)])
        camp = _campaign(tmp_path, "  scenario: [server]\n  target_qps: [20]\n  latency_bound_ms: [500]\n"
                         "  percentile: [0.9]", devices=h.id,
                         protocol="protocol:\n  min_seconds: 2\n  max_seconds: 10\n  trials: 1\n  timeout_s: 120\n")
        camp.write_text(camp.read_text().replace(", paddle-inference-cpu]", "]"))
        store = tmp_path / "lab.sqlite"
        res = _lab("--devices", str(inv), "--store", str(store), "run", str(camp), "--models-root", str(zoo),
                   "--no-progress", prefix=fleet.client_cmd([]), timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        left = subprocess.run(["ip", "netns", "pids", h.netns], capture_output=True, text=True).stdout.split()
        runners = [p for p in left if "serving_runner" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert runners == []  # stopped at the end of the job
    (row,) = _rows(store)
    assert row["status"] == "ok" and row["scenario"] == "Server" and row["valid"], row
    assert 14 <= row["qps"] <= 26 and row["p99_ms"] > 0
    ep = row["provenance"]["serving"]["endpoint"]
    assert ep["via"].startswith("ssh direct-tcpip to 127.0.0.1:") and ep["ready"]["host"] == "127.0.0.1"
    assert ep["stopped"] == "SIGTERM"
    logs = Path(row["provenance"]["loadgen_dir"])
    assert "ready on 127.0.0.1" in (logs / "serving_runner.log").read_text()
    summary = (logs / "server" / "mlperf_log_summary.txt").read_text()
    assert "Result is : VALID" in summary


def test_cloud_serving_scores_measured_max_qps_per_dollar_and_cost_per_million():
    from lab.devices.catalog import load_catalog
    from lab.core.records import ResultRow
    from lab.decide.measures import cost_per_million, hourly_usd, measures_for, score_measured
    from lab.decide.profiles import load_profiles
    t4 = load_catalog().get("nvidia-t4")
    usd_h, why = hourly_usd(t4)
    assert usd_h and "USD/h" in why
    prof = load_profiles()["cloud-serving"]
    base = dict(job_id="j", campaign="c", device="d", chip="nvidia-t4", model="mobilenet_v2", status="ok",
                precision="fp32", processor="gpu", threads=1, batch=1)
    rows = [ResultRow(**base, backend="paddle-inference-gpu", p50_ms=2.0),
            ResultRow(**dict(base, job_id="s"), backend="serving-http", p50_ms=40.0, scenario="sweep", qps=800.0,
                      valid=True, latency_bound_ms=50.0, instances=2, max_batch=1)]
    m = measures_for(t4, prof, rows, {})["mobilenet_v2"]
    assert m.latency_ms == 2.0 and m.throughput_ips == 500.0  # the serving row is not a batch-1 latency
    assert m.serving_qps == 800.0 and m.requests_per_usd == pytest.approx(800 * 3600 / usd_h)
    crit = score_measured(t4, prof, {"mobilenet_v2": m})
    assert "serving" in crit.value and "requests_per_usd" in crit.reason
    assert cost_per_million(800.0, usd_h) == pytest.approx(usd_h / (800 * 3600) * 1e6)
    assert cost_per_million(None, usd_h) is None and hourly_usd(load_catalog().get("rk1808"))[0] is None


def test_report_shows_the_qps_p99_curve_max_qps_and_cost_per_million(tmp_path):
    from lab.core.records import Job, Measurement
    from lab.report.render import build_report, render_html
    from lab.decide.measures import cost_per_million, hourly_usd
    from lab.devices.catalog import load_catalog
    from lab.results.store import Store
    store = Store(tmp_path / "lab.sqlite")
    job = Job("s1", "srv", "t4box", "nvidia-t4", "mobilenet_v1", "0" * 64, "serving-http", "gpu", "fp32", 1,
              options=(("instances", 2), ("scenario", "sweep")))
    store.save_campaign("srv", {"name": "srv"})
    store.plan_jobs([job])
    pts = [{"target_qps": q, "qps": q, "p50_ms": 5.0, "p90_ms": 8.0, "p99_ms": p99, "valid": v, "summary_path": ""}
           for q, p99, v in ((100, 12.0, True), (200, 30.0, True), (300, 400.0, False))]
    m = Measurement("s1", p50_ms=5.0, p90_ms=8.0, p99_ms=30.0, scenario="sweep", qps=200.0, latency_bound_ms=50.0,
                    valid=True, instances=2, max_batch=1, mean_ms=10.0, endpoint_queue_ms=1.5,
                    endpoint_decode_ms=0.25, endpoint_model_ms=6.0, endpoint_encode_ms=0.25,
                    endpoint_server_ms=8.5, endpoint_share=0.4,
                    provenance={"serving": {"sweep": {"points": pts, "max_qps": 200.0}}})
    store.finish_job("s1", "ok", measurement=m)
    html = render_html(build_report(store, ["srv"]))
    store.close()
    usd_h, _ = hourly_usd(load_catalog().get("nvidia-t4"))
    assert "Serving: QPS under a latency bound" in html and "Line chart of p99 latency against offered QPS" in html
    assert "Max QPS under 50 ms for" in html and "<b>200.0</b>" in html
    assert f"{cost_per_million(200.0, usd_h):.3f}" in html
    # beside the QPS, where a request's time went (issue 23): the model dominates this one
    split = html.split("Where a request's time goes")[1].split("</table>")[0]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", split)
    assert cells[2:10] == ["200.0", "6.00", "0.25", "0.25", "0.50", "1.50", "1.50", "40 %"], cells
    assert cells[10] == "the model (60%)"
