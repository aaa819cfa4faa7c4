"""SNAT rows made from an endpoint's layout keep the rows picked and make their paths when first read
(checks/route.py ``_Rows.paths``): what they read before and after must be what the eagerly made paths read, and the
cut-off must judge them alike."""

from __future__ import annotations

from pathlib import Path

from unitskit import UnitsTenant

import plmon.checks.route as route
from plmon.checks.paths import endpoint_laid, paths_for
from plmon.checks.units import recording


def test_rows_read_before_their_paths_are_made_read_as_the_paths_do(tmp_path: Path) -> None:
    """For every endpoint laid out alone and every appliance its paths name: the rows' size and read() before their
    paths are made equal the eager rows', the paths made afterwards are those the eager rows hold, and the cut-off
    finds the two the same."""
    t = UnitsTenant(tmp_path / "t")
    compared = 0
    t.units._active(True)
    try:
        view = recording(t.snap)
        for _k, pe in sorted(t.snap.private_endpoints.items()):
            paths = paths_for(view, pe)
            if endpoint_laid(view, pe) is None:
                continue
            for key in sorted({k for p in paths for k in route._appliance_keys(p)}):
                lazy = route._appliance_rows_of(view, key, pe, lazy=True)
                eager = route._appliance_rows(view, key, paths)
                assert lazy.size() == eager.size() == len(eager.paths)
                want = [(p.hop, p.destination, p.endpoint, p.subnet_id, p.route) for p in eager.paths]
                assert lazy.read() == want
                assert route._same_rows(lazy, eager) and route._same_rows(eager, lazy)
                assert [p.to_dict() for p in lazy.paths] == [p.to_dict() for p in eager.paths]
                assert lazy.read() == want and lazy.size() == len(want)
                compared += 1
    finally:
        t.units._active(False)
    assert compared > 0
