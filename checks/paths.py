"""The route evaluator: which route carries traffic from a client subnet to a private endpoint IP, and why.

Azure cannot show effective routes on an endpoint's NIC, and the rule for when a user-defined route
(UDR) replaces the /32 an endpoint injects is subtle (checks.md "Routes and SNAT"). This module applies
that rule to the snapshot with nothing but :mod:`ipaddress`, and every decision carries the route that
won and the reasons, so a finding (or ``plmon explain-path``) can show an engineer the whole path:

- system routes: the client network's address space (VnetLocal), the address space of networks it
  peers with (Connected and allowVirtualNetworkAccess), and the 0.0.0.0/0 Internet default;
- ``<ip>/32`` of every private endpoint whose network is the client's, or whose network's peering to
  the client's is Connected with allowVirtualNetworkAccess;
- the UDRs of the client subnet's route table.

A UDR covering the endpoint IP replaces the endpoint's /32 only when it is a /32, or when the
endpoint's subnet has privateEndpointNetworkPolicies Enabled/RouteTableEnabled and the UDR's prefix is
at least as long as the endpoint VNet address-space entry holding the IP; 0.0.0.0/0 never does. Then
the longest prefix wins, and on equal prefixes a UDR beats a system route.

``decide`` applies the rule to one (client subnet, IP) with every reason (``plmon explain-path``);
``endpoint_paths`` applies it to every client subnet and endpoint IP of a tenant with the grouped engine
(below), which decides once per group of paths sharing their candidate routes and leaves the reasons to
``decide`` until a finding or a caller reads them. tests/checks/test_paths_differential.py holds both to the
engine as it was before (a frozen copy in tests/kit/oldpaths.py).
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from plmon.checks.units import Index, holds, lookup, probed, scratch, shared, shared_probe, tracking
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.snapshot import (
    Firewall,
    FrontendIp,
    LoadBalancer,
    Nic,
    Peering,
    PrivateEndpoint,
    RouteTable,
    Snapshot,
    Subnet,
    VirtualNetwork,
    lower,
)

__all__ = [
    "Hop", "LaidEndpoint", "PathResult", "RouteCandidate", "client_subnets", "decide", "endpoint_laid",
    "endpoint_paths", "firewall_tenant", "parse_ip", "paths_for", "peering_counts", "replaces_endpoint_route",
    "resolve_next_hop", "routed_paths", "routed_tenant",
]

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

UDR = "user-defined"
ENDPOINT = "private-endpoint"
VNET_LOCAL = "vnet-local"
PEERING = "vnet-peering"
DEFAULT = "default"
# On equal prefix length: a UDR beats every system route (checks.md); among system routes the more
# specific origin is listed first only to make the explanation stable.
_RANK = {UDR: 4, ENDPOINT: 3, VNET_LOCAL: 2, PEERING: 1, DEFAULT: 0}
POLICIES_HONOURING_UDRS = ("enabled", "routetableenabled")


@functools.lru_cache(maxsize=1 << 17)
def parse_ip(value: str | None) -> IPAddr | None:
    """The address, or None when ``value`` is not one. Cached: the same endpoint IPs are parsed by every pass over
    the tenant (addresses are immutable)."""
    if not value:
        return None
    text = value.strip()
    # A dotted quad as ipaddress accepts it (four ASCII decimal octets of at most three digits, no leading zero,
    # each at most 255), converted here: parsing an IPv4 string in ipaddress costs about four times as much, and a
    # 100k tenant's endpoint IPs are all parsed on the scan's first pass. Anything else is left to ipaddress.
    octets = text.split(".")
    if len(octets) == 4:
        number = 0
        for octet in octets:
            if not (0 < len(octet) <= 3 and octet.isascii() and octet.isdigit()) or \
                    (octet[0] == "0" and len(octet) > 1) or (byte := int(octet)) > 255:
                break
            number = number << 8 | byte
        else:
            return ipaddress.IPv4Address(number)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _net(value: str | None) -> IPNet | None:
    # Cached: the same few prefixes are parsed once per (client subnet, endpoint) pair otherwise, which
    # made ip_network ~70% of a 10k-resource evaluation (docs/benchmarks.md). Networks are immutable.
    try:
        return ipaddress.ip_network(value.strip(), strict=False) if value else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RouteCandidate:
    """One route in a client subnet's effective route table that covers the destination."""

    prefix: str
    origin: str
    next_hop_type: str
    next_hop_ip: str | None = None
    route_name: str | None = None
    route_table_id: ArmId | None = None
    endpoint_id: ArmId | None = None

    @property
    def network(self) -> IPNet:
        return _net(self.prefix) or ipaddress.ip_network(self.prefix, strict=False)

    @property
    def prefix_length(self) -> int:
        return self.network.prefixlen

    def describe(self) -> str:
        hop = self.next_hop_type + (f" {self.next_hop_ip}" if self.next_hop_ip else "")
        if self.origin == UDR:
            return f"{self.prefix} -> {hop} (user-defined route '{self.route_name}')"
        if self.origin == ENDPOINT and self.endpoint_id is not None:
            return f"{self.prefix} -> {hop} (injected by private endpoint {self.endpoint_id.name})"
        return f"{self.prefix} -> {hop} (system route, {self.origin})"

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "origin": self.origin, "next_hop_type": self.next_hop_type,
                "next_hop_ip": self.next_hop_ip, "route_name": self.route_name,
                "route_table": self.route_table_id.raw if self.route_table_id else None,
                "private_endpoint": self.endpoint_id.raw if self.endpoint_id else None}


@dataclass(frozen=True, slots=True)
class Hop:
    """What a VirtualAppliance next-hop IP is: an Azure Firewall, a NIC, an internal LB frontend, or nothing."""

    ip: str
    kind: str  # "firewall" | "nic" | "load-balancer" | "unresolved"
    firewall: Firewall | None = None
    nic: Nic | None = None
    load_balancer: LoadBalancer | None = None
    frontend: FrontendIp | None = None
    backend_nics: tuple[Nic, ...] = ()

    def describe(self) -> str:
        if self.firewall is not None:
            return f"Azure Firewall {self.firewall.name} (private IP {self.ip})"
        if self.nic is not None:
            return f"network interface {self.nic.name} ({self.ip})"
        if self.load_balancer is not None:
            behind = ", ".join(n.name for n in self.backend_nics) or "no backend NICs in scope"
            return f"internal load balancer {self.load_balancer.name} frontend {self.ip} -> {behind}"
        return f"{self.ip} (no NIC, internal load balancer frontend or firewall in scope has this IP)"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ip": self.ip, "kind": self.kind}
        if self.firewall is not None:
            d["firewall"] = self.firewall.id.raw
        if self.nic is not None:
            d["nic"] = self.nic.id.raw
        if self.load_balancer is not None:
            d["load_balancer"] = self.load_balancer.id.raw
            d["backend_nics"] = [n.id.raw for n in self.backend_nics]
        return d


# A path text's route and appliance part per (route, hop) by identity (the entry holds both, so an id is not reused
# while kept): the paths of a group share them, and a finding's evidence wrote each one out per path (~5k for the ~600
# endpoints a route event puts in a udr-bypassed finding). Bounded.
_MIDDLES: dict[tuple[int, int], tuple[RouteCandidate | None, Hop | None, str]] = {}
_MIDDLES_MAX = 8192


_NEW = object.__new__


class PathResult:
    """The decided path from a client subnet to one destination IP, with the reasons for it.

    The route engine decides once per group of paths that share their candidate routes, so a path holds the
    group's decision and builds its explanation (``reasons``, ``candidates``) only when something reads it: a
    finding's evidence or ``plmon explain-path``. Most paths never become a finding, and their strings were most
    of the old engine's time and memory (issue 14).
    """

    __slots__ = ("_candidates", "_explain", "_reasons", "_subnet", "destination", "endpoint", "endpoint_policy", "hop",
                 "not_replacing", "replaced_by", "route", "route_table_id", "subnet_id", "via_appliance", "vnet_prefix")

    def __init__(self, subnet_id: ArmId, destination: str, route: RouteCandidate | None,
                 reasons: tuple[str, ...] | None = None, endpoint: PrivateEndpoint | None = None,
                 endpoint_policy: str | None = None, vnet_prefix: str | None = None,
                 replaced_by: tuple[RouteCandidate, ...] = (), not_replacing: tuple[RouteCandidate, ...] = (),
                 route_table_id: ArmId | None = None, hop: Hop | None = None,
                 candidates: tuple[RouteCandidate, ...] | None = None,
                 explain: Callable[[Subnet, str], PathResult] | None = None, subnet: Subnet | None = None,
                 via_appliance: bool | None = None) -> None:
        self.subnet_id = subnet_id
        self.destination = destination
        self.route = route
        self.endpoint = endpoint
        self.endpoint_policy = endpoint_policy       # the endpoint subnet's effective privateEndpointNetworkPolicies
        self.vnet_prefix = vnet_prefix               # endpoint VNet address-space entry containing the IP
        self.replaced_by = replaced_by               # UDRs that replaced the endpoint /32
        self.not_replacing = not_replacing           # UDRs covering the IP that did not
        self.route_table_id = route_table_id
        self.hop = hop
        # read by four route checks for every path: judged once
        # (the grouped engine passes it, judged once per group)
        self.via_appliance = route is not None and lower(route.next_hop_type) == "virtualappliance" \
            if via_appliance is None else via_appliance
        self._reasons = reasons
        self._candidates = candidates
        self._explain = explain   # with the client subnet: decide() for this path, called when reasons are read
        self._subnet = subnet

    @classmethod
    def laid(cls, subnet_id: ArmId, destination: str, route: RouteCandidate | None, endpoint: PrivateEndpoint,
             endpoint_policy: str | None, vnet_prefix: str | None, replaced_by: tuple[RouteCandidate, ...],
             not_replacing: tuple[RouteCandidate, ...], route_table_id: ArmId | None, hop: Hop | None,
             explain: Callable[[Subnet, str], PathResult] | None, subnet: Subnet, via_appliance: bool) -> PathResult:
        """``PathResult(subnet_id, destination, route, None, endpoint, ..., explain=explain, subnet=subnet,
        via_appliance=via_appliance)`` without binding keywords: a path of a tracked endpoint's layout row, made
        ~2,400 times an event behind a hub (SNAT rows, bypassed paths) (issue 14)."""
        self = _NEW(cls)
        self.subnet_id, self.destination, self.route, self.endpoint = subnet_id, destination, route, endpoint
        self.endpoint_policy, self.vnet_prefix, self.replaced_by = endpoint_policy, vnet_prefix, replaced_by
        self.not_replacing, self.route_table_id, self.hop, self.via_appliance = not_replacing, route_table_id, hop, \
            via_appliance
        self._reasons = self._candidates = None
        self._explain, self._subnet = explain, subnet
        return self

    def _explained(self) -> PathResult:
        assert self._explain is not None and self._subnet is not None, \
            "a path without reasons must know how to explain itself"
        full = self._explain(self._subnet, self.destination)
        self._reasons, self._candidates, self._explain, self._subnet = full.reasons, full.candidates, None, None
        return full

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why this route won, step by step (built on first use for a path the engine decided in a group)."""
        if self._reasons is None:
            return self._explained().reasons
        return self._reasons

    @property
    def candidates(self) -> tuple[RouteCandidate, ...]:
        """Every route covering the destination that took part in the decision."""
        if self._candidates is None:
            return self._explained().candidates
        return self._candidates

    def __repr__(self) -> str:
        return f"PathResult({self.path_text()!r})"

    def path_text(self) -> str:
        """client subnet -> winning route (prefix, next hop) -> appliance -> endpoint IP."""
        route, hop = self.route, self.hop
        k = (id(route), id(hop))
        hit = _MIDDLES.get(k)
        if hit is None or hit[0] is not route or hit[1] is not hop:
            if len(_MIDDLES) >= _MIDDLES_MAX:
                _MIDDLES.clear()
            middle = route.describe() if route else "no route"
            if hop is not None:
                middle += " -> " + hop.describe()
            hit = _MIDDLES[k] = (route, hop, middle)
        return f"subnet {self.subnet_id.name} -> {hit[2]} -> {self.destination}" + \
            (f" (private endpoint {self.endpoint.name})" if self.endpoint else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_subnet": self.subnet_id.raw, "destination": self.destination,
            "path": self.path_text(),
            "route": self.route.to_dict() if self.route else None,
            "private_endpoint": self.endpoint.id.raw if self.endpoint else None,
            "endpoint_subnet_private_endpoint_network_policies": self.endpoint_policy,
            "endpoint_vnet_prefix": self.vnet_prefix,
            "udr_prefix_length": self.route.prefix_length if self.route and self.route.origin == UDR else None,
            "endpoint_vnet_prefix_length": net.prefixlen if (net := _net(self.vnet_prefix)) else None,
            "route_table": self.route_table_id.raw if self.route_table_id else None,
            "next_hop": self.hop.to_dict() if self.hop else None,
            "reasons": list(self.reasons),
        }


# --- topology --------------------------------------------------------------------------------------

def peering_counts(p: Peering) -> bool:
    """A peering carries the endpoint /32 (and system routes) only when Connected and access allowed."""
    return lower(p.state) == "connected" and p.allow_virtual_network_access


def _vnet_key_of(snap: Snapshot, subnet_id: ArmId | None) -> str | None:
    if subnet_id is None:
        return None
    subnet = snap.subnets.get(subnet_id.key)
    if subnet is not None and subnet.vnet_id is not None:
        return subnet.vnet_id.key
    return subnet_id.parent.key if subnet_id.parent else None


def _reached_vnets(snap: Snapshot, vnet_key: str) -> dict[str, Peering | None]:
    """The endpoint network and every network its own peerings reach (Connected + access allowed)."""
    out: dict[str, Peering | None] = {vnet_key: None}
    vnet = snap.virtual_networks.get(vnet_key)
    for p in vnet.peerings if vnet else ():
        if p.remote_vnet_id is not None and peering_counts(p):
            out.setdefault(p.remote_vnet_id.key, p)
    return out


def client_subnets(snap: Snapshot, pe: PrivateEndpoint) -> list[Subnet]:
    """Every subnet of the endpoint's network and of each network it directly peers with."""
    vnet_key = _vnet_key_of(snap, pe.subnet_id)
    if vnet_key is None:
        return []
    return _clients_of(snap, vnet_key)


