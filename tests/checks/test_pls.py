"""pls.* checks (checks.md, Private Link Service): failing case, passing neighbour and subject of each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from checkkit import run, snapshot_of, subjects
from tenantkit import net, sub_list

from plmon.checks.finding import Severity

PLS_LIST = sub_list("privateLinkServices")
VNET_LIST = sub_list("virtualNetworks")
VNET = f"{net()}/virtualNetworks/prov"


def subnet_id(name: str) -> str:
    return f"{VNET}/subnets/{name}"


def pls(name: str, *, visibility: list[str] | None = None, auto: list[str] | None = None,
        nat: list[tuple[str, str]] = (), **props: Any) -> dict[str, Any]:
    """A PLS; ``nat`` = [(ip configuration name, subnet name)]."""
    pid = f"{net()}/privateLinkServices/{name}"
    return {"id": pid, "name": name, "type": "Microsoft.Network/privateLinkServices", "properties": {
        "provisioningState": "Succeeded",
        "visibility": {"subscriptions": visibility or []}, "autoApproval": {"subscriptions": auto or []},
        "ipConfigurations": [{"id": f"{pid}/ipConfigurations/{c}", "name": c,
                              "properties": {"subnet": {"id": subnet_id(s)}}} for c, s in nat],
        "privateEndpointConnections": [], **props}}


def vnet(subnets: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": VNET, "name": "prov", "properties": {"addressSpace": {"addressPrefixes": ["10.9.0.0/16"]},
                                                        "subnets": subnets}}


def subnet(name: str, prefix: str, policy: str | None = "Disabled", ip_configs: list[str] = ()) -> dict[str, Any]:
    props: dict[str, Any] = {"addressPrefix": prefix, "ipConfigurations": [{"id": i} for i in ip_configs]}
    if policy is not None:
        props["privateLinkServiceNetworkPolicies"] = policy
    return {"id": subnet_id(name), "name": name, "properties": props}


def pls_ids(*names: str) -> list[str]:
    return sorted(f"{net()}/privateLinkServices/{n}".lower() for n in names)


def test_visibility_public(tmp_path: Path) -> None:
    """Visibility '*' fails on the PLS; a list of subscriptions passes."""
    snap = snapshot_of(tmp_path, {PLS_LIST: {"value": [pls("open", visibility=["*"]),
                                                       pls("closed", visibility=["sub-a"])]}})
    ev = run(snap, "pls.visibility-public")
    assert subjects(ev) == pls_ids("open")
    assert ev.findings[0].severity == Severity.MEDIUM
    assert ev.findings[0].evidence["visibility.subscriptions"] == ["*"]


def test_auto_approval_not_subset(tmp_path: Path) -> None:
    """An auto-approved subscription outside visibility fails; a case-different subset and '*' visibility pass."""
    snap = snapshot_of(tmp_path, {PLS_LIST: {"value": [
        pls("bad", visibility=["sub-a"], auto=["sub-a", "sub-b"]),
        pls("good", visibility=["SUB-A", "sub-b"], auto=["sub-a"]),
        pls("public", visibility=["*"], auto=["sub-c"]),
    ]}})
    ev = run(snap, "pls.auto-approval-not-subset")
    assert subjects(ev) == pls_ids("bad")
    assert ev.findings[0].evidence["not_in_visibility"] == ["sub-b"]
    assert "--auto-approval sub-a" in ev.findings[0].remediation


def test_auto_approval_wildcard(tmp_path: Path) -> None:
    """Auto-approval '*' is high on the PLS; a named list passes."""
    snap = snapshot_of(tmp_path, {PLS_LIST: {"value": [pls("any", visibility=["*"], auto=["*"]),
                                                       pls("named", visibility=["s1"], auto=["s1"])]}})
    ev = run(snap, "pls.auto-approval-wildcard")
    assert subjects(ev) == pls_ids("any")
    assert ev.findings[0].severity == Severity.HIGH


def test_nat_subnet_policy(tmp_path: Path) -> None:
    """A NAT subnet with policies Enabled or absent fails on the subnet (once for two services); Disabled passes."""
    snap = snapshot_of(tmp_path, {
        PLS_LIST: {"value": [pls("a", nat=[("n1", "enabled"), ("n2", "absent")]), pls("b", nat=[("n1", "enabled")]),
                             pls("c", nat=[("n1", "disabled")])]},
        VNET_LIST: {"value": [vnet([subnet("enabled", "10.9.1.0/24", "Enabled"),
                                    subnet("absent", "10.9.2.0/24", None),
                                    subnet("disabled", "10.9.3.0/24", "disabled")])]}})
    ev = run(snap, "pls.nat-subnet-policy")
    assert subjects(ev) == sorted([subnet_id("absent").lower(), subnet_id("enabled").lower()])
    enabled = next(f for f in ev.findings if f.resource_id.lower() == subnet_id("enabled").lower())
    assert len(enabled.evidence["private_link_services"]) == 2
    assert "--private-link-service-network-policies Disabled" in enabled.remediation


def test_nat_ip_headroom_arithmetic(tmp_path: Path) -> None:
    """/28 = 16 - 5 reserved = 11; the union of NAT and subnet ip configurations (4 distinct) leaves 7 < 8.
    A /28 with 3 distinct configurations leaves exactly 8 and passes."""
    a = f"{net()}/privateLinkServices/a/ipConfigurations"
    snap = snapshot_of(tmp_path, {
        PLS_LIST: {"value": [pls("a", nat=[("n1", "tight"), ("n2", "tight"), ("n3", "tight"), ("m1", "edge"),
                                           ("m2", "edge")])]},
        VNET_LIST: {"value": [vnet([
            # the subnet lists two of the NAT configs (in other casing) and one NIC: union = 4
            subnet("tight", "10.9.1.0/28", ip_configs=[f"{a}/N1".upper(), f"{a}/n2",
                                                      f"{net()}/networkInterfaces/vm/ipConfigurations/ip"]),
            subnet("edge", "10.9.2.0/28", ip_configs=[f"{net()}/networkInterfaces/vm2/ipConfigurations/ip"]),
        ])]}})
    ev = run(snap, "pls.nat-ip-headroom")
    assert subjects(ev) == [subnet_id("tight").lower()]
    e = ev.findings[0].evidence
    assert (e["addresses"], e["reserved"], e["ip_configurations"], e["free"]) == (16, 5, 4, 7)
    assert ev.findings[0].severity == Severity.LOW


def test_nat_ip_headroom_min_free_param(tmp_path: Path) -> None:
    """min_free is configurable: with 4 the 7-free subnet passes."""
    snap = snapshot_of(tmp_path, {
        PLS_LIST: {"value": [pls("a", nat=[(f"n{i}", "s") for i in range(4)])]},
        VNET_LIST: {"value": [vnet([subnet("s", "10.9.1.0/28")])]}})
    assert subjects(run(snap, "pls.nat-ip-headroom")) == [subnet_id("s").lower()]
    assert run(snap, "pls.nat-ip-headroom", params={"min_free": 4}).findings == ()


def test_proxy_protocol(tmp_path: Path) -> None:
    """enableProxyProtocol true is an info finding on the PLS; false and absent pass."""
    snap = snapshot_of(tmp_path, {PLS_LIST: {"value": [pls("on", enableProxyProtocol=True),
                                                       pls("off", enableProxyProtocol=False), pls("unset")]}})
    ev = run(snap, "pls.proxy-protocol")
    assert subjects(ev) == pls_ids("on")
    assert ev.findings[0].severity == Severity.INFO


def test_disabled_check_yields_nothing(tmp_path: Path) -> None:
    """pls.proxy-protocol: {enabled: false} (the contracts example) turns the check off."""
    snap = snapshot_of(tmp_path, {PLS_LIST: {"value": [pls("on", enableProxyProtocol=True)]}})
    ev = run(snap, "pls.proxy-protocol", enabled=False)
    assert ev.findings == () and ev.checks_run == ()
