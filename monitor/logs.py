"""structlog set-up: JSON lines in production, key-value on a terminal, always on stderr.

Configured once by the entry point. A processor drops any value whose key looks like a secret, so a
token or webhook secret can never reach a log line even if a caller passes one by mistake.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

__all__ = ["configure_logging"]

_SECRET_WORDS = ("secret", "token", "password", "authorization", "signature", "webhook_url", "sas")


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if any(w in key.lower() for w in _SECRET_WORDS):
            event[key] = "[redacted]"
    return event


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    level_name = (level or os.environ.get("PLMON_LOG_LEVEL") or "warning").upper()
    fmt = fmt or os.environ.get("PLMON_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.WARNING)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
