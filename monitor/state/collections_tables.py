"""The collection book in Azure Table Storage: one row per scheduled collection, one per shard, and the schedule's
own bookkeeping, every change a compare-and-swap on the row's ETag.

Why Tables and ETags: the holder of the schedule lease drives a collection by moving rows (``stage1`` ->
``stage2`` -> ``finalizing`` -> ``published``), and workers move shard rows (``queued`` -> ``running`` ->
``done|failed``). A lease can be lost while its holder is paused; an ex-holder that wakes up writes with the ETag it
read, which has moved, so it gets :class:`~plmon.monitor.state.scaleout.CasConflict` instead of starting a second
collection or publishing twice. Creating the tick's collection row is the "exactly once per tick": a second
creator gets :class:`~plmon.monitor.state.scaleout.AlreadyWritten` and continues the existing collection.

Tables (``<prefix>`` as in :mod:`plmon.monitor.state.tables`):

``<prefix>collections``
    PartitionKey ``collections``, RowKey the collection id (ids are tick times, so they sort by time); and the row
    ``schedule``/``jobs`` (the lease epoch, when reminders and retention last ran).
``<prefix>shards``
    PartitionKey the collection id, RowKey the shard name. The shard's work (stage-2 reads) is JSON split over
    ``work_0``, ``work_1``, ... as :func:`plmon.monitor.state.tables._put_json` does (32K characters a property).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from plmon.monitor.state.azure_errors import storage_errors
from plmon.monitor.state.scaleout import (
    AlreadyWritten,
    CasConflict,
    CollectionRow,
    CollectionState,
    NotFound,
    ScheduleJobs,
    ShardRow,
)
from plmon.monitor.state.store import iso, parse_iso

__all__ = ["TablesCollectionBook"]

_COLLECTIONS_PK = "collections"
_JOBS = ("schedule", "jobs")
_CHUNK = 30_000
_Row = TypeVar("_Row", CollectionRow, ShardRow)


def _t(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    """Table Storage has no null: an absent property reads back as None."""
    return {k: v for k, v in entity.items() if v is not None}


def _etag(metadata: Mapping[str, Any]) -> str:
    return str(metadata["etag"])


class TablesCollectionBook:
    """:class:`plmon.monitor.state.scaleout.CollectionBook` in two Azure tables."""

    def __init__(self, service: TableServiceClient, prefix: str = "plmon") -> None:
        with storage_errors(f"tables {prefix}collections, {prefix}shards"):
            self._collections: TableClient = service.create_table_if_not_exists(f"{prefix}collections")
            self._shards: TableClient = service.create_table_if_not_exists(f"{prefix}shards")

    # --- plumbing ---------------------------------------------------------------------------------------
    @staticmethod
    def _create(table: TableClient, entity: dict[str, Any], what: str) -> str:
        with storage_errors(what):
            return _etag(table.create_entity(_clean(entity)))

    @staticmethod
    def _replace(table: TableClient, entity: dict[str, Any], etag: str | None, what: str) -> str:
        if etag is None:
            raise CasConflict(f"{what}: no ETag to compare with (read the row first)")
        try:
            with storage_errors(what):
                return _etag(table.update_entity(_clean(entity), mode=UpdateMode.REPLACE, etag=etag,
                                                 match_condition=MatchConditions.IfNotModified))
        except NotFound:
            raise CasConflict(f"{what}: gone since it was read") from None

    @staticmethod
    def _get(table: TableClient, pk: str, rk: str, what: str) -> Any | None:
        try:
            with storage_errors(what):
                return table.get_entity(pk, rk)
        except NotFound:
            return None

    # --- collections ------------------------------------------------------------------------------------
    @staticmethod
    def _collection_entity(r: CollectionRow) -> dict[str, Any]:
        return {"PartitionKey": _COLLECTIONS_PK, "RowKey": r.collection, "state": r.state, "tick": r.tick,
                "started_at": iso(r.started_at), "started_by": r.started_by, "epoch": r.epoch,
                "deadline": iso(r.deadline), "shards_total": r.shards_total, "manifest": r.manifest,
                "published_at": _t(r.published_at), "requests": r.requests, "gaps": r.gaps}

    @staticmethod
    def _collection_row(e: Mapping[str, Any]) -> CollectionRow:
        state: CollectionState = e["state"]
        return CollectionRow(collection=e["RowKey"], state=state, tick=int(e["tick"]),
                             started_at=parse_iso(e["started_at"]),  # type: ignore[arg-type]
                             started_by=e["started_by"], epoch=int(e["epoch"]),
                             deadline=parse_iso(e["deadline"]),  # type: ignore[arg-type]
                             shards_total=int(e.get("shards_total") or 0), manifest=e.get("manifest") or "",
                             published_at=parse_iso(e["published_at"]) if e.get("published_at") else None,
                             requests=int(e.get("requests") or 0), gaps=int(e.get("gaps") or 0),
                             etag=_etag(e.metadata) if hasattr(e, "metadata") else None)

    def _what(self, collection: str) -> str:
        return f"collection row {self._collections.table_name}/{collection}"

    def create_collection(self, row: CollectionRow) -> CollectionRow:
        etag = self._create(self._collections, self._collection_entity(row), self._what(row.collection))
        return _with_etag(row, etag)

    def collection(self, collection: str) -> CollectionRow | None:
        e = self._get(self._collections, _COLLECTIONS_PK, collection, self._what(collection))
        return None if e is None else self._collection_row(e)

    def update_collection(self, row: CollectionRow) -> CollectionRow:
        etag = self._replace(self._collections, self._collection_entity(row), row.etag, self._what(row.collection))
        return _with_etag(row, etag)

    def collections(self, states: Sequence[CollectionState] | None = None) -> list[CollectionRow]:
        with storage_errors(f"table {self._collections.table_name}"):
            rows = [self._collection_row(e) for e in self._collections.query_entities(
                "PartitionKey eq @pk", parameters={"pk": _COLLECTIONS_PK})]
        return sorted((r for r in rows if states is None or r.state in states), key=lambda r: r.collection)

    # --- shards -----------------------------------------------------------------------------------------
    @staticmethod
    def _shard_entity(r: ShardRow) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": r.collection, "RowKey": r.shard, "stage": r.stage, "budget_key": r.budget_key,
            "state": r.state, "attempt": r.attempt, "worker": r.worker, "heartbeat_at": _t(r.heartbeat_at),
            "started_at": _t(r.started_at), "finished_at": _t(r.finished_at), "segment": r.segment,
            "segment_etag": r.segment_etag, "reads": r.reads, "spent": float(r.spent), "error": r.error[:2000]}
        text = json.dumps(list(r.work), separators=(",", ":"))
        chunks = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        entity["work_n"] = len(chunks)
        for i, chunk in enumerate(chunks):
            entity[f"work_{i}"] = chunk
        return entity

    @staticmethod
    def _shard_row(e: Mapping[str, Any]) -> ShardRow:
        work = json.loads("".join(e[f"work_{i}"] for i in range(int(e.get("work_n") or 0))) or "[]")
        return ShardRow(collection=e["PartitionKey"], shard=e["RowKey"], stage=int(e["stage"]),
                        budget_key=e["budget_key"], state=e["state"], attempt=int(e.get("attempt") or 0),
                        worker=e.get("worker") or "",
                        heartbeat_at=parse_iso(e["heartbeat_at"]) if e.get("heartbeat_at") else None,
                        started_at=parse_iso(e["started_at"]) if e.get("started_at") else None,
                        finished_at=parse_iso(e["finished_at"]) if e.get("finished_at") else None,
                        segment=e.get("segment") or "", segment_etag=e.get("segment_etag") or "",
                        reads=int(e.get("reads") or 0), spent=float(e.get("spent") or 0.0),
                        error=e.get("error") or "", work=tuple(work),
                        etag=_etag(e.metadata) if hasattr(e, "metadata") else None)

    def _shard_what(self, collection: str, shard: str) -> str:
        return f"shard row {self._shards.table_name}/{collection}/{shard}"

    def add_shards(self, rows: Sequence[ShardRow]) -> list[ShardRow]:
        out: list[ShardRow] = []
        for r in rows:
            what = self._shard_what(r.collection, r.shard)
            try:
                out.append(_with_etag(r, self._create(self._shards, self._shard_entity(r), what)))
            except AlreadyWritten:
                stored = self.shard(r.collection, r.shard)
                if stored is None:  # created and removed in between: nothing sensible to return but ours
                    raise CasConflict(f"{what}: vanished while being added") from None
                out.append(stored)
        return out

    def shard(self, collection: str, shard: str) -> ShardRow | None:
        e = self._get(self._shards, collection, shard, self._shard_what(collection, shard))
        return None if e is None else self._shard_row(e)

    def update_shard(self, row: ShardRow) -> ShardRow:
        etag = self._replace(self._shards, self._shard_entity(row), row.etag,
                             self._shard_what(row.collection, row.shard))
        return _with_etag(row, etag)

    def shards(self, collection: str) -> list[ShardRow]:
        with storage_errors(f"table {self._shards.table_name}"):
            rows = [self._shard_row(e) for e in self._shards.query_entities(
                "PartitionKey eq @pk", parameters={"pk": collection})]
        return sorted(rows, key=lambda r: r.shard)

    def delete_collection(self, collection: str) -> int:
        """The shard rows first, in batches of one partition (a transaction holds at most 100 operations), then
        the collection row: a retention that dies between the two leaves a row whose shards are gone, which the
        next retention deletes again; never shards without their row to find them by."""
        with storage_errors(f"table {self._shards.table_name}"):
            keys = [(e["PartitionKey"], e["RowKey"]) for e in self._shards.query_entities(
                "PartitionKey eq @pk", parameters={"pk": collection}, select=["PartitionKey", "RowKey"])]
            for i in range(0, len(keys), 100):
                self._shards.submit_transaction([("delete", {"PartitionKey": pk, "RowKey": rk})
                                                 for pk, rk in keys[i:i + 100]])
        if self.collection(collection) is None:   # (the SDK's delete answers a missing row silently)
            return len(keys)
        with storage_errors(self._what(collection)):
            self._collections.delete_entity(_COLLECTIONS_PK, collection)
        return len(keys) + 1

    # --- the schedule's jobs row ------------------------------------------------------------------------
    def jobs(self) -> ScheduleJobs:
        e = self._get(self._collections, *_JOBS, f"jobs row {self._collections.table_name}/schedule/jobs")
        if e is None:
            return ScheduleJobs()
        return ScheduleJobs(epoch=int(e.get("epoch") or 0),
                            reminders_at=parse_iso(e["reminders_at"]) if e.get("reminders_at") else None,
                            retention_at=parse_iso(e["retention_at"]) if e.get("retention_at") else None,
                            reminders_done_at=parse_iso(e["reminders_done_at"]) if e.get("reminders_done_at")
                            else None,
                            etag=_etag(e.metadata))

    def update_jobs(self, jobs: ScheduleJobs) -> ScheduleJobs:
        """Compare-and-swap the jobs row (``etag`` None: create it; a concurrent creator wins, this conflicts)."""
        what = f"jobs row {self._collections.table_name}/schedule/jobs"
        entity = {"PartitionKey": _JOBS[0], "RowKey": _JOBS[1], "epoch": jobs.epoch,
                  "reminders_at": _t(jobs.reminders_at), "retention_at": _t(jobs.retention_at),
                  "reminders_done_at": _t(jobs.reminders_done_at)}
        if jobs.etag is None:
            try:
                etag = self._create(self._collections, entity, what)
            except AlreadyWritten:
                raise CasConflict(f"{what}: created by another holder meanwhile") from None
        else:
            etag = self._replace(self._collections, entity, jobs.etag, what)
        return replace(jobs, etag=etag)

    def drop_tables(self, service: TableServiceClient) -> None:
        """Delete the book's tables (tests and uninstall)."""
        for t in (self._collections, self._shards):
            service.delete_table(t.table_name)

    def close(self) -> None:
        self._collections.close()
        self._shards.close()


def _with_etag(row: _Row, etag: str) -> _Row:
    return dataclasses.replace(row, etag=etag)
