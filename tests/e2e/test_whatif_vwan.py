"""``plmon what-if`` on Virtual WAN changes, each against an independent evaluation: the demo tenant (or a variant of
it) written by hand as the deployment would leave it and scanned with ``plmon scan``. ``introduced`` and ``resolved``
must be exactly the difference of the two scans (by check id and subject), and every change must be applied.

Child payloads follow azure-rest-api-specs ``Microsoft.Network/stable/2024-07-01/virtualWan.json`` and its examples
as checks-vwan.md trims them (HubRouteTableGet for ``hubRouteTables``, RoutingIntentGet for ``routingIntent``,
HubVirtualNetworkConnectionGet for ``hubVirtualNetworkConnections``, VirtualHubGet, AzureFirewallPutInHub; the
policy's ``snat.privateRanges`` from ``firewallPolicy.json``), written here by hand in the shape
``az deployment group what-if --result-format FullResourcePayloads --no-pretty-print`` prints
(tests/kit/whatifkit.py); no example file is copied.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clikit import run_main
from whatifkit import DEMO, S2, change, cli_document, keys, scan, write

from plmon.monitor.replay.server import ReplayServer

S1 = "/subscriptions/aaaaaaaa-0000-4000-8000-000000000001"
VWAN = f"{S1}/resourceGroups/rg-vwan/providers/Microsoft.Network"
WEU, NEU = f"{VWAN}/virtualHubs/vhub-weu", f"{VWAN}/virtualHubs/vhub-neu"
FW_WEU = f"{VWAN}/azureFirewalls/fw-vhub-weu"
BRANCH = f"{S2}/resourceGroups/rg-branch/providers/Microsoft.Network/virtualNetworks/vnet-branch-apps"
APP_VNET = f"{S2}/resourceGroups/rg-app/providers/Microsoft.Network/virtualNetworks/vnet-app"
VNETS = f"{S2}/providers/Microsoft.Network/virtualNetworks"
PES = f"{S2}/providers/Microsoft.Network/privateEndpoints"
POLICIES = f"{S1}/providers/Microsoft.Network/firewallPolicies"
API = "2024-07-01"




def read(folder: Path, path: str) -> Any:
    return json.loads((folder / "arm" / f"{path.strip('/')}.json").read_text())


def edit(folder: Path, path: str, fn: Callable[[Any], None]) -> None:
    file = folder / "arm" / f"{path.strip('/')}.json"
    body = json.loads(file.read_text())
    fn(body)
    file.write_text(json.dumps(body))


def item(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in body["value"] if i["name"].lower() == name.lower())
    return found


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def judge(before: Path, after: Path, doc: dict[str, Any], tmp_path: Path,
          capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``plmon what-if`` of ``doc`` on ``before``, held to the scans of ``before`` and ``after``: every change
    applied, nothing reported not applied, introduced/resolved/unchanged exactly the scans' difference."""
    rc, out, err = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), "--from", str(before),
                             "--format", "json"], capsys)
    assert rc in (0, 1), err
    result: dict[str, Any] = json.loads(out)
    want_before, want_after = scan(before, capsys), scan(after, capsys)
    assert result["changes"]["applied"] == len(doc["changes"])
    assert not result["changes"]["unsupported"] and not result["changes"]["ignored"]
    assert keys(result["introduced"]) == want_after - want_before
    assert keys(result["resolved"]) == want_before - want_after
    assert result["unchanged"] == len(want_before & want_after)
    rc, table, err = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), "--from", str(before)], capsys)
    assert "WhatIfNotApplied" not in table, table
    return result


def cgs(findings: list[dict[str, Any]]) -> set[str]:
    return {f["check_id"] for f in findings}


