"""Route subjects from layouts (issue 14, seventh round): under the daemon's units an endpoint whose IPs are its own
derives what the route checks' subjects are from its subnet's layouts, without making its paths. They must be what a
walk of its paths names, before and after an event that moves endpoints between appliances."""

from __future__ import annotations

import json
from pathlib import Path

from unitskit import UnitsTenant

import plmon.checks.route as route
from plmon.checks.paths import endpoint_layouts, paths_for
from plmon.monitor.model.arm_id import parse_id


def _walked(t: UnitsTenant) -> dict[str, tuple[str, ...]]:
    """Each endpoint's subjects from a walk of its paths (outside the units: the plain engine, no layouts)."""
    out = {}
    for key, pe in t.snap.private_endpoints.items():
        assert endpoint_layouts(t.snap, pe) is None
        subjects = tuple(dict.fromkeys(route._route_subjects(t.snap, pe)))
        if subjects:
            out[key] = subjects
    return out


def _indexed(t: UnitsTenant) -> dict[str, tuple[str, ...]]:
    _index, table = t.units.indexes.tables[route.SUBJECTS]
    return {k: tuple(v) for k, v in table.of.items()}   # type: ignore[misc]


def test_route_subjects_from_layouts_are_those_a_walk_of_the_paths_names(tmp_path: Path) -> None:
    """The kept route-subjects index equals the path walk for every endpoint (same keys, same order), after the full
    evaluation and after a route table loses its routes; the pass leaves nothing in its scratch."""
    t = UnitsTenant(tmp_path / "t")
    assert _indexed(t) == _walked(t)
    assert t.units.memo.scratch == {}
    pe = next(pe for _k, pe in sorted(t.snap.private_endpoints.items())
              if any(p.via_appliance and p.route_table_id is not None for p in paths_for(t.snap, pe)))
    table_key = next(p.route_table_id.key for p in paths_for(t.snap, pe) if p.via_appliance and p.route_table_id)
    for path in sorted((tmp_path / "t" / "arm").rglob("routeTables.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for table in body.get("value", []):
            if parse_id(table["id"]).key == table_key:
                table["properties"]["routes"] = []
                t.event(path, body, table["id"])   # asserts the update equals a full evaluation
                assert _indexed(t) == _walked(t)
                assert t.units.memo.scratch == {}
                return
    raise AssertionError("the route table was not found")
