"""The collection plan: which ARM reads a collection makes, described as data, and its executor.

Every source (a recorded folder, the live SDK collectors, a replay server) implements the small
:class:`ArmReader` protocol: "give me the JSON body ARM returns for GET <path>", with lists merged
across pages. The executor walks the plan of ``recorded-tenant.md`` against any reader and produces a
:class:`RawInventory`; :mod:`plmon.monitor.collect.builder` turns that into the snapshot. So a recorded tenant and a
live tenant go through exactly the same code from the first byte of JSON onwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from plmon.monitor.model.arm_id import ArmId, parse_id, repair_provider_typo
from plmon.monitor.model.kinds import KINDS, listed_providers
from plmon.monitor.model.snapshot import CoverageGap

__all__ = [
    "SUBSCRIPTION_LISTS", "ArmReader", "CollectionStats", "RawInventory", "ReadError", "collect", "default_workers",
    "nics_to_read", "proves_absence", "read_nics", "targets_to_read",
]

log = structlog.get_logger(__name__)


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


class ArmReader(Protocol):
    def get(self, path: str, *, kind: str) -> Any:
        """Return the JSON body of GET ``/<path>`` (lists merged), or raise :class:`ReadError`.

        ``kind`` names the plan entry ("privateEndpoints", "target", ...) so that a live reader can
        route the read to the matching SDK operation and pick an api-version.
        """
        ...


# Per-subscription lists: (snapshot kind, provider type), from the kinds table. Order is irrelevant; all are
# independent.
SUBSCRIPTION_LISTS: tuple[tuple[str, str], ...] = tuple((k.listed_as, k.type) for k in KINDS if k.listed_as)

# Types whose objects come from the lists above, so a target of these types is never read by id
# when its subscription's list was read (it is then simply absent: target-missing). From the kinds table.
LISTED_TARGET_TYPES: dict[str, str] = listed_providers()


@dataclass
class CollectionStats:
    requests: int = 0
    failures: int = 0
    workers: int = 0  # concurrent reads the collection used (collect() decides it)
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class RawInventory:
    """What the plan read, as ARM returned it. Raw JSON lives only here and in the builder."""

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
    targets: dict[str, Any] = field(default_factory=dict)             # target key -> body
    target_errors: dict[str, tuple[str, ReadError]] = field(default_factory=dict)  # key -> (raw id, err)
    gaps: list[CoverageGap] = field(default_factory=list)
    read: set[tuple[str, str]] = field(default_factory=set)           # (scope key, type key) read
    scoped: bool = False  # only the subscriptions asked for were read (see Coverage.scoped)
    stats: CollectionStats = field(default_factory=CollectionStats)


def _items(body: Any) -> list[Any]:
    """The ``value`` array of a list body; anything else is a malformed list, read as no items."""
    if isinstance(body, dict) and isinstance(body.get("value"), list):
        items: list[Any] = body["value"]
        return items
    raise ReadError(None, "MalformedResponse", "list body has no 'value' array")


def _str(d: Any, key: str) -> str | None:
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, str) and v else None


def _props(d: Any) -> dict[str, Any]:
    p = d.get("properties") if isinstance(d, dict) else None
    return p if isinstance(p, dict) else {}


MIN_WORKERS = 8
MAX_WORKERS = 64
WORKERS_PER_SUBSCRIPTION = 4


def default_workers(subscriptions: int) -> int:
    """Concurrent reads for a tenant of ``subscriptions`` subscriptions when ``--workers`` is not given.

    ARM budgets reads per subscription (a bucket of 250 refilled at 25 per second), so what a tenant may be
    read at grows with its subscriptions while a fixed pool leaves most of that unused. Four workers per
    subscription at ARM's usual 50-200 ms per read ask 20-80 reads a second of each bucket: about its
    refill, with the 250-token burst absorbing the peaks (and the client-side budget waiting rather than
    meeting 429s beyond). At least 8, the old fixed default, so small tenants are read as before; at most
    64, where threads, sockets and the tenant-level reads stop paying.
    """
    return max(MIN_WORKERS, min(MAX_WORKERS, WORKERS_PER_SUBSCRIPTION * subscriptions))


def budget_key(raw_id: str) -> str:
    """The ARM read budget a read of ``raw_id`` spends: its subscription (lower case), else the tenant's."""
    rid = parse_id(raw_id)
    return rid.subscription.lower() if rid.subscription and not rid.opaque else "tenant"


