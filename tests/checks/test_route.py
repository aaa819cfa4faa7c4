"""route.* checks on one hub-and-spoke tenant with two firewalls (classic and policy SNAT) and third-party NVAs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from netkit import NET, appliance_tenant, hub_and_spokes, subnet_id, vnet_id
from tenantkit import SUB, sub_list, write_tenant

from plmon.checks.engine import evaluate
from plmon.checks.registry import all_checks
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot

ROUTE_IDS = {c for c in all_checks() if c.startswith("route.")}


def tenant(tmp_path: Path) -> Snapshot:
    return appliance_tenant().snapshot(tmp_path)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, dict[tuple[str, str], object]]:
    snap = tenant(tmp_path_factory.mktemp("hub"))
    ev = evaluate(snap, only=ROUTE_IDS)
    assert ev.check_errors == ()
    return snap, {(f.check_id, f.resource_id.rsplit("/", 1)[-1]): f for f in ev.findings}


def test_exact_route_findings(result: tuple[Snapshot, dict]) -> None:
    """Exactly the catalogue's findings, each on its subject; passing neighbours (rt-spoke2, fw-policy) absent."""
    _, found = result
    assert sorted(found) == sorted([
        ("route.udr-bypassed", "rt-spoke1"),
        ("route.nva-missing-snat", "fw-classic"), ("route.nva-missing-snat", "nva-never"),
        ("route.nva-missing-snat", "nva-behind"),
        ("route.nva-snat-unknown", "nva-untagged"), ("route.nva-snat-unknown", "ilb-unknown"),
        ("route.nva-unresolved", "rt-ops"),
        ("route.nva-ip-forwarding-off", "nva-fwd-off"),
    ])


def test_bypass_evidence_names_the_path_and_rule(result: tuple[Snapshot, dict]) -> None:
    """The bypass finding lists the endpoint, policy value, prefix lengths and gives a /32 route command."""
    _, found = result
    f = found[("route.udr-bypassed", "rt-spoke1")]
    ep = f.evidence["endpoints"][0]
    assert ep["ip"] == "10.1.1.4" and ep["privateEndpointNetworkPolicies"] == "Disabled"
    assert ep["bypassed_routes"][0]["prefix_length"] == 0 and ep["endpoint_vnet_prefix"] == "10.1.0.0/16"
    assert "subnet app -> 10.1.1.4/32 -> InterfaceEndpoint" in ep["paths"][0]
    assert "az network route-table route create --resource-group rg1 --route-table-name rt-spoke1" in f.remediation
    assert "--address-prefix 10.1.1.4/32 --next-hop-type VirtualAppliance --next-hop-ip-address 10.0.1.4" \
        in f.remediation
    assert "--private-endpoint-network-policies Enabled" in f.remediation


def test_missing_snat_evidence_and_fix(result: tuple[Snapshot, dict]) -> None:
    """Firewall SNAT finding shows the path through the firewall, the model, the note and the az fix."""
    _, found = result
    f = found[("route.nva-missing-snat", "fw-classic")]
    path = f.evidence["paths"][0]
    assert "10.1.1.4/32 -> VirtualAppliance 10.0.1.4" in path["path"] and "Azure Firewall fw-classic" in path["path"]
    assert path["snat"]["model"] == "firewall-classic" and path["snat"]["snat"] == "no"
    assert "application rules always SNAT" in f.evidence["note"]
    assert f.remediation.startswith("az network firewall update --ids /subscriptions/")
    assert "--private-ranges" in f.remediation
    nva = found[("route.nva-missing-snat", "nva-never")]
    assert "tags.plmon-snat=always" in nva.remediation and nva.severity.value == "high"


def test_unknown_and_forwarding_severities(result: tuple[Snapshot, dict]) -> None:
    """Default severities are the catalogue's: snat-unknown medium, ip-forwarding-off high, unresolved medium."""
    _, found = result
    assert found[("route.nva-snat-unknown", "ilb-unknown")].severity.value == "medium"
    assert found[("route.nva-ip-forwarding-off", "nva-fwd-off")].remediation.endswith("--ip-forwarding true")
    unresolved = found[("route.nva-unresolved", "rt-ops")]
    assert unresolved.severity.value == "medium" and unresolved.evidence["routes"][0]["next_hop_ip"] == "10.0.9.9"


