"""``plmon report``: a compliance report from the state store, or of a fresh scan.

Without a source option the report is of the store alone (contracts.md): the findings open and waived
now, and the figure and coverage the last full scan recorded, so the report states what was not read
exactly as the scan did. With ``--from``, ``--fresh`` or a live source option it scans instead; the
store, when the configured ``state.url`` names one that exists, then adds when each finding was first
seen and the scans behind the trend. The report never writes to the store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import structlog

from plmon.checks.finding import Finding
from plmon.monitor.cli.root import (
    Outputs,
    cli_scope,
    do_scan,
    output_name,
    output_options,
    scope_options,
    scoped_result,
    source_options,
    write_output,
)
from plmon.monitor.config import load_config
from plmon.monitor.errors import InputError
from plmon.monitor.model.clock import store_clock
from plmon.monitor.reports import FORMATS, HistoryPoint, Report, build_report, build_stored_report, render
from plmon.monitor.reports.compliance import framework, keep_framework, mapped_checks, requirement_rows, requirements_of
from plmon.monitor.scope import Scope
from plmon.monitor.state.store import FindingState, StateStore
from plmon.monitor.wiring import open_state_url

__all__ = ["report", "stored_report", "write_report"]

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
    return open_state_url(url)


def write_report(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"--out {out}: cannot write ({err.strerror})") from None
    click.echo(f"plmon: wrote {out} ({len(text.encode()):,} bytes)", err=True)


def _live_source(from_dir: Path | None, live: dict[str, Any]) -> bool:
    """Whether the caller named a source to scan (``--from`` or a live option beyond the defaults)."""
    return from_dir is not None or any(live.get(k) for k in ("subscriptions", "management_group", "arm_endpoint",
                                                             "ca_bundle"))


def _for_framework(rep: Report, framework_id: str | None) -> Report:
    """The report with its framework's requirement view (``--compliance``); unchanged without one."""
    if framework_id is None:
        return rep
    rows = requirement_rows(framework_id, [r.finding for r in rep.findings], rep.waived, rep.checks_run)
    return replace(rep, framework=framework(framework_id), requirements=tuple(rows))


def stored_report(url: str, *, waivers: Any, since: datetime | None, now: datetime | None = None,
                  framework_id: str | None = None, scope: Scope | None = None) -> Report:
    """The report of the state store at ``url`` alone; an InputError when it holds no full scan yet. With
    ``framework_id``, only the findings that evidence one of its requirements; ``scope`` keeps the findings of its
    checks, severities and resource groups (the store keeps no tags)."""
    store = existing_store(url)
    hint = "run `plmon scan --notify` or `plmon serve` first, or report a fresh scan with --from DIR or --fresh"
    if store is None:
        raise InputError(f"report: no state store at {url} yet; {hint}")
    try:
        scans = [s for s in store.scan_history() if s.kind == "full"]
        if not scans:
            raise InputError(f"report: the state store {url} holds no scan yet; {hint}")
        open_now = store.findings(FindingState.OPEN)
        waived = store.findings(FindingState.WAIVED)
        if scope is not None and scope.active:
            open_now = [r for r in open_now if scope.keeps_stored(r.finding)]
            waived = [r for r in waived if scope.keeps_stored(r.finding)]
    finally:
        store.close()
    if framework_id is not None:
        open_now = [r for r in open_now if requirements_of(Finding.from_dict(r.finding), framework_id)]
        waived = [r for r in waived if requirements_of(Finding.from_dict(r.finding), framework_id)]
    trend_scans = [s for s in scans if since is None or s.at >= since] or scans[-1:]
    log.info("report_from_store", scans=len(scans), open_findings=len(open_now), waived=len(waived))
    # Ages on the clock the findings were stamped on: a recorded tenant's recorded_at (plmon.monitor.model.clock).
    rep = build_stored_report(open_now, waived, trend_scans, now=now or store_clock(scans).now(), waivers=waivers,
                              since=since, checks=None if framework_id is None else mapped_checks(framework_id))
    return _for_framework(rep, framework_id)


