"""What a compliance report says, computed once from a scan and (optionally) the state store.

Every format (HTML, Markdown, JSON, CSV, SARIF) renders the same :class:`Report`, so the figures an
auditor reads in the HTML are the figures a script reads in the JSON. A report covers one scan; the
store, when there is one, adds when each finding was first seen and the history behind the trend.

The headline figure is defined in :data:`COMPLIANCE_DEFINITION` and printed beside the number.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from plmon.checks.engine import WaivedFinding
from plmon.checks.finding import Finding, Severity
from plmon.checks.passed import PassedResult
from plmon.checks.registry import Check, all_checks
from plmon.checks.waivers import Waiver, match_waiver
from plmon.monitor import __version__
from plmon.monitor.lifecycle.compliance import COMPLIANCE_DEFINITION, TENANT, ScanFigures, percent, scan_figures
from plmon.monitor.model.snapshot import CoverageGap
from plmon.monitor.reports.compliance import RequirementRow
from plmon.monitor.reports.controls import Framework, control_title, sort_controls
from plmon.monitor.scan import ScanResult
from plmon.monitor.state.store import FindingRecord, ScanRecord

__all__ = ["COMPLIANCE_DEFINITION", "CheckSection", "ControlGroup", "FindingRow", "HistoryPoint", "Report",
           "WaiverRow", "build_report", "build_stored_report"]

_SOON = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One earlier scan, as the state store remembers it: the raw material of the trend chart."""

    scanned_at: datetime
    open_findings: int
    by_severity: Mapping[str, int] = field(default_factory=dict)
    compliance_percent: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"scanned_at": iso(self.scanned_at), "open_findings": self.open_findings,
                "by_severity": dict(self.by_severity), "compliance_percent": self.compliance_percent}


@dataclass(frozen=True, slots=True)
class FindingRow:
    finding: Finding
    family: str
    controls: tuple[str, ...]
    first_seen: datetime | None
    age_days: float | None

    @property
    def resource_name(self) -> str:
        return self.finding.resource_id.rstrip("/").rsplit("/", 1)[-1]

    def age_text(self) -> str:
        if self.age_days is None:
            return "unknown (no state store history)"
        if self.age_days < 1:
            return f"{round(self.age_days * 24, 1)} h"
        return f"{round(self.age_days, 1)} d"


@dataclass(frozen=True, slots=True)
class WaiverRow:
    check_id: str
    subject: str            # resource id, or the pattern the waiver names
    reason: str
    expires: date | None
    status: str             # active | expires-soon | expired | unused
    findings: tuple[str, ...]  # resource ids of the findings it covers (or covered, when expired)


@dataclass(frozen=True, slots=True)
class CheckSection:
    check: Check
    status: str             # passing | failing | not-run
    open_findings: int
    waived_findings: int

    @property
    def controls(self) -> list[tuple[str, str]]:
        return [(c, control_title(c)) for c in sort_controls(self.check.controls)]


@dataclass(frozen=True, slots=True)
class ControlGroup:
    control: str
    title: str
    check_ids: tuple[str, ...]
    findings: tuple[FindingRow, ...]


@dataclass(frozen=True)
class Report:
    generated_at: datetime
    tenant_id: str | None
    tool_version: str
    subscriptions_scanned: int
    resources_evaluated: int
    resources_non_compliant: int
    compliance_percent: float | None
    gaps: tuple[CoverageGap, ...]
    findings: tuple[FindingRow, ...]
    waivers: tuple[WaiverRow, ...]
    checks: tuple[CheckSection, ...]
    by_family: tuple[dict[str, Any], ...]
    by_subscription: tuple[dict[str, Any], ...]
    by_severity: tuple[dict[str, Any], ...]
    by_control: tuple[ControlGroup, ...]
    trend: tuple[HistoryPoint, ...]
    scan: ScanResult | None  # the fresh scan; None for a report of the state store alone
    history_source: str     # "state store" or "this scan only"
    since: datetime | None = None
    scanned_at: datetime | None = None  # the scan the figures are of (the last full one, from the store)
    waived: tuple[WaivedFinding, ...] = ()
    checks_run: tuple[str, ...] = ()
    resources_read: int = 0  # the scan document's resources_evaluated (contracts.md)
    # A report for one framework (``--compliance``): the framework and its requirements' outcome.
    framework: Framework | None = None
    requirements: tuple[RequirementRow, ...] = ()
    passed: tuple[PassedResult, ...] | None = None  # --include-passed: each (check, resource) found compliant

    @property
    def from_store(self) -> bool:
        return self.scan is None

    @property
    def definition(self) -> str:
        return COMPLIANCE_DEFINITION

    def summary(self) -> dict[str, Any]:
        """The figures as data, for the JSON report."""
        return {
            "compliance": {"percent": self.compliance_percent, "resources_evaluated": self.resources_evaluated,
                           "resources_non_compliant": self.resources_non_compliant,
                           "definition": COMPLIANCE_DEFINITION},
            "coverage": {"subscriptions_scanned": self.subscriptions_scanned, "gaps": len(self.gaps),
                         "complete": not self.gaps},
            "by_family": list(self.by_family), "by_subscription": list(self.by_subscription),
            "by_severity_detail": list(self.by_severity),
            "by_control": [{"control": g.control, "title": g.title, "checks": list(g.check_ids),
                            "open_findings": len(g.findings)} for g in self.by_control],
            "waivers": [{"check_id": w.check_id, "subject": w.subject, "reason": w.reason,
                         "expires": w.expires.isoformat() if w.expires else None, "status": w.status,
                         "findings": list(w.findings)} for w in self.waivers],
        }


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _age(first: datetime | None, now: datetime) -> float | None:
    if first is None:
        return None
    return max(0.0, (now - first).total_seconds() / 86400)


