"""``plmon scan --notify`` end to end: recorded tenant on disk -> store -> signed webhook on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from notifykit import HOSTILE, SECRET, config, run, tenant
from receiver import Receiver
from tenantkit import SUB, sub_list

from plmon.monitor.state.open import open_store
from plmon.monitor.state.store import AlertStatus, FindingState


@pytest.fixture
def rx() -> Any:
    r = Receiver(secret=SECRET)
    yield r
    r.close()


def test_scan_notify_lifecycle(tmp_path: Path, rx: Receiver) -> None:
    """First scan opens one signed event per finding >= min_severity; a repeat sends nothing; fixing sends resolves."""
    folder = tenant(tmp_path / "t")
    cfg = config(tmp_path, rx, min_severity="medium")
    r = run("scan", "--from", str(folder), "--config", str(cfg), "--notify", "--format", "json")
    assert r.exit_code == 0, r.output
    events = rx.events()  # signatures verified
    assert [(e["type"], e["data"]["check_id"]) for e in events] == [("io.plmon.finding.opened", "connection.pending")]
    ev = events[0]
    assert ev["specversion"] == "1.0" and ev["subject"].endswith("/privateEndpoints/pe1")
    assert ev["data"]["state"] == "open" and ev["data"]["first_seen"] and ev["data"]["evidence"]
    assert ev["data"]["evidence"]["request_message"] == HOSTILE  # JSON carries it verbatim, signed

    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    assert len(rx.accepted) == 1  # identical second scan: nothing sent

    tenant(tmp_path / "t", pending=False, recorded_at="2026-11-01T13:00:00Z")  # pe1 deleted on disk
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    later = rx.events()[1:]
    assert [(e["type"], e["subject"].rsplit("/", 1)[-1]) for e in later] == [("io.plmon.finding.resolved", "pe1")]
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    states = {f.resource_id.rsplit("/", 1)[-1]: f.state for f in store.findings() if f.check_id.startswith("conn")}
    assert states == {"pe1": FindingState.RESOLVED, "pe2": FindingState.OPEN}
    assert store.outbox(AlertStatus.PENDING) == []


def test_forbidden_scope_resolves_nothing(tmp_path: Path, rx: Receiver) -> None:
    """When the endpoint list answers 403, the findings it produced stay open and no resolve is sent."""
    folder = tenant(tmp_path / "t")
    cfg = config(tmp_path, rx)
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    assert sorted(e["data"]["check_id"] for e in rx.events()) == ["connection.pending", "connection.rejected"]
    (folder / "arm" / (sub_list("privateEndpoints") + ".json")).unlink()
    (folder / "arm" / (sub_list("privateEndpoints") + ".error.json")).write_text(json.dumps(
        {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}))
    r = run("scan", "--from", str(folder), "--config", str(cfg), "--notify", "--format", "json")
    assert r.exit_code == 0
    assert len(rx.accepted) == 2
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    assert {f.state for f in store.findings()} == {FindingState.OPEN} and len(store.findings()) >= 2


def test_findings_and_alerts_commands(tmp_path: Path) -> None:
    """plmon findings lists open findings with age; a dead receiver's alerts are listed by --failed and
    delivered by --retry once it is back."""
    rx = Receiver(secret=SECRET)
    rx.down()  # connection refused for the whole first run
    cfg = config(tmp_path, rx, delivery={"max_attempts": 2, "backoff_base": 0.01, "notify_timeout": 5})
    folder = tenant(tmp_path / "t")
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    out = run("findings", "--config", str(cfg), "--format", "json")
    rows = json.loads(out.stdout)
    assert {"connection.pending", "connection.rejected"} <= {r["check_id"] for r in rows}
    assert all(r["age"] for r in rows)
    failed = json.loads(run("alerts", "--failed", "--config", str(cfg), "--format", "json").stdout)
    assert len(failed) == 2 and all(f["attempts"] == 2 and f["last_error"] for f in failed)
    assert SECRET not in json.dumps(failed) and str(rx.port) not in json.dumps(failed)
    rx.up()
    run("alerts", "--retry", "--config", str(cfg))
    assert sorted(e["id"] for e in rx.events()) == sorted(f["alert_id"] for f in failed)
    assert json.loads(run("alerts", "--failed", "--config", str(cfg), "--format", "json").stdout) == []
    rx.close()


def test_pending_age_escalates_across_scans(tmp_path: Path, rx: Receiver) -> None:
    """A connection seen Pending in an earlier scan is high once older than pending_max_age, and the
    channel that only takes high alerts hears of it then."""
    cfg = config(tmp_path, rx, min_severity="high",
                 checks={"connection.pending": {"pending_max_age": "24h"},
                         "connection.rejected": {"enabled": False}})
    folder = tenant(tmp_path / "t", recorded_at="2026-11-01T12:00:00Z")
    first = json.loads(run("scan", "--from", str(folder), "--config", str(cfg), "--format", "json").stdout)
    [f] = [f for f in first["findings"] if f["check_id"] == "connection.pending"]
    assert f["severity"] == "medium"
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    assert rx.accepted == []  # medium: below this channel
    tenant(tmp_path / "t", recorded_at="2026-11-02T13:00:00Z")  # 25 h later, still Pending
    out = json.loads(run("scan", "--from", str(folder), "--config", str(cfg), "--notify", "--format", "json").stdout)
    [f] = [f for f in out["findings"] if f["check_id"] == "connection.pending"]
    assert f["severity"] == "high" and f["evidence"]["age_hours"] == 25.0
    [ev] = rx.events()
    assert ev["type"] == "io.plmon.finding.opened" and ev["data"]["severity"] == "high"
    assert ev["data"]["previous_severity"] == "medium"


def test_kill_after_commit_then_restart_delivers(tmp_path: Path, rx: Receiver) -> None:
    """A process SIGKILLed after the state commit and before delivery loses nothing: a restart delivers."""
    folder = tenant(tmp_path / "t")
    cfg = config(tmp_path, rx)
    script = f"""
import os, signal
from plmon.monitor.config import load_config
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.scan import run_scan
from plmon.monitor.state.open import open_store
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.lifecycle.transitions import apply_scan
from plmon.alerts.outbox import routes_from_config
config = load_config({str(cfg)!r})
store = open_store(config.state.url)
reader = RecordedTenant({str(folder)!r})
result = run_scan(reader, config, manifest=reader.manifest, observations=observer(store))
apply_scan(store, result, routes=routes_from_config(config.alerts))
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "PLMON_TEST_SECRET": SECRET}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert rx.requests == []
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    owed = {r.alert_id for r in store.outbox(AlertStatus.PENDING)}
    assert len(owed) == 2
    restart = subprocess.run([str(Path(sys.executable).parent / "plmon"), "alerts", "--deliver", "--config", str(cfg)],
                             env=env, capture_output=True, timeout=60)
    assert restart.returncode == 0, restart.stderr
    counts = rx.counts(owed)
    assert counts == {"sent": 2, "delivered": 2, "duplicates": 0, "lost": 0, "requests": 2}, counts
    # and the next scan does not send them again
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    assert rx.counts(owed)["duplicates"] == 0 and len(rx.accepted) == 2
    assert SUB in rx.events()[0]["subject"]