def test_policy_snat_setting_in_hub_path_passes(result: tuple[Snapshot, dict]) -> None:
    """The policy firewall (always SNAT) carries pe2 traffic from spoke2/app and hub/jump2 without a finding."""
    snap, found = result
    assert not any(name == "fw-policy" for _, name in found)
    from plmon.checks.paths import endpoint_paths
    via = {p.subnet_id.name for p in endpoint_paths(snap) if p.hop and p.hop.firewall
           and p.hop.firewall.name == "fw-policy"}
    assert via == {"app", "jump2"}


# --- route.nva-unresolved only when plmon read the next hop's address space (issue 12, item 2) ------

SUB2 = "22222222-2222-2222-2222-222222222222"


def _two_subscriptions(folder: Path, n: Any, moved: tuple[str, ...], *extra: tuple[str, Any]) -> Path:
    """Write ``n`` as a tenant whose resources ``moved`` (and their children) live in SUB2, the rest in SUB."""
    text = json.dumps({**{sub_list(kind): {"value": items} for kind, items in n.lists.items()}, **n.files})
    for rid in moved:
        text = text.replace(rid, rid.replace(SUB, SUB2))
    files: dict[str, Any] = {}
    for path, body in json.loads(text).items():
        if path.startswith(f"subscriptions/{SUB}/providers/"):
            files[path] = {"value": [i for i in body["value"] if SUB2 not in i["id"]]}
            files[sub_list(path.rsplit("/", 1)[-1], SUB2)] = {"value": [i for i in body["value"] if SUB2 in i["id"]]}
        else:
            files[path] = body
    return write_tenant(folder, {**files, **dict(extra)}, subscriptions=[SUB, SUB2])


def _hub_in_other_subscription(folder: Path, hop: str, *extra: tuple[str, Any]) -> Path:
    """spoke2 (subscription SUB) routes to ``hop`` through a hub whose network and NVA NIC live in SUB2."""
    n = hub_and_spokes()
    n.nic("nva", "10.0.2.4", snat="always")
    n.route_table("rt-spoke2", ("spoke-to-nva", "10.2.0.0/16", "VirtualAppliance", hop))
    n.endpoint("pe2", n.storage("st2", "pe2"), vnet="spoke2", ip="10.2.1.4", zones=[])
    return _two_subscriptions(folder, n, (vnet_id("hub"), f"{NET}/networkInterfaces/nva"), *extra)


def _scan(folder: Path, subscriptions: list[str] | None = None) -> Snapshot:
    reader = RecordedTenant(folder)
    return build_snapshot(collect(reader, manifest=reader.manifest, workers=2, subscriptions=subscriptions))


def _unresolved(folder: Path, subscriptions: list[str] | None = None) -> list[str]:
    snap = _scan(folder, subscriptions)
    return [f.resource_id.rsplit("/", 1)[-1] for f in evaluate(snap, only={"route.nva-unresolved"}).findings]


def test_unresolved_not_claimed_for_a_hop_in_an_unread_network(tmp_path: Path) -> None:
    """A next hop in a hub outside the scan's scope, or whose NIC list answers 403, is unknown, not
    route.nva-unresolved; a hop in the read hub that matches nothing still is the finding."""
    folder = _hub_in_other_subscription(tmp_path / "a", "10.0.2.4")
    assert _unresolved(folder) == []
    assert _unresolved(folder, [SUB]) == []
    forbidden = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}
    locked = _hub_in_other_subscription(tmp_path / "b", "10.0.2.4",
                                        (sub_list("networkInterfaces", SUB2) + ".error", forbidden))
    (locked / "arm" / f"{sub_list('networkInterfaces', SUB2)}.json").unlink()
    assert _unresolved(locked) == []
    assert _unresolved(_hub_in_other_subscription(tmp_path / "c", "10.0.2.99")) == ["rt-spoke2"]


