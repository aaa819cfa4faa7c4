"""Each row of the public-access table judged on a payload in its REST spec's shape (checks.md "Public network access").

Every row of ``plmon.checks.public_access.RULES`` has an entry here: the ``properties`` of an open and of a closed
resource, written as the type's GET response carries them at the rule's api-version (modelled on the spec's
GET example, and on the spec's definition where the example leaves the property out). The bodies go
through the recorded collection and the real builder, so a rule that reads the wrong path fails here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from netkit import NET, Net
from tenantkit import SUB, endpoint, example, provider_connection, sub_list, write_tenant

from plmon.checks.engine import evaluate
from plmon.checks.public_access import RULES
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant

ENABLED = "public-access.enabled-with-private-endpoint"
UNKNOWN = "public-access.unknown"
CHECKS = {ENABLED, UNKNOWN}


def pna(open_: str = "Enabled", closed: str = "Disabled", **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The common shape: ``properties.publicNetworkAccess`` as a string, beside the type's other properties."""
    return {"publicNetworkAccess": open_, **extra}, {"publicNetworkAccess": closed, **extra}


# type -> (open properties, closed properties)
SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # StorageAccountGetProperties.json: networkAcls beside publicNetworkAccess.
    "Microsoft.Storage/storageAccounts": pna(networkAcls={"defaultAction": "Allow", "bypass": "AzureServices"},
                                             minimumTlsVersion="TLS1_2"),
    "Microsoft.KeyVault/vaults": pna(tenantId="00000000-0000-0000-0000-000000000000", enableRbacAuthorization=True,
                                     networkAcls={"defaultAction": "Deny", "bypass": "AzureServices"}),
    "Microsoft.KeyVault/managedHSMs": pna(hsmUri="https://hsm1.managedhsm.azure.net", provisioningState="Succeeded",
                                          networkAcls={"defaultAction": "Deny", "bypass": "AzureServices"}),
    # ServerGet.json (2021-11-01): "publicNetworkAccess": "Enabled".
    "Microsoft.Sql/servers": pna(fullyQualifiedDomainName="sqlcrudtest-4645.database.windows.net", version="12.0",
                                 minimalTlsVersion="1.2", restrictOutboundNetworkAccess="Enabled"),
    "Microsoft.DocumentDB/databaseAccounts": pna(databaseAccountOfferType="Standard",
                                                 isVirtualNetworkFilterEnabled=False, ipRules=[]),
    "Microsoft.ContainerRegistry/registries": pna(loginServer="myregistry.azurecr.io", adminUserEnabled=False,
                                                  networkRuleBypassOptions="AzureServices"),
    "Microsoft.CognitiveServices/accounts": pna(endpoint="https://westus.api.cognitive.microsoft.com/",
                                                networkAcls={"defaultAction": "Allow", "ipRules": []}),
    "Microsoft.EventHub/namespaces": pna(serviceBusEndpoint="https://sdk-Namespace-1.servicebus.windows.net:443/",
                                         minimumTlsVersion="1.2", disableLocalAuth=False),
    "Microsoft.ServiceBus/namespaces": pna(serviceBusEndpoint="https://sdk-Namespace-2.servicebus.windows.net:443/",
                                           minimumTlsVersion="1.2"),
    # ConfigurationStoresGet.json: publicNetworkAccess may also be null (covered in test_public_access.py).
    "Microsoft.AppConfiguration/configurationStores": pna(endpoint="https://contoso.azconfig.io",
                                                          disableLocalAuth=False),
    # Web apps: a free string, "Enabled", "Disabled" or empty.
    "Microsoft.Web/sites": pna("", defaultHostName="sitef6141.azurewebsites.net", httpsOnly=True),
    "Microsoft.Web/sites/slots": pna("Enabled", defaultHostName="sitef6141-staging.azurewebsites.net"),
    # getAutomationAccount.json: a boolean.
    "Microsoft.Automation/automationAccounts": ({"publicNetworkAccess": True, "state": "Ok"},
                                                {"publicNetworkAccess": False, "state": "Ok"}),
    # ServerGet.json (flexible servers): under "network", no top-level publicNetworkAccess.
    "Microsoft.DBforPostgreSQL/flexibleServers": (
        {"version": "12", "state": "Ready", "network": {"publicNetworkAccess": "Enabled"}},
        {"version": "12", "state": "Ready", "network": {"publicNetworkAccess": "Disabled"}}),
    "Microsoft.DBforMySQL/flexibleServers": (
        {"version": "5.7", "state": "Ready", "network": {"publicNetworkAccess": "Enabled"}},
        {"version": "5.7", "state": "Ready", "network": {"publicNetworkAccess": "Disabled"}}),
    "Microsoft.DBforPostgreSQL/servers": pna(userVisibleState="Ready", sslEnforcement="Enabled", version="11"),
    "Microsoft.DBforMySQL/servers": pna(userVisibleState="Ready", sslEnforcement="Enabled", version="5.7"),
    "Microsoft.Cache/redis": pna(hostName="cache1.redis.cache.windows.net", enableNonSslPort=False,
                                 minimumTlsVersion="1.2"),
    # Search: the enum is lower case ("enabled", "disabled").
    "Microsoft.Search/searchServices": pna("enabled", "disabled", replicaCount=3, partitionCount=1,
                                           networkRuleSet={"ipRules": []}),
    # SignalR_Get.json: networkACLs (upper-case ACL) beside publicNetworkAccess.
    "Microsoft.SignalRService/signalR": pna(hostName="mysignalrservice.service.signalr.net", disableLocalAuth=False,
                                            networkACLs={"defaultAction": "Deny", "publicNetwork": {"allow": []}}),
    "Microsoft.SignalRService/webPubSub": pna(hostName="mywebpubsubservice.service.webpubsub.azure.com"),
    "Microsoft.EventGrid/topics": pna(endpoint="https://exampletopic2.westus2-1.eventgrid.azure.net/api/events",
                                      inputSchema="EventGridSchema", inboundIpRules=[]),
    "Microsoft.EventGrid/domains": pna(endpoint="https://exampledomain2.westus2-1.eventgrid.azure.net/api/events",
                                       inputSchema="EventGridSchema"),
    "Microsoft.MachineLearningServices/workspaces": pna(friendlyName="HelloName", hbiWorkspace=False,
                                                        storageAccount="/subscriptions/x/storageAccounts/sa"),
    "Microsoft.DataFactory/factories": pna(provisioningState="Succeeded", version="2018-06-01"),
    # GetWorkspace.json (2021-06-01) with the spec's publicNetworkAccess.
    "Microsoft.Synapse/workspaces": pna(connectivityEndpoints={"sql": "workspace1.sql.azuresynapse.net"},
                                        managedResourceGroupName="resourceGroup2"),
    "Microsoft.Batch/batchAccounts": pna(accountEndpoint="sampleacct.japaneast.batch.azure.com",
                                         poolAllocationMode="BatchService"),
    # iothub_get.json: networkRuleSets.defaultAction.
    "Microsoft.Devices/IotHubs": pna(hostName="iot-dps-cit-hub-1.azure-devices.net", minTlsVersion="1.2",
                                     networkRuleSets={"defaultAction": "Deny", "ipRules": []}),
    "Microsoft.RecoveryServices/vaults": pna(provisioningState="Succeeded",
                                             privateEndpointStateForBackup="Enabled"),
    "Microsoft.Kusto/clusters": pna(uri="https://kustoclusterrptest4.westus.kusto.windows.net", state="Running",
                                    restrictOutboundNetworkAccess="Disabled"),
    # WorkspaceGet.json (2024-05-01) with the spec's publicNetworkAccess and requiredNsgRules.
    "Microsoft.Databricks/workspaces": pna(workspaceUrl="adb-5555555555555555.19.azuredatabricks.net",
                                           requiredNsgRules="AllRules"),
    "Microsoft.ApiManagement/service": pna(gatewayUrl="https://apimService1.azure-api.net",
                                           virtualNetworkType="None"),
    # PrivateLinkScopesGet.json / AccessModeSettings: queryAccessMode and ingestionAccessMode, Open or PrivateOnly.
    "Microsoft.Insights/privateLinkScopes": (
        {"provisioningState": "Succeeded",
         "accessModeSettings": {"queryAccessMode": "Open", "ingestionAccessMode": "Open", "exclusions": []}},
        {"provisioningState": "Succeeded",
         "accessModeSettings": {"queryAccessMode": "PrivateOnly", "ingestionAccessMode": "PrivateOnly",
                                "exclusions": []}}),
    # ManagedClustersGet.json with the spec's apiServerAccessProfile.
    "Microsoft.ContainerService/managedClusters": (
        {"fqdn": "dnsprefix1-abcd1234.hcp.eastus.azmk8s.io", "apiServerAccessProfile": {"enablePrivateCluster": False}},
        {"privateFQDN": "dnsprefix1-abcd1234.privatelink.eastus.azmk8s.io",
         "apiServerAccessProfile": {"enablePrivateCluster": True, "privateDNSZone": "system"}}),
}