def spread(jobs: Iterable[tuple[str, Callable[[], None]]]) -> list[Callable[[], None]]:
    """``jobs`` (budget key, job) reordered round-robin across budget keys, each key's jobs in their order.

    The lists come back grouped by subscription, so the reads they call for would otherwise reach ARM one
    subscription at a time: many workers on one bucket empty it and then wait on its refill while every
    other subscription's budget sits idle. Interleaved, the workers draw on all the buckets at once.
    """
    by_key: dict[str, list[Callable[[], None]]] = {}
    for key, job in jobs:
        by_key.setdefault(key, []).append(job)
    queues = list(by_key.values())
    out: list[Callable[[], None]] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


class _Run:
    """One execution of the plan against one reader; collects results and gaps thread-safely."""

    def __init__(self, reader: ArmReader, inv: RawInventory, workers: int,
                 on_progress: Callable[[str], None] | None) -> None:
        self.reader = reader
        self.inv = inv
        self.workers = max(1, workers)  # collect() may raise it once the subscriptions are known
        self.on_progress = on_progress
        self._lock = threading.Lock()

    def count(self, *, failed: bool = False) -> None:
        """Count one read; jobs run on a thread pool, so the counters are updated under a lock."""
        with self._lock:
            self.inv.stats.requests += 1
            if failed:
                self.inv.stats.failures += 1

    def read(self, path: str, kind: str, scope: str, type_: str) -> Any | None:
        try:
            body = self.reader.get(path, kind=kind)
        except ReadError as err:
            self.count(failed=True)
            self.inv.gaps.append(CoverageGap(scope, type_, err.code, err.status, err.message))
            log.info("read_failed", path=path, status=err.status, code=err.code)
            return None
        self.count()
        return body

    def read_list(self, path: str, kind: str, scope: str, type_: str) -> list[Any] | None:
        body = self.read(path, kind, scope, type_)
        if body is None:
            return None
        try:
            items = _items(body)
        except ReadError as err:
            self.inv.gaps.append(CoverageGap(scope, type_, err.code, None, err.message))
            return None
        self.inv.read.add((parse_id(scope).key if scope != "/" else "/", type_.lower()))
        return items

    def parallel(self, jobs: Iterable[Callable[[], None]]) -> None:
        jobs = list(jobs)
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                job()
            return
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="plmon-collect") as pool:
            for fut in [pool.submit(job) for job in jobs]:
                fut.result()

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        started = time.perf_counter()
        fn()
        self.inv.stats.phases[name] = self.inv.stats.phases.get(name, 0.0) + time.perf_counter() - started
        if self.on_progress:
            self.on_progress(name)

    # --- the plan's phases, in the order collect() runs them --------------------------------------------

    def tenant(self, wanted: set[str] | None) -> None:
        """Phase 'tenant': the subscriptions to read (those ``wanted``, or every listed one) and the
        management groups, whose names the association lists are read under."""
        inv = self.inv
        subs = self.read_list("subscriptions", "subscriptions", "/", "Microsoft.Resources/subscriptions")
        for s in subs or []:
            sid = _str(s, "subscriptionId")
            if sid and (wanted is None or sid.lower() in wanted):
                inv.subscriptions.append(s)
        if wanted:
            # Named subscriptions that the list did not return are still read: the list may be
            # filtered by the identity's rights while the subscription itself is readable.
            seen = {_str(s, "subscriptionId").lower() for s in inv.subscriptions}  # type: ignore[union-attr]
            for sid in sorted(wanted - seen):
                inv.subscriptions.append({"subscriptionId": sid})
        groups = self.read_list("providers/Microsoft.Management/managementGroups", "managementGroups",
                                "/providers/Microsoft.Management/managementGroups",
                                "Microsoft.Management/managementGroups")
        inv.management_groups = [g for g in groups or [] if isinstance(g, dict)]

    def association_groups(self) -> list[str]:
        """The tenant root group (named by the tenant id, recorded in the manifest) and every management group,
        each once whatever its case: the scopes association lists are read under."""
        inv = self.inv
        # A manifest is untrusted input: a non-string tenant id is ignored, not a crash.
        tenant_id = _str(inv.manifest, "tenant_id") or next(
            (t for t in (_str(s, "tenantId") for s in inv.subscriptions) if t), None)
        if tenant_id:
            inv.manifest["tenant_id"] = tenant_id
        group_names: list[str] = []
        for name in [tenant_id, *(_str(g, "name") for g in inv.management_groups)]:
            if name and name.lower() not in {n.lower() for n in group_names}:
                group_names.append(name)
        return group_names

    def associations(self, group_names: list[str]) -> None:
        """Phase 'management_groups': the RMPL associations listed under each group, in parallel."""
        self.parallel(self._association_job(g) for g in group_names)

    def _association_job(self, group: str) -> Callable[[], None]:
        def job() -> None:
            scope = f"/providers/Microsoft.Management/managementGroups/{group}"
            items = self.read_list(
                f"{scope.lstrip('/')}/providers/Microsoft.Authorization/privateLinkAssociations",
                "privateLinkAssociations", scope, "Microsoft.Authorization/privateLinkAssociations")
            self.inv.associations.extend((group, a) for a in items or [])
        return job

    def subscription_lists(self, sub_ids: list[str]) -> None:
        """Phase 'subscriptions': every list of :data:`SUBSCRIPTION_LISTS` in every subscription, in parallel;
        each kind's items are then joined in subscription order (a failed list adds none, and is a gap)."""
        results: dict[tuple[str, str], list[Any]] = {}

        def one(sid: str, kind: str, type_: str) -> Callable[[], None]:
            def job() -> None:
                items = self.read_list(f"subscriptions/{sid}/providers/{type_}", kind,
                                       f"/subscriptions/{sid}", type_)
                if items is not None:
                    results[(sid, kind)] = items
            return job
        # Kind by kind across the subscriptions, so that the workers spend every subscription's budget at once.
        self.parallel(one(sid, kind, type_) for kind, type_ in SUBSCRIPTION_LISTS for sid in sub_ids)
        for kind, _ in SUBSCRIPTION_LISTS:
            self.inv.lists[kind] = [i for sid in sub_ids for i in results.get((sid, kind), [])]

    def resources(self, sub_ids: list[str]) -> None:
        """Phase 'resources': the reads by id that the lists call for, all in one parallel batch: child lists
        (zone groups, network links, CNAMEs), NICs holding an endpoint's only IP, endpoint and association
        targets, firewall policies; ids that cannot be read are gaps, recorded before any read runs."""
        sub_keys = {s.lower() for s in sub_ids}
        nic_bodies: list[Any] = []
        jobs = [*self._child_list_jobs(), *self._nic_jobs(nic_bodies), *self._target_jobs(sub_keys),
                *_policy_jobs(self, sub_keys)]
        if self.inv.scoped:
            self.inv.gaps.extend(_unjudgeable_associations(self.inv))
            self.inv.gaps.extend(_peers_out_of_scope(self.inv, sub_keys))
        self.parallel(spread(jobs))
        read_nics(self.inv, nic_bodies)

    def _child_list_jobs(self) -> list[tuple[str, Callable[[], None]]]:
        """Each endpoint's zone groups and each zone's network links and CNAME records (not for opaque ids)."""
        inv = self.inv
        jobs: list[tuple[str, Callable[[], None]]] = []
        for pe in inv.lists.get("privateEndpoints", []):
            pe_id = _str(pe, "id")
            if pe_id and not parse_id(pe_id).opaque:
                jobs.append((budget_key(pe_id), _child_list(self, inv.zone_groups, pe_id, "privateDnsZoneGroups",
                                                            "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")))
        for zone in inv.lists.get("privateDnsZones", []):
            zid = _str(zone, "id")
            if zid and not parse_id(zid).opaque:
                jobs.append((budget_key(zid), _child_list(self, inv.vnet_links, zid, "virtualNetworkLinks",
                                                          "Microsoft.Network/privateDnsZones/virtualNetworkLinks")))
                jobs.append((budget_key(zid), _child_list(self, inv.cnames, zid, "CNAME",
                                                          "Microsoft.Network/privateDnsZones/CNAME")))
        return jobs

    def _nic_jobs(self, into: list[Any]) -> list[tuple[str, Callable[[], None]]]:
        """Reads of the NICs :func:`nics_to_read` asks for, into ``into``; a NIC id that cannot be read is a gap."""
        nics, bad_nics = nics_to_read(self.inv)
        for raw_id in bad_nics:
            self.inv.gaps.append(CoverageGap(
                raw_id, "Microsoft.Network/networkInterfaces", "InvalidResourceId", None,
                "private endpoint NIC id is not a valid ARM resource id: its IP is unknown"))
        return [(budget_key(raw_id), _nic_job(self, raw_id, into)) for raw_id in nics]

    def _target_jobs(self, sub_keys: set[str]) -> list[tuple[str, Callable[[], None]]]:
        """Reads of the targets :func:`targets_to_read` asks for; a target id that cannot be read is a gap."""
        to_read, unreadable = targets_to_read(self.inv, sub_keys)
        for raw_id in unreadable:
            # An id ARM would refuse (a typo such as /provders/, a bare GUID): the target cannot be
            # judged, and checks.md asks for a coverage gap rather than a silent pass.
            self.inv.gaps.append(CoverageGap(raw_id, "unknown", "InvalidResourceId", None,
                                             "private endpoint target id is not a valid ARM resource id"))
        return [(budget_key(raw_id), _target_job(self, raw_id)) for raw_id in to_read]


