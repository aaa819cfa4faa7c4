"""The delivery worker: sends due outbox rows, retries with backoff, dead-letters, never loses a row.

Delivery is at-least-once. A row is *leased* when claimed (``claim_due``), so a crashed worker's rows
come back after the lease and are sent again: a receiver may see an alert twice, with the same id, and
dedupes on it. It is never lost: a row leaves ``pending`` only when a channel acknowledged it
(``delivered``) or after ``max_attempts`` failures (``failed``, the dead letter ``plmon alerts --failed``
lists and ``--retry`` re-queues). The store hands out one row per finding and channel at a time, so a
later alert of a finding is never sent while an earlier one is backing off. Nor after the earlier one
was dead-lettered (a long outage): the later alert follows it into the dead letter, unsent, so that a
receiver never gets a finding's ``resolved`` before its ``opened``; ``--retry`` re-queues them together
and the store sends them oldest first.

A burst (more than a channel's ``digest_threshold`` alerts within a minute) goes out as one digest
message that stands for all its rows.

One worker may be driven from several threads at once (the daemon sends an event's alerts on one while
another works through a first collection's backlog, :mod:`plmon.monitor.service.runtime`): the store's lease
keeps a row from being claimed twice, and it withholds a finding's later row while an earlier one is pending,
so two passes never reorder a finding's alerts. :meth:`DeliveryWorker.run_first` sends given findings' alerts
ahead of everything else, waiting (briefly) for an earlier alert of theirs that another pass has in flight.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from plmon.alerts.channel import Channel, DeliveryError
from plmon.monitor.state.store import AlertStatus, OutboxRow, StateStore

if TYPE_CHECKING:
    from plmon.monitor.config import Config

__all__ = ["DeliveryReport", "DeliveryWorker", "RetryPolicy"]

log = structlog.get_logger(__name__)

DIGEST_WINDOW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base: timedelta = timedelta(seconds=5)
    cap: timedelta = timedelta(minutes=30)
    jitter: float = 0.25  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    lease: timedelta = timedelta(seconds=60)  # > any channel timeout: a claimed row is not re-sent meanwhile

    @classmethod
    def from_config(cls, config: Config) -> RetryPolicy:
        """``delivery:`` (attempts, backoff) as a policy; the lease outlasts the slowest channel's timeout
        twice over, so a row in flight is not claimed and sent again by another pass meanwhile."""
        d = config.delivery
        lease = max((c.timeout for c in config.alerts), default=d.backoff_base) * 2 + d.backoff_base
        return cls(max_attempts=d.max_attempts, base=d.backoff_base, cap=d.backoff_max, lease=lease)

    def delay(self, attempts: int, rng: random.Random) -> timedelta:
        """Backoff after ``attempts`` failures: base * 2^(attempts-1) with jitter so that many alerts failing
        together do not retry in lockstep, and never beyond the cap (``backoff_max`` is a maximum)."""
        cap = self.cap.total_seconds()
        raw = min(cap, self.base.total_seconds() * 2 ** max(0, attempts - 1))
        return timedelta(seconds=min(cap, raw * rng.uniform(1 - self.jitter, 1 + self.jitter)))


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    digests: int = 0
    errors: list[str] = field(default_factory=list)
    claimed: int = 0  # rows taken from the outbox: 0 means nothing was due (the caller's loop can stop)

    def add(self, other: DeliveryReport) -> None:
        self.claimed += other.claimed
        self.delivered += other.delivered
        self.retrying += other.retrying
        self.dead += other.dead
        self.digests += other.digests
        self.errors.extend(other.errors)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker:
    def __init__(self, store: StateStore, channels: Mapping[str, Channel], policy: RetryPolicy | None = None, *,
                 clock: Callable[[], datetime] = _utcnow, rng: random.Random | None = None) -> None:
        self.store, self.channels = store, channels
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.rng = rng or random.Random()
        self._recent: dict[str, deque[datetime]] = defaultdict(deque)  # channel -> sends in the window
        # Findings with a row claimed and not yet settled, by any pass on any thread: run_first waits for them.
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._in_flight: Counter[tuple[str, str]] = Counter()
        self._claimed: set[tuple[str, str]] = set()  # (alert id, channel) of the rows counted in _in_flight

    def run_once(self, limit: int = 200, *, findings: Collection[tuple[str, str]] | None = None,
                 pause: Callable[[Sequence[OutboxRow]], None] | None = None) -> DeliveryReport:
        """Claim what is due now (of ``findings`` only, when given) and send it; each row ends delivered,
        backing off, or dead. ``pause`` is called with the rows of each send before it: the daemon's backlog waits
        there while an event is processed, so the pass keeps its size (and a burst its digest) without taking the
        event's CPU."""
        report = DeliveryReport()
        now = self.clock()
        with self._lock:  # claimed and counted in flight in one step: run_first never misses a row in between
            rows = self.store.claim_due(now, self.policy.lease, limit, findings=findings)
            # A row another pass still holds (a paused or slow pass outlived its lease) is that pass's to send.
            rows = [r for r in rows if (r.alert_id, r.channel) not in self._claimed]
            self._in_flight.update((r.check_id, r.resource_key) for r in rows)
            self._claimed.update((r.alert_id, r.channel) for r in rows)
        report.claimed = len(rows)
        try:
            self._send(rows, now, report, pause)
        finally:
            for row in rows:  # settled rows were released as they settled; this is for an exception's
                self._release(row)
        return report

    def holding(self, findings: Collection[tuple[str, str]]) -> bool:
        """Whether a pass has an alert of any of these findings claimed and not yet settled."""
        with self._lock:
            return any(self._in_flight.get(k, 0) > 0 for k in findings)

    def _release(self, row: OutboxRow) -> None:
        """``row`` is settled (or its pass is over): a waiting run_first may claim the finding's next alert."""
        with self._lock:
            if (row.alert_id, row.channel) not in self._claimed:
                return
            self._claimed.discard((row.alert_id, row.channel))
            key = (row.check_id, row.resource_key)
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]
            self._settled.notify_all()

    def run_first(self, findings: Collection[tuple[str, str]], patience: float) -> DeliveryReport:
        """Send these findings' due alerts now, ahead of any backlog, each finding's in its order.

        A finding whose earlier alert another pass has in flight (a backlog pass claimed its ``opened``) is
        waited for, at most ``patience`` seconds, so that its newer alert follows at once instead of queueing
        behind the backlog. A row that fails backs off as usual and is the scheduled passes' from then on."""
        report = DeliveryReport()
        keys = set(findings)
        deadline = time.monotonic() + patience
        while keys and time.monotonic() < deadline:
            step = self.run_once(findings=keys)
            report.add(step)
            if step.claimed:
                continue  # the finding's next alert may be due now that this one went
            with self._lock:
                keys = {k for k in keys if self._in_flight[k]}
                if keys:
                    self._settled.wait(max(0.0, min(0.5, deadline - time.monotonic())))
        return report

    def _send(self, rows: Sequence[OutboxRow], now: datetime, report: DeliveryReport,
              pause: Callable[[Sequence[OutboxRow]], None] | None = None) -> None:
        behind = self._dead_before(rows)
        by_channel: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            if row.alert_id in behind:
                self._failed(row, f"held: an earlier alert of this finding ({behind[row.alert_id]}) is in the "
                             "dead letter; plmon alerts --retry sends both, in order", retryable=False,
                             report=report)
                continue
            by_channel[row.channel].append(row)
        for name, batch in by_channel.items():
            channel = self.channels.get(name)
            if channel is None:
                for row in batch:
                    self._failed(row, "channel not configured any more", retryable=False, report=report)
                continue
            with self._lock:
                recent = self._recent[name]
                while recent and now - recent[0] > DIGEST_WINDOW:
                    recent.popleft()
                burst = len(batch) > 1 and len(recent) + len(batch) > channel.digest_threshold
            if burst:
                if pause is not None:
                    pause(batch)
                self._send_digest(channel, batch, report)
            else:
                for row in batch:
                    if pause is not None:
                        pause([row])
                    self._send_one(channel, row, report)

    def _dead_before(self, rows: Sequence[OutboxRow]) -> dict[str, str]:
        """Claimed rows whose finding has an earlier alert on the same channel in the dead letter, each with
        that alert's id: sending them would deliver the finding's alerts out of order."""
        if not rows:
            return {}
        dead: dict[tuple[str, str, str], OutboxRow] = {}
        for d in self.store.outbox(AlertStatus.FAILED):
            key = (d.check_id, d.resource_key, d.channel)
            if key not in dead or d.seq < dead[key].seq:
                dead[key] = d
        out: dict[str, str] = {}
        for row in rows:
            first = dead.get((row.check_id, row.resource_key, row.channel))
            if first is not None and first.seq < row.seq:
                out[row.alert_id] = first.alert_id
        return out

    def _send_one(self, channel: Channel, row: OutboxRow, report: DeliveryReport) -> None:
        try:
            channel.send(row)
        except DeliveryError as err:
            self._failed(row, str(err), retryable=err.retryable, report=report)
            return
        self._delivered(row, report)

    def _send_digest(self, channel: Channel, rows: Sequence[OutboxRow], report: DeliveryReport) -> None:
        try:
            channel.send_digest(rows)
        except DeliveryError as err:
            for row in rows:
                self._failed(row, f"digest: {err}", retryable=err.retryable, report=report)
            return
        report.digests += 1
        log.debug("alert_digest_sent", channel=channel.name, alerts=len(rows))
        for row in rows:
            self._delivered(row, report)

    def _delivered(self, row: OutboxRow, report: DeliveryReport) -> None:
        now = self.clock()
        self.store.mark_delivered(row.alert_id, row.channel, now)
        with self._lock:
            self._recent[row.channel].append(now)
        self._release(row)
        report.delivered += 1
        log.debug("alert_delivered", alert_id=row.alert_id, channel=row.channel, kind=row.kind,
                 check_id=row.check_id, attempts=row.attempts + 1)

    def _failed(self, row: OutboxRow, error: str, *, retryable: bool, report: DeliveryReport) -> None:
        attempts = row.attempts + 1
        if retryable and attempts < self.policy.max_attempts:
            retry_at = self.clock() + self.policy.delay(attempts, self.rng)
            report.retrying += 1
        else:
            retry_at = None
            report.dead += 1
        self.store.mark_attempt_failed(row.alert_id, row.channel, error=error, retry_at=retry_at)
        self._release(row)
        report.errors.append(f"{row.channel}: {error}")
        log.warning("alert_delivery_failed", alert_id=row.alert_id, channel=row.channel, attempts=attempts,
                    error=error, dead_letter=retry_at is None)

    def drain(self, timeout: float, *, sleep: Callable[[float], None] = time.sleep,
              max_wait: float = 5.0) -> DeliveryReport:
        """Send until nothing is pending (every row delivered or dead) or ``timeout`` seconds pass.

        Between passes it sleeps until the next row is due (at most ``max_wait``). Rows still pending
        at the deadline stay in the outbox for the next run (``plmon alerts --deliver``, the daemon)."""
        report = DeliveryReport()
        deadline = time.monotonic() + timeout
        while True:
            report.add(self.run_once())
            due = self.store.next_due()
            if due is None:
                return report
            left = deadline - time.monotonic()
            if left <= 0:
                return report
            wait = (due - self.clock()).total_seconds()
            sleep(min(max(wait, 0.01), max_wait, left))
