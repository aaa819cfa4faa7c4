"""The Azure Function app: its triggers, invoked through the azure-functions library as the host would, run
the daemon's scenario with two instances sharing one Table store on Azurite."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import azure.functions.queue as queue_binding  # the QueueMessage the host builds, with its dequeue count
import azurite
import pytest
import yaml
from daemonkit import HOOK_SECRET, PUBLIC_CHECK, receiver, tenant, write_account
from functionkit import FUNCTION_DIR, load_app
from tenantkit import SUB

from plmon.alerts.delivery import RetryPolicy
from plmon.monitor.config import ScaleConfig, parse_config
from plmon.monitor.function_host import FunctionHost, reset_host
from plmon.monitor.state.store import FindingState

SAMPLES = Path(__file__).parents[1] / "fixtures" / "eventgrid"


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    return {f.get_function_name(): f for f in load_app().app.get_functions()}


def sample_event(name: str = "event-grid-schema_resource_write_success.json") -> dict[str, Any]:
    """Microsoft's published sample, its placeholders filled with the test tenant's storage account."""
    text = (SAMPLES / name).read_text()
    text = (text.replace("{subscription-id}", SUB).replace("{resource-group}", "rg1")
            .replace("{storage-name}", "st1"))
    event = json.loads(text)
    event["id"] = str(uuid.uuid4())
    event["eventTime"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")  # newer than the last read
    return event


def as_binding(event: dict[str, Any]) -> func.EventGridEvent:
    """What the Functions host hands the Event Grid trigger for that event."""
    return func.EventGridEvent(id=event["id"], data=event["data"], topic=event["topic"], subject=event["subject"],
                               event_type=event["eventType"],
                               event_time=datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00")),
                               data_version=event["dataVersion"])


def test_triggers_are_declared(functions: dict[str, Any]) -> None:
    """The app declares the timer, Event Grid, queue and anonymous HTTP health triggers with app-setting names."""
    bindings = {name: json.loads(f.get_function_json())["bindings"] for name, f in functions.items()}
    assert set(bindings) == {"full_collection", "resource_event", "queued_event", "health", "collection_shard"}
    timer = bindings["full_collection"][0]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%PLMON_COLLECTION_SCHEDULE%"
    assert bindings["resource_event"][0]["type"] == "eventGridTrigger"
    queue = bindings["queued_event"][0]
    assert queue["type"] == "queueTrigger" and queue["queueName"] == "%PLMON_EVENT_QUEUE%"
    assert queue["connection"] == "PLMON_QUEUE"
    http = next(b for b in bindings["health"] if b["type"] == "httpTrigger")
    assert http["authLevel"] == "ANONYMOUS" and http["route"] == "healthz" and http["methods"] == ["GET"]


def test_shipped_config_parses() -> None:
    """deploy/azure-function/plmon.yaml is a valid config once its Key Vault-backed settings are set."""
    data = yaml.safe_load((FUNCTION_DIR / "plmon.yaml").read_text())
    cfg = parse_config(data, env={"PLMON_STATE_ACCOUNT": "stplmon", "PLMON_WEBHOOK_URL": "https://soc.example/h",
                                  "PLMON_WEBHOOK_SECRET": "x"})
    assert cfg.state.url == "azuretables://stplmon/plmon"
    assert cfg.alerts[0].secret is not None


@pytest.fixture
def two_instances(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path, FunctionHost,
                                                                                      FunctionHost]]:
    """Two Function instances (two hosts, each with its own memory) over one Azurite Table store."""
    prefix = azurite.unique_prefix()
    folder = tenant(tmp_path / "t")
    with receiver() as rec:
        cfg = {"state": {"url": f"azuretables:///{prefix}?connection_string_env=PLMON_TEST_AZURITE"},
               "alerts": [{"type": "webhook", "name": "hook", "url": rec.url, "secret": HOOK_SECRET,
                           "min_severity": "high"}],
               "schedule": {"full_collection": "1h"}}
        (tmp_path / "plmon.yaml").write_text(yaml.safe_dump(cfg))
        monkeypatch.setenv("PLMON_CONFIG", str(tmp_path / "plmon.yaml"))
        monkeypatch.setenv("PLMON_FROM", str(folder))
        monkeypatch.setenv("PLMON_TEST_AZURITE", azurite.connection_string())
        fast = RetryPolicy(base=timedelta(milliseconds=50), cap=timedelta(milliseconds=200))
        a, b = FunctionHost.from_settings(retry_policy=fast), FunctionHost.from_settings(retry_policy=fast)
        try:
            yield rec, folder, a, b
        finally:
            reset_host(None)
            a.daemon.store.drop_tables()  # type: ignore[attr-defined]
            for h in (a, b):
                if h.daemon.scale is not None:
                    h.daemon.scale.close()
                h.daemon.intake.close()
                h.daemon.store.close()


def _public(rec: Any, kind: str) -> list[Any]:
    return [r for r in rec.got if r.event.get("type") == f"io.plmon.finding.{kind}"
            and r.event["data"]["check_id"] == PUBLIC_CHECK]


def test_event_becomes_one_signed_alert_across_two_instances(functions: dict[str, Any], two_instances: Any) -> None:
    """A write event, delivered to instance A by Event Grid and again to cold instance B by the queue, opens one
    signed alert; the resolve event on B closes it with one more; a timer run on A re-alerts nothing."""
    rec, folder, a, b = two_instances
    timer = functions["full_collection"].get_user_function()
    on_event = functions["resource_event"].get_user_function()
    on_queue = functions["queued_event"].get_user_function()
    health = functions["health"].get_user_function()

    reset_host(a)
    timer(None)  # the timer binding's argument is unused: the schedule is the whole input
    assert a.daemon.store.get_finding(PUBLIC_CHECK, f"/subscriptions/{SUB}/resourcegroups/rg1/providers/"
                                      "microsoft.storage/storageaccounts/st1") is None

    write_account(folder, "Enabled")
    opened = sample_event()
    on_event(as_binding(opened))                       # instance A: Event Grid push
    assert len(_public(rec, "opened")) == 1

    reset_host(b)                                      # instance B, cold: same event redelivered via the queue
    on_queue(func.QueueMessage(id="m1", body=json.dumps(opened).encode()))
    assert b.daemon.inventory is None                  # a duplicate never costs a collection
    on_queue(func.QueueMessage(id="m2", body=json.dumps(sample_event()).encode()))  # a new event for the same change
    assert b.daemon.inventory is not None              # cold start collected once
    assert len(_public(rec, "opened")) == 1            # the shared store knew the finding: no second alert

    alert = _public(rec, "opened")[0]
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), alert.body, hashlib.sha256).hexdigest()
    assert alert.headers["X-Plmon-Signature"] == expected
    assert alert.event["data"]["state"] == "open"

    write_account(folder, "Disabled")
    on_queue(func.QueueMessage(id="m3", body=json.dumps(sample_event()).encode()))
    assert len(_public(rec, "resolved")) == 1
    reset_host(a)
    on_event(as_binding(sample_event()))               # A's memory is older; the store decides: nothing new
    timer(None)
    assert len(_public(rec, "opened")) == 1 and len(_public(rec, "resolved")) == 1
    assert len({r.event["id"] for r in rec.got}) == len(rec.got)  # no alert id reached the receiver twice
    [finding] = [f for f in a.daemon.store.findings() if f.check_id == PUBLIC_CHECK]
    assert finding.state is FindingState.RESOLVED

    resp = health(func.HttpRequest(method="GET", url="/api/healthz", body=b""))
    assert resp.status_code == 200 and json.loads(resp.get_body())["store"] == "ok"


def test_bad_event_is_logged_not_raised(functions: dict[str, Any], two_instances: Any) -> None:
    """A queue message that is not an event is rejected with a log line (no retry storm), and queues nothing."""
    _, _, a, _ = two_instances
    reset_host(a)
    functions["queued_event"].get_user_function()(func.QueueMessage(id="x", body=b"not json"))
    assert a.daemon.intake.pending() == 0


def _collection_reads(h: FunctionHost) -> float:
    return float(h.daemon.metrics.arm_requests.labels("collection")._value.get())


def test_a_cold_instance_loads_the_shared_inventory_and_the_timer_collects_once_per_tick(
        functions: dict[str, Any], two_instances: Any) -> None:
    """The timer on A takes the schedule lease, collects and publishes the tick's collection and gives the lease back;
    cold instance B's first event loads that collection from blob storage (0 ARM reads) instead of collecting, and
    B's timer in the same tick collects nothing again; /healthz checks blob storage too."""
    _, folder, a, b = two_instances
    timer = functions["full_collection"].get_user_function()
    on_queue = functions["queued_event"].get_user_function()
    assert a.daemon.scale is not None and b.daemon.scale is not None

    now = datetime.now(UTC)
    a.clock = b.clock = lambda: now   # one tick for both timers, wherever the wall clock falls in it
    reset_host(a)
    timer(None)
    assert _collection_reads(a) > 0 and a.daemon.shared is not None and a.daemon.shared.source == "published"
    assert not a.daemon.scale.lease.held and a.daemon.scale.lease.state().state == "available"

    reset_host(b)
    write_account(folder, "Enabled")
    on_queue(func.QueueMessage(id="m1", body=json.dumps(sample_event()).encode()))
    assert b.daemon.inventory is not None and _collection_reads(b) == 0
    assert b.daemon.shared is not None and b.daemon.shared.source == "shared"
    assert b.daemon.shared.current == a.daemon.shared.current
    report = b.timer()
    assert not report.collected and _collection_reads(b) == 0   # this tick's collection is made: not twice
    assert [r.state for r in b.daemon.scale.book.collections()] == ["published"]

    ok, detail = b.health()
    assert ok and detail["blob"] == "ok" and detail["instance"] == b.daemon.scale.instance


