"""dns.* checks: zone groups, expected zone names (with sovereign overrides from config), duplicates."""

from __future__ import annotations

import copy
from pathlib import Path

from checkkit import snapshot_of
from netkit import NET, Net
from tenantkit import example, sub_list

from plmon.checks.engine import evaluate
from plmon.monitor.config import parse_config
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot

DNS_IDS = {"dns.no-zone-group", "dns.zone-name-mismatch", "dns.duplicate-endpoints"}
BLOB = "privatelink.blob.core.windows.net"


def tenant(tmp_path: Path) -> Snapshot:
    n = Net()
    n.vnet("a", "10.1.0.0/16").subnet("a", "pe", "10.1.1.0/24")
    n.vnet("b", "10.2.0.0/16").subnet("b", "pe", "10.2.1.0/24")
    n.vnet("c", "10.3.0.0/16").subnet("c", "pe", "10.3.1.0/24")
    n.vnet("custom", "10.4.0.0/16").subnet("custom", "pe", "10.4.1.0/24")
    st1 = n.storage("st1", "no-group", "good", "dup-same-vnet", "dup-linked", "other-c", "custom-dns")
    vault = n.storage("kv1", "wrong-zone", type_="Microsoft.KeyVault/vaults")
    n.endpoint("no-group", st1, vnet="a", ip="10.1.1.4", zones=[])                  # fails no-zone-group
    n.endpoint("good", st1, vnet="a", ip="10.1.1.5", zones=[BLOB])                  # duplicate
    n.endpoint("dup-same-vnet", st1, vnet="a", ip="10.1.1.6", zones=[BLOB])         # duplicate (same vnet)
    n.endpoint("dup-linked", st1, vnet="b", ip="10.2.1.4", zones=[BLOB])            # kept: its id sorts first
    n.endpoint("other-c", st1, vnet="c", ip="10.3.1.4", zones=[BLOB])               # own scope: no duplicate
    n.endpoint("custom-dns", st1, vnet="custom", ip="10.4.1.4", zones=[])           # managed elsewhere
    n.endpoint("wrong-zone", vault, vnet="c", ip="10.3.1.5", groups=("vault",), zones=[BLOB])
    n.endpoint("pending", n.storage("st2", "pending", status="Pending"), vnet="c", ip="10.3.1.6", zones=[],
               status="Pending")                                                   # not Approved: passes
    pls = f"{NET}/privateLinkServices/pls1"
    n.endpoint("to-pls", pls, vnet="c", ip="10.3.1.7", zones=[], groups=())        # PLS: no zone expected
    n.zone(BLOB, "a", "b")
    return n.snapshot(tmp_path)


def _run(snap: Snapshot, config: dict | None = None) -> set[tuple[str, str]]:
    cfg = parse_config(config or {})
    ev = evaluate(snap, cfg.check_settings(), only=DNS_IDS)
    assert ev.check_errors == ()
    return {(f.check_id, f.resource_id.rsplit("/", 1)[-1]) for f in ev.findings}


MANAGED = {"checks": {"dns.no-zone-group": {"managed_elsewhere": [f"{NET}/virtualNetworks/custom".lower()]}}}


def test_exact_dns_findings(tmp_path: Path) -> None:
    """Each DNS check fails on its case and passes its neighbours; duplicates name all but the first id."""
    assert _run(tenant(tmp_path), MANAGED) == {
        ("dns.no-zone-group", "no-group"),
        ("dns.zone-name-mismatch", "wrong-zone"),
        # a and b share the linked zone: dup-linked's id sorts first and is kept
        ("dns.duplicate-endpoints", "dup-same-vnet"), ("dns.duplicate-endpoints", "good"),
        ("dns.duplicate-endpoints", "no-group"),
    }


def test_managed_elsewhere_is_needed_to_skip_custom_dns(tmp_path: Path) -> None:
    """Without the managed_elsewhere declaration the custom-DNS endpoint is reported too."""
    assert ("dns.no-zone-group", "custom-dns") in _run(tenant(tmp_path))


def test_sovereign_zone_overrides_from_config(tmp_path: Path) -> None:
    """dns.zone_overrides in the config changes the expected zone: the commercial zone then mismatches."""
    gov = {"dns": {"zone_overrides": {BLOB: "privatelink.blob.core.usgovcloudapi.net"}}, **MANAGED}
    found = _run(tenant(tmp_path), gov)
    assert {r for c, r in found if c == "dns.zone-name-mismatch"} == {"wrong-zone", "good", "dup-same-vnet",
                                                                      "dup-linked", "other-c"}


