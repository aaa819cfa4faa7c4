"""A recorded tenant with two Virtual WAN hubs in one WAN, built for the vwan tests.

Written here from the shapes of the REST spec examples (azure-rest-api-specs, Microsoft.Network stable
2024-07-01 VirtualWANGet, VirtualHubGet, HubVirtualNetworkConnectionGet, HubRouteTableGet; 2024-05-01
RoutingIntentGet, AzureFirewallPutInHub): the same properties, with this tenant's ids and addresses. Nothing is copied.

- hub1 (10.100.0.0/23) is secured by the AZFW_Hub firewall fw-hub1 (policy pol-hub1, default private ranges, so
  no SNAT to 10/8), routing intent PrivateTrafficPolicy -> fw-hub1, defaultRouteTable with the RFC 1918 aggregates.
- hub2 (10.101.0.0/23) is secured by the NVA nva-hub2 (untagged), with 100.64.0.0/10 added as a private prefix.
- spoke1 (10.1.0.0/16, hub1): endpoint pe-a 10.1.1.4 in a subnet with network policies Disabled; directly peered
  with clients1 (10.9.0.0/16, no UDR); its platform peering to hub1's HV_ network.
- spoke2 (10.2.0.0/16, hub1): endpoint pe-b 10.2.1.4, RouteTableEnabled; peered with clients2 whose subnet has a UDR
  10.2.1.4/32 -> fw-hub1's private IP (hubIPAddresses.privateIPAddress).
- spoke3 (100.64.1.0/24, hub2): endpoint pe-c 100.64.1.4, RouteTableEnabled: outside hub1's private prefixes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenantkit import SUB, endpoint, net, sub_list, write_tenant

N = net()
WAN = f"{N}/virtualWans/wan1"
HUB1 = f"{N}/virtualHubs/hub1"
HUB2 = f"{N}/virtualHubs/hub2"
FW = f"{N}/azureFirewalls/fw-hub1"
FW_IP = "10.100.0.132"
POLICY = f"{N}/firewallPolicies/pol-hub1"
NVA = f"{N}/networkVirtualAppliances/nva-hub2"
TARGET = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"
MS_SUB = "99999999-9999-9999-9999-999999999999"   # the platform's subscription that holds a hub's HV_ network


def vnet_id(name: str) -> str:
    return f"{N}/virtualNetworks/{name}"


def subnet_id(vnet: str, name: str) -> str:
    return f"{vnet_id(vnet)}/subnets/{name}"


def _peering(owner: str, name: str, remote: str, prefixes: list[str]) -> dict[str, Any]:
    return {"id": f"{vnet_id(owner)}/virtualNetworkPeerings/{name}", "name": name,
            "properties": {"peeringState": "Connected", "allowVirtualNetworkAccess": True,
                           "allowForwardedTraffic": True, "remoteVirtualNetwork": {"id": remote},
                           "remoteAddressSpace": {"addressPrefixes": prefixes}}}


def _hub_peering(owner: str, hub: str, prefix: str) -> dict[str, Any]:
    remote = f"/subscriptions/{MS_SUB}/resourceGroups/RG_{hub}_x/providers/Microsoft.Network/virtualNetworks/HV_{hub}_x"
    return _peering(owner, f"RemoteVnetToHubPeering_{hub}", remote, [prefix])


def _vnet(name: str, space: str, subnets: list[dict[str, Any]], peerings: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": vnet_id(name), "name": name, "type": "Microsoft.Network/virtualNetworks", "location": "westeurope",
            "properties": {"addressSpace": {"addressPrefixes": [space]}, "subnets": subnets,
                           "virtualNetworkPeerings": peerings}}


def _subnet(vnet: str, name: str, prefix: str, *, policies: str | None = None, table: str | None = None,
            endpoints: tuple[str, ...] = ()) -> dict[str, Any]:
    props: dict[str, Any] = {"addressPrefix": prefix,
                             "privateEndpoints": [{"id": f"{N}/privateEndpoints/{e}"} for e in endpoints]}
    if policies is not None:
        props["privateEndpointNetworkPolicies"] = policies
    if table is not None:
        props["routeTable"] = {"id": f"{N}/routeTables/{table}"}
    return {"id": subnet_id(vnet, name), "name": name, "properties": props}


def _connection(hub: str, name: str, vnet: str, *, associated: str = "defaultRouteTable") -> dict[str, Any]:
    """HubVirtualNetworkConnectionGet's shape (its id spelled as the list names it)."""
    hub_id = f"{N}/virtualHubs/{hub}"
    return {"id": f"{hub_id}/hubVirtualNetworkConnections/{name}", "name": name,
            "properties": {"provisioningState": "Succeeded", "remoteVirtualNetwork": {"id": vnet_id(vnet)},
                           "enableInternetSecurity": False,
                           "routingConfiguration": {
                               "associatedRouteTable": {"id": f"{hub_id}/hubRouteTables/{associated}"},
                               "propagatedRouteTables": {"labels": ["default"],
                                                         "ids": [{"id": f"{hub_id}/hubRouteTables/defaultRouteTable"}]},
                               "vnetRoutes": {"staticRoutes": []}}}}


