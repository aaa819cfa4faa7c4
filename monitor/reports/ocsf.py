"""OCSF 1.x Detection Finding events (class_uid 2004), one per finding, for Security Lake, Sentinel and other SIEMs.

The events follow the OCSF schema version :data:`OCSF_VERSION` (the tests validate every event against the schema
the OCSF project publishes, as the ocsf-json-schema wheel ships it: a test extra). Choices where OCSF leaves room:

- ``finding_info.uid`` is the finding's identity across scans (check id + normalised ARM id, hashed), the same
  value as SARIF's ``partialFingerprints``, so a SIEM updates one finding instead of opening a new one per scan;
- ``status_id`` is New (1) for an open finding, Suppressed (3) for a waived one (``status_detail`` = the waiver's
  reason and expiry), and ``status_code`` carries Prowler's FAIL/PASS; a pass result (``--include-passed``) is an
  event with ``status_code`` PASS, ``status_id`` Resolved (4) and ``severity_id`` Informational (1);
- ``time`` is when the scan's snapshot was taken (a recorded tenant's ``recorded_at``), in epoch milliseconds;
- what OCSF has no attribute for (the evidence, the subscription's findings key) goes under ``unmapped``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from plmon.checks.engine import Owners
from plmon.checks.finding import Finding, Severity, finding_key, resource_group_of
from plmon.checks.passed import PassedResult
from plmon.checks.registry import Check, all_checks
from plmon.monitor.reports.model import Report

__all__ = ["OCSF_VERSION", "ocsf_events", "render_ocsf"]

OCSF_VERSION = "1.5.0"
CLASS_UID, CATEGORY_UID, ACTIVITY_ID = 2004, 2, 1
TYPE_UID = CLASS_UID * 100 + ACTIVITY_ID
_SEVERITY_ID = {Severity.INFO: 1, Severity.LOW: 2, Severity.MEDIUM: 3, Severity.HIGH: 4, Severity.CRITICAL: 5}
_SEVERITY_NAME = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_NEW, _SUPPRESSED, _RESOLVED = 1, 3, 4
_STATUS_NAME = {_NEW: "New", _SUPPRESSED: "Suppressed", _RESOLVED: "Resolved"}


def _uid(check_id: str, resource_id: str) -> str:
    check, key = finding_key(check_id, resource_id)
    return hashlib.sha256(f"{check}|{key}".encode()).hexdigest()


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _arm_type(resource_id: str) -> str:
    """``Microsoft.Network/privateEndpoints`` from an ARM id (a child's types joined: ``.../subnets``)."""
    parts = [p for p in resource_id.split("/") if p]
    lowered = [p.lower() for p in parts]
    if "providers" not in lowered:
        top = "resourceGroups" if "resourcegroups" in lowered else "subscriptions"
        return f"Microsoft.Resources/{top}"
    i = len(lowered) - 1 - lowered[::-1].index("providers")
    rest = parts[i + 1:]
    types = [rest[j] for j in range(1, len(rest), 2)]
    return "/".join([rest[0], *types]) if rest else "unknown"


def _resource(resource_id: str, owners: Owners | None) -> dict[str, Any]:
    """The ``resource_details`` of an ARM id: its type from the id, region and tags from the snapshot record of the
    resource or of its nearest parent that plmon read (a connection's region is its endpoint's)."""
    out: dict[str, Any] = {"uid": resource_id, "name": resource_id.rstrip("/").rsplit("/", 1)[-1],
                           "type": _arm_type(resource_id), "cloud_partition": "Azure"}
    rec = owners(resource_id) if owners is not None else None
    if rec is not None:
        if rec.location:
            out["region"] = rec.location
        if rec.tags:
            out["tags"] = [{"name": k, "value": v} for k, v in sorted(rec.tags.items())]
    group = resource_group_of(resource_id)
    if group:
        out["group"] = {"name": group}
    return out


def _event(report: Report, *, check_id: str, resource_id: str, subscription_id: str | None, severity: Severity,
           status_id: int, chk: Check | None, title: str, desc: str, remediation: str,
           owners: Owners | None, extra: Mapping[str, Any], first_seen: datetime | None = None,
           status_detail: str | None = None) -> dict[str, Any]:
    at = report.scanned_at or report.generated_at
    severity_id = 1 if status_id == _RESOLVED else _SEVERITY_ID[severity]
    finding_info: dict[str, Any] = {"uid": _uid(check_id, resource_id), "title": title, "desc": desc,
                                    "types": ["Azure Private Link"], "product_uid": "plmon",
                                    "analytic": {"uid": check_id, "name": check_id, "type_id": 1, "type": "Rule"}}
    if first_seen is not None:
        finding_info["first_seen_time"] = _ms(first_seen)
    finding_info["last_seen_time"] = _ms(at)
    cloud: dict[str, Any] = {"provider": "Azure"}
    if subscription_id:
        cloud["account"] = {"uid": subscription_id, "type_id": 13, "type": "Azure Subscription"}
    if report.tenant_id:
        cloud["org"] = {"uid": report.tenant_id}
    rem: dict[str, Any] = {"desc": remediation}
    if chk is not None and chk.references:
        rem["references"] = list(chk.references)
    event: dict[str, Any] = {
        "class_uid": CLASS_UID, "class_name": "Detection Finding", "category_uid": CATEGORY_UID,
        "category_name": "Findings", "activity_id": ACTIVITY_ID, "activity_name": "Create", "type_uid": TYPE_UID,
        "type_name": "Detection Finding: Create", "time": _ms(at), "severity_id": severity_id,
        "severity": _SEVERITY_NAME[severity_id], "status_id": status_id, "status": _STATUS_NAME[status_id],
        "status_code": "PASS" if status_id == _RESOLVED else "FAIL", "message": desc,
        "finding_info": finding_info, "resources": [_resource(resource_id, owners)], "cloud": cloud,
        "metadata": {"version": OCSF_VERSION, "profiles": ["cloud"], "event_code": check_id,
                     "product": {"name": "plmon", "vendor_name": "plmon", "version": report.tool_version},
                     **({"tenant_uid": report.tenant_id} if report.tenant_id else {})},
        "remediation": rem,
        "unmapped": {"check_id": check_id, "plmon_severity": severity.value, **extra},
    }
    if status_detail is not None:
        event["status_detail"] = status_detail
    return event


def _owners(report: Report) -> Owners | None:
    return Owners(report.scan.snapshot) if report.scan is not None else None


def _of_finding(report: Report, f: Finding, registry: Mapping[str, Check], owners: Owners | None,
                *, status_id: int, first_seen: datetime | None = None,
                status_detail: str | None = None) -> dict[str, Any]:
    chk = registry.get(f.check_id)
    return _event(report, check_id=f.check_id, resource_id=f.resource_id, subscription_id=f.subscription_id,
                  severity=f.severity, status_id=status_id, chk=chk, title=f.title, desc=f.message,
                  remediation=f.remediation, owners=owners, extra={"evidence": f.to_dict()["evidence"]},
                  first_seen=first_seen, status_detail=status_detail)


def _of_pass(report: Report, p: PassedResult, registry: Mapping[str, Check],
             owners: Owners | None) -> dict[str, Any]:
    chk = registry.get(p.check_id)
    title = chk.title if chk else p.check_id
    name = p.resource_id.rstrip("/").rsplit("/", 1)[-1]
    return _event(report, check_id=p.check_id, resource_id=p.resource_id, subscription_id=p.subscription_id,
                  severity=chk.severity if chk else Severity.INFO, status_id=_RESOLVED, chk=chk, title=title,
                  desc=f"{name} passed {p.check_id}: {title} (evaluated, compliant).",
                  remediation=chk.remediation if chk else "No action needed.", owners=owners, extra={})


def ocsf_events(report: Report) -> list[dict[str, Any]]:
    """Open findings (New), waived ones (Suppressed), then pass results when the report has them (Resolved)."""
    registry, owners = all_checks(), _owners(report)
    events = [_of_finding(report, row.finding, registry, owners, status_id=_NEW, first_seen=row.first_seen)
              for row in report.findings]
    for w in report.waived:
        expiry = f" (expires {w.waiver.expires.isoformat()})" if w.waiver.expires else ""
        events.append(_of_finding(report, w.finding, registry, owners, status_id=_SUPPRESSED,
                                  status_detail=f"waived: {w.waiver.reason}{expiry}"))
    for p in report.passed or ():
        events.append(_of_pass(report, p, registry, owners))
    return events


def render_ocsf(report: Report) -> str:
    return json.dumps(ocsf_events(report), indent=2, ensure_ascii=False) + "\n"
