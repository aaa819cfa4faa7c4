"""Targeted re-evaluation: re-read what an event touched, splice it into the last inventory, re-check.

The daemon keeps the :class:`~plmon.monitor.collect.inventory.Inventory` (typed read units, no raw JSON) of its last
full collection. For each resource an event names (already mapped to the top-level resource the plan lists,
:mod:`plmon.monitor.events.relevance`) this module repeats exactly the read the plan would make: the subscription's
list of that type (so a deleted resource disappears and a new one appears, with any reader, recorded or live), the
per-resource child lists (an endpoint's DNS zone groups, a zone's links and CNAMEs), a private-link target by id, or
a management group's association list, and the follow-ups they call for (a new endpoint's targets and NIC). An
endpoint is read by its id instead of its subscription's list, and spliced into that list's unit (what the list
would hold for it, without re-parsing ~590 endpoints at 100k resources); see :func:`_reread_by_id` for when the
list is read all the same. Each read's unit replaces the old one in a copy of the inventory, parsed by the builder
as a collection's would be, and
:func:`plmon.monitor.collect.builder.relink` re-derives only the records and index entries the re-read touched.

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
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from plmon.checks.engine import Evaluation
from plmon.checks.finding import Finding
from plmon.checks.registry import readers_of
from plmon.monitor.collect.builder import list_refs, parse_child, parse_list, parse_target, paused_gc, unit_of
from plmon.monitor.collect.inventory import BY_ID, Inventory, ListUnit, Touched
from plmon.monitor.collect.plan import (
    CNAMES,
    HUB_CHILD_LISTS,
    LISTED_TARGET_TYPES,
    SUBSCRIPTION_LISTS,
    VNET_LINKS,
    ZONE_GROUPS,
    ArmReader,
    ReadError,
    association_unit,
    list_unit,
    named_targets,
    nics_to_read,
    proves_absence,
    targets_to_read,
)
from plmon.monitor.model.arm_id import ArmId, interning, parse_id
from plmon.monitor.model.kinds import KINDS, kind_of

__all__ = [
    "ReadUnit", "RereadResult", "affected_keys", "checks_for", "keys_to_apply", "read_unit", "records_fed",
    "reread_into",
]

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
    touched: Touched = field(default_factory=lambda: Touched())

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


def reread_into(reader: ArmReader, inv: Inventory, resources: Iterable[ArmId]) -> tuple[Inventory, RereadResult]:
    """A copy of ``inv`` with the plan reads for ``resources`` done again; ``inv`` is left as it was.

    Each read replaces its unit (a subscription's list of a kind, an endpoint's zone groups, a zone's links and
    CNAMEs, a target, a group's associations); its body is parsed and dropped as in a collection. An item parsed
    equal to the one it replaces is kept as the very same object, so what did not change stays identical
    (:attr:`RereadResult.touched` names what was replaced). A failed read keeps the previous data (the full
    collection will retry) and is reported in ``RereadResult.failed``; nothing here raises for ARM errors.
    """
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
    new = _copy_for(inv, {u.kind for u in units})

    def get(path: str, kind: str) -> Any:
        out.requests += 1
        return reader.get(path, kind=kind)

    with paused_gc(), interning() as table:
        for unit, rids in units.items():
            out.units.append(unit)
            if unit.kind in _SEEDED_KINDS:
                seed_ids(table, inv.lists.get(unit.kind, {}).get(unit.scope))
            try:
                if unit.kind == "target":
                    _reread_target(get, new, unit.scope, out.touched)
                elif unit.kind == "associations":
                    _reread_associations(get, new, unit.scope, out.touched)
                else:
                    by_id = _reread_by_id(get, new, unit, rids, out.touched)
                    if by_id is None:
                        items = _items(get(f"subscriptions/{unit.scope}/providers/{unit.type_}", unit.kind))
                        _replace_unit(new, unit.kind, unit.scope, list_unit(unit.kind, items), out.touched)
                    else:
                        items = by_id
                    _reread_children(get, new, unit.kind, rids, items, out.touched)
            except ReadError as err:
                out.failed.append((unit, err))
                log.warning("reread_failed", kind=unit.kind, scope=unit.scope, status=err.status, code=err.code)
        _follow_ups(get, inv, new, units, out, table)
    return new, out


# The inventory's tables each kind of read may write (its own, its children's, its follow-ups'); every other table
# the copy shares with the old inventory. Copying them all took ~2 ms of every event at 100k resources (an endpoint's
# zone groups and the targets are ~35k and ~27k entries) though a route table's or a network's read writes none.
_WRITES: Mapping[str, tuple[str, ...]] = {
    "privateEndpoints": ("zone_groups", "targets", "target_errors"),
    "privateDnsZones": ("vnet_links", "cnames"),
    "virtualHubs": ("hub_children",),
    "target": ("targets", "target_errors"),
    "associations": ("associations", "targets", "target_errors"),
}


def _copy_for(inv: Inventory, kinds: Iterable[str]) -> Inventory:
    """A copy of ``inv`` whose tables that reads of ``kinds`` may write are copies (the subscription lists always:
    every list read replaces its unit there), the rest shared: nothing writes those in this step."""
    new = copy.copy(inv)
    new.lists = dict(inv.lists)
    for name in {t for kind in kinds for t in _WRITES.get(kind, ())}:
        setattr(new, name, dict(getattr(inv, name)))
    return new


# Kinds whose items carry hundreds of ids each (a network's subnets name every IP configuration in them, a Private
# Link Service every connection's endpoint): their re-read parsed them all again, ~10-20 ms an event at 100k.
_SEEDED_KINDS = frozenset({"virtualNetworks", "privateLinkServices"})


def seed_ids(table: dict[str, ArmId], unit: ListUnit | None) -> None:
    """Put every id the records of ``unit`` (the one about to be re-read) hold into the interning ``table``, by its
    raw string, so re-parsing an item finds each unchanged id already parsed, as one scope would have.

    Safe because an id keeps its input string as ``raw`` and parsing is deterministic: ``parse_id(a.raw)`` in a
    fresh scope gives an id equal to ``a``. Only the unit being replaced is walked, never the tenant, and the
    re-read ids are then the very objects the old records hold (their equality checks short-cut on identity)."""
    if unit is None:
        return
    stack: list[Any] = [p.record for p in unit.items]
    while stack:
        obj = stack.pop()
        t = type(obj)
        if t is ArmId:
            table.setdefault(obj.raw, obj)
        elif t is tuple:
            stack.extend(obj)
        elif t not in _LEAVES and obj is not None:
            slots = _slots_of(t)
            if slots:
                stack.extend(getattr(obj, name, None) for name in slots)  # a slot left unset holds nothing


_LEAVES: frozenset[type] = frozenset({str, int, float, bool, frozenset, dict, list})
_SLOTS: dict[type, tuple[str, ...]] = {}


def _slots_of(t: type) -> tuple[str, ...]:
    """Every slot of ``t`` and its bases (a slotted dataclass record keeps its fields there), cached per type."""
    got = _SLOTS.get(t)
    if got is None:
        named = [(s,) if isinstance(s := getattr(k, "__slots__", ()), str) else s for k in t.__mro__]
        got = _SLOTS[t] = tuple(name for names in named for name in names if name != "__weakref__")
    return got


def _unnamed_maybe(old: Inventory, new: Inventory, units: Mapping[ReadUnit, list[ArmId]]) -> bool:
    """Whether this step may have left a target read by id that nothing names: only when a re-read endpoint or
    association unit stopped naming one, or a list of a listed target type was re-read (a target it now returns is
    no longer read by id). Every step (and every collection) leaves none, so otherwise the tenant-wide pruning
    (~20 ms an endpoint event at 100k resources) would find nothing."""
    listed = set(LISTED_TARGET_TYPES.values())
    for u in units:
        if u.kind in listed:
            return True
        if u.kind == "privateEndpoints":
            was, now = old.lists.get(u.kind, {}).get(u.scope), new.lists.get(u.kind, {}).get(u.scope)
            if was is not None and (now is None or not was.named <= now.named):
                return True
        elif u.kind == "associations":
            was_named = {k for g, a in old.associations.items() if g.lower() == u.scope.lower() for k in a.named}
            now_named = {k for g, a in new.associations.items() if g.lower() == u.scope.lower() for k in a.named}
            if not was_named <= now_named:
                return True
    return False


def _follow_ups(get: Any, old: Inventory, new: Inventory, units: Mapping[ReadUnit, list[ArmId]],
                out: RereadResult, table: dict[str, ArmId]) -> None:
    """The reads a re-read names anew: targets of a new or changed endpoint or association, and a new endpoint's
    NIC (its only record of a dynamic IP is in no NIC list the inventory holds: the event named the endpoint
    alone). Read by id, as the plan does, or the checks cannot judge them."""
    if any(u.kind in ("privateEndpoints", "associations") for u in units):
        subs = {(s.get("subscriptionId") or "").lower() for s in new.subscriptions if isinstance(s, dict)}
        if _unnamed_maybe(old, new, units):
            _drop_unnamed_targets(new, named_targets(new), out.touched)
        # Only the re-read units can name a target not read yet: every other one was followed when it was read.
        endpoints = [e for u in units if u.kind == "privateEndpoints"
                     if (e := new.lists.get("privateEndpoints", {}).get(u.scope)) is not None]
        groups = [a for u in units if u.kind == "associations" for g, a in new.associations.items()
                  if g.lower() == u.scope.lower()]
        for unit in endpoints:  # the ids they name, parsed once already: each key below is then a lookup
            for ref in unit.refs:
                for tid in ref.targets:
                    table.setdefault(tid.raw, tid)
        for raw in targets_to_read(new, subs, endpoints, groups)[0]:
            key = parse_id(raw).key
            if key in new.targets or key in new.target_errors:
                continue
            try:
                _reread_target(get, new, raw, out.touched)
            except ReadError as err:
                out.failed.append((ReadUnit("target", raw), err))
    nic_subs = {u.scope for u in units if u.kind == "networkInterfaces"}
    if any(u.kind == "privateEndpoints" for u in units) or nic_subs:
        def concerned(pe: ArmId) -> bool:  # only the endpoints this step re-read, or whose NIC list it re-read
            return pe.key in out.keys or (pe.subscription or "").lower() in nic_subs
        if any(name.startswith(BY_ID) for name in new.lists.get("networkInterfaces", {})):  # else none to drop
            _drop_unneeded_nics(new, {parse_id(raw).key for raw in nics_to_read(new)[0]}, out.touched)
        for raw in nics_to_read(new, concerned)[0]:
            try:
                body = get(raw.strip("/"), "networkInterfaces")
            except ReadError as err:
                out.failed.append((ReadUnit("networkInterfaces", raw, "Microsoft.Network/networkInterfaces"), err))
                log.warning("reread_failed", kind="networkInterfaces", scope=raw, status=err.status, code=err.code)
                continue
            _replace_unit(new, "networkInterfaces", f"{BY_ID}{parse_id(raw).key}",
                          list_unit("networkInterfaces", [body]), out.touched)


def _drop_unnamed_targets(inv: Inventory, wanted: set[str], touched: Touched) -> None:
    """Forget the targets read by id that nothing names any more (a deleted endpoint's): a full collection would
    not read them."""
    for table in (inv.targets, inv.target_errors):
        for key in [k for k in table if k not in wanted]:
            del table[key]
            touched.targets.add(key)


def _drop_unneeded_nics(inv: Inventory, wanted: set[str], touched: Touched) -> None:
    """Forget the NICs read by id that no endpoint needs any more (its endpoint deleted, or now listed with it)."""
    units = inv.lists.get("networkInterfaces", {})
    gone = [name for name in units if name.startswith(BY_ID) and name[len(BY_ID):] not in wanted]
    if gone:
        inv.lists["networkInterfaces"] = {n: u for n, u in units.items() if n not in gone}
        for name in gone:
            touched.list_keys.setdefault("networkInterfaces", set()).update(p.order[1] for p in units[name].items)
            touched.units.setdefault("networkInterfaces", set()).add(name)


def _same(old: Any, new: Any) -> Any:
    """The previous object when the re-read one is equal to it: what did not change stays the very same object."""
    return old if old is not None and old == new else new


def _replace_unit(inv: Inventory, kind: str, name: str, unit: ListUnit, touched: Touched) -> None:
    """Put ``unit`` in place of the unit ``name`` of ``kind`` (in its place: the read order is kept), with the
    items parsed equal to the old ones kept as the old objects."""
    units = dict(inv.lists.get(kind, {}))
    old = units.get(name)
    dirty = touched.list_keys.setdefault(kind, set())
    if old is not None:
        before = {p.order: p for p in old.items}
        unit = replace(unit, items=tuple(_same(before.get(p.order), p) for p in unit.items))
        kept = {id(p) for p in unit.items}
        dirty.update(p.order[1] for p in old.items if id(p) not in kept)
        was = {id(p) for p in old.items}
        dirty.update(p.order[1] for p in unit.items if id(p) not in was)
    else:
        dirty.update(p.order[1] for p in unit.items)
    touched.units.setdefault(kind, set()).add(name)
    units[name] = unit
    inv.lists[kind] = units


# Kinds whose event re-reads only the resources it names, by id, spliced into their subscription's unit: an endpoint
# event re-parsed the whole subscription's list (~590 endpoints at 100k, ~85 ms of the event). A GET of the id
# answers the list's item for it (or 404 when deleted); list order is immaterial (the link sorts by id).
_BY_ID_KINDS = frozenset({"privateEndpoints"})
# Beyond this many resources of one unit in one step, one list read is cheaper than a GET each.
_BY_ID_MAX = 8


def _reread_by_id(get: Any, inv: Inventory, unit: ReadUnit, rids: list[ArmId], touched: Touched) -> list[Any] | None:
    """The items read by id for ``rids``, spliced into the unit they belong to; None when the list must be read.

    The list is read instead (exactly as before) when the unit was never listed (its list failed: the list read is
    what a collection would retry), when a GET fails with anything but a proof of absence (a 403 on one id is no
    reason to keep the old item, and the list answers as a collection would), when an answer is not the resource
    asked for, or when the unit holds an item twice or unaligned refs (a splice could not tell which to replace).
    """
    if unit.kind not in _BY_ID_KINDS or len(rids) > _BY_ID_MAX:
        return None
    old = inv.lists.get(unit.kind, {}).get(unit.scope)
    if old is None or len(old.refs) != len(old.items):
        return None
    wanted = {rid.key for rid in rids}
    hits = [i for i, p in enumerate(old.items) if p.order[0] == 0 and p.order[1] in wanted]
    if len({old.items[i].order[1] for i in hits}) != len(hits):
        return None
    bodies: list[Any] = []
    for rid in rids:
        try:
            body = get(rid.raw.strip("/"), unit.kind)
        except ReadError as err:
            if proves_absence(err):
                continue
            return None
        raw = _id(body)
        if raw is None or parse_id(raw).key != rid.key:
            return None
        bodies.append(body)
    parsed = parse_list(unit.kind, bodies)
    refs, keys = list_refs(unit.kind, bodies, parsed)
    fresh = {p.order[1]: (p, r) for p, r in zip(parsed, refs, strict=True)}
    items: list[Any] = []
    new_refs: list[Any] = []
    dirty = touched.list_keys.setdefault(unit.kind, set())
    for p, r in zip(old.items, old.refs, strict=True):
        if p.order[0] == 0 and p.order[1] in wanted:
            hit = fresh.pop(p.order[1], None)
            if hit is None:
                dirty.add(p.order[1])  # deleted
                continue
            q = _same(p, hit[0])  # in its place; unchanged stays the very same object (as _replace_unit)
            if q is not p:
                dirty.add(p.order[1])
            p, r = q, hit[1]
        items.append(p)
        new_refs.append(r)
    for p, r in fresh.values():  # new
        dirty.add(p.order[1])
        items.append(p)
        new_refs.append(r)
    # In place of _replace_unit: only the spliced items can differ, so the unit's other ~590 are not compared.
    units = dict(inv.lists[unit.kind])
    units[unit.scope] = unit_of(unit.kind, tuple(items), tuple(new_refs), (old.keys - wanted) | keys)
    inv.lists[unit.kind] = units
    touched.units.setdefault(unit.kind, set()).add(unit.scope)
    return bodies


def _reread_target(get: Any, inv: Inventory, raw: str, touched: Touched) -> None:
    key = parse_id(raw).key
    try:
        body = get(raw.strip("/"), "target")
    except ReadError as err:
        if proves_absence(err):  # deleted: exactly what a full collection would record
            inv.targets.pop(key, None)
            touched.targets_added = touched.targets_added or key not in inv.target_errors
            inv.target_errors[key] = (raw, err.with_traceback(None))  # its frames would hold the step's locals
            touched.targets.add(key)
            return
        raise
    touched.targets_added = touched.targets_added or key not in inv.targets
    inv.targets[key] = _same(inv.targets.get(key), parse_target(key, body))
    inv.target_errors.pop(key, None)
    touched.targets.add(key)


def _reread_associations(get: Any, inv: Inventory, group: str, touched: Touched) -> None:
    scope = f"providers/Microsoft.Management/managementGroups/{group}"
    items = _items(get(f"{scope}/providers/Microsoft.Authorization/privateLinkAssociations",
                       "privateLinkAssociations"))
    for name in [g for g in inv.associations if g.lower() == group.lower()]:
        del inv.associations[name]  # re-added last, as before
    inv.associations[group] = association_unit(group, items)
    touched.associations = True


def _reread_children(get: Any, inv: Inventory, kind: str, rids: list[ArmId], items: list[Any],
                     touched: Touched) -> None:
    if kind not in ("privateEndpoints", "privateDnsZones", "virtualHubs"):
        return   # no child lists: nothing read below it (parsing every item's id cost ~30 ms a PLS event at 100k)
    present = {parse_id(i).key: i for i in (_id(x) for x in items) if i}
    for rid in rids:
        raw = present.get(rid.key)
        if kind == "privateEndpoints":
            touched.zone_groups.add(rid.key)
            read = (rid.key, ZONE_GROUPS[1].lower())
            if raw is None:
                inv.zone_groups.pop(rid.key, None)
                _mark_read(inv, touched, read, False)  # as a full collection: nothing read below a deleted endpoint
            else:
                _mark_read(inv, touched, read, True)
                groups = _items(get(f"{raw.strip('/')}/privateDnsZoneGroups", "privateDnsZoneGroups"))
                parsed = parse_child("privateDnsZoneGroups", groups)
                inv.zone_groups[rid.key] = _same(inv.zone_groups.get(rid.key), parsed)
        elif kind == "virtualHubs":
            _reread_hub_children(get, inv, rid, raw, touched)
        elif kind == "privateDnsZones":
            touched.zone_children.add(rid.key)
            reads = {(rid.key, VNET_LINKS[1].lower()), (rid.key, CNAMES[1].lower())}
            if raw is None:
                inv.vnet_links.pop(rid.key, None)
                inv.cnames.pop(rid.key, None)
            for read in sorted(reads):
                _mark_read(inv, touched, read, raw is not None)
            if raw is not None:
                links = _items(get(f"{raw.strip('/')}/virtualNetworkLinks", "virtualNetworkLinks"))
                inv.vnet_links[rid.key] = _same(inv.vnet_links.get(rid.key), parse_child("virtualNetworkLinks", links))
                inv.cnames[rid.key] = _same(inv.cnames.get(rid.key), parse_child(
                    "CNAME", _items(get(f"{raw.strip('/')}/CNAME", "CNAME"))))


def _reread_hub_children(get: Any, inv: Inventory, rid: ArmId, raw: str | None, touched: Touched) -> None:
    """A hub's connections, routing intent and route tables read again (or dropped with the hub), each table copied
    before its first change: the copy of the inventory shares the inner tables with the one before."""
    touched.hub_children.add(rid.key)
    inv.hub_children = {c: dict(m) for c, m in inv.hub_children.items()}
    for child, type_ in HUB_CHILD_LISTS:
        table = inv.hub_children.setdefault(child, {})
        _mark_read(inv, touched, (rid.key, type_.lower()), raw is not None)
        if raw is None:
            table.pop(rid.key, None)
        else:
            items = _items(get(f"{raw.strip('/')}/{child}", child))
            table[rid.key] = _same(table.get(rid.key), parse_child(child, items))


def _mark_read(inv: Inventory, touched: Touched, read: tuple[str, str], present: bool) -> None:
    """Note ``read`` as done (or, with ``present`` False, as not done) in the inventory's read set, copying the set
    (shared with the inventory before this step) on its first change only: an event on an existing endpoint changes
    nothing there, and the copy, and the relink's coverage rebuilt from it, cost ~5 ms of ~35k entries at 100k
    resources. ``touched.read`` says the set changed (and was copied)."""
    if (read in inv.read) == present:
        return
    if not touched.read:
        inv.read = set(inv.read)
        touched.read = True
    if present:
        inv.read.add(read)
    else:
        inv.read.discard(read)


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


def keys_to_apply(moved: Iterable[str], reread: Iterable[str], present: Iterable[str]) -> set[str]:
    """:func:`affected_keys` from what the incremental evaluation says moved (``moved``: resource keys whose findings
    the re-judged units changed, gained or lost) and the resource keys of the current findings (``present``), so
    two whole evaluations are not compared (parsing every finding's key took ~0.1-0.2 s an event at 100k)."""
    keys = set(moved)
    roots = set(reread)
    keys |= roots
    if roots:
        below = tuple(r + "/" for r in roots)
        keys.update(k for k in present if k.startswith(below))
    return keys
