"""Both ends of a private endpoint connection, paired once for the connection and rmpl checks.

A connection is visible from the consumer (the endpoint's connection entry) and, when plmon can read
the target, from the provider (its ``privateEndpointConnections`` entry). The provider side is the
authority for the status (the consumer side mirrors it, sometimes late), and is the subject of
findings the provider must act on. Pairing here once keeps "one defect, one finding".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from plmon.checks.units import Index, lookup, plain
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.snapshot import ConsumerConnection, PrivateEndpoint, ProviderConnection, Snapshot

__all__ = ["ENDPOINTS_BY_TARGET", "VIEW_READS", "ConnectionView", "connection_views", "plain_views", "views_of"]

# The snapshot collections connection_views reads (the endpoints, and every provider side: the provider index is
# resolved from these): a check that pairs connections declares them in ``@check(reads=...)``.
VIEW_READS = ("private_endpoints", "private_link_services", "rmpls", "targets")


@dataclass(frozen=True, slots=True)
class ConnectionView:
    endpoint_id: ArmId
    endpoint: PrivateEndpoint | None
    consumer: ConsumerConnection | None
    provider: ProviderConnection | None
    # Derived from the two entries when the view is made (both are immutable): the checks ask every view for them
    # again and again (~150k times each at 100k resources), and as properties each ask cost a call.
    status_key: str = field(init=False, repr=False, compare=False)   # lower(status), "" when there is none
    target_id: ArmId | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _derive(self, self.consumer, self.provider)

    @property
    def status(self) -> str | None:
        if self.provider is not None and self.provider.status:
            return self.provider.status
        return self.consumer.status if self.consumer else None

    @property
    def seen_from(self) -> str:
        if self.consumer and self.provider:
            return "both"
        return "consumer" if self.consumer else "provider"

    def evidence(self) -> dict[str, object]:
        ev: dict[str, object] = {"status": self.status, "seen_from": self.seen_from,
                                 "private_endpoint": self.endpoint_id.raw,
                                 "target": self.target_id.raw if self.target_id else None}
        if self.consumer is not None:
            ev["consumer_status"] = self.consumer.status
            ev["connection_type"] = "manual" if self.consumer.manual else "automatic"
            ev["group_ids"] = list(self.consumer.group_ids)
            if self.consumer.request_message:
                ev["request_message"] = self.consumer.request_message
        if self.provider is not None:
            ev["provider_connection"] = self.provider.id.raw
            ev["provider_status"] = self.provider.status
            if self.provider.description:
                ev["provider_description"] = self.provider.description
        return ev


_SET = {name: getattr(ConnectionView, name).__set__ for name in ConnectionView.__slots__}
_SET_ENDPOINT_ID, _SET_ENDPOINT, _SET_CONSUMER, _SET_PROVIDER = (
    _SET["endpoint_id"], _SET["endpoint"], _SET["consumer"], _SET["provider"])
_SET_STATUS_KEY, _SET_TARGET_ID = _SET["status_key"], _SET["target_id"]
_new = object.__new__


def _derive(view: ConnectionView, consumer: ConsumerConnection | None, provider: ProviderConnection | None) -> None:
    """Fill the view's derived slots: the status (the provider's when it has one, as ``status``) lower-cased, and
    the target (the consumer entry's, else the provider entry's owner)."""
    if provider is not None and provider.status:
        status: str | None = provider.status
    else:
        status = consumer.status if consumer is not None else None
    _SET_STATUS_KEY(view, status.lower() if isinstance(status, str) else "")
    if consumer is not None and consumer.target_id is not None:
        _SET_TARGET_ID(view, consumer.target_id)
    else:
        _SET_TARGET_ID(view, provider.owner_id if provider is not None else None)


def _view(endpoint_id: ArmId, endpoint: PrivateEndpoint | None, consumer: ConsumerConnection | None,
          provider: ProviderConnection | None) -> ConnectionView:
    """``ConnectionView(endpoint_id, endpoint, consumer, provider)``, its slots filled directly: the frozen
    ``__init__`` stores each field through ``object.__setattr__``, and a plain evaluation makes a view per
    connection (35k at 100k resources)."""
    view = _new(ConnectionView)
    _SET_ENDPOINT_ID(view, endpoint_id)
    _SET_ENDPOINT(view, endpoint)
    _SET_CONSUMER(view, consumer)
    _SET_PROVIDER(view, provider)
    _derive(view, consumer, provider)
    return view


# The last snapshot's views: one evaluation runs ~10 checks that each pair every connection again
# (~14 ms of a daemon event on a 1k-endpoint tenant). The snapshot is immutable, so the pairing is too.
_last: tuple[Snapshot, tuple[ConnectionView, ...]] | None = None


def connection_views(snap: Snapshot) -> Iterator[ConnectionView]:
    """Every connection once: consumer entries paired with their provider entry, then the provider
    entries whose endpoint plmon cannot see (another subscription or tenant)."""
    global _last
    last = _last
    if last is None or last[0] is not snap:
        last = _last = (snap, tuple(_pair(snap)))
    return iter(last[1])


def _alias(conn: ConsumerConnection) -> str | None:
    """The Private Link Service alias the connection names its target by, if it does (lower case)."""
    return conn.target_id.raw.strip().lower() if conn.target_id is not None and conn.target_id.is_pls_alias else None


def _provider_entry(conn: ConsumerConnection, provider_side: Iterable[ProviderConnection],
                    alias_owner: str | None) -> ProviderConnection | None:
    """The provider-side entry of a consumer connection: the one whose owner is its target (or, for a target named
    by alias, the Private Link Service with that alias, ``alias_owner``, when the snapshot holds it)."""
    owner = alias_owner or (conn.target_id.key if conn.target_id is not None else None)
    if owner is None:
        return None
    return next((pc for pc in provider_side if pc.owner_id.key == owner), None)


def _pair(snap: Snapshot) -> Iterator[ConnectionView]:
    paired: set[str] = set()
    # An endpoint connected by alias names its Private Link Service by that alias: when the service is in
    # the snapshot, its side of the connection is the same connection, not a second one.
    by_alias = {pls.alias.strip().lower(): pls.key for pls in snap.private_link_services.values() if pls.alias}
    for pe in snap.private_endpoints.values():
        provider_side = snap.provider_connections_by_endpoint.get(pe.key, ())
        for conn in pe.connections:
            alias = _alias(conn)
            match = _provider_entry(conn, provider_side, by_alias.get(alias) if alias else None)
            if match is not None:
                paired.add(match.id.key)
            yield _view(pe.id, pe, conn, match)
    for owners in (snap.private_link_services, snap.rmpls, snap.targets):
        for holder in owners.values():
            for pc in holder.connections:
                if pc.id.key in paired or pc.endpoint_id is None:
                    continue
                endpoint = snap.private_endpoints.get(pc.endpoint_id.key)
                yield _view(pc.endpoint_id, endpoint, None, pc)


# Per endpoint, for checks that judge one endpoint or one target at a time (plmon.checks.units): the same views as
# connection_views, found through kept indexes instead of a pass over every connection of the tenant.
PLS_BY_ALIAS = Index("links.pls_by_alias", "private_link_services",
                     lambda snap, pls: (pls.alias.strip().lower(),) if pls.alias else ())
ENDPOINTS_BY_TARGET = Index("links.endpoints_by_target", "private_endpoints",
                            lambda snap, pe: (c.target_id.key for c in pe.connections if c.target_id is not None))


# A plain evaluation's views per endpoint (the last snapshot's): eight connection, DNS and public-access checks ask
# for every endpoint's views, and pairing them each time was most of those checks' time at 100k resources.
# Whether the mapping is plain_views' whole pass (in its order) or only the keys views_of was asked for: a caller
# outside the checks (the daemon's observations of one event's endpoints) must not pay for pairing the tenant.
_per_key: tuple[Snapshot | None, dict[str, list[ConnectionView]], bool] = (None, {}, False)


def views_of(snap: Snapshot, key: str) -> list[ConnectionView]:
    """The views connection_views yields for the endpoint ``key`` (its endpoint_id), in their relative order: its
    own connection entries paired with their provider entry, then the provider entries naming it that none paired
    (an endpoint plmon cannot see has only those). Kept per snapshot in a plain evaluation only: under the
    daemon's units each call must make (and record) its reads."""
    if not plain():
        return _views_of(snap, key)
    global _per_key
    if _per_key[0] is not snap:
        _per_key = (snap, {}, False)
    every = _per_key[1]
    views = every.get(key)
    if views is None:
        views = every[key] = _views_of(snap, key)
    return list(views)


