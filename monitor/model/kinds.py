"""One table of the ARM resource kinds plmon reads, judges and watches.

Each row says how plmon reads a type (a per-subscription list of the collection plan, or by id as a
private-link target with an api-version), which of its child types change what the checks see, and how
its public network access is judged. The plan's lists (:data:`plmon.monitor.collect.plan.SUBSCRIPTION_LISTS`) and
their Resource Graph queries (:data:`plmon.monitor.collect.azure.resource_graph.QUERIES`), the by-id api-versions
(:data:`plmon.monitor.collect.azure.api_versions.TARGET_VERSIONS`),
the builder's access settings, relevance and re-reads
(:mod:`plmon.monitor.events.relevance`) and so ``plmon deploy event-filters`` all derive from it, so a type plmon
judges can never be one whose events Event Grid drops or the worker counts as irrelevant.

Each row also names the snapshot collections its items become (:attr:`Kind.records`). The checks declare which
collections they read (``@check(reads=...)``, :mod:`plmon.checks.registry`), so "which checks does a re-read of
this kind run again" (:func:`plmon.monitor.service.reevaluate.checks_for`) joins the two declarations, and "resources
evaluated" is the size of :data:`RECORDS`: neither is a list kept on the collection side.

The public-access rows (:class:`AccessRule`) are each sourced from the type's REST API spec: the spec file
and api-version are in the row, and live reads use that version, so ARM returns the shape the rule reads.
This module is pure data beside the snapshot model: collection imports it without importing checks, and
``plmon.checks.public_access`` imports it to judge (the judgement itself stays there).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACCESS_MODE", "ACCESS_PATHS", "ACCESS_RULES", "BOOLEAN", "KINDS", "PRIVATE_CLUSTER", "RECORDS", "STRING",
    "AccessRule", "Kind", "judged_types", "kind_of", "listed_providers",
]


# How a type says "public access": the judgement each AccessRule applies to its property.
STRING = "string"                    # Enabled / Disabled / SecuredByPerimeter (absent or null = allowed)
BOOLEAN = "boolean"                  # Automation: true or absent = allowed
ACCESS_MODE = "access-mode"          # Azure Monitor private link scopes: any access mode Open = allowed
PRIVATE_CLUSTER = "private-cluster"  # AKS: a cluster that is not a private cluster = allowed
_GENERIC_FIX = 'az resource update --ids "{{id}}" --set properties.{path}={value}'


@dataclass(frozen=True, slots=True)
class AccessRule:
    """How one ARM type spells public network access, where the REST spec says so, and how to close it.

    ``path`` is dotted below ``properties``; ``spec`` is the azure-rest-api-specs file (at ``api_version``)
    that defines it, with the enum ``values`` it lists, so that a reviewer can check each row against its
    source, and live reads ask for the version whose shape the rule reads.
    """

    type: str
    spec: str
    api_version: str
    values: tuple[str, ...] = ("Enabled", "Disabled")
    path: str = "publicNetworkAccess"
    how: str = STRING
    fix: str = ""
    # App Configuration: null means "public until a private endpoint exists", so null passes here.
    null_passes: bool = False
    # The spec's GET (or list) example beside ``spec`` that the tests model their payload on, where stored.
    example: str = ""
    # The scalar leaves below ``path`` the judgement reads, when ``path`` is an object (access modes).
    reads: tuple[str, ...] = ()

    @property
    def leaves(self) -> tuple[str, ...]:
        """Dotted paths below ``properties`` whose raw scalar values the snapshot keeps for this rule."""
        return tuple(f"{self.path}.{r}" for r in self.reads) or (self.path,)

    @property
    def remediation(self) -> str:
        """The az command that closes public access ({id} left to fill in)."""
        return self.fix or _GENERIC_FIX.format(path=self.path, value="Disabled")


def _rm(folder: str) -> str:
    return f"specification/{folder}"


# One row per private-link target type (checks.md "Public network access"): each sourced from the spec file
# named in it, at the api-version plmon reads the type with. Keys are lower-case types.
_RULES: tuple[AccessRule, ...] = (
    AccessRule("Microsoft.Storage/storageAccounts",
               _rm("storage/resource-manager/Microsoft.Storage/stable/2023-05-01/storage.json"), "2023-05-01",
               ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az storage account update --ids "{id}" --public-network-access Disabled',
               example="examples/StorageAccountGetProperties.json"),
    AccessRule("Microsoft.KeyVault/vaults",
               _rm("keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01/keyvault.json"), "2023-07-01",
               fix='az keyvault update --ids "{id}" --public-network-access Disabled',
               example="examples/getVault.json"),
    AccessRule("Microsoft.KeyVault/managedHSMs",
               _rm("keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01/managedHsm.json"), "2023-07-01",
               fix='az keyvault update-hsm --ids "{id}" --public-network-access Disabled',
               example="examples/ManagedHsm_Get.json"),
    AccessRule("Microsoft.Sql/servers",
               _rm("sql/resource-manager/Microsoft.Sql/stable/2021-11-01/Servers.json"), "2021-11-01",
               fix='az sql server update --ids "{id}" --enable-public-network false',
               example="examples/ServerGet.json"),
    AccessRule("Microsoft.DocumentDB/databaseAccounts",
               _rm("cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2024-05-15/cosmos-db.json"), "2024-05-15",
               ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az cosmosdb update --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.ContainerRegistry/registries",
               _rm("containerregistry/resource-manager/Microsoft.ContainerRegistry/stable/2023-07-01/"
                   "containerregistry.json"), "2023-07-01",
               fix='az acr update --ids "{id}" --public-network-enabled false',
               example="examples/RegistryGet.json"),
    AccessRule("Microsoft.CognitiveServices/accounts",
               _rm("cognitiveservices/resource-manager/Microsoft.CognitiveServices/stable/2023-05-01/"
                   "cognitiveservices.json"), "2023-05-01",
               example="examples/GetAccount.json"),
    AccessRule("Microsoft.EventHub/namespaces",
               _rm("eventhub/resource-manager/Microsoft.EventHub/stable/2024-01-01/namespaces.json"), "2024-01-01",
               ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az eventhubs namespace update --ids "{id}" --public-network-access Disabled',
               example="examples/NameSpaces/EHNameSpaceCreate.json"),
    AccessRule("Microsoft.ServiceBus/namespaces",
               _rm("servicebus/resource-manager/Microsoft.ServiceBus/stable/2021-11-01/namespace-preview.json"),
               "2021-11-01", ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az servicebus namespace update --ids "{id}" --public-network-access Disabled',
               example="examples/NameSpaces/SBNameSpaceList.json"),
    AccessRule("Microsoft.AppConfiguration/configurationStores",
               _rm("appconfiguration/resource-manager/Microsoft.AppConfiguration/stable/2023-03-01/"
                   "appconfiguration.json"), "2023-03-01",
               fix='az appconfig update --ids "{id}" --enable-public-network false', null_passes=True,
               example="examples/ConfigurationStoresGet.json"),
    # Web apps: a free string, "Enabled", "Disabled" or empty (the spec's description; empty = allowed).
    AccessRule("Microsoft.Web/sites",
               _rm("web/resource-manager/Microsoft.Web/stable/2023-12-01/WebApps.json"), "2023-12-01",
               ("Enabled", "Disabled", ""),
               example="examples/GetWebApp.json"),
    AccessRule("Microsoft.Web/sites/slots",
               _rm("web/resource-manager/Microsoft.Web/stable/2023-12-01/WebApps.json"), "2023-12-01",
               ("Enabled", "Disabled", "")),
    AccessRule("Microsoft.Automation/automationAccounts",
               _rm("automation/resource-manager/Microsoft.Automation/stable/2023-11-01/account.json"), "2023-11-01",
               ("true", "false"), how=BOOLEAN,
               fix='az resource update --ids "{id}" --set properties.publicNetworkAccess=false',
               example="examples/getAutomationAccount.json"),
    # Flexible servers keep it under properties.network.
    AccessRule("Microsoft.DBforPostgreSQL/flexibleServers",
               _rm("postgresql/resource-manager/Microsoft.DBforPostgreSQL/stable/2022-12-01/FlexibleServers.json"),
               "2022-12-01", path="network.publicNetworkAccess",
               fix='az postgres flexible-server update --ids "{id}" --public-access Disabled',
               example="examples/ServerGet.json"),
    AccessRule("Microsoft.DBforMySQL/flexibleServers",
               _rm("mysql/resource-manager/Microsoft.DBforMySQL/FlexibleServers/stable/2023-12-30/"
                   "FlexibleServers.json"), "2023-12-30", path="network.publicNetworkAccess",
               fix='az mysql flexible-server update --ids "{id}" --public-access Disabled',
               example="examples/ServerGet.json"),
    AccessRule("Microsoft.DBforPostgreSQL/servers",
               _rm("postgresql/resource-manager/Microsoft.DBforPostgreSQL/stable/2017-12-01/postgresql.json"),
               "2017-12-01",
               example="examples/ServerGet.json"),
    AccessRule("Microsoft.DBforMySQL/servers",
               _rm("mysql/resource-manager/Microsoft.DBforMySQL/legacy/stable/2017-12-01/mysql.json"), "2017-12-01"),
    AccessRule("Microsoft.Cache/redis",
               _rm("redis/resource-manager/Microsoft.Cache/stable/2023-08-01/redis.json"), "2023-08-01",
               example="examples/RedisCacheGet.json"),
    AccessRule("Microsoft.Search/searchServices",
               _rm("search/resource-manager/Microsoft.Search/stable/2023-11-01/search.json"), "2023-11-01",
               ("enabled", "disabled"),
               fix='az resource update --ids "{id}" --set properties.publicNetworkAccess=disabled',
               example="examples/SearchListServicesBySubscription.json"),
    AccessRule("Microsoft.SignalRService/signalR",
               _rm("signalr/resource-manager/Microsoft.SignalRService/stable/2023-02-01/signalr.json"), "2023-02-01",
               example="examples/SignalR_Get.json"),
    AccessRule("Microsoft.SignalRService/webPubSub",
               _rm("webpubsub/resource-manager/Microsoft.SignalRService/stable/2023-02-01/webpubsub.json"),
               "2023-02-01"),
    AccessRule("Microsoft.EventGrid/topics",
               _rm("eventgrid/resource-manager/Microsoft.EventGrid/stable/2022-06-15/EventGrid.json"), "2022-06-15",
               example="examples/Topics_Get.json"),
    AccessRule("Microsoft.EventGrid/domains",
               _rm("eventgrid/resource-manager/Microsoft.EventGrid/stable/2022-06-15/EventGrid.json"), "2022-06-15"),
    AccessRule("Microsoft.MachineLearningServices/workspaces",
               _rm("machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2024-04-01/"
                   "workspaceRP.json"), "2024-04-01",
               example="examples/Workspace/get.json"),
    AccessRule("Microsoft.DataFactory/factories",
               _rm("datafactory/resource-manager/Microsoft.DataFactory/stable/2018-06-01/datafactory.json"),
               "2018-06-01",
               example="examples/Factories_Get.json"),
    AccessRule("Microsoft.Synapse/workspaces",
               _rm("synapse/resource-manager/Microsoft.Synapse/stable/2021-06-01/workspace.json"), "2021-06-01",
               example="examples/GetWorkspace.json"),
    AccessRule("Microsoft.Batch/batchAccounts",
               _rm("batch/resource-manager/Microsoft.Batch/stable/2024-02-01/BatchManagement.json"), "2024-02-01",
               example="examples/BatchAccountGet.json"),
    AccessRule("Microsoft.Devices/IotHubs",
               _rm("iothub/resource-manager/Microsoft.Devices/stable/2023-06-30/iothub.json"), "2023-06-30",
               example="examples/iothub_get.json"),
    AccessRule("Microsoft.RecoveryServices/vaults",
               _rm("recoveryservices/resource-manager/Microsoft.RecoveryServices/stable/2024-04-01/vaults.json"),
               "2024-04-01",
               example="examples/GETVault.json"),
    AccessRule("Microsoft.Kusto/clusters",
               _rm("azure-kusto/resource-manager/Microsoft.Kusto/stable/2023-08-15/kusto.json"), "2023-08-15",
               example="examples/KustoClustersList.json"),
    AccessRule("Microsoft.Databricks/workspaces",
               _rm("databricks/resource-manager/Microsoft.Databricks/stable/2024-05-01/databricks.json"),
               "2024-05-01",
               example="examples/WorkspaceGet.json"),
    AccessRule("Microsoft.ApiManagement/service",
               _rm("apimanagement/resource-manager/Microsoft.ApiManagement/stable/2022-08-01/apimdeployment.json"),
               "2022-08-01"),
    # Azure Monitor private link scopes: accessModeSettings.{query,ingestion}AccessMode, Open or PrivateOnly.
    AccessRule("Microsoft.Insights/privateLinkScopes",
               _rm("monitor/resource-manager/Microsoft.Insights/preview/2021-07-01-preview/"
                   "privateLinkScopes_API.json"), "2021-07-01-preview", ("Open", "PrivateOnly"),
               path="accessModeSettings", how=ACCESS_MODE, reads=("queryAccessMode", "ingestionAccessMode"),
               fix='az resource update --ids "{id}" --set properties.accessModeSettings.queryAccessMode=PrivateOnly '
                   'properties.accessModeSettings.ingestionAccessMode=PrivateOnly',
               example="examples/PrivateLinkScopesGet.json"),
    # AKS: the API server is public unless the cluster is a private cluster.
    AccessRule("Microsoft.ContainerService/managedClusters",
               _rm("containerservice/resource-manager/Microsoft.ContainerService/aks/stable/2024-02-01/"
                   "managedClusters.json"), "2024-02-01", ("true", "false"),
               path="apiServerAccessProfile.enablePrivateCluster", how=PRIVATE_CLUSTER,
               fix='az aks update --ids "{id}" --enable-private-cluster',
               example="examples/ManagedClustersGet.json"),
)
ACCESS_RULES: dict[str, AccessRule] = {r.type.lower(): r for r in _RULES}
# Every property path a rule reads: the snapshot builder keeps these raw (scalar) values on each Target.
ACCESS_PATHS: tuple[str, ...] = tuple(sorted({leaf for r in _RULES for leaf in r.leaves}))


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
    # The Resource Graph query (plmon.monitor.collect.azure.resource_graph) that answers a listed kind in bulk.
    graph: str | None = None
    # The Snapshot collections (field names) its items become, or complete: what a check declares it reads.
    records: tuple[str, ...] = ()
    # The provider side of Private Link: an endpoint's connection may name one as its target.
    provider: bool = False

    @property
    def key(self) -> str:
        return self.type.lower()

    @property
    def judged(self) -> bool:
        """Whether ``public-access.*`` judges this type (it has a row in the public-access table)."""
        return self.key in ACCESS_RULES


_NETWORK_ACLS = ("firewallRules", "virtualNetworkRules")

# Private Link plumbing, network paths and name resolution: read from per-subscription lists, or in bulk from
# Resource Graph, grouped so that a type the identity cannot read costs the coverage of few others; NICs, the
# largest table of an estate with many endpoints, page on their own.
_LISTED: tuple[Kind, ...] = (
    Kind("Microsoft.Network/privateEndpoints", "privateEndpoints", children=("*",), graph="endpoints",
         records=("private_endpoints",),
         why="endpoint, its DNS zone groups and connection"),
    Kind("Microsoft.Network/privateLinkServices", "privateLinkServices", children=("*",), graph="endpoints",
         records=("private_link_services",), provider=True,
         why="provider side: visibility, auto-approval, NAT"),
    Kind("Microsoft.Network/virtualNetworks", "virtualNetworks", children=("subnets", "virtualNetworkPeerings"),
         graph="networks", records=("virtual_networks", "subnets"),
         why="address space, DNS servers, subnet policies, peerings"),
    Kind("Microsoft.Network/routeTables", "routeTables", children=("routes",), graph="networks",
         records=("route_tables",),
         why="forced tunnelling around endpoints"),
    Kind("Microsoft.Network/networkSecurityGroups", "networkSecurityGroups", children=("securityRules",),
         graph="networks", records=("nsgs",),
         why="traffic to endpoints"),
    Kind("Microsoft.Network/azureFirewalls", "azureFirewalls", graph="appliances", records=("firewalls",),
         why="inspection on the path"),
    Kind("Microsoft.Network/firewallPolicies", "firewallPolicies", children=("ruleCollectionGroups",),
         graph="appliances", records=("firewall_policies",),
         why="firewall rules"),
    Kind("Microsoft.Network/loadBalancers", "loadBalancers", children=("*",), graph="appliances",
         records=("load_balancers",),
         why="Private Link Service frontends"),
    # A dynamic-IP endpoint's IP is only on its NIC (the builder merges it into the endpoint's ip_addresses); the
    # checks that read those IPs (the route family, through plmon.checks.paths) declare "nics" for it.
    Kind("Microsoft.Network/networkInterfaces", "networkInterfaces", children=("*",), graph="interfaces",
         records=("nics",),
         why="endpoint and service NICs"),
    Kind("Microsoft.Network/bastionHosts", "bastionHosts", graph="appliances", records=("bastion_hosts",),
         why="management access paths"),
    Kind("Microsoft.Network/privateDnsZones", "privateDnsZones", children=("virtualNetworkLinks", "A", "CNAME"),
         graph="dns", records=("dns_zones",),
         why="privatelink zones, their links and records"),
    Kind("Microsoft.Authorization/resourceManagementPrivateLinks", "resourceManagementPrivateLinks",
         children=("*",), graph="dns", records=("rmpls",), provider=True, why="private ARM management"),
    # Virtual WAN (checks-vwan.md): a hub's routing intent, route tables and connections are read per hub, below it.
    Kind("Microsoft.Network/virtualWans", "virtualWans", graph="appliances", records=("virtual_wans",),
         why="Virtual WAN: which hubs share private traffic prefixes and next hops"),
    Kind("Microsoft.Network/virtualHubs", "virtualHubs",
         children=("hubVirtualNetworkConnections", "routingIntent", "hubRouteTables"), graph="appliances",
         records=("virtual_hubs",),
         why="Virtual WAN hub: connected networks, routing intent (private next hop), private traffic prefixes"),
    Kind("Microsoft.Network/networkVirtualAppliances", "networkVirtualAppliances", graph="appliances",
         records=("nvas",),
         why="an NVA or SaaS private next hop of a hub (SNAT from its plmon-snat tag)"),
)

# Read per management group (not per subscription).
_GROUPED: tuple[Kind, ...] = (
    Kind("Microsoft.Authorization/privateLinkAssociations", records=("associations",),
         why="management group to RMPL association"),
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
    Kind(rule.type, api_version=rule.api_version, children=_TARGET_CHILDREN.get(key, ()), records=("targets",),
         provider=True, why="private-link target: public network access, network ACLs and its endpoint connections")
    for key, rule in ACCESS_RULES.items()
)

KINDS: tuple[Kind, ...] = (*_LISTED, *_GROUPED, *_TARGETS)
_BY_KEY: dict[str, Kind] = {k.key: k for k in KINDS}
# Every snapshot collection of resources, in table order: what "resources evaluated" counts, and the names a
# check may declare in ``@check(reads=...)``.
RECORDS: tuple[str, ...] = tuple(dict.fromkeys(r for k in KINDS for r in k.records))


def kind_of(type_: str) -> Kind | None:
    """The row of an ARM type (any casing), or None when plmon does not know the type."""
    return _BY_KEY.get(type_.lower())


def judged_types() -> tuple[str, ...]:
    """The types whose public access plmon judges, as the table spells them."""
    return tuple(k.type for k in KINDS if k.judged)


def listed_providers() -> dict[str, str]:
    """Provider types that per-subscription lists return (lower-case type -> the plan's list name).

    A connection to one of these whose subscription's list was read, and did not return it, is absent on
    evidence: the plan never reads it by id (:func:`plmon.monitor.collect.plan.targets_to_read`).
    """
    return {k.key: k.listed_as for k in KINDS if k.provider and k.listed_as}
