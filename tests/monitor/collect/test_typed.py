"""The typed decoder of the bulk lists: the generic parse's unit, or a refusal that leaves the file to it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tenantkit import SUB, endpoint, example, net, provider_connection, storage_account, sub_list, write_tenant

from plmon.monitor.collect.builder import list_unit, parse_child, parse_target
from plmon.monitor.collect.inventory import BY_ID
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.typed import Prebuilt, decode_target, decode_unit
from plmon.monitor.model.arm_id import interning

PE = f"{net()}/privateEndpoints/pe1"
NIC = f"{net()}/networkInterfaces/pe1.nic.1"


def nic(name: str = "pe1.nic.1", **props: Any) -> dict[str, Any]:
    nid = f"{net()}/networkInterfaces/{name}"
    return {"id": nid, "name": name, "type": "Microsoft.Network/networkInterfaces", "location": "westeurope",
            "properties": {"provisioningState": "Succeeded", "enableIPForwarding": False,
                           "privateEndpoint": {"id": PE},
                           "ipConfigurations": [{"id": f"{nid}/ipConfigurations/ipc", "name": "ipc", "properties": {
                               "privateIPAddress": "10.0.1.4",
                               "subnet": {"id": f"{net()}/virtualNetworks/vnet1/subnets/pe"}}}], **props}}


def zone_group(name: str = "default") -> dict[str, Any]:
    zone = f"{net()}/privateDnsZones/privatelink.blob.core.windows.net"
    return {"id": f"{PE}/privateDnsZoneGroups/{name}", "name": name,
            "properties": {"provisioningState": "Succeeded", "privateDnsZoneConfigs": [
                {"name": "privatelink-blob", "properties": {"privateDnsZoneId": zone, "recordSets": []}}]}}


def vnet(name: str = "vnet1") -> dict[str, Any]:
    vid = f"{net()}/virtualNetworks/{name}"
    return {"id": vid, "name": name, "type": "Microsoft.Network/virtualNetworks", "location": "westeurope",
            "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "dhcpOptions": {"dnsServers": []},
                           "subnets": [{"id": f"{vid}/subnets/pe", "name": "pe", "properties": {
                               "addressPrefix": "10.0.1.0/24", "privateEndpointNetworkPolicies": "Disabled",
                               "routeTable": {"id": f"{net()}/routeTables/rt"},
                               "ipConfigurations": [{"id": f"{NIC}/ipConfigurations/ipc"}],
                               "privateEndpoints": [{"id": PE}]}}],
                           "virtualNetworkPeerings": [{"id": f"{vid}/virtualNetworkPeerings/p", "name": "p",
                                                       "properties": {
                                                           "remoteVirtualNetwork": {"id": f"{net()}/virtualNetworks/h"},
                                                           "peeringState": "Connected",
                                                           "allowForwardedTraffic": True}}]}}


def generic(kind: str, body: Any) -> Any:
    items = RecordedTenant._decode(json.dumps(body).encode(), "x")["value"]
    return parse_child(kind, items) if kind == "privateDnsZoneGroups" else list_unit(kind, items)


def typed(kind: str, body: Any) -> Any:
    return decode_unit(kind, json.dumps(body).encode())


# Items the parser reads leniently, or makes a gap of: each one either decodes to exactly the parser's unit, or is
# refused (and the generic parse decides).
QUIRKS: list[tuple[str, list[str | int], Any]] = [
    ("privateEndpoints", ["properties"], None),
    ("privateEndpoints", ["properties"], []),
    ("privateEndpoints", ["properties", "subnet"], "not an object"),
    ("privateEndpoints", ["properties", "subnet"], None),
    ("privateEndpoints", ["properties", "subnet", "id"], 5),
    ("privateEndpoints", ["properties", "subnet", "id"], ""),
    ("privateEndpoints", ["properties", "ipConfigurations"], None),
    ("privateEndpoints", ["properties", "ipConfigurations"], [7, {"properties": None}]),
    ("privateEndpoints", ["properties", "ipConfigurations"], [{"properties": {"privateIPAddress": 1}}]),
    ("privateEndpoints", ["properties", "customDnsConfigs"], [{"fqdn": "", "ipAddresses": None}, "x"]),
    ("privateEndpoints", ["properties", "customDnsConfigs"], [{"fqdn": "a.b", "ipAddresses": ["10.0.1.4", 3, ""]}]),
    ("privateEndpoints", ["properties", "privateLinkServiceConnections"], [1, None]),
    ("privateEndpoints", ["properties", "privateLinkServiceConnections", 0, "properties"], None),
    ("privateEndpoints", ["properties", "privateLinkServiceConnections", 0, "properties", "groupIds"], "blob"),
    ("privateEndpoints", ["properties", "privateLinkServiceConnections", 0, "id"], None),
    ("privateEndpoints", ["properties", "privateLinkServiceConnections", 0, "name"], ""),
    ("privateEndpoints", ["properties", "privateLinkServiceConnections", 0, "properties",
                          "privateLinkServiceConnectionState"], "Approved"),
    ("privateEndpoints", ["properties", "networkInterfaces"], [{"id": ""}, {"id": NIC}, {}]),
    ("privateEndpoints", ["properties", "networkInterfaces"], ["x"]),
    ("privateEndpoints", ["id"], "  "),
    ("privateEndpoints", ["id"], 12),
    ("privateEndpoints", ["name"], "other"),
    ("privateEndpoints", ["name"], None),
    ("privateEndpoints", ["tags"], {"a": "b", "n": 1}),
    ("privateEndpoints", ["tags"], ["a"]),
    ("privateEndpoints", ["type"], ""),
    ("privateEndpoints", ["provisioningState"], "Failed"),
    ("privateEndpoints", ["name"], "pe\udc80"),
    ("privateEndpoints", ["name"], "pe\u00e9"),
    ("networkInterfaces", ["properties", "enableIPForwarding"], "TRUE"),
    ("networkInterfaces", ["properties", "enableIPForwarding"], 1),
    ("networkInterfaces", ["properties", "ipConfigurations"], [{"name": "no id", "properties": None}]),
    ("networkInterfaces", ["properties", "ipConfigurations", 0, "name"], ""),
    ("networkInterfaces", ["properties", "ipConfigurations", 0, "properties"], None),
    ("networkInterfaces", ["properties", "ipConfigurations", 0, "properties", "loadBalancerBackendAddressPools"],
     [{"id": f"{net()}/loadBalancers/lb/backendAddressPools/p"}, {"id": None}]),
    ("networkInterfaces", ["properties", "privateEndpoint"], None),
    ("networkInterfaces", ["properties", "virtualMachine"], {"id": f"{net()}/virtualMachines/vm"}),
    ("networkInterfaces", ["id"], NIC.replace("/providers/", "/provders/")),
    ("networkInterfaces", ["id"], NIC.replace("/providers/", "/PROVDERS/")),
    ("networkInterfaces", ["id"], NIC.replace("/providers/", "/provder\u017f/")),
    ("virtualNetworks", ["properties", "subnets"], [{"name": "no id"}, 4]),
    ("virtualNetworks", ["properties", "subnets", 0, "id"], "  "),
    ("virtualNetworks", ["properties", "subnets", 0, "properties"], None),
    ("virtualNetworks", ["properties", "subnets", 0, "properties", "addressPrefixes"], ["10.0.2.0/24", 7]),
    ("virtualNetworks", ["properties", "subnets", 0, "properties", "routeTable"], "rt"),
    ("virtualNetworks", ["properties", "subnets", 0, "properties", "ipConfigurations"], [{"id": ""}, "x"]),
    ("virtualNetworks", ["properties", "virtualNetworkPeerings"], [{"properties": {"remoteVirtualNetwork": {
        "id": f"{net()}/virtualNetworks/noid"}}}]),
    ("virtualNetworks", ["properties", "virtualNetworkPeerings", 0, "properties", "allowVirtualNetworkAccess"],
     "False"),
    ("virtualNetworks", ["properties", "virtualNetworkPeerings", 0, "properties", "remoteAddressSpace"], []),
    ("virtualNetworks", ["properties", "virtualNetworkPeerings", 0, "properties"], None),
    ("virtualNetworks", ["properties", "addressSpace"], None),
    ("virtualNetworks", ["properties", "dhcpOptions", "dnsServers"], ["10.0.0.4", None]),
    ("virtualNetworks", ["name"], ""),
    ("privateDnsZoneGroups", ["id"], None),
    ("privateDnsZoneGroups", ["id"], ""),
    ("privateDnsZoneGroups", ["name"], ""),
    ("privateDnsZoneGroups", ["properties"], None),
    ("privateDnsZoneGroups", ["properties", "privateDnsZoneConfigs"], None),
    ("privateDnsZoneGroups", ["properties", "privateDnsZoneConfigs"], [3, {"name": "x"}]),
    ("privateDnsZoneGroups", ["properties", "privateDnsZoneConfigs", 0, "properties"], None),
    ("privateDnsZoneGroups", ["properties", "privateDnsZoneConfigs", 0, "properties", "privateDnsZoneId"], 5),
    ("privateDnsZoneGroups", ["properties", "privateDnsZoneConfigs", 0, "name"], ["a"]),
]


def _item(kind: str) -> dict[str, Any]:
    if kind == "privateDnsZoneGroups":
        return zone_group()
    if kind == "virtualNetworks":
        return vnet()
    return endpoint("pe1", f"{net()}/storageAccounts/st1") if kind == "privateEndpoints" else nic()


def _with(item: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(item)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(("kind", "path", "value"), QUIRKS)
def test_a_quirky_item_is_read_as_the_parser_reads_it_or_refused(kind: str, path: list[str | int], value: Any) -> None:
    """Proves: whatever an item holds, the typed decoder gives exactly the generic parse's unit, or refuses."""
    body = {"value": [_item(kind), _with(_item(kind), path, value)]}
    with interning():
        got, want = typed(kind, body), generic(kind, body)
    assert got is None or got == want


