"""Pass results (plmon.checks.passed): derived from what each check declares it judges, never a gap or a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from checkkit import snapshot_of
from scopekit import scope_tenant
from tenantkit import SUB, endpoint, storage_account, sub_list

from plmon.checks.engine import CheckSettings, evaluate
from plmon.checks.passed import passed_results
from plmon.checks.waivers import Waiver
from plmon.monitor.model.snapshot import Snapshot


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    folder = scope_tenant(tmp_path_factory.mktemp("scope") / "t")
    return snapshot_of(folder)


def _passed(snap: Snapshot, **kw: object) -> set[tuple[str, str]]:
    ev = evaluate(snap, **kw)  # type: ignore[arg-type]
    return {(p.check_id, p.resource_id.rsplit("/", 1)[-1]) for p in passed_results(snap, ev)}


def test_a_subject_with_a_finding_is_never_a_pass(snap: Snapshot) -> None:
    """pe-sandbox's connection is Rejected: it fails connection.rejected and passes the checks it does not fail."""
    passed = _passed(snap)
    assert ("connection.rejected", "pe-sandbox") not in passed
    assert ("connection.pending", "pe-sandbox") in passed


def test_a_waived_failure_is_not_a_pass(snap: Snapshot) -> None:
    """A waiver hides a finding; it does not make the resource compliant."""
    waiver = Waiver("connection.rejected", "accepted", None, resource_pattern="*/pe-sandbox")
    ev = evaluate(snap, waivers=(waiver,))
    assert ev.waived and not [p for p in passed_results(snap, ev)
                              if p.check_id == "connection.rejected" and p.resource_id.endswith("/pe-sandbox")]


def test_a_subject_that_names_an_unread_resource_is_not_a_pass(snap: Snapshot) -> None:
    """pe-gap's target sits in a subscription that answered 403: no check reading targets claims it passed."""
    passed = _passed(snap)
    assert not [p for p in passed if p[1] == "pe-gap" and p[0].startswith(("connection.", "rmpl."))]
    assert ("connection.target-missing", "pe-cross") in passed


def test_only_checks_that_ran_claim_passes(snap: Snapshot) -> None:
    """A disabled check (or one left out with --checks) claims no pass."""
    passed = _passed(snap, settings={"connection.pending": CheckSettings(enabled=False)})
    assert not [p for p in passed if p[0] == "connection.pending"]


def test_a_whole_tenant_check_over_one_collection_passes_its_records(tmp_path: Path) -> None:
    """rmpl.no-endpoint declares reading only `rmpls`: with no RMPL it claims nothing; the per-subject checks
    claim their subjects (one pass per (check, resource), sorted, ids in ARM's spelling)."""
    st = storage_account("st1", public="Disabled")
    snap = snapshot_of(tmp_path, {sub_list("privateEndpoints"): {"value": [endpoint("PE-One", st["id"])]},
                                  st["id"]: st})
    results = passed_results(snap, evaluate(snap))
    assert not [p for p in results if p.check_id.startswith("rmpl.no-endpoint")]
    assert [p.resource_id for p in results if p.check_id == "connection.pending"] == \
        [f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/privateEndpoints/PE-One"]
    assert list(results) == sorted(results, key=lambda p: (p.check_id, p.resource_id.lower()))
