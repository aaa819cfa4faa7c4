"""What a probe left for the rest of its pass (checks/units.py ``probed``), and collections read without noting
(``unrecorded``): a reader that takes either must depend on the shared entry exactly as if it had probed it again."""

from __future__ import annotations

from plmon.checks.units import MEMO, Recorded, _Memo, _note, probed, scratch, shared_probe, state, unrecorded


def test_probed_takes_the_scratch_while_the_entry_is_kept_and_notes_the_entry_read() -> None:
    """probed() gives what the probe left under its key with a read of the entry; once an event drops the entry,
    nothing (its scratch goes with it)."""
    s = state()
    s.memo, outer = _Memo(), s.reads
    try:
        key = ("paths.of", "e")

        def probe() -> str:
            _note("c", "1")
            kept = scratch()
            assert kept is not None
            kept[key] = ["laid"]
            return "laid"
        shared_probe(key, probe)
        s.reads = set()
        assert probed(key) == ["laid"]
        assert s.reads == {(MEMO, key)}
        s.memo.invalidate([("c", "1")])
        assert probed(key) is None and key not in s.memo.scratch
    finally:
        s.memo, s.reads = None, outer


def test_probed_is_nothing_outside_the_units_and_unrecorded_notes_no_read() -> None:
    """Outside the units there is no scratch; a recorded collection taken unrecorded reads without noting."""
    assert probed(("paths.of", "e")) is None
    s = state()
    outer, s.reads = s.reads, set()
    try:
        coll = Recorded("private_endpoints", {"e": 1})
        assert unrecorded(coll)["e"] == 1
        assert s.reads == set()
        assert coll["e"] == 1 and s.reads == {("private_endpoints", "e")}
    finally:
        s.reads = outer
