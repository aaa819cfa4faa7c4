"""The snapshot: plmon's own typed, immutable inventory of a tenant at one moment.

Raw ARM JSON stops at :mod:`plmon.monitor.collect.builder`; checks, state, alerts and reports only ever see these
types. Every resource is keyed by its normalised ARM id (``ArmId.key``), so lookups are
case-insensitive by construction. Cross-references (endpoint -> subnet -> network, endpoint ->
target, provider connection <-> endpoint) are resolved once by the builder into the indexes at the
bottom of :class:`Snapshot`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.kinds import RECORDS

__all__ = [
    "INDEX_SOURCES",
    "Association",
    "BastionHost",
    "ConsumerConnection",
    "Coverage",
    "CoverageGap",
    "DnsZoneGroup",
    "Firewall",
    "FirewallPolicy",
    "FrontendIp",
    "HubConnection",
    "HubRoute",
    "HubRouteTable",
    "LoadBalancer",
    "NetworkVirtualAppliance",
    "Nic",
    "NicIpConfig",
    "Nsg",
    "NsgRule",
    "Peering",
    "PlsNatIpConfig",
    "PrivateDnsZone",
    "PrivateEndpoint",
    "PrivateLinkService",
    "ProviderConnection",
    "Resource",
    "Rmpl",
    "Route",
    "RouteTable",
    "RoutingPolicy",
    "Snapshot",
    "Subnet",
    "Subscription",
    "Target",
    "TargetState",
    "VirtualHub",
    "VirtualNetwork",
    "VirtualWan",
    "VnetLink",
    "lower",
]

def _frozen(d: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    """A read-only copy: the snapshot is immutable once built."""
    return MappingProxyType(dict(d or {}))


def lower(value: object) -> str:
    """Case-folded text of an enum-ish value; ARM spells ``Enabled`` and ``enabled``."""
    return value.lower() if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Resource:
    id: ArmId
    name: str
    type: str
    location: str | None = None
    tags: Mapping[str, str] = field(default_factory=_frozen)
    provisioning_state: str | None = None

    @property
    def key(self) -> str:
        return self.id.key

    def tag(self, name: str) -> str | None:
        """Tag lookup ignoring case of the tag name (Azure treats tag names case-insensitively)."""
        wanted = name.lower()
        for k, v in self.tags.items():
            if k.lower() == wanted:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    display_name: str | None
    state: str | None
    tenant_id: str | None


# --- Connections -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ConsumerConnection:
    """An entry of an endpoint's (manual)PrivateLinkServiceConnections: the consumer's view."""

    id: ArmId
    name: str
    endpoint_id: ArmId
    manual: bool  # classified by the array it sits in, never by its id
    target_id: ArmId | None
    group_ids: tuple[str, ...]
    status: str | None
    description: str | None
    actions_required: str | None
    request_message: str | None

    @property
    def approved(self) -> bool:
        return lower(self.status) == "approved"


@dataclass(frozen=True, slots=True)
class ProviderConnection:
    """A ``privateEndpointConnections`` entry on a target (PLS, PaaS resource, RMPL)."""

    id: ArmId
    name: str
    owner_id: ArmId
    endpoint_id: ArmId | None
    status: str | None
    description: str | None
    actions_required: str | None  # Storage spells it actionRequired; the builder reads both
    provisioning_state: str | None
    group_ids: tuple[str, ...] = ()

    @property
    def approved(self) -> bool:
        return lower(self.status) == "approved"


# --- Consumers -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DnsZoneGroup:
    id: ArmId
    name: str
    zone_ids: tuple[ArmId, ...]
    config_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PrivateEndpoint(Resource):
    subnet_id: ArmId | None = None
    connections: tuple[ConsumerConnection, ...] = ()
    ip_addresses: tuple[str, ...] = ()  # from ipConfigurations, customDnsConfigs and the NIC
    nic_ids: tuple[ArmId, ...] = ()
    custom_dns_fqdns: tuple[str, ...] = ()
    # None: the zone-group list was not read (coverage gap); () read and empty.
    dns_zone_groups: tuple[DnsZoneGroup, ...] | None = None


# --- Providers -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlsNatIpConfig:
    id: ArmId | None
    name: str
    subnet_id: ArmId | None
    private_ip: str | None


@dataclass(frozen=True, slots=True)
class PrivateLinkService(Resource):
    alias: str | None = None
    visibility: tuple[str, ...] = ()
    auto_approval: tuple[str, ...] = ()
    fqdns: tuple[str, ...] = ()
    enable_proxy_protocol: bool | None = None
    nat_ip_configs: tuple[PlsNatIpConfig, ...] = ()
    frontend_ids: tuple[ArmId, ...] = ()
    connections: tuple[ProviderConnection, ...] = ()


@dataclass(frozen=True, slots=True)
class Rmpl(Resource):
    connections: tuple[ProviderConnection, ...] = ()


@dataclass(frozen=True, slots=True)
class Association(Resource):
    scope: str | None = None
    private_link: ArmId | None = None
    public_network_access: str | None = None
    tenant_id: str | None = None
    listed_under: str | None = None  # the management group whose list returned it


class TargetState:
    READ = "read"
    NOT_FOUND = "not_found"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class Target(Resource):
    """A private-link target read by id (PaaS resource), or the record of why it could not be."""

    state: str = TargetState.READ
    error_code: str | None = None
    error_status: int | None = None
    # (present, value): public network access is judged on the raw value, which may be a bool.
    has_public_network_access: bool = False
    public_network_access: Any = None
    network_acls_default_action: str | None = None
    kind: str | None = None
    connections: tuple[ProviderConnection, ...] = ()
    # (path below properties, raw scalar value) for the other settings the public-access table reads
    # (plmon.monitor.model.kinds.ACCESS_PATHS), only those the body carried.
    access_settings: tuple[tuple[str, Any], ...] = ()


# --- Networks --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Peering:
    id: ArmId
    name: str
    remote_vnet_id: ArmId | None
    state: str | None
    allow_virtual_network_access: bool
    allow_forwarded_traffic: bool
    remote_address_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Subnet(Resource):
    vnet_id: ArmId | None = None
    address_prefixes: tuple[str, ...] = ()
    route_table_id: ArmId | None = None
    nsg_id: ArmId | None = None
    # Raw values (None when absent); helpers below apply Azure's defaults.
    private_endpoint_network_policies: str | None = None
    private_link_service_network_policies: str | None = None
    ip_configuration_ids: tuple[ArmId, ...] = ()
    private_endpoint_ids: tuple[ArmId, ...] = ()

    @property
    def pe_policies(self) -> str:
        """Effective ``privateEndpointNetworkPolicies``: absent means Disabled (checks.md)."""
        return self.private_endpoint_network_policies or "Disabled"


@dataclass(frozen=True, slots=True)
class VirtualNetwork(Resource):
    address_prefixes: tuple[str, ...] = ()
    subnet_ids: tuple[ArmId, ...] = ()
    peerings: tuple[Peering, ...] = ()
    dns_servers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    address_prefix: str | None
    next_hop_type: str | None
    next_hop_ip: str | None
    id: ArmId | None = None


@dataclass(frozen=True, slots=True)
class RouteTable(Resource):
    routes: tuple[Route, ...] = ()
    subnet_ids: tuple[ArmId, ...] = ()
    disable_bgp_route_propagation: bool | None = None


@dataclass(frozen=True, slots=True)
class NsgRule:
    name: str
    direction: str | None
    access: str | None
    priority: int | None
    protocol: str | None
    source_address_prefix: str | None
    source_address_prefixes: tuple[str, ...]
    destination_address_prefix: str | None
    destination_address_prefixes: tuple[str, ...]
    source_port_range: str | None
    source_port_ranges: tuple[str, ...]
    destination_port_range: str | None
    destination_port_ranges: tuple[str, ...]
    default: bool = False


@dataclass(frozen=True, slots=True)
class Nsg(Resource):
    rules: tuple[NsgRule, ...] = ()
    subnet_ids: tuple[ArmId, ...] = ()


@dataclass(frozen=True, slots=True)
class Firewall(Resource):
    private_ips: tuple[str, ...] = ()
    subnet_ids: tuple[ArmId, ...] = ()
    firewall_policy_id: ArmId | None = None
    additional_properties: Mapping[str, str] = field(default_factory=_frozen)
    # A secured hub's firewall (sku AZFW_Hub): its hub; its private IP is hubIPAddresses.privateIPAddress (in
    # ``private_ips``: an AZFW_Hub firewall has no ipConfigurations, REST spec example AzureFirewallPutInHub).
    hub_id: ArmId | None = None
    sku_name: str | None = None


@dataclass(frozen=True, slots=True)
class FirewallPolicy(Resource):
    snat_private_ranges: tuple[str, ...] | None = None
    snat_auto_learn: str | None = None


@dataclass(frozen=True, slots=True)
class FrontendIp:
    id: ArmId
    name: str
    private_ip: str | None
    subnet_id: ArmId | None
    public_ip_id: ArmId | None


@dataclass(frozen=True, slots=True)
class LoadBalancer(Resource):
    frontends: tuple[FrontendIp, ...] = ()
    # backend pool id -> NIC ip configuration ids in it
    backend_pools: Mapping[str, tuple[ArmId, ...]] = field(default_factory=_frozen)
    # frontend key -> backend pool keys reached through load balancing rules
    rule_pools: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)


@dataclass(frozen=True, slots=True)
class NicIpConfig:
    id: ArmId
    name: str
    private_ip: str | None
    subnet_id: ArmId | None
    backend_pool_ids: tuple[ArmId, ...] = ()


@dataclass(frozen=True, slots=True)
class Nic(Resource):
    enable_ip_forwarding: bool = False
    ip_configs: tuple[NicIpConfig, ...] = ()
    private_endpoint_id: ArmId | None = None
    virtual_machine_id: ArmId | None = None


@dataclass(frozen=True, slots=True)
class BastionHost(Resource):
    subnet_ids: tuple[ArmId, ...] = ()


@dataclass(frozen=True, slots=True)
class VnetLink:
    id: ArmId
    name: str
    vnet_id: ArmId | None
    registration_enabled: bool = False


@dataclass(frozen=True, slots=True)
class PrivateDnsZone(Resource):
    # None: the child list was not read (coverage gap)
    vnet_links: tuple[VnetLink, ...] | None = None
    cname_records: Mapping[str, str] | None = None  # record-set name (lower) -> cname


# --- Virtual WAN ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class VirtualWan(Resource):
    hub_ids: tuple[ArmId, ...] = ()
    wan_type: str | None = None


@dataclass(frozen=True, slots=True)
class HubConnection:
    """A ``<hub>/hubVirtualNetworkConnections`` entry: a network connected to the hub, and its routing config."""

    id: ArmId
    name: str
    remote_vnet_id: ArmId | None
    associated_route_table_id: ArmId | None = None
    propagated_route_table_ids: tuple[ArmId, ...] = ()
    propagated_labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """One routing policy of a hub's routing intent: which traffic (``PrivateTraffic``, ``Internet``) goes where."""

    name: str
    destinations: tuple[str, ...]
    next_hop: ArmId | None

    @property
    def private(self) -> bool:
        return any(d.lower() == "privatetraffic" for d in self.destinations)


