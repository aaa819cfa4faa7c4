"""Azurite (the Azure Storage emulator) for the tests: started once per test session on a free loopback port.

``make test`` installs Azurite 3.35.0 into ``.tools/azurite`` (3.36+ need a newer Node than this machine
has). A missing binary is a failure with the command that fixes it, never a skip: the Table Storage tests
are the only proof the shared store works. ``PLMON_AZURITE`` may name another ``azurite-table`` binary.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

__all__ = ["ACCOUNT", "KEY", "connection_string", "stop", "unique_prefix"]

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-table"
# The well-known development account every Azurite accepts (public, documented; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_lock = threading.Lock()
_proc: subprocess.Popen[bytes] | None = None
_conn: str | None = None
_workdir: tempfile.TemporaryDirectory[str] | None = None
_log: object | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def connection_string() -> str:
    """Start Azurite's Table service if it is not running yet; its connection string."""
    global _proc, _conn, _workdir, _log
    with _lock:
        if _conn is not None and _proc is not None and _proc.poll() is None:
            return _conn
        binary = Path(os.environ.get("PLMON_AZURITE", BINARY))
        if not binary.exists():
            raise RuntimeError(f"Azurite is not installed at {binary}: run `make azurite` (npm install --prefix "
                               ".tools/azurite azurite@3.35.0) or `make test`, which does it for you")
        _workdir = tempfile.TemporaryDirectory(prefix="plmon-azurite-")
        for _attempt in range(3):  # a free port can be taken between probe and bind: try another
            port = _free_port()
            _log = log = open(Path(_workdir.name) / "azurite.log", "wb")  # noqa: SIM115 - lives as long as Azurite
            _proc = subprocess.Popen(
                [str(binary), "--tableHost", "127.0.0.1", "--tablePort", str(port), "--disableTelemetry",
                 "--inMemoryPersistence", "--skipApiVersionCheck", "--silent"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=_workdir.name)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _proc.poll() is None and not _answers(port):
                time.sleep(0.05)
            if _proc.poll() is None and _answers(port):
                _conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                         f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};")
                atexit.register(stop)
                return _conn
            _stop_locked()
        text = (Path(_workdir.name) / "azurite.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Azurite did not start: {text}")


def _stop_locked() -> None:
    global _proc, _conn, _log
    if _proc is not None and _proc.poll() is None:
        _proc.terminate()
        try:
            _proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _proc.kill()
            _proc.wait()
    if _log is not None:
        _log.close()  # type: ignore[attr-defined]
    _proc, _conn, _log = None, None, None


def stop() -> None:
    """Stop the session's Azurite (pytest_sessionfinish; atexit as a fallback)."""
    global _workdir
    with _lock:
        _stop_locked()
        if _workdir is not None:
            _workdir.cleanup()
            _workdir = None


def unique_prefix() -> str:
    """A fresh table prefix: tests share one Azurite and must not see each other's rows."""
    return "t" + uuid.uuid4().hex[:12]
