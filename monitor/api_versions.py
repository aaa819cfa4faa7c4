"""Which api-version each live read uses.

Reads routed to an SDK client use that SDK's own api-version (so a newer SDK moves them together).
Endpoint targets are arbitrary PaaS types; the table holds GA versions known to return
``publicNetworkAccess`` and ``privateEndpointConnections``; any other type is resolved once per
namespace from ``GET /subscriptions/<s>/providers/<Namespace>``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FALLBACK_TARGET_VERSION", "TARGET_VERSIONS", "newest_version"]

# type key (lower case, full nested type) -> api-version
TARGET_VERSIONS: dict[str, str] = {
    "microsoft.storage/storageaccounts": "2023-05-01",
    "microsoft.keyvault/vaults": "2023-07-01",
    "microsoft.keyvault/managedhsms": "2023-07-01",
    "microsoft.sql/servers": "2021-11-01",
    "microsoft.documentdb/databaseaccounts": "2024-05-15",
    "microsoft.containerregistry/registries": "2023-07-01",
    "microsoft.cognitiveservices/accounts": "2023-05-01",
    "microsoft.eventhub/namespaces": "2024-01-01",
    "microsoft.servicebus/namespaces": "2021-11-01",
    "microsoft.appconfiguration/configurationstores": "2023-03-01",
    "microsoft.web/sites": "2023-12-01",
    "microsoft.web/sites/slots": "2023-12-01",
    "microsoft.automation/automationaccounts": "2023-11-01",
    "microsoft.dbforpostgresql/flexibleservers": "2022-12-01",
    "microsoft.dbforpostgresql/servers": "2017-12-01",
    "microsoft.dbformysql/flexibleservers": "2023-12-30",
    "microsoft.dbformysql/servers": "2017-12-01",
    "microsoft.cache/redis": "2023-08-01",
    "microsoft.search/searchservices": "2023-11-01",
    "microsoft.signalrservice/signalr": "2023-02-01",
    "microsoft.eventgrid/topics": "2022-06-15",
    "microsoft.eventgrid/domains": "2022-06-15",
    "microsoft.machinelearningservices/workspaces": "2024-04-01",
    "microsoft.datafactory/factories": "2018-06-01",
    "microsoft.synapse/workspaces": "2021-06-01",
    "microsoft.insights/privatelinkscopes": "2021-07-01-preview",
    "microsoft.batch/batchaccounts": "2024-02-01",
    "microsoft.devices/iothubs": "2023-06-30",
    "microsoft.recoveryservices/vaults": "2024-04-01",
    "microsoft.kusto/clusters": "2023-08-15",
    "microsoft.databricks/workspaces": "2024-05-01",
    "microsoft.containerservice/managedclusters": "2024-02-01",
    "microsoft.apimanagement/service": "2022-08-01",
}

# Used when a namespace lookup fails: ARM then answers with a clear error that becomes a coverage gap.
FALLBACK_TARGET_VERSION = "2023-01-01"


def newest_version(provider: Any, type_path: str) -> str | None:
    """The newest GA api-version (else the newest preview) a provider body lists for a resource type."""
    types = provider.get("resourceTypes") if isinstance(provider, dict) else None
    for rt in types if isinstance(types, list) else []:
        if not isinstance(rt, dict) or str(rt.get("resourceType", "")).lower() != type_path.lower():
            continue
        versions = [v for v in rt.get("apiVersions") or [] if isinstance(v, str)]
        ga = sorted((v for v in versions if "preview" not in v.lower()), reverse=True)
        if ga or versions:
            return (ga or sorted(versions, reverse=True))[0]
    return None
