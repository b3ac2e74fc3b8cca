"""lab.core.optional (a missing package is one line with its pip command) and textsafe.clip (an
error quotes at most ~200 characters of any value)."""
from __future__ import annotations

import sys
import tomllib

import pytest

from helpers import REPO
from lab.core import optional
from lab.core.errors import ConfigError, DeviceError
from lab.core.textsafe import LINE_LIMIT, QUOTE_LIMIT, clip


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(reqs: list[str]) -> set[str]:
    import re
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_every_cpu_path_is_a_base_dependency_and_ray_nvml_stay_extras():
    """`pip install -e .` installs serving, ONNX and web; Ray and NVML are extras."""
    project = _pyproject()
    base = _names(project["dependencies"])
    assert {"starlette", "uvicorn", "mlcommons-loadgen", "x2paddle", "paddle2onnx", "onnxruntime", "onnx",
            "six", "requests", "websocket-client", "psutil"} <= base
    extras = project["optional-dependencies"]
    assert "ray" not in base and "nvidia-ml-py" not in base
    assert _names(extras["ray"]) == {"ray"} and _names(extras["nvml"]) == {"nvidia-ml-py"}


def test_every_optional_package_is_declared_in_pyproject():
    """optional.PACKAGES names distributions pyproject.toml declares (its one definition)."""
    project = _pyproject()
    declared = _names(project["dependencies"]).union(*(_names(v) for v in project["optional-dependencies"].values()))
    assert {dist.lower() for dist, _ in optional.PACKAGES.values()} <= declared


def test_require_imports_or_says_the_pip_command():
    assert optional.require("json").__name__ == "json"
    with pytest.raises(ConfigError) as exc:
        optional.require("hwlab_no_such_package")
    msg = str(exc.value)
    assert "\n" not in msg and f"{sys.executable} -m pip install 'hwlab_no_such_package'" in msg
    assert optional.missing("json") is None and optional.missing("hwlab_no_such_package")
    with pytest.raises(ConfigError, match="pip install"):
        optional.check("json", "hwlab_no_such_package")


def test_the_requirement_comes_from_pyproject():
    reqs = {r.split(";")[0].strip() for r in _pyproject()["dependencies"]}
    assert optional.requirement("onnxruntime") in reqs or optional.requirement("onnxruntime") == "onnxruntime"
    assert "'ray[default]>=" in optional.install_command("ray") or "'ray'" in optional.install_command("ray")


def test_clip_quotes_an_excerpt_of_a_long_value():
    value = "Q" * 100_000
    for msg in (str(ConfigError(f"unknown device {value!r}", path="/x.yaml", line=3, fix="check it")),
                str(DeviceError(value, "unreachable")), clip(f"no such file {value}/x"),
                clip(f'a "{value}" b')):
        assert len(msg) < 400 and "Q" * (QUOTE_LIMIT + 1) not in msg, msg[:300]
        assert "100,0" in msg or "chars]" in msg  # says how much was left out
        assert clip(msg) == msg  # idempotent: a clipped message stays as it is
    assert str(ConfigError("device 'x' is unknown", fix="add it")) == "device 'x' is unknown (add it)"
    spaced = clip("a value " + "y " * 50_000)  # no quotes, no long word: the line limit holds
    assert len(spaced) <= LINE_LIMIT


def test_clip_keeps_the_start_and_end_of_a_path():
    path = "/data/" + "d" * 300 + "/campaign.yaml"
    out = clip(f"{path}:3: bad value")
    assert out.startswith("/data/ddd") and "campaign.yaml:3: bad value" in out
