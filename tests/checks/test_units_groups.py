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
