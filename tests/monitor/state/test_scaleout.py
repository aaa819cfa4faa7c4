"""open_scaleout on Azurite: a Table store's URL opens the four shared parts in the same account, named after its
prefix (or as configured), and they work together; SQLite has none; bad names and URLs fail in one line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import azurite
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from plmon.monitor.errors import InputError
from plmon.monitor.state.open import open_scaleout, open_store
from plmon.monitor.state.scaleout import CollectionRow, ScaleOut, ShardRow, StorageUnavailable
from plmon.monitor.state.tables import TablesStore

ENV = "PLMON_TEST_AZURITE"
T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


@pytest.fixture
def tables() -> Iterator[tuple[TablesStore, str]]:
    prefix = azurite.unique_prefix()
    url = f"azuretables:///{prefix}?connection_string_env={ENV}"
    store = open_store(url, {ENV: azurite.connection_string()})
    assert isinstance(store, TablesStore)
    yield store, url
    conn = azurite.connection_string()
    for name in (f"{prefix}-inventory", "custom-inventory"):
        if BlobServiceClient.from_connection_string(conn).get_container_client(name).exists():
            BlobServiceClient.from_connection_string(conn).delete_container(name)
    for q in QueueServiceClient.from_connection_string(conn).list_queues(name_starts_with=prefix):
        QueueServiceClient.from_connection_string(conn).delete_queue(q.name)
    service = TableServiceClient.from_connection_string(conn)
    for t in ("patches", "collections", "shards"):
        service.delete_table(f"{prefix}{t}")
    store.drop_tables()
    store.close()


def test_the_four_parts_open_beside_the_table_store(tables: tuple[TablesStore, str]) -> None:
    """Lease, inventory, queue and book share the account; names follow the prefix lower-cased."""
    store, url = tables
    parts = open_scaleout(store, url, {ENV: azurite.connection_string()}, instance="r0",
                          lease_duration=timedelta(seconds=15))
    assert isinstance(parts, ScaleOut)
    assert (parts.container, parts.queue) == (f"{store.prefix}-inventory", f"{store.prefix}-shards")
    assert parts.lease.try_acquire() and parts.lease.state().holder == "r0"
    seg = parts.inventory.put_segment("c1", "s0-a1.z", b"x", shard="s0", reads=1)
    parts.book.create_collection(CollectionRow("c1", "stage1", 1, T0, "r0", 1, T0 + timedelta(minutes=20)))
    parts.book.add_shards([ShardRow("c1", "s0", 0, "tenant", segment=seg.name)])
    parts.shards.send({"type": "shard", "collection": "c1", "shard": "s0"})
    [m] = parts.shards.receive(timedelta(seconds=30))
    assert m.body["shard"] == "s0" and parts.book.shards("c1")[0].segment == "s0-a1.z"
    assert parts.inventory.ping()
    parts.close()
    assert not parts.lease.held


def test_names_can_be_configured_and_sqlite_has_no_scaleout(tables: tuple[TablesStore, str]) -> None:
    """Configured names are used as given and checked in one line; a SQLite store is one process: None."""
    store, url = tables
    env = {ENV: azurite.connection_string()}
    parts = open_scaleout(store, url, env, instance="r1", container="custom-inventory", queue=f"{store.prefix}-q2")
    assert parts is not None and (parts.container, parts.queue) == ("custom-inventory", f"{store.prefix}-q2")
    parts.close()
    with pytest.raises(InputError, match="inventory container name 'Bad_Name' must be"):
        open_scaleout(store, url, env, instance="r1", container="Bad_Name")
    with pytest.raises(InputError, match="needs a connection string in \\$PLMON_TEST_AZURITE"):
        open_scaleout(store, url, {}, instance="r1")
    assert open_scaleout(open_store("sqlite:///:memory:"), "sqlite:///:memory:", instance="r1") is None


def test_a_storage_that_does_not_answer_is_one_clear_error(tables: tuple[TablesStore, str]) -> None:
    """A connection string pointing at nothing fails with plmon's own error naming the object, not an SDK trace."""
    store, url = tables
    dead = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + azurite.KEY +
            ";BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
            "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    with pytest.raises(StorageUnavailable, match="did not answer") as err:
        open_scaleout(store, url, {ENV: dead}, instance="r2")
    assert "\n" not in str(err.value) and azurite.KEY not in str(err.value)
