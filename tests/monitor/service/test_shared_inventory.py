"""One inventory shared between processes (issue 15, C1-C3), on Azurite: two in-process daemons on one Table store
and one inventory container, each reading the recorded tenant through a counter, so "no ARM read" is a count."""

from __future__ import annotations

import json
import shutil
import struct
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import azurite
import pytest

from plmon.checks.engine import evaluate
from plmon.monitor.collect.builder import link
from plmon.monitor.collect.plan import ArmReader, Inventory, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.segments import RecordingTap, encode_segment
from plmon.monitor.config import Config, parse_config
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.clock import source_clock
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.reevaluate import reread_into
from plmon.monitor.service.shared_inventory import (
    Patch,
    PointerWatcher,
    SharedInventory,
    collection_id,
    load_published,
    publish_collection,
)
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.inventory_blob import BlobInventoryStore
from plmon.monitor.state.open import intake_beside, open_scaleout, open_store
from plmon.monitor.state.scaleout import InventoryStore, Manifest, Pointer, ScaleOut, SegmentRef
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import OutboxRow

SYNTH = SynthSpec(subscriptions=2, endpoints=30, seed=5, bad_share=0.3)
MAPPINGS = ("subscriptions", "private_endpoints", "private_link_services", "rmpls", "associations", "targets",
            "virtual_networks", "subnets", "route_tables", "nsgs", "firewalls", "firewall_policies",
            "load_balancers", "nics", "bastion_hosts", "dns_zones", "provider_connections_by_endpoint",
            "endpoints_by_subnet")
ENV_VAR = "PLMON_TEST_AZURITE"


class Counting:
    """The recorded tenant, every read counted: a replica that loads must count 0."""

    def __init__(self, inner: ArmReader) -> None:
        self.inner, self.reads = inner, 0

    def get(self, path: str, *, kind: str) -> Any:
        self.reads += 1
        return self.inner.get(path, kind=kind)


class Sink:
    """A channel that keeps what it is sent (delivery is not what these tests are about)."""

    name, digest_threshold = "hook", 1_000_000

    def __init__(self) -> None:
        self.sent: list[OutboxRow] = []

    def send(self, alert: OutboxRow) -> None:
        self.sent.append(alert)

    def send_digest(self, alerts: Sequence[OutboxRow]) -> None:
        self.sent.extend(alerts)


def _config() -> Config:
    return parse_config({"alerts": [{"type": "webhook", "name": "hook", "url": "http://127.0.0.1:9/unused",
                                     "secret": "s", "min_severity": "low"}],
                         "schedule": {"full_collection": "1h"}}, env={})


@dataclass
class Replica:
    daemon: Daemon
    reader: Counting
    scale: ScaleOut

    @property
    def shared(self) -> SharedInventory:
        assert self.daemon.shared is not None
        return self.daemon.shared


@pytest.fixture
def tenant(tmp_path: Path) -> Path:
    folder = tmp_path / "tenant"
    write_tenant(generate(SYNTH), folder)
    return folder


@pytest.fixture
def replicas(tenant: Path) -> Iterator[tuple[Replica, Replica]]:
    """A and B: one Table store (prefix) and one inventory container, each its own clients, reader and intake."""
    url = f"azuretables:///{azurite.unique_prefix()}?connection_string_env={ENV_VAR}"
    env = {ENV_VAR: azurite.connection_string()}
    made = []
    for name in ("a", "b"):
        store = open_store(url, environ=env)
        scale = open_scaleout(store, url, env, instance=name)
        assert scale is not None
        reader = Counting(RecordedTenant(tenant))
        daemon = Daemon(_config(), reader, store, intake_beside(store, url), manifest=RecordedTenant(tenant).manifest,
                        channels={"hook": Sink()}, shared=SharedInventory(scale.inventory, instance=name))
        made.append(Replica(daemon, reader, scale))
    yield made[0], made[1]
    for r in made:
        r.scale.close()
        r.daemon.intake.close()
        r.daemon.store.close()


def _view(d: Daemon) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    assert d.snapshot is not None and d.evaluation is not None
    findings = sorted(json.dumps(f.to_dict(), sort_keys=True, default=str) for f in d.evaluation.findings)
    return ({m: getattr(d.snapshot, m) for m in MAPPINGS}, [g.as_dict() for g in d.snapshot.coverage.gaps],
            findings)


