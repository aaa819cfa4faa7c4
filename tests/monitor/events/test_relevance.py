"""The relevance table: which operations matter, what to re-read, and the Event Grid filters made from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from plmon.monitor.events.parse import ResourceEvent, parse_body
from plmon.monitor.events.relevance import (
    MAX_FILTER_VALUES,
    WATCHED,
    is_relevant,
    is_relevant_operation,
    operation_name_contains_filters,
    operation_name_filters,
    resource_to_reread,
)
from plmon.monitor.model.arm_id import parse_id

FIXTURES = Path(__file__).parents[2] / "fixtures" / "eventgrid"
RG = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
VNET = f"{RG}/Microsoft.Network/virtualNetworks/v"
ACCOUNT = f"{RG}/Microsoft.Storage/storageAccounts/sa"
ZONE = f"{RG}/Microsoft.Network/privateDnsZones/privatelink.blob.core.windows.net"
MG = "/providers/Microsoft.Management/managementGroups/mg"


def event(operation: str, uri: str) -> ResourceEvent:
    return ResourceEvent(
        id="e", event_type="Microsoft.Resources.ResourceWriteSuccess", subject=parse_id(uri),
        time=datetime(2024, 5, 1, tzinfo=UTC), source="", schema="eventgrid", operation_name=operation,
        resource=parse_id(uri),
    )


# (operation name, resource uri, relevant?, uri of the resource to re-read)
CASES: list[tuple[str, str, bool, str]] = [
    # Private endpoints and their DNS zone groups.
    ("Microsoft.Network/privateEndpoints/write", f"{RG}/Microsoft.Network/privateEndpoints/pe", True,
     f"{RG}/Microsoft.Network/privateEndpoints/pe"),
    ("Microsoft.Network/privateEndpoints/privateDnsZoneGroups/write",
     f"{RG}/Microsoft.Network/privateEndpoints/pe/privateDnsZoneGroups/default", True,
     f"{RG}/Microsoft.Network/privateEndpoints/pe"),
    # Connections on any provider re-read the resource that holds them.
    ("Microsoft.Storage/storageAccounts/privateEndpointConnections/write",
     f"{ACCOUNT}/privateEndpointConnections/sa.pe1", True, ACCOUNT),
    ("microsoft.storage/storageaccounts/privateendpointconnections/delete",
     f"{ACCOUNT}/privateEndpointConnections/sa.pe1", True, ACCOUNT),
    ("Microsoft.Storage/storageAccounts/privateEndpointConnectionProxies/write",
     f"{ACCOUNT}/privateEndpointConnectionProxies/p", True, ACCOUNT),
    ("Microsoft.Storage/storageAccounts/privateEndpointConnectionProxies/validate/action",
     f"{ACCOUNT}/privateEndpointConnectionProxies/p", True, ACCOUNT),
    ("Microsoft.Storage/storageAccounts/privateEndpointConnectionsApproval/action", ACCOUNT, True, ACCOUNT),
    ("Microsoft.Contoso/widgets/privateEndpointConnections/write",
     f"{RG}/Microsoft.Contoso/widgets/w/privateEndpointConnections/c", True,
     f"{RG}/Microsoft.Contoso/widgets/w"),
    ("Microsoft.Web/sites/slots/privateEndpointConnections/write",
     f"{RG}/Microsoft.Web/sites/app/slots/staging/privateEndpointConnections/c", True,
     f"{RG}/Microsoft.Web/sites/app/slots/staging"),
    ("Microsoft.Network/privateLinkServices/privateEndpointConnections/write",
     f"{RG}/Microsoft.Network/privateLinkServices/pls/privateEndpointConnections/c", True,
     f"{RG}/Microsoft.Network/privateLinkServices/pls"),
    ("Microsoft.Network/privateLinkServices/write", f"{RG}/Microsoft.Network/privateLinkServices/pls", True,
     f"{RG}/Microsoft.Network/privateLinkServices/pls"),
    # Private ARM management.
    ("Microsoft.Authorization/resourceManagementPrivateLinks/write",
     f"{RG}/Microsoft.Authorization/resourceManagementPrivateLinks/rmpl", True,
     f"{RG}/Microsoft.Authorization/resourceManagementPrivateLinks/rmpl"),
    ("Microsoft.Authorization/resourceManagementPrivateLinks/privateEndpointConnections/write",
     f"{RG}/Microsoft.Authorization/resourceManagementPrivateLinks/rmpl/privateEndpointConnections/c", True,
     f"{RG}/Microsoft.Authorization/resourceManagementPrivateLinks/rmpl"),
    ("Microsoft.Authorization/privateLinkAssociations/write",
     f"{MG}/providers/Microsoft.Authorization/privateLinkAssociations/a", True,
     f"{MG}/providers/Microsoft.Authorization/privateLinkAssociations/a"),
    # Network paths: children re-read the parent the collection plan lists.
    ("Microsoft.Network/virtualNetworks/write", VNET, True, VNET),
    ("Microsoft.Network/virtualNetworks/subnets/write", f"{VNET}/subnets/s", True, VNET),
    ("Microsoft.Network/virtualNetworks/subnets/delete", f"{VNET}/subnets/s", True, VNET),
    ("Microsoft.Network/virtualNetworks/virtualNetworkPeerings/write", f"{VNET}/virtualNetworkPeerings/p",
     True, VNET),
    ("Microsoft.Network/routeTables/routes/write", f"{RG}/Microsoft.Network/routeTables/r/routes/x", True,
     f"{RG}/Microsoft.Network/routeTables/r"),
    ("Microsoft.Network/routeTables/delete", f"{RG}/Microsoft.Network/routeTables/r", True,
     f"{RG}/Microsoft.Network/routeTables/r"),
    ("Microsoft.Network/networkSecurityGroups/securityRules/write",
     f"{RG}/Microsoft.Network/networkSecurityGroups/n/securityRules/deny", True,
     f"{RG}/Microsoft.Network/networkSecurityGroups/n"),
    ("Microsoft.Network/azureFirewalls/write", f"{RG}/Microsoft.Network/azureFirewalls/fw", True,
     f"{RG}/Microsoft.Network/azureFirewalls/fw"),
    ("Microsoft.Network/firewallPolicies/ruleCollectionGroups/write",
     f"{RG}/Microsoft.Network/firewallPolicies/fp/ruleCollectionGroups/g", True,
     f"{RG}/Microsoft.Network/firewallPolicies/fp"),
    ("Microsoft.Network/loadBalancers/write", f"{RG}/Microsoft.Network/loadBalancers/lb", True,
     f"{RG}/Microsoft.Network/loadBalancers/lb"),
    ("Microsoft.Network/loadBalancers/backendAddressPools/write",
     f"{RG}/Microsoft.Network/loadBalancers/lb/backendAddressPools/be", True,
     f"{RG}/Microsoft.Network/loadBalancers/lb"),
    ("Microsoft.Network/networkInterfaces/write", f"{RG}/Microsoft.Network/networkInterfaces/nic", True,
     f"{RG}/Microsoft.Network/networkInterfaces/nic"),
    ("Microsoft.Network/bastionHosts/delete", f"{RG}/Microsoft.Network/bastionHosts/b", True,
     f"{RG}/Microsoft.Network/bastionHosts/b"),
    # Name resolution.
    ("Microsoft.Network/privateDnsZones/write", ZONE, True, ZONE),
    ("Microsoft.Network/privateDnsZones/virtualNetworkLinks/write", f"{ZONE}/virtualNetworkLinks/l", True,
     ZONE),
    ("Microsoft.Network/privateDnsZones/CNAME/write", f"{ZONE}/CNAME/sa", True, ZONE),
    ("Microsoft.Network/privateDnsZones/A/delete", f"{ZONE}/A/sa", True, ZONE),
    # Private-link targets and their network ACL children.
    ("Microsoft.Storage/storageAccounts/write", ACCOUNT, True, ACCOUNT),
    ("Microsoft.KeyVault/vaults/write", f"{RG}/Microsoft.KeyVault/vaults/kv", True,
     f"{RG}/Microsoft.KeyVault/vaults/kv"),
    ("Microsoft.Sql/servers/firewallRules/write", f"{RG}/Microsoft.Sql/servers/sql/firewallRules/any", True,
     f"{RG}/Microsoft.Sql/servers/sql"),
    ("Microsoft.DocumentDB/databaseAccounts/write", f"{RG}/Microsoft.DocumentDB/databaseAccounts/c", True,
     f"{RG}/Microsoft.DocumentDB/databaseAccounts/c"),
    ("Microsoft.ContainerRegistry/registries/delete", f"{RG}/Microsoft.ContainerRegistry/registries/r", True,
     f"{RG}/Microsoft.ContainerRegistry/registries/r"),
    ("Microsoft.CognitiveServices/accounts/write", f"{RG}/Microsoft.CognitiveServices/accounts/ai", True,
     f"{RG}/Microsoft.CognitiveServices/accounts/ai"),
    ("Microsoft.EventHub/namespaces/networkRuleSets/write",
     f"{RG}/Microsoft.EventHub/namespaces/eh/networkRuleSets/default", True,
     f"{RG}/Microsoft.EventHub/namespaces/eh"),
    ("Microsoft.ServiceBus/namespaces/write", f"{RG}/Microsoft.ServiceBus/namespaces/sb", True,
     f"{RG}/Microsoft.ServiceBus/namespaces/sb"),
    ("Microsoft.AppConfiguration/configurationStores/write",
     f"{RG}/Microsoft.AppConfiguration/configurationStores/ac", True,
     f"{RG}/Microsoft.AppConfiguration/configurationStores/ac"),
    ("Microsoft.Web/sites/write", f"{RG}/Microsoft.Web/sites/app", True, f"{RG}/Microsoft.Web/sites/app"),
    ("Microsoft.Automation/automationAccounts/write", f"{RG}/Microsoft.Automation/automationAccounts/aa",
     True, f"{RG}/Microsoft.Automation/automationAccounts/aa"),
    ("Microsoft.DBforPostgreSQL/flexibleServers/write", f"{RG}/Microsoft.DBforPostgreSQL/flexibleServers/pg",
     True, f"{RG}/Microsoft.DBforPostgreSQL/flexibleServers/pg"),
    ("Microsoft.DBforMySQL/servers/virtualNetworkRules/write",
     f"{RG}/Microsoft.DBforMySQL/servers/my/virtualNetworkRules/r", True,
     f"{RG}/Microsoft.DBforMySQL/servers/my"),
    ("Microsoft.Cache/redis/write", f"{RG}/Microsoft.Cache/redis/r", True, f"{RG}/Microsoft.Cache/redis/r"),
    ("Microsoft.Search/searchServices/write", f"{RG}/Microsoft.Search/searchServices/s", True,
     f"{RG}/Microsoft.Search/searchServices/s"),
    # Casing of the operation name does not matter.
    ("MICROSOFT.NETWORK/ROUTETABLES/ROUTES/WRITE", f"{RG}/Microsoft.Network/routeTables/r/routes/x", True,
     f"{RG}/Microsoft.Network/routeTables/r"),
    # Irrelevant: actions that change nothing a check sees, children outside the table, other types.
    ("Microsoft.Network/virtualNetworks/subnets/join/action", f"{VNET}/subnets/s", False, VNET),
    ("Microsoft.EventHub/namespaces/AuthorizationRules/listKeys/action",
     f"{RG}/Microsoft.EventHub/namespaces/eh/AuthorizationRules/RootManageSharedAccessKey", False,
     f"{RG}/Microsoft.EventHub/namespaces/eh"),
    ("Microsoft.Storage/storageAccounts/listKeys/action", ACCOUNT, False, ACCOUNT),
    ("Microsoft.Storage/storageAccounts/blobServices/containers/write",
     f"{ACCOUNT}/blobServices/default/containers/c", False, ACCOUNT),
    ("Microsoft.Network/privateDnsZones/TXT/write", f"{ZONE}/TXT/t", False, ZONE),
    ("Microsoft.Network/publicIPAddresses/write", f"{RG}/Microsoft.Network/publicIPAddresses/ip", False,
     f"{RG}/Microsoft.Network/publicIPAddresses/ip"),
    ("Microsoft.Compute/virtualMachines/write", f"{RG}/Microsoft.Compute/virtualMachines/vm", False,
     f"{RG}/Microsoft.Compute/virtualMachines/vm"),
    ("Microsoft.Resources/deployments/write", f"{RG}/Microsoft.Resources/deployments/d", False,
     f"{RG}/Microsoft.Resources/deployments/d"),
    ("Microsoft.Network/virtualNetworks/read", VNET, False, VNET),
    ("", VNET, False, VNET),
    ("garbage", VNET, False, VNET),
]


@pytest.mark.parametrize(("operation", "uri", "relevant", "reread"), CASES)
def test_relevance_and_reread(operation: str, uri: str, relevant: bool, reread: str) -> None:
    """Proves the table's verdict on each operation and which resource the worker re-reads for it."""
    ev = event(operation, uri)
    assert is_relevant(ev) is relevant
    assert resource_to_reread(ev).key == parse_id(reread).key


