"""The what-if overlay on raw ARM answers: documents parsed, changes applied as ARM answers after the deployment."""

from __future__ import annotations

from typing import Any

import pytest
from whatifkit import change, cli_document, rest_document

from plmon.monitor.collect.plan import ReadError
from plmon.monitor.collect.whatif import CachingReader, WhatIfReader, parse_what_if
from plmon.monitor.errors import InputError

SUB = "11111111-1111-1111-1111-111111111111"
NET = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network"
VNET = f"{NET}/virtualNetworks/v1"
RT = f"{NET}/routeTables/rt1"
PE = f"{NET}/privateEndpoints/pe1"
ST = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1"


class Dict:
    """An ArmReader over {path: body}; a missing path is a 404, and every read is counted."""

    def __init__(self, bodies: dict[str, Any]) -> None:
        self.bodies = {k.strip("/").lower(): v for k, v in bodies.items()}
        self.reads: list[str] = []

    def get(self, path: str, *, kind: str) -> Any:
        self.reads.append(path)
        body = self.bodies.get(path.strip("/").lower())
        if body is None:
            raise ReadError(404, "ResourceNotFound", path)
        return body


def subnet(name: str, **props: Any) -> dict[str, Any]:
    return {"id": f"{VNET}/subnets/{name}", "name": name, "properties": props}


