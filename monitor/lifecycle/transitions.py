"""The finding lifecycle: what a scan's findings change in the store, and which alerts that owes.

A finding opens the first time it is seen, reminds every ``reminder_interval`` while open, and
resolves when a collection that *covered* it no longer produces it. Each step of one scan, the scan's
history row and every outbox row it owes go to the store as one :class:`~plmon.monitor.state.store.ChangeSet`,
written in one transaction: a crash leaves either the whole transition with its alerts or none of it.

Coverage rule (when may an absent finding resolve?). Absence proves nothing unless plmon looked:
1. its check ran this time and did not fail (a ``check:<id>`` error, or a check disabled since,
   leaves its findings as they were);
2. no coverage gap's scope contains the resource, whatever the gap's type: a check judges a subject
   by several lists (an endpoint by its subnet, route table, DNS zones), so a gap of any type inside
   the subject's scope makes its absence unreliable. A gap at scope ``/`` (the subscription list
   itself failed, a malformed body) therefore blocks every resolve;
3. the resource lies in a subscription this collection read, or it (or its parent) was read by id as
   a target and came back (a 404 counts: the resource is deleted, so the finding is resolved), or
   the collection had no gap at all. Otherwise the finding may only be invisible because whatever
   pointed at it sat in an unreadable scope.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from plmon.alerts.bounds import bounded_finding
from plmon.alerts.outbox import Route, outbox_rows, wanting
from plmon.checks.engine import Evaluation
from plmon.checks.finding import Finding, subscription_of
from plmon.monitor.lifecycle.compliance import scan_figures
from plmon.monitor.model.clock import utcnow
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.scan import ScanResult
from plmon.monitor.state.store import (
    ChangeSet,
    ConflictError,
    FindingRecord,
    FindingState,
    JsonSafe,
    OutboxRow,
    ScanRecord,
    StateStore,
    same_json,
    spelling,
)

__all__ = ["LargeDicts", "Transition", "apply_scan", "apply_targeted", "counts", "resolution_blocker"]

log = structlog.get_logger(__name__)

DEFAULT_REMINDER = timedelta(hours=24)

# An event's lifecycle turns the findings it moved into the store's dicts (Finding.to_dict). A hub appliance's SNAT
# finding at 100k resources lists ~9k paths: its to_dict took ~0.1 s, and its open, resolve and reopen each made it
# anew though the finding was equal to the one before. The last few such large findings (evidence lists of at least
# _LARGE_ITEMS items in all) keep their dict in a LargeDicts that the daemon owns and passes in (not a process-wide
# cache: two daemons or stores in one process never share it), reused while the finding stays equal; the store then
# knows its text. A route table's udr-bypassed finding lists 200-600 endpoints (0.2-1.2 MB of text): below the first
# threshold of 1000 it was made (~3 ms), serialised (~2 ms) and written (~1 MB of WAL) anew at every reopen; a vnet
# event moves two findings, so four are kept.
_LARGE_ITEMS = 100
_KEEP_LARGE = 4


def _items(evidence: Mapping[str, Any]) -> int:
    return sum(len(v) for v in evidence.values() if isinstance(v, list | tuple))


class LargeDicts:
    """The dicts made last for an event's large findings, by finding key (see above), and what their alerts carry of
    them (:meth:`bounded`); thread-safe."""

    def __init__(self) -> None:
        # key -> (finding, its dict, the spelling of its evidence once a comparison needed it)
        self._kept: OrderedDict[tuple[str, str], tuple[Finding, dict[str, Any], bytes | None]] = OrderedDict()
        # id(a kept dict) -> (that dict, bounded_finding of it): its open, resolve and reopen alerts bound it once.
        # The dict is held here, so its id is not reused while it is; only the kept dicts' entries stay.
        self._bounded: dict[int, tuple[Mapping[str, Any], tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
        self._lock = threading.Lock()

    def bounded(self, finding: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """:func:`~plmon.alerts.bounds.bounded_finding` of a record's finding, made once for a dict kept here: a resolve
        alerts with the very dict its open wrote (the store hands it back), and an equal reopen gets it again from
        :meth:`dict_of` (a route table's finding of ~600 endpoints took ~3 ms to bound). Nobody mutates either: the
        payloads only carry them to the store and the channels. The cuts are a copy for each payload."""
        with self._lock:
            hit = self._bounded.get(id(finding))
            kept = any(entry[1] is finding for entry in self._kept.values())
        if hit is not None and hit[0] is finding:
            return hit[1][0], list(hit[1][1])
        made = bounded_finding(finding)
        if kept:
            with self._lock:
                live = {id(entry[1]) for entry in self._kept.values()}
                self._bounded = {k: v for k, v in self._bounded.items() if k in live}
                if id(finding) in live:
                    self._bounded[id(finding)] = (finding, made)
        return made[0], list(made[1])

    def dict_of(self, f: Finding) -> dict[str, Any]:
        """The dict made last for an equal large finding (one that writes the same text), or one made by
        :func:`large_dict` (a route table's udr-bypassed finding lists ~600 endpoints at 100k resources)."""
        key = (f.check_id, f.resource_id)
        with self._lock:
            hit = self._kept.get(key)
        if hit is not None:
            if hit[0] is f:
                return hit[1]
            if hit[0] == f:   # equal; the same text too? Its evidence's spelling is kept for the next comparison
                was = hit[2] if hit[2] is not None else spelling(hit[0].evidence)
                now = spelling(f.evidence)
                same = was == now if was is not None and now is not None else _same_finding(hit[0], f)
                if same:
                    with self._lock:
                        self._kept[key] = (f, hit[1], now)
                    return hit[1]
        as_dict = large_dict(f)
        if _items(f.evidence) < _LARGE_ITEMS:
            return as_dict
        with self._lock:
            self._kept[key] = (f, as_dict, None)
            self._kept.move_to_end(key)
            while len(self._kept) > _KEEP_LARGE:
                self._kept.popitem(last=False)
        return as_dict


def _same_finding(a: Finding, b: Finding) -> bool:
    """Equal, and the same dict when written: evidence that changed only from ``1`` to ``1.0`` or ``True`` is equal
    by ``==`` but not by its text (:func:`~plmon.monitor.state.store.same_json`)."""
    return a == b and all(same_json(getattr(a, name), getattr(b, name)) for name in _FINDING_FIELDS)


_FINDING_FIELDS = tuple(f.name for f in fields(Finding))


def large_dict(f: Finding) -> dict[str, Any]:
    """``f.to_dict()`` as a :class:`~plmon.monitor.state.store.JsonSafe` when every value in it is plain JSON
    (:meth:`Finding.json_dict`): the store then serialises it with orjson, ~10x faster than ``json`` on the 13 MB SNAT
    finding of a hub appliance at 100k resources (issue 14)."""
    as_dict, plain = f.json_dict()
    return JsonSafe(as_dict) if plain else as_dict


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one finding; ``alerts`` = how many outbox rows (channels) it queued."""

    kind: str  # opened | reopened | resolved | reminder | severity_changed | waived
    check_id: str
    resource_key: str
    resource_id: str
    severity: str
    previous_severity: str | None = None
    alerts: int = 0


def resolution_blocker(snapshot: Snapshot, evaluation: Evaluation) -> Callable[[FindingRecord], str | None]:
    """The coverage rule of the module docstring: None when an absent finding may resolve, else why not."""
    failed = {g.type.removeprefix("check:") for g in evaluation.check_errors}
    ran = set(evaluation.checks_run)
    scanned = {s.lower() for s in snapshot.subscriptions}
    no_gaps = not snapshot.coverage.gaps

    def blocker(rec: FindingRecord) -> str | None:
        if rec.check_id in failed:
            return "check failed this time"
        if rec.check_id not in ran:
            return "check not run"
        gap = snapshot.coverage.gap_for(rec.resource_key)
        if gap is not None:
            return f"coverage gap {gap.code} at {gap.scope}"
        sub = subscription_of(rec.resource_id)
        if sub is not None and sub.lower() in scanned:
            return None
        if any(rec.resource_key == t or rec.resource_key.startswith(t + "/") for t in snapshot.targets):
            return None
        return None if no_gaps else "outside the subscriptions read, and the collection had gaps"

    return blocker


def _new_record(f: Finding, now: datetime, state: FindingState, as_dict: Mapping[str, Any] | None = None
                ) -> FindingRecord:
    """``as_dict``: ``f.to_dict()`` when the caller made it already (a hub firewall's finding lists ~9k paths at
    100k resources: each to_dict of it took ~0.1-0.3 s)."""
    return FindingRecord(check_id=f.check_id, resource_key=f.key[1], resource_id=f.resource_id, state=state,
                         severity=f.severity.value, first_seen=now, last_seen=now, resolved_at=None,
                         last_alert_at=None, seq=0, finding=f.to_dict() if as_dict is None else as_dict)


class _Plan:
    """Accumulates the records, outbox rows and transitions of one lifecycle step."""

    def __init__(self, routes: Sequence[Route], tenant_id: str | None, now: datetime, queued_at: datetime,
                 large: LargeDicts | None = None) -> None:
        self.routes, self.tenant_id, self.now, self.queued_at = routes, tenant_id, now, queued_at
        self.bound = large.bounded if large is not None else None
        self.records: list[tuple[FindingRecord, int | None]] = []
        self.rows: list[OutboxRow] = []
        self.transitions: list[Transition] = []

    def put(self, old: FindingRecord | None, new: FindingRecord, kind: str | None = None,
            channels: Iterable[str] = (), previous_severity: str | None = None) -> None:
        self.records.append((new, old.seq if old else None))
        if kind is None:
            return
        rows = []
        if kind in ("opened", "reopened", "resolved", "reminder"):
            wire = "opened" if kind == "reopened" else kind
            rows = outbox_rows(new, wire, self.now, channels, tenant_id=self.tenant_id,
                               previous_severity=previous_severity, queued_at=self.queued_at, bound=self.bound)
        elif channels:  # an escalation tells the channels it newly reaches that the finding is open
            rows = outbox_rows(new, "opened", self.now, channels, tenant_id=self.tenant_id,
                               previous_severity=previous_severity, queued_at=self.queued_at, bound=self.bound)
        self.rows.extend(rows)
        self.transitions.append(Transition(kind, new.check_id, new.resource_key, new.resource_id, new.severity,
                                           previous_severity, len(rows)))


def _plan(store: StateStore, findings: Sequence[Finding], waived: Sequence[Finding], now: datetime, *,
          routes: Sequence[Route], tenant_id: str | None, reminder_interval: timedelta,
          may_resolve: Callable[[FindingRecord], bool], queued_at: datetime,
          resource_keys: Collection[str] | None = None, large: LargeDicts | None = None) -> _Plan:
    """``resource_keys``: every finding given and every one that may resolve is about these resources, so only
    their records are read (an event's step), not every finding of the tenant; ``large``: its large findings' dicts
    kept across steps."""
    plan = _Plan(routes, tenant_id, now, queued_at, large)

    def to_dict(f: Finding) -> dict[str, Any]:
        if resource_keys is None:   # a full scan writes every finding: nothing to keep
            return f.to_dict()
        return large.dict_of(f) if large is not None else large_dict(f)

    known = {r.key: r for r in store.findings(resource_keys=resource_keys)}
    seen: set[tuple[str, str]] = set()

    for f in findings:
        seen.add(f.key)
        old = known.get(f.key)
        sev = f.severity.value
        want = wanting(routes, f.check_id, sev, f.subscription_id)
        if old is None or old.state != FindingState.OPEN:
            as_dict = to_dict(f)
            base = old or _new_record(f, now, FindingState.OPEN, as_dict)
            new = replace(base, state=FindingState.OPEN, severity=sev, resource_id=f.resource_id,
                          last_seen=now, resolved_at=None, last_alert_at=now, seq=base.seq + 1,
                          finding=as_dict, channels=tuple(sorted(want)))
            plan.put(old, new, "opened" if old is None else "reopened", want)
            continue
        changed = sev != old.severity
        reminder_due = old.last_alert_at is None or now - old.last_alert_at >= reminder_interval
        if changed:
            newly = want - set(old.channels)
            new = replace(old, severity=sev, resource_id=f.resource_id, last_seen=now, finding=to_dict(f),
                          seq=old.seq + 1, channels=tuple(sorted(set(old.channels) | newly)),
                          last_alert_at=now if newly else old.last_alert_at)
            plan.put(old, new, "severity_changed", newly, previous_severity=old.severity)
        elif reminder_due and (want or old.channels):
            recipients = want | set(old.channels)
            new = replace(old, resource_id=f.resource_id, last_seen=now, finding=to_dict(f), seq=old.seq + 1,
                          last_alert_at=now, channels=tuple(sorted(recipients)))
            plan.put(old, new, "reminder", recipients)
        else:
            plan.put(old, replace(old, resource_id=f.resource_id, last_seen=now, finding=to_dict(f)))

    for f in waived:
        seen.add(f.key)
        old = known.get(f.key)
        if old is None:
            new = replace(_new_record(f, now, FindingState.WAIVED), seq=1)
            plan.put(None, new, "waived")
        elif old.state != FindingState.WAIVED:
            new = replace(old, state=FindingState.WAIVED, severity=f.severity.value, last_seen=now,
                          finding=to_dict(f), seq=old.seq + 1, channels=(), resolved_at=None)
            plan.put(old, new, "waived")
        else:
            plan.put(old, replace(old, last_seen=now, finding=to_dict(f)))

    for key, old in known.items():
        if key in seen or old.state == FindingState.RESOLVED or not may_resolve(old):
            continue
        new = replace(old, state=FindingState.RESOLVED, resolved_at=now, seq=old.seq + 1, channels=())
        # A waived finding that disappears resolves quietly: nobody was told it was open.
        plan.put(old, new, "resolved", old.channels if old.state == FindingState.OPEN else ())
    return plan


def _commit(store: StateStore, build: Callable[[], _Plan],
            scan: Callable[[_Plan], ScanRecord | None]) -> list[Transition]:
    """Write one plan atomically; on a concurrent writer's conflict, re-read and plan again."""
    for attempt in range(5):
        plan = build()
        try:
            store.apply(ChangeSet(findings=plan.records, outbox=plan.rows, scan=scan(plan)))
        except ConflictError as err:
            log.warning("lifecycle_conflict", attempt=attempt + 1, error=str(err))
            continue
        for t in plan.transitions:
            log.debug("finding_transition", kind=t.kind, check_id=t.check_id, resource_id=t.resource_id,
                     severity=t.severity, alerts=t.alerts)
        return plan.transitions
    raise ConflictError("the state store kept changing under the lifecycle; giving up after 5 attempts")


def apply_scan(store: StateStore, result: ScanResult, now: datetime | None = None, *,
               routes: Sequence[Route] = (), reminder_interval: timedelta = DEFAULT_REMINDER,
               wall: Callable[[], datetime] = utcnow) -> list[Transition]:
    """Apply a full collection's findings: open, remind, escalate, waive and (where covered) resolve.

    ``now`` (default: the snapshot's time, on the source's clock) stamps the findings and times their
    reminders; ``wall`` times the alerts' delivery (:mod:`plmon.monitor.model.clock`).
    """
    snap, ev = result.snapshot, result.evaluation
    now = now or snap.taken_at
    blocker = resolution_blocker(snap, ev)

    def may_resolve(rec: FindingRecord) -> bool:
        why = blocker(rec)
        if why is not None:
            log.info("resolve_held", check_id=rec.check_id, resource_id=rec.resource_id, reason=why)
        return why is None

    def build() -> _Plan:
        return _plan(store, ev.findings, [w.finding for w in ev.waived], now, routes=routes,
                     tenant_id=snap.tenant_id, reminder_interval=reminder_interval, may_resolve=may_resolve,
                     queued_at=wall())

    figures = scan_figures(result)  # a report from the store alone states this scan's figure and coverage

    def scan(plan: _Plan) -> ScanRecord:
        states = {r.key: r.state for r in store.findings()}
        states.update({r.key: r.state for r, _ in plan.records})
        return ScanRecord(at=now, subscriptions_scanned=snap.coverage.subscriptions_scanned,
                          gaps=len(result.gaps), by_check=dict(Counter(f.check_id for f in ev.findings)),
                          by_severity=dict(Counter(f.severity.value for f in ev.findings)),
                          open_findings=sum(1 for s in states.values() if s == FindingState.OPEN),
                          compliance_percent=figures.compliance_percent,
                          resources_evaluated=figures.resources_evaluated,
                          resources_non_compliant=figures.resources_non_compliant, figures=figures.to_dict())

    return _commit(store, build, scan)


def apply_targeted(store: StateStore, snapshot: Snapshot, evaluation: Evaluation, *,
                   check_ids: Iterable[str], resource_keys: Iterable[str], now: datetime | None = None,
                   routes: Sequence[Route] = (), reminder_interval: timedelta = DEFAULT_REMINDER,
                   wall: Callable[[], datetime] = utcnow, large: LargeDicts | None = None) -> list[Transition]:
    """Apply the result of re-running ``check_ids`` for ``resource_keys`` (the daemon, after an event).

    ``large``: the daemon's :class:`LargeDicts`, so an equal large finding is not turned into a dict again.

    Only findings inside that scope (check id in ``check_ids`` and resource key in ``resource_keys``)
    may resolve; everything else keeps its state, whatever the partial evaluation left out. New
    findings for other resources that the partial evaluation happened to produce are still opened.
    """
    checks, keys = set(check_ids), {k.lower() for k in resource_keys}
    now = now or snapshot.taken_at
    blocker = resolution_blocker(snapshot, evaluation)

    def may_resolve(rec: FindingRecord) -> bool:
        return rec.check_id in checks and rec.resource_key in keys and blocker(rec) is None

    # The records to read: those that may resolve (above) and those of the findings given, whatever their key.
    touched = keys | {f.key[1] for f in evaluation.findings} | {w.finding.key[1] for w in evaluation.waived}

    def build() -> _Plan:
        return _plan(store, evaluation.findings, [w.finding for w in evaluation.waived], now, routes=routes,
                     tenant_id=snapshot.tenant_id, reminder_interval=reminder_interval, may_resolve=may_resolve,
                     queued_at=wall(), resource_keys=touched, large=large)

    return _commit(store, build, lambda _plan: None)


def counts(transitions: Iterable[Transition]) -> Mapping[str, int]:
    """Transitions by kind, for a log line or a CLI summary."""
    return dict(Counter(t.kind for t in transitions))
