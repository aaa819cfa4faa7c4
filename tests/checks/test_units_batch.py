"""Members of a shared_each group computed together (checks/units.py ``_compute_members``): each member's entry must
be kept and registered exactly as a shared() call would keep it, so an event that changes what one read still drops
it and reaches the group's user (through the group's one read)."""

from __future__ import annotations

from plmon.checks.units import GROUP, MEMO, Reverse, _Memo, _note, shared, shared_each, state


def test_members_computed_together_are_kept_and_registered_as_shared_keeps_them() -> None:
    """Each new member's entry holds its value and its own reads, a change of one member's read drops that entry
    alone (its read reaches the group's user), and a member kept with its value is not computed again."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    members = tuple(f"e{i}" for i in range(5))
    calls: list[str] = []

    def compute(m: str) -> str:
        calls.append(m)
        _note("c", m)
        return m.upper()
    try:
        s.reads = set()
        assert shared("pre", lambda: "kept") == "kept"   # an entry shared() made, next to the group's
        assert shared_each(("g", "k"), members, compute) == [m.upper() for m in members]
        assert s.reads == {(MEMO, "pre"), (GROUP, ("g", "k"))}
        for m in members:
            assert s.memo.entries[("g", "k", m)] == (m.upper(), {("c", m)})
        assert s.memo.invalidate([("c", "e3")]) == [(MEMO, ("g", "k", "e3")), (GROUP, ("g", "k"))]
        s.memo.unshare()
        s.reads = set()
        assert shared_each(("g", "k"), members, compute) == [m.upper() for m in members]
        assert calls == [*members, "e3"]
        assert s.memo.invalidate([("c", "e3")]) == [(MEMO, ("g", "k", "e3")), (GROUP, ("g", "k"))]   # again
    finally:
        s.memo, s.reads = None, outer


def test_add_many_registers_as_one_add_per_holder() -> None:
    """Reverse.add_many gives the lists one add() per holder gives."""
    held = [("h1", [("c", "1"), ("c", "2")]), ("h2", [("c", "1")]), ("h3", [])]
    one, many = Reverse(), Reverse()
    for h, reads in held:
        one.add(h, reads, lambda: held)
    many.add_many(held, lambda: held)
    assert one.lists == many.lists and one.appended == many.appended == 3
