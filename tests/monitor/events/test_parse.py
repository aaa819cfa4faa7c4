"""Webhook body parsing, the validation handshake, typed resource events and coalescing."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plmon.monitor.events.parse import (
    MAX_TEXT,
    BadEventBody,
    BadEventItem,
    ParsedBody,
    ResourceEvent,
    coalesce,
    parse_body,
    parse_item,
    validation_response,
)
from plmon.monitor.model.arm_id import parse_id

FIXTURES = Path(__file__).parents[2] / "fixtures" / "eventgrid"
JSON = "application/json"
CE = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
SUB = "00000000-0000-0000-0000-000000000001"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def first_resource_event(name: str, content_type: str) -> ResourceEvent:
    return parse_body(fixture_bytes(name), content_type).resource_events[0]


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def eg_event(**over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "e1",
        "topic": f"/subscriptions/{SUB}/resourceGroups/rg",
        "subject": ACCOUNT,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": "2024-05-01T10:00:00.1234567Z",
        "data": {
            "operationName": "Microsoft.Storage/storageAccounts/write",
            "resourceUri": ACCOUNT,
            "status": "Succeeded",
            "subscriptionId": SUB,
            "tenantId": "t",
            "correlationId": "c",
            "resourceProvider": "Microsoft.Storage",
        },
        "dataVersion": "2",
        "metadataVersion": "1",
    }
    event.update(over)
    return event


def ce_event(**over: Any) -> dict[str, Any]:
    eg = eg_event()
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "c1",
        "source": eg["topic"],
        "subject": eg["subject"],
        "type": eg["eventType"],
        "time": eg["eventTime"],
        "data": eg["data"],
    }
    event.update(over)
    return event


EG_SAMPLES = [
    "event-grid-schema_resource_action_success.json",
    "event-grid-schema_resource_delete_success.json",
    "event-grid-schema_resource_write_failure.json",
    "event-grid-schema_resource_write_success.json",
]
CE_SAMPLES = [
    "cloud-events-schema_resource_action_success.json",
    "cloud-events-schema_resource_delete_success.json",
    "cloud-events-schema_resource_write_success.json",
]


# --- the Microsoft samples --------------------------------------------------------------------------


def test_fixtures_are_the_shared_samples_verbatim() -> None:
    """Proves the test fixtures are byte-for-byte the shared, provenance-tracked samples."""
    shared = Path("/work/shared/azure-examples/eventgrid")
    if not shared.is_dir():
        pytest.skip("shared samples not mounted")
    for path in sorted(shared.glob("*.json")):
        assert (FIXTURES / path.name).read_bytes() == path.read_bytes(), path.name
    listed = (FIXTURES / "PROVENANCE.md").read_text(encoding="utf-8")
    for path in FIXTURES.glob("*.json"):
        assert f"`eventgrid/{path.name}`" in listed, path.name


@pytest.mark.parametrize("name", EG_SAMPLES)
def test_event_grid_sample_parses_as_array_and_as_lone_object(name: str) -> None:
    """Proves each Event Grid sample parses both inside the array Event Grid delivers and on its own."""
    sample = fixture(name)
    for parsed in (parse_body(body([sample]), JSON), parse_body(fixture_bytes(name), JSON)):
        assert parsed.rejected == ()
        (event,) = parsed.events
        assert event.schema == "eventgrid"
        assert event.id == sample["id"]
        assert event.resource is not None
        assert event.resource.operation_name == sample["data"]["operationName"]
        assert event.resource.resource.key == parse_id(sample["data"]["resourceUri"]).key
        assert event.time is not None and event.time.tzinfo is not None


@pytest.mark.parametrize("name", CE_SAMPLES)
@pytest.mark.parametrize("content_type", [CE, JSON, "application/cloudevents+json; charset=utf-8"])
def test_cloudevents_sample_parses_single(name: str, content_type: str) -> None:
    """Proves each CloudEvents sample parses as a single event, including the one spelled specVersion."""
    parsed = parse_body(fixture_bytes(name), content_type)
    assert parsed.rejected == ()
    (event,) = parsed.events
    assert event.schema == "cloudevents"
    assert event.resource is not None and event.resource.schema == "cloudevents"


def test_cloudevents_samples_parse_as_batch() -> None:
    """Proves the CloudEvents samples parse together as a cloudevents-batch body."""
    parsed = parse_body(body([fixture(n) for n in CE_SAMPLES]), CE_BATCH)
    assert parsed.rejected == ()
    assert [e.index for e in parsed.events] == [0, 1, 2]


def test_camel_case_specversion_is_what_the_sdk_alone_refuses() -> None:
    """Proves the normalisation is needed: the SDK by itself rejects the sample spelled specVersion."""
    from azure.core.messaging import CloudEvent

    sample = fixture("cloud-events-schema_resource_delete_success.json")
    assert "specVersion" in sample
    with pytest.raises(ValueError):
        CloudEvent.from_dict(sample)
    assert parse_body(body(sample), CE).events[0].id == sample["id"]


def test_same_event_in_both_schemas_gives_equal_resource_events() -> None:
    """Proves one ResourceEvent shape whichever schema delivered the event."""
    eg = first_resource_event("event-grid-schema_resource_delete_success.json", JSON)
    ce = first_resource_event("cloud-events-schema_resource_delete_success.json", CE)

    def fields(e: ResourceEvent) -> tuple[Any, ...]:
        return (e.id, e.event_type, e.operation_name, e.key, e.subject.key, e.time, e.status, e.source)

    assert fields(eg) == fields(ce)


def test_mixed_resourcegroups_casing_gives_one_key() -> None:
    """Proves `resourcegroups` and `resourceGroups` subjects and uris normalise to the same key."""
    lower = first_resource_event("event-grid-schema_resource_write_success.json", JSON)
    camel = first_resource_event("event-grid-schema_resource_delete_success.json", JSON)
    assert "resourcegroups" in lower.subject.raw and "resourceGroups" in camel.subject.raw
    assert lower.subject.key == camel.subject.key == lower.key == camel.key


def test_resource_event_fields_from_data() -> None:
    """Proves every typed field is read from the event data and the envelope."""
    event = parse_body(body([eg_event()]), JSON).resource_events[0]
    assert event == ResourceEvent(
        id="e1",
        event_type="Microsoft.Resources.ResourceWriteSuccess",
        subject=parse_id(ACCOUNT),
        time=datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC),
        source=f"/subscriptions/{SUB}/resourceGroups/rg",
        schema="eventgrid",
        operation_name="Microsoft.Storage/storageAccounts/write",
        resource=parse_id(ACCOUNT),
        status="Succeeded",
        subscription_id=SUB,
        tenant_id="t",
        correlation_id="c",
        resource_provider="Microsoft.Storage",
    )


def test_times_are_utc_aware() -> None:
    """Proves offsets are converted to UTC and a time without offset is read as UTC, never local."""
    offset = parse_body(body([eg_event(eventTime="2024-05-01T12:00:00+02:00")]), JSON).events[0]
    naive = parse_body(body([eg_event(eventTime="2024-05-01T10:00:00")]), JSON).events[0]
    ce = parse_body(body(ce_event(time="2024-05-01T12:00:00.5+02:00")), CE).events[0]
    assert offset.time == naive.time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert offset.time is not None and offset.time.tzinfo is UTC
    assert ce.time == datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize("offset", ["+02:00", "+10:00", "-05:30"])
def test_cloudevent_offsets_are_read_in_full(offset: str) -> None:
    """Proves CloudEvents offsets are honoured (azure-core alone reads "+10:00" as one hour)."""
    local = datetime(2024, 5, 1, 12, tzinfo=datetime.fromisoformat(f"2024-05-01T00:00:00{offset}").tzinfo)
    event = parse_body(body(ce_event(time=f"2024-05-01T12:00:00{offset}")), CE).events[0]
    assert event.time == local and event.time is not None and event.time.tzinfo is UTC


def test_missing_resource_uri_falls_back_to_subject() -> None:
    """Proves an event without resourceUri still names its resource through the subject."""
    event = eg_event()
    del event["data"]["resourceUri"]
    parsed = parse_body(body([event]), JSON)
    assert parsed.resource_events[0].key == parse_id(ACCOUNT).key


def test_other_event_types_are_accepted_without_resource_model() -> None:
    """Proves a non-Resources event is a well-formed item with no ResourceEvent (the worker ignores it)."""
    parsed = parse_body(body([eg_event(eventType="Microsoft.Storage.BlobCreated", data={"url": "x"})]), JSON)
    assert parsed.rejected == () and parsed.events[0].resource is None
    assert parsed.resource_events == ()


def test_resource_event_type_matched_case_insensitively() -> None:
    """Proves event types are compared without case, as Event Grid does."""
    parsed = parse_body(body([eg_event(eventType="microsoft.resources.resourcewritesuccess")]), JSON)
    assert parsed.events[0].resource is not None


def test_raw_item_reparses_to_the_same_event() -> None:
    """Proves the durable queue can store `raw` and get the identical event back later."""
    for parsed in (parse_body(body([eg_event()]), JSON), parse_body(body(ce_event()), CE)):
        event = parsed.events[0]
        again = parse_item(json.loads(json.dumps(event.raw)), schema=event.schema)
        assert again == event


# --- subscription validation ------------------------------------------------------------------------


def test_subscription_validation_code_and_response_match_the_docs() -> None:
    """Proves the handshake code comes out of the sample event and the answer is the documented body."""
    parsed = parse_body(fixture_bytes("SubscriptionValidationEvent.json"), JSON)
    assert parsed.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert parsed.events[0].subject == ""
    assert validation_response(parsed.validation_code) == fixture("SubscriptionValidationResponse.json")


def test_no_validation_code_on_ordinary_batches() -> None:
    """Proves ordinary deliveries never look like a handshake."""
    assert parse_body(body([eg_event()]), JSON).validation_code is None


def test_validation_event_without_code_is_rejected() -> None:
    """Proves a handshake without a code is a rejected item, not an empty answer."""
    event = fixture("SubscriptionValidationEvent.json")[0]
    event["data"] = {"validationUrl": "https://example"}
    parsed = parse_body(body([event]), JSON)
    assert parsed.all_rejected and "validationCode" in parsed.rejected[0].reason


def test_response_sample_is_not_an_event() -> None:
    """Proves the response sample, posted back to us, is rejected rather than mistaken for an event."""
    parsed = parse_body(fixture_bytes("SubscriptionValidationResponse.json"), JSON)
    assert parsed.all_rejected


# --- malformed bodies and items ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type", "fragment"),
    [
        (b"", JSON, "empty"),
        (b"not json", JSON, "not JSON"),
        (b"\xff\xfe", JSON, "UTF-8"),
        (b"[1,2", JSON, "not JSON"),
        (b"[NaN]", JSON, "NaN"),
        (b"null", JSON, "got null"),
        (b"42", JSON, "got number"),
        (b'"x"', JSON, "got string"),
        (b"true", JSON, "got boolean"),
        (b"[" * 100_000, JSON, "not JSON"),
        (b"[{}]", CE, "must be a JSON object"),
        (b"{}", CE_BATCH, "must be a JSON array"),
        (b"[]", "text/plain", "unsupported content type"),
        (b"[1" + b"0" * 5000 + b"]", JSON, "not JSON"),
    ],
)
def test_malformed_bodies_give_bad_event_body(raw: bytes, content_type: str, fragment: str) -> None:
    """Proves each kind of unusable body raises BadEventBody with a one-line reason naming the fault."""
    with pytest.raises(BadEventBody) as info:
        parse_body(raw, content_type)
    assert fragment in info.value.reason
    assert "\n" not in info.value.reason and len(info.value.reason) <= 200


def test_deeply_nested_valid_json_is_a_bad_body_not_a_crash() -> None:
    """Proves nesting past the recursion limit is a 400, not a RecursionError."""
    deep = b"[" * 50_000 + b"]" * 50_000
    with pytest.raises(BadEventBody):
        parse_body(deep, JSON)


def test_missing_content_type_is_json_and_bom_is_tolerated() -> None:
    """Proves hand-made deliveries without a content type or with a UTF-8 BOM still parse."""
    assert parse_body(body([eg_event()]), None).events
    assert parse_body(b"\xef\xbb\xbf" + body([eg_event()]), "Application/JSON; charset=utf-8").events


def test_empty_array_is_an_empty_batch() -> None:
    """Proves an empty batch is not an error: nothing rejected, nothing to do."""
    assert parse_body(b"[]", JSON) == ParsedBody((), ())
    assert not ParsedBody((), ()).all_rejected


def _without(event: dict[str, Any], key: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    del event[key]
    return event


BAD_ITEMS: list[tuple[Any, str]] = [
    (None, "not a JSON object"),
    ([eg_event()], "not a JSON object"),
    ({"hello": "world"}, "neither specversion"),
    (_without(eg_event(), "id"), "missing id"),
    (_without(eg_event(), "eventTime"), "missing eventTime"),
    (_without(eg_event(), "subject"), "missing subject"),
    (_without(eg_event(), "data"), "missing data"),
    (_without(eg_event(), "dataVersion"), "missing dataVersion"),
    (eg_event(id=None), "id is missing or null"),
    (eg_event(id=5), "id must be a string, got number"),
    (eg_event(id=""), "id is empty"),
    (eg_event(subject=["s"]), "subject must be a string, got array"),
    (eg_event(eventTime="yesterday"), "not a valid Event Grid event"),
    (eg_event(eventTime=12), "eventTime must be a string"),
    (eg_event(id="x" * (MAX_TEXT + 1)), "longer than"),
    (eg_event(id="\ud800"), "surrogate"),
    (eg_event(data=None), "data is not an object"),
    (eg_event(data=[1]), "data is not an object"),
    (eg_event(data={"resourceUri": ACCOUNT}), "operationName is missing"),
    (eg_event(data={"operationName": "x/y/write", "resourceUri": ACCOUNT, "status": 3}), "status must be"),
    (eg_event(data={"operationName": "x/y/write"}, subject=""), "neither resourceUri nor subject"),
    (_without(ce_event(), "id"), "missing id"),
    (_without(ce_event(), "source"), "missing source"),
    (_without(ce_event(), "type"), "missing type"),
    (_without(ce_event(), "time"), "has no time"),
    (ce_event(specversion="0.3"), "unsupported CloudEvents specversion"),
    (ce_event(specversion=1.0), "specversion must be a string"),
    ({**ce_event(), "SPECVERSION": "1.0"}, "appears twice"),
    (ce_event(time="bad"), "not an RFC 3339"),
    (ce_event(time="2024-13-01T10:00:00Z"), "not a valid date-time"),
    (ce_event(time="2024-05-01T10:00:00+0100"), "not an RFC 3339"),
    (ce_event(time=5), "time must be a string"),
    (ce_event(data=None), "data is not an object"),
    (ce_event(source=None), "source is missing or null"),
    (_without(ce_event(data_base64="abc"), "data"), "not a valid CloudEvent"),
]


@pytest.mark.parametrize(("item", "fragment"), BAD_ITEMS)
def test_malformed_items_are_rejected_alone(item: Any, fragment: str) -> None:
    """Proves a malformed item becomes a rejected item with its reason while its good neighbour survives."""
    parsed = parse_body(body([eg_event(id="good"), item]), JSON)
    assert [e.id for e in parsed.events] == ["good"]
    (rejected,) = parsed.rejected
    assert rejected.index == 1 and fragment in rejected.reason, rejected.reason
    assert not parsed.all_rejected


def test_all_items_bad_is_flagged_for_a_400() -> None:
    """Proves the server can tell a wholly bad batch (400) from a partly bad one (200)."""
    parsed = parse_body(body([{"a": 1}, 7]), JSON)
    assert parsed.all_rejected and [r.index for r in parsed.rejected] == [0, 1]


def test_parse_item_raises_only_bad_event_item() -> None:
    """Proves the per-item entry point reports faults as BadEventItem for the worker's re-parse."""
    with pytest.raises(BadEventItem):
        parse_item({"specversion": "1.0"})