def build_report(result: ScanResult, *, first_seen: Mapping[tuple[str, str], datetime] | None = None,
                 history: Sequence[HistoryPoint] = (), waivers: Sequence[Waiver] = (),
                 since: datetime | None = None, history_source: str | None = None,
                 checks: Collection[str] | None = None) -> Report:
    """The report of a fresh scan. ``first_seen`` is keyed by :func:`plmon.checks.finding.finding_key`;
    ``checks`` limits the catalogue sections to those check ids (a framework's)."""
    snap, ev = result.snapshot, result.evaluation
    now = snap.taken_at
    figures = scan_figures(result)
    by_sev = Counter(f.severity.value for f in ev.findings)
    point = HistoryPoint(now, len(ev.findings), {s.value: by_sev[s.value] for s in Severity if by_sev[s.value]},
                         figures.compliance_percent)
    earlier = sorted((p for p in history if p.scanned_at != now and (since is None or p.scanned_at >= since)),
                     key=lambda p: p.scanned_at)
    source = history_source or ("state store" if history else "this scan only")
    seen = dict(first_seen or {})
    if source == "state store":
        # The store knows every finding it has seen, so one it lacks is new in this scan: its age is zero, not unknown.
        seen.update({f.key: now for f in ev.findings if f.key not in seen})
    return _assemble(figures, ev.findings, ev.waived, scanned_at=now, now=now, first_seen=seen,
                     trend=(*earlier, point), waivers=waivers, since=since, scan=result,
                     subscriptions_scanned=snap.coverage.subscriptions_scanned,
                     history_source=source, checks=checks)


def build_stored_report(open_findings: Sequence[FindingRecord], waived: Sequence[FindingRecord],
                        scans: Sequence[ScanRecord], *, now: datetime, waivers: Sequence[Waiver] = (),
                        since: datetime | None = None, checks: Collection[str] | None = None) -> Report:
    """The report of the state store alone: its open and waived findings as they stand at ``now``, and
    the figure and coverage of the last full scan in ``scans`` (which must hold at least one)."""
    full = sorted((s for s in scans if s.kind == "full"), key=lambda s: s.at)
    if not full:
        raise ValueError("the state store holds no full scan")
    last = full[-1]
    if last.figures:
        figures = ScanFigures.from_dict(last.figures)
    else:  # a scan recorded before the store kept figures: state only what it did keep
        # its gaps were counted but not listed: say so rather than call the coverage complete
        unlisted = tuple(CoverageGap(scope="(not recorded)", type="(not recorded)", code="GapNotRecorded",
                                     message="scan recorded before plmon kept its gaps list")
                         for _ in range(last.gaps))
        figures = ScanFigures(tenant_id=None, subscriptions={}, gaps=unlisted, checks_run=(),
                              resources_evaluated=last.resources_evaluated or 0,
                              resources_non_compliant=last.resources_non_compliant or 0,
                              compliance_percent=last.compliance_percent)
    tenant = figures.tenant_id
    findings = [Finding.from_dict(r.finding, tenant) for r in open_findings]
    findings.sort(key=lambda f: (-f.severity.rank, f.check_id, f.resource_id.lower()))  # the engine's order
    covered = []
    for rec in waived:
        f = Finding.from_dict(rec.finding, tenant)
        w, _expired = match_waiver(f, tuple(waivers), now)
        if w is None:
            w = _tag_waiver_of(f, waivers)
        covered.append(WaivedFinding(f, w or Waiver(f.check_id, "waiver no longer in the configuration", None,
                                                    resource_id=f.resource_id)))
    trend = tuple(HistoryPoint(s.at, s.open_findings, dict(s.by_severity), s.compliance_percent)
                  for s in full if since is None or s.at >= since or s is last)
    known = {r.key: r.first_seen for r in (*open_findings, *waived)}
    return _assemble(figures, findings, covered, scanned_at=last.at, now=now, first_seen=known, trend=trend,
                     waivers=waivers, since=since, scan=None, history_source="state store",
                     subscriptions_scanned=last.subscriptions_scanned, checks=checks)


