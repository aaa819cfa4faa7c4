"""Observations on Table Storage in bulk, against a real Azurite: a few requests for hundreds of subjects, no
widening lost to a writer racing the bulk read, and the first time seen kept exactly as row by row."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import azurite
import pytest
from azure.data.tables import TableEntity, TableServiceClient

from plmon.monitor.state.store import iso
from plmon.monitor.state.tables import TablesStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
N = 600
H1, H2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)


class Counted:
    """A store whose every HTTP request to Table Storage is counted (a ``raw_request_hook`` on its own client)."""

    def __init__(self, prefix: str) -> None:
        self.requests = 0
        service = TableServiceClient.from_connection_string(azurite.connection_string(),
                                                            raw_request_hook=self._count)
        self.store = TablesStore(service, prefix)

    def _count(self, _request: Any) -> None:
        self.requests += 1

    def counting(self) -> int:
        """Start counting from zero; returns the count so far."""
        n, self.requests = self.requests, 0
        return n


@pytest.fixture
def counted() -> Iterator[Counted]:
    c = Counted(azurite.unique_prefix())
    yield c
    c.store.drop_tables()
    c.store.close()


def _pairs(n: int = N) -> list[tuple[str, str]]:
    return [(f"/subscriptions/s/resourcegroups/g/providers/microsoft.network/privateendpoints/pe{i}", "pending")
            for i in range(n)]


def _partitions(pairs: Collection[tuple[str, str]]) -> int:
    return len({sha256(f"{s}\n{t}".encode()).hexdigest()[:2] for s, t in pairs})


def _row(store: TablesStore, subject: str, status: str) -> TableEntity:
    h = sha256(f"{subject}\n{status}".encode()).hexdigest()
    return store._obs.get_entity(h[:2], h)


def test_observing_600_subjects_costs_a_read_and_a_transaction_per_partition(counted: Counted) -> None:
    """600 pairs: one scan plus one transaction per partition touched (not ~3 requests a pair), and reading them
    back, or observing them again at a time already covered, is one scan."""
    pairs, store = _pairs(), counted.store
    counted.counting()
    store.observe(pairs, T0)
    assert counted.counting() <= 2 + _partitions(pairs) < N / 2
    assert store.observations(pairs) == {p: T0 for p in pairs}
    assert counted.counting() <= 2
    store.observe(pairs, T0)
    assert counted.counting() <= 2
    store.observe(pairs, T0 + timedelta(hours=1))   # every row's last_seen widens
    assert counted.counting() <= 2 + _partitions(pairs)
    assert store.observations(pairs[:5]) == {p: T0 for p in pairs[:5]}
    assert counted.counting() <= 5


def test_bulk_observe_keeps_the_first_time_ever_seen_and_widens_last_seen(counted: Counted) -> None:
    """A batch mixing new rows, rows seen earlier and rows seen later gives what one row at a time gave."""
    pairs, store = _pairs(), counted.store
    store.observe(pairs[:200], T0 + timedelta(hours=2))
    store.observe(pairs[100:300], T0)
    store.observe(pairs, T0 + timedelta(hours=1))
    got = store.observations(pairs)
    assert got == {**{p: T0 + timedelta(hours=1) for p in pairs}, **{p: T0 for p in pairs[100:300]}}
    assert store.observations() == got
    early, mid, late = _row(store, *pairs[150]), _row(store, *pairs[50]), _row(store, *pairs[400])
    assert (early["first_seen"], early["last_seen"]) == (iso(T0), iso(H2))
    assert (mid["first_seen"], mid["last_seen"]) == (iso(H1), iso(H2))
    assert (late["first_seen"], late["last_seen"]) == (iso(H1), iso(H1))


def test_a_widening_by_another_writer_between_the_bulk_read_and_the_transaction_is_not_lost(
        counted: Counted, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writer B widens a row and creates another after A read them in bulk: A's transaction is refused and redone
    row by row, so both rows keep B's earlier first time and A's later last time."""
    pairs, a = _pairs(), counted.store
    b = TablesStore(TableServiceClient.from_connection_string(azurite.connection_string()), a.prefix)
    a.observe(pairs[:300], T0 + timedelta(hours=1))
    read = a._obs_rows

    def racing(keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], TableEntity]:
        rows = read(keys)
        b.observe([pairs[7], pairs[500]], T0)   # between A's read and A's writes
        return rows

    redone: list[tuple[str, str]] = []
    one = a._observe_one

    def per_row(subject: str, status: str, stamp: str) -> None:
        redone.append((subject, status))
        one(subject, status, stamp)

    monkeypatch.setattr(a, "_obs_rows", racing)
    monkeypatch.setattr(a, "_observe_one", per_row)
    a.observe(pairs, T0 + timedelta(hours=2))
    monkeypatch.undo()
    assert pairs[7] in redone and pairs[500] in redone   # the refused transactions' rows, redone one by one
    for p in (pairs[7], pairs[500]):
        row = _row(a, *p)
        assert (row["first_seen"], row["last_seen"]) == (iso(T0), iso(H2))
    got = a.observations(pairs)
    assert got[pairs[7]] == got[pairs[500]] == T0
    assert {got[p] for p in pairs[:300] if p != pairs[7]} == {T0 + timedelta(hours=1)}
    assert {got[p] for p in pairs[300:] if p != pairs[500]} == {T0 + timedelta(hours=2)}
    b.close()
