"""The one snapshot builder: raw ARM JSON (a :class:`RawInventory`) in, a :class:`Snapshot` out.

Every source shares it, so a recorded tenant and a live tenant give identical snapshots. ARM JSON is
untrusted here: keys go missing, types are wrong, lists are null, ids are typos or bare GUIDs. Every
read goes through the small accessors below, which return a default instead of raising, and an item
that cannot be a resource at all (not an object, no id) becomes a coverage gap rather than a crash.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from plmon.monitor.collect.plan import RawInventory, proves_absence
from plmon.monitor.model.arm_id import ArmId, interning, parse_id, repair_provider_typo
from plmon.monitor.model.clock import parse_time
from plmon.monitor.model.kinds import ACCESS_PATHS
from plmon.monitor.model.snapshot import (
    Association,
    BastionHost,
    ConsumerConnection,
    Coverage,
    CoverageGap,
    DnsZoneGroup,
    Firewall,
    FirewallPolicy,
    FrontendIp,
    LoadBalancer,
    Nic,
    NicIpConfig,
    Nsg,
    NsgRule,
    Peering,
    PlsNatIpConfig,
    PrivateDnsZone,
    PrivateEndpoint,
    PrivateLinkService,
    ProviderConnection,
    Rmpl,
    Route,
    RouteTable,
    Snapshot,
    Subnet,
    Subscription,
    Target,
    TargetState,
    VirtualNetwork,
    VnetLink,
    _frozen,
)

__all__ = ["BuildMemo", "build_snapshot", "parse_time", "paused_gc"]

log = structlog.get_logger(__name__)
_MISSING = object()


# --- defensive accessors ---------------------------------------------------------------------------

def _d(obj: Any, key: str) -> dict[str, Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, dict) else {}


def _l(obj: Any, key: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, list) else []


def _s(obj: Any, key: str) -> str | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) and v != "" else None


def _b(obj: Any, key: str) -> bool | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _strs(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and v)


def _ref(obj: Any, key: str) -> ArmId | None:
    """An ``{"id": ...}`` reference (``subnet``, ``routeTable``...) as a parsed id."""
    rid = _s(_d(obj, key), "id")
    return parse_id(rid) if rid else None


def _refs(items: Iterable[Any]) -> tuple[ArmId, ...]:
    return tuple(parse_id(i["id"]) for i in items if isinstance(i, dict) and _s(i, "id"))


def _p(obj: Any) -> dict[str, Any]:
    """An item's ``properties``; present but not an object (``null``, a list...) makes the item malformed.

    Read as ``{}``, a ``"properties": null`` endpoint would be built with no connection, subnet or IP and
    pass every check unseen. Raising here lets :meth:`_Collector.build` record the whole resource as a
    ``MalformedResource`` coverage gap instead, for every kind (and every nested item) the builder reads.
    An absent key stays ``{}``: small test bodies and some list entries carry no properties at all.
    """
    v = obj.get("properties") if isinstance(obj, dict) else None
    if isinstance(v, dict):
        return v
    if v is None and not (isinstance(obj, dict) and "properties" in obj):
        return {}
    raise ValueError(f"'properties' is {'null' if v is None else type(v).__name__}, not an object")


def _base(item: dict[str, Any], fallback_type: str) -> dict[str, Any]:
    tags = item.get("tags")
    return {
        "id": parse_id(item["id"]),
        "name": _s(item, "name") or parse_id(item["id"]).name,
        "type": _s(item, "type") or fallback_type,
        "location": _s(item, "location"),
        "tags": _frozen({k: v for k, v in tags.items() if isinstance(k, str) and isinstance(v, str)}
                        if isinstance(tags, dict) else {}),
        "provisioning_state": _s(_p(item), "provisioningState") or _s(item, "provisioningState"),
    }


# --- per-type parsers ------------------------------------------------------------------------------

def _consumer_connections(pe_id: ArmId, props: dict[str, Any]) -> tuple[ConsumerConnection, ...]:
    out = []
    for array, manual in (("privateLinkServiceConnections", False),
                          ("manualPrivateLinkServiceConnections", True)):
        for i, c in enumerate(_l(props, array)):
            if not isinstance(c, dict):
                continue
            cp = _p(c)
            state = _d(cp, "privateLinkServiceConnectionState")
            raw_id = _s(c, "id")
            name = _s(c, "name") or (raw_id.rstrip("/").rsplit("/", 1)[-1] if raw_id else f"{array}[{i}]")
            cid = parse_id(raw_id or f"{pe_id.raw}/{array}/{name}")
            target = _s(cp, "privateLinkServiceId")
            out.append(ConsumerConnection(
                id=cid, name=name, endpoint_id=pe_id, manual=manual,
                target_id=parse_id(target) if target else None,
                group_ids=_strs(_l(cp, "groupIds")),
                status=_s(state, "status"), description=_s(state, "description"),
                actions_required=_s(state, "actionsRequired") or _s(state, "actionRequired"),
                request_message=_s(cp, "requestMessage"),
            ))
    return tuple(out)


def _provider_connections(owner: ArmId, props: dict[str, Any]) -> tuple[ProviderConnection, ...]:
    out = []
    for i, c in enumerate(_l(props, "privateEndpointConnections")):
        if not isinstance(c, dict):
            continue
        cp = _p(c)
        state = _d(cp, "privateLinkServiceConnectionState")
        name = _s(c, "name") or f"privateEndpointConnections[{i}]"
        cid = _s(c, "id")
        # Some providers return short ids or none: anchor them under the owner so they stay unique.
        conn_id = parse_id(cid) if cid and cid.startswith("/") and "/" in cid.strip("/") else \
            parse_id(f"{owner.raw.rstrip('/')}/privateEndpointConnections/{name.rsplit('/', 1)[-1]}")
        pe = _s(_d(cp, "privateEndpoint"), "id")
        out.append(ProviderConnection(
            id=conn_id, name=name, owner_id=owner, endpoint_id=parse_id(pe) if pe else None,
            status=_s(state, "status"), description=_s(state, "description"),
            actions_required=_s(state, "actionsRequired") or _s(state, "actionRequired"),
            provisioning_state=_s(cp, "provisioningState"),
            group_ids=_strs(_l(cp, "groupIds")),
        ))
    return tuple(out)


def _zone_group(item: dict[str, Any]) -> DnsZoneGroup:
    configs = [c for c in _l(_p(item), "privateDnsZoneConfigs") if isinstance(c, dict)]
    zone_ids = tuple(parse_id(z) for z in (_s(_p(c), "privateDnsZoneId") for c in configs) if z)
    return DnsZoneGroup(id=parse_id(item["id"]), name=_s(item, "name") or parse_id(item["id"]).name,
                        zone_ids=zone_ids, config_names=_strs(_s(c, "name") for c in configs))


def _endpoint(item: dict[str, Any], groups: list[Any] | None) -> PrivateEndpoint:
    p = _p(item)
    base = _base(item, "Microsoft.Network/privateEndpoints")
    ips = [_s(_p(c), "privateIPAddress") for c in _l(p, "ipConfigurations")]
    for dns in _l(p, "customDnsConfigs"):
        ips.extend(_l(dns, "ipAddresses"))
    zone_groups = None if groups is None else tuple(
        _zone_group(g) for g in groups if isinstance(g, dict) and _s(g, "id"))
    return PrivateEndpoint(
        **base, subnet_id=_ref(p, "subnet"),
        connections=_consumer_connections(base["id"], p),
        ip_addresses=tuple(dict.fromkeys(_strs(ips))),
        nic_ids=_refs(_l(p, "networkInterfaces")),
        custom_dns_fqdns=_strs(_s(c, "fqdn") for c in _l(p, "customDnsConfigs")),
        dns_zone_groups=zone_groups,
    )


def _pls(item: dict[str, Any]) -> PrivateLinkService:
    p = _p(item)
    base = _base(item, "Microsoft.Network/privateLinkServices")
    nat = tuple(PlsNatIpConfig(
        id=parse_id(c["id"]) if _s(c, "id") else None, name=_s(c, "name") or "",
        subnet_id=_ref(_p(c), "subnet"), private_ip=_s(_p(c), "privateIPAddress"),
    ) for c in _l(p, "ipConfigurations") if isinstance(c, dict))
    return PrivateLinkService(
        **base, alias=_s(p, "alias"),
        visibility=_strs(_l(_d(p, "visibility"), "subscriptions")),
        auto_approval=_strs(_l(_d(p, "autoApproval"), "subscriptions")),
        fqdns=_strs(_l(p, "fqdns")), enable_proxy_protocol=_b(p, "enableProxyProtocol"),
        nat_ip_configs=nat, frontend_ids=_refs(_l(p, "loadBalancerFrontendIpConfigurations")),
        connections=_provider_connections(base["id"], p),
    )


def _target(key: str, body: Any) -> Target | None:
    if not isinstance(body, dict) or not _s(body, "id"):
        return None
    p = _p(body)
    base = _base(body, parse_id(body["id"]).type or "unknown")
    return Target(
        **base, state=TargetState.READ,
        has_public_network_access="publicNetworkAccess" in p,
        public_network_access=p.get("publicNetworkAccess"),
        # Spelled per type: networkAcls (Storage, Key Vault), networkRuleSet (ACR), networkACLs (SignalR and
        # Web PubSub), networkRuleSets (IoT Hub).
        network_acls_default_action=_s(_d(p, "networkAcls"), "defaultAction")
        or _s(_d(p, "networkRuleSet"), "defaultAction") or _s(_d(p, "networkACLs"), "defaultAction")
        or _s(_d(p, "networkRuleSets"), "defaultAction"),
        kind=_s(body, "kind"),
        connections=_provider_connections(base["id"], p),
        access_settings=_access_settings(p),
    )


def _access_settings(props: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The raw values the public-access table (plmon.monitor.model.kinds) reads besides ``publicNetworkAccess``,
    if present."""
    out: list[tuple[str, Any]] = []
    for path in ACCESS_PATHS:
        if path == "publicNetworkAccess":
            continue
        node: Any = props
        for part in path.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            # Scalars as read; anything else (a type that changed shape) as its text, so Target stays hashable.
            out.append((path, node if node is None or isinstance(node, str | bool | int | float) else str(node)))
    return tuple(out)


