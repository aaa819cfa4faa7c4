"""The compact reverse map of recorded reads (checks/units.py ``Reverse``): read -> the holders that made it.

The daemon keeps one for the shared memo, one per index and one for the subjects; the differential test
(test_incremental.py) proves evaluation stays exact. These pin what the compact form promises on its own: a holder
that stopped reading something is never reported, each holder is reported once, and the lists never outgrow
twice what is live however often holders are re-registered.
"""

from __future__ import annotations

from collections.abc import Hashable

from plmon.checks.units import GROUP, MEMO, Read, Reverse, _frozen, _Memo, _note, shared, shared_each, state


def test_holders_are_filtered_by_what_they_read_now_and_reported_once() -> None:
    now: dict[Hashable, set[Read]] = {"a": {("c", "1"), ("c", "2")}, "b": {("c", "1")}}
    rev = Reverse()
    for h, reads in now.items():
        rev.add(h, reads, lambda: now.items())
    rev.add("a", [("c", "1")], lambda: now.items())           # registered twice
    now["b"] = {("c", "3")}                                    # b stopped reading c/1
    rev.add("b", [("c", "3")], lambda: now.items())

    def valid(h: Hashable, r: Read) -> bool:
        return r in now.get(h, set())
    assert rev.holders(("c", "1"), valid) == ["a"]
    assert rev.holders(("c", "2"), valid) == ["a"]
    assert rev.holders(("c", "3"), valid) == ["b"]
    assert rev.holders(("c", "9"), valid) == []
    assert rev.pop(("c", "1"), valid) == ["a"]
    assert rev.holders(("c", "1"), valid) == []


def test_lists_stay_within_twice_what_is_live() -> None:
    rev = Reverse()
    live: dict[tuple[str, int], list[Read]] = {}
    reads: list[Read] = [("c", str(i)) for i in range(50)]
    for event in range(2000):                 # the same 100 holders re-registered over and over, as events redo them
        h = ("memo", event % 100)
        if h in live:
            rev.forget(len(live[h]))
        live[h] = reads
        rev.add(h, reads, lambda: live.items())
        assert rev.appended <= 2 * 100 * 50 + 4096 + 50
    assert sorted(rev.holders(reads[0], lambda h, r: h in live)) == sorted(live)


def test_the_memo_drops_exactly_what_read_a_change() -> None:
    memo = _Memo()
    memo.put(("x", 1), "one", frozenset({("c", "1"), ("c", "2")}))
    memo.put(("x", 2), "two", frozenset({("c", "2")}))
    memo.put(("x", 3), "three", frozenset({("c", "3")}))
    assert memo.invalidate([("c", "1")]) == [(MEMO, ("x", 1))]
    memo.put(("x", 1), "one again", frozenset({("c", "3")}))   # now reads c/3, no longer c/2
    assert memo.invalidate([("c", "2")]) == [(MEMO, ("x", 2))]   # x/2 only: x/1's old read is stale
    assert set(memo.entries) == {("x", 1), ("x", 3)}
    assert len(memo.invalidate([("c", "3")])) == 2
    assert memo.entries == {}


def test_an_entry_that_used_another_is_dropped_with_it() -> None:
    memo = _Memo()
    memo.put(("inner",), 1, frozenset({("c", "1")}))
    memo.put(("outer",), 2, frozenset({(MEMO, ("inner",)), ("c", "2")}))
    memo.put(("other",), 3, frozenset({("c", "2")}))
    assert sorted(memo.invalidate([("c", "1")])) == [(MEMO, ("inner",)), (MEMO, ("outer",))]
    assert set(memo.entries) == {("other",)}


def test_a_user_of_shared_work_records_one_read_of_it() -> None:
    s = state()
    s.memo, outer = _Memo(), s.reads
    try:
        s.reads = set()

        def compute() -> int:
            _note("c", "1")
            _note("c", "2")
            return 7
        assert shared(("k",), compute) == 7
        assert shared(("k",), compute) == 7
        assert s.reads == {(MEMO, ("k",))}
        assert s.memo.entries[("k",)][1] == {("c", "1"), ("c", "2")}
    finally:
        s.memo, s.reads = None, outer


def test_the_sharing_of_read_sets_is_bounded() -> None:
    s = state()
    s.memo = _Memo()
    try:
        for i in range(70000):
            _frozen({("c", str(i))})
        assert len(s.memo.frozen) <= 65537 + 1
        assert _frozen({("c", "x")}) == {("c", "x")}
    finally:
        s.memo = None


