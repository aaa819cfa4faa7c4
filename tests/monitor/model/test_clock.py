"""One clock per source (plmon.monitor.model.clock): a recording's findings are stamped and aged on its
recorded_at, a live source's on the wall clock, and timers (delivery, backoff) stay on the wall clock whatever the
source."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from daemonkit import ACCOUNT_ID, event, receiver, write_account
from daemonkit import config as daemon_config
from daemonkit import tenant as daemon_tenant
from notifykit import SECRET, config, run, tenant
from receiver import Receiver

from plmon.monitor.cli import cli
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.clock import RecordedClock, WallClock, source_clock, store_clock
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.open import open_store
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import AlertStatus, ScanRecord

LONG_AGO = "2025-06-01T12:00:00Z"
LONG_AGO_T = datetime(2025, 6, 1, 12, tzinfo=UTC)
PUBLIC_CHECK = "public-access.enabled-with-private-endpoint"


@pytest.fixture
def rx() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET)
    yield r
    r.close()


def _findings(cfg: Path) -> list[dict[str, Any]]:
    out = run("findings", "--config", str(cfg), "--format", "json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def _stored_report(cfg: Path) -> dict[str, Any]:
    out = run("report", "--config", str(cfg), "--format", "json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_recorded_scan_ages_are_on_recorded_at_in_findings_and_report(tmp_path: Path, rx: Receiver) -> None:
    """A recording scanned with --notify: plmon findings and plmon report age its findings from recorded_at
    (0 minutes, then 1d 1h after a recording 25 h later), never from the wall clock months after it."""
    folder = tenant(tmp_path / "t", recorded_at=LONG_AGO)
    cfg = config(tmp_path, rx)
    assert run("scan", "--from", str(folder), "--config", str(cfg), "--notify").exit_code == 0

    rows = _findings(cfg)
    assert len(rows) >= 2
    assert {r["age"] for r in rows} == {"0h 0m"}
    assert {datetime.fromisoformat(r["first_seen"]) for r in rows} == {LONG_AGO_T}
    table = run("findings", "--config", str(cfg)).stdout
    assert table.count("0h 0m") == len(rows) and re.search(r"\d+d \d+h", table) is None
    assert "(ages at 2025-06-01 12:00 UTC, the recorded tenant's time)" in table
    doc = _stored_report(cfg)
    assert doc["findings"] and {f["age_days"] for f in doc["findings"]} == {0.0}
    assert datetime.fromisoformat(doc["report"]["generated_at"]) == LONG_AGO_T

    later = tenant(tmp_path / "t", recorded_at="2025-06-02T13:00:00Z")  # the same tenant recorded 25 h later
    assert run("scan", "--from", str(later), "--config", str(cfg), "--notify").exit_code == 0
    assert {r["age"] for r in _findings(cfg)} == {"1d 1h"}
    assert {f["age_days"] for f in _stored_report(cfg)["findings"]} == {round(25 / 24, 3)}


def test_fresh_report_of_a_recording_ages_on_recorded_at(tmp_path: Path, rx: Receiver) -> None:
    """plmon report --from DIR with a store: first_seen comes from the store and the age from the recording's
    time, so a finding the same recording opened is 0 days old."""
    folder = tenant(tmp_path / "t", recorded_at=LONG_AGO)
    cfg = config(tmp_path, rx)
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    out = run("report", "--from", str(folder), "--config", str(cfg), "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["findings"] and {f["age_days"] for f in doc["findings"]} == {0.0}
    assert {datetime.fromisoformat(f["first_seen"]) for f in doc["findings"]} == {LONG_AGO_T}


def test_live_replay_server_source_is_on_the_wall_clock(tmp_path: Path, rx: Receiver) -> None:
    """The same folder read live through the replay server (recorded_at a year back) stamps findings with the
    wall clock: first_seen falls inside the scan's wall-clock window and plmon findings shows 0 minutes."""
    folder = tenant(tmp_path / "t", recorded_at=LONG_AGO)
    cfg = config(tmp_path, rx)
    before = datetime.now(UTC)
    with ReplayServer(folder) as server:
        res = CliRunner().invoke(cli, ["scan", "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle,
                                       "--config", str(cfg), "--notify"],
                                 env={"PLMON_TEST_SECRET": SECRET, "PLMON_ARM_TOKEN": "t0ken"},
                                 catch_exceptions=False)
    after = datetime.now(UTC)
    assert res.exit_code == 0, res.output
    rows = _findings(cfg)
    assert len(rows) >= 2 and {r["age"] for r in rows} == {"0h 0m"}
    assert all(before <= datetime.fromisoformat(r["first_seen"]) <= after for r in rows)
    assert all(before <= datetime.fromisoformat(e["data"]["first_seen"]) <= after for e in rx.events())


