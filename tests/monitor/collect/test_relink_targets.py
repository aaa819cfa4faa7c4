"""relink after target re-reads keeps the targets in a full link's order, re-deriving only the touched keys when no
key was added to the inventory's targets or errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenantkit import SUB, endpoint, storage_account, sub_list, write_tenant

from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.service.reevaluate import reread_into


def _account(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/{name}"


def test_target_events_keep_a_full_links_order_and_re_derive_only_what_moved(tmp_path: Path) -> None:
    """A flip in place re-derives one key; a deletion (to the errors) and a return (back to the targets) move keys,
    and the order stays a full link's throughout."""
    names = ["st1", "st2", "st3"]
    files: dict[str, Any] = {sub_list("privateEndpoints"): {"value": [endpoint(f"pe{i}", _account(n))
                                                                      for i, n in enumerate(names)]}}
    files.update({_account(n): storage_account(n) for n in names})
    folder = write_tenant(tmp_path / "t", files)
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv)

    def step(name: str, body: dict[str, Any] | None) -> Any:
        nonlocal inv, snap, links
        path = folder / "arm" / f"{_account(name).strip('/')}.json"
        if body is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps(body))
        inv, result = reread_into(RecordedTenant(folder), inv, [parse_id(_account(name))])
        snap, links = relink(snap, links, inv, result.touched, taken_at=snap.taken_at)
        full = link(inv, taken_at=snap.taken_at)[0]
        assert snap == full and list(snap.targets) == list(full.targets), name
        return result.touched

    touched = step("st1", storage_account("st1", public="Disabled"))
    assert not touched.targets_added and links.changed["targets"] == frozenset({parse_id(_account("st1")).key})
    assert step("st2", None).targets_added          # read 404: to the errors, after every target read
    assert not step("st2", None).targets_added      # still absent: in place among the errors
    assert step("st2", storage_account("st2")).targets_added   # back: after the other targets read
    assert not step("st3", storage_account("st3", public="Disabled")).targets_added
