"""structlog set-up: JSON lines in production, key-value on a terminal, always on stderr.

Configured once by the entry point (through :mod:`plmon.monitor.wiring`, which reads ``PLMON_LOG_LEVEL`` and
``PLMON_LOG_FORMAT``). A processor drops any value whose key looks like a secret, so a token or webhook
secret can never reach a log line even if a caller passes one by mistake.

Libraries that log through the standard library are brought into line: uvicorn's lines (what a client
sent that it could not parse, an exception while answering) become the same one-line records with the
exception's type and message as ``error`` and never a traceback, since anyone who can reach the port could
otherwise flood the log with forty lines per request; azure-identity's per-credential diagnostics stay at
debug, because plmon says in one line that no token could be had.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

__all__ = ["configure_logging", "stdlib_handler"]

_SECRET_WORDS = ("secret", "token", "password", "authorization", "signature", "webhook_url", "sas")
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_HANDLER_NAME = "plmon"


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(w in key.lower() for w in _SECRET_WORDS):
            event[key] = "[redacted]"
    return event


def _reason_not_traceback(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A library record's exception as one line (type and first line of the message), never its traceback."""
    exc_info = event.pop("exc_info", None)
    event.pop("stack_info", None)
    if isinstance(event.get("event"), str):
        event["event"] = event["event"].strip()
    if isinstance(exc_info, tuple) and exc_info[1] is not None:
        err = exc_info[1]
        text = str(err).splitlines()[0] if str(err) else ""
        event["error"] = f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__
    return event


def _renderer(fmt: str) -> Any:
    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)


def stdlib_handler(fmt: str) -> logging.Handler:
    """A stdlib handler that writes library records to stderr as plmon's own lines, without tracebacks."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), _redact, _reason_not_traceback],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _reason_not_traceback,
                    _renderer(fmt)]))
    return handler


def _bring_libraries_in_line(level: int, fmt: str) -> None:
    for name in _SERVER_LOGGERS:
        lib = logging.getLogger(name)
        lib.handlers = [h for h in lib.handlers if h.get_name() != _HANDLER_NAME]
        if name == "uvicorn":
            lib.addHandler(stdlib_handler(fmt))
            lib.setLevel(level)
        lib.propagate = name != "uvicorn"  # children reach the handler on "uvicorn", and stop there
    logging.getLogger("azure.identity").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)


def configure_logging(level: str | None = None, fmt: str | None = None, *,
                      sink: Literal["stderr", "logging"] = "stderr") -> None:
    """``sink="logging"`` passes each rendered line to the standard library (the Azure Functions host
    collects that), ``"stderr"`` prints it."""
    level_name = (level or "warning").upper()
    level_no = getattr(logging, level_name, logging.WARNING)
    fmt = fmt or ("console" if sys.stderr.isatty() else "json")
    factory: Any = (structlog.stdlib.LoggerFactory() if sink == "logging"
                    else structlog.PrintLoggerFactory(file=sys.stderr))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    _bring_libraries_in_line(level_no, fmt)
