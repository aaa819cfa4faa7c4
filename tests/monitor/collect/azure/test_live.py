"""The live reader: real Azure SDK clients over HTTPS against the replay server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.rest import HttpRequest
from live_tenants import SUB2, rich_tenant
from tenantkit import SUB, sub_list, write_tenant

from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS, ReadError, budget_key, collect, default_workers, spread
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.replay.synth import SynthSpec, generate
from plmon.monitor.replay.synth import write_tenant as write_synth
from plmon.monitor.scan import ScanResult, run_scan

FAST = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "read_timeout": 60.0}


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rich_tenant(tmp_path_factory.mktemp("rich"))


@pytest.fixture(scope="module")
def offline(tenant: Path) -> ScanResult:
    recorded = RecordedTenant(tenant)
    return run_scan(recorded, load_config(None), manifest=recorded.manifest)


def reader_for(server: ReplayServer, **settings: Any) -> LiveReader:
    return LiveReader(StaticTokenCredential("test-token"),
                      LiveSettings(arm_endpoint=server.base_url, ca_bundle=server.ca_bundle, **{**FAST, **settings}))


def live_scan(server: ReplayServer, folder: Path, **settings: Any) -> tuple[ScanResult, LiveReader]:
    with reader_for(server, **settings) as reader:
        return run_scan(reader, load_config(None), manifest=RecordedTenant(folder).manifest), reader


def findings(result: ScanResult) -> list[dict[str, Any]]:
    return [f.to_dict() for f in result.evaluation.findings]


def gaps(result: ScanResult) -> list[tuple[Any, ...]]:
    return sorted((g.scope, g.type, g.code, g.status) for g in result.gaps)


@pytest.fixture()
def served(tenant: Path) -> Iterator[ReplayServer]:
    with ReplayServer(tenant, page_size=2) as server:
        yield server


def test_live_scan_gives_the_offline_findings(tenant: Path, offline: ScanResult, served: ReplayServer) -> None:
    """Proves: the SDK path, paged by 2, yields exactly the findings and gaps of scan --from the folder."""
    live, reader = live_scan(served, tenant)
    assert len(findings(offline)) >= 15
    assert findings(live) == findings(offline)
    assert gaps(live) == gaps(offline)
    assert live.snapshot.coverage.subscriptions_scanned == offline.snapshot.coverage.subscriptions_scanned
    paged = [r for r in served.requests if "skiptoken" in r.query]
    assert paged, "lists were not paged"
    assert reader.stats.attempts == len(served.requests)


def test_only_get_requests_reach_arm(tenant: Path, served: ReplayServer) -> None:
    """Proves: a whole live scan sends nothing but GET."""
    live_scan(served, tenant)
    assert set(served.methods) == {"GET"}


def test_a_forbidden_subscription_becomes_coverage_gaps(tenant: Path, served: ReplayServer) -> None:
    """Proves: a subscription answering 403 to every list leaves gaps with scope, status, code; the scan completes."""
    live, _ = live_scan(served, tenant)
    sub2 = [g for g in live.gaps if g.scope == f"/subscriptions/{SUB2}"]
    assert len(sub2) == len(SUBSCRIPTION_LISTS)   # every list (12 before the Virtual WAN kinds)
    assert {(g.code, g.status) for g in sub2} == {("AuthorizationFailed", 403)}
    nic = [g for g in live.gaps if g.scope == f"/subscriptions/{SUB}"]
    assert [(g.type, g.code) for g in nic] == [("Microsoft.Network/networkInterfaces", "AuthorizationFailed")]
    assert live.evaluation.findings


def test_paging_one_item_per_page_merges_every_page(tmp_path: Path) -> None:
    """Proves: a list served one item per page reads complete, in order, and identical to offline."""
    folder = rich_tenant(tmp_path, endpoints=40)
    recorded = RecordedTenant(folder)
    with ReplayServer(folder, page_size=1) as server, reader_for(server) as reader:
        body = reader.get(sub_list("privateEndpoints"), kind="privateEndpoints")
        pages = sum(1 for r in server.requests if "privateendpoints" in r.path.lower())
    want = recorded.get(sub_list("privateEndpoints"), kind="privateEndpoints")
    assert body == want
    assert "nextLink" not in body
    assert pages == len(want["value"]) >= 50


def test_throttling_honours_retry_after(tenant: Path, offline: ScanResult) -> None:
    """Proves: every 429 is retried after its Retry-After, counted, and the findings are unchanged."""
    with ReplayServer(tenant, page_size=2, throttle_every=4, retry_after=0.2) as server:
        live, reader = live_scan(server, tenant)
        log = server.requests
    throttled = [r for r in log if r.status == 429]
    assert len(throttled) >= 5
    assert reader.stats.throttled == len(throttled)
    assert reader.stats.retries == len(throttled)
    for r in throttled:
        again = next(x for x in log if x.path == r.path and x.query == r.query and x.received > r.received)
        assert again.received - r.received >= 0.19
    assert findings(live) == findings(offline)


def test_server_errors_are_retried(tenant: Path, offline: ScanResult) -> None:
    """Proves: 500s on a list are retried with backoff and the read then succeeds."""
    with ReplayServer(tenant, fail_first={f"/{sub_list('privateEndpoints')}".lower(): 2}) as server:
        live, reader = live_scan(server, tenant)
    assert reader.stats.server_errors == 2
    assert reader.stats.retries == 2
    assert findings(live) == findings(offline)


def test_a_read_refused_four_times_in_a_row_is_still_retried(tenant: Path, offline: ScanResult) -> None:
    """Proves: retry_total governs bad statuses too (azure-core alone gives up after 3): a list answered 500 four
    times, as a burst of 429s would, is read on its fifth attempt instead of becoming a gap."""
    with ReplayServer(tenant, fail_first={f"/{sub_list('privateEndpoints')}".lower(): 4}) as server:
        live, reader = live_scan(server, tenant)
    assert reader.stats.server_errors == 4
    assert reader.stats.retries == 4
    assert gaps(live) == gaps(offline)
    assert findings(live) == findings(offline)


def test_server_errors_beyond_the_retry_budget_become_a_gap(tenant: Path) -> None:
    """Proves: a list that keeps failing with 500 ends as a gap with status 500, not an exception."""
    with ReplayServer(tenant, fail_first={f"/{sub_list('routeTables')}".lower(): 50}) as server:
        live, reader = live_scan(server, tenant, retry_total=2)
    gap = [g for g in live.gaps if g.type == "Microsoft.Network/routeTables" and g.scope.endswith(SUB)]
    assert [(g.status, g.code) for g in gap] == [(500, "InternalServerError")]
    assert reader.stats.server_errors == 3


def test_a_hung_answer_times_out_into_a_gap(tenant: Path) -> None:
    """Proves: a request ARM never answers ends after the read timeout as a Timeout gap; the scan completes."""
    with ReplayServer(tenant, hang_paths=[f"/{sub_list('routeTables')}".lower()]) as server:
        started = time.perf_counter()
        live, _ = live_scan(server, tenant, read_timeout=0.3, retry_total=1)
        elapsed = time.perf_counter() - started
    gap = [g for g in live.gaps if g.type == "Microsoft.Network/routeTables" and g.scope.endswith(SUB)]
    assert [g.code for g in gap] == ["Timeout"]
    assert elapsed < 5
    assert live.evaluation.findings


def test_read_budget_paces_requests(tenant: Path) -> None:
    """Proves: with a small per-subscription bucket the reader waits for tokens instead of bursting."""
    with ReplayServer(tenant) as server, reader_for(server, budget_capacity=2, budget_refill=40) as reader:
        inv = collect(reader)
    assert inv.stats.requests > 20
    assert reader.stats.budget_wait > 0.2


def test_provider_registration_post_is_refused(tmp_path: Path) -> None:
    """Proves: azure-mgmt-core's auto-registration POST after a 409 never leaves plmon; the read fails cleanly."""
    folder = write_tenant(tmp_path, {sub_list("privateEndpoints") + ".error": {
        "status": 409, "error": {"code": "MissingSubscriptionRegistration",
                                 "message": "The subscription is not registered to use namespace "
                                            "'Microsoft.Network'."}}})
    with ReplayServer(folder) as server, reader_for(server) as reader:
        with pytest.raises(ReadError) as err:
            reader.get(sub_list("privateEndpoints"), kind="privateEndpoints")
        assert set(server.methods) == {"GET"}
    assert err.value.code == "WriteRefused"


