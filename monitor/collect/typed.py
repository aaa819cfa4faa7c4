"""A typed decoder for the bulk list kinds of a recorded tenant: file bytes straight to the unit the parser would give.

At 100k resources the private-endpoint and NIC lists are 100 MB of the tenant's 170 MB and 70k of its items, and the
endpoints' zone-group lists 30k of its 57k files (the virtual networks, another 14 MB, are read here too). The
generic path decodes each item into dicts (every field, the ones nothing reads too), then walks them through the
defensive accessors of :mod:`plmon.monitor.collect.builder`.
Here :mod:`msgspec` decodes only the fields the records keep into :class:`msgspec.Struct` objects (unknown fields
are skipped while decoding), and the records are built from their attributes, with the same values and types as the
builder's parse.

The typed decoder is strict where the parser is lenient, and that is what keeps them equal: anything it is not sure
of is refused, and the whole file then goes the generic way (``None`` from :func:`decode_unit`). A refusal is any
value of an unexpected type (a list item that is not an object, ``"properties": null``, a number where a reference
object belongs), a blank id, any ``\\u`` escape (the generic decoder mends lone surrogates its own way), and any
error while building the records. What it accepts it reads as the parser does: empty strings count as absent,
words are interned, names and ids shared, in the same order.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from plmon.monitor.collect.builder import (
    _NO_TAGS,
    _access_settings,
    _new_consumer_connection,
    _new_endpoint,
    _new_endpoint_refs,
    _new_nic,
    _new_nic_ip_config,
    _new_parsed,
    _new_provider_connection,
    _new_subnet,
    _new_target,
    _new_zone_group,
    _tags,
    _words,
    flag_value,
    text_value,
    unit_of,
    word_value,
)
from plmon.monitor.collect.inventory import Child, ListUnit, Prebuilt, TargetUnit
from plmon.monitor.model.arm_id import ArmId, parse_id, repair_provider_typo
from plmon.monitor.model.kinds import ACCESS_PATHS
from plmon.monitor.model.snapshot import (
    ConsumerConnection,
    DnsZoneGroup,
    Peering,
    ProviderConnection,
    Subnet,
    TargetState,
    VirtualNetwork,
)
from plmon.monitor.outside_json import has_long_number

__all__ = ["TYPED_LISTS", "Prebuilt", "decode_target", "decode_unit"]

_UNSET: Any = msgspec.UNSET


# --- the fields the records keep, named as ARM spells them (Any where the parser accepts any value) ---------------

class _Resource(msgspec.Struct):
    """The envelope every listed ARM resource shares (its ``properties`` are each kind's own)."""

    id: str
    name: Any = None
    type: Any = None
    location: Any = None
    tags: Any = None
    provisioningState: Any = None


class _Ref(msgspec.Struct):
    id: Any = None


class _State(msgspec.Struct):
    status: Any = None
    description: Any = None
    actionsRequired: Any = None
    actionRequired: Any = None


class _ConnProps(msgspec.Struct):
    privateLinkServiceId: Any = None
    groupIds: list[Any] | None = None
    requestMessage: Any = None
    privateLinkServiceConnectionState: _State | None = None


class _Conn(msgspec.Struct):
    id: Any = None
    name: Any = None
    properties: _ConnProps = _UNSET


class _IpProps(msgspec.Struct):
    privateIPAddress: Any = None


class _IpConfig(msgspec.Struct):
    properties: _IpProps = _UNSET


class _DnsConfig(msgspec.Struct):
    fqdn: Any = None
    ipAddresses: list[Any] | None = None


class _EndpointProps(msgspec.Struct):
    provisioningState: Any = None
    subnet: _Ref | None = None
    privateLinkServiceConnections: list[_Conn] | None = None
    manualPrivateLinkServiceConnections: list[_Conn] | None = None
    networkInterfaces: list[_Ref] | None = None
    ipConfigurations: list[_IpConfig] | None = None
    customDnsConfigs: list[_DnsConfig] | None = None


class _Endpoint(_Resource):
    properties: _EndpointProps = _UNSET


class _Endpoints(msgspec.Struct):
    value: list[_Endpoint]


class _NicIpProps(msgspec.Struct):
    privateIPAddress: Any = None
    subnet: _Ref | None = None
    loadBalancerBackendAddressPools: list[_Ref] | None = None


class _NicIpConfig(msgspec.Struct):
    id: Any = None
    name: Any = None
    properties: _NicIpProps = _UNSET


class _NicProps(msgspec.Struct):
    provisioningState: Any = None
    enableIPForwarding: Any = None
    ipConfigurations: list[_NicIpConfig] | None = None
    privateEndpoint: _Ref | None = None
    virtualMachine: _Ref | None = None


class _Nic(_Resource):
    properties: _NicProps = _UNSET


class _Nics(msgspec.Struct):
    value: list[_Nic]


class _SubnetProps(msgspec.Struct):
    provisioningState: Any = None
    addressPrefix: Any = None
    addressPrefixes: list[Any] | None = None
    routeTable: _Ref | None = None
    networkSecurityGroup: _Ref | None = None
    privateEndpointNetworkPolicies: Any = None
    privateLinkServiceNetworkPolicies: Any = None
    ipConfigurations: list[_Ref] | None = None
    privateEndpoints: list[_Ref] | None = None


class _Subnet(msgspec.Struct):
    id: Any = None
    name: Any = None
    type: Any = None
    location: Any = None
    tags: Any = None
    provisioningState: Any = None
    properties: _SubnetProps = _UNSET


class _Prefixes(msgspec.Struct):
    addressPrefixes: list[Any] | None = None


class _DhcpOptions(msgspec.Struct):
    dnsServers: list[Any] | None = None


class _PeeringProps(msgspec.Struct):
    remoteVirtualNetwork: _Ref | None = None
    peeringState: Any = None
    allowVirtualNetworkAccess: Any = None
    allowForwardedTraffic: Any = None
    remoteAddressSpace: _Prefixes | None = None


class _Peering(msgspec.Struct):
    id: Any = None
    name: Any = None
    properties: _PeeringProps = _UNSET


class _VnetProps(msgspec.Struct):
    provisioningState: Any = None
    addressSpace: _Prefixes | None = None
    dhcpOptions: _DhcpOptions | None = None
    subnets: list[_Subnet] | None = None
    virtualNetworkPeerings: list[_Peering] | None = None


class _Vnet(_Resource):
    properties: _VnetProps = _UNSET


class _Vnets(msgspec.Struct):
    value: list[_Vnet]


class _ZoneConfigProps(msgspec.Struct):
    privateDnsZoneId: Any = None


class _ZoneConfig(msgspec.Struct):
    name: Any = None
    properties: _ZoneConfigProps = _UNSET


class _ZoneGroupProps(msgspec.Struct):
    privateDnsZoneConfigs: list[_ZoneConfig] | None = None


class _ZoneGroup(msgspec.Struct):
    id: Any = None
    name: Any = None
    properties: _ZoneGroupProps = _UNSET


class _ZoneGroups(msgspec.Struct):
    value: list[_ZoneGroup]


class _PeConnProps(msgspec.Struct):
    privateEndpoint: _Ref | None = None
    privateLinkServiceConnectionState: _State | None = None
    provisioningState: Any = None
    groupIds: list[Any] | None = None


class _PeConn(msgspec.Struct):
    id: Any = None
    name: Any = None
    properties: _PeConnProps = _UNSET


class _Acl(msgspec.Struct):
    defaultAction: Any = None


class _TargetProps(msgspec.Struct):
    """What :func:`~plmon.monitor.collect.builder.parse_target` reads below ``properties``: the public-access
    settings (``publicNetworkAccess`` and the objects of ``ACCESS_PATHS`` kept as decoded, present or not), the
    four spellings of the network rules' default action, and the provider-side connections."""

    provisioningState: Any = None
    publicNetworkAccess: Any = _UNSET
    networkAcls: _Acl | None = None
    networkRuleSet: _Acl | None = None
    networkACLs: _Acl | None = None
    networkRuleSets: _Acl | None = None
    privateEndpointConnections: list[_PeConn] | None = None
    accessModeSettings: Any = _UNSET
    apiServerAccessProfile: Any = _UNSET
    network: Any = _UNSET


class _Target(msgspec.Struct):
    id: Any = None
    name: Any = None
    type: Any = None
    location: Any = None
    tags: Any = None
    provisioningState: Any = None
    kind: Any = None
    properties: _TargetProps = _UNSET


_TARGET_DECODER = msgspec.json.Decoder(_Target)
# The objects below ``properties`` whose leaves ACCESS_PATHS names, besides publicNetworkAccess: _TargetProps holds
# each as decoded, and builder._access_settings walks them as it walks a generic body. Derived, and checked here:
# a rule reading a new object would otherwise lose its setting on the typed path instead of refusing the file.
_ACCESS_ROOTS = tuple(sorted({path.split(".", 1)[0] for path in ACCESS_PATHS if "." in path}))
if missing := [root for root in _ACCESS_ROOTS if root not in _TargetProps.__struct_fields__]:
    raise ImportError(f"typed target decoder: add {missing} to _TargetProps (public-access rules read them)")

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "privateEndpoints": msgspec.json.Decoder(_Endpoints),
    "networkInterfaces": msgspec.json.Decoder(_Nics),
    "privateDnsZoneGroups": msgspec.json.Decoder(_ZoneGroups),
    "virtualNetworks": msgspec.json.Decoder(_Vnets),
}
# The list reads decoded here: the plan's kind -> how the list's path (lower case) ends. A NIC read by id has the
# same kind but is one resource, not a list.
TYPED_LISTS = {"privateEndpoints": "/providers/microsoft.network/privateendpoints",
               "networkInterfaces": "/providers/microsoft.network/networkinterfaces",
               "privateDnsZoneGroups": "/privatednszonegroups",
               "virtualNetworks": "/providers/microsoft.network/virtualnetworks"}


