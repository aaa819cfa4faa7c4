"""The CSV report: one row per open finding, with stable columns, for spreadsheets and ticket imports.

Columns are a contract (scripts index them by name): add new ones at the end, never rename. Every
cell goes through :func:`csv_cell`, so a name like ``=HYPERLINK(...)`` is text in Excel, not a formula.
With pass results (``--include-passed``) a last ``status`` column says FAIL or PASS, and each pass is a row of its
own (the check's id, severity, title and remediation; no message, evidence or age); without them the text is as it
always was.
"""

from __future__ import annotations

import csv
import io
import json

from plmon.checks.registry import all_checks
from plmon.monitor.reports.escape import csv_cell
from plmon.monitor.reports.model import Report, iso

__all__ = ["COLUMNS", "render_csv"]

COLUMNS = ("check_id", "severity", "resource_id", "resource_name", "subscription_id", "tenant_id", "title",
           "message", "remediation", "first_seen", "age_days", "controls", "evidence")


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    passes = report.passed
    status = () if passes is None else ("FAIL",)
    writer.writerow((*COLUMNS, "status") if passes is not None else COLUMNS)
    for row in report.findings:
        f = row.finding
        values = (f.check_id, f.severity.value, f.resource_id, row.resource_name, f.subscription_id,
                  f.tenant_id or report.tenant_id, f.title, f.message, f.remediation,
                  iso(row.first_seen) if row.first_seen else "",
                  f"{row.age_days:.2f}" if row.age_days is not None else "", ";".join(row.controls),
                  json.dumps(f.to_dict()["evidence"], sort_keys=True, ensure_ascii=False), *status)
        writer.writerow([csv_cell(v) for v in values])
    registry = all_checks()
    for p in passes or ():
        chk = registry.get(p.check_id)
        name = p.resource_id.rstrip("/").rsplit("/", 1)[-1]
        values = (p.check_id, chk.severity.value if chk else "", p.resource_id, name, p.subscription_id or "",
                  report.tenant_id or "", chk.title if chk else "", "evaluated, compliant", "", "", "",
                  ";".join(chk.controls) if chk else "", "{}", "PASS")
        writer.writerow([csv_cell(v) for v in values])
    return out.getvalue()
