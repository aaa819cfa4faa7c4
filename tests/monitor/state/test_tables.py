"""The Table Storage store's own concerns, against a real Azurite: keys, big payloads, leases between
instances, URL errors, and two worker processes sharing one store (no duplicate, no lost alert).

The backend-neutral contract runs in tests/monitor/state/test_store.py (parametrised over SQLite and Azure Tables).
"""

from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azurite
import pytest

from plmon.monitor.errors import InputError
from plmon.monitor.state.open import open_store as _open_store
from plmon.monitor.state.store import (
    AlertStatus,
    ChangeSet,
    ConflictError,
    FindingRecord,
    FindingState,
    OutboxRow,
    alert_id,
)
from plmon.monitor.state.tables import TablesStore

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ENV = "PLMON_TEST_AZURITE"


def open_tables(prefix: str) -> TablesStore:
    store = _open_store(f"azuretables:///{prefix}?connection_string_env={ENV}",
                        environ={ENV: azurite.connection_string()})
    assert isinstance(store, TablesStore)
    return store


@pytest.fixture
def prefix() -> str:
    return azurite.unique_prefix()


@pytest.fixture
def pair(prefix: str) -> Iterator[tuple[TablesStore, TablesStore]]:
    """Two store objects on the same tables: two instances of the Function app."""
    a, b = open_tables(prefix), open_tables(prefix)
    yield a, b
    a.drop_tables()
    a.close()
    b.close()


def rec(key: str, seq: int = 1, finding: dict[str, Any] | None = None) -> FindingRecord:
    return FindingRecord(check_id="c.one", resource_key=key, resource_id=key, state=FindingState.OPEN, severity="high",
                         first_seen=T0, last_seen=T0, resolved_at=None, last_alert_at=T0, seq=seq,
                         finding=finding or {"k": key}, channels=("hook",))


def row(r: FindingRecord, channel: str = "hook") -> OutboxRow:
    return OutboxRow(alert_id=alert_id(r.check_id, r.resource_key, "opened", r.seq, r.first_seen), channel=channel,
                     check_id=r.check_id, resource_key=r.resource_key, seq=r.seq, kind="opened", created_at=T0,
                     payload={"n": r.seq}, next_attempt_at=T0)


def test_keys_with_forbidden_characters_round_trip(pair: tuple[TablesStore, TablesStore]) -> None:
    """ARM ids and channel names with / \\ # ? (forbidden in Table keys) are stored and read back intact."""
    a, _ = pair
    key = "/subscriptions/s/resourcegroups/r#g/providers/x/y?z\\w"
    r = rec(key)
    a.apply(ChangeSet(findings=[(r, None)], outbox=[row(r, channel="ops/#1?")]))
    assert a.get_finding("c.one", key) == r
    [o] = a.outbox()
    assert o.channel == "ops/#1?" and o.resource_key == key
    a.observe([(key, "pending")], T0)
    assert a.observations([(key, "pending")]) == {(key, "pending"): T0}


def test_large_evidence_is_split_and_joined(pair: tuple[TablesStore, TablesStore]) -> None:
    """A finding whose evidence exceeds one Table string property (64 KiB) round-trips unchanged."""
    a, b = pair
    big = {"evidence": ["x" * 1000 + str(i) for i in range(150)]}  # ~150 KB of JSON
    r = rec("/k/big", finding=big)
    a.apply(ChangeSet(findings=[(r, None)]))
    assert b.get_finding("c.one", "/k/big") == r


def test_second_instance_sees_conflict(pair: tuple[TablesStore, TablesStore]) -> None:
    """Two instances that read the same sequence: the second write raises ConflictError and writes nothing."""
    a, b = pair
    a.apply(ChangeSet(findings=[(rec("/k/1"), None)]))
    a.apply(ChangeSet(findings=[(rec("/k/1", 2), 1)], outbox=[row(rec("/k/1", 2))]))
    with pytest.raises(ConflictError):
        b.apply(ChangeSet(findings=[(rec("/k/1", 2), 1)], outbox=[row(rec("/k/1", 2), channel="other")]))
    assert [o.channel for o in b.outbox()] == ["hook"]
    assert b.get_finding("c.one", "/k/1").seq == 2  # type: ignore[union-attr]


