"""Units of work: what a check judges one subject at a time, what each judgement read, and how to redo only those
an event touched (issue 14, item 3).

A check may declare ``@check(over=...)``: the collection(s) (or a derived :class:`Index`) whose members it judges
independently of each other, each issue it yields being about the subject being judged. It iterates its subjects
through :func:`each` (or :func:`each_key` for an index's keys), which honours an evaluation *focus* (only the
subjects to judge again). Checks without ``over`` are whole-tenant checks, re-run when a collection they declare
reading changed.

The dependency index is recorded, never hand-kept. :class:`Units` runs the checks on a view of the snapshot whose
collections note every read (``get``/``[]``/``in`` -> (collection, key); iteration -> (collection, ``*``)) into
the frame of the subject being judged. Work shared between subjects (the route engine's per-endpoint paths) goes
through :func:`shared`, a memo whose entries record their own reads and survive events that did not touch what
they read; a user of an entry records one read of it, (:data:`MEMO`, key), and an entry dropped by an event counts
as a change of that read. A user of a whole group of entries (:func:`shared_each`: a hub appliance's rows for each
endpoint behind it) records one read of the group, (:data:`GROUP`, group), which changes with any member's entry.
Reverse lookups the checks need (endpoints by IP, by
target) are :class:`Index` values, maintained per changed record rather than rebuilt per event; a lookup is a
read of (index name, key), and an entry whose members (or whose members' derived keys) changed is a change.

Per event (:meth:`Units.update`): changed = the identity diff of the old and new snapshot's collections (records
a re-read left alone are the same objects) plus the index entries that moved; the affected subjects are the
changed subjects plus every subject whose recorded reads include a change; ``over`` checks run focused on them,
whole checks only when their ``reads`` meet a changed collection, and the findings of exactly the re-judged
(check, subject) units are replaced. Outside :class:`Units` (``plmon scan``) nothing is recorded: :func:`each`
iterates the collection and :func:`shared` just computes.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from itertools import repeat
from operator import is_, itemgetter
from typing import Any, TypeVar

from plmon.monitor.model.kinds import RECORDS
from plmon.monitor.model.snapshot import INDEX_SOURCES, Snapshot

__all__ = ["ALL", "GROUP", "MISSING", "Index", "ReadSet", "Reads", "Recorded", "Reverse", "cutoff", "each", "each_item",
           "each_key", "holds", "lookup", "plain", "probed", "recording", "scratch", "shared", "shared_each",
           "shared_probe", "tracking", "unrecorded"]

ALL = "*"
MEMO = "@memo"   # a read of (MEMO, key): the shared work kept under key (its own reads are the memo's to track)
# A read of (GROUP, group): every member entry of a shared_each group, (*group, member) for each member. A member's
# entry dropped (or, for a cut-off, moved) counts as a change of it, so a hub appliance's subject records one read
# instead of one per endpoint behind it (~4,500 at 100k), which each event that judged it again merged, diffed
# and registered (issue 14).
GROUP = "@group"
Read = tuple[str, Hashable]
T = TypeVar("T")


class Reads(tuple[Read, ...]):
    """A set of reads kept as a tuple: the daemon keeps one per memo entry, index record and subject (~300k at 100k
    resources) and a frozenset's hash table cost ~4x a tuple's slots (~75 MB of its RSS at 100k, issue 14). Equal
    (and hashed) as the set it holds, so it compares with sets; membership is a scan, over the few reads a holder
    makes, and only asked when an event's holders are checked."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (set, frozenset, Reads)):
            return len(self) == len(other) and all(r in other for r in self)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(frozenset(self))


NO_READS = Reads()
_SCAN = 32   # up to this many reads a holder keeps a tuple; beyond, a frozenset (a hub's subject reads thousands)
ReadSet = Reads | frozenset[Read]


def compact(reads: Iterable[Read], n: int) -> ReadSet:
    """``n`` distinct ``reads`` as the holder keeps them: a :class:`Reads` tuple when few (scanned on membership),
    a frozenset when a scan would cost more than the table saves."""
    return Reads(reads) if n <= _SCAN else frozenset(reads)

# The snapshot's mapping fields a view records: the collections, the builder's indexes and the observations.
MAPPED = (*RECORDS, *INDEX_SOURCES, "observations")


class _State:
    """The recording state of the one evaluation running (evaluation is single-threaded, under the daemon lock)."""

    __slots__ = ("deriving", "focus", "indexes", "memo", "pre", "reads", "subject", "subjects")

    def __init__(self) -> None:
        self.reads: set[Read] | None = None          # the frame reads go to; None: not recording
        self.subject: str | None = None              # the subject being judged
        self.focus: frozenset[str] | None = None     # the subjects to judge; None: all
        self.subjects: dict[str, set[Read]] | None = None   # subject -> reads, filled by each()
        self.memo: _Memo | None = None
        self.indexes: _Indexes | None = None
        self.pre: set[Read] | None = None
        self.deriving: str | None = None             # the index whose keys are being derived


_S = _State()


def _note(name: str, key: Hashable) -> None:
    reads = _S.reads
    if reads is not None:
        reads.add((name, key))


