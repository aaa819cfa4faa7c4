"""Synthetic tenants: a seeded, internally consistent Azure estate written in the recorded-tenant format.

Benchmarks and scale tests need tenants far larger than anyone can record by hand, and they must be the
same tenant on every run (so figures compare) and plausible (so the checks do the work they do on a real
estate, not a degenerate one). The shape follows a landing zone: connectivity subscriptions hold a hub
network (Azure Firewall or a third-party appliance behind an internal load balancer, Bastion, the
private DNS zones and the resource management private link); workload subscriptions hold spoke networks
peered to a hub, with route tables sending traffic to the hub appliance, NSGs, private endpoints to PaaS
resources and to Private Link Services hosted in other spokes. A share of every kind of object is
deliberately misconfigured; :attr:`SynthResult.defects` says how many of each, so a test can tell an
intended defect from a generator bug.

Every reference resolves unless a defect says otherwise (a deleted target, an unresolvable next hop):
subnets name route tables and NSGs that exist and are named back, endpoint IPs lie in their subnets,
every endpoint has its NIC, provider-side connections mirror the consumer side.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plmon.monitor.errors import InputError

__all__ = ["SynthResult", "SynthSpec", "generate", "write_tenant"]

RECORDED_AT = "2026-11-01T12:00:00Z"
LOCATION = "westeurope"
PE_PER_SUBNET = 200          # endpoints per /24 endpoint subnet (.4 to .203)
PE_SUBNETS_PER_VNET = 4      # so a spoke holds at most 800 endpoints before another spoke is added
PLS_PER_VNET = 8             # NAT subnets /27 at offsets 0, 32, ... 224 of the spoke's 13th /24
MAX_VNETS = 4096             # /20 networks in 10.0.0.0/8
HUB_PE_SUBNETS = 10          # a hub's endpoint subnets: /24s at third octets 2..11 (1 is the management link's)
HOST_ROUTE_LIMIT = 16        # spokes with at most this many endpoints may use /32 routes instead of a prefix
MAX_VWAN_HUBS = 64           # Virtual WAN hubs: /23 address prefixes in 192.168.0.0/16, outside the networks' 10/8
RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]

ZONES = {
    "blob": "privatelink.blob.core.windows.net", "file": "privatelink.file.core.windows.net",
    "vault": "privatelink.vaultcore.azure.net", "sqlServer": "privatelink.database.windows.net",
    "Sql": "privatelink.documents.azure.com", "registry": "privatelink.azurecr.io",
    "namespace": "privatelink.servicebus.windows.net", "configurationStores": "privatelink.azconfig.io",
    "sites": "privatelink.azurewebsites.net", "ResourceManagement": "privatelink.azure.com",
}

# PaaS target types: (type, name prefix, group ids, weight). Storage often has a blob and a file endpoint.
PAAS = (
    ("Microsoft.Storage/storageAccounts", "st", ("blob", "file"), 30),
    ("Microsoft.KeyVault/vaults", "kv", ("vault",), 20),
    ("Microsoft.Sql/servers", "sql", ("sqlServer",), 15),
    ("Microsoft.DocumentDB/databaseAccounts", "cosmos", ("Sql",), 8),
    ("Microsoft.ContainerRegistry/registries", "acr", ("registry",), 8),
    ("Microsoft.EventHub/namespaces", "evhns", ("namespace",), 8),
    ("Microsoft.AppConfiguration/configurationStores", "appcs", ("configurationStores",), 5),
    ("Microsoft.Web/sites", "app", ("sites",), 6),
)

# What can be wrong, and how often relative to each other, per kind of object.
ENDPOINT_DEFECTS = (("pending", 25), ("rejected", 10), ("disconnected", 8), ("actions-required", 6),
                    ("provisioning-failed", 4), ("target-missing", 5), ("no-zone-group", 12),
                    ("wrong-zone", 6), ("duplicate", 6), ("target-unreadable", 3))
PLS_ENDPOINT_DEFECTS = (("pending", 40), ("rejected", 15), ("disconnected", 10), ("actions-required", 5),
                        ("provisioning-failed", 3))
SPOKE_DEFECTS = (("default-route-only", 4), ("pe-policies-disabled", 3), ("next-hop-unresolved", 1),
                 ("nsg-multi-port", 2))
PLS_DEFECTS = (("visibility-public", 3), ("auto-approval-not-subset", 2), ("auto-approval-wildcard", 1),
               ("nat-subnet-policy", 2), ("nat-ip-headroom", 2), ("proxy-protocol", 2))
FIREWALL_DEFECTS = (("snat-classic-default", 1), ("snat-policy-private-ranges", 1))
NVA_DEFECTS = (("ip-forwarding-off", 1), ("snat-never", 1), ("snat-untagged", 2))
TENANT_DEFECTS = ("association-public-access", "association-not-root", "bastion-dns-conflict",
                  "rmpl-unassociated")


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. ``pls`` defaults to one Private Link Service per ten subscriptions."""

    subscriptions: int
    endpoints: int
    seed: int = 1
    pls: int | None = None
    bad_share: float = 0.1
    pls_share: float = 0.15          # share of endpoints that connect to a Private Link Service
    # Spoke networks in all (default: one per 800 endpoints of each workload subscription). With at most 11
    # subscriptions there is one hub, so ``spokes=500`` is a hub peered with 500 spokes: the shape whose path
    # evaluation issue 14 wants no worse than linear in the number of client subnets.
    spokes: int | None = None
    # Private endpoints in each hub's own subnets (shared services): every spoke's subnets are their clients.
    hub_endpoints: int = 0
    # Virtual WAN hubs (issue 18): a WAN of this many secured hubs (AZFW_Hub firewalls, routing intent for private
    # traffic) to which the spoke networks are also connected, round-robin. 0 (the default) leaves the tenant as it was.
    vwan_hubs: int = 0

    def validate(self) -> None:
        if self.subscriptions < 1:
            raise InputError("--subscriptions must be at least 1")
        if self.endpoints < 0:
            raise InputError("--endpoints must not be negative")
        if not 0.0 <= self.bad_share <= 1.0:
            raise InputError("--bad-share must be between 0 and 1")
        if self.pls is not None and self.pls < 0:
            raise InputError("--pls must not be negative")
        if self.spokes is not None and self.spokes < max(1, self.subscriptions - _hub_count(self.subscriptions)):
            raise InputError("--spokes must be at least the number of workload subscriptions (one each)")
        if not 0 <= self.hub_endpoints <= HUB_PE_SUBNETS * PE_PER_SUBNET:
            raise InputError(f"--hub-endpoints must be between 0 and {HUB_PE_SUBNETS * PE_PER_SUBNET}")
        if not 0 <= self.vwan_hubs <= MAX_VWAN_HUBS:
            raise InputError(f"--vwan-hubs must be between 0 and {MAX_VWAN_HUBS}")


