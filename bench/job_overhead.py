"""A job's overhead, `process: fresh` against `process: fork`, side by side in one run (issue 23).

Why: with a fresh process per trial, a demo job spent 40-60 % of its wall time outside the model
(interpreter, `import paddle`, predictor, first inference, three times over). This bench runs the
demo campaign's protocol on `local` (mobilenet_v1 and mobilenet_v2, Paddle Inference CPU, 1 and 2
threads) with `process: fresh` and `process: fork`, alternated (fresh-fork, then fork-fresh, so
that neither mode always runs first), through `lab.runtimes.execute.execute_job`, the call the
scheduler makes for each job (the store writes and the cooldown between jobs are outside it).

Per job it prints the overhead = wall time of the job minus the runner's steady-state seconds
(summed over the trials), and where it went: the host's phases (prepare = pushes and checks,
telemetry start/stop, measurement) from the job's provenance, and the runner's own figures
(import, predictor load, first inference, warm-up); `rest` is what none of them covers (process
start and exit, model hashing, the output checks, transport). Then per mode: median overhead with
its 95 % CI (order statistics over the jobs), the ratio fork/fresh, the latency medians of each
configuration with their CIs (pooled over rounds), and load_ms fork vs fresh.

Claims checked (issue 23 "Must show"): fork overhead <= 0.5 x fresh; each configuration's fork
median inside the fresh CI and the fresh median inside the fork CI; load_ms fork within 20 % of
fresh. The harness ratio (P1) is bench/harness_overhead.py's (see docs/benchmarks.md).

Usage: .venv/bin/python bench/job_overhead.py [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.runners import runner_core as core  # noqa: E402  (after the sys.path line above)

CAMPAIGN = """name: job-overhead-{process}
devices: [local]
models: [mobilenet_v1, mobilenet_v2]
backends: [paddle-inference-cpu]
threads: [1, 2]
options:
  onednn: [true]
protocol: {protocol}
"""
PARTS = ("import", "load", "first", "warmup")


def demo_protocol(process: str) -> dict:
    """campaigns/demo.yaml's protocol, with `process` set."""
    from lab.core.yamlio import load_yaml
    proto = dict(load_yaml(str(REPO / "campaigns" / "demo.yaml"), what="campaign file")["protocol"])
    proto["process"] = process
    return proto


def plan(tmp: Path, process: str):
    """The jobs of one mode; `local` works in its own directory (another `lab run` on this machine
    uses ~/.cache/hwlab/device-local, and a telemetry start stops the samplers it finds there)."""
    from lab.measure.orchestrate import prepare
    path, devices = tmp / f"{process}.yaml", tmp / "devices.yaml"
    devices.write_text("devices:\n  - id: local\n    chip: generic-x86-cpu\n    transport: local\n"
                       f"    workdir: {tmp / 'device'}\n")
    path.write_text(CAMPAIGN.format(process=process, protocol=json.dumps(demo_protocol(process))))
    prep = prepare(path, devices, REPO / "models", log=lambda m: print("#", m, flush=True))
    assert all(j.protocol.process == process for j in prep.jobs)
    return prep


def run_job(job, device, transport) -> dict:
    from lab.runtimes.execute import execute_job
    t0 = time.monotonic()
    m = execute_job(job, device, transport, models_root=REPO / "models")
    wall = time.monotonic() - t0
    trials = m.provenance["trials"]
    steady = sum(t["steady_seconds"] for t in trials)
    parts = {"import": (trials[0]["import_ms"] if job.protocol.process == "fork"
                        else sum(t["import_ms"] for t in trials)) / 1e3,
             "load": sum(t["load_ms"] for t in trials) / 1e3,
             "first": sum(t["first_ms"] for t in trials) / 1e3,
             "warmup": sum(t["warmup_ms_total"] for t in trials) / 1e3}
    phases = m.provenance["phases_s"]
    host = sum(v for k, v in phases.items() if k != "trials")
    return {"process": job.protocol.process, "model": job.model, "threads": job.threads, "wall_s": wall,
            "steady_s": steady, "overhead_s": wall - steady, "parts_s": parts, "phases_s": phases,
            "rest_s": wall - steady - host - sum(parts.values()), "p50_ms": m.p50_ms, "samples": m.samples,
            "load_ms": m.load_ms, "import_ms": m.import_ms, "notes": m.notes}


def _ci(values):
    med, lo, hi, _ = core.median_ci(values)
    return med, lo, hi


def _f(x, spec=".2f"):
    return "n/a" if x is None else format(x, spec)


