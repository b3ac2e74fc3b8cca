"""Read commands open the store read-only: an archive on a read-only mount serves results, score,
advise and report; permission problems are named as such (issue 17)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.core.errors import ConfigError
from lab.core.records import Job, Measurement
from lab.results.store import Store

REPO = Path(__file__).resolve().parents[2]


def _filled_store(path: Path) -> None:
    store = Store(path)
    try:
        for i, (backend, proc, p50) in enumerate([("paddle-inference-cpu", "cpu", 12.0),
                                                   ("paddle-lite-kirin-npu", "aipu", 4.0)]):
            job = Job(job_id=f"j{i}", campaign="arch", device="phone", chip="kirin990", model="mobilenet_v1",
                      model_sha256="abc", backend=backend, processor=proc, precision="fp32", threads=1)
            m = Measurement(job_id=job.job_id, p50_ms=p50, ci_low_ms=p50 * 0.98, ci_high_ms=p50 * 1.02,
                            load_ms=100.0, first_ms=20.0, n_samples=3, converged=True, samples=[[p50] * 3])
            store.import_rows("arch", [(job, m)])
    finally:
        store.close()


def _unshare_ok() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare"
    r = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot make a mount namespace: {r.stderr.strip()}"


@pytest.mark.skipif(_unshare_ok() is not None, reason=str(_unshare_ok()))
def test_read_commands_serve_an_archive_on_a_read_only_mount(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    store = archive / "lab.sqlite"
    _filled_store(store)
    out = tmp_path / "out"
    out.mkdir()
    lab = f"{sys.executable} -m lab.cli --store {store}"
    script = "\n".join([
        "set -e",
        f"mount --bind {archive} {archive}",
        f"mount -o remount,bind,ro {archive}",
        f"touch {archive}/probe 2>/dev/null && {{ echo 'mount is writable'; exit 9; }} || true",
        f"{lab} results --format json > {out}/results.json",
        f"{lab} score --profile mobile-app > {out}/score.txt",
        f"{lab} advise --model mobilenet_v1 --device phone --format json > {out}/advise.json",
        f"{lab} report --campaign arch -o {out}/report.html",
    ])
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "readonly" not in res.stderr and "Traceback" not in res.stderr
    assert '"p50_ms": 12.0' in (out / "results.json").read_text()
    assert (out / "report.html").stat().st_size > 1000
    assert '"verdict"' in (out / "advise.json").read_text()


def test_read_only_open_never_writes(tmp_path):
    path = tmp_path / "s.sqlite"
    _filled_store(path)
    before = path.read_bytes()
    store = Store(path, readonly=True)
    try:
        assert sorted(r.p50_ms for r in store.results()) == [4.0, 12.0]
        with pytest.raises(Exception):
            store.save_campaign("x", {})
    finally:
        store.close()
    assert path.read_bytes() == before


def test_unreadable_store_is_named_a_permission_problem(tmp_path, monkeypatch):
    """Root reads a 000 file anyway, so the access check itself is exercised here."""
    path = tmp_path / "s.sqlite"
    _filled_store(path)
    import lab.results.store as S
    monkeypatch.setattr(S.os, "access", lambda p, mode: False)
    with pytest.raises(ConfigError, match="permission denied: cannot read the results store"):
        Store(path, readonly=True)
    with pytest.raises(ConfigError, match="permission denied"):
        Store(path)


def test_missing_store_for_a_read_command_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "lab.cli", "--store", str(tmp_path / "none.sqlite"),
                          "results"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 2 and "no results store here" in res.stderr
    assert not (tmp_path / "none.sqlite").exists()
