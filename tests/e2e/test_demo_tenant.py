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


def test_demo_virtual_wan_estate_is_judged() -> None:
    """The demo's Virtual WAN (issue 18): the hub firewall left at default SNAT and the connected endpoint subnet
    without Route Table policies are found; the NVA hub that declares plmon-snat=always passes; no gap is added."""
    tenant = RecordedTenant(DEMO)
    result = run_scan(tenant, load_config(None), manifest=tenant.manifest)
    vwan = {(f.check_id, f.resource_id.rsplit("/", 1)[-1]) for f in result.evaluation.findings
            if f.check_id.startswith("vwan.") or "rg-vwan" in f.resource_id}
    assert vwan == {("route.nva-missing-snat", "fw-vhub-weu"), ("vwan.endpoint-subnet-policy-bypass", "snet-pe")}
    assert len(result.snapshot.virtual_hubs) == 2 and len(result.gaps) == 2


def test_demo_scoped_to_the_spoke_names_its_unread_hub_as_a_gap() -> None:
    """Scoped to the application subscription, vnet-branch-apps' hub (in the connectivity subscription) is not read:
    its platform peering is no OutOfScope network, the network's hub membership is a HubOutOfScope gap, and no vwan
    finding is claimed for it."""
    from plmon.monitor.collect.builder import build_snapshot
    from plmon.monitor.collect.plan import collect

    tenant = RecordedTenant(DEMO)
    snap = build_snapshot(collect(tenant, subscriptions=["aaaaaaaa-0000-4000-8000-000000000002"],
                                  manifest=tenant.manifest, workers=1))
    hub_gaps = [g for g in snap.coverage.gaps if g.code == "HubOutOfScope"]
    assert [(g.scope.rsplit("/", 1)[-1], g.type) for g in hub_gaps] == [("vnet-branch-apps",
                                                                         "Microsoft.Network/virtualHubs")]
    assert not [g for g in snap.coverage.gaps if "HV_" in g.scope]