@click.command("report")
@source_options
@click.option("--fresh", is_flag=True, help="Scan Azure now (default credentials) instead of reporting the store.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--since", callback=_since, help="Trend from this date (YYYY-MM-DD or ISO 8601, UTC).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--group-by", type=click.Choice(["severity", "control"]), default="severity", show_default=True,
              help="Group open findings by severity order or by mapped control (MCSB).")
@click.option("--compliance", "framework_id", metavar="FRAMEWORK_ID",
              help="Report one framework: its checks' findings and a per-requirement view "
                   "(ids: plmon checks --compliance-frameworks).")
@output_options
@scope_options
def report(from_dir: Path | None, fresh: bool, fmt: str, out: Path | None, since: datetime | None,
           config_path: Path | None, group_by: str, framework_id: str | None = None,
           output_formats: tuple[str, ...] = (), output_directory: Path | None = None,
           output_filename: str | None = None, **options: Any) -> None:
    """Compliance report (html, md, json, csv, sarif, ocsf) from the state store; with --from, --fresh or a live
    source option, of a fresh scan instead (the store, when it exists, adds age and trend)."""
    if fresh and from_dir is not None:
        raise InputError("--fresh scans Azure now and --from reads a recorded tenant: give one of them")
    if framework_id is not None:
        framework_id = framework(framework_id).id  # an unknown id is one line and exit 2, before any work
    chosen = {k: options.pop(k) for k in ("checks", "exclude_checks", "severity", "resource_groups", "include_tags",
                                          "exclude_tags", "include_passed")}
    live = options
    outputs = Outputs(output_formats, output_directory, output_filename)
    config = load_config(config_path)
    scope = cli_scope(config, chosen)
    if not fresh and not _live_source(from_dir, live):
        if chosen["include_passed"]:
            raise InputError("--include-passed needs a fresh scan (--from DIR, --fresh or a live source option): "
                             "the state store keeps findings, not what each check found compliant")
        if scope.include_tags or scope.exclude_tags:
            raise InputError("--include-tag/--exclude-tag need a fresh scan (--from DIR, --fresh or a live source "
                             "option): the state store keeps no resource tags")
        rep = stored_report(config.state.url, waivers=config.waiver_list(), since=since, framework_id=framework_id,
                            scope=scope)
        _write_all(rep, fmt, out, outputs, group_by)
        return
    settings = scope.config(config)
    result = scoped_result(do_scan(settings, from_dir, **live), settings, scope, bool(chosen["include_passed"]))
    first_seen: dict[tuple[str, str], datetime] = {}
    history: list[HistoryPoint] = []
    store = existing_store(config.state.url)
    if store is not None:
        try:
            first_seen = {r.key: r.first_seen for r in store.findings()}
            history = [HistoryPoint(s.at, s.open_findings, dict(s.by_severity), s.compliance_percent)
                       for s in store.scan_history(since=since) if s.kind == "full"]
        finally:
            store.close()
        log.info("report_history", findings_known=len(first_seen), scans=len(history))
    if framework_id is not None:
        result = keep_framework(result, framework_id)
    rep = build_report(result, first_seen=first_seen, history=history, waivers=config.waiver_list(), since=since,
                       history_source="state store" if store is not None else "this scan only",
                       checks=None if framework_id is None else mapped_checks(framework_id))
    rep = _for_framework(rep, framework_id)
    _write_all(rep, fmt, out, outputs, group_by)


def _write_all(rep: Report, fmt: str, out: Path | None, outputs: Outputs, group_by: str) -> None:
    """The report in ``--format`` (stdout or ``--out``), and in every ``--output-formats`` format, one file each."""
    grouping = group_by if group_by == "control" else None
    write_report(render(rep, fmt, group_by=grouping), out)
    if outputs.directory is not None:
        name = output_name(rep.tenant_id, rep.scanned_at or rep.generated_at, outputs.filename)
        for each in outputs.formats:
            write_output(outputs.directory, name, each, render(rep, each, group_by=grouping))
