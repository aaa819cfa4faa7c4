"""One inventory shared between processes (issue 15, design 2.1): a collection one process made is loaded by the
others with no ARM read, and what one process re-read for an event reaches the others as a patch.

Why raw responses and the unchanged ``collect()``: a collection is published as what ARM answered (segments,
:mod:`plmon.monitor.collect.segments`), and a loader runs the same plan against a ``SegmentReader`` over them, so
every replica parses the same bytes with its own builder (no second schema; a rolling upgrade reads an older
writer's collection), and a replica's inventory is the writer's by construction. A re-read is published the same
way, as the responses of that re-read, and replayed through the unchanged ``reread_into`` (``PatchReader``).

Why a reader never sees half a collection: segments and the manifest are written once, and only the pointer
moves, by compare-and-swap (:class:`~plmon.monitor.state.scaleout.InventoryStore`). A loader follows pointer ->
manifest -> exactly the segments it lists; a 404 on the way (retention deleted an old collection while it was being
read) starts again from the pointer.

A patch blob is ``b"PLMPAT" u16 version u32 meta length``, the meta as JSON (the raw ids re-read, when, by whom,
on which collection), then one segment of the re-read's responses. The raw ids travel with it because a re-read
stores a target's spelling as it was asked for (``target_errors``), so a replica must ask with the same spelling.
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
import structlog

from plmon.monitor.collect.plan import Inventory, collect
from plmon.monitor.collect.segments import (
    PatchReader,
    Recording,
    Response,
    SegmentError,
    SegmentReader,
    UnsupportedSegment,
    cut,
    decode_responses,
    encode_segment,
)
from plmon.monitor.state.scaleout import (
    FORMAT_VERSION,
    AlreadyWritten,
    CasConflict,
    FailedShard,
    InventoryStore,
    Manifest,
    NotFound,
    PatchRef,
    Pointer,
    SegmentRef,
    UnsupportedFormat,
)

__all__ = [
    "Follower",
    "Loaded",
    "Patch",
    "PointerWatcher",
    "SharedInventory",
    "collection_id",
    "collection_started",
    "decode_patch",
    "encode_patch",
    "load_published",
    "publish_collection",
    "publish_manifest",
    "retire",
]

log = structlog.get_logger(__name__)

_PATCH_MAGIC = b"PLMPAT"
_PATCH_HEAD = struct.Struct(">6sHI")
# Patch rows are read back from ``written_at`` minus this margin: writers' clocks differ by milliseconds under NTP,
# and a row written by a slow writer just before the last sync must not be skipped (design R4).
# The skew assumption: ``written_at`` is the writer's clock (the filter cannot use the service's own ``Timestamp``,
# whose Azurite support is unverified), so the replicas' clocks must agree within this margin. A row stamped by a
# clock further behind is missed by a replica that has synced past it (its next full collection reads the resource
# again); a clock ahead only makes rows listed again, and the sync never starts later than its own clock allows
# (``pending``). A read time far ahead of the store's clock cannot win newest-read-wins beyond the moment its row was
# written (:data:`plmon.monitor.state.inventory_blob.FUTURE_TOLERANCE`): it is logged and counted (op="skewed").
SYNC_OVERLAP = timedelta(seconds=60)
_LOAD_ATTEMPTS = 5   # pointer -> manifest -> segments, started again on a 404 (a collection retired meanwhile)
_PUBLISH_ATTEMPTS = 8


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def collection_id(started_at: datetime) -> str:
    """A collection id that sorts by start time (the pointer never moves back to an older one) and never collides
    between two processes that start in the same millisecond."""
    t = started_at.astimezone(UTC)
    return f"c-{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


def collection_started(collection: str) -> datetime | None:
    """When a collection named by :func:`collection_id` started (None for a name of another shape)."""
    try:
        return datetime.strptime(collection.split("-")[1], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None


def retire(store: InventoryStore, now: datetime, *, keep_for: timedelta = timedelta(hours=1)) -> tuple[int, int]:
    """Retention of the shared inventory: delete the collections older than ``keep_for`` that are neither the one
    published nor the one before it (a replica may still be loading or serving that one), and the patch index rows
    (and blobs) that no replica will sync again. (collections deleted, patches pruned)

    Never a collection newer than the published one (it may be being published). A loader that meets a 404 starts
    again from the pointer, so deleting under a slow loader costs it a restart, never a half collection. Patches are
    kept from the previous collection's start (minus the sync overlap): a replica serving it syncs from there."""
    pointer = store.pointer()
    if pointer is None:
        return 0, 0
    older = [c for c in store.collections() if c < pointer.collection]
    previous = older[-1] if older else pointer.collection
    deleted = 0
    for c in older[:-1]:
        started = collection_started(c)
        if started is not None and now - started >= keep_for:
            store.delete_collection(c)
            deleted += 1
    oldest_served = collection_started(previous) or pointer.published_at
    pruned = store.prune_patches(min(now - keep_for, oldest_served - SYNC_OVERLAP))
    if deleted or pruned:
        log.info("shared_inventory_retired", collections=deleted, patches=pruned, kept=pointer.collection)
    return deleted, pruned