def test_a_timer_whose_collection_outlasts_the_lease_keeps_it_and_runs_reminders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer renews the schedule lease for its whole call: a collection longer than the 15 s lease leaves it
    held, so the reminders due after it run (the jobs row records them), and nobody else could take the schedule.
    The lease's clock runs 4x wall time (its injectable monotonic), so the collection lasts 16 s on it in 4 s."""
    import time

    from plmon.monitor.state.lease_blob import BlobScheduleLease

    start = time.monotonic()
    kwdefaults = BlobScheduleLease.__init__.__kwdefaults__
    assert kwdefaults is not None
    monkeypatch.setitem(kwdefaults, "monotonic", lambda: start + (time.monotonic() - start) * 4)
    cfg = {"state": {"url": f"azuretables:///{azurite.unique_prefix()}?connection_string_env=PLMON_TEST_AZURITE"},
           "schedule": {"full_collection": "1h"}, "scale": {"lease_duration": "15s", "lease_renew": "1s"}}
    (tmp_path / "plmon.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("PLMON_CONFIG", str(tmp_path / "plmon.yaml"))
    monkeypatch.setenv("PLMON_FROM", str(tenant(tmp_path / "t")))
    monkeypatch.setenv("PLMON_TEST_AZURITE", azurite.connection_string())
    h = FunctionHost.from_settings()
    scale = h.daemon.scale
    assert scale is not None
    try:
        now = datetime.now(UTC)
        h.clock = lambda: now
        h.timer()                                     # the first sight of the jobs row starts their clocks
        assert scale.book.jobs().reminders_at == now

        collect = h.daemon.full_collection
        held_after: list[bool] = []

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(4.1)                           # 16.4 s on the lease's clock: longer than the lease
            held_after.append(scale.lease.held)
            return collect(*args, **kwargs)

        monkeypatch.setattr(h.daemon, "full_collection", slow)
        later = now + timedelta(days=2)               # the next tick, and reminders due
        h.clock = lambda: later
        assert h.timer().collected
        assert held_after == [True]
        assert scale.book.jobs().reminders_at == later
        assert not scale.lease.held and scale.lease.state().state == "available"
    finally:
        scale.close()
        h.daemon.intake.close()
        h.daemon.store.close()


def test_the_shard_trigger_is_declared_on_the_shard_queue_and_host_json_keeps_the_attempts(
        functions: dict[str, Any]) -> None:
    """collection_shard is a queue trigger on %PLMON_SHARD_QUEUE% through PLMON_QUEUE, and the host gives a message up
    after as many deliveries as plmon tries a shard (host.json maxDequeueCount = scale.shard_max_attempts)."""
    shard = json.loads(functions["collection_shard"].get_function_json())["bindings"][0]
    assert (shard["type"], shard["queueName"], shard["connection"], shard["name"]) == (
        "queueTrigger", "%PLMON_SHARD_QUEUE%", "PLMON_QUEUE", "message")
    host_json = json.loads((FUNCTION_DIR / "host.json").read_text())
    assert host_json["extensions"]["queues"]["maxDequeueCount"] == ScaleConfig().shard_max_attempts


@pytest.fixture
def fan_out_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionHost]:
    """A Function instance as the deployed app builds it (fan-out on), on its own Azurite prefix."""
    with _fan_out_host(tmp_path, monkeypatch) as h:
        yield h


