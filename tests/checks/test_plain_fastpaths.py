"""The plain evaluation's shortcuts (issue 14, evaluation lane) give what the general code gives.

A plain evaluation (``plmon scan``) parses dotted quads itself, splits route lists through an index, walks only the
paths a route check can report on and judges which firewall paths may go untranslated from the firewall's ranges.
tests/checks/test_paths_differential.py holds the route checks' issues to the old engine on its tenants; these
tests hold each shortcut to the code it stands in for.
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

from netkit import Net, appliance_tenant

from plmon.checks import paths
from plmon.checks.paths import RouteCandidate, _compile, _Prefixes, _split, parse_ip, paths_for, routed_paths
from plmon.checks.snat import firewall_ranges, firewall_snat, snats_for
from plmon.monitor.model.snapshot import lower


def _reference_ip(value: str | None) -> object:
    try:
        return ipaddress.ip_address(value.strip()) if value else None
    except ValueError:
        return None


def test_parse_ip_accepts_and_refuses_what_ipaddress_does() -> None:
    """The dotted-quad fast path: the same address (and type) as ipaddress, or None, for odd octets too."""
    rng = random.Random(7)
    cases: list[str | None] = ["10.0.0.1", " 10.0.0.1 ", "010.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1",
                               "1.2.3", "1.2.3.4.5", "1..2.3", "\u0663.1.1.1", "1.2.3.4/32", "fd00::1",
                               "::ffff:1.2.3.4", "", None, "1.2.3.04", "+1.2.3.4", "1. 2.3.4", "1000.1.1.1"]
    parts = ["0", "00", "1", "01", "255", "256", "999", "12", "a", "", " 1", "001", "\u0663"]
    cases += [".".join(rng.choice(parts) for _ in range(rng.choice([3, 4, 4, 5]))) for _ in range(3000)]
    for value in cases:
        got, want = parse_ip.__wrapped__(value), _reference_ip(value)
        assert (got, type(got)) == (want, type(want)), value


def test_indexed_split_is_the_plain_split() -> None:
    """_Prefixes.split: the routes holding a region and those inside it, the same indices as _split."""
    rng = random.Random(3)
    for _ in range(400):
        prefixes = [f"10.{rng.randint(0, 3)}.{rng.randint(0, 3)}.{rng.randint(0, 255)}/"
                    f"{rng.choice([0, 8, 16, 20, 24, 28, 32])}" if rng.random() < 0.85 else
                    f"fd00:{rng.randint(0, 2)}::{rng.randint(0, 3)}/{rng.choice([0, 48, 64, 128])}"
                    for _ in range(rng.randint(0, 25))]
        entries = tuple((c, RouteCandidate(p, "x", "y")) for p in prefixes if (c := _compile(p)) is not None)
        index = _Prefixes(entries)
        for _ in range(8):
            region = _compile(f"10.{rng.randint(0, 3)}.{rng.randint(0, 3)}.{rng.randint(0, 255)}/"
                              f"{rng.choice([8, 16, 24, 26, 32])}" if rng.random() < 0.85 else
                              f"fd00:{rng.randint(0, 2)}::{rng.randint(0, 3)}/{rng.choice([64, 128])}")
            assert region is not None
            assert index.split(region) == _split(entries, region)


def _firewalls(tmp_path: Path) -> Net:
    n = Net()
    n.firewall("fw-classic", "10.0.1.4", snat="IANAPrivateRanges, 40.0.0.0/8")
    n.firewall("fw-default", "10.0.1.5")
    n.firewall("fw-always", "10.0.1.6", snat="255.255.255.255/32")
    n.firewall("fw-policy", "10.0.1.7", policy="pol-mixed")
    n.firewall("fw-missing", "10.0.1.8", policy="pol-missing")
    n.firewall_policy("pol-mixed", ["192.168.0.0/16", "bogus"])
    return n


def test_firewall_ranges_judge_as_firewall_snat(tmp_path: Path) -> None:
    """snats_for(firewall_ranges(...)) is firewall_snat(...).snats for every SNAT model and destination."""
    snap = _firewalls(tmp_path).snapshot(tmp_path)
    assert len(snap.firewalls) == 5
    for fw in snap.firewalls.values():
        ranges = firewall_ranges(snap, fw)
        for ip in ("10.1.1.4", "40.1.2.3", "192.168.3.4", "100.64.0.9", "8.8.8.8", "fd00::4", "not-an-ip"):
            assert snats_for(ranges, ip) is firewall_snat(snap, fw, ip).snats, (fw.name, ip)


def test_routed_paths_are_the_paths_a_route_check_reads(tmp_path: Path) -> None:
    """Without ``firewalls``: every path through an appliance other than a firewall, or with an appliance route that
    does not replace the endpoint's /32; with it: the paths through a firewall it keeps. In path order."""
    snap = appliance_tenant().snapshot(tmp_path)
    kept_any = False
    for pe in snap.private_endpoints.values():
        every = paths_for(snap, pe)

        def bypass(p: paths.PathResult) -> bool:
            return not p.replaced_by and any(lower(u.next_hop_type) == "virtualappliance" for u in p.not_replacing)

        def firewall(p: paths.PathResult) -> bool:
            return p.hop is not None and p.hop.firewall is not None
        want = [(p.subnet_id.key, p.destination) for p in every
                if (p.via_appliance or bypass(p)) and (not firewall(p) or bypass(p))]
        assert [(p.subnet_id.key, p.destination) for p in routed_paths(snap, pe)] == want
        through = [(p.subnet_id.key, p.destination) for p in every if firewall(p)]
        assert [(p.subnet_id.key, p.destination) for p in routed_paths(snap, pe, lambda h, d: True)] == through
        assert routed_paths(snap, pe, lambda h, d: False) == ()
        kept_any = kept_any or bool(want or through)
    assert kept_any
