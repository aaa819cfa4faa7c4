"""DNS checks: a private endpoint only works if its name resolves to its private IP.

Zone names are the commercial-cloud table of checks.md. Sovereign clouds use other suffixes: the
``zone_overrides`` parameter ({commercial zone: sovereign zone}) rewrites the expectation; the
configuration's ``dns.zone_overrides`` is passed to it by :meth:`plmon.monitor.config.Config.check_settings`,
so checks stay pure functions of the snapshot and their parameters.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.links import VIEW_READS, ConnectionView, plain_views, views_of
from plmon.checks.registry import NIST_800_53, Evidences, Param, check
from plmon.checks.remedy import az, lines
from plmon.checks.units import Index, each, each_key, lookup, plain
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.snapshot import PrivateEndpoint, Snapshot

DNS_DOC = "https://learn.microsoft.com/azure/private-link/private-endpoint-dns"
DNS_INTEGRATION = "https://learn.microsoft.com/azure/private-link/private-endpoint-dns-integration"
PLS_TYPE = "microsoft.network/privatelinkservices"

# (target type or None for any type, group id) -> zone, all lower-case. checks.md "DNS".
COMMERCIAL_ZONES: dict[tuple[str | None, str], str] = {
    (None, "blob"): "privatelink.blob.core.windows.net",
    (None, "blob_secondary"): "privatelink.blob.core.windows.net",
    (None, "file"): "privatelink.file.core.windows.net",
    (None, "queue"): "privatelink.queue.core.windows.net",
    (None, "table"): "privatelink.table.core.windows.net",
    (None, "web"): "privatelink.web.core.windows.net",
    (None, "dfs"): "privatelink.dfs.core.windows.net",
    (None, "vault"): "privatelink.vaultcore.azure.net",
    (None, "sqlserver"): "privatelink.database.windows.net",
    ("microsoft.documentdb/databaseaccounts", "sql"): "privatelink.documents.azure.com",
    (None, "postgresqlserver"): "privatelink.postgres.database.azure.com",
    (None, "mysqlserver"): "privatelink.mysql.database.azure.com",
    (None, "rediscache"): "privatelink.redis.cache.windows.net",
    (None, "registry"): "privatelink.azurecr.io",
    (None, "configurationstores"): "privatelink.azconfig.io",
    ("microsoft.eventhub/namespaces", "namespace"): "privatelink.servicebus.windows.net",
    ("microsoft.servicebus/namespaces", "namespace"): "privatelink.servicebus.windows.net",
    (None, "topic"): "privatelink.eventgrid.azure.net",
    (None, "domain"): "privatelink.eventgrid.azure.net",
    (None, "sites"): "privatelink.azurewebsites.net",
    ("microsoft.cognitiveservices/accounts", "account"): "privatelink.cognitiveservices.azure.com",
    (None, "searchservice"): "privatelink.search.windows.net",
    (None, "webhook"): "privatelink.azure-automation.net",
    (None, "dscandhybridworker"): "privatelink.azure-automation.net",
    (None, "resourcemanagement"): "privatelink.azure.com",
}


def _zone_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                 for k, v in value.items()):
        raise ValueError(f"expected a mapping of zone name to zone name, got {value!r}")
    return {k.strip().lower().rstrip("."): v.strip().lower().rstrip(".") for k, v in value.items()}


ZONE_OVERRIDES = Param({}, _zone_map, "commercial zone name -> zone name in this cloud (sovereign clouds)")


def expected_zone(target_type: str | None, group_id: str, overrides: Mapping[str, str]) -> str | None:
    """The zone an endpoint of this target type and group id should use, or None when none is standard."""
    t, g = (target_type or "").lower(), group_id.lower()
    zone = COMMERCIAL_ZONES.get((t, g)) or COMMERCIAL_ZONES.get((None, g))
    return overrides.get(zone, zone) if zone else None


def _target_type(target: ArmId | None) -> str | None:
    return target.type_key if target is not None else None


def _platform_target(target: ArmId | None, group_ids: tuple[str, ...], params: Mapping[str, Any]) -> bool:
    """Whether a connection reaches a platform service, the only kind with a standard zone (checks.md).

    A Private Link Service, named by its resource id or by its alias (often in another tenant), has none.
    A connection without a target id is judged on evidence only: a group id with a standard zone.
    """
    if target is None:
        return any(expected_zone(None, g, params["zone_overrides"]) for g in group_ids)
    return target.type_key != PLS_TYPE and not target.is_pls_alias


def _managed_elsewhere(snap: Snapshot, pe: PrivateEndpoint, patterns: tuple[str, ...]) -> str | None:
    subnet = snap.subnet_of(pe)
    candidates = [pe.id.key]
    if pe.subnet_id is not None:
        candidates.append(pe.subnet_id.key)
    if subnet is not None and subnet.vnet_id is not None:
        candidates.append(subnet.vnet_id.key)
    for pattern in patterns:
        p = pattern.lower()
        for c in candidates:
            if fnmatch.fnmatchcase(c, p) or c == p.rstrip("/"):
                return pattern
    return None


@check(
    id="dns.no-zone-group", title="Approved private endpoint without a private DNS zone group",
    severity=Severity.MEDIUM,
    rationale="Without a zone group the service's name keeps resolving to its public address, so clients "
              "silently bypass the endpoint (or fail once public access is disabled).",
    remediation="Add a private DNS zone group for the endpoint's zone, or declare that DNS is managed elsewhere.",
    references=(DNS_DOC, DNS_INTEGRATION), controls=("MCSB NS-10",),
    params={"managed_elsewhere": Param.strings((), "glob patterns of endpoint, subnet or virtual network ids "
                                                   "whose DNS is managed elsewhere (custom DNS)"),
            "zone_overrides": ZONE_OVERRIDES},
    reads=(*VIEW_READS, "subnets"), over="private_endpoints",
    frameworks=(
        Evidences(NIST_800_53, "SC-7",
                  "SC-7 c: without private DNS the name resolves publicly, so clients leave through "
                  "the public interface"),
    ),
)
def no_zone_group(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    quick = plain()
    for pe in each(snap, "private_endpoints"):
        if quick and (pe.dns_zone_groups is None or pe.dns_zone_groups):
            continue  # the same outcome as below, without pairing the views (recorded reads keep the order below)
        targets: list[ArmId | None] = [
            view.target_id for view in views_of(snap, pe.key)
            if view.status_key == "approved" and
            _platform_target(view.target_id, view.consumer.group_ids if view.consumer else (), params)]
        if not targets:
            continue
        if pe.dns_zone_groups is None or pe.dns_zone_groups:
            continue  # zone groups unread (a coverage gap), or present
        if _managed_elsewhere(snap, pe, params["managed_elsewhere"]):
            continue
        groups = sorted({g for c in pe.connections for g in c.group_ids})
        zones = sorted({z for t in targets for g in groups
                        if (z := expected_zone(_target_type(t), g, params["zone_overrides"]))})
        zone = zones[0] if zones else "<zone>"
        rg = pe.id.resource_group or "<resource-group>"
        yield Issue(pe.id, f"Private endpoint {pe.name} is Approved but has no private DNS zone group.",
                    {"targets": [t.raw if t else None for t in targets], "group_ids": groups,
                     "expected_zones": zones, "customDnsConfigs_fqdns": list(pe.custom_dns_fqdns),
                     "note": "customDnsConfigs alone do not make the name resolve privately"},
                    az("network", "private-endpoint", "dns-zone-group", "create", "--resource-group", rg,
                       "--endpoint-name", pe.name, "--name", "default", "--zone-name", zone.replace(".", "-"),
                       "--private-dns-zone", f"/subscriptions/{pe.id.subscription}/resourceGroups/{rg}/providers/"
                       f"Microsoft.Network/privateDnsZones/{zone}"))


@check(
    id="dns.zone-name-mismatch", title="Private endpoint zone group points at the wrong zone",
    severity=Severity.HIGH,
    rationale="Records in a zone the client never queries do nothing: the name still resolves publicly.",
    remediation="Point the zone group at the zone expected for the target type and group id.",
    references=(DNS_DOC,), controls=("MCSB NS-10",),
    params={"zone_overrides": ZONE_OVERRIDES},
    reads=("private_endpoints",), over="private_endpoints",
    frameworks=(
        Evidences(NIST_800_53, "SC-7",
                  "SC-7 c: records in a zone clients never query leave the name resolving to the "
                  "public interface"),
    ),
)
def zone_name_mismatch(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    overrides = params["zone_overrides"]
    # expected_zone per (target type, group id) and each zone name as compared, kept for the pass: the same few
    # dozen of each recur for every endpoint of a tenant
    zones: dict[tuple[str | None, str], str | None] = {}
    names: dict[str | None, str] = {}
    for pe in each(snap, "private_endpoints"):
        if not pe.dns_zone_groups:   # judged first: no zone group, nothing to compare (the expected zones cost more)
            continue
        expected = set()
        for c in pe.connections:
            target = c.target_id
            if target is None or (kind := target.type_key) == PLS_TYPE or target.is_pls_alias:
                continue
            for g in c.group_ids:
                if (kind, g) in zones:
                    z = zones[(kind, g)]
                else:
                    z = zones[(kind, g)] = expected_zone(kind, g, overrides)
                if z:
                    expected.add(z)
        if not expected:
            continue
        wrong = []
        for g in pe.dns_zone_groups:
            for z in g.zone_ids:
                name = names.get(z.name)
                if name is None:
                    name = names[z.name] = (z.name or "").lower().rstrip(".")
                if name not in expected:
                    wrong.append((g, z))
        if not wrong:
            continue
        rg = pe.id.resource_group or "<resource-group>"
        want = sorted(expected)
        yield Issue(pe.id, f"Private endpoint {pe.name} uses zone(s) "
                    f"{', '.join(sorted({z.name for _, z in wrong}))}; expected {', '.join(want)}.",
                    {"expected_zones": want, "wrong_zones": [{"zone_group": g.id.raw, "zone": z.raw}
                                                             for g, z in wrong],
                     "group_ids": sorted({g for c in pe.connections for g in c.group_ids}),
                     "zone_overrides": dict(overrides)},
                    lines(*(az("network", "private-endpoint", "dns-zone-group", "update", "--resource-group", rg,
                               "--endpoint-name", pe.name, "--name", g.name, "--zone-name", want[0].replace(".", "-"),
                               "--private-dns-zone", f"/subscriptions/{pe.id.subscription}/resourceGroups/{rg}/"
                               f"providers/Microsoft.Network/privateDnsZones/{want[0]}")
                            for g in dict.fromkeys(g for g, _ in wrong))))


def _root(parent: dict[str, str], k: str) -> str:
    while parent[k] != k:
        k = parent[k]
    return k


def _dns_scope(snap: Snapshot, pe: PrivateEndpoint, zone: str | None,
               zones_by_vnet: _LinkedZones) -> tuple[str | None, frozenset[str]]:
    """The endpoint's network, and the zones (ids) named for the group id that network is linked to.

    Zones are compared by identity: two zones of the same name (another resource group or
    subscription) hold separate records, so networks linked to them do not share DNS (checks.md: "linked
    to the same private DNS zone")."""
    subnet = snap.subnet_of(pe)
    vnet = subnet.vnet_id.key if subnet and subnet.vnet_id else \
        (pe.subnet_id.parent.key if pe.subnet_id and pe.subnet_id.parent else None)
    linked = frozenset(zid for name, zid in zones_by_vnet.get(vnet, set()) if name == zone) \
        if vnet and zone else frozenset()
    return vnet, linked


def _groups_of(snap: Snapshot, pe: PrivateEndpoint) -> Iterator[str]:
    """The (target, group id) groups an endpoint's Approved connections put it in, as "target\\0group id" (so
    that text order is the order of the pairs)."""
    return _groups_in(views_of(snap, pe.key))


def _groups_in(views: Iterable[ConnectionView]) -> Iterator[str]:
    for view in views:
        if view.endpoint is None or view.status_key != "approved" or view.target_id is None:
            continue
        gids = view.consumer.group_ids if view.consumer else view.provider.group_ids if view.provider else ()
        for g in gids:
            yield f"{view.target_id.key}\0{g.lower()}"


# The endpoints of each (target, group id), and the zones linked to each network: kept indexes, so one group is
# judged again after an event without a pass over every connection and zone (plmon.checks.units).
DUPLICATE_GROUPS = Index("dns.duplicate_groups", "private_endpoints", _groups_of)
ZONES_BY_VNET = Index("dns.zones_by_vnet", "dns_zones",
                      lambda snap, zone: (ln.vnet_id.key for ln in zone.vnet_links or () if ln.vnet_id is not None))


class _LinkedZones:
    """zones_by_vnet answered per network from the kept index."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def get(self, vnet: str | None, default: set[tuple[str, str]]) -> set[tuple[str, str]]:
        zones = [self.snap.dns_zones[k] for k in lookup(self.snap, ZONES_BY_VNET, vnet)]
        return {(z.name.lower().rstrip("."), z.key) for z in zones} or default


def _duplicate_groups(snap: Snapshot) -> Iterator[tuple[Hashable, tuple[str, ...]]]:
    """Each (target, group id) group with its endpoints (sorted), groups in text order, as judged one at a time
    (each_key, lookup). A plain evaluation groups the endpoints in one pass and skips the groups of one endpoint,
    which cannot duplicate anything (nearly all of them), instead of a lookup per group."""
    if not plain():
        for group in each_key(snap, DUPLICATE_GROUPS):
            yield group, lookup(snap, DUPLICATE_GROUPS, group)
        return
    members: dict[str, list[str]] = {}
    views = plain_views(snap)
    for key in snap.private_endpoints:
        mine = views[key]
        if not mine:
            continue
        if len(mine) == 1:   # most endpoints: one view, of one group id, judged without a generator
            v = mine[0]
            if v.status_key != "approved" or v.endpoint is None or v.target_id is None:
                continue   # no group (_groups_in reads Approved views only)
            gids = v.consumer.group_ids if v.consumer else v.provider.group_ids if v.provider else ()
            if len(gids) == 1:
                group = f"{v.target_id.key}\0{gids[0].lower()}"
                got = members.get(group)
                if got is None:
                    members[group] = [key]
                else:
                    got.append(key)
                continue
        for group in dict.fromkeys(_groups_in(mine)):
            got = members.get(group)
            if got is None:
                members[group] = [key]
            else:
                got.append(key)
    for group in sorted(g for g, keys in members.items() if len(keys) > 1):   # the few shared, not ~35k groups
        yield group, tuple(sorted(members[group]))


@check(
    id="dns.duplicate-endpoints", title="Several private endpoints for the same resource share DNS",
    severity=Severity.LOW,
    rationale="Endpoints for the same resource and group id in one network, or in networks linked to the "
              "same private DNS zone, overwrite each other's A record: one of them silently wins.",
    remediation="Keep one endpoint per resource and group id per DNS scope and delete the others.",
    references=(DNS_DOC,), controls=("MCSB NS-10",),
    params={"zone_overrides": ZONE_OVERRIDES},
    reads=(*VIEW_READS, "subnets", "dns_zones"), over=DUPLICATE_GROUPS.name,
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: endpoints sharing one A record make the name resolve to whichever wrote "
                  "last, not to the design"),
    ),
)
def duplicate_endpoints(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    overrides = params["zone_overrides"]
    zones_by_vnet = _LinkedZones(snap)
    for group, grouped in _duplicate_groups(snap):
        target, gid = str(group).split("\0", 1)
        eps = {k: snap.private_endpoints[k] for k in grouped}
        if len(eps) < 2:
            continue
        target_type = next(v.target_id.type_key for k in eps for v in views_of(snap, k)
                           if v.target_id is not None and v.target_id.key == target)
        expected = expected_zone(target_type, gid, overrides)
        keys = sorted(eps)
        scopes = {k: _dns_scope(snap, eps[k], expected, zones_by_vnet) for k in keys}
        parent = {k: k for k in keys}
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                (va, la), (vb, lb) = scopes[a], scopes[b]
                if (va and va == vb) or (la & lb):
                    parent[_root(parent, b)] = _root(parent, a)
        clusters: dict[str, list[str]] = defaultdict(list)
        for k in keys:
            clusters[_root(parent, k)].append(k)
        for members in clusters.values():
            if len(members) < 2:
                continue
            members.sort(key=lambda k: eps[k].id.raw.lower())
            keep = eps[members[0]]
            for k in members[1:]:
                pe = eps[k]
                yield Issue(pe.id, f"Private endpoint {pe.name} duplicates {keep.name} for the same resource and "
                            f"group id {gid} in the same DNS scope.",
                            {"target": target, "group_id": gid, "kept_endpoint": keep.id.raw,
                             "duplicates": [eps[m].id.raw for m in members], "zone": expected,
                             "virtual_networks": {eps[m].id.raw: scopes[m][0] for m in members}},
                            az("network", "private-endpoint", "delete", "--ids", pe.id.raw))
