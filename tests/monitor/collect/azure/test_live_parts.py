"""The small pieces of live collection: the read budget, credentials, endpoints and env tuning."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from plmon.monitor.collect.azure.budget import TokenBucket
from plmon.monitor.collect.azure.credentials import (
    StaticTokenCredential,
    arm_credential,
    cloud_name,
    normalise_endpoint,
    scope_for,
)
from plmon.monitor.collect.azure.live import _EnvOnceSession
from plmon.monitor.collect.azure.policies import RequestStats, budget_scope
from plmon.monitor.collect.sources import live_settings_from_env
from plmon.monitor.errors import InputError


def test_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    """Proves: capacity requests pass at once, the next ones wait 1/rate seconds each, across threads."""
    bucket = TokenBucket(capacity=5, refill_per_second=50)
    started = time.perf_counter()
    threads = [threading.Thread(target=bucket.take) for _ in range(15)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert 0.18 <= elapsed < 1.0   # 10 tokens beyond the burst at 50/s = 0.2 s


def test_bucket_with_a_clock_counts_waits_exactly() -> None:
    """Proves: with an injected clock, the wait for a token is exactly the deficit over the rate."""
    now = [0.0]
    bucket = TokenBucket(2, 4, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.take() == pytest.approx(0.25)


def test_budget_scope_is_the_subscription_or_the_tenant() -> None:
    """Proves: reads spend their subscription's budget; tenant-level reads share one."""
    assert budget_scope("https://h/subscriptions/ABC/providers/x?api-version=1") == "abc"
    assert budget_scope("https://h/providers/Microsoft.Management/managementGroups") == "tenant"


def test_static_token_and_env() -> None:
    """Proves: PLMON_ARM_TOKEN (with or without 'Bearer ') is the token, and its repr never shows it."""
    cred = arm_credential({"PLMON_ARM_TOKEN": "Bearer abc.def"})
    assert isinstance(cred, StaticTokenCredential)
    assert cred.get_token("s").token == "abc.def"
    assert "abc" not in repr(cred)


def test_endpoints_scopes_and_clouds() -> None:
    """Proves: the token scope follows the endpoint and only https endpoints are accepted."""
    assert scope_for("https://management.usgovcloudapi.net/") == "https://management.usgovcloudapi.net/.default"
    assert normalise_endpoint(None) == "https://management.azure.com"
    assert cloud_name("https://management.chinacloudapi.cn") == "AzureChinaCloud"
    assert cloud_name("https://127.0.0.1:8443") == "Custom"
    with pytest.raises(InputError):
        normalise_endpoint("http://management.azure.com")


def test_env_tuning_and_its_errors() -> None:
    """Proves: PLMON_ARM_* tune retries, timeouts and the budget; bad values are InputErrors."""
    s = live_settings_from_env(None, None, {"PLMON_ARM_RETRY_TOTAL": "2", "PLMON_ARM_READ_TIMEOUT": "1.5",
                                            "PLMON_ARM_BUDGET": "100/10"})
    assert (s.retry_total, s.read_timeout, s.budget_capacity, s.budget_refill) == (2, 1.5, 100, 10)
    assert live_settings_from_env(None, None, {"PLMON_ARM_BUDGET": "off"}).budget_capacity is None
    for bad in ({"PLMON_ARM_RETRY_TOTAL": "x"}, {"PLMON_ARM_BUDGET": "250"}, {"PLMON_ARM_READ_TIMEOUT": "-1"}):
        with pytest.raises(InputError):
            live_settings_from_env(None, None, bad)


SESSION_URLS = ["https://management.azure.com/subscriptions/s1/providers/Microsoft.Network/privateEndpoints?api-version=1",
                "https://bypass.example:8443/subscriptions?api-version=2", "https://127.0.0.1:4443/x/ä b?api-version=3"]


