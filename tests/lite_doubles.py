"""Shared test helpers (moved out of test_paddle_lite_benchmark_bin.py so other test files import a helper, not a test module)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from conftest_adb import adb_device
from lab.devices.backends import BACKENDS
from lab.runtimes import paddle_lite as lite_rt
from lab.runtimes.base import JobContext, execute
from lab.models.artifact import ModelArtifact
from lab.core.records import InputSpec, Job, MeasurementProtocol


STANDIN = Path(__file__).resolve().parent / "data" / "benchmark_bin" / "standin_benchmark_bin.py"


def make_artifact(tmp_path: Path, model_id: str = "mnv1") -> ModelArtifact:
    d = tmp_path / "models" / model_id
    d.mkdir(parents=True)
    (d / "inference.pdmodel").write_bytes(b"program-desc" * 10)
    (d / "inference.pdiparams").write_bytes(b"\x00\x01" * 1000)
    sha = hashlib.sha256((d / "inference.pdmodel").read_bytes() + (d / "inference.pdiparams").read_bytes()).hexdigest()
    return ModelArtifact(id=model_id, dir=d, json_path=None, pdiparams_path=None,
                         pdmodel_path=d / "inference.pdmodel", legacy_pdiparams_path=d / "inference.pdiparams",
                         sha256=sha, inputs=[InputSpec("x", (-1, 3, 224, 224), "float32", (1, 3, 224, 224))],
                         flops=None, params=None, op_histogram={}, source="zoo", legacy_sha256=sha)


def make_bin(tmp_path: Path, flavour: str = "v2.12", usage_always: bool = False,
             patch: tuple[str, str] | None = None) -> Path:
    text = STANDIN.read_text().replace('FLAVOUR = "v2.12"', f'FLAVOUR = "{flavour}"')
    if usage_always:
        text = text.replace("    if errors:\n", "    errors.append('Must set --backend option!')\n    if errors:\n")
    if patch:
        assert patch[0] in text, patch[0]
        text = text.replace(patch[0], patch[1])
    tag = hashlib.sha256(repr(patch).encode()).hexdigest()[:8]
    p = tmp_path / f"bin-{flavour}-{int(usage_always)}-{tag}" / "benchmark_bin"
    p.parent.mkdir(parents=True)
    p.write_text(text)
    p.chmod(0o755)
    return p


def make_libs(tmp_path: Path, device: str, with_hal: bool = True) -> Path:
    d = tmp_path / f"libs-{device}-{int(with_hal)}"
    d.mkdir()
    (d / "libnnadapter.so").write_bytes(b"\x7fELF stand-in")
    if with_hal:
        (d / f"lib{device}.so").write_bytes(b"\x7fELF stand-in HAL")
    (d / "libhiai.so").write_bytes(b"\x7fELF stand-in DDK")
    return d


def job(backend: str, *, trials: int = 3, precision: str = "fp32", **opts) -> Job:
    return Job(job_id=f"j-{backend}-{precision}", campaign="c", device="phone", chip="kirin990",
               model="mnv1", model_sha256="x", backend=backend,
               processor="aipu" if "npu" in backend or "timvx" in backend else "cpu",
               precision=precision, threads=2, options=tuple(sorted(opts.items())),
               protocol=MeasurementProtocol(warmup=2, min_iters=5, trials=trials, timeout_s=60,
                                   idle_baseline_s=0.2))


def run_lite_job(job, device, transport, artifact, *, telemetry=True, root=""):
    """One paddle-lite job through the one job path (lab/runtimes/base.execute)."""
    ctx = JobContext(job=job, device=device, transport=transport, artifact=artifact,
                     backend=BACKENDS[job.backend], telemetry_root=root)
    return execute(lite_rt.PaddleLite(), ctx, telemetry=telemetry)


def kirin_npu_setup(kirin, tmp_path, patch=None):
    art = make_artifact(tmp_path)
    nb = lite_rt.nb_path(art, "kirin-npu")
    nb.parent.mkdir(parents=True)
    nb.write_bytes(b"naive buffer for kirin")
    libs = make_libs(tmp_path, "huawei_kirin_npu")
    dev = adb_device(kirin, benchmark_bin=str(make_bin(tmp_path, patch=patch)),
                     nnadapter_libs={"huawei_kirin_npu": str(libs)})
    return art, dev


FAKE_OPT = r'''#!{python}
"""Fake paddle_lite_opt: validates flags like opt (opt_base.cc SetValidPlaces) and writes <out>.nb."""
import json, os, sys
log = os.environ.get("FAKE_OPT_LOG")
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
if log:
    with open(log, "a") as fh:
        fh.write(json.dumps(sys.argv[1:]) + "\n")
known = {{"arm", "opencl", "huawei_kirin_npu", "rockchip_npu", "verisilicon_timvx"}}
for t in args.get("valid_targets", "arm").split(","):
    if t not in known:
        print("Wrong target '%s' found, please check the command flag 'valid_targets'" % t)
        sys.exit(1)
if "optimize_out" not in args or not os.path.isfile(args.get("model_file", "")):
    print("help: paddle_lite_opt ..."); sys.exit(1)
for b in ("quant_model", "enable_fp16"):
    assert args.get(b, "true") == "true", b
with open(args["optimize_out"] + ".nb", "wb") as fh:
    fh.write(b"nb:" + args["valid_targets"].encode())
print("Save the optimized model into :%s.nb successfully" % args["optimize_out"])
'''
