"""What a compliance report says, computed once from a scan and (optionally) the state store.

Every format (HTML, Markdown, JSON, CSV, SARIF) renders the same :class:`Report`, so the figures an
auditor reads in the HTML are the figures a script reads in the JSON. A report covers one scan; the
store, when there is one, adds when each finding was first seen and the history behind the trend.

The headline figure is defined in :data:`COMPLIANCE_DEFINITION` and printed beside the number.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from checks.engine import WaivedFinding
from checks.finding import Finding, Severity, subscription_of
from checks.registry import Check, all_checks
from checks.waivers import Waiver
from monitor import __version__
from monitor.arm_id import ArmId, parse_id
from monitor.reports.controls import control_title, sort_controls
from monitor.scan import ScanResult
from monitor.snapshot import CoverageGap, Snapshot

__all__ = ["COMPLIANCE_DEFINITION", "CheckSection", "ControlGroup", "FindingRow", "HistoryPoint", "Report",
           "WaiverRow", "build_report"]

COMPLIANCE_DEFINITION = (
    "Share of the resources plmon read in this scan that have no open finding. A resource counts as "
    "non-compliant when any enabled check reports it or one of its child objects (for example a "
    "private endpoint connection); a finding under an active waiver does not count against it. "
    "Resources in a coverage gap were not read: they are neither counted nor assumed compliant, and "
    "every gap is listed beside the figure."
)

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
    scan: ScanResult
    history_source: str     # "state store" or "this scan only"
    since: datetime | None = None

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


def _evaluated(snap: Snapshot) -> dict[str, ArmId]:
    """Every resource the scan read, by normalised key."""
    out: dict[str, ArmId] = {}
    for mapping in (snap.private_endpoints, snap.private_link_services, snap.rmpls, snap.associations,
                    snap.targets, snap.virtual_networks, snap.subnets, snap.route_tables, snap.nsgs,
                    snap.firewalls, snap.firewall_policies, snap.load_balancers, snap.nics,
                    snap.bastion_hosts, snap.dns_zones):
        for key, res in mapping.items():
            out[key] = res.id
    return out


def _owner(resource_id: str, evaluated: Mapping[str, ArmId]) -> str:
    """The evaluated resource a finding is about: itself, or its nearest evaluated ancestor."""
    rid: ArmId | None = parse_id(resource_id)
    while rid is not None:
        if rid.key in evaluated:
            return rid.key
        rid = None if rid.opaque else rid.parent
    return parse_id(resource_id).key


def _pct(good: int, total: int) -> float | None:
    return round(100.0 * good / total, 1) if total else None


def _age(first: datetime | None, now: datetime) -> float | None:
    if first is None:
        return None
    return max(0.0, (now - first).total_seconds() / 86400)


def build_report(result: ScanResult, *, first_seen: Mapping[tuple[str, str], datetime] | None = None,
                 history: Sequence[HistoryPoint] = (), waivers: Sequence[Waiver] = (),
                 since: datetime | None = None, history_source: str | None = None) -> Report:
    """Everything every format shows. ``first_seen`` is keyed by :func:`checks.finding.finding_key`."""
    snap, ev = result.snapshot, result.evaluation
    now = snap.taken_at
    registry = all_checks()
    first_seen = first_seen or {}
    evaluated = _evaluated(snap)

    rows = tuple(FindingRow(f, f.check_id.split(".", 1)[0],
                            tuple(sort_controls(registry[f.check_id].controls)) if f.check_id in registry else (),
                            first_seen.get(f.key), _age(first_seen.get(f.key), now))
                 for f in ev.findings)
    owners = {r.finding.key: _owner(r.finding.resource_id, evaluated) for r in rows}
    bad = set(owners.values())
    universe = set(evaluated) | bad
    compliance = _pct(len(universe) - len(bad), len(universe))

    # by subscription: resources read and resources with an open finding, per subscription id
    def sub_of(key: str) -> str:
        return (subscription_of(evaluated.get(key, key)) or "(tenant)").lower()
    res_by_sub: dict[str, set[str]] = {k.lower(): set() for k in snap.subscriptions}
    for key in universe:
        res_by_sub.setdefault(sub_of(key), set()).add(key)
    bad_by_sub: dict[str, set[str]] = defaultdict(set)
    find_by_sub: Counter[str] = Counter()
    for r in rows:
        sub = (r.finding.subscription_id or "(tenant)").lower()
        find_by_sub[sub] += 1
        bad_by_sub[sub].add(owners[r.finding.key])
    names = {k.lower(): s.display_name for k, s in snap.subscriptions.items()}
    by_sub = tuple(
        {"subscription_id": sub, "name": names.get(sub), "resources": len(res_by_sub.get(sub, set()) | bad_by_sub[sub]),
         "non_compliant": len(bad_by_sub[sub]), "open_findings": find_by_sub[sub],
         "compliance_percent": _pct(len(res_by_sub.get(sub, set()) | bad_by_sub[sub]) - len(bad_by_sub[sub]),
                                    len(res_by_sub.get(sub, set()) | bad_by_sub[sub]))}
        for sub in sorted(set(res_by_sub) | set(bad_by_sub)))

    by_sev = tuple(
        {"severity": s.value, "open_findings": sum(1 for r in rows if r.finding.severity == s),
         "resources": len({owners[r.finding.key] for r in rows if r.finding.severity == s}),
         "checks": len({r.finding.check_id for r in rows if r.finding.severity == s})}
        for s in Severity)

    open_by_check = Counter(r.finding.check_id for r in rows)
    waived_by_check = Counter(w.finding.check_id for w in ev.waived)
    ran = set(ev.checks_run)
    errored = {g.type.removeprefix("check:") for g in ev.check_errors}
    sections = []
    for chk in registry.values():
        status = ("not-run" if chk.id not in ran else "error" if chk.id in errored
                  else "failing" if open_by_check[chk.id] else "passing")
        sections.append(CheckSection(chk, status, open_by_check[chk.id], waived_by_check[chk.id]))

    families: dict[str, list[CheckSection]] = defaultdict(list)
    for s in sections:
        families[s.check.family].append(s)
    by_family = tuple(
        {"family": fam, "checks": len(items), "checks_run": sum(1 for s in items if s.status != "not-run"),
         "checks_passing": sum(1 for s in items if s.status == "passing"),
         "open_findings": sum(s.open_findings for s in items),
         "resources_non_compliant": len({owners[r.finding.key] for r in rows if r.family == fam}),
         "compliance_percent": _pct(sum(1 for s in items if s.status == "passing"),
                                    sum(1 for s in items if s.status != "not-run"))}
        for fam, items in sorted(families.items()))

    groups: dict[str, list[str]] = defaultdict(list)
    for chk in registry.values():
        for c in chk.controls or ("(no control mapped)",):
            groups[c].append(chk.id)
    by_control = tuple(
        ControlGroup(c, control_title(c), tuple(groups[c]),
                     tuple(r for r in rows if r.finding.check_id in groups[c]))
        for c in [*sort_controls(k for k in groups if not k.startswith("(")),
                  *(k for k in groups if k.startswith("("))])

    point = HistoryPoint(now, len(rows), {s["severity"]: s["open_findings"] for s in by_sev if s["open_findings"]},
                         compliance)
    earlier = sorted((p for p in history if p.scanned_at != now and (since is None or p.scanned_at >= since)),
                     key=lambda p: p.scanned_at)
    trend = (*earlier, point)

    return Report(
        generated_at=now, tenant_id=snap.tenant_id, tool_version=__version__,
        subscriptions_scanned=snap.coverage.subscriptions_scanned, resources_evaluated=len(universe),
        resources_non_compliant=len(bad), compliance_percent=compliance, gaps=result.gaps,
        findings=rows, waivers=_waiver_rows(ev.waived, ev.findings, waivers, now), checks=tuple(sections),
        by_family=by_family, by_subscription=by_sub, by_severity=by_sev, by_control=by_control, trend=trend,
        scan=result, history_source=history_source or ("state store" if history else "this scan only"),
        since=since)


def _waiver_rows(waived: Sequence[WaivedFinding], findings: Sequence[Finding], configured: Sequence[Waiver],
                 now: datetime) -> tuple[WaiverRow, ...]:
    """Active, soon-expiring, expired and unused waivers: an exception must be visible to be reviewed."""
    covered: dict[Waiver, list[str]] = defaultdict(list)
    for w in waived:
        covered[w.waiver].append(w.finding.resource_id)
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
        subject = w.resource_id or w.resource_pattern or "*"
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

