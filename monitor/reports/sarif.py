"""SARIF 2.1.0 for code-scanning tools: one rule per check, one result per finding.

Results have no source file, so each carries the ARM id as a logical location (kind ``resource``)
and, because code-scanning services key their UI on physical locations, the same id as a relative
artifact URI. ``partialFingerprints`` hashes check id + normalised resource id: the identity the
state store uses, so repeated uploads update one alert instead of opening a new one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from plmon.checks.finding import Finding, Severity
from plmon.checks.registry import Check
from plmon.monitor.reports.model import Report, iso

__all__ = ["FINGERPRINT", "fingerprint", "render_sarif", "sarif_document"]

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT = "plmonFindingKey/v1"
_LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}
# GitHub code scanning reads properties.security-severity (0.0-10.0) to rank alerts.
_SCORE = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0",
          Severity.INFO: "0.0"}


def fingerprint(f: Finding) -> str:
    check_id, resource_key = f.key
    return hashlib.sha256(f"{check_id}|{resource_key}".encode()).hexdigest()


def _rule(c: Check) -> dict[str, Any]:
    refs = "\n".join(f"- {r}" for r in c.references)
    return {
        "id": c.id, "name": c.id.replace(".", "/"),
        "shortDescription": {"text": c.title},
        "fullDescription": {"text": c.rationale},
        "help": {"text": f"{c.remediation}\n\nReferences:\n{refs}",
                 "markdown": f"**Remediation.** {c.remediation}\n\n**References**\n\n{refs}"},
        **({"helpUri": c.references[0]} if c.references else {}),
        "defaultConfiguration": {"level": _LEVEL[c.severity]},
        "properties": {"tags": ["azure", "private-link", c.family, *c.controls],
                       "security-severity": _SCORE[c.severity], "plmon-severity": c.severity.value},
    }


def _result(f: Finding, index: int, *, first_seen: str | None, suppression: dict[str, Any] | None) -> dict[str, Any]:
    name = f.resource_id.rstrip("/").rsplit("/", 1)[-1]
    result: dict[str, Any] = {
        "ruleId": f.check_id, "ruleIndex": index, "level": _LEVEL[f.severity],
        "message": {"text": f"{f.message} Remediation: {f.remediation}"},
        "locations": [{
            "physicalLocation": {"artifactLocation": {"uri": quote(f.resource_id.lstrip("/"), safe="/")}},
            "logicalLocations": [{"fullyQualifiedName": f.resource_id, "name": name, "kind": "resource"}],
        }],
        "partialFingerprints": {FINGERPRINT: fingerprint(f)},
        "properties": {"severity": f.severity.value, "subscription_id": f.subscription_id,
                       "evidence": f.to_dict()["evidence"], **({"first_seen": first_seen} if first_seen else {})},
    }
    if suppression is not None:
        result["suppressions"] = [suppression]
    return result


def sarif_document(report: Report) -> dict[str, Any]:
    rules = [s.check for s in report.checks]
    index = {c.id: i for i, c in enumerate(rules)}
    results = [_result(row.finding, index[row.finding.check_id],
                       first_seen=iso(row.first_seen) if row.first_seen else None, suppression=None)
               for row in report.findings if row.finding.check_id in index]
    for w in report.waived:
        if w.finding.check_id in index:
            expiry = f" (expires {w.waiver.expires.isoformat()})" if w.waiver.expires else ""
            results.append(_result(w.finding, index[w.finding.check_id], first_seen=None, suppression={
                "kind": "external", "status": "accepted", "justification": w.waiver.reason + expiry}))
    notifications = [{"level": "warning", "message": {
        "text": f"Coverage gap: {g.type} at {g.scope} was not read ({g.code}); not judged compliant."},
        "descriptor": {"id": "coverage-gap"}} for g in report.gaps]
    return {
        "$schema": SCHEMA_URI, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "plmon", "version": report.tool_version, "semanticVersion": report.tool_version,
                                "informationUri": "https://learn.microsoft.com/azure/private-link/",
                                "rules": [_rule(c) for c in rules]}},
            "automationDetails": {"id": f"plmon/{report.tenant_id or 'tenant'}/"},
            "invocations": [{"executionSuccessful": True, "endTimeUtc": iso(report.generated_at),
                             "toolExecutionNotifications": notifications}],
            "results": results,
            "properties": {"tenant_id": report.tenant_id, "compliance_percent": report.compliance_percent,
                           "coverage_gaps": len(report.gaps)},
        }],
    }


def render_sarif(report: Report) -> str:
    return json.dumps(sarif_document(report), indent=2, ensure_ascii=False)
