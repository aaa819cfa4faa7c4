"""plmon's urllib3 transport against azure-core's RequestsTransport: the same request on the wire, the same
answers, the same errors, the same environment settings."""

from __future__ import annotations

import gzip
import http.client
import io
import itertools
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import urllib3
from azure.core.exceptions import IncompleteReadError, ServiceRequestError, ServiceResponseTimeoutError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from tenantkit import net, sub_list, write_tenant

from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.azure.transport import Urllib3Transport, _IdleConnections, _parse_headers
from plmon.monitor.replay.server import ReplayServer

HEADER_BLOCKS = [
    b"Content-Type: application/json\r\nContent-Length: 2\r\nx-ms-request-id: abc\r\n\r\n",
    b"A:  spaced value  \r\nB:\tx\r\nEmpty:\r\nDup: 1\r\nDup: 2\r\n\r\n",
    b"Folded: one\r\n two\r\nNext: x\r\n\r\n",        # obs-fold: the email parser's business
    b"No colon here\r\nX: y\r\n\r\n",                   # a defect: the email parser's business
    b"X: a\rb\r\nY: z\r\n\r\n",                         # a stray CR: the email parser's business
    b"Latin: caf\xe9\r\n\r\n",
    b"\r\n",
]


@pytest.mark.parametrize("block", HEADER_BLOCKS)
def test_headers_parse_as_http_client_parses_them(block: bytes) -> None:
    """Proves: every header block gives the same names, values, order and defects as http.client's parser."""
    ours, theirs = _parse_headers(io.BytesIO(block)), http.client.parse_headers(io.BytesIO(block))
    assert ours.items() == theirs.items()
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert (ours.get_payload() or "") == (theirs.get_payload() or "")


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with a fixed JSON body and records what arrived."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, list[tuple[str, str]], bytes]]] = []
    answer: ClassVar[tuple[int, dict[str, str], bytes]] = (200, {"Content-Type": "application/json"}, b'{"ok": true}')

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        """One fixed ``Date``, so two answers a second apart still compare equal."""
        return "Tue, 01 Dec 2026 12:00:00 GMT"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, list(self.headers.items()), body))
        status, headers, payload = self.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if int(headers.get("Content-Length", len(payload))) > len(payload):
            self.close_connection = True  # a truncated answer: the connection ends short of its length

    do_GET = do_POST = _handle


@pytest.fixture()
def recorder() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _both(url: str, *, method: str = "GET", **request: Any) -> list[Any]:
    answers = []
    for transport in (RequestsTransport(), Urllib3Transport()):
        with transport:
            answers.append(transport.send(HttpRequest(method, url, **request), stream=False))
    return answers


@pytest.mark.parametrize(("path", "request_kwargs"), [
    ("/subscriptions/s1/providers/Microsoft.Network/privateEndpoints?api-version=2026-03-01", {}),
    ("/x/ä b/%41%zz?q=1#frag", {}),
    ("/providers/Microsoft.ResourceGraph/resources?api-version=1", {"method": "POST", "json": {"query": "x"}}),
])
def test_the_same_request_reaches_the_server(recorder: tuple[str, type[_Recorder]], path: str,
                                             request_kwargs: dict[str, Any]) -> None:
    """Proves: method, target, headers (requests' defaults included, in order) and body are what requests sends."""
    base, handler = recorder
    kwargs = dict(request_kwargs)
    method = kwargs.pop("method", "GET")
    answers = _both(base + path, method=method, headers={"Authorization": "Bearer t", "Accept": "application/json",
                                                         "x-ms-client-request-id": "id"}, **kwargs)
    assert len(handler.seen) == 2 and handler.seen[0] == handler.seen[1]
    assert [(a.status_code, a.reason, dict(a.headers), a.content_type, a.text()) for a in answers[:1]] \
        == [(a.status_code, a.reason, dict(a.headers), a.content_type, a.text()) for a in answers[1:]]