def test_a_write_cannot_be_sent_through_any_client(tenant: Path, served: ReplayServer) -> None:
    """Proves: even a direct PUT through a reader's SDK pipeline is refused before it is sent."""
    with reader_for(served) as reader:
        client = reader._client("network")
        with pytest.raises(Exception, match="read-only"):
            client._client.send_request(HttpRequest("PUT", served.base_url + "/" + sub_list("privateEndpoints")))
    assert "PUT" not in served.methods


def test_foreign_next_link_is_not_followed(served: ReplayServer) -> None:
    """Proves: the bearer token is never sent to a nextLink outside the ARM endpoint."""
    with reader_for(served) as reader:
        with pytest.raises(ReadError) as err:
            reader._check_next_link("https://attacker.example/steal?x=1", "subscriptions")
        reader._check_next_link(served.base_url + "/subscriptions?$skiptoken=2", "subscriptions")
    assert err.value.code == "ForeignNextLink"


def test_unknown_target_type_asks_its_provider_for_an_api_version(tmp_path: Path) -> None:
    """Proves: a target type outside the table gets the provider's newest GA api-version, looked up once."""
    odd = f"subscriptions/{SUB}/resourceGroups/rg1/providers/Contoso.Widgets/widgets/w"
    folder = write_tenant(tmp_path, {
        f"subscriptions/{SUB}/providers/Contoso.Widgets": {"resourceTypes": [
            {"resourceType": "widgets", "apiVersions": ["2025-01-01-preview", "2024-02-01", "2023-01-01"]}]},
        odd + "1": {"id": "/" + odd + "1"}, odd + "2": {"id": "/" + odd + "2"}})
    with ReplayServer(folder) as server, reader_for(server) as reader:
        assert reader.get(odd + "1", kind="target") == {"id": "/" + odd + "1"}
        assert reader.get(odd + "2", kind="target") == {"id": "/" + odd + "2"}
        log = server.requests
    widget_reads = [r.query for r in log if "/widgets/" in r.path]
    assert widget_reads == ["api-version=2024-02-01"] * 2
    assert sum(1 for r in log if r.path.endswith("Contoso.Widgets")) == 1


