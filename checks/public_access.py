"""Public network access on private-link targets: an endpoint does not close the public door by itself.

Seed: "private endpoints ... do not necessarily restrict public network access". Each type spells the
setting its own way (checks.md table); the raw values go into the evidence so a reader can see exactly
what plmon judged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from checks.finding import Issue, Severity
from checks.links import connection_views
from checks.registry import check
from monitor.snapshot import Snapshot, Target, TargetState, lower

PE_OVERVIEW = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview"
SPECS = "https://github.com/Azure/azure-rest-api-specs/blob/main/"

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
    source and live reads (``monitor.kinds``) ask for the version whose shape the rule reads.
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
               fix='az storage account update --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.KeyVault/vaults",
               _rm("keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01/keyvault.json"), "2023-07-01",
               fix='az keyvault update --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.KeyVault/managedHSMs",
               _rm("keyvault/resource-manager/Microsoft.KeyVault/stable/2023-07-01/managedHsm.json"), "2023-07-01",
               fix='az keyvault update-hsm --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.Sql/servers",
               _rm("sql/resource-manager/Microsoft.Sql/stable/2021-11-01/Servers.json"), "2021-11-01",
               fix='az sql server update --ids "{id}" --enable-public-network false'),
    AccessRule("Microsoft.DocumentDB/databaseAccounts",
               _rm("cosmos-db/resource-manager/Microsoft.DocumentDB/stable/2024-05-15/cosmos-db.json"), "2024-05-15",
               ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az cosmosdb update --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.ContainerRegistry/registries",
               _rm("containerregistry/resource-manager/Microsoft.ContainerRegistry/stable/2023-07-01/"
                   "containerregistry.json"), "2023-07-01",
               fix='az acr update --ids "{id}" --public-network-enabled false'),
    AccessRule("Microsoft.CognitiveServices/accounts",
               _rm("cognitiveservices/resource-manager/Microsoft.CognitiveServices/stable/2023-05-01/"
                   "cognitiveservices.json"), "2023-05-01"),
    AccessRule("Microsoft.EventHub/namespaces",
               _rm("eventhub/resource-manager/Microsoft.EventHub/stable/2024-01-01/namespaces.json"), "2024-01-01",
               ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az eventhubs namespace update --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.ServiceBus/namespaces",
               _rm("servicebus/resource-manager/Microsoft.ServiceBus/stable/2021-11-01/namespace-preview.json"),
               "2021-11-01", ("Enabled", "Disabled", "SecuredByPerimeter"),
               fix='az servicebus namespace update --ids "{id}" --public-network-access Disabled'),
    AccessRule("Microsoft.AppConfiguration/configurationStores",
               _rm("appconfiguration/resource-manager/Microsoft.AppConfiguration/stable/2023-03-01/"
                   "appconfiguration.json"), "2023-03-01",
               fix='az appconfig update --ids "{id}" --enable-public-network false', null_passes=True),
    # Web apps: a free string, "Enabled", "Disabled" or empty (the spec's description; empty = allowed).
    AccessRule("Microsoft.Web/sites",
               _rm("web/resource-manager/Microsoft.Web/stable/2023-12-01/WebApps.json"), "2023-12-01",
               ("Enabled", "Disabled", "")),
    AccessRule("Microsoft.Web/sites/slots",
               _rm("web/resource-manager/Microsoft.Web/stable/2023-12-01/WebApps.json"), "2023-12-01",
               ("Enabled", "Disabled", "")),
    AccessRule("Microsoft.Automation/automationAccounts",
               _rm("automation/resource-manager/Microsoft.Automation/stable/2023-11-01/account.json"), "2023-11-01",
               ("true", "false"), how=BOOLEAN,
               fix='az resource update --ids "{id}" --set properties.publicNetworkAccess=false'),
    # Flexible servers keep it under properties.network.
    AccessRule("Microsoft.DBforPostgreSQL/flexibleServers",
               _rm("postgresql/resource-manager/Microsoft.DBforPostgreSQL/stable/2022-12-01/FlexibleServers.json"),
               "2022-12-01", path="network.publicNetworkAccess",
               fix='az postgres flexible-server update --ids "{id}" --public-access Disabled'),
    AccessRule("Microsoft.DBforMySQL/flexibleServers",
               _rm("mysql/resource-manager/Microsoft.DBforMySQL/FlexibleServers/stable/2023-12-30/"
                   "FlexibleServers.json"), "2023-12-30", path="network.publicNetworkAccess",
               fix='az mysql flexible-server update --ids "{id}" --public-access Disabled'),
    AccessRule("Microsoft.DBforPostgreSQL/servers",
               _rm("postgresql/resource-manager/Microsoft.DBforPostgreSQL/stable/2017-12-01/postgresql.json"),
               "2017-12-01"),
    AccessRule("Microsoft.DBforMySQL/servers",
               _rm("mysql/resource-manager/Microsoft.DBforMySQL/legacy/stable/2017-12-01/mysql.json"), "2017-12-01"),
    AccessRule("Microsoft.Cache/redis",
               _rm("redis/resource-manager/Microsoft.Cache/stable/2023-08-01/redis.json"), "2023-08-01"),
    AccessRule("Microsoft.Search/searchServices",
               _rm("search/resource-manager/Microsoft.Search/stable/2023-11-01/search.json"), "2023-11-01",
               ("enabled", "disabled"),
               fix='az resource update --ids "{id}" --set properties.publicNetworkAccess=disabled'),
    AccessRule("Microsoft.SignalRService/signalR",
               _rm("signalr/resource-manager/Microsoft.SignalRService/stable/2023-02-01/signalr.json"), "2023-02-01"),
    AccessRule("Microsoft.SignalRService/webPubSub",
               _rm("webpubsub/resource-manager/Microsoft.SignalRService/stable/2023-02-01/webpubsub.json"),
               "2023-02-01"),
    AccessRule("Microsoft.EventGrid/topics",
               _rm("eventgrid/resource-manager/Microsoft.EventGrid/stable/2022-06-15/EventGrid.json"), "2022-06-15"),
    AccessRule("Microsoft.EventGrid/domains",
               _rm("eventgrid/resource-manager/Microsoft.EventGrid/stable/2022-06-15/EventGrid.json"), "2022-06-15"),
    AccessRule("Microsoft.MachineLearningServices/workspaces",
               _rm("machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2024-04-01/"
                   "workspaceRP.json"), "2024-04-01"),
    AccessRule("Microsoft.DataFactory/factories",
               _rm("datafactory/resource-manager/Microsoft.DataFactory/stable/2018-06-01/datafactory.json"),
               "2018-06-01"),
    AccessRule("Microsoft.Synapse/workspaces",
               _rm("synapse/resource-manager/Microsoft.Synapse/stable/2021-06-01/workspace.json"), "2021-06-01"),
    AccessRule("Microsoft.Batch/batchAccounts",
               _rm("batch/resource-manager/Microsoft.Batch/stable/2024-02-01/BatchManagement.json"), "2024-02-01"),
    AccessRule("Microsoft.Devices/IotHubs",
               _rm("iothub/resource-manager/Microsoft.Devices/stable/2023-06-30/iothub.json"), "2023-06-30"),
    AccessRule("Microsoft.RecoveryServices/vaults",
               _rm("recoveryservices/resource-manager/Microsoft.RecoveryServices/stable/2024-04-01/vaults.json"),
               "2024-04-01"),
    AccessRule("Microsoft.Kusto/clusters",
               _rm("azure-kusto/resource-manager/Microsoft.Kusto/stable/2023-08-15/kusto.json"), "2023-08-15"),
    AccessRule("Microsoft.Databricks/workspaces",
               _rm("databricks/resource-manager/Microsoft.Databricks/stable/2024-05-01/databricks.json"),
               "2024-05-01"),
    AccessRule("Microsoft.ApiManagement/service",
               _rm("apimanagement/resource-manager/Microsoft.ApiManagement/stable/2022-08-01/apimdeployment.json"),
               "2022-08-01"),
    # Azure Monitor private link scopes: accessModeSettings.{query,ingestion}AccessMode, Open or PrivateOnly.
    AccessRule("Microsoft.Insights/privateLinkScopes",
               _rm("monitor/resource-manager/Microsoft.Insights/preview/2021-07-01-preview/"
                   "privateLinkScopes_API.json"), "2021-07-01-preview", ("Open", "PrivateOnly"),
               path="accessModeSettings", how=ACCESS_MODE,
               fix='az resource update --ids "{id}" --set properties.accessModeSettings.queryAccessMode=PrivateOnly '
                   'properties.accessModeSettings.ingestionAccessMode=PrivateOnly'),
    # AKS: the API server is public unless the cluster is a private cluster.
    AccessRule("Microsoft.ContainerService/managedClusters",
               _rm("containerservice/resource-manager/Microsoft.ContainerService/aks/stable/2024-02-01/"
                   "managedClusters.json"), "2024-02-01", ("true", "false"),
               path="apiServerAccessProfile.enablePrivateCluster", how=PRIVATE_CLUSTER,
               fix='az aks update --ids "{id}" --enable-private-cluster'),
)
RULES: dict[str, AccessRule] = {r.type.lower(): r for r in _RULES}
# Every property path a rule reads: the snapshot builder keeps these raw values on each Target.
ACCESS_PATHS: tuple[str, ...] = tuple(sorted({r.path for r in _RULES}))
# Types whose targets have no public-access notion of their own: not "unknown".
NOT_APPLICABLE = ("microsoft.network/privatelinkservices", "microsoft.authorization/resourcemanagementprivatelinks")
_ABSENT = object()


def _approved_targets(snap: Snapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for view in connection_views(snap):
        if view.status_key == "approved" and view.target_id is not None:
            out[view.target_id.key].append(view.endpoint_id.raw)
    return out


def _setting(t: Target, path: str) -> Any:
    """The raw value at ``properties.<path>`` as read, or ``_ABSENT`` when the body did not carry it."""
    if path == "publicNetworkAccess":
        return t.public_network_access if t.has_public_network_access else _ABSENT
    return dict(t.access_settings).get(path, _ABSENT)


def _shown(raw: Any) -> str:
    return "absent" if raw is _ABSENT else "null" if raw is None else repr(raw)


def public_access_allowed(t: Target) -> tuple[bool | None, str]:
    """(allowed, why) by the per-type table; None when the type is not in it."""
    rule = RULES.get(lower(t.type))
    if rule is None:
        return None, f"type {t.type} is not in plmon's public-access table"
    raw = _setting(t, rule.path)
    if rule.how == BOOLEAN:
        if raw is False or lower(raw) in ("false", "disabled"):
            return False, f"{rule.path} is false"
        return True, f"{rule.path} is " + ("absent (defaults to allowed)" if raw is _ABSENT or raw is None
                                             else repr(raw))
    if rule.how == ACCESS_MODE:
        return _access_mode(rule, raw)
    if rule.how == PRIVATE_CLUSTER:
        if raw is True:
            return False, f"{rule.path} is true: the API server has no public endpoint"
        return True, f"{rule.path} is {_shown(raw)}: not a private cluster, the API server is public"
    value = lower(raw)
    if value == "disabled":
        return False, f"{rule.path} is {raw}"
    if value == "securedbyperimeter":
        return False, (f"{rule.path} is SecuredByPerimeter: counted as not allowed, public access is "
                       "governed by the network security perimeter")
    if raw is None and rule.null_passes:
        return False, (f"{rule.path} is null: App Configuration is public only until a private endpoint "
                       "exists, and this store has an Approved one")
    if raw is None or raw is _ABSENT:
        return True, f"{rule.path} is absent or null (counts as allowed)"
    return True, f"{rule.path} is {raw!r}"


def _access_mode(rule: AccessRule, raw: Any) -> tuple[bool, str]:
    """Azure Monitor private link scopes: clients may reach the scope's resources publicly while any mode is Open."""
    modes = raw if isinstance(raw, dict) else {}
    open_ = [k for k in ("queryAccessMode", "ingestionAccessMode") if lower(modes.get(k)) != "privateonly"]
    if not open_:
        return False, f"{rule.path}: queryAccessMode and ingestionAccessMode are PrivateOnly"
    shown = ", ".join(f"{k} is {_shown(modes.get(k, _ABSENT))}" for k in open_)
    return True, f"{rule.path}: {shown} (anything but PrivateOnly counts as Open, allowed)"


