"""connection.* checks (checks.md, Connections): failing case, passing neighbour and subject rule of each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from checkkit import run, snapshot_of, subjects, with_observations
from tenantkit import SUB, endpoint, net, provider_connection, storage_account, sub_list, write_tenant

from plmon.checks.finding import Severity

SUB2 = "22222222-2222-2222-2222-222222222222"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PE_LIST = sub_list("privateEndpoints")
PLS_LIST = sub_list("privateLinkServices")


def pe_id(name: str, sub: str = SUB) -> str:
    return f"{net(sub)}/privateEndpoints/{name}"


def pls(name: str, connections: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    pid = f"{net()}/privateLinkServices/{name}"
    return {"id": pid, "name": name, "type": "Microsoft.Network/privateLinkServices",
            "properties": {"provisioningState": "Succeeded", "privateEndpointConnections": connections,
                           "visibility": {"subscriptions": []}, "autoApproval": {"subscriptions": []}, **props}}


def storage_with(name: str, pe: str, status: str, **kw: Any) -> dict[str, Any]:
    sid = storage_account(name)["id"]
    return storage_account(name, connections=[provider_connection(sid, pe, status=status, **kw)])


# --- connection.pending --------------------------------------------------------------------------

def test_pending_both_ends_is_one_finding_on_provider_connection(tmp_path: Path) -> None:
    """Pending seen from endpoint and provider gives ONE finding whose subject is the provider connection."""
    st = storage_with("st1", pe_id("pe1"), "Pending")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Pending", manual=True)]},
                                  st["id"]: st})
    ev = run(snap, "connection.pending")
    conn_id = st["properties"]["privateEndpointConnections"][0]["id"]
    assert subjects(ev) == [conn_id.lower()]
    f = ev.findings[0]
    assert f.severity == Severity.MEDIUM
    assert f.evidence["seen_from"] == "both" and f.evidence["connection_type"] == "manual"
    assert "age" in f.evidence and "unknown" in f.evidence["age"]
    assert f"approve --id {conn_id} " in f.remediation


def test_pending_consumer_only_subject_is_endpoint(tmp_path: Path) -> None:
    """When the provider side is not visible, the pending finding's subject is the private endpoint."""
    st = storage_account("st1")  # readable, but lists no connection for pe1
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Pending")]},
                                  st["id"]: st})
    ev = run(snap, "connection.pending")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert ev.findings[0].evidence["seen_from"] == "consumer"


def test_pending_provider_only_subject_is_provider_connection(tmp_path: Path) -> None:
    """A Pending request from an endpoint plmon cannot see (another tenant) is reported on the PLS side."""
    foreign = pe_id("theirs", SUB2)
    p = pls("pls1", [provider_connection(f"{net()}/privateLinkServices/pls1", foreign, status="Pending")])
    snap = snapshot_of(tmp_path, {PLS_LIST: {"value": [p]}})
    ev = run(snap, "connection.pending")
    assert subjects(ev) == [p["properties"]["privateEndpointConnections"][0]["id"].lower()]
    assert ev.findings[0].evidence["seen_from"] == "provider"


def test_approved_is_not_pending_and_provider_status_wins(tmp_path: Path) -> None:
    """Approved passes; a consumer entry still Pending while the provider says Approved is not Pending."""
    st = storage_with("st1", pe_id("pe1"), "Approved")
    st2 = storage_account("st2")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Pending"),
                                                      endpoint("pe2", st2["id"], status="Approved")]},
                                  st["id"]: st, st2["id"]: st2})
    assert run(snap, "connection.pending").findings == ()


def test_pending_status_is_case_insensitive_and_unknown_status_is_not_pending(tmp_path: Path) -> None:
    """'pending' in lower case counts; an unknown status such as 'Disconnecting' does not."""
    st = storage_account("st1")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="pending"),
                                                      endpoint("pe2", st["id"], status="Disconnecting")]},
                                  st["id"]: st})
    assert subjects(run(snap, "connection.pending")) == [pe_id("pe1").lower()]


def test_pending_missing_manual_array_does_not_matter(tmp_path: Path) -> None:
    """An endpoint without a manualPrivateLinkServiceConnections key is read from its other array."""
    st = storage_account("st1")
    pe = endpoint("pe1", st["id"], status="Pending")
    del pe["properties"]["manualPrivateLinkServiceConnections"]
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [pe]}, st["id"]: st})
    ev = run(snap, "connection.pending")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert ev.findings[0].evidence["connection_type"] == "automatic"


def _pending_pair(tmp_path: Path) -> tuple[Any, str]:
    st = storage_with("st1", pe_id("pe1"), "Pending")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Pending")]},
                                  st["id"]: st})
    return snap, st["properties"]["privateEndpointConnections"][0]["id"]


