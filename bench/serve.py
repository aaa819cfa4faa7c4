"""``plmon serve`` figures for ``make bench``: event-to-alert latency and a 5,000-event burst.

The daemon runs as the product runs it (``plmon serve --from <synth tenant>`` in its own process, JSON logs at
warning); alerts go to a webhook receiver (http.server on 127.0.0.1) in this process. The approach is the
daemon's e2e harness (tests/kit/daemonkit.py) without importing from tests/: a change in Azure is a file rewritten
on disk (the recorded tenant reads it on the next re-read), then the Event Grid write event is posted.

Every wait has a deadline: a daemon that stops answering costs at most the deadline, never a hung bench.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

SECRET = "bench-secret"
PUBLIC_CHECK = "public-access.enabled-with-private-endpoint"
# Resource types the burst's events touch: what Event Grid sends most for a private-link estate.
BURST_TYPES = ("microsoft.network/privateendpoints", "microsoft.network/routetables",
               "microsoft.network/networksecuritygroups", "microsoft.storage/storageaccounts",
               "microsoft.keyvault/vaults")


@dataclass
class Receiver:
    """Alerts the daemon delivered, with the monotonic time each arrived."""

    url: str = ""
    got: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], after: int, timeout: float) -> float | None:
        """Arrival time of the first alert from index ``after`` on that matches, or None at the deadline."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, alert in self.got[after:]:
                    if match(alert):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            at = time.monotonic()
            with contextlib.suppress(ValueError), rec.cond:
                rec.got.append((at, json.loads(body)))
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


def event(resource_id: str, type_: str) -> dict[str, Any]:
    """An Event Grid schema ResourceWriteSuccess event, as ARM sends it."""
    sub = resource_id.split("/")[2]
    return {"id": str(uuid.uuid4()), "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "subject": resource_id, "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "dataVersion": "2", "metadataVersion": "1", "topic": f"/subscriptions/{sub}",
            "data": {"operationName": f"{type_}/write", "resourceUri": resource_id, "status": "Succeeded",
                     "subscriptionId": sub, "correlationId": str(uuid.uuid4())}}


def _arm_file(folder: Path, resource_id: str) -> Path:
    return folder / "arm" / (resource_id.strip("/") + ".json")


def _lists(folder: Path, kind: str) -> Iterator[dict[str, Any]]:
    for path in sorted((folder / "arm" / "subscriptions").glob(f"*/providers/Microsoft.Network/{kind}.json")):
        yield from json.loads(path.read_text())["value"]


def flip_target(folder: Path) -> str:
    """A storage account with an Approved endpoint and public access off: flipping it opens/resolves a finding."""
    for pe in _lists(folder, "privateEndpoints"):
        for conn in pe["properties"].get("privateLinkServiceConnections", []):
            props = conn["properties"]
            tid = props.get("privateLinkServiceId", "")
            state = props.get("privateLinkServiceConnectionState", {}).get("status")
            if "/microsoft.storage/storageaccounts/" not in tid.lower() or state != "Approved":
                continue
            file = _arm_file(folder, tid)
            if file.is_file() and json.loads(file.read_text())["properties"].get("publicNetworkAccess") == "Disabled":
                return tid
    raise RuntimeError("the synth tenant has no private storage account with an Approved endpoint")


def set_public(folder: Path, resource_id: str, public: bool) -> None:
    """Rewrite the account on disk as a change in Azure would (atomically: the daemon may be reading it)."""
    file = _arm_file(folder, resource_id)
    body = json.loads(file.read_text())
    body["properties"]["publicNetworkAccess"] = "Enabled" if public else "Disabled"
    body["properties"].setdefault("networkAcls", {})["defaultAction"] = "Allow" if public else "Deny"
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, file)


def burst_resources(folder: Path, distinct: int, seed: int) -> list[str]:
    """``distinct`` resource ids of the tenant, of the types in BURST_TYPES, chosen at random."""
    ids = sorted({str(p.relative_to(folder / "arm").with_suffix("")) for p in (folder / "arm").rglob("*.json")})
    pool: list[str] = []
    for kind in ("privateEndpoints", "routeTables", "networkSecurityGroups"):
        pool += [item["id"] for item in _lists(folder, kind)]
    pool += ["/" + i for i in ids if "/providers/microsoft.storage/storageaccounts/" in i.lower()
             or "/providers/microsoft.keyvault/vaults/" in i.lower()]
    pool = sorted(set(pool))
    return random.Random(seed).sample(pool, min(distinct, len(pool)))