def test_answers_are_decoded_and_streamed_as_requests_gives_them(recorder: tuple[str, type[_Recorder]]) -> None:
    """Proves: a gzip answer is decoded, and a streamed answer yields the same bytes through iter_bytes."""
    base, handler = recorder
    payload = b'{"value": [' + b",".join(b'{"id": "%d"}' % i for i in range(2000)) + b"]}"
    handler.answer = (200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress(payload))
    plain = _both(base + "/gz")
    assert [a.content for a in plain] == [payload, payload]
    for transport in (RequestsTransport(), Urllib3Transport()):
        with transport:
            answer = transport.send(HttpRequest("GET", base + "/gz"), stream=True)
            assert b"".join(answer.iter_bytes()) == payload


def test_failures_raise_what_requests_transport_raises(recorder: tuple[str, type[_Recorder]]) -> None:
    """Proves: refused connection, a read timeout and a truncated body raise the same azure-core errors."""
    base, handler = recorder
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    cases: list[tuple[str, dict[str, Any], type[Exception]]] = [
        (f"http://127.0.0.1:{closed_port}/x", {}, ServiceRequestError),
    ]
    for url, kwargs, expected in cases:
        for transport in (RequestsTransport(), Urllib3Transport()):
            with transport, pytest.raises(expected):
                transport.send(HttpRequest("GET", url), **kwargs)
    handler.answer = (200, {"Content-Type": "application/json", "Content-Length": "100"}, b'{"short": 1}')
    for transport in (RequestsTransport(), Urllib3Transport()):
        with transport, pytest.raises(IncompleteReadError):
            transport.send(HttpRequest("GET", base + "/short"), stream=False, read_timeout=5)


def test_read_timeouts_raise_what_requests_transport_raises() -> None:
    """Proves: an answer that never starts is ServiceResponseTimeoutError, a body that stops coming is
    ServiceRequestError (requests' own mapping, kept) when read whole, through both transports."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hang"
        for transport in (RequestsTransport(), Urllib3Transport()):
            with transport, pytest.raises(ServiceResponseTimeoutError):
                transport.send(HttpRequest("GET", url), read_timeout=0.2)


def test_a_body_that_stops_coming_raises_what_requests_transport_raises() -> None:
    """Proves: headers then silence: read whole it is requests' ServiceRequestError, streamed a
    ServiceResponseTimeoutError, through both transports."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
        held: list[socket.socket] = []

        def serve() -> None:
            for _ in range(4):
                conn, _ = listener.accept()
                held.append(conn)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            for transport in (RequestsTransport(), Urllib3Transport()):
                with transport:
                    with pytest.raises(ServiceRequestError) as whole:
                        transport.send(HttpRequest("GET", url), read_timeout=0.3)
                    assert type(whole.value) is ServiceRequestError
                    answer = transport.send(HttpRequest("GET", url), stream=True, read_timeout=0.3)
                    with pytest.raises(ServiceResponseTimeoutError):
                        b"".join(answer.iter_bytes())
        finally:
            thread.join(5)
            for conn in held:
                conn.close()