def plain_views(snap: Snapshot) -> dict[str, list[ConnectionView]]:
    """A plain evaluation's :func:`views_of` of every subject of the connection checks (each endpoint, then each
    endpoint only provider entries name), in that order, paired in one pass when first asked (the last snapshot's;
    not to be changed: :func:`views_of` hands out copies). At 100k resources one call per endpoint, each looking
    the endpoint up again, cost about as much as the checks that read the views."""
    global _per_key
    if _per_key[0] is not snap or not _per_key[2]:
        _per_key = (snap, _pair_all(snap), True)
    return _per_key[1]


def _pair_all(snap: Snapshot) -> dict[str, list[ConnectionView]]:
    """:func:`_views_of` of every key of the endpoints and of the provider entries by endpoint."""
    out: dict[str, list[ConnectionView]] = {}
    by_endpoint = snap.provider_connections_by_endpoint
    view = _view
    for key, pe in snap.private_endpoints.items():
        side = by_endpoint.get(key)
        if not side:   # no provider entry: nothing to pair, each connection entry is one view
            out[key] = [view(pe.id, pe, conn, None) for conn in pe.connections]
            continue
        conns = pe.connections
        if len(conns) == 1 and len(side) == 1:   # most endpoints: one entry each side, naming each other
            conn, pc = conns[0], side[0]
            target = conn.target_id
            if target is not None and not target.is_pls_alias and pc.owner_id.key == target.key:
                out[key] = [view(pe.id, pe, conn, pc)]
                continue
        out[key] = _views_of(snap, key, pe)
    for key in by_endpoint:
        if key not in out:
            out[key] = _views_of(snap, key)
    return out


_UNSET: Any = object()


def _views_of(snap: Snapshot, key: str, pe: PrivateEndpoint | None = _UNSET) -> list[ConnectionView]:
    if pe is _UNSET:
        pe = snap.private_endpoints.get(key)
    provider_side = snap.provider_connections_by_endpoint.get(key, ())
    out: list[ConnectionView] = []
    paired: set[str] = set()
    for conn in pe.connections if pe is not None else ():
        alias = _alias(conn)
        services = lookup(snap, PLS_BY_ALIAS, alias) if alias else ()
        match = _provider_entry(conn, provider_side, services[-1] if services else None)
        if match is not None:
            paired.add(match.id.key)
        out.append(_view(pe.id, pe, conn, match))  # type: ignore[union-attr]
    for pc in provider_side:
        if pc.id.key in paired or pc.endpoint_id is None:
            continue
        out.append(_view(pc.endpoint_id, pe, None, pc))
    return out