def test_unreachable_endpoint_completes_with_gaps(tmp_path: Path) -> None:
    """Proves: an ARM endpoint nobody answers gives a completed collection whose gaps say so."""
    reader = LiveReader(StaticTokenCredential("t"), LiveSettings(arm_endpoint="https://127.0.0.1:9", retry_total=0))
    with reader:
        inv = collect(reader)
    assert {g.code for g in inv.gaps} == {"ConnectionFailed"}
    assert inv.stats.requests == 2


@pytest.fixture(scope="module")
def four_subscriptions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("four") / "t"
    write_synth(generate(SynthSpec(subscriptions=4, endpoints=120, seed=11)), folder)
    return folder


def test_grown_concurrency_within_arm_limits_meets_no_throttling(four_subscriptions: Path) -> None:
    """Proves: a 4-subscription tenant read with the default concurrency (grown to 16 workers) against a
    replay enforcing per-subscription read buckets meets (almost) no 429 when the client's budget mirrors them,
    and gets exactly the offline findings and gaps; without the client budget the same buckets do throttle, so
    the limits bite and it is the budget that keeps the workers within them. The client's bucket is 3 tokens
    smaller: requests reach the server some milliseconds after they spent their token, with varying delays,
    which at a refill of 60/s would otherwise let a token's worth of jitter through now and then."""
    recorded = RecordedTenant(four_subscriptions)
    offline = run_scan(recorded, load_config(None), manifest=recorded.manifest)
    limits = {"budget_capacity": 12, "budget_refill": 60.0}
    with ReplayServer(four_subscriptions, latency_ms=5, arm_limits=(15, 60)) as server:
        live, reader = live_scan(server, four_subscriptions, **limits)
        assert live.stats.workers == default_workers(4) == 16
        assert server.statuses[429] <= 2
        assert reader.stats.budget_wait > 0  # the budget, not ARM, paced the reads
        assert findings(live) == findings(offline)
        assert gaps(live) == gaps(offline)
        server.clear_requests()
        time.sleep(0.5)  # the buckets refill
        live_scan(server, four_subscriptions, budget_capacity=None)
        assert server.statuses[429] > 2  # (retries may even run out: then reads become gaps)


