"""``plmon alerts`` and ``plmon findings``, and the ``scan --notify`` step: the state store from the CLI.

``scan --notify`` = record connection observations, apply the lifecycle (transitions and outbox rows in
one transaction), then deliver synchronously. A plain ``scan`` only records observations, and only when
the config names a ``state`` explicitly: a one-off scan of a folder never leaves a database behind nor
queues alerts, but a user who configured a store gets pending ages that grow across scans.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from plmon.alerts.delivery import DeliveryReport, DeliveryWorker
from plmon.monitor.cli.terminal import cells
from plmon.monitor.config import Config, load_config
from plmon.monitor.lifecycle.observations import observer
from plmon.monitor.lifecycle.transitions import Transition, apply_scan
from plmon.monitor.model.clock import RECORDED, store_clock
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.scan import ScanResult
from plmon.monitor.state.store import AlertStatus, FindingState, StateStore
from plmon.monitor.wiring import delivery_worker, open_state, routes

__all__ = ["alerts_cmd", "findings_cmd", "notify", "scan_observations", "worker_for"]


def scan_observations(config: Config, notify: bool) -> tuple[StateStore | None, Callable[[Snapshot], Snapshot] | None]:
    """The store a scan writes to (or None) and its observations step."""
    if not notify and "state" not in config.model_fields_set:
        return None, None
    store = open_state(config)
    return store, observer(store)


def worker_for(store: StateStore, config: Config) -> DeliveryWorker:
    """The delivery worker the composition root builds (:func:`plmon.monitor.wiring.delivery_worker`)."""
    return delivery_worker(store, config)


def notify(store: StateStore, config: Config, result: ScanResult) -> tuple[list[Transition], DeliveryReport]:
    """Apply the lifecycle for ``result`` and deliver what is owed (this scan's alerts and any left over)."""
    transitions = apply_scan(store, result, routes=routes(config),
                             reminder_interval=config.schedule.reminder_interval)
    report = worker_for(store, config).drain(config.delivery.notify_timeout.total_seconds())
    return transitions, report


def notify_summary(transitions: list[Transition], report: DeliveryReport, store: StateStore) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(_count(transitions).items())) or "none"
    pending = len(store.outbox(AlertStatus.PENDING))
    return (f"plmon: notify: transitions: {kinds}; alerts delivered {report.delivered}, "
            f"pending {pending}, failed {report.dead}")


def _count(transitions: list[Transition]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in transitions:
        out[t.kind] = out.get(t.kind, 0) + 1
    return out


def _age(since: datetime, now: datetime) -> str:
    secs = max(0, int((now - since).total_seconds()))
    days, rest = divmod(secs, 86400)
    return f"{days}d {rest // 3600}h" if days else f"{rest // 3600}h {rest % 3600 // 60}m"


@click.command("findings")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Also resolved and waived findings.")
def findings_cmd(config_path: Path | None, fmt: str, show_all: bool) -> None:
    """Open findings from the state store, with their age."""
    config = load_config(config_path)
    store = open_state(config, create=False)
    clock = store_clock(store.scan_history())  # the clock the findings were stamped on (plmon.monitor.model.clock)
    now = clock.now()
    recs = store.findings(None if show_all else FindingState.OPEN)
    rows = [{"check_id": r.check_id, "resource_id": r.resource_id, "severity": r.severity, "state": r.state.value,
             "first_seen": r.first_seen.isoformat(), "last_seen": r.last_seen.isoformat(),
             "age": _age(r.first_seen, now), "title": r.finding.get("title", "")} for r in recs]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    title = f"{len(rows)} {'findings' if show_all else 'open findings'}"
    if clock.kind == RECORDED:  # say why ages do not grow: a recording's time stands still
        title += f" (ages at {now.strftime('%Y-%m-%d %H:%M')} UTC, the recorded tenant's time)"
    table = Table(title=title)
    for col in ("severity", "check", "resource", "age", "state"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*cells(r["severity"], r["check_id"], r["resource_id"], r["age"], r["state"]))
    Console(soft_wrap=True).print(table)


@click.command("alerts")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--pending", "mode", flag_value="pending", help="List alerts waiting to be delivered (default).")
@click.option("--failed", "mode", flag_value="failed", help="List dead-lettered alerts.")
@click.option("--retry", "mode", flag_value="retry", help="Re-queue dead-lettered alerts and deliver them.")
@click.option("--deliver", "mode", flag_value="deliver", help="Deliver pending alerts now.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def alerts_cmd(config_path: Path | None, mode: str | None, fmt: str) -> None:
    """The alert outbox: pending and failed alerts; retry or deliver them."""
    config = load_config(config_path)
    store = open_state(config, create=False)
    mode = mode or "pending"
    if mode in ("retry", "deliver"):
        if mode == "retry":
            n = store.retry_failed(datetime.now(UTC))
            click.echo(f"re-queued {n} failed alert(s)", err=True)
        report = worker_for(store, config).drain(config.delivery.notify_timeout.total_seconds())
        click.echo(f"delivered {report.delivered}, failed {report.dead}, "
                   f"still pending {len(store.outbox(AlertStatus.PENDING))}", err=True)
        return
    rows = store.outbox(AlertStatus(mode))
    items = [{"alert_id": r.alert_id, "channel": r.channel, "kind": r.kind, "check_id": r.check_id,
              "resource_id": r.payload.get("finding", {}).get("resource_id"), "attempts": r.attempts,
              "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
              "last_error": r.last_error} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(items, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(items)} {mode} alert(s)")
    for col in ("alert id", "channel", "kind", "check", "resource", "attempts", "last error"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(*cells(i["alert_id"], i["channel"], i["kind"], i["check_id"], i["resource_id"],
                             i["attempts"], i["last_error"]))
    Console(soft_wrap=True).print(table)
