"""Azure Monitor Logs (and Microsoft Sentinel on top of it): each alert a row in the custom table
``PlmonFindings_CL``, sent through the Logs Ingestion API with ``azure-monitor-ingestion``.

A row is one transition of one finding (opened, reminder, resolved) with the finding as the scan document has it,
so KQL can both follow a finding's history and take its latest state (``arg_max(TimeGenerated, *) by AlertId``
drops the copies an at-least-once retry may add; deploy/sentinel/ has the queries). Rows leave through the outbox
like every channel's alerts; a burst is one upload of all its rows (the digest of a log channel keeps every row:
Log Analytics is where they are counted), and unless ``digest_threshold`` is set, every delivery pass with more
than one row is such a batch. The SDK gzips each request and splits batches at its 1 MB limit.

The identity is the one plmon reads Azure with (DefaultAzureCredential: a managed identity in Azure, or
``PLMON_ARM_TOKEN`` for a replay or CI), given by the composition root; it needs *Monitoring Metrics Publisher*
on the data collection rule (deploy/bicep/monitor.bicep assigns it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmon.alerts.channel import ChannelContext, DeliveryError, channel_type, scrub
from plmon.monitor.config import AlertChannelConfig
from plmon.monitor.state.store import OutboxRow

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.monitor.ingestion import LogsIngestionClient

__all__ = ["COLUMNS", "AzureMonitorChannel", "log_row"]

# The stream's columns, in the order the Bicep table and DCR stream declaration list them (tests hold them equal).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimeGenerated", "datetime"),   # the transition's time (a recording's on its clock, as in the webhook)
    ("AlertId", "string"),           # stable per finding and transition: deduplicate on it
    ("AlertKind", "string"),         # opened | reminder | resolved
    ("CheckId", "string"),
    ("Severity", "string"),
    ("Title", "string"),
    ("Message", "string"),
    ("ResourceId", "string"),
    ("SubscriptionId", "string"),
    ("TenantId", "string"),
    ("State", "string"),             # the finding's state after the transition: open | resolved
    ("FirstSeen", "datetime"),
    ("LastSeen", "datetime"),
    ("ResolvedAt", "datetime"),
    ("PreviousSeverity", "string"),
    ("Evidence", "dynamic"),
    ("Remediation", "string"),
    ("Truncated", "dynamic"),        # what bounding cut from Azure text ([] when nothing)
)
_RETRYABLE = {401, 403, 408, 425, 429}  # 401/403: a role assignment takes minutes to reach the ingestion endpoint


def log_row(alert: OutboxRow) -> MutableMapping[str, Any]:
    """One alert as a row of ``PlmonFindings_CL`` (every column present; absent values are null)."""
    p = alert.payload
    f: Mapping[str, Any] = p["finding"]
    return {
        "TimeGenerated": p["time"], "AlertId": alert.alert_id, "AlertKind": alert.kind,
        "CheckId": f.get("check_id", alert.check_id), "Severity": f.get("severity"), "Title": f.get("title"),
        "Message": f.get("message"), "ResourceId": f.get("resource_id"), "SubscriptionId": f.get("subscription_id"),
        "TenantId": p.get("tenant_id"), "State": p.get("state"), "FirstSeen": p.get("first_seen"),
        "LastSeen": p.get("last_seen"), "ResolvedAt": p.get("resolved_at"),
        "PreviousSeverity": p.get("previous_severity"), "Evidence": f.get("evidence") or {},
        "Remediation": f.get("remediation"), "Truncated": p.get("truncated") or [],
    }


@channel_type("azure-monitor")
class AzureMonitorChannel:
    def __init__(self, name: str, endpoint: str, rule_id: str, stream: str, *,
                 credential: Callable[[], TokenCredential] | None, timeout: float = 10.0, digest_threshold: int = 1,
                 ca_bundle: Path | None = None) -> None:
        self.name, self.digest_threshold = name, digest_threshold
        self._endpoint, self._rule_id, self._stream = endpoint, rule_id, stream
        self._credential, self._timeout, self._ca_bundle = credential, timeout, ca_bundle
        self._client: LogsIngestionClient | None = None  # created on first send: no work in constructors
        self._client_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: AlertChannelConfig, context: ChannelContext | None = None) -> AzureMonitorChannel:
        from plmon.alerts.outbox import channel_name

        assert cfg.endpoint and cfg.rule_id and cfg.stream  # the config model requires them for azure-monitor
        # A log channel batches by default: without an explicit digest_threshold, any pass of several rows is one
        # upload (a digest here loses nothing: every row is sent).
        threshold = cfg.digest_threshold if "digest_threshold" in cfg.model_fields_set else 1
        return cls(channel_name(cfg), cfg.endpoint, cfg.rule_id, cfg.stream,
                   credential=context.credential if context else None, timeout=cfg.timeout.total_seconds(),
                   digest_threshold=threshold, ca_bundle=cfg.ca_bundle)

    def __repr__(self) -> str:
        return f"AzureMonitorChannel(name={self.name!r}, stream={self._stream!r})"

    def send(self, alert: OutboxRow) -> None:
        self._upload([log_row(alert)])

    def send_digest(self, alerts: Sequence[OutboxRow]) -> None:
        self._upload([log_row(a) for a in alerts])

    def _logs(self) -> LogsIngestionClient:
        with self._client_lock:
            if self._client is None:
                from azure.monitor.ingestion import LogsIngestionClient

                if self._credential is None:
                    raise DeliveryError("no Azure credential was given to this channel", retryable=False)

                options: dict[str, Any] = {"connection_timeout": self._timeout, "read_timeout": self._timeout,
                                           "retry_total": 0}  # retries are the outbox's, with its backoff
                if self._ca_bundle is not None:
                    options["connection_verify"] = str(self._ca_bundle)
                self._client = LogsIngestionClient(self._endpoint, self._credential(), **options)
            return self._client

    def _upload(self, rows: list[MutableMapping[str, Any]]) -> None:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        try:
            self._logs().upload(self._rule_id, self._stream, rows)
        except HttpResponseError as err:
            status = err.status_code or 0
            code = getattr(err.error, "code", None) if err.error is not None else None
            retryable = status in _RETRYABLE or status >= 500 or status == 0
            raise DeliveryError(f"HTTP {status}{f' {code}' if code else ''}", retryable=retryable) from None
        except ClientAuthenticationError as err:  # no token: a managed identity not there yet, a CLI login expired
            raise DeliveryError(f"credential: {scrub(err.message or type(err).__name__)}") from None
        except AzureError as err:  # connection refused, timeouts, TLS
            raise DeliveryError(f"{type(err).__name__}: {scrub(err.message or str(err))}") from None
