"""The grain of the route engine's shared work under the daemon's units (issue 14, sixth round): an endpoint's paths
are built from its subnet's layout (the decided group of every client subnet, kept once per endpoint network and
subnet region), and what the route checks make of a next hop is judged once per hop, by one rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unitskit import UnitsTenant

import plmon.checks.route as route
from plmon.checks.paths import paths_for
from plmon.checks.units import MEMO
from plmon.monitor.model.arm_id import parse_id


def _entries(t: UnitsTenant, tag: str) -> dict[Any, Any]:
    return {k: e for k, e in t.units.memo.entries.items() if type(k) is tuple and k[0] == tag}


def test_an_endpoints_paths_read_their_subnets_layout_not_the_route_tables(tmp_path: Path) -> None:
    """An endpoint's paths read a layout entry and no route table; a layout is shared by the endpoints of a subnet."""
    t = UnitsTenant(tmp_path / "t")
    paths, layouts = _entries(t, "paths.of"), _entries(t, "paths.layout")
    assert layouts and len(layouts) < len(paths)
    for _value, reads in paths.values():
        assert not any(r[0] == "route_tables" for r in reads)
    readers = [k for k, (_v, reads) in paths.items() if any(r[0] == MEMO and r[1] in layouts for r in reads)]
    assert len(readers) > len(layouts)


def test_a_route_inside_an_endpoint_subnet_keeps_that_subnets_layout_per_ip(tmp_path: Path) -> None:
    """A route strictly inside an endpoint subnet makes the decision depend on the IP: its layout is kept per IP,
    and the evaluation after the event still equals a full one."""
    t = UnitsTenant(tmp_path / "t")
    pe = next(pe for _k, pe in sorted(t.snap.private_endpoints.items())
              if pe.ip_addresses and any(p.route_table_id is not None for p in paths_for(t.snap, pe)))
    table_key = next(p.route_table_id.key for p in paths_for(t.snap, pe) if p.route_table_id is not None)
    target = None
    for path in sorted((tmp_path / "t" / "arm").rglob("routeTables.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for table in body.get("value", []):
            if parse_id(table["id"]).key == table_key:
                target = (path, body, table)
    assert target is not None
    path, body, table = target
    table["properties"].setdefault("routes", []).append({"name": "one-endpoint", "properties": {
        "addressPrefix": f"{pe.ip_addresses[0]}/32", "nextHopType": "VirtualAppliance",
        "nextHopIpAddress": "10.255.0.9"}})
    t.event(path, body, table["id"])
    assert any(len(k) == 7 for k in _entries(t, "paths.layout"))


def test_what_the_checks_make_of_a_hop_is_the_appliance_rule(tmp_path: Path) -> None:
    """_appliance_keys, the rows and _reported_hop all follow _hop_verdicts (the one statement of the rule) on every
    resolved next hop of a synth tenant."""
    snap = UnitsTenant(tmp_path / "t").snap
    hops = {id(p.hop): p for pe in snap.private_endpoints.values() for p in paths_for(snap, pe)
            if p.via_appliance and p.hop is not None and p.hop.kind != "unresolved"}
    assert hops
    for p in hops.values():
        assert p.hop is not None
        verdicts = [(s, v) for s, _p, v in route._appliance_verdicts(snap, (p,), firewalls=False)]
        assert route._rows_of_hop(snap, p) == verdicts
        assert route._appliance_keys(p) == [s.key for s, _v in verdicts]
        assert route._reported_hop(p.hop) == (bool(route._nics_forwarding_off(p.hop)) or not verdicts or any(
            v is None or v.snats is not True for _s, v in verdicts))



def test_an_endpoints_32_from_the_ip_text_is_the_one_from_the_address(tmp_path: Path) -> None:
    """paths_of hands its one str(ip) to endpoint_ip: the endpoint's /32 and the rest of what it takes are the same."""
    from plmon.checks.paths import _engine_for, parse_ip
    snap = UnitsTenant(tmp_path / "t").snap
    engine = _engine_for(snap)
    seen = 0
    for pe in list(snap.private_endpoints.values())[:20]:
        for raw in pe.ip_addresses:
            ip = parse_ip(raw)
            if ip is not None:
                assert engine._endpoint_ip(pe, ip, str(ip)) == engine._endpoint_ip(pe, ip)
                seen += 1
    assert seen
