"""A small store with what `lab results`, lab.api and the advisor read: ok rows with agreement and
accuracy (True, False, unknown), option sets (none, flat, nested), a failed job whose error holds a
newline, a control character and a formula lead, a planned job, non-ASCII names, raw samples."""
from __future__ import annotations

from pathlib import Path

from lab.core.records import Job, Measurement
from lab.results.store import Store


def _job(i: int, campaign: str, device: str, backend: str, proc: str, options=()) -> Job:
    return Job(job_id=f"job{i:03d}", campaign=campaign, device=device, chip="kirin990", model="mobilenet_v1",
               model_sha256="ab" * 32, backend=backend, processor=proc, precision="fp32", threads=1 + i % 2,
               options=options)


def small_store(path: Path) -> Path:
    store = Store(path)
    try:
        pairs = []
        for i, (dev, backend, proc, opts, agree, acc) in enumerate([
                ("phone", "paddle-lite-arm", "cpu", (), True, 0.912),
                ("phone", "paddle-lite-kirin-npu", "aipu", (("nnadapter", "kirin"),), False, 0.31),
                ("höst-ü", "paddle-inference-cpu", "cpu", (("onednn", True),), None, None),
                ("höst-ü", "onnxruntime-cpu", "cpu", (("shapes", [[1, 3], {"x": 2.5}]),), True, None)]):
            j = _job(i, "demo", dev, backend, proc, opts)
            p50 = 10.0 + 3.3 * i
            m = Measurement(job_id=j.job_id, p50_ms=p50, ci_low_ms=p50 * 0.98, ci_high_ms=p50 * 1.02,
                            p90_ms=p50 * 1.1, load_ms=120.5, first_ms=30.25, peak_rss_mb=200.0 + i,
                            n_samples=6, converged=i != 2, throttled=False if i else None,
                            agree_ok=agree, agree_cosine_min=None if agree is None else (0.99991 if agree else 0.7),
                            accuracy_top1=acc, power_w=2.5 if i == 1 else None,
                            samples=[[p50, p50 + 0.1, p50 - 0.1], [p50, p50 + 0.2, p50 - 0.05]])
            pairs.append((j, m))
        store.import_rows("demo", pairs)
        failed, planned = _job(10, "demo", "phone", "paddle-lite-arm", "cpu"), _job(11, "other", "phone",
                                                                                     "paddle-lite-arm", "cpu")
        store.plan_jobs([failed, planned])
        store.finish_job(failed.job_id, "failed", error="=cmd|' /C calc'!A0\nline two \x1b[31m red")
        for c in ("demo", "other"):
            store.save_campaign(c, {"name": c})
    finally:
        store.close()
    return path