def decode_unit(kind: str, data: bytes) -> ListUnit | Child | None:
    """The unit :func:`~plmon.monitor.collect.builder.list_unit` (or, for a child list,
    :func:`~plmon.monitor.collect.builder.parse_child`) gives for the list in ``data``, or None when the typed
    decoder refuses the file (then it must be decoded and parsed the generic way)."""
    if b"\\u" in data:
        return None
    if not data.isascii():
        try:   # msgspec checks UTF-8 only in the fields it keeps; the generic way refuses bad bytes anywhere
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        body = _DECODERS[kind].decode(data)
        if kind == "privateEndpoints":
            return _endpoints(body.value)
        if kind == "networkInterfaces":
            return _nics(body.value)
        if kind == "virtualNetworks":
            return _vnets(body.value)
        return _zone_groups(body.value)
    except Exception:  # refused (msgspec.DecodeError, or anything a record met): the generic way decides
        return None


def decode_target(data: bytes) -> TargetUnit | None:
    """The unit :func:`~plmon.monitor.collect.builder.parse_target` gives for the target read by id in ``data``, or
    None when the typed decoder refuses the file (then it must be decoded and parsed the generic way).

    At 100k resources a scan reads 27k targets by id, one small file each; the generic way decoded every field of
    each into dicts and walked them through the builder's accessors. A target the generic way would record as
    unreadable (no id, ``"properties": null``, a connection that is no object) is refused, so the generic way
    records it; so is a number of 19 digits or more, which the generic way reads exactly (public access keeps its
    raw value)."""
    if b"\\u" in data or has_long_number(data):
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return TargetUnit(_target(_TARGET_DECODER.decode(data)))
    except Exception:  # refused (msgspec.DecodeError, or anything a record met): the generic way decides
        return None


