"""lab.devices.readiness: every deployment path of this host, ready or not, with its one command."""
from __future__ import annotations

from lab.devices import readiness


def test_every_path_is_listed_once():
    names = [p.path for p in readiness.deployment_paths()]
    assert names == ["paddle-inference", "onnxruntime", "onnx import/export", "serving",
                     "paddle-lite (opt, x86)", "paddle-js (web)", "ray"]


def test_a_path_that_is_not_ready_names_what_is_missing_and_the_one_command(monkeypatch, tmp_path):
    monkeypatch.setenv(readiness.CHROMIUM_ENV, str(tmp_path / "no-chromium"))
    web = next(p for p in readiness.deployment_paths() if p.path == "paddle-js (web)")
    assert not web.ready and any("Chromium" in m for m in web.missing)
    assert web.line().endswith(f"run `{readiness.WEB_SETUP}`") and "NOT READY" in web.line()


def test_ready_paths_say_ready(monkeypatch):
    pi = readiness.deployment_paths()[0]
    assert pi.ready and pi.line().split() == ["paddle-inference", "ready"]
    monkeypatch.setattr(readiness, "LITE_VENV", readiness.REPO_ROOT / "no-such-venv")
    monkeypatch.delenv("HWLAB_PADDLE_LITE_OPT", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    lite = next(p for p in readiness.deployment_paths() if p.path.startswith("paddle-lite"))
    assert not lite.ready and lite.fix == readiness.LITE_SETUP