def _target_id(type_: str, name: str) -> str:
    provider, *types = type_.split("/")
    return f"/subscriptions/{SUB}/resourceGroups/rg1/providers/{provider}/" + "/".join(f"{t}/{name}" for t in types)


def _judge(tmp_path: Path, type_: str, bodies: dict[str, dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Findings (check id, target name) for targets of ``type_`` with these properties, each behind one Approved
    endpoint, through the recorded collection and the real builder."""
    n = Net()
    n.vnet("v", "10.1.0.0/16").subnet("v", "pe", "10.1.1.0/24")
    for i, (name, props) in enumerate(bodies.items(), start=4):
        tid = _target_id(type_, name)
        pe_id = f"{NET}/privateEndpoints/pe-{name}"
        conns = [provider_connection(tid, pe_id)]
        n.files[tid.strip("/")] = {"id": tid, "name": name, "type": type_, "location": "westeurope",
                                   "properties": {**props, "privateEndpointConnections": conns}}
        n.endpoint(f"pe-{name}", tid, vnet="v", ip=f"10.1.1.{i}", zones=[])
    ev = evaluate(n.snapshot(tmp_path), only=CHECKS)
    assert ev.check_errors == ()
    return {(f.check_id, f.resource_id.rsplit("/", 1)[-1]): f for f in ev.findings}


def test_every_row_has_a_spec_shaped_payload() -> None:
    """No row of the table goes untested: a row added without a payload here fails."""
    assert set(SHAPES) == {r.type for r in RULES.values()}


@pytest.mark.parametrize("type_", sorted(SHAPES))
def test_row_judges_its_spec_shape(tmp_path: Path, type_: str) -> None:
    """The open payload is a finding whose evidence shows the raw property; the closed one passes; none is unknown."""
    open_props, closed_props = SHAPES[type_]
    found = _judge(tmp_path, type_, {"open": open_props, "closed": closed_props})
    assert set(found) == {(ENABLED, "open")}
    f = found[(ENABLED, "open")]
    rule = RULES[type_.lower()]
    for leaf in rule.leaves:
        node: Any = open_props
        for part in leaf.split("."):
            node = node[part]
        key = "publicNetworkAccess" if leaf == "publicNetworkAccess" else f"properties.{leaf}"
        assert f.evidence[key] == node
    assert f.evidence["type"] == type_
    assert rule.spec in f.evidence["rule_source"] and rule.api_version in f.evidence["rule_source"]
    assert f.remediation.count(_target_id(type_, "open")) == 1


@pytest.mark.parametrize(("type_", "acl"), [("Microsoft.Storage/storageAccounts", "networkAcls"),
                                            ("Microsoft.SignalRService/signalR", "networkACLs"),
                                            ("Microsoft.Devices/IotHubs", "networkRuleSets")])
def test_network_acl_default_action_in_evidence_however_spelled(tmp_path: Path, type_: str, acl: str) -> None:
    """The evidence carries the type's network ACL default action, whichever of the spec spellings it uses."""
    open_props = SHAPES[type_][0]
    found = _judge(tmp_path, type_, {"open": open_props})
    assert found[(ENABLED, "open")].evidence["networkAcls.defaultAction"] == open_props[acl]["defaultAction"]


def test_flexible_server_is_judged_on_its_network_property(tmp_path: Path) -> None:
    """A flexible server closed under properties.network is not a finding though it has no top-level property."""
    closed = SHAPES["Microsoft.DBforPostgreSQL/flexibleServers"][1]
    assert "publicNetworkAccess" not in closed
    assert _judge(tmp_path, "Microsoft.DBforPostgreSQL/flexibleServers", {"pg": closed}) == {}


def test_monitor_scope_open_in_either_mode_or_by_default_is_allowed(tmp_path: Path) -> None:
    """An Azure Monitor scope is open while either access mode is Open, and when the modes are absent (default Open)."""
    scope = "Microsoft.Insights/privateLinkScopes"
    found = _judge(tmp_path, scope, {
        "query": {"accessModeSettings": {"queryAccessMode": "Open", "ingestionAccessMode": "PrivateOnly"}},
        "ingest": {"accessModeSettings": {"queryAccessMode": "PrivateOnly", "ingestionAccessMode": "Open"}},
        "default": {"provisioningState": "Succeeded"},
        "private": SHAPES[scope][1]})
    assert set(found) == {(ENABLED, "query"), (ENABLED, "ingest"), (ENABLED, "default")}
    assert "ingestionAccessMode is 'Open'" in found[(ENABLED, "ingest")].evidence["judgement"]


def test_aks_cluster_without_an_access_profile_is_public(tmp_path: Path) -> None:
    """An AKS cluster whose body has no apiServerAccessProfile (as the spec's GET example) is not private: a finding."""
    found = _judge(tmp_path, "Microsoft.ContainerService/managedClusters", {"plain": {"fqdn": "x.hcp.azmk8s.io"}})
    assert set(found) == {(ENABLED, "plain")}
    assert found[(ENABLED, "plain")].evidence["properties.apiServerAccessProfile.enablePrivateCluster"] is None


# Microsoft's own GET examples (tests/fixtures/azure-examples/access, verbatim) and what their property says,
# read by hand: Enabled is a finding once an endpoint is Approved, Disabled is not.
EXAMPLES: list[tuple[str, bool]] = [
    ("access/containerregistry_RegistryGet.json", True),           # publicNetworkAccess "Enabled"
    ("access/batch_BatchAccountGet.json", True),                   # publicNetworkAccess "Enabled"
    ("access/appconfiguration_ConfigurationStoresGet.json", False),  # publicNetworkAccess "Disabled"
    ("access/postgresql-flexible_ServerGet.json", True),           # network.publicNetworkAccess "Enabled"
    ("access/mysql-flexible_ServerGet.json", True),                # network.publicNetworkAccess "Enabled"
    ("access/redis_RedisCacheGet.json", True),                     # publicNetworkAccess "Enabled", type "Redis"
]


@pytest.mark.parametrize(("name", "public"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_microsoft_example_is_judged_by_its_property(tmp_path: Path, name: str, public: bool) -> None:
    """A spec's own GET example behind an Approved endpoint: a finding exactly when its property allows access."""
    body = copy.deepcopy(example(name))
    tid = body["id"]
    pe = endpoint("pe-x", tid)
    body["properties"]["privateEndpointConnections"] = [provider_connection(tid, pe["id"])]
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": [pe]}, tid.strip("/"): body},
                          subscriptions=[SUB, tid.split("/")[2]])
    source = RecordedTenant(folder)
    ev = evaluate(build_snapshot(collect(source, manifest=source.manifest, workers=1)), only=CHECKS)
    assert ev.check_errors == ()
    assert [(f.check_id, f.resource_id) for f in ev.findings] == ([(ENABLED, tid)] if public else [])
