"""Serving scenario: the v2 runner, the LoadGen driver, the summary parser and the QPS sweep.

Fast tests: parsers and builders on real LoadGen output (tests/data/loadgen, written by
mlcommons-loadgen 6.0.17 against the runner) and the bisection logic. Slow tests start the real
runner (uvicorn + Paddle Inference on loopback) and real MLPerf LoadGen; every server has a
--max-seconds bound and every run a max duration, so nothing outlives the test.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lab.core.errors import ConfigError, RunnerError
from lab.serving import protocol
from lab.serving.endpoint import LocalServer, ServerSpec, ServingError, parse_ready, server_argv, tail
from lab.serving.loadgen import (LoadResult, LoadSettings, early_stopping_min_queries, parse_summary, probe,
                                 run_scenario)
from lab.serving.sweep import sweep

DATA = Path(__file__).resolve().parents[1] / "data" / "loadgen"


# ------------------------------------------------------------------------- LoadGen summary parser
def test_parse_valid_server_summary():
    s = parse_summary((DATA / "server_valid.txt").read_text())
    assert s.scenario == "Server" and s.mode == "PerformanceOnly" and s.valid
    assert s.scheduled_qps == 199.46 and s.completed_qps == 199.39
    assert s.percentiles_ns[50.0] == 1938382 and 99.0 in s.percentiles_ns and 99.9 in s.percentiles_ns
    assert s.min_ns == 635365 and s.max_ns == 47390884
    assert s.checks == {"Performance constraints satisfied": True, "Min duration satisfied": True,
                        "Min queries satisfied": True, "Early stopping satisfied": True}
    assert s.early_stopping == "* Run successful." and s.errors == 0


def test_parse_server_summary_that_early_stopping_invalidated():
    s = parse_summary((DATA / "server_early_stopping.txt").read_text())
    assert not s.valid
    assert s.checks["Early stopping satisfied"] is False and s.checks["Min duration satisfied"] is True
    assert "Would need to run at least 9071 more queries" in s.early_stopping


def test_parse_singlestream_summary_takes_the_early_stopping_p90():
    s = parse_summary((DATA / "singlestream_valid.txt").read_text())
    assert s.scenario == "SingleStream" and s.valid
    assert s.early_stopping_estimate_ns == 4563755      # LoadGen's p90 with early stopping
    assert s.percentiles_ns[90.0] == 3724259            # the plain sample p90
    assert s.completed_qps == 459.87                    # "QPS w/ loadgen overhead"


def test_parse_offline_summary_invalid_for_min_duration():
    s = parse_summary((DATA / "offline_min_duration.txt").read_text())
    assert s.scenario == "Offline" and not s.valid and s.completed_qps == 1317.63
    assert s.checks["Min duration satisfied"] is False


@pytest.mark.parametrize("text", ["", "hello\nResult is : VALID",
                                  "MLPerf Results Summary\nScenario : Server\n"])
def test_parse_summary_rejects_what_is_not_one(text):
    with pytest.raises(ValueError):
        parse_summary(text)


def test_early_stopping_minimum_matches_loadgen():
    # LoadGen said: 100 processed, "would need to run at least 359 more" at p99 -> 459
    assert early_stopping_min_queries(0.99) == 459
    assert early_stopping_min_queries(0.9) == 44


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="target_qps and latency_bound_ms"):
        LoadSettings("Server").check()
    with pytest.raises(ConfigError, match="unknown LoadGen scenario"):
        LoadSettings("MultiStream").check()


# ------------------------------------------------------------------------- protocols and argv
def test_v2_request_and_response_round_trip():
    x = np.arange(8, dtype="float32").reshape(2, 4)
    doc = json.loads(protocol.request_body("v2", {"x": x}))
    assert doc == {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}]}
    answer = json.dumps({"outputs": [{"name": "y", "shape": [2, 1], "datatype": "INT64", "data": [3, 4]}]})
    out = protocol.parse_response("v2", answer.encode())
    assert out["y"].dtype == np.int64 and out["y"].tolist() == [[3], [4]]
    with pytest.raises(RunnerError, match="serving error: boom"):
        protocol.parse_response("v2", b'{"error": "boom"}')


def test_paddle_serving_pipeline_format():
    x = np.ones((1, 2), dtype="float32")
    doc = json.loads(protocol.request_body("pipeline", {"image": x}))
    assert doc["key"] == ["image"] and json.loads(doc["value"][0]) == [[1.0, 1.0]]
    out = protocol.parse_response("pipeline", b'{"err_no": 0, "err_msg": "", "key": ["prob"], "value": ["[0.5]"]}')
    assert out["prob"].tolist() == [0.5]
    with pytest.raises(RunnerError, match="serving error 5: bad"):
        protocol.parse_response("pipeline", b'{"err_no": 5, "err_msg": "bad"}')
    ep = protocol.endpoint("http://10.0.0.2:9999/base/", "uci", "pipeline")
    assert (ep.host, ep.port, ep.path) == ("10.0.0.2", 9999, "/base/uci/prediction")


@pytest.mark.parametrize("url", ["https://127.0.0.1:1", "127.0.0.1:8000", "ftp://x"])
def test_endpoint_url_errors_are_config_errors(url):
    with pytest.raises(ConfigError, match="http://host:port"):
        protocol.endpoint(url, "m")


def test_server_argv_and_ready_file():
    argv = server_argv(ServerSpec(name="mb", model_file="/m/a b.json", params_file="/m/p", instances=2,
                                  max_batch=8, max_queue_delay_ms=5, max_seconds=30), python="py",
                       runner="/r/serving_runner.py", ready_file="/tmp/r.json")
    assert argv[:2] == ["py", "/r/serving_runner.py"]
    i = argv.index
    assert argv[i("--model-file") + 1] == "/m/a b.json" and argv[i("--instances") + 1] == "2"
    assert argv[i("--max-batch") + 1] == "8" and argv[i("--max-seconds") + 1] == "30"
    assert "--noop" not in argv
    r = parse_ready('{"pid": 5, "host": "::1", "port": 81, "name": "m", "instances": 1, "max_batch": 1, "load_s": 0.1}')
    assert r.url == "http://[::1]:81"
    with pytest.raises(ServingError, match="malformed"):
        parse_ready('{"pid": 5}')


# ------------------------------------------------------------------------- bisection logic
def _fake(capacity: float):
    """A measure() for the bisection logic alone: holds the bound below `capacity`."""
    calls = []

    def measure(q):
        calls.append(q)
        return LoadResult("Server", q, q, q, 1.0, 2.0, 3.0, 4.0, 1.0, 5.0, 10.0, 0.99, q <= capacity, {}, "",
                          100, 0, 1, 1, f"s{q}", f"d{q}", 1.0)
    return measure, calls


def test_sweep_bisects_to_the_capacity():
    measure, calls = _fake(73.0)
    res = sweep(measure, 10, 200, rel_tol=0.02, max_points=20)
    assert res.converged and 73.0 * 0.98 <= res.max_qps <= 73.0
    assert calls[:2] == [10, 200] and len(res.points) == len(calls)
    assert [p.target_qps for p in res.points] == sorted(calls)


def test_sweep_halves_lo_and_reports_when_nothing_holds():
    measure, calls = _fake(3.0)
    res = sweep(measure, 10, 100, rel_tol=0.05, max_points=20)
    assert calls[:2] == [10, 5.0] and res.max_qps is not None and res.max_qps <= 3.0
    measure, calls = _fake(0.1)
    res = sweep(measure, 10, 100, max_halvings=2)
    assert res.max_qps is None and "no rate" in res.note and calls == [10, 5.0, 2.5]


def test_sweep_grows_past_an_upper_guess_that_held():
    """The upper end is a guess (Offline x 1.1): when it holds, the sweep doubles it until a rate
    fails, so the answer sits between a rate that held and one that did not."""
    measure, calls = _fake(330.0)
    res = sweep(measure, 10, 100, rel_tol=0.02, max_points=20)
    assert calls[:4] == [10, 100, 200.0, 400.0]
    assert res.converged and 330.0 * 0.98 <= res.max_qps <= 330.0
    measure, calls = _fake(1e9)  # everything holds: bounded growth, said so
    res = sweep(measure, 10, 100, max_growths=2)
    assert calls == [10, 100, 200.0, 400.0] and res.max_qps == 400.0 and not res.converged
    assert "growth limit" in res.note
    measure, calls = _fake(1e9)  # never past the ceiling (the batch-1 sanity bound)
    res = sweep(measure, 10, 100, ceiling=150.0)
    assert calls == [10, 100, 150.0] and res.max_qps == 150.0 and "ceiling" in res.note
    measure, calls = _fake(1e9)  # an upper guess above the ceiling starts at the ceiling; the curve
    res = sweep(measure, 10, 300, ceiling=150.0)  # gets its middle point
    assert calls == [10, 150.0, 80.0] and res.max_qps == 150.0 and len(res.points) == 3


def test_sweep_is_bounded_in_points():
    measure, calls = _fake(50.0)
    res = sweep(measure, 1, 1000, rel_tol=1e-6, max_points=5)
    assert len(calls) == 5 and not res.converged and "stopped after 5 runs" in res.note


# ------------------------------------------------------------------------- the real server
@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    from lab.models.build import build
    root = tmp_path_factory.getbasetemp() / "hwlab-zoo"  # shared with test_models/test_analysis
    return build("mobilenet_v1", root)


def _get(url: str, path: str):
    host, port = url.split("//")[1].rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


def _direct(art, x: np.ndarray) -> np.ndarray:
    import paddle.inference as pi
    cfg = pi.Config(str(art.model_path), str(art.params_path))
    cfg.disable_gpu()
    cfg.set_cpu_math_library_num_threads(1)
    pred = pi.create_predictor(cfg)
    h = pred.get_input_handle(pred.get_input_names()[0])
    h.reshape(list(x.shape))
    h.copy_from_cpu(x)
    pred.run()
    return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()


def _mb_spec(art, **kw) -> ServerSpec:
    return ServerSpec(name="mobilenet_v1", model_file=str(art.model_path), params_file=str(art.params_path),
                      inputs=tuple((i.name, tuple(i.shape), i.dtype) for i in art.inputs),
                      max_seconds=kw.pop("max_seconds", 60), **kw)


@pytest.mark.slow
def test_v2_health_metadata_infer_match_direct_paddle(mobilenet, tmp_path):
    x = np.random.RandomState(0).rand(1, 3, 224, 224).astype("float32")
    with LocalServer(_mb_spec(mobilenet), tmp_path) as srv:
        assert _get(srv.url, "/v2/health/ready")[0] == 200
        status, meta = _get(srv.url, "/v2/models/mobilenet_v1")
        assert status == 200 and meta["name"] == "mobilenet_v1"
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
        assert [o["shape"] for o in meta["outputs"]] == [[-1, 1000]]
        assert _get(srv.url, "/v2/models/nope")[0] == 404
        out = probe(srv.url, "mobilenet_v1", {"x": x})
        (name, got), = out.items()
        assert got.shape == (1, 1000)
        np.testing.assert_allclose(got, _direct(mobilenet, x), rtol=1e-5, atol=1e-6)
        with pytest.raises(ServingError, match="HTTP 400"):
            probe(srv.url, "mobilenet_v1", {"x": np.ones((1, 3), "float32")})


@pytest.mark.slow
def test_dynamic_batching_batches_and_splits_outputs(mobilenet, tmp_path):
    rng = np.random.RandomState(1)
    xs = [rng.rand(1, 3, 224, 224).astype("float32") for _ in range(8)]
    spec = _mb_spec(mobilenet, max_batch=4, max_queue_delay_ms=300)
    with LocalServer(spec, tmp_path) as srv:
        results = [None] * len(xs)

        def call(i):
            results[i] = probe(srv.url, "mobilenet_v1", {"x": xs[i]})
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        _, stats = _get(srv.url, "/v2/models/mobilenet_v1/stats")
    ms = stats["model_stats"][0]
    sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in ms["batch_stats"]}
    assert ms["inference_count"] == 8 and sum(k * v for k, v in sizes.items()) == 8
    assert max(sizes) > 1 and ms["execution_count"] < 8, sizes   # requests were really batched
    direct = _direct(mobilenet, np.concatenate(xs))
    for i, r in enumerate(results):
        np.testing.assert_allclose(next(iter(r.values()))[0], direct[i], rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_mlp(tmp_path_factory):
    from lab.models.build import build
    return build("tiny_mlp", tmp_path_factory.getbasetemp() / "hwlab-zoo")


@pytest.mark.slow
def test_loadgen_server_run_at_modest_qps_is_valid(tiny_mlp, tmp_path):
    # tiny_mlp: a 1x64 input, so the run measures serving, not JSON-encoding 150k floats per
    # request on a busy 2-core machine (mobilenet_v1 there: ~0.5 s per request, JSON included)
    x = [{"x": np.random.RandomState(i).rand(1, 64).astype("float32")} for i in range(4)]
    spec = ServerSpec(name="tiny_mlp", model_file=str(tiny_mlp.model_path), params_file=str(tiny_mlp.params_path),
                      inputs=(("x", (-1, 64), "float32"),), max_seconds=60)
    with LocalServer(spec, tmp_path / "srv") as srv:
        settings = LoadSettings("Server", target_qps=20, latency_bound_ms=1000, percentile=0.9,
                                min_duration_s=3, max_duration_s=20, min_queries=50)
        res = run_scenario(srv.url, "tiny_mlp", x, settings, out_dir=tmp_path / "lg", server=srv,
                           instances=1, max_batch=1)
    assert res.valid, Path(res.summary_path).read_text()
    assert res.scenario == "Server" and res.latency_bound_ms == 1000 and res.instances == 1
    assert 14 <= res.qps <= 26 and res.queries >= 50
    assert 0 < res.p50_ms <= res.p90_ms <= res.p99_ms
    # the endpoint's statistics around the run: exactly LoadGen's requests, each phase timed
    sp = res.split
    assert sp["requests"] == res.queries and 0 < sp["model_ms"] < sp["server_ms"] <= res.mean_ms, sp
    assert sp["queue_ms"] + sp["decode_ms"] + sp["model_ms"] + sp["encode_ms"] <= sp["server_ms"] * 1.001
    assert 0 < sp["endpoint_share"] < 1
    assert Path(res.summary_path).exists() and Path(res.detail_path).stat().st_size > 0


@pytest.mark.slow
def test_sweep_converges_on_an_endpoint_whose_latency_rises_with_load(tmp_path):
    # one instance, 20 ms per request: a queue with capacity 50 QPS; the p90 bound is 150 ms (M/D/1
    # holds it up to ~42 QPS; a busy CI box adds its own delay, so only "above lo, below capacity")
    spec = ServerSpec(name="syn", noop=True, service_ms=20, max_seconds=120)
    base = LoadSettings("Server", latency_bound_ms=150, percentile=0.9, min_duration_s=2, max_duration_s=6,
                        min_queries=50)
    x = [{"x": np.zeros((1, 4), "float32")}]
    with LocalServer(spec, tmp_path / "srv") as srv:
        def measure(q: float) -> LoadResult:
            return run_scenario(srv.url, "syn", x, replace(base, target_qps=round(q, 3)),
                                out_dir=tmp_path / "sweep" / f"qps-{q:.3f}", server=srv)
        res = sweep(measure, 10, 80, rel_tol=0.15, max_points=7)
    assert res.converged and res.max_qps is not None and 10 < res.max_qps <= 50, res.points
    by_rate = {p.target_qps: p for p in res.points}
    assert by_rate[10].valid and not by_rate[80].valid
    assert res.best is not None and res.best.p90_ms <= 150 and res.best.target_qps == res.max_qps
    assert len(res.points) <= 7
    # the worker-thread path (--service-ms): the service time is the "model", waiting is queue
    assert res.best.split["model_ms"] >= 20 and res.best.split["queue_ms"] > 0, res.best.split


@pytest.mark.slow
def test_sigterm_and_max_seconds_stop_the_server(tmp_path):
    srv = LocalServer(ServerSpec(name="m", noop=True, max_seconds=60), tmp_path / "a").start()
    t0 = time.monotonic()
    os.kill(srv.ready.pid, signal.SIGTERM)
    assert srv.proc.wait(timeout=20) == 0 and time.monotonic() - t0 < 20  # generous: a busy shared box
    assert "stopping: SIGTERM" in tail(srv.log_path)
    srv = LocalServer(ServerSpec(name="m", noop=True, max_seconds=1.5), tmp_path / "b").start()
    assert srv.proc.wait(timeout=25) == 0
    assert "stopping: max_seconds" in tail(srv.log_path)


@pytest.mark.slow
def test_server_crash_mid_run_is_a_clear_error_with_its_last_log_lines(tmp_path):
    spec = ServerSpec(name="m", noop=True, max_seconds=60, inject_crash_after=40)
    settings = LoadSettings("Server", target_qps=100, latency_bound_ms=100, percentile=0.9, min_duration_s=2,
                            max_duration_s=5, min_queries=50)
    with LocalServer(spec, tmp_path / "srv") as srv:
        t0 = time.monotonic()
        with pytest.raises(ServingError) as err:
            run_scenario(srv.url, "m", [{"x": np.zeros((1, 4), "float32")}], settings, out_dir=tmp_path / "lg",
                         server=srv)
        assert time.monotonic() - t0 < 15
    text = str(err.value)
    assert "requests to http://127.0.0.1:" in text and "failed" in text
    assert "exited with code 70" in text and "injected crash after 40 requests" in text


@pytest.mark.slow
def test_port_in_use_and_silent_endpoint_are_clear_errors(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ServingError, match=r"exited with code 3 before it was ready(.|\n)*port in use"):
            LocalServer(ServerSpec(name="m", noop=True, port=port, max_seconds=10), tmp_path).start()
    with pytest.raises(ServingError, match="does not answer: ConnectionRefusedError"):
        probe(f"http://127.0.0.1:{port}", "m", {"x": np.zeros((1, 4), "float32")}, timeout=2)


# ------------------------------------------------------------------------- binary tensors, client
def test_binary_request_is_json_header_then_raw_little_endian_bytes():
    x = np.arange(6, dtype="float32").reshape(2, 3)
    ids = np.array([[7], [8]], dtype="int64")
    req = protocol.encode_request("v2", {"x": x, "ids": ids})
    headers = dict(req.headers)
    n = int(headers[protocol.HEADER_LENGTH])
    doc = json.loads(req.body[:n])
    assert doc["parameters"] == {"binary_data_output": True}
    assert [t["parameters"]["binary_data_size"] for t in doc["inputs"]] == [24, 16]
    assert all("data" not in t for t in doc["inputs"])
    assert req.body[n:] == x.astype("<f4").tobytes() + ids.astype("<i8").tobytes()
    # the travelling runner decodes exactly that
    from lab.runners import serving_runner as sr
    arrays, rows = sr.decode_inputs(doc, blob=req.body[n:])
    assert rows == 2 and np.array_equal(arrays["x"], x) and np.array_equal(arrays["ids"], ids)
    with pytest.raises(sr.BadRequest, match="bytes after the JSON header"):
        sr.decode_inputs(doc, blob=req.body[n:] + b"extra")
    with pytest.raises(sr.BadRequest, match="does not fit"):
        sr.decode_inputs(doc, blob=req.body[n:n + 10])
    with pytest.raises(sr.BadRequest, match="without an Inference-Header-Content-Length"):
        sr.decode_inputs(doc, blob=None)
    # JSON stays the fallback
    assert dict(protocol.encode_request("v2", {"x": x}, binary=False).headers) == {"Content-Type": "application/json"}


def test_binary_response_round_trip_and_truncation():
    from lab.runners import serving_runner as sr
    y = np.linspace(0, 1, 10, dtype="float32").reshape(2, 5)
    tensors, raw = sr.encode_outputs([("y", y)], binary=True)
    head = json.dumps({"outputs": tensors}).encode()
    out = protocol.parse_response("v2", head + raw, len(head))
    assert np.array_equal(out["y"], y)
    with pytest.raises(RunnerError, match="binary bytes announced"):
        protocol.parse_response("v2", head + raw[:-4], len(head))
    assert sr.wants_binary_outputs({"outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    assert not sr.wants_binary_outputs({"inputs": []})


def test_client_parses_content_length_chunked_and_incomplete_answers():
    from lab.serving.client import _parse, prepare
    raw = prepare("127.0.0.1", 8000, "/v2/models/m/infer", b"{}", (("X-A", "1"),))
    assert raw.startswith(b"POST /v2/models/m/infer HTTP/1.1\r\n") and raw.endswith(b"\r\n\r\n{}")
    assert b"Content-Length: 2\r\n" in raw and b"X-A: 1\r\n" in raw
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nInference-Header-Content-Length: 2\r\n\r\nhello"
    r = _parse(bytearray(ok), eof=False)
    assert r.status == 200 and r.body == b"hello" and r.header_length == 2 and not r.closed
    assert _parse(bytearray(ok[:-1]), eof=False) is None
    chunked = b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    r = _parse(bytearray(chunked), eof=False)
    assert r.status == 500 and r.body == b"abcde"
    assert _parse(bytearray(chunked[:-6]), eof=False) is None
    r = _parse(bytearray(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nxyz"), eof=True)
    assert r.body == b"xyz" and r.closed


def test_sweep_after_halving_does_not_rerun_the_rate_that_failed():
    measure, calls = _fake(30.0)
    res = sweep(measure, 40, 400, rel_tol=0.05, max_points=10)
    assert calls.count(40) == 1 and 20 in calls and 400 not in calls
    assert res.max_qps is not None and 20 <= res.max_qps <= 30 and res.converged


def test_a_valid_run_that_did_not_keep_up_is_not_held():
    """LoadGen may call a short overloaded run VALID while its queue builds: the sweep also needs
    the endpoint to complete what was scheduled."""
    from lab.serving.sweep import held
    measure, _ = _fake(1e9)
    ok = measure(20.0)
    assert held(ok)
    assert not held(replace(ok, completed_qps=14.5, qps=21.8))
    assert not held(replace(ok, valid=False))
