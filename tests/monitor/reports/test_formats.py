"""SARIF, CSV, Markdown and JSON reports of a hostile recorded tenant: valid, complete, and inert."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from reportkit import CONFIG, FORMULA_NAME, XSS, hostile_tenant

from plmon.checks.finding import finding_key
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.reports import HistoryPoint, build_report, render
from plmon.monitor.reports.sarif import FINGERPRINT, fingerprint
from plmon.monitor.reports.tabular import COLUMNS
from plmon.monitor.scan import ScanResult, run_scan, scan_document

SCHEMA = json.loads((Path(__file__).parents[2] / "fixtures" / "sarif" / "sarif-schema-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScanResult, object]:
    folder = hostile_tenant(tmp_path_factory.mktemp("tenant") / "t")
    config = parse_config(yaml.safe_load(CONFIG))
    tenant = RecordedTenant(folder)
    return run_scan(tenant, config, manifest=tenant.manifest), config


def _report(scanned, **kw):
    result, config = scanned
    return build_report(result, waivers=config.waiver_list(), **kw)


def test_sarif_validates_against_the_vendored_2_1_0_schema(scanned) -> None:
    """The SARIF log is valid SARIF 2.1.0: one rule per check, one result per open or waived finding."""
    doc = json.loads(render(_report(scanned), "sarif"))
    jsonschema.Draft4Validator(SCHEMA).validate(doc)
    run = doc["runs"][0]
    result, _ = scanned
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == sorted(r["id"] for r in run["tool"]["driver"]["rules"])
    assert len(run["results"]) == len(result.evaluation.findings) + len(result.evaluation.waived)
    waived = [r for r in run["results"] if r.get("suppressions")]
    assert len(waived) == 1 and "signed off" in waived[0]["suppressions"][0]["justification"]
    for res in run["results"]:
        rule = run["tool"]["driver"]["rules"][res["ruleIndex"]]
        assert rule["id"] == res["ruleId"] and rule["help"]["text"] and rule["defaultConfiguration"]["level"]
        assert res["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].startswith("/subscriptions/")
    assert run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"].startswith("Coverage gap")


def test_sarif_fingerprint_is_check_id_plus_normalised_resource_id(scanned) -> None:
    """Fingerprints ignore the ARM id's casing, so a re-upload tracks the same alert."""
    result, _ = scanned
    f = result.evaluation.findings[0]
    upper = type(f)(f.check_id, f.resource_id.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"), f.severity,
                    f.title, f.message, f.subscription_id, f.evidence, f.remediation)
    assert fingerprint(upper) == fingerprint(f)
    doc = json.loads(render(_report(scanned), "sarif"))
    again = json.loads(render(_report(scanned), "sarif"))
    assert [r["partialFingerprints"][FINGERPRINT] for r in doc["runs"][0]["results"]] == \
        [r["partialFingerprints"][FINGERPRINT] for r in again["runs"][0]["results"]]