def test_the_common_shapes_and_microsofts_examples_decode_typed() -> None:
    """Proves: well-formed lists (the synthetic tenants' shape and Microsoft's own list example) are not refused, so
    the decoder does serve the bulk of a tenant, and give the parser's unit."""
    bodies = [("privateEndpoints", {"value": [_item("privateEndpoints"), endpoint("pe2", PE, manual=True)]}),
              ("networkInterfaces", {"value": [nic(), nic("n2")]}),
              ("privateEndpoints", example("network/PrivateEndpointList.json")),
              ("networkInterfaces", {"value": [example("network/NetworkInterfaceGet.json")]}),
              ("privateDnsZoneGroups", {"value": [zone_group(), zone_group("second")]}),
              ("virtualNetworks", {"value": [vnet(), vnet("vnet2")]}),
              ("virtualNetworks", {"value": [example("network/VirtualNetworkGet.json")]}),
              ("privateDnsZoneGroups", {"value": [example("network/PrivateEndpointDnsZoneGroupGet.json")]})]
    for kind, body in bodies:
        with interning():
            got = typed(kind, body)
            assert got is not None and got == generic(kind, body)


def test_a_refused_file_still_yields_todays_records(tmp_path: Path) -> None:
    """Proves: a recorded tenant whose endpoint list the typed decoder refuses (a "properties": null item, an escaped
    name) is collected exactly as without it, while an accepted NIC list and zone group list come through as their
    prebuilt units (and only for a one-shot reader, whose index is trusted)."""
    quirky = [_with(_item("privateEndpoints"), ["properties"], None), _item("privateEndpoints"),
              _with(endpoint("pe3", PE), ["name"], "p\u00e9")]
    write_tenant(tmp_path, {sub_list("privateEndpoints"): {"value": quirky},
                            sub_list("networkInterfaces"): {"value": [nic()]},
                            f"{PE}/privateDnsZoneGroups": {"value": [zone_group()]}})
    plain, fast = RecordedTenant(tmp_path), RecordedTenant(tmp_path)
    fast.trust_index()
    assert decode_unit("privateEndpoints", (tmp_path / "arm" / f"{sub_list('privateEndpoints')}.json").read_bytes()) \
        is None
    assert isinstance(fast.get(sub_list("networkInterfaces"), kind="networkInterfaces")["value"], Prebuilt)
    assert isinstance(fast.get(f"{PE}/privateDnsZoneGroups", kind="privateDnsZoneGroups")["value"], Prebuilt)
    assert not isinstance(plain.get(sub_list("networkInterfaces"), kind="networkInterfaces")["value"], Prebuilt)
    with interning():
        a = collect(plain, manifest=plain.manifest, workers=1)
    with interning():
        b = collect(fast, manifest=fast.manifest, workers=1)
    assert a.lists == b.lists and a.gaps == b.gaps and a.zone_groups == b.zone_groups
    assert len(a.lists["privateEndpoints"][SUB.lower()].items) == 3 and a.zone_groups[PE.lower()].value


