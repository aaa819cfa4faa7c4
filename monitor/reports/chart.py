"""The trend chart: open findings and the compliance figure per scan, drawn as plain inline SVG.

One line chart of a few dozen points does not need a plotting library: matplotlib brought numpy, fontTools
and Pillow (about 117 MB) into every install, container image and Function package for it. The SVG is built
from numbers and dates only, every text node still goes through :func:`html.escape`, and the same history
always gives the same bytes. ``<title>`` and ``<desc>`` (with the figures in words) make it readable to a
screen reader; the report's trend table holds the same figures for print and copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from plmon.monitor.reports.model import HistoryPoint

__all__ = ["trend_svg"]

_W, _H = 768, 269                       # 8 x 2.8 in at 96 dpi, the size the report's CSS scales from
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 60, 34, 46
_FINDINGS, _COMPLIANCE, _GRID, _INK = "#b42318", "#175cd3", "#d0d5dd", "#1d2939"


def _num(v: float) -> str:
    """Coordinates with one decimal and no trailing zeros: short, stable text."""
    text = f"{v:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _nice_top(value: int) -> int:
    """The axis top: four ticks of 1, 2 or 5 x 10^n, the smallest reaching ``value``, so tick labels are round."""
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale * 4 >= value:
                return m * scale * 4
        scale *= 10


def _label(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def trend_svg(points: Sequence[HistoryPoint]) -> str:
    """An ``<svg>`` element (no XML prolog) ready to inline into HTML; ``points`` in time order."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = _nice_top(max([p.open_findings for p in points] + [1]))
    times = [p.scanned_at.timestamp() for p in points]
    t0, t1 = (min(times), max(times)) if times else (0.0, 0.0)

    def x(t: float) -> float:
        return _LEFT + plot_w / 2 if t1 == t0 else _LEFT + (t - t0) / (t1 - t0) * plot_w

    def y_open(n: float) -> float:
        return _TOP + plot_h - n / top * plot_h

    def y_pct(p: float) -> float:
        return _TOP + plot_h - p / 105 * plot_h

    last = points[-1] if points else None
    desc = (f"{len(points)} scan(s) from {_label(points[0].scanned_at)} to {_label(points[-1].scanned_at)} UTC; "
            f"the last has {last.open_findings} open finding(s)"
            + (f" and {last.compliance_percent:.1f} % compliance." if last.compliance_percent is not None else ".")
            if last else "No scan yet.")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
           f'role="img" aria-labelledby="trend-title trend-desc" font-family="DejaVu Sans, sans-serif" '
           f'font-size="11" fill="{_INK}">',
           '<title id="trend-title">Trend over scans (UTC): open findings and compliance</title>',
           f'<desc id="trend-desc">{escape(desc)}</desc>',
           f'<text x="{_LEFT}" y="16" font-size="13" font-weight="600">Trend over scans (UTC)</text>']
    for i in range(5):  # grid and left ticks: open findings
        value = top * i // 4
        yy = _num(y_open(value))
        out.append(f'<path d="M{_LEFT} {yy}H{_LEFT + plot_w}" stroke="{_GRID}" stroke-width="1"/>')
        out.append(f'<text x="{_LEFT - 6}" y="{yy}" dy="4" text-anchor="end">{value}</text>')
    for pct in (0, 25, 50, 75, 100):  # right ticks: compliance %
        out.append(f'<text x="{_LEFT + plot_w + 6}" y="{_num(y_pct(pct))}" dy="4">{pct}</text>')
    out.append(f'<path d="M{_LEFT} {_TOP}V{_TOP + plot_h}H{_LEFT + plot_w}V{_TOP}" fill="none" stroke="{_INK}"/>')
    out.append(f'<text transform="translate(14 {_num(_TOP + plot_h / 2)}) rotate(-90)" text-anchor="middle">'
               'open findings</text>')
    out.append(f'<text transform="translate({_W - 10} {_num(_TOP + plot_h / 2)}) rotate(90)" '
               'text-anchor="middle">compliance %</text>')
    ticks = sorted({0, len(points) - 1} | ({len(points) // 2} if len(points) > 2 else set())) if points else []
    for i in ticks:
        px = _num(x(times[i]))
        anchor = "middle" if len(points) == 1 else ("start" if i == 0 else "end" if i == len(points) - 1
                                                    else "middle")
        out.append(f'<path d="M{px} {_TOP + plot_h}v5" stroke="{_INK}"/>')
        out.append(f'<text x="{px}" y="{_TOP + plot_h + 18}" text-anchor="{anchor}">'
                   f'{escape(_label(points[i].scanned_at))}</text>')
    if points:
        line = "".join(f"{'M' if i == 0 else 'L'}{_num(x(t))} {_num(y_open(p.open_findings))}"
                       for i, (t, p) in enumerate(zip(times, points, strict=True)))
        out.append(f'<path class="series-findings" d="{line}" fill="none" stroke="{_FINDINGS}" stroke-width="2"/>')
        for t, p in zip(times, points, strict=True):
            cx, cy = _num(x(t)), _num(y_open(p.open_findings))
            out.append(f'<path d="M{cx} {cy}m-3.5 0a3.5 3.5 0 1 0 7 0a3.5 3.5 0 1 0-7 0" fill="{_FINDINGS}">'
                       f'<title>{escape(_label(p.scanned_at))}: {p.open_findings} open</title></path>')
        pct_points = [(t, p.compliance_percent) for t, p in zip(times, points, strict=True)
                      if p.compliance_percent is not None]
        if pct_points:
            line = "".join(f"{'M' if i == 0 else 'L'}{_num(x(t))} {_num(y_pct(v))}"
                           for i, (t, v) in enumerate(pct_points))
            out.append(f'<path class="series-compliance" d="{line}" fill="none" stroke="{_COMPLIANCE}" '
                       'stroke-width="2" stroke-dasharray="6 4"/>')
            for t, v in pct_points:
                cx, cy = _num(x(t)), _num(y_pct(v))
                out.append(f'<path d="M{cx} {cy}m-3.5-3.5h7v7h-7z" fill="{_COMPLIANCE}"><title>'
                           f'{v:.1f} %</title></path>')
    legend_x = _LEFT + 10
    out.append(f'<path d="M{legend_x} {_TOP + 12}h22" stroke="{_FINDINGS}" stroke-width="2"/>')
    out.append(f'<text x="{legend_x + 28}" y="{_TOP + 16}">open findings</text>')
    out.append(f'<path d="M{legend_x + 130} {_TOP + 12}h22" stroke="{_COMPLIANCE}" stroke-width="2" '
               'stroke-dasharray="6 4"/>')
    out.append(f'<text x="{legend_x + 158}" y="{_TOP + 16}">compliance %</text>')
    out.append("</svg>")
    return "\n".join(out)
