"""SNAT rows and bypassed paths from layouts (issue 14, eighth round): under the daemon's units a route check keeps
what it needs of an endpoint whose one IP is its own from its layout's rows, making only the paths it keeps. Those
must be exactly what it keeps of the endpoint's paths, before and after an event that moves endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unitskit import UnitsTenant

import plmon.checks.route as route
from plmon.checks.paths import Hop, PathResult, RouteCandidate, endpoint_laid, paths_for
from plmon.checks.units import recording
from plmon.monitor.model.arm_id import parse_id


def _path(p: PathResult) -> dict[str, Any]:
    return {**p.to_dict(), "endpoint": p.endpoint.key if p.endpoint else None}


def _rows(r: route._Rows) -> tuple[Any, ...]:
    return ([_path(p) for p in r.paths], r.subjects, r.verdicts, r.firewalls, r.tagged)


def _compare(t: UnitsTenant) -> tuple[int, int]:
    """Compare, for every endpoint laid out alone, its laid paths, SNAT rows and bypassed paths with those its paths
    give; the number of endpoints compared and of SNAT rows among them."""
    n = rows = 0
    t.units._active(True)
    try:
        view = recording(t.snap)
        for _k, pe in sorted(t.snap.private_endpoints.items()):
            paths = paths_for(view, pe)
            laid = endpoint_laid(view, pe)
            if laid is None:
                continue
            n += 1
            assert [_path(laid.path(i)) for i in range(len(laid.rows))] == [_path(p) for p in paths]
            keys = {k for p in paths for k in route._appliance_keys(p)} | {"/no/such/appliance"}
            for key in sorted(keys):
                got = route._appliance_rows_of(view, key, pe)
                assert _rows(got) == _rows(route._appliance_rows(view, key, paths))
                rows += len(got.paths)
            tables = {p.route_table_id.key for p in paths if p.route_table_id is not None}
            for key in sorted(tables):
                assert [_path(p) for p in route._bypassed_paths_of(view, key, pe)] == \
                    [_path(p) for p in route._bypassed_paths(key, paths)]
    finally:
        t.units._active(False)
    return n, rows


def test_rows_and_bypassed_paths_from_layouts_are_those_of_the_paths(tmp_path: Path) -> None:
    """Laid paths, SNAT rows per appliance and bypassed paths per table equal those taken from paths_for, after the
    full evaluation and after a route table loses its routes (most endpoints compared)."""
    t = UnitsTenant(tmp_path / "t")
    n, rows = _compare(t)
    assert n > len(t.snap.private_endpoints) // 2 and rows > 0
    pe = next(pe for _k, pe in sorted(t.snap.private_endpoints.items())
              if any(p.via_appliance and p.route_table_id is not None for p in paths_for(t.snap, pe)))
    table_key = next(p.route_table_id.key for p in paths_for(t.snap, pe) if p.via_appliance and p.route_table_id)
    for path in sorted((tmp_path / "t" / "arm").rglob("routeTables.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for table in body.get("value", []):
            if parse_id(table["id"]).key == table_key:
                table["properties"]["routes"] = []
                t.event(path, body, table["id"])   # asserts the update equals a full evaluation
                n, rows = _compare(t)
                assert n > len(t.snap.private_endpoints) // 2 and rows > 0
                return
    raise AssertionError("the route table was not found")


def test_a_path_text_is_written_out_in_full_whatever_parts_are_kept() -> None:
    """path_text keeps its route and hop part per (route, hop) object: the text is the one written out in full, for
    each kind of part, asked twice, and for an equal route made anew (another object)."""
    sid = parse_id("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/a")
    udr = RouteCandidate("10.0.0.0/8", "user-defined", "VirtualAppliance", "10.9.0.4", "r")
    hop = Hop("10.9.0.4", "unresolved")
    mine = RouteCandidate("10.0.0.5/32", "private-endpoint", "InterfaceEndpoint")
    for r, h in ((udr, hop), (mine, None), (None, None), (udr, None), (RouteCandidate(*udr.to_dict().values()), hop)):
        want = " -> ".join([f"subnet {sid.name}", r.describe() if r else "no route", *([h.describe()] if h else []),
                            "10.0.0.5"])
        for _ in range(2):
            assert PathResult(sid, "10.0.0.5", r, (), hop=h).path_text() == want
