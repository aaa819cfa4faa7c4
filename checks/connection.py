"""Connection checks: pending, rejected, disconnected, actions required, target missing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.links import VIEW_READS, ConnectionView, plain_views, views_of
from plmon.checks.registry import CIS_AZURE, NIST_800_53, Evidences, Param, check
from plmon.checks.remedy import alternative, az, lines, note
from plmon.checks.units import Index, each, each_item, lookup, plain
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.kinds import listed_providers
from plmon.monitor.model.snapshot import Snapshot, TargetState, lower

PE_DOC = "https://learn.microsoft.com/azure/private-link/manage-private-endpoint"
PE_OVERVIEW = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview"
TROUBLESHOOT = "https://learn.microsoft.com/azure/private-link/troubleshoot-private-endpoint-connectivity"

# Providers that per-subscription lists return: absent from a list that was read means absent (kinds table).
LISTED_PROVIDER_TYPES = tuple(listed_providers())


# The subjects of the connection checks: every endpoint, and every endpoint only provider entries name (one plmon
# cannot see), each judged on its own views (plmon.checks.links.views_of).
SUBJECTS = ("private_endpoints", "provider_connections_by_endpoint")


def _views(snap: Snapshot) -> Iterator[ConnectionView]:
    """connection_views, grouped by endpoint: each endpoint's views while it is the subject being judged."""
    if plain():
        for _key, views in _plain(snap).by_status.get("pending", ()):
            yield from views
        return
    for key, _ in each_item(snap, *SUBJECTS):
        yield from views_of(snap, key)


def _has_actions(view: ConnectionView) -> bool:
    """Whether either entry names actions other than "None" (unrolled: asked of every view of a plain evaluation)."""
    consumer, provider = view.consumer, view.provider
    if consumer is not None and (value := consumer.actions_required) and lower(value) != "none":
        return True
    return provider is not None and bool(value := provider.actions_required) and lower(value) != "none"


class _Subjects:
    """A plain evaluation's subjects (``plmon scan``: nothing recorded, no focus) sorted once for the five checks
    here: each subject's views by status, in subject and view order, and the subjects with actions required. Each
    check then visits only the subjects it can report on, instead of every endpoint's views (most are Approved)."""

    __slots__ = ("actions", "by_status")

    def __init__(self, snap: Snapshot) -> None:
        self.by_status: dict[str, list[tuple[str, list[ConnectionView]]]] = {}
        self.actions: list[str] = []
        by_status = self.by_status
        for key, views in plain_views(snap).items():   # each_item(snap, *SUBJECTS)'s keys, in its order
            if len(views) == 1:   # most endpoints have one connection
                v = views[0]
                got = by_status.get(status := v.status_key)
                if got is None:
                    by_status[status] = [(key, [v])]
                else:
                    got.append((key, [v]))
                if _has_actions(v):
                    self.actions.append(key)
                continue
            mine: dict[str, list[ConnectionView]] = {}
            for v in views:
                got_views = mine.get(status := v.status_key)
                if got_views is None:
                    mine[status] = [v]
                else:
                    got_views.append(v)
            for status, vs in mine.items():
                by_status.setdefault(status, []).append((key, vs))
            if any(_has_actions(v) for v in views):
                self.actions.append(key)


_last: tuple[Snapshot | None, _Subjects | None] = (None, None)


def _plain(snap: Snapshot) -> _Subjects:
    global _last
    found = _last[1]
    if _last[0] is not snap or found is None:
        found = _Subjects(snap)
        _last = (snap, found)
    return found


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 1)


