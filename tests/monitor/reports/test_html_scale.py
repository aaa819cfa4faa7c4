"""The HTML report at scale, in a real headless Chromium: a 1,000-finding tenant from ``plmon synth`` stays a page
of folded groups with counts (bounded height, no horizontal overflow), and the demo tenant prints compactly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from playwright.sync_api import sync_playwright
from services import CHROMIUM_ARGS, ensure_chromium

from plmon.monitor.cli import cli

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"
# About 1,050 open findings in 15 checks (seeded, so the same every run).
SYNTH = ["--subscriptions", "4", "--endpoints", "2300", "--bad-share", "0.3", "--seed", "1"]


def _report(folder: Path, out: Path, tmp: Path, fmt: str = "html") -> Path:
    config = tmp / "c.yaml"
    config.write_text(f'state: {{url: "sqlite:///{tmp / "none.db"}"}}\n')  # no store: nothing read or created
    res = CliRunner().invoke(cli, ["report", "--from", str(folder), "--config", str(config), "--format", fmt,
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("large")
    res = CliRunner().invoke(cli, ["synth", *SYNTH, "--out", str(tmp / "tenant")])
    assert res.exit_code == 0, res.output
    doc = json.loads(_report(tmp / "tenant", tmp / "r.json", tmp, "json").read_text())
    html = _report(tmp / "tenant", tmp / "r.html", tmp)
    executable = ensure_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(html.as_uri(), wait_until="load")
            measure = """() => ({
                height: document.documentElement.scrollHeight,
                findingsHeight: document.querySelector('#findings').getBoundingClientRect().height,
                scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
                rows: document.querySelectorAll('#findings tr.finding').length,
                shown: [...document.querySelectorAll('#findings tr.finding')].filter(r => r.checkVisibility())
                    .length,
                groups: [...document.querySelectorAll('#findings details.finding-group')].map(d => ({
                    id: d.id, open: d.open, count: d.querySelectorAll('tr.finding').length,
                    summary: d.querySelector('summary').textContent})),
            })"""
            folded = page.evaluate(measure)
            biggest = max(folded["groups"], key=lambda g: g["count"])
            page.click(f'[id="{biggest["id"]}"] > summary')
            opened = page.evaluate(measure)
        finally:
            browser.close()
    return {"doc": doc, "folded": folded, "opened": opened, "biggest": biggest}


def test_every_finding_is_in_the_page_grouped_by_check_with_counts(large: dict) -> None:
    """All 1,000+ findings are rows, one group per check, and each group's heading states its count."""
    findings = large["doc"]["findings"]
    assert len(findings) >= 1000
    folded = large["folded"]
    assert folded["rows"] == len(findings)
    by_check: dict[str, int] = {}
    for f in findings:
        by_check[f["check_id"]] = by_check.get(f["check_id"], 0) + 1
    assert {g["id"].removeprefix("findings-"): g["count"] for g in folded["groups"]} == by_check
    assert all(f"({g['count']} finding(s))" in g["summary"] for g in folded["groups"])


def test_large_report_starts_folded_with_a_bounded_page_height(large: dict) -> None:
    """At 1,000 findings the groups start closed: no row is laid out, and the page is a few screens, not 200k px."""
    folded = large["folded"]
    assert not any(g["open"] for g in folded["groups"]) and folded["shown"] == 0
    assert folded["findingsHeight"] < 2500, folded["findingsHeight"]
    # The rest (coverage gaps, breakdown, trend, the 34-check catalogue) does not grow with the findings.
    assert folded["height"] < 20000, folded["height"]


def test_opening_the_largest_group_shows_its_rows_without_horizontal_overflow(large: dict) -> None:
    """Opening one group lays out exactly its rows, and long ids and evidence still wrap inside 1280 px."""
    opened, biggest = large["opened"], large["biggest"]
    assert opened["shown"] == biggest["count"] > 100
    assert large["folded"]["scrollWidth"] <= large["folded"]["innerWidth"] == 1280
    assert opened["scrollWidth"] <= opened["innerWidth"]


def test_demo_report_prints_compactly(tmp_path: Path) -> None:
    """The demo tenant's 22 findings (20 before its Virtual WAN estate, issue 18) print on about half the A4 pages
    they took with inline JSON evidence (43)."""
    html = _report(DEMO, tmp_path / "demo.html", tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(html.as_uri(), wait_until="load")
            pdf = page.pdf(format="A4")
            shown = page.evaluate("() => [...document.querySelectorAll('#findings tr.finding')]"
                                  ".filter(r => r.checkVisibility()).length")
        finally:
            browser.close()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert shown == 22  # a small report starts unfolded
    assert 0 < pages <= 24, pages
