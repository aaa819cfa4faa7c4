"""The one snapshot builder: raw ARM JSON (a :class:`RawInventory`) in, a :class:`Snapshot` out.

Every source shares it, so a recorded tenant and a live tenant give identical snapshots. ARM JSON is
untrusted here: keys go missing, types are wrong, lists are null, ids are typos or bare GUIDs. Every
read goes through the small accessors below, which return a default instead of raising, and an item
that cannot be a resource at all (not an object, no id) becomes a coverage gap rather than a crash.
"""

from __future__ import annotations

import gc
import sys
from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import partial
from operator import attrgetter
from types import MappingProxyType, MemberDescriptorType
from typing import Any, TypeVar, cast

from plmon.monitor.collect.inventory import (
    BY_ID,
    AssociationUnit,
    Child,
    Inventory,
    ListUnit,
    Parsed,
    RawInventory,
    TargetUnit,
    Touched,
    proves_absence,
    scope_of,
)
from plmon.monitor.logs import get_logger
from plmon.monitor.model.arm_id import ArmId, interning, parse_id, repair_provider_typo
from plmon.monitor.model.clock import parse_time
from plmon.monitor.model.kinds import ACCESS_PATHS, listed_providers
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
    HubConnection,
    HubRoute,
    HubRouteTable,
    LoadBalancer,
    NetworkVirtualAppliance,
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
    RoutingPolicy,
    Snapshot,
    Subnet,
    Subscription,
    Target,
    TargetState,
    VirtualHub,
    VirtualNetwork,
    VirtualWan,
    VnetLink,
    _frozen,
)

__all__ = [
    "FAMILIES",
    "EndpointRefs",
    "Links",
    "association_unit",
    "build_snapshot",
    "flag_value",
    "inventory_of",
    "link",
    "list_refs",
    "list_unit",
    "parse_associations",
    "parse_child",
    "parse_list",
    "parse_target",
    "parse_time",
    "paused_gc",
    "relink",
    "text_value",
    "unit_of",
    "word_value",
]

log = get_logger(__name__)  # structlog is imported when a line is written (plmon.monitor.logs)
_MISSING = object()


# --- defensive accessors ---------------------------------------------------------------------------

def _d(obj: Any, key: str) -> dict[str, Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, dict) else {}


def _l(obj: Any, key: str) -> list[Any]:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, list) else []


# How the parse reads one value, whatever it was read from (a dict here, a typed decoder's attribute in
# plmon.monitor.collect.typed, which uses these three): the accessors below take a dict and a key, and _s and _e
# repeat their value's test inline, being called millions of times at 100k resources.

def text_value(v: Any) -> str | None:
    """A string; an empty one counts as absent."""
    return v if isinstance(v, str) and v != "" else None


def word_value(v: Any) -> str | None:
    """A string of a small vocabulary (a type, a location, a state, an NSG rule's protocol...), shared: JSON gives
    every occurrence its own copy, and at 100k resources the copies of a few dozen words cost tens of MB."""
    return sys.intern(v) if isinstance(v, str) and v != "" else None


def flag_value(v: Any) -> bool | None:
    """A boolean, or its text ("true"/"false" in any case); anything else is unknown."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _s(obj: Any, key: str) -> str | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, str) and v != "" else None  # text_value(v)


def _e(obj: Any, key: str) -> str | None:
    v = obj.get(key) if isinstance(obj, dict) else None
    return sys.intern(v) if isinstance(v, str) and v != "" else None  # word_value(v)


def _b(obj: Any, key: str) -> bool | None:
    return flag_value(obj.get(key) if isinstance(obj, dict) else None)


def _strs(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and v)


def _words(values: Iterable[Any]) -> tuple[str, ...]:
    """:func:`_strs` of a small vocabulary (group ids such as ``blob``), shared as :func:`_e` shares one word; the
    tuple itself is shared too (one per connection was 70k tuples of a few distinct values at 100k resources)."""
    words = tuple(sys.intern(v) for v in _strs(values))
    shared = _WORD_TUPLES.get(words)
    if shared is not None:
        return shared
    if len(_WORD_TUPLES) < _MAX_WORD_TUPLES:
        _WORD_TUPLES[words] = words
    return words


_WORD_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_WORD_TUPLES = 4096  # bounded: the words are untrusted input


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


def _name(item: Any, rid: ArmId) -> str:
    """An item's name, or its id's last name; the id's own string when they are equal (one copy, not two)."""
    raw = _s(item, "name")
    return rid.name if raw is None or raw == rid.name else raw


# The tags of a resource that has none (most of them): one shared read-only mapping, not an empty dict and its
# proxy per resource (13 MB at 100k resources).
_NO_TAGS = _frozen()


def _tags(tags: Any) -> Mapping[str, str]:
    if not isinstance(tags, dict) or not tags:
        return _NO_TAGS
    kept = {k: v for k, v in tags.items() if isinstance(k, str) and isinstance(v, str)}
    return _frozen(kept) if kept else _NO_TAGS


