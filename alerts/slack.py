"""Slack: an incoming-webhook message built with slack_sdk's Block Kit models.

Everything that comes from Azure is attacker-controlled: a connection's ``requestMessage`` is written
by whoever asked for the connection, possibly in another tenant. So every piece of Azure text goes
through :func:`escape` (``&``, ``<``, ``>``: Slack's control characters; terminal control bytes shown
as ``\\xNN``, as on the terminal) before it reaches mrkdwn, and the portal link's URL is percent-encoded,
so neither ``<!channel>`` nor ``<https://evil|click>`` can become a mention or a link. The models enforce
Slack's size limits; texts are cut to fit first (after :mod:`plmon.alerts.bounds` capped them for every channel).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, MarkdownTextObject, SectionBlock
from slack_sdk.webhook import WebhookClient

from plmon.alerts.bounds import inert
from plmon.alerts.channel import ChannelContext, DeliveryError, channel_type, scrub
from plmon.monitor.config import AlertChannelConfig
from plmon.monitor.state.store import OutboxRow

__all__ = ["SlackChannel", "alert_blocks", "digest_blocks", "escape", "portal_link"]

_ICON = {"critical": ":rotating_light:", "high": ":red_circle:", "medium": ":large_orange_circle:",
         "low": ":large_yellow_circle:", "info": ":white_circle:"}
_VERB = {"opened": "Opened", "resolved": "Resolved", "reminder": "Still open"}
_TEXT_MAX = 2900   # a section's text is limited to 3000 characters
_FIELD_MAX = 1900  # a field to 2000


def escape(text: object) -> str:
    """Slack's escaping for mrkdwn (the three characters that start mentions and links), with control
    characters made visible: a client or a forwarder that prints the message must not obey them."""
    return inert(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def portal_link(resource_id: str, tenant_id: str | None) -> str:
    """The resource in the Azure portal; the id is percent-encoded so it cannot close the link."""
    tenant = quote(tenant_id or "", safe="")
    return f"https://portal.azure.com/#@{tenant}/resource{quote(resource_id, safe='/')}"


def _evidence_summary(evidence: Mapping[str, Any], limit: int = 8) -> str:
    lines = []
    for key, value in list(evidence.items())[:limit]:
        shown = value if isinstance(value, str | int | float | bool) or value is None else _flat(value)
        lines.append(f"• {escape(key)}: {escape(_cut(str(shown), 300))}")
    if len(evidence) > limit:
        lines.append(f"• … {len(evidence) - limit} more")
    return "\n".join(lines) or "(none)"


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_flat(v) for v in value)
    return str(value)


def alert_blocks(alert: OutboxRow) -> tuple[str, list[Block]]:
    """(fallback text, blocks) of one alert; every Azure string escaped."""
    p = alert.payload
    f = p["finding"]
    sev = str(f.get("severity", "info"))
    rid = str(f.get("resource_id", ""))
    name = rid.rstrip("/").rsplit("/", 1)[-1] or rid
    verb = _VERB.get(alert.kind, alert.kind)
    title = escape(f.get("title", f.get("check_id", "")))
    text = f"{verb}: [{sev.upper()}] {title} on {escape(name)}"
    link = f"<{portal_link(rid, p.get('tenant_id'))}|{escape(name)}>"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_cut(f"{_ICON.get(sev, '')} *{verb}* · *{escape(sev.upper())}* · "
                                                       f"*{title}*", _TEXT_MAX))),
        SectionBlock(fields=[
            MarkdownTextObject(text=_cut(f"*Resource*\n{link}", _FIELD_MAX)),
            MarkdownTextObject(text=_cut(f"*Check*\n`{escape(f.get('check_id', ''))}`", _FIELD_MAX)),
            MarkdownTextObject(text=_cut(f"*Subscription*\n{escape(f.get('subscription_id') or '-')}", _FIELD_MAX)),
            MarkdownTextObject(text=f"*First seen*\n{escape(p.get('first_seen', '-'))}"),
        ]),
        SectionBlock(text=MarkdownTextObject(text=_cut(f"*Finding*\n{escape(f.get('message', ''))}", _TEXT_MAX))),
        SectionBlock(text=MarkdownTextObject(
            text=_cut(f"*Evidence*\n{_evidence_summary(f.get('evidence') or {})}", _TEXT_MAX))),
    ]
    if alert.kind != "resolved" and f.get("remediation"):
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=_cut(f"*Remediation*\n{escape(f['remediation'])}", _TEXT_MAX))))
    context = f"plmon alert `{alert.alert_id}`"
    if p.get("truncated"):
        cut = ", ".join(sorted({escape(c["field"]) for c in p["truncated"]}))
        context = _cut(f"{context} · Azure text cut to fit: {cut} (`plmon findings` has it whole)", _FIELD_MAX)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=context)]))
    return text, blocks


def digest_blocks(alerts: Sequence[OutboxRow], first_n: int = 10) -> tuple[str, list[Block]]:
    """One message for a burst: counts by severity and check, then the first ``first_n`` titles."""
    findings = [a.payload["finding"] for a in alerts]
    by_sev = Counter(str(f.get("severity")) for f in findings)
    by_check = Counter(str(f.get("check_id")) for f in findings)
    text = f"plmon: {len(alerts)} alerts"
    sev_line = ", ".join(f"{escape(k)}: {v}" for k, v in by_sev.most_common())
    check_line = "\n".join(f"• `{escape(k)}`: {v}" for k, v in by_check.most_common(15))
    first = "\n".join(
        f"• {_VERB.get(a.kind, a.kind)} [{escape(str(a.payload['finding'].get('severity', '')).upper())}] "
        f"{escape(a.payload['finding'].get('title', ''))} on "
        f"{escape(str(a.payload['finding'].get('resource_id', '')).rsplit('/', 1)[-1])}" for a in alerts[:first_n])
    more = f"\n… and {len(alerts) - first_n} more" if len(alerts) > first_n else ""
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(
            text=f"*{text}* (a burst, sent as one digest)\n*By severity:* {sev_line}")),
        SectionBlock(text=MarkdownTextObject(text=_cut(f"*By check*\n{check_line}", _TEXT_MAX))),
        DividerBlock(),
        SectionBlock(text=MarkdownTextObject(text=_cut(f"*First {min(first_n, len(alerts))}*\n{first}{more}",
                                                       _TEXT_MAX))),
    ]
    return text, blocks


@channel_type("slack")
class SlackChannel:
    def __init__(self, name: str, url: str, *, timeout: float = 10.0, digest_threshold: int = 20) -> None:
        self.name, self.digest_threshold = name, digest_threshold
        self._url, self._timeout = url, timeout

    @classmethod
    def from_config(cls, cfg: AlertChannelConfig, context: ChannelContext | None = None) -> SlackChannel:
        from plmon.alerts.outbox import channel_name

        assert cfg.url is not None  # the config model requires it for slack
        return cls(channel_name(cfg), cfg.url.get_secret_value(), timeout=cfg.timeout.total_seconds(),
                   digest_threshold=cfg.digest_threshold)

    def __repr__(self) -> str:
        return f"SlackChannel(name={self.name!r})"

    def send(self, alert: OutboxRow) -> None:
        self._post(*alert_blocks(alert))

    def send_digest(self, alerts: Sequence[OutboxRow]) -> None:
        self._post(*digest_blocks(alerts))

    def _post(self, text: str, blocks: list[Block]) -> None:
        client = WebhookClient(self._url, timeout=max(1, round(self._timeout)))
        try:
            resp = client.send(text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        except Exception as err:  # urllib raises URLError, TimeoutError, ConnectionError, ...
            raise DeliveryError(f"{type(err).__name__}: {scrub(str(err), self._url)}") from None
        if resp.status_code == 200:
            return
        retryable = resp.status_code in (408, 425, 429) or resp.status_code >= 500
        raise DeliveryError(f"HTTP {resp.status_code}: {scrub(str(resp.body)[:100], self._url)}", retryable=retryable)
