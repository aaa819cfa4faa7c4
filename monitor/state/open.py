"""Open the state store and the intake queue that a ``state.url`` names.

The one place that knows every backend: ``store`` and ``intake`` hold only the protocols and records, the
backends import those, and this module imports the backends (no import runs back up).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from plmon.monitor.errors import InputError
from plmon.monitor.state.intake import IntakeQueue, SqliteIntake
from plmon.monitor.state.scaleout import ScaleOut, container_name, queue_name
from plmon.monitor.state.store import StateStore

# Blob containers and queues: 3-63 lower-case letters, digits and single hyphens, starting with a letter or digit.
_STORAGE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


def open_store(url: str, environ: Mapping[str, str] | None = None, *, create: bool = True) -> StateStore:
    """The store a URL names: ``sqlite:///relative.db``, ``sqlite:////abs.db``, ``sqlite:///:memory:``,
    ``azuretables://<account>/<prefix>`` or ``azuretables:///<prefix>`` with a connection string in the
    environment (``environ``, as :mod:`plmon.monitor.wiring` read it; see :mod:`plmon.monitor.state.tables`).

    ``create=False`` is for commands that only read state (``plmon findings``, ``alerts``, ``events``):
    a SQLite file that does not exist is an InputError instead of a new empty store left in the folder."""
    from plmon.monitor.errors import InputError

    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InputError(f"state.url: {url!r} is not a URL (expected e.g. sqlite:///plmon-state.db)")
    if scheme == "sqlite":
        from plmon.monitor.state.sqlite import SqliteStore

        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise InputError("state.url: sqlite URL without a path (expected sqlite:///plmon-state.db)")
        if not create and path != ":memory:" and not Path(path).exists():
            raise InputError(f"no state store at {path} (state.url {url}); run `plmon scan --notify` or "
                             f"`plmon serve` first, or name the store with --config")
        return SqliteStore(path)
    if scheme == "azuretables":
        from plmon.monitor.state.tables import tables_store_from_url

        return tables_store_from_url(url, environ)
    raise InputError(f"state.url: unsupported scheme {scheme!r} (supported: sqlite, azuretables)")


def intake_beside(store: StateStore, url: str) -> IntakeQueue:
    """The intake queue that lives beside ``store``: its Azure tables, or the same SQLite file.

    One place decides it, so ``plmon serve``, ``plmon events`` and the Azure Function agree."""
    from plmon.monitor.state.sqlite import SqliteStore
    from plmon.monitor.state.tables import TablesStore

    if isinstance(store, TablesStore):
        from plmon.monitor.state.intake_tables import TablesIntake

        return TablesIntake(store.service, store.prefix)
    if isinstance(store, SqliteStore) and store.path != ":memory:":
        return SqliteIntake(store.path)  # the store's own file, wherever its URL was resolved
    return intake_for_store_url(url)


def open_scaleout(store: StateStore, url: str, environ: Mapping[str, str] | None = None, *, instance: str,
                  lease_duration: timedelta = timedelta(seconds=30), container: str | None = None,
                  queue: str | None = None) -> ScaleOut | None:
    """The shared inventory, schedule lease, shard queue and collection book beside ``store``; None for SQLite
    (one process: nothing to share, today's behaviour).

    They live in the same storage account as the Table store (``state.url``'s account or connection string), named
    after its prefix unless ``container`` / ``queue`` say otherwise (``wiring.py`` reads those from
    ``PLMON_INVENTORY_CONTAINER`` / ``PLMON_SHARD_QUEUE``). ``instance`` names this replica as the lease holder.
    A storage service that does not answer raises :class:`~plmon.monitor.state.scaleout.StorageUnavailable`."""
    from plmon.monitor.state.tables import CONNECTION_STRING_ENV, TablesStore

    if not isinstance(store, TablesStore):
        return None
    container = container or container_name(store.prefix)
    queue = queue or queue_name(store.prefix)
    for what, name in (("inventory container", container), ("shard queue", queue)):
        if not _STORAGE_NAME.match(name):
            raise InputError(f"scale: {what} name {name!r} must be 3-63 lower-case letters, digits and single "
                             "hyphens, starting and ending with a letter or digit")
    from plmon.monitor.state.collections_tables import TablesCollectionBook
    from plmon.monitor.state.inventory_blob import BlobInventoryStore
    from plmon.monitor.state.lease_blob import BlobScheduleLease
    from plmon.monitor.state.shard_queue import StorageShardQueue
    from plmon.monitor.state.storage_account import StorageAccount

    parts = urlsplit(url)
    if parts.netloc:
        account = StorageAccount(account=parts.netloc)
    else:
        var = parse_qs(parts.query).get("connection_string_env", [CONNECTION_STRING_ENV])[0]
        conn = (environ or {}).get(var, "")
        if not conn:
            raise InputError(f"state.url: azuretables without an account needs a connection string in ${var}")
        account = StorageAccount(connection_string=conn)
    tables = account.tables()
    inventory = BlobInventoryStore(account.container(container),
                                   account.table(tables, f"{store.prefix}patches"))
    return ScaleOut(inventory=inventory,
                    lease=BlobScheduleLease(account.container(container), instance, duration=lease_duration),
                    shards=StorageShardQueue(account.queue(queue)), book=TablesCollectionBook(tables, store.prefix),
                    container=container, queue=queue, instance=instance)


def intake_for_store_url(url: str) -> SqliteIntake:
    """The intake queue beside the state store that ``state.url`` names (same file for SQLite)."""
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite":
        raise InputError(f"state.url: the daemon's intake queue needs a sqlite URL, not {scheme!r}")
    path = rest[1:] if rest.startswith("/") else rest
    return SqliteIntake(path or ":memory:")
