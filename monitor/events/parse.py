"""Event Grid webhook bodies turned into typed events, without the HTTP server.

The daemon's ``POST /api/eventgrid`` hands the raw body and its ``Content-Type`` to :func:`parse_body`.
Everything a sender controls is checked here, so the server only has to map outcomes to status codes:

* the body as a whole is unusable (not UTF-8, not JSON, not an array/object, wrong shape for its
  content type, unsupported content type): :class:`BadEventBody` with a one-line reason -> ``400``;
* otherwise a :class:`ParsedBody`: the well-formed items (``events``) and the malformed ones
  (``rejected``, each with its index and reason).

Why a bad item does not reject its batch: Event Grid does not retry a ``400`` (it dead-letters the whole
delivery), so one poison event in a batch of 5,000 would lose 4,999 good ones. The server should answer
``400`` only when *every* item is rejected (:attr:`ParsedBody.all_rejected`), and otherwise queue the
good ones and log the rejected. The full collection remains the source of truth for anything lost.

Items are parsed one at a time. Neither SDK validates on its own: azure-eventgrid's
``EventGridEvent.from_dict({})`` returns an event of ``None`` fields, azure-core's ``CloudEvent.from_dict``
invents a random id when ``id`` is missing (which would defeat de-duplication), raises
``IndexError``/``TypeError`` on odd times and misreads UTC offsets (``+10:00`` comes back as one hour).
So required attributes and their types are checked here, times are parsed here (RFC 3339), CloudEvents
then go through ``CloudEvent.from_dict`` (extension names, ``data_base64``) with any SDK exception turned
into a rejected item. Event Grid schema items no longer go through ``EventGridEvent.from_dict``: once
the envelope is checked it adds nothing but cost (its generic deserializer was 3 of the 3.5 s that a
5,000-event batch took to acknowledge). All times come out timezone-aware in UTC.

CloudEvents attribute names are matched case-insensitively for the spec's own attributes: Microsoft's
published sample spells ``specVersion``, which the SDK would treat as an (invalid) extension and refuse.
Extension attributes whose names the spec does not allow (not lower-case alphanumeric) are dropped
rather than failing the event, since plmon never reads extensions. Only structured-mode CloudEvents are
supported (Event Grid webhooks deliver structured mode).

``Microsoft.Resources.Resource*`` events get a typed :class:`ResourceEvent` (the SDK has none), with the
resource id normalised by :func:`plmon.monitor.model.arm_id.parse_id` so that ``resourcegroups`` and
``resourceGroups`` spellings compare equal. :func:`coalesce` folds a burst of them into one re-read per
resource without letting stale events roll state back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.messaging import CloudEvent
from azure.eventgrid import SystemEventNames

from plmon.monitor.model.arm_id import ArmId, parse_id

__all__ = [
    "JSON_MEDIA_TYPES",
    "MAX_TEXT",
    "RESOURCE_EVENT_TYPES",
    "VALIDATION_EVENT_TYPE",
    "BadEventBody",
    "BadEventItem",
    "Coalesced",
    "ParsedBody",
    "ParsedEvent",
    "RejectedItem",
    "Reread",
    "ResourceEvent",
    "Schema",
    "coalesce",
    "parse_body",
    "parse_item",
    "validation_response",
]

Schema = Literal["eventgrid", "cloudevents"]

# The event type names come from azure-eventgrid's catalogue of system events, not our own spelling.
VALIDATION_EVENT_TYPE: str = SystemEventNames.EventGridSubscriptionValidationEventName.value
RESOURCE_EVENT_TYPES: tuple[str, ...] = tuple(sorted(
    m.value for m in SystemEventNames if m.value.startswith("Microsoft.Resources.Resource")))
_RESOURCE_EVENT_TYPES_LOWER = frozenset(t.lower() for t in RESOURCE_EVENT_TYPES)

_CT_JSON = "application/json"
_CT_CLOUDEVENT = "application/cloudevents+json"
_CT_CLOUDEVENT_BATCH = "application/cloudevents-batch+json"
JSON_MEDIA_TYPES: tuple[str, ...] = (_CT_JSON, _CT_CLOUDEVENT, _CT_CLOUDEVENT_BATCH)

# Longest string kept from an envelope or resource field. ARM ids stay well below this; anything longer
# is abuse, and refusing it keeps logs, metrics labels and store keys bounded.
MAX_TEXT = 4096
_MAX_REASON = 200

# CloudEvents 1.0 context attributes plus the two data members, matched case-insensitively.
_CE_ATTRIBUTES = frozenset(
    {"id", "source", "type", "specversion", "time", "subject", "datacontenttype", "dataschema", "data",
     "data_base64"}
)
_CE_EXTENSION_NAME = re.compile(r"[a-z0-9]+")
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?", re.ASCII
)
_EG_REQUIRED = ("id", "eventType", "subject", "eventTime", "data", "dataVersion")


class BadEventBody(ValueError):
    """The whole body is unusable; ``reason`` is one line, safe to return in a 400."""

    def __init__(self, reason: str) -> None:
        self.reason = _one_line(reason)
        super().__init__(self.reason)


class BadEventItem(ValueError):
    """One item of a body is unusable; its batch siblings are unaffected."""

    def __init__(self, reason: str) -> None:
        self.reason = _one_line(reason)
        super().__init__(self.reason)


@dataclass(frozen=True, slots=True)
class ResourceEvent:
    """A ``Microsoft.Resources.Resource*`` event, the same shape whichever schema delivered it."""

    id: str
    event_type: str
    subject: ArmId
    time: datetime
    # Event Grid ``topic`` or CloudEvents ``source``: the scope the event subscription watches.
    source: str
    schema: Schema
    operation_name: str
    resource: ArmId
    status: str = ""
    subscription_id: str = ""
    tenant_id: str = ""
    correlation_id: str = ""
    resource_provider: str = ""

    @property
    def key(self) -> str:
        """The normalised id of the resource the operation touched."""
        return self.resource.key


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """One well-formed item of a body. ``raw`` is the item as delivered, for the durable queue."""

    index: int
    schema: Schema
    id: str
    type: str
    subject: str
    # Always set for Event Grid schema; CloudEvents makes ``time`` optional.
    time: datetime | None
    source: str
    data: Any = field(default=None, compare=False, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    resource: ResourceEvent | None = None
    validation_code: str | None = None


@dataclass(frozen=True, slots=True)
class RejectedItem:
    index: int
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedBody:
    events: tuple[ParsedEvent, ...]
    rejected: tuple[RejectedItem, ...]

    @property
    def all_rejected(self) -> bool:
        """True when there were items and none was usable: the one case worth a 400."""
        return bool(self.rejected) and not self.events

    @property
    def validation_code(self) -> str | None:
        """The code of the first ``SubscriptionValidationEvent``; the handshake answers with it."""
        return next((e.validation_code for e in self.events if e.validation_code is not None), None)

    @property
    def resource_events(self) -> tuple[ResourceEvent, ...]:
        return tuple(e.resource for e in self.events if e.resource is not None)


def validation_response(code: str) -> dict[str, str]:
    """The ``200`` body Event Grid expects back from the subscription validation handshake."""
    return {"validationResponse": code}


# --- body -------------------------------------------------------------------------------------------


def parse_body(body: bytes, content_type: str | None) -> ParsedBody:
    """Parse a webhook body; raises only :class:`BadEventBody`, never anything else.

    A missing content type is read as ``application/json`` (hand-made test deliveries often omit it);
    with ``application/json`` each item is classified on its own by ``specversion`` (CloudEvents) or
    ``eventType`` (Event Grid), and a lone object is accepted as a batch of one. An empty array is a
    valid, empty batch.
    """
    media_type = _media_type(content_type)
    if media_type not in JSON_MEDIA_TYPES:
        raise BadEventBody(f"unsupported content type {media_type[:60]!r}")
    document = _load_json(body)

    hint: Schema | None
    if media_type == _CT_CLOUDEVENT:
        if not isinstance(document, dict):
            raise BadEventBody(f"{_CT_CLOUDEVENT} body must be a JSON object, got {_json_type(document)}")
        items, hint = [document], "cloudevents"
    elif media_type == _CT_CLOUDEVENT_BATCH:
        if not isinstance(document, list):
            raise BadEventBody(
                f"{_CT_CLOUDEVENT_BATCH} body must be a JSON array, got {_json_type(document)}"
            )
        items, hint = document, "cloudevents"
    elif isinstance(document, list):
        items, hint = document, None
    elif isinstance(document, dict):
        items, hint = [document], None
    else:
        raise BadEventBody(f"body must be a JSON array or object, got {_json_type(document)}")

    events: list[ParsedEvent] = []
    rejected: list[RejectedItem] = []
    for index, item in enumerate(items):
        try:
            events.append(parse_item(item, schema=hint, index=index))
        except BadEventItem as err:
            rejected.append(RejectedItem(index, err.reason))
    return ParsedBody(tuple(events), tuple(rejected))


def _media_type(content_type: str | None) -> str:
    if content_type is None or not content_type.strip():
        return _CT_JSON
    return content_type.split(";", 1)[0].strip().lower()


def _load_json(body: bytes) -> Any:
    if not body:
        raise BadEventBody("empty body")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadEventBody(f"body is not UTF-8 (byte {err.start})") from None
    text = text.removeprefix("\ufeff")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise BadEventBody(f"body is not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except ValueError as err:  # NaN/Infinity, integers beyond the int-string limit
        raise BadEventBody(f"body is not JSON: {err}") from None
    except RecursionError:
        raise BadEventBody("body is not JSON: nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# --- items ------------------------------------------------------------------------------------------


def parse_item(item: object, *, schema: Schema | None = None, index: int = 0) -> ParsedEvent:
    """Parse one item of a body; raises only :class:`BadEventItem`.

    Public so that a worker can re-parse the ``raw`` item it stored in the durable queue and get the
    same event back. ``schema=None`` classifies the item by its attributes.
    """
    if not isinstance(item, dict):
        raise BadEventItem(f"item is not a JSON object but {_json_type(item)}")
    if schema is None:
        lower = {k.lower() for k in item if isinstance(k, str)}
        if "specversion" in lower:
            schema = "cloudevents"
        elif "eventType" in item:
            schema = "eventgrid"
        else:
            raise BadEventItem("item has neither specversion (CloudEvents) nor eventType (Event Grid)")
    if schema == "cloudevents":
        return _parse_cloudevent(item, index)
    return _parse_eventgrid(item, index)


def _parse_eventgrid(item: dict[str, Any], index: int) -> ParsedEvent:
    missing = [k for k in _EG_REQUIRED if k not in item]
    if missing:
        raise BadEventItem(f"Event Grid event is missing {', '.join(missing)}")
    event_id = _text(item, "id")
    event_type = _text(item, "eventType")
    subject = _text(item, "subject", allow_empty=True)
    time_text = _text(item, "eventTime")
    _text(item, "dataVersion", allow_empty=True)
    topic = _text(item, "topic", required=False, allow_empty=True)
    # No EventGridEvent.from_dict (see the module docstring): the data is kept as delivered.
    try:
        when = _rfc3339(time_text)
    except BadEventItem:
        raise BadEventItem("not a valid Event Grid event (eventTime is not an RFC 3339 date-time)") from None
    return _finish(index, "eventgrid", event_id, event_type, subject, when, topic, item["data"], item)


def _parse_cloudevent(item: dict[str, Any], index: int) -> ParsedEvent:
    normalised: dict[str, Any] = {}
    for key, value in item.items():
        canonical = key.lower()
        if canonical in _CE_ATTRIBUTES:
            if canonical in normalised:
                raise BadEventItem(f"CloudEvent attribute {canonical!r} appears twice in different casing")
            normalised[canonical] = value
        elif _CE_EXTENSION_NAME.fullmatch(key) and key.islower() and len(key) <= 20:
            # islower() mirrors the SDK, which refuses digit-only names too.
            normalised[key] = value
        # Other names break the spec's naming rule; plmon reads no extensions, so they are dropped.
    for required in ("specversion", "id", "source", "type"):
        if required not in normalised:
            raise BadEventItem(f"CloudEvent is missing {required}")
    version = _text(normalised, "specversion")
    if version != "1.0":
        raise BadEventItem(f"unsupported CloudEvents specversion {version[:20]!r}")
    event_id = _text(normalised, "id")
    source = _text(normalised, "source")
    event_type = _text(normalised, "type")
    subject = _text(normalised, "subject", required=False, allow_empty=True)
    time_text = _text(normalised, "time", required=False, allow_empty=True)
    # azure-core reads only the first digit of an offset's hours ("+02:00" comes back as UTC), so the
    # time is parsed here and kept away from the SDK.
    when = _rfc3339(time_text) if time_text else None
    normalised.pop("time", None)
    try:
        sdk: CloudEvent[Any] = CloudEvent.from_dict(normalised)
    except Exception as err:  # ValueError on names, binascii.Error on data_base64, ...
        raise BadEventItem(f"not a valid CloudEvent ({type(err).__name__})") from None
    # The SDK turns a JSON null into its own NULL sentinel; keep the JSON value instead.
    data = normalised.get("data", sdk.data)
    return _finish(index, "cloudevents", event_id, event_type, subject, when, source, data, item)


def _finish(index: int, schema: Schema, event_id: str, event_type: str, subject: str,
            when: datetime | None, source: str, data: Any, raw: dict[str, Any]) -> ParsedEvent:
    resource = None
    code = None
    kind = event_type.lower()
    if kind in _RESOURCE_EVENT_TYPES_LOWER:
        if when is None:
            raise BadEventItem(f"{event_type} event has no time")
        resource = _resource_event(schema, event_id, event_type, subject, when, source, data)
    elif kind == VALIDATION_EVENT_TYPE.lower():
        if not isinstance(data, dict):
            raise BadEventItem("SubscriptionValidationEvent data is not an object")
        code = _text(data, "validationCode")
    return ParsedEvent(index, schema, event_id, event_type, subject, when, source, data, raw, resource, code)


def _resource_event(schema: Schema, event_id: str, event_type: str, subject: str, when: datetime,
                    source: str, data: Any) -> ResourceEvent:
    if not isinstance(data, dict):
        raise BadEventItem(f"{event_type} data is not an object")
    operation = _text(data, "operationName")
    # ARM always sends resourceUri; the subject is the same id, so it is the fallback.
    uri = _text(data, "resourceUri", required=False, allow_empty=True) or subject
    if not uri:
        raise BadEventItem(f"{event_type} event has neither resourceUri nor subject")
    optional = {
        name: _text(data, name, required=False, allow_empty=True)
        for name in ("status", "subscriptionId", "tenantId", "correlationId", "resourceProvider")
    }
    resource = parse_id(uri)
    return ResourceEvent(
        id=event_id,
        event_type=event_type,
        # ARM sends the same id twice; parsing it once halves the cost of a big batch's ids.
        subject=resource if subject == uri else parse_id(subject),
        time=when,
        source=source,
        schema=schema,
        operation_name=operation,
        resource=resource,
        status=optional["status"],
        subscription_id=optional["subscriptionId"],
        tenant_id=optional["tenantId"],
        correlation_id=optional["correlationId"],
        resource_provider=optional["resourceProvider"],
    )


def _text(obj: Mapping[str, Any], key: str, *, required: bool = True, allow_empty: bool = False) -> str:
    """A string member, checked before the SDK coerces a list or number into ``str``."""
    value = obj.get(key)
    if value is None:
        if required:
            raise BadEventItem(f"{key} is missing or null")
        return ""
    if not isinstance(value, str):
        raise BadEventItem(f"{key} must be a string, got {_json_type(value)}")
    if not value and not allow_empty:
        raise BadEventItem(f"{key} is empty")
    if len(value) > MAX_TEXT:
        raise BadEventItem(f"{key} is longer than {MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows lone surrogates ("\ud800"); no store or log can keep them
        raise BadEventItem(f"{key} contains an unpaired surrogate") from None
    return value


def _rfc3339(text: str) -> datetime:
    """An RFC 3339 time in UTC; fractions beyond microseconds (Azure sends seven digits) are cut."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise BadEventItem("time is not an RFC 3339 date-time")
    date, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in (None, "Z", "z") else offset
    try:
        return _utc(datetime.fromisoformat(f"{date}T{clock}{fraction}{offset}"))
    except ValueError:
        raise BadEventItem("time is not a valid date-time") from None


