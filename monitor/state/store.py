"""The state store interface: what plmon remembers between scans, and nothing about how it is kept.

Two backends implement :class:`StateStore`: SQLite (:mod:`plmon.monitor.state.sqlite`, the default) and,
later, Azure Table Storage. So the interface speaks only in the records below: no SQL, no cursors, no
transactions exposed. Every write that must be atomic is one call taking one :class:`ChangeSet`
(a lifecycle transition and its outbox rows together), and every write is idempotent: alert ids are
derived from (finding key, transition, sequence), so applying the same change twice enqueues nothing
new. A backend with optimistic concurrency (ETags) maps ``expected_seq`` onto it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import orjson

__all__ = [
    "AlertStatus", "ChangeSet", "ConflictError", "FindingRecord", "FindingState", "JsonSafe", "OutboxRow",
    "ScanRecord", "StateStore", "alert_id", "iso", "parse_iso", "same_json", "spelling",
]


class FindingState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    WAIVED = "waived"


class AlertStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # dead letter: max attempts reached; ``retry_failed`` re-queues


class JsonSafe(dict[str, Any]):
    """A finding's dict whose maker checked that orjson says it as ``json`` does (str keys, no NaN or infinity, which
    orjson would write as null): a backend may serialise it with orjson, ~10x faster than ``json.dumps`` on the 13 MB
    SNAT finding of a hub appliance at 100k resources (issue 14); what orjson still refuses (an int beyond 64 bits)
    goes to ``json``. Equal to the plain dict it holds; a backend that knows nothing of it serialises any dict."""

    __slots__ = ()


def same_json(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are equal *and* would be stored as the same text, so that one's stored text (or dict)
    may stand for the other's. ``==`` is not enough: ``1 == 1.0 == True`` and ``0.0 == -0.0``, whose texts differ,
    so evidence that changed only so kept the old text. Mappings equal by ``==`` (dict, read-only proxies,
    :class:`JsonSafe`) are alike; scalars must be of one exact type (a float of one spelling). Conservative: mappings
    with their keys in another order count as different (the text is then made anew, as without this)."""
    if a is b:
        return True
    if a != b:   # in C, and most differences end here
        return False
    fa, fb = spelling(a), spelling(b)
    return fa == fb if fa is not None and fb is not None else _same_walk(a, b)


def spelling(obj: Any) -> bytes | None:
    """What :func:`same_json` compares of two values already equal by ``==``, in C: orjson writes 1, 1.0 and true
    (and 0.0, -0.0) apart. None for what orjson refuses (an int beyond 64 bits): then compare by same_json.
    A caller that compares one value many times may keep its spelling (half of each comparison)."""
    try:
        return orjson.dumps(obj, default=_spelled, option=_STRICT)
    except (TypeError, orjson.JSONEncodeError):
        return None


# Subclasses of str, int, dict and list go to _spelled too (a str enum is not a str here); keys need not be str.
_STRICT = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _spelled(obj: Any) -> Any:
    """For :func:`same_json`'s orjson: any mapping as a plain dict (all are one JSON object), anything else as its
    type and ``repr`` (a dataclass's fields, an id's spelling): two such objects compare alike only if they print
    alike."""
    if isinstance(obj, Mapping):
        return dict(obj)
    return ["\0object", type(obj).__module__, type(obj).__qualname__, repr(obj)]


def _same_walk(a: Any, b: Any) -> bool:
    """:func:`same_json` by walking both, for what orjson refuses (an int beyond 64 bits)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        tx, ty = type(x), type(y)
        if tx is str or tx is int or tx is bool or x is None:
            if tx is not ty:
                return False
        elif isinstance(x, Mapping):
            if not isinstance(y, Mapping) or len(x) != len(y):
                return False
            for (kx, vx), (ky, vy) in zip(x.items(), y.items(), strict=True):
                if type(kx) is not type(ky) or kx != ky:
                    return False
                stack.append((vx, vy))
        elif tx is list or tx is tuple:
            if (ty is not list and ty is not tuple) or len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif tx is float:
            if ty is not float or repr(x) != repr(y):
                return False
        elif tx is not ty or x != y:
            return False
    return True


class ConflictError(Exception):
    """A finding changed under us (another writer); the caller re-reads and recomputes."""


def iso(t: datetime) -> str:
    """One fixed-width UTC spelling, so stored times sort as text in every backend."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(s: str | None) -> datetime | None:
    if s is None:
        return None
    if len(s) == 27 and s[-1] == "Z" and s[19] == ".":  # iso()'s own spelling: ~10x faster than strptime,
        return datetime.fromisoformat(s[:-1]).replace(tzinfo=UTC)  # which the daemon paid per stored row
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def alert_id(check_id: str, resource_key: str, kind: str, seq: int, first_seen: datetime) -> str:
    """Stable per (finding key, transition, sequence): a receiver dedupes on it across retries.

    ``first_seen`` (fixed for a finding's lifetime in the store) keeps ids unique when a pruned
    finding appears again and its sequence starts over."""
    text = f"{check_id}\n{resource_key}\n{kind}\n{seq}\n{iso(first_seen)}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"plmon-{digest[:32]}"


