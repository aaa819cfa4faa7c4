"""The storage account a ``state.url`` names, as the clients the scale-out backends need (blob, queue, table).

Why here: ``open.py`` picks the backends but imports no SDK (the ``sdk-in-collectors`` contract), and the account
must be resolved the same way as :func:`plmon.monitor.state.tables.tables_store_from_url` resolves it:
``azuretables://<account>/<prefix>`` with one ``DefaultAzureCredential`` shared by the three services, or
``azuretables:///<prefix>`` with a connection string (Azurite's carries ``BlobEndpoint``, ``QueueEndpoint`` and
``TableEndpoint``; a real account's ``AccountName``/``AccountKey``/``EndpointSuffix`` derive them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from plmon.monitor.errors import InputError
from plmon.monitor.state.azure_errors import storage_errors

__all__ = ["StorageAccount", "first_refusal"]

# The blob and queue clients fail fast: the SDK's defaults (3 retries 15-45 s apart, a 60 s read timeout)
# held an event's patch sync or publish, and the lease's renewal, for a minute or more when storage was slow or down.
# Each caller logs a failure and tries again on its next round.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1,
                                  "connection_timeout": 5, "read_timeout": 15}
_FIRST_REFUSAL: ContextVar[bool] = ContextVar("plmon_storage_first_refusal", default=False)


@contextmanager
def first_refusal() -> Iterator[None]:
    """Clients made inside fail on the first refusal, with no SDK retry: a preflight (``plmon serve`` checking that
    the shared parts can be opened) wants one refused call for its one line, not the retries spaced seconds apart that
    a running daemon wants against a storage hiccup."""
    token = _FIRST_REFUSAL.set(True)
    try:
        yield
    finally:
        _FIRST_REFUSAL.reset(token)


def _options(base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "retry_total": 0} if _FIRST_REFUSAL.get() else base


@dataclass(frozen=True)
class StorageAccount:
    """Either an account name (managed identity) or a connection string; never logged (it may hold a key)."""

    account: str | None = None
    connection_string: str | None = None

    def __repr__(self) -> str:  # a connection string is a secret: never in a log line or a traceback
        return f"StorageAccount(account={self.account!r})"

    def _credential(self) -> TokenCredential:
        from azure.identity import DefaultAzureCredential

        cred = _CREDENTIALS.get(self.account or "")
        if cred is None:
            cred = _CREDENTIALS[self.account or ""] = DefaultAzureCredential()
        return cred

    def container(self, name: str) -> ContainerClient:
        try:
            if self.connection_string:
                return (BlobServiceClient.from_connection_string(self.connection_string, **_options(CLIENT_OPTIONS))
                        .get_container_client(name))
            return BlobServiceClient(f"https://{self.account}.blob.core.windows.net", credential=self._credential(),
                                     **_options(CLIENT_OPTIONS)).get_container_client(name)
        except ValueError:
            raise InputError("state.url: the storage connection string names no usable blob endpoint") from None

    def queue(self, name: str) -> QueueClient:
        try:
            if self.connection_string:
                return QueueClient.from_connection_string(self.connection_string, name, **_options(CLIENT_OPTIONS))
            return QueueClient(f"https://{self.account}.queue.core.windows.net", name, credential=self._credential(),
                               **_options(CLIENT_OPTIONS))
        except ValueError:
            raise InputError("state.url: the storage connection string names no usable queue endpoint") from None

    def tables(self) -> TableServiceClient:
        try:
            if self.connection_string:
                return TableServiceClient.from_connection_string(self.connection_string, **_options({}))
            return TableServiceClient(endpoint=f"https://{self.account}.table.core.windows.net",
                                      credential=self._credential(), **_options({}))
        except ValueError:
            raise InputError("state.url: the storage connection string names no usable table endpoint") from None

    def table(self, service: TableServiceClient, name: str) -> TableClient:
        """The table, created if missing."""
        with storage_errors(f"table {name}"):
            return service.create_table_if_not_exists(name)


_CREDENTIALS: dict[str, TokenCredential] = {}