def test_pending_escalates_to_high_past_max_age(tmp_path: Path) -> None:
    """A connection first seen Pending more than 72 h before the snapshot is high, with its age in evidence."""
    snap, conn = _pending_pair(tmp_path)
    old = with_observations(snap, {(conn.lower(), "pending"): NOW - timedelta(hours=73)})
    f = run(old, "connection.pending").findings[0]
    assert f.severity == Severity.HIGH
    assert f.evidence["age_hours"] == 73.0 and f.evidence["pending_max_age_hours"] == 72.0


def test_pending_younger_than_max_age_stays_medium(tmp_path: Path) -> None:
    """Seen Pending 71 h ago: still medium (age known, below the threshold)."""
    snap, conn = _pending_pair(tmp_path)
    young = with_observations(snap, {(conn.lower(), "pending"): NOW - timedelta(hours=71)})
    f = run(young, "connection.pending").findings[0]
    assert f.severity == Severity.MEDIUM and f.evidence["age_hours"] == 71.0


def test_pending_max_age_parameter_and_severity_override(tmp_path: Path) -> None:
    """pending_max_age: 24h escalates a 25 h old request; a configured base severity is honoured."""
    snap, conn = _pending_pair(tmp_path)
    aged = with_observations(snap, {(conn.lower(), "pending"): NOW - timedelta(hours=25)})
    assert run(aged, "connection.pending", params={"pending_max_age": timedelta(hours=24)}
               ).findings[0].severity == Severity.HIGH
    assert run(aged, "connection.pending").findings[0].severity == Severity.MEDIUM
    assert run(snap, "connection.pending", severity=Severity.LOW).findings[0].severity == Severity.LOW


# --- connection.rejected / connection.disconnected -----------------------------------------------

def test_rejected_subject_is_endpoint_once(tmp_path: Path) -> None:
    """Rejected on both ends is one finding on the endpoint; its Approved neighbour passes."""
    st = storage_with("st1", pe_id("pe1"), "Rejected")
    ok = storage_with("st2", pe_id("pe2"), "Approved")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Rejected"),
                                                      endpoint("pe2", ok["id"])]},
                                  st["id"]: st, ok["id"]: ok})
    ev = run(snap, "connection.rejected")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert ev.findings[0].remediation == f"az network private-endpoint delete --ids {pe_id('pe1')}"


def test_rejected_by_provider_while_consumer_lags(tmp_path: Path) -> None:
    """The provider side is the authority: Rejected there, Pending on the endpoint, is rejected (not pending)."""
    st = storage_with("st1", pe_id("pe1"), "Rejected")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Pending")]},
                                  st["id"]: st})
    assert subjects(run(snap, "connection.rejected")) == [pe_id("pe1").lower()]
    assert run(snap, "connection.pending").findings == ()


def test_disconnected_subject_is_endpoint(tmp_path: Path) -> None:
    """Disconnected gives one finding on the endpoint; a Rejected neighbour is not disconnected."""
    st = storage_account("st1")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], status="Disconnected"),
                                                      endpoint("pe2", st["id"], status="Rejected")]},
                                  st["id"]: st})
    assert subjects(run(snap, "connection.disconnected")) == [pe_id("pe1").lower()]
    assert subjects(run(snap, "connection.rejected")) == [pe_id("pe2").lower()]


def test_two_rejected_connections_on_one_endpoint_are_one_finding(tmp_path: Path) -> None:
    """An endpoint with two Rejected connections (auto and manual) has one rejected finding."""
    st = storage_account("st1")
    pe = endpoint("pe1", st["id"], status="Rejected")
    manual = endpoint("pe1", st["id"], status="Rejected", manual=True)
    key = "manualPrivateLinkServiceConnections"
    pe["properties"][key] = manual["properties"][key]
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [pe]}, st["id"]: st})
    ev = run(snap, "connection.rejected")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert len(ev.findings[0].evidence["connections"]) == 2


# --- connection.actions-required -----------------------------------------------------------------

def test_actions_required_on_consumer_side(tmp_path: Path) -> None:
    """actionsRequired set on the endpoint's entry fails on the endpoint; 'None' passes."""
    st = storage_account("st1")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], actions_required="Recreate"),
                                                      endpoint("pe2", st["id"], actions_required="None")]},
                                  st["id"]: st})
    ev = run(snap, "connection.actions-required")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert ev.findings[0].severity == Severity.LOW


