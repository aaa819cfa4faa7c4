"""Targeted re-evaluation: re-read what an event touched, splice it into the last inventory, re-check.

The daemon keeps the :class:`~plmon.monitor.collect.plan.RawInventory` of its last full collection. For each resource
an event names (already mapped to the top-level resource the plan lists, :mod:`plmon.monitor.events.relevance`) this
module repeats exactly the read the plan would make: the subscription's list of that type (so a
deleted resource disappears and a new one appears, with any reader, recorded or live), the per-resource
child lists (an endpoint's DNS zone groups, a zone's links and CNAMEs), a private-link target by id, or
a management group's association list. The new items replace the old ones in a copy of the inventory,
and :func:`plmon.monitor.collect.builder.build_snapshot` rebuilds the snapshot (the one place raw JSON becomes typed).

Then only the checks that read what changed run again. Each row of the kinds table
(:data:`plmon.monitor.model.kinds.KINDS`) names the snapshot collections its items become, and each check declares
the collections it reads (``@check(reads=...)``): :func:`checks_for` joins the two, and a check that declares
nothing always runs, so a new check is never silently skipped. The resources whose findings may move are those
whose outcome for those checks differs between the old and the new evaluation, plus the re-read resources and
everything below them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from plmon.checks.engine import Evaluation
from plmon.checks.finding import Finding
from plmon.checks.registry import readers_of
from plmon.monitor.collect.plan import (
    SUBSCRIPTION_LISTS,
    ArmReader,
    RawInventory,
    ReadError,
    nics_to_read,
    proves_absence,
    read_nics,
    targets_to_read,
)
from plmon.monitor.model.arm_id import ArmId, parse_id
from plmon.monitor.model.kinds import KINDS, kind_of

__all__ = ["ReadUnit", "RereadResult", "affected_keys", "checks_for", "read_unit", "records_fed", "reread_into"]

log = structlog.get_logger(__name__)

_LIST_KIND = {type_.lower(): (kind, type_) for kind, type_ in SUBSCRIPTION_LISTS}
_ASSOCIATION_TYPE = "microsoft.authorization/privatelinkassociations"


def _records_by_unit() -> dict[str, frozenset[str]]:
    """Snapshot collections each kind of :class:`ReadUnit` feeds, from the kinds table: a subscription list (the
    plan's name), "associations" (a management group's list) and "target" (every type read by id)."""
    out = {k.listed_as: frozenset(k.records) for k in KINDS if k.listed_as}
    association = kind_of(_ASSOCIATION_TYPE)
    out["associations"] = frozenset(association.records if association else ())
    out["target"] = frozenset(r for k in KINDS if k.api_version for r in k.records)
    return out


_RECORDS_BY_UNIT = _records_by_unit()
# reread_into also reads what a re-read names anew: an endpoint's or association's targets (an RMPL by id too),
# an endpoint's NIC. Their collections change with it.
_FOLLOW_UPS: Mapping[str, tuple[str, ...]] = {"privateEndpoints": ("target", "networkInterfaces"),
                                              "associations": ("target",)}


def records_fed(kinds: Iterable[str]) -> frozenset[str]:
    """The snapshot collections a step that re-read ``kinds`` (:attr:`RereadResult.kinds`) may have changed."""
    out: set[str] = set()
    for kind in kinds:
        for unit in (kind, *_FOLLOW_UPS.get(kind, ())):
            out |= _RECORDS_BY_UNIT.get(unit, frozenset())
    return frozenset(out)


def checks_for(kinds: Iterable[str]) -> set[str]:
    """The enabled-or-not check ids that read what the re-read kinds feed (their ``@check(reads=...)``)."""
    return readers_of(records_fed(kinds))


@dataclass(frozen=True, slots=True)
class ReadUnit:
    """One read of the plan: a subscription list, a target by id, or a management group's associations."""

    kind: str
    scope: str        # subscription id, management group name, or the target's raw id
    type_: str = ""


@dataclass
class RereadResult:
    """What one worker step read, for the lifecycle's scope and the metrics."""

    units: list[ReadUnit] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)     # resources re-read (normalised ids)
    failed: list[tuple[ReadUnit, ReadError]] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)  # targets no endpoint points at: nothing to do
    requests: int = 0

    @property
    def kinds(self) -> set[str]:
        done = {u for u in self.units} - {u for u, _ in self.failed}
        return {u.kind for u in done}


