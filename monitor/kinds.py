"""One table of the ARM resource kinds plmon reads, judges and watches.

Each row says how plmon reads a type (a per-subscription list of the collection plan, or by id as a
private-link target with an api-version), which of its child types change what the checks see, and
whether its public network access is judged. The plan's lists (:data:`monitor.plan.SUBSCRIPTION_LISTS`),
the by-id api-versions (:data:`monitor.api_versions.TARGET_VERSIONS`), relevance and re-reads
(:mod:`monitor.relevance`) and so ``plmon deploy event-filters`` all derive from it, so a type plmon
judges can never be one whose events Event Grid drops or the worker counts as irrelevant.

Which target types are judged, and the api-version each is read with, come from the public-access rules
(:data:`checks.public_access.RULES`): each rule is sourced from the type's REST API spec at that version,
so a live read returns the property shape the rule reads. The rules stay in ``checks/`` because checks
must not import collection code; this module (collection side) may import them.
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.public_access import RULES

__all__ = ["KINDS", "Kind", "judged_types", "kind_of"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One ARM type: how it is read, which children matter, whether its public access is judged."""

    type: str
    # The plan's name for the per-subscription list that returns it; None = read by id (or per group).
    listed_as: str | None = None
    # api-version of a by-id read (private-link targets); list reads use their SDK's own version.
    api_version: str | None = None
    # Child type paths below ``type`` ("subnets", "routes") whose writes matter; "*" = every child.
    children: tuple[str, ...] = ()
    why: str = ""

    @property
    def key(self) -> str:
        return self.type.lower()

    @property
    def judged(self) -> bool:
        """Whether ``public-access.*`` judges this type (it has a row in the public-access table)."""
        return self.key in RULES


_NETWORK_ACLS = ("firewallRules", "virtualNetworkRules")

# Private Link plumbing, network paths and name resolution: read from per-subscription lists.
_LISTED: tuple[Kind, ...] = (
    Kind("Microsoft.Network/privateEndpoints", "privateEndpoints", children=("*",),
         why="endpoint, its DNS zone groups and connection"),
    Kind("Microsoft.Network/privateLinkServices", "privateLinkServices", children=("*",),
         why="provider side: visibility, auto-approval, NAT"),
    Kind("Microsoft.Network/virtualNetworks", "virtualNetworks", children=("subnets", "virtualNetworkPeerings"),
         why="address space, DNS servers, subnet policies, peerings"),
    Kind("Microsoft.Network/routeTables", "routeTables", children=("routes",),
         why="forced tunnelling around endpoints"),
    Kind("Microsoft.Network/networkSecurityGroups", "networkSecurityGroups", children=("securityRules",),
         why="traffic to endpoints"),
    Kind("Microsoft.Network/azureFirewalls", "azureFirewalls", why="inspection on the path"),
    Kind("Microsoft.Network/firewallPolicies", "firewallPolicies", children=("ruleCollectionGroups",),
         why="firewall rules"),
    Kind("Microsoft.Network/loadBalancers", "loadBalancers", children=("*",), why="Private Link Service frontends"),
    Kind("Microsoft.Network/networkInterfaces", "networkInterfaces", children=("*",),
         why="endpoint and service NICs"),
    Kind("Microsoft.Network/bastionHosts", "bastionHosts", why="management access paths"),
    Kind("Microsoft.Network/privateDnsZones", "privateDnsZones", children=("virtualNetworkLinks", "A", "CNAME"),
         why="privatelink zones, their links and records"),
    Kind("Microsoft.Authorization/resourceManagementPrivateLinks", "resourceManagementPrivateLinks",
         children=("*",), why="private ARM management"),
)

# Read per management group (not per subscription).
_GROUPED: tuple[Kind, ...] = (
    Kind("Microsoft.Authorization/privateLinkAssociations", why="management group to RMPL association"),
)

# Child types of private-link targets whose writes change what the checks see (network ACLs).
_TARGET_CHILDREN: dict[str, tuple[str, ...]] = {
    "microsoft.sql/servers": _NETWORK_ACLS,
    "microsoft.eventhub/namespaces": ("networkRuleSets",),
    "microsoft.servicebus/namespaces": ("networkRuleSets",),
    "microsoft.dbforpostgresql/servers": _NETWORK_ACLS,
    "microsoft.dbforpostgresql/flexibleservers": ("firewallRules",),
    "microsoft.dbformysql/servers": _NETWORK_ACLS,
    "microsoft.dbformysql/flexibleservers": ("firewallRules",),
    "microsoft.cache/redis": ("firewallRules",),
}

# Private-link targets read by id: every type of the public-access table, at its rule's api-version.
_TARGETS: tuple[Kind, ...] = tuple(
    Kind(rule.type, api_version=rule.api_version, children=_TARGET_CHILDREN.get(key, ()),
         why="private-link target: public network access, network ACLs and its endpoint connections")
    for key, rule in RULES.items()
)

KINDS: tuple[Kind, ...] = (*_LISTED, *_GROUPED, *_TARGETS)
_BY_KEY: dict[str, Kind] = {k.key: k for k in KINDS}


def kind_of(type_: str) -> Kind | None:
    """The row of an ARM type (any casing), or None when plmon does not know the type."""
    return _BY_KEY.get(type_.lower())


def judged_types() -> tuple[str, ...]:
    """The types whose public access plmon judges, as the table spells them."""
    return tuple(k.type for k in KINDS if k.judged)
