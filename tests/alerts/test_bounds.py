"""Alerts are safe to receive: Azure text capped (and the alert says so) and control bytes inert, on every channel."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import Any

import pytest
from checkkit import run, snapshot_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiver import Receiver
from tenantkit import SUB, endpoint, provider_connection, storage_account, sub_list

from plmon.alerts.bounds import KEY_MAX, LIST_MAX, REMEDIATION_MAX, TEXT_MAX, bounded_finding
from plmon.alerts.outbox import outbox_rows
from plmon.alerts.slack import SlackChannel, alert_blocks, digest_blocks
from plmon.alerts.webhook import WebhookChannel, digest_event
from plmon.monitor.state.store import FindingRecord, FindingState, OutboxRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MEGABYTE = 1024 * 1024
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m"  # retitle the window, clear the screen, 8-bit CSI
PE_NAME = "pe-evil" + ESCAPES


@pytest.fixture(scope="module")
def pending_finding(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """connection.pending as plmon finds it on a tenant whose requester wrote 1 MB with escapes in it."""
    folder = tmp_path_factory.mktemp("tenant")
    st = storage_account("st1")
    pe = endpoint(PE_NAME, st["id"], status="Pending", request_message=ESCAPES + "x" * MEGABYTE)
    st["properties"]["privateEndpointConnections"] = [provider_connection(st["id"], pe["id"], status="Pending")]
    snap = snapshot_of(folder, {sub_list("privateEndpoints"): {"value": [pe]}, st["id"]: st})
    [finding] = run(snap, "connection.pending").findings
    return finding.to_dict()


def _row(finding: dict[str, Any], kind: str = "opened", channel: str = "hook", seq: int = 1) -> OutboxRow:
    rid = finding["resource_id"]
    rec = FindingRecord(finding["check_id"], rid.lower(), rid, FindingState.OPEN, finding["severity"], T0, T0, None,
                        T0, seq, finding)
    [row] = outbox_rows(rec, kind, T0, [channel], tenant_id="tid")
    return row


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _controls(texts: list[str]) -> list[str]:
    return [t for t in texts if any((ord(c) < 32 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f for c in t)]


def test_webhook_event_caps_a_megabyte_request_message(pending_finding: dict[str, Any]) -> None:
    """A 1 MB requestMessage does not travel whole in the CloudEvent; data.truncated names the field cut."""
    assert len(pending_finding["evidence"]["request_message"]) > MEGABYTE
    rx = Receiver(secret="s3")
    WebhookChannel("hook", rx.url, "s3", timeout=5).send(_row(pending_finding))
    [req] = rx.accepted
    rx.close()
    assert len(req["body"]) < 20 * TEXT_MAX
    data = json.loads(req["body"])["data"]
    assert len(data["evidence"]["request_message"]) == TEXT_MAX
    cut = {c["field"]: c for c in data["truncated"]}["evidence.request_message"]
    assert cut["original"] > MEGABYTE and cut["kept"] == TEXT_MAX and cut["unit"] == "characters"
    assert data["check_id"] == "connection.pending" and data["state"] == "open"


def test_webhook_and_slack_carry_no_control_bytes(pending_finding: dict[str, Any]) -> None:
    """Escape sequences in names and messages reach neither the webhook nor Slack: shown as \\xNN instead."""
    rx = Receiver(secret="s3")
    WebhookChannel("hook", rx.url, "s3", timeout=5).send(_row(pending_finding))
    SlackChannel("slack", rx.url, timeout=5).send(_row(pending_finding, channel="slack"))
    hook, slack = (json.loads(r["body"]) for r in rx.accepted)
    rx.close()
    for body in (hook, slack):
        texts = _strings(body)
        assert _controls(texts) == []
        assert any("\\x1b]0;owned\\x07" in t for t in texts)
    _, digest = digest_blocks([_row(pending_finding, channel="slack")] * 3)
    assert _controls(_strings([b.to_dict() for b in digest])) == []


def test_slack_says_what_was_cut(pending_finding: dict[str, Any]) -> None:
    """The Slack message tells its reader that Azure text was cut, and where to see it whole."""
    _, blocks = alert_blocks(_row(pending_finding, channel="slack"))
    context = json.dumps(blocks[-1].to_dict())
    assert "cut to fit" in context and "evidence.request_message" in context and "plmon findings" in context


def test_digest_event_of_huge_names_stays_small(pending_finding: dict[str, Any]) -> None:
    """A burst of alerts whose resource names are 1 MB each becomes a digest of bounded size that says so."""
    rows = []
    for i in range(12):
        f = dict(pending_finding, resource_id=pending_finding["resource_id"] + "n" * MEGABYTE + str(i))
        rows.append(_row(f, seq=i + 1))
    ev = digest_event(rows)
    assert len(json.dumps(ev)) < 12 * 4 * TEXT_MAX
    assert all("resource_id" in b["truncated"] for b in ev["data"]["first"])


def test_evidence_lists_and_remediation_are_cut_whole() -> None:
    """Long evidence lists keep their first items; a long remediation loses whole lines, never half a command."""
    line = "az network private-endpoint delete --ids '/subscriptions/x/pe $(y)'"
    finding = {"check_id": "c", "severity": "low", "evidence": {"paths": [f"p{i}" for i in range(5000)]},
               "remediation": "\n".join([line] * 500)}
    out, cuts = bounded_finding(finding)
    assert out["evidence"]["paths"] == [f"p{i}" for i in range(LIST_MAX)]
    assert len(out["remediation"]) <= REMEDIATION_MAX
    *commands, last = out["remediation"].split("\n")
    assert all(c == line for c in commands) and last.startswith("# ")
    assert all(shlex.split(c) == shlex.split(line) for c in commands)
    assert {c["field"]: c["unit"] for c in cuts} == {"evidence.paths": "items", "remediation": "lines"}


def test_a_cut_deep_in_the_evidence_names_its_place_by_key_index_and_key_name() -> None:
    """A cut value's field is spelled from the finding's top key down (``.key``, ``[i]``, ``.key(key)``), though the
    place is spelled only when something is cut."""
    long = "x" * (TEXT_MAX + 5)
    finding = {"check_id": "c", "severity": "low",
               "evidence": {"rows": [{"ok": "y"}, {"hop": {"name": long}}], long: 1, "n": [0] * (LIST_MAX + 1)}}
    _, cuts = bounded_finding(finding)
    assert [(c["field"], c["unit"]) for c in cuts] == [
        ("evidence.rows[1].hop.name", "characters"), (f"evidence.{long[:KEY_MAX - 1]}…(key)", "characters"),
        ("evidence.n", "items")]


def test_a_cut_under_an_azure_key_names_it_inert_and_capped() -> None:
    """The field of a cut spells the keys above it as the alert shows any Azure text: control bytes inert, long keys
    capped (a tag name chosen by a resource owner reaches every webhook receiver in ``truncated``)."""
    key = "\x1b]0;pwned\x07" + "k" * 5000
    _, cuts = bounded_finding({"check_id": "c", "severity": "low", "evidence": {key: "v" * (TEXT_MAX + 1)}})
    fields = [c["field"] for c in cuts]   # the key's own cut and its value's
    assert len(fields) == 2 and _controls(fields) == [] and all(len(f) < KEY_MAX + 20 for f in fields)
    assert all(f.startswith("evidence.\\x1b]0;pwned\\x07k") for f in fields)


def test_short_clean_finding_is_untouched() -> None:
    """Ordinary findings pass through unchanged and carry no truncated marker."""
    finding = {"check_id": "c", "severity": "low", "resource_id": f"/subscriptions/{SUB}/x", "message": "m\tn\nx",
               "evidence": {"a": [1, 2], "b": {"c": None}}, "remediation": "az x"}
    assert bounded_finding(finding) == (finding, [])
    assert "truncated" not in _row(finding).payload


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=3000),
                     lambda inner: st.lists(inner, max_size=120) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=4), max_leaves=200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.dictionaries(st.sampled_from(["message", "resource_id", "evidence", "remediation", "title"]), _json))
def test_bounding_is_idempotent_and_leaves_no_control_bytes(finding: dict[str, Any]) -> None:
    """Bounding twice cuts nothing more (a stored row re-sent is sent the same), and no string keeps a control."""
    once, _ = bounded_finding(finding)
    assert bounded_finding(once) == (once, [])
    assert _controls(_strings(once)) == []
    assert all(len(s) <= max(TEXT_MAX, REMEDIATION_MAX) for s in _strings(once))