def read_unit(resource: ArmId) -> ReadUnit | None:
    """The plan read that answers for ``resource`` (a top-level resource), or None if it has none."""
    if resource.opaque or not resource.type_key:
        return None
    hit = _LIST_KIND.get(resource.type_key)
    if hit is not None and resource.subscription:
        return ReadUnit(hit[0], resource.subscription.lower(), hit[1])
    if resource.type_key == _ASSOCIATION_TYPE and resource.management_group:
        return ReadUnit("associations", resource.management_group)
    if resource.subscription:
        return ReadUnit("target", resource.raw)
    return None


def _id(item: Any) -> str | None:
    v = item.get("id") if isinstance(item, dict) else None
    return v if isinstance(v, str) and v else None


def _items(body: Any) -> list[Any]:
    if isinstance(body, dict) and isinstance(body.get("value"), list):
        items: list[Any] = body["value"]
        return items
    raise ReadError(None, "MalformedResponse", "list body has no 'value' array")


def _in_sub(item: Any, sub: str) -> bool:
    rid = _id(item)
    return rid is not None and (parse_id(rid).subscription or "").lower() == sub


def reread_into(reader: ArmReader, inv: RawInventory, resources: Iterable[ArmId]) -> tuple[RawInventory, RereadResult]:
    """A copy of ``inv`` with the plan reads for ``resources`` done again; ``inv`` is left as it was.

    A failed read keeps the previous data (the full collection will retry) and is reported in
    ``RereadResult.failed``; nothing here raises for ARM errors.
    """
    new = copy.copy(inv)
    new.lists = dict(inv.lists)
    new.zone_groups = dict(inv.zone_groups)
    new.vnet_links = dict(inv.vnet_links)
    new.cnames = dict(inv.cnames)
    new.targets = dict(inv.targets)
    new.target_errors = dict(inv.target_errors)
    new.associations = list(inv.associations)
    out = RereadResult()
    units: dict[ReadUnit, list[ArmId]] = {}
    for rid in resources:
        unit = read_unit(rid)
        if unit is None:
            out.untracked.append(rid.key)
            continue
        if unit.kind == "target" and rid.key not in inv.targets and rid.key not in inv.target_errors:
            out.untracked.append(rid.key)
            continue
        units.setdefault(unit, []).append(rid)
        out.keys.add(rid.key)

    def get(path: str, kind: str) -> Any:
        out.requests += 1
        return reader.get(path, kind=kind)

    for unit, rids in units.items():
        out.units.append(unit)
        try:
            if unit.kind == "target":
                _reread_target(get, new, unit.scope)
            elif unit.kind == "associations":
                scope = f"providers/Microsoft.Management/managementGroups/{unit.scope}"
                items = _items(get(f"{scope}/providers/Microsoft.Authorization/privateLinkAssociations",
                                   "privateLinkAssociations"))
                new.associations = [(g, a) for g, a in new.associations if g.lower() != unit.scope.lower()]
                new.associations.extend((unit.scope, a) for a in items)
            else:
                items = _items(get(f"subscriptions/{unit.scope}/providers/{unit.type_}", unit.kind))
                kept, before = [], {}
                for i in new.lists.get(unit.kind, []):
                    if _in_sub(i, unit.scope):
                        before[_id(i)] = i
                    else:
                        kept.append(i)
                new.lists[unit.kind] = kept + [_same(before.get(_id(i)), i) for i in items]
                _reread_children(get, new, unit.kind, rids, items)
        except ReadError as err:
            out.failed.append((unit, err))
            log.warning("reread_failed", kind=unit.kind, scope=unit.scope, status=err.status, code=err.code)
    # A new or changed endpoint (or association) may point at a target the inventory never read.
    if any(u.kind in ("privateEndpoints", "associations") for u in units):
        subs = {(s.get("subscriptionId") or "").lower() for s in new.subscriptions if isinstance(s, dict)}
        for raw in targets_to_read(new, subs)[0]:
            key = parse_id(raw).key
            if key in new.targets or key in new.target_errors:
                continue
            try:
                _reread_target(get, new, raw)
            except ReadError as err:
                out.failed.append((ReadUnit("target", raw), err))
    # A new endpoint's NIC (its only record of a dynamic IP) is in no NIC list the inventory holds: the
    # event named the endpoint alone. Read it by id, as the plan does, or the route checks cannot place it.
    nic_subs = {u.scope for u in units if u.kind == "networkInterfaces"}
    if any(u.kind == "privateEndpoints" for u in units) or nic_subs:
        def concerned(pe: ArmId) -> bool:  # only the endpoints this step re-read, or whose NIC list it re-read
            return pe.key in out.keys or (pe.subscription or "").lower() in nic_subs
        bodies: list[Any] = []
        for raw in nics_to_read(new, concerned)[0]:
            try:
                bodies.append(get(raw.strip("/"), "networkInterfaces"))
            except ReadError as err:
                out.failed.append((ReadUnit("networkInterfaces", raw, "Microsoft.Network/networkInterfaces"), err))
                log.warning("reread_failed", kind="networkInterfaces", scope=raw, status=err.status, code=err.code)
        read_nics(new, bodies)
    return new, out


