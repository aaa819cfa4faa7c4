"""Framework mappings beside each check: NIST for every check, a justification citing its requirement for each
mapping, and nothing mapped that the catalogue cannot title (or titled that no check evidences)."""

from __future__ import annotations

import pytest

from plmon.checks.finding import Severity
from plmon.checks.registry import CIS_AZURE, NIST_800_53, Evidences, all_checks, check
from plmon.monitor.reports.controls import FRAMEWORKS


def test_every_check_maps_to_a_nist_800_53_rev5_control() -> None:
    """Each check in the catalogue evidences at least one NIST SP 800-53 Rev. 5 control."""
    missing = [c.id for c in all_checks().values() if NIST_800_53 not in c.compliance()]
    assert missing == []


def test_every_mapping_cites_its_requirement_in_a_one_line_justification() -> None:
    """A justification is one line that starts with the requirement id it justifies."""
    for c in all_checks().values():
        for e in c.frameworks:
            assert e.why.startswith(e.requirement) and "\n" not in e.why and len(e.why) < 200, (c.id, e)


def test_mapped_requirements_and_the_catalogue_agree_both_ways() -> None:
    """Every mapped framework and requirement has a title, and every titled requirement is evidenced by a check."""
    mapped = {(e.framework, e.requirement) for c in all_checks().values() for e in c.frameworks}
    titled = {(fw.id, req) for fw in FRAMEWORKS.values() for req, title in fw.requirements.items() if title}
    assert mapped == titled


def test_registry_refuses_a_mapping_without_justification_or_with_a_bad_type() -> None:
    """An empty justification or a malformed resource type is refused when the check registers."""
    for bad in (Evidences(NIST_800_53, "SC-7", " "), Evidences(CIS_AZURE, "9.3.2.2", "9.3.2.2: x", only="storage")):
        with pytest.raises(ValueError, match="framework mapping"):
            check(id="test.bad-mapping", title="t", severity=Severity.LOW, rationale="r", remediation="m",
                  references=(), frameworks=(bad,))


def test_checks_metadata_shows_compliance_and_mappings() -> None:
    """metadata() lists requirement ids per framework and each mapping with its justification and type limit."""
    md = all_checks()["public-access.enabled-with-private-endpoint"].metadata()
    assert md["compliance"][CIS_AZURE] == ["9.3.2.2", "8.3.7"]
    cis = [m for m in md["mappings"] if m["framework"] == CIS_AZURE]
    assert {m["resource_type"] for m in cis} == {"Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"}
    assert all(m["justification"] for m in md["mappings"])
