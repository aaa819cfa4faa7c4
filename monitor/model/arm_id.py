"""ARM resource ids, parsed once and compared case-insensitively.

ARM spells the same id in several ways (``resourcegroups`` and ``resourceGroups``, upper-case names in
event subjects) and real payloads carry typos (``/provders/``) or bare GUIDs. Every id that enters the
snapshot goes through :func:`parse_id`, so the rest of plmon compares ``ArmId.key`` and never strings.
An id that does not parse is kept as an opaque value: it still has a key and can still be a subject.

A build meets the same id strings again and again (at ~100k resources, 678k parses of 234k distinct
strings: every reference to a subnet, zone or NIC repeats its id), so inside :func:`interning` each
distinct string is parsed once and every holder shares the one immutable :class:`ArmId`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import FrozenInstanceError

__all__ = ["ArmId", "interning", "is_pls_alias", "normalise", "parse_id", "repair_provider_typo"]

_PROVDERS = re.compile(r"/provders/", re.IGNORECASE)
# (provider, type segments) as spelled -> lower-case type: as many entries as distinct spellings of a type chain.
_TYPE_KEYS: dict[tuple[str, tuple[str, ...]], str] = {}
_intern = sys.intern


class ArmId:
    """One ARM id: the original spelling for output, a lower-case key for lookups.

    Immutable, compared and hashed by value as the frozen dataclass it was. The original spelling is kept only
    when the parts cannot give it back: an id spelled ``/subscriptions/<s>/resourceGroups/<rg>/providers/<ns>/...``
    (nearly all of them) rebuilds its ``raw`` from the segments it holds anyway (interned, shared with every other
    id), so it keeps one string, its key, instead of two: at 100k resources the ids' strings were ~104 MB of the
    daemon's snapshot, and ``raw`` is read for output and follow-up reads, ``key`` on every lookup.
    """

    # In the dataclass's field order, which _FIELDS and the setters below follow.
    __slots__ = ("_raw", "key", "subscription", "resource_group", "provider", "types", "names",  # noqa: RUF023
                 "management_group", "opaque")

    _raw: str | None  # None: rebuilt from the segments (canonical spelling)
    key: str
    subscription: str | None
    resource_group: str | None
    provider: str | None
    # ("virtualNetworks", "subnets"): resource type segments below the provider, outermost first.
    types: tuple[str, ...]
    names: tuple[str, ...]
    # Scope above the provider when it is not a subscription (e.g. a management group path).
    management_group: str | None
    opaque: bool

    def __init__(self, raw: str, key: str, subscription: str | None = None, resource_group: str | None = None,
                 provider: str | None = None, types: tuple[str, ...] = (), names: tuple[str, ...] = (),
                 management_group: str | None = None, opaque: bool = False) -> None:
        _SET_RAW(self, raw)
        _SET_KEY(self, key)
        _SET_SUB(self, subscription)
        _SET_RG(self, resource_group)
        _SET_PROVIDER(self, provider)
        _SET_TYPES(self, types)
        _SET_NAMES(self, names)
        _SET_MG(self, management_group)
        _SET_OPAQUE(self, opaque)

    @property
    def raw(self) -> str:
        """The id as ARM spelled it (:func:`_canonical` written out for the one- and two-level ids nearly all are:
        evidence asks for ~20k spellings per route event)."""
        raw = self._raw
        if raw is not None:
            return raw
        types, names = self.types, self.names
        n = len(types)
        if n == 1:
            return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/" \
                   f"{self.provider}/{types[0]}/{names[0]}"
        if n == 2:
            return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/" \
                   f"{self.provider}/{types[0]}/{names[0]}/{types[1]}/{names[1]}"
        return _canonical(self.subscription, self.resource_group, self.provider, types, names)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[object, ...]:
        return (self.raw, self.key, self.subscription, self.resource_group, self.provider, self.types, self.names,
                self.management_group, self.opaque)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not ArmId:
            return NotImplemented
        # The key first: ids that differ nearly always differ there, and it is stored (raw may be rebuilt).
        return self.key == other.key and self._values() == other._values()

    def __hash__(self) -> int:
        # Equal ids have equal keys; the key's hash is cached by the string, where the dataclass hashed nine fields.
        return hash(self.key)

    def __repr__(self) -> str:
        return ("ArmId(raw={!r}, key={!r}, subscription={!r}, resource_group={!r}, provider={!r}, types={!r}, "
                "names={!r}, management_group={!r}, opaque={!r})").format(*self._values())

    def __reduce__(self) -> tuple[type[ArmId], tuple[object, ...]]:
        return ArmId, self._values()

    @property
    def name(self) -> str:
        if self.names:
            return self.names[-1]
        return self.raw.rstrip("/").rsplit("/", 1)[-1]

    @property
    def type(self) -> str | None:
        """``Microsoft.Network/virtualNetworks/subnets`` style type, or None for opaque ids."""
        if self.provider is None or not self.types:
            return None
        return "/".join((self.provider, *self.types))

    @property
    def type_key(self) -> str | None:
        """The lower-case type, from a table of the few type chains a tenant has: checks ask it of every id
        they meet (dns.zone-name-mismatch alone ~170 ms at 100k when it joined and lowered the string per call)."""
        if self.provider is None or not self.types:
            return None
        chain = (self.provider, self.types)
        key = _TYPE_KEYS.get(chain)
        if key is None:
            key = _TYPE_KEYS[chain] = "/".join(chain[:1] + chain[1]).lower()
        return key

    @property
    def parent(self) -> ArmId | None:
        """The id one level up in the type chain (subnet -> virtual network), or None."""
        if self.opaque or len(self.types) < 2:
            return None
        # Segments, not raw text: ARM ids may hold doubled slashes; a collection id (one name short of its
        # types, e.g. ".../rmpls/r/privateLinkResources") has the resource it belongs to as parent.
        cut = [p for p in self.raw.strip().split("/") if p]
        drop = 2 if len(self.names) == len(self.types) else 1
        return parse_id("/" + "/".join(cut[:-drop]))

    @property
    def is_pls_alias(self) -> bool:
        """True when this "id" is a Private Link Service alias (see :func:`is_pls_alias`)."""
        return self.opaque and is_pls_alias(self.raw)

    def child(self, child_type: str, name: str) -> ArmId:
        return parse_id(f"{self.raw.rstrip('/')}/{child_type}/{name}")

    def __str__(self) -> str:
        return self.raw


# The slots are set directly (the class refuses attribute assignment, being immutable); the fast parse below
# (234k distinct ids at 100k resources) skips __init__ too, about 1 us an id less. Same fields, same instance.
_SLOT_SETTERS = tuple(getattr(ArmId, f).__set__ for f in ArmId.__slots__)
_FIELDS = ("_raw", "key", "subscription", "resource_group", "provider", "types", "names", "management_group",
           "opaque")
assert tuple(ArmId.__slots__) == _FIELDS, "ArmId's slots changed: update _new_arm_id"
(_SET_RAW, _SET_KEY, _SET_SUB, _SET_RG, _SET_PROVIDER, _SET_TYPES, _SET_NAMES, _SET_MG,
 _SET_OPAQUE) = _SLOT_SETTERS


def _canonical(subscription: str | None, resource_group: str | None, provider: str | None, types: tuple[str, ...],
               names: tuple[str, ...]) -> str:
    """The id ``/subscriptions/<s>/resourceGroups/<rg>/providers/<ns>/<type>/<name>...`` from its segments."""
    if len(types) == 1:
        return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{provider}/{types[0]}/" \
               f"{names[0]}"
    if len(types) == 2:
        return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{provider}/{types[0]}/" \
               f"{names[0]}/{types[1]}/{names[1]}"
    chain = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{provider}/{chain}"


def _new_arm_id(raw: str | None, key: str, subscription: str, resource_group: str, provider: str,
                types: tuple[str, ...], names: tuple[str, ...]) -> ArmId:
    """``ArmId(raw, key, subscription, resource_group, provider, types, names)`` without ``__init__``; ``raw`` None
    when :func:`_canonical` gives it back."""
    out = object.__new__(ArmId)
    _SET_RAW(out, raw)
    _SET_KEY(out, key)
    _SET_SUB(out, subscription)
    _SET_RG(out, resource_group)
    _SET_PROVIDER(out, provider)
    _SET_TYPES(out, types)
    _SET_NAMES(out, names)
    _SET_MG(out, None)
    _SET_OPAQUE(out, False)
    return out


def normalise(raw: str) -> str:
    """The lookup key of an id: lower case, one leading slash, no trailing slash, no empty segments."""
    parts = [p for p in raw.strip().split("/") if p]
    if not parts:
        return ""
    return "/" + "/".join(parts).lower()


def is_pls_alias(value: object) -> bool:
    """True for a Private Link Service alias (``prefix.<guid>.<region>.azure.privatelinkservice``).

    An endpoint connected by alias carries the alias where ARM otherwise puts the target's resource id
    (``privateLinkServiceId``); the service is often in another tenant, so plmon can neither read it nor
    judge it missing, and it has no standard DNS zone. The one place that recognises the form, shared by
    the collection plan and every check that looks at targets (checks.md ``dns.no-zone-group``,
    ``connection.target-missing``). The suffix, not the cloud's region list, decides: sovereign clouds and
    new regions keep the ``.privatelinkservice`` ending.
    """
    if isinstance(value, ArmId):
        value = value.raw
    if not isinstance(value, str):
        return False
    text = value.strip().rstrip(".").lower()
    return "/" not in text and not any(c.isspace() for c in text) and text.count(".") >= 2 \
        and text.endswith(".privatelinkservice")


def repair_provider_typo(raw: str) -> str:
    """``raw`` with ``/provders/`` spelled ``/providers/``: for ids plmon must read or match, never for display.

    Microsoft's PrivateEndpointGet example (and so payloads modelled on it) spells an endpoint's NIC
    reference ``.../provders/Microsoft.Network/networkInterfaces/...``; the NIC itself has the real id.
    """
    return _PROVDERS.sub("/providers/", raw)


def _opaque(raw: str) -> ArmId:
    return ArmId(raw=raw, key=raw.strip().lower(), opaque=True)


# The table of the innermost open interning scope of this context (thread), or None outside any scope.
_table: ContextVar[dict[str, ArmId] | None] = ContextVar("plmon_arm_id_interning", default=None)


@contextmanager
def interning() -> Iterator[dict[str, ArmId]]:
    """While open, :func:`parse_id` parses each distinct string once and returns the same :class:`ArmId`.

    Scoped, not global, so nothing outlives what it serves: a build opens one (``build_snapshot``) and
    its table, keyed by the raw string, is dropped when the build ends; the ids the snapshot keeps live on
    in the snapshot only. A daemon therefore never grows a table: an event parses only what it re-read
    (``builder.relink`` keeps every other record, ids included), and a weak-value table would instead cost a weak
    reference per live id for as long as the snapshot lives, and lose the ids a build parses only for
    their key (sorting, lookups) between one use and the next. A nested scope shares the outer table.

    The scope is per context: a thread sees the table only when it runs in the opening thread's
    context (``contextvars.copy_context().run``); then it shares the same dict, which is safe because
    lookups and inserts are single dict operations (``get``/``setdefault``): two threads parsing the
    same new string at once both get the one instance that was stored first.
    """
    outer = _table.get()
    if outer is not None:
        yield outer
        return
    table: dict[str, ArmId] = {}
    token = _table.set(table)
    try:
        yield table
    finally:
        _table.reset(token)


def parse_id(raw: object) -> ArmId:
    """Parse an ARM id; never raises. Non-strings and unparseable strings become opaque ids.

    Inside :func:`interning`, the same string always gives the same (immutable) instance.
    """
    table = _table.get()
    if table is None:
        return _parse(raw)
    # The hit first (about three calls in four at 100k resources): only strings are ever stored, so a lookup of
    # anything else misses and is sorted out below; an unhashable value (a list, a dict) cannot be looked up.
    try:
        found: ArmId | None = table.get(raw)  # type: ignore[call-overload]
    except TypeError:
        return _parse(raw)
    if found is not None:
        return found
    if not isinstance(raw, str):
        return _parse(raw)
    return table.setdefault(raw, _parse(raw))


def adopt(raw: str, *slots: object) -> ArmId:
    """The id that ``parse_id(raw)`` gave in another process, its slots in ``ArmId.__slots__`` order: this scope's
    instance of ``raw`` when it has one, else one made of ``slots`` (and kept in the scope as ``parse_id`` keeps it).

    How a read-ahead helper's ids come back (:mod:`plmon.monitor.collect.ahead`): the same parse of the same string,
    so the values are equal, and taken from the scope's table the ids stay one instance per string as the
    collection's own are, at a dictionary lookup per id instead of a parse."""
    table = _table.get()
    if table is not None and (found := table.get(raw)) is not None:
        return found
    out = object.__new__(ArmId)
    for setter, value in zip(_SLOT_SETTERS, slots, strict=True):
        setter(out, value)
    return out if table is None else table.setdefault(raw, out)