def collect(reader: ArmReader, *, subscriptions: Iterable[str] | None = None,
            manifest: dict[str, Any] | None = None, workers: int | None = None,
            on_progress: Callable[[str], None] | None = None) -> RawInventory:
    """Walk the collection plan. Failed reads become coverage gaps; nothing here raises for ARM errors.

    ``subscriptions`` restricts the per-subscription lists to the given ids (case-insensitive);
    by default every listed subscription is read. The four phases are :class:`_Run`'s methods; each
    needs what the one before it read. ``workers`` is the number of concurrent reads; by default
    :func:`default_workers` of the subscriptions read, decided here (the one place) once they are known.
    """
    inv = RawInventory(manifest=dict(manifest or {}))
    run = _Run(reader, inv, workers or MIN_WORKERS, on_progress)
    wanted = {s.lower() for s in subscriptions} if subscriptions else None
    inv.scoped = wanted is not None
    run.phase("tenant", lambda: run.tenant(wanted))
    group_names = run.association_groups()
    run.phase("management_groups", lambda: run.associations(group_names))
    sub_ids = [sid for sid in (_str(s, "subscriptionId") for s in inv.subscriptions) if sid]
    if workers is None:
        run.workers = default_workers(len(sub_ids))
    inv.stats.workers = run.workers
    run.phase("subscriptions", lambda: run.subscription_lists(sub_ids))
    run.phase("resources", lambda: run.resources(sub_ids))
    log.info("collection_done", requests=inv.stats.requests, gaps=len(inv.gaps),
             subscriptions=len(sub_ids), workers=run.workers)
    return inv


