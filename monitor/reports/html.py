"""The HTML report: one self-contained file an auditor opens offline and prints to PDF.

It has to stay readable at a thousand findings: a finding row carries a short ``key: value`` summary of its
evidence and the first line of its remediation, and the whole evidence and remediation sit in a collapsed block
under it (raw JSON inline in the table made 20 findings print on 43 pages). Findings are grouped by check with
counts; above :data:`OPEN_GROUPS_UP_TO` findings the groups start collapsed, so the page stays a screenful of
headings until the reader opens one (printing opens them all).

Jinja2 renders it with autoescaping on for every variable, so names and request messages from Azure
are text, never markup; the only pre-built markup is the chart SVG that chart.py drew from numbers and escaped text.
A Content-Security-Policy of ``default-src 'none'`` backs that up: the page can load and run nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from plmon.checks.finding import Finding
from plmon.monitor.reports.chart import trend_svg
from plmon.monitor.reports.model import FindingRow, Report, iso

__all__ = ["OPEN_GROUPS_UP_TO", "FindingGroup", "evidence_summary", "finding_groups", "remediation_head",
           "render_html"]

OPEN_GROUPS_UP_TO = 50   # findings; above this the groups start collapsed
_SUMMARY_ITEMS = 8       # evidence entries shown in a row; the rest are in the full evidence
_VALUE_CHARS = 120       # a summary value longer than this is cut (the full text is in the evidence block)
_LIST_ITEMS = 3          # list members named in a summary value before "+N more"


@dataclass(frozen=True, slots=True)
class FindingGroup:
    """The open findings of one check, in the report's order: a heading with a count, then the rows."""

    check_id: str
    title: str
    severity: str
    rows: tuple[FindingRow, ...]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _evidence(f: Finding) -> str:
    return json.dumps(f.to_dict()["evidence"], indent=1, sort_keys=True, ensure_ascii=False)


def _short(value: Any) -> str:
    """One evidence value in a few words: an ARM id by its name, a list by its first members and a count."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.rstrip("/").rsplit("/", 1)[-1] if value.startswith(("/subscriptions/", "/providers/")) \
            else " ".join(value.split())
        return text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS - 1] + "…"
    if isinstance(value, Mapping):
        return f"{len(value)} field(s)"
    if isinstance(value, Sequence):
        if any(isinstance(v, Mapping | list | tuple) for v in value):
            return f"{len(value)} item(s)"
        named = ", ".join(_short(v) for v in value[:_LIST_ITEMS])
        more = f" +{len(value) - _LIST_ITEMS} more" if len(value) > _LIST_ITEMS else ""
        return (named or "(empty)") + more
    return str(value)


def evidence_summary(f: Finding) -> list[tuple[str, str]]:
    """The first evidence entries as short ``(key, value)`` pairs for the findings table; the block under the row
    holds the whole evidence, so nothing is lost by cutting here."""
    return [(str(k), _short(v)) for k, v in list(f.evidence.items())[:_SUMMARY_ITEMS]]


def remediation_head(text: str) -> tuple[str, int]:
    """The first line of a remediation and how many lines follow it (shown in the evidence block)."""
    lines = text.splitlines() or [""]
    return lines[0], len(lines) - 1


def finding_groups(report: Report) -> list[FindingGroup]:
    """Open findings grouped by check, groups in the order their first finding appears (severity first)."""
    titles = {s.check.id: s.check.title for s in report.checks}
    grouped: dict[str, list[FindingRow]] = {}
    for row in report.findings:
        grouped.setdefault(row.finding.check_id, []).append(row)
    return [FindingGroup(cid, titles.get(cid, ""), rows[0].finding.severity.value, tuple(rows))
            for cid, rows in grouped.items()]


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("plmon.monitor.reports", "templates"), autoescape=select_autoescape(
        enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.globals.update(iso=iso, pct=_pct, evidence=_evidence, evidence_summary=evidence_summary,
                       remediation_head=remediation_head)
    return env


def render_html(report: Report, *, group_by: str | None = None) -> str:
    """The complete document. ``group_by="control"`` lists open findings under each mapped control."""
    template = _environment().get_template("report.html.j2")
    context: dict[str, Any] = {"r": report, "group_by": group_by, "groups": finding_groups(report),
                               "groups_open": len(report.findings) <= OPEN_GROUPS_UP_TO,
                               "chart": Markup(trend_svg(report.trend))}  # our own SVG: numbers and escaped text
    return template.render(**context)
