"""The plain evaluation's one-pass shortcuts (issue 14, fourth round, evaluation lane) give what the per-subject code
gives, on every tenant the repository holds or the tests build (tests/kit/tenant_catalog.py).

A plain evaluation (``plmon scan``) finds the route checks' paths in one pass over the endpoints, passing over those
whose subnet's kept layouts have nothing a route check reads and the paths through next hops no route check can
report; it pairs every connection view in one pass and reduces the Approved ones to their targets in another.
tests/checks/test_paths_differential.py holds the route checks' issues to the old engine; these tests hold each
shortcut to the per-endpoint (per-target) code it stands in for, on a snapshot of its own (a snapshot keeps what
its engine derived).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from checkkit import snapshot_of
from tenant_catalog import TENANTS

from plmon.checks import links, public_access, route, snat
from plmon.checks.paths import Hop, PathResult, firewall_tenant, paths_for, routed_tenant
from plmon.monitor.model.snapshot import Snapshot, lower


@pytest.fixture(scope="module", params=sorted(TENANTS))
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TENANTS[request.param](tmp_path_factory.mktemp("tenant"))


def _some_firewalls(hop: Hop, destination: str) -> bool:
    """A firewall predicate that keeps some destinations and not others, the same on every snapshot."""
    return sum(map(ord, hop.ip + destination)) % 3 != 0


def _bypass(p: PathResult) -> bool:
    return not p.replaced_by and any(lower(u.next_hop_type) == "virtualappliance" for u in p.not_replacing)


def _through_firewall(p: PathResult) -> bool:
    return p.hop is not None and p.hop.firewall is not None


def _rows(rows: list[tuple[str, tuple[PathResult, ...]]]) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(e, [(p.subnet_id.key, p.destination) for p in paths]) for e, paths in rows]


def _reference(snap: Snapshot) -> Iterator[tuple[str, list[tuple[str, str]], list[tuple[str, str]]]]:
    """Per endpoint (by key): what routed_paths keeps of its paths with ``reported`` (route._reported_hop), and with
    the firewall predicate, from every path the engine decides for it."""
    for key in sorted(snap.private_endpoints):
        every = paths_for(snap, snap.private_endpoints[key])
        reported = [(p.subnet_id.key, p.destination) for p in every
                    if (p.via_appliance or _bypass(p)) and (not _through_firewall(p) or _bypass(p))
                    and (_bypass(p) or p.hop is None or route._reported_hop(p.hop))]
        through = [(p.subnet_id.key, p.destination) for p in every
                   if _through_firewall(p) and _some_firewalls(p.hop, p.destination)]  # type: ignore[arg-type]
        yield key, reported, through


def test_one_pass_over_the_endpoints_keeps_each_endpoints_routed_paths(folder: Path) -> None:
    """routed_tenant and firewall_tenant: the paths routed_paths keeps per endpoint, endpoints by key, those with
    none left out, whether or not the first pass ran before the firewall one."""
    want = list(_reference(snapshot_of(folder)))
    snap = snapshot_of(folder)
    assert _rows(routed_tenant(snap, route._reported_hop)) == [(e, r) for e, r, _ in want if r]
    assert _rows(firewall_tenant(snap, _some_firewalls)) == [(e, t) for e, _, t in want if t]
    alone = snapshot_of(folder)
    assert _rows(firewall_tenant(alone, _some_firewalls)) == [(e, t) for e, _, t in want if t]


def _some_firewalls_within(hop: Hop, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool | None:
    """_some_firewalls for every address of a (small) network when it is the same for all of them, else None."""
    if network.num_addresses > 1024:
        return None
    seen = {_some_firewalls(hop, str(ip)) for ip in network}
    return seen.pop() if len(seen) == 1 else None


def test_judging_a_firewall_once_per_endpoint_subnet_keeps_the_same_paths(folder: Path) -> None:
    """firewall_tenant with ``within`` (a verdict for a whole endpoint subnet where it holds for all its addresses):
    the same paths as judging every address."""
    want = _rows(firewall_tenant(snapshot_of(folder), _some_firewalls))
    snap = snapshot_of(folder)
    routed_tenant(snap, route._reported_hop)
    assert _rows(firewall_tenant(snap, _some_firewalls, _some_firewalls_within)) == want


def test_snats_within_is_snats_for_of_every_address() -> None:
    """snats_within: the verdict snats_for gives every address of the network, or MIXED when they differ."""
    rng = random.Random(11)
    pool = ["10.0.0.0/8", "10.1.2.0/24", "10.1.2.16/28", "10.1.2.7/32", "192.168.0.0/16", "100.64.0.0/10", "bogus",
            "fd00::/64", snat.ALWAYS, snat.NEVER, "10.1.3.0/25"]
    for _ in range(300):
        ranges = snat.expand_ranges(rng.sample(pool, rng.randint(0, 4)) or ["IANAPrivateRanges"])
        for network in ("10.1.2.0/24", "10.1.2.0/27", "10.1.3.0/24", "10.1.2.4/30", "172.20.0.0/24", "fd00::/120"):
            net = ipaddress.ip_network(network)
            seen = {snat.snats_for(ranges, str(ip)) for ip in net}
            got = snat.snats_within(ranges, net)
            assert got == (seen.pop() if len(seen) == 1 else snat.MIXED), (ranges, network)
        assert snat.snats_within(None, ipaddress.ip_network("10.0.0.0/24")) is None


def test_a_path_left_out_is_one_no_route_check_reports(folder: Path) -> None:
    """route._reported_hop leaves out only next hops that forward and that every verdict says SNAT: no row of
    nva-unresolved, nva-ip-forwarding-off or the SNAT checks comes from a path through one."""
    snap = snapshot_of(folder)
    for pe in snap.private_endpoints.values():
        for p in paths_for(snap, pe):
            if p.hop is None or _through_firewall(p) or route._reported_hop(p.hop):
                continue
            assert p.hop.kind != "unresolved" and not route._forwarding_off(p)
            assert all(v is not None and v.snats is True
                       for _, _, v in route._appliance_verdicts(snap, (p,), firewalls=False))


def test_views_paired_in_one_pass_are_each_endpoints_views(folder: Path) -> None:
    """links.plain_views: for every subject, the views _views_of pairs for it alone, in the same order."""
    snap = snapshot_of(folder)
    every = links.plain_views(snap)
    subjects = [*snap.private_endpoints, *(k for k in snap.provider_connections_by_endpoint
                                            if k not in snap.private_endpoints)]
    assert list(every) == subjects
    for key in subjects:
        assert every[key] == links._views_of(snap, key), key


def test_one_endpoints_views_do_not_pair_the_tenant(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """links.views_of of a few keys on a new snapshot (the daemon's observations after an event) pairs only them:
    the one-pass pairing of every endpoint is left to plain_views, and still gives the whole mapping after."""
    snap = snapshot_of(folder)
    keys = list(snap.private_endpoints)[:3]
    with monkeypatch.context() as m:
        m.setattr(links, "_pair_all", lambda _snap: pytest.fail("views_of paired every endpoint"))
        asked = [links.views_of(snap, k) for k in keys]
    assert asked == [links._views_of(snap, k) for k in keys]
    assert list(links.plain_views(snap)) == [*snap.private_endpoints, *(
        k for k in snap.provider_connections_by_endpoint if k not in snap.private_endpoints)]


def test_approved_endpoints_found_in_one_pass_are_each_targets(folder: Path) -> None:
    """public_access._Approved: for every target, the endpoints _find_approved finds for it alone (as a set, which
    is how both checks use them)."""
    snap = snapshot_of(folder)
    approved = public_access._Approved(snap)
    for target in snap.targets.values():
        assert set(approved.of(target)) == set(public_access._find_approved(snap, target)), target.key