def _child_list(run: _Run, into: dict[str, list[Any]], parent_id: str, child: str,
                type_: str) -> Callable[[], None]:
    def job() -> None:
        items = run.read_list(f"{parent_id.strip('/')}/{child}", child, parent_id, type_)
        if items is not None:
            into[parse_id(parent_id).key] = items
    return job


def _peers_out_of_scope(inv: RawInventory, sub_keys: set[str]) -> list[CoverageGap]:
    """Networks that a scanned network peers with, in subscriptions outside the scan: their client subnets,
    route tables and appliances are not read, so paths through them are unknown (reported, never judged)."""
    out: dict[str, CoverageGap] = {}
    for vnet in inv.lists.get("virtualNetworks", []):
        peerings = _props(vnet).get("virtualNetworkPeerings")
        for peering in peerings if isinstance(peerings, list) else []:
            raw = _str(_props(peering).get("remoteVirtualNetwork"), "id")
            if raw is None:
                continue
            rid = parse_id(raw)
            if rid.opaque or not rid.subscription or rid.subscription.lower() in sub_keys:
                continue
            out.setdefault(rid.key, CoverageGap(
                raw, "Microsoft.Network/virtualNetworks", "OutOfScope", None,
                f"peered with {_str(vnet, 'name') or 'a scanned network'} but in a subscription outside the scan: "
                "its subnets, route tables and appliances are not read, so paths through it are not judged"))
    return list(out.values())


def _unjudgeable_associations(inv: RawInventory) -> list[CoverageGap]:
    """Associations of a scoped scan whose private link is a bare GUID or name that no RMPL read matches: it
    cannot be read by id, and it may exist in a subscription outside the scope. Neither a finding nor a pass."""
    known: set[str] = set()
    for r in inv.lists.get("resourceManagementPrivateLinks", []):
        known |= {v.strip().strip("/").lower() for v in (_str(r, "id"), _str(r, "name")) if v}
    out = []
    for _, a in inv.associations:
        raw = _str(_props(a), "privateLink")
        if raw and parse_id(raw).opaque and raw.strip().strip("/").lower() not in known:
            out.append(CoverageGap(_str(a, "id") or raw, "Microsoft.Authorization/resourceManagementPrivateLinks",
                                   "OutOfScope", None, f"the association names its private link as '{raw}', not "
                                   "by id; a scan scoped to some subscriptions cannot tell whether it exists"))
    return out


