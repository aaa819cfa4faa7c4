"""The webhook over real HTTP: handshakes, authentication, malformed and oversized bodies, big batches, fuzzing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from daemonkit import SECRET, config, event, receiver, serving, tenant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIXTURES = Path(__file__).parents[2] / "fixtures" / "eventgrid"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("server")
    with receiver() as rec, serving(tenant(tmp / "t"), config(rec.url), tmp / "state.db") as running:
        yield running


def _queued(srv) -> int:  # type: ignore[no-untyped-def]
    text = srv.client.get(f"{srv.base}/metrics").text
    line = next(ln for ln in text.splitlines() if ln.startswith("plmon_events_accepted_total"))
    return int(float(line.split()[-1]))


def test_subscription_validation_handshake_with_microsoft_sample(srv):
    """The Microsoft SubscriptionValidationEvent sample gets 200 {"validationResponse": code}."""
    body = json.loads((FIXTURES / "SubscriptionValidationEvent.json").read_text())
    code = body[0]["data"]["validationCode"]
    r = srv.post(body)
    assert r.status_code == 200
    assert r.json() == {"validationResponse": code}


def test_cloudevents_options_handshake(srv):
    """OPTIONS with WebHook-Request-Origin is echoed in WebHook-Allowed-Origin; without it, 400."""
    r = srv.client.options(f"{srv.base}/api/eventgrid", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert r.status_code == 200
    assert r.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert srv.client.options(f"{srv.base}/api/eventgrid").status_code == 400


@pytest.mark.parametrize("sample", sorted(p.name for p in FIXTURES.glob("*schema_resource_*.json")))
def test_microsoft_resource_samples_are_accepted(srv, sample):
    """Every Microsoft resource event sample (Event Grid and CloudEvents schema) is queued with a 200."""
    raw = (FIXTURES / sample).read_bytes()
    ctype = "application/cloudevents+json" if sample.startswith("cloud") else "application/json"
    doc = json.loads(raw)
    if isinstance(doc, dict):
        doc["id"] = f"{doc['id']}-{sample}"
    else:
        for item in doc:
            item["id"] = f"{item['id']}-{sample}"
    r = srv.post(doc, content_type=ctype)
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 0


@pytest.mark.parametrize("how", ["none", "wrong-query", "wrong-header", "empty"])
def test_missing_or_wrong_secret_is_401_and_nothing_queued(srv, how):
    """Without the right shared secret the answer is 401 and no event reaches the queue."""
    before = _queued(srv)
    body = [event()]
    if how == "none":
        r = srv.post(body, secret=None)
    elif how == "wrong-query":
        r = srv.post(body, secret=SECRET + "x")
    elif how == "wrong-header":
        r = srv.post(body, secret=None, headers={"X-Plmon-Secret": "nope"})
    else:
        r = srv.post(body, secret="")
    assert r.status_code == 401
    assert "secret" in r.json()["error"]
    assert _queued(srv) == before


def test_secret_in_header_is_accepted(srv):
    """The secret may come in the X-Plmon-Secret or aeg-sas-key header instead of ?code=."""
    assert srv.post([event()], secret=None, headers={"X-Plmon-Secret": SECRET}).status_code == 200
    assert srv.post([event()], secret=None, headers={"aeg-sas-key": SECRET}).status_code == 200


@pytest.mark.parametrize("raw,ctype,reason", [
    (b"{not json", "application/json", "not JSON"),
    (b"", "application/json", "empty body"),
    (b"42", "application/json", "array or object"),
    (b'[{"id": 1}]', "application/json", "no usable event"),
    (b"[]", "text/plain", "content type"),
    (b"[]", "application/cloudevents+json", "JSON object"),
    (b"\xff\xfe", "application/json", "UTF-8"),
])
def test_malformed_bodies_get_400_with_reason(srv, raw, ctype, reason):
    """Unusable bodies are a 400 whose one-line reason says what is wrong."""
    r = srv.post(None, raw=raw, content_type=ctype)
    assert r.status_code == 400
    assert reason in r.json()["error"]


def test_oversized_body_is_413_by_length_and_by_stream(srv):
    """A body over server.max_body_bytes is refused, whether Content-Length says so or a chunked stream shows it."""
    limit = srv.daemon.config.server.max_body_bytes
    big = b"[" + b" " * limit + b"]"
    assert srv.post(None, raw=big).status_code == 413

    def chunks():  # type: ignore[no-untyped-def]
        yield b"["
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536
        yield b"]"

    r = srv.client.post(f"{srv.base}/api/eventgrid", params={"code": SECRET}, content=chunks(),
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_batch_of_5000_events_is_acknowledged_fast(tmp_path):
    """5,000 events in one delivery are durably queued and acknowledged well inside Event Grid's 30 s."""
    folder = tenant(tmp_path / "t")
    cfg = config("http://127.0.0.1:9/unused", max_body_bytes=16 * 1024 * 1024)
    with serving(folder, cfg, tmp_path / "state.db") as s:
        batch = [event(f"/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/routeTables/rt{i}",
                       op="Microsoft.Network/routeTables/write") for i in range(5000)]
        started = time.perf_counter()
        r = s.post(batch)
        took = time.perf_counter() - started
        assert r.status_code == 200
        assert r.json()["queued"] == 5000
        print(f"\n5,000-event batch acknowledged in {took * 1000:.0f} ms")
        # About 0.3 s on 2 cores (1.3-4.8 s when every item went through EventGridEvent.from_dict); the
        # bound leaves room for a loaded machine while still failing if that cost comes back.
        assert took < 2.5
        again = s.post(batch[:100])
        assert again.json() == {"received": 100, "queued": 0, "duplicates": 100, "rejected": 0}
        s.wait_idle(30)
        assert s.daemon.intake.pending() == 0


