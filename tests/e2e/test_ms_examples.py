"""A recorded tenant built from the real Microsoft example payloads (tests/fixtures/azure-examples).

The payloads carry real quirks: '/provders/' typos in NIC ids, bare-GUID ids for RMPLs and associations,
endpoints without a manualPrivateLinkServiceConnections key, a manual connection whose id says
'privateLinkServiceConnections', Storage's 'actionRequired', SQL's 'Ready' provisioning state,
'{subscription-id}' placeholders and ids whose subscription casing differs ('subId' / 'subid').
The scan must survive all of them and give exactly the findings checks.md defines.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tenantkit import endpoint, example, write_tenant

from plmon.checks.engine import evaluate
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot

TENANT = "06b3ccb8-1384-4bcc-aec7-852f6d57161b"       # the tenantId of the association examples
SUBZ = "00000000-0000-0000-0000-000000000000"         # the network examples' subscription
SUBID = "subId"                                       # PrivateLinkServiceList's subscription
SQL_CONSUMER = "55555555-6666-7777-8888-999999999999"  # the endpoint named by ServerGet's connection
STO = "{subscription-id}"                             # the Storage examples' placeholder subscription
MG = "providers/Microsoft.Management/managementGroups"
PLA = "providers/Microsoft.Authorization/privateLinkAssociations"
FOUNDATION = {"connection", "endpoint", "pls", "rmpl"}

SQL = example("paas/ServerGet.json")
STORAGE = example("paas/StorageAccountGetProperties.json")
VAULT = example("paas/getVault.json")
AUTOMATION = example("paas/getAutomationAccount.json")
COGNITIVE = example("paas/GetAccount.json")


def lst(sub: str, kind: str, provider: str = "Microsoft.Network") -> str:
    return f"subscriptions/{sub}/providers/{provider}/{kind}"


def pe(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/privateEndpoints/{name}"


def _files() -> dict[str, Any]:
    pes = example("network/PrivateEndpointListAll.json")                        # pe1, pe2, pe3
    pes["value"].append(example("network/PrivateEndpointGetForManualApproval.json"))  # testPe
    # Hand-made consumers of the PaaS examples (the examples hold only the provider side).
    pes["value"] += [
        endpoint("pe-kv", VAULT["id"], status="Rejected", group_ids=("vault",), sub=SUBZ),
        endpoint("pe-auto", AUTOMATION["id"], status="Disconnected", group_ids=("Webhook",), sub=SUBZ),
        endpoint("pe-cog", COGNITIVE["id"], actions_required="Recreate", group_ids=("account",), sub=SUBZ),
    ]
    vault = copy.deepcopy(VAULT)
    vault["properties"]["privateEndpointConnections"] = [example("paas/getPrivateEndpointConnection.json")]
    storage = copy.deepcopy(STORAGE)
    storage["properties"]["privateEndpointConnections"] = [
        example("paas/StorageAccountGetPrivateEndpointConnection.json")]
    return {
        "subscriptions": {"value": [{"subscriptionId": s, "tenantId": TENANT, "displayName": s, "state": "Enabled"}
                                    for s in (SUBZ, SUBID, SQL_CONSUMER, STO)]},
        MG: {"value": [{"id": f"/{MG}/{TENANT}", "name": TENANT},
                       {"id": f"/{MG}/my-management-group", "name": "my-management-group"}]},
        f"{MG}/my-management-group/{PLA}": example("authorization/GetPrivateLinkAssociation.json"),
        lst(SUBZ, "resourceManagementPrivateLinks", "Microsoft.Authorization"):
            example("authorization/ListResourceManagementPrivateLink.json"),
        lst(SUBZ, "privateEndpoints"): pes,
        lst(SUBZ, "privateLinkServices"): {"value": [example("network/PrivateLinkServiceGet.json")]},
        lst(SUBID, "privateLinkServices"): example("network/PrivateLinkServiceList.json"),
        # SQL: the consumer of ServerGet's connection, Approved; SQL says provisioningState 'Ready'.
        lst(SQL_CONSUMER, "privateEndpoints"): {"value": [endpoint(
            "private-endpoint-name", SQL["id"], group_ids=("sqlServer",), rg="Default-Network", sub=SQL_CONSUMER)]},
        # Storage: the consumer still says Pending, the provider (with 'actionRequired') says Approved.
        lst(STO, "privateEndpoints"): {"value": [endpoint("petest01", STORAGE["id"], status="Pending",
                                                          rg="res7231", sub=STO)]},
        SQL["id"]: SQL, STORAGE["id"]: storage, VAULT["id"]: vault, AUTOMATION["id"]: AUTOMATION,
        COGNITIVE["id"]: COGNITIVE,
    }


# Derived by hand from the payloads (foundation families only; other families have their own tests):
# - pe1, pe3 (auto, Approved) and pe2 (manual, Pending) target testPls1/2/3 in SUBZ resource groups rg1/rg2/rg3.
#   SUBZ's PLS list was read and holds only testPls -> connection.target-missing on pe1, pe2, pe3.
# - pe2 is Pending and no provider side is visible (testPls2 in SUBZ does not exist; subId/testPls2's
#   connection names testPe2) -> connection.pending with the endpoint as subject.
# - testPe (manual, Pending) -> testPls, whose provider connection for testPe says Approved: the provider is the
#   authority -> no finding. testPls: autoApproval [s1, s2] within visibility [s1, s2, s3], no '*', no PROXY,
#   Succeeded; its NAT subnet vnetlb/subnetlb is in no read network -> no pls finding.
# - subId/testPls1 (vis [s1], auto [s1]) and subId/testPls2 (vis [s1..s3], auto [s1, s2]): no finding; their
#   Approved connections come from endpoints plmon cannot see -> nothing.
# - pe-kv: Rejected, the vault's only connection names sample-pe -> connection.rejected on pe-kv.
# - pe-auto: Disconnected -> connection.disconnected on pe-auto.
# - pe-cog: actionsRequired 'Recreate' on the consumer side -> connection.actions-required on pe-cog.
# - SQL: private-endpoint-name Approved both ends (provider provisioningState 'Ready') -> nothing.
# - Storage: petest01 consumer Pending, provider Approved with actionRequired 'None' -> nothing.
# - Association (bare-GUID id 0...0) under my-management-group: publicNetworkAccess Enabled ->
#   rmpl.association-public-access-enabled; scope my-management-group != root (the tenant id) ->
#   rmpl.association-not-root; privateLink bare GUID 0...0 = RMPL my-pla's id -> not dangling.
# - RMPLs my-pla (0...0, associated) and my-pla2 (0...1, not associated), neither with a connection ->
#   rmpl.no-endpoint on both, rmpl.unassociated on my-pla2. One tenant -> no multi-tenant.
GUID0, GUID1 = SUBZ, "00000000-0000-0000-0000-000000000001"
EXPECTED = {
    ("connection.target-missing", pe(SUBZ, "rg1", "pe1")),
    ("connection.target-missing", pe(SUBZ, "rg2", "pe2")),
    ("connection.target-missing", pe(SUBZ, "rg3", "pe3")),
    ("connection.pending", pe(SUBZ, "rg2", "pe2")),
    ("connection.rejected", pe(SUBZ, "rg1", "pe-kv")),
    ("connection.disconnected", pe(SUBZ, "rg1", "pe-auto")),
    ("connection.actions-required", pe(SUBZ, "rg1", "pe-cog")),
    ("rmpl.association-public-access-enabled", GUID0),
    ("rmpl.association-not-root", GUID0),
    ("rmpl.no-endpoint", GUID0),
    ("rmpl.no-endpoint", GUID1),
    ("rmpl.unassociated", GUID1),
}


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    folder = write_tenant(tmp_path_factory.mktemp("ms"), _files(), tenant_id=TENANT, subscriptions=[])
    reader = RecordedTenant(folder)
    return build_snapshot(collect(reader, manifest=reader.manifest))


def test_exact_findings_of_the_foundation_families(snap: Snapshot) -> None:
    """The scan of the example tenant gives exactly the hand-derived (check id, resource id) pairs."""
    ev = evaluate(snap)
    got = {(f.check_id, f.resource_id.lower()) for f in ev.findings if f.check_id.split(".")[0] in FOUNDATION}
    assert got == {(c, r.lower()) for c, r in EXPECTED}
    assert ev.check_errors == ()


def test_no_coverage_gap_and_every_subscription_scanned(snap: Snapshot) -> None:
    """Every recorded read succeeded: no gap, four subscriptions, every PaaS target read by id."""
    assert snap.coverage.gaps == ()
    assert snap.coverage.subscriptions_scanned == 4
    for body in (SQL, STORAGE, VAULT, AUTOMATION, COGNITIVE):
        assert snap.targets[body["id"].lower()].state == "read"


def test_quirks_are_read_as_the_catalogue_says(snap: Snapshot) -> None:
    """Typo'd NIC ids are opaque, manual connections are classified by their array, quirky spellings read."""
    pe2 = snap.private_endpoints[pe(SUBZ, "rg2", "pe2").lower()]
    assert [c.manual for c in pe2.connections] == [True]  # its id says privateLinkServiceConnections
    assert pe2.connections[0].id.raw.endswith("/privateLinkServiceConnections/plsconnection2")
    pe1 = snap.private_endpoints[pe(SUBZ, "rg1", "pe1").lower()]
    assert pe1.nic_ids and all(n.opaque for n in pe1.nic_ids)  # '/provders/' typo
    [sql_conn] = snap.targets[SQL["id"].lower()].connections
    assert (sql_conn.provisioning_state, sql_conn.status) == ("Ready", "Approved")
    [sto_conn] = snap.targets[STORAGE["id"].lower()].connections
    assert sto_conn.actions_required == "None" and sto_conn.status == "Approved"
    assert set(snap.rmpls) == {GUID0, GUID1}
    [assoc] = snap.associations.values()
    assert assoc.id.opaque and assoc.private_link is not None and assoc.private_link.key == GUID0
