"""The bundled demo tenant: it matches its source, and its scan shows a meaningful mix of findings."""

from __future__ import annotations

import json
from pathlib import Path

import demo_tenant_source

from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.scan import run_scan

DEMO = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"


def test_committed_demo_tenant_matches_its_source(tmp_path: Path) -> None:
    """Regenerating the demo tenant from tests/kit/demo_tenant_source.py changes no file."""
    fresh = demo_tenant_source.write(tmp_path / "demo")
    ours = {p.relative_to(DEMO).as_posix(): json.loads(p.read_text()) for p in DEMO.rglob("*.json")}
    theirs = {p.relative_to(fresh).as_posix(): json.loads(p.read_text()) for p in fresh.rglob("*.json")}
    assert ours == theirs


def test_demo_scan_has_findings_passes_and_a_gap() -> None:
    """The demo shows failing and passing resources of every foundation family and a coverage gap."""
    tenant = RecordedTenant(DEMO)
    result = run_scan(tenant, load_config(None), manifest=tenant.manifest)
    ids = {f.check_id for f in result.evaluation.findings}
    assert {"connection.pending", "connection.rejected", "connection.disconnected", "connection.target-missing",
            "pls.visibility-public", "pls.auto-approval-wildcard", "rmpl.association-not-root",
            "rmpl.bastion-dns-conflict"} <= ids
    flagged = {f.resource_id.rsplit("/", 1)[-1] for f in result.evaluation.findings}
    assert "pe-kv" not in flagged and "rmpl-contoso" not in flagged  # healthy neighbours pass
    assert {(g.type, g.code) for g in result.gaps} >= {("Microsoft.Network/privateEndpoints", "AuthorizationFailed")}
