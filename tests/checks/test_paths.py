"""The route evaluator (checks/paths.py): every rule of checks.md "Routes and SNAT", as tables and properties."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netkit import Net, hub_and_spokes, subnet_id

from plmon.checks.paths import client_subnets, decide, endpoint_paths, replaces_endpoint_route, resolve_next_hop
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Route, Snapshot, Subnet

PE_IP = "10.1.1.4"


def _snap(tmp_path: Path, *, policy: str | None, routes: list[tuple[str, str, str, str | None]],
          peering_state: str = "Connected", access: bool = True) -> Snapshot:
    n = Net()
    n.vnet("hub", "10.0.0.0/16").subnet("hub", "nva", "10.0.2.0/24")
    n.vnet("spoke1", "10.1.0.0/16").subnet("spoke1", "app", "10.1.0.0/24", route_table="rt") \
        .subnet("spoke1", "pe", "10.1.1.0/24", policy=policy)
    n.vnet("spoke9", "10.9.0.0/16").subnet("spoke9", "app", "10.9.0.0/24", route_table="rt")
    n.peer("spoke1", "spoke9", state=peering_state, access=access)
    n.route_table("rt", *routes)
    n.nic("nva1", "10.0.2.4")
    n.endpoint("pe1", n.storage("st1", "pe1"), vnet="spoke1", ip=PE_IP, zones=[])
    return n.snapshot(tmp_path)


def _subnet(snap: Snapshot, vnet: str, name: str) -> Subnet:
    return snap.subnets[parse_id(subnet_id(vnet, name)).key]


FW = "10.0.2.4"

# (policy, route prefix, expected origin of the winner, expected prefix)
TABLE = [
    (None, "0.0.0.0/0", "private-endpoint", f"{PE_IP}/32"),            # default never replaces
    ("Enabled", "0.0.0.0/0", "private-endpoint", f"{PE_IP}/32"),       # ...whatever the policy
    (None, "10.1.0.0/16", "private-endpoint", f"{PE_IP}/32"),          # policy absent = Disabled
    ("Disabled", "10.1.1.0/24", "private-endpoint", f"{PE_IP}/32"),
    ("NetworkSecurityGroupEnabled", "10.1.0.0/16", "private-endpoint", f"{PE_IP}/32"),
    ("Enabled", "10.1.0.0/16", "user-defined", "10.1.0.0/16"),         # /16 >= /16 replaces
    ("RouteTableEnabled", "10.1.1.0/24", "user-defined", "10.1.1.0/24"),  # /24 >= /16 replaces
    ("enabled", "10.0.0.0/8", "private-endpoint", f"{PE_IP}/32"),      # /8 < /16 never (lower-case value)
    (None, f"{PE_IP}/32", "user-defined", f"{PE_IP}/32"),             # /32 always
    ("Disabled", f"{PE_IP}/32", "user-defined", f"{PE_IP}/32"),
]


@pytest.mark.parametrize(("policy", "prefix", "origin", "winner"), TABLE)
def test_replacement_rule_table(tmp_path: Path, policy: str | None, prefix: str, origin: str, winner: str) -> None:
    """Each row of the replacement rule decides the winner from a same-VNet client subnet."""
    snap = _snap(tmp_path, policy=policy, routes=[("r", prefix, "VirtualAppliance", FW)])
    result = decide(snap, _subnet(snap, "spoke1", "app"), PE_IP)
    assert result.route is not None
    assert (result.route.origin, result.route.prefix) == (origin, winner)
    assert result.reasons and any("replace" in r for r in result.reasons)


def test_peered_client_gets_endpoint_route_only_over_connected_peering(tmp_path: Path) -> None:
    """A peered subnet sees the /32 over a Connected peering with access; not over a Disconnected one."""
    snap = _snap(tmp_path, policy=None, routes=[])
    r = decide(snap, _subnet(snap, "spoke9", "app"), PE_IP)
    assert r.route is not None and r.route.origin == "private-endpoint" and r.endpoint is not None
    assert "peering spoke1-to-spoke9" in " ".join(r.reasons)
    off = _snap(tmp_path / "b", policy=None, routes=[], peering_state="Disconnected")
    r2 = decide(off, _subnet(off, "spoke9", "app"), PE_IP)
    assert r2.endpoint is None and r2.route is not None and r2.route.origin == "default"
    no_access = _snap(tmp_path / "c", policy=None, routes=[], access=False)
    assert decide(no_access, _subnet(no_access, "spoke9", "app"), PE_IP).endpoint is None


def test_client_subnets_are_endpoint_vnet_and_direct_peers_only(tmp_path: Path) -> None:
    """Clients: every subnet of the endpoint's VNet and of directly peered VNets, not peers of peers."""
    n = hub_and_spokes()
    n.endpoint("pe1", n.storage("st1", "pe1"), vnet="spoke1", ip=PE_IP, zones=[])
    snap = n.snapshot(tmp_path)
    names = sorted(s.id.raw.split("/virtualNetworks/")[1] for s in client_subnets(snap, snap.private_endpoints[
        next(iter(snap.private_endpoints))]))
    assert names == ["hub/subnets/AzureFirewallSubnet", "hub/subnets/jump", "hub/subnets/nva",
                     "spoke1/subnets/app", "spoke1/subnets/pe"]