@dataclass(frozen=True, slots=True)
class HubRoute:
    name: str
    destination_type: str | None
    destinations: tuple[str, ...]
    next_hop_type: str | None
    next_hop: str | None   # a resource id (ResourceId) or an IP, as ARM writes it


@dataclass(frozen=True, slots=True)
class HubRouteTable:
    id: ArmId
    name: str
    routes: tuple[HubRoute, ...] = ()


@dataclass(frozen=True, slots=True)
class VirtualHub(Resource):
    wan_id: ArmId | None = None
    address_prefix: str | None = None
    firewall_id: ArmId | None = None
    # The child lists, each None when it was not read (a coverage gap): what the vwan rules may not pass on.
    connections: tuple[HubConnection, ...] | None = None
    routing_policies: tuple[RoutingPolicy, ...] | None = None   # every policy of every routingIntent entry
    route_tables: tuple[HubRouteTable, ...] | None = None


@dataclass(frozen=True, slots=True)
class NetworkVirtualAppliance(Resource):
    """An NVA or SaaS resource deployed in a hub (``Microsoft.Network/networkVirtualAppliances``): no NIC of the
    customer's holds it, so its SNAT is known only from its ``plmon-snat`` tag."""

    hub_id: ArmId | None = None


# --- Coverage --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CoverageGap:
    scope: str
    type: str
    code: str
    status: int | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "type": self.type, "code": self.code}