@dataclass(frozen=True, slots=True)
class FindingRecord:
    check_id: str
    resource_key: str          # normalised resource id (checks.finding.finding_key)
    resource_id: str           # ARM's spelling, as last seen
    state: FindingState
    severity: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    last_alert_at: datetime | None  # last opened/reminder sent: reminders count from here
    seq: int                        # transitions so far; part of every alert id
    finding: Mapping[str, Any]      # the last evidence: the finding as in the scan document
    channels: tuple[str, ...] = ()  # channels told it is open: reminders and the resolve go there

    @property
    def key(self) -> tuple[str, str]:
        return self.check_id, self.resource_key


@dataclass(frozen=True, slots=True)
class OutboxRow:
    alert_id: str
    channel: str
    check_id: str
    resource_key: str
    seq: int
    kind: str                  # opened | resolved | reminder
    created_at: datetime
    payload: Mapping[str, Any]  # fixed at enqueue time: a retry sends the same body
    status: AlertStatus = AlertStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScanRecord:
    at: datetime
    subscriptions_scanned: int
    gaps: int
    by_check: Mapping[str, int]
    by_severity: Mapping[str, int]
    open_findings: int = 0
    kind: str = "full"   # full | targeted
    # What a report needs to state the scan honestly (schema 2; None/empty on rows written before):
    # the compliance figure and its resource counts, and ``figures`` = plmon.monitor.lifecycle.compliance.ScanFigures
    # as a dict (the gaps list with scope/type/code, subscriptions read, checks run, per-subscription counts).
    compliance_percent: float | None = None
    resources_evaluated: int | None = None
    resources_non_compliant: int | None = None
    figures: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Everything one lifecycle step writes, applied atomically by :meth:`StateStore.apply`.

    ``findings`` are upserts, each with the ``seq`` the writer read (``expected_seq``; None for a
    finding it believed new): a mismatch means a concurrent writer and raises :class:`ConflictError`
    with nothing written. ``outbox`` rows are inserted unless their (alert id, channel) exists.
    """

    findings: Sequence[tuple[FindingRecord, int | None]] = ()
    outbox: Sequence[OutboxRow] = ()
    scan: ScanRecord | None = None


class StateStore(Protocol):
    # --- findings and transitions -------------------------------------------------------------
    def get_finding(self, check_id: str, resource_key: str) -> FindingRecord | None: ...

    def findings(self, state: FindingState | None = None, *,
                 resource_keys: Collection[str] | None = None) -> list[FindingRecord]:
        """Every finding (in ``state``), ordered by (check id, resource key); with ``resource_keys``, only those about
        these resources, so that the lifecycle of an event reads what the event touched, not every finding."""
        ...

    def open_counts(self) -> dict[str, int]:
        """Open findings by severity: the daemon's gauge after each event, without reading every finding."""
        ...

    def apply(self, change: ChangeSet) -> None: ...

    # --- connection observations ---------------------------------------------------------------
    def observe(self, seen: Iterable[tuple[str, str]], at: datetime) -> None:
        """Record (subject key, lower status) as seen at ``at``; the first time is kept."""
        ...

    def observations(self, keys: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], datetime]: ...

    # --- scan history --------------------------------------------------------------------------
    def scan_history(self, since: datetime | None = None) -> list[ScanRecord]: ...

    # --- outbox --------------------------------------------------------------------------------
    def claim_due(self, now: datetime, lease: timedelta, limit: int = 100, *,
                  findings: Collection[tuple[str, str]] | None = None) -> list[OutboxRow]:
        """Pending rows due at ``now`` whose earlier rows (same finding and channel) are settled,
        oldest first, leased until ``now + lease`` so another worker does not send them meanwhile.

        With ``findings`` ((check id, resource key) pairs), only the rows of those findings: the daemon sends
        the alerts an event caused ahead of a backlog (a first collection's thousands) this way, and the
        order per finding still holds because it is the store, not the caller, that withholds later rows."""
        ...

    def mark_delivered(self, alert_id: str, channel: str, at: datetime) -> None: ...

    def mark_attempt_failed(self, alert_id: str, channel: str, *, error: str,
                            retry_at: datetime | None) -> None:
        """Count an attempt; ``retry_at`` None moves the row to the dead letter (FAILED)."""
        ...

    def outbox(self, status: AlertStatus | None = None) -> list[OutboxRow]: ...

    def retry_failed(self, now: datetime, alert_ids: Iterable[str] | None = None) -> int: ...

    def next_due(self) -> datetime | None: ...

    # --- housekeeping --------------------------------------------------------------------------
    def prune(self, older_than: datetime) -> int: ...

    def close(self) -> None: ...