def _tag_waiver_of(f: Finding, waivers: Sequence[Waiver]) -> Waiver | None:
    """The tag waiver that waived a stored finding: the store keeps no tags, so the one configured tag waiver whose
    check glob covers the finding's check, when exactly one does (None otherwise: the report says it cannot tell)."""
    candidates = [w for w in waivers if w.resource_tags is not None
                  and w.matches(f, dict(w.resource_tags))]
    return candidates[0] if len(candidates) == 1 else None


def _assemble(figures: ScanFigures, findings: Sequence[Finding], waived: Sequence[WaivedFinding], *,
              scanned_at: datetime, now: datetime, first_seen: Mapping[tuple[str, str], datetime],
              trend: tuple[HistoryPoint, ...], waivers: Sequence[Waiver], since: datetime | None,
              scan: ScanResult | None, history_source: str, subscriptions_scanned: int,
              checks: Collection[str] | None = None) -> Report:
    """Everything every format shows, from one scan's figures and the findings open now."""
    registry = {k: c for k, c in all_checks().items() if checks is None or k in checks}
    rows = _finding_rows(findings, registry, first_seen, now)
    owners = {r.finding.key: figures.owner(r.finding) for r in rows}
    sections = _check_sections(figures, rows, waived, registry)
    return Report(
        generated_at=now, tenant_id=figures.tenant_id, tool_version=__version__,
        subscriptions_scanned=subscriptions_scanned,
        resources_evaluated=figures.resources_evaluated, resources_non_compliant=figures.resources_non_compliant,
        compliance_percent=figures.compliance_percent, gaps=figures.gaps,
        findings=rows, waivers=_waiver_rows(waived, findings, waivers, now), checks=sections,
        by_family=_by_family(sections, rows, owners), by_subscription=_by_subscription(figures, rows, owners),
        by_severity=_by_severity(rows, owners), by_control=_by_control(registry, rows), trend=trend,
        scan=scan, history_source=history_source, since=since, scanned_at=scanned_at, waived=tuple(waived),
        checks_run=figures.checks_run, resources_read=figures.resources_read,
        passed=scan.passed if scan is not None else None)


def _finding_rows(findings: Sequence[Finding], registry: Mapping[str, Check],
                  first_seen: Mapping[tuple[str, str], datetime], now: datetime) -> tuple[FindingRow, ...]:
    """One row per open finding, with its family, its check's controls (none for a check no longer in the
    catalogue) and its age since first seen."""
    return tuple(FindingRow(f, f.check_id.split(".", 1)[0],
                            tuple(sort_controls(registry[f.check_id].controls)) if f.check_id in registry else (),
                            first_seen.get(f.key), _age(first_seen.get(f.key), now))
                 for f in findings)


def _by_subscription(figures: ScanFigures, rows: Sequence[FindingRow],
                     owners: Mapping[tuple[str, str], str]) -> tuple[dict[str, Any], ...]:
    """Resources in the figure and resources with an open finding, per subscription id (tenant-level
    findings under :data:`TENANT`); a subscription never counts fewer resources than it has non-compliant."""
    bad_by_sub: dict[str, set[str]] = defaultdict(set)
    find_by_sub: Counter[str] = Counter()
    for r in rows:
        sub = (r.finding.subscription_id or TENANT).lower()
        find_by_sub[sub] += 1
        bad_by_sub[sub].add(owners[r.finding.key])
    counted = figures.resources_by_subscription

    def sub_row(sub: str) -> dict[str, Any]:
        total = max(counted.get(sub, 0), len(bad_by_sub[sub]))
        return {"subscription_id": sub, "name": figures.subscriptions.get(sub), "resources": total,
                "non_compliant": len(bad_by_sub[sub]), "open_findings": find_by_sub[sub],
                "compliance_percent": percent(total - len(bad_by_sub[sub]), total)}
    return tuple(sub_row(sub) for sub in sorted(set(figures.subscriptions) | set(counted) | set(bad_by_sub)))


def _by_severity(rows: Sequence[FindingRow], owners: Mapping[tuple[str, str], str]) -> tuple[dict[str, Any], ...]:
    """Open findings, resources and checks per severity, every severity listed even at zero."""
    return tuple(
        {"severity": s.value, "open_findings": sum(1 for r in rows if r.finding.severity == s),
         "resources": len({owners[r.finding.key] for r in rows if r.finding.severity == s}),
         "checks": len({r.finding.check_id for r in rows if r.finding.severity == s})}
        for s in Severity)


