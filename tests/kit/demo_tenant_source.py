"""The source of the bundled demo tenant (monitor/demo_tenant): a small, realistic Contoso estate.

`python tests/kit/demo_tenant_source.py` rewrites the folder; tests/e2e/test_demo_tenant.py fails when the
committed folder and this source drift apart. The estate: a hub with an Azure Firewall and Bastion, an
application spoke with endpoints in every state, a SaaS provider subscription with Private Link
Services, a resource management private link, and a sandbox subscription the identity cannot read.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from tenantkit import endpoint, provider_connection, storage_account, write_tenant

TENANT = "8f3e0a62-5c1d-4b7e-9a2f-1d3c5e7f9a0b"
HUB = "aaaaaaaa-0000-4000-8000-000000000001"
APP = "aaaaaaaa-0000-4000-8000-000000000002"
PROV = "aaaaaaaa-0000-4000-8000-000000000003"
SANDBOX = "aaaaaaaa-0000-4000-8000-000000000004"
RECORDED_AT = "2026-11-01T12:00:00Z"


def rid(sub: str, rg: str, provider: str, *rest: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/" + "/".join(rest)


def net(sub: str, rg: str, *rest: str) -> str:
    return rid(sub, rg, "Microsoft.Network", *rest)


def lst(sub: str, kind: str, provider: str = "Microsoft.Network") -> str:
    return f"subscriptions/{sub}/providers/{provider}/{kind}"


def subnet(vnet_id: str, name: str, prefix: str, **props: Any) -> dict[str, Any]:
    return {"id": f"{vnet_id}/subnets/{name}", "name": name, "type": "Microsoft.Network/virtualNetworks/subnets",
            "properties": {"addressPrefix": prefix, "provisioningState": "Succeeded", **props}}


def vnet(vid: str, prefixes: list[str], subnets: list[dict[str, Any]],
         peerings: list[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"id": vid, "name": vid.rsplit("/", 1)[-1], "type": "Microsoft.Network/virtualNetworks",
            "location": "westeurope",
            "properties": {"addressSpace": {"addressPrefixes": prefixes}, "subnets": subnets,
                           "virtualNetworkPeerings": list(peerings), "provisioningState": "Succeeded"}}


def peering(vid: str, name: str, remote: str, prefixes: list[str]) -> dict[str, Any]:
    return {"id": f"{vid}/virtualNetworkPeerings/{name}", "name": name,
            "properties": {"remoteVirtualNetwork": {"id": remote}, "peeringState": "Connected",
                           "allowVirtualNetworkAccess": True, "allowForwardedTraffic": True,
                           "remoteAddressSpace": {"addressPrefixes": prefixes}}}


def build() -> dict[str, Any]:
    files: dict[str, Any] = {}
    files["subscriptions"] = {"value": [
        {"subscriptionId": s, "tenantId": TENANT, "displayName": n, "state": "Enabled"}
        for s, n in ((HUB, "contoso-connectivity"), (APP, "contoso-app-prod"),
                     (PROV, "contoso-saas-provider"), (SANDBOX, "contoso-sandbox"))]}
    files["providers/Microsoft.Management/managementGroups"] = {"value": [
        {"id": f"/providers/Microsoft.Management/managementGroups/{TENANT}", "name": TENANT,
         "type": "Microsoft.Management/managementGroups", "properties": {"displayName": "Tenant Root Group"}},
        {"id": "/providers/Microsoft.Management/managementGroups/platform", "name": "platform",
         "type": "Microsoft.Management/managementGroups", "properties": {"displayName": "Platform"}}]}

    # --- hub: firewall, bastion, DNS zones, the resource management private link ----------------
    hub_vnet = net(HUB, "rg-hub", "virtualNetworks", "vnet-hub")
    app_vnet = net(APP, "rg-app", "virtualNetworks", "vnet-app")
    files[lst(HUB, "virtualNetworks")] = {"value": [vnet(hub_vnet, ["10.0.0.0/16"], [
        subnet(hub_vnet, "AzureFirewallSubnet", "10.0.0.0/26"),
        subnet(hub_vnet, "AzureBastionSubnet", "10.0.1.0/26"),
        subnet(hub_vnet, "mgmt-pe", "10.0.2.0/27", privateEndpointNetworkPolicies="Disabled"),
    ], [peering(hub_vnet, "hub-to-app", app_vnet, ["10.1.0.0/16"])])]}
    files[lst(HUB, "azureFirewalls")] = {"value": [{
        "id": net(HUB, "rg-hub", "azureFirewalls", "fw-hub"), "name": "fw-hub",
        "type": "Microsoft.Network/azureFirewalls", "location": "westeurope",
        "properties": {"provisioningState": "Succeeded", "sku": {"name": "AZFW_VNet", "tier": "Standard"},
                       "ipConfigurations": [{
                           "name": "ipconfig",
                           "id": net(HUB, "rg-hub", "azureFirewalls", "fw-hub", "azureFirewallIpConfigurations",
                                     "ipconfig"),
                           "properties": {"privateIPAddress": "10.0.0.4",
                                          "subnet": {"id": f"{hub_vnet}/subnets/AzureFirewallSubnet"}}}],
                       "additionalProperties": {}}}]}
    files[lst(HUB, "bastionHosts")] = {"value": [{
        "id": net(HUB, "rg-hub", "bastionHosts", "bas-hub"), "name": "bas-hub",
        "type": "Microsoft.Network/bastionHosts",
        "properties": {"ipConfigurations": [{"name": "ipc", "properties": {
            "subnet": {"id": f"{hub_vnet}/subnets/AzureBastionSubnet"}}}]}}]}
    blob_zone = net(HUB, "rg-dns", "privateDnsZones", "privatelink.blob.core.windows.net")
    arm_zone = net(HUB, "rg-dns", "privateDnsZones", "privatelink.azure.com")
    vault_zone = net(HUB, "rg-dns", "privateDnsZones", "privatelink.vaultcore.azure.net")
    files[lst(HUB, "privateDnsZones")] = {"value": [
        {"id": z, "name": z.rsplit("/", 1)[-1], "type": "Microsoft.Network/privateDnsZones", "location": "global",
         "properties": {"provisioningState": "Succeeded"}} for z in (blob_zone, arm_zone, vault_zone)]}
    for z in (blob_zone, vault_zone, arm_zone):
        links = [{"id": f"{z}/virtualNetworkLinks/link-hub", "name": "link-hub",
                  "properties": {"virtualNetwork": {"id": hub_vnet}, "registrationEnabled": False}}]
        if z != arm_zone:
            links.append({"id": f"{z}/virtualNetworkLinks/link-app", "name": "link-app",
                          "properties": {"virtualNetwork": {"id": app_vnet}, "registrationEnabled": False}})
        files[f"{z.strip('/')}/virtualNetworkLinks"] = {"value": links}
        files[f"{z.strip('/')}/CNAME"] = {"value": []}

    rmpl_id = rid(HUB, "rg-mgmt", "Microsoft.Authorization", "resourceManagementPrivateLinks", "rmpl-contoso")
    unused_rmpl = rid(HUB, "rg-mgmt", "Microsoft.Authorization", "resourceManagementPrivateLinks", "rmpl-trial")
    pe_rmpl = net(HUB, "rg-mgmt", "privateEndpoints", "pe-arm")
    files[lst(HUB, "resourceManagementPrivateLinks", "Microsoft.Authorization")] = {"value": [
        {"id": rmpl_id, "name": "rmpl-contoso", "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
         "location": "westeurope",
         "properties": {"privateEndpointConnections": [provider_connection(rmpl_id, pe_rmpl)]}},
        {"id": unused_rmpl, "name": "rmpl-trial", "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
         "location": "westeurope", "properties": {"privateEndpointConnections": []}},
    ]}
    root = f"/providers/Microsoft.Management/managementGroups/{TENANT}"
    files[f"{root.strip('/')}/providers/Microsoft.Authorization/privateLinkAssociations"] = {"value": [{
        "id": f"{root}/providers/Microsoft.Authorization/privateLinkAssociations/a1b2c3d4-0000-4000-8000-00000000a001",
        "name": "a1b2c3d4-0000-4000-8000-00000000a001", "type": "Microsoft.Authorization/privateLinkAssociations",
        "properties": {"privateLink": rmpl_id, "publicNetworkAccess": "Enabled", "tenantId": TENANT, "scope": root}}]}
    platform = "/providers/Microsoft.Management/managementGroups/platform"
    platform_assoc = f"{platform}/providers/Microsoft.Authorization/privateLinkAssociations"
    files[platform_assoc.strip('/')] = {"value": [{
        "id": f"{platform_assoc}/a1b2c3d4-0000-4000-8000-00000000a002",
        "name": "a1b2c3d4-0000-4000-8000-00000000a002", "type": "Microsoft.Authorization/privateLinkAssociations",
        "properties": {"privateLink": rmpl_id, "publicNetworkAccess": "Disabled", "tenantId": TENANT,
                       "scope": platform}}]}
    hub_pes = [endpoint("pe-arm", rmpl_id, group_ids=("ResourceManagement",), subnet=f"{hub_vnet}/subnets/mgmt-pe",
                        ip="10.0.2.4", rg="rg-mgmt", sub=HUB)]
    files[lst(HUB, "privateEndpoints")] = {"value": hub_pes}
    files[f"{pe_rmpl.strip('/')}/privateDnsZoneGroups"] = {"value": [_zone_group(pe_rmpl, arm_zone)]}

    # --- application spoke: endpoints in every state ---------------------------------------------
    pe_subnet = f"{app_vnet}/subnets/snet-pe"
    files[lst(APP, "virtualNetworks")] = {"value": [vnet(app_vnet, ["10.1.0.0/16"], [
        subnet(app_vnet, "snet-app", "10.1.1.0/24",
               routeTable={"id": net(APP, "rg-app", "routeTables", "rt-app")}),
        subnet(app_vnet, "snet-pe", "10.1.2.0/24", privateEndpointNetworkPolicies="Disabled",
               networkSecurityGroup={"id": net(APP, "rg-app", "networkSecurityGroups", "nsg-pe")}),
    ], [peering(app_vnet, "app-to-hub", hub_vnet, ["10.0.0.0/16"])])]}
    files[lst(APP, "routeTables")] = {"value": [{
        "id": net(APP, "rg-app", "routeTables", "rt-app"), "name": "rt-app", "type": "Microsoft.Network/routeTables",
        "location": "westeurope",
        "properties": {"disableBgpRoutePropagation": True, "subnets": [{"id": f"{app_vnet}/subnets/snet-app"}],
                       "routes": [{"id": net(APP, "rg-app", "routeTables", "rt-app", "routes", "default-to-fw"),
                                   "name": "default-to-fw",
                                   "properties": {"addressPrefix": "0.0.0.0/0", "nextHopType": "VirtualAppliance",
                                                  "nextHopIpAddress": "10.0.0.4"}}]}}]}
    files[lst(APP, "networkSecurityGroups")] = {"value": [{
        "id": net(APP, "rg-app", "networkSecurityGroups", "nsg-pe"), "name": "nsg-pe",
        "type": "Microsoft.Network/networkSecurityGroups", "location": "westeurope",
        "properties": {"subnets": [{"id": pe_subnet}], "securityRules": [{
            "name": "allow-app-https", "properties": {
                "direction": "Inbound", "access": "Allow", "priority": 100, "protocol": "Tcp",
                "sourceAddressPrefix": "10.1.1.0/24", "destinationAddressPrefix": "*",
                "sourcePortRange": "*", "destinationPortRanges": ["443", "1433"]}}]}}]}

    st_prod = rid(APP, "rg-app", "Microsoft.Storage", "storageAccounts", "stcontosoprod")
    st_gone = rid(APP, "rg-app", "Microsoft.Storage", "storageAccounts", "stcontosoold")
    kv = rid(APP, "rg-app", "Microsoft.KeyVault", "vaults", "kv-contoso-prod")
    sql = rid(APP, "rg-data", "Microsoft.Sql", "servers", "sql-contoso-legacy")
    pls_partner = net(PROV, "rg-saas", "privateLinkServices", "pls-partner-api")
    pes = {
        "pe-st-blob": endpoint("pe-st-blob", st_prod, subnet=pe_subnet, ip="10.1.2.4", rg="rg-app", sub=APP),
        "pe-kv": endpoint("pe-kv", kv, group_ids=("vault",), subnet=pe_subnet, ip="10.1.2.5", rg="rg-app", sub=APP),
        "pe-partner-api": endpoint("pe-partner-api", pls_partner, status="Pending", manual=True, group_ids=(),
                                   subnet=pe_subnet, ip="10.1.2.6", rg="rg-app", sub=APP,
                                   request_message="Contoso app-prod needs the partner API <b>please</b>"),
        "pe-sql-legacy": endpoint("pe-sql-legacy", sql, status="Rejected", group_ids=("sqlServer",),
                                  subnet=pe_subnet, ip="10.1.2.7", rg="rg-app", sub=APP),
        "pe-st-old": endpoint("pe-st-old", st_gone, subnet=pe_subnet, ip="10.1.2.8", rg="rg-app", sub=APP),
        "pe-st-file": endpoint("pe-st-file", st_prod, group_ids=("file",), status="Disconnected", subnet=pe_subnet,
                               ip="10.1.2.9", rg="rg-app", sub=APP),
    }
    files[lst(APP, "privateEndpoints")] = {"value": list(pes.values())}
    pe_ids = {n: p["id"] for n, p in pes.items()}
    files[f"{pe_ids['pe-st-blob'].strip('/')}/privateDnsZoneGroups"] = {"value": [
        _zone_group(pe_ids["pe-st-blob"], blob_zone)]}
    files[f"{pe_ids['pe-kv'].strip('/')}/privateDnsZoneGroups"] = {"value": [
        _zone_group(pe_ids["pe-kv"], vault_zone)]}
    files[st_prod.strip("/")] = storage_account("stcontosoprod", public="Enabled", rg="rg-app", sub=APP, connections=[
        provider_connection(st_prod, pe_ids["pe-st-blob"], storage_spelling=True),
        provider_connection(st_prod, pe_ids["pe-st-file"], status="Disconnected", storage_spelling=True)])
    files[kv.strip("/")] = {"id": kv, "name": "kv-contoso-prod", "type": "Microsoft.KeyVault/vaults",
                            "properties": {"publicNetworkAccess": "Disabled",
                                           "networkAcls": {"defaultAction": "Deny"},
                                           "privateEndpointConnections": [provider_connection(kv, pe_ids["pe-kv"])]}}
    files[sql.strip("/")] = {"id": sql, "name": "sql-contoso-legacy", "type": "Microsoft.Sql/servers",
                             "properties": {"publicNetworkAccess": "Enabled", "privateEndpointConnections": [
                                 {**provider_connection(sql, pe_ids["pe-sql-legacy"], status="Rejected"),
                                  "properties": {**provider_connection(sql, pe_ids["pe-sql-legacy"],
                                                                       status="Rejected")["properties"],
                                                 "provisioningState": "Ready"}}]}}
    files[st_gone.strip("/") + ".error"] = {"status": 404, "error": {
        "code": "ResourceNotFound",
        "message": "The Resource 'Microsoft.Storage/storageAccounts/stcontosoold' under resource group 'rg-app' "
                   "was not found."}}

    # --- SaaS provider: Private Link Services ----------------------------------------------------
    prov_vnet = net(PROV, "rg-saas", "virtualNetworks", "vnet-saas")
    nat_subnet = f"{prov_vnet}/subnets/snet-pls-nat"
    lb = net(PROV, "rg-saas", "loadBalancers", "ilb-api")
    files[lst(PROV, "virtualNetworks")] = {"value": [vnet(prov_vnet, ["10.50.0.0/16"], [
        subnet(prov_vnet, "snet-pls-nat", "10.50.1.0/29", privateLinkServiceNetworkPolicies="Enabled"),
        subnet(prov_vnet, "snet-backend", "10.50.2.0/24"),
    ])]}
    files[lst(PROV, "loadBalancers")] = {"value": [{
        "id": lb, "name": "ilb-api", "type": "Microsoft.Network/loadBalancers", "location": "westeurope",
        "properties": {"frontendIPConfigurations": [{
            "id": f"{lb}/frontendIPConfigurations/fe-api", "name": "fe-api",
            "properties": {"privateIPAddress": "10.50.2.10", "subnet": {"id": f"{prov_vnet}/subnets/snet-backend"}}}],
            "backendAddressPools": [], "loadBalancingRules": []}}]}

    def pls(name: str, visibility: list[str], auto: list[str], nat_ips: list[str], conns: list[dict[str, Any]],
            proxy: bool = False) -> dict[str, Any]:
        pid = net(PROV, "rg-saas", "privateLinkServices", name)
        return {"id": pid, "name": name, "type": "Microsoft.Network/privateLinkServices", "location": "westeurope",
                "properties": {
                    "provisioningState": "Succeeded",
                    "alias": f"{name}.a1b2c3d4-0000.westeurope.azure.privatelinkservice",
                    "visibility": {"subscriptions": visibility}, "autoApproval": {"subscriptions": auto},
                    "enableProxyProtocol": proxy, "fqdns": [],
                    "loadBalancerFrontendIpConfigurations": [{"id": f"{lb}/frontendIPConfigurations/fe-api"}],
                    "ipConfigurations": [{"id": f"{pid}/ipConfigurations/nat{i}", "name": f"nat{i}",
                                          "properties": {"privateIPAddress": ip, "subnet": {"id": nat_subnet}}}
                                         for i, ip in enumerate(nat_ips)],
                    "privateEndpointConnections": conns}}
    files[lst(PROV, "privateLinkServices")] = {"value": [
        pls("pls-partner-api", ["*"], [], ["10.50.1.4"],
            [provider_connection(pls_partner, pe_ids["pe-partner-api"], status="Pending")], proxy=True),
        pls("pls-internal", [APP], ["*"], ["10.50.1.5"], []),
    ]}

    vwan(files, blob_zone)

    # --- sandbox: the reader identity is not allowed in ------------------------------------------
    for kind in ("privateEndpoints", "virtualNetworks"):
        files[lst(SANDBOX, kind) + ".error"] = {"status": 403, "error": {
            "code": "AuthorizationFailed",
            "message": "The client does not have authorization to perform action "
                       f"'Microsoft.Network/{kind}/read' over scope '/subscriptions/{SANDBOX}'."}}
    return files


def vwan(files: dict[str, Any], blob_zone: str) -> None:
    """A small Virtual WAN estate (issue 18): two secured hubs in one WAN. vhub-weu's Azure Firewall (AZFW_Hub) keeps
    the default SNAT private ranges; vhub-neu's NVA declares plmon-snat=always; the branch-apps network is connected to
    vhub-weu, and its endpoint subnet keeps network policies Disabled. Shapes of the REST spec examples (VirtualWANGet,
    VirtualHubGet, HubVirtualNetworkConnectionGet, HubRouteTableGet, RoutingIntentGet, AzureFirewallPutInHub)."""
    wan = net(HUB, "rg-vwan", "virtualWans", "vwan-contoso")
    weu, neu = net(HUB, "rg-vwan", "virtualHubs", "vhub-weu"), net(HUB, "rg-vwan", "virtualHubs", "vhub-neu")
    fw = net(HUB, "rg-vwan", "azureFirewalls", "fw-vhub-weu")
    policy = net(HUB, "rg-vwan", "firewallPolicies", "afwp-vhub-weu")
    nva = net(HUB, "rg-vwan", "networkVirtualAppliances", "nva-vhub-neu")
    files[lst(HUB, "virtualWans")] = {"value": [{
        "id": wan, "name": "vwan-contoso", "type": "Microsoft.Network/virtualWANs", "location": "westeurope",
        "properties": {"provisioningState": "Succeeded", "type": "Standard", "allowBranchToBranchTraffic": True,
                       "virtualHubs": [{"id": weu}, {"id": neu}], "vpnSites": []}}]}
    files[lst(HUB, "virtualHubs")] = {"value": [
        {"id": h, "name": h.rsplit("/", 1)[-1], "type": "Microsoft.Network/virtualHubs", "location": loc,
         "properties": {"provisioningState": "Succeeded", "virtualWan": {"id": wan}, "addressPrefix": prefix,
                        "sku": "Standard", "routingState": "Provisioned", "virtualRouterAsn": 65515, **extra}}
        for h, loc, prefix, extra in ((weu, "westeurope", "10.100.0.0/23", {"azureFirewall": {"id": fw}}),
                                      (neu, "northeurope", "10.101.0.0/23", {}))]}
    files[lst(HUB, "azureFirewalls")]["value"].append({
        "id": fw, "name": "fw-vhub-weu", "type": "Microsoft.Network/azureFirewalls", "location": "westeurope",
        "properties": {"provisioningState": "Succeeded", "sku": {"name": "AZFW_Hub", "tier": "Standard"},
                       "virtualHub": {"id": weu}, "firewallPolicy": {"id": policy},
                       "hubIPAddresses": {"publicIPs": {"addresses": [{"address": "20.61.15.12"}], "count": 1},
                                          "privateIPAddress": "10.100.0.132"},
                       "additionalProperties": {}}})
    files[lst(HUB, "firewallPolicies")] = {"value": [{
        "id": policy, "name": "afwp-vhub-weu", "type": "Microsoft.Network/firewallPolicies", "location": "westeurope",
        "properties": {"provisioningState": "Succeeded", "sku": {"tier": "Standard"}}}]}
    files[lst(HUB, "networkVirtualAppliances")] = {"value": [{
        "id": nva, "name": "nva-vhub-neu", "type": "Microsoft.Network/networkVirtualAppliances",
        "location": "northeurope", "tags": {"plmon-snat": "always"},
        "properties": {"provisioningState": "Succeeded", "virtualHub": {"id": neu}}}]}
    rfc1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
    for hub, hop in ((weu, fw), (neu, nva)):
        files[f"{hub.strip('/')}/routingIntent"] = {"value": [{
            "id": f"{hub}/routingIntent/intent", "name": "intent",
            "type": "Microsoft.Network/virtualHubs/routingIntent",
            "properties": {"provisioningState": "Succeeded", "routingPolicies": [
                {"name": "PrivateTrafficPolicy", "destinations": ["PrivateTraffic"], "nextHop": hop}]}}]}
        files[f"{hub.strip('/')}/hubRouteTables"] = {"value": [
            {"id": f"{hub}/hubRouteTables/{t}", "name": t, "type": "Microsoft.Network/virtualHubs/hubRouteTables",
             "properties": {"provisioningState": "Succeeded", "labels": [t[:-10].lower()], "routes": [
                 {"name": "_policy_PrivateTraffic", "destinationType": "CIDR", "destinations": rfc1918,
                  "nextHopType": "ResourceId", "nextHop": hop}] if t == "defaultRouteTable" else []}}
            for t in ("defaultRouteTable", "noneRouteTable")]}
    branch = net(APP, "rg-branch", "virtualNetworks", "vnet-branch-apps")
    files[f"{weu.strip('/')}/hubVirtualNetworkConnections"] = {"value": [{
        "id": f"{weu}/hubVirtualNetworkConnections/conn-branch-apps", "name": "conn-branch-apps",
        "properties": {"provisioningState": "Succeeded", "remoteVirtualNetwork": {"id": branch},
                       "enableInternetSecurity": False, "routingConfiguration": {
                           "associatedRouteTable": {"id": f"{weu}/hubRouteTables/defaultRouteTable"},
                           "propagatedRouteTables": {"labels": ["default"],
                                                     "ids": [{"id": f"{weu}/hubRouteTables/defaultRouteTable"}]}}}}]}
    files[f"{neu.strip('/')}/hubVirtualNetworkConnections"] = {"value": []}
    guid = "5f0c6a52-3b1e-4d8f-9a77-2c4e6b8d0f13"
    hv = (f"/subscriptions/0c2d7e91-6a4b-4f3c-8e15-9b7a3d5c1e08/resourceGroups/RG_vhub-weu_{guid[:8]}/providers/"
          f"Microsoft.Network/virtualNetworks/HV_vhub-weu_{guid}")
    pe_subnet = f"{branch}/subnets/snet-pe"
    files[lst(APP, "virtualNetworks")]["value"].append(vnet(branch, ["10.20.0.0/16"], [
        subnet(branch, "snet-app", "10.20.1.0/24"), subnet(branch, "snet-pe", "10.20.2.0/24"),
    ], [peering(branch, f"RemoteVnetToHubPeering_{guid}", hv, ["10.100.0.0/23"])]))
    st = rid(APP, "rg-branch", "Microsoft.Storage", "storageAccounts", "stcontosobranch")
    pe = endpoint("pe-st-branch", st, subnet=pe_subnet, ip="10.20.2.4", rg="rg-branch", sub=APP)
    files[lst(APP, "privateEndpoints")]["value"].append(pe)
    files[f"{pe['id'].strip('/')}/privateDnsZoneGroups"] = {"value": [_zone_group(pe["id"], blob_zone)]}
    files[st.strip("/")] = storage_account("stcontosobranch", public="Disabled", rg="rg-branch", sub=APP, connections=[
        provider_connection(st, pe["id"], storage_spelling=True)])


def _zone_group(pe_id: str, zone_id: str) -> dict[str, Any]:
    return {"id": f"{pe_id}/privateDnsZoneGroups/default", "name": "default",
            "properties": {"privateDnsZoneConfigs": [{"name": zone_id.rsplit("/", 1)[-1].replace(".", "-"),
                                                      "properties": {"privateDnsZoneId": zone_id}}]}}


def write(folder: Path) -> Path:
    return write_tenant(folder, build(), tenant_id=TENANT, recorded_at=RECORDED_AT, subscriptions=[])


if __name__ == "__main__":
    target = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"
    shutil.rmtree(target, ignore_errors=True)
    write(target)
    print(f"wrote {target}")
