"""``plmon explain-path``: prints the decided path and its reasons from a recorded tenant; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from netkit import hub_and_spokes, subnet_id

PLMON = str(Path(sys.executable).parent / "plmon")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    n = hub_and_spokes()
    n.firewall("fw", "10.0.1.4")
    n.route_table("rt-spoke1", ("default-to-fw", "0.0.0.0/0", "VirtualAppliance", "10.0.1.4"))
    n.route_table("rt-spoke2", ("spoke-to-fw", "10.2.0.0/16", "VirtualAppliance", "10.0.1.4"))
    n.endpoint("pe2", n.storage("st2", "pe2"), vnet="spoke2", ip="10.2.1.4", zones=[])
    n.endpoint("pe1", n.storage("st1", "pe1"), vnet="spoke1", ip="10.1.1.4", zones=[])
    return n.write(tmp_path_factory.mktemp("tenant"))


def plmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLMON, *args], capture_output=True, text=True, timeout=60, check=False)


def test_text_shows_path_and_reasons(folder: Path) -> None:
    """Text output names the winning UDR, the firewall, the policy value and why the UDR replaced the /32."""
    out = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("spoke2", "app"), "--to", "10.2.1.4")
    assert out.returncode == 0, out.stderr
    assert "path: subnet app -> 10.2.0.0/16 -> VirtualAppliance 10.0.1.4 (user-defined route 'spoke-to-fw')" \
        " -> Azure Firewall fw" in out.stdout
    assert "privateEndpointNetworkPolicies: Enabled" in out.stdout
    assert "replaces the endpoint's 10.2.1.4/32" in out.stdout


def test_json_shows_bypass(folder: Path) -> None:
    """JSON output for the bypassed spoke: the endpoint /32 wins and the 0.0.0.0/0 reason says never."""
    out = plmon("explain-path", "--from", str(folder), "--subnet", subnet_id("spoke1", "app").upper(),
                "--to", "10.1.1.4", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["route"]["origin"] == "private-endpoint" and doc["route"]["prefix"] == "10.1.1.4/32"
    assert any("never replaces" in r for r in doc["reasons"])


@pytest.mark.parametrize(("args", "message"), [
    (("--subnet", "/subscriptions/x/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/s",
      "--to", "10.1.1.4"), "--subnet: no subnet"),
    (("--subnet", subnet_id("spoke1", "app"), "--to", "not-an-ip"), "--to: not an IP address"),
])
def test_bad_input_is_one_line_exit_2(folder: Path, args: tuple[str, ...], message: str) -> None:
    """An unknown subnet or a bad IP is one line on stderr and exit 2, never a traceback."""
    out = plmon("explain-path", "--from", str(folder), *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
