"""The collection plan: which ARM reads a collection makes, described as data, and its executor.

Every source (a recorded folder, the live SDK collectors, a replay server) implements the small
:class:`ArmReader` protocol: "give me the JSON body ARM returns for GET <path>", with lists merged
across pages. The executor walks the plan of ``recorded-tenant.md`` against any reader and produces an
:class:`~plmon.monitor.collect.inventory.Inventory`: each read unit's body is parsed by
:mod:`plmon.monitor.collect.builder` as soon as it arrives and dropped, so raw JSON never outlives its read
(at 100k resources it was most of the scan's memory). The follow-up reads (zone groups per endpoint, NICs,
targets, firewall policies) take their ids from the few raw strings each unit keeps (:func:`list_refs`). The
builder then links the units into the snapshot. So a recorded tenant and a live tenant go through exactly the
same code from the first byte of JSON onwards.
"""

from __future__ import annotations

import contextvars
import gc
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from plmon.monitor.collect.builder import (
    HUB_CHILDREN,
    EndpointRefs,
    association_unit,
    list_refs,
    list_unit,
    parse_child,
    parse_target,
)
from plmon.monitor.collect.inventory import (
    BY_ID,
    AssociationUnit,
    Child,
    CollectionStats,
    Inventory,
    ListUnit,
    Prebuilt,
    RawInventory,
    ReadError,
    TargetUnit,
    proves_absence,
)
from plmon.monitor.logs import get_logger
from plmon.monitor.model.arm_id import ArmId, interning, parse_id, repair_provider_typo
from plmon.monitor.model.kinds import KINDS, listed_providers
from plmon.monitor.model.snapshot import CoverageGap

__all__ = [
    "SUBSCRIPTION_LISTS", "ArmReader", "Collection", "CollectionStats", "EndpointRefs", "Inventory", "RawInventory",
    "Read", "ReadError", "association_unit", "collect", "default_workers", "list_refs", "list_unit", "named_targets",
    "nics_to_read", "proves_absence", "targets_to_read", "young_gc",
]

log = get_logger(__name__)  # structlog is imported when a line is written (plmon.monitor.logs)


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

# The lists whose items have child lists of their own to read (zone groups; network links and CNAMEs; a Virtual WAN
# hub's connections, routing intent and route tables).
_CHILD_PARENTS = ("privateEndpoints", "privateDnsZones", "virtualHubs")

# Child lists read per parent: (plan kind, provider type).
ZONE_GROUPS = ("privateDnsZoneGroups", "Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
VNET_LINKS = ("virtualNetworkLinks", "Microsoft.Network/privateDnsZones/virtualNetworkLinks")
CNAMES = ("CNAME", "Microsoft.Network/privateDnsZones/CNAME")
HUB_CHILD_LISTS = tuple((child, f"Microsoft.Network/virtualHubs/{child}") for child in HUB_CHILDREN)


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


def _refs(inv: Inventory, kind: str) -> Iterator[Any]:
    for unit in inv.lists.get(kind, {}).values():
        yield from unit.refs


def _listed_keys(inv: Inventory, kinds: Iterable[str]) -> set[str]:
    return {k for kind in kinds for unit in inv.lists.get(kind, {}).values() for k in unit.keys}


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


# What young_gc() sets the oldest generation's threshold to: more young passes than any collection makes.
_NO_FULL_PASS = 2**31 - 1


@contextmanager
def young_gc() -> Iterator[None]:
    """The cyclic GC on for a concurrent (live) collection, but only its young generations.

    The SDK leaves cyclic garbage behind every request (pipeline and response objects), so a live collection
    keeps the collector on; the young passes free that garbage. A full pass walks the whole heap, which grows with
    every parsed unit, and stops every worker meanwhile: six of them were 1.3 s of a 40 s collection of 100
    subscriptions (up to 0.28 s each), during which 32 answers waited unread. What the young passes promote
    meanwhile is freed by the next full pass after the collection. The thresholds are process-wide, so they are
    restored on the way out (and the collector left as it was found).
    """
    was, thresholds = gc.isenabled(), gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], _NO_FULL_PASS)
    gc.enable()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not was:
            gc.disable()


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


