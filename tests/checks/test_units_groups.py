"""A kept shared_each group brought up to date by the members that came and went (checks/units.py ``_regroup``), and
the group's one read reported when a member's entry changes (``_Memo.invalidate``, ``_Memo.revalidate``)."""

from __future__ import annotations

from typing import Any

from plmon.checks.units import CUTOFF, GROUP, MEMO, MISSING, _Memo, _note, _regroup, cutoff, shared_each, state


def test_a_regrouped_group_is_a_fresh_one_with_the_kept_members_objects() -> None:
    """After members leave and join, keys and the member map equal a fresh build, and the members that stayed keep
    their very key objects (their entries are looked up by them)."""
    group = ("tag", "appliance")
    first = _regroup(group, tuple(f"e{i:04d}" for i in range(600)), None)
    members = tuple(f"e{i:04d}" for i in range(100, 700))          # 100 left, 100 came
    again = _regroup(group, members, first)
    fresh = _regroup(group, members, None)
    assert again[0] == members
    assert again[1] == fresh[1] == [(*group, m) for m in members]
    assert again[2] == fresh[2]
    for m in members[:500]:
        assert again[2][m] is first[2][m]
    assert first[2].keys() == {f"e{i:04d}" for i in range(600)}    # the kept group is left as it was


def test_a_cut_off_member_reports_its_group_only_when_its_value_moved() -> None:
    """A member kept with an early cut-off (a hub appliance's rows for one endpoint) is recomputed after an event:
    its group's read is reported when the value moved, and not when it is what it was."""
    value = {"e1": "A", "e2": "B"}

    def recompute(_snap: Any, key: Any) -> Any:
        _note("c", key[2])
        return value.get(key[2], MISSING)
    s = state()
    s.memo, outer = _Memo(), s.reads
    cutoff("test.cut", recompute, lambda a, b: a == b)
    try:
        s.reads = set()
        shared_each(("test.cut", "k"), ("e1", "e2"), lambda m: recompute(None, ("test.cut", "k", m)))
        s.memo.unshare()
        assert s.memo.invalidate([("c", "e1")]) == []          # waits for revalidate
        assert s.memo.revalidate(None) == []                    # type: ignore[arg-type]
        value["e2"] = "C"
        assert s.memo.invalidate([("c", "e2")]) == []
        assert sorted(s.memo.revalidate(None)) == [(GROUP, ("test.cut", "k")),   # type: ignore[arg-type]
                                                   (MEMO, ("test.cut", "k", "e2"))]
    finally:
        CUTOFF.pop("test.cut", None)
        s.memo, s.reads = None, outer
