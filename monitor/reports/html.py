"""The HTML report: one self-contained file an auditor opens offline and prints to PDF.

Jinja2 renders it with autoescaping on for every variable, so names and request messages from Azure
are text, never markup; the only pre-built markup is the chart SVG that chart.py drew from numbers and escaped text.
A Content-Security-Policy of ``default-src 'none'`` backs that up: the page can load and run nothing.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from plmon.checks.finding import Finding
from plmon.monitor.reports.chart import trend_svg
from plmon.monitor.reports.model import Report, iso

__all__ = ["render_html"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _evidence(f: Finding) -> str:
    return json.dumps(f.to_dict()["evidence"], indent=1, sort_keys=True, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("plmon.monitor.reports", "templates"), autoescape=select_autoescape(
        enabled_extensions=("html", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.globals.update(iso=iso, pct=_pct, evidence=_evidence)
    return env


def render_html(report: Report, *, group_by: str | None = None) -> str:
    """The complete document. ``group_by="control"`` lists open findings under each mapped control."""
    template = _environment().get_template("report.html.j2")
    context: dict[str, Any] = {"r": report, "group_by": group_by,
                               "chart": Markup(trend_svg(report.trend))}  # our own SVG: numbers and dates only
    return template.render(**context)
