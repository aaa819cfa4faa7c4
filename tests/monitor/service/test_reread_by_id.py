"""An endpoint event re-reads the endpoint by id, not its subscription's whole list, with the same result."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.inventory import ReadError
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.reevaluate import reread_into

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Counting:
    """The recorded reader, counting reads by kind; ``refuse`` answers 403 for GETs of those ids."""

    def __init__(self, inner: RecordedTenant, refuse: frozenset[str] = frozenset()) -> None:
        self.inner, self.refuse, self.paths = inner, refuse, []  # type: ignore[var-annotated]

    def get(self, path: str, *, kind: str = "") -> Any:
        self.paths.append(path.strip("/").lower())
        if parse_id("/" + path.strip("/")).key in self.refuse:
            raise ReadError(403, "AuthorizationFailed", "refused")
        return self.inner.get(path, kind=kind)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "tenant"
    write_tenant(generate(SynthSpec(subscriptions=2, endpoints=30, seed=7, bad_share=0.3)), out)
    return out


def _endpoint_list(folder: Path) -> Path:
    return sorted((folder / "arm" / "subscriptions").glob("*/providers/Microsoft.Network/privateEndpoints.json"))[0]


def _edit(folder: Path, op: str) -> str:
    file = _endpoint_list(folder)
    body = json.loads(file.read_text())
    items = body["value"]
    if op == "delete":
        rid = str(items.pop(1)["id"])
    elif op == "add":
        new = json.loads(json.dumps(items[2]))
        new["id"] += "-added"
        new["name"] += "-added"
        items.append(new)
        rid = str(new["id"])
    else:
        conns = items[0]["properties"].get("privateLinkServiceConnections") or \
            items[0]["properties"]["manualPrivateLinkServiceConnections"]
        state = conns[0]["properties"]["privateLinkServiceConnectionState"]
        state["status"] = "Rejected" if state.get("status") != "Rejected" else "Approved"
        rid = str(items[0]["id"])
    file.write_text(json.dumps(body))
    return rid


@pytest.mark.parametrize("op", ["change", "delete", "add"])
def test_endpoint_event_reads_the_endpoint_by_id_and_equals_a_full_build(folder: Path, op: str) -> None:
    inner = RecordedTenant(folder)
    inv = collect(inner, manifest=inner.manifest, workers=1)
    snap, links = link(inv, T)
    rid = _edit(folder, op)
    reader = Counting(inner)
    new, result = reread_into(reader, inv, [parse_id(rid)])
    assert not result.failed
    assert not any(p.endswith("/providers/microsoft.network/privateendpoints") for p in reader.paths), reader.paths
    assert reader.paths[0] == rid.strip("/").lower()
    after, _ = relink(snap, links, new, result.touched, taken_at=T)
    fresh = RecordedTenant(folder)
    want, _ = link(collect(fresh, manifest=fresh.manifest, workers=1), T)
    assert after == want


def test_a_refused_get_by_id_falls_back_to_the_list(folder: Path) -> None:
    """A 403 on the id proves nothing: the list is read, as before, and the result is the same."""
    inner = RecordedTenant(folder)
    inv = collect(inner, manifest=inner.manifest, workers=1)
    snap, links = link(inv, T)
    rid = _edit(folder, "change")
    reader = Counting(inner, refuse=frozenset({parse_id(rid).key}))
    new, result = reread_into(reader, inv, [parse_id(rid)])
    assert not result.failed
    assert any(p.endswith("/providers/microsoft.network/privateendpoints") for p in reader.paths)
    after, _ = relink(snap, links, new, result.touched, taken_at=T)
    fresh = RecordedTenant(folder)
    want, _ = link(collect(fresh, manifest=fresh.manifest, workers=1), T)
    assert after == want
