"""Private endpoints behind Azure Virtual WAN hubs: routing intent, secured hubs and SNAT across hubs.

The catalogue extension is ``checks-vwan.md``. A hub is *secured for private traffic* when a routing policy of its
routing intent names ``PrivateTraffic``; that policy's next hop (an ``AZFW_Hub`` Azure Firewall, or an NVA / SaaS
resource in the hub) is the hub's *private next hop*, and its *private traffic prefixes* are the RFC 1918 aggregates
plus every static route of the hub's ``defaultRouteTable`` to that next hop (how-to-routing-policies, "Static routes
in defaultRouteTable"). Traffic between the connections of a hub and between hubs goes through it; an endpoint's
own ``/32`` still reaches its own network and directly peered networks (the route engine's model).

:class:`HubView` is that model of one hub, decided once per snapshot (:func:`hub_views`, through the units' memo so
the daemon drops it only when a hub, a WAN or a next hop changes), with its prefixes compiled to integers. The hub
connection's platform-made peering (``RemoteVnetToHubPeering_*``, remote address space = the hub's
``addressPrefix``) is recognised structurally (:func:`is_hub_peering`) and never judged as a client network.
What plmon could not read (a hub child list, a next hop) is never a pass: the collection recorded the gap, and
``vwan.routing-unknown`` names what cannot be modelled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.paths import (
    POLICIES_HONOURING_UDRS,
    _compile,
    _holds,
    parse_ip,
    peering_counts,
    replaces_endpoint_route,
)
from plmon.checks.registry import NIST_800_53, Evidences, check
from plmon.checks.remedy import alternative, az, lines, note
from plmon.checks.snat import SNAT_TAG, SnatVerdict, firewall_verdicts
from plmon.checks.units import each, shared
from plmon.monitor.model.arm_id import ArmId, parse_id
from plmon.monitor.model.snapshot import (
    Firewall,
    NetworkVirtualAppliance,
    Peering,
    PrivateEndpoint,
    RoutingPolicy,
    Snapshot,
    Subnet,
    VirtualHub,
    VirtualNetwork,
    lower,
)

__all__ = ["RFC1918", "HubView", "WanModel", "explain_hub_hop", "hub_next_hops", "hub_snat_issues", "hub_views",
           "is_hub_peering"]

ROUTING = "https://learn.microsoft.com/azure/virtual-wan/how-to-routing-policies"
PE_INSPECT = "https://learn.microsoft.com/azure/firewall-manager/private-link-inspection-secure-virtual-hub"
FW_SNAT = "https://learn.microsoft.com/azure/firewall/snat-private-range"
PE_LIMITS = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview#limitations"

RFC1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
_BUILT_IN_TABLES = ("defaultroutetable", "noneroutetable")
_BUILT_IN_LABELS = ("default", "none")
# What the hub model reads: a check built on it declares these (with what it reads of the endpoints' side).
HUB_READS = ("virtual_hubs", "virtual_wans", "firewalls", "nvas")
_ENDPOINT_READS = ("private_endpoints", "subnets", "virtual_networks", "nics")
_AUTO_LEARN_NOTE = ("Auto-learn of SNAT private ranges is not available on secured virtual hubs (snat-private-range): "
                    "only the configured private ranges count")


@dataclass(frozen=True, slots=True, eq=False)
class HubView:
    """One hub as the vwan rules see it (see the module docstring). Compared (and hashed) by identity: one per hub
    per model."""

    hub: VirtualHub
    wan_key: str | None
    networks: tuple[str, ...]                 # keys of the connected networks
    policy: RoutingPolicy | None              # the private routing policy
    next_hop: Firewall | NetworkVirtualAppliance | None
    prefixes: tuple[str, ...]                 # private traffic prefixes, as written
    compiled: tuple[tuple[int, int, int, int], ...]
    unknown: str = ""                         # why its routing cannot be modelled ("" = it can)
    unread: tuple[str, ...] = ()              # child lists plmon could not read

    @property
    def secured(self) -> bool:
        """Secured for private traffic, modelled and fully read: what the vwan rules judge on."""
        return self.policy is not None and self.next_hop is not None and not self.unknown and not self.unread

    def covers(self, ip_text: str) -> bool:
        """Whether a private traffic prefix holds the IP (compiled integer prefixes)."""
        ip = parse_ip(ip_text)
        if ip is None:
            return False
        value, bits = int(ip), ip.max_prefixlen
        return any(_holds(c, ip.version, value, bits) for c in self.compiled)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hub": self.hub.id.raw}
        if self.policy is not None:
            out["routing_policy"] = self.policy.name
            out["next_hop"] = self.policy.next_hop.raw if self.policy.next_hop else None
        if self.prefixes:
            out["private_traffic_prefixes"] = list(self.prefixes)
        return out


@dataclass(frozen=True, slots=True)
class WanModel:
    """Every hub's view, and the joins the rules need: hubs by connected network and by virtual WAN."""

    views: Mapping[str, HubView] = field(default_factory=dict)
    by_network: Mapping[str, tuple[HubView, ...]] = field(default_factory=dict)
    by_wan: Mapping[str, tuple[HubView, ...]] = field(default_factory=dict)
    hub_prefixes: frozenset[str] = frozenset()