def _policy_jobs(run: _Run, sub_keys: set[str]) -> list[tuple[str, Callable[[], None]]]:
    """Reads by id of the firewall policies that firewalls attach and no list covered (a policy often lives in
    another subscription than its firewall): without the policy the firewall's SNAT is unknown, and a scan
    scoped to the firewall's subscription must judge it as the full scan does. A failed read is a gap."""
    inv = run.inv
    listed = {parse_id(_str(p, "id")).key for p in inv.lists.get("firewallPolicies", []) if _str(p, "id")}
    wanted: dict[str, str] = {}
    for fw in inv.lists.get("azureFirewalls", []):
        raw = _str(_props(fw).get("firewallPolicy"), "id")
        if raw is None:
            continue
        pid = parse_id(raw)
        if pid.opaque or pid.key in listed or not pid.subscription:
            continue
        sub = pid.subscription.lower()
        if sub in sub_keys and (f"/subscriptions/{sub}", "microsoft.network/firewallpolicies") in inv.read:
            continue  # its list was read and did not return it
        wanted.setdefault(pid.key, raw)

    def one(raw: str) -> Callable[[], None]:
        def job() -> None:
            body = run.read(raw.strip("/"), "target", raw, "Microsoft.Network/firewallPolicies")
            if isinstance(body, dict) and _str(body, "id"):
                with run._lock:
                    inv.lists.setdefault("firewallPolicies", []).append(body)
        return job
    return [(budget_key(raw), one(raw)) for raw in wanted.values()]


def _target_job(run: _Run, raw_id: str) -> Callable[[], None]:
    def job() -> None:
        try:
            body = run.reader.get(raw_id.strip("/"), kind="target")
        except ReadError as err:
            run.count(failed=True)
            run.inv.target_errors[parse_id(raw_id).key] = (raw_id, err)
            if not proves_absence(err):
                type_ = parse_id(raw_id).type or "unknown"
                run.inv.gaps.append(CoverageGap(raw_id, type_, err.code, err.status, err.message))
            return
        run.count()
        run.inv.targets[parse_id(raw_id).key] = body
    return job


def _nic_job(run: _Run, raw_id: str, into: list[Any]) -> Callable[[], None]:
    def job() -> None:
        body = run.read(raw_id.strip("/"), "networkInterfaces", raw_id, "Microsoft.Network/networkInterfaces")
        if body is not None:
            into.append(body)  # list.append is atomic: jobs run on a thread pool
    return job


def read_nics(inv: RawInventory, bodies: list[Any]) -> None:
    """Add NICs read by id to the NIC list, as a new list object (the builder's memo keys on lists)."""
    if bodies:
        inv.lists["networkInterfaces"] = [*inv.lists.get("networkInterfaces", []), *bodies]


def _list(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key)
    return v if isinstance(v, list) else []


def _endpoint_has_ip(props: dict[str, Any]) -> bool:
    if any(_str(_props(c), "privateIPAddress") for c in _list(props, "ipConfigurations")):
        return True
    return any(isinstance(i, str) and i for d in _list(props, "customDnsConfigs") if isinstance(d, dict)
               for i in _list(d, "ipAddresses"))


def _endpoints_without_ip(inv: RawInventory, only: Callable[[ArmId], bool] | None) -> list[tuple[str, list[Any]]]:
    """The listed endpoints (those ``only`` lets through) that carry no IP themselves, with their NIC refs."""
    wanted: list[tuple[str, list[Any]]] = []
    for pe in inv.lists.get("privateEndpoints", []):
        pe_id, p = _str(pe, "id"), _props(pe)
        if pe_id and not _endpoint_has_ip(p) and (only is None or only(parse_id(pe_id))):
            wanted.append((parse_id(pe_id).key, _list(p, "networkInterfaces")))
    return wanted


