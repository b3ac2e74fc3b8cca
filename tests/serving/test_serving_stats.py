"""The endpoint's per-request split (issue 23): Triton's statistics extension, read around a run.

Pure tests of the arithmetic (lab.serving.stats.split over two snapshots), of the runner's
statistics document (the travelling serving_runner's Stats, the same class the endpoint serves),
and of a Triton server's document, which has no decode/encode phases. The slow tests in
test_serving_loadgen.py and tests/runtimes/test_serving_runtime.py read it from a real endpoint.
"""
from __future__ import annotations

import pytest

from lab.runners.serving_runner import PHASES, Stats
from lab.serving.stats import EndpointSplit, split


def _snap(stats: Stats) -> dict[str, list[int]]:
    doc = stats.doc("m")["model_stats"][0]
    return {k: [v["count"], v["ns"]] for k, v in doc["inference_stats"].items()}


def test_split_is_the_runs_own_requests_in_mean_ms_per_phase():
    st = Stats()
    st.served({p: 5_000_000 for p in PHASES})  # a request before the run (the probe)
    before = _snap(st)
    for _ in range(4):
        st.served({"success": 20_000_000, "queue": 1_000_000, "decode": 500_000, "compute_input": 500_000,
                   "compute_infer": 15_000_000, "compute_output": 200_000, "encode": 800_000})
    sp = split(before, _snap(st))
    assert sp == EndpointSplit(requests=4, queue_ms=1.0, decode_ms=1.0, model_ms=15.0, encode_ms=1.0,
                               server_ms=20.0)
    assert sp.share(25.0) == pytest.approx(0.4)  # 10 of the client's 25 ms are not the model
    assert sp.to_dict(25.0)["endpoint_share"] == pytest.approx(0.4)
    assert sp.share(None) is None and sp.share(10.0) == 0.0  # clamped: never a negative share


def test_triton_statistics_map_onto_the_same_split():
    """A Triton server reports queue / compute_input / compute_infer / compute_output / success."""
    before = {k: [10, 10_000_000] for k in ("success", "queue", "compute_input", "compute_infer", "compute_output")}
    after = {"success": [12, 16_000_000], "queue": [12, 10_400_000], "compute_input": [12, 10_200_000],
             "compute_infer": [12, 14_000_000], "compute_output": [12, 10_100_000]}
    sp = split(before, after)
    assert (sp.requests, sp.queue_ms, sp.decode_ms, sp.model_ms, sp.encode_ms, sp.server_ms) == \
        pytest.approx((2, 0.2, 0.1, 2.0, 0.05, 3.0))


def test_no_split_without_both_snapshots_or_requests():
    st = Stats()
    snap = _snap(st)
    assert split(None, snap) is None and split(snap, None) is None
    assert split(snap, snap) is None  # no request in the run
    assert split({}, {"success": [3, 30]}) is None  # no compute_infer: not a statistics document


def test_runner_statistics_document_keeps_tritons_shape():
    st = Stats()
    st.executed(2, 7_000_000)
    ms = st.doc("m")["model_stats"][0]
    assert ms["name"] == "m" and ms["execution_count"] == 1
    assert ms["batch_stats"] == [{"batch_size": 2, "compute_infer": {"count": 1, "ns": 7_000_000}}]
    assert set(ms["inference_stats"]) == set(PHASES) >= {"success", "queue", "compute_input",
                                                         "compute_infer", "compute_output"}
