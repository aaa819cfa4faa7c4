"""The typed inventory: a re-read replaces its units, and the snapshot linked from them is the full build's.

The daemon keeps typed read units, never raw JSON (collect/inventory.py). These tests mutate a synthetic
recorded tenant (change, add and delete items of several kinds), re-read what changed as the daemon does, and
check that the updated snapshot equals a full collection and build of the mutated tenant: every collection and
index as mappings, plus coverage, and the findings.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from daemonkit import config

from plmon.checks.engine import evaluate
from plmon.monitor.collect.builder import FAMILIES, Links, build_snapshot, link, relink
from plmon.monitor.collect.inventory import Inventory, Parsed, scope_of
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.reevaluate import reread_into
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SETTINGS = config("http://127.0.0.1:9/unused").check_settings()
MAPPINGS = ("subscriptions", "private_endpoints", "private_link_services", "rmpls", "associations", "targets",
            "virtual_networks", "subnets", "route_tables", "nsgs", "firewalls", "firewall_policies",
            "load_balancers", "nics", "bastion_hosts", "dns_zones", "provider_connections_by_endpoint",
            "endpoints_by_subnet")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "tenant"
    write_tenant(generate(SynthSpec(subscriptions=3, endpoints=60, seed=5, bad_share=0.3)), out)
    return out


def _list_files(folder: Path, kind: str) -> list[Path]:
    return sorted((folder / "arm" / "subscriptions").glob(f"*/providers/Microsoft.Network/{kind}.json"))


def _edit_list(folder: Path, kind: str, change: Callable[[list[Any]], list[str]], which: int = 0) -> list[str]:
    """Rewrite one subscription's list of ``kind`` with ``change(items)``; the ids of the items it touched."""
    files = _list_files(folder, kind)
    file = files[which % len(files)]
    body = json.loads(file.read_text())
    touched = change(body["value"])
    file.write_text(json.dumps(body))
    return touched


def _delete_first(items: list[Any]) -> list[str]:
    return [items.pop(0)["id"]] if items else []


def _drop_routes(items: list[Any]) -> list[str]:
    items[0]["properties"]["routes"] = []
    return [items[0]["id"]]


def _add_malformed(items: list[Any]) -> list[str]:
    items.append({"name": "no-id"})   # a gap, never a resource
    return [items[0]["id"]]


def _target_files(folder: Path) -> list[Path]:
    out = []
    for f in sorted((folder / "arm" / "subscriptions").glob("*/resourceGroups/*/providers/*/*/*.json")):
        body = json.loads(f.read_text())
        if isinstance(body, dict) and "publicNetworkAccess" in body.get("properties", {}):
            out.append(f)
    return out


def _flip_a_target(folder: Path, which: int = 0) -> list[str]:
    files = _target_files(folder)
    file = files[which % len(files)]
    raw = json.loads(file.read_text())
    raw["properties"]["publicNetworkAccess"] = "Enabled" if raw["properties"]["publicNetworkAccess"] != "Enabled" \
        else "Disabled"
    file.write_text(json.dumps(raw))
    return [raw["id"]]


def _full(folder: Path) -> Snapshot:
    reader = RecordedTenant(folder)
    return build_snapshot(collect(reader, manifest=reader.manifest, workers=1), taken_at=T)


def _findings(snap: Snapshot) -> list[dict[str, Any]]:
    return sorted((f.to_dict() for f in evaluate(snap, SETTINGS, []).findings), key=lambda f: json.dumps(f))


def assert_same_snapshot(got: Snapshot, want: Snapshot) -> None:
    """Every collection and index equal as mappings (order aside), coverage equal, and then the whole snapshot."""
    for name in MAPPINGS:
        assert dict(getattr(got, name)) == dict(getattr(want, name)), name
    assert set(got.coverage.gaps) == set(want.coverage.gaps)
    assert got.coverage.read == want.coverage.read
    assert got == want


def assert_untouched_kept(before: Snapshot, after: Snapshot) -> None:
    """Every record equal in both snapshots is the very same object: what changed can be found by identity."""
    for name in [*FAMILIES.values(), "subnets", "provider_connections_by_endpoint", "endpoints_by_subnet"]:
        old, new = getattr(before, name), getattr(after, name)
        same = [k for k in old.keys() & new.keys() if old[k] == new[k]]
        assert all(old[k] is new[k] for k in same), name


