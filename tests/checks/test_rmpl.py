"""rmpl.* checks (checks.md, Resource Management Private Link): failing case, passing neighbour, subject."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkkit import run, snapshot_of, subjects
from tenantkit import SUB, TENANT, endpoint, net, provider_connection, sub_list, write_tenant

from plmon.checks.finding import Severity
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant

MG = "/providers/Microsoft.Management/managementGroups"
ROOT = f"{MG}/{TENANT}"
PLA = "providers/Microsoft.Authorization/privateLinkAssociations"
RMPL_LIST = sub_list("resourceManagementPrivateLinks", provider="Microsoft.Authorization")
OTHER_TENANT = "99999999-9999-9999-9999-999999999999"


def rmpl_id(name: str) -> str:
    return (f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Authorization/"
            f"resourceManagementPrivateLinks/{name}")


def rmpl(name: str, connections: list[dict[str, Any]] = ()) -> dict[str, Any]:
    return {"id": rmpl_id(name), "name": name, "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
            "properties": {"privateEndpointConnections": list(connections)}}


def approved(name: str) -> list[dict[str, Any]]:
    return [provider_connection(rmpl_id(name), f"{net()}/privateEndpoints/pe-{name}")]


def assoc(name: str, link: str, *, scope: str = ROOT, pna: str = "Disabled",
          tenant: str = TENANT) -> dict[str, Any]:
    return {"id": f"{ROOT}/{PLA}/{name}", "name": name, "type": "Microsoft.Authorization/privateLinkAssociations",
            "properties": {"privateLink": link, "publicNetworkAccess": pna, "tenantId": tenant, "scope": scope}}


def tenant_files(associations: list[dict[str, Any]], rmpls: list[dict[str, Any]]) -> dict[str, Any]:
    return {f"{ROOT}/{PLA}": {"value": associations}, RMPL_LIST: {"value": rmpls}}


def assoc_id(name: str) -> str:
    return f"{ROOT}/{PLA}/{name}".lower()


def test_association_public_access_enabled(tmp_path: Path) -> None:
    """publicNetworkAccess Enabled (any case) fails on the association; Disabled passes; remediation warns."""
    snap = snapshot_of(tmp_path, tenant_files(
        [assoc("a-on", rmpl_id("r1"), pna="enabled"), assoc("a-off", rmpl_id("r1"))], [rmpl("r1", approved("r1"))]))
    ev = run(snap, "rmpl.association-public-access-enabled")
    assert subjects(ev) == [assoc_id("a-on")]
    assert ev.findings[0].severity == Severity.MEDIUM
    assert "do not let every tenant disable" in ev.findings[0].remediation


def test_association_not_root(tmp_path: Path) -> None:
    """A scope below the root group fails; the root group (tenant id), in any casing, passes."""
    snap = snapshot_of(tmp_path, tenant_files(
        [assoc("child", rmpl_id("r1"), scope=f"{MG}/finance"),
         assoc("root", rmpl_id("r1"), scope=f"{MG}/{TENANT}".upper() + "/")], [rmpl("r1", approved("r1"))]))
    ev = run(snap, "rmpl.association-not-root")
    assert subjects(ev) == [assoc_id("child")]
    assert ev.findings[0].severity == Severity.HIGH
    assert ev.findings[0].evidence["expected_scope"] == ROOT


def test_association_dangling(tmp_path: Path) -> None:
    """An association to an RMPL that does not exist fails; full-id and bare-GUID references that resolve pass."""
    guid = "00000000-0000-0000-0000-0000000000aa"
    guid_rmpl = {"id": guid, "name": "by-guid", "properties": {"privateEndpointConnections": []}}
    snap = snapshot_of(tmp_path, tenant_files(
        [assoc("gone", rmpl_id("nope")), assoc("ok", rmpl_id("R1").lower()), assoc("bare", guid.upper())],
        [rmpl("r1", approved("r1")), guid_rmpl]))
    ev = run(snap, "rmpl.association-dangling")
    assert subjects(ev) == [assoc_id("gone")]


def test_association_dangling_bare_guid_names_rmpl_by_name(tmp_path: Path) -> None:
    """A bare-GUID privateLink equal to an RMPL's name resolves; an unknown GUID dangles."""
    named = "11111111-aaaa-bbbb-cccc-000000000001"
    snap = snapshot_of(tmp_path, tenant_files(
        [assoc("by-name", named), assoc("unknown", "22222222-aaaa-bbbb-cccc-000000000002")], [rmpl(named)]))
    assert subjects(run(snap, "rmpl.association-dangling")) == [assoc_id("unknown")]
    assert run(snap, "rmpl.unassociated").findings == ()


def test_unassociated(tmp_path: Path) -> None:
    """An RMPL no association references fails on the RMPL; a referenced one passes."""
    snap = snapshot_of(tmp_path, tenant_files([assoc("a", rmpl_id("used"))], [rmpl("used"), rmpl("lonely")]))
    ev = run(snap, "rmpl.unassociated")
    assert subjects(ev) == [rmpl_id("lonely").lower()]


