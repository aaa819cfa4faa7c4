"""The SQLite state store: the default backend, one file, safe for a daemon's threads and a CLI beside it.

WAL lets readers (``plmon findings``, reports) run while the daemon writes; ``busy_timeout`` makes a
second process wait for the write lock instead of failing. One connection guarded by a lock serves
every thread of a process (SQLite serialises writers anyway, and ``:memory:`` must be one connection).
The schema is versioned with ``PRAGMA user_version``: each entry of ``_MIGRATIONS`` moves it one
version forward, so an old file is upgraded in place on open and a newer file is refused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from plmon.monitor.errors import InputError
from plmon.monitor.state.store import (
    AlertStatus,
    ChangeSet,
    ConflictError,
    FindingRecord,
    FindingState,
    JsonSafe,
    OutboxRow,
    ScanRecord,
    iso,
    parse_iso,
    same_json,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore", "connect", "write_transaction"]

# A finding's text at least this long is remembered with the dict read from it, so that a lifecycle step writing
# that very dict back (a resolve keeps the record's finding) stores the text again instead of serialising it anew.
_KEEP_TEXT = 64 * 1024
# How many such large findings stay known by key with their dict and text, whether this process last read or wrote
# them (most recent first out last). A hub appliance's SNAT finding at 100k resources is ~13 MB of text: each event
# that opens or resolves it read it back (json.loads ~95 ms) and wrote it again (json.dumps ~100 ms, 13 MB through
# the WAL). Known, it is parsed once, serialised once, compared by its text and written only when that changed.
_KNOWN_LARGE = 4


def _dumps(obj: Any) -> str:
    """An object's stored text: keys sorted, as ``json.dumps(..., sort_keys=True)`` parses back; a :class:`JsonSafe`
    finding through orjson (its maker checked orjson says it alike), anything else, or what orjson refuses, by
    ``json``."""
    if type(obj) is JsonSafe:
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            pass
    return json.dumps(dict(obj), sort_keys=True)

_MIGRATIONS: tuple[str, ...] = (
    # 1: findings, observations, scans, outbox, processed events. Event ids are deduplicated by the intake queue
    # (plmon.monitor.state.intake) since it exists: nothing writes processed_events any more, but migrations only
    # ever append, so the table stays in every file (and prune still empties what older versions wrote there).
    """
    CREATE TABLE findings (
        check_id TEXT NOT NULL, resource_key TEXT NOT NULL, resource_id TEXT NOT NULL,
        state TEXT NOT NULL, severity TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
        resolved_at TEXT, last_alert_at TEXT, seq INTEGER NOT NULL, finding TEXT NOT NULL,
        channels TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (check_id, resource_key));
    CREATE INDEX findings_state ON findings(state);
    CREATE TABLE observations (
        subject_key TEXT NOT NULL, status TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
        PRIMARY KEY (subject_key, status));
    CREATE TABLE scans (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, kind TEXT NOT NULL,
        subscriptions_scanned INTEGER NOT NULL, gaps INTEGER NOT NULL, open_findings INTEGER NOT NULL,
        by_check TEXT NOT NULL, by_severity TEXT NOT NULL);
    CREATE INDEX scans_at ON scans(at);
    CREATE TABLE outbox (
        alert_id TEXT NOT NULL, channel TEXT NOT NULL, check_id TEXT NOT NULL, resource_key TEXT NOT NULL,
        seq INTEGER NOT NULL, kind TEXT NOT NULL, created_at TEXT NOT NULL, payload TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
        last_error TEXT, delivered_at TEXT,
        PRIMARY KEY (alert_id, channel));
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    CREATE INDEX outbox_finding ON outbox(check_id, resource_key, channel, seq);
    CREATE TABLE processed_events (event_id TEXT PRIMARY KEY, processed_at TEXT NOT NULL);
    CREATE INDEX processed_events_at ON processed_events(processed_at);
    """,
    # 2: what a report built from the store alone states about each full scan (plmon.monitor.lifecycle.compliance)
    """
    ALTER TABLE scans ADD COLUMN compliance_percent REAL;
    ALTER TABLE scans ADD COLUMN resources_evaluated INTEGER;
    ALTER TABLE scans ADD COLUMN resources_non_compliant INTEGER;
    ALTER TABLE scans ADD COLUMN figures TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: the findings of the resources an event touched, read by key (StateStore.findings(resource_keys=...))
    """
    CREATE INDEX findings_resource ON findings(resource_key);
    """,
    # 4: the open-findings gauge (open_counts) after every event that moved a finding, from the index alone: through
    # findings_state it fetched each open row, ~9 ms an event with 6k open findings
    """
    CREATE INDEX findings_state_severity ON findings(state, severity);
    """,
    # 5: a large finding's text (at least _KEEP_TEXT) in a table of its own, its findings row holding '' (never JSON):
    # SQLite rewrites a whole row on any update, so a resolve rewrote the hub appliance's ~13 MB finding (WAL and
    # checkpoint included, ~0.1 s an event at 100k) to change its state. ``token`` changes with each text written, so
    # a reader that knows the text by its token need not read it again.
    """
    CREATE TABLE finding_texts (
        check_id TEXT NOT NULL, resource_key TEXT NOT NULL, token TEXT NOT NULL, finding TEXT NOT NULL,
        PRIMARY KEY (check_id, resource_key));
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


# Tables plmon itself creates in a state file: the store's (schema 1 on) and the intake queue's.
_STORE_TABLES = frozenset({"findings", "observations", "scans", "outbox", "processed_events"})
_OWN_TABLES = _STORE_TABLES | {"intake_events", "sqlite_sequence", "finding_texts"}
_APART = ""   # a findings row's text when the finding is in finding_texts


def connect(path: str, *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """A connection shared by a daemon's threads (callers guard it with a lock): autocommit so that
    transactions are explicit, WAL so readers never block the writer, and a busy timeout so a second
    process waits instead of failing. Both the state store and the intake queue open theirs here.

    The file is checked first (:func:`check_state_file`): switching a foreign file to WAL would
    already modify it."""
    if path != ":memory:" and not Path(path).parent.is_dir():
        raise InputError(f"state.url: folder {Path(path).parent} does not exist")
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000)
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    if path != ":memory:":
        try:
            check_state_file(db, path)
        except BaseException:
            db.close()
            raise
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
    return db


def check_state_file(db: sqlite3.Connection, path: str) -> None:
    """An InputError unless ``path`` is empty or a plmon state file, intact: reads only, never writes.

    Another application's SQLite file (even one with a ``findings`` table) must not be migrated into, and
    a corrupt one must fail here with its name rather than as a traceback from whichever query first
    touches a bad page. ``quick_check`` reads every page (about 4 ms per MB)."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        # Before the store's first migration only the intake queue may have created its table.
        foreign = tables - (_OWN_TABLES - _STORE_TABLES) if version == 0 else (
            (_STORE_TABLES - tables) or (tables - _OWN_TABLES))
        if foreign and version <= SCHEMA_VERSION:  # a newer schema is refused by the migration instead
            listed = ", ".join(t if t.isprintable() else repr(t) for t in sorted(tables)[:5])  # a foreign name
            raise InputError(f"state store {path}: not a plmon state store (it holds tables {listed}); "
                             f"it was left untouched: point state.url at another file")
        problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as err:
        raise InputError(f"state store {path}: {_damage(err)}") from None
    if problems != ["ok"]:
        lines = [line.strip() for p in problems for line in str(p).splitlines()
                 if line.strip() and not line.startswith("***")]
        raise InputError(f"state store {path}: corrupt ({lines[0] if lines else 'integrity check failed'}); "
                         f"restore it from a backup or move it aside to start a new one")


