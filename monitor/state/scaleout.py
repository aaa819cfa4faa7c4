"""What the scale-out service codes against: the shared inventory, the schedule lease, the shard queue and the
collection book, as protocols and plain records (issue 15).

Why a module of its own, stdlib only: the service (``service/fanout.py``, ``schedule.py``, ``shared_inventory.py``)
and its in-memory test fakes must not see the Azure SDKs (the ``sdk-in-collectors`` contract), and the backends
(``inventory_blob``, ``lease_blob``, ``shard_queue``, ``collections_tables``) import only this module and
``store``; :mod:`plmon.monitor.state.open` is the one place that picks them (``open_scaleout``).

Every backend maps the SDK's errors onto the exceptions below, each with one line that says what failed:

- :class:`AlreadyWritten`: a write-once object (segment, manifest, patch blob, collection row) exists already;
- :class:`CasConflict`: a compare-and-swap lost (the ETag moved, or the object is gone);
- :class:`NotFound`: the object does not exist (a loader starts again from the pointer);
- :class:`LeaseLost`: the schedule lease is held by someone else, or was never ours;
- :class:`StaleReceipt`: a shard message's pop receipt is no longer valid (someone else received it);
- :class:`StorageUnavailable`: the service did not answer or refused the credentials.

Names fixed here for the hosts (read only by ``wiring.py``): the Function's shard-queue trigger reads its queue name
from ``PLMON_SHARD_QUEUE`` (``%PLMON_SHARD_QUEUE%``), the inventory container from ``PLMON_INVENTORY_CONTAINER``.
Defaults derive from the Table prefix of ``state.url``, lower-cased: container ``<prefix>-inventory``, queue
``<prefix>-shards``, tables ``<prefix>collections``, ``<prefix>shards`` and ``<prefix>patches``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

__all__ = [
    "FORMAT_VERSION",
    "INVENTORY_CONTAINER_ENV",
    "SHARD_QUEUE_ENV",
    "AlreadyWritten",
    "CasConflict",
    "CollectionBook",
    "CollectionRow",
    "CollectionState",
    "FailedShard",
    "InventoryStore",
    "LeaseLost",
    "LeaseState",
    "Manifest",
    "NotFound",
    "PatchRef",
    "Pointer",
    "ScaleOut",
    "ScaleoutError",
    "ScheduleJobs",
    "ScheduleLease",
    "SegmentRef",
    "ShardMessage",
    "ShardQueue",
    "ShardRow",
    "ShardState",
    "StaleReceipt",
    "StorageUnavailable",
    "container_name",
    "queue_name",
]

SHARD_QUEUE_ENV = "PLMON_SHARD_QUEUE"
INVENTORY_CONTAINER_ENV = "PLMON_INVENTORY_CONTAINER"
# The major version of pointer, manifest, segments and patches; an additive field does not bump it.
FORMAT_VERSION = 1

CollectionState = Literal["stage1", "stage2", "finalizing", "published", "abandoned"]
ShardState = Literal["queued", "running", "done", "failed"]


# --- errors --------------------------------------------------------------------------------------------------
class ScaleoutError(Exception):
    """A shared-storage operation failed; the message is one line naming the object."""


class AlreadyWritten(ScaleoutError):
    """A write-once object exists already (another writer got there first)."""


class CasConflict(ScaleoutError):
    """A compare-and-swap lost: the object changed (or vanished) since its ETag was read."""


class NotFound(ScaleoutError):
    """The object does not exist."""


class LeaseLost(ScaleoutError):
    """The lease is not (or no longer) ours."""


class StaleReceipt(ScaleoutError):
    """A queue message's pop receipt is stale: the message was received again, updated or deleted."""


class StorageUnavailable(ScaleoutError):
    """Storage did not answer, or refused the credentials."""


class UnsupportedFormat(ScaleoutError):
    """A pointer, manifest, segment or patch of a major format version this plmon does not read: keep serving the
    last collection and say so (``/readyz`` ``inventory.error``)."""


def container_name(prefix: str) -> str:
    """The inventory container beside the Table prefix (containers are lower-case, 3-63 characters)."""
    return f"{prefix.lower()}-inventory"


def queue_name(prefix: str) -> str:
    """The shard queue beside the Table prefix (queues are lower-case, 3-63 characters)."""
    return f"{prefix.lower()}-shards"