_EMPTY = WanModel()


def _hub_view(snap: Snapshot, hub: VirtualHub) -> HubView:
    unread = tuple(name for name, value in (("hubVirtualNetworkConnections", hub.connections),
                                             ("routingIntent", hub.routing_policies),
                                             ("hubRouteTables", hub.route_tables)) if value is None)
    networks = tuple(dict.fromkeys(c.remote_vnet_id.key for c in hub.connections or () if c.remote_vnet_id))
    policy = next((p for p in hub.routing_policies or () if p.private), None)
    problems: list[str] = []
    custom = [t.name for t in hub.route_tables or () if t.name.lower() not in _BUILT_IN_TABLES]
    if custom:
        problems.append(f"custom hub route tables ({', '.join(sorted(custom))}): routing intent cannot coexist "
                        "with them, so the hub's routing is custom")
    for c in hub.connections or ():
        others = [t.name for t in (c.associated_route_table_id, *c.propagated_route_table_ids)
                  if t is not None and t.name.lower() not in _BUILT_IN_TABLES]
        labels = [x for x in c.propagated_labels if x.lower() not in _BUILT_IN_LABELS]
        if others or labels:
            problems.append(f"connection {c.name} associates with or propagates to "
                            f"{', '.join(sorted({*others, *labels}))}")
    next_hop: Firewall | NetworkVirtualAppliance | None = None
    prefixes: tuple[str, ...] = ()
    default = next((t for t in hub.route_tables or () if t.name.lower() == "defaultroutetable"), None)
    if policy is not None:
        hop = policy.next_hop
        if hop is not None:
            next_hop = snap.firewalls.get(hop.key) or snap.nvas.get(hop.key)
        if next_hop is None:
            problems.append(f"the next hop of routing policy {policy.name} "
                            f"({hop.raw if hop else 'none'}) could not be read")
        extra = [d for r in (default.routes if default else ()) if hop is not None and r.next_hop
                 and parse_id(r.next_hop).key == hop.key for d in r.destinations]
        prefixes = tuple(dict.fromkeys([*RFC1918, *extra]))
    elif not hub.routing_policies and (hub.firewall_id is not None or any(
            r.next_hop_type and lower(r.next_hop_type) == "resourceid" for r in (default.routes if default else ()))):
        # No routing intent at all (an Internet-only intent leaves private traffic direct by design: no finding).
        problems.append("a secured hub without routing intent (Firewall Manager's static routes in "
                        "defaultRouteTable): not modelled")
    compiled = tuple(c for c in (_compile(px) for px in prefixes) if c is not None)
    return HubView(hub, hub.wan_id.key if hub.wan_id else None, networks, policy, next_hop, prefixes, compiled,
                   "; ".join(problems), unread)


def _model(snap: Snapshot) -> WanModel:
    views = {k: _hub_view(snap, h) for k, h in snap.virtual_hubs.items()}
    by_network: dict[str, list[HubView]] = defaultdict(list)
    by_wan: dict[str, list[HubView]] = defaultdict(list)
    for v in views.values():
        for n in v.networks:
            by_network[n].append(v)
        if v.wan_key:
            by_wan[v.wan_key].append(v)
    prefixes = frozenset(p.strip().lower() for v in views.values() if (p := v.hub.address_prefix))
    return WanModel(views, {k: tuple(x) for k, x in by_network.items()}, {k: tuple(x) for k, x in by_wan.items()},
                    prefixes)


def hub_views(snap: Snapshot) -> WanModel:
    """The hub model of ``snap``, decided once (a memo entry of the units, which records what it read)."""
    if not snap.virtual_hubs:
        return _EMPTY
    return shared(("vwan.model",), lambda: _model(snap))


def _read_hubs(snap: Snapshot, views: Iterable[HubView]) -> None:
    """Read the hubs a judgement rests on inside the subject's frame: the daemon then re-judges the subject when one
    changes, and a pass is never claimed for a subject whose hub lies under a coverage gap (an unread routing intent
    or connection list: checks/passed.py)."""
    for v in views:
        snap.virtual_hubs.get(v.hub.key)


