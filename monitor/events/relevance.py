"""Which ARM operations can change a check's outcome, and which resource to read again when one happens.

The watched types are the kinds table (:mod:`plmon.monitor.model.kinds`): every type plmon reads, and so every type
whose public access it judges. The table is data, not code, because it has two readers: the daemon's
worker (:func:`is_relevant`, :func:`resource_to_reread`), and ``plmon deploy event-filters``, which turns
the same rows into Event Grid advanced filters on ``data.operationName`` (:func:`operation_name_filters`).
One table means an operation the worker cares about is never filtered away upstream.

Matching is case-insensitive (ARM and Event Grid both compare operation names without case). Only
``write`` and ``delete`` count, plus the actions that approve or reject a private endpoint connection:
other actions (``listKeys``, ``subnets/join``) read or authorise but change nothing a check sees.
Failure and cancel events are kept: a failed network write can still leave a resource half-changed.

The worker re-reads the resource that the collection plan (:mod:`plmon.monitor.collect.plan`) lists, which is the
top-level resource: a subnet write re-reads its virtual network, a route write its route table, a
virtual network link its private DNS zone. A private endpoint connection, on any provider, re-reads the
resource that holds it (a storage account, a SQL server, a Private Link Service).
"""

from __future__ import annotations

from dataclasses import dataclass

from plmon.monitor.events.parse import ResourceEvent
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.kinds import KINDS

__all__ = [
    "ANY_PROVIDER_ACTIONS",
    "ANY_PROVIDER_SEGMENTS",
    "MAX_FILTER_VALUES",
    "WATCHED",
    "Watch",
    "is_relevant",
    "is_relevant_operation",
    "operation_name_contains_filters",
    "operation_name_filters",
    "resource_to_reread",
]

# Event Grid allows 25 advanced-filter values across all filters of one event subscription, and ANDs
# the filters together: so each chunk below becomes one filter of its own event subscription.
MAX_FILTER_VALUES = 25
_MAX_FILTER_VALUE_CHARS = 512


@dataclass(frozen=True, slots=True)
class Watch:
    """One watched resource type: writes and deletes of it, and of the listed child types, matter."""

    type: str
    # Child type paths below ``type`` ("subnets", "routes"); "*" means every child type.
    children: tuple[str, ...] = ()
    why: str = ""


# Resource type segments that mark a private endpoint connection on any provider; the resource above
# the segment holds the connection.
ANY_PROVIDER_SEGMENTS: tuple[str, ...] = ("privateEndpointConnections", "privateEndpointConnectionProxies")
# Action names (the segment before ``/action``) that approve or reject a connection on any provider.
ANY_PROVIDER_ACTIONS: tuple[str, ...] = ("privateEndpointConnectionsApproval",)

# Every kind of the table is watched: a type plmon reads (and judges) is never filtered away upstream.
WATCHED: tuple[Watch, ...] = tuple(Watch(k.type, k.children, k.why) for k in KINDS)

_SEGMENTS = frozenset(s.lower() for s in ANY_PROVIDER_SEGMENTS)
_ACTIONS = frozenset(a.lower() for a in ANY_PROVIDER_ACTIONS)
# lower-case type -> (depth of the type below its provider, lower-case children)
_BY_TYPE: dict[str, tuple[int, frozenset[str]]] = {
    w.type.lower(): (w.type.count("/"), frozenset(c.lower() for c in w.children)) for w in WATCHED
}


def is_relevant(event: ResourceEvent) -> bool:
    """Whether the event can change a check's outcome, so the worker should spend a re-read on it."""
    return is_relevant_operation(event.operation_name)


