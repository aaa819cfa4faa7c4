"""Incremental evaluation gives exactly what a full evaluation gives (issue 14, item 3: "done when").

A differential property: on every tenant the repository holds or the tests build (tests/kit/tenant_catalog.py),
random events mutate resources of every kind on disk (a property changed, a value swapped for another the tenant
uses, an entry dropped, a resource deleted), the daemon's path re-reads them (``reread_into``, then ``relink`` of the
snapshot before), and after each event :meth:`Units.update` must equal ``evaluate`` of the new snapshot, findings,
evidence, waived and errors alike. A second property proves what ``over`` promises: for every subject, a run
focused on it gives exactly the full run's issues about it.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tenant_catalog import TENANTS

from plmon.checks.engine import Evaluation, evaluate
from plmon.checks.incremental import Units
from plmon.checks.registry import all_checks
from plmon.checks.units import diff, recording, state
from plmon.monitor.collect.builder import build_snapshot, link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.service.reevaluate import affected_keys, keys_to_apply, reread_into

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
VALUES = ("Enabled", "Disabled", "RouteTableEnabled", "Approved", "Rejected", "Pending", "Disconnected", "Failed",
          "Succeeded", "VirtualAppliance", "Internet", "0.0.0.0/0", "10.0.0.0/8", "Connected", "Disconnected",
          "Deny", "Allow", "*", "")


def _shown(ev: Evaluation) -> dict[str, Any]:
    return {"findings": [f.to_dict() for f in ev.findings], "waived": [w.to_dict() for w in ev.waived],
            "errors": [g.as_dict() for g in ev.check_errors]}


def _files(root: Path) -> list[Path]:
    """Every response that holds resources: subscription lists and bodies read by id (not errors)."""
    out = []
    for p in sorted((root / "arm").rglob("*.json")):
        if p.name.endswith(".error.json"):
            continue
        body = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(body, dict) and ((isinstance(body.get("value"), list) and body["value"]
                                       and isinstance(body["value"][0], dict) and "id" in body["value"][0])
                                       or (isinstance(body.get("properties"), dict) and "id" in body)):
            out.append(p)
    return out


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, k)
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*path, i)
            yield from _leaves(v, (*path, i))


def _mutate(rng: random.Random, item: dict[str, Any], pool: list[Any]) -> None:
    props = item.get("properties")
    if not isinstance(props, dict) or not props:
        item["tags"] = {"plmon-snat": rng.choice(["always", "never", "maybe"])}
        return
    paths = list(_leaves(props))
    path = rng.choice(paths)
    parent: Any = props
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    value = parent[last]
    roll = rng.random()
    if roll < 0.2:
        del parent[last]
    elif isinstance(value, bool):
        parent[last] = not value
    elif isinstance(value, str):
        parent[last] = rng.choice([*VALUES, *pool]) if roll < 0.8 else value.upper()
    elif isinstance(value, int):
        parent[last] = value + 1
    elif isinstance(value, list) and value:
        value.pop(rng.randrange(len(value)))
    elif isinstance(value, dict) and value:
        value.pop(rng.choice(list(value)))
    else:
        del parent[last]


def _strings(root: Path) -> list[Any]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str) and len(node) < 200:
            found.add(node)
    for p in (root / "arm").rglob("*.json"):
        walk(json.loads(p.read_text(encoding="utf-8")))
    return sorted(found)


def _event(rng: random.Random, files: list[Path], pool: list[Any]) -> str | None:
    """Mutate one resource on disk; its id (what the event names), or None when nothing was left to mutate."""
    path = rng.choice(files)
    body = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(body.get("value"), list):
        items = [i for i in body["value"] if isinstance(i, dict) and isinstance(i.get("id"), str)]
        if not items:
            return None
        item = rng.choice(items)
        if rng.random() < 0.15:
            body["value"].remove(item)
        else:
            _mutate(rng, item, pool)
    else:
        item = body
        _mutate(rng, item, pool)
    path.write_text(json.dumps(body), encoding="utf-8")
    rid = item.get("id")
    return rid if isinstance(rid, str) else None


def _tenant(name: str, tmp: Path) -> Path:
    built = TENANTS[name](tmp / "built")
    work = tmp / "work"
    shutil.copytree(built, work)
    return work


def _daemon_steps(name: str, tmp: Path, seed: str) -> Iterator[tuple[str, Snapshot, Snapshot, Any, Any]]:
    """The daemon's path over a catalogue tenant: first its full collection (label "full", old and new the same
    snapshot), then 12 random events, each re-read and relinked: (label, old snapshot, new snapshot, links,
    the re-read's result). Skips the test when the tenant has nothing to mutate."""
    folder = _tenant(name, tmp)
    rng = random.Random(seed)
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv, taken_at=AT)  # as the daemon's full collection
    yield "full", snap, snap, links, None
    files, pool = _files(folder), _strings(folder)
    if not files:
        pytest.skip("no resources to mutate")
    for step in range(12):
        rid = _event(rng, files, pool)
        if rid is None:
            continue
        inv, result = reread_into(reader, inv, [parse_id(rid)])
        new, links = relink(snap, links, inv, result.touched, taken_at=AT)  # as the daemon's event step
        yield f"event {step} on {rid}", snap, new, links, result
        snap = new


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_random_events_give_what_a_full_evaluation_gives(name: str, tmp_path: Path) -> None:
    """After the full collection and after each random event, Units gives what a full evaluation gives."""
    units = Units()
    for label, old, new, _links, result in _daemon_steps(name, tmp_path, f"{name}-14"):
        if result is None:
            assert _shown(units.full(new)) == _shown(evaluate(new))
            continue
        got, report = units.update(old, new)
        assert _shown(got) == _shown(evaluate(new)), f"{label}: {report}"


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_the_daemons_shortcuts_agree_with_the_whole_comparisons(name: str, tmp_path: Path) -> None:
    """What the daemon takes from a relink and an update instead of comparing whole snapshots and evaluations:
    the diff restricted to the keys relink names, the lifecycle's keys from the re-judged units, and the findings
    about them picked by identity."""
    units = Units()
    before: Evaluation | None = None
    for label, old, new, links, result in _daemon_steps(name, tmp_path, f"{name}-hint"):
        if result is None:
            before = units.full(new)
            continue
        assert before is not None
        assert diff(old, new, links.changed) == diff(old, new), label
        got, report = units.update(old, new, links.changed)
        assert _shown(got) == _shown(evaluate(new)), f"{label}: {report}"
        checks = set(report.checks)
        want = affected_keys(before, got, checks, result.keys)
        if report.moved is not None:
            assert keys_to_apply(report.moved, result.keys, units.resource_keys(checks)) == want
        about = units.about(got, want)
        assert about is not None
        assert about.findings == tuple(f for f in got.findings if f.key[1] in want)
        before = got


