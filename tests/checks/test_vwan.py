"""Virtual WAN hubs (issue 18, checks-vwan.md): collection, the hub model, the vwan.* rules and the route.* extensions,
on the two-hub tenant of tests/kit/vwankit.py (shapes of the REST spec examples named there)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from checkkit import run, snapshot_of, subjects
from tenantkit import SUB
from vwankit import FW, FW_IP, HUB1, HUB2, MS_SUB, NVA, POLICY, WAN, subnet_id, vnet_id, vwan_tenant

from plmon.checks.engine import evaluate
from plmon.checks.incremental import Units
from plmon.checks.paths import decide
from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.azure.resource_graph import ResourceGraphReader
from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.scan import run_scan
from plmon.monitor.service.reevaluate import reread_into

BYPASS = "vwan.endpoint-subnet-policy-bypass"
PREFIXES = "vwan.private-prefixes-miss-endpoint"
PEERING = "vwan.peering-bypasses-hub-firewall"
UNKNOWN = "vwan.routing-unknown"
MISSING = "route.nva-missing-snat"
SNAT_UNKNOWN = "route.nva-snat-unknown"
UNRESOLVED = "route.nva-unresolved"
VWAN_IDS = (BYPASS, PREFIXES, PEERING, UNKNOWN, MISSING, SNAT_UNKNOWN, UNRESOLVED)


def _snap(tmp_path: Path, extra: dict[str, Any] | None = None, **options: Any) -> Snapshot:
    return snapshot_of(vwan_tenant(tmp_path / "t", extra, **options))


def _found(snap: Snapshot) -> list[tuple[str, str]]:
    return sorted((f.check_id, f.resource_id.lower()) for f in evaluate(snap).findings if f.check_id in VWAN_IDS)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return snapshot_of(vwan_tenant(tmp_path_factory.mktemp("vwan")))


# --- collection and the snapshot (REST spec example shapes) ---------------------------------------------------------

def test_spec_shapes_become_the_hub_model(base: Snapshot) -> None:
    """VirtualWANGet, VirtualHubGet, HubVirtualNetworkConnectionGet, HubRouteTableGet, RoutingIntentGet and
    AzureFirewallPutInHub shapes are read into typed records (ids compared case-insensitively)."""
    wan = base.virtual_wans[WAN.lower()]
    assert [h.raw for h in wan.hub_ids] == [HUB1, HUB2] and wan.wan_type == "Standard"
    hub = base.virtual_hubs[HUB1.lower()]
    assert hub.wan_id is not None and hub.wan_id.key == WAN.lower() and hub.address_prefix == "10.100.0.0/23"
    assert hub.firewall_id is not None and hub.firewall_id.key == FW.lower()
    assert hub.connections is not None and [c.remote_vnet_id.raw for c in hub.connections if c.remote_vnet_id] == \
        [vnet_id("spoke1"), vnet_id("spoke2")]
    assert hub.routing_policies is not None and hub.routing_policies[0].private
    assert hub.route_tables is not None and [t.name for t in hub.route_tables] == ["defaultRouteTable",
                                                                                   "noneRouteTable"]
    assert hub.route_tables[0].routes[0].destinations == ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    fw = base.firewalls[FW.lower()]   # AZFW_Hub: no ipConfigurations, its IP from hubIPAddresses
    assert fw.sku_name == "AZFW_Hub" and fw.hub_id is not None and fw.private_ips == (FW_IP,) and not fw.subnet_ids
    assert base.nvas[NVA.lower()].hub_id is not None


def test_connection_spelled_as_in_the_spec_example_is_classified_by_its_list(tmp_path: Path) -> None:
    """The HubVirtualNetworkConnectionGet example spells its id .../virtualHubVnetConnections/...: a connection."""
    odd = {"id": f"{HUB2}/virtualHubVnetConnections/connection1", "name": "connection1",
           "properties": {"remoteVirtualNetwork": {"id": vnet_id("spoke3")}}}
    snap = _snap(tmp_path, {f"{HUB2.strip('/')}/hubVirtualNetworkConnections": {"value": [odd]}})
    hub = snap.virtual_hubs[HUB2.lower()]
    assert hub.connections is not None and hub.connections[0].remote_vnet_id is not None
    assert (PREFIXES, f"{HUB1}/hubRouteTables/defaultRouteTable".lower()) in _found(snap)


def test_unreadable_hub_reads_are_coverage_gaps_never_passes(tmp_path: Path) -> None:
    """A 403 on hub2's routing intent is a gap (scope, type, code); hub2's next hop is then not judged at all."""
    error = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}
    snap = _snap(tmp_path, {f"{HUB2.strip('/')}/routingIntent.error": error})
    assert [(g.scope, g.type, g.code) for g in snap.coverage.gaps] == [
        (HUB2, "Microsoft.Network/virtualHubs/routingIntent", "AuthorizationFailed")]
    assert snap.virtual_hubs[HUB2.lower()].routing_policies is None
    found = _found(snap)
    assert not [f for f in found if f[1] == NVA.lower()]
    assert (MISSING, FW.lower()) in found   # hub1 is still judged


def test_unreadable_hub_list_is_a_gap_and_no_vwan_finding(tmp_path: Path) -> None:
    """A 403 on the subscription's virtualHubs list: a gap, and no vwan rule claims anything of its hubs."""
    error = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}
    snap = _snap(tmp_path, {f"subscriptions/{SUB}/providers/Microsoft.Network/virtualHubs.error": error})
    assert ("Microsoft.Network/virtualHubs", "AuthorizationFailed") in [(g.type, g.code) for g in snap.coverage.gaps]
    assert not [f for f in _found(snap) if f[0].startswith("vwan.")]


