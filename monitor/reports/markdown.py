"""The Markdown report, for wiki pages and pull-request comments.

Renderers on those sites turn links, autolinks and inline HTML into live content, so every value
from Azure goes through :func:`md_text` and nothing from data can become a link, an image or a tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from plmon.monitor.reports.escape import md_text
from plmon.monitor.reports.model import FindingRow, Report, iso

__all__ = ["FINDING_COLUMNS", "render_markdown"]

FINDING_COLUMNS = ("severity", "check", "resource", "subscription", "age", "message")


def _table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return lines


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _findings(rows: Sequence[FindingRow]) -> list[str]:
    return _table(FINDING_COLUMNS, ((r.finding.severity.value, r.finding.check_id, r.finding.resource_id,
                                     r.finding.subscription_id or "", r.age_text(), r.finding.message) for r in rows))


def render_markdown(report: Report, *, group_by: str | None = None) -> str:
    r = report
    out = ["# Azure Private Link compliance report", "",
           f"Tenant {md_text(r.tenant_id or 'unknown')}, scan of {iso(r.scanned_at or r.generated_at)}, "
           f"plmon {md_text(r.tool_version)}, history: {md_text(r.history_source)}.", "",
           *([f"Report of the state store at {iso(r.generated_at)}: open and waived findings as they stand now; "
              f"the compliance figure and coverage are those the last full scan recorded.", ""]
             if r.from_store else []),
           "## Compliance and coverage", "",
           f"**Compliance: {_pct(r.compliance_percent)}** ({r.resources_evaluated - r.resources_non_compliant} of "
           f"{r.resources_evaluated} resources without an open finding; {len(r.findings)} open finding(s), "
           f"{len(r.waived)} waived).", "",
           f"_Definition:_ {md_text(r.definition)}", ""]
    if r.gaps:
        out += [f"**Coverage: {len(r.gaps)} gap(s)** in {r.subscriptions_scanned} subscription(s) scanned; "
                "what follows was not read, so it is not judged compliant.", ""]
        out += _table(("scope", "type", "code", "detail"), ((g.scope, g.type, g.code, g.message or "") for g in r.gaps))
    else:
        out += [f"**Coverage: complete**: every scope in the collection plan was read "
                f"({r.subscriptions_scanned} subscription(s))."]
    if r.framework is not None:
        out += ["", f"## {md_text(r.framework.name)} {md_text(r.framework.version)} ({md_text(r.framework.id)})", "",
                f"{sum(q.status == 'FAIL' for q in r.requirements)} of {len(r.requirements)} requirement(s) failing; "
                "passed and failed count each requirement's mapped checks that ran.", ""]
        out += _table(("requirement", "title", "status", "checks", "failed", "passed", "findings"),
                      ((q.id, q.title, q.status, ", ".join(q.checks), q.failed, q.passed, q.findings)
                       for q in r.requirements))
    out += ["", "## By severity", ""]
    out += _table(("severity", "open findings", "resources"),
                  ((s["severity"], s["open_findings"], s["resources"]) for s in r.by_severity))
    out += ["", "## By check family", ""]
    out += _table(("family", "checks run", "passing", "compliance", "open findings"),
                  ((f["family"], f["checks_run"], f["checks_passing"], _pct(f["compliance_percent"]),
                    f["open_findings"]) for f in r.by_family))
    out += ["", "## By subscription", ""]
    out += _table(("subscription", "name", "resources", "non-compliant", "compliance"),
                  ((s["subscription_id"], s["name"] or "", s["resources"], s["non_compliant"],
                    _pct(s["compliance_percent"])) for s in r.by_subscription))
    out += ["", "## Trend", ""]
    out += _table(("scan (UTC)", "open findings", "compliance"),
                  ((iso(p.scanned_at), p.open_findings, _pct(p.compliance_percent)) for p in r.trend))
    out += ["", f"## Open findings ({len(r.findings)})", ""]
    if not r.findings:
        out.append("No open finding.")
    elif group_by == "control":
        for g in r.by_control:
            if g.findings:
                out += [f"### {md_text(g.control)}{': ' + md_text(g.title) if g.title else ''}", ""]
                out += [*_findings(g.findings), ""]
    else:
        out += _findings(r.findings)
    out += ["", f"## Waivers ({len(r.waivers)})", ""]
    out += _table(("status", "check", "subject", "reason", "expires"),
                  ((w.status.upper() if w.status == "expired" else w.status, w.check_id, w.subject, w.reason,
                    w.expires.isoformat() if w.expires else "never") for w in r.waivers)) if r.waivers \
        else ["No waiver is configured."]
    out += ["", "## Checks", ""]
    out += _table(("check", "severity", "status", "open", "controls", "remediation"),
                  ((s.check.id, s.check.severity.value, s.status, s.open_findings, ", ".join(s.check.controls),
                    s.check.remediation) for s in r.checks))
    return "\n".join(out) + "\n"
