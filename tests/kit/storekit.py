"""The state store backends every store test runs against: a new backend adds one entry to BACKENDS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from plmon.monitor.state.open import open_store
from plmon.monitor.state.store import StateStore


def _sqlite_file(tmp: Path) -> StateStore:
    return open_store(f"sqlite:///{tmp / 'state.db'}")


def _sqlite_memory(_: Path) -> StateStore:
    return open_store("sqlite:///:memory:")


def _azure_tables(_: Path) -> StateStore:
    import azurite  # tests/kit/azurite.py: Azurite on loopback, started once per session

    return open_store(f"azuretables:///{azurite.unique_prefix()}?connection_string_env=PLMON_TEST_AZURITE",
                      environ={"PLMON_TEST_AZURITE": azurite.connection_string()})


BACKENDS: dict[str, Callable[[Path], StateStore]] = {"sqlite-file": _sqlite_file, "sqlite-memory": _sqlite_memory,
                                                     "azure-tables": _azure_tables}