def test_lease_is_held_by_one_instance(pair: tuple[TablesStore, TablesStore]) -> None:
    """Rows claimed by one instance are not claimed by the other until the lease runs out."""
    a, b = pair
    rows = [row(rec(f"/k/{i}")) for i in range(5)]
    a.apply(ChangeSet(outbox=rows))
    got_a = a.claim_due(T0, timedelta(seconds=30))
    assert len(got_a) == 5
    assert b.claim_due(T0 + timedelta(seconds=29), timedelta(seconds=30)) == []
    assert len(b.claim_due(T0 + timedelta(seconds=30), timedelta(seconds=30))) == 5  # the lease ran out


def test_racing_claims_split_rows(pair: tuple[TablesStore, TablesStore]) -> None:
    """Four threads over two instances claiming at once: every due row goes to exactly one claimer."""
    a, b = pair
    a.apply(ChangeSet(outbox=[row(rec(f"/k/{i}")) for i in range(20)]))
    claimed: list[str] = []
    lock = threading.Lock()

    def claim(store: TablesStore) -> None:
        got = store.claim_due(T0, timedelta(minutes=5), limit=20)
        with lock:
            claimed.extend(o.alert_id for o in got)

    threads = [threading.Thread(target=claim, args=(s,)) for s in (a, b) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 20 and len(set(claimed)) == 20


def test_url_errors_are_input_errors(prefix: str) -> None:
    """Bad azuretables URLs fail with one line naming state.url, never a traceback from the SDK."""
    with pytest.raises(InputError, match=r"PLMON_TABLES_CONNECTION_STRING"):
        _open_store("azuretables:///plmon", environ={})
    with pytest.raises(InputError, match="table prefix"):
        _open_store("azuretables:///9bad-prefix", environ={"PLMON_TABLES_CONNECTION_STRING": "x"})
    with pytest.raises(InputError, match="not a storage account name"):
        _open_store("azuretables://Not_An_Account/plmon")
    with pytest.raises(InputError, match="unknown azuretables option"):
        _open_store("azuretables:///plmon?color=red", environ={})
    with pytest.raises(InputError, match="not a valid storage connection string"):
        _open_store("azuretables:///plmon", environ={"PLMON_TABLES_CONNECTION_STRING": "nonsense"})
    wrong_key = azurite.connection_string().replace(azurite.KEY, "AAAA" + azurite.KEY[4:])
    with pytest.raises(InputError, match="state store"):
        _open_store(f"azuretables:///{prefix}", environ={"PLMON_TABLES_CONNECTION_STRING": wrong_key})


# --- two worker processes, one store, one webhook receiver --------------------------------------------

class Receiver(ThreadingHTTPServer):
    """A webhook receiver that checks signatures and answers every 5th request with 503 (before recording)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.ids: list[str] = []          # accepted alert ids, in arrival order
        self.subjects: list[tuple[str, int]] = []
        self.requests = 0
        self.rejected = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv = self.server
        with srv.lock:
            srv.requests += 1
            expected = "sha256=" + hmac.new(srv.secret.encode(), body, sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Plmon-Signature", "")):
                srv.bad_signatures += 1
                status = 401
            elif srv.requests % 5 == 0:
                srv.rejected += 1
                status = 503
            else:
                event = json.loads(body)
                srv.ids.append(event["id"])
                status = 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_two_processes_deliver_each_alert_once(prefix: str) -> None:
    """Two worker processes racing on one Azurite store: every transition is alerted exactly once, in order."""
    secret = "s3cret-for-test"
    srv = Receiver(secret)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    env_conn = azurite.connection_string()
    url = f"azuretables:///{prefix}?connection_string_env={ENV}"
    worker = Path(__file__).parents[2] / "kit" / "tables_worker.py"
    start_at = time.time() + 1.5
    env = {**os.environ, ENV: env_conn}
    procs = [subprocess.Popen([sys.executable, str(worker), "--url", url, "--webhook",
                               f"http://127.0.0.1:{srv.server_address[1]}/hook", "--secret", secret,
                               "--findings", "4", "--rounds", "16", "--name", name, "--start-at", str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
             for name in ("a", "b")]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    srv.shutdown()
    srv.server_close()

    written = [aid for o in outs for aid in o["written"]]
    sent = len(written)
    delivered = len(srv.ids)
    duplicates = delivered - len(set(srv.ids))
    lost = len(set(written) - set(srv.ids))
    summary = {"sent": sent, "delivered": delivered, "duplicates": duplicates, "lost": lost,
               "conflicts_retried": sum(o["conflicts"] for o in outs), "http_requests": srv.requests,
               "rejected_503": srv.rejected, "bad_signatures": srv.bad_signatures,
               "per_process_delivered": {o["name"]: o["delivered"] for o in outs}}
    print("two-process delivery:", json.dumps(summary))
    assert sent == 32 and len(set(written)) == 32       # every transition written once, none lost to a race
    assert duplicates == 0 and lost == 0 and delivered == sent
    assert srv.bad_signatures == 0 and srv.rejected > 0  # retries really happened
    store = open_tables(prefix)
    try:
        assert store.outbox(AlertStatus.PENDING) == [] and store.outbox(AlertStatus.FAILED) == []
        # Per finding, alerts reached the receiver in transition order.
        seq_of = {o.alert_id: (o.resource_key, o.seq) for o in store.outbox()}
        last: dict[str, int] = {}
        for aid in srv.ids:
            key, seq = seq_of[aid]
            assert seq > last.get(key, 0), f"{key}: seq {seq} after {last.get(key)}"
            last[key] = seq
        assert sorted(last.values()) == [8, 8, 8, 8]
    finally:
        store.drop_tables()
        store.close()


def test_tables_intake_is_shared_and_deduplicates(pair: tuple[TablesStore, TablesStore]) -> None:
    """Two instances' intake queues are one: a redelivered id is a duplicate anywhere, order is arrival order,
    settled events leave the queue and are pruned after the retention cut."""
    from plmon.monitor.events.parse import parse_body
    from plmon.monitor.state.intake_tables import TablesIntake

    a, b = pair
    qa, qb = TablesIntake(a.service, a.prefix), TablesIntake(b.service, b.prefix)
    events = [{"id": f"ev-{i}", "eventType": "Microsoft.Resources.ResourceWriteSuccess", "subject": "/subscriptions/s",
               "eventTime": "2026-11-01T12:00:00Z", "dataVersion": "2", "topic": "/subscriptions/s",
               "data": {"operationName": "Microsoft.Network/routeTables/write", "big": "x" * 40_000 * (i == 1)}}
              for i in range(3)]
    parsed = parse_body(json.dumps(events).encode(), "application/json").events
    assert qa.enqueue(parsed[:2], T0).accepted == 2
    got = qb.enqueue(parsed, T0 + timedelta(seconds=1))
    assert (got.accepted, got.duplicates) == (1, 2)
    claimed = qa.claim()
    assert [q.event_id for q in claimed] == ["ev-0", "ev-1", "ev-2"] and claimed[1].raw == events[1]
    qb.done(["ev-0", "ev-1"], T0 + timedelta(seconds=2))
    assert qa.pending() == 1 and [q.event_id for q in qa.claim()] == ["ev-2"]
    assert qa.enqueue(parsed[:1], T0).duplicates == 1  # settled, still remembered
    assert qa.prune(T0 + timedelta(hours=1)) == 2 and qa.ping()
    qa.close()
    qb.close()
