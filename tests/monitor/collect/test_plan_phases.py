"""The plan's phases run one by one (issue 15, design B1): what a fan-out collection hands out between processes is
exactly what ``collect()`` reads, and ``collect()`` is its phases in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardkit import FOLDERS, Counting, tenant_folder, write_synth

from plmon.monitor.collect.inventory import Inventory
from plmon.monitor.collect.plan import Collection, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.segments import path_key
from plmon.monitor.collect.shards import plan_stage2, read_stage0, run_shard, stage1_specs, sub_ids_of
from plmon.monitor.model.arm_id import interning


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synth(tmp_path_factory.mktemp("synth") / "tenant")


_folder = tenant_folder


@pytest.mark.parametrize("name", [*FOLDERS, "synth"])
def test_collect_is_its_phases_run_one_by_one(name: str, synth_folder: Path) -> None:
    """tenant, associations, lists, follow_ups and resources by hand read what collect() reads and find its gaps."""
    folder = _folder(name, synth_folder)
    tenant = RecordedTenant(folder)
    direct = collect(RecordedTenant(folder), manifest=tenant.manifest, workers=1)
    inv = Inventory(manifest=dict(tenant.manifest))
    run = Collection(RecordedTenant(folder), inv, 1, None)
    with interning():
        run.tenant(None)
        run.associations(run.association_groups())
        sub_ids = sub_ids_of(inv)
        run.lists(sub_ids, children=False)
        run.resources(run.follow_ups(sub_ids))
    assert inv.stats.requests == direct.stats.requests
    assert sorted(map(repr, inv.gaps)) == sorted(map(repr, direct.gaps))
    assert sorted(inv.targets) == sorted(direct.targets) and inv.read == direct.read


@pytest.mark.parametrize("name", [*FOLDERS, "synth"])
def test_follow_ups_are_exactly_the_reads_the_resources_phase_makes(name: str, synth_folder: Path) -> None:
    """collect()'s phase 'resources' reads exactly follow_ups(): what a stage-2 plan hands out is what it needs."""
    folder = _folder(name, synth_folder)
    tenant = RecordedTenant(folder)
    s0 = read_stage0(tenant, manifest=tenant.manifest)
    reads = plan_stage2(tenant, manifest=tenant.manifest)
    direct = Counting(RecordedTenant(folder))
    collect(direct, manifest=tenant.manifest, workers=1)
    lists = Counting(RecordedTenant(folder))
    for spec in stage1_specs(s0.sub_ids):
        run_shard(lists, spec, workers=1)
    stage0 = {path_key(p) for p in ("subscriptions", "providers/Microsoft.Management/managementGroups")}
    rest = set(direct.paths) - set(lists.paths) - stage0
    assert {path_key(r.path) for r in reads} == {k for k in rest if "privatelinkassociations" not in k}
