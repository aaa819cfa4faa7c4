"""Network tenants for the path, NSG, DNS and public-access tests: ARM bodies from small Python calls.

A :class:`Net` gathers resources as ARM would list them; :meth:`Net.snapshot` writes a recorded tenant
(tenantkit) and runs the real collection plan and builder over it, so tests exercise the same code as
``plmon scan --from``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tenantkit import SUB, endpoint, net, provider_connection, sub_list, write_tenant

from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot

NET = net()
STORAGE = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts"


def vnet_id(name: str) -> str:
    return f"{NET}/virtualNetworks/{name}"


def subnet_id(vnet: str, name: str) -> str:
    return f"{vnet_id(vnet)}/subnets/{name}"


class Net:
    def __init__(self) -> None:
        self.lists: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.files: dict[str, Any] = {}
        self._vnets: dict[str, dict[str, Any]] = {}

    # --- networks ---
    def vnet(self, name: str, *prefixes: str) -> Net:
        body = {"id": vnet_id(name), "name": name, "type": "Microsoft.Network/virtualNetworks",
                "location": "westeurope",
                "properties": {"addressSpace": {"addressPrefixes": list(prefixes)}, "subnets": [],
                               "virtualNetworkPeerings": []}}
        self._vnets[name] = body
        self.lists["virtualNetworks"].append(body)
        return self

    def subnet(self, vnet: str, name: str, prefix: str, *, policy: str | None = None, route_table: str | None = None,
               nsg: str | None = None) -> Net:
        props: dict[str, Any] = {"addressPrefix": prefix}
        if policy is not None:
            props["privateEndpointNetworkPolicies"] = policy
        if route_table:
            props["routeTable"] = {"id": f"{NET}/routeTables/{route_table}"}
        if nsg:
            props["networkSecurityGroup"] = {"id": f"{NET}/networkSecurityGroups/{nsg}"}
        self._vnets[vnet]["properties"]["subnets"].append({"id": subnet_id(vnet, name), "name": name,
                                                           "properties": props})
        return self

    def peer(self, a: str, b: str, *, state: str = "Connected", access: bool = True,
             back_state: str | None = None, back_access: bool | None = None) -> Net:
        """Peer a <-> b; the a -> b side with ``state``/``access``, the way back likewise unless given."""
        for src, dst, st, acc in ((a, b, state, access),
                                  (b, a, back_state or state, access if back_access is None else back_access)):
            self._vnets[src]["properties"]["virtualNetworkPeerings"].append({
                "id": f"{vnet_id(src)}/virtualNetworkPeerings/{src}-to-{dst}", "name": f"{src}-to-{dst}",
                "properties": {"remoteVirtualNetwork": {"id": vnet_id(dst)}, "peeringState": st,
                               "allowVirtualNetworkAccess": acc, "allowForwardedTraffic": True,
                               "remoteAddressSpace": {"addressPrefixes":
                                                      self._vnets[dst]["properties"]["addressSpace"]["addressPrefixes"]}}})
        return self

    def route_table(self, name: str, *routes: tuple[str, str, str, str | None]) -> Net:
        """routes: (name, prefix, next hop type, next hop ip)."""
        rt = f"{NET}/routeTables/{name}"
        self.lists["routeTables"].append({"id": rt, "name": name, "type": "Microsoft.Network/routeTables",
                                          "properties": {"routes": [
                                              {"id": f"{rt}/routes/{n}", "name": n,
                                               "properties": {"addressPrefix": px, "nextHopType": t,
                                                              **({"nextHopIpAddress": ip} if ip else {})}}
                                              for n, px, t, ip in routes]}})
        return self

    # --- appliances ---
    def firewall(self, name: str, ip: str, *, snat: str | None = None, policy: str | None = None) -> Net:
        props: dict[str, Any] = {"ipConfigurations": [{"name": "cfg", "properties": {
            "privateIPAddress": ip, "subnet": {"id": subnet_id("hub", "AzureFirewallSubnet")}}}],
            "additionalProperties": {"Network.SNAT.PrivateRanges": snat} if snat is not None else {}}
        if policy:
            props["firewallPolicy"] = {"id": f"{NET}/firewallPolicies/{policy}"}
        self.lists["azureFirewalls"].append({"id": f"{NET}/azureFirewalls/{name}", "name": name,
                                             "type": "Microsoft.Network/azureFirewalls", "properties": props})
        return self

    def firewall_policy(self, name: str, ranges: list[str] | None = None, auto_learn: str | None = None) -> Net:
        snat: dict[str, Any] = {}
        if ranges is not None:
            snat["privateRanges"] = ranges
        if auto_learn is not None:
            snat["autoLearnPrivateRanges"] = auto_learn
        self.lists["firewallPolicies"].append({"id": f"{NET}/firewallPolicies/{name}", "name": name,
                                               "type": "Microsoft.Network/firewallPolicies",
                                               "properties": {"snat": snat} if snat else {}})
        return self

    def nic(self, name: str, ip: str, *, forwarding: bool = True, snat: str | None = None,
            pool: str | None = None, subnet: str | None = None) -> Net:
        cfg: dict[str, Any] = {"privateIPAddress": ip, "subnet": {"id": subnet or subnet_id("hub", "nva")}}
        if pool:
            cfg["loadBalancerBackendAddressPools"] = [{"id": pool}]
        self.lists["networkInterfaces"].append({
            "id": f"{NET}/networkInterfaces/{name}", "name": name, "type": "Microsoft.Network/networkInterfaces",
            "tags": {"plmon-snat": snat} if snat else {},
            "properties": {"enableIPForwarding": forwarding, "ipConfigurations": [
                {"id": f"{NET}/networkInterfaces/{name}/ipConfigurations/ipconfig1", "name": "ipconfig1",
                 "properties": cfg}]}})
        return self

    def load_balancer(self, name: str, frontend_ip: str, *, snat: str | None = None) -> str:
        """An internal LB with one HA-ports rule to pool 'nvas'; returns the pool id for NICs to join."""
        lb = f"{NET}/loadBalancers/{name}"
        fe, pool = f"{lb}/frontendIPConfigurations/fe", f"{lb}/backendAddressPools/nvas"
        self.lists["loadBalancers"].append({
            "id": lb, "name": name, "type": "Microsoft.Network/loadBalancers",
            "tags": {"plmon-snat": snat} if snat else {},
            "properties": {
                "frontendIPConfigurations": [{"id": fe, "name": "fe", "properties": {
                    "privateIPAddress": frontend_ip, "subnet": {"id": subnet_id("hub", "nva")}}}],
                "backendAddressPools": [{"id": pool, "name": "nvas", "properties": {}}],
                "loadBalancingRules": [{"id": f"{lb}/loadBalancingRules/ha", "name": "ha", "properties": {
                    "frontendIPConfiguration": {"id": fe}, "backendAddressPool": {"id": pool},
                    "protocol": "All", "frontendPort": 0, "backendPort": 0}}]}})
        return pool

    def nsg(self, name: str, *rules: dict[str, Any]) -> Net:
        nid = f"{NET}/networkSecurityGroups/{name}"
        self.lists["networkSecurityGroups"].append({
            "id": nid, "name": name, "type": "Microsoft.Network/networkSecurityGroups",
            "properties": {"securityRules": [{"id": f"{nid}/securityRules/{r['name']}", "name": r["name"],
                                              "properties": {k: v for k, v in r.items() if k != "name"}}
                                             for r in rules]}})
        return self

    # --- endpoints, targets, DNS ---
    def endpoint(self, name: str, target: str, *, vnet: str, subnet: str = "pe", ip: str,
                 status: str = "Approved", groups: tuple[str, ...] = ("blob",),
                 zones: list[str] | None = None) -> Net:
        """``zones``: names of private DNS zones for a zone group; None = no zone group list; [] = empty."""
        body = endpoint(name, target, status=status, group_ids=groups, subnet=subnet_id(vnet, subnet), ip=ip)
        self.lists["privateEndpoints"].append(body)
        self.files[f"{body['id'].strip('/')}/privateDnsZoneGroups"] = {"value": [] if not zones else [{
            "id": f"{body['id']}/privateDnsZoneGroups/default", "name": "default",
            "properties": {"privateDnsZoneConfigs": [
                {"name": z.replace(".", "-"), "properties": {"privateDnsZoneId": f"{NET}/privateDnsZones/{z}"}}
                for z in zones]}}]}
        return self

    def storage(self, name: str, *endpoints: str, public: Any = "Enabled", status: str = "Approved",
                type_: str = "Microsoft.Storage/storageAccounts", provider: str = "Microsoft.Storage",
                missing: bool = False, extra: dict[str, Any] | None = None) -> str:
        """A PaaS target (any type) with provider-side connections; returns its id."""
        tid = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/{type_}/{name}"
        props: dict[str, Any] = {"privateEndpointConnections": [
            provider_connection(tid, f"{NET}/privateEndpoints/{e}", status=status) for e in endpoints],
            "networkAcls": {"defaultAction": "Deny"}, **(extra or {})}
        if public is not ...:
            props["publicNetworkAccess"] = public
        if missing:
            self.files[tid.strip("/") + ".error"] = {"error": {"code": "AuthorizationFailed", "message": "no"},
                                                     "status": 403}
        else:
            self.files[tid.strip("/")] = {"id": tid, "name": name, "type": type_, "properties": props}
        return tid

    def zone(self, name: str, *vnets: str) -> Net:
        zid = f"{NET}/privateDnsZones/{name}"
        self.lists["privateDnsZones"].append({"id": zid, "name": name, "type": "Microsoft.Network/privateDnsZones"})
        self.files[f"{zid.strip('/')}/virtualNetworkLinks"] = {"value": [
            {"id": f"{zid}/virtualNetworkLinks/{v}", "name": v,
             "properties": {"virtualNetwork": {"id": vnet_id(v)}, "registrationEnabled": False}} for v in vnets]}
        self.files[f"{zid.strip('/')}/CNAME"] = {"value": []}
        return self

    # --- output ---
    def write(self, folder: Path) -> Path:
        files = {sub_list(kind): {"value": items} for kind, items in self.lists.items()}
        files.update(self.files)
        return write_tenant(folder, files)

    def snapshot(self, folder: Path) -> Snapshot:
        self.write(folder)
        tenant = RecordedTenant(folder)
        return build_snapshot(collect(tenant, manifest=tenant.manifest, workers=1))


def hub_and_spokes(*, spoke_policy: str | None = None, spoke2_policy: str | None = "Enabled") -> Net:
    """Hub 10.0/16 peered with spoke1 10.1/16 and spoke2 10.2/16; each spoke has subnets 'app' and 'pe'."""
    n = Net()
    n.vnet("hub", "10.0.0.0/16").subnet("hub", "AzureFirewallSubnet", "10.0.1.0/24") \
        .subnet("hub", "nva", "10.0.2.0/24").subnet("hub", "jump", "10.0.4.0/24")
    n.vnet("spoke1", "10.1.0.0/16").subnet("spoke1", "app", "10.1.0.0/24", route_table="rt-spoke1") \
        .subnet("spoke1", "pe", "10.1.1.0/24", policy=spoke_policy)
    n.vnet("spoke2", "10.2.0.0/16").subnet("spoke2", "app", "10.2.0.0/24", route_table="rt-spoke2") \
        .subnet("spoke2", "pe", "10.2.1.0/24", policy=spoke2_policy)
    n.peer("hub", "spoke1").peer("hub", "spoke2")
    return n


def appliance_tenant() -> Net:
    """Hub and spokes with every kind of appliance, firewall SNAT model and UDR replacement rule: the route
    checks' catalogue tenant (tests/checks/test_route.py) and one of the route engine's differential tenants."""
    n = hub_and_spokes()  # spoke1 pe subnet policy absent (Disabled), spoke2 Enabled
    for name, prefix, rt in (("tools", "10.0.5.0/24", "rt-tools"), ("ops", "10.0.6.0/24", "rt-ops")):
        n.subnet("hub", name, prefix, route_table=rt)
    n.subnet("hub", "jump2", "10.0.7.0/24", route_table="rt-hub")
    # two firewalls: classic without private ranges (IANA: no SNAT to 10/8), policy with always-SNAT
    n.firewall("fw-classic", "10.0.1.4").firewall("fw-policy", "10.0.1.5", policy="pol", snat="0.0.0.0/0")
    n.firewall_policy("pol", ["255.255.255.255/32"])
    # third-party appliances
    n.nic("nva-untagged", "10.0.2.4").nic("nva-never", "10.0.2.6", snat="never")
    pool = n.load_balancer("ilb-fwd", "10.0.2.10")
    n.nic("nva-fwd-off", "10.0.2.11", snat="always", forwarding=False, pool=pool)
    pool2 = n.load_balancer("ilb-never", "10.0.2.20", snat="never")
    n.nic("nva-behind", "10.0.2.21", pool=pool2)
    pool3 = n.load_balancer("ilb-unknown", "10.0.2.30")
    n.nic("nva-behind-3", "10.0.2.31", pool=pool3)
    VA = "VirtualAppliance"
    n.route_table("rt-spoke1", ("default-to-fw", "0.0.0.0/0", VA, "10.0.1.4"))      # bypassed
    n.route_table("rt-spoke2", ("spoke-to-fw", "10.2.0.0/16", VA, "10.0.1.5"))      # replaces (Enabled, /16)
    n.route_table("rt-hub", ("pe1", "10.1.1.4/32", VA, "10.0.1.4"), ("pe2", "10.2.1.4/32", VA, "10.0.1.5"))
    n.route_table("rt-ops", ("pe1", "10.1.1.4/32", VA, "10.0.9.9"), ("pe2", "10.2.1.4/32", VA, "10.0.2.6"))
    n.route_table("rt-tools", ("pe1", "10.1.1.4/32", VA, "10.0.2.20"), ("pe2", "10.2.1.4/32", VA, "10.0.2.30"))
    n.route_table("rt-nva", ("pe1", "10.1.1.4/32", VA, "10.0.2.4"), ("pe2", "10.2.1.4/32", VA, "10.0.2.10"))
    n.subnet("hub", "apps", "10.0.8.0/24", route_table="rt-nva")
    n.endpoint("pe1", n.storage("st1", "pe1"), vnet="spoke1", ip="10.1.1.4", zones=[])
    n.endpoint("pe2", n.storage("st2", "pe2"), vnet="spoke2", ip="10.2.1.4", zones=[])
    return n
