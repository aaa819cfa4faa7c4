"""A kept shared_each group brought up to date by the members that came and went (checks/units.py ``_regroup``)."""

from __future__ import annotations

from plmon.checks.units import MEMO, _regroup


def test_a_regrouped_group_is_a_fresh_one_with_the_kept_members_objects() -> None:
    """After members leave and join, keys, reads and the member map equal a fresh build, and the members that stayed
    keep their very key and read objects (which the subject's earlier reads hold)."""
    group = ("tag", "appliance")
    first = _regroup(group, tuple(f"e{i:04d}" for i in range(600)), None)
    members = tuple(f"e{i:04d}" for i in range(100, 700))          # 100 left, 100 came
    again = _regroup(group, members, first)
    fresh = _regroup(group, members, None)
    assert again[0] == members
    assert again[1] == fresh[1] == [(*group, m) for m in members]
    assert again[2] == fresh[2] == frozenset((MEMO, (*group, m)) for m in members)
    assert again[3] == fresh[3]
    for m in members[:500]:
        assert again[3][m] is first[3][m]
    assert first[3].keys() == {f"e{i:04d}" for i in range(600)}    # the kept group is left as it was


def test_a_group_only_left_or_only_joined_equals_a_fresh_one() -> None:
    """Members only leaving, or only joining, give the reads a fresh build gives (the kept set is updated, not
    remade), and the reads of the members gone are no longer in it."""
    group = ("tag", "nic")
    first = _regroup(group, tuple(f"e{i:04d}" for i in range(1000)), None)
    fewer = tuple(f"e{i:04d}" for i in range(0, 1000, 2))
    left = _regroup(group, fewer, first)
    assert left[2] == _regroup(group, fewer, None)[2]
    assert (MEMO, (*group, "e0001")) not in left[2]
    more = tuple(f"e{i:04d}" for i in range(1200))
    joined = _regroup(group, more, left)
    assert joined[2] == _regroup(group, more, None)[2]
    assert joined[1] == [(*group, m) for m in more]
    assert joined[3]["e0000"] is first[3]["e0000"]
