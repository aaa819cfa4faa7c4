"""The control mapping: data beside each check, and every MCSB id a check names has a catalogue title."""

from __future__ import annotations

from plmon.checks.registry import all_checks
from plmon.monitor.reports.controls import control_title, sort_controls


def test_every_check_of_the_first_four_families_maps_to_an_mcsb_control() -> None:
    """connection, endpoint, pls and rmpl checks each name at least one MCSB control."""
    for c in all_checks().values():
        if c.family in ("connection", "endpoint", "pls", "rmpl"):
            assert any(x.startswith("MCSB ") for x in c.controls), c.id


def test_every_mcsb_control_named_by_a_check_has_a_title() -> None:
    """A report never prints an MCSB id without its title (a typo like 'NS2' would fail here)."""
    named = {x for c in all_checks().values() for x in c.controls if x.startswith("MCSB ")}
    assert named and all(control_title(x) for x in named), sorted(x for x in named if not control_title(x))


def test_controls_sort_numerically_within_a_framework() -> None:
    """NS-2 sorts before NS-10, MCSB before CIS."""
    assert sort_controls(["CIS 3.7", "MCSB NS-10", "MCSB NS-2"]) == ["MCSB NS-2", "MCSB NS-10", "CIS 3.7"]