def test_reread_key_ignores_id_casing() -> None:
    """Proves a subnet event with upper-case segments re-reads the same network key as a lower-case one."""
    upper = event("Microsoft.Network/virtualNetworks/subnets/write", f"{VNET}/SUBNETS/S".upper())
    assert resource_to_reread(upper).key == parse_id(VNET).key


def test_unparseable_resource_is_reread_as_is() -> None:
    """Proves an opaque or bare-scope resource id is passed through rather than guessed at."""
    for uri in ("not-an-id", "/subscriptions/s/resourceGroups/rg"):
        ev = event("Microsoft.Storage/storageAccounts/write", uri)
        assert resource_to_reread(ev) == parse_id(uri)


def test_samples_relevance() -> None:
    """Proves the Microsoft samples: storage writes/deletes matter, listKeys does not."""
    verdicts = {}
    for path in sorted(FIXTURES.glob("*-schema_resource_*.json")):
        content_type = "application/cloudevents+json" if path.name.startswith("cloud") else "application/json"
        (ev,) = parse_body(path.read_bytes(), content_type).resource_events
        verdicts[path.name] = is_relevant(ev)
        if verdicts[path.name]:
            assert resource_to_reread(ev).key == ev.key
    assert verdicts == {name: "action" not in name for name in verdicts}