def test_platform_hub_peering_is_no_out_of_scope_gap(tmp_path: Path) -> None:
    """A scoped scan reads the hubs: the RemoteVnetToHubPeering_* remote (HV_*, a platform subscription) whose address
    space is hub1's addressPrefix is recognised structurally, never an OutOfScope gap or a client network."""
    folder = vwan_tenant(tmp_path / "t")
    reader = RecordedTenant(folder)
    from plmon.monitor.collect.builder import build_snapshot
    snap = build_snapshot(collect(reader, subscriptions=[SUB], manifest=reader.manifest, workers=1))
    assert not [g for g in snap.coverage.gaps if MS_SUB in g.scope]


# --- the rules: failing case, passing neighbour, subject --------------------------------------------------------------

def test_exact_findings_on_two_hubs(base: Snapshot) -> None:
    """Each rule fires once, on its subject, in the two-hub tenant."""
    assert _found(base) == sorted([
        (BYPASS, subnet_id("spoke1", "pe").lower()),
        (PREFIXES, f"{HUB1}/hubRouteTables/defaultRouteTable".lower()),
        (PEERING, f"{vnet_id('spoke1')}/virtualNetworkPeerings/to-clients1".lower()),
        (MISSING, FW.lower()),
        (SNAT_UNKNOWN, NVA.lower()),
    ])


def test_policy_bypass_evidence_fix_and_neighbours(base: Snapshot, tmp_path: Path) -> None:
    """Disabled fails with RouteTableEnabled as fix; RouteTableEnabled (spoke2) passes; NSG-only fails with Enabled."""
    f = next(f for f in evaluate(base).findings if f.check_id == BYPASS)
    assert f.evidence["hubs"][0]["hub"] == HUB1 and f.evidence["hubs"][0]["routing_policy"] == "PrivateTrafficPolicy"
    assert f.evidence["endpoints"] == [f"{'/'.join(FW.split('/')[:-2])}/privateEndpoints/pe-a"]
    assert "--private-endpoint-network-policies RouteTableEnabled" in (f.remediation or "")
    nsg = run(_snap(tmp_path, policies_a="NetworkSecurityGroupEnabled"), BYPASS).findings
    assert len(nsg) == 1 and "--private-endpoint-network-policies Enabled" in (nsg[0].remediation or "")
    assert not run(_snap(tmp_path / "e", policies_a="Enabled"), BYPASS).findings


