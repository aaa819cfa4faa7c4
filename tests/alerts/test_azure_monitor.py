"""Azure Monitor Logs channel: rows posted by the real azure-monitor-ingestion SDK to a local HTTPS receiver."""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme
from click.testing import CliRunner

from plmon.alerts.azure_monitor import COLUMNS, AzureMonitorChannel, log_row
from plmon.alerts.channel import ChannelContext, DeliveryError, build_channels
from plmon.alerts.outbox import outbox_rows
from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.config import parse_config
from plmon.monitor.errors import InputError
from plmon.monitor.state.store import FindingRecord, FindingState

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RULE = "dcr-00000000000000000000000000000000"
STREAM = "Custom-PlmonFindings_CL"
TOKEN = "test-token-for-the-ingestion-receiver"
RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe1"


class IngestionReceiver:
    """The Logs Ingestion API on 127.0.0.1 over HTTPS (a trustme CA): records each request with its gunzipped rows,
    answers 204, or the statuses in ``script`` first."""

    def __init__(self, tmp: Path, script: list[int] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script = list(script or [])
        ca = trustme.CA()
        self.ca_bundle = tmp / "ingestion-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                url = urlsplit(self.path)
                receiver.requests.append({"path": url.path, "query": parse_qs(url.query),
                                          "headers": dict(self.headers), "rows": json.loads(body)})
                status = receiver.script.pop(0) if receiver.script else 204
                payload = b"" if status == 204 else json.dumps(
                    {"error": {"code": "InvalidStream", "message": "no such stream"}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def rows(self) -> list[dict[str, Any]]:
        return [r for req in self.requests for r in req["rows"]]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[IngestionReceiver]:
    r = IngestionReceiver(tmp_path)
    yield r
    r.close()


def rec(seq: int = 1, state: FindingState = FindingState.OPEN) -> FindingRecord:
    return FindingRecord("connection.pending", RID.lower(), RID, state, "medium", T0, T0,
                         T0 if state is FindingState.RESOLVED else None, T0, seq,
                         {"check_id": "connection.pending", "resource_id": RID, "severity": "medium",
                          "title": "Private endpoint connection awaiting approval", "message": "m",
                          "subscription_id": "s", "evidence": {"status": "Pending", "request_message": "x" * 5000},
                          "remediation": "az network private-endpoint-connection approve --id /x"})


def channel(rx: IngestionReceiver, **kw: Any) -> AzureMonitorChannel:
    return AzureMonitorChannel("logs", rx.endpoint, RULE, STREAM, credential=lambda: StaticTokenCredential(TOKEN),
                               timeout=5, ca_bundle=rx.ca_bundle, **kw)


def test_the_sdk_posts_gzipped_rows_to_the_dcr_stream(rx: IngestionReceiver) -> None:
    """One alert: a gzipped POST to /dataCollectionRules/<rule>/streams/<stream> with the bearer token, one row."""
    [row] = outbox_rows(rec(), "opened", T0, ["logs"], tenant_id="tid")
    channel(rx).send(row)
    [req] = rx.requests
    assert req["path"] == f"/dataCollectionRules/{RULE}/streams/{STREAM}"
    assert req["query"]["api-version"] == ["2023-01-01"]
    assert req["headers"]["Content-Encoding"] == "gzip" and req["headers"]["Authorization"] == f"Bearer {TOKEN}"
    [got] = req["rows"]
    assert list(got) == [name for name, _ in COLUMNS]
    assert got["AlertId"] == row.alert_id and got["AlertKind"] == "opened" and got["State"] == "open"
    assert got["CheckId"] == "connection.pending" and got["ResourceId"] == RID and got["TenantId"] == "tid"
    assert got["TimeGenerated"] == "2026-11-01T00:00:00.000000Z" and got["Evidence"]["status"] == "Pending"
    assert got["Truncated"][0]["field"] == "evidence.request_message"  # bounded like every channel's text


def test_a_burst_is_one_upload_of_every_row(rx: IngestionReceiver) -> None:
    """send_digest uploads every alert as its own row in one request: a log digest drops nothing."""
    rows = [outbox_rows(rec(seq=i), "opened", T0, ["logs"], tenant_id=None)[0] for i in range(1, 31)]
    channel(rx).send_digest(rows)
    [req] = rx.requests
    assert [r["AlertId"] for r in req["rows"]] == [r.alert_id for r in rows]


def test_resolve_row_carries_resolved_at(rx: IngestionReceiver) -> None:
    """A resolve is a row with AlertKind resolved, State resolved and ResolvedAt set."""
    [row] = outbox_rows(rec(seq=2, state=FindingState.RESOLVED), "resolved", T0, ["logs"], tenant_id=None)
    got = log_row(row)
    assert (got["AlertKind"], got["State"]) == ("resolved", "resolved")
    assert got["ResolvedAt"] == "2026-11-01T00:00:00.000000Z"


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (403, True), (429, True), (503, True)])
def test_error_statuses_are_classified(tmp_path: Path, status: int, retryable: bool) -> None:
    """A bad stream or rule dead-letters at once; throttling, outages and a role not yet propagated retry."""
    rx = IngestionReceiver(tmp_path, script=[status])
    [row] = outbox_rows(rec(), "opened", T0, ["logs"], tenant_id=None)
    with pytest.raises(DeliveryError) as err:
        channel(rx).send(row)
    assert err.value.retryable is retryable and f"HTTP {status}" in str(err.value)
    assert TOKEN not in str(err.value)
    rx.close()


def test_untrusted_certificate_and_refused_connection_are_retryable_errors(rx: IngestionReceiver,
                                                                           tmp_path: Path) -> None:
    """Without the CA bundle TLS fails, and a closed port refuses: both DeliveryErrors, neither leaks the token."""
    [row] = outbox_rows(rec(), "opened", T0, ["logs"], tenant_id=None)
    untrusted = AzureMonitorChannel("logs", rx.endpoint, RULE, STREAM, timeout=5,
                                    credential=lambda: StaticTokenCredential(TOKEN))
    with pytest.raises(DeliveryError) as tls:
        untrusted.send(row)
    rx.close()
    with pytest.raises(DeliveryError) as refused:
        channel(rx).send(row)
    for err in (tls, refused):
        assert err.value.retryable and TOKEN not in str(err.value)
    assert rx.requests == []


def test_config_needs_endpoint_rule_and_stream() -> None:
    """{type: azure-monitor} names each missing key; 'url' or a plain http endpoint is refused; a full entry builds
    a channel that batches by default."""
    for entry, needle in (({}, "needs 'endpoint', 'rule_id', 'stream'"),
                          ({"endpoint": "http://x", "rule_id": RULE, "stream": STREAM}, "https URL"),
                          ({"endpoint": "https://x", "rule_id": RULE, "stream": STREAM, "url": "https://y"},
                           "takes 'endpoint', not 'url'")):
        with pytest.raises(InputError, match=f"alerts.0: .*{needle}"):
            parse_config({"alerts": [{"type": "azure-monitor", **entry}]})
    with pytest.raises(InputError, match="only apply to azure-monitor"):
        parse_config({"alerts": [{"type": "slack", "url": "https://s", "rule_id": RULE}]})
    cfg = parse_config({"alerts": [{"type": "azure-monitor", "endpoint": "https://dce.example", "rule_id": RULE,
                                    "stream": STREAM}]})
    [ch] = build_channels(cfg.alerts, ChannelContext(credential=lambda: StaticTokenCredential(TOKEN))).values()
    assert isinstance(ch, AzureMonitorChannel) and ch.digest_threshold == 1 and ch.name.startswith("azure-monitor-")


def test_scan_notify_sends_rows_through_the_cli(rx: IngestionReceiver, tmp_path: Path) -> None:
    """plmon scan --notify with an azure-monitor channel: the SDK uploads the transitions (one batch) with the
    PLMON_ARM_TOKEN identity; a later scan that resolves a finding sends its resolved row."""
    from notifykit import tenant

    from plmon.monitor.cli import cli

    folder = tenant(tmp_path / "t")
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text(json.dumps({
        "state": {"url": f"sqlite:///{tmp_path / 'state.db'}"}, "checks": {"connection.rejected": {"severity": "low"}},
        "alerts": [{"type": "azure-monitor", "name": "sentinel", "endpoint": rx.endpoint, "rule_id": RULE,
                    "stream": STREAM, "ca_bundle": str(rx.ca_bundle), "min_severity": "low", "timeout": 5,
                    "checks": ["connection.*"]}],
        "delivery": {"backoff_base": 0.05, "backoff_max": 0.2, "notify_timeout": 10}}))

    def scan() -> None:
        r = CliRunner().invoke(cli, ["scan", "--from", str(folder), "--config", str(cfg), "--notify"],
                               env={"PLMON_ARM_TOKEN": TOKEN}, catch_exceptions=False)
        assert r.exit_code == 0, r.output

    scan()
    [batch] = rx.requests
    assert batch["path"] == f"/dataCollectionRules/{RULE}/streams/{STREAM}"
    assert batch["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert sorted(r["CheckId"] for r in batch["rows"]) == ["connection.pending", "connection.rejected"]
    assert {r["AlertKind"] for r in batch["rows"]} == {"opened"}
    scan()
    assert len(rx.requests) == 1  # nothing changed: nothing sent
    tenant(tmp_path / "t", pending=False, recorded_at="2026-11-01T13:00:00Z")
    scan()
    [resolved] = rx.requests[1]["rows"]
    assert (resolved["AlertKind"], resolved["CheckId"], resolved["State"]) == ("resolved", "connection.pending",
                                                                                "resolved")


@pytest.mark.parametrize(("entry", "needle"), [
    ({"type": "azure-monitor", "endpoint": "https://dce.example", "stream": STREAM}, "needs 'rule_id'"),
    ({"type": "azure-monitor", "endpoint": "https://dce.example", "rule_id": RULE, "stream": STREAM,
      "ca_bundle": "/nonexistent/ca.pem"}, "is not a file"),
    ({"type": "teams"}, "a teams channel needs 'url'"),
])
def test_bad_channel_config_is_one_line_and_exit_2(entry: dict[str, Any], needle: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """plmon scan with a channel missing its keys: exit 2, one stderr line naming alerts.0 and the key, no traceback."""
    from notifykit import tenant

    from plmon.monitor.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(json.dumps({"alerts": [entry]}))
    with pytest.raises(SystemExit) as exit_:
        main(["scan", "--from", str(tenant(tmp_path / "t")), "--config", str(cfg), "--notify"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "alerts.0" in err and needle in err, err
    assert "Traceback" not in err
