"""Errors that cross module boundaries and what the edges do with them."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Bad user input (folder, file, config, flag): one line on stderr and exit 2, or a 4xx."""
