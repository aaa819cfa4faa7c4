"""``plmon report``: a compliance report of a fresh scan, with age and trend from the state store.

The scan is what a report vouches for (coverage, resources, findings as of now); the store, when the
configured ``state.url`` names one that exists, adds what only history knows: when each finding was
first seen and the scans behind the trend. The report never writes to the store.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import structlog

from monitor.cli import do_scan, source_options
from monitor.config import load_config
from monitor.errors import InputError
from monitor.reports import FORMATS, HistoryPoint, build_report, render
from monitor.store import StateStore, open_store

__all__ = ["report", "write_report"]

log = structlog.get_logger(__name__)


def _since(_: click.Context, __: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if "T" in value else datetime.combine(
            date.fromisoformat(value), datetime.min.time())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (use YYYY-MM-DD or an ISO 8601 time)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def existing_store(url: str) -> StateStore | None:
    """The store ``url`` names, only if it already exists: a report must not create an empty one."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if path == ":memory:" or not Path(path).is_file():
            return None
    return open_store(url)


def write_report(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"--out {out}: cannot write ({err.strerror})") from None
    click.echo(f"plmon: wrote {out} ({len(text.encode()):,} bytes)", err=True)


@click.command("report")
@source_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--since", callback=_since, help="Trend from this date (YYYY-MM-DD or ISO 8601, UTC).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--group-by", type=click.Choice(["severity", "control"]), default="severity", show_default=True,
              help="Group open findings by severity order or by mapped control (MCSB, CIS).")
def report(from_dir: Path | None, fmt: str, out: Path | None, since: datetime | None, config_path: Path | None,
           group_by: str, **live: Any) -> None:
    """Compliance report (html, md, json, csv, sarif) of a fresh scan, with history from the state store."""
    config = load_config(config_path)
    result = do_scan(config, from_dir, **live)
    first_seen: dict[tuple[str, str], datetime] = {}
    history: list[HistoryPoint] = []
    store = existing_store(config.state.url)
    if store is not None:
        try:
            first_seen = {r.key: r.first_seen for r in store.findings()}
            history = [HistoryPoint(s.at, s.open_findings, dict(s.by_severity))
                       for s in store.scan_history(since=since) if s.kind == "full"]
        finally:
            store.close()
        log.info("report_history", findings_known=len(first_seen), scans=len(history))
    rep = build_report(result, first_seen=first_seen, history=history, waivers=config.waiver_list(), since=since,
                       history_source="state store" if store is not None else "this scan only")
    write_report(render(rep, fmt, group_by=group_by if group_by == "control" else None), out)
