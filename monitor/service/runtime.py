"""The daemon's threads: the intake worker and the APScheduler jobs around one :class:`Daemon`.

Kept apart from :mod:`plmon.monitor.service.daemon` because the Azure Function has its own triggers and needs none
of this. Jobs: the full collection (first run at start, then every ``schedule.full_collection``;
``coalesce`` and ``max_instances=1`` so a slow tenant never stacks collections), reminders and retention.
Shutdown order: the server stops accepting first, then :meth:`Runtime.stop` drains the queue, flushes
the outbox within a time limit, and stops the scheduler.

On a shared store (``daemon.scale``, issue 15) the schedule is one for all replicas: the ``plmon-lease`` thread
keeps or waits for the schedule lease (:class:`~plmon.monitor.service.schedule.LeaseKeeper`), the jobs run the
holder's work only while it is held (:class:`~plmon.monitor.service.schedule.SharedSchedule`), and every replica
first loads the published collection (no ARM read) and then follows the pointer (``plmon-pointer``). A load and a
collection never run at once in one process (``_inventory_lock``). Stopping gives the lease back at once.
The scheduled collection fans out (:mod:`plmon.monitor.service.fanout`): ``scale.shards_in_flight`` ``plmon-shards``
threads on every replica (the holder too) take shards off the queue, polling fast while shards keep coming and
backing off to a few seconds when idle, and the holder's ``plmon-drive`` thread moves open collections along (stage
0, the shard stages, the finalizer that publishes) four times a second while one is open, every second otherwise.

Alerts leave on two threads of their own, never on the intake worker's nor the collection's, so a slow or
failing sink never holds up an event (a webhook may take its whole timeout):

- *first* sends the alerts of the findings an event just moved, and only those, at once;
- *backlog* sends everything else that is due (a first collection opens thousands of findings; retries and
  backoff), oldest first, pass after pass (200 rows, so a burst becomes the same digests as before), on every
  queued alert and every ``schedule.delivery_interval``.

Without the split, the alert of a bad change made just after a start waited behind the first collection's
(5,934 at 100k resources, 20 s to a receiver that takes one per request). The two never reorder a finding's
alerts nor send one twice: the store leases what a pass claimed and withholds a finding's later alert while
an earlier one is pending, and *first* waits for an earlier alert of its findings that *backlog* holds in
flight (:meth:`~plmon.alerts.delivery.DeliveryWorker.run_first`). The backlog also steps aside, before each
send, while an event is being processed or its alerts sent (at most a second per send, so a steady stream of
events never starves it): on a busy interpreter it would otherwise take its share of the CPU from the event's
re-evaluation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from plmon.alerts.delivery import DeliveryReport
from plmon.monitor.collect.builder import paused_gc
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.fanout import CollectionDriver, ShardWorker
from plmon.monitor.service.schedule import LeaseKeeper, SharedSchedule
from plmon.monitor.service.shared_inventory import PointerWatcher, SharedInventory
from plmon.monitor.state.store import OutboxRow

__all__ = ["Runtime"]

log = structlog.get_logger(__name__)

FIRST_PATIENCE = 5.0  # seconds the first lane waits for an earlier alert of its findings held by the backlog
YIELD_AT_MOST = 1.0  # seconds a backlog send waits for events to finish: a steady stream never starves it
SHARD_POLL_BUSY = 0.2   # seconds between shard-queue polls while shards keep coming (a collection is open)
SHARD_POLL_IDLE = 5.0   # at most this long between polls of an idle shard queue (storage transactions cost)
DRIVE_EVERY = 1.0       # seconds between the holder's steps when no fan-out collection is open
# Seconds between the holder's steps while one is: a shard another replica finished is only seen at the next step, so
# each stage ended on average half a step late (three stages: ~1.5 s of a 12 s collection with 3 replicas at 1 s).
# A step is two Table queries.
DRIVE_BUSY = 0.25
DEFAULT_SHARDS_IN_FLIGHT = 2



def _sent(lane: str, report: DeliveryReport) -> DeliveryReport:
    """The one info line of a delivery batch (each alert's own line is at debug): a burst is a few lines, not
    thousands, and what failed is still one warning per alert."""
    if report.claimed:
        log.info("alerts_sent", lane=lane, claimed=report.claimed, delivered=report.delivered,
                 digests=report.digests, retrying=report.retrying, dead_lettered=report.dead)
    return report

class _Priority:
    """How many event steps and first-lane sends are under way: the backlog waits for none."""

    def __init__(self) -> None:
        self._busy = 0
        self._idle = threading.Condition()

    @contextmanager
    def busy(self) -> Iterator[None]:
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def enter(self) -> None:
        """Busy until :meth:`leave`: for work handed from one thread to another."""
        with self._idle:
            self._busy += 1
            self._idle.notify_all()   # a wait's ``unless`` may hold now

    def poke(self) -> None:
        """Wake the waits: what their ``unless`` reads has changed."""
        with self._idle:
            self._idle.notify_all()

    def leave(self, times: int = 1) -> None:
        if times:
            with self._idle:
                self._busy -= times
                self._idle.notify_all()

    def wait_idle(self, timeout: float, unless: Callable[[], bool] | None = None) -> bool:
        """Until nothing is busy, ``unless()`` holds (read whenever the busy count moves or :meth:`poke` is
        called) or ``timeout`` passes; False on the timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0 or (unless is not None and unless()), timeout)