def test_prefixes_miss_per_hub(base: Snapshot, tmp_path: Path) -> None:
    """hub1 lacks 100.64.0.0/10 (pe-c, connected to hub2); hub2 has it; adding it to hub1 passes."""
    f = next(f for f in evaluate(base).findings if f.check_id == PREFIXES)
    assert [e["ip"] for e in f.evidence["endpoints"]] == ["100.64.1.4"]
    assert f.evidence["private_traffic_prefixes"] == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    assert "az network vhub route-table route add" in (f.remediation or "") and "100.64.1.0/24" in (f.remediation or "")
    assert not run(_snap(tmp_path, hub1_extra_prefix="100.64.0.0/10"), PREFIXES).findings


def test_peering_bypass_and_neighbours(base: Snapshot, tmp_path: Path) -> None:
    """spoke1's direct peering to clients1 (no UDR) fails; spoke2's (UDR to the hub firewall) passes; the platform
    peering to hub1 is never judged; a UDR in clients1 passes."""
    f = next(f for f in evaluate(base).findings if f.check_id == PEERING)
    assert f.evidence["client_subnets"] == [{"subnet": subnet_id("clients1", "app"), "endpoint_ips": ["10.1.1.4"]}]
    assert "az network vnet peering delete" in (f.remediation or "")
    assert not [s for s in subjects(evaluate(base), PEERING) if "remotevnettohubpeering" in s]
    assert not run(_snap(tmp_path, clients1_udr=True), PEERING).findings


def test_routing_unknown_on_custom_tables(tmp_path: Path) -> None:
    """A custom hub route table in hub2: vwan.routing-unknown on hub2 (info), and hub2's rules yield nothing else."""
    snap = _snap(tmp_path, hub2_custom_table=True)
    found = _found(snap)
    assert (UNKNOWN, HUB2.lower()) in found and (SNAT_UNKNOWN, NVA.lower()) not in found
    assert not [x for x in found if x[0] == UNKNOWN and x[1] == HUB1.lower()]


def test_hub_firewall_snat_judged_once_with_hub_evidence(base: Snapshot, tmp_path: Path) -> None:
    """fw-hub1 (default private ranges) is one finding, reached by routing intent and by clients2's UDR; its
    evidence names hub, policy and endpoints and claims no auto-learned ranges; always-SNAT passes."""
    fs = [f for f in evaluate(base).findings if f.check_id == MISSING]
    assert len(fs) == 1
    ev = fs[0].evidence
    assert ev["hubs"][0]["routing_policy"] == "PrivateTrafficPolicy"
    assert [e["ip"] for e in ev["endpoints"]] == ["10.1.1.4", "10.2.1.4"]
    assert "autoLearnPrivateRanges" not in json.dumps(ev) and "not available on secured virtual hubs" in json.dumps(ev)
    assert POLICY in (fs[0].remediation or "")
    assert not run(_snap(tmp_path, snat_ranges=["255.255.255.255/32"]), MISSING).findings


def test_hub_nva_snat_from_its_tag(base: Snapshot, tmp_path: Path) -> None:
    """An untagged hub NVA is unknown (all three endpoints inside hub2's prefixes); always passes; never fails."""
    f = next(f for f in evaluate(base).findings if f.check_id == SNAT_UNKNOWN)
    assert [e["ip"] for e in f.evidence["endpoints"]] == ["10.1.1.4", "10.2.1.4", "100.64.1.4"]
    assert not run(_snap(tmp_path, nva_tag="always"), SNAT_UNKNOWN).findings
    assert subjects(run(_snap(tmp_path / "n", nva_tag="never"), MISSING), MISSING) == sorted([NVA.lower(), FW.lower()])


def test_udr_to_hub_firewall_ip_resolves(base: Snapshot) -> None:
    """clients2's UDR names hubIPAddresses.privateIPAddress: it resolves to fw-hub1, so no route.nva-unresolved."""
    result = decide(base, base.subnets[subnet_id("clients2", "app").lower()], "10.2.1.4")
    assert result.hop is not None and result.hop.firewall is not None and result.hop.firewall.key == FW.lower()
    assert not run(base, UNRESOLVED).findings