def test_a_nic_read_by_id_is_not_a_list() -> None:
    """Proves: only the list paths are decoded typed: a NIC read by id (same kind) keeps its generic body."""
    tenant_body = nic()
    assert decode_unit("networkInterfaces", json.dumps(tenant_body).encode()) is None


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["id", "name", "properties", "subnet", "ipConfigurations", "tags",
                                         "privateLinkServiceConnections", "privateEndpoint", "groupIds"]),
                        inner, max_size=4), max_leaves=12),
       st.sampled_from(QUIRKS))
@settings(max_examples=150, deadline=None)
def test_any_value_anywhere_is_read_as_the_parser_reads_it_or_refused(value: Any,
                                                                      where: tuple[str, list[str | int], Any]) -> None:
    """Proves: random values in the places the parser reads never make the typed unit differ from the generic one."""
    kind, path, _ = where
    try:
        item = _with(_item(kind), path, value)
    except (KeyError, IndexError, TypeError):
        return
    body = {"value": [item]}
    with interning():
        got, want = typed(kind, body), generic(kind, body)
    assert got is None or got == want


@pytest.mark.parametrize("name", ["pe\u00e9", "provder\u017f", "K\u212a"])
def test_non_ascii_text_written_as_is_decodes_typed_as_the_parser_reads_it(name: str) -> None:
    """Proves: UTF-8 text with no escape (an accented name, the long s that the '/provders/' repair matches as an s)
    is decoded typed, not refused, and gives the parser's unit."""
    item = _with(nic(), ["id"], NIC.replace("/providers/", f"/{name}/"))
    data = json.dumps({"value": [item, _with(nic(), ["name"], name)]}, ensure_ascii=False).encode()
    with interning():
        got = decode_unit("networkInterfaces", data)
        assert got is not None and got == list_unit("networkInterfaces", RecordedTenant._decode(data, "x")["value"])


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xed\xa0\x80", b"caf\xe9"])
def test_bytes_that_are_not_utf8_in_a_skipped_field_are_refused(bad: bytes) -> None:
    """Proves: a file with invalid UTF-8 in a field the typed decoder skips (msgspec does not check those) is refused,
    as the generic way refuses the whole file, instead of being read as if it were clean."""
    clean = json.dumps({"value": [nic()]}).encode()
    assert decode_unit("networkInterfaces", clean) is not None
    data = clean.replace(b'"value": [{', b'"value": [{"etag": "' + bad + b'", ', 1)
    assert data != clean
    assert decode_unit("networkInterfaces", data) is None


