"""Large findings in Table Storage: a hub firewall's finding that lists hundreds of endpoints opens and resolves with
its alerts, though it is larger than one entity (1 MiB) and, with its alert rows, than one transaction (4 MiB)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azurite
import pytest
from netkit import Net

from plmon.alerts.outbox import Route
from plmon.checks.finding import Severity
from plmon.checks.registry import all_checks
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.lifecycle.transitions import apply_scan
from plmon.monitor.scan import ScanResult, run_scan
from plmon.monitor.state.open import open_store
from plmon.monitor.state.store import AlertStatus, ChangeSet, FindingRecord, FindingState, OutboxRow, alert_id
from plmon.monitor.state.tables import TablesStore

ENV = "PLMON_TEST_AZURITE"
CHANNELS = (Route("hook", Severity.LOW, ("route.*",)), Route("slack", Severity.LOW, ("route.*",)),
            Route("teams", Severity.LOW, ("route.*",)))
ENDPOINTS = 600
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def rec(key: str, seq: int = 1, finding: dict[str, Any] | None = None) -> FindingRecord:
    return FindingRecord(check_id="c.one", resource_key=key, resource_id=key, state=FindingState.OPEN, severity="high",
                         first_seen=T0, last_seen=T0, resolved_at=None, last_alert_at=T0, seq=seq,
                         finding=finding or {"k": key}, channels=("hook",))


def row(r: FindingRecord, channel: str, payload: dict[str, Any]) -> OutboxRow:
    return OutboxRow(alert_id=alert_id(r.check_id, r.resource_key, "opened", r.seq, r.first_seen), channel=channel,
                     check_id=r.check_id, resource_key=r.resource_key, seq=r.seq, kind="opened", created_at=T0,
                     payload=payload, next_attempt_at=T0)


@pytest.fixture
def store() -> Iterator[TablesStore]:
    s = open_store(f"azuretables:///{azurite.unique_prefix()}?connection_string_env={ENV}",
                   environ={ENV: azurite.connection_string()})
    assert isinstance(s, TablesStore)
    yield s
    s.drop_tables()
    s.close()


def hub(snat: str | None) -> Net:
    """A hub firewall every spoke client reaches the spoke's endpoints through (a UDR for the whole spoke, route
    table network policies on): without SNAT to private ranges, one route.nva-missing-snat finding names them all."""
    n = Net()
    n.vnet("hub", "10.0.0.0/16").subnet("hub", "AzureFirewallSubnet", "10.0.1.0/24")
    n.vnet("spoke", "10.2.0.0/16").subnet("spoke", "app", "10.2.0.0/24", route_table="rt-spoke")
    for s in range(ENDPOINTS // 250 + 1):
        n.subnet("spoke", f"pe{s}", f"10.2.{10 + s}.0/24", policy="Enabled")
    n.peer("hub", "spoke")
    n.firewall("fw-hub", "10.0.1.4", snat=snat)
    n.route_table("rt-spoke", ("to-fw", "10.2.0.0/16", "VirtualAppliance", "10.0.1.4"))
    for i in range(ENDPOINTS):
        n.endpoint(f"pe{i}", n.storage(f"st{i}", f"pe{i}"), vnet="spoke", subnet=f"pe{i // 250}",
                   ip=f"10.2.{10 + i // 250}.{4 + i % 250}", zones=[])
    return n


def scan(folder: Path, snat: str | None, store: TablesStore) -> ScanResult:
    hub(snat).write(folder)
    reader = RecordedTenant(folder)
    # Only the route checks: the endpoints' other findings (a Table round trip each) would only slow the test down.
    only_routes = {cid: {"enabled": False} for cid in all_checks() if not cid.startswith("route.")}
    return run_scan(reader, parse_config({"checks": only_routes}), manifest=reader.manifest,
                    observations=observer(store))


def test_hub_firewall_finding_opens_and_resolves_with_every_alert(store: TablesStore, tmp_path: Path) -> None:
    """The 600-endpoint SNAT finding opens and then resolves, each with one alert per channel; nothing is lost."""
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    opened = apply_scan(store, scan(tmp_path / "a", None, store), now=t0, routes=CHANNELS)
    assert [(x.kind, x.alerts) for x in opened if x.check_id == "route.nva-missing-snat"] == [("opened", 3)]
    [rec] = [r for r in store.findings() if r.check_id == "route.nva-missing-snat"]
    assert rec.state is FindingState.OPEN and rec.resource_key.endswith("/azurefirewalls/fw-hub")
    assert len(json.dumps(rec.finding)) > 200_000  # kept in body rows, not in the finding's row
    resolved = apply_scan(store, scan(tmp_path / "b", "255.255.255.255/32", store), now=t0 + timedelta(hours=1),
                          routes=CHANNELS)
    assert [(x.kind, x.alerts) for x in resolved if x.check_id == "route.nva-missing-snat"] == [("resolved", 3)]
    rows = [o for o in store.outbox(AlertStatus.PENDING) if o.check_id == "route.nva-missing-snat"]
    assert sorted((o.kind, o.channel) for o in rows) == sorted(
        (k, c.channel) for k in ("opened", "resolved") for c in CHANNELS)
    assert all(o.payload["finding"]["check_id"] == "route.nva-missing-snat" for o in rows)
    wall = datetime.now(UTC) + timedelta(minutes=1)  # alerts are due on the wall clock, not the scan's
    claimed = store.claim_due(wall, timedelta(minutes=5),
                              findings=[("route.nva-missing-snat", rec.resource_key)])
    for o in claimed:
        store.mark_delivered(o.alert_id, o.channel, wall)
    assert len(claimed) == 3 and {o.kind for o in claimed} == {"opened"}  # a finding's alerts go out in order
    assert {o.kind for o in store.claim_due(wall, timedelta(minutes=5))} == {"resolved"}


def test_no_entity_exceeds_the_service_limits(store: TablesStore) -> None:
    """Every stored row of a 1.2M-character finding and its three alert rows fits one entity (1 MiB of UTF-16);
    Azurite does not refuse larger entities, Table Storage does."""
    big = {"endpoints": [{"id": f"/subscriptions/s/providers/x/privateEndpoints/pe{i}", "snat": "none" * 20}
                         for i in range(10_000)]}
    r = rec("/k/huge", finding=big)
    store.apply(ChangeSet(findings=[(r, None)], outbox=[row(r, c, big) for c in ("hook", "slack", "teams")]))
    assert store.get_finding("c.one", "/k/huge") == r
    assert [o.payload for o in store.outbox()] == [big] * 3
    table = store.service.get_table_client(f"{store.prefix}state")
    sizes = [sum(2 * len(v) for v in e.values() if isinstance(v, str)) for e in table.list_entities()]
    assert max(sizes) < 1024 * 1024 and len(sizes) >= 4 + 1  # bodies stored apart from the rows that name them


def test_open_counts_reads_no_body(store: TablesStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting open findings (after every event) reads the severity column, never a large finding's body."""
    big = {"endpoints": [f"pe{i}" * 30 for i in range(5_000)]}
    store.apply(ChangeSet(findings=[(rec("/k/count", finding=big), None), (rec("/k/small"), None)]))

    def no_body(*_: Any) -> Any:
        raise AssertionError("a body was read to count findings")

    monkeypatch.setattr(store, "_get_value", no_body)
    assert store.open_counts() == {"high": 2}


