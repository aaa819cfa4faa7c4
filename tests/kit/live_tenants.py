"""Recorded tenants for the live-collection tests: tenantkit endpoints plus Microsoft example payloads.

One tenant exercises every plan read the live reader routes (each SDK, each kind, targets of known and
unknown types), findings of several check families, and the failures a live scan meets: a whole
subscription answering 403, a type the identity cannot read, a target that is gone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tenantkit import SUB, TENANT, endpoint, example, net, provider_connection, storage_account, sub_list, write_tenant

SUB2 = "22222222-2222-2222-2222-222222222222"
ZONE = "privatelink.blob.core.windows.net"
PAAS = f"/subscriptions/{SUB}/resourceGroups/rg1/providers"


def _with_id(body: Any, rid: str) -> Any:
    body = copy.deepcopy(body)
    body["id"] = rid
    body["name"] = rid.rsplit("/", 1)[-1]
    return body


def _listed(name: str) -> dict[str, Any]:
    """An example that is a single resource, as a one-item list."""
    return {"value": [example(name)]}


def rich_tenant(folder: Path, *, endpoints: int = 0) -> Path:
    """The tenant most live tests replay; ``endpoints`` adds that many plain endpoints (paging, load)."""
    st1 = f"{PAAS}/Microsoft.Storage/storageAccounts/st1"
    st_gone = f"{PAAS}/Microsoft.Storage/storageAccounts/gone"
    vault = f"{PAAS}/Microsoft.KeyVault/vaults/kv1"
    sql = f"{PAAS}/Microsoft.Sql/servers/sql1"
    automation = f"{PAAS}/Microsoft.Automation/automationAccounts/aa1"
    odd = f"{PAAS}/Contoso.Widgets/widgets/w1"   # a type no table knows: api-version looked up
    pls = example("network/PrivateLinkServiceList.json")["value"][0]["id"]
    rmpls = example("authorization/ListResourceManagementPrivateLink.json")
    rmpl_id = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Authorization/" \
              "resourceManagementPrivateLinks/rmpl1"
    rmpls["value"].append({"id": rmpl_id, "name": "rmpl1",
                           "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
                           "location": "westeurope", "properties": {"privateEndpointConnections": []}})
    pes = [
        endpoint("pe-st1", st1, status="Pending"),
        endpoint("pe-gone", st_gone),
        endpoint("pe-kv", vault, group_ids=("vault",), status="Rejected"),
        endpoint("pe-sql", sql, group_ids=("sqlServer",)),
        endpoint("pe-aa", automation, group_ids=("Webhook",), status="Disconnected"),
        endpoint("pe-odd", odd, group_ids=("widget",)),
        endpoint("pe-pls", pls, group_ids=(), manual=True, status="Pending"),
        endpoint("pe-rmpl", rmpl_id, group_ids=("wrong",), status="Approved"),
        endpoint("pe-failed", st1, provisioning_state="Failed"),
        *example("network/PrivateEndpointList.json")["value"],
        *(endpoint(f"pe-bulk{i:03d}", st1, ip=f"10.0.2.{i % 250}") for i in range(endpoints)),
    ]
    zone_id = f"{net()}/privateDnsZones/{ZONE}"
    zone_group = _with_id(example("network/PrivateEndpointDnsZoneGroupGet.json"),
                          f"{net()}/privateEndpoints/pe-st1/privateDnsZoneGroups/default")
    files: dict[str, Any] = {
        "subscriptions": {"value": [
            {"subscriptionId": s, "tenantId": TENANT, "displayName": f"sub-{s[:4]}", "state": "Enabled"}
            for s in (SUB, SUB2)]},
        "providers/Microsoft.Management/managementGroups": {"value": [
            {"id": f"/providers/Microsoft.Management/managementGroups/{TENANT}", "name": TENANT,
             "type": "Microsoft.Management/managementGroups"},
            {"id": "/providers/Microsoft.Management/managementGroups/mg1", "name": "mg1",
             "type": "Microsoft.Management/managementGroups"}]},
        f"providers/Microsoft.Management/managementGroups/{TENANT}/providers/Microsoft.Authorization/"
        "privateLinkAssociations": example("authorization/GetPrivateLinkAssociation.json"),
        "providers/Microsoft.Management/managementGroups/mg1/providers/Microsoft.Authorization/"
        "privateLinkAssociations": {"value": [{
            "id": "/providers/Microsoft.Management/managementGroups/mg1/providers/Microsoft.Authorization/"
                  "privateLinkAssociations/pla-mg1",
            "name": "pla-mg1", "type": "Microsoft.Authorization/privateLinkAssociations",
            "properties": {"privateLink": rmpl_id, "publicNetworkAccess": "Enabled", "tenantId": TENANT,
                           "scope": "/providers/Microsoft.Management/managementGroups/mg1"}}]},
        sub_list("privateEndpoints"): {"value": pes},
        sub_list("privateLinkServices"): example("network/PrivateLinkServiceList.json"),
        sub_list("resourceManagementPrivateLinks", provider="Microsoft.Authorization"): rmpls,
        sub_list("routeTables"): example("network/RouteTableList.json"),
        sub_list("virtualNetworks"): _listed("network/VirtualNetworkGet.json"),
        sub_list("networkSecurityGroups"): _listed("network/NetworkSecurityGroupGet.json"),
        sub_list("azureFirewalls"): _listed("network/AzureFirewallGet.json"),
        sub_list("firewallPolicies"): _listed("network/FirewallPolicyGet.json"),
        sub_list("loadBalancers"): _listed("network/LoadBalancerGet.json"),
        sub_list("networkInterfaces") + ".error": {
            "status": 403, "error": {"code": "AuthorizationFailed",
                                     "message": "The client does not have authorization to read NICs."}},
        sub_list("privateDnsZones"): {"value": [{"id": zone_id, "name": ZONE,
                                                 "type": "Microsoft.Network/privateDnsZones",
                                                 "location": "global", "properties": {}}]},
        f"{zone_id}/virtualNetworkLinks": {"value": [{
            "id": f"{zone_id}/virtualNetworkLinks/link1", "name": "link1",
            "properties": {"virtualNetwork": {"id": f"{net()}/virtualNetworks/vnet1"},
                           "registrationEnabled": False}}]},
        f"{zone_id}/CNAME": {"value": [{
            "id": f"{zone_id}/CNAME/st1", "name": "st1", "type": "Microsoft.Network/privateDnsZones/CNAME",
            "properties": {"ttl": 3600, "cnameRecord": {"cname": "st1.privatelink.blob.core.windows.net"}}}]},
        f"{net()}/privateEndpoints/pe-st1/privateDnsZoneGroups": {"value": [zone_group]},
        st1: storage_account("st1", connections=[
            provider_connection(st1, f"{net()}/privateEndpoints/pe-st1", status="Pending", storage_spelling=True)]),
        vault: _with_id(example("paas/getVault.json"), vault),
        sql: _with_id(example("paas/ServerGet.json"), sql),
        automation: _with_id(example("paas/getAutomationAccount.json"), automation),
        odd: {"id": odd, "name": "w1", "type": "Contoso.Widgets/widgets",
              "properties": {"publicNetworkAccess": "Enabled", "privateEndpointConnections": []}},
    }
    for kind in ("privateEndpoints", "privateLinkServices", "virtualNetworks", "routeTables",
                 "networkSecurityGroups", "azureFirewalls", "firewallPolicies", "loadBalancers",
                 "networkInterfaces", "bastionHosts", "privateDnsZones", "virtualWans", "virtualHubs",
                 "networkVirtualAppliances"):
        files[sub_list(kind, sub=SUB2) + ".error"] = {
            "status": 403, "error": {"code": "AuthorizationFailed", "message": f"no read on {SUB2}"}}
    files[sub_list("resourceManagementPrivateLinks", sub=SUB2, provider="Microsoft.Authorization") + ".error"] = {
        "status": 403, "error": {"code": "AuthorizationFailed", "message": f"no read on {SUB2}"}}
    return write_tenant(folder, files, subscriptions=[])
