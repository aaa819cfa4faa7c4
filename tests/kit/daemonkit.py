"""Test kit for the daemon: a real ``plmon serve`` app under uvicorn on loopback, a real webhook receiver
(http.server), a recorded tenant whose storage account a test flips on disk, and Event Grid events."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from tenantkit import SUB, endpoint, provider_connection, storage_account, sub_list, write_tenant

from plmon.monitor import wiring
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.sources import Source
from plmon.monitor.config import Config, parse_config
from plmon.monitor.logs import configure_logging
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.server import create_app
from plmon.monitor.state.sqlite import SqliteStore

SECRET = "s3cret-for-tests"
HOOK_SECRET = "hook-secret"
ACCOUNT_PATH = f"subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"
ACCOUNT_ID = "/" + ACCOUNT_PATH
PUBLIC_CHECK = "public-access.enabled-with-private-endpoint"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POST it gets."""

    url: str = ""
    got: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Any, timeout: float = 10.0, *, after: int = 0) -> list[Received]:
        """The received alerts (from index ``after`` on) that match, waiting until there is one."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [r for r in self.got[after:] if predicate(r)]
                if hits:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.cond.wait(left)


@contextmanager
def receiver(delay: float = 0.0) -> Iterator[Receiver]:
    """``delay``: seconds the sink takes per alert before answering, as a modest real sink does."""
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if delay:
                time.sleep(delay)
            with rec.cond:
                rec.got.append(Received(dict(self.headers), body, time.monotonic()))
                rec.cond.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def write_account(folder: Path, public: str) -> None:
    """Rewrite the storage account on disk, as a change in Azure would."""
    pe_id = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/pe1"
    body = storage_account("st1", public=public, connections=[provider_connection(ACCOUNT_ID, pe_id)])
    (folder / "arm" / f"{ACCOUNT_PATH}.json").write_text(json.dumps(body))


def tenant(folder: Path, public: str = "Disabled") -> Path:
    """One approved endpoint to storage account st1, whose public access a test flips."""
    pe = endpoint("pe1", ACCOUNT_ID)
    write_tenant(folder, {sub_list("privateEndpoints"): {"value": [pe]},
                          ACCOUNT_PATH: storage_account("st1", public=public)})
    write_account(folder, public)
    return folder


def config(hook_url: str, **server: Any) -> Config:
    return parse_config({
        "server": {"secret": SECRET, **server},
        "alerts": [{"type": "webhook", "name": "hook", "url": hook_url, "secret": HOOK_SECRET,
                    "min_severity": "high"}],
        "schedule": {"full_collection": "1h", "delivery_interval": "1s"},
    }, env={})


def event(resource_id: str = ACCOUNT_ID, *, op: str = "Microsoft.Storage/storageAccounts/write",
          when: datetime | None = None, event_id: str | None = None,
          event_type: str = "Microsoft.Resources.ResourceWriteSuccess") -> dict[str, Any]:
    """An Event Grid schema resource event, as ARM sends it."""
    t = (when or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {"id": event_id or str(uuid.uuid4()), "eventType": event_type, "subject": resource_id,
            "eventTime": t, "dataVersion": "2", "metadataVersion": "1",
            "topic": f"/subscriptions/{SUB}",
            "data": {"operationName": op, "resourceUri": resource_id, "status": "Succeeded",
                     "subscriptionId": SUB, "correlationId": str(uuid.uuid4())}}


@dataclass
class Running:
    base: str
    app: Any
    folder: Path
    client: httpx.Client

    @property
    def daemon(self) -> Daemon:
        return self.app.state.daemon

    def post(self, body: Any, *, secret: str | None = SECRET, content_type: str = "application/json",
             raw: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        data = raw if raw is not None else json.dumps(body).encode()
        params = {"code": secret} if secret is not None else {}
        return self.client.post(f"{self.base}/api/eventgrid", params=params, content=data,
                                headers={"Content-Type": content_type, **(headers or {})})

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.daemon.intake.pending() and time.monotonic() < deadline:
            time.sleep(0.01)


@contextmanager
def serving(folder: Path, cfg: Config, db: Path, *, collect: bool = True) -> Iterator[Running]:
    """The real app under uvicorn on 127.0.0.1:<free port>; ready (first collection done) on entry."""
    from datetime import timedelta

    from plmon.alerts.delivery import RetryPolicy

    configure_logging("warning", "json")  # as plmon serve runs by default: log lines cost time too

    def make() -> Daemon:
        # Built by the composition root, as plmon serve builds it; only the store's file and faster retries differ.
        return wiring.build_daemon(cfg, Source(RecordedTenant(folder), {}), store=SqliteStore(db),
                                   retry_policy=RetryPolicy(base=timedelta(milliseconds=50),
                                                            cap=timedelta(milliseconds=200)))

    app = create_app(cfg, make, collect_at_start=collect, flush_timeout=2.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(timeout=30)
    try:
        if collect:
            while client.get(f"{base}/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("server never became ready")
                time.sleep(0.02)
        yield Running(base, app, folder, client)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)
