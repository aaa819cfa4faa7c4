"""The daemon core without HTTP: which checks an event re-runs, and what re-reading a resource changes."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

from daemonkit import ACCOUNT_ID, ACCOUNT_PATH, config, event, tenant, write_account
from tenantkit import SUB, endpoint, provider_connection, storage_account, sub_list, write_tenant

from plmon.checks.registry import all_checks
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.reevaluate import checks_for, records_fed
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import FindingState

PE1 = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/pe1"
PE2 = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/pe2"
ST2_PATH = ACCOUNT_PATH.replace("/st1", "/st2")


def _daemon(tmp_path, folder):  # type: ignore[no-untyped-def]
    db = tmp_path / "state.db"
    return Daemon(config("http://127.0.0.1:9/unused"), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
                  channels={})


def _post(d: Daemon, *events: dict) -> None:
    d.accept(json.dumps(list(events)).encode(), "application/json")


def test_dependency_table_picks_the_checks_that_read_what_changed():
    """A route-table write re-runs route checks but not connection checks; a target write the public-access ones."""
    route = checks_for({"routeTables"})
    assert any(c.startswith("route.") for c in route)
    assert not any(c.startswith(("connection.", "pls.", "rmpl.", "public-access.")) for c in route)
    endpoint_checks = checks_for({"privateEndpoints"})
    assert {"connection.pending", "endpoint.provisioning-failed", "dns.no-zone-group"} <= endpoint_checks
    target = checks_for({"target"})
    assert "public-access.enabled-with-private-endpoint" in target and "connection.target-missing" in target
    assert not any(c.startswith(("route.", "nsg.")) for c in target)


def test_events_wait_for_the_first_collection_and_are_then_processed(tmp_path):
    """Events accepted before any inventory exists stay queued, and are processed once a collection has run."""
    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    write_account(folder, "Enabled")
    _post(d, event(when=datetime.now(UTC) + timedelta(seconds=5)))
    assert d.process_pending().events == 0 and d.intake.pending() == 1
    d.full_collection()
    report = d.process_pending()
    assert report.events == 1 and d.intake.pending() == 0
    assert d.store.get_finding("public-access.enabled-with-private-endpoint", ACCOUNT_ID.lower()).state == "open"


def test_deleted_endpoint_resolves_its_finding(tmp_path):
    """An endpoint removed from its list plus its delete event resolves the finding that endpoint had."""
    folder = tenant(tmp_path / "t")
    rejected = endpoint("pe1", ACCOUNT_ID, status="Rejected")
    (folder / "arm" / f"{sub_list('privateEndpoints')}.json").write_text(json.dumps({"value": [rejected]}))
    (folder / "arm" / f"{ACCOUNT_PATH}.json").write_text(json.dumps(storage_account("st1", public="Disabled")))
    d = _daemon(tmp_path, folder)
    d.full_collection()
    rec = d.store.get_finding("connection.rejected", PE1.lower())
    assert rec is not None and rec.state == FindingState.OPEN
    (folder / "arm" / f"{sub_list('privateEndpoints')}.json").write_text(json.dumps({"value": []}))
    _post(d, event(PE1, op="Microsoft.Network/privateEndpoints/delete",
                   event_type="Microsoft.Resources.ResourceDeleteSuccess"))
    report = d.process_pending()
    assert report.rereads == 1
    assert d.store.get_finding("connection.rejected", PE1.lower()).state == FindingState.RESOLVED


def test_new_endpoint_reads_its_new_target(tmp_path):
    """A new endpoint to a target no one pointed at before makes the worker read that target and judge it."""
    folder = tenant(tmp_path / "t")
    (folder / "arm" / f"{ST2_PATH}.json").write_text(json.dumps(storage_account("st2", public="Enabled")))
    d = _daemon(tmp_path, folder)
    d.full_collection()
    st2 = "/" + ST2_PATH
    assert d.store.get_finding("public-access.enabled-with-private-endpoint", st2.lower()) is None
    both = {"value": [endpoint("pe1", ACCOUNT_ID), endpoint("pe2", st2)]}
    (folder / "arm" / f"{sub_list('privateEndpoints')}.json").write_text(json.dumps(both))
    _post(d, event(PE2, op="Microsoft.Network/privateEndpoints/write"))
    d.process_pending()
    assert d.store.get_finding("public-access.enabled-with-private-endpoint", st2.lower()).state == "open"


def test_burst_for_one_resource_is_one_reread_and_latest_wins(tmp_path):
    """Out-of-order events for one resource in one batch fold into one re-read; irrelevant ones are ignored."""
    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    d.full_collection()
    write_account(folder, "Enabled")
    now = datetime.now(UTC) + timedelta(seconds=1)
    _post(d, event(when=now + timedelta(seconds=2)), event(when=now), event(when=now + timedelta(seconds=1)),
          event(op="Microsoft.Storage/storageAccounts/listKeys/action",
                event_type="Microsoft.Resources.ResourceActionSuccess"))
    report = d.process_pending()
    assert report.events == 4 and report.ignored == 1 and report.rereads == 1
    assert d.store.get_finding("public-access.enabled-with-private-endpoint", ACCOUNT_ID.lower()).state == "open"
    text = d.metrics.render().decode()
    assert 'plmon_events_ignored_total{reason="coalesced"} 2.0' in text
    assert 'plmon_events_ignored_total{reason="irrelevant_operation"} 1.0' in text


def test_untracked_target_write_reads_nothing(tmp_path):
    """A write to a storage account no endpoint targets spends no ARM read."""
    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    d.full_collection()
    _post(d, event("/" + ST2_PATH, when=datetime.now(UTC) + timedelta(seconds=1)))
    report = d.process_pending()
    assert report.rereads == 1 and report.transitions == []
    text = d.metrics.render().decode()
    assert 'plmon_rereads_total{outcome="untracked"} 1.0' in text
    assert 'phase="event"' not in text  # no ARM read was made for the event


class _GatedTenant(RecordedTenant):
    """A recorded tenant whose target read can be held mid-collection, to interleave an event with it."""

    def __init__(self, folder):  # type: ignore[no-untyped-def]
        super().__init__(folder)
        self.armed = False
        self.read_done = threading.Event()
        self.release = threading.Event()

    def get(self, path: str, *, kind: str = "") -> object:
        body = super().get(path, kind=kind)
        if self.armed and kind == "target":
            self.armed = False
            self.read_done.set()
            self.release.wait(10)
        return body


def test_event_during_full_collection_is_not_rolled_back_by_it(tmp_path):
    """A change handled by an event while a full collection runs survives that collection's older read."""
    folder = tenant(tmp_path / "t")
    reader = _GatedTenant(folder)
    db = tmp_path / "state.db"
    d = Daemon(config("http://127.0.0.1:9/unused"), reader, SqliteStore(db), SqliteIntake(db), channels={})
    d.full_collection()
    reader.armed = True
    collecting = threading.Thread(target=d.full_collection)
    collecting.start()
    assert reader.read_done.wait(10)           # the collection has read st1 as Disabled
    write_account(folder, "Enabled")
    _post(d, event(when=datetime.now(UTC) + timedelta(seconds=1)))
    d.process_pending()
    check = "public-access.enabled-with-private-endpoint"
    assert d.store.get_finding(check, ACCOUNT_ID.lower()).state == FindingState.OPEN
    reader.release.set()
    collecting.join(10)
    assert d.store.get_finding(check, ACCOUNT_ID.lower()).state == FindingState.OPEN