def _damage(err: sqlite3.DatabaseError) -> str:
    """What a SQLite error on opening says about the file, for one line on stderr."""
    text = str(err)
    if "not a database" in text:
        return f"not a plmon state store ({text})"
    if "malformed" in text or "corrupt" in text:
        return f"corrupt ({text}); restore it from a backup or move it aside to start a new one"
    return f"cannot open ({text})"


@contextmanager
def write_transaction(db: sqlite3.Connection, lock: AbstractContextManager[Any]) -> Iterator[sqlite3.Connection]:
    """One write transaction; IMMEDIATE takes the write lock up front so two processes never
    interleave a read-then-write. The store and the intake queue both write through it."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


# A finding's row with the token of its text when that is kept apart (finding_texts), not the text itself.
_SELECT_FINDINGS = ("SELECT f.*, t.token AS t_token FROM findings f LEFT JOIN finding_texts t "
                    "ON t.check_id = f.check_id AND t.resource_key = f.resource_key")


class SqliteStore:
    """A :class:`plmon.monitor.state.store.StateStore` in one SQLite file (or ``:memory:``)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        try:
            self._db = connect(self.path, busy_timeout_ms=busy_timeout_ms)
        except sqlite3.DatabaseError as err:
            raise InputError(f"state store {self.path}: {_damage(err)}") from None
        self._lock = threading.RLock()
        # id(dict) -> (that dict, the text it was read from): the large findings of the last read (see _KEEP_TEXT).
        # The dict is held, so its id cannot be reused while it is here; a hit also requires the very same object.
        self._texts: dict[int, tuple[Any, str]] = {}
        # (check id, resource key) -> (dict, text, token) of the last large findings read or written (see
        # _KNOWN_LARGE). A dict handed out here is shared by every read that finds the same token: callers never
        # mutate a record's finding (the lifecycle replaces it, alerts copy it when they bound it).
        self._known: OrderedDict[tuple[str, str], tuple[Any, str, str]] = OrderedDict()
        self._migrate()

    # --- plumbing -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            try:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as err:
                raise InputError(f"state store {self.path}: not a plmon state database ({err})") from None
            if version > SCHEMA_VERSION:
                raise InputError(f"state store {self.path}: schema version {version} is newer than this "
                                 f"plmon understands ({SCHEMA_VERSION}); upgrade plmon")
            for number in range(version, SCHEMA_VERSION):
                with self._tx():
                    for statement in _MIGRATIONS[number].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number + 1}")

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db, self._lock)

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(sql, tuple(args))
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def schema_version(self) -> int:
        return int(self._query("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- findings ------------------------------------------------------------------------------
    def _remember(self, key: tuple[str, str], finding: Any, text: str, token: str) -> None:
        self._known[key] = (finding, text, token)
        self._known.move_to_end(key)
        while len(self._known) > _KNOWN_LARGE:
            self._known.popitem(last=False)

    def _finding(self, row: sqlite3.Row, remember: bool = False) -> FindingRecord:
        """``remember``: a targeted read (an event's): its large findings stay known by key (a full scan reads every
        finding, and keeping the last few of those would only hold their memory)."""
        text = row["finding"]
        key = (row["check_id"], row["resource_key"])
        if text == _APART:
            token = row["t_token"]
            known = self._known.get(key)
            if known is not None and known[2] == token:   # known by its token: neither read nor parsed again
                finding, text = known[0], known[1]
                self._known.move_to_end(key)
            else:
                text = self._query("SELECT finding FROM finding_texts WHERE check_id = ? AND resource_key = ?",
                                   key)[0][0]
                finding = json.loads(text)
                if remember:
                    self._remember(key, finding, text, token)
            self._texts[id(finding)] = (finding, text)
        else:
            finding = json.loads(text)
            if len(text) >= _KEEP_TEXT:
                self._texts[id(finding)] = (finding, text)
        return FindingRecord(
            check_id=row["check_id"], resource_key=row["resource_key"], resource_id=row["resource_id"],
            state=FindingState(row["state"]), severity=row["severity"],
            first_seen=parse_iso(row["first_seen"]), last_seen=parse_iso(row["last_seen"]),  # type: ignore[arg-type]
            resolved_at=parse_iso(row["resolved_at"]), last_alert_at=parse_iso(row["last_alert_at"]),
            seq=row["seq"], finding=finding, channels=tuple(json.loads(row["channels"])))

    def get_finding(self, check_id: str, resource_key: str) -> FindingRecord | None:
        with self._lock:   # the row and its apart text read as one: no thread of ours writes between them
            rows = self._query(f"{_SELECT_FINDINGS} WHERE f.check_id = ? AND f.resource_key = ?",
                               (check_id, resource_key))
            return self._finding(rows[0]) if rows else None

    def findings(self, state: FindingState | None = None, *,
                 resource_keys: Collection[str] | None = None) -> list[FindingRecord]:
        with self._lock:   # rows and their apart texts read as one; the known large findings are shared by threads
            return self._findings(state, resource_keys)

    def _findings(self, state: FindingState | None, resource_keys: Collection[str] | None) -> list[FindingRecord]:
        where, args = ("WHERE f.state = ?", [state.value]) if state is not None else ("", [])
        self._texts = {}  # only the last read's: never more than one step's findings are held
        if resource_keys is None:
            rows = self._query(f"{_SELECT_FINDINGS} {where} ORDER BY f.check_id, f.resource_key", args)
        else:
            rows = []
            keys = sorted(set(resource_keys))
            for i in range(0, len(keys), 500):  # under SQLite's limit on bound parameters
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                cond = f"{where} AND" if where else "WHERE"
                rows += self._query(f"{_SELECT_FINDINGS} {cond} f.resource_key IN ({marks})", [*args, *chunk])
            rows.sort(key=lambda r: (r["check_id"], r["resource_key"]))
        return [self._finding(r, resource_keys is not None) for r in rows]

    def open_counts(self) -> dict[str, int]:
        rows = self._query("SELECT severity, COUNT(*) FROM findings WHERE state = ? GROUP BY severity",
                           (FindingState.OPEN.value,))
        return {r[0]: int(r[1]) for r in rows}

    def apply(self, change: ChangeSet) -> None:
        texts, self._texts = self._texts, {}
        # Only the texts of findings this change writes back: the other findings read are dropped before writing.
        done: dict[int, tuple[Any, str]] = {
            id(rec.finding): hit for rec, _ in change.findings
            if (hit := texts.get(id(rec.finding))) is not None and hit[0] is rec.finding}
        # What the rows this step read hold already: a finding written back as the very text its row was read with
        # (a resolve, a reminder of an unchanged finding) leaves that column as it is.
        unchanged = {(rec.check_id, rec.resource_key) for rec, _ in change.findings if id(rec.finding) in done}
        with self._lock:
            for rec, _ in change.findings:
                key = (rec.check_id, rec.resource_key)
                known = self._known.get(key)
                if known is None or id(rec.finding) in done or known[0] != rec.finding:
                    continue
                if known[0] is rec.finding:
                    same = True   # the very dict the text was written from or read as (no caller mutates one)
                elif type(rec.finding) is JsonSafe:
                    # Equal by ==, which takes 1 for 1.0 or True: the same text only if it serialises so. orjson
                    # makes the text in a fraction of a Python comparison, and it is the one written if not.
                    text = _dumps(rec.finding)
                    same = text == known[1]
                    if not same:
                        done[id(rec.finding)] = (rec.finding, text)
                else:
                    same = same_json(known[0], rec.finding)
                if same:
                    # equal to the large finding last read or written for this key: that text, and when this step
                    # read it from the row, the row keeps it
                    done[id(rec.finding)] = (rec.finding, known[1])
                    if texts.get(id(known[0]), (None,))[0] is known[0]:
                        unchanged.add(key)
        del texts
        targeted = change.scan is None   # an event's step (a full scan writes every finding: nothing to remember)

        def dumps(obj: Any) -> str:
            """Each object serialised once (a payload is shared by its alert's channels), and a finding read
            unchanged from its stored text written back as that text."""
            hit = done.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1]
            text = _dumps(obj)
            done[id(obj)] = (obj, text)
            return text

        with self._tx() as db:
            for rec, expected in change.findings:
                row = db.execute("SELECT seq FROM findings WHERE check_id = ? AND resource_key = ?",
                                 (rec.check_id, rec.resource_key)).fetchone()
                current = row[0] if row else None
                if current != expected:
                    raise ConflictError(f"finding {rec.check_id} {rec.resource_key}: sequence {current}, "
                                        f"expected {expected}")
                columns = (rec.resource_id, rec.state.value, rec.severity, iso(rec.first_seen), iso(rec.last_seen),
                           iso(rec.resolved_at) if rec.resolved_at else None,
                           iso(rec.last_alert_at) if rec.last_alert_at else None, rec.seq)
                key = (rec.check_id, rec.resource_key)
                if row is not None and key in unchanged:
                    db.execute("UPDATE findings SET resource_id = ?, state = ?, severity = ?, first_seen = ?, "
                               "last_seen = ?, resolved_at = ?, last_alert_at = ?, seq = ?, channels = ? "
                               "WHERE check_id = ? AND resource_key = ?",
                               (*columns, json.dumps(list(rec.channels)), *key))
                    continue
                text = dumps(rec.finding)
                if len(text) >= _KEEP_TEXT:
                    token = uuid.uuid4().hex
                    db.execute("INSERT OR REPLACE INTO finding_texts VALUES (?,?,?,?)", (*key, token, text))
                    if targeted:
                        self._remember(key, rec.finding, text, token)
                    stored = _APART
                else:
                    if row is not None:
                        db.execute("DELETE FROM finding_texts WHERE check_id = ? AND resource_key = ?", key)
                    stored = text
                db.execute("INSERT OR REPLACE INTO findings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           (*key, *columns, stored, json.dumps(list(rec.channels))))
            for o in change.outbox:
                db.execute(
                    "INSERT OR IGNORE INTO outbox VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (o.alert_id, o.channel, o.check_id, o.resource_key, o.seq, o.kind, iso(o.created_at),
                     dumps(o.payload), o.status.value, o.attempts,
                     iso(o.next_attempt_at or o.created_at), o.last_error,
                     iso(o.delivered_at) if o.delivered_at else None))
            if change.scan is not None:
                s = change.scan
                db.execute(
                    "INSERT INTO scans (at, kind, subscriptions_scanned, gaps, open_findings, by_check, "
                    "by_severity, compliance_percent, resources_evaluated, resources_non_compliant, figures) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (iso(s.at), s.kind, s.subscriptions_scanned, s.gaps, s.open_findings,
                     json.dumps(dict(s.by_check), sort_keys=True), json.dumps(dict(s.by_severity), sort_keys=True),
                     s.compliance_percent, s.resources_evaluated, s.resources_non_compliant,
                     json.dumps(dict(s.figures), sort_keys=True)))

    # --- observations ---------------------------------------------------------------------------
    def observe(self, seen: Iterable[tuple[str, str]], at: datetime) -> None:
        stamp = iso(at)
        with self._tx() as db:
            for subject, status in seen:
                db.execute(
                    "INSERT INTO observations VALUES (?,?,?,?) ON CONFLICT(subject_key, status) DO UPDATE SET "
                    "first_seen = MIN(first_seen, excluded.first_seen), "
                    "last_seen = MAX(last_seen, excluded.last_seen)",
                    (subject, status, stamp, stamp))

    def observations(self, keys: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], datetime]:
        rows = self._query("SELECT subject_key, status, first_seen FROM observations")
        out = {(r["subject_key"], r["status"]): parse_iso(r["first_seen"]) for r in rows}
        if keys is not None:
            wanted = set(keys)
            out = {k: v for k, v in out.items() if k in wanted}
        return out  # type: ignore[return-value]

    # --- scans ----------------------------------------------------------------------------------
    def scan_history(self, since: datetime | None = None) -> list[ScanRecord]:
        rows = self._query("SELECT * FROM scans WHERE at >= ? ORDER BY at, id",
                           (iso(since) if since else "",))
        return [ScanRecord(at=parse_iso(r["at"]), subscriptions_scanned=r["subscriptions_scanned"],  # type: ignore[arg-type]
                           gaps=r["gaps"], by_check=json.loads(r["by_check"]),
                           by_severity=json.loads(r["by_severity"]), open_findings=r["open_findings"],
                           kind=r["kind"], compliance_percent=r["compliance_percent"],
                           resources_evaluated=r["resources_evaluated"],
                           resources_non_compliant=r["resources_non_compliant"], figures=json.loads(r["figures"]))
                for r in rows]

    # --- outbox ---------------------------------------------------------------------------------
    @staticmethod
    def _row(r: sqlite3.Row) -> OutboxRow:
        return OutboxRow(alert_id=r["alert_id"], channel=r["channel"], check_id=r["check_id"],
                         resource_key=r["resource_key"], seq=r["seq"], kind=r["kind"],
                         created_at=parse_iso(r["created_at"]), payload=json.loads(r["payload"]),  # type: ignore[arg-type]
                         status=AlertStatus(r["status"]), attempts=r["attempts"],
                         next_attempt_at=parse_iso(r["next_attempt_at"]), last_error=r["last_error"],
                         delivered_at=parse_iso(r["delivered_at"]))

    _DUE = ("SELECT * FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= ? {finding}"
            "AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.check_id = o.check_id "
            "  AND e.resource_key = o.resource_key AND e.channel = o.channel AND e.seq < o.seq "
            "  AND e.status = 'pending') "
            "ORDER BY o.created_at, o.seq, o.alert_id LIMIT ?")

    def claim_due(self, now: datetime, lease: timedelta, limit: int = 100, *,
                  findings: Collection[tuple[str, str]] | None = None) -> list[OutboxRow]:
        with self._tx() as db:
            if findings is None:
                cur = db.execute(self._DUE.format(finding=""), (iso(now), int(limit)))
                cur.row_factory = sqlite3.Row
                found = cur.fetchall()
            else:  # one indexed look-up per finding (outbox_finding), never a pass over a backlog
                found = []
                for check_id, resource_key in sorted(set(findings)):
                    cur = db.execute(self._DUE.format(finding="AND o.check_id = ? AND o.resource_key = ? "),
                                     (iso(now), check_id, resource_key, int(limit)))
                    cur.row_factory = sqlite3.Row
                    found += cur.fetchall()
                found.sort(key=lambda r: (r["created_at"], r["seq"], r["alert_id"]))
                del found[int(limit):]
            rows = [self._row(r) for r in found]
            until = iso(now + lease)
            for r in rows:
                db.execute("UPDATE outbox SET next_attempt_at = ? WHERE alert_id = ? AND channel = ?",
                           (until, r.alert_id, r.channel))
        return rows

    def mark_delivered(self, alert_id: str, channel: str, at: datetime) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1, "
                       "last_error = NULL WHERE alert_id = ? AND channel = ?", (iso(at), alert_id, channel))

    def mark_attempt_failed(self, alert_id: str, channel: str, *, error: str,
                            retry_at: datetime | None) -> None:
        with self._tx() as db:
            if retry_at is None:
                db.execute("UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? "
                           "WHERE alert_id = ? AND channel = ? AND status = 'pending'",
                           (error[:500], alert_id, channel))
            else:
                db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                           "WHERE alert_id = ? AND channel = ? AND status = 'pending'",
                           (error[:500], iso(retry_at), alert_id, channel))

    def outbox(self, status: AlertStatus | None = None) -> list[OutboxRow]:
        if status is None:
            rows = self._query("SELECT * FROM outbox ORDER BY created_at, seq, alert_id, channel")
        else:
            rows = self._query("SELECT * FROM outbox WHERE status = ? ORDER BY created_at, seq, alert_id, channel",
                               (status.value,))
        return [self._row(r) for r in rows]

    def retry_failed(self, now: datetime, alert_ids: Iterable[str] | None = None) -> int:
        with self._tx() as db:
            if alert_ids is None:
                cur = db.execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                                 "WHERE status = 'failed'", (iso(now),))
                return cur.rowcount
            n = 0
            for aid in alert_ids:
                n += db.execute("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
                                "WHERE status = 'failed' AND alert_id = ?", (iso(now), aid)).rowcount
            return n

    def next_due(self) -> datetime | None:
        rows = self._query("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'")
        return parse_iso(rows[0][0]) if rows and rows[0][0] else None

    # --- housekeeping ---------------------------------------------------------------------------
    def prune(self, older_than: datetime) -> int:
        """Drop history older than ``older_than``: resolved findings, settled alerts, scans, event ids (written by
        older versions), observations not seen since. Open and waived findings and pending alerts are never pruned."""
        cut = iso(older_than)
        with self._tx() as db:
            n = db.execute("DELETE FROM findings WHERE state = 'resolved' AND resolved_at < ?", (cut,)).rowcount
            db.execute("DELETE FROM finding_texts WHERE NOT EXISTS (SELECT 1 FROM findings f WHERE "
                       "f.check_id = finding_texts.check_id AND f.resource_key = finding_texts.resource_key)")
            n += db.execute("DELETE FROM outbox WHERE status = 'delivered' AND delivered_at < ?", (cut,)).rowcount
            n += db.execute("DELETE FROM outbox WHERE status = 'failed' AND created_at < ?", (cut,)).rowcount
            n += db.execute("DELETE FROM scans WHERE at < ?", (cut,)).rowcount
            n += db.execute("DELETE FROM processed_events WHERE processed_at < ?", (cut,)).rowcount
            n += db.execute("DELETE FROM observations WHERE last_seen < ?", (cut,)).rowcount
            return n