def _evidence(t: Target, endpoints: list[str], why: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": t.type, "publicNetworkAccess": t.public_network_access,
                          "publicNetworkAccess_present": t.has_public_network_access, "judgement": why,
                          "approved_private_endpoints": sorted(set(endpoints))}
    rule = RULES.get(lower(t.type))
    if rule is not None and rule.path != "publicNetworkAccess":
        raw = _setting(t, rule.path)
        ev[f"properties.{rule.path}"] = None if raw is _ABSENT else raw
    if rule is not None:
        ev["rule_source"] = f"{rule.spec} (api-version {rule.api_version})"
    if t.network_acls_default_action is not None:
        ev["networkAcls.defaultAction"] = t.network_acls_default_action
    return ev


@check(
    id="public-access.enabled-with-private-endpoint",
    title="Resource with an approved private endpoint still allows public network access",
    severity=Severity.HIGH,
    rationale="A private endpoint adds a private path but does not close the public one: until public network "
              "access is disabled, the resource stays reachable from the internet and exfiltration controls "
              "built on the private path can be bypassed.",
    remediation="Disable public network access on the resource once clients use the private endpoint.",
    # CIS 3.7: CIS Microsoft Azure Foundations v2.1.0 "Ensure that 'Public Network Access' is 'Disabled' for
    # storage accounts" (the storage case of this check).
    references=(PE_OVERVIEW,), controls=("MCSB NS-2", "CIS 3.7"),
)
def enabled_with_private_endpoint(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    approved = _approved_targets(snap)
    for key in sorted(approved):
        t = snap.targets.get(key)
        if t is None or t.state != TargetState.READ:
            continue
        allowed, why = public_access_allowed(t)
        if allowed is not True:
            continue
        fix = RULES[lower(t.type)].remediation
        yield Issue(t.id, f"{t.name} has an Approved private endpoint but still allows public network access "
                    f"({why}).", _evidence(t, approved[key], why), fix.format(id=t.id.raw))


@check(
    id="public-access.unknown", title="Public network access of a private-link target cannot be judged",
    severity=Severity.INFO,
    rationale="A target plmon cannot read, or whose type it has no rule for, might still be public; it is "
              "listed so that a report never counts it as compliant.",
    remediation="Grant plmon read access to the resource, or check its public network access by hand.",
    references=(PE_OVERVIEW,), controls=("MCSB NS-2",),
)
def unknown(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    approved = _approved_targets(snap)
    for key in sorted(approved):
        t = snap.targets.get(key)
        if t is None or lower(t.type) in NOT_APPLICABLE or t.state == TargetState.NOT_FOUND:
            continue
        if t.state == TargetState.UNREADABLE:
            yield Issue(t.id, f"{t.name} has an Approved private endpoint but cannot be read "
                        f"({t.error_status} {t.error_code}): its public network access is unknown.",
                        {"type": t.type, "error_status": t.error_status, "error_code": t.error_code,
                         "approved_private_endpoints": sorted(set(approved[key]))},
                        f'az resource show --ids "{t.id.raw}" --query properties.publicNetworkAccess')
            continue
        allowed, why = public_access_allowed(t)
        if allowed is None:
            yield Issue(t.id, f"{t.name} ({t.type}) has an Approved private endpoint; plmon has no rule for "
                        "this type's public network access.", _evidence(t, approved[key], why),
                        f'az resource show --ids "{t.id.raw}" --query properties.publicNetworkAccess')