def vnet_list(*subnets: dict[str, Any]) -> dict[str, Any]:
    return {"value": [{"id": VNET, "name": "v1", "type": "Microsoft.Network/virtualNetworks",
                       "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                                      "subnets": list(subnets)}}]}


VNETS = f"subscriptions/{SUB}/providers/Microsoft.Network/virtualNetworks"
RTS = f"subscriptions/{SUB}/providers/Microsoft.Network/routeTables"
PES = f"subscriptions/{SUB}/providers/Microsoft.Network/privateEndpoints"


def overlay(bodies: dict[str, Any], *changes: dict[str, Any]) -> WhatIfReader:
    return WhatIfReader(Dict(bodies), parse_what_if(cli_document(*changes)))


def test_cli_and_rest_shapes_parse_alike() -> None:
    """The az CLI's flattened result and the REST body (changes under properties) give the same changes."""
    c = change(RT, "Create", after={"id": RT, "name": "rt1", "properties": {}})
    assert parse_what_if(cli_document(c)).changes == parse_what_if(rest_document(c)).changes


def test_entries_that_cannot_be_applied_are_problems_not_changes() -> None:
    """A Modify without a payload (ResourceIdOnly), an unknown change type and a change without a resourceId are
    coverage problems; case of the change type does not matter."""
    doc = parse_what_if(cli_document(change(RT, "Modify"), change(VNET, "Rename"), change(PE, "create", after={}),
                                     {"changeType": "Create", "symbolicName": "graphApp"}))
    assert [c.change_type for c in doc.changes] == ["Create"]
    assert [p.code for p in doc.problems] == ["WhatIfNoPayload", "WhatIfUnknownChangeType", "WhatIfNoResourceId"]


def test_failed_what_if_is_an_input_error() -> None:
    """A failed status or an error object judges nothing: an InputError."""
    with pytest.raises(InputError, match="did not succeed"):
        parse_what_if(cli_document(status="Failed"))
    with pytest.raises(InputError, match="InvalidTemplate"):
        parse_what_if({"status": "Failed", "error": {"code": "InvalidTemplate", "message": "bad"}})


def test_subnet_child_merges_into_its_network_keeping_read_only_properties() -> None:
    """A subnet Modify replaces the entry in the network's subnets[] and keeps what ARM computes (ipConfigurations);
    a subnet Create is appended; a subnet Delete removes it; the cached body is left untouched."""
    body = vnet_list(subnet("a", addressPrefix="10.0.1.0/24", ipConfigurations=[{"id": "nic1"}]),
                     subnet("b", addressPrefix="10.0.2.0/24"))
    reader = overlay({VNETS: body},
                     change(f"{VNET}/subnets/a", "Modify", after=subnet("a", addressPrefix="10.0.1.0/24",
                                                                           routeTable={"id": RT})),
                     change(f"{VNET}/subnets/c", "Create", after=subnet("c", addressPrefix="10.0.3.0/24")),
                     change(f"{VNET}/subnets/b", "Delete"))
    subnets = reader.get(VNETS, kind="virtualNetworks")["value"][0]["properties"]["subnets"]
    assert [s["name"] for s in subnets] == ["a", "c"]   # a modified in place, c appended
    assert subnets[0]["properties"] == {"addressPrefix": "10.0.1.0/24", "routeTable": {"id": RT},
                                        "ipConfigurations": [{"id": "nic1"}]}
    assert len(body["value"][0]["properties"]["subnets"]) == 2 and reader.unapplied() == []


def test_route_and_top_level_changes_apply_to_the_subscription_list() -> None:
    """A route child lands in its table's routes[]; a created table is added to its subscription's list, with no
    what-if apiVersion annotation left in the payload."""
    route = {"id": f"{RT}/routes/r1", "name": "r1",
             "properties": {"addressPrefix": "10.0.2.4/32", "nextHopType": "VirtualAppliance",
                            "nextHopIpAddress": "10.9.0.4"}}
    reader = overlay({RTS: {"value": []}},
                     change(RT, "Create", after={"id": RT, "name": "rt1", "properties": {"routes": []}}),
                     change(route["id"], "Create", after=route))
    [table] = reader.get(RTS, kind="routeTables")["value"]
    assert "apiVersion" not in table
    assert table["properties"]["routes"] == [{**route, "type": "Microsoft.Network/routeTables/routes"}]


def test_deleted_endpoint_leaves_subnet_and_target_and_new_one_is_listed() -> None:
    """Deleting an endpoint removes it from its subnet's privateEndpoints[] and the target's connections, as ARM does;
    its child list reads as 404 after; an endpoint created in the subnet appears there."""
    old = f"{NET}/privateEndpoints/old"
    conn = {"name": "c1", "properties": {"privateEndpoint": {"id": old},
                                         "privateLinkServiceConnectionState": {"status": "Approved"}}}
    target = {"id": ST, "name": "st1", "properties": {"privateEndpointConnections": [conn]}}
    new = {"id": PE, "name": "pe1", "properties": {"subnet": {"id": f"{VNET}/subnets/a"}}}
    reader = overlay({VNETS: vnet_list(subnet("a", privateEndpoints=[{"id": old}])), ST: target,
                      PES: {"value": [{"id": old, "name": "old", "properties": {}}]}},
                     change(old, "Delete"), change(PE, "Create", after=new))
    vnet = reader.get(VNETS, kind="virtualNetworks")["value"][0]
    assert vnet["properties"]["subnets"][0]["properties"]["privateEndpoints"] == [{"id": PE}]
    assert reader.get(ST.strip("/"), kind="target")["properties"]["privateEndpointConnections"] == []
    assert [p["name"] for p in reader.get(PES, kind="privateEndpoints")["value"]] == ["pe1"]
    with pytest.raises(ReadError):
        reader.get(old.strip("/"), kind="target")
    assert reader.get(f"{PE}/privateDnsZoneGroups".strip("/"), kind="privateDnsZoneGroups") == {"value": []}


def test_change_whose_list_was_not_read_is_unapplied() -> None:
    """A change to a kind plmon lists, in a subscription whose list failed, is reported unapplied; a type plmon never
    reads is not (it cannot change what the checks see)."""
    reader = overlay({}, change(RT, "Create", after={"id": RT, "name": "rt1", "properties": {}}),
                     change(f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm",
                            "Delete"))
    with pytest.raises(ReadError):
        reader.get(VNETS.replace("virtualNetworks", "virtualNetworks/x"), kind="virtualNetworks")
    assert [c.resource_id for c in reader.unapplied()] == [RT]


def test_caching_reader_answers_each_path_once_errors_included() -> None:
    """The second walk reads what the first read from memory: a live source is never asked twice."""
    base = Dict({VNETS: vnet_list()})
    cached = CachingReader(base)
    for _ in range(2):
        cached.get(VNETS, kind="virtualNetworks")
        with pytest.raises(ReadError):
            cached.get("subscriptions/x", kind="subscriptions")
    assert base.reads == [VNETS, "subscriptions/x"]


def test_potential_changes_are_problems_and_bare_payloads_get_their_id() -> None:
    """potentialChanges (what-if could not confirm them) are listed, not applied; a payload without id, name and type
    takes them from the change's resourceId."""
    doc = cli_document(change(RT, "Create", after={"properties": {"routes": []}}))
    doc["potentialChanges"] = [change(VNET, "Modify", after={"id": VNET})]
    parsed = parse_what_if(doc)
    assert [(p.scope, p.code) for p in parsed.problems] == [(VNET, "WhatIfPotentialChange")]
    [table] = WhatIfReader(Dict({RTS: {"value": []}}), parsed).get(RTS, kind="routeTables")["value"]
    assert (table["id"], table["name"], table["type"]) == (RT, "rt1", "Microsoft.Network/routeTables")


def test_child_deleted_with_its_parent_is_applied() -> None:
    """A zone group deleted with its endpoint (complete mode lists both) is not reported unapplied: ARM deletes the
    child with the parent, so the plan never reading the gone endpoint's child list proves nothing missing."""
    reader = overlay({PES: {"value": [{"id": PE, "name": "pe1", "properties": {}}]}},
                     change(PE, "Delete"), change(f"{PE}/privateDnsZoneGroups/default", "Delete"))
    assert reader.get(PES, kind="privateEndpoints")["value"] == []
    assert reader.unapplied() == []


def test_lists_below_a_created_resource_read_empty_where_live_arm_says_404() -> None:
    """A management group the deployment creates has no association list in Azure yet (404): after the deployment it
    is an empty list, not a coverage gap; a 404 below anything else stays a 404."""
    group = "/providers/Microsoft.Management/managementGroups/new-mg"
    reader = overlay({}, change(group, "Create", after={"id": group, "name": "new-mg"}))
    lists = f"{group}/providers/Microsoft.Authorization/privateLinkAssociations".strip("/")
    assert reader.get(lists, kind="privateLinkAssociations") == {"value": []}
    with pytest.raises(ReadError):
        reader.get(lists.replace("new-mg", "other-mg"), kind="privateLinkAssociations")


HUB = f"{NET}/virtualHubs/hub1"
HUBS = f"subscriptions/{SUB}/providers/Microsoft.Network/virtualHubs"
FW = f"{NET}/azureFirewalls/fw1"
FWS = f"subscriptions/{SUB}/providers/Microsoft.Network/azureFirewalls"
CONNS = f"{HUB}/hubVirtualNetworkConnections"


def hub_list() -> dict[str, Any]:
    return {"value": [{"id": HUB, "name": "hub1", "type": "Microsoft.Network/virtualHubs",
                       "properties": {"addressPrefix": "10.100.0.0/23", "virtualRouterIps": ["10.100.0.68"],
                                      "azureFirewall": {"id": FW}}}]}


def test_hub_children_are_answered_in_the_lists_below_the_hub() -> None:
    """A created hub connection is listed under its hub, a deleted one is gone, a modified routing intent replaces
    the current one: the child lists the plan reads below a hub answer as ARM would after the deployment."""
    conn = {"id": f"{CONNS}/c1", "name": "c1", "properties": {"remoteVirtualNetwork": {"id": VNET}}}
    intent = f"{HUB}/routingIntent/intent"
    reader = overlay({HUBS: hub_list(), CONNS: {"value": [{"id": f"{CONNS}/old", "name": "old", "properties": {}}]},
                      f"{HUB}/routingIntent": {"value": [{"id": intent, "name": "intent", "properties": {
                          "routingPolicies": [{"name": "p", "destinations": ["PrivateTraffic"], "nextHop": FW}]}}]}},
                     change(f"{CONNS}/c1", "Create", after=conn), change(f"{CONNS}/old", "Delete"),
                     change(intent, "Modify", after={"id": intent, "name": "intent",
                                                     "properties": {"routingPolicies": []}}))
    assert reader.get(HUBS, kind="virtualHubs") == hub_list()   # the hub itself holds no inline copy of them
    [listed] = reader.get(CONNS, kind="hubVirtualNetworkConnections")["value"]
    assert listed["id"] == f"{CONNS}/c1"
    assert listed["type"] == "Microsoft.Network/virtualHubs/hubVirtualNetworkConnections"
    [changed] = reader.get(f"{HUB}/routingIntent", kind="routingIntent")["value"]
    assert changed["properties"]["routingPolicies"] == [] and reader.unapplied() == []


def test_hub_child_whose_list_was_not_read_is_unapplied() -> None:
    """A hub connection created below a hub whose connection list could not be read is reported not applied, not
    counted applied because the hub itself was read."""
    class Denied(Dict):
        def get(self, path: str, *, kind: str) -> Any:
            if kind == "hubVirtualNetworkConnections":
                raise ReadError(403, "AuthorizationFailed", path)
            return super().get(path, kind=kind)
    reader = WhatIfReader(Denied({HUBS: hub_list()}),
                          parse_what_if(cli_document(change(f"{CONNS}/c1", "Create", after={"properties": {}}))))
    reader.get(HUBS, kind="virtualHubs")
    with pytest.raises(ReadError):
        reader.get(CONNS, kind="hubVirtualNetworkConnections")
    assert [c.resource_id for c in reader.unapplied()] == [f"{CONNS}/c1"]


def test_hub_firewall_and_hub_keep_what_arm_computes_across_a_put() -> None:
    """A hub firewall's private IP (hubIPAddresses.privateIPAddress), a hub's router IPs and firewall link, and a hub
    route table's connection lists are computed by ARM: a predicted payload without them keeps the current ones."""
    fw = {"id": FW, "name": "fw1", "properties": {"sku": {"name": "AZFW_Hub"}, "virtualHub": {"id": HUB},
                                                  "hubIPAddresses": {"privateIPAddress": "10.100.0.132",
                                                                     "publicIPs": {"count": 1}}}}
    table = f"{HUB}/hubRouteTables/defaultRouteTable"
    reader = overlay({FWS: {"value": [fw]}, HUBS: hub_list(),
                      f"{HUB}/hubRouteTables": {"value": [{"id": table, "name": "defaultRouteTable", "properties": {
                          "routes": [], "associatedConnections": [f"{CONNS}/c"]}}]}},
                     change(FW, "Modify", after={"id": FW, "name": "fw1", "properties": {
                         "sku": {"name": "AZFW_Hub"}, "virtualHub": {"id": HUB}, "hubIPAddresses": {
                             "publicIPs": {"count": 2}}}}),
                     change(HUB, "Modify", after={"id": HUB, "name": "hub1",
                                                  "properties": {"addressPrefix": "10.100.0.0/23"}}),
                     change(table, "Modify", after={"id": table, "name": "defaultRouteTable",
                                                    "properties": {"routes": []}}))
    [after_fw] = reader.get(FWS, kind="azureFirewalls")["value"]
    assert after_fw["properties"]["hubIPAddresses"] == {"privateIPAddress": "10.100.0.132", "publicIPs": {"count": 2}}
    [after_hub] = reader.get(HUBS, kind="virtualHubs")["value"]
    assert after_hub["properties"]["azureFirewall"] == {"id": FW}
    assert after_hub["properties"]["virtualRouterIps"] == ["10.100.0.68"]
    [after_table] = reader.get(f"{HUB}/hubRouteTables", kind="hubRouteTables")["value"]
    assert after_table["properties"]["associatedConnections"] == [f"{CONNS}/c"]
