"""The check engine: run every enabled check over a snapshot, then apply severities and waivers.

Checks are pure functions of the snapshot; this is the one place that turns their :class:`Issue`
values into :class:`Finding` values (id, title, severity, subscription, tenant) and decides waivers.
A check that raises is a bug, but one bug must not blind the whole scan: it is logged and reported
as a coverage gap of type ``check:<id>``, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plmon.checks.finding import Finding, Issue, Severity, subscription_of
from plmon.checks.registry import Check, all_checks
from plmon.checks.waivers import Waiver, match_waiver
from plmon.monitor.model.arm_id import normalise
from plmon.monitor.model.kinds import RECORDS
from plmon.monitor.model.snapshot import CoverageGap, Resource, Snapshot

__all__ = ["CheckRun", "CheckSettings", "Evaluation", "Owners", "WaivedFinding", "combine", "evaluate", "finding_of",
           "planned", "run_check", "settle"]


class _Log:
    """``structlog.get_logger(__name__)``, imported at the first line written (a check that raised): a scan whose
    checks all ran never loads structlog (~0.1 s of its start-up). checks/ may import no logging of plmon's."""

    def __getattr__(self, method: str) -> Any:
        import structlog

        return getattr(structlog.get_logger(__name__), method)


log: Any = _Log()


@dataclass(frozen=True, slots=True)
class CheckSettings:
    enabled: bool = True
    severity: Severity | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WaivedFinding:
    finding: Finding
    waiver: Waiver

    def to_dict(self) -> dict[str, Any]:
        d = self.finding.to_dict()
        d["waiver"] = {"reason": self.waiver.reason,
                       "expires": self.waiver.expires.isoformat() if self.waiver.expires else None}
        return d


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    waived: tuple[WaivedFinding, ...]
    check_errors: tuple[CoverageGap, ...]
    checks_run: tuple[str, ...]


def finding_of(chk: Check, issue: Issue, base: Severity, tenant: str | None) -> Finding:
    severity = base
    if issue.severity is not None and issue.severity.rank > base.rank:
        severity = issue.severity
    return Finding(
        check_id=chk.id, resource_id=issue.resource.raw, severity=severity, title=chk.title,
        message=issue.message, subscription_id=subscription_of(issue.resource),
        evidence=dict(issue.evidence), remediation=issue.remediation or chk.remediation,
        tenant_id=tenant,
    )


@dataclass(frozen=True, slots=True)
class CheckRun:
    """What one check made of a snapshot: its findings in the order it yielded them, and the coverage gap of its
    failure (the findings it yielded before it raised are kept). Plain data: a run made in another process (the
    offline scan's, :mod:`plmon.monitor.scan`) comes back pickled and combines as one made here."""

    check_id: str
    findings: tuple[Finding, ...]
    error: CoverageGap | None = None


def planned(settings: Mapping[str, CheckSettings] | None = None, only: set[str] | None = None) -> list[Check]:
    """The enabled checks (or ``only`` those ids), in the registry's order: the order their findings combine in."""
    settings = settings or {}
    return [chk for chk in all_checks().values()
            if settings.get(chk.id, CheckSettings()).enabled and (only is None or chk.id in only)]


def run_check(snapshot: Snapshot, chk: Check, settings: Mapping[str, CheckSettings] | None = None) -> CheckRun:
    """``chk`` over ``snapshot`` with its configured parameters and severity."""
    conf = (settings or {}).get(chk.id, CheckSettings())
    params = {**chk.defaults(), **conf.params}
    base = conf.severity or chk.severity
    found: list[Finding] = []
    try:
        for issue in chk.fn(snapshot, params):
            found.append(finding_of(chk, issue, base, snapshot.tenant_id))
    except Exception as err:
        log.exception("check_failed", check_id=chk.id)
        return CheckRun(chk.id, tuple(found), CoverageGap("/", f"check:{chk.id}", "CheckError", None,
                                                          repr(err)[:300]))
    return CheckRun(chk.id, tuple(found))


def combine(snapshot: Snapshot, runs: Iterable[CheckRun], waivers: tuple[Waiver, ...] = ()) -> Evaluation:
    """The evaluation of ``runs`` given in :func:`planned` order: one finding per defect (the first check's to
    name it), waivers applied, sorted."""
    findings: dict[tuple[str, str], Finding] = {}
    errors: list[CoverageGap] = []
    run: list[str] = []
    for r in runs:
        run.append(r.check_id)
        for f in r.findings:
            findings.setdefault(f.key, f)  # one defect, one finding
        if r.error is not None:
            errors.append(r.error)
    return settle(snapshot, findings.values(), waivers, errors, run)


def evaluate(snapshot: Snapshot, settings: Mapping[str, CheckSettings] | None = None,
             waivers: tuple[Waiver, ...] = (), only: set[str] | None = None) -> Evaluation:
    """Run the enabled checks (or ``only`` those ids) and sort findings deterministically."""
    return combine(snapshot, [run_check(snapshot, chk, settings) for chk in planned(settings, only)], waivers)


def settle(snapshot: Snapshot, findings: Iterable[Finding], waivers: tuple[Waiver, ...],
           errors: Iterable[CoverageGap], run: Iterable[str]) -> Evaluation:
    """Apply the waivers and sort: the one ending of a full and of an incremental evaluation
    (:mod:`plmon.checks.incremental`), so both give the same Evaluation for the same findings."""
    kept: list[Finding] = []
    waived: list[WaivedFinding] = []
    owners = Owners(snapshot) if any(w.resource_tags is not None for w in waivers) else None
    for f in findings:
        tags = owners.tags(f.resource_id) if owners is not None else None
        waiver, expired = match_waiver(f, waivers, snapshot.taken_at, tags)
        if waiver is None:
            kept.append(f)
        elif expired:
            kept.append(_with_expired_waiver(f, waiver))
        else:
            waived.append(WaivedFinding(f, waiver))
    order = _sort_key
    return Evaluation(tuple(sorted(kept, key=order)), tuple(sorted(waived, key=lambda w: order(w.finding))),
                      tuple(errors), tuple(run))


class Owners:
    """The snapshot record a resource id belongs to: its own, or its nearest parent's that plmon read (a
    connection's is its endpoint's). Asked per id, with no index of every record built (the daemon settles after
    every event); shared by tag waivers, scoping and the reports."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.collections = [snapshot.records(name) for name in RECORDS]

    def exact(self, key: str) -> Resource | None:
        """The record whose normalised id is ``key``."""
        for records in self.collections:
            rec = records.get(key)
            if rec is not None:
                return rec
        return None

    def __call__(self, resource_id: str) -> Resource | None:
        key = normalise(resource_id)
        while key.count("/") > 2:
            rec = self.exact(key)
            if rec is not None:
                return rec
            key = key.rsplit("/", 2)[0]
        return None

    def tags(self, resource_id: str) -> Mapping[str, str] | None:
        """The owner's tags; None when plmon read no record of it (its tags are unknown, not empty)."""
        rec = self(resource_id)
        return rec.tags if rec is not None else None


def _with_expired_waiver(f: Finding, w: Waiver) -> Finding:
    evidence = dict(f.evidence)
    evidence["waiver_expired"] = {"reason": w.reason, "expired": w.expires.isoformat() if w.expires else None}
    return Finding(f.check_id, f.resource_id, f.severity, f.title,
                   f"{f.message} (waiver expired on {w.expires}: {w.reason})", f.subscription_id,
                   evidence, f.remediation, f.tenant_id)


def _sort_key(f: Finding) -> tuple[int, str, str]:
    return (-f.severity.rank, f.check_id, f.resource_id.lower())