def adopt_canonical(subscription: str, resource_group: str, provider: str, types: tuple[str, ...],
                    names: tuple[str, ...]) -> ArmId:
    """:func:`adopt` for an id spelled as :func:`_canonical` spells it (``raw`` not kept): given only its segments.

    Nearly every id is one, and its spelling and key are the two long strings of its values. Sent as segments
    instead (the scope, provider and type strings recur, so a pickle's memo sends each once per frame), a read-ahead
    helper's results at 100k resources pickle to 46 MB instead of 143, and the helper no longer spells ``raw`` out to
    pickle it; this spells it once, as ``raw`` does, to look it up."""
    raw = _canonical(subscription, resource_group, provider, types, names)
    table = _table.get()
    if table is not None and (found := table.get(raw)) is not None:
        return found
    # The segments as unpickled, not interned here: the pickle's memo already made them one object per frame, and
    # interning ~90k ids' segments cost ~0.1 s of the scan for no measurable memory.
    out = _new_arm_id(None, raw.lower(), subscription, resource_group, provider, types, names)
    return out if table is None else table.setdefault(raw, out)


def _parse(raw: object) -> ArmId:
    """:func:`_parse_general`, with a shortcut for the shape nearly every id has.

    ``/subscriptions/<s>/resourceGroups/<rg>/providers/<ns>/<type>/<name>[/<type>/<name>]...`` with no empty
    segment and no nested provider: lower-cased and split once as a whole, with none of the general walk's
    per-segment lists (at 100k resources the parse was a fifth of the scan). Anything else, and every
    detail of the result, is the general parse's (``tests/monitor/model/test_arm_id.py`` compares them).
    """
    if type(raw) is not str or not raw.startswith("/subscriptions/") or "//" in raw or raw[-1] == "/" \
            or raw[-1].isspace():
        return _parse_general(raw)
    parts = raw.split("/")
    # ["", "subscriptions", s, "resourceGroups", rg, "providers", ns, type, name, ...]: odd length, one provider
    # (any other "providers" segment shows as "/providers/" in the key, or ends it). One split, of the id as written.
    n = len(parts)
    if n < 9 or not n & 1:
        return _parse_general(raw)
    key = raw.lower()
    if key.count("/providers/") != 1 or key.endswith("/providers"):
        return _parse_general(raw)
    # Names interned too: a subnet's, a NIC configuration's or a network's name repeats across ids (at 100k
    # resources half of the 370k name strings the ids held were copies). The spelling is kept only when the
    # segments cannot give it back (ArmId.raw); an id already in lower case keeps one string for both.
    if parts[3] == "resourceGroups" and parts[5] == "providers":  # the spelling nearly every id has: no lower()
        kept: str | None = None
    elif parts[3].lower() != "resourcegroups" or parts[5].lower() != "providers":
        return _parse_general(raw)
    elif key == raw:
        kept = key = raw
    else:
        kept = raw
    # One- and two-level ids (nearly all) written out: no slices, no map (234k distinct ids at 100k resources).
    if n == 9:
        chain: tuple[str, ...] = (parts[7],)
        names: tuple[str, ...] = (_intern(parts[8]),)
    elif n == 11:
        chain, names = (parts[7], parts[9]), (_intern(parts[8]), _intern(parts[10]))
    else:
        chain, names = tuple(parts[7::2]), tuple(map(_intern, parts[8::2]))
    types = _TYPE_CHAINS.get(chain)
    return _new_arm_id(kept, key, _intern(parts[2]), _intern(parts[4]), _intern(parts[6]),
                       _shared_types(chain) if types is None else types, names)


