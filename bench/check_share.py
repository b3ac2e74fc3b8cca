"""The output check's share of a job's device time, through the real job path (issue 13).

  PYTHONPATH=. python bench/check_share.py [--work /tmp/hwlab-check-share] [--threads 1]

Runs one campaign on `local` (mobilenet_v1 and digits_cnn, fp32 and int8, paddle-inference-cpu,
the demo campaign's protocol, `accuracy: true`) and reads per job, from the stored provenance,
the reference set's device seconds (pi_runner's `outputs_check.seconds`, after the last trial's
timing) and the eval set's, against the job's device time (`trials_seconds`: the trial loop,
from the first runner start to the last runner exit). Target: reference share < 5 %.
Also prints int8/fp32 p50 side by side.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/hwlab-check-share")
    ap.add_argument("--threads", default="1")
    args = ap.parse_args()
    ws = Path(args.work)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "devices.yaml").write_text(textwrap.dedent(f"""
        devices:
          - id: local
            chip: generic-x86-cpu
            transport: local
            workdir: {ws / 'device'}
        """))
    demo = (REPO / "campaigns" / "quantised.yaml").read_text()
    (ws / "c.yaml").write_text(demo.replace("threads: [1, 2]", f"threads: [{args.threads}]")
                               .replace("name: quantised", f"name: check-share-{args.threads}"))
    env = {"PYTHONPATH": str(REPO)}
    import os
    env = dict(os.environ, **env)
    res = subprocess.run([sys.executable, "-m", "lab.cli", "--store", "s.sqlite", "run", "c.yaml",
                          "--models-root", "models", "--no-progress", "--fresh"], cwd=ws, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(res.stderr)
    from lab.results.store import Store
    store = Store(ws / "s.sqlite")
    print("| model | precision | p50 ms | agree cosine_min | agree_ok | accuracy_top1 | job device s "
          "| reference set s (share) | eval set s |")
    print("|---|---|---|---|---|---|---|---|---|")
    shares = []
    for r in sorted(store.results(f"check-share-{args.threads}"), key=lambda r: (r.model, r.precision)):
        prov = store.provenance(r.job_id)
        chk = prov.get("checks") or {}
        total = prov.get("trials_seconds")
        ref_s = chk.get("seconds")
        ev_s = (chk.get("accuracy") or {}).get("seconds")
        share = ref_s / total if ref_s is not None and total else None
        if share is not None:
            shares.append(share)
        print(f"| {r.model} | {r.precision} | {r.p50_ms:.3f} | {r.agree_cosine_min} | {r.agree_ok} | "
              f"{r.accuracy_top1} | {total:.2f} | {ref_s:.3f} ({100 * share:.2f} %) | "
              f"{'n/a' if ev_s is None else f'{ev_s:.3f}'} |")
    print(json.dumps({"max_reference_share": max(shares) if shares else None}))


if __name__ == "__main__":
    main()
