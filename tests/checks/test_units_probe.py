"""A probe of shared work (checks/units.py ``shared_probe``): part of what an entry's compute reads, worked out without
making the value (an endpoint's layouts for its route subjects, without its paths). Its user must depend on the entry
exactly as if it had been computed, and the value must come out the same when someone asks for it."""

from __future__ import annotations

from plmon.checks.units import MEMO, _Memo, _note, holds, scratch, shared, shared_probe, state


def test_a_probe_keeps_the_entry_unmade_with_its_reads_and_its_user_reads_the_entry() -> None:
    """The probe's reads become the entry's, its user records one read of the entry, and a change of what the probe
    read drops the entry (so the user is derived again), as for computed shared work."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    try:
        s.reads = set()

        def probe() -> str:
            _note("c", "1")
            return "laid"
        assert shared_probe(("paths.of", "e"), probe) == "laid"
        assert s.reads == {(MEMO, ("paths.of", "e"))}
        assert holds(("paths.of", "e"))
        assert s.memo.entries[("paths.of", "e")][1] == {("c", "1")}
        assert s.memo.invalidate([("c", "1")]) == [(MEMO, ("paths.of", "e"))]
        assert not holds(("paths.of", "e"))
    finally:
        s.memo, s.reads = None, outer


def test_an_unmade_entry_is_computed_on_first_use_and_its_reads_stay_the_probes() -> None:
    """shared() of a probed entry computes the value (once per pass), and the entry keeps the probe's reads."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    calls: list[int] = []

    def compute() -> list[int]:
        calls.append(1)
        _note("c", "1")
        return [7]
    try:
        s.reads = set()
        shared_probe(("paths.of", "e"), lambda: _note("c", "1"))
        assert shared(("paths.of", "e"), compute) == [7]
        assert shared(("paths.of", "e"), compute) == [7]
        assert len(calls) == 1
        assert s.memo.entries[("paths.of", "e")][1] == {("c", "1")}
    finally:
        s.memo, s.reads = None, outer


def test_a_probe_of_a_kept_entry_leaves_it_as_it_is() -> None:
    """A probe of an entry already kept (computed, or probed before) changes neither its value nor its reads."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    try:
        s.reads = set()
        assert shared(("k",), lambda: (_note("c", "1"), 7)[1]) == 7
        before = s.memo.entries[("k",)]
        assert shared_probe(("k",), lambda: (_note("c", "2"), "p")[1]) == "p"
        assert s.memo.entries[("k",)] is before
        assert s.reads == {(MEMO, ("k",))}
    finally:
        s.memo, s.reads = None, outer


def test_the_scratch_lives_for_one_pass_and_only_under_units() -> None:
    """scratch() is None outside the units and empty again once a pass ends (drop_transient)."""
    assert scratch() is None
    s = state()
    s.memo = _Memo()
    try:
        kept = scratch()
        assert kept is not None
        kept["x"] = 1
        s.memo.drop_transient()
        assert scratch() == {}
    finally:
        s.memo = None