def test_nonconforming_extension_names_are_dropped_not_fatal() -> None:
    """Proves an extension name the SDK would refuse does not cost us the change it reports."""
    parsed = parse_body(body(ce_event(myExtension="x", traceparent="00-ab", **{"123": 1})), CE)
    assert parsed.rejected == () and parsed.events[0].resource is not None


def test_cloudevent_without_time_is_kept_unless_it_is_a_resource_event() -> None:
    """Proves time is optional for CloudEvents in general but required where ordering matters."""
    other = _without(ce_event(type="Contoso.Custom", data={}), "time")
    parsed = parse_body(body(other), CE)
    assert parsed.events[0].time is None


# --- fuzzing ----------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
field_values = json_values | st.sampled_from(
    ["", "1.0", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00", "bad", "\ud800", "x" * (MAX_TEXT + 5),
     "Microsoft.Resources.ResourceWriteSuccess", "Microsoft.EventGrid.SubscriptionValidationEvent", ACCOUNT]
)
envelope_keys = st.sampled_from(
    ["id", "subject", "eventType", "eventTime", "data", "dataVersion", "topic", "specversion", "specVersion",
     "source", "type", "time", "data_base64", "datacontenttype", "SPECVERSION", "ext", "Bad-Ext"]
)
data_objects = st.dictionaries(
    st.sampled_from(["operationName", "resourceUri", "status", "subscriptionId", "tenantId", "correlationId",
                     "resourceProvider", "validationCode"]),
    field_values,
    max_size=8,
)
near_events = st.one_of(
    st.dictionaries(envelope_keys, field_values, max_size=12),
    st.builds(lambda base, over: {**base, **over}, st.sampled_from([eg_event(), ce_event()]),
              st.dictionaries(envelope_keys, field_values | data_objects, max_size=3)),
)
documents = st.one_of(json_values, near_events, st.lists(near_events | json_values, max_size=5))
content_types = st.sampled_from([JSON, CE, CE_BATCH, None, "", "text/plain", "application/json; charset=x"])