def test_health_ready_and_metrics(srv):
    """/healthz answers, /readyz reports the store and last collection, /metrics is Prometheus text."""
    assert srv.client.get(f"{srv.base}/healthz").text == "ok"
    ready = srv.client.get(f"{srv.base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["store"] == "ok" and ready.json()["last_collection_age_seconds"] >= 0
    metrics = srv.client.get(f"{srv.base}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("plmon_events_received_total", "plmon_collection_duration_seconds_bucket",
                 "plmon_arm_requests_total", "plmon_open_findings", "plmon_event_to_alert_seconds_bucket"):
        assert name in metrics.text


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                     max_leaves=20)
_event_like = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=10), st.integers()), "eventType": st.sampled_from(
        ["Microsoft.Resources.ResourceWriteSuccess", "Microsoft.EventGrid.SubscriptionValidationEvent", "x"]),
    "subject": st.text(max_size=30), "eventTime": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", ""]),
    "dataVersion": st.text(max_size=3), "data": _json, "specversion": st.sampled_from(["1.0", "0.3"]),
    "source": st.text(max_size=10), "type": st.text(max_size=10)})
_bodies = st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode()),
                    st.lists(_event_like, max_size=3).map(lambda v: json.dumps(v).encode()))
_ctypes = st.sampled_from(["application/json", "application/cloudevents+json", "application/cloudevents-batch+json",
                           "text/plain", "", "application/json; charset=utf-8", "\u00e9/x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies, ctype=_ctypes, secret=st.sampled_from([SECRET, None, "bad"]),
       extra=st.dictionaries(st.sampled_from(["X-Plmon-Secret", "aeg-sas-key", "WebHook-Request-Origin",
                                              "Content-Length-Junk"]), st.text(
                                                  st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
                             # HTTP forbids leading/trailing blanks in a header value: httpx refuses to send one
                             .map(str.strip), max_size=2))
def test_fuzzed_requests_never_get_a_5xx(srv, body, ctype, secret, extra):
    """Any body, content type and headers: the answer is 200 or a 4xx, and the server keeps serving."""
    headers = {"Content-Type": ctype.encode("latin-1", "replace"), **{k: v.encode() for k, v in extra.items()}}
    params = {"code": secret} if secret is not None else {}
    r = srv.client.post(f"{srv.base}/api/eventgrid", params=params, content=body, headers=headers)
    assert r.status_code in (200, 400, 401, 413), (r.status_code, r.text)
    assert srv.client.get(f"{srv.base}/healthz").status_code == 200
