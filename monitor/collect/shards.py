"""A full collection cut into shards that several processes read (issue 15, design 2.3), and one shard's read.

Why shards by subscription: ARM budgets reads per subscription (250 tokens, 25 a second), so one subscription is read
no faster however many processes share it, and a subscription is the scope coverage gaps already name. The plan's
phases (:class:`~plmon.monitor.collect.plan.Collection`) give the stages:

- stage 0 (the holder of the schedule, inline): the tenant's lists and the management groups' associations;
- stage 1 (any process, one shard per subscription): its lists and the child lists they call for;
- stage 2 (any process, one shard per budget key): the reads by id (NICs, targets, firewall policies) that
  :meth:`~plmon.monitor.collect.plan.Collection.follow_ups` finds once every list is in.

A shard is read through a :class:`~plmon.monitor.collect.segments.RecordingTap` and kept as one segment: what ARM
answered, never typed units. The holder then runs the unchanged :func:`~plmon.monitor.collect.plan.collect` over a
:class:`~plmon.monitor.collect.segments.SegmentReader` of every segment, so a collection read shard by shard is the
collection one process reads, read for read; a shard that never completed is a failed scope there (a coverage gap,
never an absence). Nothing here knows queues or storage: :mod:`plmon.monitor.service.fanout` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from plmon.monitor.collect.builder import HUB_CHILDREN
from plmon.monitor.collect.inventory import Inventory
from plmon.monitor.collect.plan import CNAMES, VNET_LINKS, ZONE_GROUPS, ArmReader, Collection, Read, ReadError, collect
from plmon.monitor.collect.segments import TENANT_SHARD, RecordingTap, encode_segment
from plmon.monitor.model.arm_id import interning
from plmon.monitor.model.snapshot import CoverageGap

__all__ = ["ShardOutput", "ShardSpec", "Stage0", "build_staged", "plan_stage2", "read_stage0", "run_shard",
           "stage1_specs", "stage2_specs", "sub_ids_of"]

# The child lists a stage-1 shard reads with its lists (Collection.lists(children=True)): never a stage-2 read. A
# Virtual WAN hub's connections, routing intent and route tables are read below it, with its list, likewise.
_CHILD_KINDS = frozenset({ZONE_GROUPS[0], VNET_LINKS[0], CNAMES[0], *HUB_CHILDREN})


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One shard's work: a subscription's lists (stage 1) or a budget key's reads by id (stage 2)."""

    name: str
    stage: int
    budget_key: str
    subscription: str = ""
    reads: tuple[Read, ...] = ()

    @property
    def scopes(self) -> tuple[str, ...]:
        """What a failure of this shard leaves unread: its subscription, or for tenant-level reads their ids."""
        if self.budget_key != "tenant":
            return (f"/subscriptions/{self.subscription or self.budget_key}",)
        return tuple(dict.fromkeys(r.scope for r in self.reads))

    def work(self) -> list[Any]:
        """The spec as JSON data (a shard row's work: a queue message holds at most 64 KiB)."""
        return [self.subscription, [[r.budget_key, r.kind, r.scope, r.type_] for r in self.reads]]

    @classmethod
    def from_work(cls, name: str, stage: int, budget_key: str, work: Sequence[Any]) -> ShardSpec:
        subscription, reads = work[0], work[1]
        return cls(name, stage, budget_key, str(subscription), tuple(Read(*map(str, r)) for r in reads))


@dataclass(frozen=True, slots=True)
class ShardOutput:
    """One shard read: its segment bytes and how many reads it made (the budget it spent)."""

    segment: bytes
    reads: int


@dataclass(frozen=True, slots=True)
class Stage0:
    """The tenant-level reads, done by the holder: the subscriptions they name, and their segment."""

    sub_ids: list[str]
    segment: bytes
    reads: int


def sub_ids_of(inv: Inventory) -> list[str]:
    """The subscriptions a collection reads, in the order :func:`~plmon.monitor.collect.plan.collect` reads them."""
    sids = (s.get("subscriptionId") if isinstance(s, dict) else None for s in inv.subscriptions)
    return [sid for sid in sids if isinstance(sid, str) and sid]


def _segment(tap: RecordingTap, name: str) -> ShardOutput:
    recording = tap.take()
    for _shard, data, reads in recording.segments():
        return ShardOutput(data, reads)
    return ShardOutput(encode_segment(name, ()), 0)


def read_stage0(reader: ArmReader, *, manifest: dict[str, Any] | None = None,
                subscriptions: Iterable[str] | None = None, workers: int = 1) -> Stage0:
    """Stage 0: the tenant and the associations, as :func:`collect` reads them (``subscriptions`` scopes it)."""
    tap = RecordingTap(reader, shard_of=lambda _key: TENANT_SHARD)
    inv = Inventory(manifest=dict(manifest or {}))
    run = Collection(tap, inv, workers, None)
    wanted = {s.lower() for s in subscriptions} if subscriptions else None
    inv.scoped = wanted is not None
    with interning():
        run.tenant(wanted)
        run.associations(run.association_groups())
    out = _segment(tap, TENANT_SHARD)
    return Stage0(sub_ids_of(inv), out.segment, out.reads)