class _Jobs:
    """The jobs of one parallel run: a queue per budget key, handed out round-robin across the keys (the order
    :func:`spread` gives a fixed list), that jobs may add to while they run; :meth:`get` answers None once
    nothing is queued and no running job could queue more.

    A run on the calling thread alone (:meth:`alone`) takes its jobs with :meth:`take`, without the condition: a
    recorded folder's collection runs ~63k jobs at 100k resources, each queued, taken and done under it."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[str, deque[tuple[int, Callable[[], None]]]] = {}
        self._turns: deque[str] = deque()   # the keys with queued jobs, the next one to serve first
        self._running = 0
        self._alone = False                 # set by alone(): no other thread puts, gets or waits from now on
        self.queued = 0                     # jobs queued so far, which also numbers them

    def put(self, key: str, job: Callable[[], None]) -> None:
        if self._alone:
            self._put(key, job)
            return
        with self._cond:
            self._put(key, job)
            self._cond.notify()

    def _put(self, key: str, job: Callable[[], None]) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            self._turns.append(key)
        queue.append((self.queued, job))
        self.queued += 1

    def alone(self) -> None:
        """From now on only the calling thread puts and takes jobs (a run with one worker)."""
        self._alone = True

    def get(self) -> tuple[int, Callable[[], None]] | None:
        with self._cond:
            while not self._turns:
                if not self._running:
                    self._cond.notify_all()
                    return None
                self._cond.wait()
            self._running += 1
            return self._next()

    def take(self) -> tuple[int, Callable[[], None]] | None:
        """:meth:`get` for a run :meth:`alone`: the next job, or None once none is queued (it runs before the next
        take, so nothing else could queue more); no :meth:`done` follows."""
        assert self._alone, "take() outside a run alone"
        return self._next() if self._turns else None

    def _next(self) -> tuple[int, Callable[[], None]]:
        key = self._turns.popleft()
        queue = self._queues[key]
        got = queue.popleft()
        if queue:
            self._turns.append(key)
        else:
            del self._queues[key]
        return got

    def done(self) -> None:
        with self._cond:
            self._running -= 1
            if not self._running and not self._turns:
                self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Read:
    """One read by id that the lists call for (phase 'resources'), as data: what a fan-out collection hands to another
    process as a stage-2 shard (issue 15), and what :meth:`Collection.job` turns back into the plan's own job.

    ``kind`` says which job: a child list (``privateDnsZoneGroups``, ``virtualNetworkLinks``, ``CNAME``, ``scope``
    the parent's id), a NIC (``networkInterfaces``), a target (``target`` with no ``type_``) or a firewall policy
    (``target`` with its type); ``scope`` is the raw id the job reads (and names its gap by). The path is derived
    when asked for, as the job derives it when it runs: tens of thousands of reads are queued at once at 100k
    resources, and holding each one's path string until its turn cost ~20 MB of peak RSS."""

    budget_key: str
    kind: str
    scope: str
    type_: str

    @property
    def path(self) -> str:
        """The ARM path read (no leading ``/``)."""
        if self.kind in _CHILD_KINDS:
            return f"{self.scope.strip('/')}/{self.kind}"
        return self.scope.strip("/")


_FIREWALL_POLICIES = "Microsoft.Network/firewallPolicies"
_CHILD_KINDS = frozenset((ZONE_GROUPS[0], VNET_LINKS[0], CNAMES[0], *HUB_CHILDREN))


class Collection:
    """One execution of the plan against one reader; collects results and gaps thread-safely.

    Its phases are public so that a fan-out collection (issue 15, :mod:`plmon.monitor.collect.shards`) can run them
    one by one, in several processes: :meth:`tenant` and :meth:`associations` (stage 0), :meth:`lists` of some
    subscriptions with their child lists (stage 1), :meth:`follow_ups` (the reads by id the lists call for, as
    :class:`Read` data) and :meth:`resources` of those reads (stage 2). :func:`collect` runs the same pieces in the
    same order."""

    def __init__(self, reader: ArmReader, inv: Inventory, workers: int,
                 on_progress: Callable[[str], None] | None) -> None:
        self.reader = reader
        self.inv = inv
        self.workers = max(1, workers)  # collect() may raise it once the subscriptions are known
        self.on_progress = on_progress
        # A display's hook for a total and an ETA: (reads queued, whether the plan now knows all its reads).
        self.on_planned: Callable[[int, bool], None] | None = getattr(on_progress, "planned", None)
        self._plan_known = False
        self._lock = threading.Lock()
        self._pending: _Jobs | None = None   # the jobs of the running parallel_keyed(), for submit()
        self._can_submit = False             # whether the jobs about to run may submit() more
        self._children_read: set[int] = set()  # ids of the list units whose child lists were queued early
        self._resources_queued = False          # whether the subscriptions phase queued the reads by id itself

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
            log.debug("read_failed", path=path, status=err.status, code=err.code)
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
        self.inv.read.add((parse_id(scope).key if scope != "/" else "/", sys.intern(type_.lower())))
        return items

    def parallel(self, jobs: Iterable[Callable[[], None]]) -> None:
        """Run ``jobs`` on the workers, in their order."""
        self.parallel_keyed(("", job) for job in jobs)

    def parallel_keyed(self, jobs: Iterable[tuple[str, Callable[[], None]]]) -> None:
        """Run ``jobs`` (budget key, job) on the workers, round-robin across keys as :func:`spread` orders them;
        a running job may queue more with :meth:`submit`. Every job runs; the first failure in the order the
        jobs were queued is raised once all are done."""
        pending = _Jobs()
        for key, job in jobs:
            pending.put(key, job)
        self.planned(pending.queued)   # one read per job
        if self.workers == 1 or (pending.queued <= 1 and not self._can_submit):
            self._pending = pending
            pending.alone()
            try:
                while (got := pending.take()) is not None:
                    got[1]()
            finally:
                self._pending = None
            return
        # Each job in a copy of this context: the parse of its unit shares the collection's id table.
        context = contextvars.copy_context()
        failed: list[tuple[int, BaseException]] = []

        def work() -> None:
            while (got := pending.get()) is not None:
                try:
                    context.copy().run(got[1])
                except BaseException as err:  # re-raised below, in the caller's thread
                    failed.append((got[0], err))
                finally:
                    pending.done()

        # Workers that take the next job themselves, rather than a ThreadPoolExecutor: its future per job (a
        # Condition and an RLock each), made by the one submitting thread while every worker wanted the same
        # interpreter, were about a tenth of a live collection's CPU.
        self._pending = pending
        threads = [threading.Thread(target=work, name=f"plmon-collect_{i}", daemon=True)
                   for i in range(self.workers if self._can_submit else min(self.workers, pending.queued))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            self._pending = None
        if failed:
            raise min(failed, key=lambda f: f[0])[1]

    def submit(self, key: str, job: Callable[[], None]) -> None:
        """Queue one more job on the running :meth:`parallel_keyed` (called from one of its jobs)."""
        assert self._pending is not None, "submit() outside parallel_keyed()"
        self._pending.put(key, job)
        self.planned(1)

    def planned(self, reads: int) -> None:
        if self.on_planned is not None:
            self.on_planned(reads, self._plan_known)

    def phase(self, name: str, fn: Callable[[], None]) -> None:
        started = time.perf_counter()
        fn()
        self.inv.stats.phases[name] = self.inv.stats.phases.get(name, 0.0) + time.perf_counter() - started
        if self.on_progress:
            self.on_progress(name)

    def add_unit(self, name: str, unit: ListUnit) -> None:
        with self._lock:
            self.inv.lists.setdefault(unit.kind, {})[name] = unit

    # --- the plan's phases, in the order collect() runs them --------------------------------------------

    def tenant(self, wanted: set[str] | None) -> None:
        """Phase 'tenant': the subscriptions to read (those ``wanted``, or every listed one) and the
        management groups, whose names the association lists are read under."""
        inv = self.inv
        self.planned(2)   # the two lists below
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
            if items is not None:
                unit = association_unit(group, items)
                with self._lock:
                    self.inv.associations[group] = unit
        return job

    def subscription_lists(self, sub_ids: list[str], *, reads_by_id: bool = True) -> None:
        """Phase 'subscriptions': every list of :data:`SUBSCRIPTION_LISTS` in every subscription, in parallel,
        each parsed into its unit as it arrives; each kind's units are then ordered by subscription (a failed
        list adds none, and is a gap)."""
        results: dict[tuple[str, str], ListUnit] = {}
        # With several workers, the child lists an endpoint or zone list calls for are read as soon as it is
        # parsed, beside the other lists, rather than after all of them: parsing the lists is CPU-bound on one
        # interpreter, and the child reads' latency (most of a tenant's reads) now hides behind it. Only when
        # each subscription is read once, so that every list parsed is the unit kept.
        early = self.workers > 1 and len({sid.lower() for sid in sub_ids}) == len(sub_ids)

        # Likewise the reads by id (phase 'resources'), as soon as the last list is parsed: they need every list but
        # none of the child lists, so they join the child reads still queued instead of waiting for the last of them
        # (a moment when all but a few workers stood idle while one thread built ~8k jobs).
        lists_left = [len(sub_ids) * len(SUBSCRIPTION_LISTS)]
        by_id = early and reads_by_id

        def place_units() -> None:
            for kind, _ in SUBSCRIPTION_LISTS:
                units = self.inv.lists.setdefault(kind, {})
                for sid in sub_ids:
                    if (sid, kind) in results:
                        units.setdefault(sid.lower(), results[(sid, kind)])

        def one(sid: str, kind: str, type_: str) -> Callable[[], None]:
            def job() -> None:
                items = self.read_list(f"subscriptions/{sid}/providers/{type_}", kind,
                                       f"/subscriptions/{sid}", type_)
                if items is not None:
                    # A recorded folder may hand over the unit its typed decoder built (typed.Prebuilt).
                    built = _prebuilt(items, ListUnit)
                    unit = results[(sid, kind)] = list_unit(kind, items) if built is None else built
                    if early and kind in _CHILD_PARENTS:
                        self._children_read.add(id(unit))
                        for key, child in self._child_jobs_of(kind, unit):
                            self.submit(key, child)
                if by_id:
                    with self._lock:
                        lists_left[0] -= 1
                        last = not lists_left[0]
                    if last:  # (a list that raised never counts, so a failed phase queues no reads by id)
                        place_units()
                        for key, read in self._resource_jobs(sub_ids):
                            self.submit(key, read)
                        self._resources_queued = True
            return job
        # Kind by kind across the subscriptions (round-robin across them, each subscription's lists in this
        # order), so that the workers spend every subscription's budget at once.
        self._can_submit = early
        try:
            self.parallel_keyed((sid, one(sid, kind, type_)) for kind, type_ in SUBSCRIPTION_LISTS
                                for sid in sub_ids)
        finally:
            self._can_submit = False
        place_units()

    def lists(self, sub_ids: list[str], *, children: bool = True) -> None:
        """Stage 1 of a fan-out collection: the lists of ``sub_ids`` and (``children``) every child list they call
        for, but none of the reads by id, which need every subscription's lists (:meth:`follow_ups`)."""
        self.subscription_lists(sub_ids, reads_by_id=False)
        if children:
            jobs: list[tuple[str, Callable[[], None]]] = []
            for kind in _CHILD_PARENTS:
                for unit in self.inv.lists.get(kind, {}).values():
                    if id(unit) not in self._children_read:
                        self._children_read.add(id(unit))
                        jobs.extend((r.budget_key, self.job(r)) for r in self._child_reads_of(kind, unit))
            self.parallel_keyed(jobs)

    def follow_ups(self, sub_ids: list[str]) -> list[Read]:
        """Exactly the reads phase 'resources' makes: child lists not read yet (zone groups, network links, CNAMEs),
        NICs holding an endpoint's only IP, endpoint and association targets, firewall policies. Ids that cannot be
        read are gaps, recorded here, before any read runs (as are a scoped scan's out-of-scope gaps)."""
        sub_keys = {s.lower() for s in sub_ids}
        reads = [*self._child_list_reads(), *self._nic_reads(), *self._target_reads(sub_keys),
                 *_policy_reads(self.inv, sub_keys)]
        if self.inv.scoped:
            self.inv.gaps.extend(_unjudgeable_associations(self.inv))
            self.inv.gaps.extend(_peers_out_of_scope(self.inv, sub_keys))
        return reads

    def resources(self, reads: Iterable[Read]) -> None:
        """Phase 'resources': ``reads`` (:meth:`follow_ups`), all in one parallel batch, round-robin by budget."""
        self.parallel(spread((r.budget_key, self.job(r)) for r in reads))

    def job(self, read: Read) -> Callable[[], None]:
        """The plan's job for one :class:`Read`: it reads, parses into the inventory, and records its gap."""
        kind = read.kind
        if kind == "target":
            if read.type_ == _FIREWALL_POLICIES:
                return _policy_job(self, read.scope)
            return _target_job(self, read.scope)
        if kind == "networkInterfaces":
            return _nic_job(self, read.scope)
        inv = self.inv
        if kind in HUB_CHILDREN:
            return _child_list(self, _hub_children(self, kind), read.scope, kind, read.type_)
        into = inv.zone_groups if kind == ZONE_GROUPS[0] else inv.vnet_links if kind == VNET_LINKS[0] else inv.cnames
        return _child_list(self, into, read.scope, kind, read.type_)

    def read_follow_ups(self, sub_ids: list[str]) -> None:
        """Phase 'resources' of :func:`collect`: :meth:`resources` of :meth:`follow_ups`, unless the subscriptions
        phase queued them itself (see :meth:`subscription_lists`). Its jobs are built straight from the inventory, not
        through :class:`Read` data: at 100k resources that was ~20 MB of peak RSS for objects made only to be
        dropped (``test_plan_phases`` holds the two to the same reads)."""
        if not self._resources_queued:
            self.parallel(spread(self._resource_jobs(sub_ids)))

    def _resource_jobs(self, sub_ids: list[str]) -> list[tuple[str, Callable[[], None]]]:
        """The reads of phase 'resources' with their budget keys, and (first) the gaps of what cannot be read."""
        sub_keys = {s.lower() for s in sub_ids}
        jobs = [*self._child_list_jobs(), *self._nic_jobs(), *self._target_jobs(sub_keys),
                *_policy_jobs(self, sub_keys)]
        self._plan_known = True   # these are the last reads: as they are queued, a display has its total
        if self.inv.scoped:
            self.inv.gaps.extend(_unjudgeable_associations(self.inv))
            self.inv.gaps.extend(_peers_out_of_scope(self.inv, sub_keys))
        return jobs

    def _child_list_jobs(self) -> list[tuple[str, Callable[[], None]]]:
        """Each endpoint's zone groups and each zone's network links and CNAME records (not for opaque ids)."""
        jobs: list[tuple[str, Callable[[], None]]] = []
        for kind in _CHILD_PARENTS:
            for unit in self.inv.lists.get(kind, {}).values():
                if id(unit) not in self._children_read:  # (those the subscriptions phase read already)
                    jobs.extend(self._child_jobs_of(kind, unit))
        return jobs

    def _nic_jobs(self) -> list[tuple[str, Callable[[], None]]]:
        """Reads of the NICs :func:`nics_to_read` asks for; a NIC id that cannot be read is a gap."""
        return [(budget_key(raw_id), _nic_job(self, raw_id)) for raw_id in self._nics()]

    def _target_jobs(self, sub_keys: set[str]) -> list[tuple[str, Callable[[], None]]]:
        """Reads of the targets :func:`targets_to_read` asks for; a target id that cannot be read is a gap."""
        return [(budget_key(raw_id), _target_job(self, raw_id)) for raw_id in self._targets(sub_keys)]

    def _nics(self) -> list[str]:
        nics, bad_nics = nics_to_read(self.inv)
        for raw_id in bad_nics:
            self.inv.gaps.append(CoverageGap(
                raw_id, "Microsoft.Network/networkInterfaces", "InvalidResourceId", None,
                "private endpoint NIC id is not a valid ARM resource id: its IP is unknown"))
        return nics

    def _targets(self, sub_keys: set[str]) -> list[str]:
        to_read, unreadable = targets_to_read(self.inv, sub_keys)
        for raw_id in unreadable:
            # An id ARM would refuse (a typo such as /provders/, a bare GUID): the target cannot be
            # judged, and checks.md asks for a coverage gap rather than a silent pass.
            self.inv.gaps.append(CoverageGap(raw_id, "unknown", "InvalidResourceId", None,
                                             "private endpoint target id is not a valid ARM resource id"))
        return to_read

    def _child_list_reads(self) -> list[Read]:
        """Each endpoint's zone groups and each zone's network links and CNAME records (not for opaque ids)."""
        reads: list[Read] = []
        for kind in _CHILD_PARENTS:
            for unit in self.inv.lists.get(kind, {}).values():
                if id(unit) not in self._children_read:  # (those the subscriptions phase read already)
                    reads.extend(self._child_reads_of(kind, unit))
        return reads

    def _child_jobs_of(self, kind: str, unit: ListUnit) -> list[tuple[str, Callable[[], None]]]:
        """The child list reads of one endpoint or zone list unit, with their budget keys (as
        :meth:`_child_reads_of`, without the data: the subscriptions phase queues these as each list is parsed)."""
        inv = self.inv
        jobs: list[tuple[str, Callable[[], None]]] = []
        if kind == "privateEndpoints":
            for ref in unit.refs:
                rid = ref.id
                if rid is not None and not rid.opaque:
                    # budget_key(rid.raw), from the parsed id: its spelling is rebuilt once, for the read.
                    budget = rid.subscription.lower() if rid.subscription else "tenant"
                    jobs.append((budget, _child_list(self, inv.zone_groups, rid.raw, *ZONE_GROUPS)))
        elif kind == "virtualHubs":
            for hid, _ in unit.refs:
                if not parse_id(hid).opaque:
                    for child, type_ in HUB_CHILD_LISTS:
                        jobs.append((budget_key(hid), _child_list(self, _hub_children(self, child), hid, child, type_)))
        else:
            for zid in unit.refs:
                if not parse_id(zid).opaque:
                    jobs.append((budget_key(zid), _child_list(self, inv.vnet_links, zid, *VNET_LINKS)))
                    jobs.append((budget_key(zid), _child_list(self, inv.cnames, zid, *CNAMES)))
        return jobs

    def _child_reads_of(self, kind: str, unit: ListUnit) -> list[Read]:
        """The child list reads of one endpoint or zone list unit."""
        reads: list[Read] = []
        if kind == "privateEndpoints":
            child, type_ = ZONE_GROUPS
            for ref in unit.refs:
                rid = ref.id
                if rid is not None and not rid.opaque:
                    # budget_key(rid.raw), from the parsed id: its spelling is rebuilt once, for the read.
                    budget = rid.subscription.lower() if rid.subscription else "tenant"
                    reads.append(Read(budget, child, rid.raw, type_))
        elif kind == "virtualHubs":
            for hid, _ in unit.refs:
                if not parse_id(hid).opaque:
                    reads.extend(Read(budget_key(hid), child, hid, type_) for child, type_ in HUB_CHILD_LISTS)
        else:
            for zid in unit.refs:
                if not parse_id(zid).opaque:
                    budget = budget_key(zid)
                    reads.append(Read(budget, VNET_LINKS[0], zid, VNET_LINKS[1]))
                    reads.append(Read(budget, CNAMES[0], zid, CNAMES[1]))
        return reads

    def _nic_reads(self) -> list[Read]:
        """Reads of the NICs :func:`nics_to_read` asks for; a NIC id that cannot be read is a gap."""
        return [Read(budget_key(raw_id), "networkInterfaces", raw_id, "Microsoft.Network/networkInterfaces")
                for raw_id in self._nics()]

    def _target_reads(self, sub_keys: set[str]) -> list[Read]:
        """Reads of the targets :func:`targets_to_read` asks for; a target id that cannot be read is a gap."""
        return [Read(budget_key(raw_id), "target", raw_id, "") for raw_id in self._targets(sub_keys)]


_Run = Collection   # the name it had before its phases were made public


def collect(reader: ArmReader, *, subscriptions: Iterable[str] | None = None,
            manifest: dict[str, Any] | None = None, workers: int | None = None,
            on_progress: Callable[[str], None] | None = None) -> Inventory:
    """Walk the collection plan. Failed reads become coverage gaps; nothing here raises for ARM errors.

    ``subscriptions`` restricts the per-subscription lists to the given ids (case-insensitive);
    by default every listed subscription is read. The four phases are :class:`_Run`'s methods; each
    needs what the one before it read. With several workers the reads of the last two overlap (each endpoint's or
    zone's child lists are queued once its list is parsed, the reads by id once the last list is), so their time
    is the subscriptions phase's and the resources phase's own time is ~0. ``workers`` is the number of concurrent
    reads; by default :func:`default_workers` of the subscriptions read, decided here (the one place) once they are
    known.
    Each unit is parsed as it arrives, under one id-interning scope. Whether the cyclic GC runs meanwhile is the
    caller's choice (``run_scan`` pauses it for a collection on its own thread; a daemon's collection runs beside
    its event worker, so pausing it process-wide here would pause theirs too).
    """
    inv = Inventory(manifest=dict(manifest or {}))
    run = Collection(reader, inv, workers or MIN_WORKERS, on_progress)
    wanted = {s.lower() for s in subscriptions} if subscriptions else None
    inv.scoped = wanted is not None
    with interning():
        run.phase("tenant", lambda: run.tenant(wanted))
        group_names = run.association_groups()
        run.phase("management_groups", lambda: run.associations(group_names))
        sub_ids = [sid for sid in (_str(s, "subscriptionId") for s in inv.subscriptions) if sid]
        if workers is None:
            run.workers = default_workers(len(sub_ids))
        inv.stats.workers = run.workers
        run.phase("subscriptions", lambda: run.subscription_lists(sub_ids))
        run.phase("resources", lambda: run.read_follow_ups(sub_ids))
    # In the order the reads failed, which with several workers is the order they happened to finish: the same tenant
    # would give the same gaps in another order from one run to the next (and live than offline), so a report
    # diffed against the last one showed changes that were none. Sorted, the order is the tenant's.
    inv.gaps.sort(key=_gap_order)
    log.debug("collection_done", requests=inv.stats.requests, gaps=len(inv.gaps),
             subscriptions=len(sub_ids), workers=run.workers)
    return inv


def _gap_order(gap: CoverageGap) -> tuple[str, str, str, int, str]:
    return gap.scope.lower(), gap.type.lower(), gap.code, gap.status or 0, gap.message or ""


def _child_list(run: Collection, into: dict[str, Any], parent_id: str, child: str, type_: str) -> Callable[[], None]:
    def job() -> None:
        items = run.read_list(f"{parent_id.strip('/')}/{child}", child, parent_id, type_)
        if items is not None:
            # A recorded folder may hand over the Child its typed decoder built (typed.Prebuilt).
            made = _prebuilt(items, Child)
            into[parse_id(parent_id).key] = parse_child(child, items) if made is None else made
    return job


def _hub_children(run: Collection, child: str) -> dict[str, Child]:
    """The inventory's table of one hub child kind (made once, under the collection's lock)."""
    with run._lock:
        return run.inv.hub_children.setdefault(child, {})


def _peers_out_of_scope(inv: Inventory, sub_keys: set[str]) -> list[CoverageGap]:
    """Networks that a scanned network peers with, in subscriptions outside the scan: their client subnets,
    route tables and appliances are not read, so paths through them are unknown (reported, never judged).

    A Virtual WAN hub's own network (the platform-made peering of a hub connection, in a Microsoft subscription) is
    no client network: never read, never a gap (checks-vwan.md; the remote network is recognised by the hub read)."""
    out: dict[str, CoverageGap] = {}
    hub_nets, unread_hubs = _hub_networks(inv)
    for raw, vnet_name in _refs(inv, "virtualNetworks"):
        rid = parse_id(raw)
        if rid.opaque or not rid.subscription or rid.subscription.lower() in sub_keys:
            continue
        if rid.key in hub_nets:
            continue
        if rid.key in unread_hubs:
            owner = unread_hubs[rid.key]
            out.setdefault(rid.key, CoverageGap(
                owner, "Microsoft.Network/virtualHubs", "HubOutOfScope", None,
                f"connected to a Virtual WAN hub outside the scan (platform peering to {rid.name}): its hub "
                "membership and routing are not known, so its endpoints are not judged by the vwan rules"))
            continue
        out.setdefault(rid.key, CoverageGap(
            raw, "Microsoft.Network/virtualNetworks", "OutOfScope", None,
            f"peered with {vnet_name or 'a scanned network'} but in a subscription outside the scan: "
            "its subnets, route tables and appliances are not read, so paths through it are not judged"))
    return list(out.values())


def _hub_networks(inv: Inventory) -> tuple[set[str], dict[str, str]]:
    """The hub networks that listed peerings reach: a hub connection's platform-made peering
    (``RemoteVnetToHubPeering_*`` to ``HV_*``, in a platform subscription) is no client network and never a gap of
    its own (checks-vwan.md).

    Keys whose remote address space is exactly a read hub's ``addressPrefix`` (the structural rule), and, for a hub
    that was not read (another team's subscription), the keys the platform's naming alone recognises, each with the
    id of the scanned network connected to it: that network's hub membership is then unknown (a coverage gap)."""
    prefixes = {p.strip().lower() for _, p in _refs(inv, "virtualHubs") if p}
    read: set[str] = set()
    named: dict[str, str] = {}
    for unit in inv.lists.get("virtualNetworks", {}).values():
        for parsed in unit.items:
            if parsed.record is None:
                continue
            vnet = parsed.record[0]
            for peering in vnet.peerings:
                remote, rid = peering.remote_address_prefixes, peering.remote_vnet_id
                if rid is None:
                    continue
                if len(remote) == 1 and remote[0].strip().lower() in prefixes:
                    read.add(rid.key)
                elif peering.name.lower().startswith("remotevnettohubpeering_") and rid.name.lower().startswith("hv_"):
                    named.setdefault(rid.key, vnet.id.raw)
    return read, named


def _unjudgeable_associations(inv: Inventory) -> list[CoverageGap]:
    """Associations of a scoped scan whose private link is a bare GUID or name that no RMPL read matches: it
    cannot be read by id, and it may exist in a subscription outside the scope. Neither a finding nor a pass."""
    known = set(_refs(inv, "resourceManagementPrivateLinks"))
    out = []
    for unit in inv.associations.values():
        for assoc_id, raw in unit.refs:
            if raw and parse_id(raw).opaque and raw.strip().strip("/").lower() not in known:
                out.append(CoverageGap(
                    assoc_id or raw, "Microsoft.Authorization/resourceManagementPrivateLinks", "OutOfScope", None,
                    f"the association names its private link as '{raw}', not by id; a scan scoped to some "
                    "subscriptions cannot tell whether it exists"))
    return out


def policies_to_read(inv: Inventory, sub_keys: set[str]) -> list[str]:
    """The firewall policies that firewalls attach and no list covered (a policy often lives in another
    subscription than its firewall): without the policy the firewall's SNAT is unknown, and a scan scoped to
    the firewall's subscription must judge it as the full scan does."""
    listed = _listed_keys(inv, ["firewallPolicies"])
    wanted: dict[str, str] = {}
    for raw in _refs(inv, "azureFirewalls"):
        pid = parse_id(raw)
        if pid.opaque or pid.key in listed or not pid.subscription:
            continue
        sub = pid.subscription.lower()
        if sub in sub_keys and (f"/subscriptions/{sub}", "microsoft.network/firewallpolicies") in inv.read:
            continue  # its list was read and did not return it
        wanted.setdefault(pid.key, raw)
    return list(wanted.values())


def _policy_reads(inv: Inventory, sub_keys: set[str]) -> list[Read]:
    """Reads by id of :func:`policies_to_read`, each its own unit."""
    return [Read(budget_key(raw), "target", raw, _FIREWALL_POLICIES) for raw in policies_to_read(inv, sub_keys)]


def _policy_jobs(run: Collection, sub_keys: set[str]) -> list[tuple[str, Callable[[], None]]]:
    """Reads by id of :func:`policies_to_read`, each its own unit; a failed read is a gap."""
    return [(budget_key(raw), _policy_job(run, raw)) for raw in policies_to_read(run.inv, sub_keys)]


def _policy_job(run: Collection, raw: str) -> Callable[[], None]:
    """One firewall policy read by id, its own unit; a failed read is a gap."""
    def job() -> None:
        body = run.read(raw.strip("/"), "target", raw, _FIREWALL_POLICIES)
        _prebuilt(body, ListUnit)  # a typed target here would be no policy: raises, never read as absent
        if isinstance(body, dict) and _str(body, "id"):
            run.add_unit(f"{BY_ID}{parse_id(raw).key}", list_unit("firewallPolicies", [body]))
    return job


def _target_job(run: Collection, raw_id: str) -> Callable[[], None]:
    def job() -> None:
        key = parse_id(raw_id).key
        try:
            body = run.reader.get(raw_id.strip("/"), kind="target")
        except ReadError as err:
            run.count(failed=True)
            # Kept without its traceback: its frames would keep the whole collection's call chain (every job
            # closure, the reader's locals) alive for as long as the inventory lives.
            run.inv.target_errors[key] = (raw_id, err.with_traceback(None))
            if not proves_absence(err):
                type_ = parse_id(raw_id).type or "unknown"
                run.inv.gaps.append(CoverageGap(raw_id, type_, err.code, err.status, err.message))
            return
        run.count()
        # A recorded folder may hand over the unit its typed decoder built (typed.Prebuilt).
        made = _prebuilt(body, TargetUnit)
        run.inv.targets[key] = parse_target(key, body) if made is None else made
    return job


def _nic_job(run: Collection, raw_id: str) -> Callable[[], None]:
    def job() -> None:
        body = run.read(raw_id.strip("/"), "networkInterfaces", raw_id, "Microsoft.Network/networkInterfaces")
        if body is not None:
            run.add_unit(f"{BY_ID}{parse_id(raw_id).key}", list_unit("networkInterfaces", [body]))
    return job


def _endpoints_without_ip(inv: Inventory, only: Callable[[ArmId], bool] | None) -> list[tuple[str, tuple[str, ...]]]:
    """The listed endpoints (those ``only`` lets through) that carry no IP themselves, with their NIC refs."""
    wanted: list[tuple[str, tuple[str, ...]]] = []
    for unit in inv.lists.get("privateEndpoints", {}).values():
        for ref in unit.needs_nic:
            if only is None or only(ref.id):
                wanted.append((ref.id.key, tuple(n.raw for n in ref.nics)))
    return wanted


def _listed_nics(inv: Inventory) -> tuple[set[str], set[str]]:
    """The keys of the listed NICs (a '/provders/' typo repaired) and of the endpoints they name; the NICs read
    by id are not lists (so a re-read of their endpoint reads them again, and one nothing needs is let go)."""
    units = [u for name, u in inv.lists.get("networkInterfaces", {}).items() if not name.startswith(BY_ID)]
    return set().union(*(u.keys for u in units)), set().union(*(u.named for u in units))


def nics_to_read(inv: Inventory, only: Callable[[ArmId], bool] | None = None) -> tuple[list[str], list[str]]:
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
        for raw in refs:
            fixed = repair_provider_typo(raw)
            nid = parse_id(fixed)
            if nid.opaque or nid.type_key != "microsoft.network/networkinterfaces":
                bad.setdefault(parse_id(raw).key, raw)
            elif nid.key not in listed:
                out.setdefault(nid.key, fixed)
    return list(out.values()), list(bad.values())


def named_targets(inv: Inventory) -> set[str]:
    """The keys of every target the listed endpoints and the associations name that no list returned: what a
    collection of this inventory reads by id (or found absent on evidence)."""
    named: set[str] = set().union(*(u.named for u in inv.lists.get("privateEndpoints", {}).values()),
                                  *(u.named for u in inv.associations.values()))
    return named - _listed_keys(inv, LISTED_TARGET_TYPES.values())


def targets_to_read(inv: Inventory, sub_keys: set[str], endpoints: Iterable[ListUnit] | None = None,
                    associations: Iterable[AssociationUnit] | None = None) -> tuple[list[str], list[str]]:
    """Every endpoint target that no list returned (PaaS targets, and PLS/RMPLs outside the lists), every
    RMPL an association names that no list returned, and the endpoint target ids that cannot be read at all
    because they do not parse.

    A PLS or RMPL whose subscription's list was read and did not return it is not read again: that list
    is the evidence of its absence. One outside the scan's subscriptions (or whose list failed) is read by
    id, so a scoped scan judges it on evidence, never on not having looked (checks.md). ``endpoints`` and
    ``associations`` limit the units looked at (a re-read looks at the ones it re-read).
    """
    listed = _listed_keys(inv, LISTED_TARGET_TYPES.values())
    out: dict[str, str] = {}
    bad: dict[str, str] = {}

    def consider(tid: ArmId) -> None:
        if tid.key in listed or tid.key in out:
            return
        kind = LISTED_TARGET_TYPES.get(tid.type_key or "")
        if kind and tid.subscription and tid.subscription.lower() in sub_keys and \
                (f"/subscriptions/{tid.subscription.lower()}", tid.type_key) in inv.read:
            return  # its list covered the scope and did not return it: absent, on evidence
        out[tid.key] = tid.raw

    for unit in inv.lists.get("privateEndpoints", {}).values() if endpoints is None else endpoints:
        for tid in (t for ref in unit.refs for t in ref.targets):
            if tid.is_pls_alias:
                continue  # a Private Link Service alias: not an id plmon can read (often another tenant)
            if tid.opaque:
                bad.setdefault(tid.key, tid.raw)
                continue
            consider(tid)
    for assoc in inv.associations.values() if associations is None else associations:
        for _, raw in assoc.refs:
            # A bare GUID or short name cannot be read by id; the rmpl checks match it by name instead.
            if raw and not parse_id(raw).opaque and parse_id(raw).type_key in LISTED_TARGET_TYPES:
                consider(parse_id(raw))
    return list(out.values()), list(bad.values())


_U = TypeVar("_U", ListUnit, Child, TargetUnit)


def _prebuilt(items: Any, kind: type[_U]) -> _U | None:
    """The unit a typed decoder built for ``items`` (a :class:`~plmon.monitor.collect.inventory.Prebuilt`), else None. A
    unit of another type is a bug to raise, never an empty list to parse (a Prebuilt holds no raw items)."""
    if not isinstance(items, Prebuilt):
        return None
    if not isinstance(items.unit, kind):
        raise TypeError(f"a typed decoder built a {type(items.unit).__name__} where a {kind.__name__} was read")
    return items.unit
