"""The shared inventory in Blob Storage, with its patch index in Table Storage (issue 15).

Container ``<prefix>-inventory``::

    current.json                              the pointer {"v","collection","manifest_etag","published_at"}
    collections/<cid>/segments/<name>         immutable segments (the bytes are the collector's format)
    collections/<cid>/manifest.json           immutable manifest
    patches/<name>                            immutable patch bodies
    leases/schedule                           the schedule lease (:mod:`plmon.monitor.state.lease_blob`)

Why a reader never sees half a collection: segments, manifests and patches are written once (``overwrite=False``
sends ``If-None-Match: *``; a second write is ``AlreadyWritten``), and only the pointer ever changes, by
compare-and-swap on its ETag (``If-Match``; the very first publish creates it with ``If-None-Match: *``). Of two
publishers that read the same pointer exactly one wins; the other gets ``CasConflict``. A loader follows pointer ->
manifest -> exactly the segments the manifest lists, all immutable, so it gets one collection whole. Reads are
never conditional: Azurite answers a conditional read of a missing blob with 412 instead of 404 (Azurite#2751).

Table ``<prefix>patches`` indexes the newest targeted re-read per resource: PartitionKey the first 2 hex of the
sha256 of the resource key, RowKey the whole hash (resource keys are ARM ids, full of ``/``). Newest read wins on
``(read_at_ms, instance)`` whatever order writes arrive in: a missing row is created (``create_entity``; a lost
race re-reads), an existing one replaced only by a newer read and only if unchanged since it was read (ETag), so
an older read never overwrites a newer one and two newer reads cannot lose each other. The blob is written before
its row, so a row always names a complete patch. ``read_at`` and ``written_at`` are fixed-width text, so they
compare as strings in filters (the system ``Timestamp`` filter is avoided: its Azurite support is unverified).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import ContainerClient

from plmon.monitor.state.azure_errors import storage_errors
from plmon.monitor.state.lease_blob import ensure_container
from plmon.monitor.state.scaleout import (
    FORMAT_VERSION,
    AlreadyWritten,
    CasConflict,
    FailedShard,
    Manifest,
    NotFound,
    PatchRef,
    Pointer,
    ScaleoutError,
    SegmentRef,
    UnsupportedFormat,
)
from plmon.monitor.state.store import iso, parse_iso

__all__ = ["FUTURE_TOLERANCE", "POINTER_BLOB", "BlobInventoryStore", "manifest_from_json", "manifest_to_json"]

POINTER_BLOB = "current.json"
# How far a patch's read time may be ahead of the store's clock and still be trusted (writers' clocks drift apart by
# milliseconds under NTP; beyond this one is wrong): see BlobInventoryStore._ref.
FUTURE_TOLERANCE = timedelta(minutes=5)
_FUTURE_TOLERANCE_MS = int(FUTURE_TOLERANCE.total_seconds() * 1000)
_RETRIES = 16  # compare-and-swap attempts on one hot patch row before giving up


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _h(resource_key: str) -> str:
    return hashlib.sha256(resource_key.encode()).hexdigest()


def _check_version(v: Any, what: str) -> None:
    if v != FORMAT_VERSION:
        raise UnsupportedFormat(f"{what}: format {v} unsupported (this plmon reads {FORMAT_VERSION})")


def _time(text: str) -> datetime:
    t = parse_iso(text)
    if t is None:
        raise ValueError(f"not a time: {text!r}")
    return t


def manifest_to_json(m: Manifest) -> bytes:
    return orjson.dumps({
        "v": m.v, "format": m.format, "plmon": m.plmon, "collection": m.collection,
        "started_at": iso(m.started_at), "finished_at": iso(m.finished_at), "manifest": dict(m.manifest),
        "subscriptions": list(m.subscriptions), "scoped": m.scoped,
        "segments": [{"name": s.name, "shard": s.shard, "etag": s.etag, "bytes": s.bytes, "reads": s.reads}
                     for s in m.segments],
        "failed": [{"shard": f.shard, "scopes": list(f.scopes), "code": f.code, "message": f.message}
                   for f in m.failed]})


def manifest_from_json(data: bytes, what: str = "manifest") -> Manifest:
    try:
        d = orjson.loads(data)
        _check_version(d.get("v"), what)
        return Manifest(
            collection=d["collection"], started_at=_time(d["started_at"]), finished_at=_time(d["finished_at"]),
            manifest=d["manifest"], subscriptions=tuple(d["subscriptions"]), scoped=bool(d["scoped"]),
            segments=tuple(SegmentRef(s["name"], s["shard"], s["etag"], int(s["bytes"]), int(s["reads"]))
                           for s in d["segments"]),
            failed=tuple(FailedShard(f["shard"], tuple(f["scopes"]), f["code"], f["message"]) for f in d["failed"]),
            plmon=d.get("plmon", ""), v=d["v"], format=d.get("format", ""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise ScaleoutError(f"{what}: not a plmon manifest ({type(err).__name__}: {err})") from None


class BlobInventoryStore:
    """:class:`plmon.monitor.state.scaleout.InventoryStore`: a blob container plus the ``<prefix>patches`` table."""

    def __init__(self, container: ContainerClient, patches: TableClient) -> None:
        ensure_container(container)
        self._container = container
        self._patches = patches
        self._name = container.container_name

    @property
    def container_name(self) -> str:
        return self._name

    # --- segments and manifests: write once -------------------------------------------------------------
    def _put_once(self, name: str, data: bytes) -> str:
        with storage_errors(f"blob {self._name}/{name}"):
            result = self._container.get_blob_client(name).upload_blob(data, overwrite=False)
        return str(result["etag"])

    def _get(self, name: str) -> tuple[bytes, str]:
        with storage_errors(f"blob {self._name}/{name}"):
            downloader = self._container.download_blob(name)
            return downloader.readall(), str(downloader.properties.etag)

    def put_segment(self, collection: str, name: str, data: bytes, *, shard: str = "", reads: int = 0) -> SegmentRef:
        etag = self._put_once(f"collections/{collection}/segments/{name}", data)
        return SegmentRef(name=name, shard=shard, etag=etag, bytes=len(data), reads=reads)

    def get_segment(self, collection: str, name: str) -> bytes:
        return self._get(f"collections/{collection}/segments/{name}")[0]

    def put_manifest(self, manifest: Manifest) -> str:
        return self._put_once(f"collections/{manifest.collection}/manifest.json", manifest_to_json(manifest))

    def get_manifest(self, collection: str) -> Manifest:
        name = f"collections/{collection}/manifest.json"
        return manifest_from_json(self._get(name)[0], f"blob {self._name}/{name}")

    # --- the pointer: compare-and-swap ------------------------------------------------------------------
    def pointer(self) -> Pointer | None:
        what = f"blob {self._name}/{POINTER_BLOB}"
        try:
            data, etag = self._get(POINTER_BLOB)
        except NotFound:
            return None
        try:
            d = orjson.loads(data)
            _check_version(d.get("v"), what)
            return Pointer(collection=d["collection"], manifest_etag=d["manifest_etag"],
                           published_at=_time(d["published_at"]), etag=etag, v=d["v"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise ScaleoutError(f"{what}: not a plmon pointer ({type(err).__name__}: {err})") from None

    def publish(self, collection: str, manifest_etag: str, published_at: datetime, *,
                expected: Pointer | None) -> Pointer:
        body = orjson.dumps({"v": FORMAT_VERSION, "collection": collection, "manifest_etag": manifest_etag,
                             "published_at": iso(published_at)})
        what = f"pointer {self._name}/{POINTER_BLOB}"
        try:
            with storage_errors(what):
                if expected is None:
                    result = self._container.get_blob_client(POINTER_BLOB).upload_blob(body, overwrite=False)
                else:
                    if expected.etag is None:
                        raise CasConflict(f"{what}: the expected pointer carries no ETag")
                    result = self._container.get_blob_client(POINTER_BLOB).upload_blob(
                        body, overwrite=True, etag=expected.etag, match_condition=MatchConditions.IfNotModified)
        except (AlreadyWritten, NotFound):
            raise CasConflict(f"{what}: another publisher moved it first") from None
        return Pointer(collection=collection, manifest_etag=manifest_etag, published_at=published_at,
                       etag=str(result["etag"]))

    # --- patches ----------------------------------------------------------------------------------------
    def put_patch(self, name: str, data: bytes) -> str:
        blob = f"patches/{name}"
        self._put_once(blob, data)
        return blob

    def get_patch(self, blob: str) -> bytes:
        return self._get(blob)[0]

    @staticmethod
    def _ref(e: Mapping[str, Any]) -> PatchRef:
        """An index row. A read time further ahead of the store's own clock (the row's ``Timestamp``, which the
        service sets on each write) than FUTURE_TOLERANCE is taken as made when the row was written: its writer's
        clock is wrong, and newest-read-wins would otherwise let it beat every later read of the resource (and make
        each replica that replays it drop that resource's events as stale) until real time caught up with it."""
        read_at = int(e["read_at"])
        stored = getattr(e, "metadata", {}).get("timestamp")
        skewed = False
        if isinstance(stored, datetime) and read_at > _ms(stored) + _FUTURE_TOLERANCE_MS:
            skewed, read_at = True, _ms(stored)
        return PatchRef(resource_key=e["resource_key"], read_at_ms=read_at, instance=e["instance"],
                        blob=e["blob"], collection=e["collection"], written_at=parse_iso(e["written_at"]),
                        skewed=skewed)

    def record_patch(self, ref: PatchRef, written_at: datetime) -> bool:
        h = _h(ref.resource_key)
        entity = {"PartitionKey": h[:2], "RowKey": h, "resource_key": ref.resource_key,
                  "read_at": f"{ref.read_at_ms:015d}", "instance": ref.instance, "blob": ref.blob,
                  "collection": ref.collection, "written_at": iso(written_at)}
        what = f"patch index {self._patches.table_name}/{h}"
        for _ in range(_RETRIES):
            try:
                with storage_errors(what):
                    current = self._patches.get_entity(h[:2], h)
            except NotFound:
                try:
                    with storage_errors(what):
                        self._patches.create_entity(entity)
                    return True
                except AlreadyWritten:
                    continue  # another writer created it first: compare with theirs
            if self._ref(current).order >= ref.order:
                return False
            try:
                with storage_errors(what):
                    self._patches.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                                match_condition=MatchConditions.IfNotModified)
                return True
            except (CasConflict, NotFound):
                continue  # it moved since we read it: compare again
        raise CasConflict(f"{what}: kept changing; gave up after {_RETRIES} tries")

    def patch(self, resource_key: str) -> PatchRef | None:
        h = _h(resource_key)
        try:
            with storage_errors(f"patch index {self._patches.table_name}/{h}"):
                return self._ref(self._patches.get_entity(h[:2], h))
        except NotFound:
            return None

    def patches_since(self, written_at: datetime) -> list[PatchRef]:
        with storage_errors(f"patch index {self._patches.table_name}"):
            rows = list(self._patches.query_entities("written_at ge @w", parameters={"w": iso(written_at)}))
        return sorted((self._ref(e) for e in rows), key=lambda r: r.order)

    def prune_patches(self, written_before: datetime) -> int:
        """Forget index rows (and their blobs) written before ``written_before`` (retention)."""
        n = 0
        with storage_errors(f"patch index {self._patches.table_name}"):
            rows = list(self._patches.query_entities("written_at lt @w", parameters={"w": iso(written_before)}))
        for e in rows:
            try:
                with storage_errors(f"patch index {self._patches.table_name}/{e['RowKey']}"):
                    self._patches.delete_entity(e["PartitionKey"], e["RowKey"], etag=e.metadata["etag"],
                                                match_condition=MatchConditions.IfNotModified)
            except (CasConflict, NotFound):
                continue  # a newer read replaced it meanwhile: keep it
            with contextlib.suppress(NotFound), storage_errors(f"blob {self._name}/{e['blob']}"):
                self._container.delete_blob(e["blob"])
            n += 1
        return n

    # --- retention --------------------------------------------------------------------------------------
    def collections(self) -> list[str]:
        with storage_errors(f"container {self._name}"):
            names = [p.name for p in self._container.walk_blobs(name_starts_with="collections/", delimiter="/")]
        return sorted(n.removeprefix("collections/").rstrip("/") for n in names)

    def delete_collection(self, collection: str) -> int:
        n = 0
        with storage_errors(f"container {self._name}"):
            names = [b.name for b in self._container.list_blobs(name_starts_with=f"collections/{collection}/")]
        for name in names:
            with contextlib.suppress(NotFound), storage_errors(f"blob {self._name}/{name}"):
                self._container.delete_blob(name)
                n += 1
        return n

    def ping(self) -> bool:
        try:
            with storage_errors(f"container {self._name}"):
                self._container.get_container_properties()
            return True
        except ScaleoutError:
            return False

    def close(self) -> None:
        self._container.close()
        self._patches.close()
