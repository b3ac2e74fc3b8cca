"""Is onnxruntime importable on a device? Planning asks before an onnxruntime job is queued.

Why a probe: ort_runner.py travels alone and needs `onnxruntime` (and `numpy`) in the device's
Python; without it every trial would fail the same way after a push. The probe runs
`PYTHON -c "import onnxruntime ..."` over the device's transport (local, SSH or ADB alike: only
`transport.run` is used) and says what to install when it is missing. For `onnxruntime-gpu`
it also requires the CUDA provider.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from lab.core.errors import ConfigError

_PROBE = ("import json, numpy, onnxruntime as o; "
          "print(json.dumps({'version': o.__version__, 'providers': o.get_available_providers()}))")
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class OrtProbe:
    device: str
    ok: bool
    version: str | None
    providers: tuple[str, ...]
    problem: str = ""  # why not ok, with what to install


def probe_onnxruntime(transport, python: str = "python3", *, device: str = "?",
                      gpu: bool = False, timeout: float = 60.0) -> OrtProbe:
    """Run the import probe over `transport`; never raises for a missing module."""
    res = transport.run([python, "-c", _PROBE], timeout)
    line = next((ln for ln in reversed((res.out or "").splitlines()) if ln.startswith("{")), "")
    if res.rc != 0 or not line:
        err = (res.err or res.out or "").strip().splitlines()
        last = err[-1] if err else f"exit {res.rc}"
        pkg = "onnxruntime-gpu" if gpu else "onnxruntime"
        return OrtProbe(device, False, None, (), f"{python} cannot import onnxruntime/numpy "
                        f"({last[:200]}); install it on the device: {python} -m pip install "
                        f"{pkg} numpy")
    doc = json.loads(line)
    providers = tuple(doc.get("providers") or ())
    if gpu and CUDA not in providers:
        return OrtProbe(device, False, doc.get("version"), providers,
                        f"onnxruntime {doc.get('version')} has no {CUDA} (providers: "
                        f"{', '.join(providers)}); install onnxruntime-gpu (and CUDA/cuDNN) on the "
                        f"device, replacing onnxruntime")
    return OrtProbe(device, True, doc.get("version"), providers)


def require_onnxruntime(transport, python: str = "python3", *, device: str = "?",
                        gpu: bool = False, timeout: float = 60.0) -> OrtProbe:
    """The planning check: a ConfigError (exit 2, one line) naming the device and the fix."""
    probe = probe_onnxruntime(transport, python, device=device, gpu=gpu, timeout=timeout)
    if not probe.ok:
        raise ConfigError(f"device {device!r}: backend onnxruntime-{'gpu' if gpu else 'cpu'} "
                          f"refused: {probe.problem}")
    return probe