def _clients_of(snap: Snapshot, vnet_key: str) -> list[Subnet]:
    """:func:`client_subnets` of an endpoint in the network ``vnet_key``."""
    out = []
    for key in _reached_vnets(snap, vnet_key):
        vnet = snap.virtual_networks.get(key)
        for sid in vnet.subnet_ids if vnet else ():
            subnet = snap.subnets.get(sid.key)
            if subnet is not None:
                out.append(subnet)
    return out


def _endpoint_vnet_prefix(snap: Snapshot, pe: PrivateEndpoint, ip: IPAddr) -> str | None:
    vnet = snap.virtual_networks.get(_vnet_key_of(snap, pe.subnet_id) or "")
    compiled = [(c, prefix) for prefix in (vnet.address_prefixes if vnet else ()) if (c := _compile(prefix))]
    return _holding_prefix(compiled, ip.version, int(ip), ip.max_prefixlen)


def _holding_prefix(prefixes: Iterable[tuple[_Compiled, str]], version: int, value: int, bits: int) -> str | None:
    """The network's address prefix that holds the endpoint IP: the longest entry that does, the first on ties."""
    best: tuple[int, str] | None = None
    for c, prefix in prefixes:
        if _holds(c, version, value, bits) and (best is None or c[2] > best[0]):
            best = (c[2], prefix)
    return best[1] if best else None


def replaces_endpoint_route(udr_prefix_length: int, *, policy: str | None,
                            vnet_prefix_length: int | None, max_length: int = 32) -> tuple[bool, str]:
    """Whether a UDR covering an endpoint IP replaces that endpoint's /32 (checks.md), and why."""
    if udr_prefix_length == max_length:
        return True, f"a /{max_length} route for the endpoint IP always replaces the endpoint's /{max_length}"
    if udr_prefix_length == 0:
        return False, "a default route (/0) never replaces an endpoint's /32"
    eff = policy or "Disabled"
    if lower(eff) not in POLICIES_HONOURING_UDRS:
        return False, (f"the endpoint's subnet has privateEndpointNetworkPolicies {eff}, so only a /32 "
                       "replaces the endpoint's /32")
    if vnet_prefix_length is None:
        return False, ("no address-space entry of the endpoint's VNet contains the IP, so the prefix "
                       "rule cannot apply")
    if udr_prefix_length >= vnet_prefix_length:
        return True, (f"privateEndpointNetworkPolicies is {eff} and the route's /{udr_prefix_length} is at "
                      f"least as long as the endpoint VNet's /{vnet_prefix_length}")
    return False, (f"privateEndpointNetworkPolicies is {eff} but the route's /{udr_prefix_length} is shorter "
                   f"than the endpoint VNet's /{vnet_prefix_length}")


# --- next hops -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _HopIndex:
    firewalls: dict[IPAddr, Firewall]
    nics: dict[IPAddr, Nic]
    frontends: dict[IPAddr, tuple[LoadBalancer, FrontendIp]]
    # Backend NICs per frontend, filled on first use: scanning every NIC for every path through a load
    # balancer was quadratic (minutes on a 100k-resource tenant).
    backends: dict[str, tuple[Nic, ...]] = field(default_factory=dict)
    # Every owner of each IP (address spaces may overlap across unpeered networks), in resolution order, with
    # the key of the network it sits in (None when unknown, e.g. a Virtual WAN hub).
    owners: dict[IPAddr, list[tuple[str | None, str, Any]]] = field(default_factory=dict)

    # The NICs by ("config", ip configuration key) and ("pool", backend pool key), built on first use: the same
    # NICs _backend_nics finds by scanning every NIC of the tenant, once per frontend.
    pooled: dict[tuple[str, str], list[Nic]] | None = None

    def backends_of(self, snap: Snapshot, lb: LoadBalancer, fe: FrontendIp) -> tuple[Nic, ...]:
        backends = self.backends.get(fe.id.key)
        if backends is None:
            backends = self.backends[fe.id.key] = self._backends(snap, lb, fe)
        return backends

    def _backends(self, snap: Snapshot, lb: LoadBalancer, fe: FrontendIp) -> tuple[Nic, ...]:
        """:func:`_backend_nics` from the NICs the pools and configurations name."""
        if self.pooled is None:
            pooled: dict[tuple[str, str], list[Nic]] = {}
            for nic in snap.nics.values():
                for c in nic.ip_configs:
                    pooled.setdefault(("config", c.id.key), []).append(nic)
                    for b in c.backend_pool_ids:
                        pooled.setdefault(("pool", b.key), []).append(nic)
            object.__setattr__(self, "pooled", pooled)
        assert self.pooled is not None
        pools = set(lb.rule_pools.get(fe.id.key, ())) or set(lb.backend_pools)
        config_keys = {c.key for p in pools for c in lb.backend_pools.get(p, ())}
        found = {nic.key: nic for k in config_keys for nic in self.pooled.get(("config", k), ())}
        found.update((nic.key, nic) for p in pools for nic in self.pooled.get(("pool", p), ()))
        return tuple(found[k] for k in sorted(found))


def _ips_of_firewall(snap: Snapshot, fw: Firewall) -> Iterator[IPAddr]:
    return (ip for ip in map(parse_ip, fw.private_ips) if ip is not None)


def _ips_of_nic(snap: Snapshot, nic: Nic) -> Iterator[IPAddr]:
    if nic.private_endpoint_id is None:
        yield from (ip for c in nic.ip_configs if (ip := parse_ip(c.private_ip)) is not None)


def _ips_of_lb(snap: Snapshot, lb: LoadBalancer) -> Iterator[IPAddr]:
    return (ip for fe in lb.frontends if (ip := parse_ip(fe.private_ip)) is not None and fe.public_ip_id is None)


def _pools_of_nic(snap: Snapshot, nic: Nic) -> Iterator[tuple[str, str]]:
    for c in nic.ip_configs:
        yield ("config", c.id.key)
        yield from (("pool", b.key) for b in c.backend_pool_ids)


def _ips_of_endpoint(snap: Snapshot, pe: PrivateEndpoint) -> Iterator[tuple[int, int]]:
    return (_ip_key(ip) for ip in map(parse_ip, pe.ip_addresses) if ip is not None)


def _ip_key(ip: IPAddr) -> tuple[int, int]:
    """An endpoint IP as :data:`ENDPOINTS_BY_IP` keys it, (version, integer): its read is hashed at each step of the
    units' bookkeeping (the frame, the kept read set, the reverse lists), and an IPv4Address hashes in Python
    (through hex()) each time, ~6 times per endpoint a route event re-derives (issue 14)."""
    return (ip.version, int(ip))


# The reverse lookups the engine needs, as indexes the daemon keeps up to date per changed record
# (plmon.checks.units) rather than rebuilding them from every record of the tenant after each event.
FIREWALLS_BY_IP = Index("paths.firewalls_by_ip", "firewalls", _ips_of_firewall)
NICS_BY_IP = Index("paths.nics_by_ip", "nics", _ips_of_nic)
FRONTENDS_BY_IP = Index("paths.frontends_by_ip", "load_balancers", _ips_of_lb)
NICS_BY_POOL = Index("paths.nics_by_pool", "nics", _pools_of_nic)
ENDPOINTS_BY_IP = Index("paths.endpoints_by_ip", "private_endpoints", _ips_of_endpoint)


class _FirstOwner:
    """``_HopIndex.firewalls``/``nics``/``frontends`` answered from the owners of one IP."""

    def __init__(self, hops: _IndexedHops, kind: str) -> None:
        self.hops, self.kind = hops, kind

    def get(self, ip: IPAddr, default: Any = None) -> Any:
        for _, kind, obj in self.hops.owners.get(ip, ()):
            if kind == self.kind:
                return obj
        return default

    def __contains__(self, ip: IPAddr) -> bool:
        return self.get(ip) is not None

    def __getitem__(self, ip: IPAddr) -> Any:
        found = self.get(ip)
        if found is None:
            raise KeyError(ip)
        return found


class _IndexedOwners:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def get(self, ip: IPAddr, default: Any = ()) -> list[tuple[str | None, str, Any]]:
        """What _hop_index lists for ``ip``: its firewalls, then NICs, then frontends, each in key order."""
        snap = self.snap
        out: list[tuple[str | None, str, Any]] = []
        for key in lookup(snap, FIREWALLS_BY_IP, ip):
            fw = snap.firewalls[key]
            out.extend((_vnet_of(fw.subnet_ids[0]) if fw.subnet_ids else None, "firewall", fw)
                       for raw in fw.private_ips if parse_ip(raw) == ip)
        for key in lookup(snap, NICS_BY_IP, ip):
            nic = snap.nics[key]
            out.extend((_vnet_of(c.subnet_id), "nic", nic) for c in nic.ip_configs if parse_ip(c.private_ip) == ip)
        for key in lookup(snap, FRONTENDS_BY_IP, ip):
            lb = snap.load_balancers[key]
            out.extend((_vnet_of(fe.subnet_id), "load-balancer", (lb, fe)) for fe in lb.frontends
                       if fe.public_ip_id is None and parse_ip(fe.private_ip) == ip)
        return out or list(default)


