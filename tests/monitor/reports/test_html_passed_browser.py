"""The HTML report's passed section (--include-passed) in a real headless Chromium: visible, inert, inside the page."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright
from scopekit import scope_tenant
from services import CHROMIUM_ARGS, ensure_chromium

from plmon.checks.passed import passed_results
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.reports import build_report, render
from plmon.monitor.scan import DEFAULTS, run_scan


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tenant = RecordedTenant(scope_tenant(tmp_path_factory.mktemp("scope") / "t"))
    result = run_scan(tenant, DEFAULTS, manifest=tenant.manifest)
    result = dataclasses.replace(result, passed=passed_results(result.snapshot, result.evaluation))
    out: Path = tmp_path_factory.mktemp("html") / "report.html"
    out.write_text(render(build_report(result), "html"), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(out.as_uri(), wait_until="load")
            got: dict[str, Any] = page.evaluate("""() => ({
                rows: document.querySelectorAll('#passed-table tr.pass').length,
                visible: document.querySelector('#passed').getBoundingClientRect().height > 0,
                links: [...document.querySelectorAll('#passed-table a')].every(
                    a => document.getElementById(a.getAttribute('href').slice(1)) !== null),
                scrollWidth: document.documentElement.scrollWidth,
            })""")
        finally:
            browser.close()
    return {**got, "console": console, "expected": len(result.passed or ())}


def test_the_passed_section_lists_every_pass_inside_the_page(state: dict[str, Any]) -> None:
    """One visible row per pass, each linking to its check's section, no console message, no horizontal scroll."""
    assert state["rows"] == state["expected"] > 0
    assert state["visible"] and state["links"]
    assert state["console"] == [] and state["scrollWidth"] <= 1280
