"""Compliance reports: one :class:`Report` built from a scan (and the store), rendered in six formats (OCSF too)."""

from __future__ import annotations

from collections.abc import Callable

from plmon.monitor.reports.model import COMPLIANCE_DEFINITION, HistoryPoint, Report, build_report, build_stored_report

__all__ = ["COMPLIANCE_DEFINITION", "FORMATS", "HistoryPoint", "Report", "build_report", "build_stored_report",
           "render"]

FORMATS = ("html", "md", "json", "csv", "sarif", "ocsf")


def _renderers() -> dict[str, Callable[..., str]]:
    # imported on use: the HTML path loads Jinja2, which a CSV export does not need
    from plmon.monitor.reports.html import render_html
    from plmon.monitor.reports.json_doc import render_json
    from plmon.monitor.reports.markdown import render_markdown
    from plmon.monitor.reports.ocsf import render_ocsf
    from plmon.monitor.reports.sarif import render_sarif
    from plmon.monitor.reports.tabular import render_csv
    return {"html": lambda r, g: render_html(r, group_by=g), "md": lambda r, g: render_markdown(r, group_by=g),
            "json": lambda r, g: render_json(r), "csv": lambda r, g: render_csv(r),
            "sarif": lambda r, g: render_sarif(r), "ocsf": lambda r, g: render_ocsf(r)}


def render(report: Report, fmt: str, *, group_by: str | None = None) -> str:
    """The report as text in ``fmt`` (one of :data:`FORMATS`)."""
    renderers = _renderers()
    if fmt not in renderers:
        raise ValueError(f"unknown report format {fmt!r} (expected one of: {', '.join(FORMATS)})")
    return renderers[fmt](report, group_by)