def _membership_unknown(snap: Snapshot, model: WanModel, vnet_key: str) -> None:
    """A network with a hub connection's platform peering that no hub read connects: its hub could not be read (a
    list that failed, a hub outside the scan). Its subject then reads the whole hub collection, so no pass is claimed
    while a hub read is a coverage gap (checks/passed.py), and the daemon re-judges it when a hub appears."""
    if model.by_network.get(vnet_key):
        return
    vnet = snap.virtual_networks.get(vnet_key)
    for p in vnet.peerings if vnet else ():
        if p.name.lower().startswith("remotevnettohubpeering_") or is_hub_peering(p, model.hub_prefixes):
            len(snap.virtual_hubs)   # a read of the whole collection (checks/units.py notes it as such)
            return


def is_hub_peering(p: Peering, hub_prefixes: frozenset[str]) -> bool:
    """A hub connection's platform-made peering: its remote address space is exactly a hub's ``addressPrefix``."""
    remote = p.remote_address_prefixes
    return len(remote) == 1 and remote[0].strip().lower() in hub_prefixes


def _endpoints_of_network(snap: Snapshot, vnet_key: str) -> list[tuple[PrivateEndpoint, Subnet, str]]:
    """(endpoint, its subnet, IP) of every endpoint IP in the network, in subnet then endpoint order."""
    vnet = snap.virtual_networks.get(vnet_key)
    out: list[tuple[PrivateEndpoint, Subnet, str]] = []
    for sid in vnet.subnet_ids if vnet else ():
        subnet = snap.subnets.get(sid.key)
        if subnet is None:
            continue
        for ek in snap.endpoints_by_subnet.get(sid.key, ()):
            pe = snap.private_endpoints.get(ek)
            if pe is not None:
                out.extend((pe, subnet, ip) for ip in pe.ip_addresses)
    return out


def _wan_endpoints(snap: Snapshot, model: WanModel, view: HubView
                   ) -> tuple[list[tuple[PrivateEndpoint, Subnet, str, HubView]], list[str]]:
    """Every endpoint IP in a network connected to a hub of ``view``'s WAN (with the hub connecting it), and the hubs
    of that WAN whose connections were not read (their endpoints are not judged, never passed)."""
    hubs = model.by_wan.get(view.wan_key, (view,)) if view.wan_key else (view,)
    out: list[tuple[PrivateEndpoint, Subnet, str, HubView]] = []
    seen: set[str] = set()
    unread = [h.hub.id.raw for h in hubs if "hubVirtualNetworkConnections" in h.unread]
    _read_hubs(snap, hubs)
    for h in hubs:
        for n in h.networks:
            if n not in seen:
                seen.add(n)
                out.extend((pe, sn, ip, h) for pe, sn, ip in _endpoints_of_network(snap, n))
    return out, unread


def _rg_name(rid: ArmId) -> tuple[str, str]:
    return rid.resource_group or "<resource-group>", rid.name


def _default_table_id(hub: VirtualHub) -> ArmId:
    return parse_id(f"{hub.id.raw}/hubRouteTables/defaultRouteTable")


# --- vwan.endpoint-subnet-policy-bypass ----------------------------------------------------------------------------

