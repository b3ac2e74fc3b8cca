"""Issue 17, small things users hit: --version, did-you-mean for model ids, advise on a zoo model
not built, score/report without their selector list the choices, one --models-root, the README
links inside the repo, `make demo` prints its report path once."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab import __version__
from lab.cli import main
from lab.core.records import Job, Measurement
from lab.results.store import Store

REPO = Path(__file__).resolve().parents[2]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["advise", "--model", "mobilnet_v1", "--device", "local"],
    ["models", "build", "mobilnet_v1"],
    ["models", "show", "mobilnet_v1"],
    ["models", "analyze", "mobilnet_v1"],
])
def test_did_you_mean_for_model_ids(tmp_path, capsys, argv):
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - {id: local, chip: generic-x86-cpu, transport: local}\n")
    rc = main(["--devices", str(devices), "--store", str(tmp_path / "s.sqlite"), *argv,
               "--models-root", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'mobilenet_v1'" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_run_did_you_mean(tmp_path, capsys):
    camp = tmp_path / "c.yaml"
    camp.write_text("name: c\ndevices: [local]\nmodels: [resnet5]\nbackends: [paddle-inference-cpu]\n")
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - {id: local, chip: generic-x86-cpu, transport: local}\n")
    rc = main(["--devices", str(devices), "--store", str(tmp_path / "s.sqlite"), "run", str(camp),
               "--dry-run", "--models-root", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'resnet50'" in err, err


def test_advise_on_unbuilt_zoo_model_names_the_exact_command_or_builds(tmp_path, capsys,
                                                                        monkeypatch):
    """Building is slow (Paddle export); here the build is made to fail, so the answer must name
    the exact command (with --models-root) - and say it was building first."""
    import lab.models.build as build_module
    from lab.core.errors import ConfigError
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - {id: local, chip: generic-x86-cpu, transport: local}\n")

    def no_build(model_id, out_root="models", **kw):
        raise ConfigError(f"model {model_id!r} could not be built here",
                          fix=f"run `lab models build {model_id} --models-root {out_root}`")
    monkeypatch.setattr(build_module, "build", no_build)
    root = tmp_path / "mods"
    rc = main(["--devices", str(devices), "--store", str(tmp_path / "s.sqlite"), "advise",
               "--model", "tiny_mlp", "--device", "local", "--models-root", str(root)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "building model 'tiny_mlp'" in err
    assert f"lab models build tiny_mlp --models-root {root}" in err


@pytest.mark.slow
def test_advise_builds_a_zoo_model_saying_so(tmp_path, capsys):
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  - {id: local, chip: generic-x86-cpu, transport: local}\n")
    rc = main(["--devices", str(devices), "--store", str(tmp_path / "s.sqlite"), "advise",
               "--model", "tiny_mlp", "--device", "local", "--models-root", str(tmp_path / "m"),
               "--format", "json"])
    out, err = capsys.readouterr()
    assert rc == 0 and "building model 'tiny_mlp'" in err
    assert json.loads(out)["verdict"] == "cpu"
    assert (tmp_path / "m" / "tiny_mlp" / "meta.json").is_file()


def test_score_without_profile_lists_them(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "s.sqlite"), "score"]) == 0
    out = capsys.readouterr().out
    for pid in ("mobile-app", "cloud-serving", "edge-security-camera", "embedded-inspection"):
        assert f"  {pid}: " in out


def test_report_without_campaign_lists_them(tmp_path, capsys):
    st = Store(tmp_path / "s.sqlite")
    for c in ("demo", "phones"):
        j = Job(job_id=f"j-{c}", campaign=c, device="d", chip="x", model="m", model_sha256="x",
                backend="paddle-inference-cpu", processor="cpu", precision="fp32", threads=1)
        st.plan_jobs([j])
        st.save_campaign(c, {"name": c})
        st.finish_job(j.job_id, "ok", measurement=Measurement(j.job_id, p50_ms=1.0, n_samples=3))
    st.close()
    assert main(["--store", str(tmp_path / "s.sqlite"), "report"]) == 0
    out = capsys.readouterr().out
    assert "  demo" in out and "  phones" in out and "--campaign" in out


def test_one_models_root_option_old_spellings_hidden(tmp_path, capsys):
    from lab.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for cmd in ("advise", "run", "score", "models"):
        helptext = sub.choices[cmd].format_help()
        assert "--models-root" in helptext, cmd
        assert "--models-dir" not in helptext and "--root " not in helptext, cmd
    # the old spellings still work
    assert main(["--store", str(tmp_path / "s.sqlite"), "score", "--profile", "mobile-app",
                 "--models-dir", str(tmp_path), "--format", "json", "--draws", "5"]) == 0
    assert main(["models", "list", "--root", str(tmp_path), "--format", "json"]) == 0


def test_readme_links_stay_in_the_repo():
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)|`(\.\./[^`]+)`", text):
        link = next(t for t in target if t)
        assert not link.startswith("../"), link
        if not re.match(r"[a-z]+:", link) and not link.startswith("#"):
            assert (REPO / link.split("#")[0]).exists(), link


def test_make_demo_prints_the_report_path_once():
    make = (REPO / "Makefile").read_text()
    demo = make.split("\ndemo:")[1].split("\n\n")[0]
    assert "echo" not in demo  # `lab report` prints "report: PATH" itself
    src = (REPO / "lab" / "commands" / "report.py").read_text()
    assert 'report: {path}' in src  # printed by the command, once