def test_environment_proxies_and_ca_bundle_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: HTTPS_PROXY routes through a proxy pool (NO_PROXY bypasses it) and REQUESTS_CA_BUNDLE is the CA
    bundle used when verification is left on, as requests would have it."""
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "bypass.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/ca.pem")
    transport = Urllib3Transport()
    proxied = transport._pool("https", "management.azure.com", None, True, None)
    direct = transport._pool("https", "bypass.example:8443", None, True, None)
    given = transport._pool("https", "management.azure.com", None, "/given/ca.pem", None)
    assert proxied is not None and direct is not None and given is not None
    assert proxied.proxy is not None and proxied.proxy.host == "proxy.example"
    assert proxied.proxy_headers == urllib3.make_headers(proxy_basic_auth="user:p@ss")
    assert direct.proxy is None
    assert (proxied.ca_certs, direct.ca_certs, given.ca_certs) == ("/env/ca.pem", "/env/ca.pem", "/given/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.example:1080")
    assert Urllib3Transport()._pool("https", "management.azure.com", None, True, None) is None  # requests' path


def test_idle_connections_behave_as_a_non_blocking_lifo_queue() -> None:
    """Proves: newest first, Empty when none is idle, Full beyond maxsize (urllib3 then closes the extra one)."""
    import queue

    idle = _IdleConnections(2)
    with pytest.raises(queue.Empty):
        idle.get(block=False)
    idle.put("a", block=False)
    idle.put("b", block=False)
    with pytest.raises(queue.Full):
        idle.put("c", block=False)
    assert (idle.qsize(), idle.get(block=False), idle.get(block=False), idle.empty()) == (2, "b", "a", True)


def test_both_transports_read_the_same_tenant(tmp_path: Path) -> None:
    """Proves: a live read through each transport gives the same documents, over HTTPS with the replay CA."""
    path = sub_list("privateEndpoints")
    write_tenant(tmp_path, {path: {"value": [{"id": f"{net()}/privateEndpoints/pe{i}", "name": f"pe{i}"}
                                             for i in range(5)]}})
    with ReplayServer(tmp_path, page_size=2) as server:
        bodies = []
        for transport in ("requests", "urllib3"):
            settings = LiveSettings(arm_endpoint=server.base_url, ca_bundle=server.ca_bundle, transport=transport)
            with LiveReader(StaticTokenCredential("t"), settings) as reader:
                bodies.append(reader.get(path, kind="privateEndpoints"))
                assert reader.stats.attempts == 3
    assert bodies[0] == bodies[1] and len(bodies[0]["value"]) == 5


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8", "application/json;charset=utf-8", "application/json; CHARSET = utf-8 ",
    "application/json; charset=UTF-8", 'application/json; charset="utf-8"', "application/json",
    "application/json; charset=utf-8; x=1", "text/plain; charset=latin-1", "; charset=utf-8", ""])
def test_answer_encoding_is_azure_cores(content_type: str) -> None:
    """Proves: the charset an answer is decoded with is the one azure-core's own header parsing finds."""
    from azure.core.rest._helpers import get_charset_encoding

    from plmon.monitor.collect.azure.transport import _plain_charset

    class Answer:
        headers = {"Content-Type": content_type} if content_type else {}

    ours = _plain_charset(content_type)
    assert ours is None or ours == get_charset_encoding(Answer())


def test_the_transport_is_chosen_by_environment() -> None:
    """Proves: urllib3 by default, PLMON_ARM_TRANSPORT=requests goes back to azure-core's RequestsTransport, and
    anything else is an input error."""
    from plmon.monitor.collect.sources import live_settings_from_env
    from plmon.monitor.errors import InputError

    assert live_settings_from_env(None, None, {}).transport == "urllib3"
    assert live_settings_from_env(None, None, {"PLMON_ARM_TRANSPORT": " Requests "}).transport == "requests"
    with pytest.raises(InputError):
        live_settings_from_env(None, None, {"PLMON_ARM_TRANSPORT": "httpx"})
    kwargs = LiveReader(StaticTokenCredential("t"), LiveSettings(transport="requests")).client_kwargs(None)
    assert isinstance(kwargs["transport"], RequestsTransport)
    assert isinstance(LiveReader(StaticTokenCredential("t")).client_kwargs(None)["transport"], Urllib3Transport)


