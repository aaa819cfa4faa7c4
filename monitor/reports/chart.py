"""The trend chart: open findings and the compliance figure per scan, drawn by matplotlib as inline SVG.

Rendered off-screen (Agg/SVG canvases, no pyplot global state) with matplotlib's bundled DejaVu Sans,
a fixed hash salt and no date metadata, so the same history always gives byte-identical SVG and the
report needs no font, script or network at view time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: must precede any backend import

from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from plmon.monitor.reports.model import HistoryPoint

__all__ = ["trend_svg"]

_STYLE: Any = {"font.family": "DejaVu Sans", "font.size": 9, "svg.fonttype": "path", "svg.hashsalt": "plmon",
          "axes.spines.top": False}


def trend_svg(points: Sequence[HistoryPoint]) -> str:
    """An ``<svg>`` element (no XML prolog) ready to inline into HTML."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(8, 2.8), dpi=96)
        FigureCanvasSVG(fig)
        ax = fig.add_subplot(1, 1, 1)
        xs: list[Any] = [p.scanned_at for p in points]  # matplotlib plots datetimes; its stubs say numbers
        ax.plot(xs, [p.open_findings for p in points], marker="o", color="#b42318", label="open findings")
        ax.set_ylabel("open findings")
        ax.set_ylim(bottom=0, top=max([p.open_findings for p in points] + [1]) * 1.15)
        pct: list[tuple[Any, float]] = [(p.scanned_at, p.compliance_percent) for p in points
                                         if p.compliance_percent is not None]
        right = ax.twinx()
        right.spines["top"].set_visible(False)
        if pct:
            right.plot([x for x, _ in pct], [y for _, y in pct], marker="s", linestyle="--", color="#175cd3",
                       label="compliance %")
        right.set_ylim(0, 105)
        right.set_ylabel("compliance %")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper left", frameon=False, fontsize=8)
        if len(points) == 1:
            only: Any = points[0].scanned_at
            ax.set_xticks([only], [only.strftime("%Y-%m-%d %H:%M")])
        else:
            fig.autofmt_xdate()
        ax.set_title("Trend over scans (UTC)", loc="left", fontsize=10)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]
