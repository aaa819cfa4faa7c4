"""Connection observations: when plmon first saw each connection in each status.

ARM does not say when a connection became Pending, so plmon remembers it. Each collection records the
(subject, status) pairs it sees, keeping the first time, and hands the pure checks those times through
``Snapshot.observations``. The subject is the one ``connection.pending`` reads: the provider-side
connection when plmon can see it, else the private endpoint (``plmon.checks.links``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from plmon.checks.links import ConnectionView, connection_views, views_of
from plmon.monitor.model.snapshot import PrivateLinkService, Snapshot
from plmon.monitor.state.store import StateStore

__all__ = ["connection_statuses", "observer"]


def connection_statuses(snapshot: Snapshot) -> set[tuple[str, str]]:
    """(subject key, lower-case status) of every connection in the snapshot."""
    return _statuses(connection_views(snapshot))


def _statuses(views: Iterable[ConnectionView]) -> set[tuple[str, str]]:
    out = set()
    for view in views:
        if not view.status_key:
            continue
        subject = view.provider.id if view.provider is not None else view.endpoint_id
        out.add((subject.key, view.status_key))
    return out


_ABSENT = object()
Hint = Mapping[str, frozenset[str] | None]


def _moved(old: Mapping[str, object], new: Mapping[str, object], keys: frozenset[str] | None = None) -> set[str]:
    """Keys whose value is not the very same object (or an equal one) in both mappings; only among ``keys`` when
    given (the only keys that may differ: walking a 35k-record mapping cost ~40 ms an event at 100k)."""
    if old is new:
        return set()
    if keys is not None:
        return {k for k in keys if (v := new.get(k, _ABSENT)) is not (w := old.get(k, _ABSENT))
                and (v is _ABSENT or w is _ABSENT or v != w)}
    out = {k for k in old.keys() - new.keys()}
    for k, v in new.items():
        before = old.get(k)
        if before is not v and before != v:
            out.add(k)
    return out


def _alias_of(pls: PrivateLinkService) -> str | None:
    return pls.alias.strip().lower() if pls.alias else None


def _endpoints_moved(old: Snapshot, new: Snapshot, hint: Hint | None = None) -> set[str] | None:
    """The endpoint keys whose connection views may differ between two snapshots of one daemon (an event's re-read
    leaves untouched records the same objects), or None when any may (a Private Link Service changed: endpoints
    connected by its alias pair with it). ``hint``: the keys the relink from ``old`` to ``new`` may have changed
    per collection (the builder's ``Links.changed``)."""
    hint = hint or {}
    for k in _moved(old.private_link_services, new.private_link_services, hint.get("private_link_services")):
        # A service keeping its alias pairs the same alias connections with the same key: its own connections are
        # its endpoints' provider entries, which the index by endpoint below says moved.
        was, now = old.private_link_services.get(k), new.private_link_services.get(k)
        if was is None or now is None or _alias_of(was) != _alias_of(now):
            return None
    return _moved(old.private_endpoints, new.private_endpoints, hint.get("private_endpoints")) | _moved(
        old.provider_connections_by_endpoint, new.provider_connections_by_endpoint,
        hint.get("provider_connections_by_endpoint"))


def observer(store: StateStore, previous: Snapshot | None = None, hint: Hint | None = None, *,
             record: bool = True) -> Callable[[Snapshot], Snapshot]:
    """The ``observations`` step of :func:`plmon.monitor.scan.run_scan`: record this snapshot's statuses,
    then attach the first time each was ever seen (this snapshot's time for a new one).

    With the ``previous`` snapshot (the daemon's, after an event), a snapshot that shows no status the
    previous one did not already carry takes its first-seen times from it: they are the store's, which
    only ever keeps the first time, so the store is not read and rewritten in full for each event. Only
    ``last_seen`` (used to prune observations) is then not advanced; the next full collection does it.
    ``hint``: see :func:`_endpoints_moved`.
    ``record``: False for a replica adopting another process's collection: its maker recorded these statuses, so
    the replica only reads them (K replicas rewriting the same rows cost a request or three per endpoint each,
    24 s of a cold replica's start at 600 endpoints). A status not yet in the store (the maker has not recorded
    it yet) gets this snapshot's time, as recording it would have given.
    """
    def attach(snapshot: Snapshot) -> Snapshot:
        moved = _endpoints_moved(previous, snapshot, hint) if previous is not None else None
        if previous is not None and moved is not None:
            # Only the endpoints the event moved are looked at (every connection of a 100k-resource tenant took
            # ~0.2 s an event): a status subject is one endpoint's (its provider entry names that endpoint).
            was = {pair for k in moved for pair in _statuses(views_of(previous, k))}
            gone = {subject for subject, _ in was}
            fresh = {pair for k in moved for pair in _statuses(views_of(snapshot, k))}
            if fresh == was and fresh <= previous.observations.keys():
                # no status seen or lost: the very same mapping (copying 35k observations took ~50 ms an event,
                # and a new mapping is one more collection for the evaluation's diff to compare)
                return replace(snapshot, observations=previous.observations)
            if fresh <= previous.observations.keys():
                kept = {k: t for k, t in previous.observations.items() if k[0] not in gone}
                kept.update((k, previous.observations[k]) for k in fresh)
                return replace(snapshot, observations=MappingProxyType(kept))
        seen = connection_statuses(snapshot)
        if previous is not None and seen <= previous.observations.keys():
            return replace(snapshot, observations=MappingProxyType({k: previous.observations[k] for k in seen}))
        if record:
            store.observe(seen, snapshot.taken_at)
            known = store.observations(seen)
        else:  # what recording and then reading would have returned: first_seen is the earliest time ever seen
            stored = store.observations(seen)
            known = {k: min(stored[k], snapshot.taken_at) if k in stored else snapshot.taken_at for k in seen}
        return replace(snapshot, observations=MappingProxyType(known))
    return attach
