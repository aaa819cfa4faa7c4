"""Second-pair-of-eyes audit of the checks against checks.md: each test pins one catalogue sentence that
the implementation missed, by the exact set of (check_id, resource_id, severity) a whole scan gives."""

from __future__ import annotations

from pathlib import Path

from netkit import NET, Net, vnet_id
from tenantkit import SUB

from checks.engine import evaluate
from monitor.snapshot import Snapshot

BLOB = "privatelink.blob.core.windows.net"


def findings(snap: Snapshot) -> set[tuple[str, str, str]]:
    ev = evaluate(snap)
    assert ev.check_errors == ()
    return {(f.check_id, f.resource_id.lower(), f.severity.value) for f in ev.findings}


def pe(name: str) -> str:
    return f"{NET}/privateEndpoints/{name}".lower()


def _zone_in(n: Net, rg: str, name: str, *vnets: str) -> str:
    """A private DNS zone in resource group ``rg`` (netkit's zone() always uses rg1)."""
    zid = f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Network/privateDnsZones/{name}"
    n.lists["privateDnsZones"].append({"id": zid, "name": name, "type": "Microsoft.Network/privateDnsZones"})
    n.files[f"{zid.strip('/')}/virtualNetworkLinks"] = {"value": [
        {"id": f"{zid}/virtualNetworkLinks/{v}", "name": v,
         "properties": {"virtualNetwork": {"id": vnet_id(v)}, "registrationEnabled": False}} for v in vnets]}
    n.files[f"{zid.strip('/')}/CNAME"] = {"value": []}
    return zid


def _two_networks_one_storage() -> Net:
    n = Net()
    n.vnet("a", "10.1.0.0/16").subnet("a", "pe", "10.1.1.0/24")
    n.vnet("b", "10.2.0.0/16").subnet("b", "pe", "10.2.1.0/24")
    st = n.storage("st1", "pe-a", "pe-b", public="Disabled")
    n.endpoint("pe-a", st, vnet="a", ip="10.1.1.4", zones=[BLOB])
    n.endpoint("pe-b", st, vnet="b", ip="10.2.1.4", zones=[BLOB])
    return n


def test_duplicates_need_the_same_zone_not_a_zone_of_the_same_name(tmp_path: Path) -> None:
    """dns.duplicate-endpoints: networks linked to two different zones that share a name do not share DNS."""
    n = _two_networks_one_storage()
    _zone_in(n, "dns-a", BLOB, "a")
    _zone_in(n, "dns-b", BLOB, "b")
    assert findings(n.snapshot(tmp_path)) == set()


def test_duplicates_in_networks_linked_to_one_zone_flag_all_but_the_first(tmp_path: Path) -> None:
    """dns.duplicate-endpoints: both networks linked to ONE zone: the endpoint whose id sorts second fails."""
    n = _two_networks_one_storage()
    _zone_in(n, "dns", BLOB, "a", "b")
    assert findings(n.snapshot(tmp_path)) == {("dns.duplicate-endpoints", pe("pe-b"), "low")}