def _step(reader: RecordedTenant, inv: Inventory, snap: Snapshot, links: Links,
          touched_ids: list[str]) -> tuple[Inventory, Snapshot, Links]:
    """Re-read ``touched_ids`` as the daemon does; the incrementally re-linked snapshot must equal a full link of
    the new inventory and keep every untouched record."""
    new, result = reread_into(reader, inv, [parse_id(t) for t in touched_ids])
    assert not result.failed
    after, links = relink(snap, links, new, result.touched, taken_at=T)
    assert_same_snapshot(after, link(new, T)[0])
    assert_untouched_kept(snap, after)
    return new, after, links


def test_rereads_of_changed_and_deleted_items_equal_a_full_build(folder: Path) -> None:
    """After each re-read (target flip, endpoint/route-table/NSG edits, deletes, a malformed item) the updated
    snapshot equals a full collection of the changed tenant, snapshot and findings; the untouched units are kept."""
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv, T)
    steps = [
        lambda: _flip_a_target(folder),
        lambda: _edit_list(folder, "privateEndpoints", _delete_first),
        lambda: _edit_list(folder, "routeTables", _drop_routes),
        lambda: _edit_list(folder, "networkSecurityGroups", _add_malformed),
        lambda: _edit_list(folder, "virtualNetworks", _delete_first),
        lambda: _edit_list(folder, "privateDnsZones", _delete_first),
        lambda: _edit_list(folder, "privateEndpoints", _delete_first),
    ]
    for step in steps:
        touched = step()
        before = inv
        inv, incremental, links = _step(reader, inv, snap, links, touched)
        snap = incremental
        scratch = _full(folder)
        assert_same_snapshot(incremental, scratch)
        assert _findings(incremental) == _findings(scratch)
        kept = [u for kind in before.lists for name, u in before.lists[kind].items() if inv.lists[kind].get(name) is u]
        assert len(kept) >= sum(len(v) for v in before.lists.values()) - 1, "a re-read replaced more than its unit"
    assert any(g.code == "MalformedResource" for g in incremental.coverage.gaps)


def _rename(item: dict[str, Any], suffix: str) -> dict[str, Any]:
    new = copy.deepcopy(item)
    new["id"] = f"{item['id']}{suffix}"
    new["name"] = f"{item.get('name', 'x')}{suffix}"
    return new


def _edit_associations(folder: Path, rng: random.Random) -> list[str]:
    """Add (a copy under a new name, naming another private link), change or delete an association."""
    file = next(iter(sorted((folder / "arm" / "providers").rglob("privateLinkAssociations.json"))), None)
    if file is None:
        return []
    body = json.loads(file.read_text())
    items = body["value"]
    if not items:
        return []
    op = rng.choice(["add", "change", "delete"])
    i = rng.randrange(len(items))
    if op == "delete":
        touched = items.pop(i)["id"]
    elif op == "add":
        items.append(_rename(items[i], f"-n{rng.randrange(10**6)}"))
        items[-1]["properties"]["publicNetworkAccess"] = "Enabled"
        touched = items[-1]["id"]
    else:
        items[i]["properties"]["publicNetworkAccess"] = rng.choice(["Enabled", "Disabled"])
        touched = items[i]["id"]
    file.write_text(json.dumps(body))
    return [touched]


