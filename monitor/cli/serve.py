"""``plmon serve``: the daemon under uvicorn, from a recorded folder or live ARM.

Exits 0 after a graceful shutdown (SIGTERM or SIGINT: uvicorn stops accepting, the lifespan drains
the intake queue and flushes the outbox). A bad config, source or state URL is one line and exit 2
before anything listens.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import structlog
import uvicorn

from plmon.monitor.cli.root import source_options
from plmon.monitor.config import Config, load_config
from plmon.monitor.errors import InputError
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.state.store import StateStore
from plmon.monitor.wiring import build_daemon, open_intake, open_scale, open_source, open_state

__all__ = ["serve"]

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown (the process then dies by the signal); the
    contract is exit 0 after a graceful shutdown, so the handlers are installed without the re-raise."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _probe_scale(store: StateStore, config: Config) -> None:
    """Open the scale-out parts (inventory container, schedule lease, patch and collection tables) once, so that a
    Table-store user upgrading without blob access (a missing role, an unreachable blob endpoint) gets one line and
    the way out, not "the daemon did not start" after a traceback in the server's startup."""
    from plmon.monitor.state.scaleout import ScaleoutError
    from plmon.monitor.state.storage_account import first_refusal

    try:
        with first_refusal():   # a refusal is the answer here: no SDK retries seconds apart before the one line
            scale = open_scale(store, config, instance="plmon-serve-preflight")
    except (ScaleoutError, InputError) as err:
        raise InputError(f"scale: the shared inventory's storage cannot be used ({err}); grant this identity blob "
                         "access (Storage Blob Data Contributor) or set scale.shared_inventory: false") from None
    if scale is not None:
        scale.close()


@click.command("serve")
@source_options
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", help="Listen address (default: server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Listen port (default: server.port; 0 = any free).")
def serve(from_dir: Path | None, config_path: Path | None, host: str | None, port: int | None, **live: Any) -> None:
    """The daemon: Event Grid webhook, scheduled collections, alert delivery, health and metrics."""
    from plmon.monitor.service.server import create_app

    config = load_config(config_path)
    host = host or config.server.host
    port = config.server.port if port is None else port
    if config.server.secret is None and config.server.entra is None and not _loopback(host):
        raise InputError(f"server.secret (or server.entra) is not set: refusing to accept unauthenticated "
                         f"events on {host}")
    source = open_source(from_dir, **live)
    # Fail on a bad state URL now, as one line, rather than inside the server's startup.
    probe = open_state(config)
    try:
        open_intake(probe, config).close()
        _probe_scale(probe, config)
    finally:
        probe.close()

    def make_daemon() -> Daemon:
        return build_daemon(config, source)

    app = create_app(config, make_daemon)
    if config.server.secret is None and config.server.entra is None:
        log.warning("server_without_secret", host=host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as err:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror})") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    # One JSON line on stdout, like replay-server: scripts and tests learn the port when --port 0.
    click.echo(json.dumps({"url": f"http://{shown}:{bound}", "webhook": f"http://{shown}:{bound}/api/eventgrid"}))
    # log_config=None: uvicorn's own lines go through plmon's logging (one JSON line, no traceback).
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, log_config=None,
                                    timeout_graceful_shutdown=30))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        source.close()
    if not server.started:
        raise InputError("the daemon did not start (see the log above)")
