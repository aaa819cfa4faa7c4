"""State store contract: one suite every backend must pass (SQLite now, Table Storage later).

The ``store`` fixture is parametrised over backends; a new backend adds one entry to BACKENDS and
runs the same tests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plmon.monitor.errors import InputError
from plmon.monitor.state.open import open_store
from plmon.monitor.state.sqlite import SCHEMA_VERSION, SqliteStore
from plmon.monitor.state.store import (
    AlertStatus,
    ChangeSet,
    ConflictError,
    FindingRecord,
    FindingState,
    OutboxRow,
    ScanRecord,
    StateStore,
    alert_id,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


from storekit import BACKENDS  # noqa: E402  (tests/kit/storekit.py: one entry per backend)


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    s = BACKENDS[request.param](tmp_path)
    yield s
    s.close()


def rec(check: str = "c.one", key: str = "/subscriptions/s/x", *, seq: int = 1,
        state: FindingState = FindingState.OPEN, at: datetime = T0) -> FindingRecord:
    return FindingRecord(check_id=check, resource_key=key, resource_id=key.upper(), state=state, severity="high",
                         first_seen=T0, last_seen=at, resolved_at=None, last_alert_at=at, seq=seq,
                         finding={"check_id": check, "resource_id": key.upper(), "evidence": {"a": [1, 2]}},
                         channels=("hook",))


def row(r: FindingRecord, kind: str = "opened", channel: str = "hook", at: datetime = T0) -> OutboxRow:
    return OutboxRow(alert_id=alert_id(r.check_id, r.resource_key, kind, r.seq, r.first_seen), channel=channel,
                     check_id=r.check_id, resource_key=r.resource_key, seq=r.seq, kind=kind, created_at=at,
                     payload={"kind": kind}, next_attempt_at=at)


def test_finding_round_trip(store: StateStore) -> None:
    """A finding written with its outbox row reads back field for field."""
    r = rec()
    store.apply(ChangeSet(findings=[(r, None)], outbox=[row(r)]))
    assert store.get_finding("c.one", "/subscriptions/s/x") == r
    assert store.findings(FindingState.OPEN) == [r]
    assert store.findings(FindingState.RESOLVED) == []
    assert [o.alert_id for o in store.outbox(AlertStatus.PENDING)] == [row(r).alert_id]


def test_findings_of_some_resources_and_open_counts(store: StateStore) -> None:
    """findings(resource_keys=...) returns exactly those resources' findings, by state too, in (check, key) order,
    also past one query's worth of keys; open_counts counts open findings by severity."""
    keys = [f"/subscriptions/s/r{i:02d}" for i in range(30)]
    recs = [rec(check, key, state=FindingState.OPEN if i % 3 else FindingState.RESOLVED)
            for i, key in enumerate(keys) for check in ("c.one", "c.two")]
    store.apply(ChangeSet(findings=[(r, None) for r in recs]))
    for wanted in (keys[:2], keys[::2], []):
        got = store.findings(resource_keys=wanted)
        assert got == sorted((r for r in recs if r.resource_key in wanted), key=lambda r: (r.check_id, r.resource_key))
        assert store.findings(FindingState.OPEN, resource_keys=wanted) == [
            r for r in got if r.state == FindingState.OPEN]
    assert store.open_counts() == {"high": sum(1 for r in recs if r.state == FindingState.OPEN)}


def test_conflict_writes_nothing(store: StateStore) -> None:
    """A stale expected sequence raises ConflictError and leaves neither the finding nor its alert."""
    r = rec()
    store.apply(ChangeSet(findings=[(r, None)]))
    r2 = rec(seq=2)
    with pytest.raises(ConflictError):
        store.apply(ChangeSet(findings=[(r2, None)], outbox=[row(r2)]))
    assert store.get_finding("c.one", "/subscriptions/s/x").seq == 1  # type: ignore[union-attr]
    assert store.outbox() == []