RMPL_ID = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Authorization/resourceManagementPrivateLinks/r1"


def _rmpl(status: str) -> dict:
    return {"id": RMPL_ID, "name": "r1", "type": "Microsoft.Authorization/resourceManagementPrivateLinks",
            "properties": {"privateEndpointConnections": [provider_connection(RMPL_ID, PE1, status=status)]}}


def test_rereads_rerun_the_checks_that_declare_what_they_feed():
    """Which checks a re-read runs comes from the checks' own declarations: a provider's list (whose connections
    decide which endpoints are approved) re-runs the DNS and public-access checks, a target read by id the RMPL
    association check that looks targets up, and every collection some check reads is fed by some re-read."""
    for provider in ("privateLinkServices", "resourceManagementPrivateLinks"):
        assert {"dns.no-zone-group", "public-access.enabled-with-private-endpoint"} <= checks_for({provider})
    assert "rmpl.association-dangling" in checks_for({"target"})
    units = {kind for kind, _ in SUBSCRIPTION_LISTS} | {"associations", "target"}
    assert {c for chk in all_checks().values() for c in chk.reads or ()} <= records_fed(units)


def test_approval_on_the_provider_side_is_acted_on_by_the_dns_check(tmp_path):
    """An RMPL approving an endpoint's connection (an RMPL write event) opens dns.no-zone-group for that endpoint
    without waiting for the next full collection."""
    rmpls = f"{sub_list('resourceManagementPrivateLinks', provider='Microsoft.Authorization')}.json"
    folder = write_tenant(tmp_path / "t", {
        sub_list("privateEndpoints"): {"value": [endpoint("pe1", RMPL_ID, status="Pending",
                                                          group_ids=("ResourceManagement",))]},
        rmpls.removesuffix(".json"): {"value": [_rmpl("Pending")]}})
    d = _daemon(tmp_path, folder)
    d.full_collection()
    assert d.store.get_finding("dns.no-zone-group", PE1.lower()) is None
    (folder / "arm" / rmpls).write_text(json.dumps({"value": [_rmpl("Approved")]}))
    _post(d, event(RMPL_ID, op="Microsoft.Authorization/resourceManagementPrivateLinks/write"))
    assert d.process_pending().rereads == 1
    rec = d.store.get_finding("dns.no-zone-group", PE1.lower())
    assert rec is not None and rec.state == FindingState.OPEN


