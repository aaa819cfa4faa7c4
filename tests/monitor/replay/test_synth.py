"""Tests for the synthetic tenant generator (plmon.monitor.replay.synth) and ``plmon synth``."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from plmon.monitor.cli import cli
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.errors import InputError
from plmon.monitor.model.snapshot import Snapshot, TargetState
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.scan import run_scan

SMALL = SynthSpec(subscriptions=4, endpoints=160, seed=7, pls=2, bad_share=0.5)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.json")):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Snapshot, dict[str, int]]:
    result = generate(SMALL)
    folder = tmp_path_factory.mktemp("synth") / "tenant"
    write_tenant(result, folder)
    tenant = RecordedTenant(folder)
    snap = build_snapshot(collect(tenant, manifest=tenant.manifest, workers=1))
    return folder, snap, dict(result.defects)


def test_same_seed_same_bytes_other_seed_other_tenant(tmp_path: Path) -> None:
    """The same spec writes byte-identical folders; another seed gives another tenant."""
    spec = SynthSpec(subscriptions=3, endpoints=60, seed=11)
    write_tenant(generate(spec), tmp_path / "a")
    write_tenant(generate(spec), tmp_path / "b")
    write_tenant(generate(SynthSpec(subscriptions=3, endpoints=60, seed=12)), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_counts_and_layout_follow_the_spec(small: tuple[Path, Snapshot, dict[str, int]]) -> None:
    """The requested subscriptions, endpoints (plus the hub's management endpoint) and services exist."""
    folder, snap, _ = small
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["tenant_id"] == snap.tenant_id and manifest["recorded_at"]
    assert len(snap.subscriptions) == 4
    assert len(snap.private_endpoints) == 160 + 1
    assert len(snap.private_link_services) == 2
    hubs = [v for v in snap.virtual_networks.values() if v.name.startswith("vnet-hub")]
    spokes = [v for v in snap.virtual_networks.values() if not v.name.startswith("vnet-hub")]
    assert len(hubs) == 1 and len(spokes) == 3
    for spoke in spokes:  # hub and spoke: each spoke peers with exactly one hub, and the hub back
        assert [p.remote_vnet_id.key for p in spoke.peerings] == [hubs[0].key]
    assert {p.remote_vnet_id.key for p in hubs[0].peerings} == {s.key for s in spokes}


def test_every_reference_resolves(small: tuple[Path, Snapshot, dict[str, int]]) -> None:
    """Subnets, route tables, NSGs, NICs, peerings, zones, targets and connections all point at real objects."""
    _, snap, defects = small
    for sn in snap.subnets.values():
        if sn.route_table_id is not None:
            assert sn.key in {s.key for s in snap.route_tables[sn.route_table_id.key].subnet_ids}
        if sn.nsg_id is not None:
            assert sn.key in {s.key for s in snap.nsgs[sn.nsg_id.key].subnet_ids}
        for pe_id in sn.private_endpoint_ids:
            assert snap.private_endpoints[pe_id.key].subnet_id.key == sn.key
    for rt in snap.route_tables.values():
        for s in rt.subnet_ids:
            assert snap.subnets[s.key].route_table_id.key == rt.key
    for vnet in snap.virtual_networks.values():
        for p in vnet.peerings:
            remote = snap.virtual_networks[p.remote_vnet_id.key]
            assert vnet.key in {q.remote_vnet_id.key for q in remote.peerings}
        for s in vnet.subnet_ids:
            net = ipaddress.ip_network(snap.subnets[s.key].address_prefixes[0])
            assert net.subnet_of(ipaddress.ip_network(vnet.address_prefixes[0]))
    nic_by_pe = {n.private_endpoint_id.key: n for n in snap.nics.values() if n.private_endpoint_id}
    missing = unreadable = 0
    for pe in snap.private_endpoints.values():
        subnet = snap.subnets[pe.subnet_id.key]
        net = ipaddress.ip_network(subnet.address_prefixes[0])
        assert pe.ip_addresses and all(ipaddress.ip_address(ip) in net for ip in pe.ip_addresses)
        assert [n.key for n in pe.nic_ids] == [nic_by_pe[pe.key].key]
        assert nic_by_pe[pe.key].ip_configs[0].private_ip == pe.ip_addresses[0]
        for g in pe.dns_zone_groups or ():
            assert all(z.key in snap.dns_zones for z in g.zone_ids)
        for c in pe.connections:
            key = c.target_id.key
            if key in snap.private_link_services or key in snap.rmpls:
                owner = snap.private_link_services.get(key) or snap.rmpls[key]
            else:
                target = snap.targets[key]
                if target.state == TargetState.NOT_FOUND:
                    missing += 1
                    continue
                if target.state == TargetState.UNREADABLE:
                    unreadable += 1
                    continue
                owner = target
            mirror = [pc for pc in owner.connections if pc.endpoint_id and pc.endpoint_id.key == pe.key]
            if c.status == "Disconnected":
                assert mirror == []
            else:
                assert [m.status for m in mirror] == [c.status]
    # A deleted or unreadable storage account may carry two endpoints (blob and file).
    assert defects.get("endpoint:target-missing", 0) <= missing <= 2 * defects.get("endpoint:target-missing", 0)
    assert defects.get("endpoint:target-unreadable", 0) <= unreadable
    for zone in snap.dns_zones.values():
        assert zone.vnet_links and all(link.vnet_id.key in snap.virtual_networks for link in zone.vnet_links)
    appliance_ips = {ip for fw in snap.firewalls.values() for ip in fw.private_ips}
    appliance_ips |= {fe.private_ip for lb in snap.load_balancers.values() for fe in lb.frontends}
    unresolved = {r.next_hop_ip for rt in snap.route_tables.values() for r in rt.routes} - appliance_ips
    assert len(unresolved) == defects.get("spoke:next-hop-unresolved", 0)
    for fw in snap.firewalls.values():
        assert fw.firewall_policy_id is None or fw.firewall_policy_id.key in snap.firewall_policies
        assert all(s.key in snap.subnets for s in fw.subnet_ids)
    frontends = {fe.id.key for lb in snap.load_balancers.values() for fe in lb.frontends}
    for pls in snap.private_link_services.values():
        assert all(f.key in frontends for f in pls.frontend_ids)
        assert all(c.subnet_id.key in snap.subnets for c in pls.nat_ip_configs)
        for pc in pls.connections:
            assert pc.endpoint_id.key in snap.private_endpoints
    pools = {k for lb in snap.load_balancers.values() for k in lb.backend_pools}
    for nic in snap.nics.values():
        for cfg in nic.ip_configs:
            assert cfg.subnet_id.key in snap.subnets
            assert all(p.key in pools for p in cfg.backend_pool_ids)


def test_scan_finds_several_families_and_no_malformed_gaps(small: tuple[Path, Snapshot, dict[str, int]]) -> None:
    """A full scan of a small synthetic tenant yields findings from many check families and reads cleanly."""
    folder, _, defects = small
    tenant = RecordedTenant(folder)
    result = run_scan(tenant, load_config(None), manifest=tenant.manifest, workers=2)
    families = {f.check_id.split(".")[0] for f in result.evaluation.findings}
    assert {"connection", "public-access", "pls", "rmpl", "dns", "route"} <= families, families
    assert not [g for g in result.gaps if g.code == "MalformedResource"]
    assert not result.evaluation.check_errors
    # The only gaps are the targets the generator made unreadable on purpose.
    assert {g.code for g in result.gaps} <= {"AuthorizationFailed"}
    assert len(result.gaps) <= defects.get("endpoint:target-unreadable", 0)


def test_healthy_tenant_has_no_connection_or_pls_findings(tmp_path: Path) -> None:
    """With --bad-share 0 there is nothing wrong with connections, services, routes or DNS."""
    write_tenant(generate(SynthSpec(subscriptions=3, endpoints=80, seed=3, bad_share=0.0)), tmp_path / "t")
    tenant = RecordedTenant(tmp_path / "t")
    result = run_scan(tenant, load_config(None), manifest=tenant.manifest, workers=2)
    bad = [f.check_id for f in result.evaluation.findings
           if f.check_id.split(".")[0] in ("connection", "pls", "dns", "endpoint", "public-access", "route")]
    assert bad == []
    assert result.gaps == ()


def test_bad_spec_is_input_error(tmp_path: Path) -> None:
    """Impossible specs fail with an InputError, not a traceback."""
    with pytest.raises(InputError, match="--pls"):
        generate(SynthSpec(subscriptions=1, endpoints=10, pls=50))
    with pytest.raises(InputError, match="bad-share"):
        generate(SynthSpec(subscriptions=1, endpoints=10, bad_share=1.5))


def test_cli_writes_refuses_non_empty_and_forces(tmp_path: Path) -> None:
    """plmon synth writes a tenant, exits 2 on a non-empty --out, and replaces it with --force."""
    out = tmp_path / "t"
    runner = CliRunner()
    args = ["synth", "--subscriptions", "2", "--endpoints", "20", "--seed", "5", "--out", str(out)]
    first = runner.invoke(cli, [*args, "--summary"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["resources"]["privateEndpoints"] == 21 and summary["files"] > 10
    assert (out / "manifest.json").exists() and (out / "arm" / "subscriptions.json").exists()
    again = runner.invoke(cli, args)
    assert again.exit_code != 0 and "not empty" in str(again.exception or again.output)
    digest = _digest(out)
    forced = runner.invoke(cli, [*args, "--force"])
    assert forced.exit_code == 0 and _digest(out) == digest
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    refused = runner.invoke(cli, [*args[:-1], str(tmp_path / "other"), "--force"])
    assert refused.exit_code != 0 and (tmp_path / "other" / "notes.txt").exists()


def test_hub_with_many_spokes_and_hub_endpoints(tmp_path: Path) -> None:
    """--spokes peers one hub with that many spokes (endpoints shared evenly); --hub-endpoints puts endpoints in
    the hub's own subnets, reached from every spoke; references still resolve and a healthy tenant stays clean."""
    result = generate(SynthSpec(subscriptions=3, endpoints=60, seed=3, bad_share=0.0, spokes=24, hub_endpoints=30))
    write_tenant(result, tmp_path / "t")
    tenant = RecordedTenant(tmp_path / "t")
    snap = build_snapshot(collect(tenant, manifest=tenant.manifest, workers=1))
    hubs = [v for v in snap.virtual_networks.values() if v.name.startswith("vnet-hub")]
    spokes = [v for v in snap.virtual_networks.values() if not v.name.startswith("vnet-hub")]
    assert len(hubs) == 1 and len(spokes) == 24
    assert {p.remote_vnet_id.key for p in hubs[0].peerings} == {s.key for s in spokes}
    in_hub = [pe for pe in snap.private_endpoints.values()
              if snap.subnets[pe.subnet_id.key].key.startswith(hubs[0].key + "/")]
    assert len(in_hub) == 30 + 1  # and the management link's endpoint
    assert len(snap.private_endpoints) == 60 + 30 + 1
    for pe in snap.private_endpoints.values():
        net = ipaddress.ip_network(snap.subnets[pe.subnet_id.key].address_prefixes[0])
        assert all(ipaddress.ip_address(ip) in net for ip in pe.ip_addresses)
    prefixes = [ipaddress.ip_network(snap.subnets[s.key].address_prefixes[0]) for s in hubs[0].subnet_ids]
    assert not [(a, b) for i, a in enumerate(prefixes) for b in prefixes[i + 1:] if a.overlaps(b)]
    scan = run_scan(tenant, load_config(None), manifest=tenant.manifest, workers=2)
    assert [f.check_id for f in scan.evaluation.findings
            if f.check_id.split(".")[0] in ("connection", "pls", "dns", "endpoint", "route")] == []
    # Defaults are untouched: the same spec without the new fields gives the tenant it always gave.
    assert generate(SynthSpec(subscriptions=3, endpoints=60, seed=3)).files == \
        generate(SynthSpec(subscriptions=3, endpoints=60, seed=3, spokes=None, hub_endpoints=0)).files
    with pytest.raises(InputError, match="--spokes"):
        generate(SynthSpec(subscriptions=4, endpoints=10, spokes=2))
    with pytest.raises(InputError, match="--hub-endpoints"):
        generate(SynthSpec(subscriptions=1, endpoints=10, hub_endpoints=5000))
