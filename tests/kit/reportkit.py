"""A recorded tenant with hostile text, a coverage gap, waivers and two subscriptions, for report tests.

Report tests must prove that every finding and every gap reaches every format and that text an
attacker controls (request messages, names) stays inert, so this tenant carries all of those at once.
"""

from __future__ import annotations

from pathlib import Path

from tenantkit import SUB, endpoint, net, provider_connection, storage_account, sub_list, write_tenant

SUB2 = "22222222-2222-2222-2222-222222222222"
XSS = ('<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
       '[click](javascript:alert(1)) https://evil.example/x www.evil.example | *bold* `code` _u_')
FORMULA_NAME = "=HYPERLINK(evil)"
PLS_ID = f"{net()}/privateLinkServices/pls-public"
ST_ID = storage_account("st1")["id"]

CONFIG = f"""
waivers:
  - check_id: pls.visibility-public
    resource_id: "{PLS_ID}"
    reason: "public partner service <b>signed off</b>"
    expires: 2027-01-31
  - check_id: pls.auto-approval-wildcard
    resource_id: "{PLS_ID}"
    reason: "temporary, until the partner onboarding ends"
    expires: 2026-06-30
  - check_id: connection.rejected
    resource_pattern: "*/privateEndpoints/never-matches-*"
    reason: "kept for an old migration"
"""


def pls(name: str) -> dict:
    return {"id": f"{net()}/privateLinkServices/{name}", "name": name,
            "type": "Microsoft.Network/privateLinkServices", "location": "westeurope",
            "properties": {"provisioningState": "Succeeded", "visibility": {"subscriptions": ["*"]},
                           "autoApproval": {"subscriptions": ["*"]},
                           "alias": f"{name}.guid.westeurope.azure.privatelinkservice",
                           "ipConfigurations": [], "privateEndpointConnections": []}}


def hostile_tenant(folder: Path) -> Path:
    """Findings in three families, one hostile request message, one formula-like name, one 403 gap."""
    pending = endpoint("pe-pending", ST_ID, status="Pending", manual=True, request_message=XSS)
    rejected = endpoint(FORMULA_NAME, ST_ID, status="Rejected", ip="10.0.1.5")
    approved2 = endpoint("pe-ok", f"/subscriptions/{SUB2}/resourceGroups/rg2/providers/Microsoft.Storage/"
                                  "storageAccounts/st2", sub=SUB2, rg="rg2")
    st1 = storage_account("st1", connections=[
        provider_connection(ST_ID, pending["id"], status="Pending"),
        provider_connection(ST_ID, rejected["id"], status="Rejected")])
    st2 = storage_account("st2", rg="rg2", sub=SUB2, connections=[provider_connection(
        f"/subscriptions/{SUB2}/resourceGroups/rg2/providers/Microsoft.Storage/storageAccounts/st2",
        approved2["id"])])
    return write_tenant(folder, {
        sub_list("privateEndpoints"): {"value": [pending, rejected]},
        sub_list("privateLinkServices"): {"value": [pls("pls-public")]},
        sub_list("routeTables") + ".error": {"status": 403, "error": {
            "code": "AuthorizationFailed", "message": "no read on routeTables"}},
        sub_list("privateEndpoints", SUB2): {"value": [approved2]},
        ST_ID.strip("/"): st1,
        st2["id"].strip("/"): st2,
    }, subscriptions=[SUB, SUB2])
