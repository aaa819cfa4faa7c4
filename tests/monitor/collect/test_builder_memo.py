"""The daemon's incremental rebuild (builder.BuildMemo) gives exactly what a build from scratch gives."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from daemonkit import config

from plmon.checks.engine import evaluate
from plmon.monitor.collect.builder import BuildMemo, build_snapshot
from plmon.monitor.collect.plan import RawInventory, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.reevaluate import reread_into
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SETTINGS = config("http://127.0.0.1:9/unused").check_settings()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "tenant"
    write_tenant(generate(SynthSpec(subscriptions=3, endpoints=60, seed=5, bad_share=0.3)), out)
    return out


def _list_file(folder: Path, kind: str) -> Path:
    return sorted((folder / "arm" / "subscriptions").glob(f"*/providers/Microsoft.Network/{kind}.json"))[0]


def _edit_list(folder: Path, kind: str, change: Any) -> list[Any]:
    """Rewrite one subscription's list of ``kind`` with ``change(items)``; the ids of the items it touched."""
    file = _list_file(folder, kind)
    body = json.loads(file.read_text())
    touched = change(body["value"])
    file.write_text(json.dumps(body))
    return touched


def _delete_first(items: list[Any]) -> list[Any]:
    return [items.pop(0)["id"]]


def _drop_routes(items: list[Any]) -> list[Any]:
    items[0]["properties"]["routes"] = []
    return [items[0]["id"]]


def _add_malformed(items: list[Any]) -> list[Any]:
    items.append({"name": "no-id"})   # a gap, never a resource
    return [items[0]["id"]]


def _flip_a_target(folder: Path, inv: RawInventory) -> list[Any]:
    body = next(b for _, b in sorted(inv.targets.items())
                if isinstance(b, dict) and "publicNetworkAccess" in b.get("properties", {}))
    file = folder / "arm" / (body["id"].strip("/") + ".json")
    raw = json.loads(file.read_text())
    raw["properties"]["publicNetworkAccess"] = "Enabled" if raw["properties"]["publicNetworkAccess"] != "Enabled" \
        else "Disabled"
    file.write_text(json.dumps(raw))
    return [body["id"]]


def _fresh(inv: RawInventory) -> RawInventory:
    """The inventory with every raw JSON object a new one, as a collection from scratch would hold it."""
    out = copy.copy(inv)
    for name in ("subscriptions", "management_groups", "associations", "lists", "zone_groups", "vnet_links",
                 "cnames", "targets"):
        setattr(out, name, json.loads(json.dumps(getattr(inv, name))))
    out.associations = [tuple(a) for a in out.associations]
    return out


def _findings(snap: Any) -> list[dict[str, Any]]:
    return sorted((f.to_dict() for f in evaluate(snap, SETTINGS, []).findings), key=lambda f: json.dumps(f))


def test_incremental_rebuilds_equal_builds_from_scratch_through_rereads_and_deletes(folder: Path) -> None:
    """After each re-read (target flip, endpoint/route-table/NSG edits, deletes, a malformed item) the memoised
    build equals a from-scratch build of a deep copy, snapshot and findings, and parses only what changed."""
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    memo = BuildMemo()
    build_snapshot(inv, taken_at=T, memo=memo)
    total = memo.misses
    steps = [
        lambda: _flip_a_target(folder, inv),
        lambda: _edit_list(folder, "privateEndpoints", _delete_first),
        lambda: _edit_list(folder, "routeTables", _drop_routes),
        lambda: _edit_list(folder, "networkSecurityGroups", _add_malformed),
        lambda: _edit_list(folder, "virtualNetworks", _delete_first),
        lambda: _edit_list(folder, "privateDnsZones", _delete_first),
        lambda: _edit_list(folder, "privateEndpoints", _delete_first),
    ]
    for step in steps:
        touched = step()
        inv, result = reread_into(reader, inv, [parse_id(t) for t in touched])
        assert not result.failed
        misses = memo.misses
        incremental = build_snapshot(inv, taken_at=T, memo=memo)
        scratch = build_snapshot(_fresh(inv), taken_at=T)
        assert incremental == scratch
        assert _findings(incremental) == _findings(scratch)
        assert memo.misses - misses < total / 4, "a rebuild re-parsed most of the tenant"
    assert any(g.code == "MalformedResource" for g in incremental.coverage.gaps)
    # The memo holds only what the last build used: deleted and replaced items are gone.
    live = build_snapshot(inv, taken_at=T, memo=memo)
    assert live == scratch and len(memo) <= total + len(steps)


def test_daemon_state_after_events_equals_a_fresh_build_and_evaluation(folder: Path, tmp_path: Path) -> None:
    """A daemon that processed events holds the snapshot, first-seen times and findings a fresh build gives."""
    db = tmp_path / "state.db"
    d = Daemon(config("http://127.0.0.1:9/unused"), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
               channels={})
    d.full_collection()
    assert d.inventory is not None
    for step in (lambda: _flip_a_target(folder, d.inventory),
                 lambda: _edit_list(folder, "privateEndpoints", _delete_first),
                 lambda: _edit_list(folder, "routeTables", _drop_routes)):
        touched = step()
        sub = parse_id(touched[0]).subscription
        d.accept(json.dumps([{
            "id": f"ev-{touched[0]}", "eventType": "Microsoft.Resources.ResourceWriteSuccess", "subject": touched[0],
            "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"), "dataVersion": "2",
            "metadataVersion": "1", "topic": f"/subscriptions/{sub}",
            "data": {"operationName": f"{parse_id(touched[0]).type}/write", "resourceUri": touched[0],
                     "status": "Succeeded", "subscriptionId": sub}}]).encode(), "application/json")
        assert d.process_pending().rereads == 1
        assert d.snapshot is not None and d.evaluation is not None
        scratch = build_snapshot(_fresh(d.inventory), taken_at=d.snapshot.taken_at)
        assert d.snapshot == type(scratch)(**{**{f: getattr(scratch, f) for f in scratch.__dataclass_fields__},
                                               "observations": d.snapshot.observations})
        assert observer(d.store)(scratch).observations == d.snapshot.observations
        fresh = evaluate(d.snapshot, d.settings, d.waivers)
        key = lambda f: (f.check_id, f.key)  # noqa: E731
        assert sorted(map(key, d.evaluation.findings)) == sorted(map(key, fresh.findings))
        assert sorted((f.to_dict() for f in d.evaluation.findings), key=json.dumps) == \
            sorted((f.to_dict() for f in fresh.findings), key=json.dumps)
