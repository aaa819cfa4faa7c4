"""Three ``plmon serve`` processes on one Azurite prefix: the schedule's holder dies mid-collection (SIGKILL).

What issue 15 promises a user who runs replicas: the lease expires, another replica takes the tick's collection
over and publishes it, and the alerts its findings open arrive once each, none lost with the dead holder and none
sent twice. Real processes, real Azure SDKs: Azurite for blob, queue and table, the replay server for ARM (slowed
to 100 ms a read, 2 reads in flight, so the collection lasts seconds and the kill lands inside it). The takeover
waits for the blob lease's real expiry (15 s, its minimum): no ``break_lease``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import azurite
import httpx
import yaml
from azure.data.tables import TableServiceClient
from daemonkit import SECRET, receiver

from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.state.collections_tables import TablesCollectionBook

PLMON = [sys.executable, "-c", "from plmon.monitor.cli import main; main()"]
OPENED = "io.plmon.finding.opened"


def _findings(folder: Path) -> Counter[tuple[str, str]]:
    """What one collection of the tenant finds (``plmon scan``): each is one opened alert to expect."""
    out = subprocess.run([*PLMON, "scan", "--from", str(folder), "--format", "json"], capture_output=True,
                         text=True, timeout=60)
    return Counter((f["check_id"], f["resource_id"].lower()) for f in json.loads(out.stdout)["findings"])


@contextmanager
def _replica(name: str, config: Path, replay: ReplayServer, env: dict[str, str]) -> Iterator[
        tuple[subprocess.Popen[str], str]]:
    """``plmon serve`` as replica ``name`` (PLMON_INSTANCE_ID); killed on leaving whatever happened."""
    proc = subprocess.Popen([*PLMON, "serve", "--config", str(config), "--arm-endpoint", replay.base_url,
                             "--ca-bundle", replay.ca_bundle, "--workers", "2", "--host", "127.0.0.1", "--port", "0"],
                            env={**env, "PLMON_INSTANCE_ID": name}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        yield proc, json.loads(proc.stdout.readline())["url"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _until(what: str, check: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.1)


def test_holder_killed_mid_collection_another_publishes_and_each_alert_arrives_once(tmp_path: Path) -> None:
    """Proves: SIGKILL of the lease holder mid-collection -> a survivor takes the tick over and publishes it, and
    every finding's opened alert arrives exactly once (none lost with the holder, none sent by two replicas)."""
    folder = tmp_path / "tenant"
    subprocess.run([*PLMON, "synth", "--subscriptions", "2", "--endpoints", "20", "--seed", "1", "--out",
                    str(folder)], check=True, capture_output=True, timeout=60)
    expected = _findings(folder)
    assert expected and max(expected.values()) == 1
    cs, prefix = azurite.connection_string(), azurite.unique_prefix()
    book = TablesCollectionBook(TableServiceClient.from_connection_string(cs), prefix)
    env = {**os.environ, "PLMON_ARM_TOKEN": "test", "PLMON_TABLES_CONNECTION_STRING": cs,
           "PLMON_LOG_LEVEL": "warning"}
    with ExitStack() as stack:
        replay = stack.enter_context(ReplayServer(folder, latency_ms=400))
        rec = stack.enter_context(receiver())
        config = tmp_path / "plmon.yaml"
        config.write_text(yaml.safe_dump({
            "state": {"url": f"azuretables:///{prefix}"},
            "server": {"secret": SECRET},
            "alerts": [{"type": "webhook", "name": "hook", "url": rec.url, "secret": "k", "min_severity": "info",
                        "digest_threshold": 1_000_000}],
            "schedule": {"full_collection": "1h", "delivery_interval": "1s"},
            "scale": {"lease_duration": "15s", "lease_renew": "3s", "pointer_interval": "1s",
                      "event_claim_lease": "15s", "shard_visibility": "5s"},
        }))
        replicas = {name: stack.enter_context(_replica(name, config, replay, env)) for name in ("r1", "r2", "r3")}

        running = _until("a replica collecting", lambda: [r for r in book.collections()
                                                          if r.state in ("stage1", "stage2", "finalizing")], 60)
        holder = running[0].started_by
        replicas[holder][0].send_signal(signal.SIGKILL)
        replicas[holder][0].wait(timeout=10)
        assert not [r for r in book.collections() if r.state == "published"], "the kill came after the publish"

        published = _until("the tick's collection published by a survivor",
                           lambda: [r for r in book.collections() if r.state == "published"], 45)
        assert published[0].collection == running[0].collection and published[0].started_by != holder

        def opened() -> Counter[tuple[str, str]]:
            with rec.cond:
                events = [r.event for r in rec.got]
            return Counter((e["data"]["check_id"], str(e["data"]["resource_id"]).lower()) for e in events
                           if e["type"] == OPENED)
        _until("every finding's alert", lambda: set(opened()) >= set(expected), 20)
        time.sleep(2)   # two delivery passes more: a second copy from another replica would be in by now
        with rec.cond:
            ids = [r.event["id"] for r in rec.got]
        assert opened() == expected
        assert len(ids) == len(set(ids))
        for name, (proc, url) in replicas.items():
            if name != holder:
                assert proc.poll() is None and httpx.get(f"{url}/readyz", timeout=10).status_code == 200
