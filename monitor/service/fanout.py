"""The fan-out collection (issue 15, design 2.3): the schedule's holder cuts a full collection into shards on the shard
queue, every process (``plmon serve`` replicas, Function instances, the holder too) reads them, and the holder builds
the inventory from their segments and publishes it.

Why: one process reading a large tenant takes minutes; K processes each reading the whole tenant multiply ARM's load
by K. Sharded by subscription (ARM's budget scope, :mod:`plmon.monitor.collect.shards`), K processes read a
collection in about 1/K of the time with the same reads, and the ARM budget of a subscription has one owner at a time.

Two parts, both idempotent and every shared write a compare-and-swap, so any of them may die and be redone:

- :class:`ShardWorker` takes one shard message: a duplicate (terminal row, finished collection) is deleted; past
  ``scale.shard_max_attempts`` deliveries the shard is recorded ``failed`` instead of read (the Functions host would
  otherwise poison the message before plmon recorded the gap); else the row goes ``running`` (compare-and-swap, a new
  attempt), the shard is read through a recording tap while the message's invisibility is extended, its segment is
  written once, and the row goes ``done`` only if it is still this attempt. A taker that dies leaves the message to
  reappear after ``scale.shard_visibility``: another takes it with the next attempt.
- :class:`CollectionDriver` (the lease holder only) moves a collection row along: stage 0 inline, stage-1 rows and
  messages, and once all are terminal the follow-ups (stage 2), then the finalizer: the unchanged ``collect()`` over a
  ``SegmentReader`` of every segment (failed shards as failed scopes: coverage gaps, never absences), the manifest and
  pointer (:func:`~plmon.monitor.service.shared_inventory.publish_manifest`, the path the local collection publishes
  through) and the holder's full lifecycle (:meth:`~plmon.monitor.service.daemon.Daemon.fanned_in`). Past
  ``scale.collection_deadline`` unfinished shards become ``ShardExpired`` gaps and the collection still publishes. A
  holder that takes over mid-collection continues the same collection (same row, same segments).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog

from plmon.monitor import __version__
from plmon.monitor.collect.azure.budget import BudgetSet
from plmon.monitor.collect.plan import Collection, Inventory, Read, collect
from plmon.monitor.collect.segments import TENANT_SHARD, GrowingSegmentReader, SegmentReader
from plmon.monitor.collect.shards import (
    ShardOutput,
    ShardSpec,
    build_staged,
    plan_stage2,
    read_stage0,
    run_shard,
    stage1_specs,
    stage2_specs,
    sub_ids_of,
)
from plmon.monitor.model.arm_id import interning
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.shared_inventory import publish_manifest
from plmon.monitor.state.scaleout import (
    AlreadyWritten,
    CasConflict,
    CollectionBook,
    CollectionRow,
    CollectionState,
    FailedShard,
    Pointer,
    ScaleOut,
    SegmentRef,
    ShardMessage,
    ShardRow,
    StaleReceipt,
)

__all__ = ["CollectionDriver", "CollectionStatus", "FanIn", "ShardWorker", "blob_collection", "collection_status",
           "deadline_message"]

log = structlog.get_logger(__name__)

OPEN: tuple[CollectionState, ...] = ("stage1", "stage2", "finalizing")
TERMINAL = ("done", "failed")
MESSAGE_VERSION = 1


def _utcnow() -> datetime:
    return datetime.now(UTC)


def blob_collection(row: CollectionRow) -> str:
    """The published collection's id for a collection row: named by its start (as ``collection_id`` names one, so
    ids sort by time and retention reads their age) and derived from the row alone, so a holder that takes over
    mid-collection writes to the same collection."""
    t = row.started_at.astimezone(UTC)
    suffix = hashlib.sha256(row.collection.encode()).hexdigest()[:6]
    return f"c-{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{suffix}"


def _message(collection: str, shard: str) -> dict[str, Any]:
    return {"v": MESSAGE_VERSION, "type": "shard", "collection": collection, "shard": shard}


def deadline_message(collection: str) -> dict[str, Any]:
    """The message a Function app's collection leaves on the shard queue, visible at its deadline (design15 2.3)."""
    return {"v": MESSAGE_VERSION, "type": "deadline", "collection": collection}


