"""``plmon what-if`` end to end through the CLI, on the demo tenant (a recorded Contoso estate) and a replay server.

Each what-if document is built in the shape ``az deployment group what-if --result-format FullResourcePayloads
--no-pretty-print`` prints (tests/kit/whatifkit.py), from the demo tenant's own payloads changed as a template would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clikit import assert_one_line, run_main
from whatifkit import (
    APP,
    DEMO,
    NET,
    S2,
    change,
    cli_document,
    demo_file,
    demo_item,
    rest_document,
    write,
)

from plmon.monitor.replay.server import ReplayServer

ROOT = Path(__file__).resolve().parents[3]
PLMON = str(ROOT / ".venv" / "bin" / "plmon")
KEYS = {"tool", "introduced", "resolved", "unchanged", "changes"}
SNET_PE = f"{NET}/virtualNetworks/vnet-app/subnets/snet-pe"
NSG = f"{NET}/networkSecurityGroups/nsg-pe"
KV = f"{APP}/Microsoft.KeyVault/vaults/kv-contoso-prod"


def what_if(doc: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str,
            source: tuple[str, ...] = ("--from", str(DEMO))) -> tuple[int, dict[str, Any], str]:
    rc, out, err = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), *source, "--format", "json",
                             *extra], capsys)
    parsed: dict[str, Any] = json.loads(out) if out.strip() else {}
    return rc, parsed, err


def ids(findings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(f["check_id"], f["resource_id"].rsplit("/", 1)[-1]) for f in findings}


def test_readme_route_table_example_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A new subnet with a 0.0.0.0/0-to-firewall route table introduces route.udr-bypassed; --fail-on high exits 1,
    and the document has exactly the contract's keys with findings shaped as in scan."""
    doc = json.loads((ROOT / "docs" / "examples" / "what-if-route-table.json").read_text())
    rc, out, _ = what_if(doc, tmp_path, capsys, "--fail-on", "high")
    assert rc == 1 and set(out) == KEYS
    assert ids(out["introduced"]) == {("route.udr-bypassed", "rt-batch")} and out["resolved"] == []
    assert set(out["introduced"][0]) == {"check_id", "resource_id", "severity", "title", "message",
                                         "subscription_id", "evidence", "remediation"}
    assert out["changes"] == {"applied": 2, "unsupported": [], "ignored": [
        {"resource_id": f"{NET}/virtualNetworks/vnet-app", "change_type": "Ignore"}]}
    assert out["unchanged"] == 22   # every finding of the demo scan is still there
    assert what_if(doc, tmp_path, capsys, "--fail-on", "critical")[0] == 0


def test_modified_subnet_resolves_the_nsg_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A subnet child change (merged into its virtual network) turning network policies on resolves
    nsg.not-enforced-on-endpoints, and the lifecycle identity keeps every other finding unchanged."""
    vnet = demo_item(f"{S2}/providers/Microsoft.Network/virtualNetworks", "vnet-app")
    before = next(s for s in vnet["properties"]["subnets"] if s["name"] == "snet-pe")
    after = json.loads(json.dumps(before))
    after["properties"]["privateEndpointNetworkPolicies"] = "Enabled"
    rc, out, _ = what_if(cli_document(change(SNET_PE, "Modify", before=before, after=after)), tmp_path, capsys)
    assert rc == 0
    assert ids(out["resolved"]) == {("nsg.not-enforced-on-endpoints", "snet-pe")} and out["introduced"] == []
    assert out["unchanged"] == 21 and out["changes"]["applied"] == 1


def test_security_rule_child_introduces_an_nsg_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A security rule created as a child resource is merged into its NSG: 501 source prefixes on a private endpoint
    subnet's NSG introduce nsg.rule-prefix-limit."""
    rule = {"id": f"{NSG}/securityRules/allow-partners", "name": "allow-partners",
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "properties": {"direction": "Inbound", "access": "Allow", "priority": 200, "protocol": "Tcp",
                           "sourceAddressPrefixes": [f"172.16.{i // 250}.{i % 250}" for i in range(501)],
                           "destinationAddressPrefix": "*", "sourcePortRange": "*", "destinationPortRange": "443"}}
    rc, out, _ = what_if(cli_document(change(rule["id"], "Create", after=rule)), tmp_path, capsys)
    assert rc == 0 and ids(out["introduced"]) == {("nsg.rule-prefix-limit", "nsg-pe")}