def _assert_parses_or_bad_body(raw: bytes, content_type: str | None) -> None:
    try:
        parsed = parse_body(raw, content_type)
    except BadEventBody as err:
        assert err.reason and "\n" not in err.reason
        return
    assert isinstance(parsed, ParsedBody)
    for event in parsed.events:
        assert event.time is None or event.time.tzinfo is not None
    for rejected in parsed.rejected:
        assert rejected.reason and "\n" not in rejected.reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=200), content_type=content_types)
def test_fuzz_bytes_only_bad_body_or_parse(raw: bytes, content_type: str | None) -> None:
    """Proves arbitrary bytes yield BadEventBody or a parse, never another exception."""
    _assert_parses_or_bad_body(raw, content_type)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents, content_type=content_types)
def test_fuzz_json_only_bad_body_or_parse(document: Any, content_type: str | None) -> None:
    """Proves arbitrary JSON, including near-valid events, yields BadEventBody or a parse, never a crash."""
    _assert_parses_or_bad_body(json.dumps(document).encode(), content_type)


# --- coalescing -------------------------------------------------------------------------------------

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
SUBNET = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s"


def rev(event_id: str, uri: str = ACCOUNT, seconds: float = 0) -> ResourceEvent:
    return ResourceEvent(
        id=event_id, event_type="Microsoft.Resources.ResourceWriteSuccess", subject=parse_id(uri),
        time=T0 + timedelta(seconds=seconds), source="", schema="eventgrid",
        operation_name="Microsoft.Storage/storageAccounts/write", resource=parse_id(uri),
    )


