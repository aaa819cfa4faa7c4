"""Durable event intake: accepted webhook items are written here before the sender gets its 200.

Event Grid delivers at least once and retries anything not acknowledged within 30 s, so the daemon
acknowledges only what it has written down, and the id is the primary key: a redelivery (same id)
is counted as a duplicate and never processed twice, whether the first copy is still queued or long
done. Processing is a separate step (:mod:`plmon.monitor.service.daemon`) that claims queued items, so a crash
between the 200 and the re-evaluation loses nothing: the next start finds the items still pending.

An event whose processing raises is not retried forever in front of the others: the worker records
the failure (``attempts``, ``last_error``) with a time before which it is not claimed again, and after
``server.event_max_attempts`` sets it aside as *failed* (a dead letter): it is no longer pending, stays
listable (``plmon events --failed``) and goes back to the queue with :meth:`~IntakeQueue.retry_failed`.

The queue is its own table beside the state store's (same SQLite file when the store is a file),
created with ``IF NOT EXISTS`` so it never touches the store's schema version. The Azure Function
uses the same :class:`IntakeQueue` interface with its own backend.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from plmon.monitor.errors import InputError
from plmon.monitor.events.parse import ParsedEvent, Schema
from plmon.monitor.state.sqlite import connect, write_transaction
from plmon.monitor.state.store import iso, parse_iso

__all__ = [
    "DeadLetter", "Enqueued", "IntakeQueue", "QueuedEvent", "SqliteIntake",
]


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    event_id: str
    schema: Schema
    raw: dict[str, Any]
    received_at: datetime
    # Failed processing attempts so far; 0 for an event never tried or never failed.
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event set aside after ``server.event_max_attempts`` failed attempts."""

    event_id: str
    schema: Schema
    raw: dict[str, Any]
    received_at: datetime
    attempts: int
    last_error: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class Enqueued:
    accepted: int
    duplicates: int


class IntakeQueue(Protocol):
    def enqueue(self, events: Sequence[ParsedEvent], received_at: datetime) -> Enqueued:
        """Write the events not seen before, atomically; returns how many were new and how many repeats."""
        ...

    def claim(self, limit: int = 1000, *, now: datetime | None = None) -> list[QueuedEvent]:
        """The oldest pending events due at ``now`` (not removed: :meth:`done` settles them).

        An event waiting out a retry delay is skipped until its time; ``now=None`` ignores the delays.
        """
        ...

    def done(self, event_ids: Iterable[str], at: datetime) -> None: ...

    def failed(self, event_id: str, error: str, at: datetime, *, retry_at: datetime | None) -> None:
        """Count a failed attempt: pending again from ``retry_at``, or set aside as failed when ``None``."""
        ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def retry_failed(self, event_ids: Iterable[str] | None = None) -> int:
        """Put failed events (all, or those named) back in the queue with their attempts reset."""
        ...

    def pending(self) -> int:
        """Events not yet settled, excluding failed ones."""
        ...

    def failed_count(self) -> int: ...

    def prune(self, older_than: datetime) -> int:
        """Forget settled events older than ``older_than`` (a redelivery after that is processed again)."""
        ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS intake_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, schema TEXT NOT NULL,
    raw TEXT NOT NULL, received_at TEXT NOT NULL, done_at TEXT);
CREATE INDEX IF NOT EXISTS intake_pending ON intake_events(done_at, seq);
"""
# Added after the first release: a queue created before gets them with ALTER TABLE on open.
_RETRY_COLUMNS = {"attempts": "INTEGER NOT NULL DEFAULT 0", "next_at": "TEXT", "last_error": "TEXT",
                  "failed_at": "TEXT"}
_MAX_ERROR = 500
_WAITING = "done_at IS NULL AND failed_at IS NULL"


class SqliteIntake:
    """:class:`IntakeQueue` in a SQLite table; WAL, one connection guarded by a lock, like the store."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        try:
            self._db = connect(self.path, busy_timeout_ms=busy_timeout_ms)
            self._db.executescript(_SCHEMA)
            have = {row[1] for row in self._db.execute("PRAGMA table_info(intake_events)")}
            for name, decl in _RETRY_COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE intake_events ADD COLUMN {name} {decl}")
        except sqlite3.DatabaseError as err:
            raise InputError(f"intake queue {self.path}: cannot open ({err})") from None
        self._lock = threading.Lock()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    def enqueue(self, events: Sequence[ParsedEvent], received_at: datetime) -> Enqueued:
        stamp = iso(received_at)
        rows = [(e.id, e.schema, json.dumps(dict(e.raw), separators=(",", ":")), stamp) for e in events]
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO intake_events (event_id, schema, raw, received_at) "
                           "VALUES (?, ?, ?, ?)", rows)
            accepted = db.total_changes - before
        return Enqueued(accepted=accepted, duplicates=len(rows) - accepted)

    def claim(self, limit: int = 1000, *, now: datetime | None = None) -> list[QueuedEvent]:
        due = "" if now is None else " AND (next_at IS NULL OR next_at <= ?)"
        args: tuple[Any, ...] = (int(limit),) if now is None else (iso(now), int(limit))
        with self._lock:
            rows = self._db.execute(f"SELECT event_id, schema, raw, received_at, attempts FROM intake_events "
                                    f"WHERE {_WAITING}{due} ORDER BY seq LIMIT ?", args).fetchall()
        return [QueuedEvent(r[0], r[1], json.loads(r[2]), parse_iso(r[3]), r[4])  # type: ignore[arg-type]
                for r in rows]

    def done(self, event_ids: Iterable[str], at: datetime) -> None:
        stamp = iso(at)
        with self._tx() as db:
            db.executemany("UPDATE intake_events SET done_at = ?, raw = '{}' WHERE event_id = ?",
                           [(stamp, i) for i in event_ids])

    def failed(self, event_id: str, error: str, at: datetime, *, retry_at: datetime | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE intake_events SET attempts = attempts + 1, last_error = ?, next_at = ?, failed_at = ? "
                       f"WHERE event_id = ? AND {_WAITING}",
                       (error[:_MAX_ERROR], None if retry_at is None else iso(retry_at),
                        iso(at) if retry_at is None else None, event_id))

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute("SELECT event_id, schema, raw, received_at, attempts, last_error, failed_at "
                                    "FROM intake_events WHERE failed_at IS NOT NULL AND done_at IS NULL "
                                    "ORDER BY seq").fetchall()
        return [DeadLetter(r[0], r[1], json.loads(r[2]), parse_iso(r[3]), r[4], r[5] or "",  # type: ignore[arg-type]
                           parse_iso(r[6])) for r in rows]  # type: ignore[arg-type]

    def retry_failed(self, event_ids: Iterable[str] | None = None) -> int:
        reset = ("UPDATE intake_events SET attempts = 0, next_at = NULL, last_error = NULL, failed_at = NULL "
                 "WHERE failed_at IS NOT NULL AND done_at IS NULL")
        with self._tx() as db:
            if event_ids is None:
                return db.execute(reset).rowcount
            before = db.total_changes
            db.executemany(reset + " AND event_id = ?", [(i,) for i in event_ids])
            return db.total_changes - before

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM intake_events WHERE {_WAITING}").fetchone()[0])

    def failed_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM intake_events "
                                        "WHERE failed_at IS NOT NULL AND done_at IS NULL").fetchone()[0])

    def prune(self, older_than: datetime) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM intake_events WHERE done_at IS NOT NULL AND done_at < ?",
                              (iso(older_than),)).rowcount

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()
