"""What an architecture can run (lab/devices/portability.py), without a board: the planning refusals
and the probe's readiness lines, from recorded probe output."""
from __future__ import annotations

import json

from lab.core.records import Device
from lab.devices.backends import BACKENDS
from lab.devices.catalog import load_catalog
from lab.devices.portability import planning_refusal, probed_readiness
from lab.devices.probe import PY_MARK, parse_probe_output


def _dev(**over) -> Device:
    return Device(**{"id": "b", "chip": "rv1109", "transport": "ssh", "host": "h", "user": "u", **over})


def test_python_backends_refused_on_32_bit_arm_from_abi_or_catalog():
    for dev, chip in ((_dev(abi="armv7hf"), None), (_dev(chip="generic-x86-cpu", abi="armeabi-v7a"), None)):
        why = planning_refusal(dev, BACKENDS["onnxruntime-cpu"], "fp32", chip)
        assert "no onnxruntime wheel exists for 32-bit ARM" in why and "paddle-lite-arm" in why
    assert planning_refusal(_dev(abi="armv7hf"), BACKENDS["paddle-lite-arm"], "fp32") is None
    assert planning_refusal(_dev(chip="generic-x86-cpu"), BACKENDS["paddle-inference-cpu"], "int8") is None
    chip = load_catalog().get("rv1109")
    arch = getattr(getattr(getattr(chip, "identity", None), "arch", None), "value", None)
    if arch:  # the catalog's identity facts say the architecture: no `abi` needed
        assert planning_refusal(_dev(), BACKENDS["paddle-inference-cpu"], "fp32", chip)


def test_paddle_cpu_int8_refused_on_arm_only():
    why = planning_refusal(_dev(abi="arm64-v8a"), BACKENDS["paddle-inference-cpu"], "int8")
    assert "oneDNN" in why and "onnxruntime-cpu" in why
    assert planning_refusal(_dev(abi="arm64-v8a"), BACKENDS["paddle-inference-cpu"], "fp32") is None
    assert planning_refusal(_dev(abi="arm64-v8a"), BACKENDS["onnxruntime-cpu"], "int8") is None
    assert planning_refusal(_dev(abi="arm64-v8a"), BACKENDS["paddle-inference-trt"], "int8") is None


def test_readiness_says_why_and_the_fix():
    lines = {r.runtime: r for r in probed_readiness("aarch64", "3.11.2", {"paddlepaddle": "3.2.2"}, None,
                                                    {"onnxruntime": "the interpreter crashed importing onnxruntime"})}
    assert lines["paddle-inference"].ready and not lines["onnxruntime"].ready
    assert "crashed importing onnxruntime" in lines["onnxruntime"].reason
    assert "pip install paddlelite" in lines["paddle-lite-python"].reason
    assert "benchmark_bin" in lines["paddle-lite"].reason


def test_an_interpreter_that_dies_importing_a_runtime_keeps_what_it_found():
    """The probe prints its facts before each import: a segfault importing onnxruntime (as qemu-user
    boards with the host's sysfs showed) still reports Python, numpy and paddle, and names the culprit."""
    first = {"python": "3.11.2", "executable": "/usr/bin/python3", "numpy": "2.3.5", "paddle": "3.2.2",
             "paddlelite": None}
    crashed = dict(first, onnxruntime=None, onnxruntime_error="the interpreter crashed importing onnxruntime")
    text = "\n".join(["os_name=Linux", "arch=aarch64", f"{PY_MARK}{json.dumps(first)}",
                      f"{PY_MARK}{json.dumps(crashed)}", "python_failed=139"])
    rep = parse_probe_output(_dev(chip="rk1808", python="/usr/bin/python3"), text)
    assert rep.python.startswith("3.11.2") and rep.paddle == "3.2.2" and rep.onnxruntime is None
    assert any("exited 139 importing onnxruntime (a segmentation fault)" in n for n in rep.notes)
    assert any(b.startswith("onnxruntime: cannot run") and "crashed" in b for b in rep.backends)
    assert any(b.startswith("paddle-inference: can run") for b in rep.backends)