def test_actions_required_storage_spelling_on_provider_side(tmp_path: Path) -> None:
    """Storage's 'actionRequired' on the provider connection fails, subject still the endpoint."""
    st = storage_with("st1", pe_id("pe1"), "Approved", storage_spelling=True, actions_required="Reconnect")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"])]}, st["id"]: st})
    ev = run(snap, "connection.actions-required")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert ev.findings[0].evidence["connections"][0]["actions_required"] == {"provider": "Reconnect"}


def test_actions_required_both_sides_one_finding(tmp_path: Path) -> None:
    """Set on both ends of one connection: one finding; 'none' in any case passes."""
    st = storage_with("st1", pe_id("pe1"), "Approved", actions_required="Recreate")
    ok = storage_with("st2", pe_id("pe2"), "Approved", storage_spelling=True, actions_required="none")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", st["id"], actions_required="Recreate"),
                                                      endpoint("pe2", ok["id"], actions_required="NONE")]},
                                  st["id"]: st, ok["id"]: ok})
    assert subjects(run(snap, "connection.actions-required")) == [pe_id("pe1").lower()]


# --- connection.target-missing -------------------------------------------------------------------

def test_target_missing_404_paas(tmp_path: Path) -> None:
    """A PaaS target that answers 404 fails on the endpoint; an existing target passes."""
    gone = storage_account("gone")["id"]
    st = storage_account("st1")
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", gone), endpoint("pe2", st["id"])]},
                                  st["id"]: st})
    ev = run(snap, "connection.target-missing")
    assert subjects(ev) == [pe_id("pe1").lower()]
    assert ev.findings[0].evidence["targets"][0]["read_result"].startswith("404")


def test_target_missing_pls_absent_from_covering_list(tmp_path: Path) -> None:
    """A PLS target absent from its subscription's (read) list is missing; one present passes."""
    present = pls("here", [])
    snap = snapshot_of(tmp_path, {
        PE_LIST: {"value": [endpoint("pe1", f"{net()}/privateLinkServices/gone"),
                            endpoint("pe2", present["id"].upper())]},
        PLS_LIST: {"value": [present]}})
    assert subjects(run(snap, "connection.target-missing")) == [pe_id("pe1").lower()]


def test_target_unreadable_is_a_gap_not_missing(tmp_path: Path) -> None:
    """A 403 target (or a PLS whose list was forbidden) is a coverage gap, never target-missing."""
    locked = storage_account("locked", sub=SUB2)["id"]
    pls_id = f"{net()}/privateLinkServices/unknown"
    write_tenant(tmp_path, {PE_LIST: {"value": [endpoint("pe1", locked), endpoint("pe2", pls_id)]}})
    for path in (locked, "/" + PLS_LIST, pls_id):
        f = tmp_path / "arm" / (path.strip("/") + ".error.json")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text('{"status": 403, "error": {"code": "AuthorizationFailed", "message": "x"}}')
    snap = snapshot_of(tmp_path)
    assert run(snap, "connection.target-missing").findings == ()
    scopes = {g.scope.lower() for g in snap.coverage.gaps}
    assert {locked.lower(), pls_id.lower(), f"/subscriptions/{SUB}"} <= scopes


# --- SQL's Ready provisioning state ----------------------------------------------------------------

def test_sql_ready_approved_connection_passes_every_connection_check(tmp_path: Path) -> None:
    """A SQL provider connection with provisioningState 'Ready' and Approved yields no connection finding."""
    sql = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Sql/servers/sql1"
    conn = provider_connection(sql, pe_id("pe1"))
    conn["properties"]["provisioningState"] = "Ready"
    body = {"id": sql, "name": "sql1", "type": "Microsoft.Sql/servers",
            "properties": {"state": "Ready", "publicNetworkAccess": "Disabled", "privateEndpointConnections": [conn]}}
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", sql, group_ids=("sqlServer",))]}, sql: body})
    conns = snap.provider_connections_by_endpoint[pe_id("pe1").lower()]
    assert conns[0].provisioning_state == "Ready" and conns[0].approved
    for cid in ("connection.pending", "connection.rejected", "connection.disconnected",
                "connection.actions-required", "connection.target-missing", "endpoint.provisioning-failed"):
        assert run(snap, cid).findings == (), cid


