"""One schedule on a shared store (issue 15, design 2.2), on Azurite: in-process runtimes built by the composition
root from one ``state.url``, each with its own instance id, clients and memory. ARM reads are counted by each daemon's
``plmon_arm_requests{phase="collection"}``, so "no ARM read" is a count."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azurite
import pytest
from sharedkit import ENV_VAR, daemons_on_one_prefix, scale_of

from plmon.monitor import wiring
from plmon.monitor.config import Config, parse_config
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.runtime import Runtime
from plmon.monitor.service.schedule import LeaseKeeper, SharedSchedule, prune_book, tick_collection
from plmon.monitor.service.shared_inventory import collection_id, retire
from plmon.monitor.state.lease_blob import BlobScheduleLease
from plmon.monitor.state.scaleout import CollectionRow, CollectionState, Manifest, ShardRow

SYNTH = SynthSpec(subscriptions=2, endpoints=20, seed=7, bad_share=0.3)
PATIENCE = 90.0   # seconds a wait gives up after (a failure, never a measure)


def _config(prefix: str) -> Config:
    return parse_config({"state": {"url": f"azuretables:///{prefix}?connection_string_env={ENV_VAR}"},
                         "schedule": {"full_collection": "1h"},
                         "scale": {"lease_duration": "15s", "lease_renew": "1s", "pointer_interval": "1s"}}, env={})


def _reads(d: Daemon) -> float:
    return float(d.metrics.arm_requests.labels("collection")._value.get())


_scale = scale_of


def _serving(rt: Runtime) -> bool:
    """Serving a published collection: adopted, and the pointer moved to it (or it was loaded from there)."""
    shared = rt.daemon.shared
    return rt.daemon.inventory is not None and shared is not None and shared.current is not None


def _wait(what: str, cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {PATIENCE:.0f} s for {what}")
        time.sleep(0.1)


@pytest.fixture
def tenant(tmp_path: Path) -> Path:
    folder = tmp_path / "tenant"
    write_tenant(generate(SYNTH), folder)
    return folder


@pytest.fixture
def build(tenant: Path) -> Iterator[Callable[[str], Daemon]]:
    """Daemons on one prefix, each as ``plmon serve`` builds it (wiring.build_daemon) under its own instance id."""
    with daemons_on_one_prefix(tenant, _config) as make:
        yield make


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for rt in started:
        rt.stop(flush_timeout=1.0)


def _start(runtimes: list[Runtime], daemons: list[Daemon]) -> list[Runtime]:
    for d in daemons:
        rt = Runtime(d, idle_wait=0.1)
        rt.start()
        runtimes.append(rt)
    return runtimes


def _holder(rts: list[Runtime]) -> Runtime:
    held = [rt for rt in rts if rt.keeper is not None and rt.keeper.held]
    assert len(held) == 1, [rt.daemon.readiness(3600)[1].get("schedule") for rt in rts]
    return held[0]


def test_three_runtimes_make_one_collection_and_the_others_load_it_with_no_arm_read(
        build: Callable[[str], Daemon], runtimes: list[Runtime]) -> None:
    """Three replicas starting at once: exactly one holds the lease and makes the tick's one full collection; the
    other two load it from blob storage with 0 ARM reads, to the same findings; /readyz names the holder everywhere."""
    rts = _start(runtimes, [build(n) for n in ("r0", "r1", "r2")])
    _wait("every replica to serve a collection", lambda: all(_serving(rt) for rt in rts))
    holder = _holder(rts)
    others = [rt for rt in rts if rt is not holder]
    assert _reads(holder.daemon) > 0
    assert [_reads(rt.daemon) for rt in others] == [0.0, 0.0]
    shared = [rt.daemon.shared for rt in rts]
    assert all(s is not None and s.current is not None for s in shared), [s.describe() for s in shared if s]
    assert len({s.current.collection for s in shared if s is not None and s.current is not None}) == 1
    assert holder.daemon.shared is not None and holder.daemon.shared.source == "published"
    assert all(rt.daemon.shared is not None and rt.daemon.shared.source == "shared" for rt in others)
    findings = [sorted(f.key for f in rt.daemon.evaluation.findings) for rt in rts if rt.daemon.evaluation]
    assert len(findings) == 3 and findings[0] == findings[1] == findings[2]

    book = _scale(holder.daemon).book
    rows = book.collections()
    assert [(r.state, r.started_by) for r in rows] == [("published", _scale(holder.daemon).instance)]
    for rt in rts:
        ok, detail = rt.daemon.readiness(3600)
        assert ok and detail["blob"] == "ok" and detail["store"] == "ok"
        assert detail["instance"] == _scale(rt.daemon).instance
        assert detail["schedule"]["holder"] == _scale(holder.daemon).instance
        assert detail["schedule"]["held_here"] is (rt is holder) and detail["schedule"]["lease"] == "leased"
        assert detail["inventory"]["collection"] == rows[0].manifest
        leader = rt.daemon.metrics.render().decode()
        assert f"plmon_schedule_leader {1.0 if rt is holder else 0.0}" in leader


def test_a_holder_that_stops_renewing_loses_the_schedule_and_the_tick_is_not_collected_again(
        build: Callable[[str], Daemon], runtimes: list[Runtime]) -> None:
    """The holder stops renewing (its lease broken: the real expiry is proved in test_lease_blob.py): another replica
    takes the lease with a newer epoch, the old holder's late renewal is refused, and the new holder neither repeats
    the tick's collection (its row is published) nor reruns reminders the old one ran this interval."""
    rts = _start(runtimes, [build(n) for n in ("r0", "r1")])
    _wait("both replicas to serve a collection", lambda: all(_serving(rt) for rt in rts))
    old = _holder(rts)
    new = next(rt for rt in rts if rt is not old)
    epoch = _scale(old.daemon).lease.epoch
    assert old.keeper is not None and new.keeper is not None and old.schedule is not None
    assert new.schedule is not None
    book = _scale(old.daemon).book
    # The holder's schedule job has started the reminders' clock: a takeover within the interval runs none.
    _wait("the holder to write the jobs row", lambda: book.jobs().reminders_at is not None)
    assert book.jobs().epoch == epoch

    old.keeper.stop(release=False)          # it stops renewing, as a paused or partitioned holder does
    lease = _scale(new.daemon).lease
    assert isinstance(lease, BlobScheduleLease)
    lease.break_lease(0)
    _wait("the other replica to take the lease", lambda: new.keeper is not None and new.keeper.held)
    assert _scale(new.daemon).lease.epoch == epoch + 1
    assert old.keeper.step() is False       # its late renewal is refused: it steps down
    assert new.daemon.readiness(3600)[1]["schedule"]["holder"] == _scale(new.daemon).instance
    assert old.daemon.readiness(3600)[1]["schedule"]["held_here"] is False

    reads = _reads(new.daemon)
    row = book.collections()[0]
    # In the tick the published row names (an injected clock: the wall clock may cross into the next tick here).
    schedule = SharedSchedule(new.daemon, _scale(new.daemon), clock=lambda: row.started_at)
    assert schedule.collect_if_due() is False       # the tick's collection is published: not made twice
    assert new.schedule.reminders_if_due() is False and old.schedule.reminders_if_due() is False
    assert _reads(new.daemon) == reads == 0.0
    assert [r.state for r in book.collections()] == ["published"]


