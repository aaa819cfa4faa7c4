"""The fan-out collection (issue 15, design 2.3) on Azurite: daemons built by the composition root on one prefix, each
with its own clients, lease and memory, take the shards of one collection off the shard queue. ARM reads are counted
by each daemon's ``plmon_arm_requests{phase}`` (``collection`` for the holder's stage 0, ``shard`` for shards), so
"the reads of one collection" is a count. Waits are on conditions, never on the wall clock's boundaries: the schedule's
clock is injected."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sharedkit import ENV_VAR, daemons_on_one_prefix, scale_of

from plmon.monitor.collect.plan import ArmReader, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import Config, parse_config
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.fanout import CollectionDriver, ShardWorker
from plmon.monitor.service.schedule import SharedSchedule, tick_collection
from plmon.monitor.state.lease_blob import BlobScheduleLease
from plmon.monitor.state.scaleout import CollectionRow, StorageUnavailable
from plmon.monitor.state.store import FindingState

SYNTH = SynthSpec(subscriptions=4, endpoints=30, seed=11, bad_share=0.4)
NOW = datetime(2026, 12, 2, 9, 10, tzinfo=UTC)   # one tick for every holder, whatever the wall clock does
PATIENCE = 90.0


def _config(prefix: str, **scale: Any) -> Config:
    return parse_config({"state": {"url": f"azuretables:///{prefix}?connection_string_env={ENV_VAR}"},
                         "schedule": {"full_collection": "1h"},
                         "scale": {"lease_duration": "15s", "lease_renew": "1s", "pointer_interval": "1s",
                                   "shard_visibility": "2s", "shard_workers": 2, **scale}}, env={})


def _reads(d: Daemon, phase: str) -> float:
    return float(d.metrics.arm_requests.labels(phase)._value.get())


_scale = scale_of


def _findings(d: Daemon) -> list[tuple[str, str]]:
    assert d.evaluation is not None
    return sorted(f.key for f in d.evaluation.findings)


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fanout") / "tenant"
    write_tenant(generate(SYNTH), folder)
    return folder


@pytest.fixture
def build(tenant: Path) -> Iterator[Callable[..., Daemon]]:
    """Daemons as ``plmon serve`` builds them, on one prefix (or another one, for a reference collection)."""
    with daemons_on_one_prefix(tenant, _config) as make:
        yield make


class Parts:
    """One daemon's fan-out parts, as its runtime builds them, with the injected schedule clock."""

    made: ClassVar[list[Parts]] = []

    def __init__(self, daemon: Daemon, clock: Callable[[], datetime] = lambda: NOW) -> None:
        self.daemon = daemon
        scale = _scale(daemon)
        self.driver = CollectionDriver(daemon, scale, clock=clock)
        Parts.made.append(self)
        self.worker = ShardWorker(daemon, scale, clock=clock)
        self.schedule = SharedSchedule(daemon, scale, clock=clock, fanout=self.driver)


@pytest.fixture(autouse=True)
def _stop_passes() -> Iterator[None]:
    """A collection a test leaves open leaves its holder's pass waiting: given up, so no thread outlives the test (a
    later test in this process may need it to have one thread)."""
    yield
    while Parts.made:
        Parts.made.pop().driver.close()


def _until_published(parts: list[Parts], holder: Parts, cid: str, *, seconds: float = PATIENCE) -> list[list[str]]:
    """Round-robin: each process takes one shard, then the holder steps; the outcomes each process had."""
    book = _scale(holder.daemon).book
    taken: list[list[str]] = [[] for _ in parts]
    deadline = time.monotonic() + seconds
    while (row := book.collection(cid)) is None or row.state != "published":
        if time.monotonic() > deadline:
            raise AssertionError(f"not published in {seconds:.0f} s: {row}, {book.shards(cid)}")
        idle = True
        for i, p in enumerate(parts):
            outcome = p.worker.run_one()
            if outcome is not None:
                taken[i].append(outcome)
                idle = False
        published = holder.driver.step()
        # busy (the runtime steps four times a second) exactly while the collection stays open after the step
        assert holder.driver.busy is not published
        if idle:
            time.sleep(0.1)
    holder.driver.step()
    assert not holder.driver.busy   # nothing open: back to a step a second
    return taken


