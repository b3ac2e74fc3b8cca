"""A latency profile for the simulated runner: the samples of one real stored job, as a JSON file.

    python -m hwlab_sim.profile STORE JOB_ID -o profile.json

Why a file: the runner travels alone (stdlib only) and reads the profile it is handed; the file
says which real job (store, id, device, chip, model) the distribution comes from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_PROFILE = DATA / "mobilenet_v1-generic-x86-cpu.json"


def export(store_path: str, job_prefix: str) -> dict:
    from lab.results.store import Store
    store = Store(store_path, readonly=True)
    try:
        row = store.find_job(job_prefix)
        samples = [ms for trial in store.samples(row.job_id) for ms in trial]
    finally:
        store.close()
    if row.status != "ok" or not samples:
        raise SystemExit(f"job {row.job_id} has no stored samples (status {row.status})")
    if row.source != "lab":
        raise SystemExit(f"job {row.job_id} is not a measured job (source {row.source})")
    return {"schema": "hwlab-sim.profile/1", "samples_ms": samples, "load_ms": row.load_ms,
            "first_ms": row.first_ms,
            "from": {"store": str(store_path), "job_id": row.job_id, "device": row.device, "chip": row.chip,
                     "model": row.model, "backend": row.backend, "precision": row.precision,
                     "threads": row.threads, "finished_at": row.finished_at}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("job_id")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    Path(args.out).write_text(json.dumps(export(args.store, args.job_id), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