class Recorded(Mapping[Any, Any]):
    """A snapshot collection that notes what is read from it into the current frame."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: Mapping[Any, Any]) -> None:
        self.name, self.data = name, data

    def __getitem__(self, key: Any) -> Any:
        _note(self.name, key)
        return self.data[key]

    def get(self, key: Any, default: Any = None) -> Any:
        _note(self.name, key)
        return self.data.get(key, default)

    def __contains__(self, key: object) -> bool:
        _note(self.name, key)
        return key in self.data

    def __iter__(self) -> Iterator[Any]:
        _note(self.name, ALL)
        return iter(self.data)

    def __len__(self) -> int:
        _note(self.name, ALL)
        return len(self.data)

    def keys(self) -> Any:
        _note(self.name, ALL)
        return self.data.keys()

    def values(self) -> Any:
        _note(self.name, ALL)
        return self.data.values()

    def items(self) -> Any:
        _note(self.name, ALL)
        return self.data.items()


def _plain(coll: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return coll.data if isinstance(coll, Recorded) else coll


def unrecorded(coll: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """The collection under a recording view, whose reads are not noted: for a reader whose every use of a record
    is recorded elsewhere (through shared work that reads it), so its own frame keeps one read fewer."""
    return _plain(coll)


def recording(snap: Snapshot) -> Snapshot:
    """A view of ``snap`` whose collections note their reads (a real :class:`Snapshot`, so its methods work)."""
    views: dict[str, Any] = {name: Recorded(name, _plain(getattr(snap, name))) for name in MAPPED}
    return replace(snap, **views)


# --- subjects --------------------------------------------------------------------------------------

def _subjects(keys: Iterable[str], data: Mapping[str, Any]) -> Iterable[str]:
    focus = _S.focus
    if focus is None:
        return keys
    return sorted(k for k in focus if k in data)


def _judging(name: str, key: str) -> None:
    if _S.subjects is not None:
        _S.reads = {(name, key)}
    _S.subject = key


def _judged(outer: set[Read] | None) -> None:
    subjects, key, reads = _S.subjects, _S.subject, _S.reads
    if subjects is not None and key is not None and reads is not None:
        have = subjects.get(key)
        if have is None:
            subjects[key] = reads
        else:
            have |= reads
    _S.reads, _S.subject = outer, None


def each(snap: Snapshot, *collections: str) -> Iterator[Any]:
    """The records of ``collections`` (in collection order; under a focus only the focused keys, sorted), each
    judged in its own frame: what the check reads while one is current is that subject's, and so is every issue
    the check yields meanwhile. A key several of the collections hold is judged once, under the first.

    One collection with no subjects recorded and no focus (a plain evaluation) is its records as they are, which
    is what :func:`each_item` yields then: without two generators per record (35k endpoints, for each of ~10
    checks at 100k resources)."""
    if len(collections) == 1 and _S.subjects is None and _S.focus is None:
        return iter(_plain(getattr(snap, collections[0])).values())
    return _each(snap, *collections)


def _each(snap: Snapshot, *collections: str) -> Iterator[Any]:
    for _, record in each_item(snap, *collections):
        yield record


def each_item(snap: Snapshot, *collections: str) -> Iterator[tuple[str, Any]]:
    """:func:`each` with the subject's key beside its record."""
    earlier: list[Mapping[str, Any]] = []
    for name in collections:
        data = _plain(getattr(snap, name))
        before = tuple(earlier)
        earlier.append(data)
        if _S.subjects is None and _S.focus is None:
            if not before:
                yield from data.items()
                continue
            for key, record in data.items():
                if not any(key in d for d in before):
                    yield key, record
            continue
        for key in _subjects(data, data):
            if any(key in d for d in before):
                continue   # a subject is judged once, under the first collection that holds it
            outer = _S.reads
            _judging(name, key)
            try:
                yield key, data[key]
            finally:
                _judged(outer)


@dataclass(frozen=True, slots=True)
class Index:
    """A reverse lookup over a snapshot collection: derived key -> the keys of the records that yield it.

    ``keys_of(snap, record)`` may read the snapshot (through :func:`shared` work too): under :class:`Units` what it
    reads is recorded per record, and a record whose reads changed is indexed again, its old and new keys counting
    as changed entries. Members are kept sorted by key, so a lookup's order never depends on history.
    """

    name: str
    collection: str
    keys_of: Callable[[Snapshot, Any], Iterable[Hashable]]


def _fill(lists: dict[Read, Any], held: Iterable[tuple[Any, Iterable[Read]]]) -> int:
    """Put each holder of ``held`` in the lists of its reads (a lone holder bare, as :meth:`Reverse.add` keeps it);
    the number of (read, holder) pairs added. One loop for a batch and for a rebuild, with no call per pair."""
    n = 0
    for holder, reads in held:
        for r in reads:
            got = lists.get(r)
            if got is None:
                lists[r] = holder
            elif type(got) is list:
                got.append(holder)
            else:
                lists[r] = [got, holder]
            n += 1
    return n


