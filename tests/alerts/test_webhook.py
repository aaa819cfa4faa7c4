"""Generic webhook: CloudEvents 1.0 structured JSON, HMAC-SHA256 over the raw body, stable ids."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
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


# --- Standard Webhooks signatures (issue 16 item 3) -------------------------------------------------

def test_standard_signature_reproduces_the_published_vector() -> None:
    """standard_headers signs id.timestamp.body exactly as the Standard Webhooks reference vector says."""
    from plmon.alerts.webhook import standard_headers, standard_key

    at = datetime.fromtimestamp(1614265330, UTC)
    headers = standard_headers(b'{"test": 2432232314}', "msg_p5jXN8AQM9LWM0D4loKWxJek",
                               standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), at)
    assert headers == {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                       "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}


def _receiver_key(secret: str) -> str:
    """What a receiver's Standard Webhooks library takes for a plain plmon secret (docs/alerts.md)."""
    import base64

    return "whsec_" + base64.b64encode(secret.encode()).decode()


def test_standard_headers_verify_with_the_library_and_retries_keep_the_id() -> None:
    """A receiver's standardwebhooks verifies each send; a resend keeps webhook-id and is signed afresh."""
    from standardwebhooks.webhooks import Webhook

    rx = Receiver(secret="topsecret")
    [row] = outbox_rows(rec(), "opened", T0, ["hook"], tenant_id=None)
    ticks = iter([datetime.now(UTC) - timedelta(seconds=30), datetime.now(UTC)])
    ch = WebhookChannel("hook", rx.url, "topsecret", timeout=2, clock=lambda: next(ticks))
    ch.send(row)
    ch.send(row)
    first, second = rx.accepted
    for got in (first, second):
        headers = {k.lower(): v for k, v in got["headers"].items()}
        assert Webhook(_receiver_key("topsecret")).verify(got["body"], headers)["id"] == row.alert_id
        assert headers["webhook-id"] == row.alert_id and headers["x-plmon-signature"].startswith("sha256=")
    assert first["headers"]["webhook-timestamp"] != second["headers"]["webhook-timestamp"]
    assert first["headers"]["webhook-signature"] != second["headers"]["webhook-signature"]
    rx.close()


def test_a_captured_alert_replayed_later_is_refused() -> None:
    """Headers captured from a send ten minutes ago fail verification: the timestamp is signed and too old."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    rx = Receiver()
    [row] = outbox_rows(rec(), "opened", T0, ["hook"], tenant_id=None)
    WebhookChannel("hook", rx.url, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", timeout=2,
                   clock=lambda: datetime.now(UTC) - timedelta(minutes=10)).send(row)
    [got] = rx.accepted
    headers = {k.lower(): v for k, v in got["headers"].items()}
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").verify(got["body"], headers)
    # moving the timestamp forward breaks the signature instead
    headers["webhook-timestamp"] = str(int(datetime.now(UTC).timestamp()))
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").verify(got["body"], headers)
    rx.close()


def test_scan_notify_sends_standard_signatures_through_the_cli(tmp_path: Path) -> None:
    """plmon scan --notify: each alert carries both X-Plmon-Signature and a verifying webhook-signature."""
    from notifykit import SECRET, config, run, tenant
    from standardwebhooks.webhooks import Webhook

    rx = Receiver(secret=SECRET)
    r = run("scan", "--from", str(tenant(tmp_path / "t")), "--config", str(config(tmp_path, rx)), "--notify")
    assert r.exit_code == 0, r.output
    assert len(rx.events()) == 2  # X-Plmon-Signature verified as before
    for got in rx.accepted:
        headers = {k.lower(): v for k, v in got["headers"].items()}
        event = Webhook(_receiver_key(SECRET)).verify(got["body"], headers)
        assert headers["webhook-id"] == event["id"]
    rx.close()


def test_webhook_secret_that_cannot_sign_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty secret, or a whsec_ secret that is not base64, is exit 2 with one line naming the key."""
    from notifykit import tenant

    from plmon.monitor.cli import main

    folder = tenant(tmp_path / "t")
    for secret, needle in (("", "must not be empty"), ("whsec_not*base64!", "base64")):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(json.dumps({"alerts": [{"type": "webhook", "url": "https://h.example", "secret": secret}]}))
        with pytest.raises(SystemExit) as exit_:
            main(["scan", "--from", str(folder), "--config", str(cfg)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "alerts.0" in err and needle in err and err.count("\n") == 1, err
        assert "Traceback" not in err
