"""Shared pytest fixtures: a fresh check registry view and recorded-tenant building."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests import tenantkit as a plain module


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Stop Azurite if a test started it (tests/kit/azurite.py starts it on first use)."""
    azurite = sys.modules.get("azurite")
    if azurite is not None:
        azurite.stop()
