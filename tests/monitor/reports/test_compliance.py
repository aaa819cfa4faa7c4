"""Framework views of a scan: scoped mappings, the kept findings, per-requirement counts, and the generated doc."""

from __future__ import annotations

from pathlib import Path

import pytest

from plmon.checks.engine import WaivedFinding
from plmon.checks.finding import Finding, Severity
from plmon.checks.registry import CIS_AZURE, NIST_800_53, PCI_DSS
from plmon.checks.waivers import Waiver
from plmon.monitor.errors import InputError
from plmon.monitor.reports.compliance import framework, mappings_markdown, requirement_rows, requirements_of

DOCS = Path(__file__).resolve().parents[3] / "docs" / "compliance.md"
RG = "/subscriptions/s/resourceGroups/rg/providers"


def _f(check_id: str, resource_id: str, evidence: dict | None = None) -> Finding:
    return Finding(check_id, resource_id, Severity.HIGH, "t", "m", "s", evidence or {}, "az x")


def test_a_type_limited_mapping_applies_only_to_findings_about_that_type() -> None:
    """Public access on a storage account is CIS 9.3.2.2, on a key vault 8.3.7, on a SQL server no CIS at all."""
    check = "public-access.enabled-with-private-endpoint"
    assert requirements_of(_f(check, f"{RG}/Microsoft.Storage/storageAccounts/st1"), CIS_AZURE) == ["9.3.2.2"]
    assert requirements_of(_f(check, f"{RG}/Microsoft.KeyVault/vaults/kv1"), CIS_AZURE) == ["8.3.7"]
    assert requirements_of(_f(check, f"{RG}/Microsoft.Sql/servers/sql1"), CIS_AZURE) == []
    assert requirements_of(_f(check, f"{RG}/Microsoft.Sql/servers/sql1"), NIST_800_53) == ["SC-7"]


def test_a_connection_finding_takes_its_type_from_the_target_its_evidence_names() -> None:
    """A rejected endpoint to a storage account evidences 9.3.2.1; to a registry it does not."""
    pe = f"{RG}/Microsoft.Network/privateEndpoints/pe1"
    to_storage = {"connections": [{"target": f"{RG}/Microsoft.Storage/storageAccounts/st1"}]}
    to_acr = {"connections": [{"target": f"{RG}/Microsoft.ContainerRegistry/registries/acr1"}]}
    assert requirements_of(_f("connection.rejected", pe, to_storage), CIS_AZURE) == ["9.3.2.1"]
    assert requirements_of(_f("connection.rejected", pe, to_acr), CIS_AZURE) == []
    assert requirements_of(_f("connection.pending", pe, {"target": to_storage["connections"][0]["target"]}),
                           CIS_AZURE) == ["9.3.2.1"]


def test_requirement_rows_count_checks_findings_and_waivers() -> None:
    """A requirement fails by check: two findings of one check are one failed check; a waived one fails nothing."""
    net = f"{RG}/Microsoft.Network"
    open_ = [_f("route.udr-bypassed", f"{net}/routeTables/rt1"), _f("route.udr-bypassed", f"{net}/routeTables/rt2")]
    muted = [WaivedFinding(_f("public-access.enabled-with-private-endpoint",
                              f"{RG}/Microsoft.Storage/storageAccounts/st1"), Waiver("public-access.*", "ok", None))]
    rows = {r.id: r for r in requirement_rows(PCI_DSS, open_, muted, ["route.udr-bypassed",
                                                                   "nsg.not-enforced-on-endpoints",
                                                                   "public-access.enabled-with-private-endpoint"])}
    assert (rows["1.3.1"].status, rows["1.3.1"].failed, rows["1.3.1"].passed, rows["1.3.1"].findings) == \
        ("FAIL", 1, 1, 2)
    assert (rows["1.4.2"].status, rows["1.4.2"].findings, rows["1.4.2"].waived) == ("PASS", 0, 1)
    assert requirement_rows(PCI_DSS, [], [], [])[0].status == "NOT_RUN"


def test_unknown_framework_is_an_input_error_naming_the_known_ids() -> None:
    """A typo is refused with the list of ids, never an empty view."""
    with pytest.raises(InputError, match=r"unknown framework 'cis'.*cis_5\.0_azure"):
        framework("cis")


def test_docs_compliance_md_is_the_registry_s_mappings() -> None:
    """docs/compliance.md, where the justifications are read, matches the registry (regenerate with
    ``plmon checks --compliance-frameworks --format md > docs/compliance.md``)."""
    assert DOCS.read_text(encoding="utf-8") == mappings_markdown()