def _intent(hub: str, hop: str) -> dict[str, Any]:
    """RoutingIntentGet's shape."""
    return {"id": f"{N}/virtualHubs/{hub}/routingIntent/intent-{hub}", "name": f"intent-{hub}",
            "type": "Microsoft.Network/virtualHubs/routingIntent",
            "properties": {"provisioningState": "Succeeded", "routingPolicies": [
                {"name": "PrivateTrafficPolicy", "destinations": ["PrivateTraffic"], "nextHop": hop}]}}


def _table(hub: str, name: str, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """HubRouteTableGet's shape."""
    return {"id": f"{N}/virtualHubs/{hub}/hubRouteTables/{name}", "name": name,
            "type": "Microsoft.Network/virtualHubs/hubRouteTables",
            "properties": {"provisioningState": "Succeeded", "routes": routes, "labels": [name.lower()[:-10]],
                           "associatedConnections": [], "propagatingConnections": []}}


def _route(name: str, destinations: list[str], hop: str) -> dict[str, Any]:
    return {"name": name, "destinationType": "CIDR", "destinations": destinations, "nextHopType": "ResourceId",
            "nextHop": hop}


RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def vwan_files(*, snat_ranges: list[str] | None = None, nva_tag: str | None = None, policies_a: str | None = None,
               hub2_custom_table: bool = False, hub1_extra_prefix: str | None = None,
               clients1_udr: bool = False) -> dict[str, Any]:
    """The tenant's files; the options make each rule's passing neighbour (or its unknown case)."""
    hub1_routes = [_route("_policy_PrivateTraffic", RFC1918, FW)]
    if hub1_extra_prefix:
        hub1_routes.append(_route("private_traffic", [hub1_extra_prefix], FW))
    hub2_tables = [_table("hub2", "defaultRouteTable", [_route("_policy_PrivateTraffic", RFC1918, NVA),
                                                        _route("private_traffic", ["100.64.0.0/10"], NVA)]),
                   _table("hub2", "noneRouteTable", [])]
    if hub2_custom_table:
        hub2_tables.append(_table("hub2", "rtCustomTable", []))
    policy: dict[str, Any] = {"id": POLICY, "name": "pol-hub1", "type": "Microsoft.Network/firewallPolicies",
                              "location": "westeurope", "properties": {}}
    if snat_ranges is not None:
        policy["properties"]["snat"] = {"privateRanges": snat_ranges}
    nva: dict[str, Any] = {"id": NVA, "name": "nva-hub2", "type": "Microsoft.Network/networkVirtualAppliances",
                           "location": "westeurope", "properties": {"virtualHub": {"id": HUB2}}}
    if nva_tag is not None:
        nva["tags"] = {"plmon-snat": nva_tag}
    routes1 = [{"name": "pe-a-via-hub", "properties": {
        "addressPrefix": "10.1.1.4/32", "nextHopType": "VirtualAppliance", "nextHopIpAddress": FW_IP}}] \
        if clients1_udr else []
    return {
        sub_list("virtualWans"): {"value": [{
            "id": WAN, "name": "wan1", "type": "Microsoft.Network/virtualWANs", "location": "westeurope",
            "properties": {"type": "Standard", "allowBranchToBranchTraffic": True, "disableVpnEncryption": False,
                           "virtualHubs": [{"id": HUB1}, {"id": HUB2}], "vpnSites": []}}]},
        sub_list("virtualHubs"): {"value": [
            {"id": HUB1, "name": "hub1", "type": "Microsoft.Network/virtualHubs", "location": "westeurope",
             "properties": {"virtualWan": {"id": WAN}, "addressPrefix": "10.100.0.0/23", "sku": "Standard",
                            "azureFirewall": {"id": FW}, "routingState": "Provisioned",
                            "virtualRouterIps": ["10.100.0.68", "10.100.0.69"], "virtualRouterAsn": 65515}},
            {"id": HUB2, "name": "hub2", "type": "Microsoft.Network/virtualHubs", "location": "northeurope",
             "properties": {"virtualWan": {"id": WAN}, "addressPrefix": "10.101.0.0/23", "sku": "Standard",
                            "routingState": "Provisioned", "virtualRouterIps": ["10.101.0.68", "10.101.0.69"],
                            "virtualRouterAsn": 65515}}]},
        sub_list("networkVirtualAppliances"): {"value": [nva]},
        f"{HUB1.strip('/')}/hubVirtualNetworkConnections": {"value": [
            _connection("hub1", "conn-spoke1", "spoke1"), _connection("hub1", "conn-spoke2", "spoke2")]},
        f"{HUB2.strip('/')}/hubVirtualNetworkConnections": {"value": [_connection("hub2", "conn-spoke3", "spoke3")]},
        f"{HUB1.strip('/')}/routingIntent": {"value": [_intent("hub1", FW)]},
        f"{HUB2.strip('/')}/routingIntent": {"value": [_intent("hub2", NVA)]},
        f"{HUB1.strip('/')}/hubRouteTables": {"value": [_table("hub1", "defaultRouteTable", hub1_routes),
                                                         _table("hub1", "noneRouteTable", [])]},
        f"{HUB2.strip('/')}/hubRouteTables": {"value": hub2_tables},
        sub_list("azureFirewalls"): {"value": [{
            "id": FW, "name": "fw-hub1", "type": "Microsoft.Network/azureFirewalls", "location": "westeurope",
            "properties": {"provisioningState": "Succeeded", "sku": {"name": "AZFW_Hub", "tier": "Standard"},
                           "threatIntelMode": "Alert", "virtualHub": {"id": HUB1}, "firewallPolicy": {"id": POLICY},
                           "hubIPAddresses": {"publicIPs": {"addresses": [{"address": "20.73.240.12"}], "count": 1},
                                              "privateIPAddress": FW_IP},
                           "additionalProperties": {}}}]},
        sub_list("firewallPolicies"): {"value": [policy]},
        sub_list("routeTables"): {"value": [
            {"id": f"{N}/routeTables/rt-clients2", "name": "rt-clients2", "type": "Microsoft.Network/routeTables",
             "location": "westeurope", "properties": {"routes": [
                 {"name": "pe-b-via-hub", "properties": {"addressPrefix": "10.2.1.4/32",
                                                         "nextHopType": "VirtualAppliance",
                                                         "nextHopIpAddress": FW_IP}}],
                 "subnets": [{"id": subnet_id("clients2", "app")}]}},
            {"id": f"{N}/routeTables/rt-clients1", "name": "rt-clients1", "type": "Microsoft.Network/routeTables",
             "location": "westeurope", "properties": {"routes": routes1,
                                                      "subnets": [{"id": subnet_id("clients1", "app")}]}}]},
        sub_list("virtualNetworks"): {"value": [
            _vnet("spoke1", "10.1.0.0/16",
                  [_subnet("spoke1", "pe", "10.1.1.0/24", policies=policies_a, endpoints=("pe-a",)),
                   _subnet("spoke1", "app", "10.1.2.0/24")],
                  [_hub_peering("spoke1", "hub1", "10.100.0.0/23"),
                   _peering("spoke1", "to-clients1", vnet_id("clients1"), ["10.9.0.0/16"])]),
            _vnet("spoke2", "10.2.0.0/16",
                  [_subnet("spoke2", "pe", "10.2.1.0/24", policies="RouteTableEnabled", endpoints=("pe-b",))],
                  [_hub_peering("spoke2", "hub1", "10.100.0.0/23"),
                   _peering("spoke2", "to-clients2", vnet_id("clients2"), ["10.8.0.0/16"])]),
            _vnet("spoke3", "100.64.1.0/24",
                  [_subnet("spoke3", "pe", "100.64.1.0/26", policies="RouteTableEnabled", endpoints=("pe-c",))],
                  [_hub_peering("spoke3", "hub2", "10.101.0.0/23")]),
            _vnet("clients1", "10.9.0.0/16",
                  [_subnet("clients1", "app", "10.9.1.0/24", table="rt-clients1")],
                  [_peering("clients1", "to-spoke1", vnet_id("spoke1"), ["10.1.0.0/16"])]),
            _vnet("clients2", "10.8.0.0/16",
                  [_subnet("clients2", "app", "10.8.1.0/24", table="rt-clients2")],
                  [_peering("clients2", "to-spoke2", vnet_id("spoke2"), ["10.2.0.0/16"])]),
        ]},
        sub_list("privateEndpoints"): {"value": [
            endpoint("pe-a", TARGET, subnet=subnet_id("spoke1", "pe"), ip="10.1.1.4"),
            endpoint("pe-b", TARGET, subnet=subnet_id("spoke2", "pe"), ip="10.2.1.4"),
            endpoint("pe-c", TARGET, subnet=subnet_id("spoke3", "pe"), ip="100.64.1.4"),
        ]},
        TARGET.strip("/"): {"id": TARGET, "name": "st1", "type": "Microsoft.Storage/storageAccounts",
                            "location": "westeurope",
                            "properties": {"publicNetworkAccess": "Disabled", "privateEndpointConnections": []}},
    }


def vwan_tenant(folder: Path, extra: dict[str, Any] | None = None, **options: Any) -> Path:
    """Write the two-hub tenant (``extra`` files added or replacing, e.g. an ``.error`` read)."""
    return write_tenant(folder, {**vwan_files(**options), **(extra or {})})
