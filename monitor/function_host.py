"""What the Azure Function's triggers run: the daemon core (:class:`plmon.monitor.service.daemon.Daemon`), built once
per Function instance from app settings, with the intake queue beside the shared store.

``deploy/azure-function/function_app.py`` only turns trigger inputs into bytes and calls these. There is
no second implementation of intake, re-evaluation, lifecycle or delivery: ``plmon serve`` calls the same
``Daemon`` methods from its routes and scheduler.

What differs from the daemon is the lifetime. An instance lives for minutes to hours and many run at
once, so (1) all state is in the shared store (``state.url: azuretables://...``), intake included, and
(2) the in-memory inventory is per instance. On a shared store (issue 15, ``scale:``) a cold instance loads the
collection another process published (segments in blob storage: no ARM read) and syncs the patches since; only
when nothing is published (or the store was configured without it) does its first event run a full collection.
The timer runs the schedule for the whole app: it takes the schedule lease (a ``plmon serve`` replica or another
instance may hold it: then it leaves the schedule to that one), runs the tick's collection and publishes it, runs
reminders and retention when due, and gives the lease back. With ``fan_out`` (the deployed app: ``host()``) the
tick's collection is a fan-out one (:mod:`plmon.monitor.service.fanout`): the timer runs stage 0 and queues the
shards, the ``collection_shard`` queue trigger reads one shard on whichever instance the host gives it to
(:meth:`FunctionHost.shard`), and then drives the collection if it can take the lease (try, drive, release), so the
collection moves between timer runs and publishes after its last shard. With no long-lived holder to see a stuck
collection's deadline pass, each collection started here also leaves a deadline message on the shard queue, visible at
``scale.collection_deadline``: the shard trigger that takes it expires the collection if it is still open. Event
handling is synchronous: when it fails the trigger raises, and the platform redelivers the event (or queue message); a
redelivery that was already written down stays queued and is processed by the next invocation of any instance.

App settings (read by :mod:`plmon.monitor.wiring`, which builds the instance exactly as it builds ``plmon serve``'s
daemon): ``PLMON_CONFIG`` (path to the YAML config; secrets in it as ``${VAR}``, set from Key Vault
references), ``PLMON_MANAGEMENT_GROUP`` or ``PLMON_SUBSCRIPTIONS`` (comma-separated) for the scope,
``PLMON_FROM`` (a recorded tenant folder: tests and demos), ``PLMON_ARM_ENDPOINT``/``PLMON_CA_BUNDLE``,
``PLMON_LOG_LEVEL``/``PLMON_LOG_FORMAT`` (JSON lines to the Functions host's logging, secrets redacted).
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from plmon.monitor.config import Config
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.wiring import function_daemon

if TYPE_CHECKING:
    from plmon.monitor.service.fanout import CollectionDriver
    from plmon.monitor.service.schedule import LeaseKeeper

__all__ = ["FunctionHost", "HostReport", "host", "reset_host"]

log = structlog.get_logger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class HostReport:
    """What one invocation did, for the trigger's log line and the tests."""

    collected: bool = False
    loaded: bool = False         # the inventory came from the shared store (no ARM read)
    received: int = 0
    queued: int = 0
    duplicates: int = 0
    transitions: int = 0
    delivered: int = 0
    validation_code: str | None = None
    shard: str = ""              # what the shard trigger did with its message (fanout.ShardWorker.handle)
    published: bool = False      # a fan-out collection was published by this invocation's drive step