# --- collections ---------------------------------------------------------------------------------------------
def publish_collection(store: InventoryStore, responses: Iterable[Response], *, collection: str,
                       manifest: dict[str, Any], subscriptions: Sequence[str], scoped: bool, started_at: datetime,
                       finished_at: datetime, failed: Sequence[FailedShard] = (), plmon: str = "") -> Pointer | None:
    """Write a collection's responses as segments (one per shard), its manifest, then move the pointer to it.

    Returns the pointer, or None when a newer collection was published meanwhile (the pointer never moves back:
    a slow publisher must not replace a newer collection with an older one; its blobs are left to retention).
    A tap's :class:`Recording` is written as it holds it (compressed), never parsed back into bodies."""
    refs = []
    encoded = (responses.segments() if isinstance(responses, Recording)
               else ((shard, encode_segment(shard, rs), len(rs)) for shard, rs in cut(responses).items()))
    for shard, data, reads in encoded:
        refs.append(store.put_segment(collection, f"{shard}-a1.z", data, shard=shard, reads=reads))
    return publish_manifest(store, refs, collection=collection, manifest=manifest, subscriptions=subscriptions,
                            scoped=scoped, started_at=started_at, finished_at=finished_at, failed=failed, plmon=plmon)


def publish_manifest(store: InventoryStore, refs: Sequence[SegmentRef], *, collection: str, manifest: dict[str, Any],
                     subscriptions: Sequence[str], scoped: bool, started_at: datetime, finished_at: datetime,
                     failed: Sequence[FailedShard] = (), plmon: str = "") -> Pointer | None:
    """The manifest of segments written already (one process's, or a fan-out's shards), then the pointer moved to
    it, as :func:`publish_collection` does. A manifest written already (a finalizer redone after it died) is
    kept: it is write-once, and the pointer is what says which collection is published."""
    try:
        etag = store.put_manifest(Manifest(collection=collection, started_at=started_at, finished_at=finished_at,
                                           manifest=manifest, subscriptions=tuple(subscriptions), scoped=scoped,
                                           segments=tuple(refs), failed=tuple(failed), plmon=plmon))
    except AlreadyWritten:
        etag = ""
    for _ in range(_PUBLISH_ATTEMPTS):
        current = store.pointer()
        if current is not None and current.collection >= collection:
            log.info("collection_not_published", collection=collection, current=current.collection,
                     reason="a newer collection is published")
            return None
        try:
            return store.publish(collection, etag, finished_at, expected=current)
        except CasConflict:
            continue   # another publisher moved it: compare with theirs
    raise CasConflict(f"pointer: kept moving; {collection} not published after {_PUBLISH_ATTEMPTS} tries")


@dataclass
class Loaded:
    """A published collection, loaded: the inventory the writer had, and what it was loaded from."""

    pointer: Pointer
    manifest: Manifest
    inventory: Inventory
    reads: int
    bytes: int


def load_published(store: InventoryStore, *, typed: bool = True) -> Loaded | None:
    """The published collection as an :class:`Inventory`, read from storage alone (no ARM read); None before the
    first publish.

    :class:`UnsupportedFormat` if any part is of a format this plmon does not read, :class:`SegmentError` if a
    segment is corrupt: the caller keeps serving what it has. A 404 on the way starts again from the pointer."""
    for _ in range(_LOAD_ATTEMPTS):
        pointer = store.pointer()
        if pointer is None:
            return None
        try:
            manifest = store.get_manifest(pointer.collection)
            segments = [(ref.name, store.get_segment(pointer.collection, ref.name)) for ref in manifest.segments]
        except NotFound as err:
            log.info("inventory_load_restarted", collection=pointer.collection, reason=str(err))
            continue
        try:
            reader = SegmentReader(segments, collection=pointer.collection, failed=manifest.failed, typed=typed)
        except UnsupportedSegment as err:
            raise UnsupportedFormat(str(err)) from None
        inv = collect(reader, manifest=dict(manifest.manifest),
                      subscriptions=list(manifest.subscriptions) if manifest.scoped else None, workers=1)
        reader.drop_cache()
        return Loaded(pointer, manifest, inv, reader.reads, reader.compressed_bytes)
    raise NotFound(f"inventory: the published collection kept vanishing; gave up after {_LOAD_ATTEMPTS} tries")


