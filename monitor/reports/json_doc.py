"""The JSON report: the scan document of contracts.md, plus the report's summary and trend.

It extends the contract additively (extra keys only), so a consumer of ``scan --format json`` can
read a JSON report unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.reports.model import Report, iso
from monitor.scan import scan_document

__all__ = ["render_json", "report_document"]


def report_document(report: Report) -> dict[str, Any]:
    doc = scan_document(report.scan)
    rows = {row.finding.key: row for row in report.findings}
    for f, d in zip(report.scan.evaluation.findings, doc["findings"], strict=True):
        row = rows[f.key]
        d["first_seen"] = iso(row.first_seen) if row.first_seen else None
        d["age_days"] = round(row.age_days, 3) if row.age_days is not None else None
        d["controls"] = list(row.controls)
    doc["summary"].update(report.summary())
    doc["trend"] = [p.to_dict() for p in report.trend]
    doc["report"] = {"history": report.history_source, "since": iso(report.since) if report.since else None}
    return doc


def render_json(report: Report) -> str:
    return json.dumps(report_document(report), indent=2, ensure_ascii=False)