class Reverse:
    """read -> the holders (memo keys, index records, subjects) whose recorded reads include it, as lists.

    A set per read cost ~50 B per (read, holder) pair and the pairs are most of what recording keeps (at 10k
    resources a route index's 3,500 endpoints each read ~50 records); a list slot costs 8. Holders are appended,
    never removed one by one: a holder that stopped reading ``r`` stays in ``r``'s list until the list is next
    read, where ``valid`` filters it out (and the list is trimmed to what is valid). When more pairs were appended
    since the last rebuild than the holders' reads now hold, :meth:`add` asks for a rebuild from the live holders
    (``live``), so the lists never outgrow twice what is live.
    """

    __slots__ = ("appended", "lists", "live_pairs")

    def __init__(self) -> None:
        self.lists: dict[Read, Any] = {}   # read -> a holder, or a list of them (holders are never lists)
        self.appended = 0
        self.live_pairs = 0

    def add(self, holder: Any, reads: Iterable[Read], live: Callable[[], Iterable[tuple[Any, Iterable[Read]]]]
            ) -> None:
        lists = self.lists
        n = 0
        for r in reads:
            got = lists.get(r)
            if got is None:
                lists[r] = holder          # one holder is kept bare (most reads have one): a list costs 64 B more
            elif type(got) is list:
                got.append(holder)
            else:
                lists[r] = [got, holder]
            n += 1
        self.appended += n
        self.live_pairs += n
        if self.appended > 2 * self.live_pairs + 4096:
            self.rebuild(live())

    def add_many(self, held: Iterable[tuple[Any, Iterable[Read]]],
                 live: Callable[[], Iterable[tuple[Any, Iterable[Read]]]]) -> None:
        """:meth:`add` for each (holder, reads) of ``held``, with one check for a rebuild at the end."""
        n = _fill(self.lists, held)
        self.appended += n
        self.live_pairs += n
        if self.appended > 2 * self.live_pairs + 4096:
            self.rebuild(live())

    def forget(self, pairs: int) -> None:
        """``pairs`` of the lists' pairs are no longer live (a holder dropped or stopped making those reads)."""
        self.live_pairs = max(0, self.live_pairs - pairs)

    def rebuild(self, live: Iterable[tuple[Any, Iterable[Read]]]) -> None:
        lists: dict[Read, Any] = {}
        n = _fill(lists, live)
        self.lists, self.appended, self.live_pairs = lists, n, n

    def holders(self, r: Read, valid: Callable[[Any, Read], bool]) -> list[Any]:
        """The holders that read ``r`` now (each once), trimming the list to them."""
        got = self.lists.get(r)
        if got is None:
            return []
        if type(got) is not list:
            if valid(got, r):
                return [got]
            self.appended -= 1
            del self.lists[r]
            return []
        keep = [h for h in dict.fromkeys(got) if valid(h, r)]
        self.appended -= len(got) - len(keep)
        if len(keep) > 1:
            self.lists[r] = keep
        elif keep:
            self.lists[r] = keep[0]
        else:
            del self.lists[r]
        return keep

    def pop(self, r: Read, valid: Callable[[Any, Read], bool]) -> list[Any]:
        """:meth:`holders`, dropping ``r``'s list (its holders are being forgotten or recomputed)."""
        got = self.lists.pop(r, None)
        if got is None:
            return []
        if type(got) is not list:
            self.appended -= 1
            return [got] if valid(got, r) else []
        self.appended -= len(got)
        return [h for h in dict.fromkeys(got) if valid(h, r)]


class _Table:
    """One index's entries for one snapshot, with what each record contributed."""

    __slots__ = ("deps", "entries", "of", "reads")

    def __init__(self) -> None:
        # derived key -> its members, sorted; one member kept bare (most entries have one: a list cost ~100 B more,
        # ~12 MB at 100k resources)
        self.entries: dict[Hashable, str | list[str]] = {}
        self.of: dict[str, tuple[Hashable, ...]] = {}
        self.reads: dict[str, ReadSet] = {}
        self.deps = Reverse()     # read -> records whose keys it decided

    def note_reads(self, rkey: str, reads: ReadSet) -> None:
        """What deciding ``rkey``'s keys read, registered as the difference from what it read before (a read it
        no longer makes is filtered out when the read's holders are next asked for)."""
        old = self.reads.get(rkey, NO_READS)
        if reads is not old and len(reads) == len(old) and old and reads == old:
            return   # the same reads (a route record derived again reads its one paths entry): kept as they are
        if reads:
            self.reads[rkey] = reads
        else:
            self.reads.pop(rkey, None)
        if reads is not old:
            if not old:
                self.deps.add(rkey, reads, lambda: self.reads.items())
                return
            before, after = set(old), set(reads)
            self.deps.forget(len(before - after))
            self.deps.add(rkey, after - before, lambda: self.reads.items())

    def reading(self, r: Read) -> list[str]:
        """The records whose keys were decided by a read of ``r``."""
        return self.deps.holders(r, lambda rkey, read: read in self.reads.get(rkey, ()))

    def add(self, rkey: str, dkeys: tuple[Hashable, ...]) -> None:
        if not dkeys:
            return   # most records of a route index name no subject: no entry (remove's default is the same)
        self.of[rkey] = dkeys
        entries = self.entries
        for d in dkeys:
            got = entries.get(d)
            if got is None:
                entries[d] = rkey
            elif isinstance(got, str):
                entries[d] = [rkey, got] if rkey < got else [got, rkey]
            else:
                bisect.insort(got, rkey)

    def remove(self, rkey: str, forget: bool = True) -> tuple[Hashable, ...]:
        """Take ``rkey`` out of its entries (and, with ``forget``, out of the reads map: it is gone)."""
        dkeys = self.of.pop(rkey, ())
        entries = self.entries
        for d in dkeys:
            members = entries.get(d)
            if members is None:
                continue
            if isinstance(members, str):
                if members == rkey:
                    del entries[d]
                continue
            i = bisect.bisect_left(members, rkey)
            if i < len(members) and members[i] == rkey:
                del members[i]
            if len(members) == 1:
                entries[d] = members[0]
            elif not members:
                del entries[d]
        if forget:
            self.note_reads(rkey, NO_READS)
        return dkeys