class _IndexedHops:
    """The hop index answered per IP from the kept indexes: what one path reads is the owners of its next hop."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.owners = _IndexedOwners(snap)
        self.firewalls = _FirstOwner(self, "firewall")
        self.nics = _FirstOwner(self, "nic")
        self.frontends = _FirstOwner(self, "load-balancer")

    def backends_of(self, snap: Snapshot, lb: LoadBalancer, fe: FrontendIp) -> tuple[Nic, ...]:
        """_backend_nics from the NICs the pools and configurations name, not from every NIC."""
        def compute() -> tuple[Nic, ...]:
            snap.load_balancers.get(lb.key)
            pools = set(lb.rule_pools.get(fe.id.key, ())) or set(lb.backend_pools)
            config_keys = {c.key for p in pools for c in lb.backend_pools.get(p, ())}
            keys = sorted({*(k for c in config_keys for k in lookup(snap, NICS_BY_POOL, ("config", c))),
                           *(k for p in pools for k in lookup(snap, NICS_BY_POOL, ("pool", p)))})
            out = []
            for nic in (snap.nics[k] for k in keys):
                if any(c.id.key in config_keys or any(b.key in pools for b in c.backend_pool_ids)
                       for c in nic.ip_configs):
                    out.append(nic)
            return tuple(out)
        return shared(("paths.backends", lb.key, fe.id.key), compute)


class _IndexedEndpoints:
    """:class:`_EndpointsByValue` answered per IP from the kept index."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def get(self, ip: IPAddr, default: Any = None) -> Any:
        keys = lookup(self.snap, ENDPOINTS_BY_IP, _ip_key(ip))
        if not keys:
            return default
        return [self.snap.private_endpoints[k] for k in keys]


class _EndpointsByValue:
    """The endpoints holding each IP, in key order (the one grouping of endpoints by IP outside the daemon's units:
    a plain evaluation and an explained path use it), keyed by (version, integer): an IPv4Address hashes through
    hex() on every lookup, and the endpoints are put in key order per address (only shared addresses have more
    than one) instead of sorting the tenant's 35k endpoints by their long ids first."""

    __slots__ = ("holders",)

    def __init__(self, snap: Snapshot) -> None:
        holders: dict[tuple[int, int], list[PrivateEndpoint]] = {}
        for pe in snap.private_endpoints.values():
            addresses = pe.ip_addresses
            ips: Iterable[IPAddr | None] = (parse_ip(addresses[0]),) if len(addresses) == 1 else \
                {parse_ip(x) for x in addresses}
            for ip in ips:
                if ip is None:
                    continue
                got = holders.get(k := (ip.version, int(ip)))
                if got is None:
                    holders[k] = [pe]
                else:
                    got.append(pe)
        for got in holders.values():
            if len(got) > 1:
                got.sort(key=_BY_KEY)
        self.holders = holders

    def get(self, ip: IPAddr, default: Any = None) -> Any:
        return self.holders.get((ip.version, int(ip)), default)


_Hops = _HopIndex | _IndexedHops
_ByIp = _IndexedEndpoints | _EndpointsByValue


# A record's key (its id's), read in C: sorting 35k records through the ``key`` property cost ~20 ms at 100k resources.
_BY_KEY = operator.attrgetter("id.key")
_FIRST = operator.itemgetter(0)


def _vnet_of(subnet_id: ArmId | None) -> str | None:
    return subnet_id.parent.key if subnet_id is not None and subnet_id.parent is not None else None


def _hop_index(snap: Snapshot) -> _HopIndex:
    owners: dict[IPAddr, list[tuple[str | None, str, Any]]] = {}
    fws: dict[IPAddr, Firewall] = {}
    for fw in sorted(snap.firewalls.values(), key=_BY_KEY):
        for raw in fw.private_ips:
            ip = parse_ip(raw)
            if ip is not None:
                fws.setdefault(ip, fw)
                owners.setdefault(ip, []).append((_vnet_of(fw.subnet_ids[0]) if fw.subnet_ids else None,
                                                  "firewall", fw))
    nics: dict[IPAddr, Nic] = {}
    # an endpoint's own NIC never forwards (left out before sorting: at 100k resources most NICs are endpoints')
    for nic in sorted((n for n in snap.nics.values() if n.private_endpoint_id is None), key=_BY_KEY):
        for c in nic.ip_configs:
            ip = parse_ip(c.private_ip)
            if ip is not None:
                nics.setdefault(ip, nic)
                owners.setdefault(ip, []).append((_vnet_of(c.subnet_id), "nic", nic))
    fronts: dict[IPAddr, tuple[LoadBalancer, FrontendIp]] = {}
    for lb in sorted(snap.load_balancers.values(), key=_BY_KEY):
        for fe in lb.frontends:
            ip = parse_ip(fe.private_ip)
            if ip is not None and fe.public_ip_id is None:
                fronts.setdefault(ip, (lb, fe))
                owners.setdefault(ip, []).append((_vnet_of(fe.subnet_id), "load-balancer", (lb, fe)))
    return _HopIndex(fws, nics, fronts, owners=owners)


def _backend_nics(snap: Snapshot, lb: LoadBalancer, fe: FrontendIp) -> tuple[Nic, ...]:
    """The NICs a frontend balances to: via its rules' pools, else every pool of the balancer."""
    pools = set(lb.rule_pools.get(fe.id.key, ())) or set(lb.backend_pools)
    config_keys = {c.key for p in pools for c in lb.backend_pools.get(p, ())}
    out = []
    for nic in sorted(snap.nics.values(), key=lambda n: n.key):
        if any(c.id.key in config_keys or any(b.key in pools for b in c.backend_pool_ids)
               for c in nic.ip_configs):
            out.append(nic)
    return tuple(out)


def resolve_next_hop(snap: Snapshot, ip_text: str | None, index: _Hops | None = None,
                     client_vnet: str | None = None) -> Hop:
    """A firewall private IP first, then a NIC ip configuration, then an internal LB frontend.

    With ``client_vnet`` (the key of the client subnet's network), an IP that several networks use (address
    spaces overlap across unpeered networks) resolves to the owner the client can reach: its own network or
    one it peers with. When none of them is reachable but the IP lies in the address space of a network the
    client peers with, that network's owner was not read (out of scope or unreadable): "unresolved", which
    route.nva-unresolved then judges on what plmon read, instead of an unrelated owner elsewhere.
    """
    index = index or _hop_index(snap)
    ip = parse_ip(ip_text)
    text = str(ip) if ip else (ip_text or "(none)")
    if ip is None:
        return Hop(text, "unresolved")
    if client_vnet is not None:
        reach = _client_reach(snap, client_vnet, ip)
        local = [o for o in index.owners.get(ip, ()) if o[0] is None or o[0] in reach]
        if local:
            return _hop_of(snap, index, text, local[0])
        if reach[client_vnet]:
            return Hop(text, "unresolved")
    if ip in index.firewalls:
        return Hop(text, "firewall", firewall=index.firewalls[ip])
    if ip in index.nics:
        return Hop(text, "nic", nic=index.nics[ip])
    if ip in index.frontends:
        return _hop_of(snap, index, text, (None, "load-balancer", index.frontends[ip]))
    return Hop(text, "unresolved")


def _client_reach(snap: Snapshot, client_vnet: str, ip: IPAddr) -> dict[str, bool]:
    """The client's network and every network it peers with; under the client's key, whether ``ip`` lies in
    the address space of any of them (so an owner elsewhere cannot be the next hop)."""
    vnet = snap.virtual_networks.get(client_vnet)
    inside = vnet is not None and any((n := _net(px)) is not None and ip in n for px in vnet.address_prefixes)
    reach = {client_vnet: False}
    for p in vnet.peerings if vnet else ():
        if p.remote_vnet_id is None:
            continue
        reach[p.remote_vnet_id.key] = False
        remote = snap.virtual_networks.get(p.remote_vnet_id.key)
        prefixes = remote.address_prefixes if remote else p.remote_address_prefixes
        inside = inside or any((n := _net(px)) is not None and ip in n for px in prefixes)
    reach[client_vnet] = inside
    return reach


def _hop_of(snap: Snapshot, index: _Hops, text: str, owner: tuple[str | None, str, Any]) -> Hop:
    _, kind, obj = owner
    if kind == "firewall":
        return Hop(text, "firewall", firewall=obj)
    if kind == "nic":
        return Hop(text, "nic", nic=obj)
    lb, fe = obj
    backends = index.backends_of(snap, lb, fe)
    return Hop(text, "load-balancer", load_balancer=lb, frontend=fe, backend_nics=backends)


# --- the decision ----------------------------------------------------------------------------------

def _system_routes(snap: Snapshot, vnet: VirtualNetwork | None, ip: IPAddr,
                   reasons: list[str]) -> list[RouteCandidate]:
    out = []
    if vnet is not None:
        for prefix in vnet.address_prefixes:
            net = _net(prefix)
            if net is not None and net.version == ip.version and ip in net:
                out.append(RouteCandidate(str(net), VNET_LOCAL, "VnetLocal"))
        for p in vnet.peerings:
            remote = snap.virtual_networks.get(p.remote_vnet_id.key) if p.remote_vnet_id else None
            prefixes = remote.address_prefixes if remote else p.remote_address_prefixes
            covering = [n for n in (_net(x) for x in prefixes) if n and n.version == ip.version and ip in n]
            if not covering:
                continue
            if peering_counts(p):
                out.extend(RouteCandidate(str(n), PEERING, "VNetPeering") for n in covering)
            else:
                reasons.append(f"peering {p.name} covers {ip} but is {p.state or 'in no state'} with "
                               f"allowVirtualNetworkAccess {p.allow_virtual_network_access}: no route from it")
    default = "0.0.0.0/0" if ip.version == 4 else "::/0"
    out.append(RouteCandidate(default, DEFAULT, "Internet"))
    return out


def _visible_endpoints(snap: Snapshot, vnet_key: str | None, ip: IPAddr, reasons: list[str],
                       by_ip: _ByIp | None = None,
                       ) -> list[tuple[PrivateEndpoint, Peering | None]]:
    out = []
    for pe in (by_ip if by_ip is not None else _EndpointsByValue(snap)).get(ip, []):
        pe_vnet = _vnet_key_of(snap, pe.subnet_id)
        if pe_vnet is None or vnet_key is None:
            continue
        reached = _reached_vnets(snap, pe_vnet)
        if vnet_key in reached:
            out.append((pe, reached[vnet_key]))
        else:
            reasons.append(f"private endpoint {pe.name} has {ip} but its network does not peer with the "
                           "client's (Connected, allowVirtualNetworkAccess): its /32 is not injected here")
    return out


def _endpoint_side(snap: Snapshot, vnet_key: str | None, ip: IPAddr, reasons: list[str],
                   by_ip: _ByIp | None) -> _EndpointSide | None:
    """The first endpoint holding ``ip`` whose /32 is injected in the client's network, with what judges it."""
    visible = _visible_endpoints(snap, vnet_key, ip, reasons, by_ip)
    if not visible:
        return None
    endpoint, via = visible[0]
    ep_subnet = snap.subnet_of(endpoint)
    policy = ep_subnet.pe_policies if ep_subnet else None
    vnet_prefix = _endpoint_vnet_prefix(snap, endpoint, ip)
    how = "is in the same virtual network" if via is None else \
        f"reaches it through peering {via.name} (Connected, allowVirtualNetworkAccess)"
    host = 32 if ip.version == 4 else 128
    route = RouteCandidate(f"{ip}/{host}", ENDPOINT, "InterfaceEndpoint", endpoint_id=endpoint.id)
    reasons.append(f"private endpoint {endpoint.name} ({ip}) {how}: it injects {ip}/{host}; its subnet's "
                   f"privateEndpointNetworkPolicies is {policy or 'unknown (subnet not in scope)'}; the "
                   f"endpoint VNet address-space entry holding the IP is {vnet_prefix or 'unknown'}")
    return _EndpointSide(endpoint, policy, vnet_prefix, route)


@dataclass(frozen=True, slots=True)
class _EndpointSide:
    endpoint: PrivateEndpoint
    policy: str | None
    vnet_prefix: str | None
    route: RouteCandidate


def _covering_udrs(snap: Snapshot, subnet: Subnet, ip: IPAddr, reasons: list[str]) -> list[RouteCandidate]:
    """The user-defined routes of the subnet's route table that cover ``ip``, in the table's order."""
    udrs: list[RouteCandidate] = []
    table = snap.route_tables.get(subnet.route_table_id.key) if subnet.route_table_id else None
    if subnet.route_table_id is not None and table is None:
        reasons.append(f"route table {subnet.route_table_id.name} of the subnet is not in scope: its routes "
                       "are unknown")
    for r in table.routes if table else ():
        net = _net(r.address_prefix)
        if net is None:
            if r.address_prefix:
                reasons.append(f"route '{r.name}' has prefix {r.address_prefix} (a service tag or invalid), "
                               "which is not evaluated")
            continue
        if net.version == ip.version and ip in net:
            udrs.append(RouteCandidate(str(net), UDR, r.next_hop_type or "None", r.next_hop_ip, r.name,
                                       table.id if table else None))
    return udrs


