"""SNAT models (checks/snat.py): Azure Firewall classic and policy ranges, and the third-party tag."""

from __future__ import annotations

from pathlib import Path

import pytest
from netkit import Net

from plmon.checks.snat import IANA_PRIVATE_RANGES, expand_ranges, firewall_snat, tagged_snat
from plmon.monitor.model.snapshot import Snapshot


def _fw_snap(tmp_path: Path, **kw: object) -> Snapshot:
    n = Net()
    n.firewall("fw", "10.0.1.4", **kw)  # type: ignore[arg-type]
    n.firewall_policy("pol-default")
    n.firewall_policy("pol-always", ["255.255.255.255/32"], auto_learn="Enabled")
    n.firewall_policy("pol-mixed", ["IANAPrivateRanges", "40.0.0.0/8"])
    return n.snapshot(tmp_path)


@pytest.mark.parametrize(("kw", "ip", "snats", "model"), [
    ({}, "10.1.1.4", False, "firewall-classic"),                       # absent = IANA: RFC 1918
    ({}, "100.64.3.4", False, "firewall-classic"),                     # ...and RFC 6598
    ({}, "40.1.2.3", True, "firewall-classic"),
    ({"snat": "255.255.255.255/32"}, "10.1.1.4", True, "firewall-classic"),
    ({"snat": "0.0.0.0/0"}, "40.1.2.3", False, "firewall-classic"),
    ({"snat": "IANAPrivateRanges, 40.0.0.0/8"}, "40.1.2.3", False, "firewall-classic"),
    ({"snat": "192.168.0.0/16"}, "10.1.1.4", True, "firewall-classic"),
    ({"policy": "pol-default"}, "10.1.1.4", False, "firewall-policy"),
    ({"policy": "pol-always", "snat": "0.0.0.0/0"}, "10.1.1.4", True, "firewall-policy"),  # classic ignored
    ({"policy": "pol-mixed"}, "40.9.9.9", False, "firewall-policy"),
    ({"policy": "pol-missing"}, "10.1.1.4", None, "firewall-policy"),
])
def test_firewall_snat_models(tmp_path: Path, kw: dict[str, str], ip: str, snats: bool | None, model: str) -> None:
    """Each firewall SNAT setting gives the documented verdict for the destination IP."""
    snap = _fw_snap(tmp_path, **kw)
    v = firewall_snat(snap, next(iter(snap.firewalls.values())), ip)
    assert (v.snats, v.model) == (snats, model)
    assert any("application rules always SNAT" in w for w in v.warnings)


def test_policy_auto_learn_and_ignored_classic_are_warned(tmp_path: Path) -> None:
    """autoLearnPrivateRanges Enabled and a classic setting shadowed by a policy both appear as warnings."""
    snap = _fw_snap(tmp_path, policy="pol-always", snat="0.0.0.0/0")
    v = firewall_snat(snap, next(iter(snap.firewalls.values())), "10.1.1.4")
    text = " ".join(v.warnings)
    assert "autoLearnPrivateRanges is Enabled" in text and "is ignored because a firewall policy" in text
    assert v.to_dict()["autoLearnPrivateRanges"] == "Enabled"


def test_expand_ranges() -> None:
    """Comma lists are split and the IANAPrivateRanges keyword expands to RFC 1918 + RFC 6598."""
    assert expand_ranges(["IANAPrivateRanges,1.2.3.0/24"]) == (*IANA_PRIVATE_RANGES, "1.2.3.0/24")
    assert "100.64.0.0/10" in IANA_PRIVATE_RANGES


def test_tag_model(tmp_path: Path) -> None:
    """The plmon-snat tag on the NIC wins over the LB's; absent or odd values are unknown, never a pass."""
    n = Net()
    n.nic("a", "10.0.2.4", snat="always").nic("b", "10.0.2.5").nic("c", "10.0.2.6", snat="sometimes")
    n.load_balancer("ilb", "10.0.2.10", snat="never")
    snap = n.snapshot(tmp_path)
    nics = {x.name: x for x in snap.nics.values()}
    lb = next(iter(snap.load_balancers.values()))
    assert tagged_snat(nics["a"], lb).snats is True
    assert tagged_snat(nics["b"], lb).snats is False
    assert tagged_snat(nics["b"]).snats is None
    assert tagged_snat(nics["c"]).snats is None


@pytest.mark.parametrize("kw", [{}, {"snat": "192.168.0.0/16"}, {"policy": "pol-default"}, {"policy": "pol-always"},
                                {"policy": "pol-missing"}])
def test_verdicts_share_the_firewalls_parts_and_equal_a_fresh_verdict(tmp_path: Path, kw: dict[str, str]) -> None:
    """A firewall's verdicts share what does not depend on the destination (one copy per firewall, not per IP),
    and each equals the verdict judged from scratch, text for text."""
    import plmon.checks.snat as snat
    snap = _fw_snap(tmp_path, **kw)
    fw = next(iter(snap.firewalls.values()))
    a, b = firewall_snat(snap, fw, "10.1.1.4"), firewall_snat(snap, fw, "40.1.2.3")
    assert a.source is b.source and a.warnings is b.warnings and a.extra is b.extra
    snat._PARTS.clear()
    assert firewall_snat(snap, fw, "10.1.1.4").to_dict() == a.to_dict()
    assert firewall_snat(snap, fw, "40.1.2.3") == b


def test_a_destination_is_judged_from_its_kept_address_whatever_the_ranges() -> None:
    """The parsed destination is kept across private-range settings, and a text that is no address stays unknown."""
    from plmon.checks.snat import _address, _verdict_for
    assert _verdict_for(("10.0.0.0/8",), "10.1.2.3")[0] is False
    assert _verdict_for(("192.168.0.0/16",), "10.1.2.3")[0] is True
    assert _address("10.1.2.3") is _address("10.1.2.3")
    assert _verdict_for(("10.0.0.0/8",), "not-an-ip") == (None, "not-an-ip is not an IP address")


def test_a_firewalls_verdicts_are_kept_while_it_and_its_policy_are_the_same_records(tmp_path: Path) -> None:
    """firewall_verdicts is one object per firewall while its records stay, and judges anew when the policy record
    is another (the daemon's next snapshot), each verdict equal to firewall_snat's."""
    import dataclasses

    from plmon.checks.snat import firewall_ranges, firewall_verdicts
    snap = _fw_snap(tmp_path, policy="pol-default")
    fw = next(iter(snap.firewalls.values()))
    held = firewall_verdicts(snap, fw)
    assert firewall_verdicts(snap, fw) is held and held.of("10.1.1.4") is held.of("10.1.1.4")
    assert held.of("10.1.1.4") == firewall_snat(snap, fw, "10.1.1.4") and held.ranges == firewall_ranges(snap, fw)
    assert fw.firewall_policy_id is not None
    key = fw.firewall_policy_id.key
    policy = dataclasses.replace(snap.firewall_policies[key], snat_private_ranges=("255.255.255.255/32",))
    moved = dataclasses.replace(snap, firewall_policies={**snap.firewall_policies, key: policy})
    again = firewall_verdicts(moved, fw)
    assert again is not held and again.of("10.1.1.4").snats is True and held.of("10.1.1.4").snats is False
