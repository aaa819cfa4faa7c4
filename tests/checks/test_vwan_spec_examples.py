"""The REST spec examples of Microsoft.Network (azure-rest-api-specs, stable 2024-07-01 VirtualWANGet, VirtualHubGet,
HubVirtualNetworkConnectionGet, HubRouteTableGet; 2024-05-01 RoutingIntentGet, AzureFirewallPutInHub) as one tenant:
the bodies below are written here with the examples' own ids and values (subid, rg1, virtualHub1, ...), including
their quirks, so the builder and the vwan rules are held to what ARM documents."""

from __future__ import annotations

from typing import Any

import pytest
from checkkit import snapshot_of
from tenantkit import endpoint

from plmon.checks.engine import evaluate
from plmon.monitor.model.snapshot import Snapshot

SUB = "subid"
RG = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network"
HUB = f"{RG}/virtualHubs/virtualHub1"
TABLE = f"{HUB}/hubRouteTables/hubRouteTable1"


def _files() -> dict[str, Any]:
    lst = f"subscriptions/{SUB}/providers/Microsoft.Network"
    target = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"
    return {
        "subscriptions": {"value": [{"subscriptionId": SUB, "tenantId": "t", "state": "Enabled"}]},
        f"{lst}/virtualWans": {"value": [{   # VirtualWANGet
            "id": f"{RG}/virtualWans/wan1", "name": "wan1", "type": "Microsoft.Network/virtualWANs",
            "location": "West US", "tags": {"key1": "value1"},
            "properties": {"provisioningState": "Succeeded", "disableVpnEncryption": False,
                           "allowBranchToBranchTraffic": True, "office365LocalBreakoutCategory": "None",
                           "type": "Standard", "virtualHubs": [{"id": f"{RG}/virtualHubs/hub1"}], "vpnSites": []}}]},
        f"{lst}/virtualHubs": {"value": [{   # VirtualHubGet
            "id": HUB, "name": "virtualHub1", "type": "Microsoft.Network/virtualHubs", "location": "West US",
            "properties": {"provisioningState": "Succeeded", "virtualWan": {"id": f"{RG}/virtualWans/virtualWan1"},
                           "virtualHubRouteTableV2s": [], "addressPrefix": "10.10.1.0/24", "sku": "Basic",
                           "routingState": "Provisioned", "virtualRouterAsn": 65515,
                           "virtualRouterIps": ["10.10.1.12", "10.10.1.13"], "allowBranchToBranchTraffic": False,
                           "preferredRoutingGateway": "ExpressRoute", "hubRoutingPreference": "ExpressRoute"}}]},
        f"{HUB.strip('/')}/hubVirtualNetworkConnections": {"value": [{   # HubVirtualNetworkConnectionGet
            "name": "connection1", "id": f"{HUB}/virtualHubVnetConnections/connection1",
            "properties": {"provisioningState": "Succeeded",
                           "remoteVirtualNetwork": {"id": f"{RG}/virtualNetworks/vnet1"},
                           "enableInternetSecurity": False,
                           "routingConfiguration": {
                               "associatedRouteTable": {"id": TABLE},
                               "propagatedRouteTables": {"labels": ["label1", "label2"], "ids": [
                                   {"id": TABLE}, {"id": f"{HUB}/hubRouteTables/hubRouteTable2"},
                                   {"id": f"{HUB}/hubRouteTables/hubRouteTable3"}]},
                               "vnetRoutes": {"staticRoutesConfig": {"propagateStaticRoutes": True,
                                                                     "vnetLocalRouteOverrideCriteria": "Equal"},
                                              "staticRoutes": [{"name": "route1",
                                                                "addressPrefixes": ["10.1.0.0/16", "10.2.0.0/16"],
                                                                "nextHopIpAddress": "10.0.0.68"}]}}}}]},
        f"{HUB.strip('/')}/hubRouteTables": {"value": [{   # HubRouteTableGet
            "id": TABLE, "name": "hubRouteTable1", "type": "Microsoft.Network/virtualHubs/hubRouteTables",
            "properties": {"provisioningState": "Succeeded", "routes": [{
                "name": "route1", "destinationType": "CIDR", "destinations": ["10.0.0.0/8", "20.0.0.0/8", "30.0.0.0/8"],
                "nextHopType": "ResourceId", "nextHop": f"{RG}/azureFirewalls/azureFirewall1"}],
                "labels": ["label1", "label2"],
                "associatedConnections": [f"{HUB}/hubVirtualNetworkConnections/vnetConnn1"],
                "propagatingConnections": []}}]},
        f"{HUB.strip('/')}/routingIntent": {"value": [{   # RoutingIntentGet
            "name": "Intent1", "id": f"{HUB}/routingIntent/Intent1",
            "type": "Microsoft.Network/virtualHubs/routingIntent",
            "properties": {"provisioningState": "Succeeded", "routingPolicies": [
                {"name": "InternetTraffic", "destinations": ["Internet"], "nextHop": f"{RG}/azureFirewalls/azfw1"},
                {"name": "PrivateTrafficPolicy", "destinations": ["PrivateTraffic"],
                 "nextHop": f"{RG}/azureFirewalls/azfw1"}]}}]},
        f"{lst}/azureFirewalls": {"value": [{   # AzureFirewallPutInHub (200)
            "name": "azurefirewall", "id": f"{RG}/azureFirewalls/azurefirewall",
            "type": "Microsoft.Network/azureFirewalls",
            "location": "West US", "zones": [], "tags": {"key1": "value1"},
            "properties": {"provisioningState": "Succeeded", "sku": {"name": "AZFW_Hub", "tier": "Standard"},
                           "threatIntelMode": "Alert", "virtualHub": {"id": f"{RG}/virtualHubs/hub1"},
                           "firewallPolicy": {"id": f"{RG}/firewallPolicies/policy1"},
                           "hubIPAddresses": {"publicIPs": {"addresses": [{"address": "13.73.240.12"}], "count": 1},
                                              "privateIPAddress": "10.0.0.0"},
                           "additionalProperties": {}}}]},
        f"{lst}/virtualNetworks": {"value": [{
            "id": f"{RG}/virtualNetworks/vnet1", "name": "vnet1", "type": "Microsoft.Network/virtualNetworks",
            "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}, "subnets": [
                {"id": f"{RG}/virtualNetworks/vnet1/subnets/pe", "name": "pe",
                 "properties": {"addressPrefix": "10.1.1.0/24"}}]}}]},
        f"{lst}/privateEndpoints": {"value": [endpoint("pe1", target, subnet=f"{RG}/virtualNetworks/vnet1/subnets/pe",
                                                       ip="10.1.1.4", sub=SUB)]},
    }


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return snapshot_of(tmp_path_factory.mktemp("spec"), _files(), subscriptions=[])


