"""plmon serve's delivery threads: an event's alert is not queued behind the first collection's backlog."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemonkit import ACCOUNT_ID, ACCOUNT_PATH, HOOK_SECRET, PUBLIC_CHECK, SECRET, event, receiver, write_account
from tenantkit import endpoint, storage_account, sub_list, write_tenant

import plmon.monitor.service.runtime as runtime_module
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.runtime import Runtime
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import OutboxRow

BACKLOG = 60  # endpoints that failed to provision: the first collection opens a finding, and an alert, for each


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
    with receiver(0.08) as rec:
        cfg = parse_config({
            "server": {"secret": SECRET},
            # one alert per request, as a backlog without digests
            "alerts": [{"type": "webhook", "name": "hook", "url": rec.url, "secret": HOOK_SECRET,
                        "min_severity": "high", "digest_threshold": 100_000}],
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
            assert rec.wait_for(lambda r: True, 10), "the backlog never started"
            write_account(folder, "Enabled")
            daemon.accept(json.dumps([event()]).encode(), "application/json")
            daemon.wake.set()
            hits = rec.wait_for(lambda r: r.event["type"] == "io.plmon.finding.opened"
                                and r.event["data"]["check_id"] == PUBLIC_CHECK, 30)
            assert hits, "the event's alert never arrived"
            at = rec.got.index(hits[0])
            assert at < BACKLOG // 2, f"the event's alert arrived {at + 1}th, behind the backlog"
            assert rec.wait_for(lambda r: len(rec.got) >= BACKLOG + 1, 30)
        finally:
            runtime.stop()
    ids = Counter(r.event["id"] for r in rec.got)
    assert len(ids) == BACKLOG + 1 and max(ids.values()) == 1


def test_backlog_steps_aside_for_events_but_not_when_the_first_lane_waits_on_its_send(tmp_path: Path) -> None:
    """Before each backlog send the runtime waits while an event is under way, except for the earlier alert of a
    finding the first lane is sending: that lane is waiting for this very send."""
    folder = _tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    cfg = parse_config({"server": {"secret": SECRET}}, env={})
    runtime = Runtime(Daemon(cfg, RecordedTenant(folder), SqliteStore(db), SqliteIntake(db)))
    waits: list[float] = []
    runtime._priority.wait_idle = lambda timeout, unless=None: waits.append(timeout)  # type: ignore[method-assign]

    def row(key: str) -> OutboxRow:
        return OutboxRow(alert_id=f"a-{key}", channel="hook", check_id=PUBLIC_CHECK, resource_key=key, seq=1,
                         kind="opened", created_at=datetime.now(UTC), payload={})

    runtime._sending_first = frozenset({(PUBLIC_CHECK, "hot")})
    runtime._step_aside([row("hot")])
    assert waits == []
    runtime._step_aside([row("cold")])
    assert len(waits) == 1


def _runtime(tmp_path: Path) -> Runtime:
    folder = _tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    cfg = parse_config({"server": {"secret": SECRET}}, env={})
    return Runtime(Daemon(cfg, RecordedTenant(folder), SqliteStore(db), SqliteIntake(db)))


def _other_row() -> OutboxRow:
    return OutboxRow(alert_id="a-other", channel="hook", check_id=PUBLIC_CHECK, resource_key="other", seq=1,
                     kind="opened", created_at=datetime.now(UTC), payload={})


def test_a_backlog_send_does_not_wait_while_the_first_lane_waits_for_an_alert_the_pass_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog pass holding an earlier alert of a finding handed to the first lane sends its other rows at once:
    the hand-over keeps the runtime busy until the lane has sent, and the lane waits for the pass (a mutual wait,
    one YIELD_AT_MOST per send, up to the lane's 5 s patience)."""
    monkeypatch.setattr(runtime_module, "YIELD_AT_MOST", 60.0)
    runtime = _runtime(tmp_path)
    hot = (PUBLIC_CHECK, "hot")
    runtime.daemon.delivery._in_flight[hot] += 1      # the backlog pass has claimed the finding's earlier alert
    runtime._alerts_queued([hot])                     # an event hands the finding to the first lane: busy
    assert runtime._priority._busy == 1
    done = threading.Event()
    threading.Thread(target=lambda: (runtime._step_aside([_other_row()]), done.set()), daemon=True).start()
    assert done.wait(30), "the backlog send waited for the hand-over that waits for it"


def test_a_backlog_send_waiting_for_an_event_is_released_when_the_first_lane_takes_a_finding_it_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A send that began waiting while an event ran stops waiting once that event hands the first lane a finding
    whose alert the pass holds (the lane would otherwise wait for the send that waits for the lane)."""
    monkeypatch.setattr(runtime_module, "YIELD_AT_MOST", 60.0)
    runtime = _runtime(tmp_path)
    hot = (PUBLIC_CHECK, "hot")
    runtime.daemon.delivery._in_flight[hot] += 1
    runtime._priority.enter()                         # an event is under way
    done = threading.Event()
    threading.Thread(target=lambda: (runtime._step_aside([_other_row()]), done.set()), daemon=True).start()
    assert not done.wait(0.3)                         # it steps aside for the event
    runtime._alerts_queued([hot])
    assert done.wait(30), "the hand-over did not release the waiting backlog send"


def test_queued_urgent_alerts_keep_the_runtime_busy_until_the_first_lane_has_sent_them(tmp_path: Path) -> None:
    """From the daemon's hand-over to the first lane's send, what waits for idle (the backlog, the worker's heap
    tidy) waits: the lane's thread may not have woken yet when the worker looks."""
    folder = _tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    cfg = parse_config({"server": {"secret": SECRET}}, env={})
    runtime = Runtime(Daemon(cfg, RecordedTenant(folder), SqliteStore(db), SqliteIntake(db)))
    sent: list[list[tuple[str, str]]] = []

    def deliver_first(findings: list[tuple[str, str]], patience: float) -> None:
        sent.append(findings)
        runtime._stopping.set()   # one pass of the lane
    runtime.daemon.deliver_first = deliver_first  # type: ignore[assignment, method-assign]
    runtime._alerts_queued([(PUBLIC_CHECK, "a")])
    runtime._alerts_queued([(PUBLIC_CHECK, "b")])
    assert runtime._priority._busy == 2
    runtime._send_first()
    assert sent == [[(PUBLIC_CHECK, "a"), (PUBLIC_CHECK, "b")]] and runtime._priority._busy == 0


def test_an_event_arriving_after_a_drain_goes_before_the_heap_tidy(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker tidies the heap once the lanes are idle, but not while a new event waits: that event is processed
    first instead of waiting up to YIELD_AT_MOST behind the lanes."""
    monkeypatch.setattr(runtime_module, "YIELD_AT_MOST", 60.0)
    runtime = _runtime(tmp_path)
    assert runtime._settled_for_tidy()                # idle, no event: tidy now
    runtime._priority.enter()                         # a lane is sending
    runtime.daemon.wake.set()                         # and an event arrived
    done: list[bool] = []
    worker = threading.Thread(target=lambda: done.append(runtime._settled_for_tidy()), daemon=True)
    worker.start()
    worker.join(30)
    assert done == [False], "the tidy waited for the lanes while an event was queued"