def test_a_transient_value_is_dropped_after_its_pass_and_computed_again_while_valid() -> None:
    """The daemon keeps an endpoint's paths only for the pass that computed them (their users keep what they
    derived): a later user of the still-valid entry gets the same value again, its reads still tracked."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    calls: list[int] = []

    def compute() -> list[int]:
        calls.append(1)
        _note("c", "1")
        return [7]
    try:
        s.reads = set()
        assert shared(("paths.of", "e"), compute) == [7]
        s.memo.drop_transient()
        assert s.memo.entries[("paths.of", "e")][1] == {("c", "1")}
        assert shared(("paths.of", "e"), compute) == [7]
        assert len(calls) == 2
        assert shared(("paths.of", "e"), compute) == [7]   # kept again until the pass ends
        assert len(calls) == 2
        assert s.reads == {(MEMO, ("paths.of", "e"))}
        assert s.memo.invalidate([("c", "1")]) == [(MEMO, ("paths.of", "e"))]
    finally:
        s.memo, s.reads = None, outer


def test_an_index_entry_keeps_its_members_sorted_whether_one_or_many() -> None:
    from plmon.checks.units import _Table
    t = _Table()
    t.add("b", ("x",))
    t.add("a", ("x", "y"))
    t.add("c", ())
    t.add("d", ("x",))
    assert t.entries == {"x": ["a", "b", "d"], "y": "a"}
    assert t.remove("c") == ()
    assert t.remove("a") == ("x", "y")
    assert t.entries == {"x": ["b", "d"]}
    t.remove("d")
    assert t.entries == {"x": "b"}
    t.remove("b")
    assert t.entries == {} and t.of == {}


def test_a_big_shared_each_group_is_one_read_that_a_dropped_member_changes() -> None:
    """A hub appliance's group judged again by events: its user records one (GROUP, group) read, not one per
    member; a change of what one member read drops that member's entry and reports the group read with it, and the
    next pass recomputes that member alone."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    s.focus = frozenset({"k"})
    members = tuple(f"e{i:04d}" for i in range(300))
    calls: list[str] = []

    def compute(m: str) -> str:
        calls.append(m)
        _note("c", m)
        return m.upper()
    try:
        s.reads = set()
        assert shared_each(("g", "k"), members, compute) == [m.upper() for m in members]
        assert s.reads == {(GROUP, ("g", "k"))}
        s.memo.unshare()
        assert sorted(s.memo.invalidate([("c", "e0007")])) == [(GROUP, ("g", "k")), (MEMO, ("g", "k", "e0007"))]
        assert s.memo.invalidate([("c", "e0008"), ("c", "e0009")]).count((GROUP, ("g", "k"))) == 1
        s.reads = set()
        assert shared_each(("g", "k"), members, compute) == [m.upper() for m in members]
        assert sorted(calls[300:]) == ["e0007", "e0008", "e0009"] and len(calls) == 303
        assert s.reads == {(GROUP, ("g", "k"))}
        assert s.memo.invalidate([("c", "elsewhere")]) == []
    finally:
        s.memo, s.reads, s.focus = None, outer, None


def test_a_big_group_whose_members_alternate_keeps_the_key_objects_of_the_members_it_keeps() -> None:
    """A route table toggled back and forth moves endpoints in and out of its hub appliance's group: the members
    that stay keep the very key objects their entries are looked up by, those that come back get new ones."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    s.focus = frozenset({"k"})
    members = tuple(f"e{i:04d}" for i in range(300))
    try:
        s.reads = set()
        shared_each(("g", "k"), members, str.upper)
        first = dict(s.memo.groups[("g", "k")][2])
        for now in (members[:260], members):
            s.memo.unshare()
            s.reads = set()
            assert shared_each(("g", "k"), now, str.upper) == [m.upper() for m in now]
            assert s.reads == {(GROUP, ("g", "k"))}
            keys = s.memo.groups[("g", "k")][1]
            assert keys == [("g", "k", m) for m in now]
            assert all(k is first[k[2]] for k in keys[:260])
    finally:
        s.memo, s.reads, s.focus = None, outer, None


def test_a_record_derived_again_to_the_same_keys_leaves_its_entries_as_they_are() -> None:
    """An event re-derives the ~600 endpoints behind a route table, most to the same subjects: their entries (a hub
    appliance's thousands of members) are left alone and no entry counts as moved; a record whose keys changed
    still moves its entries."""
    from types import SimpleNamespace
    from typing import Any

    from plmon.checks.units import Index, _Indexes, _update_indexes
    index = Index("t", "things", lambda _snap, r: ("x",) if r else ())
    ix = _Indexes(track=True)
    old: Any = SimpleNamespace(things={"a": 1, "b": 1})
    members = ix.table(old, index).entries["x"]
    new: Any = SimpleNamespace(things={"a": 2, "b": 1})
    assert _update_indexes(ix, new, {("things", "a")}) == set()
    assert ix.tables["t"][1].entries["x"] is members and members == ["a", "b"]
    gone: Any = SimpleNamespace(things={"a": 0, "b": 1})
    assert _update_indexes(ix, gone, {("things", "a")}) == {("t", "x")}
    assert ix.tables["t"][1].entries["x"] == "b"


def test_a_full_evaluation_keeps_no_group() -> None:
    """Groups are kept only for what events judge again: a full evaluation (no focus) leaves none behind."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    try:
        s.reads = set()
        members = tuple(f"e{i:04d}" for i in range(300))
        assert shared_each(("g", "k"), members, str.upper) == [m.upper() for m in members]
        assert s.reads == {(GROUP, ("g", "k"))}
        assert s.memo.groups == {}
    finally:
        s.memo, s.reads = None, outer