@pytest.mark.parametrize("verify", [True, None, False, "/given/ca.pem"])
def test_env_once_session_settings_are_requests_own(monkeypatch: pytest.MonkeyPatch, verify: Any) -> None:
    """Proves: proxies, no_proxy and the CA bundle variables give the same settings as requests' own lookup."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "bypass.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    ours, theirs = _EnvOnceSession(), requests.Session()
    for url in SESSION_URLS * 2:  # the second round answers from what the first remembered
        assert ours.merge_environment_settings(url, {}, None, verify, None) \
            == theirs.merge_environment_settings(url, {}, None, verify, None)


def test_env_once_session_prepares_what_requests_prepares(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: azure-core's plain GET is prepared and sent with the same URL, headers, body and settings."""
    sent: dict[str, Any] = {}

    def capture(name: str) -> Callable[..., requests.Response]:
        def send(prep: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            sent[name] = (prep.method, prep.url, dict(prep.headers), prep.body, dict(prep.hooks), kwargs)
            return requests.Response()
        return send

    headers = {"Authorization": "Bearer t", "x-ms-client-request-id": "id", "Accept": "application/json",
               "User-Agent": "azsdk-python plmon"}
    for url in SESSION_URLS:
        ours, theirs = _EnvOnceSession(), requests.Session()
        monkeypatch.setattr(ours, "send", capture("ours"))
        monkeypatch.setattr(theirs, "send", capture("theirs"))
        for session in (ours, theirs):
            session.request("GET", url, headers=headers, data=None, files=None, verify="/ca.pem", timeout=(10, 60),
                            cert=None, allow_redirects=False, proxies=None, stream=False)
        assert sent["ours"] == sent["theirs"]


def test_request_stats_count_every_attempt_across_threads() -> None:
    """Proves: counts appended without a lock add up exactly, also past the fold threshold."""
    stats = RequestStats()

    def work() -> None:
        for _ in range(3000):
            stats.add(attempts=1, retries=0, budget_wait=0.001)
            stats.status(200)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats.add(throttled=1)
    stats.status(429)
    assert (stats.attempts, stats.retries, stats.throttled, stats.by_status) == (12000, 0, 1, {200: 12000, 429: 1})
    assert stats.as_dict()["budget_wait_s"] == pytest.approx(12.0)


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:8443", "https://arm.example/base/", "https://management.azure.com"])
def test_plain_paths_get_the_url_azure_core_formats(endpoint: str) -> None:
    """Proves: the URL the reader writes directly for a plain path is the one azure-core's format_url and query
    helper give, for every SDK client; a path with a character they treat specially is left to them."""
    from azure.core.rest import HttpRequest

    from plmon.monitor.collect.azure.live import _URL_SPECIAL, LiveReader, LiveSettings

    reader = LiveReader(StaticTokenCredential("t"), LiveSettings(arm_endpoint=endpoint))
    paths = ["subscriptions", "subscriptions/s1/providers/Microsoft.Network/privateEndpoints",
             "subscriptions/s1/resourceGroups/r g/providers/Microsoft.Network/privateEndpoints/pe(1)%20é/x",
             "a//b", "subscriptions/s1/x{y}", "subscriptions/s1/x;y", "subscriptions/s1/x?y=1"]
    for sdk in ("network", "privatedns", "privatelinks", "resources", "subscriptions", "managementgroups"):
        client = reader._client(sdk)
        prefix = reader._prefixes[sdk]
        assert prefix is not None
        for path in paths:
            if _URL_SPECIAL.intersection(path):
                continue
            want = HttpRequest("GET", client._client.format_url("/" + path, endpoint=reader.endpoint),
                               params={"api-version": "2020-01-01"}).url
            assert f"{prefix}{path}?api-version=2020-01-01" == want


def test_parallel_runs_every_job_and_raises_the_first_failure_in_order() -> None:
    """Proves: the collection's worker threads run every job once, each in a copy of the caller's context, and
    the failure of the earliest failing job (in job order) is raised after all have run."""
    import contextvars

    from plmon.monitor.collect.inventory import Inventory
    from plmon.monitor.collect.plan import _Run

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            with lock:
                seen.append((i, var.get()))
            var.set(f"job {i}")  # stays in this job's copy
            if i in (7, 3, 90):
                raise ValueError(f"job {i}")
        return run

    run = _Run(object(), Inventory(), 8, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="job 3"):
        run.parallel(job(i) for i in range(100))
    assert sorted(seen) == [(i, "caller") for i in range(100)]
    assert var.get() == "caller"


def test_parallel_keyed_serves_keys_round_robin_and_takes_jobs_queued_by_jobs() -> None:
    """Proves: keyed jobs run round-robin across keys as spread() orders them (one worker shows it), and jobs
    queued by running jobs run too, behind what was already queued for their key, before parallel_keyed returns."""
    from plmon.monitor.collect.inventory import Inventory
    from plmon.monitor.collect.plan import _Run, spread

    order: list[str] = []
    run = _Run(object(), Inventory(), 1, None)  # type: ignore[arg-type]

    def job(name: str, *more: tuple[str, str]) -> Callable[[], None]:
        def go() -> None:
            order.append(name)
            for key, child in more:
                run.submit(key, job(child))
        return go

    jobs = [("a", job("a1")), ("a", job("a2")), ("b", job("b1", ("b", "b-child"), ("c", "c-child"))), ("a", job("a3"))]
    run.parallel_keyed(jobs)
    # b's queue ran out with b1, so its child joins the turn behind a, then c's: a1 b1 | a2 b-child c-child | a3
    assert order == ["a1", "b1", "a2", "b-child", "c-child", "a3"]
    assert spread([(k, k + "1") for k in "aab"]) == ["a1", "b1", "a1"]  # spread's order, for a fixed list

    many = _Run(object(), Inventory(), 8, None)  # type: ignore[arg-type]
    many._can_submit = True
    done: list[int] = []
    lock = threading.Lock()

    def grow(i: int) -> Callable[[], None]:
        def go() -> None:
            with lock:
                done.append(i)
            if i < 200:
                many.submit(str(i % 3), grow(i * 2 + 1))
                many.submit(str(i % 5), grow(i * 2 + 2))
        return go

    many.parallel_keyed([("0", grow(0))])
    assert sorted(done) == list(range(401))


def test_budget_scope_reads_the_path_as_urlsplit_does() -> None:
    """Proves: the budget scope found by its quick match is the one urlsplit's path gives, for URLs built from the
    pieces that could make them differ (slashes, queries, fragments, case, tabs, brackets, schemes)."""
    import random
    from urllib.parse import urlsplit

    def by_urlsplit(url: str) -> str:
        parts = [p for p in urlsplit(url).path.split("/") if p]
        return parts[1].lower() if len(parts) >= 2 and parts[0].lower() == "subscriptions" else "tenant"

    pieces = ["/", "//", "subscriptions", "SubScriptions", "ABC", "?", "#", "x=1", "h", "https://", ":", "@", " ",
              "\t", "\n", "providers", "é", "[", "]", "::1", ";", "%2F", "."]
    rng = random.Random(7)
    checked = 0
    for _ in range(20000):
        url = rng.choice(["https://", "http://", "HTTPS://", "", "a+b://"]) + "".join(
            rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        try:
            want = by_urlsplit(url)
        except ValueError:  # an invalid IPv6 host: urlsplit refuses it, and so does budget_scope
            with pytest.raises(ValueError):
                budget_scope(url)
            continue
        assert budget_scope(url) == want, url
        checked += 1
    assert checked > 15000