MAX_DELAY = timedelta(days=7)   # the longest a queue message can stay invisible (send_message's visibility_timeout)


def _spec(row: ShardRow) -> ShardSpec:
    if not row.work:
        return ShardSpec(row.shard, row.stage, row.budget_key)
    return ShardSpec.from_work(row.shard, row.stage, row.budget_key, row.work)


def _failed(row: ShardRow) -> FailedShard:
    code: Literal["ShardFailed", "ShardExpired"] = (
        "ShardExpired" if row.error.startswith("ShardExpired") else "ShardFailed")
    return FailedShard(row.shard, _spec(row).scopes, code, row.error or f"{row.shard} never completed")


def collection_status(book: CollectionBook) -> dict[str, Any] | None:
    """``/readyz``'s ``collection``: the newest collection row and its shards by state (None before the first)."""
    rows = book.collections()
    if not rows:
        return None
    row = rows[-1]
    counts = {"total": 0, "queued": 0, "running": 0, "done": 0, "failed": 0}
    for shard in book.shards(row.collection):
        counts["total"] += 1
        counts[shard.state] = counts.get(shard.state, 0) + 1
    return {"id": row.collection, "state": row.state, "started_at": row.started_at.isoformat(),
            "published_at": row.published_at.isoformat() if row.published_at else None, "shards": counts}


class CollectionStatus:
    """:func:`collection_status` for ``/readyz``, read from the book at most every ``ttl`` seconds.

    Probes poll readiness often (a Kubernetes probe every few seconds per replica, a benchmark every 50 ms), and
    each answer read the book's rows and every shard row of the newest collection: on a cold replica that
    traffic competed with loading the inventory. A status a few seconds old is what a probe needs."""

    def __init__(self, book: CollectionBook, *, ttl: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.book, self.ttl, self.clock = book, ttl, clock
        self._lock = threading.Lock()
        self._at: float | None = None
        self._last: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any] | None:
        with self._lock:
            now = self.clock()
            if self._at is None or now - self._at >= self.ttl:
                self._last, self._at = collection_status(self.book), now
            return self._last


