"""Second-pair-of-eyes audit of the checks against checks.md: each test pins one catalogue sentence that
the implementation missed, by the exact set of (check_id, resource_id, severity) a whole scan gives."""

from __future__ import annotations

from pathlib import Path

from netkit import NET, Net, subnet_id, vnet_id
from tenantkit import SUB

from plmon.checks.engine import evaluate
from plmon.monitor.model.snapshot import Snapshot

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


def test_endpoint_ip_known_only_from_its_nic_is_routed(tmp_path: Path) -> None:
    """Routes: a dynamic-IP endpoint with a zone group lists its IP on its NIC only; its path is still judged."""
    n = Net()
    n.vnet("spoke", "10.1.0.0/16").subnet("spoke", "app", "10.1.0.0/24", route_table="rt") \
        .subnet("spoke", "pe", "10.1.1.0/24")
    n.route_table("rt", ("to-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.1.4"))
    n.firewall("fw", "10.0.1.4")
    st = n.storage("st1", "pe1", public="Disabled")
    n.endpoint("pe1", st, vnet="spoke", ip="10.1.1.4", zones=[BLOB])
    body = n.lists["privateEndpoints"][-1]
    nic_id = f"{NET}/networkInterfaces/pe1.nic.0001"
    body["properties"]["ipConfigurations"] = []          # dynamic allocation: ARM lists no ipConfigurations
    body["properties"]["customDnsConfigs"] = []          # a zone group is attached: no custom DNS configs
    # The endpoint's own reference carries the real payloads' '/provders/' typo; the NIC names the endpoint.
    body["properties"]["networkInterfaces"] = [{"id": nic_id.replace("/providers/", "/provders/")}]
    n.lists["networkInterfaces"].append({
        "id": nic_id, "name": "pe1.nic.0001", "type": "Microsoft.Network/networkInterfaces",
        "properties": {"privateEndpoint": {"id": body["id"].upper()}, "ipConfigurations": [
            {"id": f"{nic_id}/ipConfigurations/privateEndpointIpConfig", "name": "privateEndpointIpConfig",
             "properties": {"privateIPAddress": "10.1.1.4", "subnet": {"id": subnet_id("spoke", "pe")}}}]}})
    _zone_in(n, "rg1", BLOB, "spoke")
    assert findings(n.snapshot(tmp_path)) == {("route.udr-bypassed", f"{NET}/routeTables/rt".lower(), "high")}