def test_a_stale_holder_cannot_claim_a_job_a_newer_epoch_wrote(build: Callable[[str], Daemon]) -> None:
    """The jobs row carries the lease epoch: a holder that wakes with an older epoch runs no reminder or retention;
    the first sight of a job only starts its clock (as an interval job first runs one interval after start)."""
    a, b = build("a"), build("b")
    la, lb = _scale(a).lease, _scale(b).lease
    assert la.try_acquire() and not lb.try_acquire()
    sa, sb = SharedSchedule(a, _scale(a)), SharedSchedule(b, _scale(b))
    assert sb.reminders_if_due() is False            # not the holder
    assert sa.reminders_if_due() is False            # first sight: the clock starts
    later = SharedSchedule(a, _scale(a), clock=lambda: datetime.now(UTC) + timedelta(days=2))
    assert later.reminders_if_due() is True and later.reminders_if_due() is False   # once per interval
    assert isinstance(lb, BlobScheduleLease)
    lb.break_lease(0)
    assert lb.try_acquire()
    assert _scale(b).book.jobs().epoch < lb.epoch
    b_later = SharedSchedule(b, _scale(b), clock=lambda: datetime.now(UTC) + timedelta(days=4))
    assert b_later.retention_if_due() is False       # first sight of retention
    assert b_later.reminders_if_due() is True        # the new epoch is written
    stale = SharedSchedule(a, _scale(a), clock=lambda: datetime.now(UTC) + timedelta(days=9))
    la._renewed = time.monotonic()  # type: ignore[attr-defined]   # a holder that has not noticed yet
    assert stale.reminders_if_due() is False         # an older epoch than the row's: it stands down


