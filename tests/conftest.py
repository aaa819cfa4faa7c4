"""Shared pytest fixtures: a fresh check registry view and recorded-tenant building."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests import tenantkit as a plain module