def plan_stage2(reader: ArmReader, *, manifest: dict[str, Any] | None = None,
                subscriptions: Iterable[str] | None = None) -> list[Read]:
    """The stage-2 reads: the plan run over stages 0 and 1 (``reader``, their segments, a failed shard as a failed
    scope) up to :meth:`~plmon.monitor.collect.plan.Collection.follow_ups`, as the final collection will run it."""
    inv = Inventory(manifest=dict(manifest or {}))
    run = Collection(reader, inv, 1, None)
    wanted = {s.lower() for s in subscriptions} if subscriptions else None
    inv.scoped = wanted is not None
    with interning():
        run.tenant(wanted)
        run.associations(run.association_groups())
        sub_ids = sub_ids_of(inv)
        run.lists(sub_ids, children=True)
        return run.follow_ups(sub_ids)


def build_staged(reader: ArmReader, *, manifest: dict[str, Any] | None = None,
                 subscriptions: Iterable[str] | None = None,
                 on_plan: Callable[[list[Read]], None] | None = None) -> Inventory:
    """:func:`~plmon.monitor.collect.plan.collect` with one worker, step for step, calling ``on_plan`` with the
    stage-2 reads once the lists are in and before any of them is read: the fan-out holder's one pass over the
    segments, which plans stage 2 and builds the inventory (before, :func:`plan_stage2` decoded every stage-1 segment
    and the final ``collect()`` decoded it again).

    The stage-2 reads are :func:`plan_stage2`'s: :meth:`~plmon.monitor.collect.plan.Collection.follow_ups` less the
    child lists, which stage 1 read with their lists and which do not change the other follow-ups. Its gaps are
    recorded again by the resources phase, as :func:`collect` records them, so they are taken back here. A test holds
    the inventory to :func:`collect`'s, byte for byte."""
    if on_plan is None:
        return collect(reader, manifest=manifest, subscriptions=subscriptions, workers=1)
    inv = Inventory(manifest=dict(manifest or {}))
    run = Collection(reader, inv, 1, None)
    wanted = {s.lower() for s in subscriptions} if subscriptions else None
    inv.scoped = wanted is not None
    with interning():
        run.phase("tenant", lambda: run.tenant(wanted))
        group_names = run.association_groups()
        run.phase("management_groups", lambda: run.associations(group_names))
        sub_ids = sub_ids_of(inv)
        inv.stats.workers = run.workers
        run.phase("subscriptions", lambda: run.subscription_lists(sub_ids))
        before = len(inv.gaps)
        reads = [r for r in run.follow_ups(sub_ids) if r.kind not in _CHILD_KINDS]
        del inv.gaps[before:]
        on_plan(reads)
        run.phase("resources", lambda: run.read_follow_ups(sub_ids))
    inv.gaps.sort(key=_gap_order)
    return inv


def _gap_order(gap: CoverageGap) -> tuple[str, str, str, int, str]:
    """:func:`collect`'s order of the gaps (plan._gap_order)."""
    return gap.scope.lower(), gap.type.lower(), gap.code, gap.status or 0, gap.message or ""


def stage1_specs(sub_ids: Iterable[str]) -> list[ShardSpec]:
    """One shard per subscription (each once, whatever its case), named as segments name them (``s1-<sid>``)."""
    out: dict[str, ShardSpec] = {}
    for sid in sub_ids:
        key = sid.lower()
        out.setdefault(key, ShardSpec(f"s1-{key}", 1, key, subscription=sid))
    return list(out.values())


def stage2_specs(reads: Iterable[Read]) -> list[ShardSpec]:
    """The reads by id grouped by budget key, one shard each (``s2-<key>``): one owner per budget at a time."""
    by_key: dict[str, list[Read]] = {}
    for r in reads:
        by_key.setdefault(r.budget_key, []).append(r)
    return [ShardSpec(f"s2-{key}", 2, key, reads=tuple(rs)) for key, rs in by_key.items()]


def run_shard(reader: ArmReader, spec: ShardSpec, workers: int = 4) -> ShardOutput:
    """Read one shard through a recording tap with ``workers`` reads in flight; its segment bytes.

    A failed read is recorded (status and code) as it would be in one process's collection; anything else the reader
    raises (not an ARM answer) fails the shard, and the caller tries it again or records its gap."""
    tap = RecordingTap(reader, shard_of=lambda _key: spec.name)
    run = Collection(tap, Inventory(), workers, None)
    with interning():
        if spec.stage == 1:
            run.lists([spec.subscription], children=True)
        else:
            run.parallel_keyed((r.budget_key, _raw_read(tap, r)) for r in spec.reads)
    return _segment(tap, spec.name)


def _raw_read(reader: ArmReader, read: Read) -> Callable[[], None]:
    """A stage-2 read: its answer is only recorded (the holder parses it when it builds the inventory); a failed
    read is recorded by the tap as the error it is."""
    def job() -> None:
        with contextlib.suppress(ReadError):
            reader.get(read.path, kind=read.kind)
    return job
