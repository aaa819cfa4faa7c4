"""What a path takes of an endpoint and its IP (paths._Engine.endpoint_ip), kept under the daemon's units across
snapshots while the endpoint, its subnet and its network are the very same records (issue 14, seventh round)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from unitskit import UnitsTenant

from plmon.checks import paths
from plmon.checks.units import _plain, recording, state


def test_an_endpoints_ip_part_is_kept_while_its_records_are_the_same_and_made_again_when_one_is_replaced(
        tmp_path: Path) -> None:
    """The same records give the very object kept; a replaced subnet record (equal or not) is worked out again,
    here to an equal value."""
    t = UnitsTenant(tmp_path / "t")
    s = state()
    s.memo, s.indexes = t.units.memo, t.units.indexes
    try:
        view = recording(t.snap)
        engine = paths._Engine(view)
        assert engine.tracked
        pe = next(pe for _k, pe in sorted(t.snap.private_endpoints.items()) if pe.ip_addresses and pe.subnet_id)
        ip = paths.parse_ip(pe.ip_addresses[0])
        assert ip is not None and pe.subnet_id is not None
        first = engine.endpoint_ip(pe, ip, str(ip))
        assert paths._Engine(recording(t.snap)).endpoint_ip(pe, ip, str(ip)) is first
        subnets = dict(_plain(t.snap.subnets))
        subnets[pe.subnet_id.key] = copy.copy(subnets[pe.subnet_id.key])
        other = paths._Engine(recording(replace(t.snap, subnets=subnets)))
        again = other.endpoint_ip(pe, ip, str(ip))
        assert again is not first and again == first
    finally:
        s.memo, s.indexes = None, None
        t.units.memo.drop_transient()



def test_an_endpoints_paths_made_from_its_layout_are_those_of_the_plain_engine(tmp_path: Path) -> None:
    """Under the units an endpoint's paths (made in one pass from its layout when its one IP is its own) are, path
    by path, those the plain engine decides for the same snapshot."""
    t = UnitsTenant(tmp_path / "t")
    s = state()
    s.memo, s.indexes = t.units.memo, t.units.indexes
    try:
        view = recording(t.snap)
        tracked = {k: [p.to_dict() for p in paths.paths_for(view, pe)] for k, pe in t.snap.private_endpoints.items()}
    finally:
        s.memo, s.indexes = None, None
        t.units.memo.drop_transient()
    plain = {k: [p.to_dict() for p in paths.paths_for(t.snap, pe)] for k, pe in t.snap.private_endpoints.items()}
    assert sum(map(len, tracked.values())) > 100
    assert tracked == plain
