"""Finding lifecycle on real scans of recorded tenants: open, remind, waive, expire, resolve, targeted scope."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from tenantkit import endpoint, storage_account, sub_list, write_tenant

from plmon.alerts.outbox import Route
from plmon.checks.finding import Severity
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.lifecycle.transitions import apply_scan, apply_targeted
from plmon.monitor.scan import ScanResult, run_scan
from plmon.monitor.state.open import open_store
from plmon.monitor.state.store import AlertStatus, FindingState, StateStore

ROUTES = (Route("hook", Severity.LOW, ("connection.*",)),)


def scan(folder: Path, store: StateStore, *, pe1: bool = True, at: str = "2026-11-01T12:00:00Z",
         config: dict[str, Any] | None = None, forbidden: bool = False) -> ScanResult:
    st, st2 = storage_account("st1"), storage_account("st2")
    pes = [endpoint("pe2", st2["id"], status="Rejected")]
    if pe1:
        pes.append(endpoint("pe1", st["id"], status="Pending"))
    if folder.exists():
        shutil.rmtree(folder)
    key = sub_list("privateEndpoints") + (".error" if forbidden else "")
    body: Any = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}} if forbidden \
        else {"value": pes}
    write_tenant(folder, {key: body, st["id"]: st, st2["id"]: st2}, recorded_at=at)
    reader = RecordedTenant(folder)
    return run_scan(reader, parse_config(config or {}), manifest=reader.manifest, observations=observer(store))


def conn(store: StateStore) -> dict[str, FindingState]:
    return {f.resource_id.rsplit("/", 1)[-1] + ":" + f.check_id.split(".")[1]: f.state
            for f in store.findings() if f.check_id.startswith("connection.")}


def test_open_then_quiet_then_reminder(tmp_path: Path) -> None:
    """A finding opens once, a rescan within the interval is silent, after it a reminder is queued."""
    store = open_store("sqlite:///:memory:")
    t = scan(tmp_path / "t", store)
    kinds = [(x.kind, x.check_id) for x in apply_scan(store, t, routes=ROUTES) if x.check_id.startswith("conn")]
    assert sorted(kinds) == [("opened", "connection.pending"), ("opened", "connection.rejected")]
    again = scan(tmp_path / "t", store, at="2026-11-01T18:00:00Z")
    assert [x for x in apply_scan(store, again, routes=ROUTES) if x.check_id.startswith("conn")] == []
    day = scan(tmp_path / "t", store, at="2026-11-02T12:30:00Z")
    rem = [x for x in apply_scan(store, day, routes=ROUTES, reminder_interval=timedelta(hours=24))
           if x.check_id.startswith("conn")]
    assert sorted(x.kind for x in rem) == ["reminder", "reminder"] and all(x.alerts == 1 for x in rem)
    assert [r.kind for r in store.outbox(AlertStatus.PENDING)].count("reminder") == 2


def test_scan_history_recorded(tmp_path: Path) -> None:
    """Each applied scan leaves a history row with coverage and counts by check and severity."""
    store = open_store("sqlite:///:memory:")
    apply_scan(store, scan(tmp_path / "t", store), routes=ROUTES)
    apply_scan(store, scan(tmp_path / "t", store, forbidden=True, at="2026-11-01T13:00:00Z"), routes=ROUTES)
    first, second = store.scan_history()
    assert first.by_check["connection.pending"] == 1 and first.gaps == 0 and first.subscriptions_scanned == 1
    assert second.gaps >= 1 and second.open_findings == first.open_findings


def test_waiver_silences_and_expiry_reopens(tmp_path: Path) -> None:
    """A waived finding queues no alert; when the waiver expires it re-opens with an opened alert."""
    store = open_store("sqlite:///:memory:")
    apply_scan(store, scan(tmp_path / "t", store), routes=ROUTES)
    before = len(store.outbox())
    waiver = {"waivers": [{"check_id": "connection.rejected", "resource_pattern": "*/privateEndpoints/pe2",
                           "reason": "known", "expires": "2026-12-01"}]}
    t = scan(tmp_path / "t", store, at="2026-11-01T13:00:00Z", config=waiver)
    [w] = [x for x in apply_scan(store, t, routes=ROUTES) if x.check_id.startswith("conn")]
    assert (w.kind, w.alerts) == ("waived", 0) and len(store.outbox()) == before
    assert conn(store)["pe2:rejected"] == FindingState.WAIVED
    expired = scan(tmp_path / "t", store, at="2026-12-02T12:00:00Z", config=waiver)
    trans = {x.kind for x in apply_scan(store, expired, routes=ROUTES) if x.check_id == "connection.rejected"}
    assert trans == {"reopened"}
    assert conn(store)["pe2:rejected"] == FindingState.OPEN
    assert store.outbox()[-1].kind == "opened"


def test_gap_holds_and_deletion_resolves(tmp_path: Path) -> None:
    """A 403 on the endpoint list resolves nothing; a later full read without pe1 resolves it."""
    store = open_store("sqlite:///:memory:")
    apply_scan(store, scan(tmp_path / "t", store), routes=ROUTES)
    held = apply_scan(store, scan(tmp_path / "t", store, forbidden=True, at="2026-11-01T13:00:00Z"), routes=ROUTES)
    assert [x for x in held if x.kind == "resolved"] == []
    gone = apply_scan(store, scan(tmp_path / "t", store, pe1=False, at="2026-11-01T14:00:00Z"), routes=ROUTES)
    assert [(x.kind, x.check_id) for x in gone if x.check_id.startswith("conn")] == [("resolved", "connection.pending")]
    assert conn(store) == {"pe1:pending": FindingState.RESOLVED, "pe2:rejected": FindingState.OPEN}
    [resolved] = [r for r in store.outbox() if r.kind == "resolved"]
    assert resolved.payload["state"] == "resolved" and resolved.payload["resolved_at"]


def test_targeted_apply_resolves_only_in_scope(tmp_path: Path) -> None:
    """A targeted re-run resolves only its (check, resource) scope, whatever else it did not produce."""
    store = open_store("sqlite:///:memory:")
    apply_scan(store, scan(tmp_path / "t", store), routes=ROUTES)
    partial = scan(tmp_path / "t", store, pe1=False, at="2026-11-01T14:00:00Z")
    pe1 = next(f.resource_key for f in store.findings() if f.check_id == "connection.pending")
    out = apply_targeted(store, partial.snapshot, partial.evaluation, check_ids=["connection.rejected"],
                         resource_keys=[pe1], routes=ROUTES)
    assert [x for x in out if x.kind == "resolved"] == []  # pending is out of the check scope
    out = apply_targeted(store, partial.snapshot, partial.evaluation, check_ids=["connection.pending"],
                         resource_keys=[pe1], routes=ROUTES)
    assert [(x.kind, x.check_id) for x in out if x.kind == "resolved"] == [("resolved", "connection.pending")]
    assert sum(1 for f in store.findings(FindingState.RESOLVED)) == 1
    assert store.scan_history() != [] and len(store.scan_history()) == 1  # targeted runs add no history row


def test_reapplying_same_scan_is_idempotent(tmp_path: Path) -> None:
    """Applying one scan result twice queues its alerts once."""
    store = open_store("sqlite:///:memory:")
    t = scan(tmp_path / "t", store)
    apply_scan(store, t, routes=ROUTES)
    n = len(store.outbox())
    assert apply_scan(store, t, routes=ROUTES) == [] and len(store.outbox()) == n
