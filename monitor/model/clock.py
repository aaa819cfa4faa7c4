"""One clock per source: the time that ``first_seen``, ``last_seen``, ``resolved_at`` and every age are on.

A live tenant's "now" is the wall clock. A recorded tenant is a photograph taken at its manifest's
``recorded_at`` (``shared/spec/recorded-tenant.md``): that is its "now" for every age computation, so a
finding opened by a scan of a recording is 0 minutes old in that scan, in ``plmon findings`` and in
``plmon report``, however long ago the folder was recorded. Mixing the two (first seen at
``recorded_at``, aged against the wall clock) made a finding opened a minute ago read ``29d 23h``.

Timers stay on the wall clock whatever the source: delivery backoff and leases, the intake's retry
delays, readiness, retention of the outbox and intake, and the staleness of Event Grid events (whose
``eventTime`` is wall time). Those take a plain ``Callable[[], datetime]``, never a :class:`Clock`.

Reading of the daemon serving a recorded folder (events arriving later in wall time): the recording's
time does not move while it is served, so every collection and every event-driven re-read happens at
``recorded_at``; findings that events open or resolve are stamped ``recorded_at``, no age grows, and
no reminder or ``pending_max_age`` escalation comes due until a newer recording (a later
``recorded_at``) is served. That keeps a store fed by ``plmon scan --from`` and ``plmon serve --from``
of the same folder on one clock, restart after restart, which an offset from the daemon's start time
would not (its clock would run backwards on each restart).

A store remembers which clock its last full scan was on (``ScanFigures.clock``), so the commands that
read the store alone (``plmon findings``, ``plmon report``) age its findings on that clock:
:func:`store_clock`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

__all__ = ["RECORDED", "WALL", "Clock", "RecordedClock", "WallClock", "source_clock", "store_clock", "utcnow"]

WALL: Literal["wall"] = "wall"
RECORDED: Literal["recorded"] = "recorded"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock(Protocol):
    """A source's "now" for findings and ages; ``kind`` says which (``wall`` or ``recorded``)."""

    @property
    def kind(self) -> str: ...

    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class WallClock:
    """A live source's clock; ``wall`` is injectable so a test's fake time drives ages too."""

    wall: Callable[[], datetime] = utcnow

    @property
    def kind(self) -> str:
        return WALL

    def now(self) -> datetime:
        return self.wall()


@dataclass(frozen=True, slots=True)
class RecordedClock:
    """A recorded tenant's clock: always its ``recorded_at``."""

    at: datetime

    @property
    def kind(self) -> str:
        return RECORDED

    def now(self) -> datetime:
        return self.at


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 with a ``Z`` or offset; naive times are taken as UTC. None when unparseable."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def source_clock(manifest: Mapping[str, Any] | None, wall: Callable[[], datetime] = utcnow) -> Clock:
    """The clock of the source ``manifest`` describes: its ``recorded_at`` when it has one, else ``wall``.

    A live source's manifest has no ``recorded_at``; nor may a hand-made folder, whose findings then
    have no recorded time to be on and take the wall clock, as the builder always did for them.
    """
    at = parse_time((manifest or {}).get("recorded_at"))
    return RecordedClock(at) if at is not None else WallClock(wall)


def store_clock(scans: Iterable[Any], wall: Callable[[], datetime] = utcnow) -> Clock:
    """The clock for ages read from a store alone: that of its last full scan, i.e. the ``recorded_at``
    of a recording (the time of that scan), else the wall clock.

    ``scans`` is the store's scan history (:class:`~plmon.monitor.state.store.ScanRecord` rows, oldest first).
    A store with no full scan yet, or one written before scans said their clock, is on the wall clock.
    """
    full = [s for s in scans if s.kind == "full"]
    if full and full[-1].figures.get("clock") == RECORDED:
        return RecordedClock(full[-1].at)
    return WallClock(wall)