def _same(old: Any, new: Any) -> Any:
    """The previous object when the re-read one is equal to it: the builder's memo
    (:class:`plmon.monitor.collect.builder.BuildMemo`) then reuses its parse, so a subscription's list read again for
    one changed item costs one item's parse, not the list's."""
    return old if old is not None and old == new else new


def _reread_target(get: Any, inv: RawInventory, raw: str) -> None:
    key = parse_id(raw).key
    try:
        body = get(raw.strip("/"), "target")
    except ReadError as err:
        if proves_absence(err):  # deleted: exactly what a full collection would record
            inv.targets.pop(key, None)
            inv.target_errors[key] = (raw, err)
            return
        raise
    inv.targets[key] = _same(inv.targets.get(key), body)
    inv.target_errors.pop(key, None)


def _reread_children(get: Any, inv: RawInventory, kind: str, rids: list[ArmId], items: list[Any]) -> None:
    present = {parse_id(i).key: i for i in (_id(x) for x in items) if i}
    for rid in rids:
        raw = present.get(rid.key)
        if kind == "privateEndpoints":
            if raw is None:
                inv.zone_groups.pop(rid.key, None)
            else:
                inv.zone_groups[rid.key] = _same(inv.zone_groups.get(rid.key), _items(get(
                    f"{raw.strip('/')}/privateDnsZoneGroups", "privateDnsZoneGroups")))
        elif kind == "privateDnsZones":
            if raw is None:
                inv.vnet_links.pop(rid.key, None)
                inv.cnames.pop(rid.key, None)
            else:
                inv.vnet_links[rid.key] = _same(inv.vnet_links.get(rid.key), _items(get(
                    f"{raw.strip('/')}/virtualNetworkLinks", "virtualNetworkLinks")))
                inv.cnames[rid.key] = _same(inv.cnames.get(rid.key), _items(get(f"{raw.strip('/')}/CNAME", "CNAME")))


def _by_key(findings: Iterable[Finding], checks: set[str]) -> dict[tuple[str, str], Finding]:
    # Findings compare as dataclasses: at least as strict as their to_dict() (which cost ~4 ms an event).
    return {f.key: f for f in findings if f.check_id in checks}


def affected_keys(before: Evaluation | None, after: Evaluation, checks: set[str], reread: Iterable[str]) -> set[str]:
    """Resource keys whose findings for ``checks`` may move: outcome changed, or re-read (and below)."""
    old: dict[tuple[str, str], Finding] = {}
    if before is not None:
        old = _by_key([*before.findings, *(w.finding for w in before.waived)], checks)
    new = _by_key([*after.findings, *(w.finding for w in after.waived)], checks)
    keys = {k[1] for k in old.keys() ^ new.keys()}
    keys |= {k[1] for k in old.keys() & new.keys() if old[k] != new[k]}
    roots = set(reread)
    keys |= roots
    for k in {k[1] for k in old.keys() | new.keys()}:
        if any(k.startswith(r + "/") for r in roots):
            keys.add(k)
    return keys