def _judge_udrs(side: _EndpointSide, udrs: list[RouteCandidate],
                reasons: list[str]) -> tuple[list[RouteCandidate], list[RouteCandidate]]:
    """Split the covering UDRs into those that replace the endpoint's /32 and those that do not, saying why."""
    replaced_by: list[RouteCandidate] = []
    not_replacing: list[RouteCandidate] = []
    vlen = net.prefixlen if (net := _net(side.vnet_prefix)) else None
    for u in udrs:
        ok, why = replaces_endpoint_route(u.prefix_length, policy=side.policy, vnet_prefix_length=vlen,
                                          max_length=side.route.prefix_length)
        (replaced_by if ok else not_replacing).append(u)
        reasons.append(f"route '{u.route_name}' {u.prefix} -> {u.next_hop_type}"
                       f"{' ' + u.next_hop_ip if u.next_hop_ip else ''} "
                       f"{'replaces' if ok else 'does not replace'} the endpoint's {side.route.prefix}: {why}")
    return replaced_by, not_replacing


def _winner(candidates: list[RouteCandidate]) -> RouteCandidate | None:
    """Longest prefix; on an equal prefix the higher rank (a UDR first); on a full tie the first listed."""
    return max(candidates, key=lambda c: (c.prefix_length, _RANK[c.origin])) if candidates else None


def decide(snap: Snapshot, subnet: Subnet, destination: str, *, hops: _Hops | None = None,
           by_ip: _ByIp | None = None) -> PathResult:
    """The effective route from ``subnet`` to ``destination`` and every reason, per checks.md.

    The explaining form of the route rule: ``plmon explain-path`` calls it, and a path the grouped engine
    decided calls it when its reasons are first read, so the reasons are written in one place only.
    """
    ip = parse_ip(destination)
    if ip is None:
        raise ValueError(f"not an IP address: {destination!r}")
    reasons: list[str] = []
    vnet = snap.vnet_of_subnet(subnet)
    vnet_key = subnet.vnet_id.key if subnet.vnet_id else None
    reasons.append(f"client subnet {subnet.name} is in virtual network "
                   f"{vnet.name if vnet else (subnet.vnet_id.name if subnet.vnet_id else '?')}")
    candidates = _system_routes(snap, vnet, ip, reasons)
    side = _endpoint_side(snap, vnet_key, ip, reasons, by_ip)
    udrs = _covering_udrs(snap, subnet, ip, reasons)
    replaced_by, not_replacing = _judge_udrs(side, udrs, reasons) if side is not None else ([], [])
    if side is not None and not replaced_by:
        candidates.append(side.route)
    candidates.extend(udrs)
    winner = _winner(candidates)
    if winner is not None:
        rivals = [c for c in candidates if c is not winner]
        why = "longest prefix" if all(c.prefix_length < winner.prefix_length for c in rivals) else \
            "longest prefix; on an equal prefix a user-defined route beats a system route"
        reasons.append(f"effective route: {winner.describe()} ({why} among {len(candidates)} covering routes)")
    hop = None
    if winner is not None and lower(winner.next_hop_type) == "virtualappliance":
        hop = resolve_next_hop(snap, winner.next_hop_ip, hops, vnet_key)
        reasons.append(f"next hop {winner.next_hop_ip}: {hop.describe()}")
    table = snap.route_tables.get(subnet.route_table_id.key) if subnet.route_table_id else None
    return PathResult(
        subnet_id=subnet.id, destination=str(ip), route=winner, reasons=tuple(reasons),
        endpoint=side.endpoint if side else None, endpoint_policy=side.policy if side else None,
        vnet_prefix=side.vnet_prefix if side else None, replaced_by=tuple(replaced_by),
        not_replacing=tuple(not_replacing), route_table_id=table.id if table else subnet.route_table_id,
        hop=hop, candidates=tuple(candidates),
    )


# --- the grouped engine ----------------------------------------------------------------------------
#
# decide() answers one (client subnet, IP) question with every reason. A tenant asks it for every client subnet
# and every endpoint IP: 279,227 times at 100k resources, for only 1,794 (client subnet, endpoint subnet) groups
# (issue 14). The engine below compiles every route table and every network's system routes once to integers,
# and decides once per group of paths that share their candidate routes: the same client network and route
# table, the same covering routes, the same endpoint policy and VNet prefix. A group is found through the
# endpoint's subnet prefix (its "region"): a route that holds the whole region covers every IP in it, a route
# disjoint from it none, and only a route strictly inside it (a /32 for one endpoint, a prefix that splits the
# subnet) is tested per IP, so such an IP joins the group of exactly the routes that cover it. Reasons are built
# by decide() only when a path's reasons are read.

# (version, network address as an integer, prefix length, address bits)
_Compiled = tuple[int, int, int, int]
_ENDPOINT_WINS = RouteCandidate("0.0.0.0/32", ENDPOINT, "InterfaceEndpoint")  # stands for the endpoint's /32


@functools.lru_cache(maxsize=1 << 16)
def _compile(prefix: str | None) -> _Compiled | None:
    net = _net(prefix)
    return None if net is None else (net.version, int(net.network_address), net.prefixlen, net.max_prefixlen)


def _holds(outer: _Compiled, version: int, value: int, length: int) -> bool:
    """Whether the prefix ``outer`` contains the prefix (version, value, length)."""
    v, network, plen, bits = outer
    return v == version and plen <= length and (value >> (bits - plen)) == (network >> (bits - plen))


@dataclass(frozen=True, slots=True)
class _EndpointIp:
    """What a path needs of its endpoint and IP, computed once per (endpoint, IP)."""

    policy: str | None
    vnet_prefix: str | None
    vnet_prefix_length: int | None
    route: RouteCandidate
    value: int
    region: _Compiled


@dataclass(frozen=True, slots=True)
class _Decision:
    winner: RouteCandidate | None   # _ENDPOINT_WINS when the endpoint's /32 wins
    replaced_by: tuple[RouteCandidate, ...]
    not_replacing: tuple[RouteCandidate, ...]


_Entries = tuple[tuple[_Compiled, RouteCandidate], ...]
_Split = tuple[tuple[int, ...], tuple[int, ...]]   # (indices holding the whole region, indices inside it)


# Per endpoint subnet, across snapshots while its subnet and network records stay the very same objects (the daemon's
# events keep untouched records): the compiled address space of its network and its own prefixes, which the ~600
# endpoints behind a changed route table compiled again one by one (issue 14). Bounded; keyed by the subnet's key.
_SUBNET_PARTS: dict[str | None, tuple[Subnet | None, VirtualNetwork | None, tuple[tuple[_Compiled, str], ...],
                                      tuple[_Compiled, ...]]] = {}
_SUBNET_PARTS_MAX = 50_000


def _subnet_part(key: str | None, subnet: Subnet | None, vnet: VirtualNetwork | None
                 ) -> tuple[tuple[tuple[_Compiled, str], ...], tuple[_Compiled, ...]]:
    """(the network's address-space entries compiled with their text, the subnet's prefixes compiled) of the
    endpoint subnet ``key`` whose records are ``subnet`` and ``vnet``."""
    hit = _SUBNET_PARTS.get(key)
    if hit is None or hit[0] is not subnet or hit[1] is not vnet:
        if len(_SUBNET_PARTS) >= _SUBNET_PARTS_MAX:
            _SUBNET_PARTS.clear()
        hit = _SUBNET_PARTS[key] = (
            subnet, vnet, tuple((c, prefix) for prefix in (vnet.address_prefixes if vnet else ())
                                if (c := _compile(prefix)) is not None),
            tuple(c for prefix in (subnet.address_prefixes if subnet else ()) if (c := _compile(prefix)) is not None))
    return hit[2], hit[3]


# Per (endpoint, IP text) under the daemon's units, across snapshots while the endpoint, its subnet and its network are
# the very same records (a route or network event leaves them alone): what its paths take of it, which the ~600
# endpoints behind a changed route table worked out again one by one (issue 14). Bounded (~2 MB when full).
_ENDPOINT_IPS: dict[tuple[str, str], tuple[PrivateEndpoint, Subnet | None, VirtualNetwork | None, _EndpointIp]] = {}
_ENDPOINT_IPS_MAX = 8192


# By the layout's identity (with its clients'): what each path of an IP laid out so takes of its client subnet and
# group, the clients it does not reach left out. The daemon keeps layouts and clients as shared work across events and
# the endpoints of a subnet share them. Bounded.
_LAID_PATHS: dict[int, tuple[Any, Any, list[tuple[Any, ...]]]] = {}
_LAID_PATHS_MAX = 4096


def _laid_paths(clients: list[Subnet], layout: _Layout) -> list[tuple[Any, ...]]:
    """(client subnet, its id, winner, replaced_by, not_replacing, route table id, hop, via appliance) for each client
    of ``layout`` that is reached, in client order."""
    hit = _LAID_PATHS.get(id(layout))
    if hit is None or hit[0] is not layout or hit[1] is not clients:
        if len(_LAID_PATHS) >= _LAID_PATHS_MAX:
            _LAID_PATHS.clear()
        rows = [(subnet, subnet.id, d[1], d[0].replaced_by, d[0].not_replacing, d[4], d[2], d[3])
                for subnet, d in zip(clients, layout, strict=True) if d is not None]
        hit = _LAID_PATHS[id(layout)] = (layout, clients, rows)
    return hit[2]


