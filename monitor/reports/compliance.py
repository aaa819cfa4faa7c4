"""Framework views: which findings evidence which requirements of a versioned framework, requirement by requirement.

The mappings are the checks' own (``@check(frameworks=...)``, a justification each); the requirement titles are
:data:`plmon.monitor.reports.controls.FRAMEWORKS`'. ``plmon scan --compliance ID`` and ``plmon report --compliance
ID`` keep the findings of the checks mapped to the framework (a mapping limited to one resource type keeps only the
findings about that type), add to each the requirement ids it evidences, and list each requirement with its checks
and their outcome, as Prowler's compliance outputs do.

A requirement's ``passed`` and ``failed`` count its mapped checks that ran: failed when the check has an open finding
the requirement covers, passed when it has none. plmon does not yet list the resources a check found compliant, so
the counts are of checks, not resources; ``findings`` counts the open findings. A waived finding fails nothing (it is
counted under ``waived``), as a muted finding in Prowler.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from plmon.checks.engine import WaivedFinding
from plmon.checks.finding import Finding
from plmon.checks.registry import Check, Evidences, all_checks
from plmon.monitor.errors import InputError
from plmon.monitor.reports.controls import FRAMEWORKS, Framework, requirement_key
from plmon.monitor.scan import ScanResult, scan_document

__all__ = ["RequirementRow", "compliance_document", "framework", "frameworks_listing", "keep_framework",
           "mapped_checks", "mappings_markdown", "requirement_rows", "requirements_of"]


@dataclass(frozen=True, slots=True)
class RequirementRow:
    """One requirement of a framework, as a scan left it."""

    id: str
    title: str
    checks: tuple[str, ...]   # the checks mapped to it, in id order
    passed: int               # mapped checks that ran with no open finding for it
    failed: int               # mapped checks that ran with at least one
    findings: int             # open findings it covers
    waived: int               # waived findings it covers

    @property
    def status(self) -> str:
        """FAIL when a mapped check failed, PASS when at least one ran and none failed, else NOT_RUN."""
        return "FAIL" if self.failed else "PASS" if self.passed else "NOT_RUN"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "status": self.status, "checks": list(self.checks),
                "passed": self.passed, "failed": self.failed, "findings": self.findings, "waived": self.waived}


def framework(framework_id: str) -> Framework:
    """The framework ``framework_id`` names; an InputError (one line, exit 2) listing the known ids otherwise."""
    known = FRAMEWORKS.get(framework_id) or FRAMEWORKS.get(framework_id.lower())
    if known is None:
        raise InputError(f"--compliance: unknown framework {framework_id!r}; known: {', '.join(FRAMEWORKS)} "
                         "(plmon checks --compliance-frameworks)")
    return known


def mapped_checks(framework_id: str) -> set[str]:
    """The ids of the checks that evidence at least one requirement of the framework."""
    fw = framework(framework_id)
    return {c.id for c in all_checks().values() if fw.id in c.compliance()}


def _involves(f: Finding, arm_type: str) -> bool:
    """Whether the finding is about a resource of ``arm_type``: its own resource (or a child of one), or the
    private-link target its evidence names (a connection finding is about the endpoint; its target is the type)."""
    needle = f"/providers/{arm_type.lower()}/"
    ev = f.evidence
    ids: list[object] = [f.resource_id, ev.get("target")]
    connections = ev.get("connections")
    if isinstance(connections, Sequence):
        ids += [c.get("target") for c in connections if isinstance(c, Mapping)]
    return any(isinstance(i, str) and needle in i.lower() + "/" for i in ids)


def _applies(e: Evidences, f: Finding) -> bool:
    return e.only is None or _involves(f, e.only)


def requirements_of(f: Finding, framework_id: str, registry: Mapping[str, Check] | None = None) -> list[str]:
    """The requirement ids of ``framework_id`` that finding ``f`` evidences, in requirement order."""
    chk = (registry or all_checks()).get(f.check_id)
    if chk is None:
        return []
    reqs = {e.requirement for e in chk.frameworks if e.framework == framework_id and _applies(e, f)}
    return sorted(reqs, key=requirement_key)


def keep_framework(result: ScanResult, framework_id: str) -> ScanResult:
    """The scan as if only the framework's checks had run: the findings (and waived ones) that evidence one of its
    requirements, its checks among those run, and the collection's gaps with its checks' errors."""
    fw = framework(framework_id)
    registry = all_checks()
    mapped = mapped_checks(fw.id)
    ev = result.evaluation
    findings = tuple(f for f in ev.findings if requirements_of(f, fw.id, registry))
    waived = tuple(w for w in ev.waived if requirements_of(w.finding, fw.id, registry))
    errors = tuple(g for g in ev.check_errors if g.type.removeprefix("check:") in mapped)
    kept = replace(ev, findings=findings, waived=waived, check_errors=errors,
                   checks_run=tuple(c for c in ev.checks_run if c in mapped))
    passed = result.passed
    if passed is not None:
        passed = tuple(p for p in passed if _pass_evidences(registry.get(p.check_id), fw.id, p.resource_id))
    return replace(result, evaluation=kept, passed=passed)


def _pass_evidences(chk: Check | None, framework_id: str, resource_id: str) -> bool:
    """Whether a pass of ``chk`` on ``resource_id`` is evidence for one of the framework's requirements. A mapping
    limited to a resource type counts a pass only on a resource of that type: a pass names no target, so a
    connection check's pass on an endpoint cannot show which service it reaches, and claims nothing."""
    if chk is None:
        return False
    rid = resource_id.lower() + "/"
    return any(e.only is None or f"/providers/{e.only.lower()}/" in rid
               for e in chk.frameworks if e.framework == framework_id)