def _listed_nics(inv: RawInventory) -> tuple[set[str], set[str]]:
    """The keys of the listed NICs (a '/provders/' typo repaired) and of the endpoints they name."""
    listed: set[str] = set()
    named: set[str] = set()
    for nic in inv.lists.get("networkInterfaces", []):
        listed_id = _str(nic, "id")
        if listed_id:
            listed.add(parse_id(repair_provider_typo(listed_id)).key)
        pe_ref = _str(_props(nic).get("privateEndpoint"), "id")
        if pe_ref:
            named.add(parse_id(pe_ref).key)
    return listed, named


def nics_to_read(inv: RawInventory, only: Callable[[ArmId], bool] | None = None) -> tuple[list[str], list[str]]:
    """The NICs to read by id: those of endpoints whose IP only their NIC holds, when no NIC list returned them.

    Real ARM returns a dynamic-IP endpoint with ``ipConfigurations: []`` and ``customDnsConfigs: []``; its IP
    is only on the NIC of ``networkInterfaces[].id``. That NIC is missing from the lists when it was created
    after its subscription's list was read, when an event re-read the endpoint alone, or when the NIC list
    failed; without it the route checks cannot place the endpoint at all. Second: ids that cannot be read.
    ``only`` limits the endpoints considered (a targeted re-read looks at the endpoints it re-read).
    """
    # Endpoints first: most carry their IP, and then the NIC list need not be looked at (the daemon calls
    # this on every endpoint event).
    wanted = _endpoints_without_ip(inv, only)
    if not wanted:
        return [], []
    listed, named = _listed_nics(inv)
    out: dict[str, str] = {}
    bad: dict[str, str] = {}
    for pe_key, refs in wanted:
        if pe_key in named:
            continue
        for ref in refs:
            raw = _str(ref, "id")
            if not raw:
                continue
            fixed = repair_provider_typo(raw)
            nid = parse_id(fixed)
            if nid.opaque or nid.type_key != "microsoft.network/networkinterfaces":
                bad.setdefault(parse_id(raw).key, raw)
            elif nid.key not in listed:
                out.setdefault(nid.key, fixed)
    return list(out.values()), list(bad.values())


def _endpoint_targets(inv: RawInventory) -> Iterator[str]:
    """Every target id the listed endpoints' connections (automatic, then manual) name, as written."""
    for pe in inv.lists.get("privateEndpoints", []):
        p = _props(pe)
        for arr in ("privateLinkServiceConnections", "manualPrivateLinkServiceConnections"):
            conns = p.get(arr)
            for c in conns if isinstance(conns, list) else []:
                raw = _str(_props(c), "privateLinkServiceId")
                if raw:
                    yield raw


def targets_to_read(inv: RawInventory, sub_keys: set[str]) -> tuple[list[str], list[str]]:
    """Every endpoint target that no list returned (PaaS targets, and PLS/RMPLs outside the lists), every
    RMPL an association names that no list returned, and the endpoint target ids that cannot be read at all
    because they do not parse.

    A PLS or RMPL whose subscription's list was read and did not return it is not read again: that list
    is the evidence of its absence. One outside the scan's subscriptions (or whose list failed) is read by
    id, so a scoped scan judges it on evidence, never on not having looked (checks.md).
    """
    listed = {parse_id(_str(i, "id")).key for kind in LISTED_TARGET_TYPES.values()
              for i in inv.lists.get(kind, []) if _str(i, "id")}
    out: dict[str, str] = {}
    bad: dict[str, str] = {}

    def consider(raw: str) -> None:
        tid = parse_id(raw)
        if tid.key in listed or tid.key in out:
            return
        kind = LISTED_TARGET_TYPES.get(tid.type_key or "")
        if kind and tid.subscription and tid.subscription.lower() in sub_keys and \
                (f"/subscriptions/{tid.subscription.lower()}", tid.type_key) in inv.read:
            return  # its list covered the scope and did not return it: absent, on evidence
        out[tid.key] = raw

    for target in _endpoint_targets(inv):
        tid = parse_id(target)
        if tid.is_pls_alias:
            continue  # a Private Link Service alias: not an id plmon can read (often another tenant)
        if tid.opaque:
            bad.setdefault(tid.key, target)
            continue
        consider(target)
    for _, association in inv.associations:
        raw = _str(_props(association), "privateLink")
        # A bare GUID or short name cannot be read by id; the rmpl checks match it by name instead.
        if raw and not parse_id(raw).opaque and parse_id(raw).type_key in LISTED_TARGET_TYPES:
            consider(raw)
    return list(out.values()), list(bad.values())
