"""The event intake queue in Azure Table Storage, beside :mod:`plmon.monitor.state.tables`, for the Function app.

Same contract as :class:`plmon.monitor.state.intake.SqliteIntake`: an event is written down before its delivery is
acknowledged, its id is the key (a redelivery to *any* instance is a duplicate), and it stays pending
until a worker settles it. Shared by every instance: an event accepted by one instance that died before
processing it is picked up by the next invocation of any instance.

Table ``<prefix>intake``: PartitionKey the first 2 hex of the event id's sha256, RowKey the whole hash
(event ids are sender-chosen text: never a raw key). ``state`` is ``pending``, ``done`` or ``failed`` (a
filter cannot ask for an absent property; ``failed`` = set aside after ``server.event_max_attempts``);
``order`` (receive time + a counter) sorts pending events oldest first.

The claim lease: with K replicas polling one table, each would otherwise process every pending event (K times the
ARM re-reads). ``claim`` therefore leases each row it returns, as ``TablesStore.claim_due`` leases outbox rows: an
ETag-conditioned MERGE of ``claimed_by`` and ``claimed_until`` (now + ``claim_lease``). Of two claimers that read
the same row, exactly one write succeeds; rows leased by another claimer are skipped until the lease runs out, so
an event accepted or claimed by a replica that died is taken by another. A claimer's own leased rows come back to
it (and are leased again), as the SQLite queue returns unsettled events. The lease runs on the wall clock (timers
always do), never on the source's clock that ``claim(now=...)`` gets for retry delays.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from plmon.monitor.events.parse import ParsedEvent
from plmon.monitor.state.intake import DeadLetter, Enqueued, QueuedEvent
from plmon.monitor.state.store import iso, parse_iso

__all__ = ["TablesIntake"]

_CHUNK = 30_000


class TablesIntake:
    """:class:`plmon.monitor.state.intake.IntakeQueue` in one Azure table."""

    def __init__(self, service: TableServiceClient, prefix: str = "plmon", *,
                 claim_lease: timedelta = timedelta(seconds=60), claimer: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._table = service.create_table_if_not_exists(f"{prefix}intake")
        self._lock = threading.Lock()
        self._last_ns = 0
        self.claim_lease = claim_lease
        self.claimer = claimer or f"claimer-{uuid.uuid4().hex[:12]}"
        self._wall = clock

    def _order(self, received_at: datetime) -> str:
        with self._lock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return f"{iso(received_at)}-{self._last_ns:020d}"

    def enqueue(self, events: Sequence[ParsedEvent], received_at: datetime) -> Enqueued:
        accepted = 0
        for e in events:
            h = hashlib.sha256(e.id.encode()).hexdigest()
            raw = json.dumps(dict(e.raw), separators=(",", ":"))
            entity: dict[str, Any]
            entity = {"PartitionKey": h[:2], "RowKey": h, "event_id": e.id, "schema": e.schema, "state": "pending",
                      "order": self._order(received_at), "received_at": iso(received_at),
                      "raw_n": (len(raw) + _CHUNK - 1) // _CHUNK or 1}
            for i in range(entity["raw_n"]):
                entity[f"raw_{i}"] = raw[i * _CHUNK:(i + 1) * _CHUNK]
            try:
                self._table.create_entity(entity)
                accepted += 1
            except ResourceExistsError:
                continue
        return Enqueued(accepted=accepted, duplicates=len(events) - accepted)

    def claim(self, limit: int = 1000, *, now: datetime | None = None) -> list[QueuedEvent]:
        rows: Iterable[Any] = self._table.query_entities("state eq 'pending'")
        if now is not None:  # an event waiting out a retry delay keeps it in next_at
            rows = (e for e in rows if not e.get("next_at") or e["next_at"] <= iso(now))
        wall = self._wall()
        stamp, until = iso(wall), iso(wall + self.claim_lease)
        free = (e for e in rows
                if e.get("claimed_by") in (None, "", self.claimer) or (e.get("claimed_until") or "") <= stamp)
        claimed: list[QueuedEvent] = []
        for e in sorted(free, key=lambda e: e["order"]):
            if len(claimed) >= limit:
                break
            try:
                self._table.update_entity({"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"],
                                           "claimed_by": self.claimer, "claimed_until": until},
                                          mode=UpdateMode.MERGE, etag=e.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another claimer leased it, or it was settled, since we read it
            claimed.append(QueuedEvent(e["event_id"], e["schema"], _raw(e),
                                       parse_iso(e["received_at"]),  # type: ignore[arg-type]
                                       int(e.get("attempts") or 0)))
        return claimed

    def _key(self, event_id: str) -> tuple[str, str]:
        h = hashlib.sha256(event_id.encode()).hexdigest()
        return h[:2], h

    def failed(self, event_id: str, error: str, at: datetime, *, retry_at: datetime | None) -> None:
        pk, rk = self._key(event_id)
        try:
            e = self._table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return
        if e.get("state") != "pending":
            return
        update = {"PartitionKey": pk, "RowKey": rk, "attempts": int(e.get("attempts") or 0) + 1,
                  "last_error": error[:500], "next_at": "" if retry_at is None else iso(retry_at),
                  "state": "failed" if retry_at is None else "pending", "failed_at": "" if retry_at else iso(at),
                  "claimed_by": "", "claimed_until": ""}  # free for any claimer once its retry time comes
        try:
            self._table.update_entity(update, mode=UpdateMode.MERGE, etag=e.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            return  # another instance settled or failed it meanwhile

    def dead_letters(self) -> list[DeadLetter]:
        rows = sorted(self._table.query_entities("state eq 'failed'"), key=lambda e: e["order"])
        return [DeadLetter(e["event_id"], e["schema"], _raw(e), parse_iso(e["received_at"]),  # type: ignore[arg-type]
                           int(e.get("attempts") or 0), e.get("last_error") or "",
                           parse_iso(e["failed_at"])) for e in rows]  # type: ignore[arg-type]

    def retry_failed(self, event_ids: Iterable[str] | None = None) -> int:
        wanted = None if event_ids is None else {self._key(i)[1] for i in event_ids}
        n = 0
        for e in list(self._table.query_entities("state eq 'failed'")):
            if wanted is not None and e["RowKey"] not in wanted:
                continue
            try:
                self._table.update_entity({"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"],
                                           "state": "pending", "attempts": 0, "next_at": "", "last_error": "",
                                           "failed_at": "", "claimed_by": "", "claimed_until": ""},
                                          mode=UpdateMode.MERGE, etag=e.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                n += 1
            except (ResourceNotFoundError, ResourceModifiedError):
                continue
        return n

    def failed_count(self) -> int:
        return sum(1 for _ in self._table.query_entities("state eq 'failed'", select=["RowKey"]))

    def done(self, event_ids: Iterable[str], at: datetime) -> None:
        for event_id in event_ids:
            h = hashlib.sha256(event_id.encode()).hexdigest()
            try:
                # Replace drops the raw body: a settled event is only its id and when it was done.
                self._table.update_entity({"PartitionKey": h[:2], "RowKey": h, "event_id": event_id,
                                           "state": "done", "done_at": iso(at), "order": ""},
                                          mode=UpdateMode.REPLACE)
            except ResourceNotFoundError:
                continue

    def pending(self) -> int:
        return sum(1 for _ in self._table.query_entities("state eq 'pending'", select=["RowKey"]))

    def prune(self, older_than: datetime) -> int:
        n = 0
        for e in list(self._table.query_entities("state eq 'done' and done_at lt @c",
                                                 parameters={"c": iso(older_than)})):
            try:
                self._table.delete_entity(e["PartitionKey"], e["RowKey"], etag=e.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                n += 1
            except (ResourceNotFoundError, ResourceModifiedError):
                continue
        return n

    def ping(self) -> bool:
        try:
            next(iter(self._table.query_entities("PartitionKey eq '--'", results_per_page=1)), None)
            return True
        except AzureError:
            return False

    def close(self) -> None:
        self._table.close()


def _raw(entity: dict[str, object]) -> dict[str, object]:
    raw: dict[str, object] = json.loads("".join(str(entity[f"raw_{i}"])
                                                for i in range(int(entity["raw_n"]))))  # type: ignore[call-overload]
    return raw
