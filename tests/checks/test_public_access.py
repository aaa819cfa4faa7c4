"""public-access.* checks: the per-type property table of checks.md, judged only where an endpoint is Approved."""

from __future__ import annotations

from pathlib import Path

from netkit import Net

from plmon.checks.engine import evaluate


def run(tmp_path: Path) -> dict[tuple[str, str], object]:
    n = Net()
    n.vnet("v", "10.1.0.0/16").subnet("v", "pe", "10.1.1.0/24")
    ip = iter(f"10.1.1.{i}" for i in range(4, 100))
    cases = [
        ("st-enabled", {}, "Enabled", "Approved"),                         # fails
        ("st-lower", {}, "disabled", "Approved"),                          # passes (lower-case)
        ("st-absent", {}, ..., "Approved"),                                # fails: absent = allowed
        ("st-perimeter", {}, "SecuredByPerimeter", "Approved"),            # passes, said so
        ("st-pending", {}, "Enabled", "Pending"),                          # no Approved endpoint: passes
        ("kv-enabled", {"type_": "Microsoft.KeyVault/vaults"}, "Enabled", "Approved"),
        ("aa-true", {"type_": "Microsoft.Automation/automationAccounts"}, True, "Approved"),
        ("aa-false", {"type_": "Microsoft.Automation/automationAccounts"}, False, "Approved"),
        ("aa-absent", {"type_": "Microsoft.Automation/automationAccounts"}, ..., "Approved"),
        ("ac-null", {"type_": "Microsoft.AppConfiguration/configurationStores"}, None, "Approved"),
        ("ac-enabled", {"type_": "Microsoft.AppConfiguration/configurationStores"}, "Enabled", "Approved"),
        ("sql-null", {"type_": "Microsoft.Sql/servers"}, None, "Approved"),
        ("odd", {"type_": "Microsoft.Purview/accounts"}, "Enabled", "Approved"),   # unknown type
        ("hidden", {"missing": True}, "Enabled", "Approved"),                      # unreadable
    ]
    for name, kw, public, status in cases:
        tid = n.storage(name, f"pe-{name}", public=public, status=status, **kw)  # type: ignore[arg-type]
        n.endpoint(f"pe-{name}", tid, vnet="v", ip=next(ip), status=status, zones=[])
    ev = evaluate(n.snapshot(tmp_path), only={"public-access.enabled-with-private-endpoint", "public-access.unknown"})
    assert ev.check_errors == ()
    return {(f.check_id, f.resource_id.rsplit("/", 1)[-1]): f for f in ev.findings}


def test_exact_public_access_findings(tmp_path: Path) -> None:
    """Exactly the table's failures; Disabled, SecuredByPerimeter, false, App Config null and Pending pass."""
    found = run(tmp_path)
    on = "public-access.enabled-with-private-endpoint"
    assert set(found) == {(on, "st-enabled"), (on, "st-absent"), (on, "kv-enabled"), (on, "aa-true"),
                          (on, "aa-absent"), (on, "ac-enabled"), (on, "sql-null"),
                          ("public-access.unknown", "odd"), ("public-access.unknown", "hidden")}


def test_evidence_and_fixes(tmp_path: Path) -> None:
    """Evidence carries the raw values and networkAcls.defaultAction; the fix is the type's az command."""
    found = run(tmp_path)
    st = found[("public-access.enabled-with-private-endpoint", "st-enabled")]
    assert st.evidence["publicNetworkAccess"] == "Enabled" and st.evidence["networkAcls.defaultAction"] == "Deny"
    assert st.remediation.startswith("az storage account update --ids") and \
        st.remediation.endswith("--public-network-access Disabled")
    assert st.severity.value == "high"
    aa = found[("public-access.enabled-with-private-endpoint", "aa-true")]
    assert aa.evidence["publicNetworkAccess"] is True and "publicNetworkAccess=false" in aa.remediation
    hidden = found[("public-access.unknown", "hidden")]
    assert hidden.evidence["error_status"] == 403 and hidden.severity.value == "info"