def test_longest_prefix_and_udr_wins_on_equal_prefix(tmp_path: Path) -> None:
    """Longest prefix wins among UDRs; a UDR equal to a system route's prefix beats it."""
    snap = _snap(tmp_path, policy="Enabled", routes=[("wide", "10.1.0.0/16", "VirtualAppliance", FW),
                                                     ("narrow", "10.1.1.0/24", "None", None)])
    r = decide(snap, _subnet(snap, "spoke1", "app"), PE_IP)
    assert r.route is not None and r.route.route_name == "narrow"
    other = decide(snap, _subnet(snap, "spoke1", "app"), "10.1.200.1")  # no endpoint: VnetLocal /16 vs UDR /16
    assert other.route is not None and other.route.route_name == "wide"
    assert "user-defined route beats a system route" in other.reasons[-2]


def test_next_hop_resolution_kinds(tmp_path: Path) -> None:
    """A next-hop IP resolves to a firewall, a NIC, an internal LB frontend with its NICs, or nothing."""
    n = hub_and_spokes()
    n.firewall("fw", "10.0.1.4")
    n.nic("nva1", "10.0.2.4")
    pool = n.load_balancer("ilb", "10.0.2.10")
    n.nic("nva2", "10.0.2.5", pool=pool)
    snap = n.snapshot(tmp_path)
    assert resolve_next_hop(snap, "10.0.1.4").kind == "firewall"
    assert resolve_next_hop(snap, "10.0.2.4").kind == "nic"
    lb = resolve_next_hop(snap, "10.0.2.10")
    assert lb.kind == "load-balancer" and [x.name for x in lb.backend_nics] == ["nva2"]
    assert resolve_next_hop(snap, "10.0.2.99").kind == "unresolved"
    assert resolve_next_hop(snap, None).kind == "unresolved"


@pytest.mark.parametrize(("length", "policy", "vnet_len", "expected"), [
    (32, "Disabled", 16, True), (0, "Enabled", 0, False), (16, "Enabled", 16, True),
    (24, "RouteTableEnabled", 16, True),
    (8, "Enabled", 16, False), (24, None, 16, False), (24, "Enabled", None, False),
])
def test_replaces_endpoint_route_rule(length: int, policy: str | None, vnet_len: int | None, expected: bool) -> None:
    """The bare rule, including a VNet /0 entry that still never lets 0.0.0.0/0 replace the /32."""
    assert replaces_endpoint_route(length, policy=policy, vnet_prefix_length=vnet_len)[0] is expected


def test_endpoint_paths_cover_every_client(tmp_path: Path) -> None:
    """endpoint_paths yields one decided path per (client subnet, endpoint IP), all naming the endpoint."""
    snap = _snap(tmp_path, policy=None, routes=[])
    paths = endpoint_paths(snap)
    assert {p.subnet_id.name for p in paths} == {"app", "pe"}  # spoke1 app, pe and spoke9 app
    assert len(paths) == 3 and all(p.endpoint is not None for p in paths)


# --- properties --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return _snap(tmp_path_factory.mktemp("base"), policy=None, routes=[])


def _with(snap: Snapshot, routes: list[tuple[str, str]], policy: str | None) -> Snapshot:
    rt_key = next(iter(snap.route_tables))
    table = snap.route_tables[rt_key]
    new_rt = dataclasses.replace(table, routes=tuple(Route(f"r{i}", px, "VirtualAppliance", hop)
                                                     for i, (px, hop) in enumerate(routes)))
    pe_subnet_key = parse_id(subnet_id("spoke1", "pe")).key
    subnets = dict(snap.subnets)
    subnets[pe_subnet_key] = dataclasses.replace(subnets[pe_subnet_key], private_endpoint_network_policies=policy)
    return dataclasses.replace(snap, route_tables=MappingProxyType({rt_key: new_rt}),
                               subnets=MappingProxyType(subnets))


POLICIES = st.sampled_from([None, "Disabled", "Enabled", "RouteTableEnabled", "NetworkSecurityGroupEnabled"])
PREFIX_LEN = st.integers(min_value=0, max_value=32)