def test_a_step_accounts_its_own_cpu_by_phase_on_metrics(tmp_path):
    """Each worker step reports its thread's CPU by phase (StepReport.cpu) and on /metrics, one observation per step
    and phase, the total being the phases' sum: what bench/serve.py reads as re-evaluation CPU per event."""
    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    d.full_collection()
    write_account(folder, "Enabled")
    _post(d, event())
    report = d.process_pending()
    assert report.events == 1 and report.transitions
    assert set(report.cpu) == {"intake", "reread", "relink", "evaluate", "lifecycle", "total"}
    assert all(v >= 0 for v in report.cpu.values())
    assert report.cpu["total"] == sum(v for k, v in report.cpu.items() if k != "total")
    text = d.metrics.render().decode()
    for phase in ("intake", "reread", "relink", "evaluate", "lifecycle", "total"):
        assert f'plmon_reevaluation_cpu_seconds_count{{phase="{phase}"}} 1.0' in text
    assert d.process_pending().events == 0   # nothing queued: no step, no observation
    assert 'plmon_reevaluation_cpu_seconds_count{phase="total"} 1.0' in d.metrics.render().decode()


def test_settle_freezes_the_collection_heap_before_readiness_and_a_later_one_collects_first(tmp_path):
    """plmon serve's collections settle the heap before the daemon is ready: the first freezes what it left alive (no
    gc.collect: it found almost nothing for seconds of held interpreter), a later one unfreezes and collects the
    state it replaced, then freezes again."""
    import gc

    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    seen: list[object] = []
    settle = d.settle_heap

    def watched() -> None:
        seen.append(d.last_collection)
        settle()
    d.settle_heap = watched  # type: ignore[method-assign]
    try:
        d.full_collection(settle=True)
        assert seen == [None] and gc.get_freeze_count() > 0 and d.last_collection is not None
        d.full_collection(settle=True)
        assert len(seen) == 2 and gc.get_freeze_count() > 0
        d.full_collection()   # the Function, tests: no settle
        assert len(seen) == 2
    finally:
        gc.unfreeze()


def test_an_existing_endpoints_event_leaves_the_read_set_and_coverage_as_they_were(tmp_path):
    """Re-reading an endpoint whose zone groups were read already copies no read set and rebuilds no coverage; a new
    endpoint's read is added to a copy, the previous inventory's set left as it was."""
    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    d.full_collection()
    assert d.inventory is not None and d.snapshot is not None
    read, coverage = d.inventory.read, d.snapshot.coverage
    _post(d, event(PE1, op="Microsoft.Network/privateEndpoints/write"))
    assert d.process_pending().rereads == 1
    assert d.inventory.read is read and d.snapshot.coverage is coverage
    both = {"value": [endpoint("pe1", ACCOUNT_ID), endpoint("pe2", ACCOUNT_ID)]}
    (folder / "arm" / f"{sub_list('privateEndpoints')}.json").write_text(json.dumps(both))
    _post(d, event(PE2, op="Microsoft.Network/privateEndpoints/write"))
    d.process_pending()
    assert (PE2.lower(), "microsoft.network/privateendpoints/privatednszonegroups") in d.inventory.read
    assert d.inventory.read is not read and (PE2.lower(), "microsoft.network/privateendpoints/privatednszonegroups") \
        not in read and d.snapshot.coverage.read == frozenset(d.inventory.read)


