"""The check engine: registry completeness, per-check configuration, waivers and failing checks."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from checkkit import snapshot_of
from tenantkit import net, sub_list

from plmon import checks
from plmon.checks import registry
from plmon.checks.engine import evaluate
from plmon.checks.finding import Issue, Severity
from plmon.monitor.config import parse_config
from plmon.monitor.errors import InputError
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.snapshot import Snapshot

# The ids checks.md defines for the families of the foundation issue (the contract).
CATALOGUE = {
    "connection.pending", "connection.rejected", "connection.disconnected", "connection.actions-required",
    "connection.target-missing", "endpoint.provisioning-failed",
    "pls.visibility-public", "pls.auto-approval-not-subset", "pls.auto-approval-wildcard",
    "pls.nat-subnet-policy", "pls.nat-ip-headroom", "pls.proxy-protocol",
    "rmpl.association-public-access-enabled", "rmpl.association-not-root", "rmpl.association-dangling",
    "rmpl.unassociated", "rmpl.no-endpoint", "rmpl.multi-tenant", "rmpl.endpoint-group-id",
    "rmpl.bastion-dns-conflict",
}
ID_SYNTAX = re.compile(r"^[a-z]+(-[a-z]+)*\.[a-z0-9]+(-[a-z0-9]+)*$")
PLS_ID = f"{net()}/privateLinkServices/Open"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


# --- registry ------------------------------------------------------------------------------------

def test_every_check_module_registers_checks() -> None:
    """Every module in checks/ that defines a @check has registered it (no second list to edit)."""
    found = registry.all_checks()
    modules = {c.fn.__module__ for c in found.values()}
    for mod in pkgutil.iter_modules(checks.__path__):
        m = importlib.import_module(f"plmon.checks.{mod.name}")
        decorated = [v for v in vars(m).values() if callable(v) and getattr(v, "__module__", "") == m.__name__
                     and any(c.fn is v for c in found.values())]
        if decorated:
            assert m.__name__ in modules
    assert {"plmon.checks.connection", "plmon.checks.endpoint", "plmon.checks.pls", "plmon.checks.rmpl"} <= modules


def test_catalogue_ids_are_all_registered() -> None:
    """Every connection/endpoint/pls/rmpl id of checks.md is registered (new ids may be added beside them)."""
    assert set(registry.all_checks()) >= CATALOGUE


def test_ids_unique_syntax_and_metadata_complete() -> None:
    """Ids follow family.kebab-name; every check has title, rationale, remediation, references, a severity."""
    for cid, c in registry.all_checks().items():
        assert cid == c.id and ID_SYNTAX.match(cid), cid
        assert c.title.strip() and c.rationale.strip() and c.remediation.strip(), cid
        assert c.references and all(r.startswith("https://learn.microsoft.com/") for r in c.references), cid
        assert isinstance(c.severity, Severity)
        md = c.metadata()
        assert md["id"] == cid and md["family"] == cid.split(".")[0]


def test_catalogue_default_severities() -> None:
    """Default severities are those of checks.md."""
    want = {"connection.pending": "medium", "connection.rejected": "medium", "connection.disconnected": "medium",
            "connection.actions-required": "low", "connection.target-missing": "medium",
            "endpoint.provisioning-failed": "high", "pls.visibility-public": "medium",
            "pls.auto-approval-not-subset": "medium", "pls.auto-approval-wildcard": "high",
            "pls.nat-subnet-policy": "medium", "pls.nat-ip-headroom": "low", "pls.proxy-protocol": "info",
            "rmpl.association-public-access-enabled": "medium", "rmpl.association-not-root": "high",
            "rmpl.association-dangling": "high", "rmpl.unassociated": "medium", "rmpl.no-endpoint": "low",
            "rmpl.multi-tenant": "high", "rmpl.endpoint-group-id": "high", "rmpl.bastion-dns-conflict": "high"}
    reg = registry.all_checks()
    assert {k: reg[k].severity.value for k in want} == want


def test_duplicate_or_malformed_id_is_refused() -> None:
    """Registering an existing id with another function, or a malformed id, raises at import time."""
    with pytest.raises(ValueError, match="duplicate"):
        registry.check(id="pls.proxy-protocol", title="t", severity=Severity.LOW, rationale="r",
                       remediation="m", references=("https://learn.microsoft.com/x",))(lambda s, p: iter(()))
    with pytest.raises(ValueError, match="bad check id"):
        registry.check(id="Bad Id", title="t", severity=Severity.LOW, rationale="r", remediation="m",
                       references=())


# --- per-check configuration ---------------------------------------------------------------------

@pytest.fixture()
def public_pls(tmp_path: Path) -> Snapshot:
    return snapshot_of(tmp_path, {sub_list("privateLinkServices"): {"value": [{
        "id": PLS_ID, "name": "Open", "properties": {"visibility": {"subscriptions": ["*"]},
                                                     "enableProxyProtocol": True}}]}})


def _config(checks_: dict[str, Any] | None = None, waivers: list[dict[str, Any]] | None = None) -> Any:
    return parse_config({"checks": checks_ or {}, "waivers": waivers or []}, env={})


def _ids(ev: Any) -> set[str]:
    return {f.check_id for f in ev.findings}


def test_enabled_false_and_severity_override(public_pls: Snapshot) -> None:
    """enabled: false drops a check; severity: high overrides the default."""
    cfg = _config({"pls.proxy-protocol": {"enabled": False}, "pls.visibility-public": {"severity": "HIGH"}})
    ev = evaluate(public_pls, cfg.check_settings(), cfg.waiver_list())
    assert "pls.proxy-protocol" not in _ids(ev) and "pls.proxy-protocol" not in ev.checks_run
    vis = next(f for f in ev.findings if f.check_id == "pls.visibility-public")
    assert vis.severity == Severity.HIGH


def test_params_are_parsed() -> None:
    """A duration parameter is parsed from '24h'; an integer one is kept."""
    s = _config({"connection.pending": {"pending_max_age": "24h"}, "pls.nat-ip-headroom": {"min_free": 4}}
                ).check_settings()
    assert s["connection.pending"].params["pending_max_age"].total_seconds() == 86400
    assert s["pls.nat-ip-headroom"].params["min_free"] == 4


@pytest.mark.parametrize(("checks_", "where"), [
    ({"pls.nope": {}}, "checks.pls.nope"),
    ({"connection.pending": {"max_age": "1h"}}, "checks.connection.pending.max_age"),
    ({"connection.pending": {"pending_max_age": "soon"}}, "checks.connection.pending.pending_max_age"),
    ({"connection.pending": {"severity": "urgent"}}, "checks.connection.pending.severity"),
    ({"connection.pending": {"enabled": "no"}}, "checks.connection.pending.enabled"),
    ({"pls.nat-ip-headroom": {"min_free": "8"}}, "checks.pls.nat-ip-headroom.min_free"),
    ({"pls.nat-ip-headroom": {"min_free": True}}, "checks.pls.nat-ip-headroom.min_free"),
    ({"pls.nat-ip-headroom": 5}, "checks.pls.nat-ip-headroom"),
])
def test_bad_check_config_is_input_error_naming_key(checks_: dict[str, Any], where: str) -> None:
    """Unknown check id, unknown param, bad value: an InputError whose message names the key."""
    with pytest.raises(InputError) as e:
        _config(checks_)
    assert where in str(e.value)


# --- waivers -------------------------------------------------------------------------------------

def test_exact_waiver_case_insensitive_moves_finding_to_waived(public_pls: Snapshot) -> None:
    """A waiver by exact id (other casing) moves the finding to 'waived' with its reason and expiry."""
    cfg = _config(waivers=[{"check_id": "pls.visibility-public", "resource_id": PLS_ID.upper(),
                            "reason": "partner service", "expires": date(2027, 1, 31)}])
    ev = evaluate(public_pls, cfg.check_settings(), cfg.waiver_list())
    assert "pls.visibility-public" not in _ids(ev)
    [w] = ev.waived
    assert w.finding.check_id == "pls.visibility-public"
    assert w.to_dict()["waiver"] == {"reason": "partner service", "expires": "2027-01-31"}


def test_pattern_waiver(public_pls: Snapshot) -> None:
    """A glob check id and resource pattern waive every matching finding."""
    cfg = _config(waivers=[{"check_id": "pls.*", "resource_pattern": "*/privatelinkservices/open",
                            "reason": "lab"}])
    ev = evaluate(public_pls, cfg.check_settings(), cfg.waiver_list())
    assert not any(f.check_id.startswith("pls.") for f in ev.findings)
    assert {w.finding.check_id for w in ev.waived} == {"pls.visibility-public", "pls.proxy-protocol"}


def test_expired_waiver_returns_finding_and_says_so(public_pls: Snapshot) -> None:
    """A waiver that expired before the snapshot time no longer hides the finding and says so."""
    cfg = _config(waivers=[{"check_id": "pls.visibility-public", "resource_id": PLS_ID,
                            "reason": "partner service", "expires": "2026-10-31"}])
    ev = evaluate(public_pls, cfg.check_settings(), cfg.waiver_list())
    assert ev.waived == ()
    f = next(f for f in ev.findings if f.check_id == "pls.visibility-public")
    assert f.evidence["waiver_expired"] == {"reason": "partner service", "expired": "2026-10-31"}
    assert "waiver expired" in f.message


def test_waiver_expiring_on_scan_day_is_still_active(public_pls: Snapshot) -> None:
    """A waiver whose expiry date is the snapshot's day still applies (it expires after that day)."""
    cfg = _config(waivers=[{"check_id": "pls.visibility-public", "resource_id": PLS_ID,
                            "reason": "r", "expires": NOW.date().isoformat()}])
    assert len(evaluate(public_pls, cfg.check_settings(), cfg.waiver_list()).waived) == 1


