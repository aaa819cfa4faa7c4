"""Slack transport: Block Kit payloads built by slack_sdk, posted to a real receiver, Azure text escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from receiver import Receiver

from plmon.alerts.outbox import outbox_rows
from plmon.alerts.slack import SlackChannel, alert_blocks, escape, portal_link
from plmon.monitor.state.store import FindingRecord, FindingState, OutboxRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOSTILE = "<!channel> <https://evil|click> & more"
RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe<1>"


def row(message: str = HOSTILE, kind: str = "opened", seq: int = 1) -> OutboxRow:
    rec = FindingRecord("connection.pending", RID.lower(), RID, FindingState.OPEN, "high", T0, T0, None, T0, seq,
                        {"check_id": "connection.pending", "resource_id": RID, "severity": "high",
                         "title": "Private endpoint connection awaiting approval <!here>",
                         "message": f"Pending: {message}", "subscription_id": "s",
                         "evidence": {"request_message": message, "status": "Pending", "nested": {"a": [1, 2]}},
                         "remediation": "Approve it: az network private-endpoint-connection approve"})
    [r] = outbox_rows(rec, kind, T0, ["slack"], tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47")
    return r


def test_hostile_text_arrives_escaped() -> None:
    """A requestMessage of '<!channel> <https://evil|click>' reaches Slack as inert escaped text."""
    rx = Receiver()
    SlackChannel("slack", rx.url, timeout=2).send(row())
    [req] = rx.accepted
    body = json.loads(req["body"])
    raw = req["body"].decode()
    assert "<!channel>" not in raw and "<!here>" not in raw and "<https://evil" not in raw
    assert "&lt;!channel&gt; &lt;https://evil|click&gt; &amp; more" in raw
    # the only link is the portal link we built, with the id percent-encoded
    link = portal_link(RID, "72f988bf-86f1-41af-91ab-2d7cd011db47")
    assert "%3C1%3E" in link and f"<{link}|pe&lt;1&gt;>" in raw
    assert raw.count("<https://") == 1
    assert body["text"].startswith("Opened: [HIGH]")
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds[0] == "section" and kinds[-1] == "context"
    texts = json.dumps(body["blocks"])
    for part in ("Resource", "Evidence", "Remediation", "connection.pending", "HIGH"):
        assert part in texts
    rx.close()


def test_blocks_are_slack_sdk_models_within_limits() -> None:
    """Blocks are slack_sdk model objects; a 10 000-character message is cut to fit Slack's limits."""
    from slack_sdk.models.blocks import Block

    _, blocks = alert_blocks(row("x" * 10_000))
    assert all(isinstance(b, Block) for b in blocks)
    for b in blocks:
        d = b.to_dict()  # validates the limits
        if "text" in d:
            assert len(d["text"]["text"]) <= 3000


def test_resolved_message_has_no_remediation() -> None:
    """A resolve says Resolved and drops the remediation block."""
    text, blocks = alert_blocks(row(kind="resolved", seq=2))
    assert text.startswith("Resolved:")
    assert "Remediation" not in json.dumps([b.to_dict() for b in blocks])


def test_escape() -> None:
    """escape() covers exactly Slack's three control characters, ampersand first."""
    assert escape("a & <b> &lt;") == "a &amp; &lt;b&gt; &amp;lt;"


def test_slack_error_status_is_reported_without_url() -> None:
    """A 500 from Slack is a retryable DeliveryError whose text does not contain the webhook URL."""
    from plmon.alerts.channel import DeliveryError

    rx = Receiver(script=[500])
    try:
        SlackChannel("slack", rx.url, timeout=2).send(row())
    except DeliveryError as err:
        assert err.retryable and rx.url not in str(err) and "500" in str(err)
    else:
        raise AssertionError("expected DeliveryError")
    rx.close()