def test_alerts_of_a_recording_dated_ahead_are_delivered_now(tmp_path: Path, rx: Receiver) -> None:
    """Delivery is a wall-clock timer: the alerts of a recording whose recorded_at is years ahead are sent by
    the scan --notify that queued them, while their payload keeps the recording's time."""
    folder = tenant(tmp_path / "t", recorded_at="2031-01-01T00:00:00Z")
    cfg = config(tmp_path, rx)
    assert run("scan", "--from", str(folder), "--config", str(cfg), "--notify").exit_code == 0
    events = rx.events()
    assert sorted(e["data"]["check_id"] for e in events) == ["connection.pending", "connection.rejected"]
    assert {datetime.fromisoformat(e["data"]["first_seen"]) for e in events} == {datetime(2031, 1, 1, tzinfo=UTC)}
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    assert store.outbox(AlertStatus.PENDING) == []


def test_retry_backoff_of_a_recording_counts_from_the_wall_clock(tmp_path: Path) -> None:
    """A failed delivery of a recording's alert is tried at once and retried backoff_base after the wall-clock
    failure, whether recorded_at lies years ahead or behind."""
    rx = Receiver(secret=SECRET)
    rx.down()
    try:
        for n, recorded_at in enumerate(("2031-01-01T00:00:00Z", LONG_AGO)):
            work = tmp_path / str(n)
            work.mkdir()
            cfg = config(work, rx, delivery={"max_attempts": 5, "backoff_base": "10m", "backoff_max": "1h",
                                             "notify_timeout": 1})
            before = datetime.now(UTC)
            run("scan", "--from", str(tenant(work / "t", recorded_at=recorded_at)), "--config", str(cfg), "--notify")
            pending = json.loads(run("alerts", "--pending", "--config", str(cfg), "--format", "json").stdout)
            assert len(pending) == 2 and all(p["attempts"] == 1 for p in pending), pending
            for p in pending:
                due = datetime.fromisoformat(p["next_attempt_at"])
                assert before + timedelta(minutes=5) < due < datetime.now(UTC) + timedelta(minutes=16), p
    finally:
        rx.close()


class _FakeWall:
    """The daemon's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.t


def _serve(tmp_path: Path, folder: Path, hook: str, wall: _FakeWall, manifest: dict[str, Any] | None) -> Daemon:
    db = tmp_path / "state.db"
    return Daemon(daemon_config(hook), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
                  manifest=manifest, clock=wall)


def test_daemon_serving_a_recording_stays_on_recorded_at(tmp_path: Path) -> None:
    """plmon serve of a recorded folder: a finding an event opens two days later in wall time is first seen at
    recorded_at and sent at once, three more wall days bring no reminder (the recording does not age),
    event staleness and retention still count wall time, and retention keeps the recording's history."""
    folder = daemon_tenant(tmp_path / "t")
    wall = _FakeWall()
    with receiver() as hook:
        d = _serve(tmp_path, folder, hook.url, wall, RecordedTenant(folder).manifest)
        d.full_collection()
        wall.t += timedelta(days=2)
        write_account(folder, "Enabled")
        d.accept(json.dumps([event(when=wall.t)]).encode(), "application/json")
        assert d.process_pending().transitions
        rec = d.store.get_finding(PUBLIC_CHECK, ACCOUNT_ID.lower())
        assert rec is not None and rec.first_seen == rec.last_seen == datetime(2026, 11, 1, 12, tzinfo=UTC)
        [sent] = hook.wait_for(lambda r: r.event["type"].endswith("opened"))
        assert datetime.fromisoformat(sent.event["data"]["first_seen"]) == rec.first_seen
        # an event older than that re-read's wall-clock time is stale, however far after recorded_at it is
        d.accept(json.dumps([event(when=wall.t - timedelta(minutes=1))]).encode(), "application/json")
        assert d.process_pending().stale == 1
        wall.t += timedelta(days=3)
        assert d.reminders() == []
        d.full_collection()
        assert [s.figures["clock"] for s in d.store.scan_history()] == ["recorded", "recorded"]
        assert store_clock(d.store.scan_history(), wall=wall).now() == rec.first_seen
        wall.t += timedelta(days=120)  # the recording's findings and scans are on recorded_at, 150 days back
        d.retention()
        assert len(d.store.scan_history()) == 2 and d.store.get_finding(PUBLIC_CHECK, ACCOUNT_ID.lower())