def is_relevant_operation(operation_name: str) -> bool:
    """The same decision from an ARM operation name alone (``Microsoft.Network/routeTables/write``)."""
    parts = [p for p in operation_name.strip().lower().split("/") if p]
    if len(parts) < 3:
        return False
    verb = parts[-1]
    if verb == "action":
        # ".../privateEndpointConnectionProxies/validate/action",
        # ".../privateEndpointConnectionsApproval/action"
        return any(p in _SEGMENTS or p in _ACTIONS for p in parts[1:-1])
    if verb not in ("write", "delete"):
        return False
    type_parts = parts[:-1]
    if any(p in _SEGMENTS for p in type_parts[1:]):
        return True
    return _watch_for(type_parts) is not None


def _watch_for(type_parts: list[str]) -> int | None:
    """The depth of the watched type that covers this lower-case type path, or None."""
    for cut in range(len(type_parts), 1, -1):
        hit = _BY_TYPE.get("/".join(type_parts[:cut]))
        if hit is None:
            continue
        depth, children = hit
        if cut == len(type_parts):
            return depth
        child = "/".join(type_parts[cut:])
        return depth if "*" in children or child in children else None
    return None


def resource_to_reread(event: ResourceEvent) -> ArmId:
    """The resource whose fresh state answers the event: the one the collection plan lists.

    Decided from the event's ``resourceUri`` rather than its operation name, since an approval action
    may name the connection while the id names the account. Anything below a watched type maps to that
    type's resource, even a child the table does not watch, so the answer never depends on relevance.
    Ids that do not parse, or whose type is not in the table, are re-read as they are.
    """
    rid = event.resource
    if rid.opaque or rid.provider is None or not rid.types:
        return rid
    types = [t.lower() for t in rid.types]
    for i, t in enumerate(types):
        if t in _SEGMENTS and i > 0:
            return _ancestor(rid, i)
    type_parts = [rid.provider.lower(), *types]
    for cut in range(len(type_parts), 1, -1):
        hit = _BY_TYPE.get("/".join(type_parts[:cut]))
        if hit is not None:
            return _ancestor(rid, hit[0])
    return rid


def _ancestor(rid: ArmId, depth: int) -> ArmId:
    """``rid`` cut to its first ``depth`` type segments (1 = the top-level resource)."""
    current = rid
    while len(current.types) > depth:
        parent = current.parent
        if parent is None or parent.opaque:
            return current
        current = parent
    return current


def operation_name_filters() -> list[list[str]]:
    """``StringBeginsWith`` values on ``data.operationName``, at most 25 per list.

    Each list is the values of one filter in its own event subscription (values within a filter are
    ORed; filters in one subscription are ANDed, and the 25-value limit is per subscription). Every
    watched type becomes the prefix ``<type>/``, which also covers its children; a prefix already
    covered by a shorter one is left out. Prefixes are coarser than :func:`is_relevant_operation` (they
    also pass actions such as ``subnets/join/action``): Event Grid trims the volume, the worker decides.
    Connections on providers outside the table need :func:`operation_name_contains_filters`.
    """
    prefixes: list[str] = []
    for value in sorted({w.type.lower() + "/": w.type + "/" for w in WATCHED}.items()):
        lower, spelled = value
        if not any(lower.startswith(p.lower()) for p in prefixes):
            prefixes.append(spelled)
    for p in prefixes:
        if len(p) > _MAX_FILTER_VALUE_CHARS:  # pragma: no cover - a table edit gone wrong
            raise ValueError(f"filter value longer than {_MAX_FILTER_VALUE_CHARS} characters: {p}")
    return [prefixes[i : i + MAX_FILTER_VALUES] for i in range(0, len(prefixes), MAX_FILTER_VALUES)]


def operation_name_contains_filters() -> list[list[str]]:
    """``StringContains`` values on ``data.operationName`` for connections on any provider.

    A prefix cannot say "any provider", so private endpoint connections outside the watched targets get
    their own event subscription with this one filter; ``/privateEndpointConnection`` also covers the
    ``...Proxies`` and ``...Approval`` spellings.
    """
    return [["/privateEndpointConnection"]]
