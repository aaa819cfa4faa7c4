"""The compliance figure of one full scan, computed once and kept in the state store beside the scan.

A report built later from the store alone must state the same figure, the same coverage and the same
per-subscription resource counts as a report of the scan itself, without the snapshot (which is not
stored). So what a report needs from the snapshot is reduced here to :class:`ScanFigures`, plain data
that the lifecycle records with each full scan and that :func:`ScanFigures.from_dict` reads back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plmon.checks.finding import Finding, subscription_of
from plmon.monitor.model.arm_id import ArmId, parse_id
from plmon.monitor.model.clock import WALL
from plmon.monitor.model.kinds import RECORDS
from plmon.monitor.model.snapshot import CoverageGap, Snapshot
from plmon.monitor.scan import ScanResult

__all__ = ["COMPLIANCE_DEFINITION", "ScanFigures", "evaluated_resources", "owner_of", "percent", "scan_figures"]

COMPLIANCE_DEFINITION = (
    "Share of the resources plmon read in this scan that have no open finding. A resource counts as "
    "non-compliant when any enabled check reports it or one of its child objects (for example a "
    "private endpoint connection); a finding under an active waiver does not count against it. "
    "Resources in a coverage gap were not read: they are neither counted nor assumed compliant, and "
    "every gap is listed beside the figure."
)

TENANT = "(tenant)"  # the subscription bucket of a resource outside any subscription


def evaluated_resources(snap: Snapshot) -> dict[str, ArmId]:
    """Every resource the scan read, by normalised key: the collections of the kinds table (``RECORDS``), so a
    resource type added there is in the compliance figure without an edit here."""
    out: dict[str, ArmId] = {}
    for name in RECORDS:
        for key, res in snap.records(name).items():
            out[key] = res.id
    return out


def owner_of(resource_id: str, evaluated: Mapping[str, ArmId]) -> str:
    """The evaluated resource a finding is about: itself, or its nearest evaluated ancestor."""
    rid: ArmId | None = parse_id(resource_id)
    while rid is not None:
        if rid.key in evaluated:
            return rid.key
        rid = None if rid.opaque else rid.parent
    return parse_id(resource_id).key


def percent(good: int, total: int) -> float | None:
    return round(100.0 * good / total, 1) if total else None


def _finding_ref(f: Finding) -> str:
    return "\n".join(f.key)


def _gap_dict(g: CoverageGap) -> dict[str, Any]:
    return {"scope": g.scope, "type": g.type, "code": g.code, "status": g.status, "message": g.message}


@dataclass(frozen=True, slots=True)
class ScanFigures:
    """What a report states about one full scan, as data that survives a round trip through a store.

    ``resources_by_subscription`` counts, per lower-case subscription id, the resources in the figure's
    universe; ``owners`` maps a finding (``check id + newline + resource key``) to the evaluated resource
    it counts against, only where that is not the finding's own resource (child objects), so it stays
    small. ``resources_read`` is the scan document's ``resources_evaluated`` (contracts.md). ``clock`` is
    the source's (:mod:`plmon.monitor.model.clock`): a report or ``plmon findings`` from the store alone ages its
    findings on it.
    """

    tenant_id: str | None
    subscriptions: Mapping[str, str | None]
    gaps: tuple[CoverageGap, ...]
    checks_run: tuple[str, ...]
    resources_evaluated: int
    resources_non_compliant: int
    compliance_percent: float | None
    resources_by_subscription: Mapping[str, int] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)
    resources_read: int = 0
    waived: int = 0
    clock: str = WALL

    def owner(self, f: Finding) -> str:
        return self.owners.get(_finding_ref(f), f.key[1])

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "subscriptions": dict(self.subscriptions),
                "gaps": [_gap_dict(g) for g in self.gaps], "checks_run": list(self.checks_run),
                "resources_evaluated": self.resources_evaluated,
                "resources_non_compliant": self.resources_non_compliant,
                "compliance_percent": self.compliance_percent,
                "resources_by_subscription": dict(self.resources_by_subscription), "owners": dict(self.owners),
                "resources_read": self.resources_read, "waived": self.waived, "clock": self.clock}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ScanFigures:
        gaps = tuple(CoverageGap(scope=str(g["scope"]), type=str(g["type"]), code=str(g["code"]),
                                 status=g.get("status"), message=g.get("message")) for g in d.get("gaps") or ())
        return cls(tenant_id=d.get("tenant_id"), subscriptions=dict(d.get("subscriptions") or {}), gaps=gaps,
                   checks_run=tuple(d.get("checks_run") or ()),
                   resources_evaluated=int(d.get("resources_evaluated") or 0),
                   resources_non_compliant=int(d.get("resources_non_compliant") or 0),
                   compliance_percent=d.get("compliance_percent"),
                   resources_by_subscription=dict(d.get("resources_by_subscription") or {}),
                   owners=dict(d.get("owners") or {}), resources_read=int(d.get("resources_read") or 0),
                   waived=int(d.get("waived") or 0), clock=str(d.get("clock") or WALL))


def scan_figures(result: ScanResult, findings: Iterable[Finding] | None = None) -> ScanFigures:
    """The figures of ``result`` (its open findings unless ``findings`` says otherwise)."""
    snap = result.snapshot
    found = tuple(result.evaluation.findings if findings is None else findings)
    evaluated = evaluated_resources(snap)
    owners = {f.key: owner_of(f.resource_id, evaluated) for f in found}
    bad = set(owners.values())
    universe = set(evaluated) | bad

    def sub_of(key: str) -> str:
        return (subscription_of(evaluated.get(key, key)) or TENANT).lower()

    res_by_sub: dict[str, set[str]] = {k.lower(): set() for k in snap.subscriptions}
    for key in universe:
        res_by_sub.setdefault(sub_of(key), set()).add(key)
    for f in found:  # a finding counts in its own subscription's row even when its owner lives elsewhere
        res_by_sub.setdefault((f.subscription_id or TENANT).lower(), set()).add(owners[f.key])

    return ScanFigures(
        tenant_id=snap.tenant_id,
        subscriptions={k.lower(): s.display_name for k, s in snap.subscriptions.items()},
        gaps=result.gaps, checks_run=tuple(result.evaluation.checks_run),
        resources_evaluated=len(universe), resources_non_compliant=len(bad),
        compliance_percent=percent(len(universe) - len(bad), len(universe)),
        resources_by_subscription={s: len(keys) for s, keys in sorted(res_by_sub.items())},
        owners={"\n".join(k): o for k, o in owners.items() if o != k[1]},
        resources_read=snap.resources_evaluated(), waived=len(result.evaluation.waived), clock=result.clock.kind)
