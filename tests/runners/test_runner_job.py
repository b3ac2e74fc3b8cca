"""runner_core.run_job: a whole job's trials in one runner process (issue 23), fork and fallback.

The runtime here is a stand-in written with the standard library (its "import" sleeps, its
"inference" sleeps 1 ms), said plainly: what is under test is the travelling process machinery
itself (fork per trial, the thread check, the pipe back, JSON lines, signals), which is identical
for pi_runner and ort_runner. Real Paddle and ONNX Runtime jobs run through it in
test_pi_runner.py, test_ort_runner.py and the campaign tests.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.runners import runner_core as core

RUNNERS = Path(__file__).resolve().parents[2] / "lab" / "runners"

FAKE = r'''
import argparse, os, sys, threading, time
sys.path.insert(0, os.environ["RUNNERS_DIR"])
import runner_core as core

def importer():
    time.sleep(0.05)
    if os.environ.get("FAKE_THREAD"):  # a runtime that starts a pool when it is imported
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    return {"fake_runtime": "1.0"}

def measure(args, doc):
    core.timed_import(doc, importer)
    if os.environ.get("FAKE_KILL") == str(args.seed):
        os.kill(os.getpid(), 9)
    t = doc["timings"]
    t0 = time.perf_counter(); time.sleep(0.01); t["load_ms"] = (time.perf_counter() - t0) * 1e3
    t["first_ms"] = 1.0
    doc["model"]["sha256"] = "0" * 64
    doc["config"]["reference"] = args.reference_inputs
    sys.stderr.write("fake: steady state\n"); sys.stderr.flush()
    core.warm_up(lambda: time.sleep(0.001), 2, 0, t)
    core.steady_state(lambda: time.sleep(0.001), 5, args.min_seconds, args.max_seconds, 1.0, 0, t)

def main(argv):
    p = argparse.ArgumentParser()
    core.add_protocol_flags(p); core.add_output_flags(p); core.add_job_flags(p)
    p.add_argument("--pid-file")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    def trial(targs, out):
        doc = core.new_doc("hwlab.runner/1", "fake", "0", core.command_line("fake", argv), {"sha256": None},
                           {"seed": targs.seed}, core.protocol_doc(targs), {}, "sleep", None)
        return core.run_measured("fake", doc, lambda d: measure(targs, d), out, targs.pid_file)
    return core.run_job("fake", args, argv, trial, importer)

core.leave(main(sys.argv[1:]))
'''
QUICK = ["--warmup-seconds", "0", "--min-iters", "5", "--min-seconds", "0.05", "--max-seconds", "0.2"]


def fake(tmp_path, *args, env=None, popen=False):
    script = tmp_path / "fake_runner.py"
    script.write_text(FAKE)
    cmd = [sys.executable, str(script), *QUICK, *map(str, args)]
    full_env = dict(os.environ, RUNNERS_DIR=str(RUNNERS), **(env or {}))
    full_env.pop("OPENBLAS_NUM_THREADS", None)
    if popen:
        return subprocess.Popen(cmd, env=full_env, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=120)


def docs_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_fork_runs_each_trial_in_its_own_child_after_one_import(tmp_path):
    out = tmp_path / "r.jsonl"
    p = fake(tmp_path, "--trials", "3", "--process", "fork", "--seed", "5", "--out", out,
             "--reference-inputs", "ref.npz")
    assert p.returncode == 0, p.stderr
    docs = docs_of(out)
    assert [d["trial"] for d in docs] == [0, 1, 2] and all(d["ok"] for d in docs)
    assert [d["config"]["seed"] for d in docs] == [5, 6, 7]
    # the checks ride on the last trial only, as with one process per trial
    assert [d["config"]["reference"] for d in docs] == [None, None, "ref.npz"]
    pids = {d["env"]["pid"] for d in docs}
    assert len(pids) == 3 and p.returncode == 0  # a child per trial ...
    imports = {d["timings"]["import_ms"] for d in docs}
    assert len(imports) == 1 and imports.pop() >= 50  # ... after the runner's one import (>= its 50 ms)
    assert all(d["protocol"]["process"] == "fork" and not d.get("notes") for d in docs)
    assert all(d["memory"]["rss_source"] == "VmHWM+runner library pages" for d in docs)
    assert all(len(d["timings"]["samples_ms"]) >= 5 for d in docs)


def test_fresh_trials_each_import_for_themselves(tmp_path):
    out = tmp_path / "r.jsonl"
    p = fake(tmp_path, "--trials", "2", "--process", "fresh", "--out", out)
    assert p.returncode == 0, p.stderr
    docs = docs_of(out)
    assert [d["protocol"]["process"] for d in docs] == ["fresh", "fresh"]
    assert all(d["timings"]["import_ms"] >= 50 and d["memory"]["rss_source"] == "VmHWM" for d in docs)


def test_a_thread_before_the_fork_falls_back_to_fresh_processes_with_a_note(tmp_path):
    out = tmp_path / "r.jsonl"
    p = fake(tmp_path, "--trials", "2", "--process", "fork", "--out", out, env={"FAKE_THREAD": "1"})
    assert p.returncode == 0, p.stderr
    docs = docs_of(out)
    assert len(docs) == 2 and all(d["ok"] for d in docs)
    assert [d["protocol"]["process"] for d in docs] == ["fresh", "fresh"]
    for d in docs:
        assert d["notes"] == ["process fork refused: the runner had 2 threads after importing the "
                              "runtime (a fork copies one); trials ran as fresh processes"]


def test_the_documents_as_the_last_stdout_lines(tmp_path):
    p = fake(tmp_path, "--trials", "2", "--process", "fork", "--out", "-")
    assert p.returncode == 0, p.stderr
    docs = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert [d["trial"] for d in docs] == [0, 1] and all(d["ok"] for d in docs)


def test_a_gpu_job_is_never_forked(tmp_path):
    out = tmp_path / "r.jsonl"
    p = fake(tmp_path, "--trials", "2", "--process", "fork", "--device", "gpu", "--out", out)
    assert p.returncode == 0, p.stderr
    docs = docs_of(out)
    assert [d["protocol"]["process"] for d in docs] == ["fresh", "fresh"]
    assert all(d["notes"] == [core.GPU_REFUSAL] for d in docs)


def test_a_trial_killed_by_a_signal_ends_the_job_with_the_reason(tmp_path):
    out = tmp_path / "r.jsonl"
    p = fake(tmp_path, "--trials", "3", "--process", "fork", "--out", out, env={"FAKE_KILL": "1"})
    assert p.returncode == core.EXIT_FAILED
    docs = docs_of(out)
    assert [d["ok"] for d in docs] == [True, False]  # the job stops at the failed trial
    assert docs[1]["error"] == "trial 1 wrote no result (killed by signal 9)"
    assert docs[1]["schema"] == "hwlab.runner/1"


def test_sigterm_to_the_runner_keeps_what_the_running_trial_measured(tmp_path):
    out = tmp_path / "r.jsonl"
    proc = fake(tmp_path, "--trials", "2", "--process", "fork", "--out", out, "--min-seconds", "30",
                "--max-seconds", "30", popen=True)
    deadline = time.time() + 60
    for line in proc.stderr:  # the forked trial is in its steady loop
        if line.startswith("fake: steady state") or time.time() > deadline:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # the runner only, as a host that kills its command's pid
    proc.communicate(timeout=30)
    assert proc.returncode == core.EXIT_FAILED
    docs = docs_of(out)
    assert len(docs) == 1 and docs[0]["ok"] is False and "signal" in docs[0]["error"]
    assert docs[0]["timings"]["samples_ms"]  # what the trial measured before it was stopped


def test_trial_args_and_the_refusal_reason():
    import argparse
    args = argparse.Namespace(seed=3, trials=2, reference_inputs="r.npz", eval_inputs="e.npz", process="fork")
    first, last = core.trial_args(args, 0), core.trial_args(args, 1)
    assert (first.seed, first.trials, first.reference_inputs, first.eval_inputs) == (3, 1, None, None)
    assert (last.seed, last.reference_inputs, last.eval_inputs) == (4, "r.npz", "e.npz")
    assert args.seed == 3 and args.reference_inputs == "r.npz"  # the job's own arguments untouched
    assert core.thread_count() >= 1
