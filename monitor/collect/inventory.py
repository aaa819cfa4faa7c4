"""What a collection keeps: typed read units, never the raw JSON they were parsed from.

A collection is a set of read units: one list of one kind in one subscription (or one management group's
associations), one endpoint's zone groups, one zone's network links or CNAME records, one NIC, target or
firewall policy read by id. Each unit's body is parsed as soon as it arrives (:mod:`plmon.monitor.collect.builder`
holds the one parser) and dropped: what stays is the unit's typed records, the gaps its parse recorded, and the
few raw strings the plan's follow-up reads need (:attr:`ListUnit.refs`). The builder's link step turns the units
into a :class:`~plmon.monitor.model.snapshot.Snapshot`, and the daemon replaces only the units an event re-read.

:class:`RawInventory` is the older all-raw shape, kept as an input for tests and tools that assemble ARM JSON
by hand: the builder parses it into units the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plmon.monitor.model.snapshot import CoverageGap, Target

__all__ = [
    "BY_ID", "AssociationUnit", "Child", "CollectionStats", "Inventory", "ListUnit", "Parsed", "Prebuilt",
    "RawInventory", "ReadError", "TargetUnit", "Touched", "proves_absence", "scope_of",
]


class ReadError(Exception):
    """A read ARM refused or that failed: the status and ARM error code become a coverage gap."""

    def __init__(self, status: int | None, code: str, message: str = "") -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def proves_absence(err: ReadError) -> bool:
    """Whether a failed read of a resource id shows that the resource does not exist.

    Only a 404 does, and not ``SubscriptionNotFound``: ARM answers that for a subscription the identity's
    tenant does not know, such as a provider's subscription in another tenant, where the resource may well
    exist. Anything else (403, a timeout) leaves the resource unknown: a coverage gap, never a finding.
    """
    return err.status == 404 and err.code.lower() != "subscriptionnotfound"


@dataclass
class CollectionStats:
    requests: int = 0
    failures: int = 0
    workers: int = 0  # concurrent reads the collection used (collect() decides it)
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class RawInventory:
    """ARM JSON as read, all of it: an input shape for hand-made inventories (the builder parses it into units)."""

    manifest: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    management_groups: list[dict[str, Any]] = field(default_factory=list)
    # (management group name, association body)
    associations: list[tuple[str, Any]] = field(default_factory=list)
    # kind -> items from every subscription's list
    lists: dict[str, list[Any]] = field(default_factory=dict)
    zone_groups: dict[str, list[Any]] = field(default_factory=dict)   # endpoint key -> groups
    vnet_links: dict[str, list[Any]] = field(default_factory=dict)    # zone key -> links
    cnames: dict[str, list[Any]] = field(default_factory=dict)        # zone key -> CNAME sets
    # hub child kind (hubVirtualNetworkConnections, routingIntent, hubRouteTables) -> hub key -> items
    hub_children: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)             # target key -> body
    target_errors: dict[str, tuple[str, ReadError]] = field(default_factory=dict)  # key -> (raw id, err)
    gaps: list[CoverageGap] = field(default_factory=list)
    read: set[tuple[str, str]] = field(default_factory=set)           # (scope key, type key) read
    scoped: bool = False  # only the subscriptions asked for were read (see Coverage.scoped)
    stats: CollectionStats = field(default_factory=CollectionStats)


Order = tuple[int, str]

# The name of a list kind's unit read by id (a NIC, a firewall policy): this prefix and the resource's key.
BY_ID = "id:"


@dataclass(frozen=True, slots=True)
class Parsed:
    """One list item parsed: its place in id order, its record (None if it is no resource) and its gaps.

    ``late`` marks an endpoint whose parse failed after the point where its zone groups are read (its
    connections): a zone-group failure is then the one reported, as when both were parsed in one call.
    ``scope`` is the item's id as a gap names it, for failures of its child units found at link time: set only when
    there is no record, whose id gives it otherwise (:func:`scope_of`), so the inventory does not keep a second
    string per endpoint and zone (the id rebuilds its spelling from its segments).
    """

    order: Order
    record: Any
    gaps: tuple[CoverageGap, ...] = ()
    late: bool = False
    scope: str = ""


def scope_of(parsed: Parsed) -> str:
    """The id a gap of ``parsed``'s child units names: its own ``scope``, else its record's id as written."""
    if parsed.scope or parsed.record is None:
        return parsed.scope
    raw: str = parsed.record.id.raw
    return raw[:500]


@dataclass(frozen=True, slots=True)
class ListUnit:
    """One list read (a kind in a subscription) or one resource of a list kind read by id.

    ``refs`` are the raw strings the plan's follow-up reads need from these items (per kind, see
    :func:`plmon.monitor.collect.builder.list_refs`); ``keys`` the normalised ids the unit listed (of the kinds
    the follow-ups compare against); ``named`` the keys its items name for a follow-up (an endpoint's targets, a
    NIC's endpoint) and ``needs_nic`` the endpoints whose only IP is on their NIC: precomputed per unit, so a
    re-read joins a hundred sets instead of walking every endpoint of the tenant.
    """

    kind: str
    items: tuple[Parsed, ...]
    refs: tuple[Any, ...] = ()
    keys: frozenset[str] = frozenset()
    named: frozenset[str] = frozenset()
    needs_nic: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class AssociationUnit:
    """One management group's association list: the parsed items and, per item, (its id, its privateLink)."""

    group: str
    items: tuple[Parsed, ...]
    refs: tuple[tuple[str | None, str | None], ...] = ()
    named: frozenset[str] = frozenset()  # keys of the listed-type private links it names by id


@dataclass(frozen=True, slots=True)
class Child:
    """One child list read per parent (zone groups, network links, CNAMEs): its typed value or why it failed.

    A failure makes the parent a malformed resource at link time, as when parent and children were parsed in
    one call.
    """

    value: Any
    error: str | None = None


class Prebuilt(list[Any]):
    """The ``value`` of a list body whose unit a typed decoder (:mod:`plmon.monitor.collect.typed`) built already:
    the plan keeps :attr:`unit` (a :class:`ListUnit`, or a :class:`Child` for a child list) as it is instead of
    parsing items (the list itself is empty: there are no raw items to parse). A target read by id comes as the whole
    body instead, its unit a :class:`TargetUnit`. Here, beside the units, so the plan need not import the decoder (and
    msgspec) to recognise one."""

    def __init__(self, unit: ListUnit | Child | TargetUnit) -> None:
        super().__init__()
        self.unit = unit


@dataclass(frozen=True, slots=True)
class TargetUnit:
    """One target read by id: its record (None when the body is no resource) and the gaps its parse recorded."""

    target: Target | None
    gaps: tuple[CoverageGap, ...] = ()


@dataclass
class Touched:
    """What a re-read replaced in an inventory: what the link step must re-derive (and nothing else)."""

    list_keys: dict[str, set[str]] = field(default_factory=dict)  # list kind -> keys of items replaced or gone
    units: dict[str, set[str]] = field(default_factory=dict)      # list kind -> names of the units replaced
    zone_groups: set[str] = field(default_factory=set)    # endpoint keys whose zone groups were re-read
    zone_children: set[str] = field(default_factory=set)  # zone keys whose links and CNAMEs were re-read
    hub_children: set[str] = field(default_factory=set)   # hub keys whose child lists were re-read
    targets: set[str] = field(default_factory=set)        # target keys re-read, gone or no longer named
    associations: bool = False
    read: bool = False                                    # Inventory.read changed
    # A target key was added to Inventory.targets or .target_errors (read anew, or moved between them): the link's
    # order of the targets may differ, so relink derives them all again (else only the keys in ``targets``).
    targets_added: bool = False


@dataclass
class Inventory:
    """A collection's typed read units (see the module docstring); no raw JSON beyond the tenant's small lists."""

    manifest: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    management_groups: list[dict[str, Any]] = field(default_factory=list)
    # kind -> unit name (a subscription id in lower case, or "id:<key>" for a read by id) -> unit, in read order
    lists: dict[str, dict[str, ListUnit]] = field(default_factory=dict)
    associations: dict[str, AssociationUnit] = field(default_factory=dict)  # group name as read -> unit
    zone_groups: dict[str, Child] = field(default_factory=dict)   # endpoint key -> groups
    vnet_links: dict[str, Child] = field(default_factory=dict)    # zone key -> links
    cnames: dict[str, Child] = field(default_factory=dict)        # zone key -> CNAME records
    # hub child kind (hubVirtualNetworkConnections, routingIntent, hubRouteTables) -> hub key -> parsed list
    hub_children: dict[str, dict[str, Child]] = field(default_factory=dict)
    targets: dict[str, TargetUnit] = field(default_factory=dict)  # target key -> parsed body
    target_errors: dict[str, tuple[str, ReadError]] = field(default_factory=dict)  # key -> (raw id, err)
    gaps: list[CoverageGap] = field(default_factory=list)         # failed reads, sorted by scope once collected
    read: set[tuple[str, str]] = field(default_factory=set)       # (scope key, type key) read
    scoped: bool = False
    stats: CollectionStats = field(default_factory=CollectionStats)

    def units(self, kind: str) -> list[ListUnit]:
        """The units of one list kind, in read order."""
        return list(self.lists.get(kind, {}).values())

    def count(self, kind: str) -> int:
        """How many items the units of ``kind`` listed (malformed ones included), as a raw list's length."""
        return sum(len(u.items) for u in self.lists.get(kind, {}).values())
