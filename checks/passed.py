"""Pass results (issue 16, item 6): which resources each check judged and found compliant.

Auditors take a PASS row as proof that a control was tested, so a pass is claimed only where the check's own
metadata says what it judges and plmon read everything that judgement touched:

- a check that judges one subject at a time (``@check(over=...)``) is run on a recording view of the snapshot
  (:mod:`plmon.checks.units`, the daemon's dependency recorder), so each subject's frame holds what that judgement
  read; a subject that yielded no issue passed, provided no read of its frame lies under a coverage gap (a read
  of a key inside a gap's scope, or of a whole collection of a type that has a gap anywhere), and no resource the
  subject's record names (an endpoint's target, its subnet) lies under a gap of a type the check declares reading:
  an endpoint whose target could not be read was not judged on its target's side, whatever the check concluded;
- a whole-tenant check that declares reading exactly one collection (``@check(reads=("rmpls",))``) judged each
  record of it; with several it judged their combination, which names no one resource, so it claims no pass;
- a subject that is not a resource of the snapshot (a derived group key) claims no pass either.

A check that raised claims nothing. A resource with a waived finding failed: it is never a pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from plmon.checks.engine import CheckSettings, Evaluation, Owners
from plmon.checks.registry import Check, all_checks
from plmon.checks.units import ALL, recording, state
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.kinds import KINDS, RECORDS
from plmon.monitor.model.snapshot import INDEX_SOURCES, CoverageGap, Resource, Snapshot

__all__ = ["PassedResult", "passed_results"]


@dataclass(frozen=True, slots=True)
class PassedResult:
    """One (check, resource) the check evaluated and found compliant; ``resource_id`` keeps ARM's spelling."""

    check_id: str
    resource_id: str
    subscription_id: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {"check_id": self.check_id, "resource_id": self.resource_id}


def _types_of(collections: Iterable[str]) -> set[str]:
    names = set(collections)
    return {k.key for k in KINDS if names & set(k.records)}


class _Gaps:
    """The coverage gaps a judgement must not touch, asked per read (hundreds of thousands of reads on a large
    tenant): a key is compared only with the gap scopes of its own subscription, and with those above any."""

    def __init__(self, gaps: Iterable[CoverageGap]) -> None:
        scopes = [(g.scope.lower().rstrip("/"), g.type.lower()) for g in gaps if not g.type.startswith("check:")]
        self.any = bool(scopes)
        self.types = {t for _, t in scopes}
        self.by_sub: dict[str, list[str]] = {}
        self.above: list[str] = []   # scopes not inside one subscription (the tenant, a management group)
        for scope, _ in scopes:
            parts = scope.split("/")
            if len(parts) > 2 and parts[1] == "subscriptions":
                self.by_sub.setdefault(parts[2], []).append(scope)
            else:
                self.above.append(scope)
        self.collections: dict[str, bool] = {}

    def touches(self, collection: str, key: object) -> bool:
        if not self.any:
            return False
        if key == ALL:
            hit = self.collections.get(collection)
            if hit is None:
                sources = INDEX_SOURCES.get(collection, (collection,) if collection in RECORDS else ())
                hit = self.collections[collection] = "*" in self.types or bool(_types_of(sources) & self.types)
            return hit
        if not isinstance(key, str) or not key.startswith("/"):
            return False
        parts = key.split("/", 3)
        scopes = self.by_sub.get(parts[2], ()) if len(parts) > 2 and parts[1] == "subscriptions" else ()
        return any(not scope or key == scope or key.startswith(scope + "/") for scope in (*scopes, *self.above))


def _references(value: Any, depth: int = 0) -> Iterator[ArmId]:
    """The ARM ids a record names (its connections' targets, its subnet...), a few levels deep."""
    if isinstance(value, ArmId):
        yield value
    elif depth > 3:
        return
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from _references(getattr(value, f.name), depth + 1)
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _references(v, depth + 1)