class FunctionHost:
    """One Function instance: a :class:`Daemon` and the per-invocation steps the triggers call."""

    def __init__(self, config: Config, daemon: Daemon, *, fan_out: bool = False) -> None:
        """``fan_out``: the timer starts a fan-out collection whose shards the ``collection_shard`` trigger reads (the
        deployed app, which declares that trigger); False keeps the timer's own local collection."""
        self.config, self.daemon, self.fan_out = config, daemon, fan_out
        self._lock = threading.Lock()
        # The shared schedule's clock (which tick it is, whether a job is due); tests inject one so that a check
        # does not depend on where the wall clock falls in the tick.
        self.clock: Callable[[], datetime] = _utcnow
        self._fanout: CollectionDriver | None = None

    @classmethod
    def from_settings(cls, env: Mapping[str, str] | None = None, *, fan_out: bool = False,
                      **daemon_options: Any) -> FunctionHost:
        """The instance built by the composition root from its app settings (``env``: the process's)."""
        config, daemon = function_daemon(env, **daemon_options)
        return cls(config, daemon, fan_out=fan_out)

    def _driver(self) -> CollectionDriver:
        """The instance's one driver: a collection's pass over its segments (fanout.FanIn) started in one invocation
        goes on in the next one this instance runs, so each segment is decoded once here. Each collection it starts
        leaves its deadline message (no holder lives here to see the deadline pass)."""
        from plmon.monitor.service.fanout import CollectionDriver
        assert self.daemon.scale is not None
        if self._fanout is None:
            self._fanout = CollectionDriver(self.daemon, self.daemon.scale, clock=lambda: self.clock(),
                                            deadline_messages=True)
        return self._fanout

    def _keeper(self) -> LeaseKeeper:
        """The lease's renewal for one invocation, counting its changes as ``plmon serve`` does
        (``plmon_schedule_lease_changes_total``: acquired at its first step, released at its stop, lost between)."""
        from plmon.monitor.service.schedule import LeaseKeeper
        assert self.daemon.scale is not None
        return LeaseKeeper(self.daemon.scale.lease, every=self.config.scale.lease_renew.total_seconds(),
                           on_event=self.daemon.metrics.lease_changed)

    def _ensure_inventory(self) -> tuple[bool, bool]:
        """A cold instance loads the published collection, else collects once, before it can re-evaluate an event
        (see the module docstring); (collected, loaded)."""
        if self.daemon.inventory is not None:
            return False, False
        if self.daemon.shared is not None and self.daemon.load_shared():
            log.info("function_cold_start_loaded", collection=self.daemon.shared.current.collection
                     if self.daemon.shared.current is not None else None)
            return False, True
        log.info("function_cold_start_collection")
        self.daemon.full_collection()
        return True, False

    def events(self, body: bytes, content_type: str | None = "application/json") -> HostReport:
        """Event Grid trigger, Storage queue trigger: accept (durably queue), process, deliver.

        Raises :class:`plmon.monitor.events.parse.BadEventBody` for a body with no usable event (the trigger logs
        it and does not retry: a redelivery would be just as bad)."""
        accepted = self.daemon.accept(body, content_type)
        if accepted.validation_code is not None:
            return HostReport(received=accepted.received, validation_code=accepted.validation_code)
        if self.daemon.inventory is None and not self.daemon.intake.pending():
            # A redelivery some instance already settled: nothing to do, and no cold-start collection.
            return HostReport(received=accepted.received, duplicates=accepted.queued.duplicates)
        with self._lock:
            collected, loaded = self._ensure_inventory()
            step = self.daemon.process_pending()
        delivered = self.daemon.deliver().delivered
        return HostReport(collected=collected, loaded=loaded, received=accepted.received,
                          queued=accepted.queued.accepted, duplicates=accepted.queued.duplicates,
                          transitions=len(step.transitions), delivered=delivered)

    def timer(self) -> HostReport:
        """Timer trigger: the full collection (source of truth), then queued events, reminders, retention."""
        if self.daemon.scale is not None:
            return self._shared_timer()
        with self._lock:
            result = self.daemon.full_collection()
            step = self.daemon.process_pending()
            reminders = self.daemon.reminders()
            pruned = self.daemon.retention()
        delivered = self.daemon.deliver().delivered
        log.info("function_timer_done", findings=len(result.evaluation.findings), pruned=pruned,
                 reminders=len(reminders))
        return HostReport(collected=True, transitions=len(step.transitions) + len(reminders), delivered=delivered)

    def _shared_timer(self) -> HostReport:
        """The schedule's tick on a shared store: try the lease; the holder collects and publishes the tick's
        collection (once per tick, whoever ran it), and runs reminders and retention when due; then gives the lease
        back. Without the lease another process runs the schedule: this instance only follows what it published.

        While it holds the lease a :class:`LeaseKeeper` thread renews it for the whole call: a collection longer than
        the lease duration would otherwise leave ``lease.held`` False (reminders and retention skipped) and let a
        ``plmon serve`` replica take the schedule mid-collection."""
        from plmon.monitor.service.schedule import SharedSchedule
        scale = self.daemon.scale
        assert scale is not None
        schedule = SharedSchedule(self.daemon, scale, clock=self.clock,
                                  fanout=self._driver() if self.fan_out else None)
        collected = loaded = False
        transitions = 0
        with self._lock:
            if not scale.lease.try_acquire():
                log.info("function_timer_not_holder", holder=scale.lease.state().holder)
                loaded = self.daemon.load_shared() if self.daemon.shared is not None else False
                if self.daemon.inventory is not None:
                    transitions = len(self.daemon.process_pending().transitions)
            else:
                keeper = self._keeper()
                keeper.start()
                try:
                    if self.daemon.inventory is None:
                        loaded = self.daemon.load_shared()
                    collected = schedule.collect_if_due()
                    if self.fan_out:   # shards queued: the shard triggers read them and drive it to its publish
                        schedule.drive()
                    elif self.daemon.inventory is None:   # this tick's collection was made, but not published
                        collected, loaded = self._ensure_inventory()
                    transitions = len(self.daemon.process_pending().transitions)
                    if schedule.reminders_if_due():
                        transitions += 1
                    schedule.retention_if_due()
                finally:
                    keeper.stop(release=True)   # stops renewing, then gives the lease back
        delivered = self.daemon.deliver().delivered
        log.info("function_timer_done", collected=collected, loaded=loaded, transitions=transitions)
        return HostReport(collected=collected, loaded=loaded, transitions=transitions, delivered=delivered)

    def shard(self, body: bytes, dequeue_count: int = 1) -> HostReport:
        """Shard queue trigger: read one shard (its ``dequeue_count``-th delivery), then drive its collection if this
        instance can take the schedule lease (try, drive, release). Past ``scale.shard_max_attempts`` deliveries the
        shard is recorded failed (a coverage gap) and nothing is raised, so the host never poisons a shard before
        plmon has recorded its gap; a failed attempt before that raises, and the host delivers it again."""
        from plmon.monitor.service.fanout import ShardWorker
        from plmon.monitor.service.schedule import SharedSchedule
        scale = self.daemon.scale
        if scale is None:
            log.warning("shard_without_shared_store")
            return HostReport(shard="invalid")
        message = _shard_body(body)
        if message.get("type") == "deadline":
            return self._deadline(message)
        outcome = ShardWorker(self.daemon, scale, clock=self.clock).handle(message, dequeue_count)
        published = False
        if outcome in ("done", "failed", "duplicate"):
            with self._lock:
                if scale.lease.try_acquire():
                    keeper = self._keeper()
                    keeper.start()
                    try:
                        published = SharedSchedule(self.daemon, scale, clock=self.clock,
                                                   fanout=self._driver()).drive()
                    finally:
                        keeper.stop(release=True)
        delivered = self.daemon.deliver().delivered if published else 0
        log.info("function_shard_done", shard=message.get("shard"), outcome=outcome, published=published)
        return HostReport(shard=outcome, published=published, delivered=delivered)

    def _deadline(self, message: Mapping[str, Any]) -> HostReport:
        """A collection's deadline message (visible at ``scale.collection_deadline``): if it is still open, take the
        schedule lease and expire it (its unfinished shards become ``ShardExpired`` gaps, and it publishes:
        :meth:`CollectionDriver.expire`). A collection already finished leaves nothing to do (``duplicate``); one
        whose lease another process holds now gets its message again a lease duration later (``deferred``)."""
        from plmon.monitor.service.fanout import OPEN, deadline_message
        scale = self.daemon.scale
        assert scale is not None
        cid = message.get("collection")
        row = scale.book.collection(cid) if isinstance(cid, str) else None
        if not isinstance(cid, str) or row is None or row.state not in OPEN:
            log.info("function_deadline_done", collection=cid, state=row.state if row is not None else None)
            return HostReport(shard="duplicate")
        published = False
        with self._lock:
            if not scale.lease.try_acquire():
                scale.shards.send(deadline_message(cid), delay=self.config.scale.lease_duration)
                log.info("function_deadline_deferred", collection=cid, holder=scale.lease.state().holder)
                return HostReport(shard="deferred")
            keeper = self._keeper()
            keeper.start()
            try:
                published = self._driver().expire(cid)
            finally:
                keeper.stop(release=True)
        delivered = self.daemon.deliver().delivered if published else 0
        log.info("function_deadline_expired", collection=cid, published=published)
        return HostReport(shard="deadline", published=published, delivered=delivered)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """HTTP trigger: the store and queue answer. A Function instance has no collection schedule of
        its own to be late on (the timer belongs to the app), so readiness does not require one."""
        collected_recently, detail = self.daemon.readiness(
            max_age_seconds=2 * self.config.schedule.full_collection.total_seconds() + 60)
        detail["collected_recently"] = collected_recently
        if isinstance(detail.get("schedule"), dict):   # plmon serve has them in /metrics; the app has no scrape
            detail["schedule"]["lease_changes"] = self.daemon.metrics.lease_changes()
        store_ok = detail.get("store") == "ok" and detail.get("intake") == "ok" and detail.get("blob", "ok") == "ok"
        return store_ok, detail


def _shard_body(body: bytes) -> dict[str, Any]:
    """A shard message as the trigger hands it: JSON (the host decoded the queue's base64), or still base64."""
    for data in (body, None):
        if data is None:
            try:
                data = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                break
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            return doc
    return {}


_host: FunctionHost | None = None
_host_lock = threading.Lock()


def host() -> FunctionHost:
    """The instance's host, built on first use (app settings are read then, not at import)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = FunctionHost.from_settings(fan_out=True)
        return _host


def reset_host(new: FunctionHost | None = None) -> None:
    """Replace (tests: a second instance in the same process) or forget the instance's host; closing
    the one replaced is the caller's business."""
    global _host
    with _host_lock:
        _host = new