class ShardWorker:
    """Takes shards off the queue and reads them; one :meth:`run_one` per message (a serve thread, the Function's
    queue trigger through :meth:`handle`, tests)."""

    def __init__(self, daemon: Daemon, scale: ScaleOut, *, clock: Callable[[], datetime] = _utcnow,
                 on_done: Callable[[str], None] | None = None) -> None:
        self.daemon, self.scale, self.clock, self.on_done = daemon, scale, clock, on_done
        cfg = daemon.config.scale
        self.visibility = cfg.shard_visibility
        self.timeout = cfg.shard_timeout.total_seconds()
        self.max_attempts = cfg.shard_max_attempts
        self.workers = cfg.shard_workers
        self.stopping = threading.Event()   # set on shutdown: a shard being read is given up (it reappears)

    def run_one(self) -> str | None:
        """Receive one shard message and handle it: its outcome, or None when the queue had none."""
        got = self.scale.shards.receive(self.visibility)
        if not got:
            return None
        return self.handle(got[0].body, got[0].dequeue_count, got[0])

    def handle(self, body: Mapping[str, Any], dequeue_count: int, message: ShardMessage | None = None) -> str:
        """One delivery of a shard message. ``message`` is the queue's (serve: this worker extends and deletes it);
        None when a host owns the message (the Function: it renews and deletes it, and redelivers it when this
        raises). The outcome: ``done``, ``failed``, ``duplicate``, ``busy``, ``abandoned``, ``late`` or ``invalid``."""
        hosted = message is None   # the host redelivers a failed attempt, and poisons it past its attempts
        cid, shard = body.get("collection"), body.get("shard")
        if body.get("type") == "deadline" and isinstance(cid, str):
            # A Function app's (FunctionHost.shard drives it there). Here the holder's own steps expire a collection
            # at its deadline: its drive step is only woken.
            self._delete(message)
            if self.on_done is not None:
                self.on_done(cid)
            return "deadline"
        if body.get("type") != "shard" or not isinstance(cid, str) or not isinstance(shard, str):
            log.warning("shard_message_invalid", body=str(dict(body))[:200])
            self._delete(message)
            return "invalid"
        book = self.scale.book
        row = book.shard(cid, shard)
        coll = book.collection(cid)
        if row is None or coll is None or coll.state in ("published", "abandoned") or row.state in TERMINAL:
            self._delete(message)
            return "duplicate"
        stage = str(row.stage)
        if dequeue_count > self.max_attempts:
            outcome = self._give_up(row, f"ShardFailed: {shard} gave up after {dequeue_count - 1} attempts")
            self._delete(message)
            return outcome
        attempt = row.attempt + 1
        now = self.clock()
        try:
            running = book.update_shard(replace(row, state="running", attempt=attempt, worker=self.scale.instance,
                                                started_at=now, heartbeat_at=now))
        except CasConflict:
            return "busy"   # another taker moved it: the message comes back, and is a duplicate by then
        self._seed(cid, running)
        metrics = self.daemon.metrics
        metrics.shards_in_progress.inc()
        started = time.perf_counter()
        try:
            out, message = self._read(_spec(running), message)
        except Exception as err:
            metrics.shards_processed.labels(stage, "error").inc()
            log.warning("shard_read_failed", collection=cid, shard=shard, attempt=attempt,
                        error=f"{type(err).__name__}: {err}")
            if hosted and dequeue_count >= self.max_attempts:
                return self._give_up(running, f"ShardFailed: {shard}: {type(err).__name__}: {err}")
            if hosted:
                raise   # the host redelivers it
            return "abandoned"   # the message reappears after its visibility
        finally:
            metrics.shards_in_progress.dec()
        if out is None:
            metrics.shards_processed.labels(stage, "abandoned").inc()
            log.warning("shard_abandoned", collection=cid, shard=shard, attempt=attempt, timeout=self.timeout)
            if hosted and dequeue_count >= self.max_attempts:
                return self._give_up(running, f"ShardFailed: {shard} did not finish in {self.timeout:.0f} s")
            if hosted:   # returning would let the host delete the message: the shard would wait for the deadline
                raise TimeoutError(f"{shard} of {cid}: not read in {self.timeout:.0f} s (attempt {attempt}); "
                                   "the host delivers it again")
            return "abandoned"
        return self._finish(running, blob_collection(coll), out, message, started)

    def _read(self, spec: ShardSpec, message: ShardMessage | None) -> tuple[ShardOutput | None,
                                                                           ShardMessage | None]:
        """Read ``spec`` on a thread of its own while this one keeps the message invisible; None past the timeout (a
        hung read cannot be cancelled: its answer is dropped)."""
        result: list[ShardOutput] = []
        failure: list[BaseException] = []

        def read() -> None:
            try:
                result.append(run_shard(self.daemon.shard_reader, spec, self.workers))
            except BaseException as err:
                failure.append(err)

        thread = threading.Thread(target=read, name="plmon-shard-read", daemon=True)
        thread.start()
        deadline = time.monotonic() + self.timeout
        beat = max(0.2, self.visibility.total_seconds() / 3)
        while True:
            thread.join(min(beat, max(0.0, deadline - time.monotonic())))
            if not thread.is_alive():
                break
            if time.monotonic() >= deadline or self.stopping.is_set():
                return None, message
            if message is not None:
                try:
                    message = self.scale.shards.extend(message, self.visibility)
                except StaleReceipt:
                    return None, None   # someone else holds it now: this attempt is theirs to finish
        if failure:
            raise failure[0]
        return result[0], message

    def _finish(self, running: ShardRow, blob: str, out: ShardOutput, message: ShardMessage | None,
                started: float) -> str:
        book, stage = self.scale.book, str(running.stage)
        name = f"{running.shard}-a{running.attempt}.z"
        try:
            ref = self.scale.inventory.put_segment(blob, name, out.segment, shard=running.shard,
                                                   reads=out.reads)
        except AlreadyWritten:
            self.daemon.metrics.shards_processed.labels(stage, "late").inc()
            return "late"
        now = self.clock()
        current = book.shard(running.collection, running.shard)
        if current is None or current.state != "running" or current.attempt != running.attempt:
            self.daemon.metrics.shards_processed.labels(stage, "late").inc()
            self._delete(message)
            return "late"   # a later attempt (or the deadline) owns the row; this segment is left to retention
        try:
            book.update_shard(replace(current, state="done", segment=name, segment_etag=ref.etag, reads=out.reads,
                                      spent=float(out.reads), finished_at=now, heartbeat_at=now, error=""))
        except CasConflict:
            self.daemon.metrics.shards_processed.labels(stage, "late").inc()
            return "late"
        self._delete(message)
        self.daemon.metrics.shards_processed.labels(stage, "done").inc()
        self.daemon.metrics.shard_seconds.observe(time.perf_counter() - started)
        log.info("shard_done", collection=running.collection, shard=running.shard, attempt=running.attempt,
                 reads=out.reads)
        if self.on_done is not None:
            try:
                self.on_done(running.collection)
            except Exception as err:
                log.warning("shard_drive_failed", error=f"{type(err).__name__}: {err}")
        return "done"

    def _give_up(self, row: ShardRow, error: str) -> str:
        """Record the shard ``failed`` (its gap), if nobody finished it meanwhile."""
        book = self.scale.book
        for _ in range(3):
            current = book.shard(row.collection, row.shard)
            if current is None or current.state in TERMINAL:
                return "duplicate"
            try:
                book.update_shard(replace(current, state="failed", error=error, finished_at=self.clock()))
            except CasConflict:
                continue
            self.daemon.metrics.shards_processed.labels(str(row.stage), "failed").inc()
            log.warning("shard_failed", collection=row.collection, shard=row.shard, error=error)
            if self.on_done is not None:
                try:
                    self.on_done(row.collection)
                except Exception as err:
                    log.warning("shard_drive_failed", error=f"{type(err).__name__}: {err}")
            return "failed"
        return "busy"

    def _seed(self, cid: str, row: ShardRow) -> None:
        """A stage-2 shard starts from what its subscription's stage-1 owner left of ARM's budget (design 2.3)."""
        if row.stage != 2 or row.budget_key == "tenant":
            return
        reader = self.daemon.shard_reader
        budget = getattr(getattr(reader, "inner", reader), "budget", None)
        if not isinstance(budget, BudgetSet):
            return
        before = self.scale.book.shard(cid, f"s1-{row.budget_key}")
        if before is None or before.finished_at is None:
            return
        elapsed = (self.clock() - before.finished_at).total_seconds()
        budget.seed(row.budget_key, budget.left_after(before.spent, elapsed))

    def _delete(self, message: ShardMessage | None) -> None:
        if message is None:
            return
        with contextlib.suppress(StaleReceipt):   # received again by another taker: theirs to delete
            self.scale.shards.delete(message)


