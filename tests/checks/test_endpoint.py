"""endpoint.provisioning-failed (checks.md, Connections): failing case, passing neighbour and subject."""

from __future__ import annotations

from pathlib import Path

from checkkit import run, snapshot_of, subjects
from tenantkit import endpoint, net, storage_account, sub_list

from plmon.checks.finding import Severity


def _pls(name: str, state: str) -> dict[str, object]:
    return {"id": f"{net()}/privateLinkServices/{name}", "name": name,
            "properties": {"provisioningState": state}}


def test_failed_endpoint_and_pls_are_their_own_subjects(tmp_path: Path) -> None:
    """A Failed endpoint and a 'failed' PLS each give a high finding on themselves; Succeeded ones pass."""
    st = storage_account("st1")
    snap = snapshot_of(tmp_path, {
        sub_list("privateEndpoints"): {"value": [endpoint("pe-bad", st["id"], provisioning_state="Failed"),
                                                 endpoint("pe-ok", st["id"])]},
        sub_list("privateLinkServices"): {"value": [_pls("pls-bad", "failed"), _pls("pls-ok", "Succeeded")]},
        st["id"]: st})
    ev = run(snap, "endpoint.provisioning-failed")
    assert subjects(ev) == sorted([f"{net()}/privateEndpoints/pe-bad".lower(),
                                   f"{net()}/privateLinkServices/pls-bad".lower()])
    assert {f.severity for f in ev.findings} == {Severity.HIGH}
    pe = next(f for f in ev.findings if "privateendpoints" in f.resource_id.lower())
    assert pe.evidence == {"provisioningState": "Failed"}
    assert f"private-endpoint update --ids {net()}/privateEndpoints/pe-bad " in pe.remediation


def test_updating_or_missing_state_passes(tmp_path: Path) -> None:
    """Updating and an absent provisioningState are not Failed."""
    st = storage_account("st1")
    pe = endpoint("pe-nostate", st["id"])
    del pe["properties"]["provisioningState"]
    snap = snapshot_of(tmp_path, {
        sub_list("privateEndpoints"): {"value": [pe, endpoint("pe-upd", st["id"], provisioning_state="Updating")]},
        st["id"]: st})
    assert run(snap, "endpoint.provisioning-failed").findings == ()
