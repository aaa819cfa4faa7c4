"""The JSON report: the scan document of contracts.md, plus the report's summary and trend.

It extends the contract additively (extra keys only), so a consumer of ``scan --format json`` can
read a JSON report unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from plmon.monitor.reports.compliance import requirements_of
from plmon.monitor.reports.model import Report, iso
from plmon.monitor.scan import scan_document

__all__ = ["render_json", "report_document"]


def _stored_document(report: Report) -> dict[str, Any]:
    """The scan document's shape for a report of the store alone: the last full scan's coverage and
    counts, and the findings open now (which events may have changed since that scan)."""
    fs = [row.finding for row in report.findings]
    by_sev = Counter(f.severity.value for f in fs)
    return {
        "tool": {"name": "plmon", "version": report.tool_version},
        "scanned_at": iso(report.scanned_at or report.generated_at),
        "tenant_id": report.tenant_id,
        "findings": [f.to_dict() for f in fs],
        "waived": [w.to_dict() for w in report.waived],
        "coverage": {"subscriptions_scanned": report.subscriptions_scanned,
                     "gaps": [g.as_dict() for g in report.gaps]},
        "summary": {"by_severity": dict(sorted(by_sev.items())),
                    "by_check": dict(sorted(Counter(f.check_id for f in fs).items())),
                    "resources_evaluated": report.resources_read, "checks_run": len(report.checks_run)},
    }


def report_document(report: Report) -> dict[str, Any]:
    doc = scan_document(report.scan) if report.scan is not None else _stored_document(report)
    for row, d in zip(report.findings, doc["findings"], strict=True):
        d["first_seen"] = iso(row.first_seen) if row.first_seen else None
        d["age_days"] = round(row.age_days, 3) if row.age_days is not None else None
        d["controls"] = list(row.controls)
    if report.framework is not None:  # --compliance: the framework's requirement view, as scan --compliance prints
        fid = report.framework.id
        for row, d in zip(report.findings, doc["findings"], strict=True):
            d["compliance"] = {fid: requirements_of(row.finding, fid)}
        doc["framework"] = {"id": fid, "name": report.framework.name, "version": report.framework.version}
        doc["requirements"] = [r.as_dict() for r in report.requirements]
    doc["summary"].update(report.summary())
    doc["trend"] = [p.to_dict() for p in report.trend]
    doc["report"] = {"history": report.history_source, "since": iso(report.since) if report.since else None,
                     "source": "state store" if report.scan is None else "fresh scan",
                     "generated_at": iso(report.generated_at)}
    return doc


def render_json(report: Report) -> str:
    return json.dumps(report_document(report), indent=2, ensure_ascii=False)
