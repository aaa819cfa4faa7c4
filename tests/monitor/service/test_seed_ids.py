"""A network or Private Link Service re-read takes its unchanged ids from the old records, with the same result."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import interning, parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.reevaluate import reread_into, seed_ids

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "tenant"
    write_tenant(generate(SynthSpec(subscriptions=2, endpoints=30, seed=7, bad_share=0.3)), out)
    return out


def test_seeded_ids_parse_to_the_old_objects(folder: Path) -> None:
    """Every id a unit's records hold is in the table, and parse_id then returns that very object."""
    inner = RecordedTenant(folder)
    inv = collect(inner, manifest=inner.manifest, workers=1)
    unit = next(u for u in inv.lists["virtualNetworks"].values() if u.items)
    subnet_ids = [s for p in unit.items for s in p.record[0].subnet_ids]  # (network, its subnets)
    assert subnet_ids
    with interning() as table:
        seed_ids(table, unit)
        assert all(parse_id(s.raw) is s for s in subnet_ids)
        assert all(table[k] == parse_id(k) for k in table)


@pytest.mark.parametrize("kind", ["virtualNetworks", "privateLinkServices"])
def test_a_seeded_reread_equals_a_full_build(folder: Path, kind: str) -> None:
    """Changing one item of the list and re-reading it gives the snapshot a fresh collection and link give."""
    inner = RecordedTenant(folder)
    inv = collect(inner, manifest=inner.manifest, workers=1)
    snap, links = link(inv, T)
    file = next(f for f in sorted((folder / "arm" / "subscriptions").glob(f"*/providers/Microsoft.Network/{kind}.json"))
                if json.loads(f.read_text())["value"])
    body = json.loads(file.read_text())
    item = body["value"][0]
    item.setdefault("tags", {})["edited"] = "yes"
    item["properties"]["provisioningState"] = "Updating"
    file.write_text(json.dumps(body))
    new, result = reread_into(inner, inv, [parse_id(item["id"])])
    assert not result.failed
    after, _ = relink(snap, links, new, result.touched, taken_at=T)
    fresh = RecordedTenant(folder)
    want, _ = link(collect(fresh, manifest=fresh.manifest, workers=1), T)
    assert after == want
