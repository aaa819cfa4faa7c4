"""The Table intake's claim lease on Azurite: of K replicas polling one queue, each event is claimed by one, and
an event whose claimer died is claimed again once its lease runs out."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azurite
import pytest
from azure.data.tables import TableServiceClient

from plmon.monitor.events.parse import ParsedEvent, parse_body
from plmon.monitor.state.intake_tables import TablesIntake

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def service() -> Iterator[tuple[TableServiceClient, str]]:
    client = TableServiceClient.from_connection_string(azurite.connection_string())
    prefix = azurite.unique_prefix()
    yield client, prefix
    client.delete_table(f"{prefix}intake")
    client.close()


def events(n: int) -> list[ParsedEvent]:
    body = [{"id": f"ev-{i:03d}", "eventType": "Microsoft.Resources.ResourceWriteSuccess",
             "subject": f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt-{i}",
             "eventTime": "2026-11-01T12:00:00Z", "dataVersion": "2", "topic": "/subscriptions/s",
             "data": {"operationName": "Microsoft.Network/routeTables/write"}} for i in range(n)]
    return list(parse_body(json.dumps(body).encode(), "application/json").events)


def test_three_claimers_claim_each_event_once(service: tuple[TableServiceClient, str]) -> None:
    """Three replicas claiming at once, a few events at a time, together take every event exactly once."""
    client, prefix = service
    queues = [TablesIntake(client, prefix, claimer=f"r{i}") for i in range(3)]
    assert queues[0].enqueue(events(30), T0).accepted == 30
    got: dict[str, list[str]] = {q.claimer: [] for q in queues}
    start = threading.Barrier(3)

    def claim_all(q: TablesIntake) -> None:
        start.wait()
        while batch := q.claim(4, now=T0):
            got[q.claimer].extend(e.event_id for e in batch)
            q.done([e.event_id for e in batch], T0)

    threads = [threading.Thread(target=claim_all, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = [e for ids in got.values() for e in ids]
    assert sorted(taken) == [f"ev-{i:03d}" for i in range(30)]  # every event, none twice
    assert queues[1].pending() == 0


def test_an_expired_claim_is_taken_again(service: tuple[TableServiceClient, str]) -> None:
    """A claimer that dies leaves its events leased: others skip them until the lease ends, then take them; the
    claimer's own leased events come back to it, and a retried event is free for anyone."""
    client, prefix = service
    later = [T0]
    a = TablesIntake(client, prefix, claimer="a", claim_lease=timedelta(seconds=60), clock=lambda: T0)
    b = TablesIntake(client, prefix, claimer="b", claim_lease=timedelta(seconds=60), clock=lambda: later[0])
    a.enqueue(events(3), T0)
    assert [e.event_id for e in a.claim(2)] == ["ev-000", "ev-001"]
    assert [e.event_id for e in b.claim()] == ["ev-002"]
    assert [e.event_id for e in a.claim()] == ["ev-000", "ev-001"]  # its own, leased again; ev-002 is b's
    assert [e.event_id for e in b.claim()] == ["ev-002"]
    later[0] = T0 + timedelta(seconds=61)  # a died: its lease runs out
    assert [e.event_id for e in b.claim()] == ["ev-000", "ev-001", "ev-002"]
    b.failed("ev-000", "boom", T0, retry_at=T0)
    assert [e.event_id for e in a.claim(1)] == ["ev-000"]  # a failed attempt frees the event for any claimer