def test_the_plan_takes_a_prebuilt_unit_of_the_type_it_reads_and_raises_on_another() -> None:
    """Proves: the plan keeps the unit a typed decoder built, parses raw items the generic way, and raises on a unit
    of the wrong type instead of parsing the empty Prebuilt as a list with no resources."""
    from plmon.monitor.collect.inventory import Child, ListUnit
    from plmon.monitor.collect.plan import _prebuilt

    with interning():
        unit = decode_unit("networkInterfaces", json.dumps({"value": [nic()]}).encode())
    assert isinstance(unit, ListUnit)
    assert _prebuilt(Prebuilt(unit), ListUnit) is unit
    assert _prebuilt([nic()], ListUnit) is None
    with pytest.raises(TypeError):
        _prebuilt(Prebuilt(unit), Child)


@pytest.mark.parametrize("value", [None, "", "x", "True", "FALSE", "yes", True, False, 0, 1, 2.5, [], {}, ["a"]])
def test_value_readers_are_the_builders_accessors(value: Any) -> None:
    """Proves: the typed decoder reads a value exactly as the builder's dict accessors read the same value."""
    from plmon.monitor.collect import builder, typed

    item = {"k": value}
    assert typed._s(value) == builder._s(item, "k") and typed._e(value) == builder._e(item, "k")
    assert typed._b(value) == builder._b(item, "k") and type(typed._b(value)) is type(builder._b(item, "k"))


# --- private-link targets read by id ---------------------------------------------------------------------------------

