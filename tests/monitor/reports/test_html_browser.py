"""The HTML report in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from playwright.sync_api import sync_playwright
from reportkit import CONFIG, hostile_tenant
from services import CHROMIUM_ARGS, ensure_chromium

from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.reports import build_report, render
from plmon.monitor.scan import run_scan

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = hostile_tenant(tmp_path_factory.mktemp("tenant") / "t")
    config = parse_config(yaml.safe_load(CONFIG))
    tenant = RecordedTenant(folder)
    result = run_scan(tenant, config, manifest=tenant.manifest)
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "report.html"
    out.write_text(render(build_report(result, waivers=config.waiver_list()), "html"), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def page_state(report_file: Path) -> dict:
    executable = ensure_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console: list[str] = []
            requests: list[str] = []
            dialogs: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report_file.as_uri(), wait_until="load")
            state = page.evaluate("""() => ({
                pwned: window.__pwned === undefined ? null : window.__pwned,
                scripts: document.querySelectorAll('script').length,
                imgs: document.querySelectorAll('img').length,
                findings: document.querySelectorAll('#findings tr.finding').length,
                chartSvgs: document.querySelectorAll('#trend-chart svg').length,
                chartPaths: document.querySelectorAll('#trend-chart svg path').length,
                gaps: document.querySelectorAll('#gaps tbody tr').length,
                expired: [...document.querySelectorAll('#waivers-table tr.waiver td:first-child')]
                    .map(t => t.textContent),
                text: document.body.innerText,
                headline: document.querySelector('#headline .figure').textContent,
                scrollWidth: document.documentElement.scrollWidth,
                innerWidth: window.innerWidth,
                wide: [...document.querySelectorAll('main *')]
                    .filter(e => e.getBoundingClientRect().right > window.innerWidth)
                    .map(e => e.tagName + '.' + e.className).slice(0, 5),
            })""")
            shot = ARTIFACTS / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            page.emulate_media(media="print")
            state["print_nav_hidden"] = page.evaluate(
                "() => getComputedStyle(document.querySelector('nav')).display === 'none'")
        finally:
            browser.close()
    return {**state, "console": console, "requests": requests, "dialogs": dialogs, "shot": shot}


def test_page_loads_offline_without_console_errors(page_state: dict, report_file: Path) -> None:
    """The report loads with no console message at all and fetches nothing beyond its own file."""
    assert page_state["console"] == []
    assert page_state["requests"] == [report_file.as_uri()]


def test_findings_table_chart_and_gaps_are_present(page_state: dict) -> None:
    """Every open finding is a table row, the trend chart is an inline SVG, and the 403 gap is listed."""
    assert page_state["findings"] == 5
    assert page_state["chartSvgs"] == 1 and page_state["chartPaths"] > 10
    assert page_state["gaps"] == 1
    assert "Microsoft.Network/routeTables" in page_state["text"]
    assert page_state["headline"].startswith("16.7")


def test_injected_script_in_request_message_does_not_execute(page_state: dict) -> None:
    """The request message's <script> and onerror <img> stay text: nothing runs and no element is made."""
    assert page_state["pwned"] is None
    assert page_state["dialogs"] == []
    assert page_state["scripts"] == 0 and page_state["imgs"] == 0
    assert "<script>window.__pwned = 1</script>" in page_state["text"]
    assert '<img src=x onerror=' in page_state["text"] and "[click](javascript:alert(1))" in page_state["text"]


def test_expired_waiver_flagged_and_screenshot_written(page_state: dict) -> None:
    """The expired waiver shows as EXPIRED, print media hides navigation, and a screenshot is an artefact."""
    assert "EXPIRED" in page_state["expired"] and "active" in page_state["expired"]
    assert page_state["print_nav_hidden"] is True
    shot: Path = page_state["shot"]
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_fits_the_window_without_horizontal_scrolling(page_state: dict) -> None:
    """Long ids, evidence and remediation wrap: the page is no wider than a 1280 px window."""
    assert page_state["innerWidth"] == 1280
    assert page_state["scrollWidth"] <= page_state["innerWidth"], page_state["wide"]
