"""plmon.monitor.logs: structlog is imported only when a line is written, and configured before any line is."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_a_call_below_the_level_does_not_import_structlog() -> None:
    """A get_logger logger drops a call below the configured level without importing structlog (nor printing)."""
    r = _run("import sys; from plmon.monitor.logs import configure_logging, get_logger; "
             "configure_logging('warning', 'json'); log = get_logger('x'); log.info('quiet'); log.debug('quiet'); "
             "print('structlog' in sys.modules)")
    assert r.stdout.strip() == "False" and r.stderr == ""


def test_a_lazy_logger_writes_configured_lines() -> None:
    """At or above the level, a get_logger logger imports structlog with the configuration applied (JSON, redacted)."""
    r = _run("from plmon.monitor.logs import configure_logging, get_logger; configure_logging('info', 'json'); "
             "get_logger('x').info('collection_done', requests=3, token='abc')")
    line = json.loads(r.stderr)
    assert line["event"] == "collection_done" and line["requests"] == 3 and line["token"] == "[redacted]"
    assert line["level"] == "info" and r.stdout == ""


def test_a_module_importing_structlog_itself_logs_configured() -> None:
    """A deferred configuration is applied as structlog's import completes, so a direct structlog logger is
    configured too (JSON on stderr at the configured level, not structlog's default console output on stdout)."""
    r = _run("from plmon.monitor.logs import configure_logging; configure_logging('warning', 'json'); "
             "import structlog; log = structlog.get_logger('y'); log.info('quiet'); "
             "log.warning('delivery_failed', webhook_url='https://x')")
    line = json.loads(r.stderr)
    assert line == {**line, "event": "delivery_failed", "level": "warning", "webhook_url": "[redacted]"}
    assert r.stdout == ""


def test_configured_after_structlog_is_imported_applies_at_once() -> None:
    """With structlog already imported, configure_logging configures it immediately, as it always did."""
    r = _run("import structlog; from plmon.monitor.logs import configure_logging; configure_logging('error', 'json'); "
             "structlog.get_logger().warning('quiet'); structlog.get_logger().error('loud')")
    assert json.loads(r.stderr)["event"] == "loud" and r.stdout == ""


def test_no_source_file_column_in_either_format() -> None:
    """Neither the key-value nor the JSON renderer writes a file, line or function column, for plmon's own lines
    (even one handed callsite keys) or for a library's stdlib record (uvicorn's)."""
    for fmt in ("console", "json"):
        r = _run("import logging; from plmon.monitor.logs import configure_logging, get_logger; "
                 f"configure_logging('info', '{fmt}'); "
                 "get_logger('x').info('collection_done', filename='plan.py', lineno=568, func_name='collect'); "
                 "logging.getLogger('uvicorn.error').warning('Invalid HTTP request received.')")
        lines = r.stderr.splitlines()
        assert len(lines) == 2 and "collection_done" in lines[0] and "Invalid HTTP request" in lines[1]
        for word in ("plan.py", "568", "filename", "lineno", "func_name", "logs.py", "pathname", ".py:"):
            assert word not in r.stderr, (fmt, word, r.stderr)


def test_lines_go_to_the_stderr_of_the_moment() -> None:
    """A line goes to whatever sys.stderr is when it is written (rich's proxy while progress bars are live), not to
    the stream that was stderr when logging was configured."""
    r = _run("import io, sys; from plmon.monitor.logs import configure_logging, get_logger; "
             "configure_logging('info', 'console'); real, sys.stderr = sys.stderr, io.StringIO(); "
             "get_logger('x').info('late_line'); got, sys.stderr = sys.stderr.getvalue(), real; print(got)")
    assert "late_line" in r.stdout and r.stderr == ""