def test_outbox_insert_is_idempotent(store: StateStore) -> None:
    """Re-applying the same outbox row (same alert id and channel) queues it once."""
    r = rec()
    store.apply(ChangeSet(outbox=[row(r)]))
    store.apply(ChangeSet(outbox=[row(r)]))
    assert len(store.outbox()) == 1


def test_alert_ids_are_stable_and_distinct() -> None:
    """Alert ids depend only on (finding key, transition, sequence, first seen)."""
    a = alert_id("c", "/k", "opened", 1, T0)
    assert a == alert_id("c", "/k", "opened", 1, T0)
    assert len({a, alert_id("c", "/k", "opened", 2, T0), alert_id("c", "/k", "resolved", 1, T0),
                alert_id("c", "/k2", "opened", 1, T0), alert_id("c", "/k", "opened", 1, T0 + timedelta(1))}) == 5


def test_claim_respects_order_per_finding(store: StateStore) -> None:
    """A later alert of a finding is not claimed while an earlier one of the same channel is pending."""
    r1, r2 = rec(seq=1), rec(seq=2)
    store.apply(ChangeSet(outbox=[row(r1), row(r2, "resolved")]))
    first = store.claim_due(T0, timedelta(seconds=30))
    assert [o.seq for o in first] == [1]
    assert store.claim_due(T0, timedelta(seconds=30)) == []  # leased, and the second waits behind it
    store.mark_attempt_failed(first[0].alert_id, "hook", error="500", retry_at=T0 + timedelta(seconds=5))
    assert store.claim_due(T0 + timedelta(seconds=1), timedelta(seconds=30)) == []  # still backing off
    again = store.claim_due(T0 + timedelta(seconds=5), timedelta(seconds=30))
    assert [o.seq for o in again] == [1] and again[0].attempts == 1
    store.mark_delivered(again[0].alert_id, "hook", T0 + timedelta(seconds=6))
    assert [o.seq for o in store.claim_due(T0 + timedelta(seconds=6), timedelta(seconds=30))] == [2]


def test_claim_of_some_findings_leaves_the_backlog_and_keeps_their_order(store: StateStore) -> None:
    """``findings=`` claims only those findings' rows, whatever older backlog is due, and never a finding's later
    alert while an earlier one is pending (held by another pass or backing off)."""
    backlog = [row(rec(key=f"/subscriptions/s/b{i}")) for i in range(5)]
    hot1, hot2 = rec(key="/subscriptions/s/hot"), rec(key="/subscriptions/s/hot", seq=2)
    later = T0 + timedelta(seconds=10)
    store.apply(ChangeSet(outbox=[*backlog, row(hot1, at=later), row(hot2, "resolved", at=later)]))
    hot = [("c.one", "/subscriptions/s/hot")]
    first = store.claim_due(later, timedelta(seconds=30), findings=hot)
    assert [(o.resource_key, o.seq) for o in first] == [("/subscriptions/s/hot", 1)]
    assert store.claim_due(later, timedelta(seconds=30), findings=hot) == []  # seq 2 waits behind the lease
    assert store.claim_due(later, timedelta(seconds=30), findings=[("c.one", "/subscriptions/s/none")]) == []
    store.mark_delivered(first[0].alert_id, "hook", later)
    assert [o.seq for o in store.claim_due(later, timedelta(seconds=30), findings=hot)] == [2]
    rest = store.claim_due(later, timedelta(seconds=30))
    assert sorted(o.resource_key for o in rest) == sorted(o.resource_key for o in backlog)


def test_dead_letter_and_retry(store: StateStore) -> None:
    """A row with retry_at None goes to FAILED; retry_failed puts it back to pending, due now."""
    r = rec()
    store.apply(ChangeSet(outbox=[row(r)]))
    [o] = store.claim_due(T0, timedelta(seconds=30))
    store.mark_attempt_failed(o.alert_id, o.channel, error="refused", retry_at=None)
    [dead] = store.outbox(AlertStatus.FAILED)
    assert dead.last_error == "refused" and dead.attempts == 1
    later = T0 + timedelta(hours=1)
    assert store.retry_failed(later) == 1
    [back] = store.claim_due(later, timedelta(seconds=30))
    assert back.alert_id == o.alert_id and back.attempts == 0
    assert store.next_due() == later + timedelta(seconds=30)


