"""The patch index on Azurite: the newest read of a resource wins whatever order writes arrive in, and two
processes writing at once lose nothing (each resource ends at the maximum read either of them made)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azurite
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from plmon.monitor.state.inventory_blob import BlobInventoryStore
from plmon.monitor.state.scaleout import PatchRef, container_name

ENV = "PLMON_TEST_AZURITE"
KEY = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/privateendpoints/pe-1"
T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


@pytest.fixture
def prefix() -> Iterator[str]:
    p = azurite.unique_prefix()
    yield p
    conn = azurite.connection_string()
    BlobServiceClient.from_connection_string(conn).delete_container(container_name(p))
    TableServiceClient.from_connection_string(conn).delete_table(f"{p}patches")


def open_inventory(prefix: str) -> BlobInventoryStore:
    conn = azurite.connection_string()
    return BlobInventoryStore(
        BlobServiceClient.from_connection_string(conn).get_container_client(container_name(prefix)),
        TableServiceClient.from_connection_string(conn).create_table_if_not_exists(f"{prefix}patches"))


def ref(read_at_ms: int, instance: str, key: str = KEY) -> PatchRef:
    return PatchRef(resource_key=key, read_at_ms=read_at_ms, instance=instance, blob=f"patches/{read_at_ms}.z",
                    collection="c1")


def test_newest_read_wins_whatever_the_write_order(prefix: str) -> None:
    """An older read arriving late never replaces a newer one; an equal read time is decided by the instance; the
    sync query returns rows written since a time; blobs are written once."""
    store = open_inventory(prefix)
    assert store.patch(KEY) is None
    assert store.record_patch(ref(200, "a"), T0)
    assert not store.record_patch(ref(100, "b"), T0 + timedelta(seconds=1))  # older, arriving later
    assert store.patch(KEY) == PatchRef(KEY, 200, "a", "patches/200.z", "c1", T0)
    assert store.record_patch(ref(200, "b"), T0 + timedelta(seconds=2))  # same read time: instance decides
    assert not store.record_patch(ref(200, "a"), T0 + timedelta(seconds=3))
    store.record_patch(ref(50, "a", KEY + "-other"), T0 + timedelta(seconds=4))
    assert [r.resource_key for r in store.patches_since(T0 + timedelta(seconds=2))] == [KEY + "-other", KEY]
    blob = store.put_patch("ab/abcd-200-a.z", b"patch")
    assert store.get_patch(blob) == b"patch" and blob == "patches/ab/abcd-200-a.z"
    assert store.prune_patches(T0 + timedelta(seconds=3)) == 1 and store.patch(KEY) is None
    store.close()


def test_two_processes_writing_at_once_lose_no_update(prefix: str) -> None:
    """2 processes x 200 random (resource, read time) writes: each resource ends at the newest read of either."""
    open_inventory(prefix).close()  # container and table exist before the race
    worker = Path(__file__).parents[2] / "kit" / "patch_worker.py"
    start_at = time.time() + 1.5
    env = {**os.environ, ENV: azurite.connection_string()}
    procs = [subprocess.Popen([sys.executable, str(worker), "--conn-env", ENV, "--prefix", prefix, "--name", name,
                               "--seed", str(seed), "--writes", "200", "--start-at", str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
             for name, seed in (("a", 1), ("b", 2))]
    wrote: list[list[object]] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        wrote.extend(json.loads(out.strip().splitlines()[-1]))
    newest: dict[str, tuple[int, str]] = {}
    for key, read_at, instance, _ in wrote:
        newest[str(key)] = max(newest.get(str(key), (0, "")), (int(str(read_at)), str(instance)))
    store = open_inventory(prefix)
    final = {key: store.patch(key) for key in newest}
    assert {k: (r.read_at_ms, r.instance) for k, r in final.items() if r is not None} == newest
    assert len(wrote) == 400 and len(store.patches_since(T0)) == len(newest)
    store.close()
