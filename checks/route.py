"""Route checks: UDR paths to private endpoints that skip the appliance, lack SNAT, or lead nowhere.

All of them read the decided paths of :mod:`plmon.checks.paths` (one per client subnet and endpoint IP), so
the route rule lives in one place and every finding carries the path that shows why it was raised.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import operator
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from plmon.checks.finding import Issue, Severity
from plmon.checks.paths import (
    Hop,
    IPNet,
    LaidEndpoint,
    PathResult,
    RouteCandidate,
    _net,
    client_subnets,
    endpoint_laid,
    endpoint_layouts,
    firewall_tenant,
    parse_ip,
    paths_for,
    routed_tenant,
)
from plmon.checks.registry import ISO_27001, NIST_800_53, PCI_DSS, Evidences, check
from plmon.checks.remedy import alternative, az, az_head, az_more, lines, note
from plmon.checks.snat import (
    MIXED,
    SNAT_TAG,
    FirewallVerdicts,
    SnatVerdict,
    firewall_ranges,
    firewall_verdicts,
    snats_for,
    snats_within,
    tagged_snat,
)
from plmon.checks.units import MISSING, Index, cutoff, each, each_key, lookup, plain, shared_each, unrecorded
from plmon.checks.vwan import HUB_READS, hub_next_hops, hub_snat_issues
from plmon.monitor.model.arm_id import ArmId, parse_id, repair_provider_typo
from plmon.monitor.model.snapshot import Firewall, LoadBalancer, Nic, PrivateEndpoint, Snapshot, VirtualNetwork, lower

T = TypeVar("T")
V = TypeVar("V")

PE_OVERVIEW = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview#limitations"
PE_POLICIES = "https://learn.microsoft.com/azure/private-link/disable-private-endpoint-network-policy"
INSPECT = "https://learn.microsoft.com/azure/private-link/inspect-traffic-with-azure-firewall"
FW_SNAT = "https://learn.microsoft.com/azure/firewall/snat-private-range"
UDR_DOC = "https://learn.microsoft.com/azure/virtual-network/virtual-networks-udr-overview"

# What plmon.checks.paths reads to decide a path (endpoints, client subnets and networks, route tables and the
# appliances a next hop may be): every check built on the decided paths declares it.
_PATHS = ("private_endpoints", "subnets", "virtual_networks", "route_tables", "firewalls", "load_balancers", "nics")


def _path_evidence(p: PathResult) -> dict[str, Any]:
    d = p.to_dict()
    d.pop("reasons")
    d["reasons"] = list(p.reasons)
    return d


def _group(items: Iterator[tuple[ArmId, PathResult, Any]]) -> dict[str, list[tuple[ArmId, PathResult, Any]]]:
    out: dict[str, list[tuple[ArmId, PathResult, Any]]] = defaultdict(list)
    for subject, path, extra in items:
        out[subject.key].append((subject, path, extra))
    return dict(sorted(out.items()))


def _per_subject(snap: Snapshot, index: Index, tag: Hashable,
                 select: Callable[[str, tuple[PathResult, ...]], list[T]],
                 split: Callable[[tuple[PathResult, ...]], dict[str, list[T]]] | None = None,
                 ) -> Iterator[tuple[str, list[T]]]:
    """Each finding subject of a route check (a route table, an appliance) with what ``select`` keeps of the paths
    of each endpoint whose paths name it, in the order of the tenant's paths (endpoints by key). The subject is
    judged on those alone, so after an event only the subjects whose endpoints' paths moved are judged again, and
    what ``select`` kept of an endpoint whose paths did not move is reused (plmon.checks.units). ``split`` is
    ``select`` for every subject at once (see :func:`_per_endpoint`): a hub endpoint's paths name hundreds of
    route tables, and one ``select`` per table walked all its paths each time (quadratic in the spokes)."""
    for k, per_endpoint in _per_endpoint(snap, index, tag, select, split):
        yield k, [row for rows in per_endpoint for row in rows]


def _per_endpoint(snap: Snapshot, index: Index, tag: Hashable,
                  select: Callable[[str, tuple[PathResult, ...]], V],
                  split: Callable[[tuple[PathResult, ...]], dict[str, V]] | None = None,
                  select_pe: Callable[[str, PrivateEndpoint], V] | None = None,
                  ) -> Iterator[tuple[str, list[V]]]:
    """:func:`_per_subject` with what ``select`` kept of each endpoint apart. ``split``, when given, is what
    ``select`` keeps of one endpoint for each subject its paths name (exactly ``index``'s keys), in one pass: a
    plain evaluation uses it instead of the index's keys and a ``select`` per subject. ``select_pe``, when given, is
    ``select`` of the endpoint's paths taken from the endpoint itself (under the units: from its layout's rows, making
    only the paths it keeps)."""
    if plain():
        yield from _per_endpoint_plain(snap, index, tag, select, split)
        return
    prefix = _subject(index.name, "")
    cut = len(prefix)
    endpoints = unrecorded(snap.private_endpoints)
    for key in each_key(snap, ROUTE_SUBJECTS, prefix):
        k = str(key)[cut:]
        def compute(e: str, k: str = k) -> V:
            # The endpoint's record is read through its paths entry (which reads it, and which this reads): a read of
            # its own would give each member's entry two reads, where one is kept without a set (units._frozen).
            pe = endpoints[e]
            if select_pe is not None:
                return select_pe(k, pe)
            return select(k, paths_for(snap, pe))
        yield k, shared_each((tag, k), lookup(snap, ROUTE_SUBJECTS, key), compute)


# Per layout rows list (by identity: the list is kept per layout, paths._laid_paths) and subject key, the indices of
# the rows a route check keeps for that subject: the same for every endpoint of the layout. Bounded.
_PICKED: dict[tuple[int, str, str], tuple[list[tuple[Any, ...]], tuple[int, ...]]] = {}
_PICKED_MAX = 16_384


def _picked(laid: LaidEndpoint, kind: str, key: str, test: Callable[[tuple[Any, ...], str], bool]
            ) -> list[PathResult]:
    """The endpoint's paths of the rows of its layout for which ``test(row, key)`` holds, in row order (``kind``
    names the test), the rows picked once per layout and key: what ``select`` keeps of its paths, made alone."""
    rows = laid.rows
    k = (id(rows), kind, key)
    hit = _PICKED.get(k)
    if hit is None or hit[0] is not rows:
        if len(_PICKED) >= _PICKED_MAX:
            _PICKED.clear()
        hit = _PICKED[k] = (rows, tuple(i for i, row in enumerate(rows) if test(row, key)))
    return [laid.path(i) for i in hit[1]]


def _per_endpoint_plain(snap: Snapshot, index: Index, tag: Hashable,
                        select: Callable[[str, tuple[PathResult, ...]], V],
                        split: Callable[[tuple[PathResult, ...]], dict[str, V]] | None = None,
                        ) -> Iterator[tuple[str, list[V]]]:
    """:func:`_per_endpoint` of a plain evaluation (``plmon scan``: nothing recorded, no focus): the same subjects
    in the same order (by their text), each with its endpoints by key, found in one pass over the endpoints' paths
    instead of an index table, a lookup and a memo closure per (subject, endpoint), which at 100k resources cost
    more than deciding the paths. The result is kept for the snapshot under ``tag`` (which names what ``select``
    keeps, as the daemon's memo does): both SNAT checks group the same appliance rows."""
    global _plain_last
    if _plain_last[0] is not snap:
        _plain_last = (snap, {})
    done: dict[tuple[str, Hashable], list[tuple[str, list[Any]]]] = _plain_last[1]
    found = done.get((index.name, tag))
    if found is None:
        found = done[(index.name, tag)] = list(_group_plain(snap, index, select) if split is None else
                                               _split_plain(snap, split, index is APPLIANCES))
    return iter(found)


# The last snapshot's groupings of a plain evaluation, by (index, tag).
_plain_last: tuple[Snapshot | None, dict[tuple[str, Hashable], list[tuple[str, list[Any]]]]] = (None, {})


def _split_plain(snap: Snapshot, split: Callable[[tuple[PathResult, ...]], dict[str, V]], snat: bool = False
                 ) -> Iterator[tuple[str, list[V]]]:
    """:func:`_group_plain` from one ``split`` per endpoint (of the paths :func:`_routed` keeps)."""
    members: dict[str, list[V]] = {}
    for paths in (_snat_routed(snap) if snat else [paths for _e, paths in _routed(snap)]):
        for key, kept in split(paths).items():
            got = members.get(key)
            if got is None:
                members[key] = [kept]
            else:
                got.append(kept)
    for key in sorted(members):
        yield key, members[key]


_routed_last: tuple[Snapshot | None, list[tuple[str, tuple[PathResult, ...]]]] = (None, [])
_snat_last: tuple[Snapshot | None, list[tuple[PathResult, ...]]] = (None, [])


def _routed(snap: Snapshot) -> list[tuple[str, tuple[PathResult, ...]]]:
    """Each endpoint's routed paths but those through an Azure Firewall (routed_paths), and but those through a next
    hop no route check can report (:func:`_reported_hop`), endpoints by key, those without any left out: what the
    route checks of a plain evaluation walk (the SNAT ones with more), found in one pass (routed_tenant)."""
    global _routed_last
    if _routed_last[0] is not snap:
        _routed_last = (snap, routed_tenant(snap, _reported_hop))
    return _routed_last[1]


def _snat_routed(snap: Snapshot) -> list[tuple[PathResult, ...]]:
    """What the SNAT checks of a plain evaluation walk per endpoint: its routed paths through appliances other
    than an Azure Firewall, then those through a firewall that may leave the traffic untranslated (a path through
    a firewall that SNATs it can be reported by no route check). A subject is one appliance, so its rows come
    from one of the two parts, in path order."""
    global _snat_last
    if _snat_last[0] is not snap:
        ranges: dict[str, tuple[str, ...] | None] = {}
        judged: dict[tuple[str, str], bool] = {}

        def untranslated(hop: Hop, destination: str) -> bool:
            fw = hop.firewall
            assert fw is not None
            found = judged.get((fw.key, destination))
            if found is None:
                if fw.key not in ranges:
                    ranges[fw.key] = firewall_ranges(snap, fw)
                found = judged[(fw.key, destination)] = snats_for(ranges[fw.key], destination) is not True
            return found
        def untranslated_within(hop: Hop, network: IPNet) -> bool | None:
            fw = hop.firewall
            assert fw is not None
            if fw.key not in ranges:
                ranges[fw.key] = firewall_ranges(snap, fw)
            snats = snats_within(ranges[fw.key], network)
            return None if snats == MIXED else snats is not True
        others = {e: tuple(p for p in paths if p.hop is None or p.hop.firewall is None) for e, paths in _routed(snap)}
        through = dict(firewall_tenant(snap, untranslated, untranslated_within))
        out: list[tuple[PathResult, ...]] = []
        for e in sorted(others.keys() | through.keys()):
            mine = others.get(e, ()) + through.get(e, ())
            if mine:
                out.append(mine)
        _snat_last = (snap, out)
    return _snat_last[1]


def _reported_hop(hop: Hop) -> bool:
    """Whether a route check can report a path through ``hop`` (an appliance other than an Azure Firewall) when its
    route replaced the endpoint's /32 (a path whose appliance route did not is udr-bypassed's, kept whatever its
    hop): an unresolved next hop (nva-unresolved), a NIC with IP forwarding off (nva-ip-forwarding-off) or a
    verdict other than "SNATs" (the SNAT checks report False and None), as :func:`_of_hop` judges them for every
    check. Otherwise every check walks past it, so a plain evaluation does not build it."""
    return _of_hop(hop).reported


def _group_plain(snap: Snapshot, index: Index, select: Callable[[str, tuple[PathResult, ...]], V]
                 ) -> Iterator[tuple[str, list[V]]]:
    members: dict[Hashable, list[str]] = {}
    for e in sorted(snap.private_endpoints):
        for key in dict.fromkeys(index.keys_of(snap, snap.private_endpoints[e])):
            got = members.get(key)
            if got is None:
                members[key] = [e]
            else:
                got.append(e)
    for key in sorted(members, key=str):
        k = str(key)
        yield k, [select(k, paths_for(snap, snap.private_endpoints[e])) for e in members[key]]


def _split_by(paths: tuple[PathResult, ...], keys: Callable[[PathResult], list[str]]) -> dict[str, list[PathResult]]:
    """The paths each key names, in path order: ``[p for p in paths if keys(p) == [key]]`` for every key at once
    (each of these route checks names at most one subject per path)."""
    out: dict[str, list[PathResult]] = {}
    for p in paths:
        ks = keys(p)
        if ks:
            got = out.get(ks[0])
            if got is None:
                out[ks[0]] = [p]
            else:
                got.append(p)
    return out


# Under the daemon's units every route check judges its subjects from one index (:data:`ROUTE_SUBJECTS`): an
# endpoint's paths are walked once for the subjects of all four route checks, each named ``<kind>\0<key>`` (the
# kind is the name of the check family's own index, which a plain evaluation groups by), instead of four indexes
# each deriving the same endpoint from the same paths after every event that moved them (issue 14).
SUBJECTS = "route.subjects"


def _subject(kind: str, key: str) -> str:
    return sys.intern(f"{kind}\0{key}")   # interned: the same subject is named by thousands of endpoints


def _subjects_of(name: str, keys: Any) -> Index:
    return Index(f"route.{name}", "private_endpoints",
                 lambda snap, pe: (k for p in paths_for(snap, pe) for k in keys(p)))


def _rg_and_name(rid: ArmId) -> tuple[str, str]:
    return rid.resource_group or "<resource-group>", rid.name or "<name>"


# --- route.udr-bypassed ----------------------------------------------------------------------------

def _bypassing(p: PathResult) -> list[RouteCandidate]:
    """The appliance routes among the UDRs covering the IP that did not replace the /32 (never mutated: kept per
    candidate tuple, which the paths of a group share; udr-bypassed asked it per path, ~2,400 an event behind a
    route table)."""
    nr = p.not_replacing
    if not nr:
        return _NONE_BYPASSING
    hit = _BYPASSING.get(id(nr))
    if hit is None or hit[0] is not nr:
        if len(_BYPASSING) >= _BYPASSING_MAX:
            _BYPASSING.clear()
        hit = _BYPASSING[id(nr)] = (nr, [u for u in nr if lower(u.next_hop_type) == "virtualappliance"])
    return hit[1]


_NONE_BYPASSING: list[RouteCandidate] = []
# By the candidate tuple's identity (the entry holds the tuple, so its id is not reused while kept), bounded.
_BYPASSING: dict[int, tuple[tuple[RouteCandidate, ...], list[RouteCandidate]]] = {}
_BYPASSING_MAX = 65_536


def _bypassed_table(p: PathResult) -> list[str]:
    return _bypassed_key(p.route_table_id, p.replaced_by, p.not_replacing)


def _bypassed_key(table_id: ArmId | None, replaced_by: tuple[RouteCandidate, ...],
                  not_replacing: tuple[RouteCandidate, ...]) -> list[str]:
    """:func:`_bypassed_table` of a path with these fields (a layout's entry has them without a path)."""
    if table_id is None or replaced_by:
        return []
    return [table_id.key] if any(lower(u.next_hop_type) == "virtualappliance" for u in not_replacing) else []


BYPASSED = _subjects_of("bypassed_tables", _bypassed_table)


@check(
    id="route.udr-bypassed", title="Appliance route does not apply to private endpoint traffic",
    severity=Severity.HIGH,
    rationale="An endpoint's /32 system route beats a broader user-defined route unless the endpoint's "
              "subnet has privateEndpointNetworkPolicies enabled for route tables and the route is at least "
              "as specific as the endpoint VNet's address space; a 0.0.0.0/0 to a firewall never applies. "
              "Traffic to the endpoint then silently skips the inspection the route table was meant to force.",
    remediation="Add a /32 route per endpoint IP to the appliance, or enable privateEndpointNetworkPolicies "
                "(RouteTableEnabled or Enabled) on the endpoint's subnet and use a route at least as specific "
                "as the VNet address space.",
    references=(PE_OVERVIEW, PE_POLICIES, INSPECT), controls=("MCSB NS-3", "MCSB NS-1"),
    reads=_PATHS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "SC-7",
                  "SC-7 a: traffic to the endpoint skips the firewall the route table was meant to "
                  "force it through"),
        Evidences(NIST_800_53, "AC-4",
                  "AC-4: the flow control the appliance enforces is not applied to private endpoint "
                  "traffic"),
        Evidences(ISO_27001, "A.8.20",
                  "A.8.20: endpoint traffic skips the inspection the network's route table was meant "
                  "to force"),
        Evidences(PCI_DSS, "1.3.1",
                  "1.3.1: traffic to the endpoint bypasses the NSC meant to restrict it (when the "
                  "endpoint is in the CDE)"),
    ),
)
def udr_bypassed(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    judged: Iterable[tuple[str, list[list[PathResult]]]]
    if plain():
        judged = ((k, [paths]) for k, paths in _per_subject(snap, BYPASSED, "route.udr-bypassed", _bypassed_paths,
                                                            lambda paths: _split_by(paths, _bypassed_table)))
    else:
        judged = _per_endpoint(snap, BYPASSED, "route.udr-bypassed", _bypassed_paths,
                               select_pe=lambda key, pe: _bypassed_paths_of(snap, key, pe))
    for _key, per_endpoint in judged:
        last = next((paths for paths in reversed(per_endpoint) if paths), None)
        if last is None:
            continue
        table = last[-1].route_table_id
        assert table is not None
        rg, name = _rg_and_name(table)
        endpoints: list[dict[str, Any]] = []
        fixes: list[str] = []
        for paths in per_endpoint:
            kept = paths.parts if isinstance(paths, _Bypassed) else None
            if kept is None or kept[0] != rg or kept[1] != name:
                kept = (rg, name, *_bypass_parts(snap, rg, name, paths))
                if isinstance(paths, _Bypassed):
                    paths.parts = kept
            endpoints += kept[2]
            fixes += kept[3]
        names = sorted({e["private_endpoint"].rsplit("/", 1)[-1] for e in endpoints})
        yield Issue(table, f"Route table {table.name} sends traffic through a virtual appliance, but traffic "
                    f"to {len(endpoints)} private endpoint IP(s) ({', '.join(names)}) skips it: the endpoint "
                    "/32 route wins.",
                    {"route_table": table.raw, "endpoints": endpoints,
                     "rule": "a UDR replaces an endpoint's /32 only if it is a /32, or if the endpoint subnet's "
                             "privateEndpointNetworkPolicies is Enabled/RouteTableEnabled and the UDR prefix "
                             "length >= the endpoint VNet address-space prefix length; 0.0.0.0/0 never does"},
                    lines(*dict.fromkeys(fixes)))


class _Bypassed(list[PathResult]):
    """One endpoint's paths that bypass one route table's appliance route, as the daemon keeps them (a unit of
    ``route.udr-bypassed``), with the evidence and fixes built from them (``parts``: the table's resource group and
    name they were built for, then both): a table judged again after an event that moved a few of its endpoints
    builds only theirs (issue 14)."""

    __slots__ = ("parts",)

    def __init__(self, paths: Iterable[PathResult]) -> None:
        super().__init__(paths)
        self.parts: tuple[str, str, list[dict[str, Any]], list[str]] | None = None


def _bypassed_paths_of(snap: Snapshot, key: str, pe: PrivateEndpoint) -> list[PathResult]:
    """:func:`_bypassed_paths` of ``pe``'s paths, only those made where its layout's rows say so."""
    laid = endpoint_laid(snap, pe)
    if laid is None:
        return _bypassed_paths(key, paths_for(snap, pe))
    return _Bypassed(_picked(laid, "bypassed", key, _bypasses))


def _bypasses(row: tuple[Any, ...], key: str) -> bool:
    """Whether the path of a layout row (paths._laid_paths) bypasses the appliance route of table ``key``."""
    return _bypassed_key(row[5], row[3], row[4]) == [key]


def _bypassed_paths(key: str, paths: tuple[PathResult, ...]) -> list[PathResult]:
    """``[p for p in paths if _bypassed_table(p) == [key]]``, testing the table first (a list per path otherwise)."""
    return _Bypassed([p for p in paths if p.not_replacing and p.route_table_id is not None
                      and p.route_table_id.key == key and not p.replaced_by and _bypassing(p)])


class _BypassMade:
    """What the endpoints of one route table's udr-bypassed finding share, built once per table judged: the route
    fix's quoted front (resource group, table name and flags), the bypassed routes' evidence per candidate tuple
    (the paths of a group share theirs), the subnet fix per endpoint subnet and address space. A table behind a hub
    has ~600 endpoints, each of which quoted ~15 arguments and built its routes' dicts anew (issue 14)."""

    __slots__ = ("alternatives", "head", "routes")

    def __init__(self, rg: str, name: str) -> None:
        self.head = az_head("network", "route-table", "route", "create", "--resource-group", rg,
                            "--route-table-name", name, "--name")
        self.routes: dict[int, tuple[tuple[RouteCandidate, ...], str | None, list[dict[str, Any]]]] = {}
        self.alternatives: dict[tuple[str, str | None], str] = {}

    def bypassed(self, p: PathResult) -> tuple[str | None, list[dict[str, Any]]]:
        """The first bypassing route's next hop IP and every bypassing route's evidence (dicts shared, never
        mutated), kept by the candidate tuple's identity (held by the entry, so its id is not reused meanwhile)."""
        nr = p.not_replacing
        hit = self.routes.get(id(nr))
        if hit is None or hit[0] is not nr:
            bypassing = _bypassing(p)
            hit = self.routes[id(nr)] = (nr, bypassing[0].next_hop_ip, [
                {"name": u.route_name, "prefix": u.prefix, "prefix_length": u.prefix_length,
                 "next_hop_ip": u.next_hop_ip} for u in bypassing])
        return hit[1], hit[2]

    def alternative(self, subnet_id: str, vnet_prefix: str | None) -> str:
        """The subnet's network-policies fix, once per (endpoint subnet, address space entry)."""
        key = (subnet_id, vnet_prefix)
        got = self.alternatives.get(key)
        if got is None:
            got = self.alternatives[key] = alternative(az(
                "network", "vnet", "subnet", "update", "--ids", subnet_id, "--private-endpoint-network-policies",
                "Enabled", comment=f"then a route at least as specific as {vnet_prefix or 'the VNet address space'} "
                                   "applies"))
        return got


# What the endpoints of a table share, per (resource group, table name): kept across calls (one per endpoint in
# the daemon), bounded. Its entries hold what they are keyed by, so a kept one is never taken for another's.
_MADE: dict[tuple[str, str], _BypassMade] = {}
_MADE_MAX = 256   # tables; each keeps at most _MADE_PER_TABLE entries, so what old snapshots it pins stays small
_MADE_PER_TABLE = 512


def _made_for(rg: str, name: str) -> _BypassMade:
    made = _MADE.get((rg, name))
    if made is None:
        if len(_MADE) >= _MADE_MAX:
            _MADE.clear()
        made = _MADE[(rg, name)] = _BypassMade(rg, name)
    elif len(made.routes) + len(made.alternatives) > _MADE_PER_TABLE:
        made.routes.clear()   # candidate tuples of paths gone would stay alive here
        made.alternatives.clear()
    return made


def _bypass_parts(snap: Snapshot, rg: str, name: str, paths: list[PathResult]
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """The evidence of each endpoint IP of ``paths`` (in their order) and the fixes for it, for the table in
    ``rg`` named ``name``: what a finding of udr-bypassed holds of one endpoint (all of them, in a plain
    evaluation). Reads of the endpoint subnets are the paths' own (their memo entries read them). What the
    table's endpoints share is built once (:class:`_BypassMade`)."""
    made = _made_for(rg, name)
    endpoints: dict[str, dict[str, Any]] = {}
    fixes: list[str] = []
    for p in paths:
        pe = p.endpoint
        assert pe is not None
        ek = f"{pe.key}|{p.destination}"
        got = endpoints.get(ek)
        if got is None:
            ip, routes = made.bypassed(p)
            ep_subnet = snap.subnet_of(pe)
            got = endpoints[ek] = {
                "private_endpoint": pe.id.raw, "ip": p.destination,
                "endpoint_subnet": pe.subnet_id.raw if pe.subnet_id else None,
                "privateEndpointNetworkPolicies": p.endpoint_policy,
                "privateEndpointNetworkPolicies_raw": ep_subnet.private_endpoint_network_policies
                if ep_subnet else None,
                "endpoint_vnet_prefix": p.vnet_prefix,
                "bypassed_routes": list(routes),
                "client_subnets": [], "paths": [],
            }
            fixes.append(az_more(made.head, f"pe-{p.destination.replace('.', '-').replace(':', '-')}",
                                 "--address-prefix", f"{p.destination}/32", "--next-hop-type", "VirtualAppliance",
                                 "--next-hop-ip-address", ip or "<appliance-ip>"))
            if ep_subnet is not None and lower(p.endpoint_policy) not in ("enabled", "routetableenabled"):
                fixes.append(made.alternative(ep_subnet.id.raw, p.vnet_prefix))
        got["client_subnets"].append(p.subnet_id.raw)
        got["paths"].append(p.path_text())
    return list(endpoints.values()), fixes


# --- appliances on the path ------------------------------------------------------------------------

def _appliance_keys(p: PathResult) -> list[str]:
    """The subjects _appliance_verdicts names for ``p``, without judging SNAT (which reads the firewall policy)."""
    if not p.via_appliance or p.hop is None or p.hop.kind == "unresolved":
        return []
    return _of_hop(p.hop).keys


def _hop_verdicts(hop: Hop, tagged: Callable[[Nic | None, LoadBalancer | None], SnatVerdict]
                  ) -> list[tuple[ArmId, SnatVerdict | None]]:
    """The appliance rule, in one place: the subjects a path through the resolved next hop ``hop`` names, each with
    its tag verdict (``tagged``), a firewall's None (it depends on the destination and reads the policy). A load
    balancer's backend NICs are the subjects unless none of them (nor the balancer) declares anything: then the
    balancer in front is where to say it once."""
    if hop.firewall is not None:
        return [(hop.firewall.id, None)]
    if hop.nic is not None:
        return [(hop.nic.id, tagged(hop.nic, None))]
    if hop.load_balancer is not None:
        lb = hop.load_balancer
        if not hop.backend_nics:
            return [(lb.id, tagged(None, lb))]
        verdicts = [(nic, tagged(nic, lb)) for nic in hop.backend_nics]
        if all(v.snats is None and v.raw is None for _, v in verdicts):
            return [(lb.id, verdicts[0][1])]
        return [(nic.id, v) for nic, v in verdicts]
    return []


class _OfHop:
    """What every route check makes of one next hop, whatever the path through it (the paths of a group share their
    Hop): its subjects with their tag verdicts (a firewall's None), their keys, the NICs with IP forwarding off,
    and whether a route check can report a path through it (:func:`_reported_hop`)."""

    __slots__ = ("by_key", "forwarding_off", "hop", "keys", "reported", "rows", "subjects")

    def __init__(self, hop: Hop) -> None:
        self.hop = hop
        self.rows = _hop_verdicts(hop, tagged_snat) if hop.kind != "unresolved" else []
        self.keys = [s.key for s, _v in self.rows]
        self.forwarding_off = _nics_forwarding_off(hop)
        self.reported = hop.kind == "unresolved" or bool(self.forwarding_off) or not self.rows or \
            any(v is None or v.snats is not True for _s, v in self.rows)
        self.subjects: list[str] | None = None   # _hop_subjects, on first use
        self.by_key: dict[str, tuple[tuple[ArmId, SnatVerdict | None], ...]] | None = None   # keyed(), on first use

    def keyed(self, key: str) -> tuple[tuple[ArmId, SnatVerdict | None], ...]:
        """The rows whose subject's key is ``key``, in order: what _appliance_rows keeps of a path through the hop
        for one appliance (it filtered every row of every path by key, ~1,200 times an event behind a table)."""
        by = self.by_key
        if by is None:
            by = {}
            for s, v in self.rows:
                by[s.key] = (*by.get(s.key, ()), (s, v))
            self.by_key = by
        return by.get(key, ())


# By the hop's identity, across snapshots: a hop holds the records it names (a verdict reads their tags only), and the
# daemon keeps its hops across events as shared work, so the ~600 endpoints behind a changed route table name hops
# already judged (tagged_snat per backend NIC was ~15% of such an event at 100k resources). Bounded.
_OF_HOP: dict[int, _OfHop] = {}
_OF_HOP_MAX = 20_000


def _of_hop(hop: Hop) -> _OfHop:
    hit = _OF_HOP.get(id(hop))
    if hit is None or hit.hop is not hop:
        if len(_OF_HOP) >= _OF_HOP_MAX:
            _OF_HOP.clear()
        hit = _OF_HOP[id(hop)] = _OfHop(hop)
    return hit


APPLIANCES = _subjects_of("appliances", _appliance_keys)


def _appliance_verdicts(snap: Snapshot, paths: Iterable[PathResult], *, firewalls: bool = True,
                        ) -> Iterator[tuple[ArmId, PathResult, SnatVerdict | None]]:
    """(subject, path, SNAT verdict) for every path whose effective next hop is a resolved appliance.

    A verdict depends only on the appliance and the destination (a firewall's private ranges against the
    IP; a tag on a NIC or the load balancer in front), so it is judged once per appliance and destination and
    shared by every client subnet's path there: 155k judgements for 7 firewalls otherwise (issue 14). With
    ``firewalls=False`` a firewall's verdict is left to the caller (None): it reads the firewall policy.
    """
    judged: dict[tuple[str, ...], SnatVerdict] = {}

    def firewall(fw: Firewall, ip: str) -> SnatVerdict:
        return firewall_verdicts(snap, fw).of(ip)   # kept per firewall: judged once per destination

    def tagged(nic: Nic | None, lb: LoadBalancer | None) -> SnatVerdict:
        key = ("tag", nic.key if nic else "", lb.key if lb else "")
        if key not in judged:
            judged[key] = tagged_snat(nic, lb)
        return judged[key]

    for p in paths:
        if not p.via_appliance or p.hop is None or p.hop.kind == "unresolved":
            continue
        hop = p.hop
        for subject_id, v in _hop_verdicts(hop, tagged):
            if v is None and hop.firewall is not None:
                yield subject_id, p, firewall(hop.firewall, p.destination) if firewalls else None
            else:
                yield subject_id, p, v


def _fix_snat(snap: Snapshot, subject: ArmId, verdict: SnatVerdict) -> str:
    fw = snap.firewalls.get(subject.key)
    if fw is not None and verdict.model == "firewall-policy" and fw.firewall_policy_id is not None:
        return az("network", "firewall", "policy", "update", "--ids", fw.firewall_policy_id.raw,
                  "--private-ranges", "255.255.255.255/32",
                  comment="always SNAT (or list private ranges that exclude the endpoint IPs)")
    if fw is not None:
        return az("network", "firewall", "update", "--ids", fw.id.raw, "--private-ranges", "255.255.255.255/32",
                  comment="always SNAT (or list private ranges that exclude the endpoint IPs)")
    kind = "lb" if subject.key in snap.load_balancers else "nic"
    return lines(note("Configure source NAT on the appliance for traffic to the endpoint IPs, then record it:"),
                 az("network", kind, "update", "--ids", subject.raw, "--set", f"tags.{SNAT_TAG}=always"))


def _policy_unread(snap: Snapshot, subject: ArmId, verdict: SnatVerdict) -> bool:
    """A firewall whose attached policy plmon could not read: its SNAT is unknown because plmon did not see
    it (the collection recorded the gap), which is not what route.nva-snat-unknown reports."""
    fw = snap.firewalls.get(subject.key)
    return verdict.model == "firewall-policy" and fw is not None and fw.firewall_policy_id is not None and \
        fw.firewall_policy_id.key not in snap.firewall_policies


_Row = tuple[ArmId, PathResult, SnatVerdict | None]
# What a SNAT check made of one endpoint's rows: the firewall verdicts it read (a kept
# :class:`~plmon.checks.snat.FirewallVerdicts`, :data:`_NO_FIREWALL` without a firewall), the rows it reports and
# their evidence; when it reports none, the verdicts alone (most of the ~43k endpoints behind an appliance at 100k
# resources: no tuple each).
_Judged = tuple[object, tuple[tuple[ArmId, PathResult, SnatVerdict], ...], tuple[dict[str, Any], ...]] | object


class _Rows:
    """One endpoint's rows for one appliance (:func:`_appliance_rows`), with what each SNAT check made of them.

    The daemon keeps one per endpoint behind an appliance (~43k at 100k resources) and a hub appliance's finding
    is judged from ~4,500 of them: an event that touches one endpoint (or the ~600 behind a route table) replaces
    only those, so each check judges again only the rows of the entries that are new, and takes what it made of
    the others (``missing``/``unknown``, for ``route.nva-missing-snat`` and ``route.nva-snat-unknown``) while the
    firewall verdicts they read are the same (issue 14)."""

    # The rows are kept as their paths, with their subject and verdicts once when they share them (a firewall's rows
    # name the firewall and leave its verdicts out): a tuple per row cost ~9 MB of the daemon's RSS at 100k. Rows
    # the cut-off recomputes from an endpoint's layout (:func:`_appliance_rows_of`, ``lazy``) keep the layout's rows
    # and the indices picked until their paths are first read (:attr:`paths`): it compares what they read without
    # them (_same_rows), and drops most of them as unmoved.
    __slots__ = ("_laid", "_paths", "_picked", "firewalls", "missing", "subjects", "tagged", "unknown", "verdicts")

    def __init__(self, rows: list[_Row], firewalls: dict[tuple[str, str], tuple[Firewall, str]],
                 tagged: frozenset[bool | None]) -> None:
        self._paths: tuple[PathResult, ...] | None = tuple(p for _s, p, _v in rows)
        self._laid: LaidEndpoint | None = None
        self._picked: tuple[int, ...] = ()
        first = rows[0][0] if rows else None
        self.subjects: ArmId | tuple[ArmId, ...] | None = first if all(s is first for s, _p, _v in rows) else \
            tuple(s for s, _p, _v in rows)
        self.verdicts: tuple[SnatVerdict | None, ...] | None = None if all(v is None for _s, _p, v in rows) else \
            tuple(v for _s, _p, v in rows)
        self.firewalls, self.tagged = firewalls, tagged
        self.missing: _Judged = None
        self.unknown: _Judged = None

    @classmethod
    def made(cls, paths: list[PathResult], subjects: list[ArmId], verdicts: list[SnatVerdict | None],
             firewalls: dict[tuple[str, str], tuple[Firewall, str]], tagged: frozenset[bool | None]) -> _Rows:
        """What ``_Rows(list(zip(subjects, paths, verdicts)), firewalls, tagged)`` holds, from the rows' columns."""
        self = cls.__new__(cls)
        self._paths = tuple(paths)
        self._laid, self._picked = None, ()
        first = subjects[0] if subjects else None
        self.subjects = first if all(s is first for s in subjects) else tuple(subjects)
        self.verdicts = None if all(v is None for v in verdicts) else tuple(verdicts)
        self.firewalls, self.tagged = firewalls, tagged
        self.missing = None
        self.unknown = None
        return self

    @property
    def paths(self) -> tuple[PathResult, ...]:
        """The rows' paths, in row order: made from the endpoint's layout rows the first time they are read (the
        very paths :meth:`~plmon.checks.paths.LaidEndpoint.path` makes, whenever it is asked)."""
        got = self._paths
        if got is None:
            laid = self._laid
            assert laid is not None
            got = self._paths = tuple(map(laid.path, self._picked))
            self._laid, self._picked = None, ()
        return got

    def size(self) -> int:
        """How many rows (without making their paths)."""
        got = self._paths
        return len(got) if got is not None else len(self._picked)

    def read(self) -> list[tuple[Any, ...]]:
        """(hop, destination, endpoint, client subnet id, winning route) per row: what the cut-off compares of each
        path (:func:`_same_rows`), taken from the layout rows while the paths are not made."""
        got = self._paths
        if got is not None:
            return [(p.hop, p.destination, p.endpoint, p.subnet_id, p.route) for p in got]
        laid = self._laid
        assert laid is not None
        return laid.reads(self._picked)

    @property
    def rows(self) -> list[_Row]:
        """(subject, path, verdict) per row, in path order (a firewall's verdict None: it reads the policy)."""
        n = len(self.paths)
        subjects = self.subjects if type(self.subjects) is tuple else (self.subjects,) * n
        verdicts = self.verdicts if self.verdicts is not None else (None,) * n
        return list(zip(subjects, self.paths, verdicts, strict=True))   # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.rows, self.firewalls, self.tagged))


def _appliance_rows_of(snap: Snapshot, key: str, pe: PrivateEndpoint, lazy: bool = False) -> _Rows:
    """:func:`_appliance_rows` of ``pe``'s paths, only those through the appliance made where its layout's rows say
    so (a route event's ~600 endpoints leave or join a hub appliance: their rows are mostly none). ``lazy``: their
    paths made only when first read (the cut-off's recompute, whose rows are mostly found unmoved and dropped; rows
    kept by a judgement are made at once, so a later event that judges them, a policy's, does not make them)."""
    laid = endpoint_laid(snap, pe)
    if laid is None:
        return _appliance_rows(snap, key, paths_for(snap, pe))
    rows = laid.rows
    k = (id(rows), key)
    tpl = _ROW_TEMPLATES.get(k)
    if tpl is None or tpl[0] is not rows:
        if len(_ROW_TEMPLATES) >= _PICKED_MAX:
            _ROW_TEMPLATES.clear()
        tpl = _ROW_TEMPLATES[k] = _row_template(rows, key)
    _rows, picked, subjects, verdicts, tagged, through_firewall = tpl
    got = _Rows.__new__(_Rows)
    got._paths, got._laid, got._picked = (None, laid, picked) if picked and lazy else \
        (tuple(map(laid.path, picked)), None, ())
    got.subjects, got.verdicts, got.tagged = subjects, verdicts, tagged
    got.firewalls = _NO_FIREWALLS
    if through_firewall:
        destination = laid.destination
        got.firewalls = {(fw.key, destination): (fw, destination) for fw in
                         (rows[i][6].firewall for i in through_firewall)}
    got.missing = got.unknown = None
    return got


# What _appliance_rows keeps of the paths of one layout's rows for one appliance, per (rows list, appliance key): the
# same for every endpoint of the layout but the paths and the destination of a firewall's rows (_row_template).
_ROW_TEMPLATES: dict[tuple[int, str], tuple[Any, ...]] = {}


def _row_template(rows: list[tuple[Any, ...]], key: str) -> tuple[Any, ...]:
    """(rows, the row index of each of the appliance's rows, their subjects and verdicts as :meth:`_Rows.made`
    keeps them, the tag verdicts present, the row indices whose verdict is a firewall's to judge): what
    :func:`_appliance_rows` gives any endpoint laid out as ``rows``, but its paths and its firewall map."""
    picked: list[int] = []
    subjects: list[ArmId] = []
    verdicts: list[SnatVerdict | None] = []
    tagged: set[bool | None] = set()
    firewalls: list[int] = []
    for i, row in enumerate(rows):
        hop = row[6]
        if not row[7] or hop is None or hop.kind == "unresolved":
            continue
        for subject_id, v in _of_hop(hop).keyed(key):
            picked.append(i)
            subjects.append(subject_id)
            verdicts.append(v)
            if v is not None:
                tagged.add(v.snats)
            elif hop.firewall is not None and i not in firewalls:
                firewalls.append(i)
    first = subjects[0] if subjects else None
    frozen = frozenset(tagged)
    return (rows, tuple(picked), first if all(s is first for s in subjects) else tuple(subjects),
            None if all(v is None for v in verdicts) else tuple(verdicts), _TAGGED.setdefault(frozen, frozen),
            tuple(firewalls))


def _appliance_rows(snap: Snapshot, key: str, paths: Iterable[PathResult]) -> _Rows:
    """One endpoint's rows for the appliance ``key`` in path order, a firewall's verdict left out (it reads the
    policy, so a policy change judges the firewall again without recomputing the rows), with the (firewall,
    destination) pairs and the tag verdicts present, so an endpoint with nothing to report is skipped at once.
    Built in one pass into the kept form (:meth:`_Rows.made`): the daemon makes ~1,200 an event behind a table."""
    kept: list[PathResult] = []
    subjects: list[ArmId] = []
    verdicts: list[SnatVerdict | None] = []
    firewalls: dict[tuple[str, str], tuple[Firewall, str]] = {}
    tagged: set[bool | None] = set()
    for p in paths:
        hop = p.hop
        if not p.via_appliance or hop is None or hop.kind == "unresolved":
            continue
        for subject_id, v in _of_hop(hop).keyed(key):   # each hop judged once a pass
            kept.append(p)
            subjects.append(subject_id)
            verdicts.append(v)
            if v is not None:
                tagged.add(v.snats)
            elif hop.firewall is not None:
                firewalls[(hop.firewall.key, p.destination)] = (hop.firewall, p.destination)
    frozen = frozenset(tagged)
    # The daemon keeps these for every endpoint behind an appliance (~43k at 100k resources): the few distinct tag
    # sets and the empty firewall map are shared, not one each (never mutated).
    return _Rows.made(kept, subjects, verdicts, firewalls or _NO_FIREWALLS, _TAGGED.setdefault(frozen, frozen))


_NO_FIREWALLS: dict[tuple[str, str], tuple[Firewall, str]] = {}
_TAGGED: dict[frozenset[bool | None], frozenset[bool | None]] = {}


def _rows_again(snap: Snapshot, key: tuple[str, str, str]) -> Any:
    """What :func:`_snat_issues` keeps under ``("route.appliance-rows", appliance, endpoint)``, from the key; an
    endpoint whose paths no longer name the appliance (no row) is gone from its subjects: nothing is kept for it."""
    pe = snap.private_endpoints.get(key[2])
    if pe is None:
        return MISSING
    rows = _appliance_rows_of(snap, key[1], pe, lazy=True)
    return rows if rows.size() else MISSING


def _same_rows(a: _Rows, b: _Rows) -> bool:
    """Whether an endpoint's rows for an appliance give the SNAT checks the same judgement and evidence: the same
    subjects, verdicts, firewalls (the very records: a firewall's verdict reads it) and next hops (the same objects),
    endpoints named alike (:func:`_same_endpoint`), and paths that read the same (client subnet, destination, winning
    route). Then the appliance is not judged again when an event recomputed them (units.cutoff)."""
    fws_a, fws_b = a.firewalls, b.firewalls
    n = a.size()
    if n != b.size() or a.tagged != b.tagged or fws_a.keys() != fws_b.keys() or \
            any(fws_a[k][0] is not fws_b[k][0] for k in fws_a):
        return False
    sa, sb = a.subjects, b.subjects
    if type(sa) is tuple or type(sb) is tuple:
        ta = sa if type(sa) is tuple else (sa,) * n
        tb = sb if type(sb) is tuple else (sb,) * n
        if any(x.raw != y.raw for x, y in zip(ta, tb, strict=True)):   # type: ignore[union-attr]
            return False
    elif sa is not sb and (sa is None or sb is None or sa.raw != sb.raw):   # type: ignore[union-attr]
        return False
    va, vb = a.verdicts, b.verdicts
    if va is not vb and (va is None or vb is None or va != vb):
        return False
    # identity first throughout: the paths of an endpoint recomputed after an event mostly hold the same records;
    # compared as the rows read them, so rows not yet made into paths stay so (the new rows are mostly kept: the old)
    for (hop_a, dest_a, pe_a, sid_a, ra), (hop_b, dest_b, pe_b, sid_b, rb) in zip(a.read(), b.read(), strict=True):
        if hop_a is not hop_b or dest_a != dest_b or (pe_a is not pe_b and not _same_endpoint(pe_a, pe_b)) or \
                (sid_a is not sid_b and sid_a.raw != sid_b.raw):
            return False
        if ra is not rb and (ra is None or rb is None or not _same_route(ra, rb)):
            return False
    return True


def _same_route(ra: RouteCandidate, rb: RouteCandidate) -> bool:
    """``_route_read(ra) == _route_read(rb)``, answered once per pair of route objects: the ~600 endpoints' rows a
    cut-off compares after a route event hold a few dozen distinct routes (their layouts'), and each row compared
    them field by field again (~9k times, most of the cut-off's cost, issue 14)."""
    k = (id(ra), id(rb))
    hit = _SAME_ROUTES.get(k)
    if hit is None or hit[0] is not ra or hit[1] is not rb:
        if len(_SAME_ROUTES) >= _SAME_ROUTES_MAX:
            _SAME_ROUTES.clear()
        hit = _SAME_ROUTES[k] = (ra, rb, _route_read(ra) == _route_read(rb))
    return hit[2]


# By the pair's identities (the entry holds both routes, so neither id is reused while it is kept), bounded.
_SAME_ROUTES: dict[tuple[int, int], tuple[RouteCandidate, RouteCandidate, bool]] = {}
_SAME_ROUTES_MAX = 16_384


def _same_endpoint(a: PrivateEndpoint | None, b: PrivateEndpoint | None) -> bool:
    """Whether two rows name the same endpoint as the SNAT evidence shows it (its id and name, in the row and its
    path text): an event that changes an endpoint in anything else (its connection or provisioning state) makes a
    new record whose rows read the same, and judging its hub appliance again walked ~4,500 endpoints (issue 14)."""
    return a is b or (a is not None and b is not None and a.id.raw == b.id.raw and a.name == b.name)


def _route_read(r: RouteCandidate) -> tuple[str | None, ...]:
    """What a row's evidence shows of its route (``to_dict``'s values, its describe() from them), without a dict
    per route: the cut-off compares the ~600 endpoints' rows behind a changed route table route by route."""
    return (r.prefix, r.origin, r.next_hop_type, r.next_hop_ip, r.route_name,
            r.route_table_id.raw if r.route_table_id else None, r.endpoint_id.raw if r.endpoint_id else None)


cutoff("route.appliance-rows", _rows_again, _same_rows)


def _rows_of_hop(snap: Snapshot, p: PathResult) -> list[tuple[ArmId, SnatVerdict | None]]:
    """(subject, verdict) of :func:`_appliance_verdicts` (``firewalls=False``) for a path through ``p.hop``."""
    assert p.hop is not None
    return _of_hop(p.hop).rows


def _appliance_rows_by_subject(snap: Snapshot, paths: tuple[PathResult, ...]
                               ) -> dict[str, tuple[list[_Row], dict[tuple[str, str], tuple[Firewall, str]],
                                                    frozenset[bool | None]]]:
    """:func:`_appliance_rows` for every appliance ``paths`` name (the keys :func:`_appliance_keys` gives, which
    name the same subjects), from one pass of :func:`_appliance_verdicts` instead of one per appliance (a plain
    evaluation's split: each hop's rows judged once per snapshot)."""
    by_key: dict[str, list[tuple[ArmId, PathResult, SnatVerdict | None]]] = {}
    for p in paths:
        if not p.via_appliance or p.hop is None or p.hop.kind == "unresolved":
            continue
        for subject_id, v in _rows_of_hop(snap, p):
            x = (subject_id, p, v)
            got = by_key.get(subject_id.key)
            if got is None:
                by_key[subject_id.key] = [x]
            else:
                got.append(x)
    out: dict[str, tuple[list[_Row], dict[tuple[str, str], tuple[Firewall, str]], frozenset[bool | None]]] = {}
    for key, rows in by_key.items():
        firewalls = {(p.hop.firewall.key, p.destination): (p.hop.firewall, p.destination)
                     for _, p, v in rows if v is None and p.hop is not None and p.hop.firewall is not None}
        # a plain evaluation's: (rows, firewalls, tag verdicts), what a _Rows iterates as, without its compaction
        out[key] = (rows, firewalls, frozenset(v.snats for _, _, v in rows if v is not None))
    return out


# A SNAT row's evidence but its verdict, per path object (kept across events by the daemon's memo), bounded.
_path_parts: dict[int, tuple[PathResult, dict[str, Any]]] = {}
_PATH_PARTS_MAX = 100_000


def _kept_dict(cache: dict[int, tuple[T, dict[str, Any]]], obj: T,
               build: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """``build(obj)``, kept by the object's identity (the entry holds the object, so its id is not reused while
    kept); the cache is emptied when it reaches its bound."""
    hit = cache.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    if len(cache) >= _PATH_PARTS_MAX:
        cache.clear()
    made = build(obj)
    cache[id(obj)] = (obj, made)
    return made


def _path_part(p: PathResult) -> dict[str, Any]:
    return _kept_dict(_path_parts, p, lambda p: {
        "path": p.path_text(), "client_subnet": p.subnet_id.raw, "endpoint_ip": p.destination,
        "private_endpoint": p.endpoint.id.raw if p.endpoint else None,
        "route": _route_dict(p.route) if p.route else None})


# A route's evidence dict per route object, bounded: the paths of a group share their winning route, and a hub
# appliance's ~9k SNAT rows each held a copy of one of a few hundred (~5 MB of the daemon's biggest finding at 100k
# resources, built again on the first event that opens it). Shared as the verdicts' dicts are: never mutated.
_route_dicts: dict[int, tuple[RouteCandidate, dict[str, Any]]] = {}


def _route_dict(r: RouteCandidate) -> dict[str, Any]:
    return _kept_dict(_route_dicts, r, RouteCandidate.to_dict)


_UNKEPT: Any = object()   # the rows read several firewalls' verdicts: what a check made of them is not kept
_NO_FIREWALL: Any = object()   # the rows read no firewall's verdict (tag verdicts are the rows' own)


def _verdicts_read(snap: Snapshot, firewalls: dict[tuple[str, str], tuple[Firewall, str]],
                   last: list[Any]) -> object:
    """The kept verdicts (:class:`~plmon.checks.snat.FirewallVerdicts`) of the firewall an endpoint's rows name, noting
    the policy read that judging them makes: what a SNAT check made of the rows holds while this is the same object
    (:data:`_NO_FIREWALL` without a firewall). ``last``: [firewall, its verdicts] of the subject's previous
    endpoint (a subject is one appliance: its endpoints name the same firewall)."""
    if not firewalls:
        return _NO_FIREWALL
    it = iter(firewalls.values())
    fw = next(it)[0]
    for other, _ip in it:
        if other is not fw:
            return _UNKEPT
    if last[0] is fw:
        return last[1]
    held = firewall_verdicts(snap, fw)
    last[:] = [fw, held]
    return held


def _snat_issues(snap: Snapshot, want: bool | None) -> Iterator[Issue]:
    held: dict[str, FirewallVerdicts] = {}   # this call's, per firewall key: one policy read per firewall

    def verdicts_of(fw: Firewall) -> FirewallVerdicts:
        verdicts = held.get(fw.key)
        if verdicts is None or verdicts.firewall is not fw:
            verdicts = held[fw.key] = firewall_verdicts(snap, fw)   # notes the policy read, kept verdicts or not
        return verdicts

    def firewall(fw: Firewall, ip: str) -> SnatVerdict:
        return verdicts_of(fw).of(ip)

    def reports(firewalls: dict[tuple[str, str], tuple[Firewall, str]]) -> bool:
        """Whether any firewall verdict of the rows is the one reported (without building the verdicts)."""
        return any(verdicts_of(fw).snats(ip) is want for fw, ip in firewalls.values())

    snat_dicts: dict[int, dict[str, Any]] = {}   # one dict per verdict (paths to one IP share it), this call's

    def snat_of(v: SnatVerdict) -> dict[str, Any]:
        d = snat_dicts.get(id(v))
        if d is None:
            d = snat_dicts[id(v)] = v.to_dict()
        return d

    # _policy_unread per (subject, verdict model), this call's: it reads the subject's firewall and whether its policy
    # is in scope, the same for every row of the subject (a hub firewall's ~9k rows asked it one by one). A subject's
    # rows are judged while it is the subject being recorded, so the reads it makes are noted where they were.
    unread: dict[tuple[str, str], bool] = {}

    def judge(found: list[_Row]) -> list[tuple[ArmId, PathResult, SnatVerdict]]:
        out: list[tuple[ArmId, PathResult, SnatVerdict]] = []
        for subject_id, p, v in found:
            if v is None:
                assert p.hop is not None and p.hop.firewall is not None
                v = firewall(p.hop.firewall, p.destination)
            if v.snats is not want:
                continue
            k = (subject_id.key, v.model)
            skip = unread.get(k)
            if skip is None:
                skip = unread[k] = _policy_unread(snap, subject_id, v)
            if not skip:
                out.append((subject_id, p, v))
        return out

    def result(entry: _Rows, token: object) -> _Judged:
        """What this check makes of one endpoint's rows judged on ``token`` (kept on the rows when it can be)."""
        got = entry.missing if want is False else entry.unknown
        if got is token or (type(got) is tuple and got[0] is token):
            return got   # judged on the same verdicts before
        mine = () if want not in entry.tagged and not reports(entry.firewalls) else tuple(judge(entry.rows))
        got = (token, mine, tuple({**_path_part(p), "snat": snat_of(v)} for _, p, v in mine)) \
            if mine else token   # nothing to report: the verdicts alone
        if token is not _UNKEPT:
            if want is False:
                entry.missing = got
            else:
                entry.unknown = got
        return got

    kept = not plain()
    def split(paths: tuple[PathResult, ...]) -> dict[str, Any]:   # a plain evaluation's rows, as tuples
        return _appliance_rows_by_subject(snap, paths)
    # A secured hub's private next hop is judged once, by the hub part (vwan.hub_snat_issues), whichever way it is
    # reached: one finding per firewall (checks-vwan.md). No hub: nothing read, nothing skipped.
    hub_hops = hub_next_hops(snap) if snap.virtual_hubs else frozenset()
    for key, per_endpoint in _per_endpoint(snap, APPLIANCES, "route.appliance-rows",
                                           lambda key, paths: _appliance_rows(snap, key, paths), split,
                                           lambda key, pe: _appliance_rows_of(snap, key, pe)):
        if hub_hops and key in hub_hops:
            continue
        rows: list[tuple[ArmId, PathResult, SnatVerdict]] = []
        walk: _Walk | None = None
        if kept:
            fw = snap.firewalls.get(key)   # what _policy_unread reads of a reused endpoint's rows, noted once
            walk = _walked(snap, want, key, fw, per_endpoint, result)
            rows, parts = walk.rows, walk.parts
        else:
            for found, firewalls, tagged in per_endpoint:
                if want not in tagged and not reports(firewalls):
                    continue
                rows += judge(found)
        if not rows:
            continue
        subject, _p, verdict = rows[0]
        paths = parts if kept else [{**_path_part(p), "snat": snat_of(v)} for _, p, v in rows]
        ips = walk.ips() if walk is not None else sorted({p.destination for _, p, _v in rows})
        if want is False:
            msg = (f"{subject.name} is the next hop to private endpoint IP(s) {', '.join(ips)} but does not "
                   "SNAT that traffic: replies return directly and the flow is asymmetric.")
        else:
            msg = (f"{subject.name} is the next hop to private endpoint IP(s) {', '.join(ips)}; whether it "
                   f"SNATs is unknown ({verdict.reason}).")
        evidence = {"appliance": subject.raw, "snat_model": verdict.model, "paths": paths}
        if verdict.model.startswith("firewall"):
            evidence["note"] = "Azure Firewall application rules always SNAT; this judges network-rule traffic."
        yield Issue(subject, msg, evidence, _fix_snat(snap, subject, verdict))


class _Walk:
    """What one SNAT check made of one appliance's endpoints at its last judgement under the daemon's units: the
    endpoints' rows in order (the kept :class:`_Rows`), the verdicts they were judged on, how many rows each
    reports, and the rows and evidence of the finding. An event that replaces a few endpoints' rows (one endpoint,
    or the ~600 behind a route table, of a hub appliance's ~4,500) judges those alone and splices their rows in;
    the others are passed over by identity, not visited one by one (issue 14). Its lists are never mutated (a
    finding holds them): a splice makes new ones."""

    __slots__ = ("_ips", "_tally", "counts", "entries", "parts", "rows", "token")

    def __init__(self, entries: list[_Rows], token: object, counts: list[int],
                 rows: list[tuple[ArmId, PathResult, SnatVerdict]], parts: list[dict[str, Any]]) -> None:
        self.entries, self.token, self.counts, self.rows, self.parts = entries, token, counts, rows, parts
        self._ips: list[str] | None = None
        self._tally: dict[str, int] | None = None

    def ips(self) -> list[str]:
        """The endpoint IPs the rows name, sorted (for the message: a hub's ~4,500 sorted again on every event)."""
        if self._ips is None:
            tally: dict[str, int] = {}
            for _, p, _v in self.rows:
                tally[p.destination] = tally.get(p.destination, 0) + 1
            self._tally, self._ips = tally, sorted(tally)
        return self._ips

    def spliced(self, other: _Walk, gone: list[tuple[ArmId, PathResult, SnatVerdict]],
                came: list[tuple[ArmId, PathResult, SnatVerdict]]) -> None:
        """Take ``other``'s sorted IPs (if it has them) with ``gone`` rows taken out and ``came`` rows put in."""
        if other._ips is None or other._tally is None or len(gone) + len(came) > 512:
            return   # sorted afresh when asked
        tally, ips = dict(other._tally), list(other._ips)
        for _, p, _v in gone:
            left = tally[p.destination] - 1
            if left:
                tally[p.destination] = left
            else:
                del tally[p.destination]
                del ips[bisect.bisect_left(ips, p.destination)]
        for _, p, _v in came:
            had = tally.get(p.destination, 0)
            tally[p.destination] = had + 1
            if not had:
                bisect.insort(ips, p.destination)
        self._tally, self._ips = tally, ips


# The last walk per (check's want, appliance key): kept across events with the units' rows it names (those the
# daemon keeps anyway), replaced whole at each judgement; only a walk whose rows are the very objects the units
# hand over is reused, so one left from another evaluator is never taken for this one's.
_walks: dict[tuple[bool | None, str], _Walk] = {}
_WALKS_MAX = 65_536


def _walked(snap: Snapshot, want: bool | None, key: str, fw: Firewall | None, per_endpoint: list[Any],
            result: Callable[[_Rows, object], _Judged]) -> _Walk:
    """The walk of appliance ``key``'s endpoint rows ``per_endpoint`` for the check judging ``want``: the last one
    with the endpoints it has in common (the same rows objects, in front and behind) taken as they were, when the
    firewall verdicts they were judged on are still the ones (a policy event judges every endpoint again); every
    endpoint judged on its own verdicts, and nothing kept, when the rows read another firewall's (:func:`_unwalked`)."""
    token: object = _NO_FIREWALL
    if fw is not None:
        token = firewall_verdicts(snap, fw)   # the subject's verdicts: notes the policy read, kept or not
    old = _walks.get((want, key))
    n = len(per_endpoint)
    if old is None or old.token is not token:
        i, j, m = 0, 0, 0
        old_entries: list[_Rows] = []
    else:
        old_entries = old.entries
        m = len(old_entries)
        top = min(n, m)
        i, j = _same_ends(per_endpoint, old_entries, top)
        if i == n == m and old is not None:
            return old   # nothing moved
    if (old is None or (i == 0 and j == 0)) and isinstance(token, FirewallVerdicts) and \
            token.uniform() not in (want, MIXED) and not any(want in e.tagged for e in per_endpoint):
        # a policy that SNATs every destination alike, and not as this check reports: nothing to walk (a policy
        # event judged a hub firewall's ~4,500 endpoints one by one to find that)
        walk = _Walk(list(per_endpoint), token, [0] * n, [], [])
    else:
        walk = _walk_through(snap, want, key, fw, per_endpoint, result, token, old, i, j, m)
        if walk.token is _UNKEPT:
            return walk
    if len(_walks) >= _WALKS_MAX:
        _walks.clear()
    _walks[(want, key)] = walk
    return walk


def _same_ends(new: list[Any], old: list[Any], top: int) -> tuple[int, int]:
    """How many entries ``new`` and ``old`` share by identity in front (``i``, at most ``top``) and then behind (``j``,
    at most ``top - i``): compared in C (``operator.is_``), not one Python step per entry (a hub's ~4,500, four
    times an event)."""
    front = list(map(operator.is_, itertools.islice(new, top), old))
    i = front.index(False) if False in front else top
    back = list(map(operator.is_, itertools.islice(reversed(new), top - i), reversed(old)))
    return i, back.index(False) if False in back else top - i


def _walk_through(snap: Snapshot, want: bool | None, key: str, fw: Firewall | None, per_endpoint: list[Any],
                  result: Callable[[_Rows, object], _Judged], token: object, old: _Walk | None, i: int, j: int,
                  m: int) -> _Walk:
    """:func:`_walked`'s judgement of the endpoints between the ``i`` in front and the ``j`` behind that ``old``
    holds as they were (all of them without ``old``), spliced into ``old``'s rows."""
    n = len(per_endpoint)
    last: list[Any] = [fw, token] if fw is not None else [None, None]
    counts: list[int] = []
    mid_rows: list[tuple[ArmId, PathResult, SnatVerdict]] = []
    mid_parts: list[dict[str, Any]] = []
    for entry in per_endpoint[i:n - j]:
        fws = entry.firewalls
        if not fws:
            got = result(entry, _NO_FIREWALL)
        else:
            mine = _verdicts_read(snap, fws, last) if len(fws) != 1 or next(iter(fws.values()))[0] is not last[0] \
                else last[1]
            if mine is not token:
                return _unwalked(snap, want, key, per_endpoint, result)
            got = result(entry, mine)
        if type(got) is tuple:
            counts.append(len(got[1]))
            mid_rows += got[1]
            mid_parts += got[2]
        else:
            counts.append(0)
    if old is None or (i == 0 and j == 0):
        walk = _Walk(list(per_endpoint), token, counts, mid_rows, mid_parts)
    else:
        before = sum(old.counts[:i])
        after = len(old.rows) - sum(old.counts[m - j:]) if j else len(old.rows)
        walk = _Walk(list(per_endpoint), token, old.counts[:i] + counts + old.counts[m - j:],
                     old.rows[:before] + mid_rows + old.rows[after:],
                     old.parts[:before] + mid_parts + old.parts[after:])
        walk.spliced(old, old.rows[before:after], mid_rows)
    return walk


def _unwalked(snap: Snapshot, want: bool | None, key: str, per_endpoint: list[Any],
              result: Callable[[_Rows, object], _Judged]) -> _Walk:
    """The walk of rows that read verdicts of several firewalls (or another firewall's than the appliance's): each
    endpoint judged on its own verdicts, and nothing kept."""
    _walks.pop((want, key), None)
    last: list[Any] = [None, None]
    counts: list[int] = []
    rows: list[tuple[ArmId, PathResult, SnatVerdict]] = []
    parts: list[dict[str, Any]] = []
    for entry in per_endpoint:
        got = result(entry, _verdicts_read(snap, entry.firewalls, last))
        counts.append(len(got[1]) if type(got) is tuple else 0)
        if type(got) is tuple:
            rows += got[1]
            parts += got[2]
    return _Walk(list(per_endpoint), _UNKEPT, counts, rows, parts)



@check(
    id="route.nva-missing-snat", title="Appliance on the path to a private endpoint does not SNAT",
    severity=Severity.HIGH,
    rationale="Replies from a private endpoint follow its /32 system route straight back to the client, "
              "skipping the appliance; without source NAT at the appliance the path is asymmetric and "
              "stateful appliances drop the flow.",
    remediation="Make the appliance SNAT traffic to private endpoints (Azure Firewall: private ranges that "
                "exclude the endpoint IPs, or 255.255.255.255/32 to always SNAT).",
    references=(INSPECT, FW_SNAT, PE_OVERVIEW), controls=("MCSB NS-3",),
    reads=(*_PATHS, "firewall_policies", *HUB_READS), over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "SC-7",
                  "SC-7 a: replies skip the appliance at the internal managed interface, so it never "
                  "sees both directions"),
    ),
)
def nva_missing_snat(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    yield from _snat_issues(snap, False)
    yield from hub_snat_issues(snap, False)   # secured Virtual WAN hubs' private next hops (checks-vwan.md)


@check(
    id="route.nva-snat-unknown", title="Whether the appliance on the path to a private endpoint SNATs is unknown",
    severity=Severity.MEDIUM,
    rationale="plmon cannot read a third-party appliance's NAT configuration; without the owner's "
              f"declaration (tag {SNAT_TAG}) an asymmetric path cannot be ruled out, so it is never a pass.",
    remediation=f"Tag the appliance NIC (or the load balancer in front) with {SNAT_TAG}=always or "
                f"{SNAT_TAG}=never after checking its NAT configuration.",
    references=(INSPECT, PE_OVERVIEW), controls=("MCSB NS-3",),
    reads=(*_PATHS, "firewall_policies", *HUB_READS), over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CA-7",
                  "CA-7: without the owner's SNAT declaration the path cannot be judged; reported as a"
                  " gap, never a pass"),
    ),
)
def nva_snat_unknown(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    yield from _snat_issues(snap, None)
    yield from hub_snat_issues(snap, None)


# The lists that hold every object a VirtualAppliance next hop can be (checks.md: NIC ip configuration,
# internal load balancer frontend, firewall private IP).
_HOP_LISTS = ("microsoft.network/networkinterfaces", "microsoft.network/loadbalancers",
              "microsoft.network/azurefirewalls")


def _lists_read(snap: Snapshot, vnet: VirtualNetwork) -> bool:
    sub = (vnet.id.subscription or "").lower()
    return bool(sub) and all(snap.coverage.covers(f"/subscriptions/{sub}", t) for t in _HOP_LISTS)


def _inside(ip: Any, prefixes: tuple[str, ...]) -> bool:
    return any((n := _net(px)) is not None and ip in n for px in prefixes)


def _matches_nothing_on_evidence(snap: Snapshot, ip_text: str, client_vnet: str | None) -> bool:
    """Whether plmon read the address space the next hop lies in, so that "matches nothing" is evidence.

    A next hop lies in the client's network or one it peers with: there, True only when that network was read
    and its subscription's NIC, load balancer and firewall lists were all read (a NIC, and so an appliance,
    lives in its network's subscription). Elsewhere, True when it lies in another network read that way; or,
    in a scan of the whole tenant with every network list read, when it lies in no address space plmon knows
    of. A next hop in a network out of scope or unreadable is unknown: not this finding (a scoped scan must
    never claim what it cannot see).
    """
    ip = parse_ip(ip_text)
    if ip is None:
        return True  # not an IP address at all: it matches nothing anywhere
    client = snap.virtual_networks.get(client_vnet) if client_vnet else None
    spaces: list[tuple[VirtualNetwork | None, tuple[str, ...]]] = [(client, client.address_prefixes)] if client else []
    for peer in client.peerings if client else ():
        remote = snap.virtual_networks.get(peer.remote_vnet_id.key) if peer.remote_vnet_id else None
        spaces.append((remote, remote.address_prefixes if remote else peer.remote_address_prefixes))
    for vnet, prefixes in spaces:
        if _inside(ip, prefixes):
            return vnet is not None and _lists_read(snap, vnet)
    unread_spaces = False
    for vnet in snap.virtual_networks.values():
        if _inside(ip, vnet.address_prefixes):
            if _lists_read(snap, vnet):
                return True
            unread_spaces = True
        for peer in vnet.peerings:
            if (peer.remote_vnet_id is None or peer.remote_vnet_id.key not in snap.virtual_networks) and \
                    _inside(ip, peer.remote_address_prefixes):
                unread_spaces = True
    if unread_spaces or snap.coverage.scoped:
        return False
    networks_read = not any(g.type.lower() in ("microsoft.network/virtualnetworks", "*")
                            for g in snap.coverage.gaps)
    return networks_read and bool(snap.subscriptions) and all(
        snap.coverage.covers(f"/subscriptions/{s}", "microsoft.network/virtualnetworks") for s in snap.subscriptions)


def _unresolved_table(p: PathResult) -> list[str]:
    return _unresolved_key(p.via_appliance, p.hop, p.route_table_id)


def _unresolved_key(via: bool, hop: Hop | None, table_id: ArmId | None) -> list[str]:
    """:func:`_unresolved_table` of a path with these fields (a layout's entry has them without a path)."""
    if via and hop is not None and hop.kind == "unresolved" and table_id:
        return [table_id.key]
    return []


UNRESOLVED = _subjects_of("unresolved_tables", _unresolved_table)


@check(
    id="route.nva-unresolved", title="Appliance next hop on the path to a private endpoint matches nothing",
    severity=Severity.MEDIUM,
    rationale="A VirtualAppliance route whose next-hop IP belongs to no NIC, internal load balancer "
              "frontend or firewall in scope blackholes the traffic. A next hop in an address space plmon did "
              "not read (out of scope or unreadable) is unknown, not this finding.",
    remediation="Point the route at the appliance's private IP, or bring the appliance into the monitored scope.",
    references=(UDR_DOC,), controls=("MCSB NS-3",),
    reads=_PATHS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: the route's next hop matches no appliance, so the configured path "
                  "blackholes traffic"),
    ),
)
def nva_unresolved(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    known: dict[tuple[str, str | None], bool] = {}
    for _key, candidates in _per_subject(snap, UNRESOLVED, "route.nva-unresolved",
                                         lambda key, paths: [p for p in paths if _unresolved_table(p) == [key]],
                                         lambda paths: _split_by(paths, _unresolved_table)):
        paths = []
        for p in candidates:
            assert p.hop is not None
            client = p.subnet_id.parent.key if p.subnet_id.parent is not None else None
            if (p.hop.ip, client) not in known:
                known[(p.hop.ip, client)] = _matches_nothing_on_evidence(snap, p.hop.ip, client)
            if known[(p.hop.ip, client)]:
                paths.append(p)
        if not paths:
            continue
        table = paths[0].route_table_id
        assert table is not None
        routes = {(p.route.route_name, p.route.prefix, p.route.next_hop_ip) for p in paths if p.route}
        rg, name = _rg_and_name(table)
        fixes = [az("network", "route-table", "route", "update", "--resource-group", rg, "--route-table-name", name,
                    "--name", r or "<route-name>", "--next-hop-ip-address", "<appliance-private-ip>")
                 for r, _, _ in sorted(routes, key=lambda t: tuple(x or "" for x in t))]
        yield Issue(table, f"Route table {table.name} sends traffic to private endpoints to "
                    f"{', '.join(sorted({str(ip) for _, _, ip in routes}))}, which matches no NIC, internal load "
                    "balancer frontend or firewall in scope.",
                    {"route_table": table.raw,
                     "routes": [{"name": r, "prefix": px, "next_hop_ip": ip} for r, px, ip in sorted(routes)],
                     "paths": [p.path_text() for p in paths],
                     "endpoint_ips": sorted({p.destination for p in paths})},
                    lines(*fixes))


def _forwarding_off(p: PathResult) -> list[Nic]:
    if not p.via_appliance or p.hop is None:
        return []
    return _nics_forwarding_off(p.hop)


def _nics_forwarding_off(hop: Hop) -> list[Nic]:
    candidates = [hop.nic] if hop.nic is not None else list(hop.backend_nics)
    return [nic for nic in candidates if nic is not None and not nic.enable_ip_forwarding]


FORWARDING_OFF = _subjects_of("forwarding_off", lambda p: _forwarding_keys(p))


def _forwarding_keys(p: PathResult) -> list[str]:
    return [n.key for n in _forwarding_off(p)]


def _route_subjects(snap: Snapshot, pe: PrivateEndpoint) -> list[str]:
    """The subjects of every route check that ``pe``'s paths name (:data:`SUBJECTS`): the keys of the four kinds'
    indexes, from one walk of the paths; a next hop's appliances are worked out once per hop (the paths of a group
    share their Hop), not once per path. Under the daemon's units an endpoint whose IPs are its own names what its
    layouts name (:func:`_layout_subjects`), read without making its paths: a route event re-derives ~600 endpoints
    from their subnets' few layouts (issue 14)."""
    layouts = endpoint_layouts(snap, pe)
    if layouts is not None:
        if len(layouts) == 1:
            return _layout_subjects(layouts[0])
        return _walk_subjects(layouts)
    out: dict[str, None] = {}
    by_hop: dict[int, list[str]] = {}
    seen: set[tuple[int, int, int, bool, int]] = set()
    bypassed, unresolved = BYPASSED.name, UNRESOLVED.name
    for p in paths_for(snap, pe):
        if not p.via_appliance and (p.replaced_by or not p.not_replacing):
            continue   # neither through an appliance nor bypassing one (most paths): no subject
        # the paths of one group share their table id, routes and hop (a layout's decision): they name the same
        # subjects, so only the first of them is walked (the paths hold those objects while this runs)
        sig = (id(p.route_table_id), id(p.replaced_by), id(p.not_replacing), p.via_appliance, id(p.hop))
        if sig in seen:
            continue
        seen.add(sig)
        for k in _bypassed_table(p):
            out[_subject(bypassed, k)] = None
        for k in _unresolved_table(p):
            out[_subject(unresolved, k)] = None
        hop = p.hop
        if not p.via_appliance or hop is None:
            continue
        hit = by_hop.get(id(hop))   # the paths hold their hops while this runs: an id is not reused meanwhile
        if hit is None:
            hit = by_hop[id(hop)] = _hop_subjects(hop)
        for k in hit:
            out[k] = None
    return list(out)


# By the layout's identity: the daemon keeps a layout as shared work across events, and the endpoints of one subnet
# share it. Bounded; a layout kept here stays alive only until the table is next cleared.
_LAYOUT_SUBJECTS: dict[int, tuple[Any, list[str]]] = {}
_LAYOUT_SUBJECTS_MAX = 4096


def _layout_subjects(layout: Any) -> list[str]:
    """The subjects of the paths of one IP laid out as ``layout`` (:func:`_walk_subjects`), worked out once per
    layout (callers do not change the list)."""
    hit = _LAYOUT_SUBJECTS.get(id(layout))
    if hit is None or hit[0] is not layout:
        if len(_LAYOUT_SUBJECTS) >= _LAYOUT_SUBJECTS_MAX:
            _LAYOUT_SUBJECTS.clear()
        hit = _LAYOUT_SUBJECTS[id(layout)] = (layout, _walk_subjects([layout]))
    return hit[1]


def _walk_subjects(layouts: list[Any]) -> list[str]:
    """:func:`_route_subjects` from the layouts of an endpoint's IPs (paths_for's entries: one path per client subnet
    and IP whose entry is not None, clients first), in the order a walk of the paths finds them."""
    out: dict[str, None] = {}
    by_hop: dict[int, list[str]] = {}
    seen: set[tuple[int, int, int, bool, int]] = set()
    bypassed, unresolved = BYPASSED.name, UNRESOLVED.name
    for entries in zip(*layouts, strict=True):
        for decided in entries:
            if decided is None:
                continue
            group, _winner, hop, via, table_id, _vnet = decided
            replaced_by, not_replacing = group.replaced_by, group.not_replacing
            if not via and (replaced_by or not not_replacing):
                continue
            sig = (id(table_id), id(replaced_by), id(not_replacing), via, id(hop))
            if sig in seen:
                continue
            seen.add(sig)
            for k in _bypassed_key(table_id, replaced_by, not_replacing):
                out[_subject(bypassed, k)] = None
            for k in _unresolved_key(via, hop, table_id):
                out[_subject(unresolved, k)] = None
            if not via or hop is None:
                continue
            hit = by_hop.get(id(hop))
            if hit is None:
                hit = by_hop[id(hop)] = _hop_subjects(hop)
            for k in hit:
                out[k] = None
    return list(out)


def _hop_subjects(hop: Hop) -> list[str]:
    """The appliance and forwarding-off subjects (:data:`SUBJECTS`) of a path through ``hop`` (an appliance route's
    next hop), kept with what the checks make of the hop."""
    of = _of_hop(hop)
    if of.subjects is None:
        appliances = [] if hop.kind == "unresolved" else [_subject(APPLIANCES.name, k) for k in of.keys]
        of.subjects = appliances + [_subject(FORWARDING_OFF.name, n.key) for n in of.forwarding_off]
    return of.subjects


ROUTE_SUBJECTS = Index(SUBJECTS, "private_endpoints", _route_subjects)


@check(
    id="route.nva-ip-forwarding-off", title="Appliance NIC on the path to a private endpoint has IP forwarding off",
    severity=Severity.HIGH,
    rationale="A NIC without enableIPForwarding drops packets not addressed to it, so traffic routed "
              "through it to the private endpoint never arrives.",
    remediation="Enable IP forwarding on the appliance NIC.",
    references=(UDR_DOC + "#virtual-appliance",), controls=("MCSB NS-3",),
    reads=_PATHS, over=SUBJECTS,
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: the appliance NIC on the route lacks IP forwarding, so the routed design "
                  "carries no traffic"),
    ),
)
def nva_ip_forwarding_off(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    def select(key: str, paths: tuple[PathResult, ...]) -> list[tuple[PathResult, Nic]]:
        return [(p, n) for p in paths for n in _forwarding_off(p) if n.key == key]

    def split(paths: tuple[PathResult, ...]) -> dict[str, list[tuple[PathResult, Nic]]]:
        out: dict[str, list[tuple[PathResult, Nic]]] = {}
        for p in paths:
            hop = p.hop
            if not p.via_appliance or hop is None:
                continue
            for n in _of_hop(hop).forwarding_off:
                out.setdefault(n.key, []).append((p, n))
        return out
    for _key, rows in _per_subject(snap, FORWARDING_OFF, "route.nva-ip-forwarding-off", select, split):
        if not rows:
            continue
        paths = [p for p, _ in rows]
        nic = rows[-1][1]
        yield Issue(nic.id, f"Network interface {nic.name} is the next hop to private endpoint IP(s) "
                    f"{', '.join(sorted({p.destination for p in paths}))} but has IP forwarding disabled.",
                    {"nic": nic.id.raw, "enableIPForwarding": nic.enable_ip_forwarding,
                     "paths": [p.path_text() for p in paths]},
                    az("network", "nic", "update", "--ids", nic.id.raw, "--ip-forwarding", "true"))


# --- route.endpoint-ip-unknown ---------------------------------------------------------------------

def _endpoint_networks(snap: Snapshot, pe: PrivateEndpoint) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Where the endpoint's IP must lie: its subnet's prefixes, else its network's address space."""
    subnet = snap.subnet_of(pe)
    prefixes: tuple[str, ...] = subnet.address_prefixes if subnet is not None else ()
    if not prefixes and subnet is not None:
        vnet = snap.vnet_of_subnet(subnet)
        prefixes = vnet.address_prefixes if vnet is not None else ()
    out = []
    for px in prefixes:
        try:
            out.append(ipaddress.ip_network(px.strip(), strict=False))
        except ValueError:
            continue
    return out


def _could_cover(prefix: str | None, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        route = ipaddress.ip_network((prefix or "").strip(), strict=False)
    except ValueError:
        return False  # a service tag never covers a private endpoint IP
    # Unknown network: any appliance route could cover it.
    return not nets or any(route.version == n.version and route.overlaps(n) for n in nets)


def _nic_state(snap: Snapshot, raw: ArmId) -> dict[str, Any]:
    key = parse_id(repair_provider_typo(raw.raw)).key if raw.opaque else raw.key
    if key in snap.nics:
        return {"id": raw.raw, "read": True, "note": "read, but it holds no private IP address"}
    gap = snap.coverage.gap_for(key, "Microsoft.Network/networkInterfaces")
    if gap is None:
        return {"id": raw.raw, "read": False, "note": "not read"}
    return {"id": raw.raw, "read": False,
            "note": f"not readable: {gap.code}" + (f" (HTTP {gap.status})" if gap.status else "")}


def _has_ip(values: tuple[str, ...]) -> bool:
    """``any(parse_ip(x) is not None for x in values)`` without a generator per endpoint (35k at 100k resources): an
    address object is always true (ipaddress defines neither ``__bool__`` nor ``__len__``, even for 0.0.0.0)."""
    return any(map(parse_ip, values))


@check(
    id="route.endpoint-ip-unknown", title="Private endpoint IP unknown where an appliance route could steer it",
    severity=Severity.INFO,
    rationale="The route and SNAT checks judge the path to each private endpoint IP. A dynamic-IP endpoint "
              "lists its IP only on its network interface; when plmon could not read that NIC, no path to the "
              "endpoint can be decided, while a route table of one of its client subnets has an appliance route "
              "that could cover it. It is listed so that the route family never counts those paths as passing; "
              "no route finding is guessed.",
    remediation="Grant plmon read access to the endpoint's network interface (Microsoft.Network/networkInterfaces/"
                "read), or check the endpoint's IP against the listed route tables by hand.",
    references=(PE_OVERVIEW, UDR_DOC), controls=("MCSB NS-3",),
    reads=("private_endpoints", "subnets", "virtual_networks", "route_tables", "nics"),
    over="private_endpoints",
    frameworks=(
        Evidences(NIST_800_53, "CA-7",
                  "CA-7: paths to an endpoint of unknown IP cannot be judged; reported as a monitoring"
                  " gap, never a pass"),
    ),
)
def endpoint_ip_unknown(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pe in each(snap, "private_endpoints"):
        if _has_ip(pe.ip_addresses):
            continue
        nets = _endpoint_networks(snap, pe)
        tables: dict[str, dict[str, Any]] = {}
        for subnet in client_subnets(snap, pe):
            table = snap.route_tables.get(subnet.route_table_id.key) if subnet.route_table_id else None
            if table is None:
                continue  # no table, or one plmon did not read: nothing known could steer the traffic
            routes = [r for r in table.routes
                      if lower(r.next_hop_type) == "virtualappliance" and _could_cover(r.address_prefix, nets)]
            if not routes:
                continue
            row = tables.setdefault(table.key, {
                "route_table": table.id.raw, "client_subnets": [],
                "routes": [{"name": r.name, "prefix": r.address_prefix, "next_hop_type": r.next_hop_type,
                            "next_hop_ip": r.next_hop_ip} for r in routes]})
            row["client_subnets"].append(subnet.id.raw)
        if not tables:
            continue  # no appliance route around it: no route check could fail, so nothing to say
        nics = [_nic_state(snap, n) for n in pe.nic_ids]
        names = ", ".join(sorted(parse_id(t["route_table"]).name for t in tables.values()))
        fix = lines(*(az("network", "nic", "show", "--ids", n["id"], "--query", "ipConfigurations[].privateIPAddress")
                      for n in nics)) or \
            az("network", "private-endpoint", "show", "--ids", pe.id.raw, "--query", "customDnsConfigs[].ipAddresses")
        yield Issue(pe.id, f"Private endpoint {pe.name} has no IP plmon could read (its NIC holds it), while route "
                    f"table(s) {names} of its client subnets have appliance routes that could cover it: its "
                    "route and SNAT paths are not judged.",
                    {"private_endpoint": pe.id.raw,
                     "endpoint_subnet": pe.subnet_id.raw if pe.subnet_id else None,
                     "endpoint_network_prefixes": [str(n) for n in nets],
                     "ip_sources": "no IP in ipConfigurations or customDnsConfigs; a dynamic IP is only on the NIC",
                     "network_interfaces": nics, "route_tables": [tables[k] for k in sorted(tables)]},
                    fix)