def _derive(snap: Snapshot, index: Index, record: Any, track: bool) -> tuple[tuple[Hashable, ...], ReadSet]:
    outer, subject, deriving = _S.reads, _S.subject, _S.deriving
    _S.reads, _S.subject, _S.deriving = (set() if track else None), None, index.name
    try:
        dkeys = tuple(dict.fromkeys(index.keys_of(snap, record)))
        reads = _frozen(_S.reads) if _S.reads is not None else NO_READS
    finally:
        _S.reads, _S.subject, _S.deriving = outer, subject, deriving
    return dkeys, reads


def _build(snap: Snapshot, index: Index, track: bool) -> _Table:
    table = _Table()
    if not track:
        # nothing recorded: derive every record in one frame instead of saving and restoring the state per record
        outer, subject, deriving = _S.reads, _S.subject, _S.deriving
        _S.reads, _S.subject, _S.deriving = None, None, index.name
        try:
            for rkey, record in _plain(getattr(snap, index.collection)).items():
                table.add(rkey, tuple(dict.fromkeys(index.keys_of(snap, record))))
        finally:
            _S.reads, _S.subject, _S.deriving = outer, subject, deriving
        return table
    for rkey, record in _plain(getattr(snap, index.collection)).items():
        dkeys, reads = _derive(snap, index, record, track)
        table.add(rkey, dkeys)
        if track and reads:
            table.note_reads(rkey, reads)
    return table


class _Indexes:
    """The indexes of the snapshot being evaluated, built on first use, kept up to date across events."""

    def __init__(self, track: bool) -> None:
        self.track = track
        self.snap: Snapshot | None = None
        self.tables: dict[str, tuple[Index, _Table]] = {}
        self.needs: dict[str, set[str]] = {}   # index -> the indexes its derivations look up

    def table(self, snap: Snapshot, index: Index) -> _Table:
        if _S.deriving is not None and _S.deriving != index.name:
            self.needs.setdefault(_S.deriving, set()).add(index.name)
        hit = self.tables.get(index.name)
        if hit is None:
            self.tables[index.name] = hit = (index, _build(snap, index, self.track))
        return hit[1]


_UNTRACKED: list[tuple[Snapshot, _Indexes]] = []


def _indexes_for(snap: Snapshot) -> _Indexes:
    if _S.indexes is not None:
        return _S.indexes
    # outside Units: one set of indexes per snapshot (the last one), like the other per-snapshot caches
    for s, ix in _UNTRACKED:
        if s is snap:
            return ix
    ix = _Indexes(track=False)
    _UNTRACKED[:] = [(snap, ix)]
    return ix


def lookup(snap: Snapshot, index: Index, key: Hashable) -> tuple[str, ...]:
    """The keys (sorted) of the records of ``index.collection`` whose derived keys include ``key``."""
    _note(index.name, key)
    outer, _S.reads = _S.reads, None   # building an index is not the subject's read: its entries are
    try:
        table = _indexes_for(_base(snap)).table(_base(snap), index)
    finally:
        _S.reads = outer
    got = table.entries.get(key)
    return () if got is None else (got,) if type(got) is str else tuple(got)


def each_key(snap: Snapshot, index: Index, prefix: str | None = None) -> Iterator[Hashable]:
    """The derived keys of ``index`` as subjects (sorted by their text), each judged in its own frame; with
    ``prefix``, only the text keys that start with it (an index several checks share, each judging its own kind of
    subject, named by a prefix)."""
    outer, _S.reads = _S.reads, None
    try:
        table = _indexes_for(_base(snap)).table(_base(snap), index)
    finally:
        _S.reads = outer
    entries: Iterable[Any] = table.entries if _S.focus is None else (k for k in _S.focus if k in table.entries)
    if prefix is not None:
        entries = (k for k in entries if type(k) is str and k.startswith(prefix))
    keys: Iterable[Any] = sorted(entries, key=str)
    for key in keys:
        outer = _S.reads
        _judging(index.name, key)
        try:
            yield key
        finally:
            _judged(outer)


def _base(snap: Snapshot) -> Snapshot:
    """The snapshot under a recording view: indexes are built from the plain collections."""
    return snap


def plain() -> bool:
    """Whether this is a plain evaluation (``plmon scan``): no :class:`~plmon.checks.incremental.Units` running, no
    focus and no frame recording reads, so a check may judge every subject in one pass of its own, in the order
    :func:`each_key` would give them."""
    return _S.memo is None and _S.focus is None and _S.subjects is None and _S.reads is None


def tracking() -> bool:
    """Whether an evaluation under :class:`~plmon.checks.incremental.Units` is running (shared work is kept)."""
    return _S.memo is not None


# --- shared work -----------------------------------------------------------------------------------

# Shared work whose values a pass drops once it is done, keeping the entry and its reads (so what used it is still
# tracked and an event still invalidates it): an endpoint's paths, ~280k objects and ~50 MB of the daemon's RSS at
# 100k resources. Their users keep what they derived from them (a route subject's rows) and are mostly invalidated
# with them, so a value is recomputed only when a user of a still-valid entry is (e.g. after a NIC tag change).
TRANSIENT: frozenset[str] = frozenset({"paths.of"})

