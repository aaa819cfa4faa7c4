"""``plmon synth``: write a synthetic tenant (plmon.monitor.replay.synth) for benchmarks, demos and scale tests.

Registered on the main group with ``cli.add_command(synth)``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import structlog

from plmon.monitor.replay.synth import RECORDED_AT, SynthSpec, generate, write_tenant

__all__ = ["synth"]

log = structlog.get_logger(__name__)


@click.command("synth")
@click.option("--subscriptions", "subscriptions", required=True, type=click.IntRange(min=1),
              help="Subscriptions in the tenant (about one in eleven is a connectivity hub).")
@click.option("--endpoints", "endpoints", required=True, type=click.IntRange(min=0),
              help="Private endpoints across the workload subscriptions.")
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same tenant, byte for byte.")
@click.option("--pls", "pls", default=None, type=click.IntRange(min=0),
              help="Private Link Services (default: one per ten subscriptions).")
@click.option("--bad-share", default=0.1, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of endpoints, targets, networks and services that carry a deliberate defect.")
@click.option("--spokes", "spokes", default=None, type=click.IntRange(min=1),
              help="Spoke networks in all (default: one per 800 endpoints); with at most 11 subscriptions all "
                   "peer with one hub.")
@click.option("--hub-endpoints", "hub_endpoints", default=0, show_default=True, type=click.IntRange(min=0),
              help="Private endpoints in each hub's own subnets (shared services reached from every spoke).")
@click.option("--vwan-hubs", "vwan_hubs", default=0, show_default=True, type=click.IntRange(min=0),
              help="Add a Virtual WAN of this many secured hubs (routing intent) with the spokes connected to them.")
@click.option("--recorded-at", default=RECORDED_AT, show_default=True,
              help="The manifest's recorded_at ('now' for ages during a replay).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--force", is_flag=True, help="Replace a recorded tenant already in --out.")
@click.option("--summary", "show_summary", is_flag=True, help="Print counts and defects as JSON.")
def synth(subscriptions: int, endpoints: int, seed: int, pls: int | None, bad_share: float, spokes: int | None,
          hub_endpoints: int, vwan_hubs: int, recorded_at: str, out: Path, force: bool, show_summary: bool) -> None:
    """Generate a seeded, internally consistent synthetic tenant in the recorded-tenant format."""
    started = time.perf_counter()
    result = generate(SynthSpec(subscriptions=subscriptions, endpoints=endpoints, seed=seed, pls=pls,
                                bad_share=bad_share, spokes=spokes, hub_endpoints=hub_endpoints, vwan_hubs=vwan_hubs))
    files = write_tenant(result, out, recorded_at=recorded_at, force=force)
    elapsed = time.perf_counter() - started
    log.info("synth_written", out=str(out), files=files, seconds=round(elapsed, 2))
    if show_summary:
        click.echo(json.dumps({**result.summary(), "out": str(out), "seconds": round(elapsed, 2)}, indent=2))
    else:
        click.echo(f"wrote {files} files ({result.counts['privateEndpoints']} endpoints, "
                   f"{sum(result.defects.values())} deliberate defects) to {out} in {elapsed:.1f}s")