@dataclass(frozen=True, slots=True)
class Coverage:
    subscriptions_scanned: int = 0
    gaps: tuple[CoverageGap, ...] = ()
    # (normalised scope, lower-case type) of every list that was read completely
    read: frozenset[tuple[str, str]] = frozenset()
    # True when the collection read only some of the tenant's subscriptions (--subscription): what it did not
    # read is out of scope, so "absent from every list" cannot be claimed.
    scoped: bool = False

    def covers(self, scope_key: str, type_key: str) -> bool:
        return (scope_key, type_key.lower()) in self.read

    def gap_for(self, resource_key: str, type_key: str | None = None) -> CoverageGap | None:
        """The gap whose scope contains ``resource_key`` (and matches the type when given)."""
        for gap in self.gaps:
            scope = gap.scope.lower().rstrip("/")
            inside = resource_key == scope or resource_key.startswith(scope + "/")
            if inside and (type_key is None or gap.type.lower() in ("*", type_key.lower())):
                return gap
        return None


# --- The snapshot ----------------------------------------------------------------------------------

# The indexes the builder resolves, and the collections each is resolved from: a check that reads an index
# reads those collections (``@check(reads=...)`` names collections, :data:`plmon.monitor.model.kinds.RECORDS`).
INDEX_SOURCES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "provider_connections_by_endpoint": ("private_link_services", "rmpls", "targets"),
    "endpoints_by_subnet": ("private_endpoints",),
})


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    tenant_id: str | None
    cloud: str = "AzureCloud"
    subscriptions: Mapping[str, Subscription] = field(default_factory=_frozen)
    management_groups: tuple[str, ...] = ()
    private_endpoints: Mapping[str, PrivateEndpoint] = field(default_factory=_frozen)
    private_link_services: Mapping[str, PrivateLinkService] = field(default_factory=_frozen)
    rmpls: Mapping[str, Rmpl] = field(default_factory=_frozen)
    associations: Mapping[str, Association] = field(default_factory=_frozen)
    targets: Mapping[str, Target] = field(default_factory=_frozen)
    virtual_networks: Mapping[str, VirtualNetwork] = field(default_factory=_frozen)
    subnets: Mapping[str, Subnet] = field(default_factory=_frozen)
    route_tables: Mapping[str, RouteTable] = field(default_factory=_frozen)
    nsgs: Mapping[str, Nsg] = field(default_factory=_frozen)
    firewalls: Mapping[str, Firewall] = field(default_factory=_frozen)
    firewall_policies: Mapping[str, FirewallPolicy] = field(default_factory=_frozen)
    load_balancers: Mapping[str, LoadBalancer] = field(default_factory=_frozen)
    nics: Mapping[str, Nic] = field(default_factory=_frozen)
    bastion_hosts: Mapping[str, BastionHost] = field(default_factory=_frozen)
    dns_zones: Mapping[str, PrivateDnsZone] = field(default_factory=_frozen)
    virtual_wans: Mapping[str, VirtualWan] = field(default_factory=_frozen)
    virtual_hubs: Mapping[str, VirtualHub] = field(default_factory=_frozen)
    nvas: Mapping[str, NetworkVirtualAppliance] = field(default_factory=_frozen)
    coverage: Coverage = field(default_factory=Coverage)
    # First time the monitor saw each (connection key, lower status): from the state store, or empty.
    observations: Mapping[tuple[str, str], datetime] = field(default_factory=_frozen)
    # --- indexes the builder resolves once ---
    # endpoint key -> provider-side connections that name it
    provider_connections_by_endpoint: Mapping[str, tuple[ProviderConnection, ...]] = \
        field(default_factory=_frozen)
    # subnet key -> endpoint keys whose properties.subnet.id names it
    endpoints_by_subnet: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)

    # --- lookups used by many checks ---
    def subnet_of(self, endpoint: PrivateEndpoint) -> Subnet | None:
        return self.subnets.get(endpoint.subnet_id.key) if endpoint.subnet_id else None

    def vnet_of_subnet(self, subnet: Subnet) -> VirtualNetwork | None:
        return self.virtual_networks.get(subnet.vnet_id.key) if subnet.vnet_id else None

    def records(self, name: str) -> Mapping[str, Resource]:
        """The collection of resources called ``name`` (one of :data:`plmon.monitor.model.kinds.RECORDS`)."""
        if name not in RECORDS:
            raise KeyError(f"not a snapshot collection of the kinds table: {name!r}")
        collection: Mapping[str, Resource] = getattr(self, name)
        return collection

    def resources_evaluated(self) -> int:
        """Every resource read: the collections the kinds table names, so a new kind is counted once it has a row."""
        return sum(len(self.records(name)) for name in RECORDS)
