"""Poison events: one event whose processing keeps failing neither blocks its batch nor the queue; it is
retried with backoff, set aside as failed (metrics, /readyz, a log line, ``plmon events --failed``) and
queued again by ``plmon events --retry``."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from click.testing import CliRunner
from daemonkit import PUBLIC_CHECK, config, event, receiver, serving, tenant, write_account

from plmon.monitor.cli import cli
from plmon.monitor.logs import configure_logging
from plmon.monitor.state.intake import SqliteIntake

SUB2 = "22222222-2222-2222-2222-222222222222"


@pytest.fixture(autouse=True)
def _logging_after_capfd() -> Iterator[None]:
    """serving() points structlog at the stderr of the moment, here capfd's, which is closed after the test;
    set up first, this is torn down after capfd, so later tests log to pytest's own stderr again."""
    yield
    configure_logging("warning", "json")


POISON_LIST = f"subscriptions/{SUB2}/providers/Microsoft.Network/routeTables"
POISON_ID = f"/subscriptions/{SUB2}/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt1"


def _until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_poison_event_is_retried_set_aside_listed_and_requeued(tmp_path, capfd):
    """A route-table event whose re-read raises fails alone: its batch neighbour alerts, it is dead-lettered
    after event_max_attempts with a log line, metrics and /readyz detail, listed, and re-queued by --retry."""
    folder = tenant(tmp_path / "t")
    # A corrupt recorded answer: the re-read raises InputError (not an ARM error), every time.
    poison_file = folder / "arm" / f"{POISON_LIST}.json"
    poison_file.parent.mkdir(parents=True)
    poison_file.write_text("{not json")
    db = tmp_path / "state.db"
    cfg_file = tmp_path / "plmon.yaml"
    cfg_file.write_text(yaml.safe_dump({"state": {"url": f"sqlite:///{db}"}}))
    with receiver() as rec:
        cfg = config(rec.url, event_max_attempts=2, event_retry_base=0.05)
        with serving(folder, cfg, db) as srv:
            write_account(folder, "Enabled")
            poison = event(POISON_ID, op="Microsoft.Network/routeTables/write")
            good = event()
            assert srv.post([poison, good]).status_code == 200
            assert rec.wait_for(lambda r: r.event["data"]["check_id"] == PUBLIC_CHECK), "batch neighbour blocked"
            intake = srv.daemon.intake
            assert _until(lambda: intake.failed_count() == 1), "poison event never set aside"
            assert intake.pending() == 0
            metrics = srv.client.get(f"{srv.base}/metrics").text
            assert "plmon_events_dead_lettered_total 1.0" in metrics
            assert "plmon_event_failures_total 2.0" in metrics
            ready = srv.client.get(f"{srv.base}/readyz")
            assert ready.status_code == 200 and ready.json()["intake_failed"] == 1

            listed = CliRunner().invoke(cli, ["events", "--config", str(cfg_file), "--failed", "--format", "json"])
            assert listed.exit_code == 0, listed.output
            (row,) = json.loads(listed.output)
            assert row["event_id"] == poison["id"] and row["attempts"] == 2
            assert "InputError" in row["last_error"] and row["subject"] == POISON_ID

            poison_file.write_text(json.dumps({"value": []}))  # the cause is fixed
            retried = CliRunner().invoke(cli, ["events", "--config", str(cfg_file), "--retry", poison["id"]])
            assert retried.exit_code == 0 and "re-queued 1" in retried.output
            assert _until(lambda: intake.failed_count() == 0 and intake.pending() == 0), "retry not processed"
            assert srv.client.get(f"{srv.base}/readyz").json()["intake_failed"] == 0
    logs = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    dead = [entry for entry in logs if entry["event"] == "event_dead_lettered"]
    assert len(dead) == 1 and dead[0]["event_id"] == poison["id"] and dead[0]["attempts"] == 2
    failed = [entry for entry in logs if entry["event"] == "event_failed"]
    assert failed and all(entry["event_id"] == poison["id"] and entry["resource_id"] == POISON_ID
                          and entry["correlation_id"] == poison["data"]["correlationId"] for entry in failed)


def test_log_lines_deep_in_a_step_carry_the_event_ids(tmp_path, capfd):
    """A warning logged inside the re-read (which is given no event) carries event_id, correlation_id and
    resource_id, bound with contextvars for the step."""
    folder = tenant(tmp_path / "t")
    sub3 = "33333333-3333-3333-3333-333333333333"
    err = folder / "arm" / "subscriptions" / sub3 / "providers" / "Microsoft.Network" / "routeTables.error.json"
    err.parent.mkdir(parents=True)
    err.write_text(json.dumps({"status": 500, "error": {"code": "InternalServerError", "message": "try later"}}))
    rt = f"/subscriptions/{sub3}/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt1"
    with receiver() as rec, serving(folder, config(rec.url), tmp_path / "state.db") as srv:
        sent = event(rt, op="Microsoft.Network/routeTables/write")
        assert srv.post([sent]).status_code == 200
        srv.wait_idle()
    logs = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    (line,) = [entry for entry in logs if entry["event"] == "reread_failed"]
    assert line["event_id"] == sent["id"] and line["correlation_id"] == sent["data"]["correlationId"]
    assert line["resource_id"] == rt and line["status"] == 500


def test_failed_attempt_waits_out_its_backoff(tmp_path):
    """A failed event is not claimed again before its retry time, and after it is; attempts are counted."""
    q = SqliteIntake(tmp_path / "q.db")
    from plmon.monitor.events.parse import parse_item

    q.enqueue([parse_item(event(event_id="e1"))], datetime.now(UTC))
    now = datetime.now(UTC)
    q.failed("e1", "boom", now, retry_at=now + timedelta(minutes=1))
    assert q.claim(now=now) == [] and q.pending() == 1
    (again,) = q.claim(now=now + timedelta(minutes=2))
    assert again.attempts == 1
    q.failed("e1", "boom again", now, retry_at=None)
    assert q.claim() == [] and q.pending() == 0 and q.failed_count() == 1
    assert q.dead_letters()[0].last_error == "boom again"
    assert q.retry_failed(["other"]) == 0 and q.retry_failed() == 1
    assert q.claim()[0].attempts == 0
    q.close()


def test_queue_created_before_retry_columns_is_upgraded(tmp_path):
    """A queue file from before attempts were counted opens, keeps its pending events, and counts failures."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE intake_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL "
                     "UNIQUE, schema TEXT NOT NULL, raw TEXT NOT NULL, received_at TEXT NOT NULL, done_at TEXT);"
                     "INSERT INTO intake_events (event_id, schema, raw, received_at) VALUES "
                     "('old', 'eventgrid', '{}', '2026-01-01T00:00:00.000000Z');")
    db.close()
    q = SqliteIntake(path)
    (old,) = q.claim(now=datetime.now(UTC))
    assert old.event_id == "old" and old.attempts == 0
    q.failed("old", "x", datetime.now(UTC), retry_at=None)
    assert q.failed_count() == 1
    q.close()
