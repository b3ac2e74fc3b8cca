"""nvml_sampler.py against a fake `pynvml` module.

The fake is a protocol DOUBLE, not NVIDIA's library: it replays recorded sequences (shaped after
the H200 reading in shared/reference/telemetry.md: ~79 W idle, ~690 W under a matmul loop, energy
counter stepping every 100 ms, clocks-event reason 0x4 under load). It is put on sys.path of the
real sampler process, which runs exactly as on a GPU server.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.telemetry.energy import energy_between
from lab.telemetry.figures import POWER_FIELDS, Window, analyze
from lab.telemetry.power import nvml_series
from lab.telemetry.trace import parse_trace

SAMPLER = Path(__file__).resolve().parents[2] / "lab" / "runners" / "nvml_sampler.py"

FAKE = r'''
import json, os
_S = json.load(open(os.environ["FAKE_NVML_SCRIPT"]))
_i = [0]
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0
class NVMLError(Exception):
    pass
def _step():
    return _S["steps"][min(_i[0], len(_S["steps"]) - 1)]
def _get(key):
    v = _step().get(key)
    if v is None:
        raise NVMLError("Not Supported")
    return v
def nvmlInit():
    if _S.get("init_error"):
        raise NVMLError(_S["init_error"])
def nvmlShutdown(): pass
def nvmlDeviceGetCount(): return _S.get("count", 1)
def nvmlDeviceGetHandleByIndex(i): return ("gpu", i)
def nvmlSystemGetDriverVersion(): return b"580.159.04"
def nvmlDeviceGetName(h): return b"NVIDIA H200"
def nvmlDeviceGetMaxClockInfo(h, c): return 1980
def nvmlDeviceGetEnforcedPowerLimit(h): return 700000
def nvmlDeviceGetTotalEnergyConsumption(h):
    # the sampler reads energy first in every sample: advance the recorded sequence here
    try:
        return _get("energy")
    finally:
        _i[0] += 1
def nvmlDeviceGetPowerUsage(h): return _get("power")
class _Mem:
    def __init__(self, used): self.used, self.total, self.free = used, 141 << 30, (141 << 30) - used
def nvmlDeviceGetMemoryInfo(h): return _Mem(_get("mem_used"))
class _Proc:
    def __init__(self, pid, mem): self.pid, self.usedGpuMemory = pid, mem
def nvmlDeviceGetComputeRunningProcesses(h): return [_Proc(p, m) for p, m in _get("procs")]
def nvmlDeviceGetClockInfo(h, c): return _get("sm")
def nvmlDeviceGetTemperature(h, s): return _get("temp")
def nvmlDeviceGetCurrentClocksEventReasons(h): return _get("reasons")
'''


def script(n_idle=5, n_load=15, energy_ok=True):
    steps, e = [], 5_000_000
    for i in range(n_idle + n_load):
        load = i >= n_idle
        w = 690 if load else 79
        steps.append({"energy": e if energy_ok else None, "power": w * 1000,
                      "mem_used": (1500 if load else 500) << 20,
                      "procs": [[4242, 1200 << 20]] if load else [],
                      "sm": 1980 if load else 345, "temp": 40 + (i - n_idle if load else 0),
                      "reasons": 0x4 if load else 0x1})
        e += w * 100  # mJ per 0.1 s step at w watts
    return {"steps": steps}


def run(tmp_path, spec, *args, with_fake=True):
    fake = tmp_path / "fake"
    fake.mkdir(exist_ok=True)
    if with_fake:
        (fake / "pynvml.py").write_text(FAKE)
    (tmp_path / "script.json").write_text(json.dumps(spec))
    out = tmp_path / "nvml.txt"
    env = {"PYTHONPATH": str(fake), "FAKE_NVML_SCRIPT": str(tmp_path / "script.json"),
           "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-S", str(SAMPLER), "-o", str(out), *args], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return parse_trace(out.read_text())


def test_records_all_fields_and_analysis_matches_hand_figures(tmp_path):
    tr = run(tmp_path, script(), "-r", "50", "-n", "19", "--pid", "4242")
    assert tr.info["nvml.gpu0.name"] == "NVIDIA_H200" and tr.info["nvml.driver"] == "580.159.04"
    assert len(tr.t) == 19 and tr.end_reason == "count"
    # the header read consumed step 0; samples are steps 1..19
    assert tr.values["nvml.gpu0.energy"][:2] == [5_000_000 + 7900, 5_000_000 + 2 * 7900]
    assert tr.values["nvml.gpu0.proc_mem"][-1] == 1200 and tr.values["nvml.gpu0.reasons"][-1] == 4
    # counter: between sample k (step k+1) and the last: energy steps are 79 W*0.1 s idle / 69 J load.
    # In the trace's own time base the power is whatever the fake counter says per real second;
    # check the energy difference itself: steps 5..19 are load -> 14 x 69 J = 966 J
    s = nvml_series(tr)
    i5 = 4  # sample index of step 5
    assert energy_between(s, tr.t[i5], tr.t[-1]) == pytest.approx(14 * 69.0)
    r = analyze(tr, [Window(tr.t[i5], tr.t[-1], 140)], idle=(tr.t[0], tr.t[3]))
    assert r.energy_mj_per_inf == pytest.approx(966_000 / 140)
    assert r.throttled is True and "SwPowerCap" in r.throttle_reasons[0]
    assert r.gpu_mem_mb == 1200 and r.power_source.startswith("nvml:gpu0 (counter")


def test_pid_mismatch_falls_back_to_device_memory_delta(tmp_path):
    tr = run(tmp_path, script(), "-r", "50", "-n", "19", "--pid", "7")
    assert any("not among GPU processes" in n for n in tr.notes)
    r = analyze(tr, [Window(tr.t[5], tr.t[-1], 10)], idle=(tr.t[0], tr.t[2]))
    assert r.gpu_mem_mb == 1000 and "device memory delta" in r.power_note


def test_pre_volta_without_energy_counter_uses_sampled_power(tmp_path):
    tr = run(tmp_path, script(energy_ok=False), "-r", "50", "-n", "10")
    assert any(w == "nvml.gpu0.energy" for w, _ in tr.unavailable)
    s = nvml_series(tr)
    assert s.kind == "sampled" and s.power_w[-1] == pytest.approx(690.0)


def test_no_pynvml_says_unavailable(tmp_path):
    tr = run(tmp_path, script(), "-n", "3", with_fake=False)
    assert tr.end_reason == "unavailable" and tr.unavailable[0][0] == "nvml"
    assert "pynvml not importable" in tr.unavailable[0][1]
    f = analyze(tr, [Window(0, 1, 1)]).fields()
    assert f["power_w"] is None and "pynvml not importable" in f["power_note"]


def test_init_failure_says_unavailable(tmp_path):
    spec = script()
    spec["init_error"] = "Driver Not Loaded"
    tr = run(tmp_path, spec, "-n", "3")
    assert "Driver Not Loaded" in tr.unavailable[0][1]


def test_merges_with_sh_sampler_trace():
    sh = parse_trace("# clock uptime\n# col temp.thermal_zone0 mC p\n# fields t temp.thermal_zone0\n"
                       "0 40000\n1 41000\n2 42000\n")
    nv = parse_trace("# clock uptime\n# col nvml.gpu0.energy mJ nvml\n# fields t nvml.gpu0.energy\n"
                       "0.05 0\n1.05 100000\n2.05 200000\n")
    m = sh.merge(nv)
    r = analyze(m, [Window(0.05, 2.05, 10)])
    assert r.power_w == pytest.approx(100.0) and r.temp_max_c == 42.0


def test_runs_on_python37_syntax():
    """Travels to old hosts: must parse with the Python 3.7 grammar."""
    import ast
    src = SAMPLER.read_text()
    ast.parse(src, feature_version=(3, 7))


def test_without_runner_pid_gpu_memory_is_flagged_as_all_processes(tmp_path):
    tr = run(tmp_path, script(), "-r", "50", "-n", "19")  # no --pid: what a session starts today
    r = analyze(tr, [Window(tr.t[5], tr.t[-1], 10)], idle=(tr.t[0], tr.t[2]))
    assert r.gpu_mem_mb == 1200 and r.gpu_mem_scope == "all compute processes"
    assert "not attributed to the runner" in r.power_note
    assert r.measurement_fields()["_detail"]["gpu_mem_scope"] == "all compute processes"
    tr2 = run(tmp_path, script(), "-r", "50", "-n", "19", "--pid", "4242")
    mine = analyze(tr2, [Window(tr2.t[5], tr2.t[-1], 10)])
    assert mine.gpu_mem_scope == "runner process"
    assert "not attributed" not in (mine.power_note or "")


def test_empty_pid_file_is_said_once(tmp_path):
    pidf = tmp_path / "runner.pid"
    pidf.write_text("")
    tr = run(tmp_path, script(), "-r", "50", "-n", "19", "--pid-file", str(pidf))
    said = [n for n in tr.notes if "pid file names no runner pid" in n]
    assert len(said) == 1
    r = analyze(tr, [Window(tr.t[5], tr.t[-1], 10)])
    assert r.gpu_mem_scope == "all compute processes"


def test_runner_gpu_memory_is_not_replaced_by_telemetry():
    """lab/runtimes/json_runner.py measurement_from_docs: NVML's figure may sum every process on a shared GPU."""
    from lab.runtimes.json_runner import measurement_from_docs
    from lab.core.records import Job, MeasurementProtocol
    job = Job("j1", "c", "gpu-server", "h200", "m", "", "paddle-inference-gpu", "gpu", "fp32", 1,
              protocol=MeasurementProtocol())
    def doc(gpu):
        return {"timings": {"samples_ms": [2.0, 2.1, 2.05], "converged": True},
                "memory": {"peak_rss_mb": 900.0, "gpu_mem_mb": gpu}}
    tele = dict.fromkeys(POWER_FIELDS)
    tele.update(power_w=300.0, power_note="x", gpu_mem_mb=9000.0,
                _detail={"gpu_mem_scope": "all compute processes"})
    m = measurement_from_docs(job, [doc(512.0), doc(520.0)], tele)
    assert m.gpu_mem_mb == 520.0 and m.power_w == 300.0
    assert m.provenance["telemetry"]["gpu_mem_scope"] == "all compute processes"
    m2 = measurement_from_docs(job, [doc(None)], tele)
    assert m2.gpu_mem_mb == 9000.0  # the runner gave none: telemetry's (flagged) figure is kept
