"""A dynamic-IP endpoint's IP is only on its NIC: plmon reads that NIC by id when no list returned it, and when
the IP still cannot be known near an appliance route it says so (route.endpoint-ip-unknown), never a pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from checkkit import snapshot_of
from daemonkit import config, event
from netkit import NET, Net, hub_and_spokes, subnet_id
from tenantkit import example, sub_list

from plmon.checks.engine import evaluate
from plmon.checks.registry import all_checks
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.reports.model import build_report
from plmon.monitor.scan import run_scan
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.reevaluate import reread_into
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import FindingState

ROUTE_IDS = {c for c in all_checks() if c.startswith("route.")}
PE = f"{NET}/privateEndpoints/pe-dyn"
NIC = f"{NET}/networkInterfaces/pe-dyn.nic.1234"
DENIED = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no read on networkInterfaces"}}


def _nic_body(ip: str = "10.1.1.9") -> dict[str, Any]:
    """A private endpoint's NIC in the shape of NetworkInterfaceGet: it names its endpoint and holds the IP."""
    return {"id": NIC, "name": NIC.rsplit("/", 1)[-1], "type": "Microsoft.Network/networkInterfaces",
            "properties": {"privateEndpoint": {"id": PE}, "enableIPForwarding": False, "ipConfigurations": [
                {"id": f"{NIC}/ipConfigurations/privateEndpointIpConfig", "name": "privateEndpointIpConfig",
                 "properties": {"privateIPAddress": ip, "privateIPAllocationMethod": "Dynamic",
                                "subnet": {"id": subnet_id("spoke1", "pe")}}}]}}


def _tenant(*, nic_ref: str = NIC, nic_in_list: bool = False, nic_by_id: bool | None = True,
            nic_list_denied: bool = False, route_table: bool = True) -> Net:
    """Hub and spokes; spoke1's app subnet sends 0.0.0.0/0 to a firewall (bypassed by any spoke1 endpoint).

    ``pe-dyn`` in spoke1 is dynamic: ``ipConfigurations: []``, ``customDnsConfigs: []``, the IP on its NIC.
    ``nic_by_id``: True the NIC answers a GET by id, False it answers 403, None no file (404).
    """
    n = hub_and_spokes()
    n.firewall("fw", "10.0.1.4")
    if route_table:
        n.route_table("rt-spoke1", ("default-to-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.1.4"))
    n.endpoint("pe-dyn", n.storage("st1", "pe-dyn"), vnet="spoke1", ip="10.1.1.9", zones=[])
    body = n.lists["privateEndpoints"][-1]
    body["properties"].update(ipConfigurations=[], customDnsConfigs=[], networkInterfaces=[{"id": nic_ref}])
    if nic_in_list:
        n.lists["networkInterfaces"].append(_nic_body())
    if nic_list_denied:
        n.files[sub_list("networkInterfaces") + ".error"] = DENIED
    if nic_by_id is True:
        n.files[NIC.strip("/")] = _nic_body()
    elif nic_by_id is False:
        n.files[NIC.strip("/") + ".error"] = DENIED
    return n


def _found(snap: Snapshot) -> dict[tuple[str, str], Any]:
    ev = evaluate(snap, only=ROUTE_IDS)
    assert ev.check_errors == ()
    return {(f.check_id, f.resource_id.rsplit("/", 1)[-1]): f for f in ev.findings}


def _bypassed_ips(found: dict[tuple[str, str], Any]) -> list[str]:
    f = found.get(("route.udr-bypassed", "rt-spoke1"))
    return sorted(e["ip"] for e in f.evidence["endpoints"]) if f else []


def test_nic_in_the_list_gives_the_ip(tmp_path: Path) -> None:
    """Control: with its NIC listed, the dynamic endpoint's IP is known and its bypass is found."""
    found = _found(_tenant(nic_in_list=True, nic_by_id=None).snapshot(tmp_path))
    assert _bypassed_ips(found) == ["10.1.1.9"]
    assert ("route.endpoint-ip-unknown", "pe-dyn") not in found


@pytest.mark.parametrize("denied", [False, True], ids=["created-after-the-list", "nic-list-403"])
def test_nic_missing_from_the_lists_is_read_by_id(tmp_path: Path, denied: bool) -> None:
    """A NIC no list returned (newer than the list, or the list failed) is read by id: the route is judged."""
    snap = _tenant(nic_list_denied=denied).snapshot(tmp_path)
    assert snap.private_endpoints[PE.lower()].ip_addresses == ("10.1.1.9",)
    found = _found(snap)
    assert _bypassed_ips(found) == ["10.1.1.9"]
    assert ("route.endpoint-ip-unknown", "pe-dyn") not in found


def test_nic_reference_with_the_provders_typo_is_read(tmp_path: Path) -> None:
    """The '/provders/' spelling of Microsoft's PrivateEndpointGet example still leads to the NIC."""
    snap = _tenant(nic_ref=NIC.replace("/providers/", "/provders/")).snapshot(tmp_path)
    assert snap.private_endpoints[PE.lower()].ip_addresses == ("10.1.1.9",)