def test_observations_keep_first_time(store: StateStore) -> None:
    """Observing a (subject, status) again keeps the first time it was seen."""
    store.observe([("/pe/1", "pending")], T0)
    store.observe([("/pe/1", "pending"), ("/pe/2", "approved")], T0 + timedelta(hours=5))
    obs = store.observations()
    assert obs[("/pe/1", "pending")] == T0
    assert obs[("/pe/2", "approved")] == T0 + timedelta(hours=5)
    assert store.observations([("/pe/2", "approved")]) == {("/pe/2", "approved"): T0 + timedelta(hours=5)}


def test_scan_history_since(store: StateStore) -> None:
    """Scan history returns rows at or after ``since``, oldest first, with their counts."""
    for h in range(3):
        store.apply(ChangeSet(scan=ScanRecord(at=T0 + timedelta(hours=h), subscriptions_scanned=2, gaps=h,
                                              by_check={"c.one": h}, by_severity={"high": h}, open_findings=h)))
    hist = store.scan_history(since=T0 + timedelta(hours=1))
    assert [s.gaps for s in hist] == [1, 2]
    assert hist[1].by_check == {"c.one": 2} and hist[1].by_severity == {"high": 2}


def test_prune_keeps_open_and_pending(store: StateStore) -> None:
    """Pruning drops old resolved findings, delivered alerts and scans, never open state."""
    old_open, old_resolved = rec("c.open"), rec("c.gone", state=FindingState.RESOLVED)
    old_resolved = replace(old_resolved, resolved_at=T0)
    store.apply(ChangeSet(findings=[(old_open, None), (old_resolved, None)],
                          outbox=[row(old_open), row(old_resolved, "resolved")],
                          scan=ScanRecord(T0, 1, 0, {}, {})))
    [o] = [x for x in store.claim_due(T0, timedelta(0)) if x.check_id == "c.gone"]
    store.mark_delivered(o.alert_id, o.channel, T0)
    assert store.prune(T0 + timedelta(days=1)) >= 3
    assert [f.check_id for f in store.findings()] == ["c.open"]
    assert [x.check_id for x in store.outbox()] == ["c.open"]
    assert store.scan_history() == []


def test_threads_share_one_store(store: StateStore) -> None:
    """Eight threads writing at once lose no observation and raise nothing."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                store.observe([(f"t{n}-{i}", "open")], T0)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(store.observations()) == {(f"t{n}-{i}", "open") for n in range(8) for i in range(50)}


# --- SQLite specifics -------------------------------------------------------------------------------

def test_sqlite_wal_and_schema_version(tmp_path: Path) -> None:
    """A file store is in WAL mode and stamped with the current schema version."""
    s = SqliteStore(tmp_path / "s.db")
    assert s.schema_version() == SCHEMA_VERSION
    s.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_sqlite_refuses_newer_schema(tmp_path: Path) -> None:
    """A database from a newer plmon is refused with one clear line, not corrupted."""
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(InputError, match="newer than this plmon"):
        SqliteStore(tmp_path / "s.db")


def test_sqlite_two_processes_share_file(tmp_path: Path) -> None:
    """Two store objects on one file (two processes) see each other's writes."""
    a, b = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    a.apply(ChangeSet(findings=[(rec(), None)]))
    assert b.get_finding("c.one", "/subscriptions/s/x") is not None
    a.close()
    b.close()


def test_open_store_rejects_bad_urls(tmp_path: Path) -> None:
    """Unknown schemes and missing folders are input errors naming state.url."""
    with pytest.raises(InputError, match="unsupported scheme"):
        open_store("mysql://x/y")
    with pytest.raises(InputError, match=r"state\.url"):
        open_store(f"sqlite:///{tmp_path}/missing/dir/s.db")
    with pytest.raises(InputError, match="not a URL"):
        open_store("state.db")