def test_a_tick_whose_holder_died_mid_collection_is_taken_over_at_once(build: Callable[[str], Daemon]) -> None:
    """A holder started the tick's collection (a ``stage1`` row) and lost the lease: the new holder, with a newer
    epoch, collects the tick again at once, not after the row's deadline (by then the tick is over), and publishes
    it; the row names it. The clock is injected: the same tick whatever the wall clock does."""
    a, b = build("a"), build("b")
    la, lb = _scale(a).lease, _scale(b).lease
    assert la.try_acquire()
    now = datetime(2026, 12, 2, 9, 10, tzinfo=UTC)
    every = a.config.schedule.full_collection
    tick, cid = tick_collection(now, every)
    book = _scale(a).book
    book.create_collection(CollectionRow(collection=cid, state="stage1", tick=tick, started_at=now, started_by="a",
                                         epoch=la.epoch, deadline=now + every))
    assert isinstance(lb, BlobScheduleLease)
    lb.break_lease(0)                                # the holder died: its lease ends
    assert lb.try_acquire() and lb.epoch > la.epoch
    later = now + timedelta(minutes=1)               # well before the dead holder's deadline
    assert SharedSchedule(b, _scale(b), clock=lambda: later).collect_if_due() is True
    assert _reads(b) > 0
    row = book.collection(cid)
    assert row is not None and (row.state, row.started_by, row.epoch) == ("published", "b", lb.epoch)
    assert SharedSchedule(b, _scale(b), clock=lambda: later).collect_if_due() is False   # once


def test_a_live_holders_running_tick_is_left_alone(build: Callable[[str], Daemon]) -> None:
    """A ``stage1`` row of the holder's own epoch before its deadline is under way: not started again."""
    a = build("a")
    la = _scale(a).lease
    assert la.try_acquire()
    now = datetime(2026, 12, 2, 9, 10, tzinfo=UTC)
    every = a.config.schedule.full_collection
    tick, cid = tick_collection(now, every)
    _scale(a).book.create_collection(CollectionRow(collection=cid, state="stage1", tick=tick, started_at=now,
                                                   started_by="a", epoch=la.epoch, deadline=now + every))
    assert SharedSchedule(a, _scale(a), clock=lambda: now + timedelta(minutes=1)).collect_if_due() is False
    assert _reads(a) == 0.0


def test_retention_keeps_the_current_and_previous_collection_and_recent_ones(build: Callable[[str], Daemon]) -> None:
    """Retention deletes collections older than an hour except the published one and the one before it, and never
    one newer than the published one."""
    d = build("a")
    inv = _scale(d).inventory
    now = datetime.now(UTC)
    ids = [collection_id(now - timedelta(hours=h)) for h in (5, 4, 3)] + [collection_id(now)]
    for cid in ids:
        inv.put_segment(cid, "s-a1.z", b"x")
    etag = inv.put_manifest(Manifest(collection=ids[2], started_at=now, finished_at=now, manifest={},
                                     subscriptions=(), scoped=False, segments=()))
    inv.publish(ids[2], etag, now, expected=None)
    deleted, _ = retire(inv, now)
    assert deleted == 1
    assert inv.collections() == ids[1:]


