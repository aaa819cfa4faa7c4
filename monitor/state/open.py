"""Open the state store and the intake queue that a ``state.url`` names.

The one place that knows every backend: ``store`` and ``intake`` hold only the protocols and records, the
backends import those, and this module imports the backends (no import runs back up).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from plmon.monitor.errors import InputError
from plmon.monitor.state.intake import IntakeQueue, SqliteIntake
from plmon.monitor.state.store import StateStore


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


def intake_for_store_url(url: str) -> SqliteIntake:
    """The intake queue beside the state store that ``state.url`` names (same file for SQLite)."""
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite":
        raise InputError(f"state.url: the daemon's intake queue needs a sqlite URL, not {scheme!r}")
    path = rest[1:] if rest.startswith("/") else rest
    return SqliteIntake(path or ":memory:")
