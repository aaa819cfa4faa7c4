"""Scope (plmon.monitor.scope): check globs, severities, resource groups and tags, applied after evaluation."""

from __future__ import annotations

import pytest
from checkkit import snapshot_of
from scopekit import scope_tenant

from plmon.checks.engine import evaluate
from plmon.checks.finding import Severity
from plmon.checks.passed import passed_results
from plmon.monitor.errors import InputError
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.scope import Scope, parse_tag


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    return snapshot_of(scope_tenant(tmp_path_factory.mktemp("scope") / "t"))


def _names(findings: object) -> set[str]:
    return {f.resource_id.rsplit("/", 1)[-1] for f in findings}  # type: ignore[attr-defined]


def test_check_globs_select_and_exclude_and_refuse_typos() -> None:
    """--checks keeps matching ids, --exclude-checks removes from them, a glob naming no check is an input error."""
    ids = Scope(checks=("connection.*",), exclude_checks=("connection.pending",)).check_ids()
    assert "connection.rejected" in ids and "connection.pending" not in ids and "pls.visibility-public" not in ids
    with pytest.raises(InputError, match="matches no check"):
        Scope(checks=("conection.*",)).check_ids()


def test_settings_disable_the_checks_outside_the_scope_keeping_their_settings() -> None:
    """Checks outside the scope are disabled, so they do not run; settings of the others are kept."""
    settings = Scope(checks=("pls.*",)).settings({})
    assert not settings["connection.pending"].enabled and "pls.visibility-public" not in settings


def test_tag_parsing() -> None:
    """NAME=VALUE, NAME alone (any value), and a missing name refused."""
    assert parse_tag("env=prod", "x") == ("env", "prod") and parse_tag("env", "x") == ("env", None)
    assert parse_tag("k=a=b", "x") == ("k", "a=b")
    with pytest.raises(InputError, match="--include-tag"):
        parse_tag("=prod", "--include-tag")


def test_a_child_finding_is_scoped_by_its_parent_record(snap: Snapshot) -> None:
    """A connection id is in scope by its endpoint's tags; an id plmon did not read matches no include tag."""
    scope = Scope(include_tags=(("env", "sandbox"),))
    pe = next(k for k in snap.private_endpoints if k.endswith("/pe-sandbox"))
    assert scope.holds(snap, pe + "/privateLinkServiceConnections/pe-sandbox-conn")
    assert not scope.holds(snap, "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z")
    assert Scope(exclude_tags=(("env", None),)).holds(snap, "/subscriptions/x/resourceGroups/y")


def test_apply_filters_findings_and_passes_never_the_judgement(snap: Snapshot) -> None:
    """Filtering happens after a full evaluation: the kept findings are exactly the full run's in scope."""
    ev = evaluate(snap)
    passed = passed_results(snap, ev)
    scope = Scope(resource_groups=("RG-PROD",), severities=frozenset({Severity.HIGH, Severity.MEDIUM}))
    kept, kept_passed = scope.apply(snap, ev, passed)
    assert [f.key for f in kept.findings] == [f.key for f in ev.findings
                                              if "/resourcegroups/rg-prod/" in f.resource_id.lower()
                                              and f.severity in (Severity.HIGH, Severity.MEDIUM)]
    assert kept.checks_run == ev.checks_run and kept_passed is not None
    assert {p.resource_id.rsplit("/", 1)[-1] for p in kept_passed} <= {"pe-prod", "pe-cross", "pe-gap", "stprod"}


def test_an_empty_scope_changes_nothing(snap: Snapshot) -> None:
    """No scope: the same evaluation object and passes come back."""
    ev = evaluate(snap)
    assert Scope().apply(snap, ev, None) == (ev, None) and not Scope().active


def test_merged_prefers_the_command_line_per_key() -> None:
    """A flag overrides its config key; other keys of the config stay."""
    merged = Scope(resource_groups=("a",), checks=("pls.*",)).merged(Scope(resource_groups=("b",)))
    assert merged.resource_groups == ("b",) and merged.checks == ("pls.*",)


def test_a_pass_is_of_its_checks_configured_severity(snap: Snapshot) -> None:
    """--severity high keeps the passes of a check configured as high, though the catalogue says medium."""
    from plmon.checks.engine import CheckSettings

    ev = evaluate(snap)
    passed = passed_results(snap, ev)
    settings = {"connection.pending": CheckSettings(severity=Severity.HIGH)}
    _, kept = Scope(severities=frozenset({Severity.HIGH})).apply(snap, ev, passed, settings)
    assert kept and "connection.pending" in {p.check_id for p in kept}
    _, default = Scope(severities=frozenset({Severity.HIGH})).apply(snap, ev, passed)
    assert default is not None and "connection.pending" not in {p.check_id for p in default}