def test_unassociated_not_judged_when_associations_unreadable(tmp_path: Path) -> None:
    """With the association list forbidden there is a coverage gap and no unassociated finding."""
    write_tenant(tmp_path, {RMPL_LIST: {"value": [rmpl("r1")]}})
    err = tmp_path / "arm" / f"{ROOT}/{PLA}.error.json".strip("/")
    err.parent.mkdir(parents=True, exist_ok=True)
    err.write_text(json.dumps({"status": 403, "error": {"code": "AuthorizationFailed"}}))
    snap = snapshot_of(tmp_path)
    assert run(snap, "rmpl.unassociated").findings == ()
    assert any(g.scope == ROOT and g.code == "AuthorizationFailed" for g in snap.coverage.gaps)


def test_no_endpoint(tmp_path: Path) -> None:
    """An RMPL with no Approved connection (none, or only Pending) fails; one Approved passes."""
    pending = [provider_connection(rmpl_id("p"), f"{net()}/privateEndpoints/x", status="Pending")]
    snap = snapshot_of(tmp_path, tenant_files([], [rmpl("none"), rmpl("p", pending), rmpl("ok", approved("ok"))]))
    ev = run(snap, "rmpl.no-endpoint")
    assert subjects(ev) == sorted([rmpl_id("none").lower(), rmpl_id("p").lower()])
    assert ev.findings[0].severity == Severity.LOW


def test_multi_tenant(tmp_path: Path) -> None:
    """One RMPL referenced from two tenants fails on the RMPL; two associations of one tenant pass."""
    snap = snapshot_of(tmp_path, tenant_files(
        [assoc("mine", rmpl_id("shared")), assoc("theirs", rmpl_id("shared"), tenant=OTHER_TENANT),
         assoc("one", rmpl_id("single")), assoc("two", rmpl_id("single"), tenant=TENANT.upper())],
        [rmpl("shared"), rmpl("single")]))
    ev = run(snap, "rmpl.multi-tenant")
    assert subjects(ev) == [rmpl_id("shared").lower()]
    assert ev.findings[0].severity == Severity.HIGH


def test_multi_tenant_reads_the_tenantID_spelling(tmp_path: Path) -> None:
    """The REST spec's PUT example spells 'tenantID'; an association so spelled still counts as its tenant."""
    theirs = assoc("theirs", rmpl_id("shared"))
    theirs["properties"].pop("tenantId")
    theirs["properties"]["tenantID"] = OTHER_TENANT
    snap = snapshot_of(tmp_path, tenant_files([assoc("mine", rmpl_id("shared")), theirs], [rmpl("shared")]))
    assert subjects(run(snap, "rmpl.multi-tenant")) == [rmpl_id("shared").lower()]


def test_endpoint_group_id(tmp_path: Path) -> None:
    """An endpoint to an RMPL without group id ResourceManagement fails on the endpoint; the right one passes."""
    files = tenant_files([assoc("a", rmpl_id("r1"))], [rmpl("r1")])
    files[sub_list("privateEndpoints")] = {"value": [
        endpoint("pe-bad", rmpl_id("r1"), group_ids=("blob",)),
        endpoint("pe-good", rmpl_id("r1"), group_ids=("resourcemanagement",))]}
    ev = run(snapshot_of(tmp_path, files), "rmpl.endpoint-group-id")
    assert subjects(ev) == [f"{net()}/privateEndpoints/pe-bad".lower()]
    assert "--group-id ResourceManagement" in ev.findings[0].remediation


def _bastion_tenant(cnames: list[str]) -> dict[str, Any]:
    zone = f"{net()}/privateDnsZones/privatelink.azure.com"
    vnet_b, vnet_o = f"{net()}/virtualNetworks/hub", f"{net()}/virtualNetworks/other"
    return {
        sub_list("bastionHosts"): {"value": [{"id": f"{net()}/bastionHosts/bas", "name": "bas", "properties": {
            "ipConfigurations": [{"properties": {"subnet": {"id": f"{vnet_b}/subnets/AzureBastionSubnet"}}}]}}]},
        sub_list("privateDnsZones"): {"value": [{"id": zone, "name": "privatelink.azure.com"}]},
        f"{zone}/virtualNetworkLinks": {"value": [
            {"id": f"{zone}/virtualNetworkLinks/to-hub", "name": "to-hub",
             "properties": {"virtualNetwork": {"id": vnet_b.upper()}}},
            {"id": f"{zone}/virtualNetworkLinks/to-other", "name": "to-other",
             "properties": {"virtualNetwork": {"id": vnet_o}}}]},
        f"{zone}/CNAME": {"value": [{"id": f"{zone}/CNAME/{n}", "name": n,
                                     "properties": {"cnameRecord": {"cname": "x.trafficmanager.net"}}}
                                    for n in cnames]},
    }