def _subnet(item: dict[str, Any], vnet_id: ArmId | None) -> Subnet:
    p = _p(item)
    prefixes = _strs([_s(p, "addressPrefix"), *_l(p, "addressPrefixes")])
    return Subnet(
        **_base(item, "Microsoft.Network/virtualNetworks/subnets"),
        vnet_id=vnet_id or parse_id(item["id"]).parent,
        address_prefixes=tuple(dict.fromkeys(prefixes)),
        route_table_id=_ref(p, "routeTable"), nsg_id=_ref(p, "networkSecurityGroup"),
        private_endpoint_network_policies=_s(p, "privateEndpointNetworkPolicies"),
        private_link_service_network_policies=_s(p, "privateLinkServiceNetworkPolicies"),
        ip_configuration_ids=_refs(_l(p, "ipConfigurations")),
        private_endpoint_ids=_refs(_l(p, "privateEndpoints")),
    )


def _vnet(item: dict[str, Any]) -> tuple[VirtualNetwork, list[Subnet], list[CoverageGap]]:
    p = _p(item)
    base = _base(item, "Microsoft.Network/virtualNetworks")
    subnets: list[Subnet] = []
    gaps: list[CoverageGap] = []
    for s in _l(p, "subnets"):
        if isinstance(s, dict) and _s(s, "id"):
            try:
                subnets.append(_subnet(s, base["id"]))
            except ValueError as err:  # one malformed subnet is its own gap; its siblings stay judged
                gaps.append(CoverageGap(str(s["id"])[:500], "subnets", "MalformedResource", None, str(err)[:200]))
    peerings = tuple(Peering(
        id=parse_id(x["id"]), name=_s(x, "name") or parse_id(x["id"]).name,
        remote_vnet_id=_ref(_p(x), "remoteVirtualNetwork"),
        state=_s(_p(x), "peeringState"),
        allow_virtual_network_access=_b(_p(x), "allowVirtualNetworkAccess") is not False,
        allow_forwarded_traffic=bool(_b(_p(x), "allowForwardedTraffic")),
        remote_address_prefixes=_strs(_l(_d(_p(x), "remoteAddressSpace"), "addressPrefixes")),
    ) for x in _l(p, "virtualNetworkPeerings") if isinstance(x, dict) and _s(x, "id"))
    vnet = VirtualNetwork(
        **base, address_prefixes=_strs(_l(_d(p, "addressSpace"), "addressPrefixes")),
        subnet_ids=tuple(s.id for s in subnets), peerings=peerings,
        dns_servers=_strs(_l(_d(p, "dhcpOptions"), "dnsServers")),
    )
    return vnet, subnets, gaps


