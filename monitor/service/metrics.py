"""The daemon's Prometheus metrics, in a registry of their own (no module-level state).

Each :class:`Metrics` owns a fresh ``CollectorRegistry``, so two daemons in one process (tests) never
share counters and the default registry's process collectors never leak into ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "LEASE_EVENTS", "PATCH_OPS", "PHASES", "Metrics", "PhaseClock"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Event-to-alert latency buckets: the goal is under one second, so resolution sits below it.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Re-evaluation CPU per worker step: the target is 100 ms an event, so resolution sits around it.
_CPU_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 10.0)

# A worker step's phases, in the order they run: claiming, parsing and coalescing the queued events and settling
# them (intake), the targeted re-read (reread), re-deriving the snapshot and its observations (relink), the
# incremental checks and the keys they moved (evaluate), and the lifecycle's store write with its outbox rows and
# the open-findings recount (lifecycle). "total" is their sum: the worker thread's CPU for the whole step.
PHASES = ("intake", "reread", "relink", "evaluate", "lifecycle")

# What happens to patches (plmon_patches_total{op}): written here, applied here (another's, replayed), older (our
# write lost to a newer read in the index), skewed (another's read time far ahead of the store's clock: bounded),
# and the failures: publish, sync (storage down), sync_late (a step went on without waiting for slow storage).
PATCH_OPS = ("written", "applied", "older", "skewed", "publish_failed", "sync_failed", "sync_late")
# plmon_schedule_lease_changes_total{event}.
LEASE_EVENTS = ("acquired", "lost", "released")


class PhaseClock:
    """The calling thread's CPU time (``time.thread_time``), charged to the phase that is current.

    Thread CPU, not process CPU or wall time: the daemon's other threads (the HTTP server taking the next post,
    the outbox's delivery lanes, JSON logging on them) and the machine's load do not count towards a step's
    figure, so it measures the re-evaluation itself. Phases nest: time inside an inner phase is the inner's only.
    ``entered`` names the phases the step went through: a step that stopped early (stale events, nothing re-read)
    did no relink or evaluation, and a zero observed for them would pull their histograms' medians down.
    """

    __slots__ = ("_current", "_since", "entered", "spent")

    def __init__(self) -> None:
        self.spent: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.entered: set[str] = set()
        self._current: str | None = None
        self._since = 0.0

    def _switch(self, name: str | None) -> str | None:
        now = time.thread_time()
        if self._current is not None:
            self.spent[self._current] = self.spent.get(self._current, 0.0) + now - self._since
        outer, self._current, self._since = self._current, name, now
        return outer

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.entered.add(name)
        outer = self._switch(name)
        try:
            yield
        finally:
            self._switch(outer)

    @property
    def total(self) -> float:
        return sum(self.spent.values())


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("plmon_http_requests", "Webhook requests by answer", ["status"], registry=r)
        self.events_received = Counter("plmon_events_received", "Items in accepted webhook bodies", registry=r)
        self.events_accepted = Counter("plmon_events_accepted", "Events durably queued", registry=r)
        self.events_deduplicated = Counter("plmon_events_deduplicated", "Redelivered event ids", registry=r)
        self.events_rejected = Counter("plmon_events_rejected", "Malformed items", registry=r)
        self.events_ignored = Counter("plmon_events_ignored", "Queued events that need no re-read",
                                      ["reason"], registry=r)
        self.rereads = Counter("plmon_rereads", "Targeted re-reads", ["outcome"], registry=r)
        self.arm_requests = Counter("plmon_arm_requests", "ARM reads", ["phase"], registry=r)
        self.arm_throttles = Counter("plmon_arm_throttles", "ARM reads answered 429", registry=r)
        self.collections = Counter("plmon_collections", "Full collections", ["outcome"], registry=r)
        self.collection_duration = Histogram("plmon_collection_duration_seconds", "Full collection time",
                                             registry=r, buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800))
        self.reevaluation_duration = Histogram("plmon_reevaluation_duration_seconds",
                                               "Worker step: re-read, rebuild, re-check, lifecycle",
                                               registry=r, buckets=_LATENCY_BUCKETS)
        self.reevaluation_cpu = Histogram(
            "plmon_reevaluation_cpu_seconds",
            "Worker step CPU (the intake worker thread's own, time.thread_time) by phase; phase=total is the step",
            ["phase"], registry=r, buckets=_CPU_BUCKETS)
        self.open_findings = Gauge("plmon_open_findings", "Open findings", ["severity"], registry=r)
        self.alert_deliveries = Counter("plmon_alert_deliveries", "Alerts delivered", ["channel"], registry=r)
        self.alert_failures = Counter("plmon_alert_failures", "Failed alert attempts", ["channel"], registry=r)
        self.intake_pending = Gauge("plmon_intake_pending", "Queued events not yet processed", registry=r)
        self.event_failures = Counter("plmon_event_failures", "Failed attempts to process one queued event",
                                      registry=r)
        self.events_dead_lettered = Counter("plmon_events_dead_lettered",
                                            "Events set aside after server.event_max_attempts failures", registry=r)
        self.intake_failed = Gauge("plmon_intake_failed", "Failed events waiting for plmon events --retry",
                                   registry=r)
        self.last_collection = Gauge("plmon_last_collection_timestamp_seconds",
                                     "Unix time of the last successful full collection", registry=r)
        self.event_to_alert = Histogram("plmon_event_to_alert_seconds",
                                        "From an event's arrival to its alert's delivery",
                                        registry=r, buckets=_LATENCY_BUCKETS)

        # Scale-out (issue 15): summed over the replicas plmon_schedule_leader must be 1.
        self.schedule_leader = Gauge("plmon_schedule_leader", "1 while this process holds the schedule lease",
                                     registry=r)
        self.inventory_load = Histogram("plmon_inventory_load_seconds",
                                        "Loading a published collection (no ARM read)",
                                        buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.patches = Counter("plmon_patches", "Re-read patches shared between processes", ["op"], registry=r)
        for op in PATCH_OPS:
            self.patches.labels(op)
        # The fan-out collection (issue 15, design 2.3): shards read here, whichever process holds the schedule.
        self.collections_started = Counter("plmon_collections_started",
                                           "Fan-out collections this process started as the schedule's holder",
                                           registry=r)
        self.shards_in_progress = Gauge("plmon_shards_in_progress", "Shards being read by this process now",
                                        registry=r)
        self.shards_processed = Counter("plmon_shards_processed", "Shards this process took, by stage and outcome",
                                        ["stage", "outcome"], registry=r)
        self.shard_seconds = Histogram("plmon_shard_seconds", "Reading one shard (its segment written)",
                                       buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600), registry=r)
        self.arm_requests.labels("shard")
        self.patch_fallback_reads = Counter("plmon_patch_fallback_reads",
                                            "Reads a patch replay made live: paths the patch did not record "
                                            "(expected 0)", registry=r)
        self.schedule_lease_changes = Counter("plmon_schedule_lease_changes", "The schedule lease acquired, lost "
                                              "(not renewed in time, or taken) or released here", ["event"],
                                              registry=r)
        for event in LEASE_EVENTS:
            self.schedule_lease_changes.labels(event)
        self.fanin_seconds = Histogram(
            "plmon_shards_fanin_seconds", "The schedule's holder's own time after the last shard of a fan-out stage "
            "landed: planning stage 2 (part=plan), building the inventory from the segments (part=build)", ["part"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self.inventory_collection = Gauge("plmon_inventory_collection_info",
                                          "The shared collection this process serves (1, labelled by its id)",
                                          ["collection"], registry=r)

    def lease_changed(self, event: str) -> None:
        """The schedule lease was acquired, lost or released here (:class:`~plmon.monitor.service.schedule.LeaseKeeper`
        calls it): ``plmon_schedule_leader`` follows, so a scrape never shows a change without the state it led to."""
        self.schedule_lease_changes.labels(event).inc()
        self.schedule_leader.set(1 if event == "acquired" else 0)

    def lease_changes(self) -> dict[str, int]:
        """``plmon_schedule_lease_changes_total`` by event, for a status page without a scrape (the Function host's
        /api/healthz, which has no /metrics)."""
        return {event: int(self.registry.get_sample_value("plmon_schedule_lease_changes_total", {"event": event})
                           or 0) for event in LEASE_EVENTS}

    def serving(self, collection: str) -> None:
        """``plmon_inventory_collection_info``: one series, the collection served now (the old one is dropped)."""
        self.inventory_collection.clear()
        self.inventory_collection.labels(collection).set(1)

    def observe_step(self, clock: PhaseClock) -> None:
        """One worker step's CPU by each phase it entered, and its total."""
        for name, spent in clock.spent.items():
            if name in clock.entered:
                self.reevaluation_cpu.labels(name).observe(spent)
        self.reevaluation_cpu.labels("total").observe(clock.total)

    def render(self) -> bytes:
        return generate_latest(self.registry)
