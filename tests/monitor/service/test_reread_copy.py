"""A re-read of every kind (an item removed, then put back) leaves the inventory it copied exactly as it was.

``reread_into`` copies only the tables its reads may write (``reevaluate._WRITES``) and shares every other one with
the inventory before the step, which the daemon still serves until the swap. A read that wrote a shared table would
change that inventory under its readers, silently; these tests are the guard for that hand-kept table.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from plmon.monitor.collect.inventory import Inventory
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.reevaluate import reread_into


def _fingerprint(inv: Inventory) -> dict[str, Any]:
    """Each table of ``inv`` by the identity of the table and of what it holds, one level into nested tables:
    every write a re-read makes replaces a held object, so an unchanged fingerprint means an untouched inventory."""
    out: dict[str, Any] = {}
    for f in fields(inv):
        value = getattr(inv, f.name)
        if isinstance(value, dict):
            out[f.name] = (id(value), {k: (id(v), {kk: id(vv) for kk, vv in v.items()} if isinstance(v, dict)
                                           else None) for k, v in value.items()})
        elif isinstance(value, list):
            out[f.name] = (id(value), [id(v) for v in value])
        elif isinstance(value, set):
            out[f.name] = (id(value), frozenset(value))
        else:
            out[f.name] = repr(value)
    return out


class _Tenant:
    """A synth tenant collected once, then changed on disk one file at a time and re-read, step after step."""

    def __init__(self, folder: Path) -> None:
        write_tenant(generate(SynthSpec(subscriptions=4, endpoints=60, seed=6, bad_share=0.3, hub_endpoints=4,
                                        pls=1)), folder)
        self.folder = folder
        self.reader = RecordedTenant(folder)
        self.inv = collect(self.reader, manifest=self.reader.manifest, workers=1)

    def step(self, path: Path, body: Any, rid: str) -> None:
        """Write ``body`` to ``path``, re-read ``rid`` and check the inventory before the step did not move."""
        path.write_text(json.dumps(body), encoding="utf-8")
        before = self.inv
        seen = _fingerprint(before)
        after, result = reread_into(self.reader, before, [parse_id(rid)])
        assert not result.failed, (rid, result.failed)
        assert _fingerprint(before) == seen, f"re-reading {rid} changed the inventory it copied"
        assert _fingerprint(after) != seen, f"re-reading {rid} after a change on disk changed nothing"
        self.inv = after

    def remove_and_restore(self, path: Path, pick: int = 0) -> str:
        """Take item ``pick`` out of the list in ``path``, re-read it; put it back, re-read it again."""
        body = json.loads(path.read_text(encoding="utf-8"))
        items = body["value"]
        item = items[pick]
        self.step(path, {**body, "value": items[:pick] + items[pick + 1:]}, item["id"])
        self.step(path, body, item["id"])
        return str(item["id"])


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> _Tenant:
    return _Tenant(tmp_path_factory.mktemp("reread-copy") / "tenant")


def _lists(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "arm" / "subscriptions").glob("*/providers/*/*.json")
                  if json.loads(p.read_text(encoding="utf-8")).get("value"))


def test_removing_and_restoring_an_item_of_every_listed_kind_leaves_the_copied_inventory_alone(tenant: _Tenant):
    kinds = set()
    for path in _lists(tenant.folder):
        if path.stem in kinds:
            continue
        kinds.add(path.stem)
        tenant.remove_and_restore(path)
    # the kinds whose reads follow up into other tables are among them
    assert {"privateEndpoints", "privateDnsZones", "networkInterfaces", "virtualNetworks", "routeTables",
            "privateLinkServices"} <= kinds


def test_every_endpoint_of_a_subscription_removed_and_restored_leaves_the_copied_inventory_alone(tenant: _Tenant):
    # the endpoints' follow-ups (targets, zone groups, NICs read by id) differ per endpoint: walk several
    path = next(p for p in _lists(tenant.folder) if p.stem == "privateEndpoints")
    for pick in range(min(5, len(json.loads(path.read_text(encoding="utf-8"))["value"]))):
        tenant.remove_and_restore(path, pick)


def test_a_changed_target_and_a_changed_association_leave_the_copied_inventory_alone(tenant: _Tenant):
    target = next(iter(sorted((tenant.folder / "arm" / "subscriptions").glob(
        "*/resourceGroups/*/providers/Microsoft.Storage/storageAccounts/*.json"))))
    body = json.loads(target.read_text(encoding="utf-8"))
    changed = {**body, "properties": {**body.get("properties", {}), "publicNetworkAccess": "Disabled"
                                      if body.get("properties", {}).get("publicNetworkAccess") != "Disabled"
                                      else "Enabled"}}
    tenant.step(target, changed, body["id"])
    tenant.step(target, body, body["id"])
    associations = next(iter(sorted((tenant.folder / "arm" / "providers").glob(
        "Microsoft.Management/managementGroups/*/providers/Microsoft.Authorization/privateLinkAssociations.json"))))
    tenant.remove_and_restore(associations)
