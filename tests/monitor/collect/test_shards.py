"""A collection read shard by shard (issue 15, design 2.3): stage 0, one shard per subscription, then the reads by
id per budget key, each through ``run_shard``, loaded through ``SegmentReader`` and collected by the unchanged
``collect()``, is the collection one process reads: the same scan text, every read made once, in one shard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from shardkit import FOLDERS, Counting, tenant_folder, write_synth

from plmon.monitor.collect.plan import ArmReader, Read
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.segments import Segment, SegmentReader
from plmon.monitor.collect.shards import (
    ShardSpec,
    plan_stage2,
    read_stage0,
    run_shard,
    stage1_specs,
    stage2_specs,
)
from plmon.monitor.model.clock import source_clock
from plmon.monitor.scan import DEFAULTS, run_scan, scan_document
from plmon.monitor.state import scaleout


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synth(tmp_path_factory.mktemp("synth") / "tenant")


_folder = tenant_folder


def _scan(reader: ArmReader, manifest: dict[str, Any]) -> tuple[str, int]:
    result = run_scan(reader, DEFAULTS, manifest=manifest, workers=1, clock=source_clock(manifest))
    return json.dumps(scan_document(result), indent=2), result.stats.requests


def _sharded(folder: Path, failing: str | None = None) -> tuple[list[tuple[str, bytes]], list[scaleout.FailedShard],
                                                               Counting, dict[str, Any]]:
    """The tenant read as the fan-out reads it: every shard through run_shard; ``failing`` never completes."""
    tenant = RecordedTenant(folder)
    reader = Counting(tenant)
    s0 = read_stage0(reader, manifest=tenant.manifest)
    segments = [("s0-a1.z", s0.segment)]
    failed: list[scaleout.FailedShard] = []

    def run(specs: list[ShardSpec]) -> None:
        for spec in specs:
            if spec.name == failing:
                failed.append(scaleout.FailedShard(spec.name, spec.scopes, "ShardFailed", "never completed"))
                continue
            segments.append((f"{spec.name}-a1.z", run_shard(reader, spec, workers=4).segment))

    run(stage1_specs(s0.sub_ids))
    reads = plan_stage2(SegmentReader(segments, failed=failed), manifest=tenant.manifest)
    run(stage2_specs(reads))
    return segments, failed, reader, tenant.manifest


@pytest.mark.parametrize("name", [*FOLDERS, "synth"])
def test_a_tenant_read_shard_by_shard_scans_byte_identical_with_each_read_made_once(
        name: str, synth_folder: Path) -> None:
    """Every shard through run_shard, the segments through SegmentReader and collect(): the scan text and read count
    of a direct collect(); each path was read from ARM once, and no path is in two shards."""
    folder = _folder(name, synth_folder)
    want, want_reads = _scan(RecordedTenant(folder), RecordedTenant(folder).manifest)
    segments, _, reader, manifest = _sharded(folder)
    got, reads = _scan(SegmentReader(segments, collection="c-test"), manifest)
    assert got == want
    assert reads == want_reads == sum(reader.paths.values())
    assert max(reader.paths.values()) == 1
    keys = [e[0] for _, data in segments for e in Segment("s", data).entries]
    assert len(keys) == len(set(keys)) == want_reads


def test_a_failed_shard_is_a_gap_for_its_subscription_and_no_finding_there(synth_folder: Path) -> None:
    """A stage-1 shard that never completes: ShardFailed gaps name its subscription, no finding is about it, and
    the other subscriptions' findings are those of the full collection."""
    full = json.loads(_scan(RecordedTenant(synth_folder), RecordedTenant(synth_folder).manifest)[0])
    s0 = read_stage0(RecordedTenant(synth_folder))
    sid = stage1_specs(s0.sub_ids)[0].subscription.lower()
    segments, failed, _, manifest = _sharded(synth_folder, failing=f"s1-{sid}")
    doc = json.loads(_scan(SegmentReader(segments, failed=failed), manifest)[0])
    gaps = [g for g in doc["coverage"]["gaps"] if g["code"] == "ShardFailed"]
    assert gaps and all(g["scope"].lower() == f"/subscriptions/{sid}" for g in gaps)
    assert not [f for f in doc["findings"] if f"/subscriptions/{sid}/" in f["resource_id"].lower()]
    others = [f for f in full["findings"] if sid not in json.dumps(f).lower()]
    assert others and all(f in doc["findings"] for f in others)


def test_stage1_is_one_shard_per_subscription_and_stage2_one_per_budget_key() -> None:
    """Subscriptions are sharded once whatever their case; reads by id are grouped by budget key, in their order."""
    specs = stage1_specs(["AAA", "bbb", "aaa"])
    assert [(s.name, s.subscription, s.scopes) for s in specs] == [("s1-aaa", "AAA", ("/subscriptions/AAA",)),
                                                                   ("s1-bbb", "bbb", ("/subscriptions/bbb",))]
    reads = [Read("a", "target", "/p1", ""), Read("tenant", "target", "/p2", ""),
             Read("a", "networkInterfaces", "/p3", "t")]
    two = stage2_specs(reads)
    assert [(s.name, [r.path for r in s.reads]) for s in two] == [("s2-a", ["p1", "p3"]), ("s2-tenant", ["p2"])]
    assert two[1].scopes == ("/p2",)
    assert ShardSpec.from_work("s2-a", 2, "a", json.loads(json.dumps(two[0].work()))) == two[0]