def _utc(when: datetime) -> datetime:
    # Event Grid documents its times as UTC; a time without an offset is read as UTC, not local time.
    if when.tzinfo is None or when.utcoffset() is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _one_line(reason: str) -> str:
    text = " ".join(str(reason).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


# --- coalescing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reread:
    """One resource to read again, and every event folded into that read."""

    resource: ArmId
    latest: ResourceEvent
    event_ids: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.resource.key


@dataclass(frozen=True, slots=True)
class Coalesced:
    rereads: tuple[Reread, ...]
    # Ids seen again after their first occurrence (Event Grid delivers at least once).
    duplicates: tuple[str, ...]
    # Events older than the last full read of their resource: that read already reflects them.
    stale: tuple[ResourceEvent, ...]


def coalesce(
    events: Iterable[ResourceEvent],
    last_full_read: Mapping[str, datetime] | None = None,
    *,
    target: Callable[[ResourceEvent], ArmId] | None = None,
) -> Coalesced:
    """Fold a burst of events into one re-read per resource, never rolling state back.

    ``target`` maps an event to the resource to re-read (``plmon.monitor.events.relevance.resource_to_reread`` in the
    daemon; the event's own resource by default), and ``last_full_read`` is keyed by that resource's
    ``ArmId.key``. An event strictly older than the last full read is dropped as stale; one at exactly
    that time still triggers a re-read, since a read and a write in the same instant may be in either
    order and a needless re-read is cheap while a missed one is not. Among events for one resource the
    latest time wins, ties going to the one delivered last. Re-reads come out oldest first, so a
    consumer working through them in order follows the order of the changes.
    """
    pick = target or (lambda e: e.resource)
    reads = {} if last_full_read is None else last_full_read  # an empty Mapping may still have a default
    seen: set[str] = set()
    duplicates: list[str] = []
    stale: list[ResourceEvent] = []
    latest: dict[str, ResourceEvent] = {}
    resources: dict[str, ArmId] = {}
    ids: dict[str, list[str]] = {}
    for event in events:
        if event.id in seen:
            duplicates.append(event.id)
            continue
        seen.add(event.id)
        resource = pick(event)
        cutoff = reads.get(resource.key)
        if cutoff is not None and event.time < _utc(cutoff):
            stale.append(event)
            continue
        current = latest.get(resource.key)
        if current is None or event.time >= current.time:
            latest[resource.key] = event
        resources.setdefault(resource.key, resource)
        ids.setdefault(resource.key, []).append(event.id)
    rereads = [Reread(resources[k], latest[k], tuple(ids[k])) for k in latest]
    rereads.sort(key=lambda r: (r.latest.time, r.key))
    return Coalesced(tuple(rereads), tuple(duplicates), tuple(stale))
