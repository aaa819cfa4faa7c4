"""The trend chart: plain SVG from numbers, readable by a screen reader, the same bytes for the same history."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

from plmon.monitor.reports.chart import trend_svg
from plmon.monitor.reports.model import HistoryPoint

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def _points(n: int) -> list[HistoryPoint]:
    return [HistoryPoint(T0 + timedelta(days=i), 3 + 2 * i, {}, None if i == 1 else 40.0 + i) for i in range(n)]


def test_svg_is_well_formed_with_title_and_description() -> None:
    """The chart parses as XML and names itself (title, desc with the last scan's figures) for assistive tech."""
    root = ET.fromstring(trend_svg(_points(4)))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.get("aria-labelledby") == "trend-title trend-desc"
    assert root.find(f"{SVG}title").text.startswith("Trend over scans")
    desc = root.find(f"{SVG}desc").text
    assert "4 scan(s)" in desc and "9 open finding(s)" in desc and "43.0 % compliance" in desc


def test_series_have_one_vertex_per_scan_and_skip_missing_figures() -> None:
    """Open findings get a vertex per scan; the compliance line skips the scan without a figure."""
    root = ET.fromstring(trend_svg(_points(4)))
    paths = {p.get("class"): p.get("d") for p in root.iter(f"{SVG}path") if p.get("class")}
    assert paths["series-findings"].count("L") == 3
    assert paths["series-compliance"].count("L") == 2


def test_same_history_gives_the_same_bytes_and_no_or_one_scan_still_draws() -> None:
    """Deterministic output; an empty history and a single scan give a valid chart, not an error."""
    assert trend_svg(_points(5)) == trend_svg(_points(5))
    assert ET.fromstring(trend_svg([])).find(f"{SVG}desc").text == "No scan yet."
    one = ET.fromstring(trend_svg(_points(1)))
    assert [p.get("class") for p in one.iter(f"{SVG}path") if p.get("class")] == ["series-findings",
                                                                                  "series-compliance"]


def test_axis_top_is_a_round_number_at_or_above_the_highest_point() -> None:
    """Tick labels are round (4 ticks of 1, 2 or 5 x 10^n), the top at or above the most findings seen."""
    for most, top in ((0, 4), (4, 4), (5, 8), (41, 80), (1001, 2000)):
        pts = [HistoryPoint(T0, most, {}, None)]
        labels = [t.text for t in ET.fromstring(trend_svg(pts)).iter(f"{SVG}text") if t.get("text-anchor") == "end"
                  and t.get("dy") == "4"]
        assert labels[-1] == str(top), (most, labels)


def test_rendering_the_html_report_imports_no_plotting_stack() -> None:
    """The HTML renderer and chart load without matplotlib, numpy, fontTools or Pillow, and pyproject lists none."""
    code = ("import sys; import plmon.monitor.reports.html, plmon.monitor.reports.chart; "
            "print(sorted(m for m in ('matplotlib', 'numpy', 'fontTools', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if d.lower().startswith(("matplotlib", "numpy", "fonttools", "pillow"))]