def test_default_workers_grow_with_subscriptions(four_subscriptions: Path) -> None:
    """Proves: 4 workers per subscription, never below the old fixed 8 nor above 64; --workers still wins,
    and a scoped read counts only the subscriptions it reads."""
    assert [default_workers(n) for n in (0, 1, 2, 3, 8, 16, 100)] == [8, 8, 8, 12, 32, 64, 64]
    recorded = RecordedTenant(four_subscriptions)
    assert collect(recorded, manifest=recorded.manifest).stats.workers == 16
    assert collect(recorded, manifest=recorded.manifest, workers=3).stats.workers == 3
    one = recorded.get("subscriptions", kind="subscriptions")["value"][0]["subscriptionId"]
    assert collect(recorded, manifest=recorded.manifest, subscriptions=[one]).stats.workers == 8


def test_reads_by_id_are_interleaved_across_subscriptions() -> None:
    """Proves: spread() takes each budget key's jobs in turn, keeping each key's order, so the workers draw on
    every subscription's bucket at once instead of emptying one at a time."""
    order: list[str] = []

    def job(name: str) -> Any:
        return lambda: order.append(name)

    pairs = [("a", job("a1")), ("a", job("a2")), ("a", job("a3")), ("b", job("b1")), ("tenant", job("t1"))]
    for fn in spread(pairs):
        fn()
    assert order == ["a1", "b1", "t1", "a2", "a3"]
    assert budget_key("/subscriptions/ABC/resourceGroups/rg/providers/X/y/z") == "abc"
    assert budget_key("/providers/Microsoft.Management/managementGroups/g") == "tenant"


def test_reads_by_id_start_once_the_last_list_is_parsed(four_subscriptions: Path) -> None:
    """Proves: with several workers the reads by id (targets, NICs, policies) are queued as soon as the last
    subscription list is parsed, so they run while child lists are still being read (no barrier between the two
    phases), with the one-worker scan's reads, findings and gaps."""
    import threading

    recorded = RecordedTenant(four_subscriptions)
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Slowed:
        """The recorded tenant, with each zone-group read taking a few ms (as a live read waits on ARM)."""

        def get(self, path: str, *, kind: str) -> Any:
            with lock:
                events.append(("start", kind))
            if kind == "privateDnsZoneGroups":
                time.sleep(0.002)
            try:
                return recorded.get(path, kind=kind)
            finally:
                with lock:
                    events.append(("end", kind))

    many = run_scan(Slowed(), load_config(None), manifest=recorded.manifest, workers=6)
    first_target = events.index(("start", "target"))
    last_zone_group = max(i for i, e in enumerate(events) if e == ("end", "privateDnsZoneGroups"))
    assert first_target < last_zone_group
    one = run_scan(RecordedTenant(four_subscriptions), load_config(None), manifest=recorded.manifest, workers=1)
    assert many.stats.requests == one.stats.requests
    assert findings(many) == findings(one)
    assert gaps(many) == gaps(one)