def test_coalesce_dedupes_by_event_id() -> None:
    """Proves a redelivered event id is counted as a duplicate and folded once."""
    out = coalesce([rev("a"), rev("a"), rev("a")])
    assert out.duplicates == ("a", "a")
    (only,) = out.rereads
    assert only.event_ids == ("a",)


def test_coalesce_collapses_a_burst_to_one_reread_with_latest_event() -> None:
    """Proves a burst on one resource, in any casing, is one re-read carrying the newest event."""
    upper = ACCOUNT.replace("resourceGroups", "RESOURCEGROUPS").upper()
    out = coalesce([rev("a", seconds=1), rev("b", upper, seconds=3), rev("c", seconds=2)])
    (only,) = out.rereads
    assert only.latest.id == "b"
    assert only.event_ids == ("a", "b", "c")
    assert only.key == parse_id(ACCOUNT).key


def test_coalesce_ties_go_to_the_later_delivery() -> None:
    """Proves equal times resolve deterministically to the event delivered last."""
    assert coalesce([rev("a"), rev("b")]).rereads[0].latest.id == "b"


def test_coalesce_drops_events_older_than_last_full_read() -> None:
    """Proves an event older than the last full read is stale and triggers no re-read (no rollback)."""
    reads = {parse_id(ACCOUNT).key: T0 + timedelta(seconds=10)}
    out = coalesce([rev("old", seconds=5), rev("same", seconds=10), rev("new", SUBNET, seconds=1)], reads)
    assert [e.id for e in out.stale] == ["old"]
    assert {r.latest.id for r in out.rereads} == {"same", "new"}