def test_firewall_policy_in_another_subscription_is_read_by_id(tmp_path: Path) -> None:
    """A firewall's policy outside the scan's subscriptions is read by id, so the scoped scan judges SNAT as the
    full scan does; a policy that cannot be read is a coverage gap, never route.nva-snat-unknown."""
    def tenant(folder: Path, *extra: tuple[str, Any]) -> Path:
        n = hub_and_spokes()
        n.firewall("fw", "10.0.1.4", policy="pol").firewall_policy("pol", ["10.0.0.0/8"])
        n.route_table("rt-spoke2", ("spoke-to-fw", "10.2.0.0/16", "VirtualAppliance", "10.0.1.4"))
        n.endpoint("pe2", n.storage("st2", "pe2"), vnet="spoke2", ip="10.2.1.4", zones=[])
        return _two_subscriptions(folder, n, (f"{NET}/firewallPolicies/pol",), *extra)

    def route_findings(snap: Snapshot) -> list[tuple[str, str]]:
        ids = {"route.nva-missing-snat", "route.nva-snat-unknown"}
        return [(f.check_id, f.resource_id.rsplit("/", 1)[-1]) for f in evaluate(snap, only=ids).findings]

    folder = tenant(tmp_path / "a")
    assert route_findings(_scan(folder)) == route_findings(_scan(folder, [SUB])) == \
        [("route.nva-missing-snat", "fw")]
    policy = f"{NET}/firewallPolicies/pol".replace(SUB, SUB2)
    locked = tenant(tmp_path / "b", (policy + ".error", {"status": 403, "error": {"code": "AuthorizationFailed"}}))
    snap = _scan(locked, [SUB])
    assert route_findings(snap) == []
    assert any(g.scope.lower() == policy.lower() and g.status == 403 for g in snap.coverage.gaps)


def test_next_hop_resolves_to_the_owner_the_client_reaches(tmp_path: Path) -> None:
    """An NVA IP reused by an unpeered network elsewhere (overlapping address spaces) resolves to the NVA the
    client reaches through its peering, in a full scan; scoped away from that NVA it is unknown, never the
    unrelated NIC (whose IP forwarding is off)."""
    def tenant(folder: Path, moved: tuple[str, ...]) -> Path:
        n = hub_and_spokes()
        n.nic("nva", "10.0.2.4", snat="always")
        n.vnet("dev", "10.0.0.0/16").subnet("dev", "vm", "10.0.2.0/24")
        n.nic("dev-vm", "10.0.2.4", forwarding=False, subnet=subnet_id("dev", "vm"))
        n.route_table("rt-spoke2", ("spoke-to-nva", "10.2.0.0/16", "VirtualAppliance", "10.0.2.4"))
        n.endpoint("pe2", n.storage("st2", "pe2"), vnet="spoke2", ip="10.2.1.4", zones=[])
        return _two_subscriptions(folder, n, moved)

    ids = {"route.nva-ip-forwarding-off", "route.nva-unresolved", "route.nva-missing-snat", "route.nva-snat-unknown"}

    def found(snap: Snapshot) -> list[tuple[str, str]]:
        return [(f.check_id, f.resource_id.rsplit("/", 1)[-1]) for f in evaluate(snap, only=ids).findings]

    # the unrelated network sorts first (subscription SUB): a global lookup by IP picked its NIC
    dev_first = tenant(tmp_path / "a", (vnet_id("hub"), f"{NET}/networkInterfaces/nva"))
    assert found(_scan(dev_first)) == []
    # the client and the unrelated network in SUB2, the hub in SUB: scoped to SUB2 the hub is not read
    hub_first = tenant(tmp_path / "b", (vnet_id("spoke2"), vnet_id("dev"), f"{NET}/networkInterfaces/dev-vm",
                                        f"{NET}/routeTables/rt-spoke2", f"{NET}/privateEndpoints/pe2"))
    assert found(_scan(hub_first)) == []
    assert found(_scan(hub_first, [SUB2])) == []