# --- the parser's accessors, on decoded values --------------------------------------------------------------------

_s, _e, _b = text_value, word_value, flag_value  # the builder's: one reading of a value for both ways


def _ref(r: _Ref | None) -> ArmId | None:
    rid = _s(r.id) if r is not None else None
    return parse_id(rid) if rid else None


def _refs(items: list[_Ref] | None) -> tuple[ArmId, ...]:
    return tuple(parse_id(i.id) for i in items or () if _s(i.id))


def _strs(values: Any) -> tuple[str, ...]:
    return tuple(v for v in values if type(v) is str and v)


def _base(item: _Endpoint | _Nic | _Vnet | _Subnet, props_state: Any, fallback_type: str) -> dict[str, Any]:
    raw = item.id
    if type(raw) is not str or not raw.strip():
        raise ValueError("blank id")  # the parser makes it a gap: left to it
    rid = parse_id(raw)
    name = _s(item.name)
    return {
        "id": rid,
        "name": rid.name if name is None or name == rid.name else name,
        "type": _e(item.type) or fallback_type,
        "location": _e(item.location),
        "tags": _NO_TAGS if item.tags is None else _tags(item.tags),
        "provisioning_state": _e(props_state) or _e(item.provisioningState),
    }


# --- private endpoints ----------------------------------------------------------------------------------------------