# --- inventory records ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pointer:
    """``current.json``: which collection is published. ``etag`` is the blob's, for the next compare-and-swap."""

    collection: str
    manifest_etag: str
    published_at: datetime
    etag: str | None = None
    v: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class SegmentRef:
    name: str
    shard: str
    etag: str
    bytes: int
    reads: int


@dataclass(frozen=True, slots=True)
class FailedShard:
    """A shard that never completed: its scopes are coverage gaps of the collection, never absences."""

    shard: str
    scopes: tuple[str, ...]
    code: Literal["ShardFailed", "ShardExpired"]
    message: str


@dataclass(frozen=True, slots=True)
class Manifest:
    """``collections/<cid>/manifest.json``: immutable; a loader reads exactly the segments it lists."""

    collection: str
    started_at: datetime
    finished_at: datetime
    manifest: Mapping[str, Any]
    subscriptions: tuple[str, ...]
    scoped: bool
    segments: tuple[SegmentRef, ...]
    failed: tuple[FailedShard, ...] = ()
    plmon: str = ""
    v: int = FORMAT_VERSION
    format: str = "plmon-inventory/1"


@dataclass(frozen=True, slots=True)
class PatchRef:
    """One resource's newest targeted re-read: a row of ``<prefix>patches`` pointing at a complete patch blob.

    Newest read wins on ``(read_at_ms, instance)``, whatever order the writes arrive in."""

    resource_key: str
    read_at_ms: int
    instance: str
    blob: str
    collection: str
    written_at: datetime | None = None
    skewed: bool = False   # its writer's read time was far ahead of the store's clock: bounded to it

    @property
    def order(self) -> tuple[int, str]:
        return (self.read_at_ms, self.instance)


class InventoryStore(Protocol):
    """Segments, manifests, the pointer and patches of the shared inventory."""

    def put_segment(self, collection: str, name: str, data: bytes, *, shard: str = "", reads: int = 0) -> SegmentRef:
        """Write a segment once (``AlreadyWritten`` if it exists); ``shard`` and ``reads`` are recorded in the ref."""
        ...

    def get_segment(self, collection: str, name: str) -> bytes: ...

    def put_manifest(self, manifest: Manifest) -> str:
        """Write the manifest once; its ETag (which the pointer names)."""
        ...

    def get_manifest(self, collection: str) -> Manifest: ...

    def pointer(self) -> Pointer | None:
        """The published pointer with its ETag, or None before the first publish."""
        ...

    def publish(self, collection: str, manifest_etag: str, published_at: datetime, *,
                expected: Pointer | None) -> Pointer:
        """Compare-and-swap the pointer from ``expected`` (None: it must not exist yet); ``CasConflict`` if moved."""
        ...

    def put_patch(self, name: str, data: bytes) -> str:
        """Write a patch body once under ``patches/``; returns its blob name (what a :class:`PatchRef` names)."""
        ...

    def get_patch(self, blob: str) -> bytes: ...

    def record_patch(self, ref: PatchRef, written_at: datetime) -> bool:
        """Index ``ref`` if it is newer than the row there; True if it is now the newest, False if older."""
        ...

    def patch(self, resource_key: str) -> PatchRef | None: ...

    def patches_since(self, written_at: datetime) -> list[PatchRef]:
        """Rows written at or after ``written_at`` (callers overlap by a margin for clock skew)."""
        ...

    def prune_patches(self, written_before: datetime) -> int:
        """Forget index rows (and their blobs) written before ``written_before``; how many (retention)."""
        ...

    def collections(self) -> list[str]:
        """Collection ids with at least one blob, oldest first (ids sort by time)."""
        ...

    def delete_collection(self, collection: str) -> int: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


# --- the schedule lease --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LeaseState:
    """What anyone can read about the schedule lease (``/readyz`` ``schedule``)."""

    state: str  # the service's lease state: available, leased, expired, breaking, broken
    holder: str | None
    since: datetime | None
    epoch: int
    held_here: bool = False


class ScheduleLease(Protocol):
    """One holder at a time, timed by the storage service (client clocks do not matter)."""

    @property
    def held(self) -> bool: ...

    @property
    def epoch(self) -> int:
        """The epoch this holder stamped on acquire (0 when not held): fences the holder's other writes."""
        ...

    def try_acquire(self) -> bool:
        """Take the lease if it is free or expired (and stamp holder, since and a new epoch); False if held."""
        ...

    def renew(self) -> None:
        """Renew our lease; ``LeaseLost`` (and ``held`` False) if it is no longer ours."""
        ...

    def release(self) -> None: ...

    def state(self) -> LeaseState: ...

    def close(self) -> None: ...