def _route_table(item: dict[str, Any]) -> RouteTable:
    p = _p(item)
    routes = tuple(Route(
        name=_s(r, "name") or "", address_prefix=_s(_p(r), "addressPrefix"),
        next_hop_type=_s(_p(r), "nextHopType"), next_hop_ip=_s(_p(r), "nextHopIpAddress"),
        id=parse_id(r["id"]) if _s(r, "id") else None,
    ) for r in _l(p, "routes") if isinstance(r, dict))
    return RouteTable(**_base(item, "Microsoft.Network/routeTables"), routes=routes,
                      subnet_ids=_refs(_l(p, "subnets")),
                      disable_bgp_route_propagation=_b(p, "disableBgpRoutePropagation"))


def _nsg_rule(r: dict[str, Any], default: bool) -> NsgRule:
    p = _p(r)
    prio = p.get("priority")
    return NsgRule(
        name=_s(r, "name") or "", direction=_s(p, "direction"), access=_s(p, "access"),
        priority=prio if isinstance(prio, int) and not isinstance(prio, bool) else None,
        protocol=_s(p, "protocol"),
        source_address_prefix=_s(p, "sourceAddressPrefix"),
        source_address_prefixes=_strs(_l(p, "sourceAddressPrefixes")),
        destination_address_prefix=_s(p, "destinationAddressPrefix"),
        destination_address_prefixes=_strs(_l(p, "destinationAddressPrefixes")),
        source_port_range=_s(p, "sourcePortRange"),
        source_port_ranges=_strs(_l(p, "sourcePortRanges")),
        destination_port_range=_s(p, "destinationPortRange"),
        destination_port_ranges=_strs(_l(p, "destinationPortRanges")),
        default=default,
    )