SUB2 = "22222222-2222-2222-2222-222222222222"
ST = f"/subscriptions/{SUB2}/resourceGroups/rg2/providers/Microsoft.Storage/storageAccounts/st1"


def target_body() -> dict[str, Any]:
    body = storage_account("st1", rg="rg2", sub=SUB2,
                           connections=[provider_connection(ST, PE), provider_connection(ST, PE, name="c2",
                                                                                        storage_spelling=True)])
    body.update(location="westeurope", kind="StorageV2", tags={"env": "prod"})
    body["properties"].update(provisioningState="Succeeded", network={"publicNetworkAccess": "Disabled"},
                              accessModeSettings={"queryAccessMode": "Open"})
    return body


def generic_target(body: Any) -> Any:
    return parse_target("asked", RecordedTenant._decode(json.dumps(body).encode(), "x"))


TARGET_QUIRKS: list[tuple[list[str | int], Any]] = [
    (["id"], None), (["id"], ""), (["id"], "  "), (["id"], 7), (["id"], "not/an/arm/id"),
    (["name"], ""), (["name"], "other"), (["type"], None), (["location"], 3), (["tags"], []), (["tags"], {"a": 1}),
    (["kind"], ""), (["provisioningState"], "Failed"),
    (["properties"], None), (["properties"], []), (["properties"], {}),
    (["properties", "publicNetworkAccess"], None), (["properties", "publicNetworkAccess"], False),
    (["properties", "publicNetworkAccess"], {"a": [1]}), (["properties", "publicNetworkAccess"], 12345678901234567890),
    (["properties", "publicNetworkAccess"], 1.5),
    (["properties", "networkAcls"], None), (["properties", "networkAcls"], "Deny"),
    (["properties", "networkAcls", "defaultAction"], ""), (["properties", "networkRuleSet"], {"defaultAction": "D"}),
    (["properties", "network"], "x"), (["properties", "network"], {"publicNetworkAccess": {"x": 1}}),
    (["properties", "accessModeSettings"], None), (["properties", "apiServerAccessProfile"],
                                                   {"enablePrivateCluster": True}),
    (["properties", "privateEndpointConnections"], None), (["properties", "privateEndpointConnections"], "x"),
    (["properties", "privateEndpointConnections"], [1, {"name": "n"}]),
    (["properties", "privateEndpointConnections", 0, "id"], "short"),
    (["properties", "privateEndpointConnections", 0, "id"], None),
    (["properties", "privateEndpointConnections", 0, "name"], ""),
    (["properties", "privateEndpointConnections", 0, "properties"], None),
    (["properties", "privateEndpointConnections", 0, "properties", "privateEndpoint"], None),
    (["properties", "privateEndpointConnections", 0, "properties", "privateEndpoint"], "pe"),
    (["properties", "privateEndpointConnections", 0, "properties", "groupIds"], "blob"),
    (["properties", "privateEndpointConnections", 0, "properties", "privateLinkServiceConnectionState"], None),
    (["properties", "privateEndpointConnections", 0, "properties", "privateLinkServiceConnectionState",
      "status"], 5),
    (["name"], "st\u00e9"), (["name"], "st\udc80"),
]


@pytest.mark.parametrize(("path", "value"), TARGET_QUIRKS)
def test_a_quirky_target_is_read_as_the_parser_reads_it_or_refused(path: list[str | int], value: Any) -> None:
    """Proves: whatever a target body holds, the typed decoder gives exactly parse_target's unit, or refuses."""
    body = _with(target_body(), path, value)
    with interning():
        got, want = decode_target(json.dumps(body).encode()), generic_target(body)
    assert got is None or got == want


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["id", "name", "properties", "privateEndpoint", "groupIds", "defaultAction",
                                         "publicNetworkAccess", "status", "enablePrivateCluster"]),
                        inner, max_size=4), max_leaves=12),
       st.sampled_from(TARGET_QUIRKS))
@settings(max_examples=150, deadline=None)
def test_any_value_anywhere_in_a_target_is_read_as_the_parser_reads_it_or_refused(
        value: Any, where: tuple[list[str | int], Any]) -> None:
    """Proves: random values in the places parse_target reads never make the typed unit differ from the generic."""
    try:
        body = _with(target_body(), where[0], value)
    except (KeyError, IndexError, TypeError):
        return
    with interning():
        got, want = decode_target(json.dumps(body).encode()), generic_target(body)
    assert got is None or got == want


