"""plmon's version is written in plmon.monitor (so start-up need not read package metadata) and must not drift."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from plmon.monitor import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_pyprojects_and_the_installed_distributions() -> None:
    """The written version equals pyproject.toml's and the installed distribution's, so neither can drift."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert __version__ == project["version"] == version("plmon")
