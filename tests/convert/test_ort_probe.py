"""The onnxruntime planning probe over a real local transport, with and without onnxruntime."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lab.convert.ort_probe import probe_onnxruntime, require_onnxruntime
from lab.core.errors import ConfigError
from lab.devices.inventory import Device
from lab.transport.local import LocalTransport


@pytest.fixture()
def transport(tmp_path):
    return LocalTransport(Device(id="local", chip="test", transport="local",
                                 workdir=str(tmp_path / "wd")))


def test_present(transport):
    import onnxruntime
    probe = require_onnxruntime(transport, sys.executable, device="local")
    assert probe.ok and probe.version == onnxruntime.__version__
    assert "CPUExecutionProvider" in probe.providers


def _python_without_ort():
    for cand in ("/usr/bin/python3",):
        p = subprocess.run([cand, "-c", "import onnxruntime"], capture_output=True)
        if p.returncode != 0:
            return cand
    return None


def test_missing_says_what_to_install(transport):
    py = _python_without_ort()
    if py is None:
        pytest.skip("no interpreter without onnxruntime here")
    probe = probe_onnxruntime(transport, py, device="local")
    assert not probe.ok and "pip install onnxruntime numpy" in probe.problem
    with pytest.raises(ConfigError, match="device 'local': backend onnxruntime-cpu refused"):
        require_onnxruntime(transport, py, device="local")


def test_gpu_needs_cuda_provider(transport):
    import onnxruntime
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ConfigError, match="no CUDAExecutionProvider.*install onnxruntime-gpu"):
        require_onnxruntime(transport, sys.executable, device="local", gpu=True)
