"""``plmon synth --vwan-hubs N``: a Virtual WAN of secured hubs with the spokes connected; off by default."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from plmon.monitor.cli import cli
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.replay.synth import SynthSpec, generate
from plmon.monitor.scan import run_scan

SPEC = SynthSpec(subscriptions=4, endpoints=60, seed=3)
# The files the Virtual WAN adds to or changes in: its own lists and hub children, the hub subscription's firewall and
# policy lists, and the networks (the connected spokes gain their platform peering).
_TOUCHED = ("/virtualwans", "/virtualhubs", "/azurefirewalls", "/firewallpolicies", "/virtualnetworks")


def test_default_tenant_is_unchanged_by_the_option() -> None:
    """vwan_hubs=0 (the default) is the tenant as before; with hubs, every file outside the WAN's is byte-identical."""
    plain = generate(SPEC).files
    assert plain == generate(SynthSpec(subscriptions=4, endpoints=60, seed=3, vwan_hubs=0)).files
    wan = generate(SynthSpec(subscriptions=4, endpoints=60, seed=3, vwan_hubs=2)).files
    for path, body in plain.items():
        if not any(t in path.lower() for t in _TOUCHED):
            assert wan[path] == body, path


def test_cli_vwan_tenant_has_hubs_intent_and_connected_spokes(tmp_path: Path) -> None:
    """Through the CLI: two hubs with routing intent and connections; the scan reads them with no gap and judges
    the hub firewall left at default SNAT (the first hub's deliberate defect)."""
    out = tmp_path / "t"
    got = CliRunner().invoke(cli, ["synth", "--subscriptions", "4", "--endpoints", "60", "--seed", "3",
                                   "--vwan-hubs", "2", "--out", str(out), "--summary"])
    assert got.exit_code == 0, got.output
    summary = json.loads(got.output[got.output.index("{"):])
    assert summary["resources"]["virtualHubs"] == 2 and summary["resources"]["hubVirtualNetworkConnections"] >= 2
    tenant = RecordedTenant(out)
    result = run_scan(tenant, load_config(None), manifest=tenant.manifest)
    hubs = result.snapshot.virtual_hubs.values()
    assert all(h.routing_policies and h.connections is not None for h in hubs)
    assert not result.gaps
    assert any(f.check_id == "route.nva-missing-snat" and "afw-vhub-00" in f.resource_id
               for f in result.evaluation.findings)


def test_too_many_vwan_hubs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """--vwan-hubs beyond the 192.168.0.0/16 plan: one clear line, exit 2, no traceback."""
    import subprocess
    import sys

    out = subprocess.run([str(Path(sys.executable).with_name("plmon")), "synth", "--subscriptions", "2",
                          "--endpoints", "4", "--vwan-hubs", "65", "--out", str(tmp_path / "t")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "--vwan-hubs must be between 0 and 64" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