def test_deleted_zone_group_introduces_a_dns_finding(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting an endpoint's zone group (a child list the plan reads) introduces dns.no-zone-group on it."""
    group = demo_file(f"{NET}/privateEndpoints/pe-kv/privateDnsZoneGroups")["value"][0]
    rc, out, _ = what_if(cli_document(change(group["id"], "Delete", before=group)), tmp_path, capsys)
    assert rc == 0 and ids(out["introduced"]) == {("dns.no-zone-group", "pe-kv")}


def test_modified_target_introduces_a_public_access_finding(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A Key Vault (a private-link target read by id) opened to the public introduces
    public-access.enabled-with-private-endpoint, at high: exit 1 with --fail-on high."""
    before = demo_file(KV)
    after = json.loads(json.dumps(before))
    after["properties"]["publicNetworkAccess"] = "Enabled"
    rc, out, _ = what_if(cli_document(change(KV, "Modify", before=before, after=after, api_version="2023-07-01")),
                         tmp_path, capsys, "--fail-on", "high")
    assert rc == 1 and ids(out["introduced"]) == {("public-access.enabled-with-private-endpoint", "kv-contoso-prod")}


def test_new_endpoint_to_a_missing_target_introduces_a_connection_finding(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A created private endpoint is listed with its subnet's endpoints, and its target, which the collection never
    read, is read by id: a 404 introduces connection.target-missing (and the DNS finding an approved endpoint
    without a zone group has)."""
    pe = demo_item(f"{S2}/providers/Microsoft.Network/privateEndpoints", "pe-st-blob")
    pe_id = f"{NET}/privateEndpoints/pe-st-gone"
    conn = pe["properties"]["privateLinkServiceConnections"][0]
    conn["id"] = f"{pe_id}/privateLinkServiceConnections/pe-st-gone-conn"
    conn["properties"]["privateLinkServiceId"] = f"{APP}/Microsoft.Storage/storageAccounts/stcontosogone"
    pe.update(id=pe_id, name="pe-st-gone")
    pe["properties"].pop("customDnsConfigs", None)
    rc, out, _ = what_if(cli_document(change(pe_id, "Create", after=pe)), tmp_path, capsys)
    assert rc == 0
    assert ids(out["introduced"]) == {("connection.target-missing", "pe-st-gone"), ("dns.no-zone-group", "pe-st-gone")}
    assert out["resolved"] == [] and out["unchanged"] == 22


def test_deleted_endpoint_and_deployed_route_table_resolve_findings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Delete removes the endpoint (its findings resolve); Deploy applies its full payload like Modify (a route table
    without the default route resolves route.udr-bypassed)."""
    rt = demo_item(f"{S2}/providers/Microsoft.Network/routeTables", "rt-app")
    deployed = json.loads(json.dumps(rt))
    deployed["properties"]["routes"] = []
    doc = cli_document(change(f"{NET}/privateEndpoints/pe-st-old", "Delete", before={"id": "x"}),
                       change(rt["id"], "Deploy", before=rt, after=deployed))
    rc, out, _ = what_if(doc, tmp_path, capsys)
    assert rc == 0 and out["introduced"] == []
    assert ids(out["resolved"]) == {("connection.target-missing", "pe-st-old"), ("dns.no-zone-group", "pe-st-old"),
                                    ("route.udr-bypassed", "rt-app")}
    assert out["changes"]["applied"] == 2


def test_unsupported_and_ignored_entries_are_listed_and_coverage_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """NoChange and Ignore are listed as ignored, Unsupported with its reason; the table's coverage names the
    unsupported change and a change in a subscription the identity cannot read (not applied, not counted)."""
    refused = "/subscriptions/aaaaaaaa-0000-4000-8000-000000000004/resourceGroups/rg-x/providers/" \
              "Microsoft.Network/privateEndpoints/pe-x"
    reason = "Changes to the resource declared at 'properties.subnets' cannot be analyzed."
    doc = cli_document(change(KV, "NoChange", before=demo_file(KV), after=demo_file(KV)),
                       change(f"{NET}/virtualNetworks/vnet-app", "Unsupported", reason=reason),
                       change(refused, "Create", after={"id": refused, "name": "pe-x", "properties": {}}),
                       change(f"{APP}/Microsoft.Web/sites/app1", "Ignore"))
    rc, out, err = what_if(doc, tmp_path, capsys)
    assert rc == 0 and out["introduced"] == out["resolved"] == []
    assert out["changes"] == {
        "applied": 0,
        "ignored": [{"resource_id": KV, "change_type": "NoChange"},
                    {"resource_id": f"{APP}/Microsoft.Web/sites/app1", "change_type": "Ignore"}],
        "unsupported": [{"resource_id": f"{NET}/virtualNetworks/vnet-app", "reason": reason}]}
    assert "2 change(s) not judged" in err
    rc, table, _ = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), "--from", str(DEMO)], capsys)
    assert rc == 0 and "WhatIfUnsupported" in table and "WhatIfNotApplied" in table and "pe-x" in table
    rc, sarif, _ = run_main(["what-if", "--what-if", str(write(tmp_path, doc)), "--from", str(DEMO), "--format",
                             "sarif"], capsys)
    notes = json.loads(sarif)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert rc == 0 and sum("WhatIf" in n["message"]["text"] for n in notes) == 2   # the annotations say so too


def test_rest_result_and_waivers_from_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The REST WhatIfOperationResult shape (changes under properties) is read too, and a --config waiver keeps the
    finding it waives out of introduced, as in scan."""
    doc = json.loads((ROOT / "docs" / "examples" / "what-if-route-table.json").read_text())
    rest = rest_document(*doc["changes"])
    assert ids(what_if(rest, tmp_path, capsys)[1]["introduced"]) == {("route.udr-bypassed", "rt-batch")}
    config = tmp_path / "plmon.yaml"
    config.write_text(f"waivers:\n  - {{check_id: route.udr-bypassed, resource_id: '{NET}/routeTables/rt-batch', "
                      "reason: batch egress reviewed, expires: 2099-01-31}\n")
    rc, out, _ = what_if(rest, tmp_path, capsys, "--config", str(config), "--fail-on", "high")
    assert rc == 0 and out["introduced"] == []


def test_sarif_reports_the_introduced_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format sarif holds the introduced findings only (the pull-request annotations), not the 20 standing ones."""
    path = ROOT / "docs" / "examples" / "what-if-route-table.json"
    rc, out, _ = run_main(["what-if", "--what-if", str(path), "--from", str(DEMO), "--format", "sarif"], capsys)
    sarif = json.loads(out)
    results = sarif["runs"][0]["results"]
    assert rc == 0 and [r["ruleId"] for r in results] == ["route.udr-bypassed"]


@pytest.mark.parametrize(("content", "needle"), [
    (None, "cannot read it"),
    ("{not json", "not JSON"),
    ({"value": []}, "no 'changes' array"),
    (["a list"], "not a what-if result"),
    ({"status": "Failed", "changes": []}, "did not succeed"),
    ({"status": "Failed", "error": {"code": "InvalidTemplate", "message": "Deployment template validation\nfailed"}},
     "InvalidTemplate"),
    ({"changes": [{"resourceId": "/subscriptions/x"}]}, "changes[0] has no changeType"),
])
def test_bad_what_if_input_is_one_line_and_exit_2(content: Any, needle: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable file, not JSON, not a what-if result, a failed what-if: exit 2, one line, no traceback."""
    path = tmp_path / "missing.json" if content is None else write(tmp_path, content)
    rc, out, err = run_main(["what-if", "--what-if", str(path), "--from", str(DEMO)], capsys)
    assert_one_line(rc, err, "--what-if", needle)
    assert out == ""


def test_live_what_if_through_the_replay_server_equals_offline(tmp_path: Path) -> None:
    """Live options work as for scan: through the real SDK clients against the replay server, the document is the
    one --from gives."""
    path = str(ROOT / "docs" / "examples" / "what-if-route-table.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLMON_")}
    env.update({"PLMON_ARM_TOKEN": "demo", "PLMON_ARM_RETRY_BACKOFF": "0.01", "PLMON_LOG_LEVEL": "warning"})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PLMON, "what-if", "--what-if", path, "--format", "json", *args], capture_output=True,
                              text=True, env=env, timeout=120)
    offline = run("--from", str(DEMO))
    with ReplayServer(DEMO, page_size=2) as server:
        live = run("--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle)
        assert set(server.methods) == {"GET"}
    assert offline.returncode == live.returncode == 0, live.stderr
    assert json.loads(live.stdout) == json.loads(offline.stdout)


def test_management_group_what_if_applies_association_changes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A management-group deployment's association changes land in that group's association list: deleting the
    platform group's association resolves rmpl.association-not-root; associating rmpl-trial at the root resolves
    its rmpl.unassociated."""
    group = "/providers/Microsoft.Management/managementGroups"
    platform = f"{group}/platform/providers/Microsoft.Authorization/privateLinkAssociations/" \
               "a1b2c3d4-0000-4000-8000-00000000a002"
    root = "8f3e0a62-5c1d-4b7e-9a2f-1d3c5e7f9a0b"
    new = f"{group}/{root}/providers/Microsoft.Authorization/privateLinkAssociations/" \
          "a1b2c3d4-0000-4000-8000-00000000a003"
    trial = "/subscriptions/aaaaaaaa-0000-4000-8000-000000000001/resourceGroups/rg-mgmt/providers/" \
            "Microsoft.Authorization/resourceManagementPrivateLinks/rmpl-trial"
    association = {"id": new, "name": new.rsplit("/", 1)[-1], "type": "Microsoft.Authorization/privateLinkAssociations",
                   "properties": {"privateLink": trial, "publicNetworkAccess": "Disabled", "tenantId": root,
                                  "scope": f"{group}/{root}"}}
    doc = cli_document(change(platform, "Delete"), change(new, "Create", after=association, api_version="2020-05-01"))
    rc, out, _ = what_if(doc, tmp_path, capsys)
    assert rc == 0 and out["introduced"] == [] and out["changes"]["applied"] == 2
    assert ids(out["resolved"]) == {("rmpl.association-not-root", "a1b2c3d4-0000-4000-8000-00000000a002"),
                                    ("rmpl.unassociated", "rmpl-trial")}


def test_provider_side_approval_resolves_the_pending_connection(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A Private Link Service's connection (a child resource merged into the service's privateEndpointConnections[])
    approved by the deployment resolves connection.pending, and nothing else changes."""
    s3 = "/subscriptions/aaaaaaaa-0000-4000-8000-000000000003"
    pls = demo_item(f"{s3}/providers/Microsoft.Network/privateLinkServices", "pls-partner-api")
    before = pls["properties"]["privateEndpointConnections"][0]
    after = json.loads(json.dumps(before))
    after["properties"]["privateLinkServiceConnectionState"]["status"] = "Approved"
    rc, out, _ = what_if(cli_document(change(before["id"], "Modify", before=before, after=after)), tmp_path, capsys)
    assert rc == 0 and out["introduced"] == [] and out["unchanged"] == 21
    assert ids(out["resolved"]) == {("connection.pending", "pe-partner-api.conn")}


def test_explain_path_what_if_shows_the_new_subnet_and_rejects_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """explain-path --what-if finds a subnet only the deployment creates and names its route; a bad document is one
    line and exit 2, as for what-if."""
    subnet = f"{NET}/virtualNetworks/vnet-app/subnets/snet-batch"
    path = str(ROOT / "docs" / "examples" / "what-if-route-table.json")
    args = ["explain-path", "--from", str(DEMO), "--subnet", subnet, "--to", "10.1.2.4", "--format", "json"]
    rc, out, err = run_main([*args, "--what-if", path], capsys)
    assert rc == 0, err
    assert "default-to-fw" in out and "pe-st-blob" in out
    rc, _, err = run_main(args, capsys)
    assert_one_line(rc, err, "no subnet")   # not in the tenant as it is
    rc, _, err = run_main([*args, "--what-if", str(write(tmp_path, {"value": []}))], capsys)
    assert_one_line(rc, err, "--what-if", "no 'changes' array")
