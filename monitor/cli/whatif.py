"""``plmon what-if``: the pull-request gate. The findings an ARM what-if result would introduce and resolve.

Exit 1 when an introduced finding is at or above ``--fail-on``, else 0; 2 with one line on bad input (an unreadable
file, not a what-if result, a what-if that failed). Registered on the main group in ``plmon.monitor.cli``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from plmon.checks.finding import Finding, Severity
from plmon.monitor.cli.root import SEVERITIES, _severity, cli_scope, source_options
from plmon.monitor.cli.terminal import cells, printable
from plmon.monitor.collect.whatif import load_what_if
from plmon.monitor.scan import DEFAULTS, ScanConfig
from plmon.monitor.whatif import WhatIfResult, introduced_result, run_what_if, what_if_document
from plmon.monitor.wiring import open_source

__all__ = ["what_if"]


@click.command("what-if")
@click.option("--what-if", "what_if_path", required=True, type=click.Path(path_type=Path), metavar="FILE",
              help="The output of `az deployment group|sub|mg|tenant what-if --result-format FullResourcePayloads "
                   "--no-pretty-print` (or a REST WhatIfOperationResult).")
@source_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "sarif"]), default="table", show_default=True)
@click.option("--fail-on", type=click.Choice(SEVERITIES), callback=_severity,
              help="Exit 1 when the deployment would introduce a finding at or above this severity.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-check settings and waivers, as for scan.")
def what_if(what_if_path: Path, fmt: str, fail_on: Severity | None, config_path: Path | None, **live: Any) -> None:
    """The findings a deployment would introduce and resolve, before it runs."""
    document = load_what_if(what_if_path)   # bad input fails before anything is read
    config: ScanConfig = DEFAULTS
    if config_path is not None:
        from plmon.monitor.config import load_config
        loaded = load_config(config_path)
        config = cli_scope(loaded, {}).config(loaded)
    # (a folder's index is not trusted here: that makes it answer typed units, and the overlay changes raw JSON)
    with open_source(live.pop("from_dir"), **live) as source:
        result = run_what_if(source.reader, config, document, manifest=source.manifest,
                             subscriptions=source.subscriptions, workers=source.workers, clock=source.clock)
    gaps = [g for g in result.after.gaps if g.type == "what-if"]
    if fmt == "json":
        click.echo(json.dumps(what_if_document(result), indent=2))
        if gaps:   # the document's keys are fixed: what could not be applied is said on stderr too
            click.echo(f"plmon: what-if coverage: {len(gaps)} change(s) not judged (see --format table)", err=True)
    elif fmt == "sarif":
        from plmon.monitor.reports import build_report, render
        click.echo(render(build_report(introduced_result(result), waivers=config.waiver_list()), "sarif"), nl=False)
    else:
        _table(result)
    if fail_on is not None and any(f.severity.rank >= fail_on.rank for f in result.introduced):
        sys.exit(1)


def _table(result: WhatIfResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=False, width=160)

    def findings(title: str, rows: tuple[Finding, ...]) -> None:
        table = Table(title=f"{title} ({len(rows)})", expand=False)
        for column in ("severity", "check", "resource", "message"):
            table.add_column(column, overflow="fold")
        for f in rows:
            table.add_row(*cells(f.severity.value, f.check_id, f.resource_id.rstrip("/").rsplit("/", 1)[-1],
                                 f.message))
        console.print(table)

    findings("Introduced by the deployment", result.introduced)
    findings("Resolved by the deployment", result.resolved)
    console.print(Text(f"Unchanged findings: {result.unchanged}. Changes applied: {result.applied}, "
                       f"ignored (NoChange/Ignore): {len(result.ignored)}, unsupported: {len(result.unsupported)}."))
    gaps = [g for g in result.after.gaps if g.type == "what-if"]
    others = [g for g in result.after.gaps if g.type != "what-if"]
    if gaps:
        console.print(Text(f"What-if coverage ({len(gaps)}): changes not applied, so not judged:", style="yellow"))
        for g in gaps:
            console.print(Text(printable(f"  {g.code}  {g.scope}  {g.message or ''}")))
    if others:
        console.print(Text(f"Coverage gaps ({len(others)}): not seen, so not judged compliant:", style="yellow"))
        for g in others:
            console.print(Text(printable(f"  {g.code}  {g.type}  {g.scope}")))
    if not gaps and not others:
        console.print(Text("Coverage: every scope in the collection plan was read and every change applied."))