class _References:
    """Which coverage gaps the resources a record names lie under, by the collections each gap's type becomes;
    worked out once per record (a record is judged by many checks)."""

    def __init__(self, snap: Snapshot) -> None:
        self.gaps: list[tuple[str, frozenset[str] | None]] = []
        for g in snap.coverage.gaps:
            if g.type.startswith("check:"):
                continue
            kind = next((k for k in KINDS if k.key == g.type.lower()), None)
            # a gap of every type ("*") or of a type plmon has no row for blocks whatever the check reads
            self.gaps.append((g.scope.lower().rstrip("/"), None if g.type == "*" or kind is None
                              else frozenset(kind.records)))
        self.hits: dict[str, tuple[frozenset[str] | None, ...]] = {}

    def _hits(self, record: Resource) -> tuple[frozenset[str] | None, ...]:
        key = record.id.key
        found = self.hits.get(key)
        if found is None:
            out: list[frozenset[str] | None] = []
            for ref in {r.key for r in _references(record)} - {key}:
                for scope, collections in self.gaps:
                    if not scope or ref == scope or ref.startswith(scope + "/"):
                        out.append(collections)
            found = self.hits[key] = tuple(out)
        return found

    def blocked(self, record: Resource, reads: frozenset[str] | None) -> bool:
        """Whether ``record`` names a resource under a gap of a type the check declares reading."""
        if not self.gaps:
            return False
        return any(c is None or reads is None or bool(c & reads) for c in self._hits(record))


def _subject_key(subject: object) -> str | None:
    """The resource key a subject names: route subjects are ``kind\\0key``; other text subjects are keys."""
    if not isinstance(subject, str):
        return None
    return subject.rpartition("\0")[2]


def _judge_over(chk: Check, view: Snapshot, params: Mapping[str, Any]) -> tuple[dict[str, set[Any]], set[str]]:
    """Run an ``over`` check recording each subject's reads; the subjects and those that yielded an issue."""
    s = state()
    subjects: dict[str, set[Any]] = {}
    failed: set[str] = set()
    s.focus, s.subjects, s.reads, s.subject = None, subjects, set(), None
    try:
        for _issue in chk.fn(view, params):
            if s.subject is None:  # an issue outside any subject: the check is not per subject after all
                raise _NotPerSubject
            failed.add(s.subject)
    finally:
        s.focus = s.subjects = s.reads = None
        s.subject = None
    return subjects, failed


class _NotPerSubject(Exception):
    pass


def passed_results(snap: Snapshot, evaluation: Evaluation, settings: Mapping[str, CheckSettings] | None = None,
                   gaps: Iterable[CoverageGap] = ()) -> tuple[PassedResult, ...]:
    """Every (check, resource) pass of ``evaluation``'s checks over ``snap``, sorted by check then resource."""
    settings = settings or {}
    owners = Owners(snap)
    guard = _Gaps((*snap.coverage.gaps, *gaps))
    refs = _References(snap)
    errored = {g.type.removeprefix("check:") for g in (*evaluation.check_errors, *gaps) if g.type.startswith("check:")}
    failed_keys: dict[str, set[str]] = {}
    for f in (*evaluation.findings, *(w.finding for w in evaluation.waived)):
        failed_keys.setdefault(f.check_id, set()).add(f.key[1])
    registry = all_checks()
    view: Snapshot | None = None
    out: list[PassedResult] = []
    for check_id in evaluation.checks_run:
        chk = registry.get(check_id)
        if chk is None or check_id in errored:
            continue
        params = {**chk.defaults(), **settings.get(check_id, CheckSettings()).params}
        passed: set[str] = set()
        if chk.over:
            view = view or recording(snap)
            try:
                subjects, failed = _judge_over(chk, view, params)
            except Exception:  # a check that raises here raised in the evaluation too, or is not per subject
                continue
            for subject, reads in subjects.items():
                key = _subject_key(subject)
                record = owners.exact(key) if key is not None and subject not in failed else None
                if key is None or record is None:
                    continue
                if guard.touches("", key) or any(guard.touches(c, k) for c, k in reads):
                    continue
                if refs.blocked(record, chk.reads):
                    continue
                passed.add(key)
        elif chk.reads is not None and len(chk.reads) == 1:
            (collection,) = chk.reads
            if guard.touches(collection, ALL):
                continue
            passed = {key for key, rec in snap.records(collection).items() if not refs.blocked(rec, chk.reads)}
        passed -= failed_keys.get(check_id, set())
        for passed_key in passed:
            rec = owners.exact(passed_key)
            if rec is not None:
                out.append(PassedResult(check_id, rec.id.raw, rec.id.subscription))
    out.sort(key=lambda p: (p.check_id, p.resource_id.lower()))
    return tuple(out)