def _base(item: dict[str, Any], fallback_type: str) -> dict[str, Any]:
    rid = parse_id(item["id"])
    return {
        "id": rid,
        "name": _name(item, rid),
        "type": _e(item, "type") or fallback_type,
        "location": _e(item, "location"),
        "tags": _tags(item.get("tags")),
        "provisioning_state": _e(_p(item), "provisioningState") or _e(item, "provisioningState"),
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
            # Interned (_e): the name is its id's last segment, which the id already holds interned.
            name = _e(c, "name") or (raw_id.rstrip("/").rsplit("/", 1)[-1] if raw_id else f"{array}[{i}]")
            cid = parse_id(raw_id or f"{pe_id.raw}/{array}/{name}")
            target = _s(cp, "privateLinkServiceId")
            out.append(_new_consumer_connection(
                id=cid, name=name, endpoint_id=pe_id, manual=manual,
                target_id=parse_id(target) if target else None,
                group_ids=_words(_l(cp, "groupIds")),
                status=_e(state, "status"), description=_s(state, "description"),
                actions_required=_e(state, "actionsRequired") or _e(state, "actionRequired"),
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
        name = _e(c, "name") or f"privateEndpointConnections[{i}]"  # as an id's last segment: interned
        cid = _s(c, "id")
        # Some providers return short ids or none: anchor them under the owner so they stay unique.
        conn_id = parse_id(cid) if cid and cid.startswith("/") and "/" in cid.strip("/") else \
            parse_id(f"{owner.raw.rstrip('/')}/privateEndpointConnections/{name.rsplit('/', 1)[-1]}")
        pe = _s(_d(cp, "privateEndpoint"), "id")
        out.append(_new_provider_connection(
            id=conn_id, name=name, owner_id=owner, endpoint_id=parse_id(pe) if pe else None,
            status=_e(state, "status"), description=_s(state, "description"),
            actions_required=_e(state, "actionsRequired") or _e(state, "actionRequired"),
            provisioning_state=_e(cp, "provisioningState"),
            group_ids=_words(_l(cp, "groupIds")),
        ))
    return tuple(out)


def _zone_group(item: dict[str, Any]) -> DnsZoneGroup:
    configs = [c for c in _l(_p(item), "privateDnsZoneConfigs") if isinstance(c, dict)]
    zone_ids = tuple(parse_id(z) for z in (_s(_p(c), "privateDnsZoneId") for c in configs) if z)
    # Names shared (_e, _words): "default" and one configuration name per zone, on 30k groups at 100k resources.
    return _new_zone_group(id=parse_id(item["id"]), name=_e(item, "name") or parse_id(item["id"]).name,
                        zone_ids=zone_ids, config_names=_words(_s(c, "name") for c in configs))


def _zone_groups(groups: list[Any]) -> tuple[DnsZoneGroup, ...]:
    return tuple(_zone_group(g) for g in groups if isinstance(g, dict) and _s(g, "id"))


def _endpoint_head(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """The part of an endpoint's parse that comes before its zone groups: a failure here is the one reported."""
    p = _p(item)
    base = _base(item, "Microsoft.Network/privateEndpoints")
    ips = [_s(_p(c), "privateIPAddress") for c in _l(p, "ipConfigurations")]
    for dns in _l(p, "customDnsConfigs"):
        ips.extend(_l(dns, "ipAddresses"))
    return p, base, ips


def _endpoint_tail(p: dict[str, Any], base: dict[str, Any], ips: list[Any],
                   zone_groups: tuple[DnsZoneGroup, ...] | None) -> PrivateEndpoint:
    return _new_endpoint(
        **base, subnet_id=_ref(p, "subnet"),
        connections=_consumer_connections(base["id"], p),
        ip_addresses=tuple(dict.fromkeys(_strs(ips))),
        nic_ids=_refs(_l(p, "networkInterfaces")),
        custom_dns_fqdns=_strs(_s(c, "fqdn") for c in _l(p, "customDnsConfigs")),
        dns_zone_groups=zone_groups,
    )


def _endpoint(item: dict[str, Any], groups: list[Any] | None) -> PrivateEndpoint:
    """An endpoint with its zone groups (``None``: they were not read), in one call."""
    p, base, ips = _endpoint_head(item)
    return _endpoint_tail(p, base, ips, None if groups is None else _zone_groups(groups))


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
    return _new_target(
        **base, state=TargetState.READ,
        has_public_network_access="publicNetworkAccess" in p,
        public_network_access=sys.intern(pna) if isinstance(pna := p.get("publicNetworkAccess"), str) else pna,
        # Spelled per type: networkAcls (Storage, Key Vault), networkRuleSet (ACR), networkACLs (SignalR and
        # Web PubSub), networkRuleSets (IoT Hub).
        network_acls_default_action=_s(_d(p, "networkAcls"), "defaultAction")
        or _s(_d(p, "networkRuleSet"), "defaultAction") or _s(_d(p, "networkACLs"), "defaultAction")
        or _s(_d(p, "networkRuleSets"), "defaultAction"),
        kind=_s(body, "kind"),
        connections=_provider_connections(base["id"], p),
        access_settings=_access_settings(p),
    )


# ACCESS_PATHS besides publicNetworkAccess, each with its parts: split once, not per target read.
_ACCESS_PARTS = tuple((path, tuple(path.split("."))) for path in ACCESS_PATHS if path != "publicNetworkAccess")


def _access_settings(props: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The raw values the public-access table (plmon.monitor.model.kinds) reads besides ``publicNetworkAccess``,
    if present."""
    out: list[tuple[str, Any]] = []
    for path, parts in _ACCESS_PARTS:
        node: Any = props
        for part in parts:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            # Scalars as read; anything else (a type that changed shape) as its text, so Target stays hashable.
            out.append((path, node if node is None or isinstance(node, str | bool | int | float) else str(node)))
    return tuple(out)


def _subnet(item: dict[str, Any], vnet_id: ArmId | None) -> Subnet:
    p = _p(item)
    prefixes = _strs([_s(p, "addressPrefix"), *_l(p, "addressPrefixes")])
    return _new_subnet(
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
        next_hop_type=_e(_p(r), "nextHopType"), next_hop_ip=_s(_p(r), "nextHopIpAddress"),
        id=parse_id(r["id"]) if _s(r, "id") else None,
    ) for r in _l(p, "routes") if isinstance(r, dict))
    return RouteTable(**_base(item, "Microsoft.Network/routeTables"), routes=routes,
                      subnet_ids=_refs(_l(p, "subnets")),
                      disable_bgp_route_propagation=_b(p, "disableBgpRoutePropagation"))


def _nsg_rule(r: dict[str, Any], default: bool) -> NsgRule:
    p = _p(r)
    prio = p.get("priority")
    return NsgRule(
        name=_s(r, "name") or "", direction=_e(p, "direction"), access=_e(p, "access"),
        priority=prio if isinstance(prio, int) and not isinstance(prio, bool) else None,
        protocol=_e(p, "protocol"),
        source_address_prefix=_e(p, "sourceAddressPrefix"),
        source_address_prefixes=_strs(_l(p, "sourceAddressPrefixes")),
        destination_address_prefix=_e(p, "destinationAddressPrefix"),
        destination_address_prefixes=_strs(_l(p, "destinationAddressPrefixes")),
        source_port_range=_e(p, "sourcePortRange"),
        source_port_ranges=_strs(_l(p, "sourcePortRanges")),
        destination_port_range=_e(p, "destinationPortRange"),
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
        hub_id=_ref(p, "virtualHub"), sku_name=_s(_d(p, "sku"), "name"),
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
    configs = tuple(_new_nic_ip_config(
        id=(cid := parse_id(c["id"])), name=_name(c, cid) if _s(c, "name") else "",
        private_ip=_s(_p(c), "privateIPAddress"), subnet_id=_ref(_p(c), "subnet"),
        backend_pool_ids=_refs(_l(_p(c), "loadBalancerBackendAddressPools")),
    ) for c in _l(p, "ipConfigurations") if isinstance(c, dict) and _s(c, "id"))
    return _new_nic(**_base(item, "Microsoft.Network/networkInterfaces"),
               enable_ip_forwarding=bool(_b(p, "enableIPForwarding")), ip_configs=configs,
               private_endpoint_id=_ref(p, "privateEndpoint"),
               virtual_machine_id=_ref(p, "virtualMachine"))


def _bastion(item: dict[str, Any]) -> BastionHost:
    subnets = tuple(s for s in (_ref(_p(c), "subnet") for c in _l(_p(item), "ipConfigurations")) if s)
    return BastionHost(**_base(item, "Microsoft.Network/bastionHosts"), subnet_ids=subnets)


def _virtual_wan(item: dict[str, Any]) -> VirtualWan:
    p = _p(item)
    return VirtualWan(**_base(item, "Microsoft.Network/virtualWans"), hub_ids=_refs(_l(p, "virtualHubs")),
                      wan_type=_s(p, "type"))


def _virtual_hub(item: dict[str, Any]) -> VirtualHub:
    """A hub without its child lists (connections, routing intent, route tables: units of their own, joined at link
    time, as a zone's links are)."""
    p = _p(item)
    return VirtualHub(**_base(item, "Microsoft.Network/virtualHubs"), wan_id=_ref(p, "virtualWan"),
                      address_prefix=_s(p, "addressPrefix"), firewall_id=_ref(p, "azureFirewall"))


def _nva(item: dict[str, Any]) -> NetworkVirtualAppliance:
    return NetworkVirtualAppliance(**_base(item, "Microsoft.Network/networkVirtualAppliances"),
                                   hub_id=_ref(_p(item), "virtualHub"))


def _hub_connections(items: list[Any]) -> tuple[HubConnection, ...]:
    """``<hub>/hubVirtualNetworkConnections`` (REST spec example HubVirtualNetworkConnectionGet): classified by the list
    they came from, never by their id (the spec's example spells it ``virtualHubVnetConnections``)."""
    out = []
    for x in items:
        if not (isinstance(x, dict) and _s(x, "id")):
            continue
        p = _p(x)
        routing = _d(p, "routingConfiguration")
        propagated = _d(routing, "propagatedRouteTables")
        out.append(HubConnection(
            id=parse_id(x["id"]), name=_s(x, "name") or parse_id(x["id"]).name,
            remote_vnet_id=_ref(p, "remoteVirtualNetwork"),
            associated_route_table_id=_ref(routing, "associatedRouteTable"),
            propagated_route_table_ids=_refs(_l(propagated, "ids")),
            propagated_labels=_strs(_l(propagated, "labels"))))
    return tuple(out)


def _routing_policies(items: list[Any]) -> tuple[RoutingPolicy, ...]:
    """Every routing policy of a hub's ``routingIntent`` list (REST spec example RoutingIntentGet)."""
    out = []
    for x in items:
        if not isinstance(x, dict):
            continue
        for r in _l(_p(x), "routingPolicies"):
            if isinstance(r, dict):
                hop = _s(r, "nextHop")
                out.append(RoutingPolicy(name=_s(r, "name") or "", destinations=_strs(_l(r, "destinations")),
                                         next_hop=parse_id(hop) if hop else None))
    return tuple(out)


def _hub_route_tables(items: list[Any]) -> tuple[HubRouteTable, ...]:
    """``<hub>/hubRouteTables`` (REST spec example HubRouteTableGet)."""
    out = []
    for x in items:
        if not (isinstance(x, dict) and _s(x, "id")):
            continue
        routes = tuple(HubRoute(
            name=_s(r, "name") or "", destination_type=_s(r, "destinationType"),
            destinations=_strs(_l(r, "destinations")), next_hop_type=_s(r, "nextHopType"),
            next_hop=_s(r, "nextHop")) for r in _l(_p(x), "routes") if isinstance(r, dict))
        out.append(HubRouteTable(id=parse_id(x["id"]), name=_s(x, "name") or parse_id(x["id"]).name, routes=routes))
    return tuple(out)


def _vnet_links(links: list[Any]) -> tuple[VnetLink, ...]:
    return tuple(VnetLink(
        id=parse_id(x["id"]), name=_s(x, "name") or "", vnet_id=_ref(_p(x), "virtualNetwork"),
        registration_enabled=bool(_b(_p(x), "registrationEnabled")),
    ) for x in links if isinstance(x, dict) and _s(x, "id"))


def _cname_records(cnames: list[Any]) -> Mapping[str, str]:
    records = {}
    for r in cnames:
        name = _s(r, "name")
        if name:
            records[name.lower()] = _s(_d(_p(r), "cnameRecord"), "cname") or ""
    return _frozen(records)


def _dns_zone(item: dict[str, Any], links: list[Any] | None, cnames: list[Any] | None) -> PrivateDnsZone:
    vnet_links = None if links is None else _vnet_links(links)
    records = None if cnames is None else _cname_records(cnames)
    return PrivateDnsZone(**_base(item, "Microsoft.Network/privateDnsZones"), vnet_links=vnet_links,
                          cname_records=records)


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


# --- read units: raw bodies in, typed units out -----------------------------------------------------

_ERRORS = (TypeError, ValueError, AttributeError, KeyError)  # what an item's parse may raise on bad JSON


def _malformed(item: Any, kind: str, err: Exception) -> CoverageGap:
    """The gap of an item that could not be parsed (logged: never a crash, never judged on defaults)."""
    raw_id = item.get("id") if isinstance(item, dict) else None
    log.warning("malformed_resource", kind=kind, id=str(raw_id)[:300], error=str(err))
    return CoverageGap(str(raw_id)[:500], kind, "MalformedResource", None, str(err)[:200])


def _list_order(item: Any) -> tuple[int, str]:
    rid = item.get("id") if isinstance(item, dict) else None
    return (0, parse_id(rid).key) if isinstance(rid, str) else (1, "")


def _usable(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), str) and bool(item["id"].strip())


def _parse_item(kind: str, item: dict[str, Any], order: tuple[int, str]) -> Parsed:
    fn = _PARSERS[kind]
    try:
        return _new_parsed(order, fn(item))
    except _ERRORS as err:  # defensive: never crash a scan
        return Parsed(order, None, (_malformed(item, kind, err),))


def _parse_endpoint(item: dict[str, Any], order: tuple[int, str]) -> Parsed:
    """An endpoint without its zone groups (a unit of their own, joined at link time)."""
    scope = str(item.get("id"))[:500]
    try:
        p, base, ips = _endpoint_head(item)
    except _ERRORS as err:
        return Parsed(order, None, (_malformed(item, "privateEndpoints", err),), scope=scope)
    try:
        return _new_parsed(order, _endpoint_tail(p, base, ips, None))  # its scope is its id's (scope_of)
    except _ERRORS as err:
        return Parsed(order, None, (_malformed(item, "privateEndpoints", err),), late=True, scope=scope)


def _parse_zone(item: dict[str, Any], order: tuple[int, str]) -> Parsed:
    try:
        return _new_parsed(order, _dns_zone(item, None, None))  # its scope is its id's (scope_of)
    except _ERRORS as err:
        return Parsed(order, None, (_malformed(item, "privateDnsZones", err),), scope=str(item.get("id"))[:500])


def _parse_rmpl(item: dict[str, Any], order: tuple[int, str]) -> Parsed:
    """RMPLs: only their common fields are guarded; a malformed connection raises, as it always did."""
    try:
        base = _base(item, "Microsoft.Authorization/resourceManagementPrivateLinks")
    except _ERRORS as err:
        return Parsed(order, None, (_malformed(item, "resourceManagementPrivateLinks", err),))
    return Parsed(order, Rmpl(**base, connections=_provider_connections(base["id"], _p(item))))


_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "privateLinkServices": _pls, "routeTables": _route_table, "networkSecurityGroups": _nsg,
    "azureFirewalls": _firewall, "firewallPolicies": _firewall_policy, "loadBalancers": _load_balancer,
    "networkInterfaces": _nic, "bastionHosts": _bastion,
    "virtualWans": _virtual_wan, "virtualHubs": _virtual_hub, "networkVirtualAppliances": _nva,
}


def parse_list(kind: str, items: list[Any]) -> tuple[Parsed, ...]:
    """One list's items parsed, in listed order; an item that cannot be a resource is a gap."""
    out: list[Parsed] = []
    for item in items:
        order = _list_order(item)
        if not _usable(item):
            out.append(Parsed(order, None, (CoverageGap("/", kind, "MalformedResource", None,
                                                        "list item without a usable 'id'"),)))
        elif kind == "privateEndpoints":
            out.append(_parse_endpoint(item, order))
        elif kind == "privateDnsZones":
            out.append(_parse_zone(item, order))
        elif kind == "resourceManagementPrivateLinks":
            out.append(_parse_rmpl(item, order))
        elif kind == "virtualNetworks":
            try:
                vnet, subnets, bad = _vnet(item)
                out.append(_new_parsed(order, (vnet, tuple(subnets)), tuple(bad)))
            except _ERRORS as err:
                out.append(Parsed(order, None, (_malformed(item, kind, err),)))
        elif kind in _PARSERS:
            out.append(_parse_item(kind, item, order))
    return tuple(out)


_CHILD_PARSERS: dict[str, Callable[[list[Any]], Any]] = {
    "privateDnsZoneGroups": _zone_groups, "virtualNetworkLinks": _vnet_links, "CNAME": _cname_records,
    "hubVirtualNetworkConnections": _hub_connections, "routingIntent": _routing_policies,
    "hubRouteTables": _hub_route_tables,
}


def parse_child(child: str, items: list[Any]) -> Child:
    """One parent's child list parsed; a failure is kept (its parent becomes malformed when linked)."""
    try:
        return Child(_CHILD_PARSERS[child](items))
    except _ERRORS as err:
        return Child(None, str(err)[:200])


def parse_associations(group: str, items: list[Any]) -> tuple[Parsed, ...]:
    """One management group's associations, each with the group whose list returned it."""
    out: list[Parsed] = []
    for item in items:
        if not _usable(item):
            out.append(Parsed((1, ""), None, (CoverageGap("/", "privateLinkAssociations", "MalformedResource", None,
                                                          "list item without a usable 'id'"),)))
            continue
        try:
            out.append(Parsed((0, ""), _association(item, group)))
        except _ERRORS as err:
            out.append(Parsed((0, ""), None, (_malformed(item, "privateLinkAssociations", err),)))
    return tuple(out)


def parse_target(key: str, body: Any) -> TargetUnit:
    """A target read by id, indexed by the id plmon asked for. A body that cannot be a target is unreadable,
    never judged on defaults."""
    try:
        t = _target(key, body)
    except ValueError as err:  # read, but unusable: unreadable, never judged on defaults
        tid = parse_id(body["id"] if isinstance(body, dict) and _s(body, "id") else key)
        return TargetUnit(Target(id=tid, name=tid.name, type=tid.type or "unknown", state=TargetState.UNREADABLE,
                                 error_code="MalformedResource"),
                          (CoverageGap(key, "target", "MalformedResource", None, str(err)[:200]),))
    if t is None:
        return TargetUnit(None, (CoverageGap(key, "target", "MalformedResource", None, "target body without id"),))
    return TargetUnit(t)


# --- what each unit keeps for the plan's follow-up reads ---------------------------------------------

# The list kinds whose listed ids the follow-up reads compare against (ListUnit.keys).
_LISTED_TARGET_TYPES = listed_providers()
_KEYED_KINDS = frozenset({*_LISTED_TARGET_TYPES.values(), "firewallPolicies"})


def _ps(d: Any, key: str) -> str | None:
    """Lenient, as the plan reads: a malformed item's ids are still followed."""
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, str) and v else None


def _pp(d: Any) -> dict[str, Any]:
    p = d.get("properties") if isinstance(d, dict) else None
    return p if isinstance(p, dict) else {}


def _pl(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key)
    return v if isinstance(v, list) else []


@dataclass(frozen=True, slots=True)
class EndpointRefs:
    """What the follow-up reads need of one listed endpoint, read leniently from its raw item (as before: a
    malformed endpoint's targets are still read)."""

    id: ArmId | None
    has_ip: bool
    nics: tuple[ArmId, ...]     # networkInterfaces[].id, each as written in its raw
    targets: tuple[ArmId, ...]  # every connection's privateLinkServiceId, automatic then manual (the ids the
    #                             records hold: parsed in the same interning scope)


def _endpoint_has_ip(props: dict[str, Any]) -> bool:
    if any(_ps(_pp(c), "privateIPAddress") for c in _pl(props, "ipConfigurations")):
        return True
    return any(isinstance(i, str) and i for d in _pl(props, "customDnsConfigs") if isinstance(d, dict)
               for i in _pl(d, "ipAddresses"))


def _endpoint_refs(pe: Any) -> EndpointRefs:
    p = _pp(pe)
    targets: list[ArmId] = []
    for arr in ("privateLinkServiceConnections", "manualPrivateLinkServiceConnections"):
        conns = p.get(arr)
        for c in conns if isinstance(conns, list) else []:
            raw = _ps(_pp(c), "privateLinkServiceId")
            if raw:
                targets.append(parse_id(raw))
    nics = tuple(parse_id(r) for r in (_ps(ref, "id") for ref in _pl(p, "networkInterfaces")) if r)
    pe_id = _ps(pe, "id")
    return EndpointRefs(parse_id(pe_id) if pe_id else None, _endpoint_has_ip(p), nics, tuple(targets))


def _nic_refs(nic: Any) -> tuple[str | None, str | None]:
    """(the NIC's key, its '/provders/' typo repaired; the key of the endpoint it names)."""
    listed_id = _ps(nic, "id")
    pe_ref = _ps(_pp(nic).get("privateEndpoint"), "id")
    return (parse_id(repair_provider_typo(listed_id)).key if listed_id else None,
            parse_id(pe_ref).key if pe_ref else None)


def _peering_refs(vnet: Any) -> Iterator[tuple[str, str | None]]:
    peerings = _pp(vnet).get("virtualNetworkPeerings")
    for peering in peerings if isinstance(peerings, list) else []:
        raw = _ps(_pp(peering).get("remoteVirtualNetwork"), "id")
        if raw is not None:
            yield raw, _ps(vnet, "name")


def _refs_of_endpoint(pe: PrivateEndpoint) -> EndpointRefs:
    """:func:`_endpoint_refs` of an item that parsed, from its record (before its NICs' IPs are merged in): the
    same id, NIC ids as written (each ``ArmId.raw``), targets in connection order, and whether it carries an IP.

    The lenient walk read every endpoint's JSON a second time (35k at 100k resources); what it reads of an item
    that parsed is what the record holds (an item whose parse failed is still walked leniently)."""
    return _new_endpoint_refs(pe.id, bool(pe.ip_addresses), pe.nic_ids,
                              tuple(c.target_id for c in pe.connections if c.target_id is not None))


def list_refs(kind: str, items: list[Any],
              parsed: tuple[Parsed, ...] | None = None) -> tuple[tuple[Any, ...], frozenset[str]]:
    """The raw strings a list unit of ``kind`` keeps for the plan's follow-up reads, and the ids it listed.

    ``parsed``: :func:`parse_list` of the same items, whose records stand in for a second walk of their JSON."""
    refs: tuple[Any, ...] = ()
    if kind == "privateEndpoints":
        records = [p.record for p in parsed] if parsed is not None else [None] * len(items)
        refs = tuple(_endpoint_refs(pe) if rec is None else _refs_of_endpoint(rec)
                     for pe, rec in zip(items, records, strict=True))
    elif kind == "privateDnsZones":
        refs = tuple(z for z in (_ps(zone, "id") for zone in items) if z)
    elif kind == "networkInterfaces":
        refs = tuple(_nic_refs(nic) for nic in items)
    elif kind == "virtualNetworks":
        refs = tuple(r for vnet in items for r in _peering_refs(vnet))
    elif kind == "resourceManagementPrivateLinks":
        refs = tuple(v.strip().strip("/").lower() for r in items for v in (_ps(r, "id"), _ps(r, "name")) if v)
    elif kind == "virtualHubs":
        refs = tuple((h, _ps(_pp(hub), "addressPrefix")) for hub in items if (h := _ps(hub, "id")))
    elif kind == "azureFirewalls":
        refs = tuple(r for r in (_ps(_pp(fw).get("firewallPolicy"), "id") for fw in items) if r)
    if kind == "networkInterfaces":
        keys = frozenset(k for k, _ in refs if k)
    elif kind in _KEYED_KINDS:
        keys = frozenset(parse_id(i).key for i in (_ps(x, "id") for x in items) if i)
    else:
        keys = frozenset()
    return refs, keys


def list_unit(kind: str, items: list[Any]) -> ListUnit:
    """One list's items parsed into a unit (the raw items can be dropped once this returns)."""
    parsed = parse_list(kind, items)
    refs, keys = list_refs(kind, items, parsed)
    return unit_of(kind, parsed, refs, keys)


def unit_of(kind: str, parsed: tuple[Parsed, ...], refs: tuple[Any, ...], keys: frozenset[str]) -> ListUnit:
    """A unit from parsed items and their refs: one place derives what the follow-up reads join, whether the items
    came from one list read or were spliced from two (the daemon re-reads one endpoint by id)."""
    named: frozenset[str] = frozenset()
    needs_nic: tuple[EndpointRefs, ...] = ()
    if kind == "privateEndpoints":
        named = frozenset(t.key for r in refs for t in r.targets if not t.opaque and not t.is_pls_alias)
        needs_nic = tuple(r for r in refs if r.id is not None and not r.has_ip)
    elif kind == "networkInterfaces":
        named = frozenset(pe for _, pe in refs if pe)
    return ListUnit(kind, parsed, refs, keys, named, needs_nic)


def association_unit(group: str, items: list[Any]) -> AssociationUnit:
    """One management group's association list parsed, with each item's id and private link as written."""
    refs = tuple((_ps(a, "id"), _ps(_pp(a), "privateLink")) for a in items)
    named = frozenset(parse_id(raw).key for _, raw in refs
                      if raw and not parse_id(raw).opaque and parse_id(raw).type_key in _LISTED_TARGET_TYPES)
    return AssociationUnit(group, parse_associations(group, items), refs, named)


def inventory_of(raw: RawInventory) -> Inventory:
    """A hand-assembled :class:`RawInventory` parsed into units, as a collection would have (one unit per kind)."""
    with interning():
        lists = {kind: {"": list_unit(kind, items)} for kind, items in raw.lists.items()}
        associations: dict[str, AssociationUnit] = {}
        for i, (group, item) in enumerate(raw.associations):
            associations[f"{i}"] = association_unit(group, [item])
        return Inventory(
            manifest=raw.manifest, subscriptions=raw.subscriptions, management_groups=raw.management_groups,
            lists=lists, associations=associations,
            zone_groups={k: parse_child("privateDnsZoneGroups", v) for k, v in raw.zone_groups.items()},
            vnet_links={k: parse_child("virtualNetworkLinks", v) for k, v in raw.vnet_links.items()},
            cnames={k: parse_child("CNAME", v) for k, v in raw.cnames.items()},
            hub_children={c: {k: parse_child(c, v) for k, v in m.items()} for c, m in raw.hub_children.items()},
            targets={k: parse_target(k, v) for k, v in raw.targets.items()},
            target_errors=dict(raw.target_errors), gaps=list(raw.gaps), read=set(raw.read), scoped=raw.scoped,
            stats=raw.stats)


# --- the link step: units in, snapshot out ------------------------------------------------------------

def build_snapshot(inv: Inventory | RawInventory, *, taken_at: datetime | None = None) -> Snapshot:
    """Link the typed units into the cross-referenced snapshot; ``taken_at`` defaults to the manifest time."""
    if isinstance(inv, RawInventory):
        inv = inventory_of(inv)
    return link(inv, taken_at)[0]


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


def ordered(units: Iterable[ListUnit]) -> list[Parsed]:
    """The units' items in id order (stable: the first of a duplicated id, in read order, stays first).

    Not in the order a source listed them: ARM and Resource Graph list the same resources in different orders,
    and the snapshot (and every finding's evidence) must not depend on it."""
    return sorted([p for u in units for p in u.items], key=_ORDER)


def _order_of(p: Parsed) -> tuple[int, str]:
    return p.order


_ORDER = attrgetter("order")  # _order_of in C: the key of ~100k items at 100k resources


def _units(inv: Inventory, kind: str) -> Iterable[ListUnit]:
    return inv.lists.get(kind, {}).values()


# The families in the order the link step records their gaps (the first of duplicated gaps is the one kept), and
# the snapshot collection each becomes.
FAMILIES: dict[str, str] = {
    "privateEndpoints": "private_endpoints", "virtualNetworks": "virtual_networks", "privateDnsZones": "dns_zones",
    "resourceManagementPrivateLinks": "rmpls", "associations": "associations", "targets": "targets",
    "privateLinkServices": "private_link_services", "routeTables": "route_tables",
    "networkSecurityGroups": "nsgs", "azureFirewalls": "firewalls", "firewallPolicies": "firewall_policies",
    "loadBalancers": "load_balancers", "networkInterfaces": "nics", "bastionHosts": "bastion_hosts",
    "virtualWans": "virtual_wans", "virtualHubs": "virtual_hubs", "networkVirtualAppliances": "nvas",
}
# Families whose records are a list item's record as parsed (no child units, no merge).
_PLAIN = ("resourceManagementPrivateLinks", "privateLinkServices", "routeTables", "networkSecurityGroups",
          "azureFirewalls", "firewallPolicies", "loadBalancers", "networkInterfaces", "bastionHosts", "virtualWans",
          "networkVirtualAppliances")
# Owners of provider-side connections, in the order provider_connections_by_endpoint lists them.
_OWNERS = ("private_link_services", "rmpls", "targets")


@dataclass
class Links:
    """What the link step derived besides the snapshot: the daemon keeps it so that an event re-links only what
    its re-read touched (:func:`relink`). Each field is replaced, never edited, once a snapshot holds it."""

    gaps: dict[str, tuple[CoverageGap, ...]]   # family -> its parse gaps, in id order
    base_endpoints: Mapping[str, PrivateEndpoint]  # endpoint key -> its record before its NICs' IPs were merged
    # The three indexes below hold their members as sorted tuples (see :func:`_members`), not frozensets: ~100k
    # sets of one member at 100k resources cost ~21 MB of the daemon's RSS, the tuples ~5 MB (issue 14).
    nics_naming: Mapping[str, tuple[str, ...]]      # endpoint key -> keys of the NICs whose privateEndpoint names it
    endpoints_of_nic: Mapping[str, tuple[str, ...]]  # NIC key -> keys of the endpoints whose nic_ids name it
    owners: Mapping[str, tuple[tuple[int, str], ...]]  # endpoint key -> (owner family, key) of connections naming it
    # Set by relink only: snapshot field -> the keys whose record may differ from the snapshot before (None: any
    # may), so the daemon's diff of the two snapshots looks at those keys instead of walking 35k-record mappings.
    # A field it does not name is one relink left as it was.
    changed: dict[str, frozenset[str] | None] = field(default_factory=dict)


def link(inv: Inventory, taken_at: datetime | None = None) -> tuple[Snapshot, Links]:
    """The whole link step: one step per resource family, in :data:`FAMILIES` order."""
    with paused_gc():
        return _link(inv, taken_at)


def _link(inv: Inventory, taken_at: datetime | None) -> tuple[Snapshot, Links]:
    gaps: dict[str, list[CoverageGap]] = {f: [] for f in FAMILIES}
    when = taken_at or parse_time(inv.manifest.get("recorded_at")) or datetime.now(UTC)
    subs = _subscriptions(inv)
    base = link_endpoints(ordered(_units(inv, "privateEndpoints")), inv.zone_groups, gaps["privateEndpoints"])
    vnets, subnets = link_vnets(ordered(_units(inv, "virtualNetworks")), gaps["virtualNetworks"])
    fields: dict[str, Any] = {
        "virtual_networks": vnets, "subnets": subnets,
        "dns_zones": link_zones(ordered(_units(inv, "privateDnsZones")), inv.vnet_links, inv.cnames,
                                gaps["privateDnsZones"]),
        "associations": link_associations(inv.associations.values(), gaps["associations"]),
        "targets": link_targets(inv.targets, inv.target_errors, gaps["targets"]),
        "virtual_hubs": link_hubs(ordered(_units(inv, "virtualHubs")), inv.hub_children, gaps["virtualHubs"]),
    }
    for kind in _PLAIN:
        fields[FAMILIES[kind]] = link_keyed(ordered(_units(inv, kind)), gaps[kind])
    nics: dict[str, Nic] = fields["nics"]
    naming: dict[str, set[str]] = defaultdict(set)
    for nic in nics.values():
        if nic.private_endpoint_id is not None:
            naming[nic.private_endpoint_id.key].add(nic.key)
    endpoints, endpoints_of_nic = _endpoints_with_nics(base, nics, naming)
    links = Links({f: tuple(g) for f, g in gaps.items()}, base, {k: _members(v) for k, v in naming.items()},
                  _member_index(endpoints_of_nic), {})
    fields["private_endpoints"] = endpoints
    by_endpoint = connections_by_endpoint(*(fields[o] for o in _OWNERS))
    owners: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for f, name in enumerate(_OWNERS):
        for key, owner in fields[name].items():
            for conn in owner.connections:
                if conn.endpoint_id is not None:
                    owners[conn.endpoint_id.key].add((f, key))
    links.owners = {k: _members(v) for k, v in owners.items()}
    tenant_id = inv.manifest.get("tenant_id") if isinstance(inv.manifest.get("tenant_id"), str) else None
    cloud = cl if isinstance(cl := inv.manifest.get("cloud"), str) else "AzureCloud"
    snapshot = Snapshot(
        taken_at=when, tenant_id=tenant_id, cloud=cloud, subscriptions=_frozen(subs),
        management_groups=tuple(n for n in (_s(g, "name") for g in inv.management_groups) if n),
        **{k: _frozen(v) for k, v in fields.items()},
        coverage=Coverage(subscriptions_scanned=len(subs), gaps=_coverage_gaps(inv, links),
                          read=frozenset(inv.read), scoped=inv.scoped),
        provider_connections_by_endpoint=_frozen({k: tuple(v) for k, v in by_endpoint.items()}),
        endpoints_by_subnet=_frozen({k: tuple(v) for k, v in endpoints_by_subnet(endpoints).items()}),
    )
    return snapshot, links


def _coverage_gaps(inv: Inventory, links: Links) -> tuple[CoverageGap, ...]:
    return tuple(_dedupe([*inv.gaps, *(g for f in FAMILIES for g in links.gaps[f])]))


def _endpoints_with_nics(base: dict[str, PrivateEndpoint], nics: Mapping[str, Nic], naming: Mapping[str, set[str]],
                         ) -> tuple[dict[str, PrivateEndpoint], dict[str, set[str]]]:
    """Every endpoint as :func:`_with_its_nics` makes it, and :func:`nic_owner_index` of ``base``, in one pass.

    Most endpoints name one NIC by a well-formed id, and only that NIC names them: those take no set, sort or union
    (the two passes were ~0.15 s of the 100k build)."""
    endpoints: dict[str, PrivateEndpoint] = {}
    endpoints_of_nic: dict[str, set[str]] = defaultdict(set)
    for k, pe in base.items():
        nic_ids = pe.nic_ids
        if len(nic_ids) == 1 and not nic_ids[0].opaque:
            nk = nic_ids[0].key
            endpoints_of_nic[nk].add(k)
            by_nic = naming.get(k)
            if by_nic is None or (len(by_nic) == 1 and nk in by_nic):
                nic = nics.get(nk)
                endpoints[k] = pe if nic is None else with_nic_ips(pe, nic)
                continue
            named = {nk}
        else:
            named = set()
            for n in nic_ids:
                nk = parse_id(repair_provider_typo(n.raw)).key if n.opaque else n.key
                endpoints_of_nic[nk].add(k)
                named.add(nk)
        its = sorted(x for x in named | naming.get(k, set()) if x in nics)
        endpoints[k] = with_nic_ips(pe, *(nics[x] for x in its)) if its else pe
    return endpoints, endpoints_of_nic


def _member_index(index: dict[str, set[str]]) -> dict[str, tuple[str, ...]]:
    """``{k: _members(v) for k, v in index.items()}``, each set let go as soon as it is converted, and ``index``
    emptied: ~35k one-key sets at 100k resources (~8 MB) need not outlive the link step or sit beside their copies."""
    members: dict[str, Any] = index
    for k, v in index.items():
        members[k] = _members(v)   # the same keys: no resize while iterating
    out: dict[str, tuple[str, ...]] = dict(members)
    index.clear()
    return out


def _with_its_nics(key: str, pe: PrivateEndpoint, nics: Mapping[str, Nic], links: Links) -> PrivateEndpoint:
    """``pe`` with the IPs of the NICs that name it or that it names, in NIC order (see :func:`merge_nic_ips`)."""
    named = {parse_id(repair_provider_typo(n.raw)).key if n.opaque else n.key for n in pe.nic_ids}
    its = sorted(k for k in named.union(links.nics_naming.get(key, ())) if k in nics)
    return with_nic_ips(pe, *(nics[k] for k in its)) if its else pe


# --- the incremental link: what a re-read touched, re-derived; every other record the very same object ----------

def relink(old: Snapshot, links: Links, inv: Inventory, touched: Touched,
           taken_at: datetime | None = None) -> tuple[Snapshot, Links]:
    """The snapshot of ``inv`` after a re-read that ``touched`` describes, derived from ``old`` (the snapshot of
    the inventory before it) by re-linking only the touched records and the indexes that name them.

    Equal to :func:`link` of ``inv`` (the property tests compare them), at a cost that follows what was touched:
    a collection whose keys did not change is copied, not rebuilt. Records not touched stay the very same
    objects, so a consumer can find what changed by identity.
    """
    with paused_gc():
        return _Relink(old, links, inv, touched).run(taken_at)


class _Relink:
    def __init__(self, old: Snapshot, links: Links, inv: Inventory, touched: Touched) -> None:
        self.old, self.inv, self.touched = old, inv, touched
        self.links = Links(dict(links.gaps), links.base_endpoints, links.nics_naming, links.endpoints_of_nic,
                           links.owners)
        self.fields: dict[str, dict[str, Any]] = {}
        self.changed: dict[str, frozenset[str] | None] = {}   # what Links.changed reports
        self._by_key: dict[int, dict[str, Parsed]] = {}
        self._gaps_before = links.gaps
        self._by_endpoint: Mapping[str, tuple[ProviderConnection, ...]] = old.provider_connections_by_endpoint

    def current(self, name: str) -> Mapping[str, Any]:
        got: Mapping[str, Any] = self.fields.get(name, getattr(self.old, name))
        return got

    def run(self, taken_at: datetime | None) -> tuple[Snapshot, Links]:
        t, old = self.touched, self.old
        for kind in _PLAIN:
            if t.list_keys.get(kind):
                name = FAMILIES[kind]
                self.fields[name] = self.update(name, t.list_keys[kind], partial(self._record, kind))
                self.changed[name] = frozenset(t.list_keys[kind])
                self._regap(kind, t.list_keys[kind])
        if t.list_keys.get("virtualNetworks"):
            scratch: list[CoverageGap] = []
            vnets, subnets = link_vnets(ordered(_units(self.inv, "virtualNetworks")), scratch)
            # A network's item parsed anew for one changed subnet gives its other records anew too: equal ones
            # keep their old objects.
            self.fields["virtual_networks"] = _kept(old.virtual_networks, vnets)
            self.fields["subnets"] = _kept(old.subnets, subnets)
            self.changed["virtual_networks"] = self.changed["subnets"] = None
            self.links.gaps["virtualNetworks"] = tuple(scratch)
        zones = t.list_keys.get("privateDnsZones", set()) | t.zone_children
        if zones:
            self.fields["dns_zones"] = self.update("dns_zones", zones, self._zone)
            self.changed["dns_zones"] = frozenset(zones)
            self._regap("privateDnsZones", zones)
        hubs = t.list_keys.get("virtualHubs", set()) | t.hub_children
        if hubs:
            self.fields["virtual_hubs"] = self.update("virtual_hubs", hubs, self._hub)
            self.changed["virtual_hubs"] = frozenset(hubs)
            self._regap("virtualHubs", hubs)
        if t.associations:
            scratch = []
            self.fields["associations"] = _kept(old.associations, link_associations(self.inv.associations.values(),
                                                                                  scratch))
            self.changed["associations"] = None
            self.links.gaps["associations"] = tuple(scratch)
        if t.targets:
            self._targets()
        changed_endpoints = self._endpoints()
        self._connections()
        by_subnet = self._by_subnet(changed_endpoints)
        coverage = old.coverage
        if any(self.links.gaps[f] is not g for f, g in self._gaps_before.items()) or t.read:
            coverage = replace(coverage, gaps=_coverage_gaps(self.inv, self.links),
                               read=frozenset(self.inv.read) if t.read else coverage.read)
        changed: dict[str, Any] = {k: MappingProxyType(v) for k, v in self.fields.items()}  # dicts of this relink
        self.links.changed = self.changed
        return replace(old, taken_at=taken_at or old.taken_at, coverage=coverage, endpoints_by_subnet=by_subnet,
                       provider_connections_by_endpoint=self._by_endpoint, **changed), self.links

    def update(self, name: str, dirty: Iterable[str], make: Callable[[str], Any]) -> dict[str, Any]:
        """``name``'s collection with the ``dirty`` keys re-derived by ``make`` (None: gone), in key order; an
        equal record keeps the old object."""
        before = self.current(name)
        out = _copy(before)
        added = []
        for k in dirty:
            rec = make(k)
            prev = out.get(k)
            if rec is None:
                out.pop(k, None)
            elif prev is None:
                out[k] = rec
                added.append(k)
            elif prev is not rec and prev != rec:
                out[k] = rec
        if added:
            keys = [k for k in before if k in out]
            for k in sorted(added):
                insort(keys, k)
            out = {k: out[k] for k in keys}
        return out

    def _first(self, kind: str, key: str) -> Parsed | None:
        """The item of ``kind`` with ``key`` that a full link would take (the first in read order). An item's id
        names its subscription, so only its subscription's unit, its read by id and the replaced units can hold it
        (and a hand-made inventory's one unit per kind)."""
        units = self.inv.lists.get(kind, {})
        rid = parse_id(key)
        names = {(rid.subscription or "").lower(), f"{BY_ID}{key}", "", *self.touched.units.get(kind, ())}
        for name, unit in units.items():
            if name not in names:
                continue
            found = self._index(unit).get(key)
            if found is not None:
                return found
        return None

    def _index(self, unit: ListUnit) -> dict[str, Parsed]:
        index = self._by_key.get(id(unit))
        if index is None:
            index = {}
            for p in unit.items:
                if p.order[0] == 0:
                    index.setdefault(p.order[1], p)
            self._by_key[id(unit)] = index
        return index

    def _record(self, kind: str, key: str) -> Any:
        p = self._first(kind, key)
        return None if p is None else p.record

    def _zone(self, key: str) -> PrivateDnsZone | None:
        p = self._first("privateDnsZones", key)
        return None if p is None else link_zone(p, self.inv.vnet_links, self.inv.cnames, [])

    def _hub(self, key: str) -> VirtualHub | None:
        p = self._first("virtualHubs", key)
        return None if p is None else link_hub(p, self.inv.hub_children, [])

    def _regap(self, kind: str, dirty: Iterable[str]) -> None:
        """A family's gaps again, when they may have changed: it had some, or a re-linked item has some (a family
        without gaps before, whose touched items have none, has none after)."""
        if self._gaps_before[kind] or any(k == "" or self._flagged(kind, self._first(kind, k)) for k in dirty):
            self.links.gaps[kind] = self._gaps(kind)

    def _flagged(self, kind: str, p: Parsed | None) -> bool:
        if p is None:
            return False
        if p.gaps:
            return True
        children = {"privateEndpoints": (self.inv.zone_groups,),
                    "privateDnsZones": (self.inv.vnet_links, self.inv.cnames),
                    "virtualHubs": tuple(self.inv.hub_children.get(c, {}) for c in HUB_CHILDREN)}.get(kind, ())
        return p.order[0] == 0 and any((c := m.get(p.order[1])) is not None and c.error is not None for m in children)

    def _gaps(self, kind: str) -> tuple[CoverageGap, ...]:
        """One family's gaps again, in id order: only items with gaps (or a failed child) are sorted."""
        flagged = [p for u in _units(self.inv, kind) for p in u.items if self._flagged(kind, p)]
        out: list[CoverageGap] = []
        for p in sorted(flagged, key=_order_of):
            if kind == "privateEndpoints":
                link_endpoint(p, self.inv.zone_groups, out)
            elif kind == "privateDnsZones":
                link_zone(p, self.inv.vnet_links, self.inv.cnames, out)
            elif kind == "virtualHubs":
                link_hub(p, self.inv.hub_children, out)
            else:
                out.extend(p.gaps)
        return tuple(out)

    def _targets(self) -> None:
        if not self.touched.targets_added and self._targets_in_place():
            return
        old, dirty = self.old.targets, self.touched.targets
        out: dict[str, Target] = {}
        for key, unit in self.inv.targets.items():
            if unit.target is not None:
                out[key] = unit.target
        for key, (raw, err) in self.inv.target_errors.items():
            prev = old.get(key)
            if prev is None or key in dirty:
                made = failed_target(raw, err)
                prev = prev if prev is not None and prev == made else made
            out[key] = prev
        self.fields["targets"] = out
        # every other key's record is its unit's target (or failed target) as the last link left it
        self.changed["targets"] = frozenset(dirty)
        self.links.gaps["targets"] = tuple(g for u in self.inv.targets.values() for g in u.gaps)

    def _targets_in_place(self) -> bool:
        """The targets re-derived for the touched keys only, the others kept in place: when no key was added to the
        inventory's targets or errors (:attr:`Touched.targets_added`) and each touched key is gone or was in the
        snapshot before, the link's order is the snapshot's. Walking every target took ~20 ms of a PaaS target's
        event at 100k resources (issue 14). False (nothing done) when that cannot be shown."""
        old, dirty, inv = self.old.targets, self.touched.targets, self.inv
        out = _copy(old)
        for key in dirty:
            unit = inv.targets.get(key)
            error = inv.target_errors.get(key)
            if unit is not None and error is not None:
                return False   # in both (no re-read leaves that): the whole derivation says which wins where
            if unit is not None and unit.target is not None:
                record: Target | None = unit.target
            elif error is not None:
                prev = old.get(key)
                made = failed_target(*error)
                record = prev if prev is not None and prev == made else made
            else:
                record = None
            if record is None:
                out.pop(key, None)
            elif key in old:
                out[key] = record
            else:
                return False   # a key new to the snapshot: its place is the inventory's
        if self._gaps_before["targets"] or any(u.gaps for k in dirty if (u := inv.targets.get(k)) is not None):
            self.links.gaps["targets"] = tuple(g for u in inv.targets.values() for g in u.gaps)
        self.fields["targets"] = out
        self.changed["targets"] = frozenset(dirty)
        return True

    def _endpoints(self) -> set[str]:
        """Re-link the touched endpoints and those whose NICs changed; the keys whose record changed."""
        t, links = self.touched, self.links
        dirty = t.list_keys.get("privateEndpoints", set()) | t.zone_groups
        affected: set[str] = set()
        if dirty:
            # Changes over the previous indexes, not copies of them: two 35k-entry copies were ~8 ms of an endpoint
            # event at 100k resources (every value touched); Layered shares the old dict and folds in the changes.
            base: dict[str, PrivateEndpoint | None] = {}
            of_nic: dict[str, tuple[str, ...]] = {}
            for k in dirty:
                p = self._first("privateEndpoints", k)
                pe = None if p is None else link_endpoint(p, self.inv.zone_groups, [])
                was = links.base_endpoints.get(k)
                base[k] = None if pe is None else was if was is not None and was == pe else pe
                for n, add in [*((n, False) for n in _nic_keys(was)), *((n, True) for n in _nic_keys(pe))]:
                    of_nic[n] = _moved(of_nic[n] if n in of_nic else links.endpoints_of_nic.get(n, ()), k, add)
            links.base_endpoints = Layered.over(links.base_endpoints, base)
            links.endpoints_of_nic = Layered.over(links.endpoints_of_nic, of_nic)
            self._regap("privateEndpoints", dirty)
            affected |= dirty
        nic_dirty = t.list_keys.get("networkInterfaces", set())
        if nic_dirty:
            # The changes over the shared index (Layered), not a copy of its ~35k entries per NIC event.
            naming: dict[str, tuple[str, ...] | None] = {}
            new_nics = self.current("nics")
            for n in nic_dirty:
                for nic, add in ((self.old.nics.get(n), False), (new_nics.get(n), True)):
                    if nic is None or nic.private_endpoint_id is None:
                        continue
                    owner = nic.private_endpoint_id.key
                    was_naming = naming[owner] if owner in naming else links.nics_naming.get(owner, ())
                    naming[owner] = _moved(was_naming or (), n, add)
                    affected.add(owner)
                affected.update(links.endpoints_of_nic.get(n, ()))
            links.nics_naming = Layered.over(links.nics_naming, naming)
        if not affected:
            return set()
        nics = self.current("nics")
        before = self.old.private_endpoints

        def make(k: str) -> PrivateEndpoint | None:
            pe = links.base_endpoints.get(k)
            return None if pe is None else _with_its_nics(k, pe, nics, links)
        self.fields["private_endpoints"] = endpoints = self.update("private_endpoints", affected, make)
        self.changed["private_endpoints"] = frozenset(affected)
        return {k for k in affected if endpoints.get(k) is not before.get(k)}

    def _connections(self) -> None:
        """provider_connections_by_endpoint again for the endpoints that the touched owners name (or named)."""
        old_index = self.old.provider_connections_by_endpoint
        t = self.touched
        touched_owners = (t.list_keys.get("privateLinkServices", set()),
                          t.list_keys.get("resourceManagementPrivateLinks", set()), t.targets)
        dirty: list[tuple[int, str]] = []
        for f, name in enumerate(_OWNERS):
            if name in self.fields:
                before, after = getattr(self.old, name), self.fields[name]
                dirty.extend((f, k) for k in touched_owners[f] if before.get(k) is not after.get(k)
                             and not _same_connections(before.get(k), after.get(k)))
        if not dirty:
            return
        # The changes over the shared index (Layered; None removes), not a copy of its ~35k entries per owner event.
        kept = self.links.owners
        owners: dict[str, tuple[tuple[int, str], ...] | None] = {}

        def owners_of(e: str) -> tuple[tuple[int, str], ...]:
            return (owners[e] or ()) if e in owners else kept.get(e, ())

        affected: set[str] = set()
        for f, key in dirty:
            was, now = getattr(self.old, _OWNERS[f]).get(key), self.current(_OWNERS[f]).get(key)
            for owner, add in ((was, False), (now, True)):
                for conn in owner.connections if owner is not None else ():
                    if conn.endpoint_id is not None:
                        e = conn.endpoint_id.key
                        owners[e] = _moved(owners_of(e), (f, key), add)
                        affected.add(e)
        index = _copy(old_index)
        target_order: dict[str, int] | None = None
        # Each touched owner's connections by endpoint, in the owner's order: a service with ~500 connections walked
        # all of them for each of its ~500 endpoints (~70 ms a Private Link Service event at 100k resources).
        per_owner: dict[tuple[int, str], dict[str, list[Any]]] = {}

        def conns_of(f: int, key: str, e: str) -> list[Any]:
            held = per_owner.get((f, key))
            if held is None:
                held = per_owner[(f, key)] = {}
                for conn in self.current(_OWNERS[f])[key].connections:
                    if conn.endpoint_id is not None:
                        held.setdefault(conn.endpoint_id.key, []).append(conn)
            return held.get(e, [])

        for e in affected:
            named = owners_of(e)
            if not named:
                owners[e] = None
            if sum(1 for f, _ in named if f == 2) > 1 and target_order is None:
                target_order = {k: i for i, k in enumerate(self.current("targets"))}
            place = target_order or {}
            conns = tuple(conn for f, key in sorted(named, key=lambda o: (o[0], place.get(o[1], 0) if o[0] == 2 else 0,
                                                                          o[1]))
                          for conn in conns_of(f, key, e))
            if conns:
                index[e] = old_index[e] if e in old_index and old_index[e] == conns else conns
            else:
                index.pop(e, None)
        self.links.owners = Layered.over(kept, owners)
        self._by_endpoint = MappingProxyType(index)
        self.changed["provider_connections_by_endpoint"] = frozenset(affected)

    def _by_subnet(self, changed: set[str]) -> Mapping[str, tuple[str, ...]]:
        old_index = self.old.endpoints_by_subnet
        if not changed:
            return old_index
        endpoints, before = self.current("private_endpoints"), self.old.private_endpoints
        subnets: set[str] = set()
        for k in changed:
            for pe in (before.get(k), endpoints.get(k)):
                if pe is not None and pe.subnet_id is not None:
                    subnets.add(pe.subnet_id.key)
        index = _copy(old_index)
        for s in subnets:
            keep = [k for k in old_index.get(s, ()) if k not in changed]
            new = [k for k in changed if (pe := endpoints.get(k)) is not None and pe.subnet_id is not None
                   and pe.subnet_id.key == s]
            members = tuple(sorted([*keep, *new]))
            if members:
                index[s] = old_index[s] if old_index.get(s) == members else members
            else:
                index.pop(s, None)
        self.changed["endpoints_by_subnet"] = frozenset(subnets)
        return MappingProxyType(index)


M = TypeVar("M", str, tuple[int, str])


def _members(values: Iterable[M]) -> tuple[M, ...]:
    """A :class:`Links` index's members: distinct, sorted, as a tuple (a frozenset of one costs ~4x as much)."""
    return tuple(sorted(set(values)))


def _moved(members: tuple[M, ...], member: M, add: bool) -> tuple[M, ...]:
    """``members`` without ``member``, then with it when ``add``: the set operation the indexes' users ask for."""
    out = set(members)
    out.discard(member)
    if add:
        out.add(member)
    return tuple(sorted(out))


def _same_connections(was: Any, now: Any) -> bool:
    """Whether an owner re-linked as another record still holds equal connections: then no endpoint's provider side
    moved (a Private Link Service's visibility changed, not its ~500 connections at 100k resources, whose index
    entries and owners were rebuilt for ~10 ms an event, issue 14)."""
    return was is not None and now is not None and was.connections == now.connections


def _copy(m: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of a snapshot mapping: a read-only proxy's ``copy()`` is its dict's, where ``dict(proxy)`` walks
    it key by key (40 ms for 35k endpoints)."""
    copy = getattr(m, "copy", None)
    out: dict[str, Any] = copy() if copy is not None else dict(m)
    return out


V = TypeVar("V")


class Layered(Mapping[str, V]):
    """A read-only mapping: a shared dict that nothing edits, with a small dict of changes over it (None: removed).

    For the indexes relink keeps beside the snapshot (:class:`Links`), which an event changes in a few keys and
    which only relink looks up: each event used to copy them whole. The changes are folded into a new plain dict
    once they outgrow a fraction of it, so a lookup stays two dict probes and the cost is amortised over events.
    """

    __slots__ = ("_base", "_changes")
    _FOLD_AT = 1024

    def __init__(self, base: Mapping[str, V], changes: Mapping[str, V | None]) -> None:
        self._base, self._changes = base, changes

    @classmethod
    def over(cls, old: Mapping[str, V], changes: Mapping[str, V | None]) -> Mapping[str, V]:
        """``old`` with ``changes`` applied (a None value removes its key); ``old`` itself is left as it was."""
        if isinstance(old, Layered):
            base, merged = old._base, {**old._changes, **changes}
        else:
            base, merged = old, dict(changes)
        if len(merged) <= max(cls._FOLD_AT, len(base) // 32):
            return cls(base, merged)
        out = dict(base)
        for k, v in merged.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = v
        return out

    def __getitem__(self, key: str) -> V:
        changes = self._changes
        if key in changes:
            v = changes[key]
            if v is None:
                raise KeyError(key)
            return v
        return self._base[key]

    def get(self, key: str, default: Any = None) -> Any:
        changes = self._changes
        if key in changes:
            v = changes[key]
            return default if v is None else v
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        if key in self._changes:
            return self._changes[key] is not None  # type: ignore[index]
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        changes = self._changes
        yield from (k for k in self._base if k not in changes)
        yield from (k for k, v in changes.items() if v is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _kept(old: Mapping[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with each record equal to the one ``old`` holds under its key replaced by that very object."""
    for k, rec in new.items():
        prev = old.get(k)
        if prev is not None and prev is not rec and prev == rec:
            new[k] = prev
    return new


def _nic_keys(pe: PrivateEndpoint | None) -> set[str]:
    if pe is None:
        return set()
    return {parse_id(repair_provider_typo(n.raw)).key if n.opaque else n.key for n in pe.nic_ids}


def _subscriptions(inv: Inventory) -> dict[str, Subscription]:
    """The listed subscriptions by lower-cased id; an entry without an id names nothing and is skipped."""
    subs: dict[str, Subscription] = {}
    for s in inv.subscriptions:
        sid = _s(s, "subscriptionId")
        if sid:
            subs[sid.lower()] = Subscription(sid, _s(s, "displayName"), _s(s, "state"), _s(s, "tenantId"))
    return subs


def link_keyed(items: Iterable[Parsed], gaps: list[CoverageGap]) -> dict[str, Any]:
    """One family's records by key (the first of a duplicated id wins), its gaps added in id order."""
    out: dict[str, Any] = {}
    for p in items:
        gaps.extend(p.gaps)
        if p.record is not None:
            out.setdefault(p.record.key, p.record)
    return out


def _child_failed(p: Parsed, kind: str, child: Child, gaps: list[CoverageGap]) -> bool:
    if child.error is None:
        return False
    scope = scope_of(p)
    log.warning("malformed_resource", kind=kind, id=scope[:300], error=child.error)
    gaps.append(CoverageGap(scope, kind, "MalformedResource", None, child.error))
    return True


def link_endpoint(p: Parsed, zone_groups: Mapping[str, Child], gaps: list[CoverageGap]) -> PrivateEndpoint | None:
    """One endpoint joined with its zone groups; a failure in either is its gap (the earlier part's first)."""
    groups = zone_groups.get(p.order[1]) if p.order[0] == 0 and (p.record is not None or p.late) else None
    if groups is not None and _child_failed(p, "privateEndpoints", groups, gaps):
        return None
    gaps.extend(p.gaps)
    if p.record is None:
        return None
    pe: PrivateEndpoint = p.record
    return pe if groups is None else _with(pe, dns_zone_groups=groups.value)


def link_endpoints(items: Iterable[Parsed], zone_groups: Mapping[str, Child],
                   gaps: list[CoverageGap]) -> dict[str, PrivateEndpoint]:
    """Endpoints with their zone groups (read per endpoint, so a unit of their own)."""
    endpoints: dict[str, PrivateEndpoint] = {}
    for p in items:
        pe = link_endpoint(p, zone_groups, gaps)
        if pe is not None:
            endpoints.setdefault(pe.key, pe)
    return endpoints


def link_vnets(items: Iterable[Parsed], gaps: list[CoverageGap]) -> tuple[dict[str, VirtualNetwork],
                                                                          dict[str, Subnet]]:
    vnets: dict[str, VirtualNetwork] = {}
    subnets: dict[str, Subnet] = {}
    for p in items:
        gaps.extend(p.gaps)
        if p.record is not None:
            vnet, its_subnets = p.record
            vnets.setdefault(vnet.key, vnet)
            for sn in its_subnets:
                subnets.setdefault(sn.key, sn)
    return vnets, subnets


def link_zone(p: Parsed, links: Mapping[str, Child], cnames: Mapping[str, Child],
              gaps: list[CoverageGap]) -> PrivateDnsZone | None:
    """One zone joined with its network links and CNAME records (links fail first, as they are parsed first)."""
    key = p.order[1] if p.order[0] == 0 else None
    its_links = links.get(key) if key is not None else None
    its_cnames = cnames.get(key) if key is not None else None
    if key is not None:
        if its_links is not None and _child_failed(p, "privateDnsZones", its_links, gaps):
            return None
        if its_cnames is not None and _child_failed(p, "privateDnsZones", its_cnames, gaps):
            return None
    gaps.extend(p.gaps)
    if p.record is None:
        return None
    zone: PrivateDnsZone = p.record
    if its_links is None and its_cnames is None:
        return zone
    return _with(zone, vnet_links=None if its_links is None else its_links.value,
                   cname_records=None if its_cnames is None else its_cnames.value)


def link_zones(items: Iterable[Parsed], links: Mapping[str, Child], cnames: Mapping[str, Child],
               gaps: list[CoverageGap]) -> dict[str, PrivateDnsZone]:
    """Zones with their network links and CNAME records, each read per zone."""
    zones: dict[str, PrivateDnsZone] = {}
    for p in items:
        zone = link_zone(p, links, cnames, gaps)
        if zone is not None:
            zones.setdefault(zone.key, zone)
    return zones


# A hub's child lists, in the order they are read and linked: the plan's kind of each.
HUB_CHILDREN = ("hubVirtualNetworkConnections", "routingIntent", "hubRouteTables")
_HUB_FIELDS = {"hubVirtualNetworkConnections": "connections", "routingIntent": "routing_policies",
               "hubRouteTables": "route_tables"}


def link_hub(p: Parsed, children: Mapping[str, Mapping[str, Child]], gaps: list[CoverageGap]) -> VirtualHub | None:
    """One hub joined with its connections, routing intent and route tables (each None when it was not read)."""
    key = p.order[1] if p.order[0] == 0 else None
    found: dict[str, Any] = {}
    if key is not None:
        for child in HUB_CHILDREN:
            got = children.get(child, {}).get(key)
            if got is not None:
                if _child_failed(p, "virtualHubs", got, gaps):
                    return None
                found[_HUB_FIELDS[child]] = got.value
    gaps.extend(p.gaps)
    if p.record is None:
        return None
    hub: VirtualHub = p.record
    return _with(hub, **found) if found else hub


def link_hubs(items: Iterable[Parsed], children: Mapping[str, Mapping[str, Child]],
              gaps: list[CoverageGap]) -> dict[str, VirtualHub]:
    hubs: dict[str, VirtualHub] = {}
    for p in items:
        hub = link_hub(p, children, gaps)
        if hub is not None:
            hubs.setdefault(hub.key, hub)
    return hubs


def link_associations(units: Iterable[AssociationUnit], gaps: list[CoverageGap]) -> dict[str, Association]:
    """Associations in the order their groups' lists were read, each with the group whose list returned it."""
    return link_keyed((p for u in units for p in u.items), gaps)


def link_targets(units: Mapping[str, TargetUnit], errors: Mapping[str, tuple[str, Any]],
                 gaps: list[CoverageGap]) -> dict[str, Target]:
    """Targets read by id, indexed by the id plmon asked for, then those whose read failed (absent only when
    the error proves it: :func:`proves_absence`)."""
    targets: dict[str, Target] = {}
    for key, unit in units.items():
        gaps.extend(unit.gaps)
        if unit.target is not None:
            targets[key] = unit.target  # ARM may answer with a differently cased id: the key asked for
    for key, (raw, read_err) in errors.items():
        targets[key] = failed_target(raw, read_err)
    return targets


def failed_target(raw: str, read_err: Any) -> Target:
    tid = parse_id(raw)
    return Target(id=tid, name=tid.name, type=tid.type or "unknown",
                  state=TargetState.NOT_FOUND if proves_absence(read_err) else TargetState.UNREADABLE,
                  error_code=read_err.code, error_status=read_err.status)


def nic_owner_index(endpoints: Mapping[str, PrivateEndpoint]) -> dict[str, set[str]]:
    """Endpoint keys by the NIC keys they name (a '/provders/' typo repaired)."""
    endpoints_of_nic: dict[str, set[str]] = defaultdict(set)
    for k, endpoint in endpoints.items():
        for n in endpoint.nic_ids:
            endpoints_of_nic[parse_id(repair_provider_typo(n.raw)).key if n.opaque else n.key].add(k)
    return endpoints_of_nic


def connections_by_endpoint(*owner_maps: Mapping[str, Any]) -> dict[str, list[ProviderConnection]]:
    """Provider-side connections (of PLSs, RMPLs, targets) by the endpoint they name, resolved once."""
    by_endpoint: dict[str, list[ProviderConnection]] = defaultdict(list)
    for owners in owner_maps:
        for owner in owners.values():
            for conn in owner.connections:
                if conn.endpoint_id is not None:
                    by_endpoint[conn.endpoint_id.key].append(conn)
    return by_endpoint


def endpoints_by_subnet(endpoints: Mapping[str, PrivateEndpoint]) -> dict[str, list[str]]:
    """Endpoint keys by the subnet they sit in, resolved once."""
    by_subnet: dict[str, list[str]] = defaultdict(list)
    for pe in endpoints.values():
        if pe.subnet_id is not None:
            by_subnet[pe.subnet_id.key].append(pe.key)
    return by_subnet


def with_nic_ips(pe: PrivateEndpoint, *nics: Nic) -> PrivateEndpoint:
    """``pe`` with its NICs' IPs added (each once, in order); ``pe`` itself when they add none (an equal record).

    Most endpoints carry their NIC's IP already: at 100k resources 35k copies of an endpoint equal to it were made."""
    ips = [ip for nic in nics for ip in (c.private_ip for c in nic.ip_configs) if ip]
    merged = tuple(dict.fromkeys((*pe.ip_addresses, *ips)))
    return pe if merged == pe.ip_addresses else _with(pe, ip_addresses=merged)


_R = TypeVar("_R")
# record class -> its replacer (record, changes) -> new record; None: replace() it is
_REPLACERS: dict[type, Callable[[Any, dict[str, Any]], Any] | None] = {}


def _with(record: _R, **changes: Any) -> _R:
    """``dataclasses.replace(record, **changes)`` for the snapshot's frozen, slotted records, by their slots.

    The link step replaces two fields of every endpoint (its zone groups, its NICs' IPs: 70k replacements at 100k
    resources), and ``replace`` walks the class's fields and calls the frozen ``__init__`` (a generic
    ``object.__setattr__`` per field) each time. A class with a ``__post_init__``, a field outside ``__init__``
    or no slots is left to ``replace``."""
    cls = type(record)
    try:
        replacer = _REPLACERS[cls]
    except KeyError:
        replacer = _REPLACERS[cls] = _replacer(cls)
    if replacer is None:
        return replace(record, **changes)  # type: ignore[type-var]
    return cast(_R, replacer(record, changes))


def _replacer(cls: type) -> Callable[[Any, dict[str, Any]], Any] | None:
    """A function that copies a ``cls`` record slot by slot, taking a field from ``changes`` when it names it.

    Made with ``exec`` (as :func:`_fast_constructor`), so each slot is read as a plain attribute: the loop over the
    setters it replaces, with a ``getattr`` per field, took 4.7 us per endpoint against 2.1 us."""
    setters = _slot_setters(cls)
    if setters is None:
        return None
    assert not any(name.endswith("_") for name, _ in setters), "a field name could clash with the generated locals"
    ns: dict[str, Any] = {"new_": object.__new__, "cls_": cls}
    body = []
    for i, (name, put) in enumerate(setters):
        ns[f"set{i}_"] = put
        body.append(f"    set{i}_(self_, changes_[{name!r}] if {name!r} in changes_ else record_.{name})\n")
    exec(f"def replace_(record_, changes_):\n    self_ = new_(cls_)\n{''.join(body)}    return self_\n", ns)
    replacer: Callable[[Any, dict[str, Any]], Any] = ns["replace_"]
    replacer.__qualname__ = replacer.__name__ = f"replace_{cls.__name__}"
    return replacer


def _slot_setters(cls: type) -> tuple[tuple[str, Callable[[Any, Any], None]], ...] | None:
    if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
        return None
    out = []
    for f in fields(cls):
        slot = getattr(cls, f.name, None)
        if not f.init or not isinstance(slot, MemberDescriptorType):
            return None
        out.append((f.name, slot.__set__))
    return tuple(out)


_NO_VALUE = object()  # a field the caller of a fast constructor left to its default factory


def _fast_constructor(cls: Callable[..., _R]) -> Callable[..., _R]:
    """``cls`` itself, as a function that fills a new instance's slots directly (same arguments, same defaults).

    A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__``, a generic attribute lookup
    per field: a parse builds ~300k records at 100k resources (endpoints, their connections, NICs and their IP
    configurations, targets, zone groups, the units' items), and their ``__init__`` calls were ~1.5 us each above
    storing slots directly. Made with ``exec`` as :mod:`dataclasses` makes ``__init__``; a class with a
    ``__post_init__``, a field outside ``__init__`` or no slots is returned as it is."""
    setters = _slot_setters(cls) if isinstance(cls, type) else None
    if setters is None:
        return cls
    names = [name for name, _ in setters]
    assert not any(n.endswith("_") for n in names), "a field name could clash with the generated locals"
    ns: dict[str, Any] = {"new_": object.__new__, "cls_": cls, "none_": _NO_VALUE}
    params, body = [], []
    for i, f in enumerate(fields(cast(Any, cls))):
        ns[f"set{i}_"] = setters[i][1]
        if f.default is not MISSING:
            ns[f"default{i}_"] = f.default
            params.append(f"{f.name}=default{i}_")
        elif f.default_factory is not MISSING:
            ns[f"factory{i}_"] = f.default_factory
            params.append(f"{f.name}=none_")
            body.append(f"    if {f.name} is none_:\n        {f.name} = factory{i}_()\n")
        else:
            params.append(f.name)
        body.append(f"    set{i}_(self_, {f.name})\n")
    code = f"def make({', '.join(params)}):\n    self_ = new_(cls_)\n{''.join(body)}    return self_\n"
    exec(code, ns)  # the text is built above from the class's own field names
    make: Callable[..., _R] = ns["make"]
    make.__qualname__ = make.__name__ = f"new_{cls.__name__}"
    return make


# The records a parse builds by the tens of thousands, built by fast constructors.
_new_consumer_connection = _fast_constructor(ConsumerConnection)
_new_provider_connection = _fast_constructor(ProviderConnection)
_new_zone_group = _fast_constructor(DnsZoneGroup)
_new_endpoint = _fast_constructor(PrivateEndpoint)
_new_target = _fast_constructor(Target)
_new_subnet = _fast_constructor(Subnet)
_new_nic_ip_config = _fast_constructor(NicIpConfig)
_new_nic = _fast_constructor(Nic)
_new_parsed = _fast_constructor(Parsed)
_new_endpoint_refs = _fast_constructor(EndpointRefs)


def _dedupe(gaps: list[CoverageGap]) -> list[CoverageGap]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for g in gaps:
        k = (g.scope.lower(), g.type.lower(), g.code)
        if k not in seen:
            seen.add(k)
            out.append(g)
    return out