def test_rewriting_the_same_finding_writes_no_new_body(store: TablesStore) -> None:
    """The body is named by its content: a finding written again unchanged (its last_seen moved) adds no row."""
    big = {"endpoints": [f"pe{i}" * 30 for i in range(5_000)]}
    r = rec("/k/same", finding=big)
    store.apply(ChangeSet(findings=[(r, None)]))
    table = store.service.get_table_client(f"{store.prefix}state")
    before = {e["RowKey"]: e.metadata["etag"] for e in table.list_entities() if e["RowKey"].startswith("b-")}
    r2 = dataclasses.replace(r, seq=2, last_seen=r.last_seen + timedelta(hours=1))
    store.apply(ChangeSet(findings=[(r2, 1)]))
    after = {e["RowKey"]: e.metadata["etag"] for e in table.list_entities() if e["RowKey"].startswith("b-")}
    assert before and after == before and store.get_finding("c.one", "/k/same") == r2


def test_prune_removes_only_bodies_nothing_refers_to(store: TablesStore) -> None:
    """After a finding's evidence changed, prune drops the old body once past the cut and keeps the current one."""
    r = rec("/k/prune", finding={"endpoints": [f"old{i}" * 30 for i in range(5_000)]})
    store.apply(ChangeSet(findings=[(r, None)]))
    r2 = dataclasses.replace(r, seq=2, finding={"endpoints": [f"new{i}" * 30 for i in range(5_000)]})
    store.apply(ChangeSet(findings=[(r2, 1)]))
    table = store.service.get_table_client(f"{store.prefix}state")
    digests = {e["digest"] for e in table.list_entities() if e["RowKey"].startswith("b-")}
    assert len(digests) == 2
    store.prune(datetime.now(UTC) + timedelta(minutes=1))  # the finding is open: it stays, and so does its body
    left = {e["digest"] for e in table.list_entities() if e["RowKey"].startswith("b-")}
    assert len(left) == 1 and store.get_finding("c.one", "/k/prune") == r2