def summary(rows: list[dict]) -> dict:
    """Per mode: overhead median + CI; per config: pooled latency median + CI and load_ms."""
    from lab.results.stats import summarize
    out = {"overhead": {}, "configs": {}}
    for mode in ("fresh", "fork"):
        ov = [r["overhead_s"] for r in rows if r["process"] == mode]
        med, lo, hi = _ci(ov)
        out["overhead"][mode] = {"median_s": med, "ci": [lo, hi], "n": len(ov),
                                 "parts_median_s": {p: statistics.median(r["parts_s"][p] for r in rows
                                                                          if r["process"] == mode) for p in PARTS},
                                 "rest_median_s": statistics.median(r["rest_s"] for r in rows if r["process"] == mode),
                                 "host_median_s": {k: statistics.median(r["phases_s"].get(k, 0.0) for r in rows
                                                                        if r["process"] == mode)
                                                   for k in ("prepare", "telemetry_start", "telemetry_stop",
                                                             "measurement")}}
    for key in sorted({(r["model"], r["threads"]) for r in rows}):
        cfg = {}
        for mode in ("fresh", "fork"):
            mine = [r for r in rows if (r["model"], r["threads"]) == key and r["process"] == mode]
            st = summarize([t for r in mine for t in r["samples"]])
            cfg[mode] = {"p50_ms": st.p50, "ci": [st.ci_low, st.ci_high],
                         "load_ms": statistics.median(r["load_ms"] for r in mine)}
        a, b = cfg["fork"], cfg["fresh"]
        cfg["medians_within_each_others_ci"] = (b["ci"][0] <= a["p50_ms"] <= b["ci"][1]
                                                and a["ci"][0] <= b["p50_ms"] <= a["ci"][1])
        cfg["load_ratio"] = a["load_ms"] / b["load_ms"]
        out["configs"][f"{key[0]} t{key[1]}"] = cfg
    fork, fresh = out["overhead"]["fork"]["median_s"], out["overhead"]["fresh"]["median_s"]
    out["ratio"] = fork / fresh
    return out


def report(s: dict, load) -> None:
    o = s["overhead"]
    for mode in ("fresh", "fork"):
        m = o[mode]
        parts = " ".join(f"{k} {v:.2f}" for k, v in m["parts_median_s"].items())
        host = " ".join(f"{k} {v:.2f}" for k, v in m["host_median_s"].items())
        print(f"overhead {mode:5s}: median {m['median_s']:.2f} s (95% CI {_f(m['ci'][0])}-{_f(m['ci'][1])}, "
              f"n={m['n']}); runner parts {parts}; host {host}; rest {m['rest_median_s']:.2f}")
    verdict = "PASS" if s["ratio"] <= 0.5 else "FAIL"
    print(f"fork / fresh overhead = {s['ratio']:.3f} [{verdict}: <= 0.5]")
    for name, c in s["configs"].items():
        a, b = c["fork"], c["fresh"]
        print(f"{name:18s} p50 fresh {b['p50_ms']:.2f} ({_f(b['ci'][0])}-{_f(b['ci'][1])}) fork {a['p50_ms']:.2f} "
              f"({_f(a['ci'][0])}-{_f(a['ci'][1])}) within each other's CI: {c['medians_within_each_others_ci']}; "
              f"load_ms fresh {b['load_ms']:.0f} fork {a['load_ms']:.0f} ratio {c['load_ratio']:.3f} "
              f"[{'PASS' if abs(c['load_ratio'] - 1) <= 0.2 else 'FAIL'}: within 20 %]")
    print(f"load average {load}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh/fork pairs per configuration")
    ap.add_argument("--json", help="also write every job's figures and the summary here")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp), args.rounds)
    s = summary(rows)
    report(s, {"start": load_start, "end": os.getloadavg()})
    if args.json:
        for r in rows:
            r.pop("samples")
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": s, "argv": sys.argv}, indent=1))
    ok = s["ratio"] <= 0.5 and all(c["medians_within_each_others_ci"] and abs(c["load_ratio"] - 1) <= 0.2
                                   for c in s["configs"].values())
    return 0 if ok else 1


def measure(tmp: Path, rounds: int) -> list[dict]:
    """Every configuration `rounds` times in each mode, the two modes back to back."""
    from lab.transport.local import LocalTransport
    preps = {p: plan(tmp, p) for p in ("fresh", "fork")}
    device = next(d for d in preps["fork"].devices if d.id == "local")
    transport = LocalTransport(device)
    rows = []
    for rnd in range(rounds):
        for i in range(len(preps["fork"].jobs)):
            order = ("fresh", "fork") if (rnd + i) % 2 == 0 else ("fork", "fresh")
            for mode in order:
                job = preps[mode].jobs[i]
                r = run_job(job, device, transport)
                r["loadavg_1m"] = os.getloadavg()[0]
                rows.append(r)
                print(f"round {rnd} {job.model} t{job.threads} {mode:5s}: wall {r['wall_s']:.2f} s, steady "
                      f"{r['steady_s']:.2f} s, overhead {r['overhead_s']:.2f} s (import {r['parts_s']['import']:.2f}, "
                      f"load {r['parts_s']['load']:.2f}, warm-up {r['parts_s']['warmup']:.2f}, "
                      f"rest {r['rest_s']:.2f}); "
                      f"p50 {r['p50_ms']:.2f} ms, load_ms {r['load_ms']:.0f}; load average "
                      f"{r['loadavg_1m']:.1f}", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