def test_retention_prunes_the_book_s_finished_rows_but_the_newest_published_and_running_ones(
        build: Callable[[str], Daemon]) -> None:
    """The book keeps the newest published row, rows started within the hour and any still running; older finished
    rows go with their shard rows (so /readyz, which reads the rows, does not slow as intervals pass)."""
    book = _scale(build("a")).book
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

    def row(hours: float, state: CollectionState) -> str:
        started = now - timedelta(hours=hours)
        cid = tick_collection(started, timedelta(minutes=30))[1]
        book.create_collection(CollectionRow(collection=cid, state=state, tick=0, started_at=started,
                                             started_by="a", epoch=1, deadline=started + timedelta(minutes=30)))
        book.add_shards([ShardRow(cid, "s1-a", 1, "a")])
        return cid

    old_published, old_abandoned, stuck = row(5, "published"), row(4.5, "abandoned"), row(4, "stage1")
    newest, recent = row(3, "published"), row(0.5, "abandoned")
    assert prune_book(book, now) == 4
    assert [r.collection for r in book.collections()] == [stuck, newest, recent]
    assert book.shards(old_published) == [] and book.shards(old_abandoned) == [] and book.shards(newest)


def test_tick_ids_sort_and_name_the_interval() -> None:
    """A tick's row id is the start of its interval: every holder computes the same one."""
    t = datetime(2026, 12, 2, 9, 17, 3, tzinfo=UTC)
    assert tick_collection(t, timedelta(minutes=30))[1] == "t-20261202T090000Z"
    assert tick_collection(t + timedelta(minutes=13), timedelta(minutes=30))[1] == "t-20261202T093000Z"


def test_sqlite_builds_no_scale_out(tmp_path: Path) -> None:
    """SQLite (one process) gets neither a shared inventory nor a lease: the runtime keeps today's three jobs."""
    config = parse_config({"state": {"url": f"sqlite:///{tmp_path / 's.db'}"}}, env={})
    source = wiring.open_source(_tiny(tmp_path), env={})
    d = wiring.build_daemon(config, source, env={"PLMON_INSTANCE_ID": "x"}, channels={})
    try:
        assert d.scale is None and d.shared is None
        rt = Runtime(d, collect_at_start=False)
        rt.start()
        try:
            assert {j.id for j in rt.scheduler.get_jobs()} == {"full_collection", "reminders", "retention"}
            assert rt.keeper is None and rt.watcher is None
            assert "schedule" not in d.readiness(3600)[1]
        finally:
            rt.stop(flush_timeout=1.0)
    finally:
        d.intake.close()
        d.store.close()