def _hub_count(subscriptions: int) -> int:
    """Connectivity hubs: one for up to two subscriptions, else one per eleven (a landing zone's ratio)."""
    return 1 if subscriptions <= 2 else math.ceil(subscriptions / 11)


@dataclass
class SynthResult:
    """The tenant as {request path: body} plus what went into it."""

    files: dict[str, Any]
    tenant_id: str
    counts: Counter[str] = field(default_factory=Counter)
    defects: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "files": len(self.files), "resources": dict(sorted(self.counts.items())),
                "defects": dict(sorted(self.defects.items()))}


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _choose(rng: random.Random, weighted: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


def _pick(rng: random.Random, weighted: tuple[tuple[Any, ...], ...]) -> Any:
    return _choose(rng, weighted)[0]


def _conn_state(status: str, actions: str = "None", storage: bool = False) -> dict[str, Any]:
    return {"status": status, "description": "" if status != "Rejected" else "Not an approved consumer",
            "actionRequired" if storage else "actionsRequired": actions}


class _Vnet:
    """A network under construction: its address block is a /20 chosen by its global index."""

    def __init__(self, index: int, sub: str, rg: str, name: str, hub: bool) -> None:
        if index >= MAX_VNETS:
            raise InputError(f"too many networks for the 10.0.0.0/8 plan (max {MAX_VNETS}); "
                             "use fewer endpoints per subscription or fewer subscriptions")
        self.index, self.sub, self.rg, self.name, self.hub = index, sub, rg, name, hub
        self.a, self.b = index >> 4, (index & 15) << 4
        self.id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}"
        self.prefix = f"10.{self.a}.{self.b}.0/20"
        self.subnets: dict[str, dict[str, Any]] = {}
        self.peerings: list[dict[str, Any]] = []
        self.endpoint_ips: list[str] = []
        self.pls_slots = 0
        self.pe_count = 0
        self.hub_info: dict[str, Any] = {}

    def ip(self, third: int, fourth: int) -> str:
        return f"10.{self.a}.{self.b + third}.{fourth}"

    def subnet(self, name: str, prefix: str, **props: Any) -> dict[str, Any]:
        sid = f"{self.id}/subnets/{name}"
        body = {"id": sid, "name": name, "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": {"addressPrefix": prefix, "provisioningState": "Succeeded",
                               "privateEndpointNetworkPolicies": "Disabled",
                               "privateLinkServiceNetworkPolicies": "Enabled", **props}}
        self.subnets[name] = body
        return body

    def add_ref(self, subnet: str, key: str, ref_id: str) -> None:
        self.subnets[subnet]["properties"].setdefault(key, []).append({"id": ref_id})

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": "Microsoft.Network/virtualNetworks",
                "location": LOCATION, "etag": f'W/"{self.index:08x}"',
                "properties": {"provisioningState": "Succeeded", "addressSpace": {"addressPrefixes": [self.prefix]},
                               "subnets": list(self.subnets.values()), "virtualNetworkPeerings": self.peerings,
                               "enableDdosProtection": False}}


def _peer(a: _Vnet, b: _Vnet) -> None:
    """Hub and spoke peerings exist in pairs: each side names the other."""
    for x, y in ((a, b), (b, a)):
        x.peerings.append({
            "id": f"{x.id}/virtualNetworkPeerings/peer-{y.name}", "name": f"peer-{y.name}",
            "properties": {"peeringState": "Connected", "peeringSyncLevel": "FullyInSync",
                           "remoteVirtualNetwork": {"id": y.id}, "allowVirtualNetworkAccess": True,
                           "allowForwardedTraffic": True, "allowGatewayTransit": x.hub, "useRemoteGateways": False,
                           "remoteAddressSpace": {"addressPrefixes": [y.prefix]}}})


_DEFAULT_RULES = (
    ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*"),
    ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet"),
    ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*"),
)


def _rule(nsg_id: str, name: str, direction: str, access: str, priority: int, src: str, dst: str,
          ports: list[str] | None = None, default: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"protocol": "*" if default else "Tcp", "sourcePortRange": "*",
                             "sourceAddressPrefix": src, "destinationAddressPrefix": dst, "access": access,
                             "priority": priority, "direction": direction, "provisioningState": "Succeeded"}
    if ports and len(ports) > 1:
        props["destinationPortRanges"] = ports
    else:
        props["destinationPortRange"] = ports[0] if ports else "*"
    kind = "defaultSecurityRules" if default else "securityRules"
    return {"id": f"{nsg_id}/{kind}/{name}", "name": name, "properties": props}


