"""Shared pytest fixtures: a fresh check registry view and recorded-tenant building."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

sys.path.insert(0, str(Path(__file__).parent / "kit"))  # tests import the helper kits (tenantkit, ...) as plain modules


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Stop Azurite if a test started it (tests/kit/azurite.py starts it on first use)."""
    azurite = sys.modules.get("azurite")
    if azurite is not None:
        azurite.stop()


@pytest.fixture(autouse=True)
def _structlog_isolated() -> Iterator[None]:
    """A test that runs the CLI configures structlog onto its captured stderr; the next test gets the config back.

    Without it a later test logs into a closed capture file, depending on the order tests happen to run in."""
    config = structlog.get_config()
    yield
    structlog.configure(**config)