def _make_dynamic(folder: Path, rng: random.Random) -> list[str]:
    """An endpoint turned into a dynamic-IP one whose NIC no list holds any more: its IP is then read from its NIC by
    id (and the NIC read by id is let go when nothing needs it)."""
    pe_file = _list_files(folder, "privateEndpoints")[rng.randrange(3) % len(_list_files(folder, "privateEndpoints"))]
    body = json.loads(pe_file.read_text())
    candidates = [pe for pe in body["value"] if pe.get("properties", {}).get("networkInterfaces")]
    if not candidates:
        return []
    pe = rng.choice(candidates)
    pe["properties"].update(ipConfigurations=[], customDnsConfigs=[])
    pe_file.write_text(json.dumps(body))
    nic_id = pe["properties"]["networkInterfaces"][0]["id"].lower()
    for nic_file in _list_files(folder, "networkInterfaces"):
        nics = json.loads(nic_file.read_text())
        held = [n for n in nics["value"] if n["id"].lower() == nic_id]
        if held:
            nics["value"] = [n for n in nics["value"] if n["id"].lower() != nic_id]
            nic_file.write_text(json.dumps(nics))
            by_id = folder / "arm" / (held[0]["id"].strip("/") + ".json")
            by_id.parent.mkdir(parents=True, exist_ok=True)
            by_id.write_text(json.dumps(held[0]))
            return [pe["id"], held[0]["id"]]  # events on both: the NIC list is read again without it
    return [pe["id"]]


def _mutation(rng: random.Random, folder: Path) -> list[str]:
    """One random change of one item of one kind: a property changed, an item added (a copy under a new name),
    or an item deleted. Returns the ids an event would name."""
    kind = rng.choice(["privateEndpoints", "routeTables", "networkSecurityGroups", "virtualNetworks",
                       "privateDnsZones", "networkInterfaces", "azureFirewalls", "privateLinkServices", "target",
                       "firewallPolicies", "associations", "dynamic"])
    which = rng.randrange(10)
    if kind == "target":
        return _flip_a_target(folder, which)
    if kind == "associations":
        return _edit_associations(folder, rng)
    if kind == "dynamic":
        return _make_dynamic(folder, rng)
    if not _list_files(folder, kind):
        return []
    op = rng.choice(["change", "add", "delete"])
    suffix = f"-n{rng.randrange(10**6)}"

    def change(items: list[Any]) -> list[str]:
        if not items:
            return []
        i = rng.randrange(len(items))
        if op == "delete":
            return [items.pop(i)["id"]]
        if op == "add":
            items.append(_rename(items[i], suffix))
            return [items[-1]["id"]]
        props = items[i].setdefault("properties", {})
        if kind == "routeTables":
            props["routes"] = props.get("routes", [])[1:]
        elif kind == "networkSecurityGroups":
            props["securityRules"] = []
        elif kind == "virtualNetworks":
            for s in props.get("subnets", []):
                s.setdefault("properties", {})["privateEndpointNetworkPolicies"] = rng.choice(["Enabled", "Disabled"])
        elif kind == "privateEndpoints":
            for c in props.get("privateLinkServiceConnections", []):
                c.setdefault("properties", {}).setdefault("privateLinkServiceConnectionState", {})["status"] = \
                    rng.choice(["Approved", "Pending", "Rejected"])
        elif kind == "networkInterfaces":
            props["enableIPForwarding"] = not props.get("enableIPForwarding", False)
        elif kind == "firewallPolicies":
            props["snat"] = {"privateRanges": [rng.choice(["255.255.255.255/32", "10.0.0.0/8"])]}
        else:
            items[i]["tags"] = {"changed": suffix}
        return [items[i]["id"]]
    return _edit_list(folder, kind, change, which)


@pytest.mark.parametrize("seed", range(12))
def test_random_rereads_equal_a_full_build_of_the_mutated_tenant(folder: Path, seed: int) -> None:
    """Property: after random changes, adds and deletes of several kinds, each batch re-read as the daemon does,
    the updated snapshot equals a full build of the mutated tenant."""
    rng = random.Random(seed)
    reader = RecordedTenant(folder)
    inv: Inventory = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv, T)
    for _ in range(4):
        touched = [t for _ in range(rng.randint(1, 3)) for t in _mutation(rng, folder)]
        inv, snap, links = _step(reader, inv, snap, links, touched)
        assert_same_snapshot(snap, _full(folder))