def _type_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    i = [p.lower() for p in parts].index("providers")
    return f"{parts[i + 1]}/{parts[i + 2]}"


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def metrics(client: httpx.Client, base: str) -> dict[str, float]:
    """The daemon's Prometheus samples, summed over labels."""
    out: dict[str, float] = {}
    for line in client.get(f"{base}/metrics").text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def pending(db: Path) -> int:
    """Queued events not yet settled (done or set aside as failed), read from the daemon's sqlite intake."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM intake_events WHERE done_at IS NULL AND failed_at IS NULL")
                   .fetchone()[0])


class ServeProcess:
    """``plmon serve --from <folder>`` in its own process, ready (first collection done) on start."""

    def __init__(self, folder: Path, config: Path, ready_timeout: float = 180) -> None:
        plmon = Path(sys.executable).parent / "plmon"
        env = {**os.environ, "PLMON_LOG_LEVEL": "warning", "PLMON_LOG_FORMAT": "json"}
        self.stderr = open(config.with_suffix(".log"), "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(plmon), "serve", "--from", str(folder), "--config", str(config),
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=env)
        self.client = httpx.Client(timeout=60)
        try:
            self.base = self._url(ready_timeout)
            deadline = time.monotonic() + ready_timeout
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if self.client.get(f"{self.base}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"plmon serve not ready after {ready_timeout:.0f} s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def _url(self, timeout: float) -> str:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline() if self.proc.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            raise RuntimeError("plmon serve printed no URL")
        return str(json.loads(line[0])["url"])

    def post(self, events: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post(f"{self.base}/api/eventgrid", params={"code": SECRET}, content=json.dumps(events),
                                headers={"Content-Type": "application/json"})

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.stderr.close()


def write_config(path: Path, hook_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "state": {"url": f"sqlite:///{path.parent / 'state.db'}"},
        "server": {"secret": SECRET, "max_body_bytes": 16 * 1024 * 1024},
        "alerts": [{"type": "webhook", "name": "bench", "url": hook_url, "secret": "k", "min_severity": "high"}],
        "schedule": {"full_collection": "1h", "delivery_interval": "1s"},
    }))
    return path


def measure(folder: Path, work: Path, *, events: int = 200, burst: int = 5000, distinct: int = 1000,
            seed: int = 1, alert_timeout: float = 15, drain_timeout: float = 240) -> dict[str, Any]:
    """One daemon run: ``events`` flips one by one (latency), then one ``burst``-event delivery."""
    work.mkdir(parents=True, exist_ok=True)
    target = flip_target(folder)
    out: dict[str, Any] = {}
    with receiver() as rec:
        started = time.perf_counter()
        serve = ServeProcess(folder, write_config(work / "plmon.yaml", rec.url))
        out["ready_s"] = time.perf_counter() - started
        try:
            latencies: list[float] = []
            missed = 0
            for i in range(events):
                public = i % 2 == 0
                kind = "io.plmon.finding.opened" if public else "io.plmon.finding.resolved"
                before = len(rec.got)
                set_public(folder, target, public)
                sent = time.monotonic()
                if serve.post([event(target, "Microsoft.Storage/storageAccounts")]).status_code != 200:
                    missed += 1
                    continue
                at = rec.wait_for(lambda a, k=kind: a.get("type") == k and a["data"].get("check_id") == PUBLIC_CHECK
                                  and str(a["data"].get("resource_id", "")).lower() == target.lower(),
                                  before, alert_timeout)
                if at is None:
                    missed += 1
                else:
                    latencies.append(at - sent)
            if len(latencies) >= 2:
                q = statistics.quantiles(latencies, n=100, method="inclusive")
                out["latency"] = {"events": events, "alerts": len(latencies), "missed": missed,
                                  "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "max_ms": max(latencies) * 1000}
            else:
                out["latency"] = {"events": events, "alerts": len(latencies), "missed": missed}
            if events % 2:  # leave the account as the tenant had it
                set_public(folder, target, False)

            # The burst: `burst` events over `distinct` resources in one delivery, as Event Grid batches them.
            ids = burst_resources(folder, distinct, seed)
            rng = random.Random(seed)
            batch = [event(rid, _type_of(rid)) for rid in (ids + [rng.choice(ids) for _ in range(burst - len(ids))])]
            rng.shuffle(batch)
            m0 = metrics(serve.client, serve.base)
            t0 = time.perf_counter()
            r = serve.post(batch)
            ack = time.perf_counter() - t0
            # The intake table is the truth (the pending gauge is only set when a worker step ends).
            deadline = time.monotonic() + drain_timeout
            drained = False
            while time.monotonic() < deadline:
                if pending(work / "state.db") == 0:
                    drained = True
                    break
                time.sleep(0.05)
            drain = time.perf_counter() - t0
            m1 = metrics(serve.client, serve.base)

            def delta(name: str) -> float:
                return m1.get(name, 0.0) - m0.get(name, 0.0)

            out["burst"] = {
                "events": len(batch), "distinct_resources": len(set(i.lower() for i in ids)), "status": r.status_code,
                "answer": r.json() if r.status_code == 200 else r.text[:200], "ack_s": ack,
                "drained": drained, "drain_s": drain if drained else None,
                "rereads": delta("plmon_rereads_total"), "ignored": delta("plmon_events_ignored_total"),
                "arm_requests": delta("plmon_arm_requests_total"), "failures": delta("plmon_event_failures_total"),
            }
        finally:
            serve.stop()
    return out
