"""Waivers that match by resource tag (issue 16, item 8): the tags of the finding's resource or its parent."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from checkkit import snapshot_of
from scopekit import scope_tenant

from plmon.checks.engine import evaluate
from plmon.checks.finding import Finding, Severity
from plmon.checks.waivers import Waiver
from plmon.monitor.model.snapshot import Snapshot


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return snapshot_of(scope_tenant(tmp_path_factory.mktemp("scope") / "t"))


def _finding(resource_id: str = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/privateEndpoints/pe"
             ) -> Finding:
    return Finding("connection.rejected", resource_id, Severity.MEDIUM, "t", "m", "s", {}, "r")


def test_tag_waiver_needs_every_tag_and_compares_names_case_insensitively() -> None:
    """Every tag must be on the resource (names compared as Azure does, values exactly); unknown tags never match."""
    w = Waiver("connection.*", "r", None, resource_tags=(("Owner", "partner-team"), ("env", "prod")))
    assert w.matches(_finding(), {"owner": "partner-team", "ENV": "prod", "x": "y"})
    assert not w.matches(_finding(), {"owner": "partner-team"})
    assert not w.matches(_finding(), {"owner": "Partner-Team", "env": "prod"})
    assert not w.matches(_finding(), None)


def test_the_engine_waives_by_the_tags_of_the_resource(snap: Snapshot) -> None:
    """A tag waiver moves pe-sandbox's finding (tag owner=partner-team) to waived; others stay open."""
    w = Waiver("connection.*", "partner onboarding", date(2099, 1, 31), resource_tags=(("owner", "partner-team"),))
    ev = evaluate(snap, waivers=(w,))
    assert [(x.finding.check_id, x.finding.resource_id.rsplit("/", 1)[-1]) for x in ev.waived] == \
        [("connection.rejected", "pe-sandbox")]
    assert ev.waived[0].to_dict()["waiver"] == {"reason": "partner onboarding", "expires": "2099-01-31"}


def test_an_expired_tag_waiver_reopens_the_finding(snap: Snapshot) -> None:
    """Past its expiry the finding is open again and says which waiver expired, as with any waiver."""
    w = Waiver("connection.*", "old", date(2020, 1, 1), resource_tags=(("owner", "partner-team"),))
    ev = evaluate(snap, waivers=(w,))
    assert not ev.waived
    reopened = [f for f in ev.findings if f.resource_id.endswith("/pe-sandbox")]
    assert reopened and reopened[0].evidence["waiver_expired"]["reason"] == "old"
    assert snap.taken_at > datetime(2020, 1, 2, tzinfo=UTC)


def test_the_daemons_incremental_evaluation_waives_by_tag_too(snap: Snapshot) -> None:
    """The daemon's evaluator (Units) settles through the same engine step: the same finding is waived."""
    from plmon.checks.incremental import Units

    w = Waiver("connection.*", "partner onboarding", None, resource_tags=(("owner", "partner-team"),))
    full = evaluate(snap, waivers=(w,))
    units = Units(waivers=(w,)).full(snap)
    assert [x.finding.key for x in units.waived] == [x.finding.key for x in full.waived] != []