def test_waiver_needs_exactly_one_subject() -> None:
    """A waiver with neither (or both) resource_id and resource_pattern is an input error."""
    with pytest.raises(InputError, match="waivers"):
        _config(waivers=[{"check_id": "pls.*", "reason": "r"}])


# --- a check that raises -------------------------------------------------------------------------

@pytest.fixture()
def broken_check() -> Iterator[str]:
    cid = "zz-test.raises"

    @registry.check(id=cid, title="raises", severity=Severity.LOW, rationale="r", remediation="m",
                    references=("https://learn.microsoft.com/x",))
    def boom(snap: Snapshot, params: Any) -> Iterator[Issue]:
        yield Issue(parse_id(PLS_ID), "before the crash")
        raise RuntimeError("bug in a check")

    yield cid
    del registry._REGISTRY[cid]


def test_check_that_raises_is_a_gap_not_a_crash(public_pls: Snapshot, broken_check: str) -> None:
    """A check raising mid-way becomes a 'check:<id>' coverage gap; the other checks still report."""
    ev = evaluate(public_pls)
    assert [(g.type, g.code) for g in ev.check_errors] == [(f"check:{broken_check}", "CheckError")]
    assert "pls.visibility-public" in _ids(ev)
    assert broken_check in ev.checks_run


def test_findings_are_sorted_and_deduplicated(public_pls: Snapshot) -> None:
    """Findings come sorted by severity then id, one per (check, resource)."""
    ev = evaluate(public_pls)
    keys = [f.key for f in ev.findings]
    assert len(keys) == len(set(keys))
    ranks = [-f.severity.rank for f in ev.findings]
    assert ranks == sorted(ranks)
