"""nsg.* checks: only subnets with private endpoints count; each finding on the subnet or NSG it names."""

from __future__ import annotations

from pathlib import Path

from netkit import Net

from plmon.checks.engine import evaluate
from plmon.checks.nsg import effective_action
from plmon.monitor.model.snapshot import NsgRule


def rule(name: str, access: str = "Allow", **extra: object) -> dict[str, object]:
    base = {"name": name, "access": access, "direction": "Inbound", "priority": 100 + len(name),
            "protocol": "Tcp", "sourceAddressPrefix": "*", "destinationAddressPrefix": "*",
            "sourcePortRange": "*", "destinationPortRange": "443"}
    base.update(extra)
    return base


def findings(tmp_path: Path) -> set[tuple[str, str]]:
    n = Net()
    n.vnet("v", "10.5.0.0/16")
    n.vnet("peer", "10.6.0.0/16").peer("v", "peer", access=False)
    n.subnet("v", "pe-off", "10.5.1.0/24", nsg="nsg-a")                          # absent policy: not enforced
    n.subnet("v", "pe-rt", "10.5.2.0/24", nsg="nsg-a", policy="RouteTableEnabled")  # not enforced
    n.subnet("v", "pe-on", "10.5.3.0/24", nsg="nsg-b", policy="Enabled")          # passes
    n.subnet("v", "app", "10.5.4.0/24", nsg="nsg-c")                               # no endpoints: ignored
    n.nsg("nsg-a", rule("multi", destinationPortRanges=["443", "8443"], destinationPortRange=None))
    many = [f"10.9.{i // 250}.{i % 250}" for i in range(501)]
    n.nsg("nsg-b", rule("ok"), rule("huge", sourceAddressPrefixes=many, sourceAddressPrefix=None),
          rule("deny-vnet", "Deny", sourceAddressPrefix="VirtualNetwork"))
    n.nsg("nsg-c", rule("multi", destinationPortRanges=["1", "2"], destinationPortRange=None),
          rule("deny-vnet", "Deny", sourceAddressPrefix="VirtualNetwork"))
    t = n.storage("st", "e1", "e2", "e3")
    n.endpoint("e1", t, vnet="v", subnet="pe-off", ip="10.5.1.4", zones=[])
    n.endpoint("e2", t, vnet="v", subnet="pe-rt", ip="10.5.2.4", zones=[])
    n.endpoint("e3", t, vnet="v", subnet="pe-on", ip="10.5.3.4", zones=[])
    ev = evaluate(n.snapshot(tmp_path), only={"nsg.not-enforced-on-endpoints", "nsg.multi-port-range-rule",
                                              "nsg.rule-prefix-limit", "nsg.virtual-network-tag-peering"})
    assert ev.check_errors == ()
    return {(f.check_id, f.resource_id.rsplit("/", 1)[-1]) for f in ev.findings}


def test_exact_nsg_findings(tmp_path: Path) -> None:
    """Not-enforced on the Disabled/RouteTableEnabled subnets; rule checks on NSGs of endpoint subnets only."""
    assert findings(tmp_path) == {
        ("nsg.not-enforced-on-endpoints", "pe-off"), ("nsg.not-enforced-on-endpoints", "pe-rt"),
        ("nsg.multi-port-range-rule", "nsg-a"), ("nsg.rule-prefix-limit", "nsg-b"),
        ("nsg.virtual-network-tag-peering", "nsg-b"),
    }


def _rule(access: str, src: tuple[str, ...], dst: tuple[str, ...]) -> NsgRule:
    return NsgRule("r", "Inbound", access, 100, "Tcp", "*", (), "*", (), None, src, None, dst)


def test_effective_action_table() -> None:
    """The seed's table: Allow honours the first ranges; Deny with several ranges widens to all ports."""
    assert "only the first ranges" in effective_action(_rule("Allow", ("10-12", "13-14"), ("14-15", "16-17")))
    assert "source ports 10-12, destination ports 14-15" in effective_action(
        _rule("Allow", ("10-12", "13-14"), ("14-15", "16-17")))
    assert "all source ports is denied to all destination ports" in effective_action(
        _rule("Deny", ("10-12", "13-14"), ("120-130", "140-150")))
    assert "all source ports is denied to destination ports 120-130" in effective_action(
        _rule("Deny", ("10-12", "13-14"), ("120-130",)))
    assert "from source ports 10-12 is denied to all destination ports" in effective_action(
        _rule("Deny", ("10-12",), ("120-130", "140-150")))


def test_product_limit(tmp_path: Path) -> None:
    """500 x 500 x 2 ports (over 250 000) is reported; 500 prefixes on one side alone (product 500) is not."""
    n = Net()
    n.vnet("v", "10.5.0.0/16").subnet("v", "pe", "10.5.1.0/24", nsg="n1", policy="Enabled")
    src = [f"10.8.{i // 250}.{i % 250}" for i in range(500)]
    dst = [f"10.7.{i // 250}.{i % 250}" for i in range(500)]
    n.nsg("n1", rule("at-limit", sourceAddressPrefixes=src, sourceAddressPrefix=None))
    n.nsg("n2", rule("product", sourceAddressPrefixes=src, sourceAddressPrefix=None,
                     destinationAddressPrefixes=dst, destinationAddressPrefix=None,
                     destinationPortRanges=["443", "8443"], destinationPortRange=None))
    n.subnet("v", "pe2", "10.5.2.0/24", nsg="n2", policy="Enabled")
    t = n.storage("st", "e1", "e2")
    n.endpoint("e1", t, vnet="v", ip="10.5.1.4", zones=[])
    n.endpoint("e2", t, vnet="v", subnet="pe2", ip="10.5.2.4", zones=[])
    ev = evaluate(n.snapshot(tmp_path), only={"nsg.rule-prefix-limit"})
    assert [(f.resource_id.rsplit("/", 1)[-1], f.evidence["rules"][0]["product"]) for f in ev.findings] == \
        [("n2", 500 * 500 * 2)]
