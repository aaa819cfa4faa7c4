"""The link step's fast paths (issue 14, fifth round, scanrest lane) make the very records and indexes of the general
code they stand in for, on every tenant the repository holds or the tests build (tests/kit/tenant_catalog.py)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import pytest
from tenant_catalog import TENANTS

from plmon.monitor.collect import builder
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import DnsZoneGroup, Nic, NicIpConfig, PrivateEndpoint

PE = parse_id("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe")
NIC = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/"


@pytest.fixture(scope="module", params=sorted(TENANTS))
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return TENANTS[request.param](tmp_path_factory.mktemp("tenant"))


def _general(base: dict[str, PrivateEndpoint], nics: dict[str, Nic],
             naming: dict[str, set[str]]) -> tuple[dict[str, PrivateEndpoint], dict[str, set[str]]]:
    """What the link step did before its one pass: each endpoint through _with_its_nics, and nic_owner_index."""
    links = builder.Links({}, base, {k: frozenset(v) for k, v in naming.items()}, {}, {})
    return ({k: builder._with_its_nics(k, pe, nics, links) for k, pe in base.items()},
            builder.nic_owner_index(base))


def _nic(name: str, *ips: str, endpoint: str | None = None) -> Nic:
    nid = parse_id(NIC + name)
    configs = tuple(NicIpConfig(id=parse_id(f"{nid.raw}/ipConfigurations/c{i}"), name=f"c{i}", private_ip=ip,
                                subnet_id=None) for i, ip in enumerate(ips))
    return Nic(id=nid, name=name, type="Microsoft.Network/networkInterfaces", ip_configs=configs,
               private_endpoint_id=parse_id(endpoint) if endpoint else None)


def test_one_pass_over_the_endpoints_gives_each_endpoint_its_nics_ips(folder: Path) -> None:
    """Every catalogue tenant: the same endpoints (the very object when nothing merges) and the same NIC index."""
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = builder.link(inv)
    base, nics = links.base_endpoints, dict(snap.nics)
    naming = {k: set(v) for k, v in links.nics_naming.items()}
    endpoints, index = builder._endpoints_with_nics(base, nics, naming)
    general, general_index = _general(base, nics, naming)
    assert endpoints == general and list(endpoints) == list(general)
    assert all(endpoints[k] is general[k] for k in general if general[k] is base[k])
    assert index == general_index and list(index) == list(general_index)


def test_the_fast_path_and_the_general_one_agree_on_every_nic_layout() -> None:
    """One NIC, a NIC naming another endpoint too, two NICs, an opaque '/provders/' id, a NIC absent: same result."""
    pe_key = PE.key
    nics = {n.key: n for n in (_nic("a", "10.0.0.4"), _nic("b", "10.0.0.5", "10.0.0.4", endpoint=PE.raw),
                               _nic("c", "10.0.0.6", endpoint=PE.raw))}
    typo = parse_id(NIC.replace("/providers/", "/provders/") + "a")
    layouts = [(parse_id(NIC + "a"),), (parse_id(NIC + "b"),), (parse_id(NIC + "a"), parse_id(NIC + "b")),
               (typo,), (parse_id(NIC + "zz"),), ()]
    for nic_ids in layouts:
        for naming_keys in (set(), {parse_id(NIC + "c").key}, {parse_id(NIC + "b").key}):
            pe = PrivateEndpoint(id=PE, name="pe", type="t", ip_addresses=("10.0.0.4",), nic_ids=nic_ids)
            naming: dict[str, set[str]] = defaultdict(set)
            if naming_keys:
                naming[pe_key] = set(naming_keys)
            assert builder._endpoints_with_nics({pe_key: pe}, nics, naming) == _general({pe_key: pe}, nics, naming)


def test_with_replaces_the_fields_named_and_keeps_the_others() -> None:
    """The generated replacer gives dataclasses.replace's record, still frozen."""
    pe = PrivateEndpoint(id=PE, name="pe", type="t", location="westeurope", ip_addresses=("10.0.0.4",))
    groups = (DnsZoneGroup(id=parse_id(f"{PE.raw}/privateDnsZoneGroups/g"), name="g", zone_ids=()),)
    made = builder._with(pe, dns_zone_groups=groups, ip_addresses=("10.0.0.5",))
    assert made == dataclasses.replace(pe, dns_zone_groups=groups, ip_addresses=("10.0.0.5",))
    assert builder._with(pe) == pe
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "other"  # type: ignore[misc]