class _Serialized:
    """The daemon as the pointer watcher sees it: its loads wait for a collection or load under way here."""

    def __init__(self, daemon: Daemon, lock: threading.Lock) -> None:
        self._daemon, self._lock = daemon, lock

    @property
    def shared(self) -> SharedInventory | None:
        return self._daemon.shared

    def load_shared(self) -> bool:
        with self._lock:
            return self._daemon.load_shared(settle=True)

    def sync_shared(self) -> int:
        return self._daemon.sync_shared()


class Runtime:
    def __init__(self, daemon: Daemon, *, collect_at_start: bool = True, idle_wait: float = 1.0,
                 fan_out: bool = True, shard_poll_idle: float = SHARD_POLL_IDLE,
                 drive_every: float = DRIVE_EVERY) -> None:
        """``fan_out`` (a shared store): the scheduled collection is cut into shards that every replica reads; False
        keeps the holder's own local collection. ``shard_poll_idle`` and ``drive_every``: see the module."""
        self.daemon = daemon
        self.fan_out = fan_out
        self.shard_poll_idle = shard_poll_idle
        self.drive_every = drive_every
        self.driver: CollectionDriver | None = None
        self.shard_worker: ShardWorker | None = None
        self._shard_threads: list[threading.Thread] = []
        self._shard_wake = threading.Event()
        self._drive_wake = threading.Event()
        self.collect_at_start = collect_at_start
        self.idle_wait = idle_wait
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="plmon-intake", daemon=True)
        self._priority = _Priority()
        self._first: set[tuple[str, str]] = set()  # findings whose alerts go first, guarded by _first_lock
        self._first_holds = 0   # _alerts_queued calls whose findings the first lane has not taken yet (_Priority)
        self._sending_first: frozenset[tuple[str, str]] = frozenset()  # those the first lane is sending now
        self._first_lock = threading.Lock()
        self._first_wake = threading.Event()
        self._backlog_wake = threading.Event()
        self._senders = [threading.Thread(target=self._send_first, name="plmon-alerts-first", daemon=True),
                         threading.Thread(target=self._send_backlog, name="plmon-alerts-backlog", daemon=True)]
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
            timezone=UTC)
        self.keeper: LeaseKeeper | None = None
        self.schedule: SharedSchedule | None = None
        self.watcher: PointerWatcher | None = None
        self._inventory_lock = threading.Lock()
        self._started_shared = False

    def start(self) -> None:
        now = datetime.now(UTC)
        if self.daemon.scale is not None:
            self._start_shared(now)
        else:
            self._start_jobs(now)
        self.daemon.dispatch = self._alerts_queued
        self.scheduler.start()
        self._worker.start()
        for sender in self._senders:
            sender.start()
        log.info("daemon_started", shared=self.daemon.scale is not None)

    def _start_jobs(self, now: datetime) -> None:
        """One process: its own collection (first at start), reminders and retention, as ever."""
        sched = self.daemon.config.schedule
        self.scheduler.add_job(self._safe(self.full_collection), "interval", id="full_collection",
                               seconds=sched.full_collection.total_seconds(),
                               next_run_time=now if self.collect_at_start else None)
        self.scheduler.add_job(self._safe(self.daemon.reminders), "interval", id="reminders",
                               seconds=sched.reminder_interval.total_seconds())
        self.scheduler.add_job(self._safe(self.daemon.retention), "interval", id="retention",
                               seconds=sched.retention_interval.total_seconds())

    def _start_shared(self, now: datetime) -> None:
        """One schedule for all replicas: the lease thread, and jobs that look every renewal interval whether this
        process holds the lease and a job is due (the book's rows say so, whichever replica ran it last)."""
        scale = self.daemon.scale
        assert scale is not None
        cfg, metrics = self.daemon.config.scale, self.daemon.metrics
        self.keeper = LeaseKeeper(scale.lease, every=cfg.lease_renew.total_seconds(),
                                  on_event=metrics.lease_changed)
        if self.fan_out:
            self.driver = CollectionDriver(self.daemon, scale, settle=True, on_enqueue=self._shard_wake.set)
            self.shard_worker = ShardWorker(self.daemon, scale, on_done=lambda _cid: self._drive_wake.set())
            count = cfg.shards_in_flight or DEFAULT_SHARDS_IN_FLIGHT
            self._shard_threads = [threading.Thread(target=self._take_shards, name=f"plmon-shards_{i}", daemon=True)
                                   for i in range(count)]
            self._shard_threads.append(threading.Thread(target=self._drive, name="plmon-drive", daemon=True))
        self.schedule = SharedSchedule(self.daemon, scale, settle=True, fanout=self.driver)
        self.watcher = PointerWatcher(_Serialized(self.daemon, self._inventory_lock),
                                      interval=cfg.pointer_interval.total_seconds())
        check = min(self.daemon.config.schedule.full_collection, cfg.lease_renew).total_seconds()
        self.scheduler.add_job(self._safe(self.shared_collection), "interval", id="full_collection", seconds=check,
                               next_run_time=now if self.collect_at_start else None)
        self.scheduler.add_job(self._safe(self.schedule.run_due), "interval", id="schedule", seconds=check)
        self.keeper.start()
        for thread in self._shard_threads:
            thread.start()

    def _take_shards(self) -> None:
        """A ``plmon-shards`` thread: one shard at a time off the queue, polling fast while they keep coming."""
        assert self.shard_worker is not None
        wait = SHARD_POLL_BUSY
        while not self._stopping.is_set():
            try:
                outcome = self.shard_worker.run_one()
            except Exception as err:   # storage down: try again later, the shard waits on the queue
                log.warning("shard_poll_failed", error=f"{type(err).__name__}: {err}")
                outcome = None
            if outcome is not None:
                wait = SHARD_POLL_BUSY
                continue
            self._shard_wake.wait(wait)
            if self._shard_wake.is_set():
                self._shard_wake.clear()
                wait = SHARD_POLL_BUSY
            else:
                wait = min(self.shard_poll_idle, wait * 2)

    def _drive(self) -> None:
        """The ``plmon-drive`` thread: the holder's steps of open fan-out collections (a load or a local collection
        never runs at the same time: ``_inventory_lock``)."""
        assert self.schedule is not None and self.keeper is not None
        while not self._stopping.is_set():
            fanout = self.schedule.fanout
            self._drive_wake.wait(min(self.drive_every, DRIVE_BUSY) if fanout is not None and fanout.busy
                                  else self.drive_every)
            self._drive_wake.clear()
            if self._stopping.is_set() or not self.keeper.held:
                continue
            try:
                with self._inventory_lock:
                    self.schedule.drive()
            except Exception:
                log.exception("job_failed", job="drive")

    def shared_collection(self) -> None:
        """First the published collection (no ARM read), then the pointer followed; the tick's collection when this
        process holds the lease and no holder made it yet."""
        assert self.keeper is not None and self.schedule is not None and self.watcher is not None
        if not self._started_shared:
            self._started_shared = True
            try:
                with self._inventory_lock:
                    self.daemon.load_shared(settle=True)
            finally:   # a storage failure here is the watcher's to retry, every pointer interval
                self.watcher.start()
            if not self.keeper.held:
                self.keeper.step()   # the lease thread may not have had its first try yet
        with self._inventory_lock:
            self.schedule.collect_if_due()

    def full_collection(self) -> None:
        """The daemon's full collection, its heap settled before it says it is ready (:meth:`Daemon.settle_heap`)."""
        self.daemon.full_collection(settle=True)

    def _safe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """A job that logs its failure instead of losing it inside the scheduler's thread."""
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("job_failed", job=fn.__name__)
        run.__name__ = fn.__name__
        return run

    # --- alert delivery: the first lane and the backlog ------------------------------------------
    def _alerts_queued(self, urgent: Sequence[tuple[str, str]]) -> None:
        """The daemon committed alerts: an event's findings go to the first lane, and the backlog looks too.

        Urgent alerts count as busy from here until the first lane has sent them (not only while it sends), so
        what waits for idle (the backlog, the worker's tidy_heap) cannot slip in before the lane wakes."""
        if urgent:
            # Busy before the hold is counted: a lane that takes the hold in between would otherwise leave before
            # this enters, and the busy count would dip while the worker is still in its step.
            self._priority.enter()
            with self._first_lock:
                self._first.update(urgent)
                self._first_holds += 1
            self._first_wake.set()
        self._backlog_wake.set()

    def _send_first(self) -> None:
        while not self._stopping.is_set():
            self._first_wake.wait(self.idle_wait)
            self._first_wake.clear()
            with self._first_lock:
                findings, self._first = self._first, set()
                holds, self._first_holds = self._first_holds, 0
            if not findings:
                self._priority.leave(holds)
                continue
            self._sending_first = frozenset(findings)
            self._priority.poke()   # a backlog send stepping aside may hold one of these: it must not wait on us
            try:
                _sent("first", self.daemon.deliver_first(sorted(findings), FIRST_PATIENCE))
            except Exception:
                log.exception("alert_delivery_step_failed", lane="first")
            finally:
                self._sending_first = frozenset()
                self._priority.leave(holds)

    def _send_backlog(self) -> None:
        interval = self.daemon.config.schedule.delivery_interval.total_seconds()
        while not self._stopping.is_set():
            self._backlog_wake.wait(interval)
            self._backlog_wake.clear()
            while not self._stopping.is_set():
                try:
                    if not _sent("backlog", self.daemon.deliver(pause=self._step_aside)).claimed:
                        break
                except Exception:
                    log.exception("alert_delivery_step_failed", lane="backlog")
                    break

    def _step_aside(self, rows: Sequence[OutboxRow]) -> None:
        """Before a backlog send: wait while an event is under way, unless the first lane waits for this very
        send (an earlier alert of a finding it is sending), which would only make it wait longer."""
        wanted = self._sending_first
        if not any((r.check_id, r.resource_key) in wanted for r in rows):
            self._priority.wait_idle(YIELD_AT_MOST, unless=self._first_waits_for_backlog)

    def _first_waits_for_backlog(self) -> bool:
        """Whether the first lane has (or is about to take) a finding with an alert in flight: when the backlog pass
        holds it, the lane waits for the pass (up to FIRST_PATIENCE) while its hand-over keeps the runtime busy, so a
        backlog send that waited for idle would wait for itself, each send up to YIELD_AT_MOST (a 5 s alert seen at
        10k). The delivery worker counts the lane's own claims too: then the backlog merely does not step aside
        while the lane sends, which costs the lane a little CPU, never an alert."""
        with self._first_lock:
            wanted = self._first | self._sending_first
        return bool(wanted) and self.daemon.delivery.holding(wanted)

    # --- intake ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            self.daemon.wake.wait(self.idle_wait)
            self.daemon.wake.clear()
            self._drain_once()

    def _drain_once(self, *, tidy: bool = True) -> int:
        done = 0
        # No collector pass between the steps either: it would walk their state. tidy_heap makes the one pass, and
        # inside the pause, or the first allocation after it would make it, walking the same objects.
        with paused_gc():
            while True:
                try:
                    with self._priority.busy():
                        report = self.daemon.process_pending()
                except Exception:
                    log.exception("worker_step_failed")
                    break
                if report.events == 0:
                    break
                done += report.events
            if done and tidy and self._settled_for_tidy():
                self.daemon.tidy_heap()
        return done

    def _settled_for_tidy(self) -> bool:
        """Whether to tidy now: the pass holds the interpreter, so after the alerts the steps moved were sent (at
        most YIELD_AT_MOST), and never before a new event: one that arrives meanwhile is processed first (its
        drain tidies), instead of waiting for the lanes."""
        deadline = time.monotonic() + YIELD_AT_MOST
        while not self.daemon.wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._priority.wait_idle(min(0.05, left)):
                return True
        return False

    def stop(self, flush_timeout: float = 10.0) -> None:
        """Drain the intake, flush the outbox (bounded), stop the jobs; idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.daemon.wake.set()
        self._first_wake.set()
        self._backlog_wake.set()
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        started = time.monotonic()
        drained = self._drain_once(tidy=False)   # the process is ending: no heap to keep tidy
        for sender in self._senders:  # a pass in flight ends (each send is bounded by its channel's timeout)
            if sender.is_alive():
                sender.join(timeout=flush_timeout)
        self.daemon.dispatch = None  # from here on whatever is queued is flushed on this thread
        report = self.daemon.flush(flush_timeout)
        self.scheduler.shutdown(wait=True)
        self._shard_wake.set()
        self._drive_wake.set()
        if self.shard_worker is not None:
            self.shard_worker.stopping.set()
        for thread in self._shard_threads:   # a shard being read ends with its read (bounded by shard_timeout)
            if thread.is_alive():
                thread.join(timeout=flush_timeout)
        if self.driver is not None:   # a collection's pass in progress here ends (another holder continues it)
            self.driver.close()
        if self.watcher is not None:
            self.watcher.stop()
        if self.keeper is not None:
            self.keeper.stop(release=True)   # another replica takes the schedule now, not after the lease expires
        log.info("daemon_stopped", drained=drained, delivered=report.delivered,
                 seconds=round(time.monotonic() - started, 3))
