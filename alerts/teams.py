"""Microsoft Teams: an Adaptive Card posted to a Teams Workflows webhook ("Post to a channel when a webhook request
is received").

The body is the envelope the Workflows trigger expects: ``{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard 1.4>}]}``. A card is plain JSON data, so it is
built here as dicts (no card library: the test suite validates every card against the published Adaptive Card
schema instead).

Azure text is attacker-controlled (a connection's ``requestMessage`` comes from whoever asked for the connection,
possibly another tenant), and Teams renders the markdown of TextBlocks and facts: a ``[click](https://evil)`` would
be a link, ``![x](https://evil/pixel)`` an image fetch, ``<at>Everyone</at>`` a mention. So every Azure string
goes through :func:`escape`: control characters shown inert (as for every channel), each character that can open
markdown, a mention tag or an HTML entity backslash-escaped, and bare URLs defanged so that no client auto-links
them. The only link on the card is the portal link plmon builds (an ``Action.OpenUrl`` with the resource id
percent-encoded), never a link inside text.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from plmon.alerts.bounds import inert
from plmon.alerts.channel import ChannelContext, DeliveryError, channel_type, scrub
from plmon.alerts.slack import portal_link
from plmon.monitor.config import AlertChannelConfig
from plmon.monitor.state.store import OutboxRow

__all__ = ["CARD_VERSION", "TeamsChannel", "alert_card", "digest_card", "escape", "message"]

CARD_VERSION = "1.4"  # what Teams renders on desktop, web and mobile
_COLOR = {"critical": "attention", "high": "attention", "medium": "warning", "low": "accent", "info": "default"}
_VERB = {"opened": "Opened", "resolved": "Resolved", "reminder": "Still open"}
_TEXT_MAX = 2000     # per TextBlock: a Teams message is limited to about 28 KB in all
# Markdown's inline openers (emphasis, code, links and images, autolinks and HTML such as <at>), the escape
# character itself, and '&' (an entity such as &lt;at&gt; must not decode into a tag).
_MARKDOWN = re.compile(r"([\\`*_~\[\]()!<>&|#{}])")
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*)://")   # https://, ftp://, ...: clients auto-link them
_WWW = re.compile(r"(?i)\bwww\.")


def escape(text: object) -> str:
    """Azure text made literal for Adaptive Card markdown: no link, image, emphasis, code span, mention tag or
    entity can form from it, and no bare URL is auto-linked (``https://x`` reads ``https:\\/\\/x``)."""
    out = _MARKDOWN.sub(r"\\\1", inert(str(text)))
    out = _SCHEME.sub(lambda m: m.group(1) + ":\\/\\/", out)
    return _WWW.sub(lambda m: m.group()[:3] + "\\.", out)


def _cut(text: str, limit: int = _TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": _cut(text), "wrap": True, **style}


def _section(title: str, text: str, **style: Any) -> list[dict[str, Any]]:
    return [_text(title, weight="Bolder", spacing="Medium"), _text(text, spacing="Small", **style)]


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_flat(v) for v in value)
    return str(value)


def _evidence(evidence: Mapping[str, Any], limit: int = 8) -> str:
    lines = [f"- {escape(k)}: {escape(_cut(_flat(v), 300))}" for k, v in list(evidence.items())[:limit]]
    if len(evidence) > limit:
        lines.append(f"- … {len(evidence) - limit} more")
    return "\n".join(lines) or "(none)"


def _card(body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    card: dict[str, Any] = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "version": CARD_VERSION, "body": body}
    if actions:
        card["actions"] = actions
    return card


def message(card: Mapping[str, Any]) -> dict[str, Any]:
    """The Workflows webhook envelope around one card."""
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


def alert_card(alert: OutboxRow) -> dict[str, Any]:
    """One alert: severity and title, the resource (with the portal link as the card's action), the finding,
    an evidence summary and the remediation; every Azure string escaped."""
    p = alert.payload
    f = p["finding"]
    sev = str(f.get("severity", "info"))
    rid = str(f.get("resource_id", ""))
    name = rid.rstrip("/").rsplit("/", 1)[-1] or rid
    verb = _VERB.get(alert.kind, alert.kind)
    title = escape(f.get("title", f.get("check_id", "")))
    facts = [{"title": "Resource", "value": _cut(escape(name))},
             {"title": "Check", "value": escape(f.get("check_id", ""))},
             {"title": "Subscription", "value": escape(f.get("subscription_id") or "-")},
             {"title": "First seen", "value": escape(p.get("first_seen", "-"))},
             {"title": "Resource id", "value": _cut(escape(rid))}]
    body: list[dict[str, Any]] = [
        _text(f"{verb} · {escape(sev.upper())} · {title}", size="Medium", weight="Bolder",
              color=_COLOR.get(sev, "default")),
        {"type": "FactSet", "facts": facts},
        *_section("Finding", escape(f.get("message", ""))),
        *_section("Evidence", _evidence(f.get("evidence") or {})),
    ]
    if alert.kind != "resolved" and f.get("remediation"):
        body += _section("Remediation", escape(f["remediation"]), fontType="Monospace")
    context = f"plmon alert {escape(alert.alert_id)}"
    if p.get("truncated"):
        cut = ", ".join(sorted({escape(c["field"]) for c in p["truncated"]}))
        context += f" · Azure text cut to fit: {cut} (plmon findings has it whole)"
    body.append(_text(context, isSubtle=True, size="Small", spacing="Medium"))
    link = {"type": "Action.OpenUrl", "title": "Open in the Azure portal", "url": portal_link(rid, p.get("tenant_id"))}
    return _card(body, [link] if rid else None)


def digest_card(alerts: Sequence[OutboxRow], first_n: int = 10) -> dict[str, Any]:
    """One card for a burst: counts by severity and check, then the first ``first_n`` alerts."""
    findings = [a.payload["finding"] for a in alerts]
    by_sev = Counter(str(f.get("severity")) for f in findings)
    by_check = Counter(str(f.get("check_id")) for f in findings)
    first = "\n".join(
        f"- {_VERB.get(a.kind, a.kind)} {escape(str(a.payload['finding'].get('severity', '')).upper())} "
        f"{escape(a.payload['finding'].get('title', ''))} on "
        f"{escape(str(a.payload['finding'].get('resource_id', '')).rsplit('/', 1)[-1])}" for a in alerts[:first_n])
    more = f"\n\n… and {len(alerts) - first_n} more" if len(alerts) > first_n else ""
    body: list[dict[str, Any]] = [
        _text(f"plmon: {len(alerts)} alerts (a burst, sent as one digest)", size="Medium", weight="Bolder"),
        {"type": "FactSet", "facts": [{"title": escape(k), "value": str(v)} for k, v in by_sev.most_common()]},
        *_section("By check", "\n".join(f"- {escape(k)}: {v}" for k, v in by_check.most_common(15))),
        *_section(f"First {min(first_n, len(alerts))}", first + more),
    ]
    return _card(body)


@channel_type("teams")
class TeamsChannel:
    def __init__(self, name: str, url: str, *, timeout: float = 10.0, digest_threshold: int = 20) -> None:
        self.name, self.digest_threshold = name, digest_threshold
        self._url, self._timeout = url, timeout
        self._client: httpx.Client | None = None  # created on first send: no work in constructors
        self._client_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: AlertChannelConfig, context: ChannelContext | None = None) -> TeamsChannel:
        from plmon.alerts.outbox import channel_name

        assert cfg.url is not None  # the config model requires it for teams
        return cls(channel_name(cfg), cfg.url.get_secret_value(), timeout=cfg.timeout.total_seconds(),
                   digest_threshold=cfg.digest_threshold)

    def __repr__(self) -> str:
        return f"TeamsChannel(name={self.name!r})"  # the URL carries the workflow's signature: never shown

    def send(self, alert: OutboxRow) -> None:
        self._post(message(alert_card(alert)))

    def send_digest(self, alerts: Sequence[OutboxRow]) -> None:
        self._post(message(digest_card(alerts)))

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def _post(self, body: dict[str, Any]) -> None:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "plmon"}
        try:
            resp = self._http().post(self._url, content=content, headers=headers)
        except httpx.TimeoutException as err:
            raise DeliveryError(f"timeout: {scrub(str(err) or type(err).__name__, self._url)}") from None
        except httpx.HTTPError as err:
            raise DeliveryError(f"{type(err).__name__}: {scrub(str(err), self._url)}") from None
        if 200 <= resp.status_code < 300:  # a Workflows trigger answers 202 Accepted
            return
        retryable = resp.status_code in (408, 425, 429) or resp.status_code >= 500
        raise DeliveryError(f"HTTP {resp.status_code}", retryable=retryable)