def test_filters_respect_event_grid_limits() -> None:
    """Proves each filter list fits one event subscription: at most 25 values, each at most 512 chars."""
    chunks = operation_name_filters() + operation_name_contains_filters()
    assert chunks
    for chunk in chunks:
        assert 0 < len(chunk) <= MAX_FILTER_VALUES
        assert all(0 < len(v) <= 512 for v in chunk)
    flat = [v.lower() for chunk in operation_name_filters() for v in chunk]
    assert len(flat) == len(set(flat))


def test_filters_have_no_redundant_prefixes() -> None:
    """Proves no prefix is shadowed by a shorter one, so no filter value is wasted."""
    flat = [v.lower() for chunk in operation_name_filters() for v in chunk]
    assert not [a for a in flat for b in flat if a != b and a.startswith(b)]


def _passes_event_grid(operation: str) -> bool:
    op = operation.lower()
    begins = any(op.startswith(v.lower()) for chunk in operation_name_filters() for v in chunk)
    contains = any(v.lower() in op for chunk in operation_name_contains_filters() for v in chunk)
    return begins or contains


@pytest.mark.parametrize("operation", sorted({c[0] for c in CASES if c[2]}))
def test_every_relevant_operation_passes_the_generated_filters(operation: str) -> None:
    """Proves Event Grid, filtering with the generated values, never drops an operation the worker wants."""
    assert _passes_event_grid(operation)


def test_every_watched_type_is_covered_by_a_filter() -> None:
    """Proves the filters are generated from the whole table: each type's write and delete pass."""
    for watch in WATCHED:
        for verb in ("write", "delete"):
            op = f"{watch.type}/{verb}"
            assert is_relevant_operation(op) and _passes_event_grid(op), op


def test_irrelevant_providers_are_filtered_upstream() -> None:
    """Proves the filters keep unrelated traffic (VM writes) from reaching the daemon at all."""
    assert not _passes_event_grid("Microsoft.Compute/virtualMachines/write")
