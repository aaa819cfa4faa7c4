"""``--compliance`` end to end through the CLI: framework ids, per-finding requirements, the requirement view in
scan (json, table) and report (html, md, json, from a fresh scan and from the store), and a bad id as exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from plmon.monitor.cli import cli, main

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"
IDS = ["nist_800_53_revision_5_azure", "cis_5.0_azure", "iso27001_2022_azure", "pci_4.0_azure"]


def _run(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


def test_checks_lists_the_framework_ids_and_each_check_s_mappings() -> None:
    """--compliance-frameworks lists the four versioned ids; checks --format json shows each check's mappings."""
    assert [f["id"] for f in json.loads(_run("checks", "--compliance-frameworks", "--format", "json"))] == IDS
    table = _run("checks", "--compliance-frameworks")
    assert all(i in table for i in IDS)
    checks = json.loads(_run("checks", "--format", "json"))
    assert all(c["compliance"].get(IDS[0]) and c["mappings"] for c in checks)


def test_scan_json_keeps_only_the_framework_s_findings_with_their_requirements() -> None:
    """CIS on the demo tenant: only findings that evidence a CIS requirement, each with its ids, and a requirements
    list whose counts add up to those findings."""
    full = json.loads(_run("scan", "--from", str(DEMO), "--format", "json"))
    doc = json.loads(_run("scan", "--from", str(DEMO), "--format", "json", "--compliance", "cis_5.0_azure"))
    assert set(full) <= set(doc) and doc["framework"]["id"] == "cis_5.0_azure"
    assert doc["findings"] and len(doc["findings"]) < len(full["findings"])
    assert {f["check_id"] for f in doc["findings"]} == {"public-access.enabled-with-private-endpoint",
                                                        "connection.disconnected"}
    assert all(f["compliance"]["cis_5.0_azure"] for f in doc["findings"])
    reqs = {r["id"]: r for r in doc["requirements"]}
    assert set(reqs) == {"8.3.7", "9.3.2.1", "9.3.2.2"}
    assert sum(r["findings"] for r in reqs.values()) == len(doc["findings"])
    assert reqs["9.3.2.2"] | {"title": ""} == {"id": "9.3.2.2", "title": "", "status": "FAIL",
                                              "checks": ["public-access.enabled-with-private-endpoint"],
                                              "passed": 0, "failed": 1, "findings": 1, "waived": 0}
    assert doc["summary"]["by_check"] == {"connection.disconnected": 1,
                                          "public-access.enabled-with-private-endpoint": 1}


def test_passes_kept_with_compliance_are_only_those_that_evidence_a_requirement() -> None:
    """--include-passed with --compliance keeps the passes of the framework's checks, and a mapping limited to a
    resource type counts only passes on that type (an endpoint's pass names no target, so it evidences no CIS
    storage requirement)."""
    full = json.loads(_run("scan", "--from", str(DEMO), "--format", "json", "--include-passed"))
    doc = json.loads(_run("scan", "--from", str(DEMO), "--format", "json", "--include-passed", "--compliance",
                          "cis_5.0_azure"))
    assert len(doc["passed"]) < len(full["passed"])
    kept = {(p["check_id"], p["resource_id"].split("/providers/")[1].rsplit("/", 1)[0]) for p in doc["passed"]}
    assert kept == {("public-access.enabled-with-private-endpoint", "Microsoft.KeyVault/vaults"),
                    ("public-access.enabled-with-private-endpoint", "Microsoft.Storage/storageAccounts")}


def test_scan_table_prints_the_requirement_view_and_fail_on_counts_the_framework_only(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The table names each requirement and its status; --fail-on judges the framework's findings (CIS keeps a high
    one: exit 1 at high; ISO has none critical: exit 0)."""
    out = _run("scan", "--from", str(DEMO), "--compliance", "pci_4.0_azure")
    assert "PCI DSS v4.0 (pci_4.0_azure): 2 of 2 requirement(s) failing" in out
    assert "1.3.1" in out and "1.4.2" in out and "FAIL" in out
    res = CliRunner().invoke(cli, ["scan", "--from", str(DEMO), "--compliance", "cis_5.0_azure", "--fail-on",
                                   "high", "--format", "json"])
    assert res.exit_code == 1
    res = CliRunner().invoke(cli, ["scan", "--from", str(DEMO), "--compliance", "iso27001_2022_azure",
                                   "--fail-on", "critical", "--format", "json"])
    assert res.exit_code == 0


def test_unknown_framework_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """scan and report with an unknown id: one 'plmon:' line naming the known ids, exit 2, nothing on stdout."""
    monkeypatch.chdir(tmp_path)
    for args in (["scan", "--from", str(DEMO), "--compliance", "cis_9_azure"],
                 ["report", "--from", str(DEMO), "--compliance", "cis_9_azure"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert e.value.code == 2 and out.out == "" and len(lines) == 1, out.err
        assert lines[0].startswith("plmon: --compliance: unknown framework 'cis_9_azure'") and IDS[1] in lines[0]


def test_report_gives_the_per_requirement_view_in_html_md_and_json(tmp_path: Path) -> None:
    """report --compliance from a fresh scan: the requirement table in HTML and Markdown, the list in JSON, and
    only the framework's checks in the catalogue."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'state: {{url: "sqlite:///{tmp_path / "none.db"}"}}\n')
    base = ["report", "--from", str(DEMO), "--config", str(cfg), "--compliance", "iso27001_2022_azure"]
    html = _run(*base, "--format", "html")
    assert 'id="requirements-table"' in html and html.count('<tr class="requirement">') == 3
    assert html.count('class="check ') == 6  # the six ISO-mapped checks, not all 35
    md = _run(*base, "--format", "md")
    assert "## ISO/IEC 27001 2022, Annex A" in md and "| A.8.20 | Networks security | FAIL |" in md
    doc = json.loads(_run(*base, "--format", "json"))
    assert [r["id"] for r in doc["requirements"]] == ["A.5.15", "A.8.20", "A.8.22"]
    assert all(f["compliance"]["iso27001_2022_azure"] for f in doc["findings"])


def test_report_from_the_store_filters_to_the_framework(tmp_path: Path) -> None:
    """After scan --notify, report --compliance (store only) keeps the framework's open findings and its view."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'state: {{url: "sqlite:///{tmp_path / "state.db"}"}}\n')
    res = CliRunner().invoke(cli, ["scan", "--from", str(DEMO), "--config", str(cfg), "--notify", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(_run("report", "--config", str(cfg), "--compliance", "pci_4.0_azure", "--format", "json"))
    assert doc["report"]["source"] == "state store"
    assert sorted(f["check_id"] for f in doc["findings"]) == ["nsg.not-enforced-on-endpoints",
                                                              "public-access.enabled-with-private-endpoint",
                                                              "route.udr-bypassed"]
    assert {r["id"]: r["status"] for r in doc["requirements"]} == {"1.3.1": "FAIL", "1.4.2": "FAIL"}