# Shared work whose users are judged again only when its value moved (an early cut-off), by the first item of its
# key: tag -> (recompute, same). An event that drops such an entry computes it again from the key alone
# (``recompute(snapshot, key)``, :data:`MISSING` when its subject is gone) and compares the values with ``same``:
# a hub appliance's rows for the ~600 endpoints behind a changed route table are mostly what they were, and each
# of their drops judged the appliance again across its ~4,500 endpoints (issue 14). Declared by the check that
# owns the work (:func:`cutoff`); ``same`` must hold only when every finding the users make stays the same. A value
# ``same`` finds unmoved is kept as it was (the old object), so what its users keep by its identity stays valid.
CUTOFF: dict[str, tuple[Callable[[Snapshot, Any], Any], Callable[[Any, Any], bool]]] = {}


def cutoff(tag: str, recompute: Callable[[Snapshot, Any], Any], same: Callable[[Any, Any], bool]) -> None:
    """Declare the shared work keyed ``(tag, ...)`` as kept with an early cut-off (:data:`CUTOFF`)."""
    CUTOFF[tag] = (recompute, same)
_DROPPED: Any = object()   # the value of a transient entry after its pass
MISSING: Any = object()    # what a cut-off's recompute answers for a subject gone


class _Memo:
    """Work shared between subjects, kept across events: key -> (value, reads), and read -> keys."""

    def __init__(self) -> None:
        self.entries: dict[Hashable, tuple[Any, ReadSet]] = {}
        self.deps = Reverse()
        # Equal read sets kept once (an endpoint's paths, its route subjects and its rows per appliance read the
        # same), by the hash of the set: a set keyed by itself would keep a frozenset beside every tuple kept.
        self.frozen: dict[int, ReadSet] = {}
        # equal reads kept once: the same (collection, key) is noted by thousands of frames, each making its own tuple
        self.interned: dict[Read, Read] = {}
        self.transient: list[Hashable] = []   # the TRANSIENT entries this pass computed, to drop at its end
        self.scratch: dict[Hashable, Any] = {}   # what one pass's work leaves for the rest of it (scratch())
        self.stale: dict[Hashable, tuple[Any, ReadSet]] = {}   # CUTOFF entries an event dropped, to compare again
        # shared_each's groups this pass: group -> (members, values); dropped when the pass ends
        self.passing: dict[Hashable, tuple[tuple[Hashable, ...], Any]] = {}
        # shared_each's big groups (a hub appliance's ~4,500 endpoints), kept across passes: their members' keys,
        # made once while the members stay the same (members that come and go: only theirs are made)
        self.groups: dict[Hashable, _Group] = {}
        # the first item of every shared_each group seen: a dropped entry keyed (tag, ..., member) with one of these
        # tags is a member of group key[:-1], whose (GROUP, group) read changes with it
        self.group_tags: set[Hashable] = set()

    def drop_transient(self) -> None:
        """Drop the values of the :data:`TRANSIENT` entries the pass computed (the entries stay, with their reads),
        and the pass's :func:`scratch`."""
        self.scratch = {}
        entries = self.entries
        for key in self.transient:
            hit = entries.get(key)
            if hit is not None:
                entries[key] = (_DROPPED, hit[1])
        self.transient = []

    def unshare(self) -> None:
        """Drop the sharing tables once an evaluation pass is done: the sets and reads they share stay shared by
        their holders, and at 100k resources the two tables alone held ~20 MB of the daemon's RSS between events."""
        self.frozen = {}
        self.interned = {}
        self.passing = {}
        if len(self.groups) > _GROUPS_KEPT:   # groups of subjects gone stay until then: start afresh
            self.groups = {}

    def put(self, key: Hashable, value: Any, reads: ReadSet) -> None:
        self.entries[key] = (value, reads)
        if type(key) is tuple and key and key[0] in TRANSIENT:
            self.transient.append(key)
        self.deps.add(key, reads, lambda: ((k, e[1]) for k, e in self.entries.items()))

    def _reads(self, key: Hashable, r: Read) -> bool:
        hit = self.entries.get(key)
        return hit is not None and r in hit[1]

    def invalidate(self, changed: Iterable[Read]) -> list[Read]:
        """Drop the entries that read something in ``changed``, and the entries that used those; a dropped entry
        comes back as a read of (:data:`MEMO`, key), which is how its users (subjects, index records, other
        entries) recorded it."""
        dropped: list[Read] = []
        work = list(changed)
        # the loop's lookups bound once, the pairs forgotten counted once: an event behind a route table drops
        # ~1,200 entries (and reaches ~10k reads), each of which made four method calls
        entries, stale, pop, valid = self.entries, self.stale, self.deps.pop, self._reads
        kept = self.scratch
        tags, groups_seen = self.group_tags, set()
        forgotten = 0
        while work:
            r = work.pop()
            for key in pop(r, valid):
                hit = entries.pop(key, None)
                if hit is not None:
                    forgotten += len(hit[1])
                    if kept:
                        kept.pop(key, None)   # what a probe of it left is no longer what it reads (probed())
                    if type(key) is tuple and key and key[0] in CUTOFF:
                        stale.setdefault(key, hit)   # its users wait for revalidate()
                        continue
                    read = (MEMO, key)
                    dropped.append(read)
                    work.append(read)
                    if type(key) is tuple and key and key[0] in tags:
                        g = (GROUP, key[:-1])
                        if g not in groups_seen:
                            groups_seen.add(g)
                            dropped.append(g)
                            work.append(g)
        self.deps.forget(forgotten)
        return dropped

    def revalidate(self, snap: Snapshot) -> list[Read]:
        """Compute the :data:`CUTOFF` entries an event dropped again on ``snap`` (the new snapshot's view); those
        whose value moved (or whose subject is gone) come back as reads of (:data:`MEMO`, key), for their users to
        be judged again, as :meth:`invalidate` reports a drop."""
        stale, self.stale = self.stale, {}
        moved: list[Read] = []
        entries = self.entries
        # the frame is set aside once for all the entries (~1,000 an event behind a route table or a subnet)
        outer, subject = _S.reads, _S.subject
        _S.subject = None
        try:
            for key, (old, _reads) in stale.items():
                assert type(key) is tuple
                recompute, same = CUTOFF[key[0]]
                hit = entries.get(key)
                if hit is not None:   # someone asked for it meanwhile: it is computed already
                    value = hit[0]
                else:
                    reads: set[Read] = set()
                    _S.reads = reads
                    value = recompute(snap, key)
                    _S.reads = None
                    if value is not MISSING:
                        # an unmoved value is kept as it was: what its users derived from it (and hold by its
                        # identity) stays theirs, and the one just computed is freed
                        kept = old is not _DROPPED and same(old, value)
                        self.put(key, old if kept else value, _frozen(reads))
                        if not kept:
                            moved.append((MEMO, key))
                        continue
                if value is MISSING or value is _DROPPED or old is _DROPPED or not same(old, value):
                    moved.append((MEMO, key))
        finally:
            _S.reads, _S.subject = outer, subject
        tags = self.group_tags
        groups = {(GROUP, r[1][:-1]) for r in moved if type(r[1]) is tuple and r[1] and r[1][0] in tags}
        return moved + list(groups)