def test_csv_round_trips_findings_and_defuses_formulas(scanned) -> None:
    """Reading the CSV back gives every finding's key and severity; a name like =HYPERLINK(...) is text."""
    result, _ = scanned
    text = render(_report(scanned), "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == COLUMNS
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value

    def unquote(v: str) -> str:
        return v[1:] if v.startswith("'") and v[1:2] in ("=", "+", "-", "@", "\t", "\r") else v
    back = [(unquote(r["check_id"]), unquote(r["resource_id"]), r["severity"], unquote(r["message"])) for r in rows]
    assert back == [(f.check_id, f.resource_id, f.severity.value, f.message) for f in result.evaluation.findings]
    names = [r["resource_name"] for r in rows]
    assert "'" + FORMULA_NAME in names
    pending = next(r for r in rows if r["check_id"] == "connection.pending")
    assert json.loads(pending["evidence"])["request_message"] == XSS


_MD_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def _md_table(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = lines.index(header)
    out = []
    for line in lines[start + 2:]:
        if not line.startswith("| "):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        out.append([_MD_UNESCAPE.sub(r"\1", c.strip()) for c in cells])
    return out


def test_markdown_round_trips_findings_with_no_active_markup(scanned) -> None:
    """The findings table parses back to every finding; data yields no link, autolink, HTML or emphasis."""
    result, _ = scanned
    hostile = ("x", "connection.pending", "/subscriptions/s/privateEndpoints/<b>[a](https://evil.example)</b>",
               "s", "1 d", XSS)
    from plmon.monitor.reports.markdown import _findings  # the table writer the report uses
    from plmon.monitor.reports.model import FindingRow
    report = _report(scanned)
    text = render(report, "md")
    table = _md_table(text, "| severity | check | resource | subscription | age | message |")
    assert [(c[1], c[2], c[0], c[5]) for c in table] == \
        [(f.check_id, f.resource_id, f.severity.value, f.message) for f in result.evaluation.findings]
    f0 = result.evaluation.findings[0]
    evil = type(f0)(hostile[1], hostile[2], f0.severity, f0.title, hostile[5], "s", {}, "")
    line = _findings([FindingRow(evil, "connection", (), None, None)])[2]
    for raw in ("<", ">", "[", "]", "(", ")", "`", "*", "_", "https:"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), line.replace("\\\\", "")), raw
    assert "www\\." in line
    cells = _md_table("| h |\n|---|\n" + line, "| h |")[0]
    assert cells[2] == hostile[2] and cells[5] == XSS


def test_json_report_is_the_scan_document_plus_summary_and_trend(scanned) -> None:
    """The JSON report keeps every scan-document key and finding, and adds compliance, first_seen and trend."""
    result, _ = scanned
    t0 = result.snapshot.taken_at
    key = result.evaluation.findings[0].key
    report = _report(scanned, first_seen={key: t0 - timedelta(days=3)},
                     history=[HistoryPoint(t0 - timedelta(days=7), 9, {"high": 2}),
                              HistoryPoint(t0 - timedelta(days=40), 12, {})],
                     since=t0 - timedelta(days=30))
    doc = json.loads(render(report, "json"))
    base = scan_document(result)
    assert set(base) <= set(doc)
    assert [(f["check_id"], f["resource_id"]) for f in doc["findings"]] == \
        [(f["check_id"], f["resource_id"]) for f in base["findings"]]
    assert doc["findings"][0]["age_days"] == 3.0
    assert doc["summary"]["compliance"]["percent"] == report.compliance_percent
    assert doc["summary"]["coverage"]["gaps"] == 1 and doc["coverage"]["gaps"] == base["coverage"]["gaps"]
    assert [p["open_findings"] for p in doc["trend"]] == [9, len(result.evaluation.findings)]  # --since drops day 40
    statuses = {w["status"] for w in doc["summary"]["waivers"]}
    assert statuses == {"expired", "active", "unused"}


def test_compliance_counts_child_findings_against_their_parent_and_lists_gaps(scanned) -> None:
    """A connection finding makes its storage account non-compliant; the figure states its denominator."""
    from plmon.monitor.lifecycle.compliance import evaluated_resources, owner_of
    report = _report(scanned)
    result, _ = scanned
    pending = next(r.finding for r in report.findings if r.finding.check_id == "connection.pending")
    assert "/privateendpointconnections/" in finding_key("x", pending.resource_id)[1]
    assert owner_of(pending.resource_id, evaluated_resources(result.snapshot)).endswith("/storageaccounts/st1")
    assert report.resources_evaluated == 6 and report.resources_non_compliant == 5
    assert report.compliance_percent == round(100 / 6, 1)
    assert [g.type for g in report.gaps] == ["Microsoft.Network/routeTables"]
    assert datetime(2026, 11, 1, 12, tzinfo=UTC) == report.generated_at