def _tiny(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    write_tenant(generate(SynthSpec(subscriptions=1, endpoints=2, seed=1)), folder)
    return folder


def test_readyz_and_metrics_show_the_schedule_and_the_inventory_over_http(tenant: Path) -> None:
    """plmon serve's app on a shared store: /readyz keeps its keys and adds instance, schedule (this replica holds
    it), inventory and blob; /metrics has the leader gauge, the load histogram and the patch counters."""
    import threading

    import httpx
    import uvicorn

    from plmon.monitor.service.server import create_app

    prefix = azurite.unique_prefix()
    env = {ENV_VAR: azurite.connection_string(), "PLMON_INSTANCE_ID": "solo"}
    config = _config(prefix)
    app = create_app(config, lambda: wiring.build_daemon(config, wiring.open_source(tenant, env=env), env=env,
                                                         channels={}), flush_timeout=1.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait("the server to start", lambda: server.started or not thread.is_alive())
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        with httpx.Client(timeout=30) as client:
            _wait("/readyz to answer 200", lambda: client.get(f"{base}/readyz").status_code == 200)
            body = client.get(f"{base}/readyz").json()
            assert {"store", "intake", "last_collection", "intake_pending", "intake_failed", "ready"} <= set(body)
            assert body["instance"] == "solo" and body["blob"] == "ok"
            assert body["schedule"]["holder"] == "solo" and body["schedule"]["held_here"] is True
            assert body["schedule"]["epoch"] >= 1 and body["schedule"]["lease"] == "leased"
            assert body["inventory"]["source"] == "published" and body["inventory"]["patches_applied"] == 0
            text = client.get(f"{base}/metrics").text
            assert "plmon_schedule_leader 1.0" in text and 'plmon_patches_total{op="applied"} 0.0' in text
            assert "plmon_inventory_load_seconds_count" in text
            # design15 2.2: the lease's changes, the collection served, the patch fallback reads, the patch ops
            assert 'plmon_schedule_lease_changes_total{event="acquired"} 1.0' in text
            cid = body["inventory"]["collection"]
            assert f'plmon_inventory_collection_info{{collection="{cid}"}} 1.0' in text
            assert "plmon_patch_fallback_reads_total 0.0" in text
            for op in ("written", "older"):
                assert f'plmon_patches_total{{op="{op}"}} 0.0' in text
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_readyz_shows_blob_storage_down_but_stays_ready_with_an_inventory(
        build: Callable[[str], Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    """Blob storage unreachable: /readyz says so in ``blob``; a replica that has an inventory stays ready (intake and
    events still work), one without stays unready."""
    d = build("a")
    monkeypatch.setattr(_scale(d).inventory, "ping", lambda: False)
    ok, detail = d.readiness(3600)
    assert not ok and detail["blob"] == "unreachable"     # no inventory yet
    d.full_collection()
    ok, detail = d.readiness(3600)
    assert ok and detail["blob"] == "unreachable"


def test_reminders_a_holder_claimed_but_did_not_finish_are_run_by_the_next(
        build: Callable[[str], Daemon], monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder claims the reminders and dies before they are done (claimed, not done): the next holder runs them
    at once, within the interval; once done they are not run again in it."""
    a, b = build("a"), build("b")
    la, lb = _scale(a).lease, _scale(b).lease
    assert la.try_acquire()
    now = datetime.now(UTC)
    assert SharedSchedule(a, _scale(a), clock=lambda: now).reminders_if_due() is False   # the clock starts

    def dies() -> None:
        raise SystemExit("the holder died mid-reminders")

    monkeypatch.setattr(a, "reminders", dies)
    later = now + timedelta(days=2)
    with pytest.raises(SystemExit):
        SharedSchedule(a, _scale(a), clock=lambda: later).reminders_if_due()
    jobs = _scale(a).book.jobs()
    assert jobs.reminders_at == later and jobs.reminders_done_at != later   # claimed, not done

    assert isinstance(lb, BlobScheduleLease)
    lb.break_lease(0)
    assert lb.try_acquire()
    ran: list[int] = []
    monkeypatch.setattr(b, "reminders", lambda: ran.append(1) or [])
    soon = SharedSchedule(b, _scale(b), clock=lambda: later + timedelta(minutes=1))
    assert soon.reminders_if_due() is True and ran == [1]
    assert _scale(b).book.jobs().reminders_done_at == later + timedelta(minutes=1)
    assert soon.reminders_if_due() is False and ran == [1]


def test_lease_changes_are_counted_acquired_lost_and_released(build: Callable[[str], Daemon]) -> None:
    """plmon_schedule_lease_changes_total{event}: the keeper's acquire, the renewal refused after another broke the
    lease (lost), the acquire after it, and the release on a graceful stop; the leader gauge follows."""
    a, b = build("a"), build("b")
    keeper = LeaseKeeper(_scale(a).lease, every=1.0, on_event=a.metrics.lease_changed)
    assert keeper.step()
    _scale(b).lease.break_lease(0)
    assert not keeper.step()    # the renewal is refused: lost
    assert keeper.step()        # the lease is free again: acquired
    text = a.metrics.render().decode()
    assert 'plmon_schedule_lease_changes_total{event="acquired"} 2.0' in text
    assert 'plmon_schedule_lease_changes_total{event="lost"} 1.0' in text and "plmon_schedule_leader 1.0" in text
    keeper.stop(release=True)
    text = a.metrics.render().decode()
    assert 'plmon_schedule_lease_changes_total{event="released"} 1.0' in text and "plmon_schedule_leader 0.0" in text
