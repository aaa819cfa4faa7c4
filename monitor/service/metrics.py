"""The daemon's Prometheus metrics, in a registry of their own (no module-level state).

Each :class:`Metrics` owns a fresh ``CollectorRegistry``, so two daemons in one process (tests) never
share counters and the default registry's process collectors never leak into ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Event-to-alert latency buckets: the goal is under one second, so resolution sits below it.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