def test_a_step_runs_without_collector_passes_and_tidy_heap_collects_its_cycles_then_freezes(tmp_path):
    """The worker step runs with the cyclic GC off; afterwards tidy_heap finds the cycles it left (a cycle made in
    the step is gone, not frozen) and freezes what survives on a settled heap; with no step since, it does nothing."""
    import gc
    import weakref

    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    try:
        d.full_collection(settle=True)
        frozen = gc.get_freeze_count()
        seen: dict[str, object] = {}
        claim = d.intake.claim

        class Cycle:
            me: object = None

        def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen["gc_on"] = gc.isenabled()
            cycle = Cycle()
            cycle.me = cycle
            seen["cycle"] = weakref.ref(cycle)
            return claim(*args, **kwargs)
        d.intake.claim = watched  # type: ignore[method-assign]
        write_account(folder, "Enabled")
        _post(d, event())
        assert d.process_pending().events == 1 and gc.isenabled()
        assert seen["gc_on"] is False
        ref = seen["cycle"]
        assert isinstance(ref, weakref.ref)
        gc.disable()   # as the runtime's drain: no automatic pass may find the cycle first
        try:
            assert ref() is not None
            d.tidy_heap()
            assert ref() is None and gc.get_freeze_count() > frozen
            assert d.tidy_heap() == 0.0
        finally:
            gc.enable()
    finally:
        gc.unfreeze()


def test_a_later_collections_heap_is_settled_outside_the_daemons_lock(tmp_path):
    """settle_heap (a later collection's gc.collect holds the interpreter for seconds) runs with the daemon's lock
    free, so an event step is not also kept from the new state by it."""
    import gc
    import threading

    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    free: list[bool] = []
    settle = d.settle_heap

    def watched() -> None:
        t = threading.Thread(target=lambda: free.append(d._lock.acquire(timeout=5) and (d._lock.release() or True)))
        t.start()
        t.join()
        settle()
    d.settle_heap = watched  # type: ignore[method-assign]
    try:
        d.full_collection(settle=True)
        d.full_collection(settle=True)
    finally:
        gc.unfreeze()
    assert free == [True, True]


def test_the_daemon_drops_a_recorded_folders_index_after_a_collection_and_events_still_read_their_files(tmp_path):
    """The index of every recorded path served the collection; the daemon then lets it go, and an event's re-read
    (a changed file) and the next collection still read the folder as it is."""
    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    d.full_collection()
    reader = d._collect_reader.inner
    assert isinstance(reader, RecordedTenant) and reader._index == {}
    write_account(folder, "Enabled")
    _post(d, event())
    assert d.process_pending().transitions
    rec = d.store.get_finding("public-access.enabled-with-private-endpoint", ACCOUNT_ID.lower())
    assert rec is not None and rec.state == FindingState.OPEN
    write_account(folder, "Disabled")
    d.full_collection()
    rec = d.store.get_finding("public-access.enabled-with-private-endpoint", ACCOUNT_ID.lower())
    assert rec is not None and rec.state == FindingState.RESOLVED


def test_a_step_leaves_what_it_replaced_to_tidy_heap_and_an_untidied_daemon_keeps_only_the_last_few(tmp_path):
    """The inventory a step replaced is freed by tidy_heap, not during the step; a daemon that never tidies (the
    Function) keeps at most the last four steps' old states, so none grows without bound."""
    import gc
    import weakref

    folder = tenant(tmp_path / "t")
    d = _daemon(tmp_path, folder)
    try:
        d.full_collection()
        old = weakref.ref(d.inventory)
        write_account(folder, "Enabled")
        _post(d, event())
        assert d.process_pending().events == 1
        gc.collect()
        assert old() is not None and old() is not d.inventory   # kept: the step did not free it
        d.tidy_heap()
        assert old() is None
        first = weakref.ref(d.inventory)
        for i in range(6):
            write_account(folder, "Disabled" if i % 2 == 0 else "Enabled")
            _post(d, event())
            assert d.process_pending().events == 1
        gc.collect()
        assert first() is None and len(d._retired) == 4
    finally:
        d.store.close()
        d.intake.close()
