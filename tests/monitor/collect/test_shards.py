"""A collection read shard by shard (issue 15, design 2.3): stage 0, one shard per subscription, then the reads by
id per budget key, each through ``run_shard``, loaded through ``SegmentReader`` and collected by the unchanged
``collect()``, is the collection one process reads: the same scan text, every read made once, in one shard."""

from __future__ import annotations

import json
import threading
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


def _stage_segments(folder: Path, failing: str | None) -> tuple[Any, list[tuple[str, bytes]],
                                                                list[scaleout.FailedShard]]:
    """Stage 0 and every stage-1 shard of ``folder`` read as the fan-out reads them (``failing`` never completes)."""
    tenant = RecordedTenant(folder)
    s0 = read_stage0(tenant, manifest=tenant.manifest)
    s1: list[tuple[str, bytes]] = []
    failed: list[scaleout.FailedShard] = []
    for spec in stage1_specs(s0.sub_ids):
        if spec.name == failing:
            failed.append(scaleout.FailedShard(spec.name, spec.scopes, "ShardFailed", "never completed"))
        else:
            s1.append((f"{spec.name}-a1.z", run_shard(tenant, spec, workers=4).segment))
    return s0, s1, failed


@pytest.mark.parametrize(("name", "fail_one"), [*((n, False) for n in FOLDERS), ("synth", False), ("synth", True)])
def test_one_pass_over_segments_as_they_land_plans_stage_2_and_scans_byte_identical(
        name: str, fail_one: bool, synth_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_staged over a GrowingSegmentReader fed shard by shard from another thread: it parses the stage-1
    segments that landed while it waits for the last one, plans exactly plan_stage2's reads, and its inventory scans
    byte-identical to collect() over the complete segments (a failed shard's gaps included)."""
    from plmon.monitor import scan as scan_module
    from plmon.monitor.collect.segments import GrowingSegmentReader
    from plmon.monitor.collect.shards import build_staged

    folder = _folder(name, synth_folder)
    failing = None
    if fail_one:
        failing = stage1_specs(read_stage0(RecordedTenant(folder)).sub_ids)[-1].name
    s0, s1, failed = _stage_segments(folder, failing)
    tenant = RecordedTenant(folder)
    want_plan = plan_stage2(SegmentReader([("s0-a1.z", s0.segment), *s1], failed=failed), manifest=tenant.manifest)
    s2 = [(f"{spec.name}-a1.z", run_shard(tenant, spec, workers=4).segment) for spec in stage2_specs(want_plan)]
    want, want_reads = _scan(SegmentReader([("s0-a1.z", s0.segment), *s1, *s2], failed=failed), tenant.manifest)

    reader = GrowingSegmentReader(collection="c-test")
    reader.add("s0-a1.z", s0.segment)
    plans: list[list[Read]] = []
    read_before_last: list[int] = []

    last = {e[0] for e in Segment("last", s1[-1][1]).entries} if s1 else set()

    def feed() -> None:
        for seg in s1[:-1]:
            reader.add(*seg)
        while last and reader.waiting not in last:   # the pass waits for a path of the shard still out
            threading.Event().wait(0.01)
        read_before_last.append(reader.reads)
        if s1:
            reader.add(*s1[-1])
        reader.fail(failed)
        reader.seal(1)
        while not plans:
            threading.Event().wait(0.01)
        for seg in s2:
            reader.add(*seg)
        reader.seal(2)

    def staged(_reader: Any, **kwargs: Any) -> Any:
        return build_staged(reader, manifest=kwargs["manifest"], subscriptions=kwargs["subscriptions"],
                            on_plan=lambda reads: (plans.append(reads), reader.advance(2)))

    monkeypatch.setattr(scan_module, "collect", staged)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    got, reads = _scan(reader, tenant.manifest)
    feeder.join(30)
    assert got == want and reads == want_reads
    assert plans == [want_plan]
    assert read_before_last and (read_before_last[0] > s0.reads or len(s1) <= 1)   # parsed before the last landed
