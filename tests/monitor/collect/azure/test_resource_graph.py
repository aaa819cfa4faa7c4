"""Resource Graph collection: the real SDK over HTTPS against the replay server's Resource Graph on loopback."""

from __future__ import annotations

import dataclasses
import http.client
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from live_tenants import SUB2, rich_tenant
from tenantkit import SUB, write_tenant

from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.azure.resource_graph import (
    GRAPH_KINDS,
    GRAPH_PATH,
    QUERIES,
    GraphQuota,
    ResourceGraphReader,
    parse_timespan,
)
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.replay.graph import format_timespan
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.scan import ScanResult, run_scan

FAST = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "read_timeout": 5.0}
DEMO = Path(__file__).resolve().parents[4] / "monitor" / "demo_tenant"


def live_reader(server: ReplayServer, **settings: Any) -> LiveReader:
    return LiveReader(StaticTokenCredential("test-token"),
                      LiveSettings(arm_endpoint=server.base_url, ca_bundle=server.ca_bundle, **{**FAST, **settings}))


def scan_with(reader: Any, folder: Path) -> ScanResult:
    return run_scan(reader, load_config(None), manifest=RecordedTenant(folder).manifest)


def findings(result: ScanResult) -> list[dict[str, Any]]:
    return [f.to_dict() for f in result.evaluation.findings]


def gaps(result: ScanResult) -> list[tuple[Any, ...]]:
    return sorted((g.scope, g.type, g.code, g.status) for g in result.gaps)


def both_paths(folder: Path, settings: dict[str, Any] | None = None, **server: Any) -> dict[str, Any]:
    """Scan ``folder`` through ARM and through Resource Graph on one replay server; what each sent."""
    out: dict[str, Any] = {}
    with ReplayServer(folder, **server) as replay:
        with live_reader(replay, **(settings or {})) as arm:
            out["arm"] = scan_with(arm, folder)
            out["arm_requests"] = arm.stats.attempts
        out["arm_served"] = len(replay.requests)
        replay.clear_requests()
        with ResourceGraphReader(live_reader(replay, **(settings or {}))) as graph:
            out["rg"] = scan_with(graph, folder)
            out["rg_requests"] = graph.stats.attempts
            out["rg_queries"] = graph.queries_sent
        out["rg_log"] = replay.requests
    return out


def assert_identical(run: dict[str, Any]) -> None:
    assert findings(run["rg"]) == findings(run["arm"])
    assert gaps(run["rg"]) == gaps(run["arm"])
    a, b = run["arm"].snapshot, run["rg"].snapshot
    for name in ("private_endpoints", "private_link_services", "rmpls", "virtual_networks", "subnets",
                 "route_tables", "nsgs", "firewalls", "firewall_policies", "load_balancers", "nics",
                 "bastion_hosts", "dns_zones"):
        arm_objs, rg_objs = getattr(a, name), getattr(b, name)
        assert set(rg_objs) == set(arm_objs), name
        for key, obj in arm_objs.items():
            if obj.type.lower() != rg_objs[key].type.lower():
                # Microsoft's RMPL list example types its items privateLinkAssociations; the table is
                # indexed by what a resource is, so Resource Graph types them as the list's type.
                assert name == "rmpls" and obj.type == "Microsoft.Authorization/privateLinkAssociations"
                obj = dataclasses.replace(obj, type=rg_objs[key].type)
            assert rg_objs[key] == obj, (name, key)


def only_graph_posts(log: list[Any]) -> bool:
    return all(r.method == "GET" or (r.method == "POST" and r.path.lower() == GRAPH_PATH.lower()) for r in log)


def test_queries_answer_every_subscription_list_without_take_or_limit() -> None:
    """Proves: the fixed queries answer each plan list exactly once and never cut results with take/limit."""
    kinds = [k for q in QUERIES for k in q.kinds]
    assert sorted(kinds) == sorted(k for k, _ in SUBSCRIPTION_LISTS) and set(kinds) == GRAPH_KINDS
    for q in QUERIES:
        words = q.kql.lower().replace("|", " ").split()
        assert "take" not in words and "limit" not in words and "top" not in words
        assert all(f"'{t.lower()}'" in q.kql for t in q.types)


def test_rich_tenant_gives_identical_findings_over_several_pages(tmp_path: Path) -> None:
    """Proves: on the live-test tenant paged by 2, both paths give the same findings, gaps and snapshot objects."""
    folder = rich_tenant(tmp_path, endpoints=12)
    run = both_paths(folder, page_size=2)
    assert_identical(run)
    assert len(findings(run["rg"])) >= 15
    posts = [r for r in run["rg_log"] if r.method == "POST"]
    # The endpoints query alone spans (21 endpoints + 1 PLS) / 2 rows per page.
    assert run["rg_queries"] >= len(QUERIES) + 10
    assert len(posts) >= run["rg_queries"]
    assert only_graph_posts(run["rg_log"])
    # Subscription lists were not read through ARM: only by Resource Graph.
    assert not [r for r in run["rg_log"] if r.method == "GET" and r.path.lower().count("/") == 4
                and r.path.lower().startswith("/subscriptions/") and "/providers/microsoft.network/" in r.path.lower()]


