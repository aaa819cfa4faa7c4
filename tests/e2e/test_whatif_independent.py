"""``plmon what-if`` against an independent evaluation: the tenant written by hand as the deployment would leave it,
scanned with ``plmon scan``. ``introduced`` must be exactly the findings (by check id and subject) the after-scan has
and the before-scan lacks, ``resolved`` the reverse, ``unchanged`` the count of the rest.

Documents are built from the demo tenant and from Microsoft's published example payloads
(tests/fixtures/azure-examples: RouteTableGet, NetworkSecurityGroupGet, VirtualNetworkGet, PrivateEndpointGet,
SubnetGet, PrivateEndpointDnsZoneGroupGet), in the az CLI's what-if shape (tests/kit/whatifkit.py).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from clikit import run_main
from tenantkit import example, write_tenant
from whatifkit import DEMO, NET, S2, change, cli_document, keys, scan, write

ROUTES = f"{S2}/providers/Microsoft.Network/routeTables"
VNETS = f"{S2}/providers/Microsoft.Network/virtualNetworks"
SUBZ = "00000000-0000-0000-0000-000000000000"




def what_if(folder: Path, doc: dict[str, Any], tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    rc, out, err = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), "--from", str(folder),
                             "--format", "json"], capsys)
    assert rc == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def assert_matches(result: dict[str, Any], before: set[tuple[str, str]], after: set[tuple[str, str]]) -> None:
    assert keys(result["introduced"]) == after - before
    assert keys(result["resolved"]) == before - after
    assert result["unchanged"] == len(before & after)


def edit(folder: Path, list_path: str, fn: Any) -> None:
    path = folder / "arm" / f"{list_path.strip('/')}.json"
    body = json.loads(path.read_text())
    fn(body)
    path.write_text(json.dumps(body))


def test_demo_route_table_change_matches_a_scan_of_the_changed_tenant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's change (a subnet and its route table created, the default route of rt-app removed by Deploy)
    against the demo tenant with those payloads put in place by hand."""
    doc = json.loads((Path(__file__).resolve().parents[2] / "docs" / "examples" / "what-if-route-table.json")
                     .read_text())
    rt_app = next(i for i in json.loads((DEMO / "arm" / f"{ROUTES.strip('/')}.json").read_text())["value"]
                  if i["name"] == "rt-app")
    deployed = copy.deepcopy(rt_app)
    deployed["properties"]["routes"] = []
    doc["changes"].append(change(rt_app["id"], "Deploy", before=rt_app, after=deployed))
    after = tmp_path / "after"
    shutil.copytree(DEMO, after)
    rt_batch, snet_batch = (c["after"] for c in doc["changes"][:2])

    def routes(body: dict[str, Any]) -> None:
        body["value"] = [deployed if i["name"] == "rt-app" else i for i in body["value"]] + [
            {k: v for k, v in rt_batch.items() if k != "apiVersion"}]

    def vnets(body: dict[str, Any]) -> None:
        vnet = next(v for v in body["value"] if v["name"] == "vnet-app")
        vnet["properties"]["subnets"].append({k: v for k, v in snet_batch.items() if k != "apiVersion"})
    edit(after, ROUTES, routes)
    edit(after, VNETS, vnets)
    result = what_if(DEMO, doc, tmp_path, capsys)
    assert_matches(result, scan(DEMO, capsys), scan(after, capsys))
    assert result["introduced"] and result["resolved"]


def test_endpoint_deletion_matches_a_scan_without_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting two endpoints (one with a zone group) matches the demo tenant with them and their zone groups
    removed, and the subnet's and targets' references to them gone as ARM removes them."""
    pes = f"{S2}/providers/Microsoft.Network/privateEndpoints"
    gone = (f"{NET}/privateEndpoints/pe-kv", f"{NET}/privateEndpoints/pe-sql-legacy")
    after = tmp_path / "after"
    shutil.copytree(DEMO, after)
    edit(after, pes, lambda b: b.update(value=[i for i in b["value"] if i["id"] not in gone]))
    (after / "arm" / f"{NET.strip('/')}/privateEndpoints/pe-kv/privateDnsZoneGroups.json").unlink()
    for target in ("Microsoft.KeyVault/vaults/kv-contoso-prod", "Microsoft.Sql/servers/sql-contoso-legacy"):
        rg = "rg-app" if "KeyVault" in target else "rg-data"
        edit(after, f"{S2}/resourceGroups/{rg}/providers/{target}", lambda b: b["properties"].update(
            privateEndpointConnections=[c for c in b["properties"].get("privateEndpointConnections", [])
                                        if c["properties"]["privateEndpoint"]["id"] not in gone]))
    result = what_if(DEMO, cli_document(*(change(pe, "Delete") for pe in gone)), tmp_path, capsys)
    assert_matches(result, scan(DEMO, capsys), scan(after, capsys))
    assert result["resolved"] and result["changes"]["applied"] == 2


def test_published_example_payloads_created_on_an_empty_tenant(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Microsoft's example payloads created by a what-if on an empty tenant give the findings a scan of a tenant
    holding them gives; a subnet whose network is neither there nor created, and a zone group whose id names a
    Private Link Service parent (a quirk of the published example), are reported not applied."""
    made = [example(f"network/{n}.json") for n in ("RouteTableGet", "NetworkSecurityGroupGet", "VirtualNetworkGet",
                                                    "PrivateEndpointGet")]
    orphans = [example("network/SubnetGet.json"), example("network/PrivateEndpointDnsZoneGroupGet.json")]
    subs = [SUBZ, "subid"]
    before = write_tenant(tmp_path / "before", {}, subscriptions=subs)
    lists: dict[str, Any] = {}
    for item in made:
        sub, type_ = item["id"].split("/")[2], item["type"]
        lists.setdefault(f"subscriptions/{sub}/providers/{type_}", {"value": []})["value"].append(item)
    after = write_tenant(tmp_path / "after", lists, subscriptions=subs)
    doc = cli_document(*(change(i["id"], "Create", after=i) for i in [*made, *orphans]))
    result = what_if(before, doc, tmp_path, capsys)
    assert_matches(result, scan(before, capsys), scan(after, capsys))
    assert result["changes"]["applied"] == 4 and result["introduced"]
    rc, table, _ = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), "--from", str(before)], capsys)
    assert rc == 0 and table.count("WhatIfNotApplied") == 2 and "subnet1" in table and "testPdnsgroup" in table