def requirement_rows(framework_id: str, findings: Iterable[Finding], waived: Iterable[WaivedFinding],
                     checks_run: Iterable[str]) -> list[RequirementRow]:
    """Every requirement of the framework that a check evidences, with its checks' outcome in one scan."""
    fw = framework(framework_id)
    registry = all_checks()
    ran = set(checks_run)
    checks_of: dict[str, list[str]] = {r: [] for r in fw.requirements}
    for c in registry.values():
        for req in c.compliance().get(fw.id, []):
            checks_of.setdefault(req, [])
            if c.id not in checks_of[req]:
                checks_of[req].append(c.id)
    hits: dict[tuple[str, str], int] = {}
    for f in findings:
        for req in requirements_of(f, fw.id, registry):
            hits[(req, f.check_id)] = hits.get((req, f.check_id), 0) + 1
    muted: dict[str, int] = {}
    for w in waived:
        for req in requirements_of(w.finding, fw.id, registry):
            muted[req] = muted.get(req, 0) + 1
    rows = []
    for req in sorted(checks_of, key=requirement_key):
        ids = tuple(sorted(checks_of[req]))
        failed = sum(1 for c in ids if c in ran and hits.get((req, c)))
        passed = sum(1 for c in ids if c in ran and not hits.get((req, c)))
        rows.append(RequirementRow(req, fw.requirements.get(req, ""), ids, passed, failed,
                                   sum(hits.get((req, c), 0) for c in ids), muted.get(req, 0)))
    return rows


def compliance_document(result: ScanResult, framework_id: str) -> dict[str, Any]:
    """``scan --compliance ID --format json``: the scan document of :func:`keep_framework`'s scan, each finding (and
    waived one) with ``compliance: {ID: [requirement, ...]}``, plus ``framework`` and ``requirements``."""
    fw = framework(framework_id)
    kept = keep_framework(result, fw.id)
    doc = scan_document(kept)
    registry = all_checks()
    for item, f in zip(doc["findings"], kept.evaluation.findings, strict=True):
        item["compliance"] = {fw.id: requirements_of(f, fw.id, registry)}
    for item, w in zip(doc["waived"], kept.evaluation.waived, strict=True):
        item["compliance"] = {fw.id: requirements_of(w.finding, fw.id, registry)}
    doc["framework"] = {"id": fw.id, "name": fw.name, "version": fw.version}
    doc["requirements"] = [r.as_dict() for r in requirement_rows(fw.id, kept.evaluation.findings,
                                                                 kept.evaluation.waived, kept.evaluation.checks_run)]
    return doc


def frameworks_listing() -> list[dict[str, Any]]:
    """``plmon checks --compliance-frameworks``: each framework with the requirements and checks mapped to it."""
    registry = all_checks()
    return [{"id": fw.id, "name": fw.name, "version": fw.version, "source": fw.source,
             "requirements": len(fw.requirements),
             "checks": sorted(c.id for c in registry.values() if fw.id in c.compliance())}
            for fw in FRAMEWORKS.values()]


def mappings_markdown() -> str:
    """docs/compliance.md: every framework, requirement and mapping with its justification (a test keeps the file
    equal to this text; ``plmon checks --compliance-frameworks --format md`` prints it)."""
    registry = all_checks()
    out = ["# Compliance framework mappings", "",
           "Generated from the check registry (`plmon checks --compliance-frameworks --format md`); a test fails when "
           "this file and the registry disagree.", "",
           "Each mapping says which requirement a check's result is evidence for and why, from the requirement's own "
           "text. A requirement is listed only when a check truly evidences it: fewer honest mappings beat many. "
           "A mapping limited to one resource type applies only to findings about that type (the finding's resource "
           "or the private-link target it names). PCI DSS requirements apply to components in the cardholder data "
           "environment (CDE) only.", "",
           "`plmon scan --compliance ID` keeps the findings of the checks mapped to the framework and lists each "
           "requirement with its status; a requirement's `passed` and `failed` count its mapped checks that ran.", ""]
    for fw in FRAMEWORKS.values():
        out += [f"## {fw.name} {fw.version} (`{fw.id}`)", "", f"Source: <{fw.source}>", "",
                "| requirement | title | check | justification |", "|---|---|---|---|"]
        rows = [(e.requirement, c.id, e) for c in registry.values() for e in c.frameworks if e.framework == fw.id]
        for req, cid, e in sorted(rows, key=lambda r: (requirement_key(r[0]), r[1])):
            why = e.why + (f" (only {e.only})" if e.only else "")
            cells = (req, fw.requirements.get(req, ""), f"`{cid}`", why)
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)
