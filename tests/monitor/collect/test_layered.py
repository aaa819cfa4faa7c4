"""Layered (relink's index over a shared dict) reads as the dict with its changes applied, and never edits it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plmon.monitor.collect.builder import Layered

KEYS = st.sampled_from([f"k{i}" for i in range(12)])


@given(st.dictionaries(KEYS, st.integers()), st.lists(st.dictionaries(KEYS, st.none() | st.integers()), max_size=6))
def test_layered_equals_the_dict_with_each_change_applied(base: dict[str, int],
                                                          steps: list[dict[str, int | None]]) -> None:
    """Every read (get, [], in, iteration, len, ==) matches a plain dict edited step by step; the base is untouched."""
    kept = dict(base)
    want = dict(base)
    got: object = base
    for changes in steps:
        got = Layered.over(got, changes)  # type: ignore[arg-type]
        for k, v in changes.items():
            if v is None:
                want.pop(k, None)
            else:
                want[k] = v
        assert dict(got) == want and got == want and len(got) == len(want)  # type: ignore[call-overload, arg-type]
        for k in [f"k{i}" for i in range(12)]:
            assert got.get(k) == want.get(k) and (k in got) == (k in want)  # type: ignore[attr-defined, operator]
    assert base == kept


def test_layered_folds_into_a_plain_dict_once_the_changes_outgrow_it() -> None:
    """Past the fold size the result is a plain dict again, so lookups never go through a long chain."""
    base = {f"k{i}": i for i in range(10)}
    got = Layered.over(base, {f"n{i}": i for i in range(Layered._FOLD_AT + 1)})
    assert type(got) is dict and len(got) == 10 + Layered._FOLD_AT + 1