def _cover(length: int) -> str:
    return str(ipaddress.ip_network(f"{PE_IP}/{length}", strict=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=POLICIES, others=st.lists(PREFIX_LEN, max_size=4))
def test_property_a_32_udr_always_wins(base: Snapshot, policy: str | None, others: list[int]) -> None:
    """Whatever else the table holds and whatever the policy, a /32 UDR for the endpoint IP wins."""
    routes = [(_cover(x), "10.0.2.9") for x in others] + [(f"{PE_IP}/32", "10.0.2.4")]
    snap = _with(base, routes, policy)
    r = decide(snap, _subnet(snap, "spoke1", "app"), PE_IP)
    assert r.route is not None and r.route.origin == "user-defined" and r.route.prefix_length == 32


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=POLICIES, lengths=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=4))
def test_property_shorter_than_vnet_never_replaces(base: Snapshot, policy: str | None, lengths: list[int]) -> None:
    """UDRs shorter than the endpoint VNet's /16 never replace the /32, under any policy."""
    snap = _with(base, [(_cover(x), "10.0.2.4") for x in lengths], policy)
    r = decide(snap, _subnet(snap, "spoke1", "app"), PE_IP)
    assert r.route is not None and r.route.origin == "private-endpoint" and not r.replaced_by


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=POLICIES, decided=st.integers(min_value=16, max_value=32), extra=st.integers(min_value=0, max_value=32))
def test_property_less_specific_route_never_changes_decision(base: Snapshot, policy: str | None, decided: int,
                                                             extra: int) -> None:
    """Adding a route less specific than the decided one leaves the decided path unchanged."""
    first = _with(base, [(_cover(decided), "10.0.2.4")], policy)
    before = decide(first, _subnet(first, "spoke1", "app"), PE_IP).route
    assert before is not None
    if extra >= before.prefix_length:
        extra = max(0, before.prefix_length - 1)
    if extra >= before.prefix_length:
        return  # nothing is less specific than a /0
    second = _with(base, [(_cover(decided), "10.0.2.4"), (_cover(extra), "10.0.2.9")], policy)
    after = decide(second, _subnet(second, "spoke1", "app"), PE_IP).route
    assert after is not None
    assert (after.prefix, after.origin, after.next_hop_ip) == (before.prefix, before.origin, before.next_hop_ip)


def test_microsoft_example_payloads_evaluate(tmp_path: Path) -> None:
    """Microsoft's firewall, policy, route table, NSG, subnet and VNet examples parse and evaluate cleanly."""
    from tenantkit import example, sub_list, write_tenant

    from plmon.checks.engine import evaluate

    vnet = example("network/VirtualNetworkGet.json")
    files = {sub_list("virtualNetworks"): {"value": [vnet]},
             sub_list("routeTables"): {"value": [example("network/RouteTableGet.json")]},
             sub_list("networkSecurityGroups"): {"value": [example("network/NetworkSecurityGroupGet.json")]},
             sub_list("azureFirewalls"): {"value": [example("network/AzureFirewallGet.json"),
                                                   example("network/AzureFirewallGetWithAdditionalProperties.json")]},
             sub_list("firewallPolicies"): {"value": [example("network/FirewallPolicyGet.json")]},
             sub_list("loadBalancers"): {"value": [example("network/LoadBalancerGet.json")]},
             sub_list("networkInterfaces"): {"value": [example("network/NetworkInterfaceGet.json")]}}
    write_tenant(tmp_path, files)
    from plmon.monitor.collect.builder import build_snapshot
    from plmon.monitor.collect.plan import collect
    from plmon.monitor.collect.recorded import RecordedTenant
    snap = build_snapshot(collect(RecordedTenant(tmp_path), workers=1))
    assert snap.firewalls and snap.firewall_policies and snap.route_tables and snap.nsgs and snap.subnets
    ev = evaluate(snap)
    assert ev.check_errors == ()
    for s in snap.subnets.values():
        assert decide(snap, s, "10.0.3.4").route is not None
    example_subnet = example("network/SubnetGet.json")
    write_tenant(tmp_path / "s", {sub_list("virtualNetworks"): {"value": [{
        "id": example_subnet["id"].rsplit("/subnets/", 1)[0], "name": "vnetname",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [example_subnet]}}]}})
    snap2 = build_snapshot(collect(RecordedTenant(tmp_path / "s"), workers=1))
    only = next(iter(snap2.subnets.values()))
    assert decide(snap2, only, "10.0.0.9").route.origin == "vnet-local"  # type: ignore[union-attr]
