"""plmon as an Azure Function (Python v2 programming model). Only input adaptation lives here: every
trigger calls :class:`plmon.monitor.function_host.FunctionHost`, which drives the same daemon core as
``plmon serve`` (intake, targeted re-evaluation, lifecycle, delivery). See docs/deploy.md.

Triggers:
- ``full_collection`` (timer, ``PLMON_COLLECTION_SCHEDULE``, default every 30 minutes): the source of truth.
- ``resource_event`` (Event Grid): a resource event pushed by the event subscription.
- ``queued_event`` (Storage queue ``PLMON_EVENT_QUEUE``): the same events when Event Grid delivers to a
  queue, needed when the Function app is reachable only through a private endpoint.
- ``collection_shard`` (Storage queue ``PLMON_SHARD_QUEUE``): one shard of a fan-out collection, read on whichever
  instance the host hands it to, which then drives the collection if it can take the schedule lease; or a
  collection's deadline message (visible at ``scale.collection_deadline``), which expires it if it is still open.
- ``health`` (HTTP GET /api/healthz, anonymous): store and intake queue answer; the schedule lease's holder and this
  instance's lease changes (``plmon serve``'s ``plmon_schedule_lease_changes_total``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from plmon.monitor.events.parse import BadEventBody
from plmon.monitor.function_host import host

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def event_grid_document(event: func.EventGridEvent) -> dict[str, Any]:
    """The Event Grid schema object the binding parsed, rebuilt as ARM sent it."""
    when = event.event_time
    return {"id": event.id, "topic": event.topic, "subject": event.subject, "eventType": event.event_type,
            "eventTime": when.isoformat().replace("+00:00", "Z") if when is not None else None,
            "dataVersion": event.data_version, "metadataVersion": "1", "data": event.get_json()}


def _run(body: bytes, content_type: str, trigger: str) -> None:
    try:
        report = host().events(body, content_type)
    except BadEventBody as err:
        # Not retried: a redelivery of the same bytes would fail the same way.
        logging.warning("plmon %s: event rejected: %s", trigger, err.reason)
        return
    logging.info("plmon %s: %s", trigger, report)


@app.timer_trigger(arg_name="timer", schedule="%PLMON_COLLECTION_SCHEDULE%", run_on_startup=False,
                   use_monitor=True)
def full_collection(timer: func.TimerRequest) -> None:
    logging.info("plmon timer: %s", host().timer())


@app.event_grid_trigger(arg_name="event")
def resource_event(event: func.EventGridEvent) -> None:
    _run(json.dumps(event_grid_document(event)).encode(), "application/json", "event grid")


@app.queue_trigger(arg_name="message", queue_name="%PLMON_EVENT_QUEUE%", connection="PLMON_QUEUE")
def queued_event(message: func.QueueMessage) -> None:
    _run(message.get_body(), "application/json", "queue")


@app.queue_trigger(arg_name="message", queue_name="%PLMON_SHARD_QUEUE%", connection="PLMON_QUEUE")
def collection_shard(message: func.QueueMessage) -> None:
    logging.info("plmon shard: %s", host().shard(message.get_body(), message.dequeue_count or 1))


@app.route(route="healthz", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    ok, detail = host().health()
    detail["ready"] = ok
    return func.HttpResponse(json.dumps(detail, default=str), status_code=200 if ok else 503,
                             mimetype="application/json")
