"""One schedule for every process on a shared store (issue 15, design 2.2): the blob lease says who runs it.

Without it each replica (and each Function timer) ran its own full collection, reminders and retention: K replicas
read ARM K times per interval. Here only the lease holder runs them; the others load the collection it publishes
(:class:`~plmon.monitor.service.shared_inventory.PointerWatcher`). Two pieces:

- :class:`LeaseKeeper` renews the lease on a thread of its own, never an APScheduler job, so a renewal never waits
  behind a long collection (a lease unrenewed for its duration is lost). A process without it tries to acquire at
  the same pace: when the holder stops renewing (dies, pauses, loses its network) the lease expires and another
  takes it.
- :class:`SharedSchedule` is what the holder runs, each job guarded by a row in the collection book, so that a
  takeover neither repeats nor skips one: the tick's full collection claims ``collections/<tick>`` (create-once: two
  holders cannot both start one tick), reminders and retention compare-and-swap their last-run time in the
  ``schedule/jobs`` row, carrying the lease epoch (a holder that wakes from a pause with an older epoch stands down).

SQLite (one process) uses none of this: :class:`~plmon.monitor.service.runtime.Runtime` keeps today's jobs.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

import structlog

from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.shared_inventory import retire
from plmon.monitor.state.scaleout import (
    AlreadyWritten,
    CasConflict,
    CollectionBook,
    CollectionRow,
    LeaseLost,
    ScaleOut,
    ScheduleJobs,
    ScheduleLease,
)

if TYPE_CHECKING:
    from plmon.monitor.service.fanout import CollectionDriver

__all__ = ["LeaseKeeper", "SharedSchedule", "prune_book", "tick_collection"]

log = structlog.get_logger(__name__)

# Collections (segments, manifests) and patches are kept at least this long (besides the current and previous
# collection): a replica that started loading one just before it was superseded finishes (or restarts) in time.
KEEP_COLLECTIONS = timedelta(hours=1)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LeaseKeeper:
    """Holds the schedule lease, or waits for it, on the ``plmon-lease`` thread: every ``every`` seconds a renewal
    if held, else an attempt to acquire. ``step`` is the one move (the thread's, the Function timer's, tests')."""

    def __init__(self, lease: ScheduleLease, *, every: float, on_change: Callable[[bool], None] | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        """``on_event``: "acquired", "lost" or "released" (``plmon_schedule_lease_changes_total``), beside the
        held/not-held ``on_change``, which cannot tell a lease given back from one lost."""
        self.lease, self.every, self.on_change, self.on_event = lease, every, on_change, on_event
        self._lock = threading.Lock()   # one lease call at a time: the thread, and a job that needs it now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was = False

    @property
    def held(self) -> bool:
        return self.lease.held

    def step(self) -> bool:
        """Renew or try to acquire; whether the lease is held now. A storage failure is logged: the lease is held
        until its own expiry anyway (``held`` turns False by itself then)."""
        with self._lock:
            try:
                if self.lease.held:
                    self.lease.renew()
                else:
                    self.lease.try_acquire()
            except LeaseLost:
                pass   # logged by the lease; held is False now
            except Exception as err:
                log.warning("schedule_lease_step_failed", error=f"{type(err).__name__}: {err}")
            held = self.lease.held
            if held != self._was:
                self._was = held
                log.info("schedule_lease_changed", held=held)
                if self.on_change is not None:
                    self.on_change(held)
                if self.on_event is not None:
                    self.on_event("acquired" if held else "lost")
            return held

    def _run(self) -> None:
        self.step()
        while not self._stop.wait(self.every):
            self.step()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="plmon-lease", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True, timeout: float = 10.0) -> None:
        """Stop renewing; ``release`` gives the lease back at once (a graceful stop), else it expires by itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if release:
            with self._lock, contextlib.suppress(Exception):
                self.lease.release()
            if self._was and self.on_change is not None:
                self.on_change(False)
            if self._was and self.on_event is not None:
                self.on_event("released")
            self._was = False


def tick_collection(now: datetime, every: timedelta) -> tuple[int, str]:
    """The schedule tick ``now`` falls in and its collection row's id (sorts by time, like the collection ids)."""
    tick = math.floor(now.timestamp() / every.total_seconds())
    start = datetime.fromtimestamp(tick * every.total_seconds(), UTC)
    return tick, f"t-{start:%Y%m%dT%H%M%S}Z"


class SharedSchedule:
    """The holder's jobs on a shared store; each call does nothing unless this process holds the lease."""

    def __init__(self, daemon: Daemon, scale: ScaleOut, *, settle: bool = False,
                 clock: Callable[[], datetime] = _utcnow, fanout: CollectionDriver | None = None) -> None:
        """``fanout``: the tick's collection is a fan-out one (shards on the queue, read by every process, driven by
        ``fanout``); None keeps the holder's own local collection (the fallback, and what a host that takes no
        shards runs)."""
        self.daemon, self.scale, self.settle, self.clock = daemon, scale, settle, clock
        self.every = daemon.config.schedule.full_collection
        self.fanout = fanout

    # --- the full collection ---------------------------------------------------------------------------------
    def collect_if_due(self) -> bool:
        """The tick's full collection, if this process holds the lease and no holder started it yet (True: it ran
        here). A row still running (``stage1``) under an older lease epoch than ours was started by a holder that has
        lost the lease since (died or paused mid-collection): it is taken over at once by compare-and-swap and
        collected again. Waiting for its deadline would be too late: the deadline is ``now + every``, at or after the
        tick's end, when ``tick_collection`` already names the next tick, and a fresh deployment would have no
        inventory for up to an interval. The deadline stays a backstop for a row of our own epoch."""
        lease = self.scale.lease
        if not lease.held:
            return False
        now = self.clock()
        tick, cid = tick_collection(now, self.every)
        deadline = now + (self.daemon.config.scale.collection_deadline if self.fanout is not None else self.every)
        row = CollectionRow(collection=cid, state="stage1", tick=tick, started_at=now, started_by=self.scale.instance,
                            epoch=lease.epoch, deadline=deadline)
        book = self.scale.book
        try:
            row = book.create_collection(row)
        except AlreadyWritten:
            found = book.collection(cid)
            if found is None or found.state in ("published", "abandoned") or found.epoch > lease.epoch:
                return False   # this tick's collection is done, or a newer holder runs it (we are a stale one)
            if self.fanout is not None:
                # A fan-out collection is continued, never started again: the same row, its shards and segments
                # (a dead holder's shards reappear on the queue after their visibility and complete).
                if found.epoch == lease.epoch:
                    return False   # under way by this holder: its driver moves it
                self.fanout.step(cid)
                return True
            if found.epoch == lease.epoch and found.deadline > now:
                return False   # under way by this holder (the epoch is ours)
            try:
                row = book.update_collection(replace(found, started_at=now, started_by=self.scale.instance,
                                                     epoch=lease.epoch, deadline=now + self.every))
            except CasConflict:
                return False
            log.info("tick_collection_taken_over", collection=cid, from_holder=found.started_by)
        if not lease.held:   # lost while claiming: the row's deadline lets the next holder redo it
            return False
        if self.fanout is not None:
            try:
                self.fanout.start(row)
                return True
            except Exception as err:   # the visible fallback: this holder reads the tick's collection itself
                log.warning("fanout_unavailable_collecting_locally", collection=cid,
                            error=f"{type(err).__name__}: {err}")
                fresh = book.collection(cid)
                if fresh is None or fresh.state not in ("stage1", "stage2") or fresh.epoch != lease.epoch:
                    return False
                row = book.update_collection(replace(fresh, state="finalizing"))   # no driver step takes it now
        log.info("tick_collection_started", collection=cid, epoch=lease.epoch)
        shared = self.daemon.shared
        before = shared.current if shared is not None else None
        try:
            self.daemon.full_collection(settle=self.settle)
        except BaseException:
            with contextlib.suppress(Exception):
                book.update_collection(replace(row, state="abandoned"))
            raise
        # Published only if this collection moved the pointer (a failed publish leaves the one served before).
        current = shared.current if shared is not None else None
        published = current.collection if current is not None and current != before else ""
        try:
            book.update_collection(replace(row, state="published" if published else "abandoned", manifest=published,
                                           published_at=self.clock()))
        except CasConflict:
            log.warning("tick_collection_row_moved", collection=cid)
        if published:
            self._retire_quietly()
        return True

    # --- reminders and retention ------------------------------------------------------------------------------
    def _claim(self, job: Literal["reminders", "retention"], every: timedelta) -> ScheduleJobs | None:
        """The jobs row claiming ``job`` if it is due (compare-and-swap, our epoch: exactly one holder runs it per
        interval), else None. The first sight of the row only starts the clock (as an interval job's first run is
        one interval after start). Reminders claimed but not done by a holder of an older epoch (it lost the lease
        between the claim and the end) are due again at once: they are idempotent against the store."""
        lease = self.scale.lease
        if not lease.held:
            return None
        book, now = self.scale.book, self.clock()
        jobs = book.jobs()
        if jobs.epoch > lease.epoch:
            return None   # a newer holder wrote it: we are a stale one
        last = jobs.reminders_at if job == "reminders" else jobs.retention_at
        unfinished = job == "reminders" and last is not None and jobs.reminders_done_at != last \
            and jobs.epoch < lease.epoch
        if last is not None and now - last < every and not unfinished:
            return None
        if job == "reminders":   # first sight: nothing to run, so done as claimed
            claimed = replace(jobs, epoch=lease.epoch, reminders_at=now,
                              reminders_done_at=now if last is None else jobs.reminders_done_at)
        else:
            claimed = replace(jobs, epoch=lease.epoch, retention_at=now)
        try:
            claimed = book.update_jobs(claimed)
        except CasConflict:
            return None
        if unfinished:
            log.info("reminders_rerun", claimed_at=last.isoformat() if last else None, from_epoch=jobs.epoch)
        return claimed if last is not None else None

    def reminders_if_due(self) -> bool:
        claimed = self._claim("reminders", self.daemon.config.schedule.reminder_interval)
        if claimed is None:
            return False
        self.daemon.reminders()
        try:   # done: a takeover from here on does not run them again
            self.scale.book.update_jobs(replace(claimed, reminders_done_at=claimed.reminders_at))
        except CasConflict:
            log.warning("reminders_done_not_recorded")   # a newer holder moved the row: it may run them again
        return True

    def retention_if_due(self) -> bool:
        if self._claim("retention", self.daemon.config.schedule.retention_interval) is None:
            return False
        self.daemon.retention()
        self._retire_quietly()
        return True

    def drive(self) -> bool:
        """Move the open fan-out collections along (the holder's ``plmon-drive`` step); True if one published."""
        if self.fanout is None or not self.scale.lease.held:
            return False
        published = self.fanout.step()
        if published:
            self._retire_quietly()
        return published

    def run_due(self) -> None:
        """Reminders and retention, each when due (the holder's ``schedule`` job)."""
        self.reminders_if_due()
        self.retention_if_due()

    def _retire_quietly(self) -> None:
        """Old collections and patches go, and the book's rows of finished collections; a failure is logged, the
        next retention tries again."""
        try:
            retire(self.scale.inventory, self.clock(), keep_for=KEEP_COLLECTIONS)
            prune_book(self.scale.book, self.clock(), keep_for=KEEP_COLLECTIONS)
        except Exception as err:
            log.warning("shared_retention_failed", error=f"{type(err).__name__}: {err}")


def prune_book(book: CollectionBook, now: datetime, *, keep_for: timedelta = KEEP_COLLECTIONS) -> int:
    """Delete the rows (and shard rows) of finished collections started more than ``keep_for`` ago, but never the
    newest published one nor one still running. Without this the book grew by one row and a shard per subscription
    every interval, and ``/readyz`` (which reads the rows to report the newest) slowed with it. How many rows went."""
    rows = book.collections()
    published = [r for r in rows if r.state == "published"]
    newest = published[-1].collection if published else None
    deleted = 0
    for r in rows:
        if r.state in ("published", "abandoned") and r.collection != newest and now - r.started_at >= keep_for:
            deleted += book.delete_collection(r.collection)
    if deleted:
        log.info("collection_rows_pruned", rows=deleted, kept=newest)
    return deleted
