"""--devices, --store and --models-root are accepted before and after the command, alike (issue 25:
`lab --models-root D models build ...` was "invalid choice")."""
from __future__ import annotations

import json

import pytest

from fuzz_inputs import meta_doc, run_cli
from helpers import write_local_devices


@pytest.fixture()
def ws(tmp_path):
    """A models root with one built (fake) model, a `local` inventory, a campaign of that model."""
    (tmp_path / "mr" / "fake").mkdir(parents=True)
    (tmp_path / "mr" / "fake" / "meta.json").write_text(json.dumps(meta_doc()))
    write_local_devices(tmp_path, name="inv.yaml")
    (tmp_path / "c.yaml").write_text("name: g\ndevices: [local]\nmodels: [fake]\nbackends: [paddle-inference-cpu]\n")
    return tmp_path


def _both(globals_: list[str], command: list[str]) -> tuple:
    """The same command with the global options before it and after it."""
    before, after = run_cli(globals_ + command), run_cli(command + globals_)
    assert not before.crash and not after.crash
    return before, after


@pytest.mark.parametrize("command", [["models", "list", "--format", "json"], ["models", "show", "fake"]])
def test_models_root_before_or_after_the_command(ws, command):
    before, after = _both(["--models-root", str(ws / "mr")], command)
    assert before.code == after.code == 0, (before.err, after.err)
    assert before.out == after.out and "fake" in before.out


def test_models_root_before_models_build_is_not_an_invalid_choice(ws):
    out = run_cli(["--models-root", str(ws / "mr"), "models", "build", "no_such_model"])
    assert out.code == 2 and "invalid choice" not in out.err and "no_such_model" in out.err, out.err


def test_every_global_option_before_or_after_run(ws):
    globals_ = ["--devices", str(ws / "inv.yaml"), "--store", str(ws / "s.sqlite"), "--models-root", str(ws / "mr")]
    before, after = _both(globals_, ["run", str(ws / "c.yaml"), "--dry-run"])
    assert before.code == after.code == 0, (before.err, after.err)
    assert "1 jobs planned" in before.err and before.out == after.out


def test_the_models_root_reaches_score_and_advise_alike(ws):
    for command in (["score", "--profile", "mobile-app", "--draws", "5", "--format", "json"],
                    ["advise", "--model", "fake", "--device", "local", "--format", "json"]):
        before, after = _both(["--store", str(ws / "none.sqlite"), "--devices", str(ws / "inv.yaml"),
                               "--models-root", str(ws / "mr")], command)
        assert before.code == after.code and before.out == after.out, (command, before.err, after.err)