def test_unreadable_nic_near_an_appliance_route_is_said(tmp_path: Path) -> None:
    """NIC list and NIC both 403: an info finding on the endpoint names the NIC and the route table; no route
    finding is guessed for it."""
    snap = _tenant(nic_list_denied=True, nic_by_id=False).snapshot(tmp_path)
    assert snap.private_endpoints[PE.lower()].ip_addresses == ()
    found = _found(snap)
    f = found[("route.endpoint-ip-unknown", "pe-dyn")]
    assert f.severity.value == "info" and f.resource_id.lower() == PE.lower()
    assert [n["id"] for n in f.evidence["network_interfaces"]] == [NIC]
    assert "AuthorizationFailed" in f.evidence["network_interfaces"][0]["note"]
    assert [t["route_table"].rsplit("/", 1)[-1] for t in f.evidence["route_tables"]] == ["rt-spoke1"]
    assert f.evidence["route_tables"][0]["routes"][0]["prefix"] == "0.0.0.0/0"
    assert NIC in f.remediation
    assert ("route.udr-bypassed", "rt-spoke1") not in found
    assert any(g.scope.lower() == NIC.lower() for g in snap.coverage.gaps)


def test_unknown_ip_without_route_tables_around_stays_quiet(tmp_path: Path) -> None:
    """No appliance route in any client subnet: an unknown IP changes no route verdict, so nothing is said."""
    found = _found(_tenant(nic_list_denied=True, nic_by_id=False, route_table=False).snapshot(tmp_path))
    assert found == {}


def test_route_family_is_not_reported_as_fully_passing(tmp_path: Path) -> None:
    """The report's route family is below 100% when an endpoint's paths could not be judged."""
    reader = RecordedTenant(_tenant(nic_list_denied=True, nic_by_id=False).write(tmp_path))
    report = build_report(run_scan(reader, parse_config({}), manifest=reader.manifest, workers=1))
    route = next(f for f in report.by_family if f["family"] == "route")
    assert route["checks_passing"] < route["checks_run"]
    assert route["compliance_percent"] is not None and route["compliance_percent"] < 100


def test_event_reread_of_a_new_endpoint_reads_its_nic(tmp_path: Path) -> None:
    """The daemon's targeted re-read of a new endpoint reads its NIC by id: the NIC list it holds predates it."""
    folder = _tenant(nic_by_id=True).write(tmp_path)
    reader = RecordedTenant(folder)
    endpoints = folder / "arm" / f"{sub_list('privateEndpoints')}.json"
    listed = json.loads(endpoints.read_text())
    endpoints.write_text(json.dumps({"value": []}))  # the full collection ran before the endpoint existed
    inv = collect(reader, manifest=reader.manifest, workers=1)
    assert PE.lower() not in build_snapshot(inv).private_endpoints
    endpoints.write_text(json.dumps(listed))
    new, result = reread_into(reader, inv, [parse_id(PE)])
    assert result.failed == []
    snap = build_snapshot(new)
    assert snap.private_endpoints[PE.lower()].ip_addresses == ("10.1.1.9",)
    assert _bypassed_ips(_found(snap)) == ["10.1.1.9"]


def test_microsofts_payloads_dynamic_endpoint_gets_its_ip_from_the_nic(tmp_path: Path) -> None:
    """Microsoft's PrivateEndpointGet body as a dynamic endpoint (no ipConfigurations, no customDnsConfigs,
    NIC reference spelled '/provders/') and a NetworkInterfaceGet-shaped NIC stored only by id: the IP is read."""
    pe = copy.deepcopy(example("network/PrivateEndpointGet.json"))
    pe["properties"].update(ipConfigurations=[], customDnsConfigs=[])
    nic_ref = pe["properties"]["networkInterfaces"][0]["id"]
    assert "/provders/" in nic_ref
    nic = copy.deepcopy(example("network/NetworkInterfaceGet.json"))
    nic["id"] = nic_ref.replace("/provders/", "/providers/")
    nic["name"] = nic["id"].rsplit("/", 1)[-1]
    sub = parse_id(pe["id"]).subscription
    snap = snapshot_of(tmp_path, {sub_list("privateEndpoints", sub=sub): {"value": [pe]},
                                  nic["id"].strip("/"): nic}, subscriptions=[sub])
    assert "172.20.2.4" in snap.private_endpoints[pe["id"].lower()].ip_addresses


def test_daemon_event_for_a_new_dynamic_endpoint_judges_its_route(tmp_path: Path) -> None:
    """plmon's daemon, told by an event of a new dynamic endpoint, reads its NIC and opens the bypass finding."""
    folder = _tenant(nic_by_id=True).write(tmp_path / "t")
    endpoints = folder / "arm" / f"{sub_list('privateEndpoints')}.json"
    listed = endpoints.read_text()
    endpoints.write_text(json.dumps({"value": []}))
    db = tmp_path / "state.db"
    d = Daemon(config("http://127.0.0.1:9/unused"), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
               channels={})
    d.full_collection()
    table = f"{NET}/routeTables/rt-spoke1".lower()
    assert d.store.get_finding("route.udr-bypassed", table) is None
    endpoints.write_text(listed)
    d.accept(json.dumps([event(PE, op="Microsoft.Network/privateEndpoints/write")]).encode(), "application/json")
    assert d.process_pending().rereads == 1
    rec = d.store.get_finding("route.udr-bypassed", table)
    assert rec is not None and rec.state == FindingState.OPEN
    assert d.store.get_finding("route.endpoint-ip-unknown", PE.lower()) is None


def test_unreadable_nic_reference_is_a_gap_not_a_crash(tmp_path: Path) -> None:
    """A NIC reference that is no ARM id (and ipConfigurations of the wrong type) is an InvalidResourceId gap."""
    n = _tenant(nic_ref="b1a2c3d4-0000-4000-8000-000000000000", nic_by_id=None)
    n.lists["privateEndpoints"][-1]["properties"]["ipConfigurations"] = 5
    snap = n.snapshot(tmp_path)
    assert [g.code for g in snap.coverage.gaps if g.scope.startswith("b1a2c3d4")] == ["InvalidResourceId"]
    assert ("route.endpoint-ip-unknown", "pe-dyn") in _found(snap)
