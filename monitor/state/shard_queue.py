"""The shard queue in Azure Queue Storage: every replica and Function instance takes shards of a full collection.

Why a queue: a received message is invisible to everyone else for a visibility timeout, reappears by itself when
its taker dies (``dequeue_count`` then says how often it was taken), and only the latest pop receipt may extend or
delete it. So a shard has one taker at a time without any lock of ours, and a dead worker's shard is redone.

Bodies are JSON, base64-encoded as ``TextBase64EncodePolicy`` would: the Functions queue trigger decodes base64 by
default (``messageEncoding``). The encoding is done here rather than by a client policy, so any ``QueueClient``
(connection string or managed identity) speaks the same format. A message holds at most 64 KiB, so a shard's work
lives in its row (:mod:`plmon.monitor.state.collections_tables`), never in the message.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import orjson
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from plmon.monitor.state.azure_errors import error_code, storage_errors
from plmon.monitor.state.scaleout import AlreadyWritten, ScaleoutError, ShardMessage, StaleReceipt

__all__ = ["MAX_MESSAGE_BYTES", "StorageShardQueue"]

MAX_MESSAGE_BYTES = 64 * 1024
_STALE = {"PopReceiptMismatch", "MessageNotFound"}


def _seconds(t: timedelta) -> int:
    return max(0, int(t.total_seconds()))


class StorageShardQueue:
    """:class:`plmon.monitor.state.scaleout.ShardQueue` on one Storage queue."""

    def __init__(self, client: QueueClient) -> None:
        """Creates nothing: the queue is created on first use, so a deployment whose identity has no queue access
        (nothing sends shards yet: fan-out does not use them) is not refused at start."""
        self._client = client
        self._what = f"shard queue {client.queue_name}"
        self._created = False

    def _ensure(self) -> None:
        """Create the queue if missing, once per process (a concurrent creator is fine)."""
        if self._created:
            return
        with contextlib.suppress(AlreadyWritten), storage_errors(self._what):
            self._client.create_queue()
        self._created = True

    @staticmethod
    def encode(body: Mapping[str, Any]) -> str:
        return base64.b64encode(orjson.dumps(dict(body))).decode("ascii")

    @staticmethod
    def decode(content: str) -> dict[str, Any]:
        try:
            body = orjson.loads(base64.b64decode(content, validate=True))
        except (ValueError, orjson.JSONDecodeError) as err:
            raise ScaleoutError(f"shard message: not base64 JSON ({type(err).__name__})") from None
        if not isinstance(body, dict):
            raise ScaleoutError("shard message: not a JSON object")
        return body

    def _message(self, m: QueueMessage) -> ShardMessage:
        return ShardMessage(id=str(m.id), body=self.decode(str(m.content)), pop_receipt=str(m.pop_receipt),
                            dequeue_count=int(m.dequeue_count or 0), next_visible_on=m.next_visible_on)

    def send(self, body: Mapping[str, Any], *, delay: timedelta | None = None) -> str:
        content = self.encode(body)
        if len(content) > MAX_MESSAGE_BYTES:
            raise ValueError(f"shard message of {len(content)} bytes: a queue message holds at most 64 KiB "
                             "(keep the work in the shard row)")
        self._ensure()
        with storage_errors(self._what):
            sent = self._client.send_message(content, visibility_timeout=_seconds(delay) if delay else None)
        return str(sent.id)

    def receive(self, visibility: timedelta, max_messages: int = 1) -> list[ShardMessage]:
        self._ensure()
        with storage_errors(self._what):
            pages = self._client.receive_messages(messages_per_page=max_messages, max_messages=max_messages,
                                                  visibility_timeout=max(1, _seconds(visibility)))
            got = [m for _, m in zip(range(max_messages), pages, strict=False)]
        return [self._message(m) for m in got]

    @contextlib.contextmanager
    def _receipt(self, message: ShardMessage, action: str) -> Iterator[None]:
        """A refused pop receipt is :class:`StaleReceipt`; anything else maps as every storage call does."""
        try:
            yield
        except HttpResponseError as err:
            if isinstance(err, ResourceNotFoundError) or (err.status_code in (400, 404)
                                                          and error_code(err) in _STALE):
                raise StaleReceipt(f"{self._what}: cannot {action} message {message.id}: its pop receipt is stale "
                                   "(received again, updated or deleted)") from None
            with storage_errors(self._what):
                raise
        except AzureError:
            with storage_errors(self._what):
                raise

    def extend(self, message: ShardMessage, visibility: timedelta) -> ShardMessage:
        with self._receipt(message, "extend"):
            updated = self._client.update_message(message.id, pop_receipt=message.pop_receipt,
                                                  visibility_timeout=_seconds(visibility))
        return ShardMessage(id=message.id, body=message.body, pop_receipt=str(updated.pop_receipt),
                            dequeue_count=message.dequeue_count, next_visible_on=updated.next_visible_on)

    def release(self, message: ShardMessage) -> ShardMessage:
        """Make it visible again at once (a worker giving a shard back); the next taker sees the dequeue count."""
        return self.extend(message, timedelta(0))

    def delete(self, message: ShardMessage) -> None:
        with self._receipt(message, "delete"):
            self._client.delete_message(message.id, message.pop_receipt)

    def approximate_count(self) -> int:
        self._ensure()
        with storage_errors(self._what):
            return int(self._client.get_queue_properties().approximate_message_count or 0)

    def clear(self) -> None:
        """Drop every message (tests, and a store being uninstalled)."""
        self._ensure()
        with storage_errors(self._what):
            self._client.clear_messages()

    def close(self) -> None:
        self._client.close()