def test_bastion_dns_conflict(tmp_path: Path) -> None:
    """A Bastion network linked to privatelink.azure.com without 'management' fails on that link only."""
    snap = snapshot_of(tmp_path, _bastion_tenant(["other"]))
    ev = run(snap, "rmpl.bastion-dns-conflict")
    assert subjects(ev) == [f"{net()}/privateDnsZones/privatelink.azure.com/virtualNetworkLinks/to-hub".lower()]
    assert ev.findings[0].severity == Severity.HIGH


def test_bastion_dns_with_management_record_passes(tmp_path: Path) -> None:
    """The same zone with a 'management' CNAME (any case) passes."""
    snap = snapshot_of(tmp_path, _bastion_tenant(["Management"]))
    assert run(snap, "rmpl.bastion-dns-conflict").findings == ()


# --- rmpl.association-dangling only on evidence (issue 12, items 1 and 2) ---------------------------

SUB2 = "22222222-2222-2222-2222-222222222222"
FORBIDDEN = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no read"}}


def rmpl2_id(name: str) -> str:
    return rmpl_id(name).replace(SUB, SUB2)


def scoped_snapshot(folder: Path, files: dict[str, Any], subscriptions: list[str] | None) -> Any:
    """The snapshot of a two-subscription tenant, scanned whole (None) or scoped to ``subscriptions``."""
    write_tenant(folder, files, subscriptions=[SUB, SUB2])
    reader = RecordedTenant(folder)
    return build_snapshot(collect(reader, manifest=reader.manifest, workers=2, subscriptions=subscriptions))


def test_dangling_not_claimed_when_the_rmpl_subscription_answers_403(tmp_path: Path) -> None:
    """An RMPL whose subscription's list answers 403 is a coverage gap, not a dangling association (its read by
    id answers 403 too, as ARM does, not 404)."""
    snap = scoped_snapshot(tmp_path, {
        f"{ROOT}/{PLA}": {"value": [assoc("a", rmpl2_id("r2"))]},
        sub_list("resourceManagementPrivateLinks", SUB2, "Microsoft.Authorization") + ".error": FORBIDDEN,
    }, None)
    assert run(snap, "rmpl.association-dangling").findings == ()
    assert any(g.status == 403 and SUB2 in g.scope for g in snap.coverage.gaps)


def test_dangling_in_a_scoped_scan_reads_the_rmpl_by_id(tmp_path: Path) -> None:
    """A scan scoped to another subscription reads the named RMPL by id: present passes, 403 is a gap,
    and only a 404 on its id is the finding, whose evidence says so."""
    rmpls = sub_list("resourceManagementPrivateLinks", SUB2, "Microsoft.Authorization")
    snap = scoped_snapshot(tmp_path / "t1", {
        f"{ROOT}/{PLA}": {"value": [assoc("present", rmpl2_id("r2")), assoc("gone", rmpl2_id("nope")),
                                    assoc("hidden", rmpl2_id("secret"))]},
        rmpls: {"value": [rmpl("r2") | {"id": rmpl2_id("r2")}]},
        rmpl2_id("secret") + ".error": FORBIDDEN,
    }, [SUB])
    ev = run(snap, "rmpl.association-dangling")
    assert subjects(ev) == [assoc_id("gone")]
    assert ev.findings[0].evidence["absence_established_by"] == "404 ResourceNotFound on a read of its id"
    assert any(g.status == 403 and "secret" in g.scope for g in snap.coverage.gaps)


def test_dangling_evidence_names_the_covering_list(tmp_path: Path) -> None:
    """Absence from the list of the RMPL's own (scanned) subscription is the finding, and its evidence says so."""
    snap = scoped_snapshot(tmp_path, tenant_files([assoc("gone", rmpl_id("nope"))], []), None)
    ev = run(snap, "rmpl.association-dangling")
    assert subjects(ev) == [assoc_id("gone")]
    assert ev.findings[0].evidence["absence_established_by"] == \
        f"absent from the resourceManagementPrivateLinks list of subscription {SUB}"


def test_bare_guid_not_dangling_in_a_scoped_scan(tmp_path: Path) -> None:
    """A bare-GUID privateLink cannot be read by id: a scoped scan cannot prove it absent (a coverage gap says
    so), the full scan can."""
    files = tenant_files([assoc("unknown", "22222222-aaaa-bbbb-cccc-000000000002")], [])
    scoped = scoped_snapshot(tmp_path / "s", files, [SUB])
    assert run(scoped, "rmpl.association-dangling").findings == ()
    assert [g.code for g in scoped.coverage.gaps if g.scope.lower() == assoc_id("unknown")] == ["OutOfScope"]
    assert subjects(run(scoped_snapshot(tmp_path / "f", files, None), "rmpl.association-dangling")) == \
        [assoc_id("unknown")]
