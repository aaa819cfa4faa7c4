"""relink after a Private Link Service re-read: its connections' index is re-derived only when they changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenantkit import SUB, endpoint, provider_connection, sub_list, write_tenant

from plmon.monitor.collect.builder import Layered, link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.service.reevaluate import reread_into

PLS = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateLinkServices/pls1"
PE1 = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/pe1"


def _pls(visibility: list[str], status: str = "Approved") -> dict[str, Any]:
    return {"id": PLS, "name": "pls1", "type": "Microsoft.Network/privateLinkServices", "location": "westeurope",
            "properties": {"visibility": {"subscriptions": visibility}, "autoApproval": {"subscriptions": []},
                           "privateEndpointConnections": [provider_connection(PLS, PE1, status=status)]}}


def _event(folder: Path, pls: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    snap, new, links2, full, _ = _event_links(folder, pls)
    return snap, new, links2, full


def _event_links(folder: Path, pls: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv)
    (folder / "arm" / f"{sub_list('privateLinkServices')}.json").write_text(json.dumps({"value": [pls]}))
    inv2, result = reread_into(RecordedTenant(folder), inv, [parse_id(PLS)])
    new, links2 = relink(snap, links, inv2, result.touched, taken_at=snap.taken_at)
    return snap, new, links2, *link(inv2, taken_at=snap.taken_at)


def test_a_service_whose_connections_stayed_keeps_the_connection_index(tmp_path: Path) -> None:
    """Visibility changed, connections equal: the index is the very same mapping and named as unchanged; the
    snapshot equals a full link's."""
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": [endpoint("pe1", PLS)]},
                                            sub_list("privateLinkServices"): {"value": [_pls([])]}})
    snap, new, links, full = _event(folder, _pls(["*"]))
    key = parse_id(PLS).key
    assert new.private_link_services[key] is not snap.private_link_services[key]
    assert new.provider_connections_by_endpoint is snap.provider_connections_by_endpoint
    assert "provider_connections_by_endpoint" not in links.changed
    assert new == full


def test_a_service_whose_connection_moved_re_derives_it(tmp_path: Path) -> None:
    """A connection's status changed: its endpoint's entry is re-derived, as a full link gives it."""
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": [endpoint("pe1", PLS)]},
                                            sub_list("privateLinkServices"): {"value": [_pls([])]}})
    snap, new, links, full = _event(folder, _pls([], status="Rejected"))
    assert links.changed["provider_connections_by_endpoint"] == frozenset({parse_id(PE1).key})
    assert new.provider_connections_by_endpoint != snap.provider_connections_by_endpoint
    assert new == full


def test_a_connection_gone_leaves_the_owners_index_as_a_full_link_gives_it_over_the_old_one(tmp_path: Path) -> None:
    """The owners index after an owner event is the old one with the changes layered over it (not a copy of its
    ~35k entries), and reads as a full link's: an endpoint no owner names any more is gone from it."""
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": [endpoint("pe1", PLS)]},
                                            sub_list("privateLinkServices"): {"value": [_pls([])]}})
    gone = {**_pls([]), "properties": {**_pls([])["properties"], "privateEndpointConnections": []}}
    _snap, new, links, full, full_links = _event_links(folder, gone)
    assert isinstance(links.owners, Layered)
    assert dict(links.owners) == dict(full_links.owners) and parse_id(PE1).key not in links.owners
    assert dict(links.nics_naming) == dict(full_links.nics_naming)
    assert new == full