def _connections(pe_id: ArmId, p: _EndpointProps) -> tuple[ConsumerConnection, ...]:
    out = []
    for array, manual, conns in (("privateLinkServiceConnections", False, p.privateLinkServiceConnections),
                                 ("manualPrivateLinkServiceConnections", True, p.manualPrivateLinkServiceConnections)):
        for i, c in enumerate(conns or ()):
            cp = c.properties if c.properties is not _UNSET else _ConnProps()
            state = cp.privateLinkServiceConnectionState or _State()
            raw_id = _s(c.id)
            name = _e(c.name) or (raw_id.rstrip("/").rsplit("/", 1)[-1] if raw_id else f"{array}[{i}]")
            target = _s(cp.privateLinkServiceId)
            out.append(_new_consumer_connection(
                id=parse_id(raw_id or f"{pe_id.raw}/{array}/{name}"), name=name, endpoint_id=pe_id, manual=manual,
                target_id=parse_id(target) if target else None,
                group_ids=_words(cp.groupIds or ()),
                status=_e(state.status), description=_s(state.description),
                actions_required=_e(state.actionsRequired) or _e(state.actionRequired),
                request_message=_s(cp.requestMessage),
            ))
    return tuple(out)


def _endpoints(items: list[_Endpoint]) -> ListUnit:
    """The endpoints' unit, :func:`_base` and the accessors written out inline: 35k endpoints at 100k resources."""
    parsed = []
    refs = []
    intern = sys.intern
    for item in items:
        p = item.properties if item.properties is not _UNSET else _EndpointProps()
        raw = item.id
        if not raw.strip():
            raise ValueError("blank id")  # the parser makes it a gap: left to it
        pe_id = parse_id(raw)
        name, type_, location, state = item.name, item.type, item.location, p.provisioningState
        if type(state) is not str or not state:
            state = item.provisioningState
        # The IPs in the parser's order; what is no text is dropped below, as the parser drops it.
        ips: list[Any] = [c.properties.privateIPAddress for c in p.ipConfigurations or () if c.properties is not _UNSET]
        dns = p.customDnsConfigs or ()
        for d in dns:
            ips.extend(d.ipAddresses or ())
        nic_ids = _refs(p.networkInterfaces)
        connections = _connections(pe_id, p)
        ip_addresses = tuple(dict.fromkeys([ip for ip in ips if type(ip) is str and ip]))
        record = _new_endpoint(
            id=pe_id, name=pe_id.name if type(name) is not str or not name or name == pe_id.name else name,
            type=intern(type_) if type(type_) is str and type_ else "Microsoft.Network/privateEndpoints",
            location=intern(location) if type(location) is str and location else None,
            tags=_NO_TAGS if item.tags is None else _tags(item.tags),
            provisioning_state=intern(state) if type(state) is str and state else None,
            subnet_id=_ref(p.subnet), connections=connections, ip_addresses=ip_addresses, nic_ids=nic_ids,
            custom_dns_fqdns=tuple([f for d in dns if type(f := d.fqdn) is str and f]), dns_zone_groups=None)
        parsed.append(_new_parsed((0, pe_id.key), record))  # its scope is its id's (scope_of)
        refs.append(_new_endpoint_refs(pe_id, bool(ip_addresses), nic_ids,
                                       tuple(c.target_id for c in connections if c.target_id is not None)))
    return unit_of("privateEndpoints", tuple(parsed), tuple(refs), frozenset())


# --- network interfaces -----------------------------------------------------------------------------------------