def _focused(snap: Snapshot, check_id: str, subject: str) -> list[dict[str, Any]]:
    chk = all_checks()[check_id]
    s = state()
    s.focus = frozenset({subject})
    try:
        issues = list(chk.fn(recording(snap), chk.defaults()))
    finally:
        s.focus = None
    return sorted((i.resource.key, json.dumps(i.evidence, sort_keys=True, default=str), i.message) for i in issues)


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_an_over_check_judges_each_subject_on_its_own(name: str, tmp_path: Path) -> None:
    """For every subject, focus={s} gives exactly the issues the full run attributes to s."""
    snap = build_snapshot(collect(RecordedTenant(folder := TENANTS[name](tmp_path / "t")),
                                  manifest=RecordedTenant(folder).manifest, workers=1), taken_at=AT)
    units = Units()
    units.full(snap)
    for chk in all_checks().values():
        if not chk.over:
            continue
        assert chk.id not in units.whole_only, f"{chk.id} yields issues outside a subject"
        keys = [key for findings in units.found.get(chk.id, {}).values() for key, _ in findings]
        if not set(chk.over) - {"private_endpoints", "provider_connections_by_endpoint", "targets",
                                "private_link_services"}:
            # subjects of a collection are kept in no fixed order across events: no finding may come from two
            assert len(keys) == len(set(keys)), f"{chk.id}: one finding from several subjects"
        for subject, findings in units.found.get(chk.id, {}).items():
            assert subject is not None
            got = _focused(snap, chk.id, subject)
            want = sorted((parse_id(f.resource_id).key, json.dumps(f.evidence, sort_keys=True, default=str),
                           f.message) for _, f in findings)
            assert got == want, f"{chk.id} on {subject}"


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_the_keys_below_reread_resources_are_those_a_scan_of_every_key_finds(name: str, tmp_path: Path) -> None:
    """resource_keys(below=...), answered from the keys of each top-level resource, is every current key below one
    of the roots, whether a root is a top-level resource, below one, or above one (a group, a subscription)."""
    units = Units()
    asked = keyed = 0
    for _label, _old, new, links, result in _daemon_steps(name, tmp_path, f"{name}-below"):
        if result is None:
            units.full(new)
        else:
            units.update(_old, new, links.changed)
        checks = {c.id for c in all_checks().values()}
        every = units.resource_keys(checks)
        deeper = {k for k in every if k.count("/") > 8}
        for roots in ([*(result.keys if result is not None else ())], sorted(deeper)[:3],
                      ["/".join(k.split("/")[:9]) for k in sorted(deeper)[:3]],
                      sorted({"/".join(k.split("/")[:n]) for k in every if k.startswith("/subscriptions/")
                              for n in (3, 5)})[:4], []):
            prefixes = tuple(r + "/" for r in roots)
            want = {k for k in every if prefixes and k.startswith(prefixes)}
            assert units.resource_keys(checks, below=roots) == want
            asked += bool(want)
        keyed += bool(every)
    assert asked or not keyed   # a tenant without findings has no key to find
