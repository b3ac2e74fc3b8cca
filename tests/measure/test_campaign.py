"""Campaign files → jobs: validation errors, stable ids, exclusions."""
from __future__ import annotations

import textwrap

import pytest

from helpers import config_error
from lab.measure.campaign import load_campaign, plan_jobs
from lab.core.errors import ConfigError
from lab.core.records import Device


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


DEVICES = [Device(id="local", chip="generic-x86-cpu", transport="local"),
           Device(id="phone", chip="kirin990", transport="adb", serial="x:1", benchmark_bin="/bb",
                  nnadapter_libs={"huawei_kirin_npu": "/libs"})]
BASE = """
    name: c1
    devices: [local, phone]
    models: [m1, m2]
    backends: [paddle-inference-cpu, paddle-lite-arm, paddle-lite-kirin-npu]
    threads: [1, 2]
    protocol: {trials: 2, min_seconds: 0.5, max_seconds: 2}
    """


def test_plan_is_cartesian_minus_exclusions_and_ids_are_stable(tmp_path):
    spec = load_campaign(write(tmp_path, BASE))
    jobs, excluded = plan_jobs(spec, DEVICES, lambda m: "h-" + m)
    # local: only paddle-inference-cpu (2 models x 2 threads); phone: lite-arm + kirin npu, and pi-cpu
    assert {(j.device, j.backend) for j in jobs} == {
        ("local", "paddle-inference-cpu"), ("phone", "paddle-inference-cpu"),
        ("phone", "paddle-lite-arm"), ("phone", "paddle-lite-kirin-npu")}
    assert len(jobs) == 4 * 2 * 2
    assert {e.device for e in excluded} == {"local"} and all("benchmark_bin" in e.reason for e in excluded)
    assert {j.processor for j in jobs if j.backend == "paddle-lite-kirin-npu"} == {"aipu"}
    again, _ = plan_jobs(load_campaign(write(tmp_path, BASE)), DEVICES, lambda m: "h-" + m)
    assert [j.job_id for j in jobs] == [j.job_id for j in again]
    assert len({j.job_id for j in jobs}) == len(jobs)
    changed, _ = plan_jobs(spec, DEVICES, lambda m: "other-" + m)
    assert not {j.job_id for j in jobs} & {j.job_id for j in changed}, "a new model hash means new jobs"


def test_protocol_is_part_of_identity(tmp_path):
    a, _ = plan_jobs(load_campaign(write(tmp_path, BASE)), DEVICES, str)
    b, _ = plan_jobs(load_campaign(write(tmp_path, BASE.replace("trials: 2", "trials: 3"))), DEVICES, str)
    assert not {j.job_id for j in a} & {j.job_id for j in b}


def test_options_expand(tmp_path):
    text = BASE.replace("[local, phone]", "[local]") + "options: {onednn: [true, false]}\n"
    jobs, _ = plan_jobs(load_campaign(write(tmp_path, text)), DEVICES, str)
    assert len(jobs) == 2 * 2 * 2
    assert {j.option("onednn") for j in jobs} == {True, False}


@pytest.mark.parametrize("text,needle", [
    ("name: x\ndevices: [local]\nmodels: [m]\n", "missing required key 'backends'"),
    (BASE + "colour: red\n", "unknown key 'colour'"),
    (BASE.replace("[1, 2]", "[1, zero]"), "'threads' must be a positive integer"),
    (BASE.replace("paddle-lite-arm", "paddle-lite-armm"), "unknown backend 'paddle-lite-armm'"),
    (BASE + "precisions: [fp64]\n", "unknown precision 'fp64'"),
    (BASE.replace("trials: 2", "trials: 0"), "protocol 'trials' out of range"),
    (BASE.replace("trials: 2", "trails: 2"), "did you mean 'trials'"),
    (BASE.replace("max_seconds: 2", "max_seconds: 0.1"), "max_seconds is below min_seconds"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_malformed_campaigns(tmp_path, text, needle):
    msg = config_error(load_campaign, write(tmp_path, text))
    assert needle in msg and "c.yaml" in msg


def test_unknown_device(tmp_path):
    spec = load_campaign(write(tmp_path, BASE.replace("[local, phone]", "[local, phnoe]")))
    with pytest.raises(ConfigError, match="unknown device 'phnoe'.*did you mean 'phone'"):
        plan_jobs(spec, DEVICES, str)
