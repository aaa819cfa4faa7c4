"""The early cut-off of shared work (plmon.checks.units.cutoff): an event that recomputes an appliance's rows for
the endpoints behind a changed route table judges the appliance again only when some endpoint's rows moved, and
the evaluation stays what a full evaluation gives either way (issue 14, fourth round)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plmon.checks.engine import Evaluation, evaluate
from plmon.checks.incremental import Units
from plmon.checks.registry import Check
from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.reevaluate import reread_into

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SNAT = ("route.nva-missing-snat", "route.nva-snat-unknown")


def _shown(ev: Evaluation) -> list[dict[str, Any]]:
    return [f.to_dict() for f in ev.findings]


def _route_tables(folder: Path) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(file, its body, a route table in it with the synth's spoke routes), in a fixed order."""
    for path in sorted((folder / "arm").rglob("routeTables.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for table in body.get("value", []):
            names = {r["name"] for r in table["properties"].get("routes", [])}
            if {"default-to-hub", "spoke-via-hub"} <= names:
                yield path, body, table


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[frozenset[str] | None]]:
    """check id -> the focus of each of its runs (None: a whole run)."""
    seen: dict[str, list[frozenset[str] | None]] = {}
    run = Units._run

    def spy(self: Units, chk: Check, view: Any, focus: frozenset[str] | None) -> None:
        seen.setdefault(chk.id, []).append(focus)
        run(self, chk, view, focus)
    monkeypatch.setattr(Units, "_run", spy)
    return seen


def _tenant_evaluated(tmp_path: Path) -> tuple[Path, RecordedTenant, Any, Any, Any, Units]:
    """A small synth tenant with a hub appliance, collected, linked and evaluated under Units (checked equal to a
    plain evaluation): the folder, its reader, inventory, snapshot, links and the Units."""
    folder = tmp_path / "t"
    write_tenant(generate(SynthSpec(subscriptions=3, endpoints=60, seed=3)), folder)
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv, taken_at=AT)
    units = Units()
    assert _shown(units.full(snap)) == _shown(evaluate(snap))
    return folder, reader, inv, snap, links, units


def _event(reader: RecordedTenant, inv: Any, snap: Any, links: Any, units: Units, rid: str) -> tuple[Any, Any, Any]:
    """The daemon's step for an event on ``rid`` (re-read, relink, Units.update), checked equal to a plain
    evaluation of the new snapshot: the new inventory, snapshot and links."""
    inv, result = reread_into(reader, inv, [parse_id(rid)])
    new, links = relink(snap, links, inv, result.touched, taken_at=AT)
    got, _report = units.update(snap, new, links.changed)
    assert _shown(got) == _shown(evaluate(new))
    return inv, new, links


def test_an_appliance_is_judged_again_only_when_its_rows_moved(
        tmp_path: Path, judged: dict[str, list[frozenset[str] | None]]) -> None:
    folder, reader, inv, snap, links, units = _tenant_evaluated(tmp_path)
    path, body, table = next(_route_tables(folder))
    routes = {r["name"]: r["properties"] for r in table["properties"]["routes"]}
    hub = routes["spoke-via-hub"]["nextHopIpAddress"]
    appliance = next(k for k in units.indexes.tables["route.subjects"][1].entries
                     if isinstance(k, str) and k.startswith("route.appliances\0"))

    def event(change: str, value: str) -> set[str]:
        nonlocal inv, snap, links
        routes[change]["nextHopIpAddress"] = value
        path.write_text(json.dumps(body), encoding="utf-8")
        judged.clear()
        inv, new, links = _event(reader, inv, snap, links, units, table["id"])
        snap = new
        return {k for c in SNAT for focus in judged.get(c, []) for k in (focus or ())}

    # The default route never replaces an endpoint's /32: the paths through the hub keep their rows.
    assert appliance not in event("default-to-hub", "10.255.255.254")
    # The spoke's route to the hub now leads nowhere: the appliance loses those rows and is judged again.
    assert appliance in event("spoke-via-hub", "10.255.255.254")
    assert appliance in event("spoke-via-hub", hub)


def test_an_endpoint_changed_in_its_state_alone_leaves_its_appliance_unjudged(
        tmp_path: Path, judged: dict[str, list[frozenset[str] | None]]) -> None:
    """An endpoint whose record changes but not in what its SNAT rows show (its provisioning state) keeps its rows:
    the appliance behind it is not judged again, and the evaluation is still a full one's."""
    folder, reader, inv, snap, links, units = _tenant_evaluated(tmp_path)
    entries = units.indexes.tables["route.subjects"][1].entries
    appliance = next(k for k in entries if isinstance(k, str) and k.startswith("route.appliances\0"))
    behind = entries[appliance]
    endpoint = behind if isinstance(behind, str) else sorted(behind)[0]
    path, body, item = next((p, b, i) for p in sorted((folder / "arm").rglob("privateEndpoints.json"))
                            for b in [json.loads(p.read_text(encoding="utf-8"))] for i in b["value"]
                            if parse_id(i["id"]).key == endpoint)
    for state in ("Failed", "Succeeded"):
        item["properties"]["provisioningState"] = state
        path.write_text(json.dumps(body), encoding="utf-8")
        judged.clear()
        inv, new, links = _event(reader, inv, snap, links, units, item["id"])
        assert new.private_endpoints[endpoint] is not snap.private_endpoints[endpoint]   # the record did change
        assert appliance not in {k for c in SNAT for focus in judged.get(c, []) for k in (focus or ())}
        snap = new