def test_a_forbidden_subscription_is_isolated_by_splitting_the_batch(tmp_path: Path) -> None:
    """Proves: a batch with a 403 subscription is split, so only that subscription's lists become gaps."""
    folder = rich_tenant(tmp_path)
    with ReplayServer(folder) as replay, ResourceGraphReader(live_reader(replay)) as graph:
        result = scan_with(graph, folder)
    sub2 = [g for g in result.gaps if g.scope == f"/subscriptions/{SUB2}"]
    assert {g.type for g in sub2} == {t for _, t in SUBSCRIPTION_LISTS}
    assert {(g.code, g.status) for g in sub2} == {("AuthorizationFailed", 403)}
    # SUB's NIC list is recorded as 403: that query fails for SUB only; its endpoints were read.
    sub1 = [(g.type, g.code) for g in result.gaps if g.scope == f"/subscriptions/{SUB}"]
    assert sub1 == [("Microsoft.Network/networkInterfaces", "AuthorizationFailed")]
    assert result.snapshot.private_endpoints
    assert not result.snapshot.coverage.covers(f"/subscriptions/{SUB2}", "Microsoft.Network/privateEndpoints")


def test_a_failed_batch_becomes_coverage_gaps_never_empty_lists(tmp_path: Path) -> None:
    """Proves: Resource Graph answering 500 after every retry leaves gaps for each subscription's types."""
    folder = rich_tenant(tmp_path)
    with ReplayServer(folder, fail_first={GRAPH_PATH: 1000}) as replay, \
            ResourceGraphReader(live_reader(replay, retry_total=1)) as graph:
        result = scan_with(graph, folder)
        posts = [r for r in replay.requests if r.method == "POST"]
    graph_gaps = {(g.scope, g.type) for g in result.gaps if g.code == "InternalServerError"}
    assert graph_gaps == {(f"/subscriptions/{s}", t) for s in (SUB, SUB2) for _, t in SUBSCRIPTION_LISTS}
    assert {g.status for g in result.gaps if g.code == "InternalServerError"} == {500}
    assert len(posts) == len(QUERIES) * 2   # one batch, each query tried twice, a 5xx is never split
    assert not result.snapshot.private_endpoints
    assert not result.snapshot.coverage.covers(f"/subscriptions/{SUB}", "Microsoft.Network/privateEndpoints")


def test_quota_exhaustion_is_waited_out_not_run_into(tmp_path: Path) -> None:
    """Proves: when x-ms-user-quota-remaining reaches 0 the next query waits for the reset; no 429 is met."""
    folder = rich_tenant(tmp_path, endpoints=12)
    with ReplayServer(folder, page_size=4, graph_quota=3, graph_quota_window=0.4) as replay, \
            ResourceGraphReader(live_reader(replay), workers=2) as graph:
        result = scan_with(graph, folder)
        posts = [r for r in replay.requests if r.method == "POST"]
    assert findings(result)
    assert {r.status for r in posts} <= {200, 403}        # never 429
    assert graph.quota.waits >= 2 and graph.quota.waited >= 0.3
    windows = len(posts) / 3
    span = posts[-1].received - posts[0].received
    assert span >= (windows - 1) * 0.4 * 0.8               # the server's windows were respected


def test_throttled_queries_are_retried(tmp_path: Path) -> None:
    """Proves: a Resource Graph POST answered 429 with Retry-After is retried like a GET; findings unchanged."""
    folder = rich_tenant(tmp_path)
    run = both_paths(folder, {"retry_total": 12}, throttle_every=5, retry_after=0.01)
    assert_identical(run)
    assert any(r.status == 429 and r.method == "POST" for r in run["rg_log"])


def test_demo_tenant_identical_with_fewer_requests(tmp_path: Path) -> None:
    """Proves: the demo tenant gives the same findings both ways, with fewer requests through Resource Graph."""
    run = both_paths(DEMO)
    assert_identical(run)
    assert findings(run["rg"])
    assert run["rg_requests"] < run["arm_requests"]
    assert run["rg_requests"] == len(run["rg_log"]) and run["arm_requests"] == run["arm_served"]


def test_synth_tenant_identical_and_far_fewer_requests(tmp_path: Path) -> None:
    """Proves: a 30-subscription synthetic tenant gives identical findings; RG needs under half ARM's requests."""
    synth = pytest.importorskip("plmon.monitor.replay.synth")
    folder = tmp_path / "synth"
    synth.write_tenant(synth.generate(synth.SynthSpec(subscriptions=30, endpoints=300, seed=7)), folder)
    run = both_paths(folder)
    assert_identical(run)
    assert len(findings(run["rg"])) > 20
    assert run["rg_requests"] < run["arm_requests"]
    # ARM reads 12 lists per subscription; Resource Graph 5 queries for all 30 (plus pages). The reads
    # per endpoint and zone (zone groups, links, CNAMEs, targets) are ARM's on both paths.
    posts = sum(1 for r in run["rg_log"] if r.method == "POST")
    assert posts * 20 < 30 * len(SUBSCRIPTION_LISTS)
    assert run["arm_requests"] - run["rg_requests"] >= 30 * len(SUBSCRIPTION_LISTS) - posts


