"""The daemon's core, with no HTTP in it: intake, the worker step, full collection, delivery, housekeeping.

``plmon serve`` (:mod:`plmon.monitor.service.server`) and the Azure Function call the same methods: the server from
its route and its lifespan, the Function from its HTTP, queue and timer triggers. So there is one
definition of what accepting an event, processing the queue and collecting mean.

State in memory: the last :class:`~plmon.monitor.collect.inventory.Inventory` (typed read units, no raw JSON), the
snapshot linked from it and its evaluation. A worker step re-reads the units events touched into a copy of the
inventory, re-links the snapshot, re-runs the checks that read what changed and applies the targeted lifecycle
to the findings whose outcome may have moved; a full collection replaces everything and is the
source of truth (some changes raise no event). One lock orders the two, so a step never sees half a
collection; the collection's slow reads happen outside the lock, and the resources re-read while it
ran are read again on top of it, since its older reads would otherwise roll those changes back.

Poison events: a worker step that raises is split in halves and each half tried again, down to single
events, so one event whose processing keeps failing costs its neighbours a retry, not their place in
the queue. A single failing event is retried with backoff and, after ``server.event_max_attempts``, set
aside as failed (a log line, ``plmon_events_dead_lettered``, ``/readyz``'s ``intake_failed``) until
``plmon events --retry``.

Staleness: an event older than the last read of its resource (the start of the last full collection,
or the last targeted re-read of that resource) is already reflected, so it is dropped, never re-read.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from plmon.alerts.channel import Channel, build_channels
from plmon.alerts.delivery import DeliveryReport, DeliveryWorker, RetryPolicy
from plmon.alerts.outbox import routes_from_config
from plmon.checks.engine import Evaluation
from plmon.checks.incremental import Units
from plmon.monitor import __version__
from plmon.monitor.collect.builder import Links, link, paused_gc, relink
from plmon.monitor.collect.plan import ArmReader, Inventory, ReadError, collect
from plmon.monitor.collect.segments import RecordingTap, SegmentError
from plmon.monitor.config import Config
from plmon.monitor.events.parse import BadEventBody, ParsedBody, ResourceEvent, coalesce, parse_body, parse_item
from plmon.monitor.events.relevance import is_relevant, resource_to_reread
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.lifecycle.transitions import LargeDicts, Transition, apply_scan, apply_targeted
from plmon.monitor.model.arm_id import ArmId, parse_id
from plmon.monitor.model.clock import Clock
from plmon.monitor.model.clock import source_clock as clock_of
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.scan import ScanResult
from plmon.monitor.service.metrics import Metrics, PhaseClock
from plmon.monitor.service.reevaluate import affected_keys, keys_to_apply, reread_into
from plmon.monitor.service.shared_inventory import (
    SYNC_OVERLAP,
    Patch,
    SharedInventory,
    collection_id,
    load_published,
    patch_reader,
    publish_collection,
)
from plmon.monitor.state.intake import Enqueued, IntakeQueue, QueuedEvent
from plmon.monitor.state.scaleout import PatchRef, Pointer, ScaleOut, UnsupportedFormat
from plmon.monitor.state.store import StateStore

__all__ = ["Accepted", "Daemon", "StepReport"]

log = structlog.get_logger(__name__)


# Seconds the worker steps skip the patch sync after one failed (blob storage slow or down).
SYNC_QUIET_AFTER_FAILURE = 30.0
# Seconds a worker step waits for its patch sync's storage reads (the index listing, the patch blobs) before it goes on
# without them: the storage clients may take 5 s to connect and 15 s to read, twice, and an event's alert must not wait
# for that. The late reads go on on their own thread; the next step (or the pointer thread's sync) replays them.
SYNC_WAIT = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _log_context(event: ResourceEvent | None, event_id: str = "") -> dict[str, str]:
    """The ids every log line about one event carries (bound with contextvars, not passed per call)."""
    if event is None:
        return {"event_id": event_id} if event_id else {}
    ctx = {"event_id": event.id, "resource_id": event.resource.raw, "correlation_id": event.correlation_id}
    return {k: v for k, v in ctx.items() if v}


@dataclass(frozen=True, slots=True)
class Accepted:
    """What :meth:`Daemon.accept` did with one body: the answer the webhook gives follows from it."""

    validation_code: str | None
    received: int
    queued: Enqueued
    rejected: int


@dataclass
class StepReport:
    events: int = 0
    ignored: int = 0
    stale: int = 0
    duplicates: int = 0
    rereads: int = 0
    checks: int = 0
    transitions: list[Transition] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)   # the worker thread's CPU seconds by phase (PhaseClock)


class _ReadTimes(Mapping[str, datetime]):
    """Last read time per resource key: a targeted re-read's time, else the last full collection's start."""

    def __init__(self, default: datetime | None, per_key: dict[str, datetime]) -> None:
        self.default, self.per_key = default, per_key

    def __getitem__(self, key: str) -> datetime:
        if key in self.per_key:
            return self.per_key[key]
        if self.default is None:
            raise KeyError(key)
        return self.default

    def __iter__(self) -> Iterator[str]:
        return iter(self.per_key)

    def __len__(self) -> int:
        return len(self.per_key)


@dataclass
class _Fetched:
    """A patch sync's storage half, read outside the daemon's lock: the index rows still to replay (newest per
    resource), their patch blobs by name, where the next sync may start, and the collection served meanwhile."""

    generation: int
    refs: dict[str, PatchRef]
    patches: dict[str, Patch]
    synced_from: datetime | None


class _Fetch:
    """One patch sync's storage reads on a thread of their own, which a worker step waits for only so long."""

    def __init__(self, read: Callable[[], _Fetched]) -> None:
        self._read = read
        self.done = threading.Event()
        self.result: _Fetched | None = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name="plmon-patch-sync", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._read()
        except BaseException as err:   # handed to the step that waits (or the next one), which logs it
            self.error = err
        finally:
            self.done.set()


class _CountingReader:
    """The configured source, counted: every ARM read and every throttle answer reaches /metrics."""

    def __init__(self, inner: ArmReader, metrics: Metrics, phase: str) -> None:
        self.inner, self.metrics, self.phase = inner, metrics, phase

    def get(self, path: str, *, kind: str) -> Any:
        self.metrics.arm_requests.labels(self.phase).inc()
        try:
            return self.inner.get(path, kind=kind)
        except ReadError as err:
            if err.status == 429:
                self.metrics.arm_throttles.inc()
            raise


class _ObservedChannel:
    """A channel that reports each delivery to the daemon (metrics, event-to-alert latency)."""

    def __init__(self, inner: Channel, on_sent: Callable[[str, Sequence[Any]], None],
                 on_failed: Callable[[str], None]) -> None:
        self.inner, self.on_sent, self.on_failed = inner, on_sent, on_failed
        self.name, self.digest_threshold = inner.name, inner.digest_threshold

    def send(self, alert: Any) -> None:
        try:
            self.inner.send(alert)
        except Exception:
            self.on_failed(self.name)
            raise
        self.on_sent(self.name, [alert])

    def send_digest(self, alerts: Sequence[Any]) -> None:
        try:
            self.inner.send_digest(alerts)
        except Exception:
            self.on_failed(self.name)
            raise
        self.on_sent(self.name, alerts)