def _nics(items: list[_Nic]) -> ListUnit:
    """The NICs' unit, :func:`_base` and the accessors written out inline: 35k NICs at 100k resources."""
    parsed = []
    refs = []
    intern = sys.intern
    for item in items:
        p = item.properties if item.properties is not _UNSET else _NicProps()
        raw = item.id
        if not raw.strip():
            raise ValueError("blank id")  # the parser makes it a gap: left to it
        nic_id = parse_id(raw)
        configs = []
        for c in p.ipConfigurations or ():
            cid_raw = c.id
            if type(cid_raw) is not str or not cid_raw:
                continue
            cid = parse_id(cid_raw)
            cp = c.properties if c.properties is not _UNSET else _NicIpProps()
            name, ip, subnet = c.name, cp.privateIPAddress, cp.subnet
            subnet_raw = subnet.id if subnet is not None else None
            configs.append(_new_nic_ip_config(
                id=cid, name=("" if type(name) is not str or not name else cid.name if name == cid.name else name),
                private_ip=ip if type(ip) is str and ip else None,
                subnet_id=parse_id(subnet_raw) if type(subnet_raw) is str and subnet_raw else None,
                backend_pool_ids=_refs(cp.loadBalancerBackendAddressPools)))
        name, type_, location, state = item.name, item.type, item.location, p.provisioningState
        if type(state) is not str or not state:
            state = item.provisioningState
        pe_ref = p.privateEndpoint
        pe_raw = _s(pe_ref.id) if pe_ref is not None else None
        record = _new_nic(
            id=nic_id, name=nic_id.name if type(name) is not str or not name or name == nic_id.name else name,
            type=intern(type_) if type(type_) is str and type_ else "Microsoft.Network/networkInterfaces",
            location=intern(location) if type(location) is str and location else None,
            tags=_NO_TAGS if item.tags is None else _tags(item.tags),
            provisioning_state=intern(state) if type(state) is str and state else None,
            enable_ip_forwarding=bool(_b(p.enableIPForwarding)), ip_configs=tuple(configs),
            private_endpoint_id=parse_id(pe_raw) if pe_raw else None, virtual_machine_id=_ref(p.virtualMachine))
        parsed.append(_new_parsed((0, nic_id.key), record))
        # The '/provders/' typo repaired (matched ignoring case, where only "s" has a non-ASCII twin): rare, so
        # looked for first.
        refs.append((parse_id(repair_provider_typo(raw)).key if "rovde" in raw.lower() else nic_id.key,
                     parse_id(pe_raw).key if pe_raw else None))
    return unit_of("networkInterfaces", tuple(parsed), tuple(refs), frozenset(k for k, _ in refs if k))


# --- an endpoint's private DNS zone groups ------------------------------------------------------------------------

def _zone_groups(items: list[_ZoneGroup]) -> Child:
    groups: list[DnsZoneGroup] = []
    for g in items:
        raw = _s(g.id)
        if raw is None:
            continue  # the parser skips an item without an id
        p = g.properties if g.properties is not _UNSET else _ZoneGroupProps()
        configs = p.privateDnsZoneConfigs or ()
        zones = (_s(c.properties.privateDnsZoneId) if c.properties is not _UNSET else None for c in configs)
        zone_ids = tuple(parse_id(z) for z in zones if z)
        rid = parse_id(raw)
        groups.append(_new_zone_group(id=rid, name=_e(g.name) or rid.name, zone_ids=zone_ids,
                                      config_names=_words(_s(c.name) for c in configs)))
    return Child(tuple(groups))


# --- virtual networks and their subnets ---------------------------------------------------------------------------

def _subnet(item: _Subnet, vnet_id: ArmId) -> Subnet:
    p = item.properties if item.properties is not _UNSET else _SubnetProps()
    base = _base(item, p.provisioningState, "Microsoft.Network/virtualNetworks/subnets")
    prefixes = _strs([_s(p.addressPrefix), *(p.addressPrefixes or ())])
    return _new_subnet(
        **base, vnet_id=vnet_id, address_prefixes=tuple(dict.fromkeys(prefixes)),
        route_table_id=_ref(p.routeTable), nsg_id=_ref(p.networkSecurityGroup),
        private_endpoint_network_policies=_s(p.privateEndpointNetworkPolicies),
        private_link_service_network_policies=_s(p.privateLinkServiceNetworkPolicies),
        ip_configuration_ids=_refs(p.ipConfigurations), private_endpoint_ids=_refs(p.privateEndpoints))


def _peering(x: _Peering) -> Peering:
    rid = parse_id(x.id)
    p = x.properties if x.properties is not _UNSET else _PeeringProps()
    space = p.remoteAddressSpace
    return Peering(
        id=rid, name=_s(x.name) or rid.name, remote_vnet_id=_ref(p.remoteVirtualNetwork), state=_s(p.peeringState),
        allow_virtual_network_access=_b(p.allowVirtualNetworkAccess) is not False,
        allow_forwarded_traffic=bool(_b(p.allowForwardedTraffic)),
        remote_address_prefixes=_strs(space.addressPrefixes or () if space is not None else ()))


