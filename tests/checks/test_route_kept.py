"""What the route checks keep per endpoint under the daemon's units (issue 14, fifth round): an appliance or route
table judged again after an event rebuilds the evidence of the endpoints the event moved and takes the rest as it
was, and the evaluation stays what a full evaluation gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from unitskit import UnitsTenant

import plmon.checks.route as route
import plmon.checks.units as units
from plmon.checks.engine import evaluate
from plmon.checks.units import plain
from plmon.monitor.model.arm_id import parse_id


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The endpoints whose SNAT evidence or udr-bypassed evidence a check builds under the units, in order (the
    differential check's full evaluation builds all of them, and is not counted)."""
    seen: list[str] = []
    snat_part, bypass = route._path_part, route._bypass_parts

    def part(p: Any) -> dict[str, Any]:
        if not plain():
            seen.append(p.endpoint.key)
        return snat_part(p)

    def parts(snap: Any, rg: str, name: str, paths: list[Any]) -> Any:
        if not plain():
            seen.extend(p.endpoint.key for p in paths)
        return bypass(snap, rg, name, paths)
    monkeypatch.setattr(route, "_path_part", part)
    monkeypatch.setattr(route, "_bypass_parts", parts)
    return seen


def test_an_endpoint_event_builds_only_that_endpoints_route_evidence(tmp_path: Path, built: list[str]) -> None:
    """After a change to one endpoint, the appliance and table findings it is part of are judged again from the
    other endpoints' kept evidence: only the changed endpoint's is built (and the result equals a full run)."""
    t = UnitsTenant(tmp_path / "t")
    assert built, "the tenant has appliance or bypass findings"
    snat = next(f for f in evaluate(t.snap).findings if f.check_id == "route.nva-missing-snat")
    named = {row["private_endpoint"].lower() for row in snat.evidence["paths"]}
    assert len(named) > 2
    target = None
    for path in sorted((tmp_path / "t" / "arm").rglob("privateEndpoints.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for item in body["value"]:
            if item["id"].lower() in named:
                target = (path, body, item)
                break
        if target:
            break
    assert target is not None
    path, body, item = target
    # a change its SNAT rows show (the name in its path text; a change to its state alone keeps them whole:
    # tests/checks/test_units_cutoff.py)
    item["properties"]["provisioningState"] = "Updating"
    item["name"] = item["name"] + "-renamed"
    built.clear()
    t.event(path, body, item["id"])
    assert built and set(built) == {parse_id(item["id"]).key}


def test_a_route_table_event_keeps_the_other_tables_endpoints_evidence(tmp_path: Path, built: list[str]) -> None:
    """A spoke's route table stripped to its default route: the endpoints behind it are built again, no others."""
    t = UnitsTenant(tmp_path / "t")
    for path in sorted((tmp_path / "t" / "arm").rglob("routeTables.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        table = next((x for x in body["value"] if len(x["properties"].get("routes", [])) >= 2
                      and x["properties"].get("subnets")), None)
        if table is not None:
            break
    assert table is not None
    behind = {e for e, pe in t.snap.private_endpoints.items()
              if any(p.route_table_id is not None and p.route_table_id.key == parse_id(table["id"]).key
                     for p in route.paths_for(t.snap, pe))}
    table["properties"]["routes"] = [r for r in table["properties"]["routes"]
                                     if r["properties"]["addressPrefix"] == "0.0.0.0/0"]
    built.clear()
    t.event(path, body, table["id"])
    assert built and set(built) <= behind


def test_an_unmoved_cutoff_value_is_kept_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An appliance's rows that an event recomputed and found unmoved stay the very objects they were (so what the
    SNAT checks kept of them stays valid), and the evaluation equals a full one."""
    recompute, same = units.CUTOFF["route.appliance-rows"]
    verdicts: list[bool] = []

    def counted(a: Any, b: Any) -> bool:
        verdicts.append(same(a, b))
        return verdicts[-1]

    monkeypatch.setitem(units.CUTOFF, "route.appliance-rows", (recompute, counted))
    t = UnitsTenant(tmp_path / "t")
    rows = {k: v for k, (v, _r) in t.units.memo.entries.items()
            if type(k) is tuple and k[0] == "route.appliance-rows"}
    assert rows
    for path in sorted((tmp_path / "t" / "arm").rglob("routeTables.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        table = next((x for x in body["value"] if any(r["properties"]["addressPrefix"] == "0.0.0.0/0"
                                                      for r in x["properties"].get("routes", []))
                      and x["properties"].get("subnets")), None)
        if table is not None:
            break
    assert table is not None
    # a route that no path takes: the rows behind the table are recomputed and found the same
    table["properties"]["routes"].append({"name": "unused", "properties": {
        "addressPrefix": "203.0.113.0/24", "nextHopType": "VirtualAppliance", "nextHopIpAddress": "10.255.0.9"}})
    t.event(path, body, table["id"])
    after = {k: v for k, (v, _r) in t.units.memo.entries.items() if k in rows}
    assert after and all(after[k] is rows[k] for k in after)
    assert verdicts and all(verdicts)   # the cut-off did recompute rows behind the table, and found them unmoved


def test_an_endpoints_paths_read_their_networks_client_subnets_once(tmp_path: Path) -> None:
    """Under the units an endpoint's paths read one kept entry for its network's client subnets, not each client
    subnet, and the entry is shared by the network's endpoints."""
    t = UnitsTenant(tmp_path / "t")
    entries = t.units.memo.entries
    clients = [k for k in entries if type(k) is tuple and k[0] == "paths.clients"]
    assert clients
    readers = [k for k, (_v, reads) in entries.items() if type(k) is tuple and k[0] == "paths.of"
               and any(r[0] == "@memo" and r[1] in clients for r in reads)]
    assert len(readers) > len(clients)
    for k in readers:   # the endpoint's own subnet, no client subnet
        assert len({r[1] for r in entries[k][1] if r[0] == "subnets"}) <= 1


def test_a_firewall_policy_event_asks_once_per_subject_whether_its_policy_is_unread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy change that judges a hub firewall's rows again asks whether its policy is unread once per subject
    and verdict model, not once per row (and the evaluation equals a full one)."""
    t = UnitsTenant(tmp_path / "t")
    asked: list[str] = []
    unread = route._policy_unread

    def counted(snap: Any, subject: Any, verdict: Any) -> bool:
        if not plain():
            asked.append(subject.key)
        return bool(unread(snap, subject, verdict))
    monkeypatch.setattr(route, "_policy_unread", counted)
    path = next(iter(sorted((tmp_path / "t" / "arm").rglob("firewallPolicies.json"))))
    body = json.loads(path.read_text(encoding="utf-8"))
    policy = body["value"][0]
    # every private range but the documentation one: the hub firewall leaves its endpoints' traffic untranslated
    policy["properties"]["snat"] = {"privateRanges": ["IANAPrivateRanges", "203.0.113.0/24"]}
    t.event(path, body, policy["id"])
    snat = [f for f in evaluate(t.snap).findings if f.check_id == "route.nva-missing-snat"]
    assert any(len(f.evidence["paths"]) > 20 for f in snat)
    assert asked and len(asked) == len(set(asked))


def test_the_cutoff_compares_a_route_on_what_its_evidence_shows() -> None:
    """_route_read holds exactly the values of a route's evidence (to_dict), so the cut-off compares the same."""
    from plmon.checks.paths import RouteCandidate
    r = RouteCandidate("10.0.0.0/8", "user-defined", "VirtualAppliance", "10.0.0.4", "r1",
                       parse_id("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/routeTables/t"))
    assert route._route_read(r) == tuple(r.to_dict().values())


def test_udr_bypassed_evidence_is_the_same_built_afresh_or_from_kept_parts(tmp_path: Path) -> None:
    """The table's shared parts kept from an earlier call change nothing in what a later one builds."""
    t = UnitsTenant(tmp_path / "t")
    found = [f for f in evaluate(t.snap).findings if f.check_id == "route.udr-bypassed"]
    assert found, "the tenant has a udr-bypassed finding"
    route._MADE.clear()
    again = [f for f in evaluate(t.snap).findings if f.check_id == "route.udr-bypassed"]
    assert [(f.evidence, f.remediation) for f in again] == [(f.evidence, f.remediation) for f in found]


def test_an_endpoints_appliance_rows_built_in_one_pass_are_what_the_rows_make(tmp_path: Path) -> None:
    """_appliance_rows' one-pass build keeps, for every endpoint and appliance, what _Rows makes of the row list."""
    t = UnitsTenant(tmp_path / "t")
    seen = 0
    for pe in t.snap.private_endpoints.values():
        paths = route.paths_for(t.snap, pe)
        for key in {k for p in paths for k in route._appliance_keys(p)}:
            got = route._appliance_rows(t.snap, key, paths)
            rows = [(s, p, v) for p in paths if p.via_appliance and p.hop is not None and p.hop.kind != "unresolved"
                    for s, v in route._hop_verdicts(p.hop, route.tagged_snat) if s.key == key]
            want = route._Rows(rows, got.firewalls, got.tagged)
            assert (got.paths, got.subjects, got.verdicts, got.rows) == \
                (want.paths, want.subjects, want.verdicts, want.rows)
            assert got.tagged == frozenset(v.snats for _s, _p, v in rows if v is not None)
            assert list(got.firewalls) == list(dict.fromkeys(
                (p.hop.firewall.key, p.destination) for _s, p, v in rows if v is None and p.hop.firewall is not None))
            seen += 1
    assert seen


def test_the_bypassing_routes_kept_per_candidate_tuple_are_the_tuples_appliance_routes(tmp_path: Path) -> None:
    """_bypassing, kept by the candidate tuple's identity, gives each path the appliance routes of its own tuple."""
    t = UnitsTenant(tmp_path / "t")
    seen = 0
    for pe in t.snap.private_endpoints.values():
        for p in route.paths_for(t.snap, pe):
            want = [u for u in p.not_replacing if (u.next_hop_type or "").lower() == "virtualappliance"]
            assert route._bypassing(p) == want and route._bypassing(p) == want
            seen += bool(want)
    assert seen


def test_an_equal_candidate_tuple_made_again_gets_its_own_entry(tmp_path: Path) -> None:
    """_bypassing keyed by identity: an equal tuple made anew (as a later snapshot makes it) is not served the kept
    list of the old one, and the kept entry holds its tuple (so the id is not reused while it is kept)."""
    t = UnitsTenant(tmp_path / "t")
    p = next(p for pe in t.snap.private_endpoints.values() for p in route.paths_for(t.snap, pe)
             if route._bypassing(p))
    kept = route._bypassing(p)
    made_again = tuple(dataclasses.replace(u) for u in p.not_replacing)
    assert made_again == p.not_replacing and made_again is not p.not_replacing
    fresh = route._bypassing(cast(Any, SimpleNamespace(not_replacing=made_again)))   # what _bypassing reads of a path
    assert fresh == kept and fresh is not kept
    assert all(any(u is c for c in made_again) for u in fresh)   # the new tuple's own routes, not the old ones
    assert route._BYPASSING[id(p.not_replacing)][0] is p.not_replacing