def _chosen(fetched: _Fetched, newest: Mapping[str, PatchRef]) -> tuple[list[Patch], dict[str, ArmId]]:
    """The patches that hold ``newest``'s reads (each once), and the ids of the resources to replay from them."""
    patches = [fetched.patches[b] for b in dict.fromkeys(r.blob for r in newest.values())]
    wanted: dict[str, ArmId] = {}
    for patch in patches:
        for raw in patch.resources:
            rid = parse_id(raw)
            if rid.key in newest:
                wanted[rid.key] = rid
    return patches, wanted

class Daemon:
    """One monitored tenant: its source, store, intake queue, in-memory inventory and metrics."""

    def __init__(self, config: Config, reader: ArmReader, store: StateStore, intake: IntakeQueue, *,
                 manifest: Mapping[str, Any] | None = None, metrics: Metrics | None = None,
                 channels: Mapping[str, Channel] | None = None, retry_policy: RetryPolicy | None = None,
                 clock: Callable[[], datetime] = _utcnow, workers: int | None = None,
                 subscriptions: Sequence[str] | None = None, source_clock: Clock | None = None,
                 shared: SharedInventory | None = None, scale: ScaleOut | None = None) -> None:
        """``clock`` is the wall clock of every timer (delivery, intake retries, staleness, readiness);
        ``source_clock`` (default: the one ``manifest`` implies) the "now" of findings and ages, which for
        a recorded folder stays its ``recorded_at`` however late events arrive (:mod:`plmon.monitor.model.clock`).
        ``shared``: the inventory shared with other processes (Table store with scale-out): a full collection made
        here is published, an event's re-read is published as a patch, and other processes' patches are synced
        before each worker step; None (SQLite, one process) changes nothing. ``scale``: the shared parts it came from
        (the schedule lease, the collection book), which the runtime and the Function drive and close."""
        self.config, self.store, self.intake = config, store, intake
        self.subscriptions = list(subscriptions) if subscriptions else None
        self.metrics = metrics or Metrics()
        self.manifest = dict(manifest or {})
        self.clock, self.workers = clock, workers
        self.source_clock = source_clock or clock_of(self.manifest, wall=clock)
        self._collect_reader = _CountingReader(reader, self.metrics, "collection")
        self._event_reader = _CountingReader(reader, self.metrics, "event")
        # A fan-out collection's shards read here (issue 15): counted apart, whichever process holds the schedule.
        self.shard_reader: ArmReader = _CountingReader(reader, self.metrics, "shard")
        self.collect_reader: ArmReader = self._collect_reader   # a fan-out's stage 0, read by the holder itself
        # /readyz's ``collection`` (the fan-out's current row and its shards), set by the composition root.
        self.collection_status: Callable[[], dict[str, Any] | None] | None = None
        self.settings = config.check_settings()
        self.waivers = config.waiver_list()
        self.routes = routes_from_config(config.alerts)
        raw_channels = channels if channels is not None else build_channels(config.alerts)
        observed = {n: _ObservedChannel(c, self._delivered, self._delivery_failed) for n, c in raw_channels.items()}
        policy = retry_policy if retry_policy is not None else RetryPolicy.from_config(config)
        self.delivery = DeliveryWorker(store, observed, policy, clock=clock)
        self._lock = threading.RLock()        # inventory, snapshot, evaluation, lifecycle
        self._delivery_lock = threading.Lock()
        self.inventory: Inventory | None = None
        self._links: Links | None = None        # what the snapshot's link derived: an event re-links only its part
        self.snapshot: Snapshot | None = None
        self.evaluation: Evaluation | None = None
        self.units = Units(self.settings, self.waivers)   # the evaluation, kept as units of work across events
        self._recount = False
        self.last_collection: datetime | None = None
        self._full_started: datetime | None = None
        self._read_at: dict[str, datetime] = {}
        self._collecting_since: datetime | None = None
        self._reread_during_collection: dict[str, ArmId] = {}
        # (check id, resource key) -> when the events behind its pending alerts arrived, one time per worker step
        # (the earliest of its events): an alert is measured from the arrivals queued before it was. Alerts are
        # sent on other threads than the worker's, so the next event of a finding may be processed before the
        # last alert of it is reported sent; one merged time per finding then lost that next alert's measure.
        self._awaiting_alert: dict[tuple[str, str], list[float]] = {}
        self._awaiting_lock = threading.Lock()
        self._frozen = False   # a full collection's state was frozen out of the cyclic GC's scans (settle_heap)
        self._untidy = False   # a worker step left objects the collector has not looked at yet (tidy_heap)
        self._heap_lock = threading.Lock()   # settle_heap and tidy_heap: one freeze at a time
        # What the last worker steps replaced (their inventory, snapshot, links and evaluation), freed by tidy_heap off
        # the event: freeing it by reference counting in the step was ~2 ms of an event's "intake" CPU at 100k.
        self._retired: list[object] = []
        self._retired_lock = threading.Lock()
        self._large = LargeDicts()   # the dicts of the large findings the last events wrote (the lifecycle's)
        self.wake = threading.Event()
        # Set by plmon serve's runtime: queued alerts are handed to its delivery threads, with the findings an
        # event moved (to go first), instead of being sent on the thread that queued them. Unset (the Function,
        # tests) they are sent at once, on the caller's thread.
        self.dispatch: Callable[[Sequence[tuple[str, str]]], None] | None = None
        self.shared = shared
        self.scale = scale
        # Own re-reads to publish as patches, after the step's alerts are queued and outside the lock: blob storage
        # slow or down must not hold up an event (nor every other one waiting for the lock).
        self._unpublished: list[tuple[RecordingTap, list[ArmId], datetime, set[str]]] = []
        self._unpublished_lock = threading.Lock()
        # After a failed patch sync the worker steps skip theirs until then (monotonic): one event pays for a store
        # that is down, not each (the pointer thread's sync_shared keeps trying).
        self._sync_quiet_until = 0.0
        self.sync_wait = SYNC_WAIT
        self._fetching: _Fetch | None = None    # the worker steps' patch sync reads in flight (one at a time)
        self._fetching_lock = threading.Lock()

    # --- intake ----------------------------------------------------------------------------------
    def accept(self, body: bytes, content_type: str | None, *, received_at: datetime | None = None) -> Accepted:
        """Parse a webhook body and durably queue its events; raises :class:`BadEventBody` for a 400.

        A body whose every item is malformed is a 400 too (reason: the first item's); otherwise the
        good items are queued and the bad ones only counted, since Event Grid would dead-letter the
        whole delivery on a 400.
        """
        parsed: ParsedBody = parse_body(body, content_type)
        received = len(parsed.events) + len(parsed.rejected)
        self.metrics.events_rejected.inc(len(parsed.rejected))
        if parsed.all_rejected:
            first = parsed.rejected[0]
            raise BadEventBody(f"no usable event: item {first.index}: {first.reason}")
        self.metrics.events_received.inc(received)
        to_queue = [e for e in parsed.events if e.validation_code is None]
        queued = self.intake.enqueue(to_queue, received_at or self.clock()) if to_queue else Enqueued(0, 0)
        self.metrics.events_accepted.inc(queued.accepted)
        self.metrics.events_deduplicated.inc(queued.duplicates)
        if parsed.rejected:
            log.info("event_items_rejected", rejected=len(parsed.rejected), reason=parsed.rejected[0].reason)
        if queued.accepted:
            self.wake.set()
        return Accepted(parsed.validation_code, received, queued, len(parsed.rejected))

    # --- worker step -----------------------------------------------------------------------------
    def process_pending(self, limit: int = 5000) -> StepReport:
        """Process queued events: relevant ones re-read, re-checked and applied; all settled after.

        Does nothing (events stay queued) until a first full collection has built an inventory. A
        failing step is bisected (see the module docstring), so the good events of a batch still settle.
        """
        # No collector pass inside a step: the re-read's and the evaluation's allocations made young passes walk
        # their survivors again and again (~15-30 ms an event at 100k resources), and an oldest-generation pass
        # over what earlier steps left met an event now and then (the first-event outlier of issue 14). A step
        # frees what it replaces by reference counting; the cycles it leaves are found by tidy_heap, off the event.
        with paused_gc():
            report = self._process_pending(limit)
        if report.events:
            self._untidy = True
        return report

    def _process_pending(self, limit: int) -> StepReport:
        report = StepReport()
        if self.inventory is None:
            return report
        started = time.perf_counter()
        cpu = PhaseClock()
        with cpu.phase("intake"):
            queued = self.intake.claim(limit, now=self.clock())
            if not queued:
                self.metrics.intake_pending.set(self.intake.pending())
                return report
            report.events = len(queued)
            self._settle(queued, report, cpu)
            self.metrics.intake_pending.set(self.intake.pending())
        report.seconds = time.perf_counter() - started
        self.metrics.reevaluation_duration.observe(report.seconds)
        if report.transitions:
            self._alerts_queued([(t.check_id, t.resource_key) for t in report.transitions if t.alerts])
        self._publish_patches()
        if self._recount:
            with self._lock, cpu.phase("lifecycle"):
                self._recount = False
                self._count_open()
        report.cpu = dict(cpu.spent, total=cpu.total)
        # Observed after the alerts were handed over (the lanes send them meanwhile), so a reader of /metrics who
        # saw the alert may see the step's figures a moment later: wait for plmon_reevaluation_cpu_seconds_count.
        self.metrics.observe_step(cpu)
        ids = [q.event_id for q in queued]
        with bound_contextvars(**({"event_id": ids[0]} if len(ids) == 1 else {})):
            log.debug("event_reevaluated", events=len(ids), rereads=report.rereads, checks=report.checks,
                     transitions=len(report.transitions), seconds=round(report.seconds, 4),
                     cpu_ms={k: round(v * 1000, 2) for k, v in report.cpu.items()})
        return report

    def _settle(self, queued: Sequence[QueuedEvent], report: StepReport, cpu: PhaseClock) -> None:
        try:
            step = self._step(queued, cpu)
        except Exception as err:
            if len(queued) > 1:
                half = len(queued) // 2
                self._settle(queued[:half], report, cpu)
                self._settle(queued[half:], report, cpu)
            else:
                self._failed(queued[0], err)
            return
        self.intake.done([q.event_id for q in queued], self.clock())
        report.ignored += step.ignored
        report.stale += step.stale
        report.duplicates += step.duplicates
        report.rereads += step.rereads
        report.checks += step.checks
        report.transitions.extend(step.transitions)

    def _failed(self, q: QueuedEvent, err: Exception) -> None:
        server = self.config.server
        attempts = q.attempts + 1
        now = self.clock()
        error = " ".join(f"{type(err).__name__}: {err}".split())
        self.metrics.event_failures.inc()
        try:
            event = parse_item(q.raw, schema=q.schema).resource
        except ValueError:
            event = None
        with bound_contextvars(**_log_context(event, q.event_id)):
            if attempts >= server.event_max_attempts:
                self.intake.failed(q.event_id, error, now, retry_at=None)
                self.metrics.events_dead_lettered.inc()
                self.metrics.intake_failed.set(self.intake.failed_count())
                log.error("event_dead_lettered", attempts=attempts, error=error,
                          hint="plmon events --failed lists it; plmon events --retry queues it again")
                return
            delay = min(server.event_retry_base * 2 ** (attempts - 1), server.event_retry_max)
            retry_at = now + max(delay, timedelta(0))
            self.intake.failed(q.event_id, error, now, retry_at=retry_at)
            log.warning("event_failed", attempts=attempts, retry_at=retry_at.isoformat(), error=error, exc_info=err)

    def _step(self, queued: Sequence[QueuedEvent], cpu: PhaseClock) -> StepReport:
        report = StepReport()
        arrived: dict[str, float] = {q.event_id: q.received_at.timestamp() for q in queued}
        relevant: list[ResourceEvent] = []
        for q in queued:
            try:
                event = parse_item(q.raw, schema=q.schema).resource
            except ValueError:
                event = None
            if event is None or not is_relevant(event):
                reason = "not_a_resource_event" if event is None else "irrelevant_operation"
                self.metrics.events_ignored.labels(reason).inc()
                report.ignored += 1
                with bound_contextvars(**_log_context(event, q.event_id)):
                    log.info("event_ignored", reason=reason)   # its one line, as a re-read or a stale event has
            else:
                relevant.append(event)
        # Other processes' newer re-reads first: an event here is then judged on what they read, and one they already
        # re-read after it happened is stale here too. Their storage reads go outside the lock, and the step waits for
        # them only SYNC_WAIT: slow or failing storage delays neither this event nor the ones behind the lock.
        fetched = self._fetch_for_step() if self.shared is not None and relevant else None
        # A step about one event (the usual case, and every retry: failing steps are bisected to single
        # events) binds its ids for every log line below, the re-read's and the lifecycle's included.
        with bound_contextvars(**(_log_context(relevant[0]) if len(relevant) == 1 else {})), self._lock:
            assert self.inventory is not None
            if fetched is not None:
                try:
                    report.transitions.extend(self._sync_replay(fetched, cpu))
                except Exception as err:   # an unreadable patch: the event still goes; the next sync tries again
                    self._sync_failed(err)
            folded = coalesce(relevant, _ReadTimes(self._full_started, self._read_at), target=resource_to_reread)
            report.stale, report.duplicates = len(folded.stale), len(folded.duplicates)
            self.metrics.events_ignored.labels("stale").inc(len(folded.stale))
            self.metrics.events_ignored.labels("coalesced").inc(
                sum(len(r.event_ids) - 1 for r in folded.rereads))
            for e in folded.stale:
                with bound_contextvars(**_log_context(e)):
                    log.info("event_stale", event_time=e.time.isoformat())
            if folded.rereads:
                report.rereads = len(folded.rereads)
                transitions, report.checks = self._reevaluate(folded.rereads, arrived, cpu)
                report.transitions.extend(transitions)
        return report

    def _reevaluate(self, rereads: Sequence[Any], arrived: Mapping[str, float],
                    cpu: PhaseClock) -> tuple[list[Transition], int]:
        assert self.inventory is not None
        read_started = self.clock()
        for r in rereads:
            # resource_id is the resource re-read, which may be the event's parent (a subnet's network).
            with bound_contextvars(**{**_log_context(r.latest), "resource_id": r.resource.raw}):
                log.info("reread", events=len(r.event_ids))
        return self._reread_step([r.resource for r in rereads], read_started, cpu,
                                 arrived=[arrived[i] for r in rereads for i in r.event_ids if i in arrived])

    def _reread_step(self, resources: Sequence[ArmId], read_at: datetime | Mapping[str, datetime], cpu: PhaseClock,
                     *, arrived: Sequence[float] = (), reader: ArmReader | None = None,
                     lifecycle: bool = True) -> tuple[list[Transition], int]:
        """Re-read ``resources`` into a copy of the inventory, re-link, re-judge what changed, apply the targeted
        lifecycle, swap. ``reader``: another process's recorded re-read (a patch) to replay instead of reading ARM;
        without it the re-read reads ARM and, with a shared inventory, is published as a patch. ``read_at``: when
        each resource was read (one time for an own re-read; a patch's per resource). ``lifecycle``: False for a
        replayed patch (see :meth:`_sync_replay`): the state moves, the store is left to the patch's writer."""
        assert self.inventory is not None
        tap = RecordingTap(self._event_reader) if reader is None and self.shared is not None else None
        source: ArmReader = reader if reader is not None else tap if tap is not None else self._event_reader
        with cpu.phase("reread"):
            inv, result = reread_into(source, self.inventory, resources)
        if tap is not None and isinstance(read_at, datetime):
            with self._unpublished_lock:   # published by process_pending once the step's alerts are queued
                self._unpublished.append((tap, list(resources), read_at, set(result.keys)))
        self.metrics.rereads.labels("ok").inc(len(result.keys) - len(result.failed))
        self.metrics.rereads.labels("failed").inc(len(result.failed))
        self.metrics.rereads.labels("untracked").inc(len(result.untracked))
        if self._collecting_since is not None:
            for rid in resources:
                self._reread_during_collection[rid.key] = rid
        times = (dict.fromkeys(result.keys, read_at) if isinstance(read_at, datetime)
                 else {k: read_at[k] for k in result.keys if k in read_at})
        if not result.kinds:
            self._read_at.update(times)
            return [], 0
        # Read times stay on the wall clock (event staleness); the findings go on the source's.
        assert self.snapshot is not None and self._links is not None
        with cpu.phase("relink"):
            linked, links = relink(self.snapshot, self._links, inv, result.touched, taken_at=self.source_clock.now())
            snapshot = observer(self.store, self.snapshot, links.changed)(linked)
        with cpu.phase("evaluate"):
            # Only the units of work whose reads changed are judged again (plmon.checks.incremental).
            evaluation, ran = self.units.update(self.snapshot, snapshot, links.changed)
            checks = set(ran.checks)
            if ran.moved is not None:   # what the re-judged units changed: no need to compare two whole evaluations
                keys = keys_to_apply(ran.moved, result.keys, self.units.resource_keys(checks, below=result.keys))
            else:
                keys = affected_keys(self.evaluation, evaluation, checks, result.keys)
            about = self.units.about(evaluation, keys)
        transitions: list[Transition] = []
        if lifecycle:
            with cpu.phase("lifecycle"):
                transitions = apply_targeted(self.store, snapshot,
                                             about if about is not None else _within(evaluation, keys),
                                             check_ids=checks, resource_keys=keys, now=snapshot.taken_at,
                                             routes=self.routes, wall=self.clock,
                                             reminder_interval=self.config.schedule.reminder_interval,
                                             large=self._large)
        self._retire((self.inventory, self.snapshot, self._links, self.evaluation, result))
        self.inventory, self.snapshot, self._links = inv, snapshot, links
        self.evaluation = evaluation
        # Only now: a step that failed above must not make its events look stale when they are retried.
        self._read_at.update(times)
        earliest = min(arrived, default=time.time())
        for t in transitions:
            if t.alerts:
                self._await_alert((t.check_id, t.resource_key), earliest)
            log.debug("finding_changed_by_event" if reader is None else "finding_changed_by_patch", kind=t.kind,
                     check_id=t.check_id, resource_id=t.resource_id)
        if transitions:  # reads every open finding: after delivery (process_pending), and only when one moved
            self._recount = True
        return transitions, len(checks)

    # --- the shared inventory --------------------------------------------------------------------
    def _publish_patches(self) -> None:
        """Publish the re-reads the last steps made (outside the lock, after their alerts were queued)."""
        with self._unpublished_lock:
            todo, self._unpublished = self._unpublished, []
        for tap, resources, read_at, keys in todo:
            self._publish_patch(tap, resources, read_at, keys)

    def _publish_patch(self, tap: RecordingTap, resources: Sequence[ArmId], read_at: datetime,
                       keys: set[str]) -> None:
        """Publish what this step read for ``keys`` as a patch. A failure is logged, never the step's: the event
        was handled here, and the other processes' next collection carries the change anyway."""
        shared = self.shared
        responses = tap.take()
        if shared is None or not keys or not responses:
            return
        current = shared.current
        patch = Patch(resources=tuple(r.raw for r in resources), read_at_ms=_ms(read_at), instance=shared.instance,
                      collection=current.collection if current is not None else "", responses=tuple(responses))
        try:
            older = shared.patches_older
            shared.write_patch(patch, {r.key: r.raw for r in resources if r.key in keys})
            self.metrics.patches.labels("written").inc()
            if shared.patches_older > older:
                self.metrics.patches.labels("older").inc(shared.patches_older - older)
        except Exception as err:
            self.metrics.patches.labels("publish_failed").inc()
            log.warning("patch_publish_failed", error=f"{type(err).__name__}: {err}", resources=len(keys))

    def _sync_failed(self, err: BaseException) -> None:
        """A patch sync failed (storage hiccup): the worker steps skip theirs for a while, the next sync catches up."""
        self._sync_quiet_until = time.monotonic() + SYNC_QUIET_AFTER_FAILURE
        self.metrics.patches.labels("sync_failed").inc()
        log.warning("patch_sync_failed", error=f"{type(err).__name__}: {err}", quiet_seconds=SYNC_QUIET_AFTER_FAILURE)

    def _fetch_for_step(self) -> _Fetched | None:
        """The storage half of a worker step's patch sync, waited for at most ``sync_wait``; None to go on without it.

        One read at a time: a step that meets one still in flight (an earlier step gave up on it) does not wait for
        it again, so a hung store costs one event ``sync_wait``, not each; one that finished late is replayed by the
        step that finds it."""
        if time.monotonic() < self._sync_quiet_until:
            return None
        with self._fetching_lock:
            fetch = self._fetching
            started_here = fetch is None
            if fetch is None:
                fetch = self._fetching = _Fetch(self._sync_fetch)
        if not fetch.done.wait(self.sync_wait if started_here else 0.0):
            if started_here:
                self.metrics.patches.labels("sync_late").inc()
                log.warning("patch_sync_late", waited_seconds=self.sync_wait)
            return None
        with self._fetching_lock:
            if self._fetching is fetch:
                self._fetching = None
        if fetch.error is not None:
            self._sync_failed(fetch.error)
            return None
        return fetch.result

    def _sync_fetch(self) -> _Fetched:
        """List the patch rows newer than this process's own read of their resource, and download their blobs: the
        sync's storage reads, outside the daemon's lock. The read times are a copy (one C-level dict copy, atomic
        under the GIL); the replay asks again under the lock."""
        shared = self.shared
        assert shared is not None
        generation = shared.generation
        times = _ReadTimes(self._full_started, dict(self._read_at))
        refs, synced_from = shared.pending(_read_ms(times))
        newest = {r.resource_key: r for r in refs}   # sorted by (read_at_ms, instance): the last one wins
        patches = shared.fetch(newest.values()) if newest else {}
        return _Fetched(generation, newest, patches, synced_from)

    def _sync_replay(self, fetched: _Fetched, cpu: PhaseClock) -> list[Transition]:
        """Replay the patches other processes published that are newer than this process's own read of their
        resource: the writer's re-read, answered from its recorded responses, through the same step as an event's.
        Under the lock, with no storage read (:meth:`_sync_fetch` made them).

        No lifecycle: the patch's writer applied it when it read the resource, and a replay can be late. A patch
        listed before a newer one is published (its writer publishes after queueing its alerts) once re-opened here
        what the newer read had just resolved, and the next sync resolved it again: a flap of open and resolve alerts
        per late replay (bench/scaleout.py's kill run, 5 replicas: up to 7 pairs on one endpoint). What only two
        concurrent events on two replicas show together is written by the next event's step or the next collection,
        whose holder judges every patch before its lifecycle."""
        shared = self.shared
        if shared is None or self.inventory is None:
            return []
        if fetched.generation != shared.generation:
            return []   # another collection is served since the reads began: the next sync lists from its start
        times = _ReadTimes(self._full_started, self._read_at)
        newest = {r.resource_key: r for r in shared.newer(fetched.refs.values(), _read_ms(times))}
        if not newest:
            if fetched.synced_from is not None:
                shared.synced_from = fetched.synced_from
            return []
        patches, wanted = _chosen(fetched, newest)
        reader = patch_reader(patches, self._event_reader)
        read_at = {k: datetime.fromtimestamp(r.read_at_ms / 1000, UTC) for k, r in newest.items()}
        skewed = [r for r in newest.values() if r.skewed]
        if skewed:   # a writer's clock far ahead of the store's: replayed as read when its row was written
            self.metrics.patches.labels("skewed").inc(len(skewed))
            log.warning("patch_read_time_ahead_of_store", patches=len(skewed),
                        instances=sorted({r.instance for r in skewed}))
        transitions, _ = self._reread_step(list(wanted.values()), read_at, cpu, reader=reader, lifecycle=False)
        shared.replayed(newest.values())
        shared.fallback_reads += reader.fallback_reads
        shared.patches_applied += len(patches)
        self.metrics.patches.labels("applied").inc(len(patches))
        self.metrics.patch_fallback_reads.inc(reader.fallback_reads)
        shared.synced_from = fetched.synced_from
        log.info("patches_synced", patches=len(patches), resources=len(wanted), transitions=len(transitions),
                 fallback_reads=reader.fallback_reads)
        return transitions

    def sync_shared(self) -> int:
        """Replay other processes' newer re-reads (see :meth:`_sync_replay`); how many findings moved. Called before
        each worker step and after a load; plmon serve's pointer thread calls it between events too."""
        if self.shared is None:
            return 0
        fetched = self._sync_fetch()   # outside the lock: storage may be slow
        with paused_gc(), self._lock:
            transitions = self._sync_replay(fetched, PhaseClock())
        self._after_sync(transitions)
        return len(transitions)

    def _after_sync(self, transitions: Sequence[Transition]) -> None:
        if any(t.alerts for t in transitions):
            self._alerts_queued([(t.check_id, t.resource_key) for t in transitions if t.alerts])
        if self._recount:
            with self._lock:
                self._recount = False
                self._count_open()

    def load_shared(self, *, settle: bool = False) -> bool:
        """Adopt the collection another process published: no ARM read, no lifecycle (its maker applied it). False
        when nothing new is published, or when what is cannot be read here (an unsupported format): the daemon then
        keeps serving its last collection and ``/readyz`` says why. Events re-read while it loads are read again on
        top of it, as during a collection of its own."""
        shared = self.shared
        if shared is None:
            return False
        t0 = time.perf_counter()
        with self._lock:
            self._collecting_since = self.clock()
            self._reread_during_collection = {}
        try:
            loaded = load_published(shared.store, typed=shared.typed)
        except (UnsupportedFormat, SegmentError) as err:
            with self._lock:
                self._collecting_since = None
            shared.error = str(err)
            log.error("shared_inventory_unreadable", error=str(err), kept=shared.current.collection
                      if shared.current is not None else None)
            return False
        except Exception:
            with self._lock:
                self._collecting_since = None
            raise
        if loaded is None or (shared.current is not None and loaded.pointer.collection <= shared.current.collection):
            with self._lock:
                self._collecting_since = None
            return False
        self.adopt(loaded.inventory, loaded.manifest.started_at, lifecycle=False, settle=settle, t0=t0,
                   forget_reads=True)
        shared.serving(loaded.pointer, loaded.manifest.started_at, "shared")
        self.metrics.serving(loaded.pointer.collection)
        self.metrics.inventory_load.observe(time.perf_counter() - t0)
        log.info("shared_inventory_loaded", collection=loaded.pointer.collection, bytes=loaded.bytes,
                 reads=loaded.reads, seconds=round(time.perf_counter() - t0, 3))
        self.sync_shared()
        return True

    def _publish_collection(self, tap: RecordingTap, started_at: datetime, finished_at: datetime) -> Pointer | None:
        """Publish the collection this process just made, for the others to load. A failure is logged and shown
        (``/readyz``), never the collection's: this process serves it either way."""
        shared = self.shared
        assert shared is not None
        try:
            pointer = publish_collection(shared.store, tap.take(), collection=collection_id(started_at),
                                         manifest=self.manifest, subscriptions=self.subscriptions or (),
                                         scoped=self.subscriptions is not None, started_at=started_at,
                                         finished_at=finished_at, plmon=__version__)
        except Exception as err:
            shared.error = f"publish: {type(err).__name__}: {err}"
            log.warning("collection_publish_failed", error=shared.error)
            return None
        if pointer is not None:
            shared.published_here = pointer.collection   # the pointer watcher must not download it again
            log.info("collection_published", collection=pointer.collection)
        return pointer

    # --- full collection -------------------------------------------------------------------------
    def full_collection(self, *, settle: bool = False) -> ScanResult:
        """Collect everything, replace the in-memory state, and apply the full lifecycle.

        ``settle`` (plmon serve's runtime): then :meth:`settle_heap`, before the daemon says it is ready, so readiness
        (and the RSS a benchmark reads then) comes after the heap was handed back, and an event never meets it."""
        started_at = self.clock()
        t0 = time.perf_counter()
        with self._lock:
            self._collecting_since = started_at
            self._reread_during_collection = {}
        # With a shared inventory, what the collection read is kept to be published: ARM's answers as compressed
        # segment chunks (~11 MB at 100k resources; the tap keeps no parsed body), not the typed units: every
        # process parses them with its own builder.
        tap = RecordingTap(self._collect_reader) if self.shared is not None else None
        try:
            inv = collect(tap if tap is not None else self._collect_reader, manifest=self.manifest,
                          workers=self.workers, subscriptions=self.subscriptions)
        except Exception:
            self.metrics.collections.labels("failed").inc()
            with self._lock:
                self._collecting_since = None
            log.exception("full_collection_failed")
            raise
        # A recorded folder's index of every path (57k at 100k resources, ~25 MB) served the collection's reads;
        # an event's few reads find their files on disk as well, so the daemon does not keep it (the next
        # collection reads through the cached folder listings instead, the same answers).
        forget = getattr(self._collect_reader.inner, "forget", None)
        if callable(forget):
            forget()
        published = None
        if tap is not None:  # before the swap: the recording is let go before settle_heap freezes the heap
            published = self._publish_collection(tap, started_at, self.clock())
        newer = self._patches_since(started_at) if self.shared is not None else None   # storage: outside the lock
        result, _ = self.adopt(inv, started_at, lifecycle=True, settle=settle, t0=t0, patches=newer)
        if published is not None and self.shared is not None:   # only now: a sync before the swap was on the old one
            self.shared.serving(published, started_at, "published")
            self.metrics.serving(published.collection)
        return result

    def fanned_in(self, build: Callable[[], Inventory], started_at: datetime, publish: Callable[[], Pointer | None],
                  *, settle: bool = False) -> ScanResult:
        """The end of a fan-out collection on the schedule's holder (issue 15): ``build`` the inventory from the
        shards' segments (no ARM read), ``publish`` it (manifest, pointer), then adopt it with the full lifecycle, as
        :meth:`full_collection` does with what it read itself. Its shards were read over minutes by other processes
        while this one went on re-reading for events: those re-reads' times are dropped unless read again on top, so
        the patch sync after the swap replays them (``forget_reads``), newest read winning as for any patch."""
        t0 = time.perf_counter()
        with self._lock:
            self._collecting_since = self.clock()
            self._reread_during_collection = {}
        try:
            inv = build()
        except Exception:
            self.metrics.collections.labels("failed").inc()
            with self._lock:
                self._collecting_since = None
            log.exception("fanned_in_collection_failed")
            raise
        published = None
        shared = self.shared
        if shared is not None:
            try:
                published = publish()
            except Exception as err:
                shared.error = f"publish: {type(err).__name__}: {err}"
                log.warning("collection_publish_failed", error=shared.error)
            if published is not None:
                shared.published_here = published.collection
        # Every process's re-reads since the collection started, this one's too: its own events were re-read while
        # other processes read the shards, so unlike full_collection it holds no list of what to read again on top.
        newer = self._patches_since(started_at, own=True) if shared is not None else None
        result, _ = self.adopt(inv, started_at, lifecycle=True, settle=settle, t0=t0, forget_reads=True,
                               patches=newer)
        if published is not None and shared is not None:
            shared.serving(published, started_at, "published")
            self.metrics.serving(published.collection)
            try:
                self.sync_shared()
            except Exception as err:   # the pointer thread and the next step sync again
                log.warning("patch_sync_failed", error=f"{type(err).__name__}: {err}")
        return result

    def _patches_since(self, started_at: datetime, *, own: bool = False) -> _Fetched | None:
        """Other processes' re-reads made since this process's collection started (design15 2.1 "After a
        collection"): one may have been read after the collection read its resource, and opened a finding on it,
        which the collection's older read would resolve (and the next sync open again). The collection's own read
        time per resource is not kept, so every patch read after its start counts. None when storage fails: the
        collection is applied as it is, and the sync that follows replays them (late, but not lost). ``own``: this
        process's patches too (a fan-out collection's holder, whose shards other processes read)."""
        shared = self.shared
        assert shared is not None
        start_ms = _ms(started_at)
        try:
            refs = shared.store.patches_since(started_at - SYNC_OVERLAP)
            newest = {r.resource_key: r for r in refs
                      if r.read_at_ms > start_ms and (own or r.instance != shared.instance)}
            patches = shared.fetch(newest.values()) if newest else {}
        except Exception as err:
            self.metrics.patches.labels("sync_failed").inc()
            log.warning("collection_patches_unread", error=f"{type(err).__name__}: {err}")
            return None
        return _Fetched(shared.generation, newest, patches, None)

    def adopt(self, inv: Inventory, started_at: datetime, *, lifecycle: bool, settle: bool = False,
              t0: float | None = None, forget_reads: bool = False,
              patches: _Fetched | None = None) -> tuple[ScanResult, list[Transition]]:
        """Make ``inv`` (a collection that started at ``started_at``) the daemon's state: the resources events
        re-read meanwhile read again on top of it, linked, evaluated into the units events re-judge, swapped in.

        ``lifecycle``: apply the full lifecycle (open, resolve, remind) to the store. Only the process that made the
        collection does; a replica adopting another's collection (:mod:`plmon.monitor.service.shared_inventory`)
        must not, or K replicas would apply one collection K times, and one still on an older collection could
        resolve what a newer one opened. Its transitions are then empty.
        ``t0``: when the collection began (``perf_counter``), for its duration; an adopted load times itself.
        ``forget_reads``: drop the read times of resources re-read since ``started_at`` that were not read again on top
        of ``inv``. A collection loaded from another process started before this one tracked its re-reads for it,
        so its inventory may lack them; with their times dropped, the patch sync that follows replays them.
        ``patches``: other processes' re-reads since ``started_at`` (:meth:`_patches_since`), replayed on ``inv``
        before it is judged, so the lifecycle sees the newest read of each resource."""
        t0 = time.perf_counter() if t0 is None else t0
        with self._lock:
            self._collecting_since = None
            again = list(self._reread_during_collection.values())
            again_keys = {rid.key for rid in again}
            if again:  # events handled while the collection ran are newer than some of its reads
                inv, _ = reread_into(self._event_reader, inv, again)
            replayed: dict[str, datetime] = {}
            if patches is not None and patches.refs:   # so are other processes' re-reads meanwhile
                inv, replayed = self._replay_on(inv, patches, again_keys)
            linked, links = link(inv, taken_at=self.source_clock.now())
            snapshot = observer(self.store, record=lifecycle)(linked)   # a replica only reads them
            with paused_gc():  # as run_scan: a full evaluation frees nothing the collector must find
                ev = self.units.full(snapshot)   # recording the units of work events re-judge
            result = ScanResult(snapshot, ev, inv.stats, self.source_clock)
            transitions: list[Transition] = []
            if lifecycle:
                transitions = apply_scan(self.store, result, now=snapshot.taken_at, routes=self.routes,
                                         wall=self.clock, reminder_interval=self.config.schedule.reminder_interval)
            self.inventory, self.snapshot, self.evaluation, self._links = inv, snapshot, ev, links
            with self._retired_lock:   # the events' old states go with the state they led to, before any settle
                self._retired = []
            self._full_started = started_at
            self._read_at = {k: v for k, v in self._read_at.items()
                             if v > started_at and (not forget_reads or k in again_keys)}
            for k, v in replayed.items():   # the sync after the swap then finds these patches done
                self._read_at[k] = max(v, self._read_at.get(k, v))
        # Outside the lock: a later collection's settle holds the interpreter for seconds (its gc.collect), and the
        # trim after it, which lets go of the interpreter, need not keep events from the new state meanwhile.
        if settle:
            self.settle_heap()
        else:
            release_freed()
        with self._lock:
            self.last_collection = self.clock()
            self._count_open()
        seconds = time.perf_counter() - t0
        if lifecycle:
            self.metrics.collections.labels("ok").inc()
            self.metrics.collection_duration.observe(seconds)
        self.metrics.last_collection.set(self.last_collection.timestamp())
        # The one info line a collection writes (the plan's own and the heap's are at debug).
        log.info("full_collection_done" if lifecycle else "collection_adopted", seconds=round(seconds, 3),
                 requests=result.stats.requests, findings=len(ev.findings), gaps=len(result.gaps),
                 transitions=len(transitions))
        self.wake.set()  # events that waited for a first inventory can go now
        if transitions:
            self._alerts_queued(())
        return result, transitions

    def _replay_on(self, inv: Inventory, fetched: _Fetched, skip: set[str]) -> tuple[Inventory, dict[str, datetime]]:
        """``fetched``'s patches replayed on ``inv`` (not the resources in ``skip``, read live on it already): the
        inventory, and the read time of each resource replayed."""
        shared = self.shared
        assert shared is not None
        newest = {k: r for k, r in fetched.refs.items() if k not in skip}
        chosen, wanted = _chosen(fetched, newest)
        if not wanted:
            return inv, {}
        reader = patch_reader(chosen, self._event_reader)
        inv, result = reread_into(reader, inv, list(wanted.values()))
        shared.fallback_reads += reader.fallback_reads
        shared.patches_applied += len(chosen)
        self.metrics.patches.labels("applied").inc(len(chosen))
        self.metrics.patch_fallback_reads.inc(reader.fallback_reads)
        log.info("patches_replayed_on_collection", patches=len(chosen), resources=len(wanted),
                 fallback_reads=reader.fallback_reads)
        return inv, {k: datetime.fromtimestamp(r.read_at_ms / 1000, UTC) for k, r in newest.items()
                     if k in result.keys}

    def settle_heap(self) -> None:
        """Freeze what the collection left alive out of the cyclic GC's scans, then hand the C heap's free pages back.

        The inventory, snapshot and units are a few million long-lived objects; every automatic oldest-generation
        collection walked them all (an event that met one took ~150-250 ms instead of ~60). ``gc.freeze()`` moves
        them out of its view; reference counting still frees them when a later collection replaces them. The first
        collection's heap is frozen as it is: a ``gc.collect()`` first found 9 unreachable objects at 100k resources
        for 2-10 s of a held interpreter (events waited). A later one replaced a frozen state whose cycles only the
        collector frees, so it unfreezes and collects first. ``malloc_trim`` comes last: before the collection it
        could not return what the collection frees."""
        started = time.perf_counter()
        collected = 0
        with self._heap_lock:
            if self._frozen:
                gc.unfreeze()
                collected = gc.collect()
            gc.freeze()
            self._frozen = True
            self._untidy = False
        release_freed()
        log.debug("heap_settled", seconds=round(time.perf_counter() - started, 3), frozen=gc.get_freeze_count(),
                 collected=collected)

    def _retire(self, old: object) -> None:
        """Keep what a step replaced until :meth:`tidy_heap` (plmon serve's worker calls it once the step's alerts are
        on their way), so the step does not spend its CPU freeing it. A caller that never tidies (the Function,
        tests) keeps at most the last _RETIRED_MAX steps' states: older ones are freed in the step, as before."""
        with self._retired_lock:
            self._retired.append(old)
            drop = self._retired[:-_RETIRED_MAX]
            del self._retired[:-_RETIRED_MAX]
        del drop

    def tidy_heap(self) -> float:
        """After the worker steps, once their alerts are on their way: one collector pass over what is not frozen
        (only what the steps and the other threads left since the last tidy), then, on plmon serve's settled heap,
        those survivors frozen too. Returns the thread CPU seconds it took (0.0 when no step ran since).

        The pass finds the cycles a step leaves (the checks' recording views of the snapshot, ~60-300 objects an
        event at 100k resources, holding old collections); freezing what survives it keeps the oldest generation
        that the collector walks as small as it was after the collection, so no automatic pass ever walks the
        steps' state, on the event path or on a delivery thread."""
        with self._heap_lock:
            if not self._untidy:
                return 0.0
            started = time.thread_time()
            self._untidy = False
            with self._retired_lock:
                retired, self._retired = self._retired, []
            del retired   # freed here, then the pass finds any cycle it left
            collected = gc.collect()
            if self._frozen:
                gc.freeze()
            spent = time.thread_time() - started
        log.debug("heap_tidied", cpu_ms=round(spent * 1000, 2), collected=collected)
        return spent

    # --- alerts and housekeeping -----------------------------------------------------------------
    def deliver(self, pause: Callable[[Sequence[Any]], None] | None = None) -> DeliveryReport:
        """One pass over what is due, oldest first; passes do not overlap (one lock). ``pause``: see
        :meth:`DeliveryWorker.run_once`."""
        with self._delivery_lock:
            return self.delivery.run_once(pause=pause)

    def deliver_first(self, findings: Sequence[tuple[str, str]], patience: float) -> DeliveryReport:
        """The alerts of these findings (an event's), ahead of any backlog and beside a pass that is sending it:
        the store's leases and per-finding order keep the two apart (:meth:`DeliveryWorker.run_first`)."""
        return self.delivery.run_first(findings, patience)

    def _alerts_queued(self, urgent: Sequence[tuple[str, str]]) -> None:
        """Alerts were committed to the outbox; ``urgent`` = the findings an event moved."""
        if self.dispatch is None:
            self.deliver()
        else:
            self.dispatch(urgent)

    def flush(self, timeout: float) -> DeliveryReport:
        with self._delivery_lock:
            return self.delivery.drain(timeout)

    def reminders(self) -> list[Transition]:
        """Owed reminders for open findings, between full collections (nothing opens or resolves here)."""
        with self._lock:
            if self.snapshot is None or self.evaluation is None:
                return []
            now = self.source_clock.now()  # a recording does not age: its reminders wait for a newer one
            transitions = apply_targeted(self.store, replace(self.snapshot, taken_at=now), self.evaluation,
                                         check_ids=(), resource_keys=(), now=now, routes=self.routes,
                                         wall=self.clock, reminder_interval=self.config.schedule.reminder_interval,
                                         large=self._large)
        if transitions:
            self._alerts_queued(())
        return transitions

    def retention(self) -> int:
        """Prune what is older than ``state.retention`` on both clocks: the store holds findings and scans
        on the source's clock and alerts on the wall clock, so an old recording's history is not pruned
        the moment it is written. The intake is wall time only."""
        wall = self.clock()
        cut = min(wall, self.source_clock.now()) - self.config.state.retention
        return self.store.prune(cut) + self.intake.prune(wall - self.config.state.retention)

    def _await_alert(self, key: tuple[str, str], arrived: float) -> None:
        with self._awaiting_lock:
            self._awaiting_alert.setdefault(key, []).append(arrived)

    def _delivered(self, channel: str, rows: Sequence[Any]) -> None:
        """Metrics of a delivery; event-to-alert latency from the earliest event queued before the alert was."""
        self.metrics.alert_deliveries.labels(channel).inc(len(rows))
        now = time.time()
        for row in rows:
            key, queued = (row.check_id, row.resource_key), row.created_at.timestamp()
            with self._awaiting_lock:
                waiting = self._awaiting_alert.get(key)
                if not waiting:
                    continue
                behind = [a for a in waiting if a <= queued]
                later = [a for a in waiting if a > queued]
                if later:
                    self._awaiting_alert[key] = later
                else:
                    del self._awaiting_alert[key]
            if behind:
                self.metrics.event_to_alert.observe(max(0.0, now - min(behind)))

    def _delivery_failed(self, channel: str) -> None:
        self.metrics.alert_failures.labels(channel).inc()

    def _count_open(self) -> None:
        by_sev = self.store.open_counts()
        for sev in ("critical", "high", "medium", "low", "info"):
            self.metrics.open_findings.labels(sev).set(by_sev.get(sev, 0))

    # --- health ----------------------------------------------------------------------------------
    def readiness(self, max_age_seconds: float) -> tuple[bool, dict[str, Any]]:
        """Ready when the store and queue answer and a full collection finished recently enough."""
        detail: dict[str, Any] = {"store": "ok", "intake": "ok"}
        ok = True
        try:
            self.store.scan_history(since=self.clock())
        except Exception as err:
            ok, detail["store"] = False, type(err).__name__
        if not self.intake.ping():
            ok, detail["intake"] = False, "unreachable"
        if self.last_collection is None:
            ok, detail["last_collection"] = False, None
        else:
            age = (self.clock() - self.last_collection).total_seconds()
            detail["last_collection"] = self.last_collection.isoformat()
            detail["last_collection_age_seconds"] = round(age, 1)
            if age > max_age_seconds:
                ok = False
        detail["intake_pending"] = self.intake.pending()
        # Failed events do not make the daemon unready (a restart would not help them); they are shown.
        if self.shared is not None:
            detail["inventory"] = self.shared.describe()
        if self.scale is not None:
            ok = self._shared_readiness(detail) and ok
        detail["intake_failed"] = failed = self.intake.failed_count()
        self.metrics.intake_failed.set(failed)
        return ok, detail


    def _shared_readiness(self, detail: dict[str, Any]) -> bool:
        """``instance``, ``schedule`` and ``blob`` for ``/readyz`` (design 2.2); holding the lease is not required.
        Blob storage unreachable is shown but fails readiness only for a replica with no inventory yet: one that has
        one still takes events and re-evaluates them (only loads, patches and the lease wait for blob storage), and
        failing it would take every replica out of service at once."""
        scale = self.scale
        assert scale is not None
        detail["instance"] = scale.instance
        held = scale.lease.held
        self.metrics.schedule_leader.set(1 if held else 0)
        try:
            state = scale.lease.state()
            detail["schedule"] = {"holder": state.holder, "held_here": held, "lease": state.state,
                                  "since": state.since.isoformat() if state.since else None, "epoch": state.epoch}
        except Exception as err:
            detail["schedule"] = {"holder": None, "held_here": held, "lease": None, "since": None, "epoch": None,
                                  "error": type(err).__name__}
        if self.collection_status is not None:
            try:
                detail["collection"] = self.collection_status()
            except Exception as err:
                detail["collection"] = {"error": type(err).__name__}
        if scale.inventory.ping():
            detail["blob"] = "ok"
            return True
        detail["blob"] = "unreachable"
        return self.inventory is not None


_RETIRED_MAX = 4   # steps' replaced states kept for tidy_heap at most (Daemon._retire)


def release_freed() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing): a full
    collection frees the parsed responses and the evaluation's transient work, which the heap otherwise keeps as
    the daemon's RSS for its lifetime (~27 MB at 100k resources, issue 14)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _read_ms(times: Mapping[str, datetime]) -> Callable[[str], int | None]:
    """This process's own read time of a resource in epoch ms (None: never read), as the patch index orders reads."""
    def mine(key: str) -> int | None:
        try:
            return _ms(times[key])
        except KeyError:
            return None
    return mine


def _within(ev: Evaluation, keys: set[str]) -> Evaluation:
    """The findings of ``ev`` about ``keys`` only: every other one is unchanged since the last evaluation
    (:func:`~plmon.monitor.service.reevaluate.affected_keys` holds every key whose outcome moved), so the lifecycle need
    not rewrite its row on each event (reminders and last-seen come from their schedule and the full
    collection). On a 1k-endpoint tenant this was ~20 ms of an event."""
    lower = {k.lower() for k in keys}
    return replace(ev, findings=tuple(f for f in ev.findings if f.key[1] in lower),
                   waived=tuple(w for w in ev.waived if w.finding.key[1] in lower))