class _Builder:
    def __init__(self, spec: SynthSpec) -> None:
        spec.validate()
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.files: dict[str, Any] = {}
        self.lists: dict[tuple[str, str], list[Any]] = {}
        self.counts: Counter[str] = Counter()
        self.defects: Counter[str] = Counter()
        self.tenant = _uid(self.rng)
        self.vnets: list[_Vnet] = []
        self.targets: list[dict[str, Any]] = []
        self.services: list[dict[str, Any]] = []
        self.zone_ids: dict[str, str] = {}

    # --- small helpers -------------------------------------------------------------------------
    def bad(self) -> bool:
        return self.rng.random() < self.spec.bad_share

    def add(self, sub: str, kind: str, item: dict[str, Any], provider: str = "Microsoft.Network") -> None:
        self.lists.setdefault((sub, f"{provider}/{kind}"), []).append(item)
        self.counts[kind] += 1

    def new_vnet(self, sub: str, rg: str, name: str, hub: bool) -> _Vnet:
        v = _Vnet(len(self.vnets), sub, rg, name, hub)
        self.vnets.append(v)
        return v

    # --- the estate -----------------------------------------------------------------------------
    def run(self) -> SynthResult:
        spec, rng = self.spec, self.rng
        subs = [_uid(rng) for _ in range(spec.subscriptions)]
        n_hubs = _hub_count(len(subs))
        hub_subs = subs[:n_hubs]
        spoke_subs = subs[n_hubs:] or subs[:1]
        self.files["subscriptions"] = {"value": [
            {"id": f"/subscriptions/{s}", "subscriptionId": s, "tenantId": self.tenant,
             "displayName": f"{'connectivity' if s in hub_subs else 'workload'}-{i:03d}", "state": "Enabled",
             "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                      "quotaId": "EnterpriseAgreement_2014-09-01", "spendingLimit": "Off"}}
            for i, s in enumerate(subs)]}
        self.counts["subscriptions"] = len(subs)

        hubs = [self.hub(s, i) for i, s in enumerate(hub_subs)]
        self.dns_zones(hub_subs[0])

        # Endpoints per workload subscription: uneven, as real estates are, and summing to the request.
        weights = [rng.uniform(0.4, 1.6) for _ in spoke_subs]
        total = sum(weights)
        per_sub = [int(spec.endpoints * w / total) for w in weights]
        for i in range(spec.endpoints - sum(per_sub)):
            per_sub[i % len(per_sub)] += 1
        spokes: list[tuple[_Vnet, int]] = []
        if spec.spokes is not None:
            spokes = self.fixed_spokes(spoke_subs, per_sub, hubs, spec.spokes)
        for i, (s, n) in enumerate(zip(spoke_subs, per_sub, strict=True) if spec.spokes is None else ()):
            for k in range(max(1, math.ceil(n / (PE_PER_SUBNET * PE_SUBNETS_PER_VNET)))):
                share = min(n - k * PE_PER_SUBNET * PE_SUBNETS_PER_VNET, PE_PER_SUBNET * PE_SUBNETS_PER_VNET)
                v = self.spoke(s, f"vnet-w{i:03d}-{k}", hubs[(i + k) % len(hubs)])
                spokes.append((v, max(0, share)))

        n_pls = spec.pls if spec.pls is not None else max(1, len(subs) // 10)
        if n_pls > PLS_PER_VNET * len(spokes):
            raise InputError(f"--pls {n_pls} needs more spoke networks (at most {PLS_PER_VNET} per network)")
        self.services = [self.pls(spokes[j % len(spokes)][0], j, [v.sub for v, _ in spokes])
                         for j in range(n_pls)]

        self.rmpl(hub_subs[0], hubs[0])
        for v, n in spokes:
            self.endpoints(v, n)
        for hub in hubs if spec.hub_endpoints else ():
            hv: _Vnet = hub["vnet"]
            hv.pe_count = PE_PER_SUBNET  # endpoint subnets from the third octet 2 on: 1 is snet-mgmt-pe
            self.endpoints(hv, spec.hub_endpoints)
        for v, _ in spokes:
            self.spoke_network_policy(v)
        if spec.vwan_hubs:
            self.virtual_wan(hub_subs[0], [v for v, _ in spokes])
        for v in self.vnets:
            self._link_all(v)  # central private DNS: every zone is linked to every network
            self.add(v.sub, "virtualNetworks", v.body())
        for t in self.targets:
            self.files[t["id"].strip("/")] = t
        for (sub, kind), items in self.lists.items():
            self.files[f"subscriptions/{sub}/providers/{kind}"] = {"value": items}
        self.counts["targets"] = len(self.targets)
        return SynthResult(self.files, self.tenant, self.counts, self.defects)

    def hub(self, sub: str, i: int) -> dict[str, Any]:
        """A connectivity hub: its network, Bastion, and one appliance (Azure Firewall or an NVA pair)."""
        rng = self.rng
        rg = "rg-connectivity"
        v = self.new_vnet(sub, rg, f"vnet-hub-{i:02d}", hub=True)
        v.subnet("AzureFirewallSubnet", f"10.{v.a}.{v.b + 15}.0/26")
        v.subnet("AzureBastionSubnet", f"10.{v.a}.{v.b + 15}.64/26")
        v.subnet("snet-nva", f"10.{v.a}.{v.b + 14}.0/26")
        v.subnet("snet-mgmt-pe", f"10.{v.a}.{v.b + 1}.0/24", privateEndpointNetworkPolicies="Enabled")
        net = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"

        bastion = f"{net}/bastionHosts/bas-hub-{i:02d}"
        self.add(sub, "bastionHosts", {
            "id": bastion, "name": bastion.rsplit("/", 1)[1], "type": "Microsoft.Network/bastionHosts",
            "location": LOCATION, "sku": {"name": "Standard"},
            "properties": {"provisioningState": "Succeeded", "ipConfigurations": [{
                "id": f"{bastion}/bastionHostIpConfigurations/IpConf", "name": "IpConf",
                "properties": {"subnet": {"id": v.subnets["AzureBastionSubnet"]["id"]},
                               "publicIPAddress": {"id": f"{net}/publicIPAddresses/pip-bas-hub-{i:02d}"}}}]}})
        v.add_ref("AzureBastionSubnet", "ipConfigurations", f"{bastion}/bastionHostIpConfigurations/IpConf")

        # Most hubs run Azure Firewall; some run a third-party appliance pair instead.
        next_hop = self.firewall(v, net, i) if i == 0 or rng.random() < 0.7 else self.nva(v, net, i)
        return {"vnet": v, "next_hop": next_hop}

    def virtual_wan(self, sub: str, spokes: list[_Vnet]) -> None:
        """A Virtual WAN of ``vwan_hubs`` secured hubs; spoke k is connected to hub k mod n (with the platform's
        peering to the hub's network). Its own random stream, so the rest of the tenant is what it was without it."""
        rng = random.Random(self.spec.seed * 7919 + 18)
        rg = "rg-vwan"
        net = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
        wan = f"{net}/virtualWans/vwan-01"
        hubs = [f"{net}/virtualHubs/vhub-{i:02d}" for i in range(self.spec.vwan_hubs)]
        self.add(sub, "virtualWans", {
            "id": wan, "name": "vwan-01", "type": "Microsoft.Network/virtualWANs", "location": LOCATION,
            "properties": {"provisioningState": "Succeeded", "type": "Standard", "allowBranchToBranchTraffic": True,
                           "virtualHubs": [{"id": h} for h in hubs], "vpnSites": []}})
        for i, hub in enumerate(hubs):
            prefix = f"192.168.{2 * i}.0/23"
            fw = f"{net}/azureFirewalls/afw-vhub-{i:02d}"
            policy = f"{net}/firewallPolicies/afwp-vhub-{i:02d}"
            snat_default = self.bad() or i == 0
            if snat_default:
                self.defects["vwan-hub-firewall-snat-default"] += 1
            self.add(sub, "firewallPolicies", {
                "id": policy, "name": policy.rsplit("/", 1)[1], "type": "Microsoft.Network/firewallPolicies",
                "location": LOCATION, "properties": {"provisioningState": "Succeeded", **(
                    {} if snat_default else {"snat": {"privateRanges": ["255.255.255.255/32"]}})}})
            self.add(sub, "azureFirewalls", {
                "id": fw, "name": fw.rsplit("/", 1)[1], "type": "Microsoft.Network/azureFirewalls",
                "location": LOCATION,
                "properties": {"provisioningState": "Succeeded", "sku": {"name": "AZFW_Hub", "tier": "Premium"},
                               "virtualHub": {"id": hub}, "firewallPolicy": {"id": policy},
                               "hubIPAddresses": {"publicIPs": {"addresses": [], "count": 1},
                                                  "privateIPAddress": f"192.168.{2 * i}.132"},
                               "additionalProperties": {}}})
            self.add(sub, "virtualHubs", {
                "id": hub, "name": hub.rsplit("/", 1)[1], "type": "Microsoft.Network/virtualHubs", "location": LOCATION,
                "properties": {"provisioningState": "Succeeded", "virtualWan": {"id": wan}, "addressPrefix": prefix,
                               "sku": "Standard", "azureFirewall": {"id": fw}, "routingState": "Provisioned",
                               "virtualRouterAsn": 65515,
                               "virtualRouterIps": [f"192.168.{2 * i}.68", f"192.168.{2 * i}.69"]}})
            self.files[f"{hub.strip('/')}/routingIntent"] = {"value": [{
                "id": f"{hub}/routingIntent/intent", "name": "intent",
                "type": "Microsoft.Network/virtualHubs/routingIntent",
                "properties": {"provisioningState": "Succeeded", "routingPolicies": [
                    {"name": "PrivateTrafficPolicy", "destinations": ["PrivateTraffic"], "nextHop": fw}]}}]}
            self.files[f"{hub.strip('/')}/hubRouteTables"] = {"value": [
                {"id": f"{hub}/hubRouteTables/{t}", "name": t, "type": "Microsoft.Network/virtualHubs/hubRouteTables",
                 "properties": {"provisioningState": "Succeeded", "routes": [
                     {"name": "_policy_PrivateTraffic", "destinationType": "CIDR", "destinations": RFC1918,
                      "nextHopType": "ResourceId", "nextHop": fw}] if t == "defaultRouteTable" else [],
                     "labels": [t[:-10].lower()]}} for t in ("defaultRouteTable", "noneRouteTable")]}
            connected = [v for k, v in enumerate(spokes) if k % len(hubs) == i]
            self.files[f"{hub.strip('/')}/hubVirtualNetworkConnections"] = {"value": [{
                "id": f"{hub}/hubVirtualNetworkConnections/conn-{v.name}", "name": f"conn-{v.name}",
                "properties": {"provisioningState": "Succeeded", "remoteVirtualNetwork": {"id": v.id},
                               "enableInternetSecurity": False,
                               "routingConfiguration": {
                                   "associatedRouteTable": {"id": f"{hub}/hubRouteTables/defaultRouteTable"},
                                   "propagatedRouteTables": {"labels": ["default"], "ids": [
                                       {"id": f"{hub}/hubRouteTables/defaultRouteTable"}]}}}} for v in connected]}
            for v in connected:
                guid = _uid(rng)
                v.peerings.append({
                    "id": f"{v.id}/virtualNetworkPeerings/RemoteVnetToHubPeering_{guid}",
                    "name": f"RemoteVnetToHubPeering_{guid}",
                    "properties": {"peeringState": "Connected", "remoteVirtualNetwork": {
                        "id": f"/subscriptions/{_uid(rng)}/resourceGroups/RG_vhub-{i:02d}_{guid[:8]}/providers/"
                              f"Microsoft.Network/virtualNetworks/HV_vhub-{i:02d}_{guid}"},
                        "allowVirtualNetworkAccess": True, "allowForwardedTraffic": False,
                        "allowGatewayTransit": False, "useRemoteGateways": True,
                        "remoteAddressSpace": {"addressPrefixes": [prefix]}}})
            self.counts["hubVirtualNetworkConnections"] += len(connected)

    def firewall(self, v: _Vnet, net: str, i: int) -> str:
        fw = f"{net}/azureFirewalls/afw-hub-{i:02d}"
        ip = v.ip(15, 4)
        defect = _pick(self.rng, FIREWALL_DEFECTS) if self.bad() else None
        style = "policy" if self.rng.random() < 0.5 else "classic"
        if defect:
            style = "classic" if defect == "snat-classic-default" else "policy"
            self.defects[f"firewall:{defect}"] += 1
        props: dict[str, Any] = {
            "provisioningState": "Succeeded", "sku": {"name": "AZFW_VNet", "tier": "Standard"},
            "threatIntelMode": "Alert",
            "ipConfigurations": [{"id": f"{fw}/azureFirewallIpConfigurations/ipconfig", "name": "ipconfig",
                                  "properties": {"privateIPAddress": ip, "privateIPAllocationMethod": "Dynamic",
                                                 "subnet": {"id": v.subnets["AzureFirewallSubnet"]["id"]},
                                                 "publicIPAddress": {
                                                     "id": f"{net}/publicIPAddresses/pip-afw-{i:02d}"}}}],
            "additionalProperties": {}}
        v.add_ref("AzureFirewallSubnet", "ipConfigurations", f"{fw}/azureFirewallIpConfigurations/ipconfig")
        if style == "policy":
            pol = f"{net}/firewallPolicies/afwp-hub-{i:02d}"
            ranges = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] if defect else ["255.255.255.255/32"]
            self.add(v.sub, "firewallPolicies", {
                "id": pol, "name": pol.rsplit("/", 1)[1], "type": "Microsoft.Network/firewallPolicies",
                "location": LOCATION,
                "properties": {"provisioningState": "Succeeded", "threatIntelMode": "Alert",
                               "snat": {"privateRanges": ranges, "autoLearnPrivateRanges": "Disabled"},
                               "firewalls": [{"id": fw}], "sku": {"tier": "Standard"}}})
            props["firewallPolicy"] = {"id": pol}
        elif not defect:
            props["additionalProperties"] = {"Network.SNAT.PrivateRanges": "255.255.255.255/32"}
        self.add(v.sub, "azureFirewalls", {"id": fw, "name": fw.rsplit("/", 1)[1],
                                            "type": "Microsoft.Network/azureFirewalls", "location": LOCATION,
                                            "zones": ["1", "2", "3"], "properties": props})
        return ip

    def nva(self, v: _Vnet, net: str, i: int) -> str:
        """Two third-party appliances behind an internal load balancer; the route points at its frontend."""
        defect = _pick(self.rng, NVA_DEFECTS) if self.bad() else None
        if defect:
            self.defects[f"nva:{defect}"] += 1
        lb = f"{net}/loadBalancers/ilb-nva-{i:02d}"
        fe, pool = f"{lb}/frontendIPConfigurations/fe-nva", f"{lb}/backendAddressPools/pool-nva"
        snat_on_lb = self.rng.random() < 0.5
        tag = {"snat-never": "never", "snat-untagged": None}.get(defect or "", "always")
        backend = []
        for n in range(2):
            nic = f"{net}/networkInterfaces/nic-nva-{i:02d}-{n}"
            cfg = f"{nic}/ipConfigurations/ipconfig1"
            backend.append({"id": cfg})
            self.add(v.sub, "networkInterfaces", {
                "id": nic, "name": nic.rsplit("/", 1)[1], "type": "Microsoft.Network/networkInterfaces",
                "location": LOCATION, "tags": {"plmon-snat": tag} if tag and not snat_on_lb else {},
                "properties": {
                    "provisioningState": "Succeeded",
                    "enableIPForwarding": not (defect == "ip-forwarding-off" and n == 0),
                    "enableAcceleratedNetworking": True,
                    "virtualMachine": {"id": f"/subscriptions/{v.sub}/resourceGroups/rg-connectivity/providers/"
                                             f"Microsoft.Compute/virtualMachines/vm-nva-{i:02d}-{n}"},
                    "ipConfigurations": [{"id": cfg, "name": "ipconfig1", "properties": {
                        "privateIPAddress": v.ip(14, 4 + n), "privateIPAllocationMethod": "Static", "primary": True,
                        "subnet": {"id": v.subnets["snet-nva"]["id"]},
                        "loadBalancerBackendAddressPools": [{"id": pool}]}}]}})
            v.add_ref("snet-nva", "ipConfigurations", cfg)
        ip = v.ip(14, 10)
        self.add(v.sub, "loadBalancers", {
            "id": lb, "name": lb.rsplit("/", 1)[1], "type": "Microsoft.Network/loadBalancers", "location": LOCATION,
            "sku": {"name": "Standard"}, "tags": {"plmon-snat": tag} if tag and snat_on_lb else {},
            "properties": {
                "provisioningState": "Succeeded",
                "frontendIPConfigurations": [{"id": fe, "name": "fe-nva", "properties": {
                    "privateIPAddress": ip, "privateIPAllocationMethod": "Static",
                    "subnet": {"id": v.subnets["snet-nva"]["id"]}}}],
                "backendAddressPools": [{"id": pool, "name": "pool-nva",
                                         "properties": {"backendIPConfigurations": backend}}],
                "loadBalancingRules": [{"id": f"{lb}/loadBalancingRules/ha-ports", "name": "ha-ports", "properties": {
                    "frontendIPConfiguration": {"id": fe}, "backendAddressPool": {"id": pool},
                    "protocol": "All", "frontendPort": 0, "backendPort": 0}}]}})
        v.add_ref("snet-nva", "ipConfigurations", fe)
        self.counts["nva"] += 2
        return ip

    def dns_zones(self, sub: str) -> None:
        net = f"/subscriptions/{sub}/resourceGroups/rg-dns/providers/Microsoft.Network"
        self.zone_ids = {g: f"{net}/privateDnsZones/{z}" for g, z in ZONES.items()}
        for zid in dict.fromkeys(self.zone_ids.values()):
            self.add(sub, "privateDnsZones", {
                "id": zid, "name": zid.rsplit("/", 1)[1], "type": "Microsoft.Network/privateDnsZones",
                "location": "global", "etag": "00000000-0000-0000-0000-000000000001",
                "properties": {"provisioningState": "Succeeded", "maxNumberOfRecordSets": 25000,
                               "numberOfVirtualNetworkLinks": 0, "numberOfRecordSets": 1}})

    def fixed_spokes(self, subs: list[str], per_sub: list[int], hubs: list[dict[str, Any]],
                     total: int) -> list[tuple[_Vnet, int]]:
        """``total`` spokes shared evenly by the workload subscriptions, each with an even share of its endpoints."""
        out: list[tuple[_Vnet, int]] = []
        for i, (s, n) in enumerate(zip(subs, per_sub, strict=True)):
            count = total // len(subs) + (i < total % len(subs))
            if n > count * PE_PER_SUBNET * PE_SUBNETS_PER_VNET:
                raise InputError(f"--spokes {total} is too few for {self.spec.endpoints} endpoints "
                                 f"(at most {PE_PER_SUBNET * PE_SUBNETS_PER_VNET} per spoke)")
            for k in range(count):
                v = self.spoke(s, f"vnet-w{i:03d}-{k}", hubs[(i + k) % len(hubs)])
                out.append((v, n // count + (k < n % count)))
        return out

    def spoke(self, sub: str, name: str, hub: dict[str, Any]) -> _Vnet:
        v = self.new_vnet(sub, "rg-network", name, hub=False)
        v.subnet("snet-app", f"10.{v.a}.{v.b}.0/24")
        v.hub_info = hub
        _peer(hub["vnet"], v)
        return v

    def pls(self, v: _Vnet, j: int, consumer_subs: list[str]) -> dict[str, Any]:
        """A Private Link Service in a provider spoke: internal LB frontend plus NAT IPs in their own subnet."""
        rng = self.rng
        defect = _pick(rng, PLS_DEFECTS) if self.bad() else None
        if defect:
            self.defects[f"pls:{defect}"] += 1
        slot = v.pls_slots
        v.pls_slots += 1
        if "snet-lb" not in v.subnets:
            v.subnet("snet-lb", f"10.{v.a}.{v.b + 13}.0/24")
        nat_name = f"snet-plsnat-{slot}"
        nat_len = 29 if defect == "nat-ip-headroom" else 27
        v.subnet(nat_name, f"10.{v.a}.{v.b + 12}.{slot * 32}/{nat_len}",
                 privateLinkServiceNetworkPolicies="Enabled" if defect == "nat-subnet-policy" else "Disabled")
        net = f"/subscriptions/{v.sub}/resourceGroups/rg-pls/providers/Microsoft.Network"
        name = f"pls-{j:03d}"
        lb, pls = f"{net}/loadBalancers/ilb-{name}", f"{net}/privateLinkServices/{name}"
        fe, pool = f"{lb}/frontendIPConfigurations/fe", f"{lb}/backendAddressPools/pool"
        self.add(v.sub, "loadBalancers", {
            "id": lb, "name": f"ilb-{name}", "type": "Microsoft.Network/loadBalancers", "location": LOCATION,
            "sku": {"name": "Standard"},
            "properties": {
                "provisioningState": "Succeeded",
                "frontendIPConfigurations": [{"id": fe, "name": "fe", "properties": {
                    "privateIPAddress": v.ip(13, 4 + slot), "privateIPAllocationMethod": "Static",
                    "subnet": {"id": v.subnets["snet-lb"]["id"]}}}],
                "backendAddressPools": [{"id": pool, "name": "pool", "properties": {"backendIPConfigurations": []}}],
                "loadBalancingRules": [{"id": f"{lb}/loadBalancingRules/https", "name": "https", "properties": {
                    "frontendIPConfiguration": {"id": fe}, "backendAddressPool": {"id": pool},
                    "protocol": "Tcp", "frontendPort": 443, "backendPort": 443}}]}})
        v.add_ref("snet-lb", "ipConfigurations", fe)
        nat = []
        for n in range(2):
            cfg = f"{pls}/ipConfigurations/nat-{n}"
            nat.append({"id": cfg, "name": f"nat-{n}", "properties": {
                "privateIPAddress": f"10.{v.a}.{v.b + 12}.{slot * 32 + 4 + n}", "privateIPAllocationMethod": "Dynamic",
                "privateIPAddressVersion": "IPv4", "primary": n == 0,
                "subnet": {"id": v.subnets[nat_name]["id"]}}})
            v.add_ref(nat_name, "ipConfigurations", cfg)
        visible = sorted(set(consumer_subs))
        auto = [v.sub]
        if defect == "visibility-public":
            visible = ["*"]
        elif defect == "auto-approval-not-subset":
            auto = [v.sub, _uid(rng)]
        elif defect == "auto-approval-wildcard":
            auto = ["*"]
        body = {"id": pls, "name": name, "type": "Microsoft.Network/privateLinkServices", "location": LOCATION,
                "etag": f'W/"{j:08x}"',
                "properties": {
                    "provisioningState": "Succeeded",
                    "alias": f"{name}.{_uid(rng)}.{LOCATION}.azure.privatelinkservice",
                    "visibility": {"subscriptions": visible}, "autoApproval": {"subscriptions": auto},
                    "fqdns": [f"{name}.contoso-saas.example"], "enableProxyProtocol": defect == "proxy-protocol",
                    "loadBalancerFrontendIpConfigurations": [{"id": fe}], "ipConfigurations": nat,
                    "privateEndpointConnections": [], "networkInterfaces": []}}
        self.add(v.sub, "privateLinkServices", body)
        return body

    def rmpl(self, sub: str, hub: dict[str, Any]) -> None:
        """The tenant's resource management private link, its association(s) and its endpoint in the hub."""
        v: _Vnet = hub["vnet"]
        flags = {d: self.bad() for d in TENANT_DEFECTS}
        for d, on in flags.items():
            if on:
                self.defects[f"tenant:{d}"] += 1
        mg = "/providers/Microsoft.Management/managementGroups"
        groups = [(self.tenant, "Tenant Root Group"), ("platform", "Platform"), ("landingzones", "Landing Zones")]
        self.files["providers/Microsoft.Management/managementGroups"] = {"value": [
            {"id": f"{mg}/{g}", "name": g, "type": "Microsoft.Management/managementGroups",
             "properties": {"displayName": d, "tenantId": self.tenant}} for g, d in groups]}
        auth = f"/subscriptions/{sub}/resourceGroups/rg-management/providers/Microsoft.Authorization"
        rmpl_id = f"{auth}/resourceManagementPrivateLinks/rmpl-{self.tenant[:8]}"
        pe_id = f"/subscriptions/{sub}/resourceGroups/rg-management/providers/Microsoft.Network/privateEndpoints/pe-arm"
        scope = f"{mg}/landingzones" if flags["association-not-root"] else f"{mg}/{self.tenant}"
        listed = "landingzones" if flags["association-not-root"] else self.tenant
        assoc = f"{scope}/providers/Microsoft.Authorization/privateLinkAssociations/{_uid(self.rng)}"
        self.files[f"{mg.strip('/')}/{listed}/providers/Microsoft.Authorization/privateLinkAssociations"] = {"value": [{
            "id": assoc, "name": assoc.rsplit("/", 1)[1], "type": "Microsoft.Authorization/privateLinkAssociations",
            "properties": {"privateLink": rmpl_id, "tenantId": self.tenant, "scope": scope,
                           "publicNetworkAccess": "Enabled" if flags["association-public-access"] else "Disabled"}}]}
        self.counts["associations"] += 1
        conn = f"{rmpl_id}/privateEndpointConnections/pe-arm.{_uid(self.rng)[:8]}"
        rmpls = [{"id": rmpl_id, "name": rmpl_id.rsplit("/", 1)[1],
                  "type": "Microsoft.Authorization/resourceManagementPrivateLinks", "location": LOCATION,
                  "properties": {"privateEndpointConnections": [{
                      "id": conn, "name": conn.rsplit("/", 1)[1],
                      "type": "Microsoft.Authorization/resourceManagementPrivateLinks/privateEndpointConnections",
                      "properties": {"privateEndpoint": {"id": pe_id}, "provisioningState": "Succeeded",
                                     "privateLinkServiceConnectionState": _conn_state("Approved")}}]}}]
        if flags["rmpl-unassociated"]:
            stray = f"{auth}/resourceManagementPrivateLinks/rmpl-trial"
            rmpls.append({"id": stray, "name": "rmpl-trial", "location": LOCATION,
                          "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
                          "properties": {"privateEndpointConnections": []}})
        for r in rmpls:
            self.add(sub, "resourceManagementPrivateLinks", r, provider="Microsoft.Authorization")
        zone = self.zone_ids["ResourceManagement"]
        if not flags["bastion-dns-conflict"]:
            self.files[f"{zone.strip('/')}/CNAME"] = {"value": [{
                "id": f"{zone}/CNAME/management", "name": "management",
                "type": "Microsoft.Network/privateDnsZones/CNAME",
                "properties": {"ttl": 3600, "cnameRecord": {"cname": "management.azure.com"}}}]}
        self.endpoint(v, "rg-management", "pe-arm", "snet-mgmt-pe", v.ip(1, 4), rmpl_id, "ResourceManagement",
                      status="Approved", zone_group=zone, name_override=pe_id)

    # --- endpoints and targets ------------------------------------------------------------------
    def endpoints(self, v: _Vnet, n: int) -> None:
        rng, spec = self.rng, self.spec
        last_paas: tuple[dict[str, Any], str] | None = None
        made = 0
        while made < n:
            if self.services and rng.random() < spec.pls_share:
                self.pls_endpoint(v, made)
                made += 1
                continue
            defect = _pick(rng, ENDPOINT_DEFECTS) if self.bad() else None
            if defect == "duplicate" and last_paas is None:
                defect = None
            if defect == "duplicate":
                assert last_paas is not None
                target, group = last_paas
                self.defects["endpoint:duplicate"] += 1
                self.paas_endpoint(v, made, target, group, None)
                made += 1
                continue
            ttype, prefix, groups, _ = _choose(rng, PAAS)
            target = self.target(v, ttype, prefix, defect)
            count = 2 if ttype.endswith("storageAccounts") and n - made >= 2 and rng.random() < 0.3 else 1
            for g in groups[:count]:
                self.paas_endpoint(v, made, target, g, defect)
                if defect:
                    self.defects[f"endpoint:{defect}"] += 1
                if defect is None and not target.get("_gone"):
                    last_paas = (target, g)
                made += 1
                defect = None  # the second endpoint of a pair is healthy
            if target.get("_public"):
                self.defects["target:public-access"] += 1

    def _slot(self, v: _Vnet) -> tuple[str, str]:
        k, i = divmod(v.pe_count, PE_PER_SUBNET)
        v.pe_count += 1
        name = f"snet-pe-{k}"
        if name not in v.subnets:
            v.subnet(name, f"10.{v.a}.{v.b + 1 + k}.0/24", privateEndpointNetworkPolicies="Enabled")
        ip = v.ip(1 + k, 4 + i)
        v.endpoint_ips.append(ip)
        return name, ip

    def target(self, v: _Vnet, ttype: str, prefix: str, defect: str | None) -> dict[str, Any]:
        rng = self.rng
        name = f"{prefix}{v.index:04d}{rng.getrandbits(32):08x}"
        tid = f"/subscriptions/{v.sub}/resourceGroups/rg-data-{v.name[5:]}/providers/{ttype}/{name}"
        public = self.bad()
        props: dict[str, Any] = {"provisioningState": "Succeeded", "privateEndpointConnections": [],
                                 "publicNetworkAccess": "Enabled" if public else "Disabled"}
        if ttype.endswith("storageAccounts"):
            props["networkAcls"] = {"bypass": "AzureServices", "defaultAction": "Allow" if public else "Deny",
                                    "ipRules": [], "virtualNetworkRules": []}
            props["minimumTlsVersion"] = "TLS1_2"
        elif ttype.endswith("vaults"):
            props.update({"tenantId": self.tenant, "sku": {"family": "A", "name": "standard"},
                          "enableRbacAuthorization": True,
                          "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow" if public else "Deny"}})
        body: dict[str, Any] = {"id": tid, "name": name, "type": ttype, "location": LOCATION, "properties": props}
        if ttype.endswith("storageAccounts"):
            body.update({"kind": "StorageV2", "sku": {"name": "Standard_ZRS", "tier": "Standard"}})
        if public:
            body["_public"] = True
        if defect == "target-unreadable":
            self.files[f"{tid.strip('/')}.error"] = {"status": 403, "error": {
                "code": "AuthorizationFailed",
                "message": f"The client does not have authorization to perform action 'read' over scope '{tid}'."}}
        if defect in ("target-unreadable", "target-missing"):
            body["_gone"] = True
        else:
            self.targets.append(body)
        return body

    def paas_endpoint(self, v: _Vnet, n: int, target: dict[str, Any], group: str, defect: str | None) -> None:
        status = {"pending": "Pending", "rejected": "Rejected", "disconnected": "Disconnected"}.get(defect or "",
                                                                                                   "Approved")
        zone: str | None = self.zone_ids[group]
        if defect == "no-zone-group":
            zone = None
        elif defect == "wrong-zone":
            zone = self.zone_ids["file" if group != "file" else "blob"]
        subnet, ip = self._slot(v)
        self.endpoint(v, "rg-endpoints", f"pe-{target['name']}-{group.lower()}-{n}", subnet, ip, target["id"], group,
                      status=status, zone_group=zone, target=target, defect=defect)

    def pls_endpoint(self, v: _Vnet, n: int) -> None:
        pls = self.rng.choice(self.services)
        defect = _pick(self.rng, PLS_ENDPOINT_DEFECTS) if self.bad() else None
        if defect:
            self.defects[f"pls-endpoint:{defect}"] += 1
        status = {"pending": "Pending", "rejected": "Rejected", "disconnected": "Disconnected"}.get(defect or "",
                                                                                                   "Approved")
        subnet, ip = self._slot(v)
        self.endpoint(v, "rg-endpoints", f"pe-{pls['name']}-{v.name[5:]}-{n}", subnet, ip, pls["id"], None,
                      status=status, zone_group=None, target=pls, defect=defect)

    def endpoint(self, v: _Vnet, rg: str, name: str, subnet: str, ip: str, target_id: str, group: str | None, *,
                 status: str, zone_group: str | None, target: dict[str, Any] | None = None,
                 defect: str | None = None, name_override: str | None = None) -> None:
        rng = self.rng
        pe_id = name_override or f"/subscriptions/{v.sub}/resourceGroups/{rg}/providers/Microsoft.Network/" \
                                 f"privateEndpoints/{name}"
        net = pe_id.rsplit("/privateEndpoints/", 1)[0]
        manual = status != "Approved" and rng.random() < 0.5
        actions = "Recreate" if defect == "actions-required" else "None"
        conn = {"id": f"{pe_id}/{'manualP' if manual else 'p'}rivateLinkServiceConnections/{name}",
                "name": name, "type": "Microsoft.Network/privateEndpoints/privateLinkServiceConnections",
                "properties": {"provisioningState": "Succeeded", "privateLinkServiceId": target_id,
                               "groupIds": [group] if group else [],
                               "requestMessage": "Please approve" if manual else "",
                               "privateLinkServiceConnectionState": _conn_state(status, actions)}}
        nic = f"{net}/networkInterfaces/{name}.nic.{rng.getrandbits(48):012x}"
        nic_cfg = f"{nic}/ipConfigurations/privateEndpointIpConfig.{rng.getrandbits(64):016x}"
        fqdn = f"{target_id.rsplit('/', 1)[1]}.{ZONES[group][12:]}" if group else None
        body = {"id": pe_id, "name": name, "type": "Microsoft.Network/privateEndpoints", "location": LOCATION,
                "etag": f'W/"{rng.getrandbits(32):08x}"',
                "properties": {
                    "provisioningState": "Failed" if defect == "provisioning-failed" else "Succeeded",
                    "subnet": {"id": v.subnets[subnet]["id"]},
                    "privateLinkServiceConnections": [] if manual else [conn],
                    "manualPrivateLinkServiceConnections": [conn] if manual else [],
                    "networkInterfaces": [{"id": nic}],
                    "ipConfigurations": [{"name": f"{name}-ip", "properties": {
                        "privateIPAddress": ip, "groupId": group or "", "memberName": group or "default"}}],
                    "customDnsConfigs": [{"fqdn": fqdn, "ipAddresses": [ip]}] if fqdn else [],
                    "customNetworkInterfaceName": ""}}
        self.add(v.sub, "privateEndpoints", body)
        self.add(v.sub, "networkInterfaces", {
            "id": nic, "name": nic.rsplit("/", 1)[1], "type": "Microsoft.Network/networkInterfaces",
            "location": LOCATION,
            "properties": {"provisioningState": "Succeeded", "enableIPForwarding": False,
                           "privateEndpoint": {"id": pe_id},
                           "ipConfigurations": [{"id": nic_cfg, "name": nic_cfg.rsplit("/", 1)[1], "properties": {
                               "privateIPAddress": ip, "privateIPAllocationMethod": "Dynamic", "primary": True,
                               "subnet": {"id": v.subnets[subnet]["id"]}}}]}})
        v.add_ref(subnet, "ipConfigurations", nic_cfg)
        v.add_ref(subnet, "privateEndpoints", pe_id)
        if zone_group:
            zname = zone_group.rsplit("/", 1)[1]
            self.files[f"{pe_id.strip('/')}/privateDnsZoneGroups"] = {"value": [{
                "id": f"{pe_id}/privateDnsZoneGroups/default", "name": "default",
                "properties": {"provisioningState": "Succeeded", "privateDnsZoneConfigs": [{
                    "name": zname.replace(".", "-"), "properties": {
                        "privateDnsZoneId": zone_group,
                        "recordSets": [{"recordType": "A", "recordSetName": target_id.rsplit("/", 1)[1],
                                        "fqdn": f"{target_id.rsplit('/', 1)[1]}.{zname}", "ttl": 10,
                                        "ipAddresses": [ip]}]}}]}}]}
        # The provider side: absent once the owner removed it (Disconnected), otherwise the mirror image.
        if target is not None and status != "Disconnected":
            storage = target["type"].endswith("storageAccounts")
            pc_name = f"{name}.{rng.getrandbits(32):08x}"
            pc: dict[str, Any] = {
                "id": f"{target['id']}/privateEndpointConnections/{pc_name}", "name": pc_name,
                "type": f"{target['type']}/privateEndpointConnections",
                "properties": {"privateEndpoint": {"id": pe_id},
                               "privateLinkServiceConnectionState": _conn_state(status, actions, storage),
                               "provisioningState": "Ready" if target["type"].endswith("Sql/servers") else "Succeeded"}}
            if group:
                pc["properties"]["groupIds"] = [group]
            target["properties"]["privateEndpointConnections"].append(pc)
        self.counts["endpoint_status:" + status] += 1

    # --- spoke routing and filtering, once its endpoints are known --------------------------------
    def spoke_network_policy(self, v: _Vnet) -> None:
        rng = self.rng
        hub = v.hub_info
        defect = _pick(rng, SPOKE_DEFECTS) if self.bad() else None
        if defect:
            self.defects[f"spoke:{defect}"] += 1
        net = f"/subscriptions/{v.sub}/resourceGroups/{v.rg}/providers/Microsoft.Network"
        rt, nsg = f"{net}/routeTables/rt-{v.name}", f"{net}/networkSecurityGroups/nsg-{v.name}"
        hop = hub["next_hop"]
        if defect == "next-hop-unresolved":
            hv: _Vnet = hub["vnet"]
            hop = hv.ip(14, 99)
        routes = [("default-to-hub", "0.0.0.0/0", hop)]
        if defect != "default-route-only":
            if len(v.endpoint_ips) <= HOST_ROUTE_LIMIT and v.endpoint_ips and rng.random() < 0.5:
                routes += [(f"pe-{ip.replace('.', '-')}", f"{ip}/32", hop) for ip in v.endpoint_ips]
            else:
                routes.append(("spoke-via-hub", v.prefix, hop))
            # The hub's own endpoints (the management private link) are inspected too.
            routes.append(("hub-via-appliance", hub["vnet"].prefix, hop))
        subnet_names = [s for s in v.subnets if s == "snet-app" or s.startswith("snet-pe-")]
        self.add(v.sub, "routeTables", {
            "id": rt, "name": rt.rsplit("/", 1)[1], "type": "Microsoft.Network/routeTables", "location": LOCATION,
            "properties": {"provisioningState": "Succeeded", "disableBgpRoutePropagation": True,
                           "routes": [{"id": f"{rt}/routes/{n}", "name": n, "properties": {
                               "provisioningState": "Succeeded", "addressPrefix": p, "nextHopType": "VirtualAppliance",
                               "nextHopIpAddress": h}} for n, p, h in routes],
                           "subnets": [{"id": v.subnets[s]["id"]} for s in subnet_names]}})
        hub_prefix = hub["vnet"].prefix
        rules = [_rule(nsg, "allow-https-from-hub", "Inbound", "Allow", 200, hub_prefix, v.prefix, ["443"]),
                 _rule(nsg, "allow-app-to-pe", "Inbound", "Allow", 210, v.ip(0, 0) + "/24", v.prefix,
                       ["443", "1433"] if defect == "nsg-multi-port" else ["443"]),
                 _rule(nsg, "deny-internet-in", "Inbound", "Deny", 4000, "Internet", "*")]
        self.add(v.sub, "networkSecurityGroups", {
            "id": nsg, "name": nsg.rsplit("/", 1)[1], "type": "Microsoft.Network/networkSecurityGroups",
            "location": LOCATION,
            "properties": {"provisioningState": "Succeeded", "securityRules": rules,
                           "defaultSecurityRules": [_rule(nsg, *r, default=True) for r in _DEFAULT_RULES],
                           "subnets": [{"id": v.subnets[s]["id"]} for s in subnet_names]}})
        for s in subnet_names:
            props = v.subnets[s]["properties"]
            props["routeTable"] = {"id": rt}
            props["networkSecurityGroup"] = {"id": nsg}
            if s.startswith("snet-pe-") and defect == "pe-policies-disabled":
                props["privateEndpointNetworkPolicies"] = "Disabled"

    def _link_all(self, v: _Vnet) -> None:
        for zid in dict.fromkeys(self.zone_ids.values()):
            path = f"{zid.strip('/')}/virtualNetworkLinks"
            self.files.setdefault(path, {"value": []})["value"].append({
                "id": f"{zid}/virtualNetworkLinks/link-{v.name}", "name": f"link-{v.name}",
                "type": "Microsoft.Network/privateDnsZones/virtualNetworkLinks", "location": "global",
                "properties": {"provisioningState": "Succeeded", "registrationEnabled": False,
                               "virtualNetworkLinkState": "Completed", "virtualNetwork": {"id": v.id}}})
            self.counts["vnet_links"] += 1


def generate(spec: SynthSpec) -> SynthResult:
    """The tenant in memory; the same spec always gives byte-identical files."""
    result = _Builder(spec).run()
    for body in result.files.values():
        if isinstance(body, dict):
            body.pop("_public", None)
            body.pop("_gone", None)
    return result


def write_tenant(result: SynthResult, out: Path, *, recorded_at: str = RECORDED_AT, force: bool = False) -> int:
    """Write the recorded-tenant folder; refuses to write into a non-empty folder unless ``force``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise InputError(f"--out {out} is not empty (use --force to replace a tenant there)")
        if not (out / "manifest.json").exists() and not (out / "arm").is_dir():
            raise InputError(f"--out {out} is not empty and is not a recorded tenant; refusing to replace it")
        shutil.rmtree(out / "arm", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(
        {"tenant_id": result.tenant_id, "recorded_at": recorded_at, "cloud": "AzureCloud",
         "generator": "plmon synth"}, indent=1) + "\n")
    arm = out / "arm"
    made: set[Path] = set()
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    for path, body in sorted(result.files.items()):
        target = arm / (path.strip("/") + ".json")
        parent = target.parent
        if parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        target.write_text(dumps(body), encoding="utf-8")
    return len(result.files)