def _vnets(items: list[_Vnet]) -> ListUnit:
    parsed = []
    refs: list[tuple[str, str | None]] = []
    for item in items:
        p = item.properties if item.properties is not _UNSET else _VnetProps()
        base = _base(item, p.provisioningState, "Microsoft.Network/virtualNetworks")
        subnets = tuple(_subnet(sub, base["id"]) for sub in p.subnets or () if _s(sub.id))
        peerings = p.virtualNetworkPeerings or ()
        space, dhcp = p.addressSpace, p.dhcpOptions
        vnet = VirtualNetwork(
            **base, address_prefixes=_strs(space.addressPrefixes or () if space is not None else ()),
            subnet_ids=tuple(sub.id for sub in subnets), peerings=tuple(_peering(x) for x in peerings if _s(x.id)),
            dns_servers=_strs(dhcp.dnsServers or () if dhcp is not None else ()))
        parsed.append(_new_parsed((0, base["id"].key), (vnet, subnets)))
        for x in peerings:  # as the plan's lenient walk reads them: a peering without an id included
            remote = x.properties.remoteVirtualNetwork if x.properties is not _UNSET else None
            raw = _s(remote.id) if remote is not None else None
            if raw is not None:
                refs.append((raw, _s(item.name)))
    return unit_of("virtualNetworks", tuple(parsed), tuple(refs), frozenset())


# --- private-link targets read by id --------------------------------------------------------------------------------

def _provider_connections(owner: ArmId, conns: list[_PeConn] | None) -> tuple[ProviderConnection, ...]:
    """builder._provider_connections on decoded connections, its accessors written out inline (35k connections at
    100k resources)."""
    out = []
    intern = sys.intern
    for i, c in enumerate(conns or ()):
        cp = c.properties if c.properties is not _UNSET else _PeConnProps()
        state = cp.privateLinkServiceConnectionState or _State()
        name, cid, status, described = c.name, c.id, state.status, state.description
        name = intern(name) if type(name) is str and name else f"privateEndpointConnections[{i}]"
        conn_id = parse_id(cid) if type(cid) is str and cid.startswith("/") and "/" in cid.strip("/") else \
            parse_id(f"{owner.raw.rstrip('/')}/privateEndpointConnections/{name.rsplit('/', 1)[-1]}")
        pe = cp.privateEndpoint
        pe_raw = pe.id if pe is not None else None
        out.append(_new_provider_connection(
            id=conn_id, name=name, owner_id=owner,
            endpoint_id=parse_id(pe_raw) if type(pe_raw) is str and pe_raw else None,
            status=intern(status) if type(status) is str and status else None,
            description=described if type(described) is str and described else None,
            actions_required=_e(state.actionsRequired) or _e(state.actionRequired),
            provisioning_state=_e(cp.provisioningState), group_ids=_words(cp.groupIds or ())))
    return tuple(out)


def _target(body: _Target) -> Any:
    """builder._target on a decoded body."""
    raw = body.id
    if type(raw) is not str or not raw:
        raise ValueError("no id")  # the parser makes it a gap: left to it
    rid = parse_id(raw)
    p = body.properties if body.properties is not _UNSET else _TargetProps()
    name, pna = body.name, p.publicNetworkAccess
    acl = p.networkAcls or _Acl()
    rule_set = p.networkRuleSet or _Acl()
    acls = p.networkACLs or _Acl()
    rule_sets = p.networkRuleSets or _Acl()
    roots = {key: value for key in _ACCESS_ROOTS if (value := getattr(p, key)) is not _UNSET}
    return _new_target(
        id=rid, name=rid.name if type(name) is not str or not name or name == rid.name else name,
        type=_e(body.type) or rid.type or "unknown", location=_e(body.location),
        tags=_NO_TAGS if body.tags is None else _tags(body.tags),
        provisioning_state=_e(p.provisioningState) or _e(body.provisioningState),
        state=TargetState.READ, has_public_network_access=pna is not _UNSET,
        public_network_access=None if pna is _UNSET else sys.intern(pna) if type(pna) is str else pna,
        network_acls_default_action=_s(acl.defaultAction) or _s(rule_set.defaultAction) or _s(acls.defaultAction)
        or _s(rule_sets.defaultAction),
        kind=_s(body.kind), connections=_provider_connections(rid, p.privateEndpointConnections),
        access_settings=_access_settings(roots) if roots else ())