def test_three_daemons_make_one_collection_with_one_collections_reads_and_the_same_findings(
        build: Callable[..., Daemon], tenant: Path) -> None:
    """Three daemons start the tick at once: one collection row, started once; shards are taken by more than one of
    them; the reads of all of them add up to one collect()'s, and the holder's findings are a single process's."""
    daemons = [build(n) for n in ("r0", "r1", "r2")]
    assert _scale(daemons[0]).lease.try_acquire()
    parts = [Parts(d) for d in daemons]
    started: list[bool] = []
    threads = [threading.Thread(target=lambda p=p: started.append(p.schedule.collect_if_due())) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(started) == [False, False, True]
    _, cid = tick_collection(NOW, daemons[0].config.schedule.full_collection)
    assert [r.collection for r in _scale(daemons[0]).book.collections()] == [cid]
    assert sum(d.metrics.collections_started._value.get() for d in daemons) == 1

    taken = _until_published(parts, parts[0], cid)
    assert sum(1 for outcomes in taken if "done" in outcomes) > 1          # shards went to more than one daemon
    single = build("single", other_prefix=True)
    single.full_collection()
    reads = sum(_reads(d, "collection") + _reads(d, "shard") for d in daemons)
    assert reads == _reads(single, "collection") == collect(RecordedTenant(tenant)).stats.requests
    assert _findings(daemons[0]) == _findings(single)
    shards = _scale(daemons[0]).book.shards(cid)
    assert shards and all(s.state == "done" for s in shards)
    text = "".join(d.metrics.render().decode() for d in daemons)          # what /metrics shows (the bench reads it)
    for name in ("plmon_collections_started_total 1.0", "plmon_shards_in_progress 0.0", 'phase="shard"',
                 'plmon_shards_processed_total{outcome="done",stage="1"}', "plmon_shard_seconds_count"):
        assert name in text, name
    for d in daemons[1:]:                                                   # the others load it: no ARM read
        before = _reads(d, "collection")
        assert d.load_shared() and _reads(d, "collection") == before and _findings(d) == _findings(single)


def test_a_holder_that_dies_mid_stage_1_is_continued_by_another_with_no_gap(build: Callable[..., Daemon]) -> None:
    """The holder starts the tick, one of its shards is taken and never finished (the taker died with it), and the
    holder stops renewing: the next holder continues the same collection, the orphan reappears after its visibility
    and completes, nothing is a gap, and the full lifecycle is applied once."""
    a, b = build("a"), build("b")
    la, lb = _scale(a).lease, _scale(b).lease
    assert la.try_acquire()
    pa, pb = Parts(a), Parts(b)
    assert pa.schedule.collect_if_due()
    _, cid = tick_collection(NOW, a.config.schedule.full_collection)
    orphan = _scale(a).shards.receive(timedelta(seconds=2))      # taken by a process that then dies
    assert orphan and orphan[0].body["shard"].startswith("s1-")
    assert isinstance(lb, BlobScheduleLease)
    lb.break_lease(0)                                             # the holder's lease ends (expiry: test_lease_blob)
    assert lb.try_acquire() and lb.epoch > la.epoch
    assert pb.schedule.collect_if_due() is True                   # continued, not started again
    _until_published([pb], pb, cid)
    book = _scale(b).book
    row = book.collection(cid)
    assert row is not None and (row.state, row.started_by, row.epoch) == ("published", "b", lb.epoch)
    assert [r.collection for r in book.collections()] == [cid]
    shards = book.shards(cid)
    assert all(s.state == "done" for s in shards) and row.gaps == 0
    orphaned = next(s for s in shards if s.shard == orphan[0].body["shard"])
    assert orphaned.worker == "b" and orphaned.attempt == 1
    lifecycles = [d.metrics.collections.labels("ok")._value.get() for d in (a, b)]
    assert lifecycles == [0.0, 1.0]
    assert b.snapshot is not None and not [g for g in b.snapshot.coverage.gaps if g.code.startswith("Shard")]


class Blocking:
    """One subscription's lists wait on ``release`` (its stage-1 shard never completes); the rest pass through."""

    def __init__(self, inner: ArmReader, sid: str, release: threading.Event) -> None:
        self.inner, self.sid, self.release = inner, sid.lower(), release

    def get(self, path: str, *, kind: str) -> Any:
        if path.lower().startswith(f"subscriptions/{self.sid}/providers/"):
            self.release.wait()
        return self.inner.get(path, kind=kind)


def test_a_shard_that_never_completes_publishes_with_its_gap_and_resolves_nothing_there(
        build: Callable[..., Daemon]) -> None:
    """One subscription's reads block: each attempt times out, the third delivery (past two attempts) records the
    shard failed, and the collection publishes with ShardFailed gaps naming that subscription; a finding opened there
    by the collection before stays open, and /readyz counts the failed shard."""
    d = build("a", shard_timeout="1s", shard_max_attempts=2, shard_visibility="1s", collection_deadline="10m")
    d.full_collection()                                           # the last collection, read in one process
    store = d.store
    opened = {(f.check_id, f.resource_key) for f in store.findings(FindingState.OPEN)}
    sid = next(s["subscriptionId"] for s in (d.inventory.subscriptions if d.inventory else [])
               if any(f"/subscriptions/{s['subscriptionId'].lower()}/" in k for _, k in opened))
    there = {f for f in opened if f"/subscriptions/{sid.lower()}/" in f[1]}
    assert there
    release = threading.Event()
    d.shard_reader = Blocking(d.shard_reader, sid, release)
    try:
        assert _scale(d).lease.try_acquire()
        p = Parts(d, clock=lambda: NOW + timedelta(hours=1))     # the next tick
        assert p.schedule.collect_if_due()
        _, cid = tick_collection(NOW + timedelta(hours=1), d.config.schedule.full_collection)
        taken = _until_published([p], p, cid)
    finally:
        release.set()
    assert "abandoned" in taken[0] and "failed" in taken[0]
    failed = [s for s in _scale(d).book.shards(cid) if s.state == "failed"]
    assert [s.shard for s in failed] == [f"s1-{sid.lower()}"]
    assert d.snapshot is not None
    gaps = [g for g in d.snapshot.coverage.gaps if g.code == "ShardFailed"]
    assert gaps and all(g.scope.lower() == f"/subscriptions/{sid.lower()}" for g in gaps)
    still = {(f.check_id, f.resource_key) for f in store.findings(FindingState.OPEN)}
    assert there <= still                                          # nothing resolved where nothing was read
    _, detail = d.readiness(3600)
    assert detail["collection"]["id"] == cid and detail["collection"]["state"] == "published"
    assert detail["collection"]["shards"]["failed"] == 1


def test_a_queue_that_does_not_answer_falls_back_to_the_holder_s_own_collection(
        build: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    """The shards cannot be queued: the holder says so and reads the tick's collection itself, which publishes."""
    d = build("a")
    assert _scale(d).lease.try_acquire()

    def down(*_: Any, **__: Any) -> str:
        raise StorageUnavailable("shard queue: connection refused")

    monkeypatch.setattr(_scale(d).shards, "send", down)
    assert Parts(d).schedule.collect_if_due()
    row = _scale(d).book.collections()[0]
    assert row.state == "published" and d.shared is not None and d.shared.current is not None
    assert _reads(d, "collection") > 0 and _reads(d, "shard") == 0


def test_serve_s_runtime_takes_shards_on_every_replica_and_stops_its_threads(build: Callable[..., Daemon]) -> None:
    """Two runtimes: the collection fans out and publishes, both replicas serve it, and stopping ends the shard and
    drive threads."""
    from plmon.monitor.service.runtime import Runtime

    rts = [Runtime(build(n), idle_wait=0.1, shard_poll_idle=0.5) for n in ("r0", "r1")]
    try:
        for rt in rts:
            rt.start()
        deadline = time.monotonic() + PATIENCE
        while not all(rt.daemon.shared is not None and rt.daemon.shared.current is not None for rt in rts):
            assert time.monotonic() < deadline, "the fan-out collection was not published and loaded"
            time.sleep(0.1)
        rows = _scale(rts[0].daemon).book.collections()
        assert [r.state for r in rows] == ["published"]
        assert sum(_reads(rt.daemon, "shard") for rt in rts) > 0
    finally:
        for rt in rts:
            rt.stop(flush_timeout=1.0)
    assert not [t for rt in rts for t in rt._shard_threads if t.is_alive()]


def test_a_hosted_attempt_that_times_out_raises_for_redelivery_until_its_last_which_records_the_gap(
        build: Callable[..., Daemon]) -> None:
    """The Function's host owns the message: an attempt that does not finish raises (the host delivers it again, a
    return would delete it), and the delivery that is the last attempt records the shard failed without raising."""
    d = build("a", shard_timeout="1s", shard_max_attempts=2)
    assert _scale(d).lease.try_acquire()
    p = Parts(d)
    assert p.schedule.collect_if_due()
    message = _scale(d).shards.receive(timedelta(seconds=30))[0]
    sid = str(message.body["shard"])[3:]
    release = threading.Event()
    d.shard_reader = Blocking(d.shard_reader, sid, release)
    try:
        with pytest.raises(TimeoutError):
            p.worker.handle(message.body, 1)
        assert p.worker.handle(message.body, 2) == "failed"
    finally:
        release.set()
    row = _scale(d).book.shard(str(message.body["collection"]), str(message.body["shard"]))
    assert row is not None and row.state == "failed" and "did not finish" in row.error


def test_readyz_collection_status_reads_the_book_at_most_once_per_ttl() -> None:
    """Readiness probes poll often: the status is read from the book once per ttl, then served from memory."""
    from plmon.monitor.service.fanout import CollectionStatus

    class CountingBook:
        calls = 0

        def collections(self) -> list[CollectionRow]:
            CountingBook.calls += 1
            return []

    now = [100.0]
    status = CollectionStatus(CountingBook(), ttl=2.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert status() is None and status() is None and CountingBook.calls == 1
    now[0] += 2.0
    assert status() is None and CountingBook.calls == 2


def test_the_holder_decodes_each_segment_once_as_its_shard_lands(build: Callable[..., Daemon],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's one pass (fanout.FanIn) plans stage 2 and builds the inventory: every segment of the collection is
    decoded once in the holder (its header, and each chunk), where it used to be decoded to plan stage 2 and again to
    build; the findings are a single process's, and the fan-in times are in /metrics."""
    from plmon.monitor.collect import segments

    headers: dict[str, int] = {}
    chunks: dict[tuple[str, int], int] = {}
    init, chunk = segments.Segment.__init__, segments.Segment.chunk

    def counted_init(self: segments.Segment, name: str, data: bytes) -> None:
        headers[name] = headers.get(name, 0) + 1
        init(self, name, data)

    def counted_chunk(self: segments.Segment, i: int) -> bytes:
        chunks[(self.name, i)] = chunks.get((self.name, i), 0) + 1
        return chunk(self, i)

    monkeypatch.setattr(segments.Segment, "__init__", counted_init)
    monkeypatch.setattr(segments.Segment, "chunk", counted_chunk)
    d = build("a")
    assert _scale(d).lease.try_acquire()
    p = Parts(d)
    assert p.schedule.collect_if_due()
    _, cid = tick_collection(NOW, d.config.schedule.full_collection)
    _until_published([p], p, cid)
    names = {s.segment for s in _scale(d).book.shards(cid)}
    assert any(n.startswith("s1-") for n in names) and any(n.startswith("s2-") for n in names)
    assert {n: headers.get(n, 0) for n in names} == dict.fromkeys(names, 1)
    ours = {k: v for k, v in chunks.items() if k[0] in names}
    assert ours and set(ours.values()) == {1}
    single = build("single", other_prefix=True)
    single.full_collection()
    assert _findings(d) == _findings(single)
    text = d.metrics.render().decode()
    assert 'plmon_shards_fanin_seconds_count{part="plan"} 1.0' in text
    assert 'plmon_shards_fanin_seconds_count{part="build"} 1.0' in text


def test_a_deadline_message_taken_by_a_serve_replica_wakes_its_drive_step(build: Callable[..., Daemon]) -> None:
    """A Function app's deadline message on a queue plmon serve replicas share: the replica deletes it and wakes its
    holder's drive step (which expires a collection past its deadline by itself), never reads it as a bad shard."""
    from plmon.monitor.service.fanout import deadline_message

    d = build("a")
    woken: list[str] = []
    worker = ShardWorker(d, _scale(d), clock=lambda: NOW, on_done=woken.append)
    _scale(d).shards.send(deadline_message("t-1"))
    assert worker.run_one() == "deadline" and woken == ["t-1"]
    assert worker.run_one() is None                                          # deleted


def test_a_pass_given_up_answers_its_waiting_read_and_ends() -> None:
    """A holder's pass waiting for a shard that will never land here (the collection ended elsewhere, or the lease was
    lost) ends once closed, rather than holding its thread and segments."""
    from plmon.monitor.service.fanout import FanIn

    fanin = FanIn("c-x", manifest={}, subscriptions=None, typed=False)
    deadline = time.monotonic() + PATIENCE
    while fanin.reader.waiting is None:                    # no stage-0 segment: it waits for the tenant's list
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not fanin.built.is_set()
    fanin.close()
    assert fanin.built.wait(PATIENCE) and fanin.error is None