def test_target_missing_tolerates_a_list_with_bare_guid_ids(tmp_path: Path) -> None:
    """An RMPL listed under a bare GUID id (as Microsoft's list example does) is not 'missing' for an
    endpoint that names its full id: absence is not proven, so no target-missing finding."""
    from tenantkit import SUB, endpoint, sub_list, write_tenant

    from plmon.monitor.collect.recorded import RecordedTenant
    from plmon.monitor.config import load_config
    from plmon.monitor.scan import run_scan

    rmpl_full = (f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Authorization/"
                 "resourceManagementPrivateLinks/my-rmpl")
    folder = write_tenant(tmp_path / "t", {
        sub_list("privateEndpoints"): {"value": [endpoint("pe-arm", rmpl_full, group_ids=("ResourceManagement",))]},
        sub_list("resourceManagementPrivateLinks", provider="Microsoft.Authorization"): {"value": [
            {"id": "00000000-0000-0000-0000-000000000000", "name": "my-rmpl",
             "type": "Microsoft.Authorization/resourceManagementPrivateLinks", "properties": {}}]},
    })
    tenant = RecordedTenant(folder)
    result = run_scan(tenant, load_config(None), manifest=tenant.manifest)
    assert "connection.target-missing" not in {f.check_id for f in result.evaluation.findings}


def test_alias_connection_pairs_with_its_private_link_service(tmp_path: Path) -> None:
    """An endpoint connected by the alias of a PLS in the snapshot is one connection with the PLS's entry:
    Pending gives ONE finding, on the provider connection, and connection.target-missing never fires."""
    alias = "svc.6f3e1d2c-0000-4000-8000-00000000abcd.westeurope.azure.privatelinkservice"
    service = pls("svc", [], alias=alias)
    service["properties"]["privateEndpointConnections"] = [
        provider_connection(service["id"], pe_id("pe1"), status="Pending")]
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", alias, status="Pending", manual=True,
                                                               group_ids=())]},
                                  PLS_LIST: {"value": [service]}})
    ev = run(snap, "connection.pending")
    conn_id = service["properties"]["privateEndpointConnections"][0]["id"]
    assert subjects(ev) == [conn_id.lower()]
    assert ev.findings[0].evidence["seen_from"] == "both"
    assert run(snap, "connection.target-missing").findings == ()


# --- connection.target-missing only on evidence (issue 12, items 1 and 2) --------------------------

def test_target_missing_in_a_scoped_scan_reads_out_of_scope_targets_by_id(tmp_path: Path) -> None:
    """A scan scoped to the endpoints' subscription reads PLS targets in another subscription by id: one held
    in its list passes, a 403 or a 404 SubscriptionNotFound (another tenant's subscription) is a gap, an alias
    is never judged; only a 404 on the id is missing, with evidence saying so."""
    from plmon.monitor.collect.builder import build_snapshot
    from plmon.monitor.collect.plan import collect
    from plmon.monitor.collect.recorded import RecordedTenant

    other = f"{net(SUB2)}/privateLinkServices"
    listed = {**pls("p-listed", []), "id": f"{other}/p-listed"}
    write_tenant(tmp_path, {
        PE_LIST: {"value": [endpoint("pe-listed", f"{other}/p-listed"), endpoint("pe-gone", f"{other}/p-gone"),
                            endpoint("pe-locked", f"{other}/p-locked"),
                            endpoint("pe-foreign", f"{net('33333333-3333-3333-3333-333333333333')}/"
                                     "privateLinkServices/p-x"),
                            endpoint("pe-alias", "pls-partner.6a1f5b2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b.westeurope."
                                     "azure.privatelinkservice")]},
        sub_list("privateLinkServices", SUB2): {"value": [listed]},
        f"{other}/p-locked.error": {"status": 403, "error": {"code": "AuthorizationFailed"}},
        f"{net('33333333-3333-3333-3333-333333333333')}/privateLinkServices/p-x.error":
            {"status": 404, "error": {"code": "SubscriptionNotFound"}},
    }, subscriptions=[SUB, SUB2])
    reader = RecordedTenant(tmp_path)
    snap = build_snapshot(collect(reader, manifest=reader.manifest, workers=2, subscriptions=[SUB]))
    ev = run(snap, "connection.target-missing")
    assert subjects(ev) == [pe_id("pe-gone").lower()]
    assert ev.findings[0].evidence["targets"][0]["read_result"] == "404 ResourceNotFound on a read of its id"
    gaps = {g.scope.lower() for g in snap.coverage.gaps}
    assert {f"{other}/p-locked".lower(), f"{net('33333333-3333-3333-3333-333333333333')}/"
            "privateLinkServices/p-x".lower()} <= gaps


def test_target_missing_evidence_names_the_covering_list(tmp_path: Path) -> None:
    """Absence from the PLS list of the target's scanned subscription names that list and subscription."""
    snap = snapshot_of(tmp_path, {PE_LIST: {"value": [endpoint("pe1", f"{net()}/privateLinkServices/gone")]},
                                  PLS_LIST: {"value": []}})
    ev = run(snap, "connection.target-missing")
    assert ev.findings[0].evidence["targets"][0]["read_result"] == \
        f"absent from the Microsoft.Network/privateLinkServices list of subscription {SUB}"