# Type chains seen so far (("virtualNetworks", "subnets"), ...): a few dozen in a tenant, so every id of one type
# holds the same tuple instead of its own (at 100k resources 234k tuples, 13 MB). Bounded: ids are untrusted input.
_TYPE_CHAINS: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_TYPE_CHAINS = 4096


def _shared_types(types: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``tuple(map(sys.intern, types))``, the one tuple of that chain when it was seen before."""
    chain = tuple(types)
    shared = _TYPE_CHAINS.get(chain)
    if shared is not None:
        return shared
    shared = tuple(map(sys.intern, chain))
    if len(_TYPE_CHAINS) < _MAX_TYPE_CHAINS:
        _TYPE_CHAINS[shared] = shared
    return shared


def _parse_general(raw: object) -> ArmId:
    """Any id, any spelling: empty segments, bare scopes, management groups, nested providers, opaque values."""
    if not isinstance(raw, str):
        raw = "" if raw is None else str(raw)
    text = raw.strip()
    parts = [p for p in text.split("/") if p]
    if not text.startswith("/") or not parts:
        return _opaque(raw)
    lower = [p.lower() for p in parts]
    subscription = resource_group = management_group = None
    i = 0
    if lower[0] == "subscriptions":
        if len(parts) < 2:
            return _opaque(raw)
        subscription = parts[1]
        i = 2
        if i < len(parts) and lower[i] == "resourcegroups":
            if i + 1 >= len(parts):
                return _opaque(raw)
            resource_group = parts[i + 1]
            i += 2
    elif lower[0] == "providers" and len(parts) >= 4 and lower[1] == "microsoft.management" \
            and lower[2] == "managementgroups":
        management_group = parts[3]
        i = 4
    # The scope and type parts repeat across every id of a tenant (one subscription GUID in thousands of
    # ids, "Microsoft.Network" in nearly all): interned, each id holds a reference, not its own copy.
    # The key and names are mostly distinct per id, so interning them would cost more than it saves.
    key = "/" + "/".join(lower)  # normalise(raw): the same segments, lower-cased
    if subscription is not None:
        subscription = sys.intern(subscription)
    if resource_group is not None:
        resource_group = sys.intern(resource_group)
    if i == len(parts):
        # A bare scope: /subscriptions/x, /subscriptions/x/resourceGroups/y, a management group.
        if management_group is not None:
            return ArmId(raw, key, None, None, "Microsoft.Management", ("managementGroups",),
                         (management_group,), management_group)
        return ArmId(raw, key, subscription, resource_group)
    if lower[i] != "providers" or i + 1 >= len(parts):
        return _opaque(raw)
    provider = parts[i + 1]
    rest = parts[i + 2 :]
    # A nested extension resource (".../providers/Microsoft.Authorization/x/y") restarts the chain;
    # we keep the innermost provider since that is what the id names.
    rest_lower = [p.lower() for p in rest]
    while "providers" in rest_lower:
        j = rest_lower.index("providers")
        if j + 1 >= len(rest):
            return _opaque(raw)
        provider = rest[j + 1]
        rest = rest[j + 2 :]
        rest_lower = rest_lower[j + 2 :]
    if not rest:
        return _opaque(raw)
    types = _shared_types(rest[0::2])
    names = tuple(map(sys.intern, rest[1::2]))  # shared, as the fast parse shares them
    if len(names) < len(types) - 1:
        return _opaque(raw)
    return ArmId(raw, key, subscription, resource_group, sys.intern(provider), types, names, management_group)