@pytest.mark.parametrize("body", [
    b'{"value": [{"id": "/x", "n": 1.5, "s": "caf\\u00e9 \\ud83d\\ude00", "t": true}]}',
    '{"name": "café"}'.encode(),
    b'\xef\xbb\xbf{"bom": 1}',                       # a byte-order mark: json's path
    b'{"lone": "pe\\ud83d"}',                         # a lone surrogate: json's path
    b'{"big": 123456789012345678901234567890}',       # beyond 64 bits: json's path
    b'{"nan": NaN}',                                   # NaN: json's path
    b'{"broken": ',                                    # invalid: azure-core's DecodeError
    b"",
])
def test_fast_json_decoding_gives_azure_cores_document(body: bytes) -> None:
    """Proves: the decode policy plmon puts in every SDK client yields what azure-core's own yields, errors too."""
    import math

    from azure.core.exceptions import DecodeError
    from azure.core.pipeline.policies import ContentDecodePolicy

    from plmon.monitor.collect.azure.policies import FastJsonDecodePolicy
    from plmon.monitor.collect.azure.transport import _Urllib3Response

    class Raw:
        headers: ClassVar[dict[str, str]] = {"Content-Type": "application/json; charset=utf-8"}
        status = 200
        reason = "OK"

        def close(self) -> None:
            pass

    def answer() -> Any:
        return _Urllib3Response(HttpRequest("GET", "https://h/x"), Raw(), body, 4096)  # type: ignore[arg-type]

    results = []
    for policy in (ContentDecodePolicy, FastJsonDecodePolicy):
        try:
            results.append(("ok", policy.deserialize_from_http_generics(answer())))
        except DecodeError as err:
            results.append(("error", type(err).__name__))
    if b"NaN" in body:
        assert all(math.isnan(r[1]["nan"]) for r in results)
    else:
        assert results[0] == results[1]


def test_every_sdk_client_gets_the_fast_json_policy() -> None:
    """Proves: each SDK client the reader builds decodes through FastJsonDecodePolicy (azure-core's pipeline is
    shaped as use_fast_json expects), and one that is not shaped so is left as it is."""
    from plmon.monitor.collect.azure.policies import FastJsonDecodePolicy, use_fast_json

    reader = LiveReader(StaticTokenCredential("t"))
    for sdk in ("network", "privatedns", "privatelinks", "resources", "subscriptions", "managementgroups"):
        policies = [getattr(p, "_policy", None) for p in reader._client(sdk)._client._pipeline._impl_policies]
        assert sum(isinstance(p, FastJsonDecodePolicy) for p in policies) == 1
    assert use_fast_json(object()) is False


def test_only_policies_that_cannot_act_are_taken_out_of_the_pipeline() -> None:
    """Proves: the reader's SDK clients lose the policies that act only on settings plmon never gives (headers,
    proxies, hooks, network tracing), a client given such settings keeps them, and the chain still ends at the
    transport."""
    from azure.mgmt.network import NetworkManagementClient

    from plmon.monitor.collect.azure.policies import drop_idle_policies

    def names(client: Any) -> list[str]:
        return [type(getattr(r, "_policy", r)).__name__ for r in client._client._pipeline._impl_policies]

    reader = LiveReader(StaticTokenCredential("t"))
    trimmed = names(reader._client("network"))
    assert not {"HeadersPolicy", "ProxyPolicy", "CustomHookPolicy", "NetworkTraceLoggingPolicy"} & set(trimmed)
    assert {"RequestIdPolicy", "RetryPolicy", "ArmGuardPolicy", "DistributedTracingPolicy",
            "SensitiveHeaderCleanupPolicy", "ARMHttpLoggingPolicy"} <= set(trimmed)
    runners = reader._client("network")._client._pipeline._impl_policies
    assert all(a.next is b for a, b in itertools.pairwise(runners))
    assert type(runners[-1].next).__name__ == "_TransportRunner"

    busy = NetworkManagementClient(StaticTokenCredential("t"), "s", headers={"x-a": "1"},  # type: ignore[arg-type]
                                   proxies={"https": "http://proxy:1"}, raw_request_hook=lambda r: None,
                                   logging_enable=True)
    before = names(busy)
    assert drop_idle_policies(busy) == 0 and names(busy) == before
    assert drop_idle_policies(object()) == 0