def _inv_view(inv: Inventory) -> tuple[dict[str, Any], list[str]]:
    snap = link(inv, source_clock(inv.manifest).now())[0]
    findings = sorted(json.dumps(f.to_dict(), sort_keys=True, default=str) for f in evaluate(snap, {}, ()).findings)
    return {m: getattr(snap, m) for m in MAPPINGS}, findings


def _flip_endpoint(folder: Path) -> str:
    """Fail the provisioning of the first endpoint of the first endpoint list on disk (its list and its own file),
    so endpoint.provisioning-failed opens; that endpoint's id."""
    file = sorted((folder / "arm" / "subscriptions").glob("*/providers/Microsoft.Network/privateEndpoints.json"))[0]
    body = json.loads(file.read_text())
    for item in body["value"]:
        props = item.setdefault("properties", {})
        if props.get("provisioningState", "Succeeded") == "Succeeded":
            props["provisioningState"] = "Failed"
            file.write_text(json.dumps(body))
            by_id = folder / "arm" / f"{item['id'].strip('/')}.json"   # what a read by id finds, as in ARM
            by_id.parent.mkdir(parents=True, exist_ok=True)
            by_id.write_text(json.dumps(item))
            return str(item["id"])
    raise AssertionError("no endpoint provisioned")


def _event(resource_id: str) -> bytes:
    sub = resource_id.split("/")[2]
    when = (datetime.now(UTC) + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    return json.dumps([{
        "id": str(uuid.uuid4()), "eventType": "Microsoft.Resources.ResourceWriteSuccess", "subject": resource_id,
        "eventTime": when, "dataVersion": "2", "metadataVersion": "1", "topic": f"/subscriptions/{sub}",
        "data": {"operationName": "Microsoft.Network/privateEndpoints/write", "resourceUri": resource_id,
                 "status": "Succeeded", "subscriptionId": sub, "correlationId": str(uuid.uuid4())}}]).encode()


def _opened(d: Daemon, check_id: str, key: str) -> list[OutboxRow]:
    return [r for r in d.store.outbox() if (r.check_id, r.resource_key, r.kind) == (check_id, key, "opened")]


def test_a_replica_loads_another_s_collection_with_no_arm_read_and_syncs_its_event_as_a_patch(
        replicas: tuple[Replica, Replica], tenant: Path) -> None:
    """A collects and publishes; B loads it with 0 reads to A's snapshot and findings, opening nothing; A's endpoint
    event reaches B as a patch (0 reads, no fallback) to A's inventory and findings, with one `opened` alert."""
    a, b = replicas
    a.daemon.full_collection()
    assert a.reader.reads > 0 and a.shared.current is not None and a.shared.source == "published"
    outbox_before = len(a.daemon.store.outbox())
    assert outbox_before > 0   # A's own collection opened its findings (and alerted) once

    watcher = PointerWatcher(b.daemon)
    assert watcher.poll_once() is True
    assert b.reader.reads == 0
    assert b.shared.current == a.shared.current and b.shared.source == "shared"
    assert _view(b.daemon) == _view(a.daemon)
    assert len(b.daemon.store.outbox()) == outbox_before   # no lifecycle on a load: nothing opened twice
    assert watcher.poll_once() is False and b.reader.reads == 0   # nothing new published: nothing loaded

    endpoint_id = _flip_endpoint(tenant)
    a.daemon.accept(_event(endpoint_id), "application/json")
    report = a.daemon.process_pending()
    opened = [t for t in report.transitions if t.kind == "opened"]
    assert opened and a.shared.patches_written == 1
    assert _view(a.daemon) != _view(b.daemon)

    assert b.daemon.sync_shared() == 0          # A already applied the transitions: nothing moves again
    assert b.reader.reads == 0 and b.shared.fallback_reads == 0 and b.shared.patches_applied == 1
    assert _view(b.daemon) == _view(a.daemon)
    for t in opened:
        assert len(_opened(a.daemon, t.check_id, t.resource_key)) == 1
    assert b.daemon.sync_shared() == 0 and b.shared.patches_applied == 1   # a patch is replayed once


def test_sync_keeps_only_patches_newer_than_the_replica_s_own_read(
        replicas: tuple[Replica, Replica], tenant: Path, tmp_path: Path) -> None:
    """A patch older than B's own re-read of the resource is not replayed (it would roll B back); B's own patches
    and a patch already replayed are not replayed again."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared() and b.daemon.inventory is not None
    before = tmp_path / "before"
    shutil.copytree(tenant, before)
    endpoint_id = _flip_endpoint(tenant)
    old = RecordingTap(RecordedTenant(before))
    reread_into(old, b.daemon.inventory, [parse_id(endpoint_id)])   # what ARM said before the change

    shared, b.daemon.shared = b.daemon.shared, None   # B re-reads the change itself, publishing nothing
    b.daemon.accept(_event(endpoint_id), "application/json")
    assert any(t.kind == "opened" for t in b.daemon.process_pending().transitions)
    b.daemon.shared = shared
    changed = _view(b.daemon)
    own_ms = int(datetime.now(UTC).timestamp() * 1000)

    stale = Patch(resources=(endpoint_id,), read_at_ms=own_ms - 2_000, instance="a",
                  collection=a.shared.current.collection if a.shared.current else "", responses=tuple(old.take()))
    a.shared.write_patch(stale, {parse_id(endpoint_id).key: endpoint_id})
    assert b.daemon.sync_shared() == 0 and b.shared.patches_applied == 0
    assert _view(b.daemon) == changed

    a.daemon.accept(_event(endpoint_id), "application/json")   # A's own, newer re-read reaches B once
    a.daemon.process_pending()
    b.daemon.sync_shared()
    b.daemon.sync_shared()
    assert b.shared.patches_applied == 1 and _view(b.daemon) == _view(a.daemon) and b.shared.fallback_reads == 0


def test_a_publish_racing_loads_gives_every_load_one_whole_collection(
        replicas: tuple[Replica, Replica], tenant: Path) -> None:
    """Loads running while A publishes a second collection each get the first or the second whole, never a mix."""
    a, b = replicas
    a.daemon.full_collection()
    assert a.daemon.inventory is not None
    first = _inv_view(a.daemon.inventory)
    _flip_endpoint(tenant)
    got: list[tuple[dict[str, Any], list[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def load_loop() -> None:
        try:
            while not stop.is_set() or not got:
                loaded = load_published(b.shared.store)
                assert loaded is not None
                got.append(_inv_view(loaded.inventory))
        except BaseException as err:  # surfaced below, in the test's thread
            errors.append(err)

    thread = threading.Thread(target=load_loop)
    thread.start()
    a.daemon.full_collection()
    stop.set()
    thread.join(60)
    assert not errors and got
    assert a.daemon.inventory is not None
    second = _inv_view(a.daemon.inventory)
    assert first != second
    assert all(v in (first, second) for v in got)
    loaded = load_published(b.shared.store)
    assert loaded is not None and _inv_view(loaded.inventory) == second and b.reader.reads == 0


class _VanishingOnce:
    """An inventory store whose collection is replaced and deleted right after a loader read its manifest: the
    loader meets a 404 on a segment mid-load."""

    def __init__(self, inner: BlobInventoryStore, replace: Any) -> None:
        self.inner, self.replace, self.done = inner, replace, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_segment(self, collection: str, name: str) -> bytes:
        if not self.done:
            self.done = True
            self.replace()
            self.inner.delete_collection(collection)
        return self.inner.get_segment(collection, name)


def test_a_404_met_mid_load_starts_again_from_the_pointer(replicas: tuple[Replica, Replica], tenant: Path) -> None:
    """A collection retired while a replica loads it: the loader starts again from the pointer and gets the new one."""
    a, b = replicas
    a.daemon.full_collection()
    _flip_endpoint(tenant)
    store = b.scale.inventory
    assert isinstance(store, BlobInventoryStore)
    flaky = _VanishingOnce(store, lambda: a.daemon.full_collection())
    loaded = load_published(flaky)  # type: ignore[arg-type]
    assert flaky.done and loaded is not None
    assert a.shared.current is not None and loaded.pointer.collection == a.shared.current.collection
    assert a.daemon.inventory is not None and _inv_view(loaded.inventory) == _inv_view(a.daemon.inventory)


def test_an_unsupported_format_keeps_the_last_collection_and_says_so(
        replicas: tuple[Replica, Replica], tenant: Path) -> None:
    """A collection published in a segment format this plmon does not read: B keeps serving the one it has, and
    /readyz's inventory names the error."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared()
    kept = b.shared.current
    view = _view(b.daemon)
    tap = RecordingTap(RecordedTenant(tenant))
    collect(tap, manifest=RecordedTenant(tenant).manifest, workers=1)
    future = bytearray(encode_segment("s0", tap.take()))
    struct.pack_into(">H", future, 6, 99)   # the version after the magic
    store: InventoryStore = a.shared.store
    now = datetime.now(UTC)
    cid = collection_id(now)
    ref = store.put_segment(cid, "s0-a1.z", bytes(future), shard="s0", reads=1)
    etag = store.put_manifest(Manifest(collection=cid, started_at=now, finished_at=now, manifest={},
                                       subscriptions=(), scoped=False, segments=(ref,)))
    store.publish(cid, etag, now, expected=store.pointer())
    assert b.daemon.load_shared() is False
    assert b.shared.current == kept and _view(b.daemon) == view and b.reader.reads == 0
    assert b.shared.error is not None and "unsupported" in b.shared.error
    ok, detail = b.daemon.readiness(3600)
    assert ok and "unsupported" in detail["inventory"]["error"]


def test_adopt_without_the_lifecycle_writes_no_transition(tmp_path: Path, tenant: Path) -> None:
    """Daemon.adopt(lifecycle=False) serves the collection (snapshot, findings) and writes nothing to the store;
    with the lifecycle, the same collection opens its findings."""
    def daemon(name: str) -> Daemon:
        db = tmp_path / f"{name}.db"
        return Daemon(_config(), RecordedTenant(tenant), SqliteStore(db), SqliteIntake(db),
                      manifest=RecordedTenant(tenant).manifest, channels={"hook": Sink()})

    inv = collect(RecordedTenant(tenant), manifest=RecordedTenant(tenant).manifest, workers=1)
    quiet, applied = daemon("quiet"), daemon("applied")
    result, transitions = quiet.adopt(inv, datetime.now(UTC), lifecycle=False)
    assert transitions == [] and result.evaluation.findings
    assert quiet.store.findings() == [] and quiet.store.outbox() == []
    assert quiet.last_collection is not None and quiet.snapshot is not None
    _, opened = applied.adopt(inv, datetime.now(UTC), lifecycle=True)
    assert opened and len(applied.store.findings()) == len(result.evaluation.findings)


def test_publish_never_moves_the_pointer_back_to_an_older_collection(replicas: tuple[Replica, Replica]) -> None:
    """A slow publisher of an older collection leaves a newer one published."""
    a, _ = replicas
    a.daemon.full_collection()
    current = a.shared.current
    assert current is not None
    older = collection_id(datetime(2020, 1, 1, tzinfo=UTC))
    now = datetime.now(UTC)
    assert publish_collection(a.shared.store, [], collection=older, manifest={}, subscriptions=(), scoped=False,
                              started_at=now, finished_at=now) is None
    pointer = a.shared.store.pointer()
    assert pointer is not None and pointer.collection == current.collection


def test_a_patch_about_a_resource_the_inventory_does_not_track_is_fetched_once(
        replicas: tuple[Replica, Replica], tenant: Path) -> None:
    """A patch whose resource no replica tracks (an untracked target) is looked at once, not at every step while
    its row stays in the sync window."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared() and a.shared.current is not None
    sub = next(iter(RecordedTenant(tenant).manifest.get("subscriptions", []) or ["0000"]))
    rid = f"/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/untracked"
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    a.shared.write_patch(Patch((rid,), now_ms, "a", a.shared.current.collection, ()), {parse_id(rid).key: rid})
    b.daemon.sync_shared()
    b.daemon.sync_shared()
    assert b.shared.patches_applied == 1 and b.reader.reads == 0


def test_a_loaded_collection_that_started_before_a_synced_re_read_gets_it_replayed(
        replicas: tuple[Replica, Replica], tenant: Path, tmp_path: Path) -> None:
    """B synced A's re-read, then loads a collection that started before that read (so may lack it): B's read time
    for the resource is not kept on the new inventory, and the sync after the load replays the patch onto it."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared()
    before = tmp_path / "before"
    shutil.copytree(tenant, before)
    started = datetime.now(UTC)
    endpoint_id = _flip_endpoint(tenant)
    a.daemon.accept(_event(endpoint_id), "application/json")
    a.daemon.process_pending()
    b.daemon.sync_shared()
    assert _view(b.daemon) == _view(a.daemon)

    tap = RecordingTap(RecordedTenant(before))    # a collection read before the change, published after it
    collect(tap, manifest=RecordedTenant(before).manifest, workers=1)
    assert publish_collection(b.shared.store, tap.take(), collection=collection_id(datetime.now(UTC)),
                              manifest=RecordedTenant(before).manifest, subscriptions=(), scoped=False,
                              started_at=started, finished_at=datetime.now(UTC)) is not None
    assert b.daemon.load_shared()
    assert _view(b.daemon) == _view(a.daemon) and b.reader.reads == 0 and b.shared.fallback_reads == 0


class _Blobs:
    """What publish_collection writes, kept in memory (only the segments are compared here)."""

    def __init__(self) -> None:
        self.segments: dict[str, tuple[bytes, SegmentRef]] = {}
        self.current: Pointer | None = None

    def put_segment(self, collection: str, name: str, data: bytes, *, shard: str = "", reads: int = 0) -> SegmentRef:
        ref = SegmentRef(name=name, shard=shard, etag=name, bytes=len(data), reads=reads)
        self.segments[name] = (data, ref)
        return ref

    def put_manifest(self, manifest: Manifest) -> str:
        return "m"

    def pointer(self) -> Pointer | None:
        return self.current

    def publish(self, collection: str, manifest_etag: str, published_at: datetime, *,
                expected: Pointer | None) -> Pointer:
        self.current = Pointer(collection, manifest_etag, published_at)
        return self.current


def test_a_tap_recording_publishes_the_segments_its_responses_would(tenant: Path) -> None:
    """publish_collection writes a tap's Recording as it holds it (no body parsed back): the same blobs, refs and
    order as publishing its decoded responses."""
    folder = RecordedTenant(tenant)
    tap = RecordingTap(folder)
    collect(tap, manifest=folder.manifest, workers=4)
    recording = tap.take()
    now = datetime.now(UTC)
    published = []
    for responses in (recording, list(recording)):
        blobs = _Blobs()
        assert publish_collection(cast(InventoryStore, blobs), responses, collection=collection_id(now),
                                  manifest={}, subscriptions=(), scoped=False, started_at=now, finished_at=now)
        published.append(list(blobs.segments.items()))
    assert published[0] == published[1] and len(published[0]) > 1
    assert sum(ref.reads for _, (_, ref) in published[0]) == len(recording) == tap.reads


def test_blob_storage_down_neither_delays_nor_fails_an_event_s_alert(
        replicas: tuple[Replica, Replica], tenant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The patch sync raises and the patch publish hangs then raises (blob storage down): the event is still
    re-evaluated, its alert is handed over before the publish starts and while the daemon's lock is free, and both
    failures are counted, not raised."""
    import time

    a, _ = replicas
    a.daemon.full_collection()
    seen: list[tuple[str, float]] = []
    lock_free: list[bool] = []

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("blob storage down")

    def hang(*args: Any, **kwargs: Any) -> None:
        seen.append(("publish", time.monotonic()))
        free = a.daemon._lock.acquire(blocking=False)   # the re-read step's lock: not held while publishing
        if free:
            a.daemon._lock.release()
        lock_free.append(free)
        time.sleep(1.0)
        raise ConnectionError("blob storage down")

    monkeypatch.setattr(a.shared, "pending", down)
    monkeypatch.setattr(a.shared, "write_patch", hang)
    a.daemon.dispatch = lambda urgent: seen.append(("alerts", time.monotonic()))
    a.daemon.accept(_event(_flip_endpoint(tenant)), "application/json")
    a.shared.synced_from = datetime.now(UTC)   # a sync is due
    report = a.daemon.process_pending()
    assert [t.kind for t in report.transitions if t.kind == "opened"]
    assert [what for what, _ in seen] == ["alerts", "publish"]
    assert lock_free == [True]
    patches = a.daemon.metrics.patches
    assert patches.labels("sync_failed")._value.get() == 1 and patches.labels("publish_failed")._value.get() == 1


def test_the_holder_never_downloads_the_collection_it_just_published(
        replicas: tuple[Replica, Replica], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pointer poll between the holder's publish and its adopt sees the pointer moved to the holder's own
    collection: it loads nothing (the holder adopts it from memory), and after the adopt nothing is new either."""
    from plmon.monitor.service import daemon as daemon_module

    a, _ = replicas
    loads: list[int] = []
    real_load = daemon_module.load_published

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(daemon_module, "load_published", counted)
    watcher = PointerWatcher(a.daemon)
    real_adopt = a.daemon.adopt
    polled: list[bool] = []

    def adopt(*args: Any, **kwargs: Any) -> Any:
        polled.append(watcher.poll_once())     # the watcher's thread, between the publish and the swap
        return real_adopt(*args, **kwargs)

    monkeypatch.setattr(a.daemon, "adopt", adopt)
    a.daemon.full_collection()
    assert polled == [False] and loads == []
    assert a.shared.current is not None and a.shared.source == "published"
    assert watcher.poll_once() is False and loads == []


def _lock_free(lock: Any) -> bool:
    """Whether no thread holds ``lock`` (asked from a thread of its own: an RLock is always free to its holder)."""
    free: list[bool] = []

    def probe() -> None:
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        free.append(got)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return free[0]


def test_a_hung_patch_listing_neither_holds_the_lock_nor_delays_an_event_s_alert(
        replicas: tuple[Replica, Replica], tenant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The patch index listing hangs (storage slow): it runs with the daemon's lock free, the event is re-evaluated and
    its alert handed over while the listing still hangs, the next event does not wait for it again, and the late sync
    is replayed afterwards."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared()
    store = b.shared.store
    real = store.patches_since
    listing = threading.Event()
    release = threading.Event()
    seen: list[str] = []
    lock_free: list[bool] = []

    def hang(since: datetime) -> Any:
        lock_free.append(_lock_free(b.daemon._lock))
        seen.append("listing")
        listing.set()
        release.wait(20)
        seen.append("listed")
        return real(since)

    monkeypatch.setattr(store, "patches_since", hang)
    b.daemon.sync_wait = 0.05   # the product waits longer; how long is not what this proves
    b.daemon.dispatch = lambda urgent: seen.append("alerts")
    b.daemon.accept(_event(_flip_endpoint(tenant)), "application/json")
    report = b.daemon.process_pending()
    assert any(t.kind == "opened" for t in report.transitions)
    assert seen == ["listing", "alerts"] and lock_free == [True]
    assert b.daemon.metrics.patches.labels("sync_late")._value.get() == 1
    b.daemon.accept(_event(_flip_endpoint(tenant)), "application/json")   # still hanging: not waited for again
    assert any(t.kind == "opened" for t in b.daemon.process_pending().transitions)
    assert seen == ["listing", "alerts", "alerts"]
    assert b.daemon.metrics.patches.labels("sync_late")._value.get() == 1
    release.set()
    fetching = b.daemon._fetching
    assert fetching is not None and fetching.done.wait(30) and fetching.error is None
    monkeypatch.setattr(store, "patches_since", real)
    b.daemon.accept(_event(_flip_endpoint(tenant)), "application/json")
    b.daemon.process_pending()   # finds the late listing finished: replays it (nothing newer than its own read)
    assert b.daemon._fetching is None and b.daemon.metrics.patches.labels("sync_failed")._value.get() == 0


def test_a_patch_read_after_the_holder_s_collection_read_its_resource_is_judged_before_apply_scan(
        replicas: tuple[Replica, Replica], tenant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B re-reads an endpoint after A's collection read it and opens a finding before A's apply_scan: A replays B's
    patch on its collection first, so it neither resolves the finding nor opens it again (one `opened`, nothing
    else), and judges what B read."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared()
    opened: list[Any] = []
    real_publish = a.daemon._publish_collection

    def publish(*args: Any, **kwargs: Any) -> Any:   # A's collection has read everything: B's event comes now
        b.daemon.accept(_event(_flip_endpoint(tenant)), "application/json")
        opened.extend(t for t in b.daemon.process_pending().transitions if t.kind == "opened")
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(a.daemon, "_publish_collection", publish)
    a.daemon.full_collection()
    assert opened
    for t in opened:
        kinds = [r.kind for r in a.daemon.store.outbox()
                 if (r.check_id, r.resource_key) == (t.check_id, t.resource_key)]
        assert kinds == ["opened"], kinds
    assert _view(a.daemon) == _view(b.daemon)
    a.daemon.sync_shared()
    assert a.shared.patches_applied == 1   # replayed once, before apply_scan; the sync after finds it done


def test_a_read_time_far_ahead_of_the_store_s_clock_is_bounded_to_when_its_row_was_written(
        replicas: tuple[Replica, Replica], tenant: Path) -> None:
    """A writer whose clock is an hour ahead: its index row counts as read when the store wrote it, so a replica
    replaying it (counted as skewed) still takes a later event on that resource, and a later true read replaces it."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared() and b.daemon.inventory is not None and a.shared.current is not None
    endpoint_id = _flip_endpoint(tenant)
    key = parse_id(endpoint_id).key
    tap = RecordingTap(RecordedTenant(tenant))
    reread_into(tap, b.daemon.inventory, [parse_id(endpoint_id)])
    hour_ahead = int(datetime.now(UTC).timestamp() * 1000) + 3_600_000
    a.shared.write_patch(Patch((endpoint_id,), hour_ahead, "skewed", a.shared.current.collection,
                               tuple(tap.take())), {key: endpoint_id})
    row = a.shared.store.patch(key)
    assert row is not None and row.skewed and row.read_at_ms < hour_ahead - 3_000_000

    b.daemon.sync_shared()
    assert b.shared.patches_applied == 1
    assert b.daemon.metrics.patches.labels("skewed")._value.get() == 1
    b.daemon.accept(_event(endpoint_id), "application/json")    # an event after it is not taken for stale
    report = b.daemon.process_pending()
    assert report.stale == 0 and report.rereads == 1
    row = a.shared.store.patch(key)
    assert row is not None and row.instance == "b" and not row.skewed   # B's later read won the index


def test_a_late_patch_moves_the_replica_s_state_but_never_the_store(
        replicas: tuple[Replica, Replica], tenant: Path, tmp_path: Path) -> None:
    """B replays A's break of an endpoint after A already mended it (the mend's patch not yet published): B's view
    moves, but no finding re-opens: the writer applied each read's lifecycle, so one opened and one resolved alert."""
    a, b = replicas
    a.daemon.full_collection()
    assert b.daemon.load_shared()
    healthy = tmp_path / "healthy"
    shutil.copytree(tenant, healthy)
    endpoint_id = _flip_endpoint(tenant)
    a.daemon.accept(_event(endpoint_id), "application/json")
    opened = [t for t in a.daemon.process_pending().transitions if t.kind == "opened"]
    assert opened and a.shared.patches_written == 1
    shutil.rmtree(tenant)
    shutil.copytree(healthy, tenant)   # mended on disk; A re-reads it, but its patch is not out yet
    shared, a.daemon.shared = a.daemon.shared, None
    a.daemon.accept(_event(endpoint_id), "application/json")
    assert any(t.kind == "resolved" for t in a.daemon.process_pending().transitions)
    a.daemon.shared = shared

    assert b.daemon.sync_shared() == 0 and b.shared.patches_applied == 1   # the break, late: replayed, not judged
    for t in opened:
        kinds = [r.kind for r in a.daemon.store.outbox()
                 if (r.check_id, r.resource_key) == (t.check_id, t.resource_key)]
        assert kinds.count("opened") == 1 and kinds.count("resolved") == 1
