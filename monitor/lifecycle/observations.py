"""Connection observations: when plmon first saw each connection in each status.

ARM does not say when a connection became Pending, so plmon remembers it. Each collection records the
(subject, status) pairs it sees, keeping the first time, and hands the pure checks those times through
``Snapshot.observations``. The subject is the one ``connection.pending`` reads: the provider-side
connection when plmon can see it, else the private endpoint (``plmon.checks.links``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import MappingProxyType

from plmon.checks.links import connection_views
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.state.store import StateStore

__all__ = ["connection_statuses", "observer"]


def connection_statuses(snapshot: Snapshot) -> set[tuple[str, str]]:
    """(subject key, lower-case status) of every connection in the snapshot."""
    out = set()
    for view in connection_views(snapshot):
        if not view.status_key:
            continue
        subject = view.provider.id if view.provider is not None else view.endpoint_id
        out.add((subject.key, view.status_key))
    return out


def observer(store: StateStore, previous: Snapshot | None = None) -> Callable[[Snapshot], Snapshot]:
    """The ``observations`` step of :func:`plmon.monitor.scan.run_scan`: record this snapshot's statuses,
    then attach the first time each was ever seen (this snapshot's time for a new one).

    With the ``previous`` snapshot (the daemon's, after an event), a snapshot that shows no status the
    previous one did not already carry takes its first-seen times from it: they are the store's, which
    only ever keeps the first time, so the store is not read and rewritten in full for each event. Only
    ``last_seen`` (used to prune observations) is then not advanced; the next full collection does it.
    """
    def attach(snapshot: Snapshot) -> Snapshot:
        seen = connection_statuses(snapshot)
        if previous is not None and seen <= previous.observations.keys():
            return replace(snapshot, observations=MappingProxyType({k: previous.observations[k] for k in seen}))
        store.observe(seen, snapshot.taken_at)
        known = store.observations(seen)
        return replace(snapshot, observations=MappingProxyType(known))
    return attach