def _nsg(item: dict[str, Any]) -> Nsg:
    p = _p(item)
    rules = [_nsg_rule(r, False) for r in _l(p, "securityRules") if isinstance(r, dict)]
    rules += [_nsg_rule(r, True) for r in _l(p, "defaultSecurityRules") if isinstance(r, dict)]
    return Nsg(**_base(item, "Microsoft.Network/networkSecurityGroups"), rules=tuple(rules),
               subnet_ids=_refs(_l(p, "subnets")))


def _firewall(item: dict[str, Any]) -> Firewall:
    p = _p(item)
    ips = [_s(_p(c), "privateIPAddress") for c in _l(p, "ipConfigurations")]
    ips.append(_s(_d(p, "hubIPAddresses"), "privateIPAddress"))
    extra = _d(p, "additionalProperties")
    return Firewall(
        **_base(item, "Microsoft.Network/azureFirewalls"), private_ips=tuple(dict.fromkeys(_strs(ips))),
        subnet_ids=tuple(s for s in (_ref(_p(c), "subnet") for c in _l(p, "ipConfigurations")) if s),
        firewall_policy_id=_ref(p, "firewallPolicy"),
        additional_properties=_frozen({k: v for k, v in extra.items() if isinstance(v, str)}),
    )


def _firewall_policy(item: dict[str, Any]) -> FirewallPolicy:
    p = _p(item)
    snat = p.get("snat")
    ranges = _strs(_l(snat, "privateRanges")) if isinstance(snat, dict) and \
        isinstance(snat.get("privateRanges"), list) else None
    return FirewallPolicy(**_base(item, "Microsoft.Network/firewallPolicies"), snat_private_ranges=ranges,
                          snat_auto_learn=_s(snat, "autoLearnPrivateRanges"))


def _load_balancer(item: dict[str, Any]) -> LoadBalancer:
    p = _p(item)
    frontends = tuple(FrontendIp(
        id=parse_id(f["id"]), name=_s(f, "name") or "", private_ip=_s(_p(f), "privateIPAddress"),
        subnet_id=_ref(_p(f), "subnet"), public_ip_id=_ref(_p(f), "publicIPAddress"),
    ) for f in _l(p, "frontendIPConfigurations") if isinstance(f, dict) and _s(f, "id"))
    pools = {parse_id(b["id"]).key: _refs(_l(_p(b), "backendIPConfigurations"))
             for b in _l(p, "backendAddressPools") if isinstance(b, dict) and _s(b, "id")}
    rule_pools: dict[str, list[str]] = defaultdict(list)
    for r in _l(p, "loadBalancingRules"):
        fe, be = _ref(_p(r), "frontendIPConfiguration"), _ref(_p(r), "backendAddressPool")
        pools_of_rule = [be] if be else []
        pools_of_rule += list(_refs(_l(_p(r), "backendAddressPools")))
        if fe:
            rule_pools[fe.key].extend(b.key for b in pools_of_rule)
    return LoadBalancer(**_base(item, "Microsoft.Network/loadBalancers"), frontends=frontends,
                        backend_pools=_frozen(pools),
                        rule_pools=_frozen({k: tuple(dict.fromkeys(v)) for k, v in rule_pools.items()}))


def _nic(item: dict[str, Any]) -> Nic:
    p = _p(item)
    configs = tuple(NicIpConfig(
        id=parse_id(c["id"]), name=_s(c, "name") or "", private_ip=_s(_p(c), "privateIPAddress"),
        subnet_id=_ref(_p(c), "subnet"),
        backend_pool_ids=_refs(_l(_p(c), "loadBalancerBackendAddressPools")),
    ) for c in _l(p, "ipConfigurations") if isinstance(c, dict) and _s(c, "id"))
    return Nic(**_base(item, "Microsoft.Network/networkInterfaces"),
               enable_ip_forwarding=bool(_b(p, "enableIPForwarding")), ip_configs=configs,
               private_endpoint_id=_ref(p, "privateEndpoint"),
               virtual_machine_id=_ref(p, "virtualMachine"))


def _bastion(item: dict[str, Any]) -> BastionHost:
    subnets = tuple(s for s in (_ref(_p(c), "subnet") for c in _l(_p(item), "ipConfigurations")) if s)
    return BastionHost(**_base(item, "Microsoft.Network/bastionHosts"), subnet_ids=subnets)


