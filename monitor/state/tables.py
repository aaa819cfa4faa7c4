"""The Azure Table Storage state store: shared state for several plmon instances (Function app scale-out).

Why Table Storage: a Function app already has a storage account, it costs nothing at plmon's volume,
and ETags give optimistic concurrency without a lock service.

Tables (``<prefix>`` is the configured table prefix, default ``plmon``):

``<prefix>state``
    One partition per finding, so a finding and its alerts change together in one entity-group
    transaction (Table Storage is atomic only inside one partition). PartitionKey ``f-<sha256 of
    check id + resource key, 40 hex>``. RowKey ``finding`` for the finding; ``o-<alert id>-<sha256
    of channel, 16 hex>`` for each outbox row of it.
``<prefix>observations``
    PartitionKey ``<first 2 hex of the key hash>`` (spread, but few partitions to scan), RowKey the
    sha256 of subject key + status.
``<prefix>scans``
    One partition ``scans``; RowKey ``<iso time>-<ns counter>-<random>`` so history sorts by time.

Keys never hold raw ARM ids: PartitionKey and RowKey may not contain ``/``, ``\\``, ``#`` or ``?``, and
ARM ids are full of ``/``; a hash is fixed-length and safe. The readable values are kept as properties.
Times are stored as :func:`plmon.monitor.state.store.iso` text so they compare as strings in query filters.
JSON larger than one string property (30K characters) is split over ``<name>_0``, ``<name>_1``, ... JSON larger than
``_INLINE`` characters (a hub firewall's finding lists every endpoint behind it: 600 kB and more) is not kept in its
row at all: an entity holds at most 1 MiB and an entity-group transaction at most 4 MiB, counted in UTF-16, so a
600k-character finding with its alert rows could never be written, and the service's refusal looked like a lost race
(retried, then given up: the resolve never went out). Such a value goes to *body* rows in the same partition, RowKey
``b-<sha256 of the text, 32 hex>-<part>``, upserted before the transaction that points at them (``<name>_ref``,
``<name>_parts``); they are named by their content, so a rewrite of the same text writes nothing new, the alert rows
of all channels share one body, and a crash between the two steps leaves only an unreferenced body that ``prune``
removes once it is older than the retention cut.

Concurrency. ``apply`` reads every finding it is about to write and compares its ``seq`` with the
writer's ``expected_seq`` before writing anything; each write is then conditioned on the ETag it
read (``MatchConditions.IfNotModified``; a finding believed new is *created*, which fails if another
writer created it first). A finding and its outbox rows are one transaction, so a finding never moves
without its alerts. Across findings there is no atomicity in Table Storage: when a later finding of a
multi-finding change loses a race, the earlier ones are already written (each one complete with its
alerts) and :class:`~plmon.monitor.state.store.ConflictError` is raised; the lifecycle re-reads and recomputes,
and because alert ids are derived from (finding, transition, seq), the redone part queues nothing new.
Outbox rows are inserted if absent. ``claim_due`` leases a row by an ETag-conditioned update of its
``next_attempt_at``: of two instances that read the same due row, exactly one update succeeds, and only
that one sends it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import structlog
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, TableServiceClient, TableTransactionError, UpdateMode

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
)

__all__ = ["CONNECTION_STRING_ENV", "TablesStore", "tables_store_from_url"]

log = structlog.get_logger(__name__)

CONNECTION_STRING_ENV = "PLMON_TABLES_CONNECTION_STRING"
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,40}$")
_CHUNK = 30_000          # characters per string property (the limit is 64 KiB of UTF-16)
_INLINE = 3 * _CHUNK     # JSON characters kept in the row itself; more goes to body rows (see the module docstring)
_BODY_CHUNKS = 12        # string properties per body row: 360k characters, 720 KiB of UTF-16, under the 1 MiB entity
_TX_BUDGET = 3_000_000   # estimated bytes of one entity-group transaction; the service refuses more than 4 MiB
_MAX_BATCH = 100         # operations per entity-group transaction
_FINDING_RK = "finding"
_KEYS_PER_QUERY = 12  # resource keys named in one findings query: the service allows 15 comparisons in a filter
_RETRIES = 8             # read-modify-write attempts before giving up on a hot row
_PAGE = 1000             # rows per page of a query: the service's maximum
# Error codes of a transaction refused because a row moved or appeared since it was read (retried); any other code
# is the service refusing the request itself, which a retry cannot change.
_RACE_CODES = frozenset({"EntityAlreadyExists", "UpdateConditionNotSatisfied", "ResourceNotFound",
                         "ConditionNotMet", "None"})
_OBS_GET_MAX = 32        # observation keys read one GET each when the table's size is not yet known (see _obs_rows)


def _h(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _finding_pk(check_id: str, resource_key: str) -> str:
    return "f-" + _h(check_id, resource_key)[:40]


def _outbox_rk(alert_id: str, channel: str) -> str:
    return f"o-{alert_id}-{_h(channel)[:16]}"


def _put_json(entity: dict[str, Any], name: str, value: Any) -> None:
    text = json.dumps(value, sort_keys=True)
    chunks = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    entity[f"{name}_n"] = len(chunks)
    for i, chunk in enumerate(chunks):
        entity[f"{name}_{i}"] = chunk


def _text(entity: Mapping[str, Any], name: str) -> str:
    return "".join(entity[f"{name}_{i}"] for i in range(int(entity[f"{name}_n"])))


def _get_json(entity: Mapping[str, Any], name: str) -> Any:
    return json.loads(_text(entity, name))


def _dumps(value: Any) -> str:
    """The stored text: a :class:`JsonSafe` value through orjson (what its maker checked it says alike), sorted."""
    if type(value) is JsonSafe:
        with contextlib.suppress(TypeError, orjson.JSONEncodeError):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return json.dumps(value if isinstance(value, dict) else dict(value), sort_keys=True)


def _code(err: HttpResponseError) -> str:
    """The service's error code as it sends it (``EntityAlreadyExists``): ``str()`` of the SDK's enum gives its name."""
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code))


def _body_rk(digest: str, part: int) -> str:
    return f"b-{digest}-{part:03d}"


def _entity_size(entity: Mapping[str, Any]) -> int:
    """About what the service counts for an entity: its strings in UTF-16, plus room for names and the rest."""
    return sum(2 * (len(k) + (len(v) if isinstance(v, str) else 8)) for k, v in entity.items()) + 1024


def _opt(entity: Mapping[str, Any], name: str, kind: Callable[[Any], Any]) -> Any:
    """A property that rows written before it existed lack (Table Storage has no null either)."""
    value = entity.get(name)
    return None if value is None else kind(value)


def _opt_iso(t: datetime | None) -> str | None:
    return iso(t) if t is not None else None


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    """Table Storage has no null: an absent property is None when read back."""
    return {k: v for k, v in entity.items() if v is not None}


def _obs_key(subject: str, status: str) -> tuple[str, str]:
    h = _h(subject, status)
    return h[:2], h


def _widen(e: dict[str, Any], stamp: str) -> dict[str, Any] | None:
    """The row with its seen-interval stretched to ``stamp``; None when it already covers it (nothing to write)."""
    if e["first_seen"] <= stamp <= e["last_seen"]:
        return None
    e["first_seen"], e["last_seen"] = min(e["first_seen"], stamp), max(e["last_seen"], stamp)
    return e


class TablesStore:
    """A :class:`plmon.monitor.state.store.StateStore` in Azure Table Storage (or Azurite)."""

    def __init__(self, service: TableServiceClient, prefix: str = "plmon") -> None:
        if not _PREFIX.match(prefix):
            raise InputError(f"state.url: table prefix {prefix!r} must be letters and digits, starting with a "
                             "letter, at most 41 characters")
        self.prefix = prefix
        self._service = service
        self._tables: dict[str, TableClient] = {}
        try:
            for name in ("state", "observations", "scans"):
                self._tables[name] = service.create_table_if_not_exists(f"{prefix}{name}")
        except ClientAuthenticationError as err:
            raise InputError(f"state store: Table Storage refused the credentials ({err.reason or err})") from None
        except (AzureError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"state store: cannot open Table Storage tables '{prefix}*' ({first})") from None
        self._state = self._tables["state"]
        self._scan_counter = threading.Lock()
        self._last_ns = 0
        # Outbox row key -> partition, learnt when rows are read: marking a claimed row needs no search.
        self._partition_of: dict[str, str] = {}
        self._obs_pages = 0   # pages the last scan of the observations table took: its size in requests

    @property
    def service(self) -> TableServiceClient:
        """The account's client, for the intake queue that lives beside the store (Function app)."""
        return self._service

    def close(self) -> None:
        for t in self._tables.values():
            t.close()
        self._service.close()

    def drop_tables(self) -> None:
        """Delete this store's tables (tests and ``uninstall``); the data is gone."""
        for t in self._tables.values():
            self._service.delete_table(t.table_name)

    # --- plumbing -------------------------------------------------------------------------------
    @staticmethod
    def _get(table: TableClient, pk: str, rk: str) -> TableEntity | None:
        """The row as the SDK returns it: a dict whose ``metadata`` holds the ETag the writes are conditioned on."""
        try:
            return table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return None

    def _update_row(self, table: TableClient, pk: str, rk: str,
                    change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bool:
        """Read, change, write back only if unchanged meanwhile; ``change`` returns None to leave it.
        Retried on a lost race; False when the row is absent or ``change`` declined."""
        for _ in range(_RETRIES):
            current = self._get(table, pk, rk)
            if current is None:
                return False
            new = change(dict(current))
            if new is None:
                return False
            try:
                table.update_entity(_clean(new), mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
                return True
            except ResourceModifiedError:
                continue
            except ResourceNotFoundError:
                return False
        raise ConflictError(f"table row {table.table_name}/{pk}/{rk} kept changing; gave up after {_RETRIES} tries")

    # --- findings ------------------------------------------------------------------------------
    def _put_value(self, entity: dict[str, Any], name: str, value: Any, *, stored_ref: str | None = None,
                   written: set[tuple[str, str]] | None = None) -> None:
        """``value`` into ``entity`` as ``<name>_<i>`` chunks, or, past ``_INLINE`` characters, into body rows of the
        entity's partition (written now, before the entity) with ``<name>_ref`` naming them. ``stored_ref`` is the
        body the partition is known to hold already (the row read before this write): the same text is not sent
        again; ``written`` collects the bodies this change wrote (the alert rows of all channels share one)."""
        text = _dumps(value)
        if len(text) <= _INLINE:
            chunks = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
            entity[f"{name}_n"] = len(chunks)
            for i, chunk in enumerate(chunks):
                entity[f"{name}_{i}"] = chunk
            return
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        per_row = _CHUNK * _BODY_CHUNKS
        parts = [text[i:i + per_row] for i in range(0, len(text), per_row)]
        entity[f"{name}_ref"], entity[f"{name}_parts"] = digest, len(parts)
        pk, stamp = entity["PartitionKey"], iso(datetime.now(UTC))
        if digest == stored_ref or (written is not None and (pk, digest) in written):
            return
        if written is not None:
            written.add((pk, digest))
        for n, part in enumerate(parts):
            body: dict[str, Any] = {"PartitionKey": pk, "RowKey": _body_rk(digest, n), "kind": "body",
                                    "digest": digest, "written_at": stamp}
            chunks = [part[i:i + _CHUNK] for i in range(0, len(part), _CHUNK)]
            body["body_n"] = len(chunks)
            for i, chunk in enumerate(chunks):
                body[f"body_{i}"] = chunk
            self._state.upsert_entity(body, mode=UpdateMode.REPLACE)
        log.debug("tables_body_written", partition=pk, name=name, characters=len(text), rows=len(parts))

    def _get_value(self, entity: Mapping[str, Any], name: str) -> Any:
        """The value :meth:`_put_value` stored: from the row's chunks or from its body rows."""
        digest = entity.get(f"{name}_ref")
        if digest is None:
            return _get_json(entity, name)
        rows = {e["RowKey"]: e for e in self._state.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": entity["PartitionKey"], "lo": f"b-{digest}-", "hi": f"b-{digest}."})}
        try:
            return json.loads("".join(_text(rows[_body_rk(digest, n)], "body")
                                      for n in range(int(entity[f"{name}_parts"]))))
        except KeyError:
            # A reader never sees a row before its body (bodies are written first, pruned only unreferenced).
            raise ConflictError(f"table row {entity['PartitionKey']}/{entity['RowKey']}: body {digest} is "
                                "missing") from None

    def _finding_entity(self, rec: FindingRecord, stored_ref: str | None = None) -> dict[str, Any]:
        e: dict[str, Any] = {
            "PartitionKey": _finding_pk(rec.check_id, rec.resource_key), "RowKey": _FINDING_RK, "kind": "finding",
            "check_id": rec.check_id, "resource_key": rec.resource_key, "resource_id": rec.resource_id,
            "state": rec.state.value, "severity": rec.severity, "first_seen": iso(rec.first_seen),
            "last_seen": iso(rec.last_seen), "resolved_at": _opt_iso(rec.resolved_at),
            "last_alert_at": _opt_iso(rec.last_alert_at), "seq": int(rec.seq),
            "channels": json.dumps(list(rec.channels)),
        }
        self._put_value(e, "finding", rec.finding, stored_ref=stored_ref)
        return _clean(e)

    def _finding(self, e: Mapping[str, Any]) -> FindingRecord:
        return FindingRecord(
            check_id=e["check_id"], resource_key=e["resource_key"], resource_id=e["resource_id"],
            state=FindingState(e["state"]), severity=e["severity"],
            first_seen=parse_iso(e["first_seen"]), last_seen=parse_iso(e["last_seen"]),  # type: ignore[arg-type]
            resolved_at=parse_iso(e.get("resolved_at")), last_alert_at=parse_iso(e.get("last_alert_at")),
            seq=int(e["seq"]), finding=self._get_value(e, "finding"), channels=tuple(json.loads(e["channels"])))

    def get_finding(self, check_id: str, resource_key: str) -> FindingRecord | None:
        e = self._get(self._state, _finding_pk(check_id, resource_key), _FINDING_RK)
        return self._finding(e) if e is not None else None

    def findings(self, state: FindingState | None = None, *,
                 resource_keys: Collection[str] | None = None) -> list[FindingRecord]:
        query, params = "RowKey eq @rk", {"rk": _FINDING_RK}
        if state is not None:
            query, params = f"{query} and state eq @s", {**params, "s": state.value}
        keys = None if resource_keys is None else sorted(set(resource_keys))
        if keys is not None and len(keys) <= _KEYS_PER_QUERY:
            # A finding's partition is (check id, resource key) and the check ids are not known here: one query
            # whose filter names the keys, so the service sends back these findings, not every one.
            if not keys:
                return []
            names = {f"k{i}": k for i, k in enumerate(keys)}
            # spaces around the parentheses: the SDK finds parameters by splitting the filter on spaces
            query = f"{query} and ( {' or '.join(f'resource_key eq @{n}' for n in names)} )"
            params = {**params, **names}
            keys = None
        rows = self._state.query_entities(query, parameters=params)
        wanted = None if keys is None else set(keys)
        return sorted((r for r in (self._finding(e) for e in rows) if wanted is None or r.resource_key in wanted),
                      key=lambda r: (r.check_id, r.resource_key))

    def open_counts(self) -> dict[str, int]:
        """Counted from the severity column alone: a finding's evidence (a body of its own when large: a hub
        firewall's lists every endpoint) is not needed to count it, and this runs after every event."""
        rows = self._state.query_entities("RowKey eq @rk and state eq @s", select=["severity"],
                                          parameters={"rk": _FINDING_RK, "s": FindingState.OPEN.value})
        return dict(Counter(e["severity"] for e in rows))

    def apply(self, change: ChangeSet) -> None:
        # 1. Check every expected sequence before writing anything.
        plan: list[tuple[str, FindingRecord, TableEntity | None]] = []
        for rec, expected in change.findings:
            pk = _finding_pk(rec.check_id, rec.resource_key)
            current = self._get(self._state, pk, _FINDING_RK)
            seq = int(current["seq"]) if current is not None else None
            if seq != expected:
                raise ConflictError(f"finding {rec.check_id} {rec.resource_key}: sequence {seq}, expected {expected}")
            plan.append((pk, rec, current))
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        written: set[tuple[str, str]] = set()
        for o in change.outbox:
            pk = _finding_pk(o.check_id, o.resource_key)
            rows.setdefault(pk, {})[_outbox_rk(o.alert_id, o.channel)] = self._outbox_entity(o, written)
        # 2. Each finding with its own alerts: one transaction, conditioned on what step 1 read.
        for pk, rec, current in plan:
            self._write_finding(pk, rec, current, rows.pop(pk, {}))
        # 3. Alerts without a finding in this change: insert if absent.
        for entities in rows.values():
            for entity in entities.values():
                with contextlib.suppress(ResourceExistsError):
                    self._state.create_entity(entity)
        if change.scan is not None:
            self._add_scan(change.scan)

    def _write_finding(self, pk: str, rec: FindingRecord, current: TableEntity | None,
                       outbox: dict[str, dict[str, Any]]) -> None:
        etag = current.metadata["etag"] if current is not None else None
        entity = self._finding_entity(rec, current.get("finding_ref") if current is not None else None)
        first: tuple[Any, ...] = (("create", entity) if etag is None else
                                  ("update", entity, {"mode": UpdateMode.REPLACE, "etag": etag,
                                                      "match_condition": MatchConditions.IfNotModified}))
        for _ in range(_RETRIES):
            existing = {e["RowKey"] for e in self._state.query_entities(
                "PartitionKey eq @pk and RowKey ge 'o-' and RowKey lt 'o.'", parameters={"pk": pk},
                select=["RowKey"])}
            new = [ent for rk, ent in sorted(outbox.items()) if rk not in existing]
            # As many alert rows as the transaction's size allows go with the finding (a finding never moves without
            # its alerts); more channels than that (rare: rows are small once their payload sits in a body) follow.
            ops, size, split = [first], _entity_size(entity), 0
            for ent in new[:_MAX_BATCH - 1]:
                if size + _entity_size(ent) > _TX_BUDGET:
                    break
                ops.append(("create", ent))
                size += _entity_size(ent)
                split += 1
            try:
                self._state.submit_transaction(ops)
            except TableTransactionError as err:
                code = _code(err)
                now = self._get(self._state, pk, _FINDING_RK)
                if (now.metadata["etag"] if now is not None else None) != etag:
                    raise ConflictError(f"finding {rec.check_id} {rec.resource_key}: changed by another "
                                        f"writer ({code})") from None
                if code not in _RACE_CODES:
                    # Not a race: the service refused the request itself (too large, a bad property). Retrying
                    # sends the same request; say why once, and let the lifecycle report the failure.
                    log.warning("tables_transaction_refused", partition=pk, check_id=rec.check_id,
                                error_code=code, operations=len(ops), estimated_bytes=size)
                    raise ConflictError(f"finding {rec.check_id} {rec.resource_key}: Table Storage refused the "
                                        f"transaction ({code})") from None
                # Our finding is where we read it: an alert row was inserted meanwhile (a redelivered change).
                log.info("tables_transaction_retry", partition=pk, error_code=code)
                continue
            for ent in new[split:]:
                with contextlib.suppress(ResourceExistsError):
                    self._state.create_entity(ent)
            return
        raise ConflictError(f"finding {rec.check_id} {rec.resource_key}: transaction kept failing")

    # --- observations ---------------------------------------------------------------------------
    @property
    def _obs(self) -> TableClient:
        return self._tables["observations"]

    def _obs_rows(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], TableEntity]:
        """The stored rows of ``keys`` (with their ETags), in as few requests as the table allows.

        A GET costs one request per key; a scan of the table costs one per page of 1000 rows, whatever the keys
        (observation rows are spread over 256 partitions on purpose, so many keys touch nearly all of them and a
        partition query each would cost more than the scan). The scan is taken when there are more keys than the
        last scan had pages (the table's size in requests, learnt for free) and more than ``_OBS_GET_MAX``: an
        event's few keys, before any scan told the table's size, stay on GETs (one scan of a 35k-row table is 35
        pages and 35k rows moved)."""
        if len(keys) <= max(_OBS_GET_MAX, self._obs_pages):
            out: dict[tuple[str, str], TableEntity] = {}
            for subject, status in keys:
                pk, rk = _obs_key(subject, status)
                e = self._get(self._obs, pk, rk)
                if e is not None:
                    out[(subject, status)] = e
            return out
        by_rk = {_obs_key(subject, status)[1]: (subject, status) for subject, status in keys}
        found: dict[tuple[str, str], TableEntity] = {}
        pages = 0
        for page in self._obs.list_entities(results_per_page=_PAGE).by_page():
            pages += 1
            for e in page:
                if (key := by_rk.get(e["RowKey"])) is not None:
                    found[key] = e
        self._obs_pages = pages
        return found

    def observe(self, seen: Iterable[tuple[str, str]], at: datetime) -> None:
        """Read what exists in bulk, then write only the rows to create or widen, one entity-group transaction per
        partition and 100 rows (each create fails if the row appeared meanwhile, each widening is conditioned on the
        ETag read), instead of a create, a read and a replace per pair (~100k requests a collection at 100k
        resources). A transaction refused (another writer created or widened one of its rows since the read) is
        redone row by row with the compare-and-swap loop, so no writer's widening is lost."""
        stamp = iso(at)
        pairs = set(seen)
        if not pairs:
            return
        existing = self._obs_rows(pairs)
        ops: dict[str, list[tuple[tuple[str, str], tuple[Any, ...]]]] = {}
        for subject, status in sorted(pairs):
            pk, rk = _obs_key(subject, status)
            e = existing.get((subject, status))
            op: tuple[Any, ...]
            if e is None:
                op = ("create", {"PartitionKey": pk, "RowKey": rk, "subject_key": subject, "status": status,
                                 "first_seen": stamp, "last_seen": stamp})
            else:
                wider = _widen(dict(e), stamp)
                if wider is None:
                    continue
                op = ("update", _clean(wider), {"mode": UpdateMode.REPLACE, "etag": e.metadata["etag"],
                                                "match_condition": MatchConditions.IfNotModified})
            ops.setdefault(pk, []).append(((subject, status), op))
        for pk, items in sorted(ops.items()):
            for i in range(0, len(items), _MAX_BATCH):
                chunk = items[i:i + _MAX_BATCH]
                try:
                    self._obs.submit_transaction([op for _, op in chunk])
                except TableTransactionError as err:
                    # Atomic: none of the chunk was written. Another writer got there between the read and here.
                    log.info("observations_batch_conflict", partition=pk, rows=len(chunk),
                             error_code=_code(err))
                    for (subject, status), _ in chunk:
                        self._observe_one(subject, status, stamp)

    def _observe_one(self, subject: str, status: str, stamp: str) -> None:
        """One pair, racing other writers: create it, or widen it by compare-and-swap."""
        pk, rk = _obs_key(subject, status)
        try:
            self._obs.create_entity({"PartitionKey": pk, "RowKey": rk, "subject_key": subject,
                                     "status": status, "first_seen": stamp, "last_seen": stamp})
            return
        except ResourceExistsError:
            pass
        self._update_row(self._obs, pk, rk, lambda e: _widen(e, stamp))

    def observations(self, keys: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], datetime]:
        if keys is None:
            return {(e["subject_key"], e["status"]): parse_iso(e["first_seen"])  # type: ignore[misc]
                    for e in self._obs.list_entities()}
        return {key: parse_iso(e["first_seen"])  # type: ignore[misc]
                for key, e in self._obs_rows(set(keys)).items()}

    # --- scans ----------------------------------------------------------------------------------
    @property
    def _scans(self) -> TableClient:
        return self._tables["scans"]

    def _add_scan(self, s: ScanRecord) -> None:
        with self._scan_counter:
            ns = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = ns
        entity: dict[str, Any] = {
            "PartitionKey": "scans", "RowKey": f"{iso(s.at)}-{ns:020d}-{uuid.uuid4().hex[:8]}", "at": iso(s.at),
            "kind": s.kind, "subscriptions_scanned": int(s.subscriptions_scanned), "gaps": int(s.gaps),
            "open_findings": int(s.open_findings), "by_check": json.dumps(dict(s.by_check), sort_keys=True),
            "by_severity": json.dumps(dict(s.by_severity), sort_keys=True),
            "compliance_percent": s.compliance_percent, "resources_evaluated": s.resources_evaluated,
            "resources_non_compliant": s.resources_non_compliant}
        _put_json(entity, "figures", dict(s.figures))  # the gaps list can outgrow one string property
        self._scans.create_entity(_clean(entity))

    def scan_history(self, since: datetime | None = None) -> list[ScanRecord]:
        rows = self._scans.query_entities("PartitionKey eq 'scans' and at ge @since",
                                          parameters={"since": iso(since) if since else ""})
        return [ScanRecord(at=parse_iso(e["at"]), subscriptions_scanned=int(e["subscriptions_scanned"]),  # type: ignore[arg-type]
                           gaps=int(e["gaps"]), by_check=json.loads(e["by_check"]),
                           by_severity=json.loads(e["by_severity"]), open_findings=int(e["open_findings"]),
                           kind=e["kind"], compliance_percent=_opt(e, "compliance_percent", float),
                           resources_evaluated=_opt(e, "resources_evaluated", int),
                           resources_non_compliant=_opt(e, "resources_non_compliant", int),
                           figures=_get_json(e, "figures") if "figures_n" in e else {})
                for e in sorted(rows, key=lambda e: e["RowKey"])]

    # --- outbox ---------------------------------------------------------------------------------
    def _outbox_entity(self, o: OutboxRow, written: set[tuple[str, str]] | None = None) -> dict[str, Any]:
        e: dict[str, Any] = {
            "PartitionKey": _finding_pk(o.check_id, o.resource_key), "RowKey": _outbox_rk(o.alert_id, o.channel),
            "kind": "outbox", "alert_id": o.alert_id, "channel": o.channel, "check_id": o.check_id,
            "resource_key": o.resource_key, "seq": int(o.seq), "alert_kind": o.kind, "created_at": iso(o.created_at),
            "status": o.status.value, "attempts": int(o.attempts),
            "next_attempt_at": iso(o.next_attempt_at or o.created_at), "last_error": o.last_error,
            "delivered_at": _opt_iso(o.delivered_at),
        }
        self._put_value(e, "payload", o.payload, written=written)
        return _clean(e)

    def _row(self, e: Mapping[str, Any]) -> OutboxRow:
        return OutboxRow(alert_id=e["alert_id"], channel=e["channel"], check_id=e["check_id"],
                         resource_key=e["resource_key"], seq=int(e["seq"]), kind=e["alert_kind"],
                         created_at=parse_iso(e["created_at"]), payload=self._get_value(e, "payload"),  # type: ignore[arg-type]
                         status=AlertStatus(e["status"]), attempts=int(e["attempts"]),
                         next_attempt_at=parse_iso(e.get("next_attempt_at")), last_error=e.get("last_error"),
                         delivered_at=parse_iso(e.get("delivered_at")))

    def _outbox_entities(self, status: AlertStatus | None = None) -> Iterator[TableEntity]:
        if status is None:
            return iter(self._state.query_entities("kind eq 'outbox'"))
        return iter(self._state.query_entities("kind eq 'outbox' and status eq @s",
                                               parameters={"s": status.value}))

    def claim_due(self, now: datetime, lease: timedelta, limit: int = 100, *,
                  findings: Collection[tuple[str, str]] | None = None) -> list[OutboxRow]:
        stamp, until = iso(now), iso(now + lease)
        if findings is None:
            pending = list(self._outbox_entities(AlertStatus.PENDING))
        else:  # a finding's rows share its partition: a query per finding, never a pass over a backlog
            pending = [e for pk in sorted({_finding_pk(c, k) for c, k in findings})
                       for e in self._state.query_entities("PartitionKey eq @pk and kind eq 'outbox' and status eq @s",
                                                           parameters={"pk": pk, "s": AlertStatus.PENDING.value})]
        lowest: dict[tuple[str, str, str], int] = {}
        for e in pending:
            group = (e["check_id"], e["resource_key"], e["channel"])
            lowest[group] = min(lowest.get(group, int(e["seq"])), int(e["seq"]))
        due = [e for e in pending if e["next_attempt_at"] <= stamp
               and int(e["seq"]) <= lowest[(e["check_id"], e["resource_key"], e["channel"])]]
        due.sort(key=lambda e: (e["created_at"], int(e["seq"]), e["alert_id"]))
        claimed: list[OutboxRow] = []
        for e in due:
            if len(claimed) >= limit:
                break
            try:
                self._state.update_entity({"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"],
                                           "next_attempt_at": until}, mode=UpdateMode.MERGE,
                                          etag=e.metadata["etag"], match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                continue  # another instance leased, delivered or pruned it since we read it
            claimed.append(self._row(e))
            if len(self._partition_of) > 10_000:
                self._partition_of.clear()
            self._partition_of[e["RowKey"]] = e["PartitionKey"]
        return claimed

    def mark_delivered(self, alert_id: str, channel: str, at: datetime) -> None:
        def done(e: dict[str, Any]) -> dict[str, Any]:
            e.update(status=AlertStatus.DELIVERED.value, delivered_at=iso(at), attempts=int(e["attempts"]) + 1,
                     last_error=None)
            return e

        self._update_row(self._state, *self._locate(alert_id, channel), done)

    def mark_attempt_failed(self, alert_id: str, channel: str, *, error: str,
                            retry_at: datetime | None) -> None:
        def failed(e: dict[str, Any]) -> dict[str, Any] | None:
            if e["status"] != AlertStatus.PENDING.value:
                return None
            e.update(attempts=int(e["attempts"]) + 1, last_error=error[:500])
            if retry_at is None:
                e["status"] = AlertStatus.FAILED.value
            else:
                e["next_attempt_at"] = iso(retry_at)
            return e

        self._update_row(self._state, *self._locate(alert_id, channel), failed)

    def _locate(self, alert_id: str, channel: str) -> tuple[str, str]:
        """The partition of an alert row: the alert id does not say which finding it belongs to."""
        rk = _outbox_rk(alert_id, channel)
        known = self._partition_of.get(rk)
        if known is not None:
            return known, rk
        for e in self._state.query_entities("RowKey eq @rk", parameters={"rk": rk}, select=["PartitionKey"]):
            return e["PartitionKey"], rk
        return "", rk  # absent: _update_row then finds nothing and leaves it

    def outbox(self, status: AlertStatus | None = None) -> list[OutboxRow]:
        rows = [self._row(e) for e in self._outbox_entities(status)]
        return sorted(rows, key=lambda o: (iso(o.created_at), o.seq, o.alert_id, o.channel))

    def retry_failed(self, now: datetime, alert_ids: Iterable[str] | None = None) -> int:
        wanted = set(alert_ids) if alert_ids is not None else None

        def back(e: dict[str, Any]) -> dict[str, Any] | None:
            if e["status"] != AlertStatus.FAILED.value:
                return None
            e.update(status=AlertStatus.PENDING.value, attempts=0, next_attempt_at=iso(now))
            return e

        n = 0
        for e in list(self._outbox_entities(AlertStatus.FAILED)):
            if wanted is None or e["alert_id"] in wanted:
                n += self._update_row(self._state, e["PartitionKey"], e["RowKey"], back)
        return n

    def next_due(self) -> datetime | None:
        times = [e["next_attempt_at"] for e in self._outbox_entities(AlertStatus.PENDING)]
        return parse_iso(min(times)) if times else None

    # --- housekeeping ---------------------------------------------------------------------------
    def prune(self, older_than: datetime) -> int:
        """Drop history older than ``older_than`` (as the SQLite store does): resolved findings,
        settled alerts, scans, observations not seen since. Open state is never pruned."""
        cut = iso(older_than)
        doomed: list[tuple[TableClient, TableEntity]] = []
        doomed += [(self._state, e) for e in self._state.query_entities(
            "RowKey eq 'finding' and state eq 'resolved' and resolved_at lt @c", parameters={"c": cut})]
        doomed += [(self._state, e) for e in self._state.query_entities(
            "kind eq 'outbox' and status eq 'delivered' and delivered_at lt @c", parameters={"c": cut})]
        doomed += [(self._state, e) for e in self._state.query_entities(
            "kind eq 'outbox' and status eq 'failed' and created_at lt @c", parameters={"c": cut})]
        doomed += [(self._scans, e) for e in self._scans.query_entities("at lt @c", parameters={"c": cut})]
        doomed += [(self._obs, e) for e in self._obs.query_entities("last_seen lt @c", parameters={"c": cut})]
        n = self._delete(doomed)
        # Bodies (large findings and payloads) that no row refers to any more, read after the rows above went.
        # Only bodies older than the cut: one written for a change still in flight is not referred to yet.
        # The delete is conditioned on the ETag read, so a body a writer has just upserted again stays.
        referred = {(e["PartitionKey"], ref) for e in self._state.query_entities(
            "kind eq 'finding' or kind eq 'outbox'", select=["PartitionKey", "finding_ref", "payload_ref"])
            for ref in (e.get("finding_ref"), e.get("payload_ref")) if ref}
        bodies = self._delete([(self._state, e) for e in self._state.query_entities(
            "kind eq 'body' and written_at lt @c", parameters={"c": cut}, select=["PartitionKey", "RowKey", "digest"])
            if (e["PartitionKey"], e["digest"]) not in referred])
        if bodies:
            log.info("tables_bodies_pruned", rows=bodies)
        return n  # history rows, as the SQLite store counts them; bodies are storage detail

    @staticmethod
    def _delete(doomed: Iterable[tuple[TableClient, TableEntity]]) -> int:
        n = 0
        for table, e in doomed:
            try:
                # Conditioned on the ETag read: a row that changed since (a finding reopened) stays.
                table.delete_entity(e["PartitionKey"], e["RowKey"], etag=e.metadata["etag"],
                                    match_condition=MatchConditions.IfNotModified)
                n += 1
            except (ResourceNotFoundError, ResourceModifiedError):
                continue
            except HttpResponseError as err:
                if err.status_code != 412:
                    raise
        return n


def tables_store_from_url(url: str, environ: Mapping[str, str] | None = None) -> TablesStore:
    """``azuretables://<account>/<prefix>`` (managed identity via DefaultAzureCredential), or a connection
    string: ``azuretables:///<prefix>`` with ``PLMON_TABLES_CONNECTION_STRING`` set, or
    ``azuretables:///<prefix>?connection_string_env=VAR``. The prefix defaults to ``plmon``."""
    env = environ or {}
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    unknown = set(query) - {"connection_string_env"}
    if unknown:
        raise InputError(f"state.url: unknown azuretables option(s) {', '.join(sorted(unknown))} "
                         "(supported: connection_string_env)")
    prefix = parts.path.strip("/") or "plmon"
    if not _PREFIX.match(prefix):
        raise InputError(f"state.url: table prefix {prefix!r} must be letters and digits, starting with a "
                         "letter, at most 41 characters")
    account = parts.netloc
    if account:
        if not re.fullmatch(r"[a-z0-9]{3,24}", account):
            raise InputError(f"state.url: {account!r} is not a storage account name (3-24 lower-case letters "
                             "and digits)")
        from azure.identity import DefaultAzureCredential

        service = TableServiceClient(endpoint=f"https://{account}.table.core.windows.net",
                                     credential=DefaultAzureCredential())
        return TablesStore(service, prefix)
    var = query.get("connection_string_env", [CONNECTION_STRING_ENV])[0]
    conn = env.get(var, "")
    if not conn:
        raise InputError(f"state.url: azuretables without an account needs a connection string in ${var}")
    try:
        service = TableServiceClient.from_connection_string(conn)
    except ValueError:
        raise InputError(f"state.url: ${var} is not a valid storage connection string") from None
    return TablesStore(service, prefix)