# --- the shard queue -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardMessage:
    """A received message: only its latest ``pop_receipt`` may extend or delete it."""

    id: str
    body: Mapping[str, Any]
    pop_receipt: str
    dequeue_count: int
    next_visible_on: datetime | None


class ShardQueue(Protocol):
    def send(self, body: Mapping[str, Any], *, delay: timedelta | None = None) -> str:
        """Queue a JSON message (invisible for ``delay`` first); its id."""
        ...

    def receive(self, visibility: timedelta, max_messages: int = 1) -> list[ShardMessage]:
        """Up to ``max_messages``, each invisible to others for ``visibility``."""
        ...

    def extend(self, message: ShardMessage, visibility: timedelta) -> ShardMessage:
        """Keep it invisible for ``visibility`` more; the returned message carries the new pop receipt."""
        ...

    def delete(self, message: ShardMessage) -> None: ...

    def approximate_count(self) -> int: ...

    def close(self) -> None: ...


# --- the collection book -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CollectionRow:
    """``collections/<cid>``: one per schedule tick; every stage move is a compare-and-swap on ``etag``."""

    collection: str
    state: CollectionState
    tick: int
    started_at: datetime
    started_by: str
    epoch: int
    deadline: datetime
    shards_total: int = 0
    manifest: str = ""
    published_at: datetime | None = None
    requests: int = 0
    gaps: int = 0
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ShardRow:
    """One shard of a collection; its work (stage-2 reads) travels here, since a message holds at most 64 KiB."""

    collection: str
    shard: str
    stage: int
    budget_key: str
    state: ShardState = "queued"
    attempt: int = 0
    worker: str = ""
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    segment: str = ""
    segment_etag: str = ""
    reads: int = 0
    spent: float = 0.0
    error: str = ""
    work: Sequence[Any] = field(default_factory=tuple)
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleJobs:
    """``schedule/jobs``: the lease epoch and when reminders and retention last ran, so a takeover neither repeats
    nor skips them. ``reminders_at`` is when reminders were last claimed, ``reminders_done_at`` the claim that
    finished: a claim left unfinished by a holder that lost the lease is run again by the next one."""

    epoch: int = 0
    reminders_at: datetime | None = None
    retention_at: datetime | None = None
    etag: str | None = None
    reminders_done_at: datetime | None = None


class CollectionBook(Protocol):
    def create_collection(self, row: CollectionRow) -> CollectionRow:
        """Create the tick's row (``AlreadyWritten`` if another holder started it: continue that one)."""
        ...

    def collection(self, collection: str) -> CollectionRow | None: ...

    def update_collection(self, row: CollectionRow) -> CollectionRow:
        """Write ``row`` if unchanged since ``row.etag`` was read (``CasConflict`` otherwise); the new ETag."""
        ...

    def collections(self, states: Sequence[CollectionState] | None = None) -> list[CollectionRow]: ...

    def add_shards(self, rows: Sequence[ShardRow]) -> list[ShardRow]:
        """Create shard rows; rows that exist already are returned as stored (a redone stage move)."""
        ...

    def shard(self, collection: str, shard: str) -> ShardRow | None: ...

    def update_shard(self, row: ShardRow) -> ShardRow: ...

    def shards(self, collection: str) -> list[ShardRow]: ...

    def delete_collection(self, collection: str) -> int:
        """Delete a collection's row and its shard rows (retention); how many rows went."""
        ...

    def jobs(self) -> ScheduleJobs: ...

    def update_jobs(self, jobs: ScheduleJobs) -> ScheduleJobs: ...

    def close(self) -> None: ...


# --- the bundle ------------------------------------------------------------------------------------------------
@dataclass
class ScaleOut:
    """The four shared parts one replica or Function instance uses, opened together by ``open_scaleout``."""

    inventory: InventoryStore
    lease: ScheduleLease
    shards: ShardQueue
    book: CollectionBook
    container: str
    queue: str
    instance: str

    def close(self) -> None:
        """Release the lease (if held) and close every client."""
        for part in (self.lease, self.shards, self.book, self.inventory):
            part.close()