# --- incremental, live and the CLI ---------------------------------------------------------------------------------

def test_units_match_full_evaluation_across_an_event(tmp_path: Path) -> None:
    """Under the daemon's units the findings equal a full evaluation, before and after hub1's policy event."""
    folder = vwan_tenant(tmp_path / "t")
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv)
    units = Units()
    assert [f.to_dict() for f in units.full(snap).findings] == [f.to_dict() for f in evaluate(snap).findings]
    path = folder / "arm" / f"subscriptions/{SUB}/providers/Microsoft.Network/firewallPolicies.json"
    body = json.loads(path.read_text())
    body["value"][0]["properties"]["snat"] = {"privateRanges": ["255.255.255.255/32"]}
    path.write_text(json.dumps(body))
    inv, result = reread_into(reader, inv, [parse_id(POLICY)])
    new, links = relink(snap, links, inv, result.touched)
    got, _ = units.update(snap, new, links.changed)
    assert [f.to_dict() for f in got.findings] == [f.to_dict() for f in evaluate(new).findings]
    assert MISSING not in {f.check_id for f in got.findings if f.resource_id.lower() == FW.lower()}


def test_live_arm_and_resource_graph_match_offline(tmp_path: Path) -> None:
    """Through the real SDK clients on the replay server (paged by 2), ARM lists and Resource Graph give the offline
    scan's findings and gaps."""
    folder = vwan_tenant(tmp_path / "t")
    manifest = RecordedTenant(folder).manifest
    offline = run_scan(RecordedTenant(folder), load_config(None), manifest=manifest)
    settings = LiveSettings(retry_backoff_factor=0.01, retry_backoff_max=0.05, read_timeout=5.0)

    def shown(result: Any) -> tuple[list[Any], list[Any]]:
        return ([f.to_dict() for f in result.evaluation.findings],
                sorted((g.scope, g.type, g.code) for g in result.gaps))

    with ReplayServer(folder, page_size=2) as replay:
        live_settings = LiveSettings(**{**settings.__dict__, "arm_endpoint": replay.base_url,
                                        "ca_bundle": replay.ca_bundle})
        with LiveReader(StaticTokenCredential("t"), live_settings) as arm:
            live = run_scan(arm, load_config(None), manifest=manifest)
        with ResourceGraphReader(LiveReader(StaticTokenCredential("t"), live_settings)) as graph:
            via_graph = run_scan(graph, load_config(None), manifest=manifest)
    assert shown(live) == shown(offline) == shown(via_graph)
    assert any(f["check_id"] == PREFIXES for f in shown(live)[0])


def test_cli_scan_json_names_the_new_findings(tmp_path: Path) -> None:
    """`plmon scan --from DIR --format json` on the two-hub tenant lists the vwan findings (end to end)."""
    folder = vwan_tenant(tmp_path / "t")
    plmon = str(Path(sys.executable).with_name("plmon"))
    out = subprocess.run([plmon, "scan", "--from", str(folder), "--format", "json"], capture_output=True, text=True,
                         timeout=120, check=True, env={**os.environ})
    ids = {f["check_id"] for f in json.loads(out.stdout)["findings"]}
    assert {BYPASS, PREFIXES, PEERING, MISSING, SNAT_UNKNOWN} <= ids


def test_redacted_copy_keeps_the_hub_model_and_findings(tmp_path: Path) -> None:
    """A --redact copy renames the tenant's names but not the built-in hub route tables (platform names the rules
    test): the same vwan findings, renamed, and no hub becomes custom routing."""
    from plmon.monitor.collect.redact import redact_folder

    src = vwan_tenant(tmp_path / "t")
    redact_folder(src, tmp_path / "r")
    snap = snapshot_of(tmp_path / "r")
    assert sorted(t.name for h in snap.virtual_hubs.values() for t in h.route_tables or ()) == [
        "defaultRouteTable", "defaultRouteTable", "noneRouteTable", "noneRouteTable"]
    assert sorted(f[0] for f in _found(snap)) == sorted(f[0] for f in _found(snapshot_of(src)))


