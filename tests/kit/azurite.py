"""Azurite (the Azure Storage emulator) for the tests: Blob, Queue and Table, started once per test session.

The launcher is :mod:`plmon.monitor.replay.azurite` (shared with the benchmark). ``make test`` installs Azurite
3.35.0 into ``.tools/azurite``. A missing binary is a failure with the command that fixes it, never a skip: these
tests are the only proof the shared store works. ``PLMON_AZURITE`` may name another ``azurite`` binary.
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from pathlib import Path

from plmon.monitor.replay.azurite import ACCOUNT, KEY, Azurite, start_azurite

__all__ = ["ACCOUNT", "KEY", "connection_string", "stop", "unique_prefix"]

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite"

_lock = threading.Lock()
_running: Azurite | None = None
_registered = False


def connection_string() -> str:
    """Start Azurite if it is not running yet; one connection string with the blob, queue and table endpoints."""
    global _running, _registered
    with _lock:
        if _running is not None and _running.alive():
            return _running.connection_string
        if _running is not None:
            _running.stop()
        _running = start_azurite(Path(os.environ.get("PLMON_AZURITE", BINARY)))
        if not _registered:
            atexit.register(stop)
            _registered = True
        return _running.connection_string


def stop() -> None:
    """Stop the session's Azurite (pytest_sessionfinish; atexit as a fallback)."""
    global _running
    with _lock:
        if _running is not None:
            _running.stop()
            _running = None


def unique_prefix() -> str:
    """A fresh name prefix: tests share one Azurite and must not see each other's tables, blobs or queues."""
    return "t" + uuid.uuid4().hex[:12]