def _dns_zone(item: dict[str, Any], links: list[Any] | None, cnames: list[Any] | None) -> PrivateDnsZone:
    vnet_links = None if links is None else tuple(VnetLink(
        id=parse_id(x["id"]), name=_s(x, "name") or "", vnet_id=_ref(_p(x), "virtualNetwork"),
        registration_enabled=bool(_b(_p(x), "registrationEnabled")),
    ) for x in links if isinstance(x, dict) and _s(x, "id"))
    records = None
    if cnames is not None:
        records = {}
        for r in cnames:
            name = _s(r, "name")
            if name:
                records[name.lower()] = _s(_d(_p(r), "cnameRecord"), "cname") or ""
    return PrivateDnsZone(**_base(item, "Microsoft.Network/privateDnsZones"), vnet_links=vnet_links,
                          cname_records=None if records is None else _frozen(records))


def _association(item: dict[str, Any], group: str) -> Association:
    p = _p(item)
    link = _s(p, "privateLink")
    return Association(
        **_base(item, "Microsoft.Authorization/privateLinkAssociations"),
        scope=_s(p, "scope"), private_link=parse_id(link) if link else None,
        # The PUT response of the REST spec spells it tenantID: rmpl.multi-tenant must see both.
        public_network_access=_s(p, "publicNetworkAccess"), tenant_id=_s(p, "tenantId") or _s(p, "tenantID"),
        listed_under=group,
    )


# --- the builder -----------------------------------------------------------------------------------