def test_mismatch_evidence_and_fix(tmp_path: Path) -> None:
    """The mismatch names the expected zone and gives the zone-group update command."""
    ev = evaluate(tenant(tmp_path), only={"dns.zone-name-mismatch"})
    f = ev.findings[0]
    assert f.evidence["expected_zones"] == ["privatelink.vaultcore.azure.net"]
    assert "az network private-endpoint dns-zone-group update" in f.remediation
    assert f.severity.value == "high"


# The alias of the REST spec's PrivateLinkServiceGet example and the real form with a region.
ALIASES = ("ContosoService.{guid}.azure.privatelinkservice",
           "svc.6f3e1d2c-0000-4000-8000-00000000abcd.westeurope.azure.privatelinkservice")


def test_alias_endpoint_needs_no_zone_group(tmp_path: Path) -> None:
    """An Approved endpoint connected by a Private Link Service alias gets no dns.* finding and no gap,
    while a platform endpoint beside it without a zone group still fails."""
    n = Net()
    n.vnet("a", "10.1.0.0/16").subnet("a", "pe", "10.1.1.0/24")
    for i, alias in enumerate(ALIASES):
        n.endpoint(f"by-alias-{i}", alias, vnet="a", ip=f"10.1.1.{10 + i}", zones=[], groups=())
    n.endpoint("by-alias-grouped", ALIASES[1], vnet="a", ip="10.1.1.20", zones=[BLOB], groups=("blob",))
    n.endpoint("no-group", n.storage("st1", "no-group"), vnet="a", ip="10.1.1.4", zones=[])
    snap = n.snapshot(tmp_path)
    assert _run(snap) == {("dns.no-zone-group", "no-group")}
    ev = evaluate(snap, only={"connection.target-missing"})
    assert ev.findings == ()
    assert [g for g in snap.coverage.gaps if "privatelinkservice" in g.scope.lower()] == []


def test_connection_without_target_id_is_judged_on_its_group_ids(tmp_path: Path) -> None:
    """A connection with no privateLinkServiceId is a platform endpoint only when a group id has a standard
    zone: a 'blob' one without a zone group fails, one with no group ids (an alias-style request) stays quiet."""
    n = Net()
    n.vnet("a", "10.1.0.0/16").subnet("a", "pe", "10.1.1.0/24")
    n.endpoint("no-target-blob", "", vnet="a", ip="10.1.1.4", zones=[])
    n.endpoint("no-target-nogroup", "", vnet="a", ip="10.1.1.5", zones=[], groups=())
    assert _run(n.snapshot(tmp_path)) == {("dns.no-zone-group", "no-target-blob")}


def test_alias_on_microsofts_endpoint_payload(tmp_path: Path) -> None:
    """Microsoft's PrivateEndpointGet body connected by the alias of its PrivateLinkServiceGet body: Approved,
    zone-group list empty, and still no dns.* finding."""
    pe = copy.deepcopy(example("network/PrivateEndpointGet.json"))
    alias = example("network/PrivateLinkServiceGet.json")["properties"]["alias"]
    pe["properties"]["privateLinkServiceConnections"][0]["properties"]["privateLinkServiceId"] = alias
    sub = parse_id(pe["id"]).subscription
    snap = snapshot_of(tmp_path, {sub_list("privateEndpoints", sub=sub): {"value": [pe]},
                                  f"{pe['id'].strip('/')}/privateDnsZoneGroups": {"value": []}},
                       subscriptions=[sub])
    assert snap.private_endpoints[pe["id"].lower()].dns_zone_groups == ()
    assert _run(snap) == set()


def test_duplicates_without_any_private_dns_zone_name_the_expected_zone(tmp_path: Path) -> None:
    """Two endpoints in one network, no DNS zone in the tenant (or out of a scoped scan): the duplicate is found and
    its evidence names the zone the group id expects (it named whichever zone a loop saw last, or crashed)."""
    n = Net()
    n.vnet("a", "10.1.0.0/16").subnet("a", "pe", "10.1.1.0/24")
    st1 = n.storage("st1", "first", "second")
    n.endpoint("first", st1, vnet="a", ip="10.1.1.4", zones=[])
    n.endpoint("second", st1, vnet="a", ip="10.1.1.5", zones=[])
    ev = evaluate(n.snapshot(tmp_path), only={"dns.duplicate-endpoints"})
    assert ev.check_errors == ()
    [finding] = ev.findings
    assert finding.resource_id.endswith("/second") and finding.evidence["zone"] == BLOB