class _Engine:
    """One snapshot's compiled routes and decided groups."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        # Under the daemon's units (plmon.checks.units) the engine's work is kept per key across events with what
        # it read, and the reverse lookups come from kept indexes; otherwise it is this snapshot's alone.
        self.tracked = tracking()
        self.hops: _Hops = _IndexedHops(snap) if self.tracked else _hop_index(snap)
        self.by_ip: _ByIp = _IndexedEndpoints(snap) if self.tracked else _EndpointsByValue(snap)
        self._system: dict[str | None, _Entries] = {}
        self._tables: dict[str, _Entries] = {}
        self._splits: dict[tuple[str | None, str | None, _Compiled], tuple[_Split, _Split]] = {}
        self._prefixes: dict[tuple[str, str | None], tuple[_Entries, _Prefixes]] = {}
        self._decisions: dict[tuple[Any, ...], _Decision] = {}
        self._reached: dict[str, dict[str, Peering | None]] = {}
        self._visible: dict[tuple[str, IPAddr], PrivateEndpoint | None] = {}
        self._endpoint_ips: dict[tuple[str, IPAddr], _EndpointIp] = {}
        self._hop_of: dict[tuple[str | None, str | None], Hop] = {}
        self._explain = self.explain   # one bound method shared by every path
        self._plain: _PlainEngine | None = None
        self.paths: dict[str, tuple[PathResult, ...]] = {}

    # compiled once: system routes per network, UDRs per route table
    def system_entries(self, vnet_key: str | None) -> _Entries:
        if self.tracked:
            return shared(("paths.system", vnet_key), lambda: self._system_entries(vnet_key))
        if vnet_key in self._system:
            return self._system[vnet_key]
        self._system[vnet_key] = entries = self._system_entries(vnet_key)
        return entries

    def _system_entries(self, vnet_key: str | None) -> _Entries:
        vnet = self.snap.virtual_networks.get(vnet_key or "")
        out: list[tuple[_Compiled, RouteCandidate]] = []
        for prefix in vnet.address_prefixes if vnet else ():
            if (c := _compile(prefix)) is not None:
                out.append((c, RouteCandidate(str(_net(prefix)), VNET_LOCAL, "VnetLocal")))
        for p in vnet.peerings if vnet else ():
            if not peering_counts(p):
                continue  # no route from it (decide() says so when a path is explained)
            remote = self.snap.virtual_networks.get(p.remote_vnet_id.key) if p.remote_vnet_id else None
            for prefix in remote.address_prefixes if remote else p.remote_address_prefixes:
                if (c := _compile(prefix)) is not None:
                    out.append((c, RouteCandidate(str(_net(prefix)), PEERING, "VNetPeering")))
        return tuple(out)

    def udr_entries(self, table: RouteTable | None) -> _Entries:
        if table is None:
            return ()
        if self.tracked:
            return shared(("paths.udrs", table.key), lambda: self._udr_entries(table))
        if table.key not in self._tables:
            self._tables[table.key] = self._udr_entries(table)
        return self._tables[table.key]

    def _udr_entries(self, table: RouteTable) -> _Entries:
        self.snap.route_tables.get(table.key)   # what it compiles is this table's
        return tuple((c, RouteCandidate(str(_net(r.address_prefix)), UDR, r.next_hop_type or "None", r.next_hop_ip,
                                        r.name, table.id))
                     for r in table.routes if (c := _compile(r.address_prefix)) is not None)

    def reached(self, pe_vnet: str) -> dict[str, Peering | None]:
        if self.tracked:
            return shared(("paths.reached", pe_vnet), lambda: _reached_vnets(self.snap, pe_vnet))
        if pe_vnet not in self._reached:
            self._reached[pe_vnet] = _reached_vnets(self.snap, pe_vnet)
        return self._reached[pe_vnet]

    def clients(self, pe_vnet: str) -> list[Subnet]:
        """:func:`client_subnets` of the endpoints in ``pe_vnet``, kept once per network under the daemon's units:
        each endpoint's paths then read one entry instead of every client network and subnet (~15 reads each, and
        as many reverse entries, for ~35k endpoints at 100k resources)."""
        return shared(("paths.clients", pe_vnet), lambda: _clients_of(self.snap, pe_vnet))

    # per endpoint IP
    def first_visible(self, vnet_key: str | None, ip: IPAddr) -> PrivateEndpoint | None:
        """decide()'s endpoint: the first holder of ``ip`` whose network reaches the client's."""
        if vnet_key is None:
            return None
        key = (vnet_key, ip)
        if self.tracked:
            return shared(("paths.visible", key), lambda: self._first_visible(vnet_key, ip))
        if key not in self._visible:
            self._visible[key] = self._first_visible(vnet_key, ip)
        return self._visible[key]

    def _first_visible(self, vnet_key: str, ip: IPAddr) -> PrivateEndpoint | None:
        holders: Iterable[PrivateEndpoint] = self.by_ip.get(ip, ())
        for pe in holders:
            pe_vnet = _vnet_key_of(self.snap, pe.subnet_id)
            if pe_vnet is not None and vnet_key in self.reached(pe_vnet):
                return pe
        return None

    def endpoint_ip(self, pe: PrivateEndpoint, ip: IPAddr, text: str | None = None) -> _EndpointIp:
        """What a path to ``ip`` takes of the endpoint (``text``: ``str(ip)`` when the caller has it)."""
        key = (pe.key, ip)
        if self.tracked:
            # only this endpoint's paths use it, which are kept as one unit: computed (and its reads recorded) with
            # them, not kept as shared work of its own (~35k entries, ~15 MB of the daemon's RSS at 100k resources)
            return self._endpoint_ip(pe, ip, text)
        if key not in self._endpoint_ips:
            self._endpoint_ips[key] = self._endpoint_ip(pe, ip, text)
        return self._endpoint_ips[key]

    def _endpoint_ip(self, pe: PrivateEndpoint, ip: IPAddr, text: str | None = None) -> _EndpointIp:
        snap = self.snap
        snap.private_endpoints.get(pe.key)   # what it judges is this endpoint's
        ep_subnet = snap.subnet_of(pe)
        vnet = snap.virtual_networks.get(_vnet_key_of(snap, pe.subnet_id) or "")
        kept = (pe.key, text) if self.tracked and text is not None else None
        if kept is not None:
            hit = _ENDPOINT_IPS.get(kept)
            if hit is not None and hit[0] is pe and hit[1] is ep_subnet and hit[2] is vnet:
                return hit[3]
        info = self._endpoint_ip_of(pe, ip, text, ep_subnet, vnet)
        if kept is not None:
            if len(_ENDPOINT_IPS) >= _ENDPOINT_IPS_MAX:
                _ENDPOINT_IPS.clear()
            _ENDPOINT_IPS[kept] = (pe, ep_subnet, vnet, info)
        return info

    def _endpoint_ip_of(self, pe: PrivateEndpoint, ip: IPAddr, text: str | None, ep_subnet: Subnet | None,
                        vnet: VirtualNetwork | None) -> _EndpointIp:
        vnet_prefixes, subnet_prefixes = _subnet_part(pe.subnet_id.key if pe.subnet_id else None, ep_subnet, vnet)
        version, value, bits = ip.version, int(ip), ip.max_prefixlen
        vnet_prefix = _holding_prefix(vnet_prefixes, version, value, bits)
        vnet_net = _net(vnet_prefix)
        region: _Compiled = (version, value, bits, bits)
        for c in subnet_prefixes:
            if _holds(c, version, value, bits):
                region = c
                break
        return _EndpointIp(ep_subnet.pe_policies if ep_subnet else None, vnet_prefix,
                           vnet_net.prefixlen if vnet_net else None,
                           RouteCandidate(f"{text or ip}/{bits}", ENDPOINT, "InterfaceEndpoint", endpoint_id=pe.id),
                           value, region)

    # per group
    def _split(self, vnet_key: str | None, table: RouteTable | None, region: _Compiled) -> tuple[_Split, _Split]:
        key = (vnet_key, table.key if table else None, region)
        if key not in self._splits:
            self._splits[key] = (self._indexed(("system", vnet_key), self.system_entries(vnet_key)).split(region),
                                 self._indexed(("udrs", key[1]), self.udr_entries(table)).split(region))
        return self._splits[key]

    def _indexed(self, key: tuple[str, str | None], entries: _Entries) -> _Prefixes:
        hit = self._prefixes.get(key)
        if hit is None or hit[0] is not entries:
            self._prefixes[key] = hit = (entries, _Prefixes(entries))
        return hit[1]

    def decision(self, vnet_key: str | None, table: RouteTable | None, info: _EndpointIp,
                 version: int) -> _Decision:
        (sys_whole, sys_inside), (udr_whole, udr_inside) = self._split(vnet_key, table, info.region)
        system, udrs = self.system_entries(vnet_key), self.udr_entries(table)
        sys_idx = _covering(sys_whole, sys_inside, system, version, info.value)
        udr_idx = _covering(udr_whole, udr_inside, udrs, version, info.value)
        key = (vnet_key, table.key if table else None, sys_idx, udr_idx, version, info.policy,
               info.vnet_prefix_length)
        found = self._decisions.get(key)
        if found is None:
            found = self._decisions[key] = _decide_group(
                [system[i][1] for i in sys_idx], [udrs[i][1] for i in udr_idx], version, info)
        return found

    def decided(self, vnet_key: str | None, table: RouteTable | None, info: _EndpointIp,
                version: int) -> tuple[_Decision, RouteCandidate | None, Hop | None, bool, bool]:
        """(the group's decision, its winning route, the appliance it routes through, whether it does, whether
        the decision depends on the IP: a route lies strictly inside the endpoint subnet's region), as both
        engines take it for each (client network, route table) group."""
        (_, sys_inside), (_, udr_inside) = self._split(vnet_key, table, info.region)
        group = self.decision(vnet_key, table, info, version)
        winner = group.winner
        via = winner is not None and winner is not _ENDPOINT_WINS and \
            lower(winner.next_hop_type) == "virtualappliance"
        hop = self.hop(winner.next_hop_ip, vnet_key) if via and winner is not None else None
        return group, winner, hop, via, bool(sys_inside or udr_inside)

    def hop(self, next_hop_ip: str | None, vnet_key: str | None) -> Hop:
        key = (next_hop_ip, vnet_key)
        if self.tracked:
            return shared(("paths.hop", key), lambda: resolve_next_hop(self.snap, next_hop_ip, self.hops, vnet_key))
        if key not in self._hop_of:
            self._hop_of[key] = resolve_next_hop(self.snap, next_hop_ip, self.hops, vnet_key)
        return self._hop_of[key]

    def _paths_plain(self, pe: PrivateEndpoint, ips: list[IPAddr]) -> Iterator[PathResult]:
        if self._plain is None:
            self._plain = _PlainEngine(self)
        return self._plain.paths(pe, ips)

    def explain(self, subnet: Subnet, destination: str) -> PathResult:
        return decide(self.snap, subnet, destination, hops=self.hops, by_ip=self.by_ip)

    def paths_of(self, pe: PrivateEndpoint, ips: list[IPAddr]) -> Iterator[PathResult]:
        """decide(subnet, ip) without its reasons for every client subnet of ``pe`` and each of its IPs (in
        decide()'s order), skipping an IP another endpoint owns for that client. Client subnets that share their
        network and route table share one decision per IP."""
        if not self.tracked:
            yield from self._paths_plain(pe, ips)
            return
        yield from self.paths_tracked(pe, ips)

    def laid(self, pe: PrivateEndpoint, ips: list[IPAddr]) -> tuple[list[Subnet], list[_PerIp]]:
        """The client subnets of ``pe``'s network and, per distinct IP of ``ips``, (IP, its text, whether ``pe``
        holds it alone, what the path takes of the endpoint, the layout of its client subnets): everything a tracked
        endpoint's paths are made of, read as its paths read it (none when its network is not known)."""
        snap = self.snap
        pe_vnet = _vnet_key_of(snap, pe.subnet_id)
        if pe_vnet is None:
            return [], []
        clients = self.clients(pe_vnet)
        per_ip: list[_PerIp] = []
        endpoints = snap.private_endpoints
        for ip in dict.fromkeys(ips):
            # the holders of the IP as _IndexedEndpoints.get reads them (each one's record), without their list
            keys = lookup(snap, ENDPOINTS_BY_IP, _ip_key(ip))
            if len(keys) == 1:
                only_holder = endpoints[keys[0]] is pe
            else:
                only_holder = False
                for k in keys:
                    endpoints[k]
            text = str(ip)   # once per IP (ipaddress formats in Python): the path's destination and the /32's prefix
            info = self.endpoint_ip(pe, ip, text)
            per_ip.append((ip, text, only_holder, info, self.layout(pe_vnet, info, ip.version)))
        return clients, per_ip

    def paths_tracked(self, pe: PrivateEndpoint, ips: list[IPAddr], probed: bool = False) -> list[PathResult]:
        """:meth:`paths_of` under the daemon's units, as one list (no generator resumed per path: the ~600 endpoints
        a route event re-derives make ~5k paths). ``probed``: the reads of its kept entry are registered already,
        so what :func:`endpoint_layouts` left of it in this pass may be taken instead of reading it again."""
        kept = scratch() if probed else None
        hit = kept.get(("paths.of", pe.key)) if kept is not None else None
        if hit is not None and hit[0] is pe and hit[1] == ips:
            # probed in this pass for its route subjects (endpoint_layouts), which registered the same reads
            clients, per_ip = hit[2], hit[3]
        else:
            clients, per_ip = self.laid(pe, ips)
        explain = self._explain
        if len(per_ip) == 1 and per_ip[0][2]:   # one IP of its own (most endpoints): its layout's paths, in one pass
            _ip, destination, _only, info, layout = per_ip[0]
            mine, policy, prefix = info.route, info.policy, info.vnet_prefix
            made = PathResult.laid
            return [made(sid, destination, mine if winner is _ENDPOINT_WINS else winner, pe, policy, prefix,
                         replaced_by, not_replacing, table_id, hop, explain, subnet, via)
                    for subnet, sid, winner, replaced_by, not_replacing, table_id, hop, via
                    in _laid_paths(clients, layout)]
        out: list[PathResult] = []
        for i, subnet in enumerate(clients):
            for ip, destination, only_holder, info, layout in per_ip:
                decided = layout[i]
                if decided is None:
                    continue
                group, winner, hop, via, table_id, vnet_key = decided
                if not only_holder and self.first_visible(vnet_key, ip) is not pe:
                    continue
                out.append(PathResult(subnet.id, destination, info.route if winner is _ENDPOINT_WINS else winner, None,
                                      pe, info.policy, info.vnet_prefix, group.replaced_by, group.not_replacing,
                                      table_id, hop, explain=explain, subnet=subnet, via_appliance=via))
        return out

    def layout(self, pe_vnet: str, info: _EndpointIp, version: int) -> _Layout:
        """Per client subnet of the endpoint network ``pe_vnet`` (in :meth:`clients` order), the decided group of
        a path to an IP ``info`` describes (None: the client's network is not reached), kept as shared work per
        (endpoint network, endpoint subnet region, policy, VNet prefix length) under the daemon's units: the
        ~600 endpoints behind a changed route table re-derive their paths from their subnets' few layouts instead
        of deciding each path again, and an endpoint's paths read one entry instead of every client's route table
        and route lists. Where a route lies strictly inside the region the decision depends on the IP: the layout
        is then kept per IP."""
        key = (pe_vnet, info.region, info.policy, info.vnet_prefix_length, version)
        uniform, found = shared(("paths.layout", *key), lambda: self._layout(pe_vnet, info, version))
        if uniform:
            return found
        return shared(("paths.layout", *key, info.value), lambda: self._layout(pe_vnet, info, version))[1]

    def _layout(self, pe_vnet: str, info: _EndpointIp, version: int) -> tuple[bool, _Layout]:
        snap = self.snap
        reached = self.reached(pe_vnet)
        uniform = True
        by_group: dict[tuple[str, str | None], _Laid] = {}
        out: list[_Laid | None] = []
        for subnet in self.clients(pe_vnet):
            vnet_key = subnet.vnet_id.key if subnet.vnet_id else None
            if vnet_key is None or vnet_key not in reached:
                out.append(None)
                continue
            table = snap.route_tables.get(subnet.route_table_id.key) if subnet.route_table_id else None
            table_id = table.id if table else subnet.route_table_id
            gkey = (vnet_key, table.key if table else None)
            decided = by_group.get(gkey)
            if decided is None or decided[4] is not table_id:
                group, winner, hop, via, per_ip = self.decided(vnet_key, table, info, version)
                if per_ip:
                    uniform = False   # which of those routes cover the IP depends on the IP: not shared
                decided = by_group[gkey] = (group, winner, hop, via, table_id, vnet_key)
            out.append(decided)
        return uniform, tuple(out)


class _Prefixes:
    """A route list indexed for :func:`_split`: a hub network's system routes hold one prefix per peered spoke, and
    testing each of them against each endpoint subnet's region was quadratic in the spokes."""

    __slots__ = ("by_length", "starts")

    def __init__(self, entries: _Entries) -> None:
        # (version, prefix length) -> network >> (bits - length) -> indices; per version the networks in order
        self.by_length: dict[tuple[int, int], dict[int, list[int]]] = {}
        rows: dict[int, list[tuple[int, int, int]]] = {}
        for i, (c, _route) in enumerate(entries):
            version, network, plen, bits = c
            self.by_length.setdefault((version, plen), {}).setdefault(network >> (bits - plen), []).append(i)
            rows.setdefault(version, []).append((network, plen, i))
        self.starts = {v: (sorted(r), [n for n, _, _ in sorted(r)]) for v, r in rows.items()}

    def split(self, region: _Compiled) -> _Split:
        """:func:`_split` of the indexed entries: the same indices, in their listed order."""
        version, value, length, bits = region
        whole: list[int] = []
        for (v, plen), found in self.by_length.items():
            if v == version and plen <= length:
                whole.extend(found.get(value >> (bits - plen), ()))
        whole.sort()
        inside: list[int] = []
        per_version = self.starts.get(version)
        if per_version is not None:
            rows, networks = per_version
            low = (value >> (bits - length)) << (bits - length)
            i = bisect.bisect_left(networks, low)
            high = low + (1 << (bits - length))
            held = set(whole)
            while i < len(rows) and rows[i][0] < high:
                _network, plen, idx = rows[i]
                if plen >= length and idx not in held:
                    inside.append(idx)
                i += 1
            inside.sort()
        return tuple(whole), tuple(inside)


# A tracked layout's entry for one client subnet: the decision, the winner (_ENDPOINT_WINS: the endpoint's own /32), the
# next hop, whether the winner is a virtual appliance, the route table's id and the client's network key
_Laid = tuple[_Decision, RouteCandidate | None, Hop | None, bool, ArmId | None, str]
_Layout = tuple[_Laid | None, ...]
# One IP of a tracked endpoint (_Engine.laid): the IP, its text, whether the endpoint holds it alone, what a path takes
# of the endpoint, the layout of the endpoint network's client subnets
_PerIp = tuple[IPAddr, str, bool, _EndpointIp, _Layout]

# One client subnet of an endpoint network: (subnet, its network's key, its route table, the table's id, whether its
# network is one the endpoint network reaches)
_Client = tuple[Subnet, str | None, RouteTable | None, ArmId | None, bool]
# What every path of one group shares: the decision, the winner (_ENDPOINT_WINS: the endpoint's own /32), the next
# hop, whether the winner is a virtual appliance, whether a route check can read the path (see routed_paths), and
# whether an appliance route covers the IP without replacing the endpoint's /32
_Decided = tuple[_Decision, RouteCandidate | None, Hop | None, bool, bool, bool]


class _PlainEngine:
    """The engine's paths of a plain evaluation (nothing recorded): what does not depend on the endpoint is kept
    per network and per endpoint subnet, so a path costs one PathResult.

    The client subnets of an endpoint depend only on its network; and where no route lies strictly inside the
    endpoint subnet (its "region"), every IP of the subnet has the same covering routes, so the decision of each
    client subnet (its "layout") is shared by every endpoint of the subnet with the same policy and VNet prefix:
    a hub's 200 endpoints decide their 1,000 client subnets once instead of 200 times.
    """

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.clients: dict[str, list[_Client]] = {}
        self.layouts: dict[tuple[Any, ...], list[_Decided | None]] = {}
        self.wanted: dict[int, tuple[list[int], list[int]]] = {}   # by a kept layout's identity: _wanted(layout)
        # per endpoint (the route checks ask twice): its IPs with their layouts, and the client subnets to visit
        self.endpoints: dict[str, tuple[PrivateEndpoint, list[tuple[IPAddr, str, bool, _EndpointIp,
                                                                   list[_Decided | None]]],
                                        tuple[list[int], list[int]]]] = {}
        # the holders of each IP by (version, value): an IPv4Address hashes through hex() on every lookup
        by_ip = engine.by_ip
        assert isinstance(by_ip, _EndpointsByValue)
        self.holders: dict[tuple[int, int], list[PrivateEndpoint]] = by_ip.holders
        # per endpoint subnet id: what _EndpointIp needs that does not depend on the IP
        self.subnets: dict[str | None, tuple[str | None, list[tuple[_Compiled, str]], list[_Compiled]]] = {}
        # routed_paths' ``reported``: the predicate, its verdict per next hop (by the hop's identity: the engine keeps
        # one Hop per (next-hop IP, client network), so ids stay valid) and the visits it leaves per kept layout
        self.reported: Callable[[Hop], bool] | None = None
        self.hop_reported: dict[int, tuple[Hop, bool]] = {}
        self.reported_visits: dict[int, list[int]] = {}
        # per endpoint subnet id: the regions whose every IP has one kept layout, with it (see _needs)
        # (version, address bits - prefix length, network >> that) of each region, with its layout and the region
        self.fast: dict[str | None, list[tuple[int, int, int, list[_Decided | None], _Compiled]]] = {}
        # firewall_tenant's ``within`` for its ``firewalls``, and its verdict per (next hop's identity, region)
        self.within: tuple[Callable[[Hop, str], bool], Callable[[Hop, IPNet], bool | None]] | None = None
        self.within_regions: dict[tuple[int, _Compiled], bool | None] = {}
        self.firewall_hops: dict[int, list[Hop]] = {}   # by a kept layout's identity: its firewalls' distinct hops
        self.candidates: list[tuple[str, PrivateEndpoint, list[IPAddr]]] | None = None   # see tenant()

    def endpoint_ip(self, pe: PrivateEndpoint, ip: IPAddr, text: str) -> _EndpointIp:
        """:meth:`_Engine._endpoint_ip` with the endpoint subnet's part kept per subnet (``text``: ``str(ip)``)."""
        skey = pe.subnet_id.key if pe.subnet_id else None
        part = self.subnets.get(skey)
        if part is None:
            snap = self.engine.snap
            ep_subnet = snap.subnet_of(pe)
            vnet = snap.virtual_networks.get(_vnet_key_of(snap, pe.subnet_id) or "")
            part = self.subnets[skey] = (
                ep_subnet.pe_policies if ep_subnet else None,
                [(c, prefix) for prefix in (vnet.address_prefixes if vnet else ()) if (c := _compile(prefix))],
                [c for prefix in (ep_subnet.address_prefixes if ep_subnet else ()) if (c := _compile(prefix))])
        policy, vnet_prefixes, subnet_prefixes, *_ = part
        version, value, bits = ip.version, int(ip), ip.max_prefixlen
        vnet_prefix = _holding_prefix(vnet_prefixes, version, value, bits)
        vnet_net = _net(vnet_prefix)
        region: _Compiled = (version, value, bits, bits)
        for c in subnet_prefixes:
            if _holds(c, version, value, bits):
                region = c
                break
        return _EndpointIp(policy, vnet_prefix, vnet_net.prefixlen if vnet_net else None,
                           RouteCandidate(f"{text}/{bits}", ENDPOINT, "InterfaceEndpoint", endpoint_id=pe.id),
                           value, region)

    def _whole(self, skey: str | None, region: _Compiled) -> bool:
        """Whether every IP of ``region`` has the _EndpointIp key of any other in an endpoint subnet ``skey``: it is
        the first of the subnet's prefixes to hold each of them (no earlier prefix overlaps it) and no address-space
        entry of the endpoint's network lies strictly inside it (the longest entry holding an IP is the same)."""
        _policy, vnet_prefixes, subnet_prefixes = self.subnets[skey]
        version, value, length, _bits = region
        for c in subnet_prefixes:
            if c == region:
                break
            if _holds(c, version, value, length) or _holds(region, c[0], c[1], c[2]):
                return False
        else:
            return False   # not one of the subnet's prefixes (an IP outside them is its own region)
        return not any(_holds(region, c[0], c[1], c[2]) and c[2] > length for c, _prefix in vnet_prefixes)

    def _remember(self, skey: str | None, region: _Compiled, layout: list[_Decided | None]) -> None:
        """Keep a kept layout for every IP of ``region`` in endpoint subnet ``skey`` when :meth:`_whole` allows."""
        fast = self.fast.setdefault(skey, [])
        if all(entry[3] is not layout for entry in fast) and self._whole(skey, region):
            version, network, length, bits = region
            fast.append((version, bits - length, network >> (bits - length), layout, region))

    def _needs(self, pe: PrivateEndpoint, ips: list[IPAddr], firewalls: Callable[[Hop, str], bool] | None,
               reported: Callable[[Hop], bool] | None) -> tuple[bool, bool] | None:
        """Whether ``pe`` has routed paths without ``firewalls`` (given ``reported``), and whether it has some with
        them (without them: whether any of its paths goes through a firewall), decided from the layouts kept for the
        regions of its subnet alone (None: an IP lies in no such region, so only its paths can tell). At 100k
        resources most endpoints have no path a route check reads, and finding that out per endpoint (its IPs'
        _EndpointIp, layout and visits) cost more than building the paths that are read."""
        fast = self.fast.get(pe.subnet_id.key if pe.subnet_id else None)
        if not fast:
            return None
        routes = through = False
        for ip in ips:
            version, value = ip.version, int(ip)
            for v, shift, network, kept, kept_region in fast:
                if v == version and value >> shift == network:
                    layout, region = kept, kept_region
                    break
            else:
                return None
            if not routes:
                visits = self.wanted[id(layout)][0]
                routes = bool(visits) and (reported is None or bool(self._reported_visits(layout, visits, reported)))
            if not through:
                hops = self.firewall_hops.get(id(layout))
                if hops is None:
                    seen = {id(h): h for i in self.wanted[id(layout)][1] if (h := layout[i][2]) is not None}  # type: ignore[index]
                    hops = self.firewall_hops[id(layout)] = list(seen.values())
                if hops:
                    if firewalls is None:
                        through = True
                    elif self.within is not None and self.within[0] is firewalls:
                        through = any(self._within(h, region, ip) for h in hops)
                    else:
                        text = str(ip)
                        through = any(firewalls(h, text) for h in hops)
        return routes, through

    def _within(self, hop: Hop, region: _Compiled, ip: IPAddr) -> bool:
        """``firewalls(hop, str(ip))`` from the verdict of firewall_tenant's ``within`` for the whole ``region``,
        kept per (hop, region); asked of the address only where it depends on it."""
        assert self.within is not None
        firewalls, within = self.within
        key = (id(hop), region)
        if key in self.within_regions:
            found = self.within_regions[key]
        else:
            version, network, length, _bits = region
            net = ipaddress.IPv4Network((network, length)) if version == 4 else \
                ipaddress.IPv6Network((network, length))
            found = self.within_regions[key] = within(hop, net)
        return firewalls(hop, str(ip)) if found is None else found

    def tenant(self, reported: Callable[[Hop], bool]) -> list[tuple[str, tuple[PathResult, ...]]]:
        """:func:`routed_tenant`, noting the endpoints with a path through a firewall for :meth:`through`."""
        out: list[tuple[str, tuple[PathResult, ...]]] = []
        candidates: list[tuple[str, PrivateEndpoint, list[IPAddr]]] = []
        # in the collection's order, the few endpoints kept sorted by key after: sorting the 35k long ids of a 100k
        # tenant cost more than most of this pass (an endpoint's paths do not depend on when it is visited)
        for key, pe in self.engine.snap.private_endpoints.items():
            ips = [ip for raw in pe.ip_addresses if (ip := parse_ip(raw)) is not None]
            if not ips:
                continue
            need = self._needs(pe, ips, None, reported)
            routes, through = (True, True) if need is None else need
            if routes and (found := tuple(self._paths(pe, ips, True, None, reported))):
                out.append((key, found))
            if through:
                candidates.append((key, pe, ips))
        out.sort(key=_FIRST)
        candidates.sort(key=_FIRST)
        self.candidates = candidates
        return out

    def through(self, firewalls: Callable[[Hop, str], bool], within: Callable[[Hop, IPNet], bool | None] | None = None
                ) -> list[tuple[str, tuple[PathResult, ...]]]:
        """:func:`firewall_tenant`: only the endpoints :meth:`tenant` found a firewall on the paths of."""
        if within is not None:
            self.within, self.within_regions = (firewalls, within), {}
        candidates = self.candidates
        if candidates is None:
            endpoints = self.engine.snap.private_endpoints
            candidates = [(key, pe, [ip for raw in pe.ip_addresses if (ip := parse_ip(raw)) is not None])
                          for key, pe in sorted(endpoints.items())]
        out: list[tuple[str, tuple[PathResult, ...]]] = []
        for key, pe, ips in candidates:
            if ips and (found := tuple(self.paths(pe, ips, True, firewalls))):
                out.append((key, found))
        return out

    def clients_of(self, pe_vnet: str) -> list[_Client]:
        """client_subnets() of any endpoint in ``pe_vnet``, with what each path needs of the subnet."""
        found = self.clients.get(pe_vnet)
        if found is not None:
            return found
        snap = self.engine.snap
        reached = self.engine.reached(pe_vnet)
        found = []
        for key in reached:
            vnet = snap.virtual_networks.get(key)
            for sid in vnet.subnet_ids if vnet else ():
                subnet = snap.subnets.get(sid.key)
                if subnet is None:
                    continue
                vnet_key = subnet.vnet_id.key if subnet.vnet_id else None
                table = snap.route_tables.get(subnet.route_table_id.key) if subnet.route_table_id else None
                found.append((subnet, vnet_key, table, table.id if table else subnet.route_table_id,
                              vnet_key is not None and vnet_key in reached))
        self.clients[pe_vnet] = found
        return found

    def layout(self, pe_vnet: str, clients: list[_Client], info: _EndpointIp, version: int) -> list[_Decided | None]:
        """Per client subnet, the decided group of a path to an IP ``info`` describes (None: no path from there)."""
        key = (pe_vnet, info.region, info.policy, info.vnet_prefix_length, version)
        found = self.layouts.get(key)
        if found is not None:
            return found
        engine = self.engine
        uniform = True
        by_group: dict[tuple[str | None, str | None], _Decided] = {}
        out: list[_Decided | None] = []
        for _subnet, vnet_key, table, _table_id, reachable in clients:
            if not reachable:
                out.append(None)
                continue
            gkey = (vnet_key, table.key if table else None)
            decided = by_group.get(gkey)
            if decided is None:
                group, winner, hop, via, per_ip = engine.decided(vnet_key, table, info, version)
                if per_ip:
                    uniform = False   # which of those routes cover the IP depends on the IP: not shared
                bypass = not group.replaced_by and any(lower(u.next_hop_type) == "virtualappliance"
                                                       for u in group.not_replacing)
                decided = by_group[gkey] = (group, winner, hop, via, via or bypass, bypass)
            out.append(decided)
        if uniform:
            self.layouts[key] = out
            self.wanted[id(out)] = self._wanted(out)
        return out

    def _wanted(self, layout: list[_Decided | None]) -> tuple[list[int], list[int]]:
        """The client subnets whose paths :func:`routed_paths` keeps without ``firewalls``, and those through an
        Azure Firewall (what it keeps with it is among them): the others need no visit."""
        routes: list[int] = []
        firewalls: list[int] = []
        for i, decided in enumerate(layout):
            if decided is None or not decided[4]:
                continue
            hop = decided[2]
            through_firewall = hop is not None and hop.firewall is not None
            if through_firewall:
                firewalls.append(i)
            if not through_firewall or decided[5]:
                routes.append(i)
        return routes, firewalls

    def _reports(self, reported: Callable[[Hop], bool], hop: Hop | None) -> bool:
        """``reported(hop)``, judged once per next hop (every path of a group shares its Hop)."""
        if hop is None:
            return True
        if self.reported is not reported:
            self.reported, self.hop_reported, self.reported_visits = reported, {}, {}
        hit = self.hop_reported.get(id(hop))
        if hit is None or hit[0] is not hop:
            hit = self.hop_reported[id(hop)] = (hop, reported(hop))
        return hit[1]

    def _reported_visits(self, layout: list[_Decided | None], routes: list[int],
                         reported: Callable[[Hop], bool]) -> list[int]:
        """The client subnets of ``routes`` whose paths ``reported`` keeps: those with an appliance route that does
        not replace the endpoint's /32, and those through a next hop ``reported`` holds for."""
        if self.reported is not reported:
            self.reported, self.hop_reported, self.reported_visits = reported, {}, {}
        found = self.reported_visits.get(id(layout))
        if found is not None:
            return found
        out = []
        for i in routes:
            decided = layout[i]
            if decided is not None and (decided[5] or self._reports(reported, decided[2])):
                out.append(i)
        if self.wanted.get(id(layout)) is not None:   # a kept layout: its identity stays valid
            self.reported_visits[id(layout)] = out
        return out

    def paths(self, pe: PrivateEndpoint, ips: list[IPAddr], routed: bool = False,
              firewalls: Callable[[Hop, str], bool] | None = None,
              reported: Callable[[Hop], bool] | None = None) -> Iterator[PathResult]:
        """:meth:`_Engine.paths_of` for a plain evaluation: the same paths in the same order (with ``routed``, only
        those :func:`routed_paths` keeps, given ``firewalls`` and ``reported``)."""
        if routed and (need := self._needs(pe, ips, firewalls, reported)) is not None and \
                not need[0 if firewalls is None else 1]:
            return iter(())
        return self._paths(pe, ips, routed, firewalls, reported)

    def _paths(self, pe: PrivateEndpoint, ips: list[IPAddr], routed: bool,
               firewalls: Callable[[Hop, str], bool] | None, reported: Callable[[Hop], bool] | None
               ) -> Iterator[PathResult]:
        engine = self.engine
        pe_vnet = _vnet_key_of(engine.snap, pe.subnet_id)
        if pe_vnet is None:
            return
        clients = self.clients_of(pe_vnet)
        kept = self.endpoints.get(pe.key)
        if kept is None or kept[0] is not pe:
            per_ip: list[tuple[IPAddr, str, bool, _EndpointIp, list[_Decided | None]]] = []
            seen: set[tuple[int, int]] = set()
            for ip in ips:
                ikey = (ip.version, int(ip))
                if ikey in seen:
                    continue
                seen.add(ikey)
                holders = self.holders.get(ikey) or []
                text = str(ip)
                info = self.endpoint_ip(pe, ip, text)
                layout = self.layout(pe_vnet, clients, info, ip.version)
                if id(layout) in self.wanted:
                    self._remember(pe.subnet_id.key if pe.subnet_id else None, info.region, layout)
                per_ip.append((ip, text, len(holders) == 1 and holders[0] is pe, info, layout))
            wanted = [self.wanted.get(id(layout)) or self._wanted(layout) for *_, layout in per_ip]
            visits: tuple[list[int], list[int]] = \
                wanted[0] if len(wanted) == 1 else (sorted({i for w in wanted for i in w[0]}),
                                                    sorted({i for w in wanted for i in w[1]}))
            kept = self.endpoints[pe.key] = (pe, per_ip, visits)
        _pe, per_ip, visits = kept
        explain = engine._explain
        visit: Iterable[int] = range(len(clients))
        if routed:
            visit = visits[0 if firewalls is None else 1]
            if firewalls is None and reported is not None:
                if len(per_ip) == 1:
                    visit = self._reported_visits(per_ip[0][4], visits[0], reported)
                else:
                    visit = sorted({i for *_, layout in per_ip
                                    for i in self._reported_visits(layout, self._wanted(layout)[0], reported)})
                if not visit:
                    return
        for i in visit:
            subnet, vnet_key, _table, table_id, _reachable = clients[i]
            for ip, destination, only_holder, info, layout in per_ip:
                decided = layout[i]
                if decided is None or (routed and not decided[4]) or \
                        (not only_holder and engine.first_visible(vnet_key, ip) is not pe):
                    continue
                group, winner, hop, via, _routed, bypass = decided
                if routed:
                    through_firewall = hop is not None and hop.firewall is not None
                    if firewalls is None:
                        if not bypass and (through_firewall or (reported is not None and
                                                                not self._reports(reported, hop))):
                            continue
                    elif not through_firewall or not firewalls(hop, destination):   # type: ignore[arg-type]
                        continue
                yield PathResult(subnet.id, destination, info.route if winner is _ENDPOINT_WINS else winner, None, pe,
                                 info.policy, info.vnet_prefix, group.replaced_by, group.not_replacing, table_id, hop,
                                 None, explain, subnet, via)


def _split(entries: _Entries, region: _Compiled) -> _Split:
    """Which routes hold the whole region (cover every IP in it) and which lie strictly inside it."""
    version, value, length, _ = region
    whole, inside = [], []
    for i, (c, _route) in enumerate(entries):
        if _holds(c, version, value, length):
            whole.append(i)
        elif _holds(region, c[0], c[1], c[2]):
            inside.append(i)
    return tuple(whole), tuple(inside)


def _covering(whole: tuple[int, ...], inside: tuple[int, ...], entries: _Entries, version: int,
              value: int) -> tuple[int, ...]:
    """The indices of the routes covering one IP of the region, in their listed order."""
    if not inside:
        return whole
    bits = 32 if version == 4 else 128
    hit = [i for i in inside if _holds(entries[i][0], version, value, bits)]
    return tuple(sorted((*whole, *hit))) if hit else whole


def _decide_group(system: list[RouteCandidate], udrs: list[RouteCandidate], version: int,
                  info: _EndpointIp) -> _Decision:
    """decide()'s rule for a group: the same candidates, replacements and winner, without the reasons."""
    bits = 32 if version == 4 else 128
    replaced_by: list[RouteCandidate] = []
    not_replacing: list[RouteCandidate] = []
    for u in udrs:
        ok, _why = replaces_endpoint_route(u.prefix_length, policy=info.policy,
                                           vnet_prefix_length=info.vnet_prefix_length, max_length=bits)
        (replaced_by if ok else not_replacing).append(u)
    endpoint = _ENDPOINT_WINS if version == 4 else RouteCandidate("::/128", ENDPOINT, "InterfaceEndpoint")
    default = RouteCandidate("0.0.0.0/0" if version == 4 else "::/0", DEFAULT, "Internet")
    candidates = [*system, default, *([] if replaced_by else [endpoint]), *udrs]
    winner = _winner(candidates)
    if winner is endpoint:
        winner = _ENDPOINT_WINS
    return _Decision(winner, tuple(replaced_by), tuple(not_replacing))


_CACHE: list[tuple[Snapshot, tuple[PathResult, ...]]] = []


def endpoint_paths(snap: Snapshot) -> tuple[PathResult, ...]:
    """Every (client subnet, endpoint IP) path of the snapshot, decided once per snapshot."""
    for cached_snap, results in _CACHE:
        if cached_snap is snap:
            return results
    results = tuple(_all_paths(snap))
    _CACHE[:] = [*_CACHE[-1:], (snap, results)]
    return results


def _all_paths(snap: Snapshot) -> Iterator[PathResult]:
    engine = _engine_for(snap)
    for pe in sorted(snap.private_endpoints.values(), key=lambda e: e.key):
        if engine.tracked:
            yield from paths_for(snap, pe)
            continue
        ips = [ip for ip in (parse_ip(x) for x in pe.ip_addresses) if ip is not None]
        if ips:
            yield from engine.paths_of(pe, ips)


_ENGINES: list[tuple[Snapshot, _Engine]] = []


def _engine_for(snap: Snapshot) -> _Engine:
    for cached_snap, engine in _ENGINES:
        if cached_snap is snap:
            return engine
    engine = _Engine(snap)
    _ENGINES[:] = [(snap, engine)]
    return engine


def routed_paths(snap: Snapshot, pe: PrivateEndpoint, firewalls: Callable[[Hop, str], bool] | None = None,
                 reported: Callable[[Hop], bool] | None = None) -> tuple[PathResult, ...]:
    """The paths of :func:`paths_for` a route check can report on, in their order, for a plain evaluation
    (``plmon scan``: nothing recorded). At 100k resources half of the paths neither go through an appliance nor
    have an appliance route that fails to replace the endpoint's /32, and most of the others go through an Azure
    Firewall that translates the traffic; each cost a PathResult that the route checks then walked past.

    Without ``firewalls``: the paths whose route is a virtual appliance other than an Azure Firewall, and those
    where an appliance route covers the IP without replacing the endpoint's /32 (what every route check but the
    SNAT ones reads). With it: the paths through an Azure Firewall for which ``firewalls(hop, destination)`` holds
    (the SNAT checks pass whether the firewall may leave that traffic untranslated). With ``reported`` (and no
    ``firewalls``), a path through an appliance other than a firewall whose appliance route replaced the /32 is kept
    only when ``reported(hop)`` holds: the route checks pass whether any of them can report a path through that
    next hop (most third-party appliances forward and SNAT, and their ~30k paths at 100k resources were built only
    to be walked past). Not kept: the caller keeps what it needs."""
    engine = _engine_for(snap)
    if engine.tracked:   # the snapshot's engine records its reads (the daemon's units): its paths, as recorded
        every = paths_for(snap, pe)
        return every if firewalls is None else tuple(p for p in every if p.hop and p.hop.firewall)
    ips = [ip for ip in (parse_ip(x) for x in pe.ip_addresses) if ip is not None]
    if not ips:
        return ()
    if engine._plain is None:
        engine._plain = _PlainEngine(engine)
    return tuple(engine._plain.paths(pe, ips, routed=True, firewalls=firewalls, reported=reported))


def routed_tenant(snap: Snapshot, reported: Callable[[Hop], bool]) -> list[tuple[str, tuple[PathResult, ...]]]:
    """Every endpoint (by key) with ``routed_paths(snap, pe, reported=reported)``, those without any left out: what
    the route checks of a plain evaluation walk, in one pass over the tenant's endpoints, most of them passed over
    on their subnet's kept layouts (:meth:`_PlainEngine._needs`)."""
    engine = _engine_for(snap)
    if engine.tracked:
        every = ((e, routed_paths(snap, pe, reported=reported)) for e, pe in sorted(snap.private_endpoints.items()))
        return [row for row in every if row[1]]
    if engine._plain is None:
        engine._plain = _PlainEngine(engine)
    return engine._plain.tenant(reported)


def firewall_tenant(snap: Snapshot, firewalls: Callable[[Hop, str], bool],
                    within: Callable[[Hop, IPNet], bool | None] | None = None,
                    ) -> list[tuple[str, tuple[PathResult, ...]]]:
    """Every endpoint (by key) with ``routed_paths(snap, pe, firewalls)``, those without any left out; after
    :func:`routed_tenant` of the snapshot, only the endpoints it found a path through a firewall for are visited.
    ``within(hop, network)``, when given, is ``firewalls(hop, destination)`` for every destination of ``network``
    when that is the same for all of them (else None): an endpoint subnet is then judged once per firewall instead
    of each of its addresses."""
    engine = _engine_for(snap)
    if engine.tracked:
        every = ((e, routed_paths(snap, pe, firewalls)) for e, pe in sorted(snap.private_endpoints.items()))
        return [row for row in every if row[1]]
    if engine._plain is None:
        engine._plain = _PlainEngine(engine)
    return engine._plain.through(firewalls, within)


def paths_for(snap: Snapshot, pe: PrivateEndpoint) -> tuple[PathResult, ...]:
    """The paths of :func:`endpoint_paths` to ``pe``'s IPs, in their order: the route engine's unit of work, kept
    across events under the daemon's units until something it read changes."""
    engine = _engine_for(snap)

    def compute() -> tuple[PathResult, ...]:
        snap.private_endpoints.get(pe.key)
        ips = [ip for ip in (parse_ip(x) for x in pe.ip_addresses) if ip is not None]
        if not ips:
            return ()
        if engine.tracked:   # an entry already kept (probed, or computed and dropped) has its reads registered
            return tuple(engine.paths_tracked(pe, ips, holds(("paths.of", pe.key))))
        return tuple(engine.paths_of(pe, ips))
    if engine.tracked:
        return shared(("paths.of", pe.key), compute)
    found = engine.paths.get(pe.key)
    if found is None:
        found = engine.paths[pe.key] = compute()
    return found


def endpoint_layouts(snap: Snapshot, pe: PrivateEndpoint) -> list[_Layout] | None:
    """Under the daemon's units, the layouts :func:`paths_for` makes ``pe``'s paths from, one per distinct IP in
    its order, reading what they read (the endpoint, its subnet and network, the holders of its IPs, its network's
    clients and layouts) without making a path: None outside the units, or when another endpoint holds one of its
    IPs too (which of them a client sees is then decided per path). Its paths are one per (client subnet, IP) whose
    layout entry is not None, clients first: what they name is the layouts', so a route event's ~600 endpoints
    derive their route subjects from their subnets' few layouts instead of ~5k paths (issue 14)."""
    engine = _engine_for(snap)
    if not engine.tracked:
        return None
    per_ip = _laid_of(engine, snap, pe)[1]
    if not all(only for _ip, _text, only, _info, _layout in per_ip):
        return None
    return [layout for _ip, _text, _only, _info, layout in per_ip]


def _laid_of(engine: _Engine, snap: Snapshot, pe: PrivateEndpoint) -> tuple[list[Subnet], list[_PerIp]]:
    """(clients, per IP) of ``pe`` as :meth:`_Engine.laid` gives them, read as its paths entry reads them (a read of
    that entry, which a probe keeps with their reads when it is not kept yet): taken from this pass's scratch when a
    probe of the entry left them there and the entry is still kept, so the route index and the judged units that ask
    for one endpoint's layouts work them out once a pass."""
    hit = _probed_of(snap, engine, pe)
    return hit[2], hit[3]


def _probed_of(snap: Snapshot, engine: _Engine, pe: PrivateEndpoint) -> list[Any]:
    """:func:`_laid_of`'s [endpoint, IPs, clients, per IP, its :class:`LaidEndpoint` once made] as this pass keeps
    it (in its scratch when under the units)."""
    key = ("paths.of", pe.key)
    hit = probed(key)
    if hit is not None and hit[0] is pe:
        return hit   # type: ignore[no-any-return]
    made: list[list[Any]] = []

    def probe() -> list[_PerIp]:   # what paths_for's compute reads, in its order
        snap.private_endpoints.get(pe.key)
        ips = [ip for ip in (parse_ip(x) for x in pe.ip_addresses) if ip is not None]
        if not ips:
            made.append([pe, ips, [], [], None])
            return []
        clients, per_ip = engine.laid(pe, ips)
        made.append([pe, ips, clients, per_ip, None])
        kept = scratch()
        if kept is not None:   # its paths, if asked for in this pass, are made from these (paths_tracked)
            kept[key] = made[-1]
        return per_ip
    shared_probe(key, probe)
    return made[-1]


class LaidEndpoint:
    """An endpoint whose one IP is its own, as the daemon's units make its paths (:meth:`_Engine.paths_tracked`):
    the rows of its layout's reached clients (kept per layout, shared by the endpoints of its subnet) and what a path
    takes of the endpoint. A route check keeps what it needs of one endpoint per layout row and makes only those
    rows' paths (:meth:`path`), equal to the endpoint's paths of those clients (issue 14: the ~600 endpoints behind a
    changed route table made ~5k paths that the SNAT rows mostly walked past)."""

    __slots__ = ("destination", "explain", "info", "made", "pe", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], pe: PrivateEndpoint, info: _EndpointIp, destination: str,
                 explain: Callable[[Subnet, str], PathResult]) -> None:
        self.rows, self.pe, self.info, self.destination, self.explain = rows, pe, info, destination, explain
        self.made: dict[int, PathResult] = {}   # row index -> its path, made once a pass (both SNAT checks' rows)

    def reads(self, picked: Iterable[int]) -> list[tuple[Any, ...]]:
        """(hop, destination, endpoint, client subnet id, winning route) of the paths of rows ``picked``, as
        :meth:`path` would make them, without making them."""
        rows, destination, pe, mine = self.rows, self.destination, self.pe, self.info.route
        out: list[tuple[Any, ...]] = []
        for i in picked:
            row = rows[i]
            winner = row[2]
            out.append((row[6], destination, pe, row[1], mine if winner is _ENDPOINT_WINS else winner))
        return out

    def path(self, i: int) -> PathResult:
        """The endpoint's path of row ``i`` of :attr:`rows`, as :func:`paths_for` makes it."""
        got = self.made.get(i)
        if got is None:
            subnet, sid, winner, replaced_by, not_replacing, table_id, hop, via = self.rows[i]
            info = self.info
            got = self.made[i] = PathResult.laid(
                sid, self.destination, info.route if winner is _ENDPOINT_WINS else winner, self.pe, info.policy,
                info.vnet_prefix, replaced_by, not_replacing, table_id, hop, self.explain, subnet, via)
        return got


def endpoint_laid(snap: Snapshot, pe: PrivateEndpoint) -> LaidEndpoint | None:
    """Under the daemon's units, ``pe``'s paths as layout rows (:class:`LaidEndpoint`), read as :func:`paths_for`
    reads them (one read of its entry) without making a path; None outside the units, or unless ``pe`` has one IP
    and holds it alone (its paths are then exactly one per row, in row order)."""
    engine = _engine_for(snap)
    if not engine.tracked:
        return None
    hit = _probed_of(snap, engine, pe)
    if hit[4] is not None:
        return hit[4]   # type: ignore[no-any-return]
    clients, per_ip = hit[2], hit[3]
    if len(per_ip) != 1 or not per_ip[0][2]:
        return None
    _ip, destination, _only, info, layout = per_ip[0]
    laid = hit[4] = LaidEndpoint(_laid_paths(clients, layout), pe, info, destination, engine._explain)
    return laid
