"""Azure Storage without Azure: one Azurite process serving Blob, Queue and Table on free loopback ports.

Why here and not in tests/: the tests (``tests/kit/azurite.py``) and the scale-out benchmark both need the same
emulator, and the benchmark must never import ``tests/``. Stdlib only: the launcher knows ports and a connection
string, never a storage SDK. Azurite is installed by ``make azurite`` (``npm install --prefix .tools/azurite
azurite@3.35.0``; 3.36+ need a newer Node than ours); :data:`DEFAULT_BINARY` is where that puts it.

Data lives in memory (``--inMemoryPersistence``), so a test session costs no disk and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["ACCOUNT", "DEFAULT_BINARY", "KEY", "SERVICES", "Azurite", "AzuriteError", "start_azurite"]

# The well-known development account every Azurite accepts (public, documented in the Azurite README; not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
SERVICES = ("blob", "queue", "table")
DEFAULT_BINARY = Path(".tools") / "azurite" / "node_modules" / ".bin" / "azurite"
_INSTALL = "run `make azurite` (npm install --prefix .tools/azurite azurite@3.35.0)"


class AzuriteError(RuntimeError):
    """Azurite is missing or did not start: one line saying what to do."""


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


@dataclass
class Azurite:
    """A running Azurite: its ports, its connection string, and :meth:`stop`."""

    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    workdir: tempfile.TemporaryDirectory[str]
    _log: IO[bytes]

    @property
    def connection_string(self) -> str:
        """All three endpoints, so one string opens a TableServiceClient, a BlobServiceClient and a QueueClient."""
        p = self.ports
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://127.0.0.1:{p['blob']}/{ACCOUNT};"
                f"QueueEndpoint=http://127.0.0.1:{p['queue']}/{ACCOUNT};"
                f"TableEndpoint=http://127.0.0.1:{p['table']}/{ACCOUNT};")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.workdir.name) / "azurite.log").read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        """Terminate the process (kill it after 10 s) and remove its working folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.workdir.cleanup()


def start_azurite(binary: Path | str = DEFAULT_BINARY, *, timeout: float = 30.0, attempts: int = 3) -> Azurite:
    """Start ``azurite`` (all three services) on free ports and wait until every one answers.

    A free port can be taken between the probe and Azurite's bind, so a failed start is tried again on new ports."""
    path = Path(binary)
    if not path.exists():
        raise AzuriteError(f"Azurite is not installed at {path}: {_INSTALL}, or `make test`, which does it for you")
    last = ""
    for _ in range(attempts):
        workdir = tempfile.TemporaryDirectory(prefix="plmon-azurite-")
        ports = {s: _free_port() for s in SERVICES}
        if len(set(ports.values())) < len(SERVICES):
            workdir.cleanup()
            continue
        log = open(Path(workdir.name) / "azurite.log", "wb")  # noqa: SIM115 - lives as long as Azurite
        args = [str(path), "--disableTelemetry", "--inMemoryPersistence", "--skipApiVersionCheck", "--silent"]
        for s in SERVICES:
            args += [f"--{s}Host", "127.0.0.1", f"--{s}Port", str(ports[s])]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir.name)
        azurite = Azurite(proc, ports, workdir, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not all(map(_answers, ports.values())):
            time.sleep(0.05)
        if proc.poll() is None and all(map(_answers, ports.values())):
            return azurite
        last = azurite.log_tail()
        azurite.stop()
    raise AzuriteError(f"Azurite did not start after {attempts} attempts: {last.strip() or 'no output'}")