def test_examples_read_into_the_model(snap: Snapshot) -> None:
    """Each example's fields land in the snapshot; the connection spelled virtualHubVnetConnections is classified by
    the list it came from; the hub firewall's IP is hubIPAddresses.privateIPAddress, a network address kept as is."""
    wan = next(iter(snap.virtual_wans.values()))
    assert wan.wan_type == "Standard" and [h.name for h in wan.hub_ids] == ["hub1"]
    hub = snap.virtual_hubs[HUB.lower()]
    assert (hub.address_prefix, hub.wan_id.name if hub.wan_id else None) == ("10.10.1.0/24", "virtualWan1")
    assert hub.connections is not None and len(hub.connections) == 1
    conn = hub.connections[0]
    assert conn.remote_vnet_id is not None and conn.remote_vnet_id.name == "vnet1"
    assert conn.associated_route_table_id is not None and conn.associated_route_table_id.name == "hubRouteTable1"
    assert [t.name for t in conn.propagated_route_table_ids] == ["hubRouteTable1", "hubRouteTable2", "hubRouteTable3"]
    assert conn.propagated_labels == ("label1", "label2")
    assert hub.route_tables is not None and hub.route_tables[0].routes[0].destinations == (
        "10.0.0.0/8", "20.0.0.0/8", "30.0.0.0/8")
    assert hub.routing_policies is not None and [p.private for p in hub.routing_policies] == [False, True]
    fw = next(iter(snap.firewalls.values()))
    assert fw.private_ips == ("10.0.0.0",) and fw.sku_name == "AZFW_Hub" and not fw.subnet_ids


def test_examples_custom_routing_is_routing_unknown_never_a_pass(snap: Snapshot) -> None:
    """The examples' hub uses custom route tables and names a next hop (azfw1) no list returns: vwan.routing-unknown
    on the hub says both; no other vwan rule judges it (neither a finding nor a pass)."""
    found = [f for f in evaluate(snap).findings if f.check_id.startswith("vwan.") or f.check_id.startswith("route.")]
    assert [(f.check_id, f.resource_id) for f in found] == [("vwan.routing-unknown", HUB)]
    why = found[0].evidence["why"]
    assert "hubRouteTable1" in why and "azfw1" in why and "could not be read" in why
