"""plmon serve's delivery threads: an event's alert is not queued behind the first collection's backlog."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemonkit import ACCOUNT_ID, ACCOUNT_PATH, HOOK_SECRET, PUBLIC_CHECK, SECRET, event, write_account
from tenantkit import endpoint, storage_account, sub_list, write_tenant

from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.runtime import Runtime
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import OutboxRow

BACKLOG = 60  # endpoints that failed to provision: the first collection opens a finding, and an alert, for each


class _SlowReceiver:
    """A webhook receiver that takes ``delay`` seconds per alert, one at a time, as a modest real sink does."""

    def __init__(self, delay: float) -> None:
        self.delay, self.got, self.cond = delay, [], threading.Condition()

    def wait_for(self, match: Any, timeout: float) -> int | None:
        """Index of the first received alert that matches, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, alert in enumerate(self.got):
                    if match(alert):
                        return i
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    return None


@contextmanager
def _receiver(delay: float) -> Iterator[tuple[_SlowReceiver, str]]:
    rec = _SlowReceiver(delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            time.sleep(rec.delay)
            with rec.cond:
                rec.got.append(json.loads(body))
                rec.cond.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def _tenant(folder: Path) -> Path:
    healthy = endpoint("pe1", ACCOUNT_ID)
    failed = [endpoint(f"bad{i}", ACCOUNT_ID, provisioning_state="Failed", ip=f"10.0.2.{i + 10}")
              for i in range(BACKLOG)]
    write_tenant(folder, {sub_list("privateEndpoints"): {"value": [healthy, *failed]},
                          ACCOUNT_PATH: storage_account("st1", public="Disabled")})
    write_account(folder, "Disabled")
    return folder


def test_an_events_alert_overtakes_the_first_collections_backlog(tmp_path: Path) -> None:
    """The first collection queues 60 alerts to a sink taking 80 ms each; a bad change posted meanwhile reaches the
    sink before that backlog is through, and afterwards every alert has arrived exactly once."""
    folder = _tenant(tmp_path / "t")
    with _receiver(0.08) as (rec, url):
        cfg = parse_config({
            "server": {"secret": SECRET},
            "alerts": [{"type": "webhook", "name": "hook", "url": url, "secret": HOOK_SECRET, "min_severity": "high",
                        "digest_threshold": 100_000}],   # one alert per request, as a backlog without digests
            "schedule": {"full_collection": "1h", "delivery_interval": "1s"},
        }, env={})
        db = tmp_path / "state.db"
        daemon = Daemon(cfg, RecordedTenant(folder), SqliteStore(db), SqliteIntake(db))
        runtime = Runtime(daemon)
        runtime.start()
        try:
            deadline = time.monotonic() + 30
            while daemon.last_collection is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert daemon.last_collection is not None, "no first collection"
            assert rec.wait_for(lambda a: True, 10) is not None, "the backlog never started"
            write_account(folder, "Enabled")
            daemon.accept(json.dumps([event()]).encode(), "application/json")
            daemon.wake.set()
            at = rec.wait_for(lambda a: a["type"] == "io.plmon.finding.opened"
                              and a["data"]["check_id"] == PUBLIC_CHECK, 30)
            assert at is not None, "the event's alert never arrived"
            assert at < BACKLOG // 2, f"the event's alert arrived {at + 1}th, behind the backlog"
            assert rec.wait_for(lambda a: len(rec.got) >= BACKLOG + 1, 30) is not None
        finally:
            runtime.stop()
    ids = Counter(a["id"] for a in rec.got)
    assert len(ids) == BACKLOG + 1 and max(ids.values()) == 1


def test_backlog_steps_aside_for_events_but_not_when_the_first_lane_waits_on_its_send(tmp_path: Path) -> None:
    """Before each backlog send the runtime waits while an event is under way, except for the earlier alert of a
    finding the first lane is sending: that lane is waiting for this very send."""
    folder = _tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    cfg = parse_config({"server": {"secret": SECRET}}, env={})
    runtime = Runtime(Daemon(cfg, RecordedTenant(folder), SqliteStore(db), SqliteIntake(db)))
    waits: list[float] = []
    runtime._priority.wait_idle = waits.append  # type: ignore[method-assign]

    def row(key: str) -> OutboxRow:
        return OutboxRow(alert_id=f"a-{key}", channel="hook", check_id=PUBLIC_CHECK, resource_key=key, seq=1,
                         kind="opened", created_at=datetime.now(UTC), payload={})

    runtime._sending_first = frozenset({(PUBLIC_CHECK, "hot")})
    runtime._step_aside([row("hot")])
    assert waits == []
    runtime._step_aside([row("cold")])
    assert len(waits) == 1