def test_no_pass_is_claimed_under_an_unread_hub(tmp_path: Path) -> None:
    """--include-passed: with hub2's routing intent unreadable, nothing that rests on hub2 is a pass (hub2 itself, the
    network connected to it), while hub1's neighbours still pass."""
    error = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}
    folder = vwan_tenant(tmp_path / "t", {f"{HUB2.strip('/')}/routingIntent.error": error})
    out = subprocess.run([str(Path(sys.executable).with_name("plmon")), "scan", "--from", str(folder), "--format",
                          "json", "--include-passed"], capture_output=True, text=True, timeout=120, check=True)
    passed = {(p["check_id"], p["resource_id"].lower()) for p in json.loads(out.stdout)["passed"]}
    assert not [p for p in passed if p[0].startswith("vwan.") and p[1] in (HUB2.lower(), vnet_id("spoke3").lower())]
    assert (PEERING, vnet_id("spoke2").lower()) in passed and (UNKNOWN, HUB1.lower()) in passed


def test_legacy_secured_hub_is_routing_unknown_but_internet_only_intent_is_not(tmp_path: Path) -> None:
    """hub1 without routing intent but with its firewall (Firewall Manager's legacy secured hub) is not modelled:
    vwan.routing-unknown; with an Internet-only routing intent its private traffic is direct by design: no finding."""
    legacy = _snap(tmp_path / "a", {f"{HUB1.strip('/')}/routingIntent": {"value": []}})
    assert (UNKNOWN, HUB1.lower()) in _found(legacy)
    internet = {"id": f"{HUB1}/routingIntent/i", "name": "i", "properties": {"routingPolicies": [
        {"name": "InternetTraffic", "destinations": ["Internet"], "nextHop": FW}]}}
    only = _snap(tmp_path / "b", {f"{HUB1.strip('/')}/routingIntent": {"value": [internet]}})
    assert not [f for f in _found(only) if f[1] == HUB1.lower()]


def test_network_whose_hub_was_not_read_is_never_a_pass(tmp_path: Path) -> None:
    """spoke3's hub (hub2) sits in a second subscription whose hub list answers 403: spoke3 keeps its platform
    peering, no hub read connects it, so nothing of spoke3 is a vwan pass (and no vwan finding is claimed for it)."""
    sub2 = "22222222-2222-2222-2222-222222222222"
    error = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}
    files = {"subscriptions": {"value": [{"subscriptionId": s, "tenantId": "t", "state": "Enabled"}
                                         for s in (SUB, sub2)]}}
    files[f"subscriptions/{sub2}/providers/Microsoft.Network/virtualHubs.error"] = error
    folder = vwan_tenant(tmp_path / "t", files)
    listed = folder / "arm" / f"subscriptions/{SUB}/providers/Microsoft.Network/virtualHubs.json"
    hubs = json.loads(listed.read_text())
    hubs["value"] = [h for h in hubs["value"] if h["id"] != HUB2]   # hub2 is the unreadable subscription's
    listed.write_text(json.dumps(hubs))
    out = subprocess.run([str(Path(sys.executable).with_name("plmon")), "scan", "--from", str(folder), "--format",
                          "json", "--include-passed"], capture_output=True, text=True, timeout=120, check=True)
    doc = json.loads(out.stdout)
    spoke3 = vnet_id("spoke3").lower()
    assert not [p for p in doc["passed"] if p["check_id"].startswith("vwan.") and p["resource_id"].lower().startswith(
        spoke3)]
    assert not [f for f in doc["findings"] if f["check_id"].startswith("vwan.") and spoke3 in f["resource_id"].lower()]
    assert (PEERING, vnet_id("spoke2").lower()) in {(p["check_id"], p["resource_id"].lower()) for p in doc["passed"]}