# --- patches -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Patch:
    """One worker step's re-read: the resources it re-read (raw ids) and what ARM answered."""

    resources: tuple[str, ...]
    read_at_ms: int
    instance: str
    collection: str
    responses: tuple[Response, ...]


def encode_patch(patch: Patch) -> bytes:
    meta = orjson.dumps({"resources": list(patch.resources), "read_at_ms": patch.read_at_ms,
                         "instance": patch.instance, "collection": patch.collection})
    return (_PATCH_HEAD.pack(_PATCH_MAGIC, FORMAT_VERSION, len(meta)) + meta
            + encode_segment("patch", patch.responses))


def decode_patch(name: str, data: bytes) -> Patch:
    """A patch blob; :class:`UnsupportedFormat` for another major version, :class:`SegmentError` if unreadable."""
    if len(data) < _PATCH_HEAD.size or not data.startswith(_PATCH_MAGIC):
        raise SegmentError(f"patch {name}: not a plmon patch ({len(data)} bytes)")
    _magic, version, meta_len = _PATCH_HEAD.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UnsupportedFormat(f"patch {name}: format {version} unsupported (this plmon reads {FORMAT_VERSION})")
    start = _PATCH_HEAD.size
    try:
        meta = orjson.loads(data[start:start + meta_len])
        resources, read_at, instance, collection = (meta["resources"], int(meta["read_at_ms"]), meta["instance"],
                                                    meta["collection"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise SegmentError(f"patch {name}: corrupt meta ({err})") from None
    try:
        responses = decode_responses(name, data[start + meta_len:])
    except UnsupportedSegment as err:
        raise UnsupportedFormat(str(err)) from None
    return Patch(tuple(resources), read_at, str(instance), str(collection), tuple(responses))


@dataclass
class SharedInventory:
    """One process's side of the shared inventory: where it lives, which collection this process serves, and how
    far it has synced the patch index. The :class:`~plmon.monitor.service.daemon.Daemon` holds one when a shared
    store is configured, and calls it after its own collection and around its worker steps."""

    store: InventoryStore
    instance: str
    typed: bool = True
    plmon: str = ""
    clock: Callable[[], datetime] = _utcnow
    current: Pointer | None = None         # the collection this process serves (its own publish, or a load)
    error: str | None = None               # the last load or publish that failed, for /readyz
    source: str = ""                       # "published" (made here) or "shared" (loaded)
    loaded_at: datetime | None = None
    patches_written: int = 0
    patches_applied: int = 0
    patches_older: int = 0
    fallback_reads: int = 0
    synced_from: datetime | None = None    # patch rows written from here on are still to be looked at
    # Moves with each collection served: a sync whose storage reads began on the previous one (outside the daemon's
    # lock) is dropped, or it would move ``synced_from`` past rows the new collection still has to replay.
    generation: int = 0
    # The collection this process just published and is adopting (not yet ``current``): the pointer naming it is no
    # change to load, or a poll between the publish and the swap downloaded the holder's own collection again.
    published_here: str | None = None
    # Index rows already replayed (or found to have nothing to replay) on the collection served: the sync window
    # overlaps, and a row about a resource the inventory does not track never gets a read time of its own.
    _done: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict[str, Any]:
        """``/readyz``'s ``inventory`` (design 2.2)."""
        out: dict[str, Any] = {"collection": self.current.collection if self.current else None,
                               "source": self.source or None,
                               "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
                               "patches_written": self.patches_written, "patches_applied": self.patches_applied,
                               "patch_fallback_reads": self.fallback_reads}
        if self.error:
            out["error"] = self.error
        return out

    def serving(self, pointer: Pointer, started_at: datetime, source: str) -> None:
        """This process now serves ``pointer``'s collection: patches read since it started are still to sync."""
        with self._lock:
            self.current, self.source, self.error = pointer, source, None
            self.published_here = None
            self.loaded_at = self.clock()
            self.synced_from = started_at - SYNC_OVERLAP
            self.generation += 1
            self._done = {}   # a new collection: what was replayed on the old one is replayed on it again

    def changed(self) -> bool:
        """Whether the pointer names another collection than the one served (one small read)."""
        pointer = self.store.pointer()
        if pointer is None:
            return False
        current, own = self.current, self.published_here
        if own is not None and pointer.collection <= own:
            return False   # our own collection (or an older one), which this process adopts from memory
        return current is None or (pointer.etag != current.etag and pointer.collection > current.collection)

    def write_patch(self, patch: Patch, keys: dict[str, str]) -> None:
        """The blob first, then one index row per resource key (``keys``: key -> raw id), newest read wins: a row
        always names a complete patch, and an older read never replaces a newer one's row."""
        name = f"{patch.read_at_ms:015d}-{patch.instance}-{uuid.uuid4().hex[:8]}.z"
        blob = self.store.put_patch(name, encode_patch(patch))
        written_at = self.clock()
        for key in keys:
            ref = PatchRef(resource_key=key, read_at_ms=patch.read_at_ms, instance=patch.instance, blob=blob,
                           collection=patch.collection)
            if not self.store.record_patch(ref, written_at):
                self.patches_older += 1
        self.patches_written += 1

    def pending(self, read_at_ms: Callable[[str], int | None]) -> tuple[list[PatchRef], datetime | None]:
        """Index rows newer than this process's own read of their resource (``read_at_ms``: None = never read),
        and where the next sync may start looking."""
        since = self.synced_from
        if since is None:
            return [], None
        started = self.clock()
        refs = self.store.patches_since(since)
        newest = max((r.written_at for r in refs if r.written_at is not None), default=since + SYNC_OVERLAP)
        return self.newer(refs, read_at_ms), min(newest, started) - SYNC_OVERLAP

    def newer(self, refs: Iterable[PatchRef], read_at_ms: Callable[[str], int | None]) -> list[PatchRef]:
        """Of ``refs``, those still to replay: newer than this process's own read and not replayed yet. Asked again
        under the daemon's lock, since the reads listed outside it may have been overtaken meanwhile."""
        return [r for r in refs if ((mine := read_at_ms(r.resource_key)) is None or r.read_at_ms > mine)
                and r.order > self._done.get(r.resource_key, (-1, ""))]

    def replayed(self, refs: Iterable[PatchRef]) -> None:
        """``refs`` were replayed on the collection served: a later sync that meets them again skips them."""
        for r in refs:
            self._done[r.resource_key] = max(r.order, self._done.get(r.resource_key, (-1, "")))

    def fetch(self, refs: Iterable[PatchRef]) -> dict[str, Patch]:
        """The patch blobs ``refs`` name, each once, by blob name."""
        return {blob: decode_patch(blob, self.store.get_patch(blob)) for blob in dict.fromkeys(r.blob for r in refs)}


def patch_reader(patches: Sequence[Patch], fallback: Any) -> PatchReader:
    """One reader over several patches: the newest answer per path wins (two patches may share a list read)."""
    return PatchReader([r for p in patches for r in p.responses], fallback=fallback)


# --- the pointer watcher -------------------------------------------------------------------------------------
class Follower(Protocol):
    """What the watcher drives (a :class:`~plmon.monitor.service.daemon.Daemon`; a protocol, so that this module
    does not import the daemon that imports it)."""

    @property
    def shared(self) -> SharedInventory | None: ...

    def load_shared(self) -> bool: ...

    def sync_shared(self) -> int: ...


class PointerWatcher:
    """Follows the published collection for a replica that does not make it: polls the pointer, and on a change
    loads the new collection on its own thread (outside the daemon's lock; events go on meanwhile) and adopts it
    without the lifecycle; between changes it syncs the patch index, so a quiet replica does not wait for its next
    event to see another's re-reads. ``poll_once`` is the step (the runtime's thread, and tests)."""

    def __init__(self, daemon: Follower, interval: float = 5.0) -> None:
        if daemon.shared is None:
            raise ValueError("PointerWatcher needs a daemon with a shared inventory")
        self.daemon, self.interval = daemon, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> bool:
        """Load and adopt the published collection if it changed (True), else sync patches (False)."""
        shared = self.daemon.shared
        assert shared is not None
        try:
            if shared.changed():
                return self.daemon.load_shared()
            self.daemon.sync_shared()
        except UnsupportedFormat as err:   # a newer plmon published: keep serving what we have, and say so
            shared.error = str(err)
            log.error("shared_inventory_unreadable", error=str(err))
        except Exception as err:  # a storage hiccup: the next poll tries again; the daemon serves what it has
            log.warning("pointer_poll_failed", error=f"{type(err).__name__}: {err}")
        return False

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll_once()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="plmon-pointer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
