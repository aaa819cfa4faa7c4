"""A resource whose ``properties`` is null (or not an object) is a MalformedResource coverage gap, never a
silent drop, a resource judged on empty defaults, or a crash: for every kind the builder builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from checkkit import snapshot_of
from tenantkit import SUB, TENANT, endpoint, net, sub_list

from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS
from plmon.monitor.model.snapshot import Snapshot, TargetState

# snapshot field of each per-subscription list kind
FIELD = {
    "privateEndpoints": "private_endpoints", "privateLinkServices": "private_link_services",
    "virtualNetworks": "virtual_networks", "routeTables": "route_tables", "networkSecurityGroups": "nsgs",
    "azureFirewalls": "firewalls", "firewallPolicies": "firewall_policies", "loadBalancers": "load_balancers",
    "networkInterfaces": "nics", "bastionHosts": "bastion_hosts", "privateDnsZones": "dns_zones",
    "resourceManagementPrivateLinks": "rmpls", "virtualWans": "virtual_wans", "virtualHubs": "virtual_hubs",
    "networkVirtualAppliances": "nvas",
}
ASSOCIATIONS = f"providers/Microsoft.Management/managementGroups/{TENANT}/providers/Microsoft.Authorization/" \
               "privateLinkAssociations"


def _item(kind: str, type_: str, name: str, props: Any) -> dict[str, Any]:
    rg = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/{type_}/{name}"
    return {"id": rg, "name": name, "type": type_, "location": "westeurope", "properties": props}


def _gaps(snap: Snapshot, rid: str) -> list[str]:
    return [g.code for g in snap.coverage.gaps if g.scope.lower() == rid.lower()]


def test_every_list_kind_is_covered() -> None:
    """The table below names every list the plan reads, so a new kind cannot skip this test."""
    assert {k for k, _ in SUBSCRIPTION_LISTS} == set(FIELD)


@pytest.mark.parametrize("props", [None, [], "x"], ids=["null", "list", "string"])
@pytest.mark.parametrize(("kind", "type_"), SUBSCRIPTION_LISTS, ids=[k for k, _ in SUBSCRIPTION_LISTS])
def test_null_properties_is_a_gap_for_every_kind(tmp_path: Path, kind: str, type_: str, props: Any) -> None:
    """One item of the list with unusable properties becomes a MalformedResource gap; its neighbour is built."""
    bad, good = _item(kind, type_, "bad", props), _item(kind, type_, "good", {})
    provider = type_.split("/", 1)[0]
    snap = snapshot_of(tmp_path, {sub_list(kind, provider=provider): {"value": [bad, good]}})
    built = getattr(snap, FIELD[kind])
    assert bad["id"].lower() not in built
    assert good["id"].lower() in built
    assert "MalformedResource" in _gaps(snap, bad["id"])


def test_null_properties_endpoint_is_a_gap_not_a_pass(tmp_path: Path) -> None:
    """The issue's case: a private endpoint with properties null is reported as a gap beside its neighbour."""
    bad = endpoint("pe-null", "/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/s")
    bad["properties"] = None
    good = endpoint("pe-ok", "/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/s")
    snap = snapshot_of(tmp_path, {sub_list("privateEndpoints"): {"value": [bad, good]}})
    assert list(snap.private_endpoints) == [good["id"].lower()]
    assert "MalformedResource" in _gaps(snap, bad["id"])


def test_null_properties_subnet_is_its_own_gap(tmp_path: Path) -> None:
    """A subnet with properties null is a gap; the network and its other subnets are still built."""
    vnet = _item("virtualNetworks", "Microsoft.Network/virtualNetworks", "v", {
        "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
        "subnets": [{"id": f"{net()}/virtualNetworks/v/subnets/bad", "name": "bad", "properties": None},
                    {"id": f"{net()}/virtualNetworks/v/subnets/ok", "name": "ok",
                     "properties": {"addressPrefix": "10.0.1.0/24"}}]})
    snap = snapshot_of(tmp_path, {sub_list("virtualNetworks"): {"value": [vnet]}})
    assert vnet["id"].lower() in snap.virtual_networks
    assert list(snap.subnets) == [f"{net()}/virtualNetworks/v/subnets/ok".lower()]
    assert "MalformedResource" in _gaps(snap, f"{net()}/virtualNetworks/v/subnets/bad")


def test_null_properties_nested_item_makes_its_resource_a_gap(tmp_path: Path) -> None:
    """A route with properties null leaves its table unjudgeable: the table is a gap, not judged without it."""
    rt = _item("routeTables", "Microsoft.Network/routeTables", "rt", {"routes": [
        {"id": f"{net()}/routeTables/rt/routes/r", "name": "r", "properties": None}]})
    snap = snapshot_of(tmp_path, {sub_list("routeTables"): {"value": [rt]}})
    assert snap.route_tables == {}
    assert "MalformedResource" in _gaps(snap, rt["id"])


def test_null_properties_association_is_a_gap(tmp_path: Path) -> None:
    """A private link association with properties null is a gap, not an association without a link."""
    aid = f"/{ASSOCIATIONS}/a1"
    snap = snapshot_of(tmp_path, {ASSOCIATIONS: {"value": [
        {"id": aid, "name": "a1", "type": "Microsoft.Authorization/privateLinkAssociations", "properties": None}]}})
    assert snap.associations == {}
    assert "MalformedResource" in _gaps(snap, aid)


def test_null_properties_target_is_unreadable(tmp_path: Path) -> None:
    """A PaaS target read by id with properties null is unreadable (a gap), not a resource without public access."""
    tid = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"
    snap = snapshot_of(tmp_path, {
        sub_list("privateEndpoints"): {"value": [endpoint("pe1", tid)]},
        tid.strip("/"): {"id": tid, "name": "st1", "type": "Microsoft.Storage/storageAccounts", "properties": None},
    })
    target = snap.targets[tid.lower()]
    assert target.state == TargetState.UNREADABLE
    assert "MalformedResource" in _gaps(snap, tid)


def test_null_properties_in_child_lists_is_a_gap(tmp_path: Path) -> None:
    """A zone group, virtual network link or CNAME set with properties null makes its parent a gap, not a crash
    and not a parent judged without it."""
    pe = endpoint("pe1", "/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/s")
    zone = _item("privateDnsZones", "Microsoft.Network/privateDnsZones", "privatelink.blob.core.windows.net", {})
    zid = zone["id"]
    snap = snapshot_of(tmp_path, {
        sub_list("privateEndpoints"): {"value": [pe]},
        sub_list("privateDnsZones"): {"value": [zone]},
        f"{pe['id'].strip('/')}/privateDnsZoneGroups": {"value": [
            {"id": f"{pe['id']}/privateDnsZoneGroups/default", "name": "default", "properties": None}]},
        f"{zid.strip('/')}/virtualNetworkLinks": {"value": [
            {"id": f"{zid}/virtualNetworkLinks/l1", "name": "l1", "properties": None}]},
    })
    assert snap.private_endpoints == {} and snap.dns_zones == {}
    assert "MalformedResource" in _gaps(snap, pe["id"])
    assert "MalformedResource" in _gaps(snap, zid)