def test_replay_refuses_foreign_queries_and_tokens(tmp_path: Path) -> None:
    """Proves: the replay Resource Graph answers plmon's query shape only; other KQL and stray tokens are 400."""
    folder = write_tenant(tmp_path, {})
    with ReplayServer(folder) as replay:
        url = urlsplit(replay.base_url)

        def post(body: dict[str, Any]) -> tuple[int, Any]:
            conn = http.client.HTTPSConnection(url.hostname or "", url.port, timeout=5,
                                               context=ssl.create_default_context(cafile=replay.ca_bundle))
            try:
                conn.request("POST", f"{GRAPH_PATH}?api-version=2021-03-01", body=json.dumps(body).encode())
                response = conn.getresponse()
                return response.status, json.loads(response.read())
            finally:
                conn.close()

        good = {"subscriptions": [SUB], "query": QUERIES[0].kql, "options": {}}
        assert post(good) == (200, {"totalRecords": 0, "count": 0, "resultTruncated": "false", "facets": [],
                                    "data": []})
        assert post({**good, "query": "resources | take 5"})[1]["error"]["code"] == "InvalidQuery"
        assert post({**good, "query": "resources | where type in~ ('a/b') | summarize count()"})[0] == 400
        assert post({**good, "options": {"$skipToken": "bm90LW91cnM="}})[1]["error"]["code"] == "InvalidSkipToken"
        assert post({**good, "subscriptions": []})[0] == 400


def test_quota_headers_parse_and_gate() -> None:
    """Proves: TimeSpan quota headers parse both ways, and a spent quota blocks until its reset time."""
    assert parse_timespan("00:00:03") == 3 and parse_timespan("1.00:00:01") == 86401
    assert parse_timespan(format_timespan(0.25)) == pytest.approx(0.25) and parse_timespan("soon") is None
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    quota = GraphQuota(sleep=sleep, clock=lambda: clock[0])
    quota.before_send()
    quota.after_response({"x-ms-user-quota-remaining": "0", "x-ms-user-quota-resets-after": "00:00:02"})
    assert quota.before_send() == pytest.approx(2.0) and slept == [pytest.approx(2.0)]
    quota.after_response({"x-ms-user-quota-remaining": "5", "x-ms-user-quota-resets-after": "00:00:05"})
    assert quota.before_send() == 0.0 and quota.waits == 1


def test_cli_scan_via_resource_graph_matches_scan_from(tmp_path: Path) -> None:
    """Proves: plmon scan --via resource-graph against the replay server prints scan --from's findings."""
    folder = rich_tenant(tmp_path)
    env = {"PLMON_ARM_TOKEN": "test-token", "PLMON_ARM_RETRY_BACKOFF": "0.01", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-c", "from plmon.monitor.cli import main; main()", "scan", "--format", "json"]
    offline = subprocess.run([*cmd, "--from", str(folder)], capture_output=True, text=True, env=env, timeout=60)
    with ReplayServer(folder) as replay:
        graph = subprocess.run([*cmd, "--via", "resource-graph", "--arm-endpoint", replay.base_url,
                                "--ca-bundle", replay.ca_bundle], capture_output=True, text=True, env=env, timeout=60)
        assert any(r.method == "POST" for r in replay.requests)
    assert offline.returncode == graph.returncode == 0, graph.stderr[-2000:]
    assert json.loads(graph.stdout)["findings"] == json.loads(offline.stdout)["findings"]
    bad = subprocess.run([*cmd, "--via", "resource-graph", "--from", str(folder)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--via resource-graph" in bad.stderr


def test_a_refused_subscription_scope_is_a_gap_on_both_paths(tmp_path: Path) -> None:
    """A subscription recorded as refused (subscriptions/<s>.error.json, no lists of its own) gives the same 403
    gaps through ARM and through Resource Graph, never empty lists (which would be evidence of absence)."""
    folder = rich_tenant(tmp_path / "t")
    for refused_list in (folder / "arm" / "subscriptions" / SUB2).rglob("*.error.json"):
        refused_list.unlink()
    (folder / "arm" / "subscriptions" / f"{SUB2}.error.json").write_text(
        json.dumps({"status": 403, "error": {"code": "AuthorizationFailed", "message": "no access"}}))
    run = both_paths(folder)
    assert_identical(run)
    refused = {(t, s) for scope, t, _, s in gaps(run["rg"]) if SUB2 in scope}
    assert ("Microsoft.Network/privateEndpoints", 403) in refused
