"""Shared test helpers (moved out of test_report.py so other test files import a helper, not a test module)."""
from __future__ import annotations

import random
import re
from lab.core.records import Job, Measurement, MeasurementProtocol


XSS_DEVICE = "<script>alert(1)</script>"


XSS_MODEL = '"><img onerror=alert(1) src=x>'


def make_job(campaign, device, model, backend="paddle-inference-cpu", processor="cpu", threads=1,
             precision="fp32", chip="x86_64-host"):
    jid = f"{campaign}-{device}-{model}-{backend}-{threads}-{precision}"
    jid = re.sub(r"[^A-Za-z0-9_.-]", "_", jid)
    return Job(job_id=jid, campaign=campaign, device=device, chip=chip, model=model, model_sha256="ab" * 32,
               backend=backend, processor=processor, precision=precision, threads=threads,
               options=(("onednn", True),), protocol=MeasurementProtocol())


def measurement(job, base_ms, *, rng, trials=3, n=40, spread=0.02, **extra):
    samples = [[base_ms * (1 + rng.gauss(0, spread)) for _ in range(n)] for _ in range(trials)]
    flat = sorted(x for t in samples for x in t)
    p50 = flat[len(flat) // 2]
    fields = dict(p50_ms=p50, ci_low_ms=p50 * 0.99, ci_high_ms=p50 * 1.01, p90_ms=flat[int(0.9 * len(flat))],
                  p99_ms=flat[-1], mean_ms=sum(flat) / len(flat), min_ms=flat[0], max_ms=flat[-1],
                  load_ms=120.0, first_ms=base_ms * 3, peak_rss_mb=200.0 + base_ms, n_samples=len(flat),
                  converged=True, power_note="telemetry: no power source on this host", samples=samples,
                  provenance={"runner": "pi_runner", "runner_version": "1.0.0", "model_sha256": "ab" * 32,
                              "commands": ["python3 pi_runner.py --model m.json --out -"],
                              "env": {"python": "3.11.7", "paddle": "3.3.1", "hostname": "box"},
                              "stats_method": "bootstrap"})
    fields.update(extra)
    return Measurement(job_id=job.job_id, **fields)


def fill(store, campaign, specs, seed=1):
    """specs: list of (Job kwargs, base_ms or None for failed, extra measurement fields)."""
    rng = random.Random(seed)
    jobs = [make_job(campaign, **kw) for kw, _, _ in specs]
    store.plan_jobs(jobs)
    store.save_campaign(campaign, {"name": campaign})
    for job, (_, ms, extra) in zip(jobs, specs):
        if ms is None:
            store.finish_job(job.job_id, "failed", error="RunnerError: predictor creation failed: <boom>")
        else:
            store.finish_job(job.job_id, "ok", measurement=measurement(job, ms, rng=rng, **extra))
    return jobs