class FanIn:
    """The holder's one pass over a collection's segments, on a ``plmon-fanin`` thread of its own: it plans stage 2 and
    builds the inventory (:func:`~plmon.monitor.collect.shards.build_staged` over a
    :class:`~plmon.monitor.collect.segments.GrowingSegmentReader`), reading each segment as its shard lands.

    Why a thread: the segments arrive over the whole collection while the driver's steps come every second; the
    parse (most of the holder's own time) then runs beside the replicas' ARM reads, and after the last shard only that
    shard's parse and the stage-2 answers remain. Each segment is fetched and decoded once in this process."""

    def __init__(self, collection: str, *, manifest: dict[str, Any], subscriptions: Sequence[str] | None,
                 typed: bool) -> None:
        self.collection = collection
        self.reader = GrowingSegmentReader(collection=collection, typed=typed)
        self.planned = threading.Event()
        self.built = threading.Event()
        self.plan: list[Read] | None = None
        self.inventory: Inventory | None = None
        self.error: BaseException | None = None
        self._manifest, self._subscriptions = manifest, subscriptions
        self._thread = threading.Thread(target=self._run, name="plmon-fanin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.inventory = build_staged(self.reader, manifest=self._manifest, subscriptions=self._subscriptions,
                                          on_plan=self._planned)
        except BaseException as err:   # the driver falls back to a build of its own
            self.error = err
            log.warning("fanin_failed", collection=self.collection, error=f"{type(err).__name__}: {err}")
        finally:
            self.reader.drop_cache()
            self.planned.set()
            self.built.set()

    def _planned(self, reads: list[Read]) -> None:
        self.plan = reads
        self.reader.advance(2)
        self.planned.set()

    def feed(self, shards: Sequence[ShardRow], segment: Callable[[str], bytes]) -> None:
        """The terminal shards so far (a done one's segment added once, the failed ones as failed scopes), and each
        stage sealed once all its shards are terminal."""
        for s in shards:
            if s.state == "done" and s.segment and s.segment not in self.reader.names:
                self.reader.add(s.segment, segment(s.segment))
        self.reader.fail([_failed(s) for s in shards if s.state == "failed"])
        for stage in (1, 2):
            if any(s.stage == stage for s in shards) and all(s.state in TERMINAL for s in shards if s.stage <= stage):
                self.reader.seal(stage)

    def close(self) -> None:
        """Give the pass up (the collection ended elsewhere, or the lease was lost): every wait answers at once, the
        thread ends, and nothing is kept."""
        self.reader.seal(2)


