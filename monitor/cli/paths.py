"""``plmon explain-path``: show the route a client subnet takes to an IP and why, from a recorded tenant.

The same evaluator the route checks use (:mod:`plmon.checks.paths`), so an engineer can see exactly why a
``route.*`` finding was raised. Registered on the main group with ``cli.add_command(explain_path)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from plmon.checks.paths import decide, parse_ip
from plmon.monitor.cli.terminal import printable
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import ArmReader, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.errors import InputError
from plmon.monitor.model.arm_id import parse_id

__all__ = ["explain_path"]


@click.command("explain-path")
@click.option("--from", "from_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A recorded tenant folder.")
@click.option("--subnet", "subnet", required=True, help="ARM id of the client subnet.")
@click.option("--to", "to", required=True, help="Destination IP (usually a private endpoint's).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--what-if", "what_if_path", type=click.Path(path_type=Path), metavar="FILE",
              help="Explain the path as this ARM what-if result would leave the tenant (see plmon what-if).")
def explain_path(from_dir: Path, subnet: str, to: str, fmt: str, what_if_path: Path | None = None) -> None:
    """Print the effective route from a subnet to an IP, its next hop, and the reasons."""
    if parse_ip(to) is None:
        raise InputError(f"--to: not an IP address: {to!r}")
    tenant = RecordedTenant(from_dir)
    reader: ArmReader = tenant
    if what_if_path is None:
        tenant.trust_index()  # read once, as it is now
    else:  # the deployment's changes applied to the folder's plain answers (a trusted index answers typed units)
        from plmon.monitor.collect.whatif import WhatIfReader, load_what_if
        reader = WhatIfReader(tenant, load_what_if(what_if_path))
    snap = build_snapshot(collect(reader, manifest=tenant.manifest))
    found = snap.subnets.get(parse_id(subnet).key)
    if found is None:
        raise InputError(f"--subnet: no subnet {subnet!r} in {from_dir} "
                         f"({len(snap.subnets)} subnets in the tenant)")
    result = decide(snap, found, to)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
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
