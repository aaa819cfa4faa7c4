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

import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import MutableMapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TextIO, cast

if TYPE_CHECKING:
    from importlib.abc import Loader

__all__ = ["configure_logging", "get_logger", "stdlib_handler"]

_SECRET_WORDS = ("secret", "token", "password", "authorization", "signature", "webhook_url", "sas")
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_HANDLER_NAME = "plmon"


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(w in key.lower() for w in _SECRET_WORDS):
            event[key] = "[redacted]"
    return event


_CALLSITE = ("filename", "pathname", "lineno", "func_name", "funcName", "module", "thread_name", "process_name")


def _no_callsite(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A line says what happened, not where in plmon's source it was written: a file and line column (a callsite
    adder, a library passing its record's attributes) changes with every refactor and hides the reason."""
    for key in _CALLSITE:
        event.pop(key, None)
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
    import structlog

    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)


def stdlib_handler(fmt: str) -> logging.Handler:
    """A stdlib handler that writes library records to stderr as plmon's own lines, without tracebacks."""
    import structlog

    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True), _redact, _no_callsite,
                           _reason_not_traceback],
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
    collects that), ``"stderr"`` prints it.

    When structlog is not imported yet, it stays so until something logs at or above ``level`` (a
    :func:`get_logger` logger) or imports it: importing structlog (asyncio, rich) was ~0.1 s of every
    ``plmon scan``'s start-up, which logs nothing at the default level. The configuration is applied as
    structlog's import completes, so no line is ever written unconfigured."""
    global _pending, _threshold
    level_name = (level or "warning").upper()
    level_no = getattr(logging, level_name, logging.WARNING)
    fmt = fmt or ("console" if sys.stderr.isatty() else "json")
    _threshold = level_no
    if "structlog" in sys.modules:
        _pending = None
        _apply(level_no, fmt, sink)
        return
    _pending = (level_no, fmt, sink)
    logging.getLogger("azure.identity").setLevel(logging.DEBUG if level_no <= logging.DEBUG else logging.CRITICAL)
    if not any(isinstance(f, _ConfigureOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureOnImport())


def _apply(level_no: int, fmt: str, sink: Literal["stderr", "logging"]) -> None:
    import structlog

    factory: Any = (structlog.stdlib.LoggerFactory() if sink == "logging"
                    else structlog.PrintLoggerFactory(file=cast("TextIO", _CurrentStderr())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            _no_callsite,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    _bring_libraries_in_line(level_no, fmt)


class _CurrentStderr:
    """``sys.stderr`` as it is at each write, not as it was when logging was configured: while a scan's progress
    display is live, rich swaps in a proxy that prints each line above the bars, and a logger holding the real stderr
    would write into the middle of them (and leave torn bars behind)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


# A configuration waiting for structlog's import (level, format, sink), and the level configured: a get_logger
# logger drops a call below it without importing structlog.
_pending: tuple[int, str, Literal["stderr", "logging"]] | None = None
_threshold = logging.NOTSET


def _apply_pending() -> None:
    global _pending
    if _pending is not None:
        pending, _pending = _pending, None
        _apply(*pending)


class _ConfigureOnImport:
    """Applies a deferred configuration the moment structlog's import completes, whoever imports it.

    A finder on ``sys.meta_path`` (not an ``importlib.abc.MetaPathFinder``: that module imports
    ``importlib.resources``, ~7 ms of start-up) that hands structlog's spec a loader configuring after it runs.
    The modules that import structlog themselves (the daemon's, the alert channels') log through
    ``structlog.get_logger``, which reads the configuration at their first line: it is in place by then."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "structlog":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            _apply_pending()   # an import we cannot follow: configure now (structlog is about to be imported)
            return spec
        spec.loader = cast("Loader", _ThenConfigure(spec.loader))   # a loader by its methods (no importlib.abc)
        return spec


class _ThenConfigure:
    """Whatever loader structlog comes with (a source file, a zip, a frozen bundle), applying the waiting
    configuration once the module has run: a loader that this does not wrap would let a line be written with
    structlog's defaults."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        made: ModuleType | None = self._inner.create_module(spec) if hasattr(self._inner, "create_module") else None
        return made

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _apply_pending()

    def __getattr__(self, name: str) -> Any:   # get_resource_reader, is_package, ...: the inner loader's
        return getattr(self._inner, name)


class _LazyLogger:
    """``structlog.get_logger(name)``, imported and configured at the first call at or above the configured level.

    Before :func:`configure_logging` (or once structlog is imported) every call goes to structlog, as it did."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        if _pending is not None and _LEVELS.get(method, logging.CRITICAL) < _threshold:
            return _drop
        import structlog

        _apply_pending()
        return getattr(structlog.get_logger(self._name), method)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "msg": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL, "fatal": logging.CRITICAL}


def _drop(*_: Any, **__: Any) -> None:
    return None


def get_logger(name: str) -> Any:
    """A logger for ``name`` that imports structlog only when it writes a line (see :func:`configure_logging`)."""
    return _LazyLogger(name)
