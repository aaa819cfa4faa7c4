"""The shared inventory's blobs on Azurite: write-once segments and manifests, a pointer moved only by
compare-and-swap (one winner), and loaders that always get one collection whole while publishes race them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azurite
import orjson
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from plmon.monitor.state.inventory_blob import POINTER_BLOB, BlobInventoryStore
from plmon.monitor.state.scaleout import (
    AlreadyWritten,
    CasConflict,
    FailedShard,
    Manifest,
    NotFound,
    UnsupportedFormat,
    container_name,
)

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


def open_inventory(prefix: str) -> BlobInventoryStore:
    conn = azurite.connection_string()
    blobs = BlobServiceClient.from_connection_string(conn).get_container_client(container_name(prefix))
    patches = TableServiceClient.from_connection_string(conn).create_table_if_not_exists(f"{prefix}patches")
    return BlobInventoryStore(blobs, patches)


@pytest.fixture
def inventory() -> Iterator[BlobInventoryStore]:
    prefix = azurite.unique_prefix()
    store = open_inventory(prefix)
    yield store
    conn = azurite.connection_string()
    BlobServiceClient.from_connection_string(conn).delete_container(container_name(prefix))
    TableServiceClient.from_connection_string(conn).delete_table(f"{prefix}patches")
    store.close()


def write_collection(store: BlobInventoryStore, cid: str, segments: int = 3) -> str:
    """Segments whose bytes name their collection, then the manifest that lists them; the manifest's ETag."""
    refs = tuple(store.put_segment(cid, f"s1-{i}-a1.z", f"{cid}:{i}".encode() * 100, shard=f"s1-{i}", reads=i)
                 for i in range(segments))
    return store.put_manifest(Manifest(collection=cid, started_at=T0, finished_at=T0 + timedelta(minutes=1),
                                       manifest={"tenant_id": "t"}, subscriptions=("s1",), scoped=False,
                                       segments=refs, failed=(FailedShard("s1-9", ("/subscriptions/9",),
                                                                          "ShardExpired", "no answer"),)))


def load(store: BlobInventoryStore) -> tuple[str, list[bytes]]:
    """pointer -> manifest -> exactly its segments; a collection deleted meanwhile starts again from the pointer."""
    while True:
        pointer = store.pointer()
        assert pointer is not None
        try:
            manifest = store.get_manifest(pointer.collection)
            return manifest.collection, [store.get_segment(manifest.collection, s.name) for s in manifest.segments]
        except NotFound:
            continue


def test_segments_and_manifests_are_written_once(inventory: BlobInventoryStore) -> None:
    """A second write of a segment or manifest is refused; both read back as written, failed shards included."""
    etag = write_collection(inventory, "c-20261202T0100Z")
    with pytest.raises(AlreadyWritten, match=r"segments/s1-0-a1\.z: exists already"):
        inventory.put_segment("c-20261202T0100Z", "s1-0-a1.z", b"other")
    with pytest.raises(AlreadyWritten, match=r"manifest\.json"):
        write_collection(inventory, "c-20261202T0100Z", segments=0)
    m = inventory.get_manifest("c-20261202T0100Z")
    assert [(s.shard, s.reads, s.bytes) for s in m.segments] == [("s1-0", 0, 1800), ("s1-1", 1, 1800),
                                                                  ("s1-2", 2, 1800)]
    assert m.failed[0].code == "ShardExpired" and m.started_at == T0 and etag
    assert inventory.get_segment("c-20261202T0100Z", "s1-2-a1.z") == b"c-20261202T0100Z:2" * 100
    with pytest.raises(NotFound, match=r"missing\.z: not found"):
        inventory.get_segment("c-20261202T0100Z", "missing.z")
    assert inventory.collections() == ["c-20261202T0100Z"] and inventory.ping()
    assert inventory.delete_collection("c-20261202T0100Z") == 4 and inventory.collections() == []


def test_of_two_pointer_swaps_from_one_etag_exactly_one_wins(inventory: BlobInventoryStore) -> None:
    """The first publish creates the pointer once; two publishers from the same pointer: one wins, one conflicts."""
    assert inventory.pointer() is None
    first = inventory.publish("c1", write_collection(inventory, "c1"), T0, expected=None)
    with pytest.raises(CasConflict, match="another publisher"):
        inventory.publish("c1", "x", T0, expected=None)
    seen = inventory.pointer()
    assert seen is not None and seen.etag == first.etag and seen.collection == "c1"
    results: list[str] = []
    start = threading.Barrier(2)

    def publish(cid: str) -> None:
        start.wait()
        try:
            inventory.publish(cid, "etag", T0, expected=seen)
            results.append(cid)
        except CasConflict:
            results.append("conflict")

    threads = [threading.Thread(target=publish, args=(cid,)) for cid in ("c2", "c3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) in (["c2", "conflict"], ["c3", "conflict"])
    now = inventory.pointer()
    assert now is not None and now.collection == next(r for r in results if r != "conflict")


def test_a_loader_racing_publishes_gets_one_collection_whole(inventory: BlobInventoryStore) -> None:
    """While collections are published one after another (and the one before the previous deleted, as retention
    does), every load returns exactly one collection's segments, never a mix."""
    pointer = inventory.publish("c-00", write_collection(inventory, "c-00"), T0, expected=None)
    done = threading.Event()
    loads: list[tuple[str, list[bytes]]] = []

    def loader() -> None:
        while not done.is_set():
            loads.append(load(inventory))

    thread = threading.Thread(target=loader)
    thread.start()
    try:
        for i in range(1, 8):
            cid = f"c-{i:02d}"
            pointer = inventory.publish(cid, write_collection(inventory, cid), T0, expected=pointer)
            if i >= 2:
                inventory.delete_collection(f"c-{i - 2:02d}")
    finally:
        done.set()
        thread.join()
    assert loads
    for cid, segments in loads:
        assert segments == [f"{cid}:{i}".encode() * 100 for i in range(3)]
    assert load(inventory)[0] == "c-07"


def test_an_unknown_format_is_refused_in_one_line(inventory: BlobInventoryStore) -> None:
    """A pointer of a newer major version is not guessed at: the reader keeps its collection and says why."""
    container = BlobServiceClient.from_connection_string(azurite.connection_string()).get_container_client(
        inventory.container_name)
    container.upload_blob(POINTER_BLOB, orjson.dumps({"v": 2, "collection": "c"}))
    with pytest.raises(UnsupportedFormat, match="format 2 unsupported"):
        inventory.pointer()
