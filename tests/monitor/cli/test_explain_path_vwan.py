"""``plmon explain-path`` in a tenant with Virtual WAN hubs: the hub hop, from a client subnet or a hub's branch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vwankit import FW, HUB1, HUB2, NVA, subnet_id, vwan_tenant

PLMON = str(Path(sys.executable).parent / "plmon")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vwan_tenant(tmp_path_factory.mktemp("vwan"))


def plmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLMON, *args], capture_output=True, text=True, timeout=60, check=False)


def test_spoke_to_spoke_of_one_hub_passes_its_firewall(folder: Path) -> None:
    """spoke1 -> pe-b (both on hub1): hub1's firewall is on the path, because routing intent sends 10/8 to it."""
    out = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("spoke1", "app"), "--to", "10.2.1.4",
                "--format", "json")
    assert out.returncode == 0, out.stderr
    hub = json.loads(out.stdout)["hub"]
    assert hub["via_hub"] is True
    assert [(s["hub"], s["next_hop"], s["on_path"]) for s in hub["hubs"]] == [(HUB1, FW, True)]


def test_across_hubs_each_hop_says_why(folder: Path) -> None:
    """spoke1 (hub1) -> pe-c 100.64.1.4 (hub2): hub1's firewall is not on the path (outside its prefixes), hub2's NVA
    is; the text names both."""
    out = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("spoke1", "app"), "--to", "100.64.1.4")
    assert out.returncode == 0, out.stderr
    assert f"client's hub {HUB1}: next hop {FW} not on the path: 100.64.1.4 is outside" in out.stdout
    assert f"endpoint's hub {HUB2}: next hop {NVA} on the path" in out.stdout


def test_directly_peered_client_skips_the_hub(folder: Path) -> None:
    """clients1 is peered with spoke1: the hub hop is none, and the path is the endpoint's /32 over the peering."""
    out = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("clients1", "app"), "--to", "10.1.1.4")
    assert out.returncode == 0, out.stderr
    assert "hub hop: none: the client network is directly peered" in out.stdout


def test_branch_of_a_hub_to_an_endpoint_without_route_table_policies(folder: Path) -> None:
    """A branch of hub2 -> pe-a (subnet policies Disabled): neither next hop is on the path (asymmetric), and why."""
    out = plmon("explain-path", "--from", str(folder), "--branch-of", "hub2", "--to", "10.1.1.4", "--format", "json")
    assert out.returncode == 0, out.stderr
    hub = json.loads(out.stdout)["hub"]
    assert hub["from"] == "a branch of hub hub2"
    assert [s["on_path"] for s in hub["hubs"]] == [False, False]
    assert all("privateEndpointNetworkPolicies Disabled" in s["why"] for s in hub["hubs"])


def test_bad_hub_and_both_sources_exit_2(folder: Path) -> None:
    """An unknown hub, or neither/both of --subnet and --branch-of: one line on stderr, exit 2."""
    bad = plmon("explain-path", "--from", str(folder), "--branch-of", "nohub", "--to", "10.1.1.4")
    assert bad.returncode == 2 and "no Virtual WAN hub 'nohub'" in bad.stderr and "Traceback" not in bad.stderr
    neither = plmon("explain-path", "--from", str(folder), "--to", "10.1.1.4")
    assert neither.returncode == 2 and "exactly one of --subnet" in neither.stderr


def test_spoke_to_endpoint_without_route_table_policies_is_noted(folder: Path) -> None:
    """spoke2 -> pe-a (both on hub1, pe-a's subnet policies Disabled, not peered): hub1's firewall is on the path,
    with a note that the doc states the bypass for on-premises traffic; pe-b (RouteTableEnabled) has no note."""
    out = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("spoke2", "pe"), "--to", "10.1.1.4",
                "--format", "json")
    hub = json.loads(out.stdout)["hub"]
    assert [s["on_path"] for s in hub["hubs"]] == [True] and "on-premises" in hub["note"]
    plain = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("spoke1", "app"), "--to", "10.2.1.4")
    assert "note:" not in plain.stdout
