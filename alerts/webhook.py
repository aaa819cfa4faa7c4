"""Generic webhook: one CloudEvents 1.0 structured JSON document per alert, signed with HMAC-SHA256.

The signature covers the exact bytes sent (``X-Plmon-Signature: sha256=<hex>``), so a receiver
verifies before parsing. The event ``id`` is the alert id: stable across retries, so a receiver that
got an alert twice (at-least-once) drops the copy.

That signature alone lets whoever captured one delivery post it again, at any time, and it verifies. So each
send is also signed the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``,
made by the ``standardwebhooks`` library): the signature covers the id and the time of this attempt, a receiver
refuses a timestamp outside its tolerance (the libraries' default is five minutes) and remembers the ids it saw
within it, so a captured alert cannot be replayed. A retry keeps the id and gets a fresh timestamp and signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from plmon.alerts.channel import ChannelContext, DeliveryError, channel_type, scrub
from plmon.monitor.config import AlertChannelConfig
from plmon.monitor.state.store import OutboxRow

__all__ = ["EVENT_TYPES", "WebhookChannel", "cloud_event", "digest_event", "sign", "standard_headers",
           "standard_key"]

EVENT_TYPES = {"opened": "io.plmon.finding.opened", "resolved": "io.plmon.finding.resolved",
               "reminder": "io.plmon.finding.reminder"}
DIGEST_TYPE = "io.plmon.finding.digest"
SIGNATURE_HEADER = "X-Plmon-Signature"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_key(secret: str) -> Webhook:
    """The Standard Webhooks signer for the configured secret.

    A ``whsec_<base64>`` secret (what Standard Webhooks tooling generates) is the base64 key the spec defines; any
    other secret is used as its UTF-8 bytes, so an existing plmon secret needs no rotation: a receiver's library
    takes it as ``whsec_`` + base64 of those bytes (docs/alerts.md)."""
    return Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())


def standard_headers(body: bytes, msg_id: str, key: Webhook, at: datetime) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` (whole seconds) and ``webhook-signature`` (``v1,<base64>`` of
    HMAC-SHA256 over ``id.timestamp.body``) for one attempt to send ``body``."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": key.sign(msg_id=msg_id, timestamp=at, data=body.decode())}


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _source(payload: Any) -> str:
    tenant = payload.get("tenant_id")
    return f"/plmon/tenants/{tenant}" if tenant else "/plmon"


def cloud_event(alert: OutboxRow) -> dict[str, Any]:
    """The CloudEvents document of contracts.md: ``data`` = the finding + first_seen, last_seen, state (and
    ``truncated`` when Azure text was cut to fit, see :mod:`plmon.alerts.bounds`)."""
    p = alert.payload
    finding = dict(p["finding"])
    data = {**finding, "first_seen": p["first_seen"], "last_seen": p["last_seen"], "state": p["state"]}
    for extra in ("resolved_at", "previous_severity", "truncated"):
        if extra in p:
            data[extra] = p[extra]
    return {"specversion": "1.0", "id": alert.alert_id, "source": _source(p), "type": EVENT_TYPES[alert.kind],
            "time": p["time"], "subject": finding.get("resource_id"), "datacontenttype": "application/json",
            "data": data}


def digest_event(alerts: Sequence[OutboxRow], first_n: int = 10) -> dict[str, Any]:
    """One event standing for a burst; it lists every alert id it replaces, so receivers can dedupe."""
    ids = sorted(a.alert_id for a in alerts)
    findings = [a.payload["finding"] for a in alerts]
    return {"specversion": "1.0", "id": "plmon-digest-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32],
            "source": _source(alerts[0].payload), "type": DIGEST_TYPE, "time": max(a.payload["time"] for a in alerts),
            "datacontenttype": "application/json",
            "data": {"count": len(alerts),
                     "by_kind": dict(Counter(a.kind for a in alerts)),
                     "by_severity": dict(Counter(f.get("severity") for f in findings)),
                     "by_check": dict(Counter(f.get("check_id") for f in findings)),
                     "alert_ids": ids,
                     "first": [_brief(a) for a in alerts[:first_n]]}}


def _brief(a: OutboxRow) -> dict[str, Any]:
    f = a.payload["finding"]
    brief = {"id": a.alert_id, "type": EVENT_TYPES[a.kind], "title": f.get("title"), "check_id": a.check_id,
             "resource_id": f.get("resource_id"), "severity": f.get("severity")}
    if a.payload.get("truncated"):
        brief["truncated"] = [c["field"] for c in a.payload["truncated"]]
    return brief


@channel_type("webhook")
class WebhookChannel:
    def __init__(self, name: str, url: str, secret: str, *, timeout: float = 10.0, digest_threshold: int = 20,
                 clock: Callable[[], datetime] = _wall_clock) -> None:
        self.name, self.digest_threshold = name, digest_threshold
        self._url, self._secret, self._timeout = url, secret, timeout
        self._clock = clock  # the wall clock: a receiver compares webhook-timestamp with its own
        self._key: Webhook | None = None
        self._client: httpx.Client | None = None  # created on first send: no work in constructors
        self._client_lock = threading.Lock()  # the daemon sends on two threads: one client (its pool) for both

    @classmethod
    def from_config(cls, cfg: AlertChannelConfig, context: ChannelContext | None = None) -> WebhookChannel:
        from plmon.alerts.outbox import channel_name

        assert cfg.secret is not None and cfg.url is not None  # the config model requires both for webhooks
        return cls(channel_name(cfg), cfg.url.get_secret_value(), cfg.secret.get_secret_value(),
                   timeout=cfg.timeout.total_seconds(), digest_threshold=cfg.digest_threshold)

    def __repr__(self) -> str:
        return f"WebhookChannel(name={self.name!r})"

    def send(self, alert: OutboxRow) -> None:
        self._post(cloud_event(alert), "application/cloudevents+json; charset=utf-8")

    def send_digest(self, alerts: Sequence[OutboxRow]) -> None:
        self._post(digest_event(alerts), "application/cloudevents+json; charset=utf-8")

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def _post(self, event: dict[str, Any], content_type: str) -> None:
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        if self._key is None:
            self._key = standard_key(self._secret)
        headers = {"Content-Type": content_type, SIGNATURE_HEADER: sign(body, self._secret),
                   **standard_headers(body, str(event["id"]), self._key, self._clock()), "User-Agent": "plmon"}
        try:
            resp = self._http().post(self._url, content=body, headers=headers)
        except httpx.TimeoutException as err:
            raise DeliveryError(f"timeout: {scrub(str(err) or type(err).__name__, self._url, self._secret)}") from None
        except httpx.HTTPError as err:
            raise DeliveryError(f"{type(err).__name__}: {scrub(str(err), self._url, self._secret)}") from None
        if 200 <= resp.status_code < 300:
            return
        retryable = resp.status_code in (408, 425, 429) or resp.status_code >= 500
        raise DeliveryError(f"HTTP {resp.status_code}", retryable=retryable)
