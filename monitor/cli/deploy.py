"""``plmon deploy``: what the deployment templates need from plmon's own tables, printed for Bicep.

``plmon deploy event-filters`` turns :mod:`plmon.monitor.events.relevance` (the table the daemon filters events with)
into Event Grid advanced filters on ``data.operationName``, so the filter upstream and the worker's
relevance test can never disagree. Event Grid allows 25 filter values per event subscription, so the
output is a list of event subscriptions, each with one filter of at most 25 values.
"""

from __future__ import annotations

import json
from typing import Any

import click

from plmon.monitor.events.relevance import MAX_FILTER_VALUES, operation_name_contains_filters, operation_name_filters

__all__ = ["deploy", "event_subscriptions"]

PARAMETERS_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"


def event_subscriptions() -> list[dict[str, Any]]:
    """One entry per Event Grid event subscription: its name suffix, filter operator and values."""
    out: list[dict[str, Any]] = []
    for i, values in enumerate(operation_name_filters(), start=1):
        out.append({"name": f"ops-{i}", "operator": "StringBeginsWith", "key": "data.operationName",
                    "values": values})
    for i, values in enumerate(operation_name_contains_filters(), start=1):
        out.append({"name": f"pec-{i}", "operator": "StringContains", "key": "data.operationName",
                    "values": values})
    for sub in out:
        if len(sub["values"]) > MAX_FILTER_VALUES:  # pragma: no cover - relevance.py chunks already
            raise click.ClickException(f"event subscription {sub['name']}: more than {MAX_FILTER_VALUES} values")
    return out


@click.group("deploy")
def deploy() -> None:
    """Values for the deployment templates in deploy/ (Bicep, Function app)."""


@click.command("event-filters")
@click.option("--values-only", is_flag=True, help="Print only the array, not a Bicep/ARM parameters file.")
def event_filters(values_only: bool) -> None:
    """Event Grid advanced filters on data.operationName, as the eventFilters Bicep parameter."""
    subs = event_subscriptions()
    doc: Any = subs if values_only else {
        "$schema": PARAMETERS_SCHEMA, "contentVersion": "1.0.0.0",
        "parameters": {"eventFilters": {"value": subs}}}
    click.echo(json.dumps(doc, indent=2))


deploy.add_command(event_filters)
