"""Incremental evaluation: after an event, judge again only the units of work it touched (issue 14, item 3).

:class:`Units` is the daemon's evaluator. :meth:`Units.full` runs every enabled check on a recording view of the
snapshot (:mod:`plmon.checks.units`) and keeps, per check, the findings of each subject it judged, what each
subject read, and the shared work it used; :meth:`Units.update` takes the previous and the new snapshot, finds
what changed, and re-runs ``over`` checks focused on the subjects whose reads changed and whole checks whose
declared ``reads`` meet a changed collection, replacing exactly those units' findings. The result is the
:class:`~plmon.checks.engine.Evaluation` a full evaluation of the new snapshot gives (the differential test,
tests/checks/test_incremental.py, holds it to that).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import pairwise
from operator import itemgetter

from plmon.checks.engine import CheckSettings, Evaluation, _sort_key, finding_of, settle
from plmon.checks.engine import log as engine_log
from plmon.checks.finding import Finding
from plmon.checks.registry import Check, all_checks
from plmon.checks.units import (
    ALL,
    GROUP,
    MAPPED,
    MEMO,
    Read,
    ReadSet,
    Reverse,
    _Indexes,
    _Memo,
    _update_indexes,
    compact,
    context_changed,
    diff,
    recording,
    state,
)
from plmon.checks.waivers import Waiver
from plmon.monitor.model.snapshot import INDEX_SOURCES, CoverageGap, Snapshot

__all__ = ["Units", "UpdateReport"]

_KEY = itemgetter(1)   # a merge order entry's finding key
_WHOLE: str | None = None   # the unit of a whole-tenant check (and of an over check's issues outside a subject)


@dataclass(frozen=True, slots=True)
class UpdateReport:
    """What one :meth:`Units.update` did: the checks it ran (whole or focused) and how much it re-judged."""

    checks: frozenset[str]
    changed: int
    subjects: int
    whole: tuple[str, ...]
    full: bool = False
    # Resource keys of the findings (of ``checks``) that the re-judged units changed, gained or lost; None after a
    # full evaluation. The daemon's lifecycle looks at those instead of comparing two whole evaluations.
    moved: frozenset[str] | None = None


class Units:
    """One tenant's evaluation, kept as units of work across events."""

    def __init__(self, settings: Mapping[str, CheckSettings] | None = None, waivers: tuple[Waiver, ...] = ()) -> None:
        self.settings = dict(settings or {})
        self.waivers = waivers
        self._reset()

    def _reset(self) -> None:
        self.memo = _Memo()
        self.indexes = _Indexes(track=True)
        self.deps = Reverse()                                # read -> subjects that made it
        self.known: dict[str, ReadSet] = {}                  # subject -> its reads in deps (~90k at 100k)
        self.pre: dict[str, frozenset[Read]] = {}            # over check -> reads outside any subject
        self.whole_only: set[str] = set()                    # over checks that yielded outside a subject
        # check -> subject -> (finding key, finding): the key is parsed once, not on every event's merge
        self.found: dict[str, dict[str | None, list[tuple[tuple[str, str], Finding]]]] = {}
        # resource key -> the findings in ``found`` about it (the lifecycle asks by resource after each event)
        self.by_resource: dict[str, list[Finding]] = {}
        # the keys of ``by_resource`` by the top-level resource they are (or are below): the lifecycle asks after
        # each event for the keys below the reread resources, which scanned all ~50k keys (~5 ms an event)
        self.tops: dict[str, set[str]] = {}
        self.errors: dict[str, CoverageGap] = {}
        self.snapshot: Snapshot | None = None
        # The last evaluation's findings by key and in their final order, updated per re-judged unit (None: merge
        # everything again). Only while every key has one producer and no two findings tie in the order: then the
        # merge's first-wins rule and the stable sort's tie order cannot matter.
        self.merged: dict[tuple[str, str], Finding] | None = None
        self.order: list[tuple[tuple[int, str, str], tuple[str, str]]] = []
        # the findings of ``order``, in it: the evaluation is a copy of this list in C, where a lookup per finding of
        # the ~50k at 100k resources took ~3 ms of every event
        self.ordered: list[Finding] = []
        self.moved: list[tuple[list[tuple[tuple[str, str], Finding]], list[tuple[tuple[str, str], Finding]]]] = []

    def _enabled(self) -> list[Check]:
        return [c for c in all_checks().values() if self.settings.get(c.id, CheckSettings()).enabled]

    # --- running ----------------------------------------------------------------------------------
    def _run(self, chk: Check, view: Snapshot, focus: frozenset[str] | None) -> None:
        """Run ``chk`` (focused on ``focus``, or on everything) and replace its units' findings."""
        conf = self.settings.get(chk.id, CheckSettings())
        params = {**chk.defaults(), **conf.params}
        base = conf.severity or chk.severity
        s = state()
        over = bool(chk.over) and chk.id not in self.whole_only
        subjects: dict[str, set[Read]] = {}
        pre: set[Read] = set()
        produced: dict[str | None, list[tuple[tuple[str, str], Finding]]] = {}
        s.focus = focus if over else None
        s.subjects = subjects if over else None
        s.reads = pre if over else None
        s.subject = None
        self.errors.pop(chk.id, None)
        try:
            for issue in chk.fn(view, params):
                f = finding_of(chk, issue, base, view.tenant_id)
                produced.setdefault(s.subject if over else _WHOLE, []).append((f.key, f))
        except Exception as err:
            engine_log.exception("check_failed", check_id=chk.id)  # as the engine logs it
            self.errors[chk.id] = CoverageGap("/", f"check:{chk.id}", "CheckError", None, repr(err)[:300])
        finally:
            s.focus = s.subjects = s.reads = None
            s.subject = None
        units = self.found.setdefault(chk.id, {})
        gone: list[tuple[tuple[str, str], Finding]] = []
        if focus is None:
            for items in units.values():
                gone += items
            units.clear()
            if over:
                self.pre[chk.id] = frozenset(pre)
        else:
            for key in focus:
                gone += units.pop(key, [])
            for other in produced.keys() - focus:   # the unit outside any subject (a run focused elsewhere redoes it)
                gone += units.get(other, [])
        units.update(produced)
        came = [kf for items in produced.values() for kf in items]
        self.moved.append((gone, came))
        by = self.by_resource
        for fkey, f in gone:
            held = by.get(fkey[1])
            if held is not None:
                for i, x in enumerate(held):
                    if x is f:   # by identity: equality of findings compares their evidence
                        del held[i]
                        break
                if not held:
                    del by[fkey[1]]
                    top = _top(fkey[1])
                    keys = self.tops[top]
                    keys.discard(fkey[1])
                    if not keys:
                        del self.tops[top]
        for fkey, f in came:
            held = by.get(fkey[1])
            if held is None:
                by[fkey[1]] = [f]
                self.tops.setdefault(_top(fkey[1]), set()).add(fkey[1])
            else:
                held.append(f)
        if over and _WHOLE in produced:
            self.whole_only.add(chk.id)   # not judged per subject after all: re-run whole from now on
        interned = self.memo.interned
        for key, reads in subjects.items():
            known = self.known.get(key)
            fresh: Iterable[Read] = reads
            if known is not None:   # a subject judged again mostly reads what it read before: only the rest is new
                # a set difference in C where the subject keeps a frozenset (a subject that reads hundreds of
                # records: walked one by one in Python, each event that judged it again paid for all of them)
                fresh = reads.difference(known) if type(known) is frozenset else [r for r in reads if r not in known]
                if not fresh:
                    continue
            # A read of the subject's own key (its record, its index entry) needs no reverse entry: update() judges
            # every changed text key again anyway (~90k of the ~370k subject reads at 100k resources). A read of
            # shared work (a tuple key) is never the subject's own: no compare.
            if isinstance(key, str):
                fresh = [r for r in fresh if type(r[1]) is not str or r[1] != key]
                if not fresh:
                    continue
            # equal reads kept once (a subnet or a memo entry is read by thousands of subjects, each frame making its
            # own tuple): ~100k tuples at 100k resources
            fresh = [interned.setdefault(r, r) for r in fresh]
            if known is None:
                self.known[key] = compact(fresh, len(fresh))
            else:
                self.known[key] = compact((*known, *fresh), len(known) + len(fresh))
            self.deps.add(key, fresh, lambda: self.known.items())

    def _knows(self, subject: str, r: Read) -> bool:
        known = self.known.get(subject)
        return known is not None and r in known

    def _active(self, on: bool) -> None:
        s = state()
        s.memo, s.indexes = (self.memo, self.indexes) if on else (None, None)
        if not on:
            self.memo.unshare()
            self.memo.drop_transient()

    def _evaluation(self, snap: Snapshot, checks: list[Check]) -> Evaluation:
        run = [chk.id for chk in checks]
        errors = tuple(self.errors[c] for c in run if c in self.errors)
        moved, self.moved = self.moved, []
        if self.waivers or self.merged is None or not self._merge(moved):
            return self._merge_all(snap, checks, errors)
        return Evaluation(tuple(self.ordered), (), errors, tuple(run))

    def _merge(self, moved: list[tuple[list[tuple[tuple[str, str], Finding]], list[tuple[tuple[str, str], Finding]]]]
               ) -> bool:
        """Apply the re-judged units' findings to the last merge; False when the result could depend on which
        producer comes first or on the sort's tie order (then everything is merged again)."""
        merged, order, ordered = self.merged, self.order, self.ordered
        assert merged is not None
        if len(ordered) != len(order):   # an order set without its findings: made from it once
            ordered = self.ordered = list(map(merged.__getitem__, map(_KEY, order)))
        for gone, _ in moved:
            for key, f in gone:
                if merged.get(key) is not f:
                    return False
                del merged[key]
                i = bisect.bisect_left(order, (_sort_key(f), key))
                del order[i]
                del ordered[i]
        for _, came in moved:
            for key, f in came:
                if key in merged:
                    return False
                merged[key] = f
                entry = (_sort_key(f), key)
                i = bisect.bisect_left(order, entry)
                if (i < len(order) and order[i][0] == entry[0]) or (i and order[i - 1][0] == entry[0]):
                    return False
                order.insert(i, entry)
                ordered.insert(i, f)
        return True

    def _merge_all(self, snap: Snapshot, checks: list[Check], errors: tuple[CoverageGap, ...]) -> Evaluation:
        findings: dict[tuple[str, str], Finding] = {}
        unique = True
        run = [chk.id for chk in checks]
        for chk in checks:
            units = self.found.get(chk.id, {})
            if chk.over and not set(chk.over) & set(MAPPED):
                # subjects an index derives are judged in their text order (units.each_key): so are duplicates kept
                units = dict(sorted(units.items(), key=lambda kv: str(kv[0])))
            for items in units.values():
                for key, f in items:
                    if findings.setdefault(key, f) is not f:
                        unique = False
        ev = settle(snap, findings.values(), self.waivers, errors, run)
        self.merged, self.order, self.ordered = None, [], []
        if unique and not self.waivers:
            order = sorted((_sort_key(f), key) for key, f in findings.items())
            if all(a[0] != b[0] for a, b in pairwise(order)):
                self.merged, self.order, self.ordered = findings, order, list(map(findings.__getitem__,
                                                                                  map(_KEY, order)))
        return ev

    # --- the two entry points ---------------------------------------------------------------------
    def full(self, snap: Snapshot) -> Evaluation:
        """Every enabled check over ``snap``, recording the units of work and what each read."""
        self._reset()
        view = recording(snap)
        checks = self._enabled()
        self._active(True)
        try:
            for chk in checks:
                self._run(chk, view, None)
        finally:
            self._active(False)
        self.snapshot = snap
        return self._evaluation(snap, checks)

    def update(self, old: Snapshot, new: Snapshot, hint: Mapping[str, frozenset[str] | None] | None = None
               ) -> tuple[Evaluation, UpdateReport]:
        """The evaluation of ``new``, judging again only what changed since ``old`` (the last evaluated);
        ``hint``: the keys a relink of ``old`` into ``new`` may have changed (:func:`~plmon.checks.units.diff`)."""
        checks = self._enabled()
        if self.snapshot is None or old is not self.snapshot or context_changed(old, new):
            ev = self.full(new)
            return ev, UpdateReport(frozenset(c.id for c in checks), -1, -1, (), True)
        changed = diff(old, new, hint)
        view = recording(new)
        self._active(True)
        done = False
        try:
            # Shared work reads indexes and some indexes derive from shared work (a route check's subjects from an
            # endpoint's paths): invalidate and re-derive until nothing more moves.
            frontier = set(changed)
            while frontier:
                dropped = self.memo.invalidate(frontier | {(c, ALL) for c, _ in frontier})
                frontier.update(dropped)
                changed.update(dropped)
                moved = _update_indexes(self.indexes, view, frontier)
                frontier = moved - changed
                changed |= moved
                if not frontier and self.memo.stale:   # what an early cut-off kept waiting: did its value move?
                    frontier = set(self.memo.revalidate(view)) - changed
                    changed |= frontier
            touched = changed | {(c, ALL) for c, _ in changed}
            names = {c for c, _ in changed}
            collections = set(names)
            for index, sources in INDEX_SOURCES.items():
                if index in names:
                    collections |= set(sources)
            affected: set[str] = {k for c, k in changed if isinstance(k, str) and c != MEMO and c != GROUP}
            for r in touched:
                affected.update(self.deps.holders(r, self._knows))
            focus = frozenset(affected)
            ran: set[str] = set()
            whole: list[str] = []
            for chk in checks:
                if not changed:
                    break
                if not chk.over or chk.id in self.whole_only or not self.pre.get(chk.id, frozenset()).isdisjoint(
                        touched):
                    if chk.reads is None or not chk.reads.isdisjoint(collections) or "observations" in names:
                        self._run(chk, view, None)
                        ran.add(chk.id)
                        whole.append(chk.id)
                    continue
                if focus:
                    self._run(chk, view, focus)
                    ran.add(chk.id)
            done = True
        finally:
            self._active(False)
            if not done:  # half-updated units are not trusted: the next update evaluates in full
                self.snapshot = None
        self.snapshot = new
        records = sum(c != MEMO and c != GROUP for c, _ in changed)
        keys = _moved_keys(self.moved)
        return self._evaluation(new, checks), UpdateReport(frozenset(ran), records, len(focus), tuple(whole),
                                                           moved=keys)

    # --- what the lifecycle asks of the last evaluation ---------------------------------------------
    def resource_keys(self, checks: Iterable[str], below: Iterable[str] | None = None) -> set[str]:
        """The resource keys of the current findings of ``checks`` (keys parsed once, when each was produced), only
        those of resources below one of ``below`` when given."""
        wanted = set(checks)
        if below is None:
            return {k for k, held in self.by_resource.items() if any(f.check_id in wanted for f in held)}
        roots = list(below)
        if not roots:
            return set()
        prefixes = tuple(r + "/" for r in roots)
        by = self.by_resource
        if any(r.count("/") < _TOP_SLASHES for r in roots):   # a root above a top-level resource: scan them all
            return {k for k, held in by.items() if k.startswith(prefixes) and any(f.check_id in wanted for f in held)}
        # a key below a root of at least nine segments shares its first nine: only that resource's keys are asked
        tops = self.tops
        return {k for top in {_top(r) for r in roots} for k in tops.get(top, ())
                if k.startswith(prefixes) and any(f.check_id in wanted for f in by[k])}

    def about(self, ev: Evaluation, keys: Iterable[str]) -> Evaluation | None:
        """``ev`` (this evaluator's last) with only the findings about ``keys``, picked by identity with the units'
        findings whose keys were parsed once (a finding's ``key`` normalises its id anew: ~18k calls took ~0.1 s an
        event at 100k); None when waivers may have made findings of their own (an expired waiver's copy)."""
        if self.waivers:
            return None
        by = self.by_resource
        ids = {id(f) for k in {k.lower() for k in keys} for f in by.get(k, ())}
        return replace(ev, findings=tuple(f for f in ev.findings if id(f) in ids), waived=())


_TOP_SLASHES = 8   # '/subscriptions/s/resourcegroups/g/providers/ns/type/name': nine segments, the first empty


def _top(key: str) -> str:
    """The first nine segments of a resource key (all of it when shorter): the top-level resource it is below."""
    return "/".join(key.split("/", 9)[:9])


def _moved_keys(moved: list[tuple[list[tuple[tuple[str, str], Finding]], list[tuple[tuple[str, str], Finding]]]]
                ) -> frozenset[str]:
    """Resource keys whose findings differ between what the re-judged units held and what they produce now: a key
    several units produce counts as moved if any of its findings differ (more keys than moved never loses one)."""
    before: dict[tuple[str, str], list[Finding]] = {}
    after: dict[tuple[str, str], list[Finding]] = {}
    for gone, came in moved:
        for key, f in gone:
            before.setdefault(key, []).append(f)
        for key, f in came:
            after.setdefault(key, []).append(f)
    out = {k[1] for k in before.keys() ^ after.keys()}
    out.update(k[1] for k in before.keys() & after.keys() if before[k] != after[k])
    return frozenset(out)