@check(
    id="connection.pending", title="Private endpoint connection awaiting approval",
    severity=Severity.MEDIUM,
    rationale="A Pending connection carries no traffic: the consumer's application cannot reach the "
              "service until the provider approves or rejects it, and stale requests accumulate.",
    remediation="Approve the connection if the requester is expected, otherwise reject it.",
    references=(PE_DOC, PE_OVERVIEW + "#private-link-resource"),
    params={"pending_max_age": Param.duration("72h", "age after which severity rises to high")},
    controls=("MCSB NS-2",),
    reads=VIEW_READS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CA-9",
                  "CA-9 a: a requested internal connection left neither authorized nor refused past "
                  "pending_max_age"),
        Evidences(CIS_AZURE, "9.3.2.1",
                  "9.3.2.1's audit wants each storage account endpoint's connection state Approved; "
                  "this one is Pending", only="Microsoft.Storage/storageAccounts"),
    ),
)
def pending(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    max_age = params["pending_max_age"]
    for view in _views(snap):
        if view.status_key != "pending":
            continue
        subject = view.provider.id if view.provider is not None else view.endpoint_id
        first_seen = snap.observations.get((subject.key, "pending"))
        ev = view.evidence()
        severity = None
        if first_seen is None:
            ev["age"] = "unknown (no earlier observation of this connection)"
            age_text = "age unknown"
        else:
            age = (snap.taken_at - first_seen).total_seconds()
            ev.update(first_seen_pending=first_seen.isoformat(), age_hours=_hours(age),
                      pending_max_age_hours=_hours(max_age.total_seconds()))
            age_text = f"pending for {_hours(age)} h"
            if age > max_age.total_seconds():
                severity = Severity.HIGH
                age_text += f", longer than {_hours(max_age.total_seconds())} h"
        if view.provider is not None:
            fix = lines(az("network", "private-endpoint-connection", "approve", "--id", subject.raw,
                           "--description", "Approved by <owner>"),
                        alternative(az("network", "private-endpoint-connection", "reject", "--id", subject.raw)))
        else:
            fix = lines(note(f"The provider of {view.target_id.raw if view.target_id else 'the target'} must "
                             "approve it:"),
                        az("network", "private-endpoint-connection", "approve", "--id",
                           "<target id>/privateEndpointConnections/<name>"),
                        alternative("delete the request: " + az("network", "private-endpoint", "delete", "--ids",
                                                                view.endpoint_id.raw)))
        yield Issue(subject, f"Connection from {view.endpoint_id.name} to "
                    f"{view.target_id.name if view.target_id else 'its target'} is Pending ({age_text}).",
                    ev, fix, severity)


def _endpoint_issues(snap: Snapshot, status: str, what: str) -> Iterator[Issue]:
    subjects: Iterable[tuple[str, list[ConnectionView]]]
    if plain():
        subjects = _plain(snap).by_status.get(status, ())
    else:
        subjects = ((key, [v for v in views_of(snap, key) if v.status_key == status])
                    for key, _ in each_item(snap, *SUBJECTS))
    for _key, views in subjects:
        if not views:
            continue
        pe_id = views[0].endpoint_id
        ev = {"status": views[0].status, "connections": [v.evidence() for v in views]}
        targets = ", ".join(sorted({v.target_id.name for v in views if v.target_id}))
        yield Issue(pe_id, f"Private endpoint {pe_id.name} has a {what} connection to {targets or 'its target'}.",
                    ev, az("network", "private-endpoint", "delete", "--ids", pe_id.raw))


@check(
    id="connection.rejected", title="Private endpoint connection rejected", severity=Severity.MEDIUM,
    rationale="A Rejected connection carries no traffic; clients resolving the endpoint fail while the "
              "endpoint still costs money and holds an IP address.",
    remediation="Delete the endpoint, or ask the provider to approve a new request.",
    references=(PE_DOC,), controls=("MCSB NS-2", "MCSB AM-1"),
    reads=VIEW_READS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CA-9",
                  "CA-9 c: the provider refused the connection, but the consumer's endpoint was never "
                  "removed"),
        Evidences(NIST_800_53, "CM-8",
                  "CM-8 a.1: a rejected endpoint carries no traffic yet stays in the estate as if it "
                  "did"),
        Evidences(CIS_AZURE, "9.3.2.1",
                  "9.3.2.1's audit wants each storage account endpoint's connection state Approved; "
                  "this one is Rejected", only="Microsoft.Storage/storageAccounts"),
    ),
)
def rejected(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    yield from _endpoint_issues(snap, "rejected", "Rejected")


@check(
    id="connection.disconnected", title="Private endpoint connection disconnected",
    severity=Severity.MEDIUM,
    rationale="The provider removed the connection; the endpoint no longer reaches the service and "
              "should be deleted.",
    remediation="Delete the disconnected private endpoint.",
    references=(PE_DOC,), controls=("MCSB NS-2", "MCSB AM-1"),
    reads=VIEW_READS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CA-9",
                  "CA-9 c: the provider terminated the connection, but the consumer's endpoint was "
                  "never removed"),
        Evidences(NIST_800_53, "CM-8",
                  "CM-8 a.1: an endpoint whose connection is gone is a component that no longer "
                  "reflects the system"),
        Evidences(CIS_AZURE, "9.3.2.1",
                  "9.3.2.1's audit wants each storage account endpoint's connection state Approved; "
                  "this one is Disconnected", only="Microsoft.Storage/storageAccounts"),
    ),
)
def disconnected(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    yield from _endpoint_issues(snap, "disconnected", "Disconnected")


@check(
    id="connection.actions-required", title="Private endpoint connection requires action",
    severity=Severity.LOW,
    rationale="The provider or platform flagged the connection (actionsRequired), e.g. after a service "
              "change; it may stop carrying traffic until someone acts.",
    remediation="Read the actions required on the connection and recreate or re-approve it.",
    references=(PE_DOC, TROUBLESHOOT),
    controls=("MCSB NS-2", "MCSB PV-2"),
    reads=VIEW_READS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CA-9",
                  "CA-9 d: the provider flagged this internal connection for action, so its continued "
                  "need and state are due for review"),
    ),
)
def actions_required(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    keys = _plain(snap).actions if plain() else (key for key, _ in each_item(snap, *SUBJECTS))
    for key in keys:
        items: list[tuple[ConnectionView, dict[str, str]]] = []
        for view in views_of(snap, key):
            sides = {}
            for side, conn in (("consumer", view.consumer), ("provider", view.provider)):
                value = conn.actions_required if conn is not None else None
                if value and lower(value) != "none":
                    sides[side] = value
            if sides:
                items.append((view, sides))
        if not items:
            continue
        pe_id = items[0][0].endpoint_id
        ev = {"connections": [{**v.evidence(), "actions_required": s} for v, s in items]}
        first = next(iter(items[0][1].values()))
        yield Issue(pe_id, f"Connection of {pe_id.name} requires action: {first}", ev,
                    az("network", "private-endpoint", "show", "--ids", pe_id.raw,
                       "--query", "privateLinkServiceConnections[].privateLinkServiceConnectionState"))


def _listed_under_short_id(snap: Snapshot, target: ArmId) -> bool:
    """Some list payloads carry short or bare-GUID ids (Microsoft's own RMPL list example does): an
    object listed that way, with the target's name, is not proof of absence."""
    name = target.name.lower()
    return any(o.id.opaque and (o.name.lower() == name or o.id.key == name)
               for o in (*snap.private_link_services.values(), *snap.rmpls.values()))


# Which Private Link Services and RMPLs the snapshot holds, by key: target-missing asks only whether its target is
# there, so under the daemon a change to a service (its visibility, its connections) is no change of what its ~500
# endpoints read at 100k resources, and they are not judged again by every endpoint check (issue 14).
PLS_KEYS = Index("connection.pls_keys", "private_link_services", lambda snap, pls: (pls.key,))
RMPL_KEYS = Index("connection.rmpl_keys", "rmpls", lambda snap, rmpl: (rmpl.key,))


def _provider_listed(snap: Snapshot, key: str) -> bool:
    """``key in snap.private_link_services or key in snap.rmpls``, read under the daemon as the presence of the key
    (an index entry) rather than the record."""
    if plain():
        return key in snap.private_link_services or key in snap.rmpls
    return bool(lookup(snap, PLS_KEYS, key)) or bool(lookup(snap, RMPL_KEYS, key))


@check(
    id="connection.target-missing", title="Private endpoint targets a resource that does not exist",
    severity=Severity.MEDIUM,
    rationale="The endpoint's target was deleted: the endpoint is orphaned, carries no traffic, and "
              "its DNS records may shadow a recreated resource of the same name.",
    remediation="Delete the orphaned private endpoint.",
    references=(PE_DOC, TROUBLESHOOT),
    controls=("MCSB AM-1", "MCSB NS-10"),
    reads=("private_endpoints", "targets", "private_link_services", "rmpls"),
    over="private_endpoints",
    frameworks=(
        Evidences(NIST_800_53, "CM-8",
                  "CM-8 a.1: the endpoint names a resource that no longer exists, so the estate is not"
                  " what it records"),
    ),
)
def target_missing(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pe in each(snap, "private_endpoints"):
        missing = []
        for conn in pe.connections:
            tid = conn.target_id
            if tid is None or tid.opaque:
                continue  # an alias (a Private Link Service, often in another tenant) or a bad id: never missing
            target = snap.targets.get(tid.key)
            if target is not None:
                # Only a 404 proves absence; a 403 or timeout is the plan's coverage gap, never this finding.
                if target.state == TargetState.NOT_FOUND:
                    missing.append((conn, f"{target.error_status} {target.error_code} on a read of its id"))
                continue
            if tid.type_key in LISTED_PROVIDER_TYPES and tid.subscription and \
                    not _provider_listed(snap, tid.key) and \
                    not _listed_under_short_id(snap, tid) and \
                    snap.coverage.covers(f"/subscriptions/{tid.subscription.lower()}", tid.type_key or ""):
                missing.append((conn, f"absent from the {tid.type} list of subscription {tid.subscription}"))
        if missing:
            ev = {"targets": [{"connection": c.name, "target": c.target_id.raw if c.target_id else None,
                               "read_result": why} for c, why in missing]}
            yield Issue(pe.id, f"Private endpoint {pe.name} targets "
                        f"{', '.join(c.target_id.name for c, _ in missing if c.target_id)}, "
                        "which does not exist.", ev, az("network", "private-endpoint", "delete", "--ids", pe.id.raw))
