"""An event's observations, derived from the endpoints it moved, equal those of every connection of the snapshot."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tenant_catalog import TENANTS

from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.lifecycle.observations import connection_statuses, observer
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.service.reevaluate import reread_into
from plmon.monitor.state.open import open_store

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STATUSES = ("Approved", "Pending", "Rejected", "Disconnected", "")


def _connection_files(root: Path) -> list[tuple[Path, str]]:
    """(response file, resource id) of every endpoint or provider that carries a connection status."""
    out = []
    for p in sorted((root / "arm").rglob("*.json")):
        if p.name.endswith(".error.json"):
            continue
        text = p.read_text(encoding="utf-8")
        if '"status"' not in text:
            continue
        body = json.loads(text)
        items = body.get("value") if isinstance(body, dict) and isinstance(body.get("value"), list) else [body]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and '"status"' in json.dumps(item):
                out.append((p, item["id"]))
    return out


def _set_statuses(node: Any, rng: random.Random) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "status" and isinstance(v, str):
                node[k] = rng.choice(STATUSES)
            else:
                _set_statuses(v, rng)
    elif isinstance(node, list):
        for v in node:
            _set_statuses(v, rng)


def _mutate(path: Path, rid: str, rng: random.Random) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    items = body["value"] if isinstance(body, dict) and isinstance(body.get("value"), list) else [body]
    for item in items:
        if isinstance(item, dict) and item.get("id") == rid:
            _set_statuses(item, rng)
    path.write_text(json.dumps(body), encoding="utf-8")


@pytest.mark.parametrize("hinted", [False, True], ids=["whole", "relink-hint"])
@pytest.mark.parametrize("name", sorted(TENANTS))
def test_an_events_observations_equal_a_full_pass(name: str, hinted: bool, tmp_path: Path) -> None:
    """An event's observations, with or without what relink says it changed (as the daemon hands them: a Private
    Link Service keeping its alias no longer means every connection of the tenant), are those of a full pass."""
    folder = tmp_path / "work"
    shutil.copytree(TENANTS[name](tmp_path / "built"), folder)
    files = _connection_files(folder)
    if not files:
        pytest.skip("no connection statuses to change")
    rng = random.Random(f"{name}-observations{'-hint' if hinted else ''}")
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    store = open_store("sqlite:///:memory:")
    snap, links = link(inv, taken_at=AT)
    snap = observer(store)(snap)
    for step in range(10):
        path, rid = rng.choice(files)
        _mutate(path, rid, rng)
        inv, result = reread_into(reader, inv, [parse_id(rid)])
        new, links = relink(snap, links, inv, result.touched, taken_at=AT + timedelta(minutes=step + 1))
        got = observer(store, snap, links.changed if hinted else None)(new)
        assert set(got.observations) == connection_statuses(new), f"event {step} on {rid}"
        full = observer(store)(new)  # the store keeps first times, so a full pass reads the same ones
        assert dict(got.observations) == dict(full.observations), f"event {step} on {rid}"
        snap = got


@pytest.mark.parametrize("name", sorted(TENANTS)[:1])
def test_a_replica_s_observer_reads_the_store_and_writes_nothing(name: str, tmp_path: Path) -> None:
    """``record=False`` (a replica adopting another's collection) leaves the store as it was and returns what
    recording then reading would have: the stored first time when there is one, else the snapshot's time."""
    reader = RecordedTenant(TENANTS[name](tmp_path / "built"))
    snap, _ = link(collect(reader, manifest=reader.manifest, workers=1), taken_at=AT)
    seen = connection_statuses(snap)
    if not seen:
        pytest.skip("no connection statuses")
    store = open_store("sqlite:///:memory:")
    got = observer(store, record=False)(snap)
    assert store.observations() == {}
    assert dict(got.observations) == {k: AT for k in seen}
    early, later = sorted(seen)[0], sorted(seen)[-1]
    store.observe([early], AT - timedelta(days=1))
    store.observe([later], AT + timedelta(days=1))   # a maker whose clock ran ahead: recording would widen it
    before = store.observations()
    got = observer(store, record=False)(snap)
    assert store.observations() == before
    assert dict(got.observations) == {k: AT for k in seen} | {early: AT - timedelta(days=1)}
