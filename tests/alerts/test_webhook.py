"""Generic webhook: CloudEvents 1.0 structured JSON, HMAC-SHA256 over the raw body, stable ids."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from receiver import Receiver

from plmon.alerts.channel import build_channels
from plmon.alerts.outbox import outbox_rows
from plmon.alerts.webhook import WebhookChannel, cloud_event
from plmon.monitor.config import parse_config
from plmon.monitor.state.store import FindingRecord, FindingState

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/PE1"


def rec(seq: int = 1) -> FindingRecord:
    return FindingRecord("connection.pending", RID.lower(), RID, FindingState.OPEN, "medium", T0, T0, None, T0, seq,
                         {"check_id": "connection.pending", "resource_id": RID, "severity": "medium", "title": "t",
                          "message": "m", "subscription_id": "s", "evidence": {"status": "Pending"},
                          "remediation": "r"})


def test_cloud_event_shape() -> None:
    """The event carries every CloudEvents 1.0 required attribute and data = finding + lifecycle."""
    [row] = outbox_rows(rec(), "opened", T0, ["hook"], tenant_id="tid")
    ev = cloud_event(row)
    assert {k: ev[k] for k in ("specversion", "type", "source", "subject", "datacontenttype")} == {
        "specversion": "1.0", "type": "io.plmon.finding.opened", "source": "/plmon/tenants/tid", "subject": RID,
        "datacontenttype": "application/json"}
    assert ev["id"] == row.alert_id and ev["time"] == "2026-11-01T00:00:00.000000Z"
    assert ev["data"]["check_id"] == "connection.pending" and ev["data"]["state"] == "open"
    assert ev["data"]["first_seen"] and ev["data"]["last_seen"] and ev["data"]["evidence"] == {"status": "Pending"}


def test_signature_verifies_and_id_is_stable() -> None:
    """The receiver recomputes the HMAC over the raw body; a resend carries the same id and body."""
    rx = Receiver(secret="topsecret")
    [row] = outbox_rows(rec(), "reminder", T0, ["hook"], tenant_id=None)
    ch = WebhookChannel("hook", rx.url, "topsecret", timeout=2)
    ch.send(row)
    ch.send(row)
    a, b = rx.accepted
    assert a["body"] == b["body"]
    want = "sha256=" + hmac.new(b"topsecret", a["body"], hashlib.sha256).hexdigest()
    assert a["headers"]["X-Plmon-Signature"] == want
    assert a["headers"]["Content-Type"].startswith("application/cloudevents+json")
    assert json.loads(a["body"])["type"] == "io.plmon.finding.reminder"
    rx.close()


def test_secrets_do_not_leak_through_repr_or_errors() -> None:
    """Channel reprs and the config's repr hide the URL and secret; a refused connection's error too."""
    cfg = parse_config({"alerts": [{"type": "webhook", "url": "http://127.0.0.1:9/${HOOK_TOKEN}",
                                    "secret": "${HOOK_SECRET}"}]},
                       env={"HOOK_TOKEN": "tok-123", "HOOK_SECRET": "sec-456"})
    [ch] = build_channels(cfg.alerts).values()
    for text in (repr(ch), repr(cfg), str(cfg)):
        assert "tok-123" not in text and "sec-456" not in text
    from plmon.alerts.channel import DeliveryError

    [row] = outbox_rows(rec(), "opened", T0, [ch.name], tenant_id=None)
    try:
        ch.send(row)
    except DeliveryError as err:
        assert "tok-123" not in str(err) and "sec-456" not in str(err)
    else:
        raise AssertionError("port 9 should refuse")