def test_coalesce_accepts_naive_and_offset_read_times() -> None:
    """Proves last-read times in other offsets or without tz compare as UTC instead of raising."""
    naive = {parse_id(ACCOUNT).key: datetime(2024, 5, 1, 10, 0, 10)}
    shifted = {parse_id(ACCOUNT).key: datetime(2024, 5, 1, 12, 0, 10, tzinfo=timezone(timedelta(hours=2)))}
    assert coalesce([rev("a", seconds=5)], naive).stale
    assert coalesce([rev("a", seconds=5)], shifted).stale


def test_coalesce_uses_the_target_function_for_keys() -> None:
    """Proves events on children collapse onto the parent the caller says to re-read."""
    vnet = parse_id(SUBNET).parent
    assert vnet is not None
    out = coalesce([rev("a", SUBNET), rev("b", vnet.raw, seconds=1)],
                   target=lambda e: e.resource.parent or e.resource)
    assert [r.key for r in out.rereads] == [vnet.key]


def test_coalesce_orders_rereads_oldest_first() -> None:
    """Proves re-reads follow the order of the changes, whatever the delivery order."""
    out = coalesce([rev("a", ACCOUNT, seconds=5), rev("b", SUBNET, seconds=1)])
    assert [r.latest.id for r in out.rereads] == ["b", "a"]