@check(
    id="vwan.endpoint-subnet-policy-bypass",
    title="Endpoint subnet behind a secured Virtual WAN hub lacks Route Table network policies",
    severity=Severity.HIGH,
    rationale="Behind a hub with a private routing policy, traffic from branches to private endpoints skips the "
              "hub's next hop unless the endpoint subnet has Route Table network policies, while the endpoints' "
              "replies go through it: the path is asymmetric and can break. /32 private prefixes do not restore "
              "symmetry.",
    remediation="Enable Route Table network policies on the endpoint subnet (privateEndpointNetworkPolicies "
                "RouteTableEnabled, or Enabled to keep NSGs too).",
    references=(ROUTING, PE_INSPECT), controls=("MCSB NS-3",),
    reads=(*HUB_READS, *_ENDPOINT_READS), over="subnets",
    frameworks=(Evidences(NIST_800_53, "SC-7", "SC-7 a: branch traffic to the endpoints skips the hub's "
                          "inspection at the managed interface"),),
)
def endpoint_subnet_policy_bypass(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    model = hub_views(snap)
    if not model.by_network:
        return
    for subnet in each(snap, "subnets"):
        ends = snap.endpoints_by_subnet.get(subnet.key)
        if subnet.vnet_id is None or not ends:
            continue
        connected = model.by_network.get(subnet.vnet_id.key, ())
        _read_hubs(snap, connected)   # (first: an endpoint subnet whose hub is unread is never a pass, whatever else)
        _membership_unknown(snap, model, subnet.vnet_id.key)
        if lower(subnet.pe_policies) in POLICIES_HONOURING_UDRS:
            continue
        hubs = [v for v in connected if v.secured]
        if not hubs:
            continue
        endpoints = [pe.id.raw for k in ends if (pe := snap.private_endpoints.get(k)) is not None]
        target = "Enabled" if lower(subnet.pe_policies) == "networksecuritygroupenabled" else "RouteTableEnabled"
        names = ", ".join(v.hub.name for v in hubs)
        yield Issue(
            subnet.id,
            f"Subnet {subnet.name} holds {len(endpoints)} private endpoint(s) in a network connected to secured "
            f"hub {names}, but privateEndpointNetworkPolicies is {subnet.pe_policies}: branch traffic to them "
            "skips the hub's private next hop while their replies go through it.",
            {"subnet": subnet.id.raw, "privateEndpointNetworkPolicies": subnet.private_endpoint_network_policies,
             "effective": subnet.pe_policies, "hubs": [v.describe() for v in hubs], "endpoints": endpoints},
            az("network", "vnet", "subnet", "update", "--ids", subnet.id.raw,
               "--private-endpoint-network-policies", target))


# --- vwan.private-prefixes-miss-endpoint ---------------------------------------------------------------------------

def _holding_space(snap: Snapshot, subnet: Subnet, ip: str) -> str:
    """The endpoint network's address-space entry that holds the IP (the prefix to add), else ``<ip>/32``."""
    vnet = snap.virtual_networks.get(subnet.vnet_id.key) if subnet.vnet_id else None
    addr = parse_ip(ip)
    for px in vnet.address_prefixes if vnet else ():
        c = _compile(px)
        if addr is not None and c is not None and _holds(c, addr.version, int(addr), addr.max_prefixlen):
            return px
    return f"{ip}/32"


@check(
    id="vwan.private-prefixes-miss-endpoint",
    title="Secured Virtual WAN hub's private traffic prefixes do not cover a private endpoint",
    severity=Severity.HIGH,
    rationale="Routing intent steers only the RFC 1918 aggregates and the prefixes added to each hub; an endpoint "
              "outside them (RFC 6598 or registered space used privately) is not sent to the hub's private next "
              "hop, and a prefix added in one hub does not propagate to the others.",
    remediation="Add the endpoint's prefix to the hub's private traffic prefixes (a static route in "
                "defaultRouteTable to the private next hop), in every hub that has routing intent.",
    references=(ROUTING,), controls=("MCSB NS-3",),
    reads=(*HUB_READS, *_ENDPOINT_READS), over="virtual_hubs",
    frameworks=(Evidences(NIST_800_53, "SC-7", "SC-7 a: traffic to the endpoint is not steered to the hub's "
                          "inspection point"),),
)
def private_prefixes_miss_endpoint(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    model = hub_views(snap)
    if not model.views:
        return
    for hub in each(snap, "virtual_hubs"):
        view = model.views.get(hub.key)
        if view is None or not view.secured:
            continue
        rows, unread = _wan_endpoints(snap, model, view)
        missed = [(pe, sn, ip, h) for pe, sn, ip, h in rows if parse_ip(ip) is not None and not view.covers(ip)]
        if not missed:
            continue
        table = _default_table_id(hub)
        rg, name = _rg_name(hub.id)
        hop = view.policy.next_hop.raw if view.policy and view.policy.next_hop else "<private-next-hop-id>"
        spaces = sorted({_holding_space(snap, sn, ip) for _, sn, ip, _h in missed})
        evidence: dict[str, Any] = {
            **view.describe(),
            "endpoints": [{"endpoint": pe.id.raw, "ip": ip, "connected_to": h.hub.id.raw} for pe, _s, ip, h in missed],
        }
        if unread:
            evidence["not_judged"] = {"hubs_with_unread_connections": unread}
        fix = az("network", "vhub", "route-table", "route", "add", "--resource-group", rg, "--vhub-name", name,
                 "--name", "defaultRouteTable", "--route-name", "private_traffic", "--destination-type", "CIDR",
                 "--destinations", *spaces, "--next-hop-type", "ResourceId", "--next-hop", hop,
                 comment="or add the prefixes as private traffic prefixes of the hub's routing intent (portal)")
        yield Issue(
            table,
            f"Hub {hub.name} routes private traffic to its next hop only for {', '.join(view.prefixes)}; private "
            f"endpoint IP(s) {', '.join(sorted({ip for _, _s, ip, _h in missed}))} in its virtual WAN lie outside "
            "them, so traffic to them is not steered to the private next hop.",
            evidence, lines(fix, note("repeat in every hub of the virtual WAN that has routing intent: "
                                      "private prefixes do not propagate between hubs")))


# --- vwan.peering-bypasses-hub-firewall ----------------------------------------------------------------------------

def _udr_handles(snap: Snapshot, subnet: Subnet, ip: str, policy: str | None, vnet_len: int | None) -> bool | None:
    """Whether the client subnet's route table has a UDR that replaces the endpoint's /32 or a VirtualAppliance
    route covering the IP (those paths are the route engine's: route.udr-bypassed and friends). None: its route
    table was not read."""
    if subnet.route_table_id is None:
        return False
    table = snap.route_tables.get(subnet.route_table_id.key)
    if table is None:
        return None
    addr = parse_ip(ip)
    if addr is None:
        return False
    for r in table.routes:
        c = _compile(r.address_prefix)
        if c is None or not _holds(c, addr.version, int(addr), addr.max_prefixlen):
            continue
        if lower(r.next_hop_type) == "virtualappliance":
            return True
        if replaces_endpoint_route(c[2], policy=policy, vnet_prefix_length=vnet_len, max_length=c[3])[0]:
            return True
    return False


def _vnet_len(vnet: VirtualNetwork, ip: str) -> int | None:
    addr = parse_ip(ip)
    for px in vnet.address_prefixes:
        c = _compile(px)
        if addr is not None and c is not None and _holds(c, addr.version, int(addr), addr.max_prefixlen):
            return c[2]
    return None


@check(
    id="vwan.peering-bypasses-hub-firewall",
    title="Direct peering beside a secured Virtual WAN hub connection bypasses the hub's next hop",
    severity=Severity.HIGH,
    rationale="A private endpoint's /32 and a peer's address space are longer than routing intent's aggregates: a "
              "client in a network directly peered with the endpoint's network reaches the endpoint over the "
              "peering and skips the hub's private next hop, unless a UDR steers it.",
    remediation="Remove the direct peering and rely on the hub connection, or give the client subnets a UDR to "
                "the hub's private next hop that replaces the endpoint's /32.",
    references=(ROUTING, PE_INSPECT), controls=("MCSB NS-3",),
    reads=(*HUB_READS, *_ENDPOINT_READS, "route_tables"), over="virtual_networks",
    frameworks=(Evidences(NIST_800_53, "SC-7", "SC-7 a: traffic to the endpoints bypasses the hub's inspection"),),
)
def peering_bypasses_hub_firewall(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    model = hub_views(snap)
    if not model.by_network:
        return
    for vnet in each(snap, "virtual_networks"):
        connected = model.by_network.get(vnet.key, ())
        _read_hubs(snap, connected)
        _membership_unknown(snap, model, vnet.key)
        hubs = [v for v in connected if v.secured]
        if not hubs:
            continue
        endpoints = _endpoints_of_network(snap, vnet.key)
        if not endpoints:
            continue
        for peering in vnet.peerings:
            if peering.remote_vnet_id is None or not peering_counts(peering) or \
                    is_hub_peering(peering, model.hub_prefixes):
                continue
            remote = snap.virtual_networks.get(peering.remote_vnet_id.key)
            if remote is None:
                continue   # not read: the collection's gap says so; nothing to judge here
            clients: dict[str, list[str]] = {}
            for sid in remote.subnet_ids:
                subnet = snap.subnets.get(sid.key)
                if subnet is None:
                    continue
                for _pe, pe_subnet, ip in endpoints:
                    handled = _udr_handles(snap, subnet, ip, pe_subnet.private_endpoint_network_policies,
                                           _vnet_len(vnet, ip))
                    if handled is False:
                        clients.setdefault(subnet.id.raw, []).append(ip)
            if not clients:
                continue
            ips = sorted({ip for v in clients.values() for ip in v})
            rg, name = _rg_name(vnet.id)
            hop = next((v.next_hop for v in hubs if isinstance(v.next_hop, Firewall)), None)
            hop_ip = hop.private_ips[0] if hop is not None and hop.private_ips else "<hub-next-hop-private-ip>"
            yield Issue(
                peering.id,
                f"Network {vnet.name} is connected to secured hub {', '.join(v.hub.name for v in hubs)} but is also "
                f"peered with {remote.name}: {len(clients)} client subnet(s) there reach private endpoint IP(s) "
                f"{', '.join(ips)} over the peering, skipping the hub's private next hop.",
                {"peering": peering.id.raw, "remote_network": remote.id.raw, "hubs": [v.describe() for v in hubs],
                 "client_subnets": [{"subnet": k, "endpoint_ips": sorted(set(v))} for k, v in sorted(clients.items())],
                 "endpoints": sorted({pe.id.raw for pe, _s, _ip in endpoints})},
                lines(az("network", "vnet", "peering", "delete", "--resource-group", rg, "--vnet-name", name,
                         "--name", peering.name, comment="rely on the hub connection instead"),
                      alternative(az("network", "route-table", "route", "create", "--resource-group",
                                     "<client-route-table-rg>", "--route-table-name", "<client-route-table>",
                                     "--name", "pe-via-hub", "--address-prefix", f"{ips[0]}/32",
                                     "--next-hop-type", "VirtualAppliance", "--next-hop-ip-address", hop_ip))))


# --- vwan.routing-unknown -----------------------------------------------------------------------------------------

@check(
    id="vwan.routing-unknown", title="Virtual WAN routing of a hub connecting private endpoints cannot be modelled",
    severity=Severity.INFO,
    rationale="Custom hub route tables, connections that associate with or propagate to them, a private next hop "
              "plmon cannot read, or a secured hub without routing intent: the vwan rules cannot judge the hub's "
              "endpoints, which is never a pass.",
    remediation="Review the hub's routing by hand (effective routes in the portal), or move it to routing intent.",
    references=(ROUTING,), controls=("MCSB NS-3",),
    reads=(*HUB_READS, *_ENDPOINT_READS), over="virtual_hubs",
    frameworks=(Evidences(NIST_800_53, "CA-7", "CA-7: the hub's paths to endpoints cannot be judged; reported, "
                          "never passed"),),
)
def routing_unknown(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    model = hub_views(snap)
    if not model.views:
        return
    for hub in each(snap, "virtual_hubs"):
        view = model.views.get(hub.key)
        if view is None or not view.unknown or view.unread:
            continue
        endpoints = sorted({pe.id.raw for n in view.networks for pe, _s, _ip in _endpoints_of_network(snap, n)})
        if not endpoints:
            continue
        rg, name = _rg_name(hub.id)
        yield Issue(hub.id, f"The routing of hub {hub.name} cannot be modelled ({view.unknown}); its private "
                    f"endpoints ({len(endpoints)}) are not judged by the vwan rules.",
                    {**view.describe(), "why": view.unknown, "endpoints": endpoints},
                    az("network", "vhub", "routing-intent", "list", "--resource-group", rg, "--vhub", name))


# --- route.nva-missing-snat / route.nva-snat-unknown on hub next hops ----------------------------------------------

def hub_next_hops(snap: Snapshot) -> frozenset[str]:
    """Keys of the resources that are some secured hub's private next hop (judged by :func:`hub_snat_issues`, one
    finding per next hop, whether routing intent or a spoke UDR reaches it)."""
    model = hub_views(snap)
    return frozenset(v.next_hop.key for v in model.views.values() if v.secured and v.next_hop is not None)


def _nva_verdict(nva: NetworkVirtualAppliance) -> SnatVerdict:
    value = nva.tag(SNAT_TAG)
    source = f"network virtual appliance {nva.id.raw} tag {SNAT_TAG}"
    if value is not None and value.strip().lower() in ("always", "never"):
        return SnatVerdict(value.strip().lower() == "always", "tag", source, raw=value,
                           reason=f"the appliance declares {SNAT_TAG}={value}")
    if value is not None:
        return SnatVerdict(None, "tag", source, raw=value, reason=f"{SNAT_TAG}={value!r} is neither 'always' nor "
                           "'never'")
    return SnatVerdict(None, "tag", "none", reason=f"an NVA or SaaS resource in the hub has no NIC in your scope; "
                       f"it has no {SNAT_TAG} tag ('always' or 'never')")


def _hub_verdict_dict(v: SnatVerdict, hub_firewall: bool) -> dict[str, Any]:
    d = v.to_dict()
    if hub_firewall:   # never claim auto-learned ranges on a secured hub
        d.pop("autoLearnPrivateRanges", None)
        warns = [w for w in d.get("warnings", []) if "autoLearn" not in w]
        d["warnings"] = [*warns, _AUTO_LEARN_NOTE]
    return d


def hub_snat_issues(snap: Snapshot, want: bool | None) -> Iterator[Issue]:
    """The hub part of route.nva-missing-snat (``want`` False) and route.nva-snat-unknown (None): each secured hub's
    private next hop judged for every endpoint IP in a network connected to a hub of the same virtual WAN that lies
    inside that hub's private traffic prefixes. One subject per next hop (firewall or NVA record)."""
    model = hub_views(snap)
    hops = hub_next_hops(snap) if model.views else frozenset()
    if not hops:
        return
    for record in each(snap, "firewalls", "nvas"):
        if record.key not in hops:
            continue
        views = [v for v in model.views.values() if v.secured and v.next_hop is not None
                 and v.next_hop.key == record.key]
        _read_hubs(snap, views)
        rows: list[tuple[PrivateEndpoint, str, HubView, SnatVerdict]] = []
        seen: set[tuple[str, str]] = set()
        for view in views:
            for pe, _sn, ip, _h in _wan_endpoints(snap, model, view)[0]:
                if (pe.key, ip) in seen or not view.covers(ip):
                    continue
                seen.add((pe.key, ip))
                if isinstance(record, Firewall):
                    verdicts = firewall_verdicts(snap, record)
                    if verdicts.snats(ip) is not want:
                        continue
                    verdict = verdicts.of(ip)
                    if verdict.snats is None and record.firewall_policy_id is not None and \
                            record.firewall_policy_id.key not in snap.firewall_policies:
                        continue   # its policy was not read: a coverage gap, not this finding
                else:
                    verdict = _nva_verdict(record)
                    if verdict.snats is not want:
                        continue
                rows.append((pe, ip, view, verdict))
        if not rows:
            continue
        fw = isinstance(record, Firewall)
        ips = sorted({ip for _pe, ip, _v, _verdict in rows})
        hubs = ", ".join(dict.fromkeys(v.hub.name for _pe, _ip, v, _x in rows))
        first = rows[0][3]
        if want is False:
            msg = (f"{record.name} is the private next hop of hub {hubs} (routing intent) for private endpoint IP(s) "
                   f"{', '.join(ips)} but does not SNAT that traffic: replies return directly and the flow is "
                   "asymmetric.")
        else:
            msg = (f"{record.name} is the private next hop of hub {hubs} (routing intent) for private endpoint IP(s) "
                   f"{', '.join(ips)}; whether it SNATs is unknown ({first.reason}).")
        evidence: dict[str, Any] = {
            "appliance": record.id.raw, "snat_model": first.model,
            "hubs": [v.describe() for v in dict.fromkeys(v for _pe, _ip, v, _x in rows)],
            "endpoints": [{"endpoint": pe.id.raw, "ip": ip, "snat": _hub_verdict_dict(v, fw)}
                          for pe, ip, _h, v in rows],
        }
        if fw:
            evidence["note"] = "Azure Firewall application rules always SNAT; this judges network-rule traffic."
        yield Issue(record.id, msg, evidence, _fix(record, first))


def _fix(record: Firewall | NetworkVirtualAppliance, verdict: SnatVerdict) -> str:
    if isinstance(record, Firewall) and record.firewall_policy_id is not None:
        return az("network", "firewall", "policy", "update", "--ids", record.firewall_policy_id.raw,
                  "--private-ranges", "255.255.255.255/32",
                  comment="always SNAT (or list private ranges that exclude the endpoint IPs)")
    if isinstance(record, Firewall):
        return az("network", "firewall", "update", "--ids", record.id.raw, "--private-ranges", "255.255.255.255/32",
                  comment="always SNAT (or list private ranges that exclude the endpoint IPs)")
    return lines(note("Configure source NAT on the appliance for traffic to the endpoint IPs, then record it:"),
                 az("resource", "tag", "--ids", record.id.raw, "--is-incremental", "--tags", f"{SNAT_TAG}=always"))


# --- plmon explain-path: the hub hop --------------------------------------------------------------------------------

def _endpoint_at(snap: Snapshot, ip: str) -> PrivateEndpoint | None:
    for pe in snap.private_endpoints.values():
        if ip in pe.ip_addresses:
            return pe
    return None


def _peered(snap: Snapshot, a: str, b: str, hub_prefixes: frozenset[str]) -> bool:
    """Whether networks ``a`` and ``b`` are directly peered (a counting peering other than a hub connection's)."""
    for x, y in ((a, b), (b, a)):
        vnet = snap.virtual_networks.get(x)
        for p in vnet.peerings if vnet else ():
            if p.remote_vnet_id is not None and p.remote_vnet_id.key == y and peering_counts(p) and \
                    not is_hub_peering(p, hub_prefixes):
                return True
    return False


def _next_hop_step(view: HubView, ip: str, role: str) -> dict[str, Any]:
    """Whether ``view``'s private next hop is on the path to ``ip`` (``role``: where the hub sits on it), and why."""
    step: dict[str, Any] = {"hub": view.hub.id.raw, "role": role}
    if view.unread:
        return {**step, "on_path": None, "why": f"not read: {', '.join(view.unread)} (coverage gap)"}
    if view.unknown:
        return {**step, "on_path": None, "why": f"cannot be modelled: {view.unknown}"}
    if view.policy is None:
        return {**step, "on_path": False, "why": "the hub has no private traffic routing policy: traffic between its "
                "connections goes direct"}
    hop = view.next_hop.id.raw if view.next_hop is not None else None
    step.update({"routing_policy": view.policy.name, "next_hop": hop})
    if not view.covers(ip):
        return {**step, "on_path": False, "why": f"{ip} is outside the hub's private traffic prefixes "
                f"({', '.join(view.prefixes)}): not steered to the next hop"}
    return {**step, "on_path": True, "why": f"routing intent sends private traffic ({ip} is inside "
            f"{', '.join(view.prefixes)}) to the next hop"}


def explain_hub_hop(snap: Snapshot, ip: str, *, client_vnet: str | None = None,
                    branch_hub: str | None = None) -> dict[str, Any] | None:
    """The Virtual WAN part of a path to ``ip`` from a client network (``client_vnet`` key) or from a branch of the hub
    ``branch_hub`` (key): the hubs on the path and whether each one's private next hop is on it, and why. None when
    the tenant has no hub (explain-path's output is then what it always was)."""
    model = hub_views(snap) if snap.virtual_hubs else _EMPTY
    if not model.views:
        return None
    out: dict[str, Any] = {"destination": ip}
    pe = _endpoint_at(snap, ip)
    pe_subnet = snap.subnet_of(pe) if pe is not None else None
    pe_vnet = pe_subnet.vnet_id.key if pe_subnet is not None and pe_subnet.vnet_id is not None else None
    if pe is not None:
        out["endpoint"] = pe.id.raw
    dest_hubs = list(model.by_network.get(pe_vnet, ())) if pe_vnet else []
    if branch_hub is not None:
        src = model.views.get(branch_hub)
        out["from"] = f"a branch of hub {src.hub.name if src else branch_hub}"
        src_hubs = [src] if src is not None else []
    else:
        client = snap.virtual_networks.get(client_vnet) if client_vnet else None
        out["from"] = client.id.raw if client is not None else client_vnet
        if client_vnet is not None and pe_vnet is not None and client_vnet == pe_vnet:
            return {**out, "via_hub": False, "why": "the client is in the endpoint's own network: the endpoint's /32 "
                    "delivers directly; only a UDR to the next hop (with Route Table network policies on the "
                    "endpoint subnet) sends it through a hub"}
        if client_vnet is not None and pe_vnet is not None and _peered(snap, client_vnet, pe_vnet, model.hub_prefixes):
            return {**out, "via_hub": False, "why": "the client network is directly peered with the endpoint's: the "
                    "endpoint's /32 over the peering is longer than routing intent's aggregates, so the hub is "
                    "skipped unless a UDR steers it"}
        src_hubs = list(model.by_network.get(client_vnet, ())) if client_vnet else []
    if not dest_hubs:
        return {**out, "via_hub": False, "why": "the endpoint's network is connected to no Virtual WAN hub read"}
    if not src_hubs:
        return {**out, "via_hub": False, "why": "the client network is connected to no Virtual WAN hub read"}
    src_view, dest_view = src_hubs[0], dest_hubs[0]
    if src_view.wan_key != dest_view.wan_key:
        return {**out, "via_hub": False, "why": "the client's hub and the endpoint's hub are in different virtual WANs"}
    steps = [_next_hop_step(src_view, ip, "client's hub" if src_view is not dest_view else "hub")]
    if dest_view is not src_view:
        steps.append(_next_hop_step(dest_view, ip, "endpoint's hub"))
    policy = pe_subnet.pe_policies if pe_subnet is not None else None
    if policy is not None and lower(policy) not in POLICIES_HONOURING_UDRS:
        if branch_hub is not None:   # how-to-routing-policies names traffic from on-premises
            for s in steps:
                if s.get("on_path"):
                    s["on_path"] = False
                    s["why"] = (f"the endpoint subnet has privateEndpointNetworkPolicies {policy}: branch traffic "
                                "skips the next hop while replies go through it (asymmetric); RouteTableEnabled fixes "
                                "it")
        else:
            out["note"] = (f"the endpoint subnet has privateEndpointNetworkPolicies {policy}: Microsoft states the "
                           "bypass for traffic from on-premises; for spoke traffic private-link-inspection-secure-"
                           "virtual-hub also asks for Route Table network policies "
                           "(vwan.endpoint-subnet-policy-bypass)")
    return {**out, "via_hub": True, "hubs": steps}
