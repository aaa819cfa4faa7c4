"""``plmon events``: the daemon's intake queue from the CLI, so failed (dead-lettered) events are seen and retried.

An event whose processing failed ``server.event_max_attempts`` times is set aside by the daemon rather
than blocking the queue; this lists those events with their last error and puts them back in the queue
(``--retry``), where a running daemon picks them up within a second. It opens the same ``state.url`` as
the daemon; SQLite's WAL lets it do so while the daemon runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from plmon.monitor.cli.terminal import cells
from plmon.monitor.config import load_config
from plmon.monitor.errors import InputError
from plmon.monitor.wiring import open_intake, open_state

__all__ = ["events_cmd"]


@click.command("events")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--failed", "show_failed", is_flag=True, help="List events set aside after repeated failures.")
@click.option("--retry", "retry_ids", multiple=True, metavar="EVENT_ID", help="Queue this failed event again.")
@click.option("--retry-all", is_flag=True, help="Queue every failed event again.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def events_cmd(config_path: Path | None, show_failed: bool, retry_ids: tuple[str, ...], retry_all: bool,
               fmt: str) -> None:
    """The daemon's intake queue: counts, failed events, retry."""
    config = load_config(config_path)
    if retry_ids and retry_all:
        raise InputError("--retry EVENT_ID and --retry-all exclude each other")
    store = open_state(config, create=False)
    intake = open_intake(store, config)
    try:
        if retry_ids:
            # Checked before anything is re-queued: a mistyped id must not pass as "re-queued 0".
            failed = {d.event_id for d in intake.dead_letters()}
            unknown = [i for i in dict.fromkeys(retry_ids) if i not in failed]
            if unknown:
                raise InputError(f"--retry {unknown[0]}: no failed event with this id (see plmon events --failed)")
        if retry_ids or retry_all:
            n = intake.retry_failed(None if retry_all else retry_ids)
            click.echo(f"re-queued {n} failed event(s)", err=True)
            return
        if not show_failed:
            counts = {"pending": intake.pending(), "failed": intake.failed_count()}
            click.echo(json.dumps(counts) if fmt == "json" else f"pending {counts['pending']}, "
                       f"failed {counts['failed']}")
            return
        rows = [{"event_id": d.event_id, "type": d.raw.get("eventType") or d.raw.get("type"),
                 "subject": d.raw.get("subject"), "attempts": d.attempts, "last_error": d.last_error,
                 "received_at": d.received_at.isoformat(), "failed_at": d.failed_at.isoformat()}
                for d in intake.dead_letters()]
    finally:
        intake.close()
        store.close()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} failed event(s)")
    for col in ("event id", "type", "subject", "attempts", "failed at", "last error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*cells(r["event_id"], r["type"], r["subject"], r["attempts"], r["failed_at"],
                             r["last_error"]))
    Console(soft_wrap=True).print(table)
