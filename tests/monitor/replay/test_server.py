"""The replay ARM server answers the real Azure SDK as ARM would, from a recorded-tenant folder."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceResponseError
from azure.mgmt.network import NetworkManagementClient

from plmon.monitor.replay.server import ReadLimits, ReplayServer, is_collection_path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "tests" / "fixtures" / "replay" / "ms-examples"
SUB = "11111111-1111-1111-1111-111111111111"
PE_LIST = f"subscriptions/{SUB}/providers/Microsoft.Network/privateEndpoints"
STORAGE = f"subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"
MG_PLA = (
    "providers/Microsoft.Management/managementGroups/root/providers/Microsoft.Authorization/privateLinkAssociations"
)
FAST_RETRY = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05}


class StaticToken:
    """The credential the product builds from PLMON_ARM_TOKEN."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("t", int(time.time()) + 3600)


def endpoint(i: int) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/pe{i}",
        "name": f"pe{i}", "type": "Microsoft.Network/privateEndpoints", "location": "westeurope",
        "properties": {"provisioningState": "Succeeded"},
    }


def write(folder: Path, path: str, body: Any) -> None:
    file = folder / "arm" / f"{path}.json"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(body))


@pytest.fixture()
def tenant(tmp_path: Path) -> Path:
    manifest = {"tenant_id": "t", "recorded_at": "2026-11-01T12:00:00Z", "cloud": "AzureCloud"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    write(tmp_path, "subscriptions", {"value": [{"subscriptionId": SUB, "state": "Enabled"}]})
    write(tmp_path, PE_LIST, {"value": [endpoint(i) for i in range(10)]})
    write(tmp_path, STORAGE, {"id": "/" + STORAGE, "properties": {"publicNetworkAccess": "Disabled"}})
    write(tmp_path, f"subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces.error",
          {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no read"}})
    write(tmp_path, "providers/Microsoft.Management/managementGroups", {"value": [{"name": "root"}]})
    write(tmp_path, MG_PLA, {"value": [{"name": "pla1"}]})
    return tmp_path


class Endpoint(NamedTuple):
    base_url: str
    ca_bundle: str


def get(server: ReplayServer | Endpoint, path: str, method: str = "GET", host: str | None = None,
        body: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """One raw HTTPS request, verifying the server's certificate against its CA."""
    url = urlsplit(server.base_url)
    context = ssl.create_default_context(cafile=server.ca_bundle)
    conn = http.client.HTTPSConnection(host or url.hostname or "", url.port, context=context, timeout=5)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        raw = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, json.loads(raw) if raw else None
    finally:
        conn.close()


@pytest.fixture()
def client_for() -> Iterator[Any]:
    clients: list[NetworkManagementClient] = []

    def make(server: ReplayServer, subscription: str = SUB, **kwargs: Any) -> NetworkManagementClient:
        client = NetworkManagementClient(
            StaticToken(), subscription, base_url=server.base_url, connection_verify=server.ca_bundle,
            **{**FAST_RETRY, **kwargs},
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_lookup_ignores_case_and_query(tenant: Path) -> None:
    """Proves: any spelling of a recorded path, with any query string, reads the recorded body."""
    with ReplayServer(tenant) as server:
        status, _, body = get(server, "/" + STORAGE.upper() + "?api-version=2023-05-01&x=1")
    assert status == 200
    assert body["properties"]["publicNetworkAccess"] == "Disabled"


def test_error_file_answers_its_status_and_arm_error(tenant: Path) -> None:
    """Proves: an .error.json file answers its status with an ARM {"error": ...} body."""
    with ReplayServer(tenant) as server:
        status, _, body = get(server, f"/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces")
    assert status == 403
    assert body == {"error": {"code": "AuthorizationFailed", "message": "no read"}}


@pytest.mark.parametrize(("path", "collection"), [
    ("subscriptions", True),
    (f"subscriptions/{SUB}", False),
    (f"subscriptions/{SUB}/resourceGroups", True),
    (f"subscriptions/{SUB}/providers/Microsoft.Network/routeTables", True),
    (f"/{STORAGE}/", False),
    (f"/{STORAGE}/privateEndpointConnections", True),
    ("subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/z.net/CNAME", True),
    (MG_PLA, True),
    ("providers/Microsoft.Management/managementGroups/root", False),
    ("", False),
])
def test_is_collection_path(path: str, collection: bool) -> None:
    """Proves: a path whose last segment names a resource type is a collection, a resource name is not."""
    assert is_collection_path(path) is collection


def test_missing_collection_is_empty_and_missing_resource_is_404(tenant: Path) -> None:
    """Proves: an unrecorded collection reads as {"value": []}, an unrecorded resource as 404 not found."""
    with ReplayServer(tenant) as server:
        empty = get(server, f"/subscriptions/{SUB}/providers/Microsoft.Network/bastionHosts?api-version=1")
        child = get(server, f"/{PE_LIST}/pe1/privateDnsZoneGroups")
        missing = get(server, f"/{PE_LIST}/pe99")
    assert (empty[0], empty[2]) == (200, {"value": []})
    assert (child[0], child[2]) == (200, {"value": []})
    assert missing[0] == 404
    assert missing[2]["error"]["code"] == "ResourceNotFound"


def test_management_group_paths_are_served(tenant: Path) -> None:
    """Proves: management group lists and their private link associations come from the folder."""
    with ReplayServer(tenant) as server:
        groups = get(server, "/providers/Microsoft.Management/managementGroups?api-version=2023-04-01")
        links = get(server, "/" + MG_PLA.lower())
    assert groups[2] == {"value": [{"name": "root"}]}
    assert links[2] == {"value": [{"name": "pla1"}]}


def test_pages_carry_next_links_back_to_the_server(tenant: Path) -> None:
    """Proves: a list is cut into pages whose absolute nextLink keeps the query and points at the server."""
    with ReplayServer(tenant, page_size=4) as server:
        names: list[str] = []
        path = f"/{PE_LIST}?api-version=2026-03-01"
        links: list[str] = []
        while path:
            status, _, body = get(server, path)
            assert status == 200
            names += [item["name"] for item in body["value"]]
            link = body.get("nextLink")
            if link:
                links.append(link)
                assert link.startswith(server.base_url + "/")
                split = urlsplit(link)
                path = f"{split.path}?{split.query}"
            else:
                path = ""
    assert names == [f"pe{i}" for i in range(10)]
    assert len(links) == 2
    assert all("api-version=2026-03-01" in link for link in links)


def test_real_sdk_follows_next_links_across_pages(tenant: Path, client_for: Any) -> None:
    """Proves: azure-mgmt-network lists every item across 4 pages over verified TLS, with GETs only."""
    with ReplayServer(tenant, page_size=3) as server:
        client = client_for(server)
        names = [pe.name for pe in client.private_endpoints.list_by_subscription()]
    assert names == [f"pe{i}" for i in range(10)]
    assert len(server.requests) == 4
    assert server.methods == {"GET": 4}
    assert all(r.path.endswith("/privateEndpoints") for r in server.requests)


def test_real_sdk_reads_microsoft_example_payload(client_for: Any) -> None:
    """Proves: the published PrivateEndpointListAll example replays through the SDK, one item per page."""
    expected = json.loads(next((EXAMPLES / "arm").rglob("privateEndpoints.json")).read_text())["value"]
    with ReplayServer(EXAMPLES, page_size=1) as server:
        client = client_for(server, "00000000-0000-0000-0000-000000000000")
        ids = [pe.id for pe in client.private_endpoints.list_by_subscription()]
    assert ids == [item["id"] for item in expected]
    assert len(server.requests) == len(expected)


def test_throttling_is_retried_after_the_advertised_delay(tenant: Path, client_for: Any) -> None:
    """Proves: every Nth request is a 429 with Retry-After, and azure-core retries after that delay."""
    with ReplayServer(tenant, page_size=4, throttle_every=2, retry_after=0.2) as server:
        client = client_for(server)
        names = [pe.name for pe in client.private_endpoints.list_by_subscription()]
    log = server.requests
    assert names == [f"pe{i}" for i in range(10)]
    assert [r.status for r in log] == [200, 429, 200, 429, 200]
    for throttled, retry in zip(log[1::2], log[2::2], strict=True):
        assert retry.query == throttled.query  # the same page asked again
        assert retry.received - throttled.received >= 0.2


def test_throttle_answer_looks_like_arm(tenant: Path) -> None:
    """Proves: a 429 carries Retry-After, TooManyRequests and the ARM request headers."""
    with ReplayServer(tenant, throttle_every=1, retry_after=3) as server:
        status, headers, body = get(server, "/subscriptions")
    assert status == 429
    assert headers["retry-after"] == "3"
    assert body["error"]["code"] == "TooManyRequests"
    assert headers["x-ms-request-id"]
    assert int(headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0


def test_latency_is_added_to_every_answer(tenant: Path) -> None:
    """Proves: --latency-ms delays each answer by at least that much."""
    with ReplayServer(tenant, latency_ms=150) as server:
        started = time.monotonic()
        get(server, "/subscriptions")
        get(server, "/nothing")
        elapsed = time.monotonic() - started
    assert elapsed >= 0.3


def test_fail_first_answers_500_then_succeeds(tenant: Path, client_for: Any) -> None:
    """Proves: a path set to fail twice answers 500 twice, the SDK retries, then the list is served."""
    with ReplayServer(tenant, fail_first={"*/PRIVATEENDPOINTS": 2}) as server:
        client = client_for(server)
        names = [pe.name for pe in client.private_endpoints.list_by_subscription()]
        again = get(server, f"/{PE_LIST}")[0]
    assert len(names) == 10
    assert [r.status for r in server.requests] == [500, 500, 200, 200]
    assert again == 200


def test_hung_path_times_out_the_client_and_stop_is_prompt(tenant: Path, client_for: Any) -> None:
    """Proves: a hung path never answers (client read timeout fires) and stopping the server releases it."""
    server = ReplayServer(tenant, hang_paths=["*/privateEndpoints"]).start()
    try:
        client = client_for(server, retry_total=0, read_timeout=0.3)
        with pytest.raises(ServiceResponseError):
            list(client.private_endpoints.list_by_subscription())
        assert get(server, "/subscriptions")[0] == 200  # other paths still answer
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 2
    assert server.requests[0].status is None


def test_only_get_reads_and_resource_graph_posts_are_answered(tenant: Path) -> None:
    """Proves: writes answer 405 with an ARM error, a foreign Resource Graph query 400, and the log counts methods."""
    with ReplayServer(tenant) as server:
        answers = {
            method: get(server, f"/{STORAGE}?api-version=1", method, body=b"{}")
            for method in ("PUT", "PATCH", "DELETE", "POST")
        }
        graph = get(server, "/providers/Microsoft.ResourceGraph/resources?api-version=1", "POST", body=b"{}")
        head = get(server, f"/{STORAGE}", "HEAD")
    assert {m: a[0] for m, a in answers.items()} == dict.fromkeys(answers, 405)
    assert answers["PUT"][2]["error"]["code"] == "MethodNotAllowed"
    assert graph[0] == 400 and graph[2]["error"]["code"] == "BadRequest"
    assert head[0] == 200 and head[2] is None
    assert server.methods == {"PUT": 1, "PATCH": 1, "DELETE": 1, "POST": 2, "HEAD": 1}


def test_certificate_covers_localhost_names(tenant: Path) -> None:
    """Proves: the server certificate verifies for localhost too, not only 127.0.0.1."""
    with ReplayServer(tenant) as server:
        assert get(server, "/subscriptions", host="localhost")[0] == 200


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_serves_on_ipv6_loopback(tenant: Path) -> None:
    """Proves: on ::1 the base URL is bracketed and the certificate verifies for ::1."""
    with ReplayServer(tenant, host="::1") as server:
        assert server.base_url.startswith("https://[::1]:")
        assert get(server, "/subscriptions")[0] == 200


def test_missing_arm_folder_is_refused(tmp_path: Path) -> None:
    """Proves: a folder that is not a recorded tenant fails at start with a message naming it."""
    with pytest.raises(FileNotFoundError, match="no arm/ folder"):
        ReplayServer(tmp_path).start()


def _serve_in_subprocess(code: str, sig: signal.Signals) -> tuple[dict[str, Any], int, Path]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert get(Endpoint(first["base_url"], first["ca_bundle"]), "/subscriptions")[0] == 200
        proc.send_signal(sig)
        code_ = proc.wait(timeout=5)
        proc.stdout.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return first, code_, Path(first["ca_bundle"])


def test_run_replay_server_prints_one_json_line_and_exits_0_on_sigterm() -> None:
    """Proves: the CLI function's first stdout line is the base URL and CA, and SIGTERM exits 0 cleanly."""
    code = (
        "import sys; from plmon.monitor.replay.server import run_replay_server; "
        f"sys.exit(run_replay_server({str(EXAMPLES)!r}))"
    )
    first, exit_code, ca = _serve_in_subprocess(code, signal.SIGTERM)
    assert set(first) == {"base_url", "ca_bundle"}
    assert first["base_url"].startswith("https://127.0.0.1:")
    assert exit_code == 0
    assert not ca.exists()  # its temporary CA folder is removed on exit


def test_click_command_serves_until_sigint(tmp_path: Path) -> None:
    """Proves: `replay-server --from DIR --ca-dir D` writes ca.pem into D and exits 0 on SIGINT."""
    code = (
        "from plmon.monitor.cli.replay import replay_server; "
        f"replay_server(['--from', {str(EXAMPLES)!r}, '--page-size', '2', '--ca-dir', {str(tmp_path)!r}])"
    )
    _, exit_code, ca = _serve_in_subprocess(code, signal.SIGINT)
    assert ca == tmp_path / "ca.pem"
    assert exit_code == 0
    assert ca.exists()  # a CA folder the user chose is left in place


def test_resource_held_only_in_its_list_is_served_by_id(tenant: Path, client_for: Any) -> None:
    """Proves: a GET by id of a resource that only a list file holds answers 200 with that item (as ARM),
    through the real SDK too, and follows edits of the list while the server runs."""
    pe3 = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/pe3"
    with ReplayServer(tenant) as server:
        status, _, body = get(server, pe3.upper() + "?api-version=2024-05-01")
        sdk = client_for(server).private_endpoints.get("rg1", "pe3")
        write(tenant, PE_LIST, {"value": [endpoint(i) for i in range(10) if i != 3]})
        os.utime(tenant / "arm" / f"{PE_LIST}.json", ns=(1, 1))  # a changed stat, even within one clock tick
        gone = get(server, pe3)
    assert (status, body) == (200, endpoint(3))
    assert sdk.name == "pe3" and sdk.provisioning_state == "Succeeded"
    assert gone[0] == 404 and gone[2]["error"]["code"] == "ResourceNotFound"


def test_resource_under_a_refused_list_answers_its_error(tenant: Path) -> None:
    """Proves: a GET by id of what a list recorded as an error would hold answers that error (403), not 404."""
    with ReplayServer(tenant) as server:
        status, _, body = get(server, f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/"
                                      "networkInterfaces/nic1")
    assert status == 403 and body["error"]["code"] == "AuthorizationFailed"


def test_reads_under_a_refused_scope_answer_its_error(tenant: Path) -> None:
    """Proves: below a scope recorded as an error (a resource group here), lists and resources answer its 403."""
    write(tenant, f"subscriptions/{SUB}/resourceGroups/rg-locked.error",
          {"status": 403, "error": {"code": "AuthorizationFailed", "message": "locked"}})
    with ReplayServer(tenant) as server:
        listed = get(server, f"/subscriptions/{SUB}/resourceGroups/rg-locked/providers/Microsoft.Network/routeTables")
        one = get(server, f"/subscriptions/{SUB}/resourceGroups/rg-locked/providers/Microsoft.Storage/"
                          "storageAccounts/st9")
        other = get(server, f"/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.Network/routeTables")
    assert listed[0] == one[0] == 403 and one[2]["error"]["message"] == "locked"
    assert (other[0], other[2]) == (200, {"value": []})


def test_read_limits_refill_at_their_rate_per_scope() -> None:
    """Proves: each scope has its own bucket, an empty one refuses with the wait until its next token, and it
    refills at its rate up to its capacity (ARM's token bucket)."""
    now = [0.0]
    limits = ReadLimits(2, 10, clock=lambda: now[0])
    assert [limits.take("a")[0] for _ in range(3)] == [True, True, False]
    allowed, wait, left = limits.take("a")
    assert (allowed, left) == (False, 0) and wait == pytest.approx(0.1)
    assert limits.take("b")[0] and limits.take("tenant")[0]  # other buckets are untouched
    now[0] = 0.1
    assert limits.take("a")[0] and not limits.take("a")[0]
    now[0] = 100.0
    assert limits.take("a") == (True, 0.0, 1)  # refilled to its capacity, never beyond
    assert limits.throttled == 3
    assert ReadLimits.scope("/subscriptions/ABC/providers/x") == "abc"
    assert ReadLimits.scope("/providers/Microsoft.Management/managementGroups") == "tenant"
    with pytest.raises(ValueError):
        ReadLimits(0, 25)


def test_arm_limits_answer_429_per_subscription_with_retry_after(tenant: Path) -> None:
    """Proves: with arm_limits, reads beyond a subscription's bucket are 429 SubscriptionRequestsThrottled with
    Retry-After until its next token, other subscriptions and tenant-level reads keep their own buckets, and
    the bucket refills; the remaining-reads header counts the bucket."""
    other = "22222222-2222-2222-2222-222222222222"
    with ReplayServer(tenant, arm_limits=(3, 5)) as server:
        answers = [get(server, f"/{PE_LIST}") for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 429]
        assert [a[1]["x-ms-ratelimit-remaining-subscription-reads"] for a in answers] == ["2", "1", "0", "0"]
        _, headers, body = answers[3]
        assert body["error"]["code"] == "SubscriptionRequestsThrottled"
        assert 0 < float(headers["retry-after"]) <= 0.2
        assert get(server, f"/subscriptions/{other}/providers/Microsoft.Network/privateEndpoints")[0] == 200
        assert get(server, "/subscriptions")[0] == 200
        time.sleep(float(headers["retry-after"]) + 0.05)
        assert get(server, f"/{PE_LIST}")[0] == 200
    assert server.limits is not None and server.limits.throttled == 1


def test_arm_limits_through_the_sdk_are_waited_out(tenant: Path, client_for: Any) -> None:
    """Proves: the SDK meeting an empty bucket retries after Retry-After and reads the whole list."""
    with ReplayServer(tenant, page_size=1, arm_limits=(2, 20)) as server:
        names = [pe.name for pe in client_for(server).private_endpoints.list_by_subscription()]
    assert names == [f"pe{i}" for i in range(10)]
    assert server.statuses[429] >= 1
    assert server.statuses[200] == 10


def test_cli_arm_limits_rate_is_checked() -> None:
    """Proves: --arm-limits-rate takes CAPACITY/PER_SECOND and refuses anything else before serving."""
    from click.testing import CliRunner

    from plmon.monitor.cli.replay import replay_server

    result = CliRunner().invoke(replay_server, ["--from", str(EXAMPLES), "--arm-limits", "--arm-limits-rate", "0/5"])
    assert result.exit_code == 2 and "CAPACITY/PER_SECOND" in result.output


def test_cli_arm_limits_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: --arm-limits serves ARM's defaults (250 refilled at 25/s), a rate overrides them, none by default."""
    from click.testing import CliRunner

    import plmon.monitor.cli.replay as cli_replay

    seen: list[Any] = []

    def fake(*args: Any, **kwargs: Any) -> int:
        seen.append(kwargs["arm_limits"])
        return 0

    monkeypatch.setattr(cli_replay, "run_replay_server", fake)
    for extra in ([], ["--arm-limits"], ["--arm-limits", "--arm-limits-rate", "10/2.5"]):
        result = CliRunner().invoke(cli_replay.replay_server, ["--from", str(EXAMPLES), *extra])
        assert result.exit_code == 0, result.output
    assert seen == [None, (250.0, 25.0), (10.0, 2.5)]


def test_whole_recorded_answers_are_the_files_own_documents(tenant: Path) -> None:
    """Proves: a resource, and a list that fits one page, answer the very document their file holds (its text sent
    as it is: unusual spacing, non-ASCII text, escapes and number spellings read back the same); a recorded
    nextLink is still dropped, and a list over several pages is still paged."""
    odd = '{ "id" : "/x",\n  "name": "caf\u00e9 \\u00e9 \\ud83d",\t"n": 1.0e3, "big": 123456789012345678901234567890 }'
    (tenant / "arm" / f"{STORAGE}.json").write_text(odd, encoding="utf-8")
    write(tenant, MG_PLA, {"value": [{"name": "pla1"}], "nextLink": "https://elsewhere.example/x"})
    with ReplayServer(tenant, page_size=4) as server:
        status, _, body = get(server, "/" + STORAGE)
        assert (status, body) == (200, json.loads(odd))
        assert get(server, "/" + MG_PLA)[2] == {"value": [{"name": "pla1"}]}
        first = get(server, f"/{PE_LIST}")[2]
        assert len(first["value"]) == 4 and first["nextLink"]
    with ReplayServer(tenant, page_size=10) as server:
        assert get(server, f"/{PE_LIST}")[2] == {"value": [endpoint(i) for i in range(10)]}
        assert get(server, "/subscriptions")[2] == {"value": [{"subscriptionId": SUB, "state": "Enabled"}]}


def test_pages_read_back_the_recorded_items_whoever_encodes_them(tenant: Path) -> None:
    """Proves: paged lists give back their items exactly, both those orjson reads (and writes) and those only json
    reads the same way (integers beyond 64 bits, lone surrogates, non-ASCII text)."""
    odd = [{"id": f"/x/{i}", "n": 2**70 + i, "s": "\ud83d caf\u00e9"} for i in range(5)]
    plain = [{"id": f"/y/{i}", "s": "caf\u00e9 \u2603", "f": 0.1 * i, "b": i % 2 == 0, "z": None} for i in range(5)]
    write(tenant, PE_LIST, {"value": odd})
    write(tenant, MG_PLA, {"value": plain})
    with ReplayServer(tenant, page_size=2) as server:
        for path, items in ((PE_LIST, odd), (MG_PLA, plain)):
            got: list[Any] = []
            link: str | None = f"/{path}"
            while link:
                status, _, body = get(server, link)
                assert status == 200
                got += body["value"]
                split = urlsplit(body.get("nextLink") or "")
                link = f"{split.path}?{split.query}" if body.get("nextLink") else None
            assert got == items


@pytest.mark.parametrize("block", [
    b"GET /subscriptions?api-version=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
    b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-A:  spaced \r\nX-A: twice\r\n\r\n",
    b"GET //x//y HTTP/1.0\r\nHost: h\r\n\r\n",
    b"GET /x HTTP/1.1\r\nFolded: a\r\n  b\r\nNo colon here\r\n\r\n",
    b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    b"GET /x\r\n\r\n",
    b"PUT /x\r\n\r\n",
    b"GET /x HTTP/2.0\r\n\r\n",
    b"GET /x HTTP/1.x\r\n\r\n",
    b"GET /x HTTP/1.1 extra\r\n\r\n",
    b"\r\n",
    b"GET /x HTTP/1.1\r\n" + b"X: y\r\n" * 120 + b"\r\n",
    b"GET /x HTTP/1.1\r\nLong: " + b"v" * 70000 + b"\r\n\r\n",
])
def test_requests_are_parsed_as_the_stdlib_parses_them(block: bytes) -> None:
    """Proves: the replay handler's parse_request (its own header reader) ends in the stdlib's state: the same
    result, command, path, version, keep-alive decision, headers and error answer, for good and bad requests."""
    import io
    from http.server import BaseHTTPRequestHandler

    from plmon.monitor.replay.server import _Handler

    def parse(cls: type[BaseHTTPRequestHandler]) -> tuple[Any, ...]:
        handler = cls.__new__(cls)
        handler.rfile, handler.wfile = io.BytesIO(block), io.BytesIO()
        handler.client_address, handler.request_version = ("127.0.0.1", 1), "HTTP/0.9"
        handler.raw_requestline = handler.rfile.readline(65537)
        handler.log_message = lambda *args: None  # type: ignore[method-assign]
        handler.date_time_string = lambda timestamp=None: "now"  # type: ignore[method-assign]
        ok = handler.parse_request()
        headers = list(handler.headers.items()) if getattr(handler, "headers", None) is not None else None
        return (ok, handler.command, getattr(handler, "path", None), handler.request_version,
                handler.close_connection, headers, handler.wfile.getvalue())

    class Stdlib(BaseHTTPRequestHandler):
        protocol_version = _Handler.protocol_version
        server_version, sys_version = _Handler.server_version, _Handler.sys_version

    assert parse(_Handler) == parse(Stdlib)


def test_preload_reads_every_file_before_serving_and_answers_alike(tenant: Path) -> None:
    """Proves: with preload every recorded file (bodies and errors) is parsed at start, and the answers, pages,
    errors and by-id reads are the same as a server that reads each file on first use."""
    paths = ["/" + STORAGE, "/" + PE_LIST, f"/subscriptions/{SUB}/providers/Microsoft.Network/networkInterfaces",
             "/" + MG_PLA, "/subscriptions/nope/resourceGroups/x"]
    with ReplayServer(tenant, page_size=4) as lazy:
        assert not lazy._cache
        expected = [get(lazy, p)[::2] for p in paths]
    with ReplayServer(tenant, page_size=4, preload=True) as eager:
        assert len(eager._cache) == len(eager._bodies) + len(eager._errors)
        got = [get(eager, p)[::2] for p in paths]
    assert [(s, json.dumps(b).replace(lazy.base_url, "")) for s, b in expected] == \
        [(s, json.dumps(b).replace(eager.base_url, "")) for s, b in got]


def test_date_header_is_the_current_second(tenant: Path) -> None:
    """Proves: the Date header formatted once per second is still the answer's own second, in HTTP's format."""
    from email.utils import parsedate_to_datetime

    with ReplayServer(tenant) as server:
        for _ in range(2):
            before = int(time.time())
            _, headers, _ = get(server, "/" + STORAGE)
            after = int(time.time())
            assert before <= parsedate_to_datetime(headers["date"]).timestamp() <= after
            time.sleep(1.05)


def test_click_command_logs_from_info_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: `replay-server` with structlog unconfigured logs from info up, so the debug line of every answer is
    neither rendered nor printed (structlog's default renders every level)."""
    import logging

    import structlog
    from click.testing import CliRunner

    from plmon.monitor.cli import replay

    before = structlog.get_config()
    monkeypatch.setattr(replay, "run_replay_server", lambda *args, **kwargs: 0)
    structlog.reset_defaults()
    try:
        result = CliRunner().invoke(replay.replay_server, ["--from", str(EXAMPLES)])
        assert result.exit_code == 0, result.output
        assert structlog.get_config()["wrapper_class"] is structlog.make_filtering_bound_logger(logging.INFO)
    finally:
        structlog.reset_defaults()
        structlog.configure(**before)


def test_request_lines_are_logged_only_when_debug_lines_are_written(tenant: Path) -> None:
    """Proves: below debug level the per-request debug line is skipped, yet every request is still recorded and
    answered with its own request id; at debug level the line is written."""
    import logging

    import structlog
    from structlog.testing import LogCapture

    saved = structlog.get_config()
    capture = LogCapture()
    try:
        structlog.configure(processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        with ReplayServer(tenant) as server:
            answers = [get(server, "/subscriptions") for _ in range(3)]
        assert [r.path for r in server.requests] == ["/subscriptions"] * 3
        assert len({headers["x-ms-request-id"] for _, headers, _ in answers}) == 3
        assert not capture.entries
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        with ReplayServer(tenant) as server:
            get(server, "/subscriptions")
        assert [e["path"] for e in capture.entries if e["event"] == "replay.request"] == ["/subscriptions"]
    finally:
        structlog.configure(**saved)


def test_stats_count_every_request_and_the_429s(tenant: Path) -> None:
    """Proves: /.plmon/stats counts every request (pages, 404s, 429s) but not itself, and the 429s apart."""
    with ReplayServer(tenant, arm_limits=(2, 0.001), page_size=4) as server:
        assert get(server, "/.plmon/stats")[2] == {"requests": 0, "throttled": 0}
        statuses = [get(server, f"/{PE_LIST}")[0] for _ in range(3)] + [get(server, "/nothing/here/at/all")[0]]
        status, _, stats = get(server, "/.plmon/stats")
    assert statuses == [200, 200, 429, 404] and status == 200
    assert stats == {"requests": 4, "throttled": 1}


def test_a_rewritten_by_id_file_is_served_anew(tenant: Path) -> None:
    """Proves: a by-id resource file rewritten on disk after it was served (and preloaded) is answered with its
    new body on the next read, so a benchmark's change in Azure is seen."""
    with ReplayServer(tenant, preload=True) as server:
        before = get(server, f"/{STORAGE}")[2]
        write(tenant, STORAGE, {"id": "/" + STORAGE, "properties": {"publicNetworkAccess": "Enabled"}})
        os.utime(tenant / "arm" / f"{STORAGE}.json", ns=(2, 2))  # a changed stat, even within one clock tick
        after = get(server, f"/{STORAGE}")[2]
    assert before["properties"]["publicNetworkAccess"] == "Disabled"
    assert after["properties"]["publicNetworkAccess"] == "Enabled"