@pytest.mark.parametrize("name", ["st\u00e9", "K\u212a", "\u6771\u4eac"])
def test_a_non_ascii_target_written_as_is_decodes_typed_as_the_parser_reads_it(name: str) -> None:
    """Proves: a target whose tags and name hold UTF-8 text with no escape is decoded typed, not refused, and gives
    parse_target's unit (the other target tests escape all non-ASCII text, which the decoder refuses)."""
    body = target_body()
    body.update(name=name, tags={name: name})
    data = json.dumps(body, ensure_ascii=False).encode()
    assert not data.isascii()
    with interning():
        got = decode_target(data)
        assert got is not None and got == parse_target("asked", RecordedTenant._decode(data, "x"))


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xed\xa0\x80", b"caf\xe9"])
def test_a_target_with_bytes_that_are_not_utf8_is_refused(bad: bytes) -> None:
    """Proves: invalid UTF-8 in a field the typed decoder skips refuses the target, as the generic way refuses the
    whole file, instead of reading it as if it were clean."""
    clean = json.dumps(target_body()).encode()
    assert decode_target(clean) is not None
    data = clean.replace(b'{"', b'{"etag": "' + bad + b'", "', 1)
    assert data != clean
    assert decode_target(data) is None


def test_common_targets_and_microsofts_examples_decode_typed() -> None:
    """Proves: well-formed targets (the synthetic tenants' shape, Microsoft's examples of other types) are not
    refused, so the decoder serves the 27k targets of a large tenant, and give parse_target's unit."""
    bodies = [target_body(), storage_account("st2"),
              *(example(f"access/{name}") for name in ("appconfiguration_ConfigurationStoresGet.json",
                                                         "containerregistry_RegistryGet.json",
                                                         "redis_RedisCacheGet.json"))]
    for body in bodies:
        with interning():
            got = decode_target(json.dumps(body).encode())
            assert got is not None and got == generic_target(body)


def test_a_collection_takes_typed_targets_and_keeps_firewall_policies_generic(tmp_path: Path) -> None:
    """Proves: a one-shot reader hands the plan typed targets (not a firewall policy, which the plan also reads by id
    as a "target" and parses as a list item), and the collection equals the generic reader's."""
    policy = f"{net(SUB2, 'rg2')}/firewallPolicies/fp"
    firewall = {"id": f"{net()}/azureFirewalls/fw", "name": "fw", "type": "Microsoft.Network/azureFirewalls",
                "properties": {"firewallPolicy": {"id": policy}}}
    write_tenant(tmp_path, {sub_list("privateEndpoints"): {"value": [endpoint("pe1", ST)]},
                            sub_list("azureFirewalls"): {"value": [firewall]},
                            ST: target_body(),
                            policy: {"id": policy, "name": "fp", "type": "Microsoft.Network/firewallPolicies",
                                     "properties": {"sku": {"tier": "Standard"}}}})
    plain, fast = RecordedTenant(tmp_path), RecordedTenant(tmp_path)
    fast.trust_index()
    assert isinstance(fast.get(ST.strip("/"), kind="target"), Prebuilt)
    assert isinstance(fast.get(policy.strip("/"), kind="target"), dict)
    assert not isinstance(plain.get(ST.strip("/"), kind="target"), Prebuilt)
    with interning():
        a = collect(plain, manifest=plain.manifest, workers=1)
    with interning():
        b = collect(fast, manifest=fast.manifest, workers=1)
    assert a.targets == b.targets and a.lists == b.lists and a.gaps == b.gaps
    assert a.targets[ST.lower()].target is not None and f"{BY_ID}{policy.lower()}" in b.lists["firewallPolicies"]


def test_the_plan_refuses_a_typed_target_where_it_reads_a_firewall_policy() -> None:
    """Proves: a typed target handed to the firewall-policy read raises instead of reading as no policy."""
    from plmon.monitor.collect.inventory import ListUnit
    from plmon.monitor.collect.plan import _prebuilt

    with interning():
        unit = decode_target(json.dumps(target_body()).encode())
    assert unit is not None
    with pytest.raises(TypeError):
        _prebuilt(Prebuilt(unit), ListUnit)