def _frozen(reads: set[Read]) -> ReadSet:
    memo = _S.memo
    if memo is None:
        return compact(reads, len(reads))
    if len(reads) == 1:
        (r,) = reads
        if r[0] == MEMO:
            # a holder whose one read is a shared entry (a route record's of its endpoint's paths): its own, as the
            # entry is per endpoint, and a 1-tuple is the size of a pointer to a shared set: nothing to look up
            return Reads((memo.interned.setdefault(r, r),))
    fs = frozenset(reads)
    h = hash(fs)
    hit = memo.frozen.get(h)
    if hit is None or len(hit) != len(fs) or not fs.issuperset(hit):
        if len(memo.frozen) > 4 * len(memo.entries) + 65536:
            # sets no entry, record or subject holds any more would stay alive here for the daemon's lifetime:
            # start sharing afresh (only sharing is lost, never a read)
            memo.frozen.clear()
            memo.interned.clear()
        interned = memo.interned
        hit = compact([interned.setdefault(r, r) for r in fs], len(fs))   # the caller's tuples are not kept
        memo.frozen[h] = hit   # a set of another hash-equal content replaces it: only its sharing is lost
    return hit


def shared(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, kept under ``key`` while what it read stays unchanged (only under :class:`Units`); whoever
    uses it reads (:data:`MEMO`, ``key``), one read instead of the thousands a hub appliance's endpoints' paths
    make, and is judged again when the entry is dropped (:meth:`_Memo.invalidate`)."""
    memo = _S.memo
    if memo is None:
        return compute()
    hit = memo.entries.get(key)
    if hit is not None:
        if _S.reads is not None:
            _S.reads.add((MEMO, key))
        value: T = hit[0]
        if value is _DROPPED:
            value = _again(memo, key, hit[1], compute)
        return value
    outer, subject = _S.reads, _S.subject
    _S.reads, _S.subject = set(), None
    try:
        value = compute()
        inner = _frozen(_S.reads)
    finally:
        _S.reads, _S.subject = outer, subject
    memo.put(key, value, inner)
    if outer is not None:
        outer.add((MEMO, key))
    return value


def shared_probe(key: Hashable, probe: Callable[[], T]) -> T:
    """``probe()``, which reads exactly what computing ``shared(key, ...)`` reads (a part of that work, e.g. what an
    endpoint's paths are made of, without making them), used as that work's value would be: its user records one
    read of (:data:`MEMO`, ``key``). With no entry under ``key`` one is kept with those reads and its value not yet
    made (as a :data:`TRANSIENT` value after its pass: the first :func:`shared` of it computes it, :func:`_again`),
    so an event that changes what it read drops it and reaches its users, as if it had been computed."""
    memo = _S.memo
    if memo is None:
        return probe()
    outer, subject = _S.reads, _S.subject
    hit = memo.entries.get(key)
    _S.reads, _S.subject = (set() if hit is None else None), None
    try:
        value = probe()
        inner = _frozen(_S.reads) if _S.reads is not None else NO_READS
    finally:
        _S.reads, _S.subject = outer, subject
    if hit is None:
        memo.put(key, _DROPPED, inner)
    if outer is not None:
        outer.add((MEMO, key))
    return value


def holds(key: Hashable) -> bool:
    """Whether shared work is kept under ``key`` (its reads registered): under :class:`Units`, while its value is
    computed again after its pass dropped it or a probe kept it unmade (:func:`shared_probe`)."""
    memo = _S.memo
    return memo is not None and key in memo.entries


def scratch() -> dict[Hashable, Any] | None:
    """A dict that lives for one evaluation pass under :class:`~plmon.checks.incremental.Units` (None outside): what
    one part of the pass worked out that a later part may take instead of working it out again (an endpoint's
    layouts, probed for its route subjects, then taken by its paths). Whoever keeps something there keys it so
    that it is valid for the rest of the pass."""
    memo = _S.memo
    return None if memo is None else memo.scratch


def probed(key: Hashable) -> Any:
    """What a probe of the shared work ``key`` left in this pass's :func:`scratch` under that same key, its use noted
    as :func:`shared` notes it (a read of (:data:`MEMO`, ``key``)); None when nothing is left, or the entry is no
    longer kept (an event's invalidation drops both). Several users of one endpoint's layouts (its route subjects,
    its SNAT rows, its bypassed paths) then read them once a pass instead of once each."""
    memo = _S.memo
    if memo is None:
        return None
    hit = memo.scratch.get(key)
    if hit is None or key not in memo.entries:
        return None
    if _S.reads is not None:
        _S.reads.add((MEMO, key))
    return hit


def shared_each(group: tuple[Hashable, ...], members: tuple[Hashable, ...], compute: Callable[[Any], T]) -> list[T]:
    """``[shared((*group, m), lambda: compute(m)) for m in members]``, recorded as one read of (:data:`GROUP`,
    ``group``) instead of one per member: an event that drops or moves a member's entry reports that read too
    (:meth:`_Memo.invalidate`, :meth:`_Memo.revalidate`). Which members there are is the caller's read (the index
    lookup that gave them). Within one pass a second call for the same ``group`` and ``members`` (another check
    judging the same subject: both SNAT checks judge a hub appliance's ~4,500 endpoints) takes the first's values."""
    memo = _S.memo
    if memo is None:
        return [shared((*group, m), lambda m=m: compute(m)) for m in members]   # type: ignore[misc]
    memo.group_tags.add(group[0])
    outer = _S.reads
    if outer is not None:
        outer.add((GROUP, group))
    hit = memo.passing.get(group)
    if hit is not None and hit[0] == members:
        return list(hit[1])
    entries = memo.entries
    # kept only for the groups an event judges again (a focused run): a full evaluation's ~40 hub groups kept would
    # cost the daemon ~8 MB of RSS for the few that events re-judge
    big = len(members) >= _GROUP and _S.focus is not None
    kept = memo.groups.get(group) if big else None
    if kept is None or kept[0] != members:
        kept = _regroup(group, members, kept)
        if big:
            memo.groups[group] = kept
    keys = kept[1]
    # the members' entries looked up in C (a hub appliance's ~4,500 endpoints, for each check that judges it): one
    # frame per member only for those whose value is not kept (an event's few hundred)
    got: list[Any] = list(map(entries.get, keys))
    values: list[Any] = list(map(_VALUE, got)) if None not in got else [_DROPPED if g is None else g[0] for g in got]
    if any(map(is_, values, repeat(_DROPPED))):
        _compute_members(memo, keys, members, values, compute)
    memo.passing[group] = (members, values)
    return list(values)


def _compute_members(memo: _Memo, keys: list[tuple[Hashable, ...]], members: tuple[Hashable, ...], values: list[Any],
                     compute: Callable[[Any], Any]) -> None:
    """Fill the :data:`_DROPPED` slots of ``values`` as ``shared(keys[i], lambda: compute(members[i]))`` would, the
    members without an entry in one frame and registered together (:meth:`Reverse.add_many`): a route event's ~600
    endpoints join a hub appliance's groups, and a :func:`shared` call each (its frame saved and restored, its entry
    put and its reads registered one by one) cost more than computing most of them (issue 14)."""
    entries = memo.entries
    made: list[tuple[Hashable, ReadSet]] = []
    outer, subject = _S.reads, _S.subject
    _S.subject = None
    try:
        for i, v in enumerate(values):
            if v is not _DROPPED:
                continue
            key = keys[i]
            hit = entries.get(key)
            if hit is not None:   # kept with its value dropped (or made meanwhile): shared() knows what to do
                _S.reads = None   # the frame takes the group's reads, the very objects kept
                m = members[i]
                values[i] = shared(key, lambda m=m: compute(m))   # type: ignore[misc]
                continue
            reads: set[Read] = set()
            _S.reads = reads
            value = compute(members[i])
            inner = _frozen(reads)
            entries[key] = (value, inner)
            made.append((key, inner))
            values[i] = value
    finally:
        _S.reads, _S.subject = outer, subject
        if made:
            transient = memo.transient
            for held, _inner in made:
                if type(held) is tuple and held and held[0] in TRANSIENT:
                    transient.append(held)
            memo.deps.add_many(made, lambda: ((k, e[1]) for k, e in entries.items()))


_VALUE = itemgetter(0)
# (members, their entry keys in member order, member -> key)
_Group = tuple[tuple[Hashable, ...], list[tuple[Hashable, ...]], dict[Hashable, tuple[Hashable, ...]]]


def _regroup(group: tuple[Hashable, ...], members: tuple[Hashable, ...], kept: _Group | None) -> _Group:
    """(members, their keys, member -> key) of ``group``. Members come and go (a route table's endpoints join and
    leave its hub appliance): the members kept keep their key objects, looked up in C, and only those that came get
    a key made (a hub appliance's ~4,500 keys made again, for each check that judges it, on every event)."""
    if kept is None:
        keys = [(*group, m) for m in members]
        return members, keys, dict(zip(members, keys, strict=True))
    old = kept[2]
    found: list[Any] = list(map(old.get, members))
    if None in found:
        for i, k in enumerate(found):
            if k is None:
                found[i] = (*group, members[i])
    return members, found, dict(zip(members, found, strict=True))


_GROUP = 256   # shared_each groups of at least this many members are kept across passes (_Memo.groups)
_GROUPS_KEPT = 4096


def _again(memo: _Memo, key: Hashable, reads: ReadSet, compute: Callable[[], T]) -> T:
    """The value of a still-valid entry whose value its last pass dropped: what it read is unchanged, so computing
    it again gives the same value and the same reads, which stay registered as they were."""
    outer, subject = _S.reads, _S.subject
    _S.reads, _S.subject = set(), None
    try:
        value = compute()
    finally:
        _S.reads, _S.subject = outer, subject
    memo.entries[key] = (value, reads)
    memo.transient.append(key)
    return value


# --- the diff --------------------------------------------------------------------------------------

_CONTEXT = ("tenant_id", "cloud", "subscriptions", "management_groups", "coverage")


def context_changed(old: Snapshot, new: Snapshot) -> bool:
    """Whether what is no collection (tenant, subscriptions, coverage) moved: then nothing recorded is trusted."""
    return any(getattr(old, f) is not getattr(new, f) and getattr(old, f) != getattr(new, f) for f in _CONTEXT)


_ABSENT = object()


def diff(old: Snapshot, new: Snapshot, hint: Mapping[str, frozenset[str] | None] | None = None) -> set[Read]:
    """(collection, key) for every record added, removed or replaced; the builder's indexes by equality.

    ``hint`` (the builder's ``Links.changed`` for a relink of ``old`` into ``new``) names, per collection, the only
    keys that may differ: those are compared instead of every record, which at 100k resources cost ~30 ms an event
    for each 35k-record collection an event touched. A collection it does not name (or names with None) is
    compared whole."""
    out: set[Read] = set()
    for name in MAPPED:
        a, b = _plain(getattr(old, name)), _plain(getattr(new, name))
        if a is b:
            continue
        keys = hint.get(name) if hint is not None else None
        if keys is not None:
            for k in keys:
                v, w = b.get(k, _ABSENT), a.get(k, _ABSENT)
                if w is not v and (w is _ABSENT or v is _ABSENT or w != v):
                    out.add((name, k))
            continue
        if a == b:   # the comparison runs in C and takes each record's identity first
            continue
        for k, v in b.items():
            w = a.get(k)
            if w is not v and (w is None or w != v):
                out.add((name, k))
        for k in a:
            if k not in b:
                out.add((name, k))
    return out


def _update_indexes(ix: _Indexes, new: Snapshot, changed: set[Read]) -> set[Read]:
    """Bring every built index to ``new``; the entries that moved, as reads of (index name, derived key)."""
    moved: set[Read] = set()
    ix.snap = new
    order: list[str] = []

    def visit(name: str, seen: set[str]) -> None:   # an index after the indexes its derivations look up
        if name in seen:
            return
        seen.add(name)
        for dep in sorted(ix.needs.get(name, ())):
            visit(dep, seen)
        order.append(name)
    seen: set[str] = set()
    for name in list(ix.tables):
        visit(name, seen)
    touched = changed | {(c, ALL) for c, _ in changed}   # the same for every index: made once, not per index
    keys_of: dict[str, set[Hashable]] = {}
    for c, k in changed:
        keys_of.setdefault(c, set()).add(k)
    for name in order:
        if name not in ix.tables:
            continue
        index, table = ix.tables[name]
        coll = _plain(getattr(new, index.collection))
        redo = set(keys_of.get(index.collection, ()))
        lists = table.deps.lists
        if lists:
            # only the reads some record of this index made (a route event's ~2k changed reads, for each index)
            for t in lists.keys() & touched:   # in C: the dict's lookups for each changed read
                redo.update(table.reading(t))
        own = name in ix.needs.get(name, ())   # its keys look itself up: the record leaves it before they are derived
        for rkey in redo:
            record = coll.get(rkey)
            if record is None:
                moved |= {(name, d) for d in table.remove(rkey, forget=True)}   # type: ignore[arg-type]
                continue
            old_keys = table.remove(rkey, forget=False) if own else ()   # type: ignore[arg-type]
            dkeys, reads = _derive(new, index, record, ix.track)
            if not own:
                if dkeys == table.of.get(rkey, ()):   # type: ignore[call-overload]
                    # the same keys (most records a route or network event derives again): its entries stay as they
                    # are, without taking it out of each (a hub appliance's ~4,500 members) and putting it back
                    table.note_reads(rkey, reads)   # type: ignore[arg-type]
                    continue
                old_keys = table.remove(rkey, forget=False)   # type: ignore[arg-type]
            table.add(rkey, dkeys)          # type: ignore[arg-type]
            table.note_reads(rkey, reads)   # type: ignore[arg-type]
            # an entry the record stays in keeps the same members in the same (sorted) order: it did not move
            moved |= {(name, d) for d in set(old_keys).symmetric_difference(dkeys)}
    return moved


def state() -> _State:
    """The recording state (for :mod:`plmon.checks.engine`)."""
    return _S


def snapshot_fields() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Snapshot))