def test_daemon_on_a_live_source_stamps_findings_with_its_wall_clock(tmp_path: Path) -> None:
    """A daemon whose source has no recorded_at (live ARM) opens findings at its wall clock and reminds once the
    wall clock passes reminder_interval."""
    folder = daemon_tenant(tmp_path / "t", public="Enabled")
    wall = _FakeWall()
    with receiver() as hook:
        d = _serve(tmp_path, folder, hook.url, wall, {"cloud": "AzureCloud"})
        d.full_collection()
        rec = d.store.get_finding(PUBLIC_CHECK, ACCOUNT_ID.lower())
        assert rec is not None and rec.first_seen == wall.t
        wall.t += timedelta(days=2)
        assert [t.kind for t in d.reminders()] == ["reminder"]
        assert [s.figures["clock"] for s in d.store.scan_history()] == ["wall"]


def test_source_clock_and_store_clock_follow_the_manifest_and_the_last_full_scan() -> None:
    """recorded_at makes a recorded clock, no recorded_at the wall clock; a store is read on the clock of its
    last full scan, and on the wall clock when it has none or the scan predates the clock field."""
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    recorded = source_clock({"recorded_at": LONG_AGO})
    assert isinstance(recorded, RecordedClock) and recorded.now() == LONG_AGO_T and recorded.kind == "recorded"
    live = source_clock({"cloud": "AzureCloud"}, wall=lambda: wall)
    assert isinstance(live, WallClock) and live.now() == wall and live.kind == "wall"

    def scan(at: datetime, clock: str | None, kind: str = "full") -> ScanRecord:
        return ScanRecord(at=at, subscriptions_scanned=1, gaps=0, by_check={}, by_severity={}, kind=kind,
                          figures={"clock": clock} if clock else {})

    def now(*scans: ScanRecord) -> datetime:
        return store_clock(scans, wall=lambda: wall).now()

    assert now() == wall
    assert now(scan(LONG_AGO_T, "recorded")) == LONG_AGO_T
    assert now(scan(LONG_AGO_T, "recorded"), scan(wall, None, "targeted")) == LONG_AGO_T
    assert now(scan(LONG_AGO_T, "recorded"), scan(LONG_AGO_T, "wall")) == wall
    assert now(scan(LONG_AGO_T, None)) == wall


def test_event_older_than_the_full_collections_wall_start_is_stale_right_after_it(tmp_path: Path) -> None:
    """Staleness is judged on the wall clock from the first event on: an event written before the full
    collection started (long after recorded_at) is dropped, not re-read, even before any targeted re-read."""
    folder = daemon_tenant(tmp_path / "t")
    wall = _FakeWall()
    d = _serve(tmp_path, folder, "http://127.0.0.1:9/unused", wall, RecordedTenant(folder).manifest)
    d.full_collection()
    d.accept(json.dumps([event(when=wall.t - timedelta(minutes=1))]).encode(), "application/json")
    report = d.process_pending()
    assert (report.stale, report.rereads) == (1, 0)