def no_snat_weu_outside_rfc1918(folder: Path) -> None:
    """The branch spoke's endpoint moved into RFC 6598 space (100.64.0.0/24, beside 10.20.0.0/16): inside no hub's
    private traffic prefixes, so both hubs of the WAN miss it (vwan.private-prefixes-miss-endpoint)."""
    def vnets(body: dict[str, Any]) -> None:
        vnet = item(body, "vnet-branch-apps")
        vnet["properties"]["addressSpace"]["addressPrefixes"].append("100.64.0.0/24")
        item({"value": vnet["properties"]["subnets"]}, "snet-pe")["properties"]["addressPrefix"] = "100.64.0.0/24"

    def pes(body: dict[str, Any]) -> None:
        item(body, "pe-st-branch")["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] = \
            "100.64.0.4"
    edit(folder, VNETS, vnets)
    edit(folder, PES, pes)


def test_a_private_traffic_prefix_added_to_a_hub_default_route_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(a) A static route of 100.64.0.0/10 to the hub firewall added to vhub-weu's defaultRouteTable (what the
    portal's private traffic prefixes write) resolves that hub's prefix finding; vhub-neu's stays."""
    before = copy_of(DEMO, tmp_path / "before")
    no_snat_weu_outside_rfc1918(before)
    after = copy_of(before, tmp_path / "after")
    tables = read(before, f"{WEU}/hubRouteTables")
    old = item(tables, "defaultRouteTable")
    new = copy.deepcopy(old)
    new["properties"]["routes"].append({"name": "private_traffic", "destinationType": "CIDR",
                                        "destinations": ["100.64.0.0/10"], "nextHopType": "ResourceId",
                                        "nextHop": FW_WEU})
    edit(after, f"{WEU}/hubRouteTables",
         lambda b: b.update(value=[new if i["name"] == "defaultRouteTable" else i for i in b["value"]]))
    doc = cli_document(change(old["id"], "Modify", before=old, after=new, api_version=API))
    result = judge(before, after, doc, tmp_path, capsys)
    assert keys(result["resolved"]) == {("vwan.private-prefixes-miss-endpoint",
                                         f"{WEU}/hubRouteTables/defaultRouteTable".lower())}


def test_b_routing_intent_without_the_private_traffic_policy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(b) vhub-weu's routing intent keeps only an Internet policy: the hub is no longer secured for private
    traffic, so the branch endpoint subnet's bypass and the hub firewall's SNAT findings are resolved."""
    after = copy_of(DEMO, tmp_path / "after")
    old = item(read(DEMO, f"{WEU}/routingIntent"), "intent")
    new = copy.deepcopy(old)
    new["properties"]["routingPolicies"] = [{"name": "InternetTraffic", "destinations": ["Internet"],
                                             "nextHop": FW_WEU}]
    edit(after, f"{WEU}/routingIntent", lambda b: b.update(value=[new]))
    # ARM takes the policy's _policy_PrivateTraffic route out of defaultRouteTable with it
    edit(after, f"{WEU}/hubRouteTables", lambda b: item(b, "defaultRouteTable")["properties"].update(routes=[]))
    doc = cli_document(change(old["id"], "Modify", before=old, after=new, api_version=API))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert {"vwan.endpoint-subnet-policy-bypass", "route.nva-missing-snat"} <= cgs(result["resolved"])


def test_c_new_hub_connection_of_a_spoke_with_endpoints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(c) A hub connection created on vhub-neu for vnet-app (endpoints in snet-pe, network policies Disabled):
    the subnet's bypass finding is introduced, as a scan of the hub listing the connection (and the spoke holding
    the platform peering ARM makes) finds."""
    after = copy_of(DEMO, tmp_path / "after")
    conn_id = f"{NEU}/hubVirtualNetworkConnections/conn-app"
    default = f"{NEU}/hubRouteTables/defaultRouteTable"
    conn = {"id": conn_id, "name": "conn-app", "type": "Microsoft.Network/virtualHubs/hubVirtualNetworkConnections",
            "properties": {"remoteVirtualNetwork": {"id": APP_VNET}, "enableInternetSecurity": False,
                           "routingConfiguration": {"associatedRouteTable": {"id": default},
                                                    "propagatedRouteTables": {"labels": ["default"],
                                                                              "ids": [{"id": default}]}}}}
    edit(after, f"{NEU}/hubVirtualNetworkConnections", lambda b: b["value"].append(conn))
    guid = "7d1e2f30-4a5b-4c6d-8e9f-0a1b2c3d4e5f"

    def vnets(body: dict[str, Any]) -> None:
        item(body, "vnet-app")["properties"]["virtualNetworkPeerings"].append({
            "name": f"RemoteVnetToHubPeering_{guid}", "id": f"{APP_VNET}/virtualNetworkPeerings/"
                                                        f"RemoteVnetToHubPeering_{guid}",
            "properties": {"peeringState": "Connected", "allowVirtualNetworkAccess": True,
                           "allowForwardedTraffic": True, "useRemoteGateways": False,
                           "remoteVirtualNetwork": {"id": "/subscriptions/0c2d7e91-6a4b-4f3c-8e15-9b7a3d5c1e08/"
                                                    f"resourceGroups/RG_vhub-neu_{guid[:8]}/providers/"
                                                    f"Microsoft.Network/virtualNetworks/HV_vhub-neu_{guid}"},
                           "remoteAddressSpace": {"addressPrefixes": ["10.101.0.0/23"]}}})
    edit(after, VNETS, vnets)
    doc = cli_document(change(conn_id, "Create", after=conn, api_version=API))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert ("vwan.endpoint-subnet-policy-bypass", f"{APP_VNET}/subnets/snet-pe".lower()) in keys(
        result["introduced"])


def test_d_endpoint_subnet_policies_route_table_enabled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(d) The connected spoke's endpoint subnet set to RouteTableEnabled (a subnet child PUT): the bypass finding
    is resolved."""
    after = copy_of(DEMO, tmp_path / "after")
    vnet = item(read(DEMO, VNETS), "vnet-branch-apps")
    old = item({"value": vnet["properties"]["subnets"]}, "snet-pe")
    new = copy.deepcopy(old)
    new["properties"]["privateEndpointNetworkPolicies"] = "RouteTableEnabled"
    new.setdefault("type", "Microsoft.Network/virtualNetworks/subnets")

    def vnets(body: dict[str, Any]) -> None:
        subnets = item(body, "vnet-branch-apps")["properties"]["subnets"]
        item({"value": subnets}, "snet-pe")["properties"]["privateEndpointNetworkPolicies"] = "RouteTableEnabled"
    edit(after, VNETS, vnets)
    doc = cli_document(change(f"{BRANCH}/subnets/snet-pe", "Modify", before=old, after=new))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert keys(result["resolved"]) == {("vwan.endpoint-subnet-policy-bypass",
                                         f"{BRANCH}/subnets/snet-pe".lower())}


def test_e_hub_firewall_policy_snat_always(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(e) The hub firewall's policy set to always SNAT (privateRanges 255.255.255.255/32): its
    route.nva-missing-snat finding is resolved."""
    after = copy_of(DEMO, tmp_path / "after")
    old = item(read(DEMO, POLICIES), "afwp-vhub-weu")
    new = copy.deepcopy(old)
    new["properties"]["snat"] = {"privateRanges": ["255.255.255.255/32"]}
    edit(after, POLICIES, lambda b: b.update(value=[new if i["name"] == old["name"] else i for i in b["value"]]))
    doc = cli_document(change(old["id"], "Modify", before=old, after=new, api_version="2024-05-01"))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert keys(result["resolved"]) == {("route.nva-missing-snat", FW_WEU.lower())}


def test_f_deleted_hub_connection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(f) The branch spoke's hub connection deleted: nothing of it is behind the hub any more, so its findings are
    resolved, as a scan of the hub without the connection (and the spoke without the platform peering ARM removes
    with it) finds."""
    after = copy_of(DEMO, tmp_path / "after")
    conn_id = f"{WEU}/hubVirtualNetworkConnections/conn-branch-apps"
    edit(after, f"{WEU}/hubVirtualNetworkConnections", lambda b: b.update(value=[]))

    def vnets(body: dict[str, Any]) -> None:
        props = item(body, "vnet-branch-apps")["properties"]
        props["virtualNetworkPeerings"] = [p for p in props["virtualNetworkPeerings"]
                                           if not p["name"].startswith("RemoteVnetToHubPeering_")]
    edit(after, VNETS, vnets)
    doc = cli_document(change(conn_id, "Delete", before=item(read(DEMO, f"{WEU}/hubVirtualNetworkConnections"),
                                                             "conn-branch-apps"), api_version=API))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert "vwan.endpoint-subnet-policy-bypass" in cgs(result["resolved"])


def test_e_hub_firewall_moved_to_a_new_always_snat_policy(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """(e) The other way to switch SNAT to always: a new policy created and the hub firewall pointed at it, its
    predicted payload without the private IP ARM allocated (kept, as ARM keeps it): the SNAT finding is resolved and
    nothing else moves."""
    after = copy_of(DEMO, tmp_path / "after")
    old = item(read(DEMO, POLICIES), "afwp-vhub-weu")
    policy = copy.deepcopy(old)
    policy.update(id=old["id"].replace("afwp-vhub-weu", "afwp-vhub-weu-snat"), name="afwp-vhub-weu-snat")
    policy["properties"]["snat"] = {"privateRanges": ["255.255.255.255/32"]}
    fws = f"{S1}/providers/Microsoft.Network/azureFirewalls"
    fw = item(read(DEMO, fws), "fw-vhub-weu")
    moved = copy.deepcopy(fw)
    moved["properties"]["firewallPolicy"] = {"id": policy["id"]}
    edit(after, POLICIES, lambda b: b["value"].append(policy))
    edit(after, fws, lambda b: b.update(value=[moved if i["name"] == fw["name"] else i for i in b["value"]]))
    predicted = copy.deepcopy(moved)
    del predicted["properties"]["hubIPAddresses"]["privateIPAddress"]
    doc = cli_document(change(policy["id"], "Create", after=policy, api_version="2024-05-01"),
                       change(fw["id"], "Modify", before=fw, after=predicted, api_version="2024-05-01"))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert keys(result["resolved"]) == {("route.nva-missing-snat", FW_WEU.lower())} and not result["introduced"]


def test_new_secured_hub_with_its_children_and_a_connection(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A whole secured hub deployed at once (hub, AZFW_Hub firewall, routing intent, default route table, a
    connection of vnet-app): the lists below a hub that does not exist yet read as ARM will answer them, so the hub is
    judged as the scan of the tenant holding it judges it."""
    after = copy_of(DEMO, tmp_path / "after")
    hub_id, fw_id = f"{VWAN}/virtualHubs/vhub-new", f"{VWAN}/azureFirewalls/fw-vhub-new"
    hub = {"id": hub_id, "name": "vhub-new", "type": "Microsoft.Network/virtualHubs", "location": "westeurope",
           "properties": {"virtualWan": {"id": f"{VWAN}/virtualWans/vwan-contoso"}, "addressPrefix": "10.102.0.0/23",
                          "sku": "Standard"}}
    fw = {"id": fw_id, "name": "fw-vhub-new", "type": "Microsoft.Network/azureFirewalls", "location": "westeurope",
          "properties": {"sku": {"name": "AZFW_Hub", "tier": "Standard"}, "virtualHub": {"id": hub_id},
                         "firewallPolicy": {"id": f"{VWAN}/firewallPolicies/afwp-vhub-weu"},
                         "hubIPAddresses": {"publicIPs": {"count": 1}}, "additionalProperties": {}}}
    intent = {"id": f"{hub_id}/routingIntent/intent", "name": "intent",
              "type": "Microsoft.Network/virtualHubs/routingIntent",
              "properties": {"routingPolicies": [{"name": "PrivateTrafficPolicy", "destinations": ["PrivateTraffic"],
                                                  "nextHop": fw_id}]}}
    table = {"id": f"{hub_id}/hubRouteTables/defaultRouteTable", "name": "defaultRouteTable",
             "type": "Microsoft.Network/virtualHubs/hubRouteTables",
             "properties": {"labels": ["default"], "routes": [{"name": "private_traffic", "destinationType": "CIDR",
                                                               "destinations": ["100.64.0.0/10"],
                                                               "nextHopType": "ResourceId", "nextHop": fw_id}]}}
    conn = {"id": f"{hub_id}/hubVirtualNetworkConnections/conn-app", "name": "conn-app",
            "type": "Microsoft.Network/virtualHubs/hubVirtualNetworkConnections",
            "properties": {"remoteVirtualNetwork": {"id": APP_VNET}, "enableInternetSecurity": False}}
    edit(after, f"{S1}/providers/Microsoft.Network/virtualHubs", lambda b: b["value"].append(hub))
    edit(after, f"{S1}/providers/Microsoft.Network/azureFirewalls", lambda b: b["value"].append(fw))
    for child, body in (("routingIntent", intent), ("hubRouteTables", table),
                        ("hubVirtualNetworkConnections", conn)):
        (after / "arm" / f"{hub_id.strip('/')}").mkdir(parents=True, exist_ok=True)
        (after / "arm" / f"{hub_id.strip('/')}/{child}.json").write_text(json.dumps({"value": [body]}))
    doc = cli_document(*(change(i["id"], "Create", after=i, api_version=API) for i in (hub, fw, intent, table, conn)))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert ("route.nva-missing-snat", fw_id.lower()) in keys(result["introduced"])
    assert ("vwan.endpoint-subnet-policy-bypass", f"{APP_VNET}/subnets/snet-pe".lower()) in keys(
        result["introduced"])


def test_live_hub_changes_through_the_replay_server_equal_offline(tmp_path: Path) -> None:
    """Through the real SDK clients against the replay server, hub child changes (a connection created on one hub
    and deleted on the other, a routing intent changed) give the document --from gives, and are all applied."""
    conn_id = f"{NEU}/hubVirtualNetworkConnections/conn-app"
    conn = {"id": conn_id, "name": "conn-app", "properties": {"remoteVirtualNetwork": {"id": APP_VNET}}}
    old = item(read(DEMO, f"{NEU}/routingIntent"), "intent")
    new = copy.deepcopy(old)
    new["properties"]["routingPolicies"][0]["destinations"] = ["PrivateTraffic", "Internet"]
    doc = cli_document(change(conn_id, "Create", after=conn, api_version=API),
                       change(f"{WEU}/hubVirtualNetworkConnections/conn-branch-apps", "Delete", api_version=API),
                       change(old["id"], "Modify", before=old, after=new, api_version=API))
    path = str(write(tmp_path, doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLMON_")}
    env.update({"PLMON_ARM_TOKEN": "demo", "PLMON_ARM_RETRY_BACKOFF": "0.01", "PLMON_LOG_LEVEL": "warning"})
    plmon = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plmon")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([plmon, "what-if", "--what-if", path, "--format", "json", *args], capture_output=True,
                              text=True, env=env, timeout=120)
    offline = run("--from", str(DEMO))
    with ReplayServer(DEMO, page_size=2) as server:
        live = run("--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle)
    assert offline.returncode == live.returncode, live.stderr
    result = json.loads(offline.stdout)
    assert json.loads(live.stdout) == result and result["changes"]["applied"] == 3
    assert ("vwan.endpoint-subnet-policy-bypass", f"{APP_VNET}/subnets/snet-pe".lower()) in keys(result["introduced"])
    assert ("vwan.endpoint-subnet-policy-bypass", f"{BRANCH}/subnets/snet-pe".lower()) in keys(result["resolved"])


def test_connection_moved_to_a_custom_route_table_makes_the_hub_unknown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A custom hub route table created and the branch connection associated with it (a Modify of a listed
    connection): the hub's routing is custom, so vwan.routing-unknown is introduced in place of what the vwan rules
    judged, as the scan of the changed tenant finds."""
    after = copy_of(DEMO, tmp_path / "after")
    conns = f"{WEU}/hubVirtualNetworkConnections"
    old = item(read(DEMO, conns), "conn-branch-apps")
    table_id = f"{WEU}/hubRouteTables/rt-branch"
    table = {"id": table_id, "name": "rt-branch", "type": "Microsoft.Network/virtualHubs/hubRouteTables",
             "properties": {"labels": ["branch"], "routes": []}}
    new = copy.deepcopy(old)
    new["properties"]["routingConfiguration"]["associatedRouteTable"] = {"id": table_id}
    edit(after, conns, lambda b: b.update(value=[new]))
    edit(after, f"{WEU}/hubRouteTables", lambda b: b["value"].append(table))
    doc = cli_document(change(table_id, "Create", after=table, api_version=API),
                       change(old["id"], "Modify", before=old, after=new, api_version=API))
    result = judge(DEMO, after, doc, tmp_path, capsys)
    assert ("vwan.routing-unknown", WEU.lower()) in keys(result["introduced"])