class BuildMemo:
    """Per-item parse results kept from one build of an inventory to the next.

    The daemon rebuilds the snapshot after every event from an inventory in which only the re-read
    items are new objects: every other raw dict is the very object the last build parsed. Parsing is
    a pure function of those objects, so its result can be reused when the same objects come back,
    and a rebuild parses only what changed (on a 10-subscription / 1k-endpoint tenant the full parse
    was ~270 ms of a ~380 ms event). Entries are keyed by the identity of their arguments and hold
    references to them, so an id cannot be reused by a new object while its entry lives; entries a
    build did not use are dropped when it ends. The contract: raw items and lists are never mutated once
    built (a re-read replaces them in a copy of the inventory, it never edits them). One memo serves one
    sequence of builds, not concurrent ones.
    """

    def __init__(self) -> None:
        # key -> (args held, result, gaps recorded, keys of the entries used while making it)
        self._done: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any, tuple[CoverageGap, ...],
                                                tuple[tuple[Any, ...], ...]]] = {}
        self._used: set[tuple[Any, ...]] = set()
        self._making: list[list[tuple[Any, ...]]] = []
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._done)

    def get(self, fn: Any, args: tuple[Any, ...], make: Any) -> tuple[Any, tuple[CoverageGap, ...]]:
        """``make()``'s (result, gaps) for ``fn`` over these very ``args``, computed once while they live."""
        # The entry holds ``args``, so equal ids mean the very same objects.
        key = (fn, *map(id, args))
        hit = self._done.get(key)
        if hit is not None:
            self.hits += 1
            self._use(key, hit[3])
            return hit[1], hit[2]
        self.misses += 1
        self._making.append([])
        try:
            result, gaps = make()
        finally:
            inner = tuple(self._making.pop())
        self._done[key] = (args, result, gaps, inner)
        self._use(key, inner)
        return result, gaps

    def _use(self, key: tuple[Any, ...], inner: tuple[tuple[Any, ...], ...]) -> None:
        # A reused list's result stands for its items' entries too: they stay for the list's next change.
        self._used.add(key)
        self._used.update(inner)
        if self._making:
            self._making[-1].append(key)
            self._making[-1].extend(inner)

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` for a pure ``fn`` that records no gaps, computed once while ``args`` live."""
        return self.get(fn, args, lambda: (fn(*args), ()))[0]

    def sweep(self) -> None:
        """Forget what the build that just ended did not use (replaced or deleted items)."""
        for key in self._done.keys() - self._used:
            del self._done[key]
        self._used = set()


class _Collector:
    def __init__(self, gaps: list[CoverageGap], memo: BuildMemo | None = None) -> None:
        self.gaps = gaps
        self.memo = memo

    def each(self, items: Iterable[Any], kind: str) -> Iterable[dict[str, Any]]:
        """Items that can be resources; the rest are recorded as malformed, never raised."""
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"].strip():
                yield item
            else:
                self.gaps.append(CoverageGap("/", kind, "MalformedResource", None,
                                             "list item without a usable 'id'"))

    def build(self, fn: Any, item: dict[str, Any], kind: str, *args: Any) -> Any:
        if self.memo is None:
            return self._build(fn, item, kind, *args)
        return self.cached(fn, (item, kind, *args), lambda: self._build(fn, item, kind, *args))

    def cached(self, fn: Any, args: tuple[Any, ...], body: Any) -> Any:
        """``body()``, reused while ``args`` are the same objects (``fn`` names what it computes)."""
        if self.memo is None:
            return body()
        made = False

        def make() -> tuple[Any, tuple[CoverageGap, ...]]:
            nonlocal made
            made, start = True, len(self.gaps)
            result = body()
            return result, tuple(self.gaps[start:])
        result, gaps = self.memo.get(fn, args, make)
        if not made:  # a reused result brings back the gaps its parse recorded
            self.gaps.extend(gaps)
        return result

    def key_of(self, item: dict[str, Any]) -> str:
        """The normalised id of an item :meth:`each` let through."""
        if self.memo is None:
            return parse_id(item["id"]).key
        key: str = self.memo.call(_key_of, item)
        return key

    def sorted_list(self, items: list[Any]) -> list[Any]:
        """``items`` in id order (see :func:`build_snapshot`); an unchanged list is sorted once."""
        if self.memo is None:
            return sorted(items, key=_list_order)
        memo = self.memo
        ordered: list[Any] = memo.get(sorted, (items,),
                                      lambda: (sorted(items, key=lambda i: memo.call(_list_order, i)), ()))[0]
        return ordered

    def _build(self, fn: Any, item: dict[str, Any], kind: str, *args: Any) -> Any:
        try:
            return fn(item, *args)
        except (TypeError, ValueError, AttributeError, KeyError) as err:  # defensive: never crash a scan
            log.warning("malformed_resource", kind=kind, id=str(item.get("id"))[:300], error=str(err))
            self.gaps.append(CoverageGap(str(item.get("id"))[:500], kind, "MalformedResource", None,
                                         str(err)[:200]))
            return None


def _keyed(c: _Collector, items: list[Any], kind: str, fn: Any) -> dict[str, Any]:
    """One list's resources by key (the first of a duplicated id wins)."""
    out: dict[str, Any] = {}
    for item in c.each(items, kind):
        obj = c.build(fn, item, kind)
        if obj is not None:
            out.setdefault(obj.key, obj)
    return out


def _vnets(c: _Collector, items: list[Any]) -> tuple[dict[str, VirtualNetwork], dict[str, Subnet]]:
    vnets: dict[str, VirtualNetwork] = {}
    subnets: dict[str, Subnet] = {}
    for item in c.each(items, "virtualNetworks"):
        built = c.build(_vnet, item, "virtualNetworks")
        if built:
            vnet, its_subnets, bad = built
            c.gaps.extend(bad)
            vnets.setdefault(vnet.key, vnet)
            for sn in its_subnets:
                subnets.setdefault(sn.key, sn)
    return vnets, subnets


def _key_of(item: dict[str, Any]) -> str:
    return parse_id(item["id"]).key


def _list_order(item: Any) -> tuple[int, str]:
    rid = item.get("id") if isinstance(item, dict) else None
    return (0, parse_id(rid).key) if isinstance(rid, str) else (1, "")


def build_snapshot(inv: RawInventory, *, taken_at: datetime | None = None, memo: BuildMemo | None = None) -> Snapshot:
    """Build the typed, cross-referenced snapshot; ``taken_at`` defaults to the manifest time.

    With a ``memo`` (the daemon's), items parsed by an earlier build of the same objects are reused;
    the snapshot is the same as without one.
    """
    with paused_gc(), interning():  # each distinct id string parsed once per build (arm_id.interning)
        return _build_snapshot(inv, taken_at, memo)


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for one build or one evaluation.

    Both allocate several objects per resource and free almost none, so the collector's automatic passes
    (the full ones walk the whole heap, raw inventory and snapshot included) find nothing and cost half the
    build (1.5 -> 0.6 s at 10k resources) and a share of the evaluation. Reference counting still frees
    everything; the collector simply waits until the step is done. Nested pauses keep it off until the
    outermost one ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_snapshot(inv: RawInventory, taken_at: datetime | None, memo: BuildMemo | None) -> Snapshot:
    """One step per resource family, in a fixed order: a family's gaps are recorded in that order (the first
    of duplicated gaps is the one kept) and the memo sees the same calls as before the steps had names."""
    gaps = list(inv.gaps)
    c = _Collector(gaps, memo)
    # In id order, not in the order a source listed them: ARM and Resource Graph list the same resources
    # in different orders, and the snapshot (and every finding's evidence) must not depend on it.
    lists = {kind: c.sorted_list(items) for kind, items in inv.lists.items()}
    when = taken_at or parse_time(inv.manifest.get("recorded_at")) or datetime.now(UTC)
    subs = _subscriptions(inv)

    endpoints = _endpoints(c, lists.get("privateEndpoints", []), inv.zone_groups)
    vnet_items = lists.get("virtualNetworks", [])
    vnets, subnets = c.cached(_vnets, (vnet_items,), lambda: _vnets(c, vnet_items))
    zones = _dns_zones(c, lists.get("privateDnsZones", []), inv)
    rmpls = _rmpls(c, lists.get("resourceManagementPrivateLinks", []))
    associations = _associations(c, inv.associations)
    targets = _targets(c, inv)

    def keyed(kind: str, fn: Any) -> dict[str, Any]:
        items = lists.get(kind, [])
        return c.cached(_keyed, (items, fn), lambda: _keyed(c, items, kind, fn))  # type: ignore[no-any-return]

    snapshot_fields: dict[str, Any] = dict(
        private_endpoints=endpoints,
        private_link_services=keyed("privateLinkServices", _pls),
        rmpls=rmpls, associations=associations, targets=targets,
        virtual_networks=vnets, subnets=subnets,
        route_tables=keyed("routeTables", _route_table),
        nsgs=keyed("networkSecurityGroups", _nsg),
        firewalls=keyed("azureFirewalls", _firewall),
        firewall_policies=keyed("firewallPolicies", _firewall_policy),
        load_balancers=keyed("loadBalancers", _load_balancer),
        nics=keyed("networkInterfaces", _nic),
        bastion_hosts=keyed("bastionHosts", _bastion),
        dns_zones=zones,
    )
    _merge_nic_ips(endpoints, snapshot_fields["nics"], memo)
    by_endpoint = _connections_by_endpoint(snapshot_fields["private_link_services"], rmpls, targets)
    by_subnet = _endpoints_by_subnet(endpoints)

    if memo is not None:
        memo.sweep()
    tenant_id = inv.manifest.get("tenant_id") if isinstance(inv.manifest.get("tenant_id"), str) else None
    cloud = cl if isinstance(cl := inv.manifest.get("cloud"), str) else "AzureCloud"
    return Snapshot(
        taken_at=when, tenant_id=tenant_id, cloud=cloud, subscriptions=_frozen(subs),
        management_groups=tuple(n for n in (_s(g, "name") for g in inv.management_groups) if n),
        **{k: _frozen(v) for k, v in snapshot_fields.items()},
        coverage=Coverage(subscriptions_scanned=len(subs), gaps=tuple(_dedupe(gaps)),
                          read=frozenset(inv.read), scoped=inv.scoped),
        provider_connections_by_endpoint=_frozen({k: tuple(v) for k, v in by_endpoint.items()}),
        endpoints_by_subnet=_frozen({k: tuple(v) for k, v in by_subnet.items()}),
    )


def _subscriptions(inv: RawInventory) -> dict[str, Subscription]:
    """The listed subscriptions by lower-cased id; an entry without an id names nothing and is skipped."""
    subs: dict[str, Subscription] = {}
    for s in inv.subscriptions:
        sid = _s(s, "subscriptionId")
        if sid:
            subs[sid.lower()] = Subscription(sid, _s(s, "displayName"), _s(s, "state"), _s(s, "tenantId"))
    return subs


def _endpoints(c: _Collector, items: list[Any], zone_groups: dict[str, list[Any]]) -> dict[str, PrivateEndpoint]:
    """Endpoints with their zone groups (read per endpoint, so not in the shared :func:`_keyed` step)."""
    endpoints: dict[str, PrivateEndpoint] = {}
    for item in c.each(items, "privateEndpoints"):
        groups = zone_groups.get(c.key_of(item))
        pe = c.build(_endpoint, item, "privateEndpoints", groups)
        if pe is not None:
            endpoints.setdefault(pe.key, pe)
    return endpoints


def _dns_zones(c: _Collector, items: list[Any], inv: RawInventory) -> dict[str, PrivateDnsZone]:
    """Zones with their network links and CNAME records, each read per zone."""
    zones: dict[str, PrivateDnsZone] = {}
    for item in c.each(items, "privateDnsZones"):
        key = c.key_of(item)
        zone = c.build(_dns_zone, item, "privateDnsZones", inv.vnet_links.get(key), inv.cnames.get(key))
        if zone is not None:
            zones.setdefault(zone.key, zone)
    return zones


def _rmpls(c: _Collector, items: list[Any]) -> dict[str, Rmpl]:
    """RMPLs; only their common fields go through the memo, their connections are parsed every build."""
    rmpls: dict[str, Rmpl] = {}
    for item in c.each(items, "resourceManagementPrivateLinks"):
        base = c.build(_base, item, "resourceManagementPrivateLinks",
                       "Microsoft.Authorization/resourceManagementPrivateLinks")
        if base is not None:
            rmpls.setdefault(base["id"].key, Rmpl(**base, connections=_provider_connections(
                base["id"], _p(item))))
    return rmpls


def _associations(c: _Collector, listed: list[tuple[str, Any]]) -> dict[str, Association]:
    """Associations, each with the management group whose list returned it."""
    associations: dict[str, Association] = {}
    for group, item in listed:
        for it in c.each([item], "privateLinkAssociations"):
            a = c.build(_association, it, "privateLinkAssociations", group)
            if a is not None:
                associations.setdefault(a.key, a)
    return associations


def _targets(c: _Collector, inv: RawInventory) -> dict[str, Target]:
    """Targets read by id, indexed by the id plmon asked for, then those whose read failed.

    A body that cannot be a target is unreadable, never judged on defaults; a failed read is absence only when
    its error proves it (:func:`proves_absence`).
    """
    targets: dict[str, Target] = {}
    for key, body in inv.targets.items():
        try:
            t = _target(key, body) if c.memo is None else c.memo.call(_target, key, body)
        except ValueError as err:  # read, but unusable: unreadable, never judged on defaults
            c.gaps.append(CoverageGap(key, "target", "MalformedResource", None, str(err)[:200]))
            tid = parse_id(body["id"] if isinstance(body, dict) and _s(body, "id") else key)
            targets[key] = Target(id=tid, name=tid.name, type=tid.type or "unknown",
                                  state=TargetState.UNREADABLE, error_code="MalformedResource")
            continue
        if t is None:
            c.gaps.append(CoverageGap(key, "target", "MalformedResource", None, "target body without id"))
            continue
        # ARM may answer a GET with a differently cased id; index by the id we asked for.
        targets[key] = t
    for key, (raw, read_err) in inv.target_errors.items():
        tid = parse_id(raw)
        targets[key] = Target(
            id=tid, name=tid.name, type=tid.type or "unknown",
            state=TargetState.NOT_FOUND if proves_absence(read_err) else TargetState.UNREADABLE,
            error_code=read_err.code, error_status=read_err.status)
    return targets


def _merge_nic_ips(endpoints: dict[str, PrivateEndpoint], nics: dict[str, Nic], memo: BuildMemo | None) -> None:
    """Give each endpoint the IPs its NICs hold (in place: ``endpoints`` is the snapshot's own dict).

    An endpoint with a dynamic IP lists no ipConfigurations, and with a zone group no customDnsConfigs:
    its IP is then only on its NIC, which names the endpoint (the endpoint's own NIC reference may carry
    a '/provders/' typo). Routes are judged "for each private endpoint IP" (checks.md), so merge them here.
    """
    nics_of: dict[str, list[Nic]] = defaultdict(list)
    # Indexed once: matching every NIC against every endpoint was quadratic (37 s at 10k resources).
    endpoints_of_nic: dict[str, set[str]] = defaultdict(set)
    for k, endpoint in endpoints.items():
        for n in endpoint.nic_ids:
            endpoints_of_nic[parse_id(repair_provider_typo(n.raw)).key if n.opaque else n.key].add(k)
    for nic in nics.values():
        owner_keys = {nic.private_endpoint_id.key} if nic.private_endpoint_id is not None else set()
        owner_keys |= endpoints_of_nic.get(nic.key, set())
        for owner_key in owner_keys:
            nics_of[owner_key].append(nic)
    for key, its_nics in nics_of.items():
        pe = endpoints.get(key)
        if pe is not None:
            endpoints[key] = _with_nic_ips(pe, *its_nics) if memo is None else memo.call(_with_nic_ips, pe, *its_nics)


def _connections_by_endpoint(*owner_maps: dict[str, Any]) -> dict[str, list[ProviderConnection]]:
    """Provider-side connections (of PLSs, RMPLs, targets) by the endpoint they name, resolved once."""
    by_endpoint: dict[str, list[ProviderConnection]] = defaultdict(list)
    for owners in owner_maps:
        for owner in owners.values():
            for conn in owner.connections:
                if conn.endpoint_id is not None:
                    by_endpoint[conn.endpoint_id.key].append(conn)
    return by_endpoint


def _endpoints_by_subnet(endpoints: dict[str, PrivateEndpoint]) -> dict[str, list[str]]:
    """Endpoint keys by the subnet they sit in, resolved once."""
    by_subnet: dict[str, list[str]] = defaultdict(list)
    for pe in endpoints.values():
        if pe.subnet_id is not None:
            by_subnet[pe.subnet_id.key].append(pe.key)
    return by_subnet


def _with_nic_ips(pe: PrivateEndpoint, *nics: Nic) -> PrivateEndpoint:
    ips = [ip for nic in nics for ip in (c.private_ip for c in nic.ip_configs) if ip]
    return replace(pe, ip_addresses=tuple(dict.fromkeys((*pe.ip_addresses, *ips))))


def _dedupe(gaps: list[CoverageGap]) -> list[CoverageGap]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for g in gaps:
        k = (g.scope.lower(), g.type.lower(), g.code)
        if k not in seen:
            seen.add(k)
            out.append(g)
    return out
