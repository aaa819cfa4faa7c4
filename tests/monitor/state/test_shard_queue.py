"""The shard queue on Azurite: a received shard is invisible to others, its taker keeps it with a new pop receipt,
a given-back shard reappears with dequeue_count 2, a stale receipt is refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta

import azurite
import pytest
from azure.storage.queue import QueueClient

from plmon.monitor.state.scaleout import StaleReceipt, queue_name
from plmon.monitor.state.shard_queue import StorageShardQueue

MINUTE = timedelta(minutes=1)


@pytest.fixture
def queue() -> Iterator[StorageShardQueue]:
    client = QueueClient.from_connection_string(azurite.connection_string(), queue_name(azurite.unique_prefix()))
    q = StorageShardQueue(client)
    yield q
    client.delete_queue()
    q.close()


def test_a_shard_has_one_taker_at_a_time(queue: StorageShardQueue) -> None:
    """Invisible once received; extended with a new receipt (the old one refused); given back, it reappears with
    dequeue_count 2; deleted with the latest receipt only. Bodies are base64 JSON, as the Functions trigger reads."""
    body = {"v": 1, "type": "shard", "store": "p", "collection": "c-20261202T0100Z", "shard": "s1-a", "attempt": 1}
    queue.send(body)
    [m] = queue.receive(MINUTE)
    assert (m.body, m.dequeue_count) == (body, 1)
    assert queue.receive(MINUTE) == []  # another worker sees nothing while it is taken
    kept = queue.extend(m, 2 * MINUTE)
    assert kept.pop_receipt != m.pop_receipt and kept.next_visible_on is not None
    with pytest.raises(StaleReceipt, match="pop receipt is stale"):
        queue.delete(m)
    assert queue.receive(MINUTE) == []
    queue.release(kept)  # the taker gives up (as a dead taker's visibility would run out)
    [again] = queue.receive(MINUTE)
    assert again.id == m.id and again.dequeue_count == 2
    with pytest.raises(StaleReceipt):
        queue.extend(kept, MINUTE)
    queue.delete(again)
    assert queue.receive(timedelta(seconds=1)) == [] and queue.approximate_count() == 0


def test_messages_are_base64_json_and_bounded(queue: StorageShardQueue) -> None:
    """The wire form is what TextBase64EncodePolicy writes; a delayed message stays hidden; oversize is refused."""
    queue.send({"type": "deadline"}, delay=MINUTE)
    assert queue.receive(MINUTE) == [] and queue.approximate_count() == 1
    assert json.loads(base64.b64decode(StorageShardQueue.encode({"a": 1}))) == {"a": 1}
    with pytest.raises(ValueError, match="64 KiB"):
        queue.send({"work": "x" * 60_000})