@contextlib.contextmanager
def _fan_out_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **scale: Any) -> Iterator[FunctionHost]:
    cfg = {"state": {"url": f"azuretables:///{azurite.unique_prefix()}?connection_string_env=PLMON_TEST_AZURITE"},
           "schedule": {"full_collection": "1h"},
           "scale": {"lease_duration": "15s", "lease_renew": "1s", "shard_max_attempts": 2, **scale}}
    (tmp_path / "plmon.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("PLMON_CONFIG", str(tmp_path / "plmon.yaml"))
    monkeypatch.setenv("PLMON_FROM", str(tenant(tmp_path / "t")))
    monkeypatch.setenv("PLMON_TEST_AZURITE", azurite.connection_string())
    h = FunctionHost.from_settings(fan_out=True)
    now = datetime.now(UTC)
    h.clock = lambda: now
    reset_host(h)
    try:
        yield h
    finally:
        reset_host(None)
        if h._fanout is not None:   # a collection left open leaves a pass waiting: no thread outlives the test
            h._fanout.close()
        assert h.daemon.scale is not None
        h.daemon.scale.close()
        h.daemon.intake.close()
        h.daemon.store.close()


def _feed_shards(functions: dict[str, Any], h: FunctionHost, dequeue_count: Callable[[int], int] = lambda n: n,
                 rounds: int = 20) -> list[str]:
    """Hand every queued shard message to the user function as the host would (then delete it: it returned), until
    the collection is published; the outcomes."""
    assert h.daemon.scale is not None
    queue, book = h.daemon.scale.shards, h.daemon.scale.book
    trigger = functions["collection_shard"].get_user_function()
    outcomes: list[str] = []
    for _ in range(rounds):
        if [r.state for r in book.collections()] == ["published"]:
            break
        for m in queue.receive(timedelta(seconds=30), max_messages=32):
            trigger(queue_binding.QueueMessage(id=m.id, body=json.dumps(dict(m.body)).encode(),
                                      dequeue_count=dequeue_count(m.dequeue_count), pop_receipt=m.pop_receipt))
            outcomes.append(h.daemon.readiness(3600)[1]["collection"]["state"])
            queue.delete(m)
    return outcomes


def test_the_timer_queues_the_shards_and_the_shard_trigger_reads_them_and_publishes(
        functions: dict[str, Any], fan_out_host: FunctionHost) -> None:
    """The timer takes the lease, reads stage 0 and queues the shards (nothing published yet); fed to the user
    function as QueueMessages, the shards are read and the last one's drive step publishes the collection."""
    h = fan_out_host
    assert h.daemon.scale is not None
    functions["full_collection"].get_user_function()(None)
    rows = h.daemon.scale.book.collections()
    assert [r.state for r in rows] == ["stage1"] and h.daemon.scale.shards.approximate_count() > 0
    assert h.daemon.shared is not None and h.daemon.shared.current is None
    assert not h.daemon.scale.lease.held
    _feed_shards(functions, h)
    row = h.daemon.scale.book.collections()[0]
    assert row.state == "published" and row.gaps == 0
    assert h.daemon.shared.current is not None and h.daemon.shared.current.collection == row.manifest
    assert float(h.daemon.metrics.arm_requests.labels("shard")._value.get()) > 0
    assert h.daemon.evaluation is not None and h.daemon.evaluation.findings
    assert not h.daemon.scale.lease.held                      # given back after each drive step


def test_a_shard_delivered_past_its_attempts_is_a_gap_and_never_raises(
        functions: dict[str, Any], fan_out_host: FunctionHost) -> None:
    """A shard message delivered more often than scale.shard_max_attempts is recorded failed (its gap) instead of
    read, and the trigger returns normally (the host would otherwise poison it); the collection still publishes."""
    h = fan_out_host
    assert h.daemon.scale is not None
    functions["full_collection"].get_user_function()(None)
    first = h.daemon.scale.shards.receive(timedelta(seconds=30))[0]
    functions["collection_shard"].get_user_function()(queue_binding.QueueMessage(
        id=first.id, body=json.dumps(dict(first.body)).encode(), dequeue_count=3, pop_receipt=first.pop_receipt))
    h.daemon.scale.shards.delete(first)
    failed = h.daemon.scale.book.shard(first.body["collection"], first.body["shard"])
    assert failed is not None and failed.state == "failed" and "gave up" in failed.error
    _feed_shards(functions, h)
    row = h.daemon.scale.book.collections()[0]
    assert row.state == "published" and row.gaps == 1
    ok, detail = h.health()
    assert ok and detail["collection"]["shards"]["failed"] == 1


def test_a_stuck_collection_is_expired_by_its_deadline_message_once(
        functions: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer's collection leaves a deadline message, invisible until scale.collection_deadline; its shards are
    taken by takers that die. Handed to the shard trigger, that message expires the collection (every unfinished
    shard a ShardExpired gap) and it publishes; delivered again, it finds the collection finished and does nothing."""
    with _fan_out_host(tmp_path, monkeypatch, collection_deadline="3s") as h:
        scale = h.daemon.scale
        assert scale is not None
        functions["full_collection"].get_user_function()(None)
        stuck = scale.shards.receive(timedelta(minutes=10), max_messages=32)   # their takers die: never finished
        assert stuck and all(m.body["type"] == "shard" for m in stuck)          # the deadline's is not visible yet
        assert [r.state for r in scale.book.collections()] == ["stage1"]
        deadline = None
        for _ in range(300):                                   # Azurite shows it once its visibility has passed
            got = scale.shards.receive(timedelta(seconds=30))
            if got:
                deadline = got[0]
                break
            time.sleep(0.1)
        assert deadline is not None and deadline.body["type"] == "deadline"
        trigger = functions["collection_shard"].get_user_function()
        trigger(queue_binding.QueueMessage(id=deadline.id, body=json.dumps(dict(deadline.body)).encode(),
                                           dequeue_count=1, pop_receipt=deadline.pop_receipt))
        row = scale.book.collections()[0]
        shards = [s for s in scale.book.shards(row.collection) if s.stage == 1]
        assert row.state == "published" and row.gaps == len(shards) == len(stuck)
        assert all(s.state == "failed" and s.error.startswith("ShardExpired") for s in shards)
        assert h.daemon.snapshot is not None
        assert {g.code for g in h.daemon.snapshot.coverage.gaps if g.code.startswith("Shard")} == {"ShardExpired"}
        assert not scale.lease.held
        again = h.shard(json.dumps(dict(deadline.body)).encode())
        assert again.shard == "duplicate" and not again.published
        assert scale.book.collections()[0] == row                                # nothing moved
        assert h.daemon.metrics.collections.labels("ok")._value.get() == 1.0


def test_the_function_host_counts_lease_changes_as_serve_does(
        functions: dict[str, Any], fan_out_host: FunctionHost) -> None:
    """plmon_schedule_lease_changes_total{event}: the timer and a shard trigger's drive step each acquire and release
    the schedule lease, counted as plmon serve counts them and shown in /api/healthz's schedule."""
    h = fan_out_host
    functions["full_collection"].get_user_function()(None)
    _feed_shards(functions, h)
    ok, detail = h.health()
    assert ok
    changes = detail["schedule"]["lease_changes"]
    assert changes["acquired"] == changes["released"] >= 2 and changes["lost"] == 0
    text = h.daemon.metrics.render().decode()
    assert f'plmon_schedule_lease_changes_total{{event="acquired"}} {float(changes["acquired"])}' in text
    assert "plmon_schedule_leader 0.0" in text


def test_a_deadline_message_while_another_process_holds_the_lease_comes_back_later(
        fan_out_host: FunctionHost, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule lease is held elsewhere when the deadline message comes: nothing is expired here, and the message
    is queued again (invisible for a lease duration) rather than dropped or raised into the host's poison count."""
    h = fan_out_host
    scale = h.daemon.scale
    assert scale is not None
    h.timer()
    row = scale.book.collections()[0]
    queued = scale.shards.approximate_count()
    monkeypatch.setattr(scale.lease, "try_acquire", lambda: False)
    report = h.shard(json.dumps({"v": 1, "type": "deadline", "collection": row.collection}).encode())
    assert report.shard == "deferred" and not report.published
    assert scale.book.collections()[0] == row and scale.shards.approximate_count() == queued + 1
    visible = scale.shards.receive(timedelta(seconds=30), max_messages=32)
    assert visible and all(m.body["type"] == "shard" for m in visible)     # the new one is not visible yet
