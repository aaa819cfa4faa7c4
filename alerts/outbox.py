"""Which channels an alert goes to, and the outbox rows that carry it there.

Routing is decided when the transition is written, not when it is sent: the outbox row is the promise
to deliver, so a config change later does not silently drop an alert already owed to a channel.
A channel is named by its ``name`` or, when unnamed, by its type and a short hash of its URL, so
reordering the ``alerts`` list does not send a pending row to another channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from plmon.alerts.bounds import bounded_finding
from plmon.checks.finding import Severity
from plmon.monitor.config import AlertChannelConfig
from plmon.monitor.state.store import FindingRecord, JsonSafe, OutboxRow, alert_id, iso

__all__ = ["Route", "alert_payload", "channel_name", "outbox_rows", "routes_from_config", "wanting"]


def channel_name(cfg: AlertChannelConfig) -> str:
    if cfg.name:
        return cfg.name
    # An azure-monitor channel has no URL: its destination is the endpoint, the rule and the stream together.
    where = cfg.url.get_secret_value() if cfg.url is not None else f"{cfg.endpoint}|{cfg.rule_id}|{cfg.stream}"
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]
    return f"{cfg.type}-{digest}"


@dataclass(frozen=True, slots=True)
class Route:
    """A channel's filter: minimum severity, check-id glob patterns, subscriptions (empty: all)."""

    channel: str
    min_severity: Severity = Severity.MEDIUM
    checks: tuple[str, ...] = ("*",)
    subscriptions: tuple[str, ...] = ()

    def wants(self, check_id: str, severity: str, subscription_id: str | None) -> bool:
        try:
            sev = Severity.parse(severity)
        except ValueError:
            return False
        if sev.rank < self.min_severity.rank:
            return False
        if not any(fnmatchcase(check_id.lower(), p.lower()) for p in self.checks):
            return False
        if self.subscriptions:
            return subscription_id is not None and subscription_id.lower() in {s.lower() for s in self.subscriptions}
        return True


def routes_from_config(channels: Sequence[AlertChannelConfig]) -> tuple[Route, ...]:
    return tuple(Route(channel_name(c), c.min_severity, tuple(c.checks), tuple(c.subscriptions)) for c in channels)


# bounded_finding, or the caller's memo of it (the lifecycle's LargeDicts.bounded: a large finding bounded once).
Bound = Callable[[Mapping[str, Any]], tuple[dict[str, Any], list[dict[str, Any]]]]


def alert_payload(rec: FindingRecord, kind: str, at: datetime, tenant_id: str | None,
                  previous_severity: str | None = None, *, bound: Bound | None = None) -> dict[str, Any]:
    """What every transport formats: the finding as in the scan document plus its lifecycle, its Azure text
    bounded here once for every channel (``truncated`` lists what was cut).

    A finding marked :class:`~plmon.monitor.state.store.JsonSafe` gives a payload marked so too: bounding keeps its
    values plain (str keys, str cuts, the finding's own scalars) and the rest are strings, so the store writes the
    payload with orjson (a route table's payload of ~200 kB took ~2 ms through ``json``); it parses back the same."""
    finding, cuts = (bound or bounded_finding)(rec.finding)
    payload: dict[str, Any] = {
        "kind": kind, "time": iso(at), "finding": finding,
        "first_seen": iso(rec.first_seen), "last_seen": iso(rec.last_seen), "state": rec.state.value,
        "tenant_id": tenant_id,
    }
    if rec.resolved_at is not None:
        payload["resolved_at"] = iso(rec.resolved_at)
    if previous_severity is not None:
        payload["previous_severity"] = previous_severity
    if cuts:
        payload["truncated"] = cuts
    return JsonSafe(payload) if type(rec.finding) is JsonSafe else payload


def outbox_rows(rec: FindingRecord, kind: str, at: datetime, channels: Iterable[str], *,
                tenant_id: str | None, previous_severity: str | None = None,
                queued_at: datetime | None = None, bound: Bound | None = None) -> list[OutboxRow]:
    """One row per channel; all rows share the alert id (one event, told to N channels).

    ``at`` is the transition's time on the source's clock (the payload's, beside first_seen);
    ``queued_at`` the wall time the rows are due from: delivery is a timer, and a recording's time
    (past or future) must not delay nor reorder it (:mod:`plmon.monitor.model.clock`)."""
    aid = alert_id(rec.check_id, rec.resource_key, kind, rec.seq, rec.first_seen)
    payload = alert_payload(rec, kind, at, tenant_id, previous_severity, bound=bound)
    due = queued_at or at
    return [OutboxRow(alert_id=aid, channel=ch, check_id=rec.check_id, resource_key=rec.resource_key,
                      seq=rec.seq, kind=kind, created_at=due, payload=payload, next_attempt_at=due)
            for ch in sorted(set(channels))]


def wanting(routes: Sequence[Route], check_id: str, severity: str, subscription_id: str | None) -> set[str]:
    """The channels whose filter this finding passes."""
    return {r.channel for r in routes if r.wants(check_id, severity, subscription_id)}
