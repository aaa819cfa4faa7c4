"""``plmon record --out DIR``: write a recorded tenant from a collection (see plmon.monitor.collect.record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from plmon.monitor.cli.root import source_options
from plmon.monitor.collect.record import record
from plmon.monitor.wiring import open_source

__all__ = ["record_cmd"]


@click.command("record")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New or empty folder to write the recorded tenant into.")
@click.option("--redact", is_flag=True,
              help="Replace subscription ids, the tenant id and names consistently, to share the recording.")
@source_options
def record_cmd(out: Path, redact: bool, from_dir: Path | None, management_group: str | None, **live: Any) -> None:
    """Record every ARM read of a collection (lists merged, errors kept) as a recorded tenant."""
    with open_source(from_dir, **live) as source:
        inv, _ = record(source, out, management_group=management_group, redact=redact)
    click.echo(f"plmon: recorded {inv.stats.requests} reads ({inv.stats.failures} failed, "
               f"{len(inv.subscriptions)} subscriptions) to {out}{' redacted' if redact else ''}", err=True)