def test_daemon_state_after_events_equals_a_fresh_build_and_evaluation(folder: Path, tmp_path: Path) -> None:
    """A daemon that processed events holds the snapshot, first-seen times and findings a fresh build gives."""
    db = tmp_path / "state.db"
    d = Daemon(config("http://127.0.0.1:9/unused"), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
               channels={})
    d.full_collection()
    assert d.inventory is not None
    for step in (lambda: _flip_a_target(folder),
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
        reader = RecordedTenant(folder)
        scratch = build_snapshot(collect(reader, manifest=reader.manifest, workers=1), taken_at=d.snapshot.taken_at)
        # The daemon reads concurrently: failed reads are gaps in the order they failed, as on any collection.
        assert set(d.snapshot.coverage.gaps) == set(scratch.coverage.gaps)
        scratch = replace(scratch, coverage=replace(scratch.coverage, gaps=d.snapshot.coverage.gaps))
        assert d.snapshot == type(scratch)(**{**{f: getattr(scratch, f) for f in scratch.__dataclass_fields__},
                                               "observations": d.snapshot.observations})
        assert observer(d.store)(scratch).observations == d.snapshot.observations
        fresh = evaluate(d.snapshot, d.settings, d.waivers)
        key = lambda f: (f.check_id, f.key)  # noqa: E731
        assert sorted(map(key, d.evaluation.findings)) == sorted(map(key, fresh.findings))
        assert sorted((f.to_dict() for f in d.evaluation.findings), key=json.dumps) == \
            sorted((f.to_dict() for f in fresh.findings), key=json.dumps)


def test_listed_items_keep_no_second_id_string(folder: Path) -> None:
    """Proves: a parsed endpoint or zone keeps no scope string of its own (scope_of gives its id as written) and
    an endpoint's follow-up refs hold its record's NIC ids, so the inventory keeps no copy of an id's spelling."""
    reader = RecordedTenant(folder)
    for trusted in (False, True):  # the generic parser, then the typed decoder
        if trusted:
            reader.trust_index()
        inv = collect(reader, manifest=reader.manifest, workers=1)
        for kind in ("privateEndpoints", "privateDnsZones"):
            parsed = [p for u in inv.units(kind) for p in u.items if p.record is not None]
            assert parsed and all(p.scope == "" and scope_of(p) == p.record.id.raw for p in parsed)
        refs = {r.id.key: r for u in inv.units("privateEndpoints") for r in u.refs}
        for p in (p for u in inv.units("privateEndpoints") for p in u.items if p.record is not None):
            assert refs[p.record.key].nics == p.record.nic_ids
    failed = Parsed((1, ""), None, scope="/subscriptions/s/x")
    assert scope_of(failed) == "/subscriptions/s/x" and scope_of(Parsed((1, ""), None)) == ""


_TABLES = ("zone_groups", "vnet_links", "cnames", "targets", "target_errors", "associations")


def _contents(inv: Inventory) -> dict[str, Any]:
    """Every table's entries as (key, the very value object), the subscription lists' units and the read set."""
    out: dict[str, Any] = {name: [(k, id(v)) for k, v in getattr(inv, name).items()] for name in _TABLES}
    out["lists"] = {kind: [(name, id(u)) for name, u in units.items()] for kind, units in inv.lists.items()}
    out["read"] = set(inv.read)
    return out


def test_a_reread_leaves_the_inventory_it_read_from_as_it_was_and_copies_only_the_tables_it_may_write(
        folder: Path) -> None:
    """Each kind of re-read (a target, endpoints, a route table, NSGs, networks, DNS zones) leaves every table of the
    old inventory as it was; a route table's, NSGs' or networks' read shares all its child tables (no copy)."""
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    steps = [
        (False, lambda: _flip_a_target(folder)),
        (False, lambda: _edit_list(folder, "privateEndpoints", _delete_first)),
        (True, lambda: _edit_list(folder, "routeTables", _drop_routes)),
        (True, lambda: _edit_list(folder, "networkSecurityGroups", _add_malformed)),
        (True, lambda: _edit_list(folder, "virtualNetworks", _delete_first)),
        (False, lambda: _edit_list(folder, "privateDnsZones", _delete_first)),
    ]
    for shares_all, step in steps:
        touched = step()
        before = _contents(inv)
        new, result = reread_into(reader, inv, [parse_id(t) for t in touched])
        assert not result.failed and _contents(inv) == before
        if shares_all:
            assert all(getattr(new, name) is getattr(inv, name) for name in _TABLES)
        inv = new