def _close_all(fanins: dict[str, FanIn]) -> None:
    while fanins:
        fanins.popitem()[1].close()


class CollectionDriver:
    """Moves the open fan-out collections along; only while this process holds the schedule lease."""

    def __init__(self, daemon: Daemon, scale: ScaleOut, *, settle: bool = False,
                 clock: Callable[[], datetime] = _utcnow, on_enqueue: Callable[[], None] | None = None,
                 deadline_messages: bool = False) -> None:
        """``deadline_messages``: each collection started here leaves a :func:`deadline_message` on the shard queue,
        visible at its deadline (a Function app, where no holder lives to see the deadline pass; :meth:`expire`)."""
        self.daemon, self.scale, self.settle, self.clock, self.on_enqueue = daemon, scale, settle, clock, on_enqueue
        self.deadline_messages = deadline_messages
        self._lock = threading.Lock()   # one step at a time in this process
        self._segments: dict[tuple[str, str], bytes] = {}
        self._fanins: dict[str, FanIn] = {}
        # A driver dropped (a stopped runtime, a recycled instance) gives its passes up: none waits on for shards.
        weakref.finalize(self, _close_all, self._fanins)
        self._stage0_subs: dict[str, list[str]] = {}   # what this holder's own stage 0 listed, by collection row
        # Whether the last step left a collection open: its shards are being read, most of them by other replicas,
        # whose completions the holder learns only by stepping (the runtime then steps more often).
        self.busy = False

    def start(self, row: CollectionRow) -> None:
        """A collection row this holder just created: count it and take its first steps (stage 0, stage 1). Raises
        when they fail (the queue or blob storage does not answer): the caller then collects locally instead."""
        self.daemon.metrics.collections_started.inc()
        log.info("fanout_collection_started", collection=row.collection, epoch=row.epoch)
        with self._lock:
            self._advance(row)
        if self.deadline_messages:
            delay = min(max(row.deadline - self.clock(), timedelta(seconds=1)), MAX_DELAY)
            try:
                self.scale.shards.send(deadline_message(row.collection), delay=delay)
            except Exception as err:   # the next timer still expires it, only later
                log.warning("fanout_deadline_not_queued", collection=row.collection,
                            error=f"{type(err).__name__}: {err}")

    def expire(self, collection: str) -> bool:
        """A collection's deadline message was taken: its unfinished shards become ``ShardExpired`` gaps now (the
        path a holder's step takes past the deadline, with stage 2's shards expired as soon as they are planned) and
        it publishes; True if it published here. A collection already finished (or unknown) is left as it is."""
        if not self.scale.lease.held:
            return False
        with self._lock:
            for _ in range(3):   # stage 1 expired (stage 2 planned), stage 2 expired, published
                row = self.scale.book.collection(collection)
                if row is None or row.state not in OPEN:
                    return False
                if self._advance(row, expire=True):
                    return True
        return False

    def close(self) -> None:
        """Give every pass up (a stop): their threads end instead of waiting for shards this driver will not feed."""
        with self._lock:
            _close_all(self._fanins)

    def open_rows(self) -> list[CollectionRow]:
        return self.scale.book.collections(OPEN)

    def step(self, collection: str | None = None) -> bool:
        """One move of each open collection (or only ``collection``); True if one was published. Never raises for
        a lost race or a storage failure: the next step tries again."""
        if not self.scale.lease.held:
            if self._fanins:   # a holder no more: its passes would wait for shards it no longer drives
                self.close()
            return False
        with self._lock:
            try:
                rows = self.open_rows() if collection is None else [self.scale.book.collection(collection)]
            except Exception as err:
                log.warning("fanout_step_failed", error=f"{type(err).__name__}: {err}")
                return False
            published = False
            if collection is None:   # a pass whose collection ended elsewhere (published, abandoned) is given up
                for cid in set(self._fanins) - {r.collection for r in rows if r is not None}:
                    self._fanins.pop(cid).close()
                self.busy = False
            for row in rows:
                if row is None or row.state not in OPEN:
                    continue
                try:
                    advanced = self._advance(row)
                    published = advanced or published
                    self.busy = self.busy or not advanced
                except CasConflict as err:
                    log.info("fanout_step_lost_a_race", collection=row.collection, error=str(err))
                except Exception as err:
                    log.warning("fanout_step_failed", collection=row.collection, error=f"{type(err).__name__}: {err}")
            return published

    # --- the stages ---------------------------------------------------------------------------------------
    def _advance(self, row: CollectionRow, *, expire: bool = False) -> bool:
        lease, book = self.scale.lease, self.scale.book
        if row.epoch > lease.epoch or not lease.held:
            return False   # a newer holder drives it: we are a stale one
        if row.epoch < lease.epoch:   # its holder lost the lease mid-collection: continue the same collection
            row = book.update_collection(replace(row, epoch=lease.epoch, started_by=self.scale.instance))
            log.info("fanout_collection_taken_over", collection=row.collection, epoch=row.epoch)
        shards = {s.shard: s for s in book.shards(row.collection)}
        if TENANT_SHARD not in shards:
            shards[TENANT_SHARD] = self._stage0(row)
        if not any(s.stage == 1 for s in shards.values()) and row.shards_total == 0:
            sub_ids = self._sub_ids(row, shards[TENANT_SHARD])
            added = self._enqueue(row, [ShardRow(collection=row.collection, shard=spec.name, stage=1,
                                                 budget_key=spec.budget_key, work=tuple(spec.work()))
                                        for spec in stage1_specs(sub_ids)])
            shards.update({s.shard: s for s in added})
            row = book.update_collection(replace(row, shards_total=len(shards)))
        if expire or self.clock() >= row.deadline:
            shards.update(self._expire(row, shards.values()))
        fanin = self._fanin(row, list(shards.values()))
        if any(s.state not in TERMINAL for s in shards.values()):
            return False
        if row.state == "stage1":
            started = time.perf_counter()
            specs = stage2_specs(self._plan(row, fanin, shards.values()))
            self.daemon.metrics.fanin_seconds.labels("plan").observe(time.perf_counter() - started)
            if specs:
                added = self._enqueue(row, [ShardRow(collection=row.collection, shard=spec.name, stage=2,
                                                     budget_key=spec.budget_key, work=tuple(spec.work()))
                                            for spec in specs])
                shards.update({s.shard: s for s in added})
                book.update_collection(replace(row, state="stage2", shards_total=len(shards)))
                return False
            row = book.update_collection(replace(row, state="finalizing"))
        elif row.state == "stage2":
            row = book.update_collection(replace(row, state="finalizing"))
        return self._finalize(row, list(shards.values()))

    def _fanin(self, row: CollectionRow, shards: list[ShardRow]) -> FanIn:
        """This collection's pass (started at its first step here, a takeover's too), fed what landed since."""
        fanin = self._fanins.get(row.collection)
        if fanin is None:
            shared = self.daemon.shared
            fanin = self._fanins[row.collection] = FanIn(
                blob_collection(row), manifest=dict(self.daemon.manifest), subscriptions=self.daemon.subscriptions,
                typed=shared.typed if shared is not None else False)
        cid = blob_collection(row)
        fanin.feed(shards, lambda name: self._segment(cid, name))
        return fanin

    def _plan(self, row: CollectionRow, fanin: FanIn, shards: Sequence[ShardRow] | Any) -> list[Read]:
        """The stage-2 reads, from the pass (every stage-1 shard is terminal: it is sealed); if the pass failed, a
        plan of its own over the segments (decoded again, as before the pass)."""
        fanin.reader.seal(1)
        fanin.planned.wait()
        if fanin.plan is not None:
            return fanin.plan
        return plan_stage2(self._reader(row, shards), manifest=self.daemon.manifest,
                           subscriptions=self.daemon.subscriptions)

    def _stage0(self, row: CollectionRow) -> ShardRow:
        """The tenant-level reads, inline: few, and stage 1 needs the subscriptions they list."""
        daemon = self.daemon
        s0 = read_stage0(daemon.collect_reader, manifest=daemon.manifest, subscriptions=daemon.subscriptions)
        cid = blob_collection(row)
        name = f"{TENANT_SHARD}-e{row.epoch}.z"
        try:
            etag = self.scale.inventory.put_segment(cid, name, s0.segment, shard=TENANT_SHARD, reads=s0.reads).etag
        except AlreadyWritten:
            etag = ""   # this epoch's own earlier try: the same reads
        self._segments[(cid, name)] = s0.segment
        self._stage0_subs[row.collection] = s0.sub_ids
        now = self.clock()
        done = ShardRow(collection=row.collection, shard=TENANT_SHARD, stage=0, budget_key="tenant", state="done",
                        attempt=1, worker=self.scale.instance, started_at=now, finished_at=now, segment=name,
                        segment_etag=etag, reads=s0.reads, spent=float(s0.reads), work=("", []))
        return self.scale.book.add_shards([done])[0]

    def _sub_ids(self, row: CollectionRow, s0: ShardRow) -> list[str]:
        """The subscriptions stage 0 listed (read back from its segment: a takeover may not have read it itself)."""
        own = self._stage0_subs.pop(row.collection, None)
        if own is not None:
            return own
        inv = Inventory(manifest=dict(self.daemon.manifest))
        wanted = {s.lower() for s in self.daemon.subscriptions} if self.daemon.subscriptions else None
        with interning():
            Collection(self._reader(row, [s0]), inv, 1, None).tenant(wanted)
        return sub_ids_of(inv)

    def _enqueue(self, row: CollectionRow, rows: Sequence[ShardRow]) -> list[ShardRow]:
        """Rows first (the work travels there), then a message per row still queued (a redone move re-sends them:
        a taker deletes a message whose row is terminal)."""
        added = self.scale.book.add_shards(rows)
        for shard in added:
            if shard.state == "queued":
                self.scale.shards.send(_message(row.collection, shard.shard))
        if self.on_enqueue is not None:
            self.on_enqueue()
        log.info("fanout_shards_queued", collection=row.collection, shards=len(added), stage=rows[0].stage
                 if rows else None)
        return added

    def _expire(self, row: CollectionRow, shards: Sequence[ShardRow] | Any) -> dict[str, ShardRow]:
        """Past the deadline every unfinished shard is a gap (``ShardExpired``), so the collection publishes."""
        out: dict[str, ShardRow] = {}
        for s in list(shards):
            if s.state in TERMINAL:
                continue
            try:
                out[s.shard] = self.scale.book.update_shard(replace(
                    s, state="failed", finished_at=self.clock(),
                    error=f"ShardExpired: {s.shard} unfinished at the deadline {row.deadline.isoformat()}"))
            except CasConflict:
                fresh = self.scale.book.shard(row.collection, s.shard)
                if fresh is not None:
                    out[s.shard] = fresh
        if out:
            log.warning("fanout_shards_expired", collection=row.collection, shards=sorted(out))
        return out

    def _segment(self, cid: str, name: str) -> bytes:
        data = self._segments.get((cid, name))
        if data is None:
            data = self._segments[(cid, name)] = self.scale.inventory.get_segment(cid, name)
        return data

    def _reader(self, row: CollectionRow, shards: Sequence[ShardRow] | Any, *, typed: bool = False) -> SegmentReader:
        cid = blob_collection(row)
        done = [s for s in shards if s.state == "done" and s.segment]
        failed = [_failed(s) for s in shards if s.state == "failed"]
        return SegmentReader([(s.segment, self._segment(cid, s.segment)) for s in done], collection=cid,
                             failed=failed, typed=typed)

    def _finalize(self, row: CollectionRow, shards: list[ShardRow]) -> bool:
        """Every shard is in: the inventory from their segments, published and adopted with the full lifecycle."""
        daemon, cid = self.daemon, blob_collection(row)
        shared = daemon.shared
        typed = shared.typed if shared is not None else False
        failed = [_failed(s) for s in shards if s.state == "failed"]
        refs = [SegmentRef(name=s.segment, shard=s.shard, etag=s.segment_etag,
                           bytes=len(self._segment(cid, s.segment)), reads=s.reads)
                for s in shards if s.state == "done" and s.segment]

        fanin = self._fanins.pop(row.collection, None)
        if fanin is not None:
            fanin.reader.seal(2)   # every shard is terminal (with no stage 2 at all, no row says so)

        def build() -> Inventory:
            started = time.perf_counter()
            try:
                if fanin is not None:
                    fanin.built.wait()
                    if fanin.inventory is not None:
                        return fanin.inventory
                reader = self._reader(row, shards, typed=typed)
                inv = collect(reader, manifest=daemon.manifest, subscriptions=daemon.subscriptions, workers=1)
                reader.drop_cache()
                return inv
            finally:
                daemon.metrics.fanin_seconds.labels("build").observe(time.perf_counter() - started)

        def publish() -> Pointer | None:
            """Manifest and pointer, then the row (so a reader of the book never sees the pointer ahead of it)."""
            pointer = None
            if shared is not None:
                pointer = publish_manifest(shared.store, refs, collection=cid, manifest=daemon.manifest,
                                           subscriptions=daemon.subscriptions or (),
                                           scoped=daemon.subscriptions is not None, started_at=row.started_at,
                                           finished_at=self.clock(), failed=failed, plmon=__version__)
            self.scale.book.update_collection(replace(
                row, state="published", manifest=cid if pointer is not None else "", published_at=self.clock(),
                requests=sum(s.reads for s in shards), gaps=len(failed)))
            return pointer

        daemon.fanned_in(build, row.started_at, publish, settle=self.settle)
        for key in [k for k in self._segments if k[0] == cid]:
            del self._segments[key]
        log.info("fanout_collection_published", collection=row.collection, published=cid, shards=len(shards),
                 failed=len(failed))
        return True

