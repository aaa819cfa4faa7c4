"""``plmon explain-path``: show the route a client subnet takes to an IP and why, from a recorded tenant.

The same evaluator the route checks use (:mod:`plmon.checks.paths`), so an engineer can see exactly why a
``route.*`` finding was raised. Registered on the main group with ``cli.add_command(explain_path)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from plmon.checks.paths import decide, parse_ip
from plmon.checks.vwan import explain_hub_hop
from plmon.monitor.cli.terminal import printable
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import ArmReader, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.errors import InputError
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot

__all__ = ["explain_path"]


@click.command("explain-path")
@click.option("--from", "from_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A recorded tenant folder.")
@click.option("--subnet", "subnet", default=None, help="ARM id of the client subnet.")
@click.option("--branch-of", "branch_of", default=None,
              help="Instead of --subnet: a branch (VPN, ExpressRoute) of this Virtual WAN hub (id or name).")
@click.option("--to", "to", required=True, help="Destination IP (usually a private endpoint's).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--what-if", "what_if_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Explain the path as this ARM what-if result would leave the tenant (see plmon what-if).")
def explain_path(from_dir: Path, subnet: str | None, branch_of: str | None, to: str, fmt: str,
                 what_if_path: Path | None = None) -> None:
    """Print the effective route from a subnet (or a hub's branch) to an IP, its next hop, the Virtual WAN hub hop and
    the reasons."""
    if parse_ip(to) is None:
        raise InputError(f"--to: not an IP address: {to!r}")
    if (subnet is None) == (branch_of is None):
        raise InputError("give exactly one of --subnet SUBNET_ID and --branch-of HUB")
    tenant = RecordedTenant(from_dir)
    reader: ArmReader = tenant
    if what_if_path is None:
        tenant.trust_index()  # read once, as it is now
    else:  # the deployment's changes applied to the folder's plain answers (a trusted index answers typed units)
        from plmon.monitor.collect.whatif import WhatIfReader, load_what_if
        reader = WhatIfReader(tenant, load_what_if(what_if_path))
    snap = build_snapshot(collect(reader, manifest=tenant.manifest))
    if branch_of is not None:
        _explain_branch(snap, from_dir, branch_of, to, fmt)
        return
    assert subnet is not None
    found = snap.subnets.get(parse_id(subnet).key)
    if found is None:
        raise InputError(f"--subnet: no subnet {subnet!r} in {from_dir} "
                         f"({len(snap.subnets)} subnets in the tenant)")
    result = decide(snap, found, to)
    # The Virtual WAN hop (checks-vwan.md), only in a tenant with hubs: without one the output is as it always was.
    hub = explain_hub_hop(snap, to, client_vnet=found.vnet_id.key if found.vnet_id else None)
    if fmt == "json":
        doc = result.to_dict()
        if hub is not None:
            doc["hub"] = hub
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(printable(f"path: {result.path_text()}"))
    if result.route is not None:
        click.echo(printable(f"effective route: {result.route.describe()}"))
    if result.endpoint is not None:
        click.echo(printable(f"private endpoint: {result.endpoint.id.raw}"))
        click.echo(printable(f"endpoint subnet privateEndpointNetworkPolicies: {result.endpoint_policy}"))
        click.echo(printable(f"endpoint VNet address-space entry: {result.vnet_prefix}"))
    if result.hop is not None:
        click.echo(printable(f"next hop: {result.hop.describe()}"))
    click.echo("reasons:")
    for reason in result.reasons:
        click.echo(printable(f"  - {reason}"))
    if hub is not None:
        _echo_hub(hub)


def _explain_branch(snap: Snapshot, from_dir: Path, branch_of: str, to: str, fmt: str) -> None:
    """explain-path from a branch of a hub: only the Virtual WAN part (a branch has no subnet or route table)."""
    wanted = branch_of.strip().lower()
    hub = snap.virtual_hubs.get(parse_id(branch_of).key) or next(
        (h for h in snap.virtual_hubs.values() if h.name.lower() == wanted), None)
    if hub is None:
        raise InputError(f"--branch-of: no Virtual WAN hub {branch_of!r} in {from_dir} "
                         f"({len(snap.virtual_hubs)} hubs in the tenant)")
    doc = explain_hub_hop(snap, to, branch_hub=hub.key)
    assert doc is not None   # the tenant has this hub
    if fmt == "json":
        click.echo(json.dumps({"hub": doc}, indent=2))
        return
    _echo_hub(doc)


def _echo_hub(doc: dict[str, Any]) -> None:
    click.echo(printable(f"virtual WAN: from {doc['from']} to {doc['destination']}"
                         + (f" (private endpoint {doc['endpoint']})" if doc.get("endpoint") else "")))
    if not doc.get("via_hub"):
        click.echo(printable(f"  hub hop: none: {doc['why']}"))
        return
    for step in doc["hubs"]:
        state = {True: "on the path", False: "not on the path", None: "unknown"}[step["on_path"]]
        hop = f" next hop {step['next_hop']}" if step.get("next_hop") else ""
        click.echo(printable(f"  {step['role']} {step['hub']}:{hop} {state}: {step['why']}"))
    if doc.get("note"):
        click.echo(printable(f"  note: {doc['note']}"))
