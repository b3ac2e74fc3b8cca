"""Every campaign shipped in campaigns/ parses and plans against the shipped devices.yaml."""
from __future__ import annotations

from pathlib import Path

import pytest

from lab.measure.campaign import load_campaign, plan_jobs
from lab.devices.inventory import load_devices

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "campaigns").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_campaign_plans(path):
    spec = load_campaign(path)
    jobs, excluded = plan_jobs(spec, load_devices(REPO / "devices.yaml"), lambda m: "sha-" + m)
    assert jobs, f"{path.name} plans no job; excluded: {[e.reason for e in excluded]}"
    assert {j.device for j in jobs} <= set(spec.devices)
    if path.name == "phone-npu.yaml":
        assert {j.processor for j in jobs} == {"cpu", "aipu"}