def _check_sections(figures: ScanFigures, rows: Sequence[FindingRow], waived: Sequence[WaivedFinding],
                    registry: Mapping[str, Check]) -> tuple[CheckSection, ...]:
    """Every catalogued check with its status in this scan: not run, errored (a ``check:`` gap), failing
    (an open finding) or passing, and its open and waived counts."""
    open_by_check = Counter(r.finding.check_id for r in rows)
    waived_by_check = Counter(w.finding.check_id for w in waived)
    ran = set(figures.checks_run)
    errored = {g.type.removeprefix("check:") for g in figures.gaps if g.type.startswith("check:")}
    sections = []
    for chk in registry.values():
        status = ("not-run" if chk.id not in ran else "error" if chk.id in errored
                  else "failing" if open_by_check[chk.id] else "passing")
        sections.append(CheckSection(chk, status, open_by_check[chk.id], waived_by_check[chk.id]))
    return tuple(sections)


def _by_family(sections: Sequence[CheckSection], rows: Sequence[FindingRow],
               owners: Mapping[tuple[str, str], str]) -> tuple[dict[str, Any], ...]:
    """Per check family, in name order: checks run and passing (its compliance) and non-compliant resources."""
    families: dict[str, list[CheckSection]] = defaultdict(list)
    for s in sections:
        families[s.check.family].append(s)
    return tuple(
        {"family": fam, "checks": len(items), "checks_run": sum(1 for s in items if s.status != "not-run"),
         "checks_passing": sum(1 for s in items if s.status == "passing"),
         "open_findings": sum(s.open_findings for s in items),
         "resources_non_compliant": len({owners[r.finding.key] for r in rows if r.family == fam}),
         "compliance_percent": percent(sum(1 for s in items if s.status == "passing"),
                                       sum(1 for s in items if s.status != "not-run"))}
        for fam, items in sorted(families.items()))


def _by_control(registry: Mapping[str, Check], rows: Sequence[FindingRow]) -> tuple[ControlGroup, ...]:
    """Checks and open findings per mapped control, in control order; checks mapped to none come last."""
    groups: dict[str, list[str]] = defaultdict(list)
    for chk in registry.values():
        for c in chk.controls or ("(no control mapped)",):
            groups[c].append(chk.id)
    return tuple(
        ControlGroup(c, control_title(c), tuple(groups[c]),
                     tuple(r for r in rows if r.finding.check_id in groups[c]))
        for c in [*sort_controls(k for k in groups if not k.startswith("(")),
                  *(k for k in groups if k.startswith("("))])


def _waiver_rows(waived: Sequence[WaivedFinding], findings: Sequence[Finding], configured: Sequence[Waiver],
                 now: datetime) -> tuple[WaiverRow, ...]:
    """Active, soon-expiring, expired and unused waivers: an exception must be visible to be reviewed."""
    covered: dict[Waiver, list[str]] = defaultdict(list)
    for wf in waived:
        covered[wf.waiver].append(wf.finding.resource_id)
    expired: dict[tuple[str, str, str | None], list[Finding]] = defaultdict(list)
    for f in findings:
        info = f.evidence.get("waiver_expired")
        if isinstance(info, Mapping):
            expired[(f.check_id, str(info.get("reason")), info.get("expired"))].append(f)
    out: list[WaiverRow] = []
    seen: set[Waiver] = set()
    for w in [*configured, *covered]:
        if w in seen:
            continue
        seen.add(w)
        subject = w.subject
        if w.expired(now):
            hits = [f.resource_id for f in findings if w.matches(f)]
            out.append(WaiverRow(w.check_id, subject, w.reason, w.expires, "expired", tuple(hits)))
        elif covered.get(w):
            soon = w.expires is not None and datetime.combine(w.expires, datetime.min.time(), UTC) - now < _SOON
            out.append(WaiverRow(w.check_id, subject, w.reason, w.expires, "expires-soon" if soon else "active",
                                 tuple(covered[w])))
        else:
            out.append(WaiverRow(w.check_id, subject, w.reason, w.expires, "unused", ()))
    # expired waivers known only from findings (e.g. a report built from a stored scan without config)
    listed = {(r.check_id, r.reason) for r in out}
    for (check_id, reason, when), fs in expired.items():
        if (check_id, reason) not in listed:
            out.append(WaiverRow(check_id, fs[0].resource_id, reason, date.fromisoformat(when) if when else None,
                                 "expired", tuple(f.resource_id for f in fs)))
    order = {"expired": 0, "expires-soon": 1, "active": 2, "unused": 3}
    return tuple(sorted(out, key=lambda r: (order[r.status], r.check_id, r.subject.lower())))

